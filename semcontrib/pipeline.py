"""The analysis run under its historical import path: :mod:`semcontrib.engine`, re-exported.

The engine lives in :mod:`semcontrib.engine` (one module per concept; see its docs for the data flow). The
names below stay importable from here for one release, the old private names included. Patch a name where it
is used (``semcontrib.engine.run.load_model``), not here.
"""

from __future__ import annotations

from semcontrib.engine.api import (
    analyze,
    settings_for,
)
from semcontrib.engine.chunk import (
    ChunkResult,
    ChunkState,
    HeadClasses,
    item_or_none,
    labels_or_unassigned,
    region_scores,
    with_stats,
)
from semcontrib.engine.external import (
    MAX_EXTERNAL_BYTES,
    MAX_EXTERNAL_SIDE,
    external_source,
    read_external,
)
from semcontrib.engine.inputs import (
    InputEntry,
    checked_inputs,
    make_image_id,
    read_inputs,
)
from semcontrib.engine.keys import (
    IDENTITY_VERSION,
    IMAGES_VERSION,
    ROWS_VERSION,
    VALIDITY_VERSION,
    chunk_region_key,
    external_key,
    files_digest,
    hash_key,
    images_key,
    inputs_digest,
    members_digest,
    method_key,
    model_fingerprint,
    model_store_key,
    package_versions,
    rows_key,
    run_fingerprint,
    validity_digest,
    validity_key,
)
from semcontrib.engine.options import (
    MAX_CHUNK_SIZE,
    STAGES,
    AnalysisReport,
    RunOptions,
)
from semcontrib.engine.plan import (
    Plan,
    PlannedInput,
    make_plan,
)
from semcontrib.engine.run import (
    AnalysisRun,
    build_method,
    build_source,
    resolved_params,
)
from semcontrib.engine.stages import (
    StageWork,
)
from semcontrib.engine.tables import (
    Generation,
    RunView,
    TableSink,
    typed_rows,
)
from semcontrib.settings import DEFAULT_METHODS, REGION_METHODS
from semcontrib.workers import path_text

# the private names of the single-module pipeline (one release)
_hash = hash_key
_model_fingerprint = model_fingerprint
_validity_digest = validity_digest
_members_digest = members_digest
_versions = package_versions
_HeadClasses = HeadClasses
_with_stats = with_stats
_region_scores = region_scores
_labels_or_unassigned = labels_or_unassigned
_item = item_or_none
_read_external = read_external
_external_source = external_source
_typed = typed_rows
_Generation = Generation
_TableSink = TableSink
_ChunkState = ChunkState
_make_method = build_method
_make_source = build_source
_resolved_params = resolved_params

__all__ = [
    "AnalysisReport",
    "AnalysisRun",
    "ChunkResult",
    "ChunkState",
    "DEFAULT_METHODS",
    "Generation",
    "HeadClasses",
    "IDENTITY_VERSION",
    "IMAGES_VERSION",
    "InputEntry",
    "MAX_CHUNK_SIZE",
    "MAX_EXTERNAL_BYTES",
    "MAX_EXTERNAL_SIDE",
    "Plan",
    "PlannedInput",
    "REGION_METHODS",
    "ROWS_VERSION",
    "RunOptions",
    "RunView",
    "STAGES",
    "StageWork",
    "TableSink",
    "VALIDITY_VERSION",
    "_ChunkState",
    "_Generation",
    "_HeadClasses",
    "_TableSink",
    "_external_source",
    "_hash",
    "_item",
    "_labels_or_unassigned",
    "_make_method",
    "_make_source",
    "_members_digest",
    "_model_fingerprint",
    "_read_external",
    "_region_scores",
    "_resolved_params",
    "_typed",
    "_validity_digest",
    "_versions",
    "_with_stats",
    "analyze",
    "build_method",
    "build_source",
    "checked_inputs",
    "chunk_region_key",
    "external_key",
    "external_source",
    "files_digest",
    "hash_key",
    "images_key",
    "inputs_digest",
    "item_or_none",
    "labels_or_unassigned",
    "make_image_id",
    "make_plan",
    "members_digest",
    "method_key",
    "model_fingerprint",
    "model_store_key",
    "package_versions",
    "path_text",
    "read_external",
    "read_inputs",
    "region_scores",
    "resolved_params",
    "rows_key",
    "run_fingerprint",
    "settings_for",
    "typed_rows",
    "validity_digest",
    "validity_key",
    "with_stats",
]
