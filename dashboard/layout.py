"""The component tree and the component builders (pure: values in, components out).

User strings (selection names, class names, file names) only ever become component text, which React
escapes; nothing is rendered as HTML or markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
from dash import dcc, html

from semcontrib.dashboard import figures, views
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.consistency import ViewTag
from semcontrib.dashboard.query import VALIDITY_COLUMNS, CorpusQuery
from semcontrib.dashboard.records import View
from semcontrib.settings import DEFAULT_BASIS

SIDEBAR = {"width": "300px", "flex": "0 0 300px", "padding": "8px 12px", "borderRight": "1px solid #ddd",
           "overflowY": "auto", "height": "100vh", "position": "sticky", "top": "0", "fontSize": "13px",
           "boxSizing": "border-box"}
LABEL = {"fontWeight": "600", "marginTop": "10px", "display": "block"}
BUTTON = {"margin": "4px 4px 4px 0"}
CARD = {"border": "1px solid #ddd", "borderRadius": "4px", "padding": "6px", "margin": "4px",
        "width": "250px", "display": "inline-block", "verticalAlign": "top", "fontSize": "12px"}
GRAPH_CONFIG: Any = {"displayModeBar": False}
MAX_UPLOAD_BYTES = 4_000_000  # a state file (also checked on the server: state.MAX_STATE_BYTES)


def photo_url(image_id: str) -> str:
    return f"/corpus/photo/{quote(image_id, safe='')}"


def thumb_url(image_id: str) -> str:
    return f"/corpus/thumb/{quote(image_id, safe='')}"


def overlay_url(image_id: str, head: str, method: str) -> str:
    return f"/corpus/overlay/{quote(head, safe='')}/{quote(method, safe='')}/{quote(image_id, safe='')}"


def breakable(name: str) -> list[Any]:
    """``name`` as text that may wrap after each ``_`` (a ``<wbr>`` there), so a long region name breaks
    between its words, not inside one."""
    parts = name.split("_")
    out: list[Any] = []
    for i, part in enumerate(parts):
        out += [part + ("_" if i < len(parts) - 1 else "")] + ([html.Wbr()] if i < len(parts) - 1 else [])
    return out


def _label(text: str) -> html.Label:
    return html.Label(text, style=LABEL)


TABS = ("statistics", "trust", "table", "detail", "image", "clusters", "export")
TAB_LABELS = {"statistics": "Statistics", "trust": "How far to trust each method", "table": "Table",
              "detail": "Detail", "image": "Image", "clusters": "Clusters", "export": "Export & state"}
SYNTHETIC_TEXT = ("SYNTHETIC CORPUS — random numbers written by semcontrib's synthetic corpus builder, not the "
                  "output of any model. Use it to feel the dashboard at scale; read nothing into its scores.")


def _initial(query: CorpusQuery) -> dict[str, Any]:
    """The view the page opens with: the one of the last embedding when it is cached, else the defaults."""
    heads = list(query.heads)
    out: dict[str, Any] = {"head": heads[0], "method": "lrp" if "lrp" in query.methods else query.methods[0],
                           "normalisation": "signed_l1", "basis": DEFAULT_BASIS, "algorithm": "tsne",
                           "weights": {}, "embedding": None}
    last = query.last_embedding()
    if last is not None:
        out.update({k: last["params"][k] for k in ("head", "method", "normalisation", "basis", "algorithm",
                                                    "weights")})
        params = last["params"]
        view = View(params["head"], params["method"], params["normalisation"], params["basis"])
        tag = ViewTag.of(view.as_dict(), params["algorithm"], params["weights"])
        out["embedding"] = {"key": last["key"], "label": f"{tag.algorithm_name} of {view.label}",
                            "ready": True, "head": params["head"], "view": tag.to_json()}
    return out


def summary(query: CorpusQuery) -> html.Details:
    """What is in this corpus: open on first load."""
    s = query.summary()
    reasons = "; ".join(f"{r}: {n}" for r, n in s["reasons"].items())
    heads = ", ".join(f"{h} ({len(c)} classes)" for h, c in s["heads"].items())
    return html.Details(id=I.SUMMARY, open=True, style={"border": "1px solid #ddd", "borderRadius": "4px",
                                                         "padding": "4px 8px", "margin": "4px 0"}, children=[
        html.Summary(f"What is in this corpus: {s['images']} images analysed, {s['skipped']} skipped",
                     style={"fontWeight": "600", "cursor": "pointer"}),
        html.Ul(style={"margin": "4px 0", "fontSize": "13px"}, children=[
            html.Li(f"skipped, by reason: {reasons}" if reasons else "no image was skipped"),
            html.Li(f"model: {s['model']}; heads: {heads}"),
            html.Li(f"methods: {', '.join(s['methods'])}"),
            html.Li(f"regions: {s['regions']} ({len(s['vocabulary'])}: {', '.join(s['vocabulary'])})"),
            html.Li("validity record: faithfulness, deletion and insertion AUC per image — see the tab "
                    "'How far to trust each method'" if s["validity"] else
                    "no validity record in this corpus (it was analysed without one); the tab "
                    "'How far to trust each method' shows the agreement between methods"),
        ]),
    ])


def colour_choices(query: CorpusQuery, view: View) -> list[dict[str, str]]:
    """What points can be coloured by: selection, predicted class, faithfulness (with a validity record),
    and every score column of the view (``score:COLUMN``)."""
    cols = query.score_columns(view)  # names only: no scores read (a million-image view takes seconds)
    out = [{"label": "selection", "value": "selection"}, {"label": f"predicted {view.head}", "value": "class"}]
    if query.has_validity:
        out.append({"label": "faithfulness", "value": "faithfulness"})
    return out + [{"label": f"score of {c} ({figures.UNIT})", "value": f"score:{c}"} for c in cols]


# The lasso button of the scatter's tool bar selects the dashboard's own lasso (app.LASSO_JS: drawn in the
# browser, the polygon sent once on release); box select is Plotly's.
SCATTER_CONFIG: Any = {"displaylogo": False, "scrollZoom": True}
SCATTER_HEIGHT = 600  # px


def build(query: CorpusQuery) -> html.Div:
    """The page: the sidebar of controls, the main column (scatter, selections, tabs) and the stores."""
    init = _initial(query)
    return html.Div([_sidebar(query, init), _main(query, init), *_stores(init)],
                    style={"display": "flex", "fontFamily": "system-ui, sans-serif", "fontSize": "14px"})


def _sidebar(query: CorpusQuery, init: dict[str, Any]) -> html.Div:
    """The controls: view, embedding, colour, highlight, filters, weights, progress."""
    heads = list(query.heads)
    init_view = View(init["head"], init["method"], init["normalisation"], init["basis"])
    # a weight row: the region's name wraps (never under the box), the box keeps room for its number
    weights = [html.Div(style={"display": "flex", "alignItems": "center", "gap": "6px", "margin": "2px 0"},
                        children=[html.Span(breakable(r), style={"flex": "1", "minWidth": "0",
                                                                 "overflowWrap": "anywhere"}),
                                  html.Div(dcc.Input(id={"type": I.WEIGHT, "region": r}, type="number", min=0,
                                                     step=0.1, value=init["weights"].get(r, 1), debounce=True,
                                                     style={"width": "100%"}), style={"flex": "0 0 96px"})])
               for r in query.vocabulary]
    validity = [_label("Faithfulness filter (Spearman, −1 … 1)"),
                dcc.RangeSlider(id=I.FAITH_RANGE, min=-1, max=1, step=0.05, value=[-1, 1], marks=None,
                                allowCross=False, updatemode="mouseup",
                                tooltip={"placement": "bottom", "always_visible": False})] \
        if query.has_validity else [html.Div(dcc.RangeSlider(id=I.FAITH_RANGE, min=-1, max=1, value=[-1, 1]),
                                             style={"display": "none"}),
                                    html.Div("no validity record: no faithfulness filter", className="hint")]
    return html.Div(className="sidebar", style=SIDEBAR, children=[
        html.H3("semcontrib" + (" · synthetic" if query.is_synthetic else ""), style={"margin": "4px 0"}),
        html.Div(f"{query.root.name}: {len(query.ids)} images"
                 + (f", {query.n_skipped} skipped" if query.n_skipped else ""), className="hint"),
        _label("Head"),
        dcc.Dropdown(id=I.HEAD, options=heads, value=init["head"], clearable=False),
        _label("Method"),
        dcc.Dropdown(id=I.METHOD, options=query.methods, value=init["method"], clearable=False),
        _label("Normalisation"),
        dcc.RadioItems(id=I.NORMALISATION, options=list(query.normalisations), value=init["normalisation"],
                       inline=True),
        _label("Basis (per-pixel mean or region sum)"),
        dcc.RadioItems(id=I.BASIS, options=list(query.bases), value=init["basis"], inline=True),
        _label("Embedding"),
        dcc.RadioItems(id=I.ALGORITHM, options=[{"label": "t-SNE", "value": "tsne"},
                                                {"label": "UMAP", "value": "umap"}], value=init["algorithm"],
                       inline=True),
        _label("Colour points by"),
        dcc.Dropdown(id=I.COLOUR_BY, options=colour_choices(query, init_view), value="selection",
                     clearable=False),
        _label("Highlight predicted classes"),
        dcc.Dropdown(id=I.HIGHLIGHT, options=[], value=[], multi=True, placeholder="classes…"),
        _label("Filtered-out points"),
        dcc.RadioItems(id=I.FILTERED_MODE, options=[{"label": "dim", "value": "dim"},
                                                    {"label": "hide", "value": "hide"}], value="dim", inline=True),
        *validity,
        _label("Region filters (score in %)"),
        html.Div(id=I.FILTER_COUNT, className="hint"),
        html.Div(id=I.FILTER_NOTE, className="hint"),
        html.Div(id=I.FILTER_PANEL),
        _label("Region weights (embedding, statistics, clusters)"),
        *weights,
        html.Button("Recompute embedding", id=I.RECOMPUTE, n_clicks=0, style=BUTTON),
        html.Progress(id=I.PROGRESS, value="0", max="10", style={"width": "100%"}),
        html.Div(id=I.PROGRESS_TEXT, className="hint"),
    ])


def _selection_bar() -> html.Div:
    """Under the scatter: the session line, the lasso count, saving and editing selections, compare."""
    return html.Div(style={"padding": "4px 0", "fontSize": "13px"}, children=[
        html.Div(id=I.SESSION_TEXT, className="hint"),
        html.Span(id=I.LASSO_COUNT, children="0 images in the lasso", style={"marginRight": "8px"}),
        dcc.Input(id=I.SELECTION_NAME, type="text", placeholder="selection name", maxLength=80,
                  style={"width": "220px", "display": "inline-block"}),
        html.Button("Save lasso as selection", id=I.SELECTION_SAVE, n_clicks=0, style=BUTTON),
        html.Div(id=I.SELECTION_LIST),
        html.Div([
            dcc.Dropdown(id=I.EDIT_TARGET, options=[], placeholder="selection to edit",
                         style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"}),
            dcc.Input(id=I.EDIT_NAME, type="text", placeholder="new name", maxLength=80,
                      style={"width": "200px", "display": "inline-block"}),
            html.Button("Rename", id=I.EDIT_RENAME, n_clicks=0, style=BUTTON),
            dcc.Dropdown(id=I.EDIT_COLOUR, options=[{"label": html.Span("■ " + c, style={"color": c}), "value": c}
                                                    for c in views.PALETTE], placeholder="colour",
                         style={"width": "130px", "display": "inline-block", "verticalAlign": "middle"}),
            html.Button("Recolour", id=I.EDIT_RECOLOUR, n_clicks=0, style=BUTTON),
            html.Button("Delete", id=I.EDIT_DELETE, n_clicks=0, style=BUTTON),
        ]),
        html.Div([html.Span("Compare (statistics, detail): ", style={"fontWeight": "600"}),
                  dcc.Dropdown(id=I.COMPARE, options=[], value=[], multi=True, placeholder="one or two selections",
                               style={"width": "420px", "display": "inline-block", "verticalAlign": "middle"})]),
    ])


def _tabs(query: CorpusQuery, init: dict[str, Any]) -> Any:
    """The tabs (statistics, trust, table, detail, image, clusters, export & state)."""
    return dcc.Tabs(id=I.TABS, value="statistics", children=[
        dcc.Tab(label=TAB_LABELS["statistics"], value="statistics", children=html.Div([
            dcc.Graph(id=I.STATS_REGIONS, config=GRAPH_CONFIG),
            html.Div([dcc.Graph(id=I.STATS_CLASSES, config=GRAPH_CONFIG, style={"flex": "1"}),
                      dcc.Graph(id=I.STATS_TOP, config=GRAPH_CONFIG, style={"flex": "1"})],
                     style={"display": "flex"}),
            dcc.Graph(id=I.STATS_DIFF, config=GRAPH_CONFIG)])),
        dcc.Tab(label=TAB_LABELS["trust"], value="trust", children=html.Div(id=I.TRUST, style={"padding": "6px"})),
        dcc.Tab(label=TAB_LABELS["table"], value="table", children=html.Div(style={"padding": "6px"}, children=[
            html.Div("Every image that passes the filters, one row each: sort and filter by any column (rows are "
                     "read from the server a block at a time). Tick rows, then 'Save lasso as selection' above "
                     "to make them a named selection.", className="hint"),
            html.Div(id=I.TABLE_BOX, children=table_grid(
                query, View(init["head"], init["method"], init["normalisation"], init["basis"])))])),
        dcc.Tab(label="Detail", value="detail", children=html.Div([
            html.Div([html.Span("Sort by "),
                      dcc.Dropdown(id=I.DETAIL_SORT, options=[], value="", clearable=False,
                                   style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"}),
                      dcc.RadioItems(id=I.DETAIL_ORDER, options=[{"label": "descending", "value": "desc"},
                                                                 {"label": "ascending", "value": "asc"}],
                                     value="desc", inline=True, style={"display": "inline-block"}),
                      html.Button("◀ previous", id=I.DETAIL_PREV, n_clicks=0, style=BUTTON),
                      html.Button("next ▶", id=I.DETAIL_NEXT, n_clicks=0, style=BUTTON),
                      html.Span(id=I.DETAIL_PAGE_TEXT)], style={"padding": "6px"}),
            html.Div(id=I.DETAIL, style={"display": "flex", "gap": "12px"})])),
        dcc.Tab(label="Image", value="image", children=html.Div(id=I.INSPECTOR, style={"padding": "6px"})),
        dcc.Tab(label="Clusters", value="clusters", children=html.Div(style={"padding": "6px"}, children=[
            html.P("Suggest groups of images the model decides about in the same way (weighted vectors of the "
                   "filtered set); each cluster and the outliers become named selections."),
            dcc.RadioItems(id=I.CLUSTER_ALGORITHM, options=[{"label": "k-means", "value": "kmeans"},
                                                            {"label": "HDBSCAN", "value": "hdbscan"}],
                           value="kmeans", inline=True),
            html.Span(" k = "), dcc.Input(id=I.CLUSTER_K, type="number", min=2, max=50, step=1, value=4,
                                          style={"width": "80px", "display": "inline-block"}),
            html.Button("Suggest clusters", id=I.CLUSTER_RUN, n_clicks=0, style=BUTTON),
            html.Span(id=I.CLUSTER_PROGRESS, className="hint"),
            html.Div(id=I.CLUSTER_TEXT),
            html.Div(id=I.CLUSTER_PROFILES)])),
        dcc.Tab(label="Export & state", value="export", children=html.Div(style={"padding": "6px"}, children=[
            html.H4("Contribution table"),
            html.Span("Scope: "),
            dcc.Dropdown(id=I.EXPORT_SCOPE, options=[{"label": "filtered set", "value": "filtered"}],
                         value="filtered", clearable=False,
                         style={"width": "260px", "display": "inline-block", "verticalAlign": "middle"}),
            dcc.Checklist(id=I.EXPORT_WIDE, options=[{"label": "wide (one row per image)", "value": "wide"}],
                          value=[], inline=True, style={"display": "inline-block", "marginLeft": "8px"}),
            html.Div([html.Button("Download CSV", id=I.EXPORT_CSV, n_clicks=0, style=BUTTON),
                      html.Button("Download Parquet", id=I.EXPORT_PARQUET, n_clicks=0, style=BUTTON)]),
            dcc.Download(id=I.EXPORT_DOWNLOAD),
            html.H4("Dashboard state (filters, weights, selections)"),
            html.Button("Save state (JSON)", id=I.STATE_SAVE, n_clicks=0, style=BUTTON),
            dcc.Download(id=I.STATE_DOWNLOAD),
            dcc.Upload(id=I.STATE_UPLOAD, children=html.Div("Load a state: drop a JSON file here or click"),
                       max_size=MAX_UPLOAD_BYTES,
                       style={"border": "1px dashed #888", "padding": "10px", "margin": "6px 0",
                              "width": "360px", "textAlign": "center"}, accept=".json,application/json"),
            html.Div(id=I.STATE_MESSAGE)])),
    ])


def _main(query: CorpusQuery, init: dict[str, Any]) -> html.Div:
    """The main column: banner, summary, offer line, scatter, selections and tabs."""
    banner = [html.Div(SYNTHETIC_TEXT, id=I.SYNTHETIC_BANNER,
                       style={"background": "#fff3cd", "border": "2px solid #d39e00", "padding": "6px",
                              "fontWeight": "600", "margin": "4px 0"})] if query.is_synthetic else []
    return html.Div(style={"flex": "1", "padding": "6px 12px", "minWidth": "0"}, children=[
        *banner,
        summary(query),
        html.Div(id=I.OFFER, style={"display": "none"}, children=[
            html.Span(id=I.OFFER_TEXT), html.Button("show", id=I.OFFER_SHOW, n_clicks=0)]),
        dcc.Graph(id=I.SCATTER, style={"height": f"{SCATTER_HEIGHT}px"}, config=SCATTER_CONFIG,
                  clear_on_unhover=True),
        dcc.Tooltip(id=I.TOOLTIP, direction="right"),
        _selection_bar(),
        _tabs(query, init),
    ])


def _stores(init: dict[str, Any]) -> list[Any]:
    """The page's stores and its address."""
    return [dcc.Store(id=I.EMBEDDING, data=init["embedding"]), dcc.Store(id=I.EMBED_JOB),
              dcc.Store(id=I.SCATTER_SHOWN), dcc.Store(id=I.SCATTER_WINDOW),
              dcc.Store(id=I.SELECTIONS, data=[]), dcc.Store(id=I.LASSO), dcc.Store(id=I.LASSO_INPUT),
              dcc.Store(id=I.FOCUS), dcc.Store(id=I.DETAIL_PAGE, data=0), dcc.Store(id=I.STATE_RESTORE),
              dcc.Store(id=I.EMBED_RESULT), dcc.Store(id=I.OFFERED), dcc.Store(id=I.CLUSTER_RESULT),
              dcc.Store(id=I.SESSION_READY, data=False), dcc.Location(id=I.URL, refresh=False)]


