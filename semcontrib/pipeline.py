"""The analysis run under its historical import path: :mod:`semcontrib.engine`, re-exported.

The engine lives in :mod:`semcontrib.engine` (one module per concept; see its docs for the data flow). The
names below stay importable from here for one release, the old private names included. Patch a name where it
is used (``semcontrib.engine.run.load_model``), not here. Each name is imported from its module when first
used, so that planning through this module (``read_inputs``, ``make_plan``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers; at run time each is imported when first used
    from semcontrib.engine.api import analyze, settings_for
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
    from semcontrib.engine.rows import typed_rows
    from semcontrib.engine.run import (
        AnalysisRun,
        build_method,
        build_source,
        resolved_params,
    )
    from semcontrib.engine.stages import StageWork
    from semcontrib.engine.tables import (
        Generation,
        RunView,
        TableSink,
    )
    from semcontrib.engine.workers import path_text
    from semcontrib.settings import DEFAULT_METHODS, REGION_METHODS

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

# name -> (module, name there)
_HOME = {
    "analyze": ("semcontrib.engine.api", "analyze"),
    "settings_for": ("semcontrib.engine.api", "settings_for"),
    "ChunkResult": ("semcontrib.engine.chunk", "ChunkResult"),
    "ChunkState": ("semcontrib.engine.chunk", "ChunkState"),
    "HeadClasses": ("semcontrib.engine.chunk", "HeadClasses"),
    "item_or_none": ("semcontrib.engine.chunk", "item_or_none"),
    "labels_or_unassigned": ("semcontrib.engine.chunk", "labels_or_unassigned"),
    "region_scores": ("semcontrib.engine.chunk", "region_scores"),
    "with_stats": ("semcontrib.engine.chunk", "with_stats"),
    "MAX_EXTERNAL_BYTES": ("semcontrib.engine.external", "MAX_EXTERNAL_BYTES"),
    "MAX_EXTERNAL_SIDE": ("semcontrib.engine.external", "MAX_EXTERNAL_SIDE"),
    "external_source": ("semcontrib.engine.external", "external_source"),
    "read_external": ("semcontrib.engine.external", "read_external"),
    "InputEntry": ("semcontrib.engine.inputs", "InputEntry"),
    "checked_inputs": ("semcontrib.engine.inputs", "checked_inputs"),
    "make_image_id": ("semcontrib.engine.inputs", "make_image_id"),
    "read_inputs": ("semcontrib.engine.inputs", "read_inputs"),
    "IDENTITY_VERSION": ("semcontrib.engine.keys", "IDENTITY_VERSION"),
    "IMAGES_VERSION": ("semcontrib.engine.keys", "IMAGES_VERSION"),
    "ROWS_VERSION": ("semcontrib.engine.keys", "ROWS_VERSION"),
    "VALIDITY_VERSION": ("semcontrib.engine.keys", "VALIDITY_VERSION"),
    "chunk_region_key": ("semcontrib.engine.keys", "chunk_region_key"),
    "external_key": ("semcontrib.engine.keys", "external_key"),
    "files_digest": ("semcontrib.engine.keys", "files_digest"),
    "hash_key": ("semcontrib.engine.keys", "hash_key"),
    "images_key": ("semcontrib.engine.keys", "images_key"),
    "inputs_digest": ("semcontrib.engine.keys", "inputs_digest"),
    "members_digest": ("semcontrib.engine.keys", "members_digest"),
    "method_key": ("semcontrib.engine.keys", "method_key"),
    "model_fingerprint": ("semcontrib.engine.keys", "model_fingerprint"),
    "model_store_key": ("semcontrib.engine.keys", "model_store_key"),
    "package_versions": ("semcontrib.engine.keys", "package_versions"),
    "rows_key": ("semcontrib.engine.keys", "rows_key"),
    "run_fingerprint": ("semcontrib.engine.keys", "run_fingerprint"),
    "validity_digest": ("semcontrib.engine.keys", "validity_digest"),
    "validity_key": ("semcontrib.engine.keys", "validity_key"),
    "MAX_CHUNK_SIZE": ("semcontrib.engine.options", "MAX_CHUNK_SIZE"),
    "STAGES": ("semcontrib.engine.options", "STAGES"),
    "AnalysisReport": ("semcontrib.engine.options", "AnalysisReport"),
    "RunOptions": ("semcontrib.engine.options", "RunOptions"),
    "Plan": ("semcontrib.engine.plan", "Plan"),
    "PlannedInput": ("semcontrib.engine.plan", "PlannedInput"),
    "make_plan": ("semcontrib.engine.plan", "make_plan"),
    "AnalysisRun": ("semcontrib.engine.run", "AnalysisRun"),
    "build_method": ("semcontrib.engine.run", "build_method"),
    "build_source": ("semcontrib.engine.run", "build_source"),
    "resolved_params": ("semcontrib.engine.run", "resolved_params"),
    "StageWork": ("semcontrib.engine.stages", "StageWork"),
    "Generation": ("semcontrib.engine.tables", "Generation"),
    "RunView": ("semcontrib.engine.tables", "RunView"),
    "TableSink": ("semcontrib.engine.tables", "TableSink"),
    "typed_rows": ("semcontrib.engine.rows", "typed_rows"),
    "DEFAULT_METHODS": ("semcontrib.settings", "DEFAULT_METHODS"),
    "REGION_METHODS": ("semcontrib.settings", "REGION_METHODS"),
    "path_text": ("semcontrib.engine.workers", "path_text"),
    "_hash": ("semcontrib.engine.keys", "hash_key"),
    "_model_fingerprint": ("semcontrib.engine.keys", "model_fingerprint"),
    "_validity_digest": ("semcontrib.engine.keys", "validity_digest"),
    "_members_digest": ("semcontrib.engine.keys", "members_digest"),
    "_versions": ("semcontrib.engine.keys", "package_versions"),
    "_HeadClasses": ("semcontrib.engine.chunk", "HeadClasses"),
    "_with_stats": ("semcontrib.engine.chunk", "with_stats"),
    "_region_scores": ("semcontrib.engine.chunk", "region_scores"),
    "_labels_or_unassigned": ("semcontrib.engine.chunk", "labels_or_unassigned"),
    "_item": ("semcontrib.engine.chunk", "item_or_none"),
    "_read_external": ("semcontrib.engine.external", "read_external"),
    "_external_source": ("semcontrib.engine.external", "external_source"),
    "_typed": ("semcontrib.engine.rows", "typed_rows"),
    "_Generation": ("semcontrib.engine.tables", "Generation"),
    "_TableSink": ("semcontrib.engine.tables", "TableSink"),
    "_ChunkState": ("semcontrib.engine.chunk", "ChunkState"),
    "_make_method": ("semcontrib.engine.run", "build_method"),
    "_make_source": ("semcontrib.engine.run", "build_source"),
    "_resolved_params": ("semcontrib.engine.run", "resolved_params"),
}


def __getattr__(name: str) -> Any:
    """Import a name from its module on first use (PEP 562) and keep it here."""
    try:
        module, attr = _HOME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


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
