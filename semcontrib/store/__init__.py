"""The corpus store: the one package that knows the corpus format and reads and writes result files.

Modules: ``schema`` (names, limits, columns, store paths, name checks), ``files`` (atomic writes, bounded reads,
locks), ``parts`` (table parts), ``manifest``, ``generations`` (publishing, compaction), ``codec`` (display maps),
``plan``, ``records`` (work records), ``work`` (the work store), ``reader`` (:class:`Corpus`, which reads the
tables lazily), ``view`` (checked reads of some columns of a part, one view's scores as NumPy).
:mod:`semcontrib.corpus` re-exports every name of them.

Layout of a corpus directory (Parquet tables readable in place by pandas and DuckDB)::

    CORPUS/
      manifest.json            model identity and weight hash, heads and classes, methods and their
                               parameters, region source and vocabulary, the settings of the run (reused
                               by the next run), package versions, store keys, the tables' generation and
                               the list of table parts that make it up
      images.parquet           one row per input image (status ok / skipped, reason, predictions, chunk)
      attributions/head=H/method=M/part-*.parquet
                               one row per (image, head, method): target, logit, map total, IG delta,
                               unassigned statistics, status, validity record
      contributions/head=H/method=M/part-*.parquet
                               long format: one row per (image, head, method, region): raw statistics and
                               the default normalised scores
      .semcontrib.lock         held by the run that writes (shared by the shards of a sharded run)
      .semcontrib.plan.lock    held while the plan is extended
      .semcontrib.tables.lock  held exclusively while tables and manifest are replaced, shared by readers
      .semcontrib.edits.lock   held while the region edits file is changed (semcontrib.edits)
      annotations/edits.json   region edits drawn in the dashboard (COCO; see semcontrib.edits)
      .generations/<id>/       the current generation's images table (the top-level one is a link to it)
      store/                   work files, one per *chunk* and stage, each written atomically:
        plan/part-*.parquet      which images form which chunk (image id, chunk, position, path, size,
                                 mtime, sha256); extended, never rewritten, by later runs
        images/<chunk>.npz       per image: size, colour mode, status, reason and the display JPEG
                                 (upright RGB, long side <= 512 px), packed, uncompressed
        pred/<model>/<chunk>.npz           logits per head, class evidence maps
        regions/<source>-<key>/<chunk>.npz int16 region label maps at model resolution, or failures
        attr/<method>-<key>/<chunk>.npz    per head: target, status, delta, region scores, the region
                                           statistics and a display map
        validity/<key>/<chunk>.npz         per method and head: VALIDITY_VALUES and a note
      dashboard/               the dashboard's cache (embeddings), keyed by what they depend on

A *chunk* is a fixed set of up to ``chunk_size`` images, planned once, in input order, when they first
appear; it is the unit of storage, of batching and of resumption. Table parts are partitioned by head
and method (hive style, so a reader of one head x method reads only that), and each part lists the
chunks whose rows it holds: a later run appends parts for its new chunks and never rebuilds the others.
Read the tables through :class:`Corpus` (or the part list in the manifest): a folder may hold parts of an
unfinished run that the manifest does not list.

Region statistics are computed at compute time from the method's full-precision (float32) map and
stored; the maps themselves are kept only for display, quantised to int8 (``round(127 * map / scale)``,
``scale = max|map|``, about 50 KB per head and method before compression), so the dashboard loses
nothing it can show (a colour map has fewer levels). Heatmaps brought by the user (``--attributions``)
are kept as float64, exactly as given. Region-level methods store their region scores (float64).

Every work file read is validated (readable, the expected arrays with the expected shapes and sizes);
a bad one is logged with its path, deleted, and recomputed by the caller. Tables and manifest form one
*generation*: they are replaced together under an exclusive lock, the manifest last, so a reader never
mixes two runs.
"""

from __future__ import annotations