def filter_sliders(columns: Sequence[str], bounds: np.ndarray, wanted: Mapping[str, Sequence[float]]) -> list[Any]:
    out: list[Any] = []
    for col, (lo, hi) in zip(columns, bounds):
        lo, hi = float(lo), float(hi)
        value = [lo, hi]
        if col in wanted:
            value = [max(lo, float(wanted[col][0])), min(hi, float(wanted[col][1]))]
        out.append(html.Div([
            html.Div(col, style={"fontSize": "12px"}),
            dcc.RangeSlider(id={"type": I.RANGE, "column": col}, min=lo, max=hi, step=0.1, value=value,
                            marks=None, allowCross=False, updatemode="mouseup",
                            tooltip={"placement": "bottom", "always_visible": False}),
        ], className="region-filter"))
    return out


def _predictions(query: CorpusQuery, k: int) -> html.Ul:
    row = query.images.iloc[k]
    return html.Ul([html.Li(f"{h}: {row[f'pred_{h}']} ({row[f'prob_{h}']:.2f})") for h in query.heads],
                   style={"margin": "2px 0", "paddingLeft": "16px"})


def _fmt(value: float, signed: bool = True) -> str:
    """Two decimals (signed: with ``+`` — correlations; unsigned: AUCs), ``—`` for none, never ``-0.00``."""
    if value is None or not np.isfinite(value):
        return "—"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return text.replace("-0.00", "0.00").replace("+0.00", "0.00")


