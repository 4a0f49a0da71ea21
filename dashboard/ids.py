"""Every component id of the dashboard, in one place (layout, callbacks and browser tests use these)."""

from __future__ import annotations

# controls
HEAD = "head"
METHOD = "method"
NORMALISATION = "normalisation"
BASIS = "basis"
COLOUR_BY = "colour-by"
FAITH_RANGE = "faith-range"
ALGORITHM = "algorithm"
HIGHLIGHT = "highlight"
FILTERED_MODE = "filtered-mode"
FILTER_PANEL = "filter-panel"
FILTER_COUNT = "filter-count"
RANGE = "range"  # pattern-matching type: {"type": RANGE, "column": <score column>}
WEIGHT = "weight"  # pattern-matching type: {"type": WEIGHT, "region": <region name>}
RECOMPUTE = "recompute"
PROGRESS = "progress"
PROGRESS_TEXT = "progress-text"
EMBED_RESULT = "embed-result"  # a finished embedding job's result, tagged with its view (not yet shown)
OFFER = "embed-offer"  # "t-SNE ready — show": a result offered instead of swapped in
OFFER_TEXT = "embed-offer-text"
OFFER_SHOW = "embed-offer-show"
OFFERED = "embed-offered"  # the offered result

# scatter
SCATTER = "scatter"
TOOLTIP = "tooltip"
EMBEDDING = "embedding"
EMBED_JOB = "embed-job"
SCATTER_SHOWN = "scatter-shown"  # the embedding key the scatter figure was built with
SCATTER_WINDOW = "scatter-window"  # density mode: the zoom window whose images are drawn as points
LASSO_INPUT = "lasso-input"  # the browser's reduction of selectedData: a polygon, a box or rows

# selections
LASSO = "lasso"
LASSO_COUNT = "lasso-count"
SELECTION_NAME = "selection-name"
SELECTION_SAVE = "selection-save"
SELECTIONS = "selections"
SELECTION_LIST = "selection-list"
EDIT_TARGET = "edit-target"
EDIT_NAME = "edit-name"
EDIT_COLOUR = "edit-colour"
EDIT_RENAME = "edit-rename"
EDIT_RECOLOUR = "edit-recolour"
EDIT_DELETE = "edit-delete"
COMPARE = "compare"

# tabs and panels
TABS = "tabs"
STATS_REGIONS = "stats-regions"
STATS_CLASSES = "stats-classes"
STATS_TOP = "stats-top"
STATS_DIFF = "stats-diff"  # two compared selections: difference per region with intervals
DETAIL_SORT = "detail-sort"
DETAIL_ORDER = "detail-order"
DETAIL_PAGE = "detail-page"
DETAIL_PREV = "detail-prev"
DETAIL_NEXT = "detail-next"
DETAIL_PAGE_TEXT = "detail-page-text"
DETAIL = "detail"
FOCUS = "focus"
INSPECTOR = "inspector"
CLUSTER_ALGORITHM = "cluster-algorithm"
CLUSTER_K = "cluster-k"
CLUSTER_RUN = "cluster-run"
CLUSTER_TEXT = "cluster-text"
TABLE = "table"
TABLE_BOX = "table-box"
CLUSTER_PROGRESS = "cluster-progress"
CLUSTER_RESULT = "cluster-result"  # a finished clustering job's result, tagged with its view
CLUSTER_PROFILES = "cluster-profiles"  # what each cluster and selection is
TRUST = "trust"
SUMMARY = "summary"
SYNTHETIC_BANNER = "synthetic-banner"

# export and state
EXPORT_SCOPE = "export-scope"
EXPORT_WIDE = "export-wide"
EXPORT_CSV = "export-csv"
EXPORT_PARQUET = "export-parquet"
EXPORT_DOWNLOAD = "export-download"
STATE_SAVE = "state-save"
STATE_DOWNLOAD = "state-download"
STATE_UPLOAD = "state-upload"
STATE_RESTORE = "state-restore"
STATE_MESSAGE = "state-message"
URL = "url"  # the page address: the view is in its query string (?head=…&method=…)
SESSION_READY = "session-ready"  # the saved session was restored: autosave may write
SESSION_TEXT = "session-text"  # "saved with the corpus …"
FILTER_NOTE = "filter-note"  # which filters were kept or reset when the view changed