from semcontrib.store.codec import (
    decode_map,
    encode_map,
)
from semcontrib.store.files import (
    check_table_size,
    edits_lock,
    plan_lock,
    read_npz,
    read_table,
    remove_stale_temporaries,
    remove_temporaries_in,
    run_lock,
    table_generation,
    write_bytes,
    write_json,
    write_npz,
    write_table,
)
from semcontrib.store.generations import (
    COMPACT_MIN_PARTS,
    COMPACT_TARGET_ROWS,
    CompactionReport,
    compact,
    compact_parts,
    compaction_runs,
    publish,
    read_images_table,
)
from semcontrib.store.manifest import (
    make_manifest,
    manifest_parts,
    read_manifest,
    validate_manifest,
)
from semcontrib.store.parts import (
    MAX_CHUNKS,
    Part,
    part_folder,
    part_intact,
    read_part,
    write_part,
)
from semcontrib.store.plan import (
    append_plan,
    read_plan,
)
from semcontrib.store.reader import (
    Corpus,
    add_default_scores,
    open_corpus,
    score_table,
)
from semcontrib.store.records import (
    ChunkAttribution,
    ChunkRegions,
    HeadAttribution,
    ImageRecord,
    PredictionWork,
    RegionWork,
    ValidityWork,
    regions_digest,
)
from semcontrib.store.schema import (
    ATTRIBUTION_COLUMNS,
    CONTRIBUTION_COLUMNS,
    CORPUS_FORMAT,
    EDITS_LOCK,
    GENERATION_META,
    GENERATIONS,
    IMAGE_COLUMNS,
    MANIFEST,
    MAX_ARRAY_BYTES,
    MAX_DISPLAY_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_TABLE_BYTES,
    MAX_WORK_FILE_BYTES,
    PARTITIONED,
    PLAN_COLUMNS,
    PLAN_LOCK,
    RUN_LOCK,
    TABLES,
    TABLES_LOCK,
    VALIDITY_VALUES,
    CorpusBusyError,
    CorpusError,
    StorePaths,
    check_image_id,
    inside,
)
from semcontrib.store.view import (
    ViewScores,
    score_columns,
)
from semcontrib.store.work import (
    WorkStore,
    is_disk_full,
)

__all__ = [
    "ATTRIBUTION_COLUMNS",
    "COMPACT_MIN_PARTS",
    "COMPACT_TARGET_ROWS",
    "CONTRIBUTION_COLUMNS",
    "CORPUS_FORMAT",
    "ChunkAttribution",
    "ChunkRegions",
    "CompactionReport",
    "Corpus",
    "CorpusBusyError",
    "CorpusError",
    "EDITS_LOCK",
    "GENERATIONS",
    "GENERATION_META",
    "HeadAttribution",
    "IMAGE_COLUMNS",
    "ImageRecord",
    "MANIFEST",
    "MAX_ARRAY_BYTES",
    "MAX_CHUNKS",
    "MAX_DISPLAY_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_TABLE_BYTES",
    "MAX_WORK_FILE_BYTES",
    "PARTITIONED",
    "PLAN_COLUMNS",
    "PLAN_LOCK",
    "Part",
    "PredictionWork",
    "RUN_LOCK",
    "RegionWork",
    "StorePaths",
    "TABLES",
    "TABLES_LOCK",
    "VALIDITY_VALUES",
    "ValidityWork",
    "ViewScores",
    "WorkStore",
    "add_default_scores",
    "append_plan",
    "check_image_id",
    "check_table_size",
    "compact",
    "compact_parts",
    "compaction_runs",
    "decode_map",
    "edits_lock",
    "encode_map",
    "inside",
    "is_disk_full",
    "make_manifest",
    "manifest_parts",
    "open_corpus",
    "part_folder",
    "part_intact",
    "plan_lock",
    "publish",
    "read_images_table",
    "read_manifest",
    "read_npz",
    "read_part",
    "read_plan",
    "read_table",
    "regions_digest",
    "remove_stale_temporaries",
    "remove_temporaries_in",
    "run_lock",
    "score_columns",
    "score_table",
    "table_generation",
    "validate_manifest",
    "write_bytes",
    "write_json",
    "write_npz",
    "write_part",
    "write_table",
]