def pct(value: float) -> str:
    """A score (fraction of the vector) in percent with one decimal and its sign, never ``-0.0 %``."""
    if value is None or not np.isfinite(value):
        return "—"
    text = f"{value * 100:+.1f}"
    return ("0.0" if text in ("+0.0", "-0.0") else text) + " %"


def validity_line(query: CorpusQuery, k: int, view: View) -> html.Div:
    """One image's validity for the view's head and method, or 'no validity record'."""
    v = query.validity(view.head, view.method)
    if v is None:
        return html.Div("no validity record", className="validity hint")
    r = v.iloc[k]
    note = f" ({r['validity_note']})" if r["validity_note"] else ""
    return html.Div(f"faithfulness {_fmt(r['faithfulness'])} · deletion AUC {_fmt(r['deletion_auc'], False)} · "
                    f"insertion AUC {_fmt(r['insertion_auc'], False)}{note}", className="validity",
                    style={"fontSize": "11px"})


def tooltip_card(query: CorpusQuery, k: int, matrix: views.ScoreMatrix) -> html.Div:
    image_id = str(query.ids[k])
    v = matrix.values[k]
    order = np.argsort(-np.abs(np.nan_to_num(v)))[:4]
    return html.Div(style={"width": "200px", "fontSize": "12px", "whiteSpace": "normal"}, children=[
        html.Img(src=thumb_url(image_id), style={"width": "100%"}, alt="no photo"),
        html.B(image_id, style={"wordBreak": "break-all"}),
        _predictions(query, k),
        html.Div([html.Div(f"{matrix.columns[j]}: {pct(v[j])}") for j in order] if matrix.valid[k]
                 else "no vector for this head and method"),
    ])


