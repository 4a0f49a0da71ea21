"""The engine: images -> predictions, regions, attributions, validity -> a corpus.

Modules, along the flow: ``inputs`` (folders, CSVs, lists -> :class:`InputEntry`), ``plan`` (image ids and
chunks), ``keys`` (every store key), ``options`` (:class:`RunOptions`, :class:`AnalysisReport`), ``chunk`` (a
chunk's data between stages), ``stages`` (predictions, regions, attributions, validity of one chunk), ``run``
(:class:`AnalysisRun`), ``external`` (heatmaps computed elsewhere), ``tables`` (rows, parts, publishing), ``api``
(:func:`analyze`). :mod:`semcontrib.pipeline` re-exports them; :mod:`semcontrib.ray_engine` runs the same stages
on Ray. The names below are imported from their module when first used, so that importing the package (or
planning: ``inputs``, ``plan``, ``keys``, ``options``) never imports torch; ``run``, ``stages`` and ``chunk``
do.

A run first *plans*: every input gets its image id (file stem + content hash; a file whose size and
modification time the plan already records is not read again) and, when it is new, a place in a new
*chunk* of ``chunk_size`` images, in input order. Chunks never change once planned, so a chunk is the
unit of storage (one work file per chunk and stage), of batching (the chunk's images in batches of
``batch_size``, always the same ones) and of resumption: a killed run started again with the same
command ends with exactly the tables of an uninterrupted one.

For each chunk and stage there is one "read it if stored, else compute and store" path: images
(records and display JPEGs) -> predictions (one forward, with class evidence) -> regions (need the
evidence) -> attributions (pixel methods' maps, then their region statistics from the full-precision
maps; region-level methods need the regions) -> validity. Work files are keyed by what they depend on
(model, method and its parameters, target rule, region source with the content of its files and, for
sources that read the classifier's class evidence, the model), so a changed parameter recomputes only
what it affects. Image decoding and region sources run in ``workers`` worker processes, overlapping the
model, which stays in this process (CPU or GPU).

The tables grow by parts: the rows of the chunks computed by a run become new Parquet parts (one per
table, head and method); parts of chunks already published are kept. A rerun with nothing to do reads
only the plan and the manifest (the model is not even loaded) and writes nothing. ``shard=(I, N)``
computes only chunks ``c`` with ``c % N == I - 1`` and publishes nothing; a run without a shard then
computes nothing that the shards stored and publishes the tables.

Every expected failure of one image (unreadable, not an image, a region source that fails on it, a
missing external heatmap) becomes that image's reason; the run goes on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers; at run time each is imported when first used
    from semcontrib.engine.api import (
        analyze,
        settings_for,
    )
    from semcontrib.engine.chunk import (
        ChunkImages,
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
    from semcontrib.engine.stages import (
        StageWork,
    )
    from semcontrib.engine.tables import (
        Generation,
        RunView,
        TableSink,
    )

# name -> the module of this package that defines it
_HOME = {
    "AnalysisReport": "options",
    "AnalysisRun": "run",
    "ChunkImages": "chunk",
    "ChunkResult": "chunk",
    "ChunkState": "chunk",
    "Generation": "tables",
    "HeadClasses": "chunk",
    "IDENTITY_VERSION": "keys",
    "IMAGES_VERSION": "keys",
    "InputEntry": "inputs",
    "MAX_CHUNK_SIZE": "options",
    "MAX_EXTERNAL_BYTES": "external",
    "MAX_EXTERNAL_SIDE": "external",
    "Plan": "plan",
    "PlannedInput": "plan",
    "ROWS_VERSION": "keys",
    "RunOptions": "options",
    "RunView": "tables",
    "STAGES": "options",
    "StageWork": "stages",
    "TableSink": "tables",
    "VALIDITY_VERSION": "keys",
    "analyze": "api",
    "build_method": "run",
    "build_source": "run",
    "checked_inputs": "inputs",
    "chunk_region_key": "keys",
    "external_key": "keys",
    "external_source": "external",
    "files_digest": "keys",
    "hash_key": "keys",
    "images_key": "keys",
    "inputs_digest": "keys",
    "item_or_none": "chunk",
    "labels_or_unassigned": "chunk",
    "make_image_id": "inputs",
    "make_plan": "plan",
    "members_digest": "keys",
    "method_key": "keys",
    "model_fingerprint": "keys",
    "model_store_key": "keys",
    "package_versions": "keys",
    "read_external": "external",
    "read_inputs": "inputs",
    "region_scores": "chunk",
    "resolved_params": "run",
    "rows_key": "keys",
    "run_fingerprint": "keys",
    "settings_for": "api",
    "typed_rows": "rows",
    "validity_digest": "keys",
    "validity_key": "keys",
    "with_stats": "chunk",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562) and keep it here."""
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "AnalysisReport",
    "AnalysisRun",
    "ChunkImages",
    "ChunkResult",
    "ChunkState",
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
    "ROWS_VERSION",
    "RunOptions",
    "RunView",
    "STAGES",
    "StageWork",
    "TableSink",
    "VALIDITY_VERSION",
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