def image_card(query: CorpusQuery, k: int, matrix: views.ScoreMatrix, view: View) -> html.Div:
    image_id = str(query.ids[k])
    return html.Div(className="image-card", style=CARD, children=[
        html.Img(src=overlay_url(image_id, view.head, view.method), style={"width": "100%"}, alt="no photo"),
        html.Div(image_id, className="card-id", style={"fontWeight": "600", "wordBreak": "break-all"}),
        _predictions(query, k),
        validity_line(query, k, view),
        dcc.Graph(figure=figures.contribution_bars(matrix.columns, matrix.values[k], height=160),
                  config=GRAPH_CONFIG, style={"height": "160px"}),
    ])


def detail_column(query: CorpusQuery, name: str, colour: str, total: int, on_page: np.ndarray,
                  matrix: views.ScoreMatrix, *, view: View) -> html.Div:
    return html.Div(style={"flex": "1", "borderTop": f"4px solid {colour}"}, children=[
        html.H4(f"{name} ({total} images)", style={"margin": "4px"}),
        html.Div([image_card(query, int(k), matrix, view) for k in on_page]
                 or [html.P("no images", className="hint")]),
    ])


def selection_list(selections: Sequence[Mapping[str, Any]]) -> html.Ul:
    if not selections:
        return html.Ul([html.Li("no selections yet: lasso points in the scatter (or tick rows in the table), "
                                "then save them", className="hint")])
    return html.Ul([html.Li([html.Span("■ ", style={"color": s.get("colour"), "fontSize": "16px"}),
                             html.Span(str(s.get("name")), className="selection-name"),
                             html.Span(f" ({s.get('n', 0)} images)")], className="selection-item")
                    for s in selections], style={"margin": "4px 0"})


def _text_width(names: Sequence[str], extra: int = 30, least: int = 120, most: int = 320) -> int:
    """A column width in pixels that shows the longest of ``names`` whole (about 8 px a character)."""
    longest = max((len(str(n)) for n in names), default=0)
    return int(min(max(8 * longest + extra, least), most))


def table_columns(query: CorpusQuery, view: View) -> list[dict[str, Any]]:
    """dash-ag-grid column definitions of the ranked table for ``view``: text columns as wide as their
    longest value (class names, image ids; a longer one is cut, and whole in its tooltip)."""
    number = {"filter": "agNumberColumnFilter", "sortable": True, "width": 100}
    text = {"filter": "agTextColumnFilter", "sortable": True}
    cols: list[dict[str, Any]] = [
        {"field": "image_id", "headerName": "image", "width": _text_width(query.ids[:1000], 80, 210),
         "checkboxSelection": True, "tooltipField": "image_id", **text},
        {"field": "thumb", "headerName": "", "cellRenderer": "ThumbRenderer", "width": 80, "sortable": False,
         "filter": False},
    ]
    if query.has_validity:
        cols += [{"field": c, "headerName": c.replace("_", " "), **number, "width": 135} for c in VALIDITY_COLUMNS]
    for h, classes in query.heads.items():
        cols += [{"field": f"pred_{h}", "headerName": f"{h}", "width": _text_width(classes),
                  "tooltipField": f"pred_{h}", **text},
                 {"field": f"prob_{h}", "headerName": f"p({h})", **number,
                  "width": _text_width([f"p({h})"], 40, 100, 200)}]
    cols += [{"field": c, "headerName": f"{c[len('label_'):]} (label)", "width": 120, **text}
             for c in query.label_columns]
    cols += [{"field": c, "headerName": f"{c} (%)", "headerTooltip": f"{c}: score in {figures.UNIT}", **number}
             for c in query.score_matrix(view).columns]
    return cols


def table_grid(query: CorpusQuery, view: View) -> Any:
    """The ranked table (dash-ag-grid, infinite row model: the server sends one block of rows at a time)."""
    import dash_ag_grid as dag

    return dag.AgGrid(
        id=I.TABLE, rowModelType="infinite", columnDefs=table_columns(query, view),
        defaultColDef={"resizable": True, "floatingFilter": True, "filterParams": {"maxNumConditions": 2},
                       "wrapHeaderText": True, "autoHeaderHeight": True},  # long names wrap, never cut
        dashGridOptions={"rowSelection": "multiple", "rowMultiSelectWithClick": True, "cacheBlockSize": 100,
                         "maxBlocksInCache": 20, "rowHeight": 48, "suppressRowClickSelection": False,
                         "suppressColumnVirtualisation": True, "tooltipShowDelay": 300},
        style={"height": "520px"}, className="ag-theme-alpine")


def trust_panel(table: Any, has_validity: bool) -> html.Div:
    """The corpus-level 'how far to trust each method' table (head x method): validity medians, the gains over
    a random order of the same regions, and a mark on methods judged by their own perturbation."""
    header = ["head", "method", "images", "median faithfulness", "median deletion AUC (MoRF)",
              "gain over random: MoRF", "gain over random: LeRF", "median insertion AUC",
              "agreement with other methods", "note"]
    rows = [html.Tr([html.Td(r["head"]), html.Td(r["method"]), html.Td(str(r["images"])),
                     html.Td(_fmt(r["median_faithfulness"])), html.Td(_fmt(r["median_deletion_auc"], False)),
                     html.Td(_fmt(r["gain_morf"])), html.Td(_fmt(r["gain_lerf"])),
                     html.Td(_fmt(r["median_insertion_auc"], False)), html.Td(_fmt(r["agreement"])),
                     html.Td(_trust_note(r["circular"]), className="circular" if r["circular"] > 0 else "")])
            for r in table.to_dict("records")]
    return html.Div(id="trust-body", children=[
        html.P("How far can a region score be read as 'this region pushed this head towards its decision'? "
               "Faithfulness: Spearman correlation between the region scores and the drop of the target logit "
               "when each region is deleted (1 = scores rank regions exactly as deleting them does; 0 = no "
               "relation; below 0 = the opposite). Deletion AUC (MoRF): target probability while regions are "
               "removed in order of decreasing score (lower = the top regions matter). Gain over random: how "
               "much better than a random order of the same regions the method's order does, per image, median "
               "(MoRF: random AUC − MoRF AUC; LeRF, least relevant first: LeRF AUC − random AUC; above 0 beats "
               "random). Agreement: median Spearman between this method's vector and another method's vector "
               "of the same image and head. A method judged by the perturbation it scores with (note "
               "'circular') gets no faithfulness, AUC or gain here: the test would repeat its own definition."),
        html.P("no validity record in this corpus: faithfulness and AUC columns are empty (analyse with "
               "validity to fill them); agreement is computed from the vectors." if not has_validity else "",
               className="hint"),
        html.Table([html.Thead(html.Tr([html.Th(h) for h in header])), html.Tbody(rows)],
                   style={"borderCollapse": "collapse"}, className="trust-table"),
    ])


def _trust_note(circular: float) -> str:
    """The trust table's note: empty, or how many of the method's records are circular."""
    if not circular > 0:
        return ""
    share = "all" if circular >= 1 else f"{circular:.0%} of"
    return f"circular: {share} its records judged by its own perturbation (not ranked)"


def _image_validity_table(validity: Any) -> html.Table:
    """One image's validity records, a row per (head, method), with the gain over a random order."""
    header = ("head", "method", "faithfulness", "deletion AUC (MoRF)", "LeRF AUC", "random-order AUC",
              "gain over random: MoRF", "insertion AUC", "note")
    return html.Table([html.Tr([html.Th(c) for c in header])] +
                      [html.Tr([html.Td(r["head"]), html.Td(r["method"]), html.Td(_fmt(r["faithfulness"])),
                                html.Td(_fmt(r["deletion_auc"], False)), html.Td(_fmt(r["lerf_auc"], False)),
                                html.Td(_fmt(r["random_auc"], False)),
                                html.Td(_fmt(r["random_auc"] - r["deletion_auc"])),
                                html.Td(_fmt(r["insertion_auc"], False)),
                                html.Td(r["validity_note"])]) for r in validity.to_dict("records")],
                      className="validity-table")


def inspector(query: CorpusQuery, image_id: str, view: View) -> html.Div:
    """One image: photo + overlay, its vector for every head side by side, and for every method with their
    agreement (Spearman rank correlation of region scores), and its validity record."""
    import pandas as pd

    head, method, norm = view.head, view.method, view.normalisation
    k = query.index[image_id]
    vectors = query.image_vectors(image_id, norm, view.basis)
    columns = query.score_matrix(view).columns
    by_head = pd.DataFrame({h: vectors[(h, method)] for h in query.heads if (h, method) in vectors},
                           index=list(columns))
    by_method = pd.DataFrame({m: vectors[(head, m)] for m in query.methods if (head, m) in vectors},
                             index=list(columns))
    colours = {c: views.PALETTE[i % len(views.PALETTE)] for i, c in enumerate([*query.heads, *query.methods])}
    agreement = views.method_agreement({m: by_method[m].to_numpy() for m in by_method.columns})
    validity = query.image_validity(image_id)
    if validity is None:
        vtable: Any = html.Div("no validity record", className="hint")
    else:
        vtable = _image_validity_table(validity)
    return html.Div(id="inspector-body", children=[
        html.Div(style={"display": "flex", "gap": "12px"}, children=[
            html.Div(style={"flex": "0 0 360px"}, children=[
                html.Img(src=overlay_url(image_id, head, method), style={"width": "360px"}, alt="no photo"),
                heatmap_legend(),
                html.Img(src=photo_url(image_id), style={"width": "360px", "marginTop": "4px"}, alt="no photo"),
            ]),
            html.Div(style={"flex": "1"}, children=[
                html.H4(image_id, style={"margin": "4px 0"}),
                html.Div(f"{view.label}; explaining {query.target_text(view)}. Overlay: red pushes towards "
                         "the target, blue against it, opacity ∝ |value| up to the 99th percentile of |map| of "
                         "this image; region borders are white lines edged in black, with the region names.",
                         className="hint"),
                _predictions(query, k),
                html.H5("Validity", style={"margin": "6px 0 2px 0"}),
                vtable,
                dcc.Graph(figure=figures.contribution_bars(columns, query.score_matrix(view).values[k],
                                                           title=f"{head} / {method} · {query.target_text(view)}",
                                                           height=220),
                          config=GRAPH_CONFIG),
            ]),
        ]),
        dcc.Graph(figure=figures.grouped_bars(by_head * 100, f"every head ({method}; each head explains its "
                                              "own target)", colours, f"score ({figures.UNIT})", 280),
                  config=GRAPH_CONFIG),
        html.Div(style={"display": "flex"}, children=[
            dcc.Graph(figure=figures.grouped_bars(by_method * 100, f"every method ({query.target_text(view)})",
                                                  colours, f"score ({figures.UNIT})", 280),
                      config=GRAPH_CONFIG, style={"flex": "2"}),
            dcc.Graph(figure=figures.agreement_heatmap(agreement), config=GRAPH_CONFIG, style={"flex": "1"}),
        ]),
    ])


def group_profile(selection: Mapping[str, Any], n: int, table: Any, label: str, prototype_ids: Sequence[str],
                  top: int = 4) -> html.Div:
    """One group's profile: its name, colour and size, its short label, its ``top`` distinguishing
    regions (difference of means in % of the vector with the 95 % interval, and the effect size), and its
    prototypes as thumbnails."""
    def pct(v: float) -> str:
        return "—" if not np.isfinite(v) else f"{v * 100:.1f}".replace("-0.0", "0.0")

    rows = [html.Tr([html.Td(str(r["column"])), html.Td(f"{pct(r['difference'])} %"),
                     html.Td(f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}]"),
                     html.Td("—" if not np.isfinite(r["effect_size"]) else f"{r['effect_size']:.2f}")])
            for r in table.head(top).to_dict("records")]
    return html.Div(className="group-profile", style={"borderLeft": f"6px solid {selection.get('colour')}",
                                                      "padding": "4px 8px", "margin": "8px 0"}, children=[
        html.Div([html.B(str(selection.get("name"))), html.Span(f" · {n} images in the filter · "),
                  html.Span(label, className="group-label", style={"fontWeight": "600"})]),
        html.Div(style={"display": "flex", "gap": "16px", "alignItems": "flex-start"}, children=[
            html.Table([html.Thead(html.Tr([html.Th(h) for h in ("region", f"difference ({figures.UNIT})",
                                                                 "95 % interval", "effect size d")])),
                        html.Tbody(rows)], className="trust-table", style={"borderCollapse": "collapse"}),
            html.Div([html.Img(src=thumb_url(i), title=i, alt="no photo", className="prototype",
                               style={"width": "96px", "height": "72px", "objectFit": "cover", "margin": "0 3px",
                                      "border": "1px solid #ccc"})
                      for i in prototype_ids], style={"display": "flex", "flexWrap": "wrap"}),
        ]),
    ])


def heatmap_legend() -> html.Div:
    """The overlay's colour legend: blue (against the target) … clear (0) … red (towards it)."""
    neg, pos = figures.NEG, figures.POS
    return html.Div(className="heatmap-legend", style={"width": "360px", "fontSize": "11px"}, children=[
        html.Div(style={"height": "10px", "borderRadius": "2px", "border": "1px solid #999",
                        "background": f"linear-gradient(to right, {neg}, #ffffff, {pos})"}),
        html.Div(style={"display": "flex", "justifyContent": "space-between"}, children=[
            html.Span("− against the target"), html.Span("0"), html.Span("towards the target +")]),
    ])
