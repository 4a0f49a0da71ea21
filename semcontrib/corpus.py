"""The corpus store: the one module that knows the corpus format and reads and writes result files.

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

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import uuid
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcontrib.contributions import BASES, NORMALISATIONS, RegionStats, normalise
from semcontrib.regions import RegionMap

logger = logging.getLogger(__name__)

CORPUS_FORMAT = "semcontrib-corpus/2"
MANIFEST = "manifest.json"
TABLES = ("images", "attributions", "contributions")
PARTITIONED = ("attributions", "contributions")  # hive-partitioned by head and method
RUN_LOCK = ".semcontrib.lock"
PLAN_LOCK = ".semcontrib.plan.lock"
TABLES_LOCK = ".semcontrib.tables.lock"
EDITS_LOCK = ".semcontrib.edits.lock"
GENERATION_META = b"semcontrib.generation"

# Upper bounds for anything read from a corpus (a stranger's corpus may be hostile).
MAX_ARRAY_BYTES = 256 * 2**20          # one array inside a work file
MAX_WORK_FILE_BYTES = 1024 * 2**20     # one work file (one chunk of one stage)
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_DISPLAY_BYTES = 8 * 2**20          # one display JPEG
MAX_TABLE_BYTES = 16 * 2**30           # one table or part, uncompressed (a 1M-image part is about 1 GB)

# Columns of the tables (their one definition; the pipeline builds rows with exactly these).
IMAGE_COLUMNS = ("image_id", "path", "sha256", "width", "height", "status", "reason", "original_mode", "chunk")
# The numbers of a validity record (semcontrib.validity): faithfulness, MoRF and LeRF deletion AUCs, the
# insertion AUC (equal to the LeRF one) and the random-order reference of both AUCs.
VALIDITY_VALUES = ("faithfulness", "deletion_auc", "insertion_auc", "lerf_auc", "random_auc")
ATTRIBUTION_COLUMNS = ("image_id", "head", "method", "target", "target_index", "logit", "status", "delta",
                       "total", "scale", "unassigned_n", "unassigned_sum", "unassigned_pos", "unassigned_neg",
                       "lrp_ratio", *VALIDITY_VALUES, "validity_note")
CONTRIBUTION_COLUMNS = ("image_id", "head", "method", "target", "target_index", "region", "region_index",
                        "n_pixels", "sum", "pos_sum", "neg_sum")
PLAN_COLUMNS = ("image_id", "chunk", "position", "path", "size", "mtime_ns", "sha256")

_KEY = re.compile(r"^[0-9a-f]{16}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PART = re.compile(r"^(attributions|contributions)/head=[^/]{1,400}/method=[A-Za-z0-9_.%-]{1,200}/"
                   r"part-[0-9a-f]{32}\.parquet$")


class CorpusError(ValueError):
    """A directory is not a readable corpus, or one of its files is malformed."""


class CorpusBusyError(CorpusError):
    """Another run holds the corpus's writer lock."""


# --------------------------------------------------------------------------- atomic writes


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(Path(path), (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], compress: bool = True) -> None:
    buf = io.BytesIO()
    save = np.savez_compressed if compress else np.savez
    save(buf, **dict(arrays))  # type: ignore[arg-type]  # numpy stubs: allow_pickle kw
    _atomic_write(Path(path), buf.getvalue())


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
        np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(member)
    return tuple(shape), dtype


def read_npz(path: Path, max_array_bytes: int = MAX_ARRAY_BYTES, keys: Sequence[str] | None = None
             ) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (all, or those named in ``keys`` that it holds), never unpickling
    and never allocating more than the caps.

    Each member's ``.npy`` header (shape and dtype) is read first and checked against
    ``max_array_bytes`` and against the bytes it can really hold, and the arrays together against
    ``MAX_WORK_FILE_BYTES``, before anything is allocated. Raises ``CorpusError`` naming the file
    when it is unreadable, truncated, not an npz, holds an object array or claims too much.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_WORK_FILE_BYTES:
            raise CorpusError(f"{path}: work file larger than {MAX_WORK_FILE_BYTES} bytes")
        with zipfile.ZipFile(path) as zf:
            total = 0
            for info in zf.infolist():
                with zf.open(info) as member:
                    shape, dtype = _npy_header(member)
                if dtype.hasobject:
                    raise CorpusError(f"{path}: array {info.filename} holds Python objects")
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                total += nbytes
                if nbytes > max_array_bytes or nbytes > info.file_size or total > MAX_WORK_FILE_BYTES:
                    raise CorpusError(f"{path}: array {info.filename} claims {nbytes} bytes "
                                      f"({info.file_size} stored), over the {max_array_bytes}-byte limit")
        with np.load(path, allow_pickle=False) as z:
            names = z.files if keys is None else [k for k in keys if k in z.files]
            return {k: z[k] for k in names}
    except CorpusError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError, TypeError,
            MemoryError, SyntaxError, zlib.error) as exc:
        raise CorpusError(f"{path}: unreadable work file ({type(exc).__name__}: {exc})") from exc


def write_table(path: Path, df: pd.DataFrame, generation: str = "") -> None:
    """Write a Parquet table atomically, with the generation id (if any) in its metadata."""
    _write_arrow(path, pa.Table.from_pandas(df, preserve_index=False), generation)


def _write_arrow(path: Path, table: pa.Table, generation: str = "") -> None:
    meta = dict(table.schema.metadata or {})
    meta[GENERATION_META] = generation.encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    _atomic_write(Path(path), buf.getvalue())


def check_table_size(path: Path) -> None:
    """``CorpusError`` when a Parquet file claims more than ``MAX_TABLE_BYTES`` uncompressed (its footer
    is read, nothing else), so a hostile file cannot make a reader allocate without bound."""
    try:
        meta = pq.read_metadata(path)
        claimed = sum(meta.row_group(k).total_byte_size for k in range(meta.num_row_groups))
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable table ({exc}); run `semcontrib analyze` again") from exc
    if claimed > MAX_TABLE_BYTES or Path(path).stat().st_size > MAX_TABLE_BYTES:
        raise CorpusError(f"{path}: table claims {claimed} bytes, over the {MAX_TABLE_BYTES}-byte limit")


def read_table(path: Path) -> tuple[pd.DataFrame, str]:
    """A table and its generation id (``CorpusError`` when it cannot be read)."""
    check_table_size(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable table ({exc}); run `semcontrib analyze` again to rebuild it") from exc
    gen = (table.schema.metadata or {}).get(GENERATION_META, b"").decode(errors="replace")
    return table.to_pandas(), gen


def table_generation(path: Path) -> str | None:
    """The generation id in a table's metadata (only its footer is read), or None when unreadable."""
    try:
        return (pq.read_schema(path).metadata or {}).get(GENERATION_META, b"").decode(errors="replace")
    except (OSError, pa.ArrowException, ValueError):
        return None


def write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(Path(path), data)


def remove_stale_temporaries(root: Path) -> int:
    """Delete ``.*.tmp`` files a killed writer left behind in ``root``, its store and its table folders;
    return how many. Call it only while holding the run lock exclusively (no other writer is active)."""
    n = 0
    root = Path(root)
    for p in [*root.glob(".*.tmp"), *(root / "store").rglob(".*.tmp"), *(root / GENERATIONS).rglob(".*.tmp"),
              *(q for t in PARTITIONED for q in (root / t).rglob(".*.tmp"))]:
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def run_lock(root: Path, wait: bool = True, poll_s: float = 0.5, shared: bool = False) -> Iterator[None]:
    """Hold the corpus's writer lock for one run (``shared``: one shard of a sharded run).

    A second run waits (logging once that it does) or, with ``wait=False``, raises
    :class:`CorpusBusyError` at once. Shards hold the lock shared, so the shards of one analysis run
    together while a whole run waits for them (and they for it). The lock is an ``fcntl`` lock: it is
    released when the process ends, however it ends, so a killed run never leaves the corpus locked.
    """
    root.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(root / RUN_LOCK, "a+") as f:
        try:
            fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise CorpusBusyError(f"{root} is being written by another semcontrib run; "
                                      "wait for it, or run without --no-wait to queue behind it") from None
            logger.warning("%s is being written by another run; waiting for it to finish", root)
            while True:
                try:
                    fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def plan_lock(root: Path) -> Iterator[None]:
    """Held (exclusively, briefly) while a run reads and extends the plan, so shards agree on it."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / PLAN_LOCK, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def edits_lock(root: Path) -> Iterator[None]:
    """Held (exclusively, briefly) while the region edits file (``annotations/edits.json``) is read,
    changed and replaced (:mod:`semcontrib.edits`); an ``fcntl`` lock, released however the holder ends."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / EDITS_LOCK, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def remove_temporaries_in(folder: Path) -> int:
    """Delete the ``.*.tmp`` files :func:`_atomic_write` left in ``folder`` when its writer was killed;
    return how many. Call it only while holding the lock that guards the folder's writers."""
    n = 0
    for p in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


@contextlib.contextmanager
def _tables_lock(root: Path, exclusive: bool) -> Iterator[None]:
    path = root / TABLES_LOCK
    try:
        f = open(path, "a+") if exclusive or os.access(root, os.W_OK) else None
    except OSError:
        f = None  # a read-only corpus: nobody can be writing it
    if f is None:
        yield
        return
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


GENERATIONS = ".generations"


# --------------------------------------------------------------------------- table parts and publishing


@dataclass(frozen=True)
class Part:
    """One Parquet file of a partitioned table: its (head, method) partition, the key of what its rows
    were computed from, and the chunks whose rows it holds (in order)."""

    table: str
    head: str
    method: str
    file: str
    key: str
    chunks: tuple[int, ...]
    rows: int

    def to_record(self) -> dict[str, Any]:
        return {"table": self.table, "head": self.head, "method": self.method, "file": self.file,
                "key": self.key, "chunks": _ranges(self.chunks), "rows": self.rows}

    @classmethod
    def from_record(cls, rec: Any, where: Path) -> Part:
        try:
            part = cls(str(rec["table"]), str(rec["head"]), str(rec["method"]), str(rec["file"]),
                       _check_key(str(rec["key"])), _unranges(rec["chunks"]), int(rec["rows"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusError(f"{where}: malformed part record ({exc})") from None
        if part.table not in PARTITIONED or not _PART.match(part.file) or ".." in part.file.split("/"):
            raise CorpusError(f"{where}: malformed part record for {part.file!r}")
        return part


def _ranges(chunks: Sequence[int]) -> list[list[int]]:
    """Sorted chunk indices as ``[first, last]`` runs (short manifests at a million images)."""
    out: list[list[int]] = []
    for c in chunks:
        if out and c == out[-1][1] + 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


MAX_CHUNKS = 1_000_000  # chunk indices one part may list (128M images at the default chunk size)


def _unranges(runs: Any) -> tuple[int, ...]:
    pairs = [(int(a), int(b)) for a, b in runs]
    if any(not 0 <= a <= b for a, b in pairs) or sum(b - a + 1 for a, b in pairs) > MAX_CHUNKS:
        raise ValueError(f"bad chunk ranges (more than {MAX_CHUNKS} chunks, or reversed)")
    out: list[int] = []
    for a, b in pairs:
        out.extend(range(a, b + 1))
    return tuple(out)


def part_folder(table: str, head: str, method: str) -> str:
    """The hive folder of one partition (names URI-escaped, as pyarrow and DuckDB decode them)."""
    return f"{table}/head={quote(head, safe='')}/method={quote(_check_name(method), safe='')}"


def write_part(root: Path, table: str, head: str, method: str, df: pd.DataFrame, key: str,
               chunks: Sequence[int]) -> Part:
    """Write one new part (rows without the partition columns) atomically; return its record."""
    if table not in PARTITIONED:
        raise ValueError(f"table must be one of {PARTITIONED}, got {table!r}")
    rel = f"{part_folder(table, head, method)}/part-{uuid.uuid4().hex}.parquet"
    write_table(Path(root) / rel, df.drop(columns=["head", "method"], errors="ignore").reset_index(drop=True))
    return Part(table, head, method, rel, key, tuple(chunks), len(df))


def read_part(root: Path, part: Part) -> pd.DataFrame:
    """One part's rows with its ``head`` and ``method`` columns restored."""
    return _read_part_arrow(root, part).to_pandas()


def part_intact(root: Path, part: Part) -> bool:
    """Whether a listed part is there, inside the corpus, readable (its Parquet footer) and of the
    recorded length."""
    if not inside(root, Path(root) / part.file):
        logger.warning("table part %s leads outside the corpus; its rows will be rebuilt", part.file)
        return False
    try:
        return pq.read_metadata(Path(root) / part.file).num_rows == part.rows
    except (OSError, pa.ArrowException, ValueError) as exc:
        logger.warning("table part %s is damaged (%s); its rows will be rebuilt", part.file, exc)
        return False


def _read_part_arrow(root: Path, part: Part) -> pa.Table:
    """One part as an Arrow table with its ``head`` and ``method`` columns (text, from the partition)."""
    path = Path(root) / part.file
    if not inside(root, path):
        raise CorpusError(f"{path}: a link that leads outside the corpus; run `semcontrib analyze` again")
    check_table_size(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable table part ({exc}); run `semcontrib analyze` again") from exc
    if table.num_rows != part.rows:
        raise CorpusError(f"{path}: {table.num_rows} rows, the manifest says {part.rows}; "
                          "run `semcontrib analyze` again")
    zeros = pa.array(np.zeros(table.num_rows, np.int32))
    for k, (name, value) in enumerate((("head", part.head), ("method", part.method)), start=1):
        column = pa.DictionaryArray.from_arrays(zeros, pa.array([value])).cast(pa.string())
        table = table.add_column(min(k, table.num_columns), name, column)
    return table


def publish(root: Path, images: pd.DataFrame, parts: Sequence[Part], manifest: Mapping[str, Any]) -> str:
    """Make ``images`` and ``parts`` (already written) with ``manifest`` the corpus's generation.

    The images table is first written complete into ``.generations/<id>/``; the manifest, written next,
    makes that generation (with its list of parts) current; then the top-level ``images.parquet`` is
    replaced by a hard link to it, and older generations and parts no longer listed are removed. A crash
    at any point leaves a readable corpus: before the manifest, the old generation whole; after it, the
    new one (readers fall back to ``.generations/<id>/`` for a top-level table not yet replaced).
    Readers (:meth:`Corpus.open`) take the same lock shared, so they never see a half-replaced corpus.
    """
    root = Path(root)
    generation = f"{time.time_ns():x}-{os.getpid():x}"
    gen_dir = root / GENERATIONS / generation
    with _tables_lock(root, exclusive=True):
        write_table(gen_dir / "images.parquet", images, generation)
        write_json(root / MANIFEST, {**manifest, "generation": generation,
                                     "parts": [p.to_record() for p in parts]})
        _link_replace(gen_dir / "images.parquet", root / "images.parquet")
        for old in (root / GENERATIONS).iterdir():
            if old.name != generation:
                _remove_tree(old)
        listed = {root / p.file for p in parts}
        for t in PARTITIONED:
            for f in (root / t).rglob("part-*.parquet") if (root / t).is_dir() else ():
                if f not in listed:
                    with contextlib.suppress(OSError):
                        f.unlink()
            for d in sorted((root / t).rglob("*"), reverse=True) if (root / t).is_dir() else ():
                with contextlib.suppress(OSError):
                    d.rmdir()  # only empty partition folders go
        for stale in ("attributions.parquet", "contributions.parquet"):  # a format-1 corpus's tables
            (root / stale).unlink(missing_ok=True)
    return generation


# --------------------------------------------------------------------------- compaction

COMPACT_MIN_PARTS = 16            # a partition with more parts than this is compacted when a run publishes
COMPACT_TARGET_ROWS = 2_000_000   # rows a merged part holds at most (a larger part stays as it is)


def compaction_runs(parts: Sequence[Part], min_parts: int | None = None,
                    target_rows: int | None = None) -> list[list[int]]:
    """Which parts to merge: runs of list positions, each to become one part.

    Only partitions (table, head, method, key) with more than ``min_parts`` parts are compacted. A
    run is a stretch of consecutive parts of one partition, gathered greedily while their rows stay
    within ``target_rows``; runs of one part are left out. Merging consecutive parts keeps every
    table's row order, and the greedy rule is idempotent (two neighbouring runs hold more than
    ``target_rows`` rows together), so a compacted corpus is not compacted again. Defaults:
    ``COMPACT_MIN_PARTS`` and ``COMPACT_TARGET_ROWS``.
    """
    min_parts = COMPACT_MIN_PARTS if min_parts is None else min_parts
    target_rows = COMPACT_TARGET_ROWS if target_rows is None else target_rows
    if min_parts < 1 or target_rows < 1:
        raise ValueError(f"min_parts and target_rows must be at least 1, got {min_parts} and {target_rows}")
    group = [(p.table, p.head, p.method, p.key) for p in parts]
    crowded = {g for g, n in Counter(group).items() if n > min_parts}
    runs: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for k, p in enumerate(parts):
        if current and group[current[0]] == group[k] and rows + p.rows <= target_rows:
            current.append(k)
            rows += p.rows
            continue
        if len(current) > 1:
            runs.append(current)
        current, rows = ([k], p.rows) if group[k] in crowded else ([], 0)
    if len(current) > 1:
        runs.append(current)
    return runs


def compact_parts(root: Path, parts: Sequence[Part], min_parts: int | None = None,
                  target_rows: int | None = None) -> list[Part]:
    """``parts`` with each run of :func:`compaction_runs` replaced by one new part that holds the run's rows
    in order (written atomically). Nothing is removed: the merged parts' files go when a publish makes
    a generation that no longer lists them, so a crash before that leaves the current generation whole."""
    root = Path(root)
    out = list(parts)
    for run in reversed(compaction_runs(parts, min_parts, target_rows)):
        members = [parts[k] for k in run]
        tables = []
        for p in members:
            path = root / p.file
            if not inside(root, path):
                raise CorpusError(f"{path}: a link that leads outside the corpus; run `semcontrib analyze` again")
            check_table_size(path)
            try:
                t = pq.read_table(path)
            except (OSError, pa.ArrowException, ValueError) as exc:
                raise CorpusError(f"{path}: unreadable table part ({exc}); run `semcontrib analyze` again") from exc
            if t.num_rows != p.rows:
                raise CorpusError(f"{path}: {t.num_rows} rows, the manifest says {p.rows}")
            tables.append(t)
        first = members[0]
        rel = f"{part_folder(first.table, first.head, first.method)}/part-{uuid.uuid4().hex}.parquet"
        _write_arrow(root / rel, pa.concat_tables(tables, promote_options="permissive"))
        chunks = tuple(sorted({c for p in members for c in p.chunks}))
        out[run[0]:run[-1] + 1] = [Part(first.table, first.head, first.method, rel, first.key, chunks,
                                        sum(p.rows for p in members))]
    return out


@dataclass(frozen=True)
class CompactionReport:
    """What :func:`compact` did: parts listed before and after, and the new generation (None: unchanged)."""

    parts_before: int
    parts_after: int
    generation: str | None


def compact(root: str | Path, target_rows: int = COMPACT_TARGET_ROWS, wait: bool = True) -> CompactionReport:
    """Merge the small parts of every partition of a corpus (``semcontrib compact CORPUS``).

    Holds the corpus's run lock (so no analysis runs meanwhile), writes the merged parts, then
    publishes them as a new generation with the same images table and manifest fields: readers see
    the old generation or the new one, whole, and the tables are equal (same rows, same order)."""
    root = Path(root)
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise CorpusError(f"{root} is not a corpus (no {MANIFEST}); run `semcontrib analyze` first")
    with run_lock(root, wait=wait):
        remove_stale_temporaries(root)
        manifest = read_manifest(root)
        if manifest is None:
            raise CorpusError(f"{root}: the manifest went away while compacting")
        parts = manifest_parts(manifest, root / MANIFEST)
        merged = compact_parts(root, parts, min_parts=1, target_rows=target_rows)
        if [p.file for p in merged] == [p.file for p in parts]:
            return CompactionReport(len(parts), len(parts), None)
        with _tables_lock(root, exclusive=False):
            images = read_images_table(root, manifest)
        rest = {k: v for k, v in manifest.items() if k not in ("generation", "parts")}
        generation = publish(root, images, merged, rest)
    logger.info("compacted %s: %d table parts into %d", root, len(parts), len(merged))
    return CompactionReport(len(parts), len(merged), generation)


def _link_replace(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` atomically (a hard link, or a copy where links fail)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def _remove_tree(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        with contextlib.suppress(OSError):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    with contextlib.suppress(OSError):
        path.rmdir()


# --------------------------------------------------------------------------- map encoding


def encode_map(values: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """float HxW (finite) -> (int8 HxW in [-127, 127], float32 scale = max|map|): the display form."""
    scale = np.float32(np.max(np.abs(values))) if values.size else np.float32(0)
    if scale == 0 or not np.isfinite(scale):
        return np.zeros(values.shape, np.int8), np.float32(0 if scale == 0 else scale)
    q = np.rint(values.astype(np.float64) / float(scale) * 127.0)
    return np.clip(q, -127, 127).astype(np.int8), scale


def decode_map(q: np.ndarray, scale: float) -> np.ndarray:
    """The display map, float64 HxW (within ``scale / 254`` of the computed map)."""
    return q.astype(np.float64) * (float(np.float32(scale)) / 127.0)


# --------------------------------------------------------------------------- store paths


@dataclass(frozen=True)
class StorePaths:
    """Where one corpus keeps its work files (see the module docs). Every name part is checked."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def plan(self) -> Path:
        return self.store / "plan"

    def images(self, chunk: int) -> Path:
        return self.store / "images" / _chunk_file(chunk)

    def pred(self, model_key: str, chunk: int) -> Path:
        return self.store / "pred" / _check_key(model_key) / _chunk_file(chunk)

    def attr(self, method: str, key: str, chunk: int) -> Path:
        return self.store / "attr" / f"{_check_name(method)}-{_check_key(key)}" / _chunk_file(chunk)

    def regions(self, source: str, key: str, chunk: int) -> Path:
        return self.store / "regions" / f"{_check_name(source)}-{_check_key(key)}" / _chunk_file(chunk)

    def validity(self, key: str, chunk: int) -> Path:
        return self.store / "validity" / _check_key(key) / _chunk_file(chunk)

    @property
    def dashboard_cache(self) -> Path:
        """The dashboard's own cache folder (embeddings); never read by the analysis."""
        return self.root / "dashboard"


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) whose resolved location lies inside ``root``: the
    corpus never writes links, so one in a corpus someone gives you is not followed."""
    try:
        return not path.is_symlink() and Path(root).resolve() in path.resolve().parents
    except (OSError, RuntimeError):
        return False


def _chunk_file(chunk: int) -> str:
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or not 0 <= int(chunk) < 10**9:
        raise CorpusError(f"invalid chunk index {chunk!r}")
    return f"{int(chunk):06d}.npz"


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise CorpusError(f"invalid store key {key!r} (16 hex digits expected)")
    return key


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CorpusError(f"invalid name {name!r} in the corpus")
    return name


def check_image_id(image_id: str) -> str:
    """An image id is safe as a file name: letters, digits, ``_ . -``, not starting with a dot."""
    if not isinstance(image_id, str) or not _ID.match(image_id):
        raise ValueError(f"invalid image id {image_id!r}")
    return image_id


# --------------------------------------------------------------------------- the plan


def read_plan(root: Path) -> pd.DataFrame:
    """Every planned image (columns ``PLAN_COLUMNS``; an image id may appear again with a newer path,
    size or mtime, the last row being the latest). Unreadable parts raise ``CorpusError``."""
    folder = StorePaths(Path(root)).plan
    frames = []
    for f in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else ():
        if not inside(root, f):
            raise CorpusError(f"{f}: a link that leads outside the corpus; analyse into a new corpus")
        check_table_size(f)
        try:
            df = pq.read_table(f, columns=list(PLAN_COLUMNS)).to_pandas()
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise CorpusError(f"{f}: unreadable plan part ({exc}); the corpus's plan is damaged, "
                              "analyse into a new corpus") from exc
        frames.append(df)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("image_id", "path", "sha256") else np.int64)
                             for c in PLAN_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def append_plan(root: Path, rows: pd.DataFrame) -> None:
    """Add rows to the plan (call it while holding :func:`plan_lock`). Parts are named in order."""
    if rows.empty:
        return
    folder = StorePaths(Path(root)).plan
    n = len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0
    write_table(folder / f"part-{n:06d}-{uuid.uuid4().hex[:8]}.parquet",
                rows[list(PLAN_COLUMNS)].reset_index(drop=True))


# --------------------------------------------------------------------------- work records


@dataclass(frozen=True)
class ImageRecord:
    """What a run learnt about one image file, so a rerun need not decode it again.

    ``status`` is ``ok`` or ``skipped`` with ``reason`` saying why (unreadable, not an image)."""

    width: int
    height: int
    original_mode: str
    status: str = "ok"
    reason: str = ""


@dataclass(frozen=True)
class PredictionWork:
    """The model's outputs for one image: logits per head (float32) and class evidence (G×h×w) or None."""

    logits: Mapping[str, np.ndarray]
    evidence: np.ndarray | None = None


@dataclass(frozen=True)
class HeadAttribution:
    """One head's attribution of one image.

    Attributes
    ----------
    target : class index explained.
    status : ``ok``, ``nonfinite`` (the method gave NaN/Inf), or ``missing: REASON`` (external maps).
    values : float64 S×S map (pixel methods, external heatmaps) or the display map (region methods);
        None unless status is ok (and None when read back without maps).
    scale : the display encoding's scale (NaN for maps stored exactly).
    delta : the method's residual (IG convergence delta, Shapley efficiency residual), or None.
    scores : float64 K region scores of a region-level method, or None for pixel methods.
    stats : the region statistics (None unless status is ok).
    """

    target: int
    status: str
    values: np.ndarray | None = None
    scale: float = float("nan")
    delta: float | None = None
    scores: np.ndarray | None = None
    stats: RegionStats | None = None


@dataclass(frozen=True)
class RegionWork:
    """A region map at model resolution (int16 S×S, -1 unassigned), or why there is none (``error``);
    with a map, ``error`` is its note (:attr:`semcontrib.regions.RegionMap.note`, e.g. "no face found")."""

    labels: np.ndarray | None
    error: str = ""
    permanent: bool = True


@dataclass(frozen=True)
class ChunkRegions:
    """The region maps of one chunk's images, and a digest of them that later stages record."""

    works: Mapping[str, RegionWork]
    digest: str


@dataclass(frozen=True)
class ChunkAttribution:
    """One method's attributions of one chunk: image id -> head -> :class:`HeadAttribution`, the digest of
    the region maps its statistics were computed with, and (external heatmaps) each source file's sha256."""

    works: Mapping[str, Mapping[str, HeadAttribution]]
    regions_digest: str
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidityWork:
    """The validity record of one image: (method, head) -> (*the VALIDITY_VALUES, note)."""

    records: Mapping[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)


def regions_digest(key: str, works: Mapping[str, RegionWork]) -> str:
    """A short hash of a chunk's region maps (ids, labels, failures) under the region key ``key``."""
    h = hashlib.sha256(key.encode())
    for image_id in sorted(works):
        w = works[image_id]
        h.update(image_id.encode() + b"\0")
        if w.labels is not None:
            h.update(np.ascontiguousarray(w.labels, np.int16).tobytes())
        else:
            h.update(f"error:{w.error}:{w.permanent}".encode())
    return h.hexdigest()[:16]


def _ids(z: Mapping[str, np.ndarray], name: str = "ids") -> list[str]:
    a = z[name]
    if a.ndim != 1 or a.dtype.kind != "U":
        raise ValueError(f"{name} must be a 1-d text array, got {a.dtype} {a.shape}")
    return [check_image_id(str(x)) for x in a]


def _text(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=str) if len(values) else np.zeros(0, "<U1")


def _rows(z: Mapping[str, np.ndarray], key: str, n: int, kind: type, tail: tuple[int, ...] = ()) -> np.ndarray:
    a = z[key]
    if a.shape != (n, *tail) or not np.issubdtype(a.dtype, kind):
        raise ValueError(f"{key} is {a.dtype} {a.shape}, expected {kind.__name__} {(n, *tail)}")
    return a


class WorkStore:
    """Reads and writes the work files of one corpus, one file per chunk and stage; every read
    validated, bad files deleted.

    ``size`` is the model's input resolution S; reads return None for a missing file and for a bad
    one (which is logged with its path and, unless ``readonly``, deleted so the caller recomputes it).
    """

    def __init__(self, root: Path, size: int, readonly: bool = False) -> None:
        self.paths = StorePaths(Path(root))
        self.size = size
        self.readonly = readonly
        self.discarded: list[str] = []

    def _discard(self, path: Path, why: str) -> None:
        self.discarded.append(str(path))
        if self.readonly:  # a reader never changes the corpus
            logger.warning("bad work file %s (%s); run `semcontrib analyze` again to recompute it", path, why)
            return
        logger.warning("discarding bad work file %s (%s); it will be recomputed", path, why)
        with contextlib.suppress(OSError):
            path.unlink()

    def intact(self, path: Path, ids: Sequence[str]) -> bool:
        """Whether a work file exists, its arrays' headers read and it holds the images ``ids`` (cheap:
        only its ``ids`` array is loaded); a file that does not is discarded."""
        z = self._read(path, keys=["ids"])
        if z is None:
            return False
        try:
            if not set(ids) <= set(_ids(z)):
                raise ValueError("work of other images")
            return True
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return False

    def _read(self, path: Path, keys: Sequence[str] | None = None) -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        if not inside(self.paths.root, path):
            self._discard(path, "a link that leads outside the corpus")
            return None
        try:
            return read_npz(path, keys=keys)
        except CorpusError as exc:
            self._discard(path, str(exc).split(": ", 1)[-1])
            return None

    # ---- images (records and packed display JPEGs)
    def read_images(self, chunk: int, ids: Sequence[str]) -> dict[str, ImageRecord] | None:
        """The records of a chunk's images (None when missing, bad, or not for exactly ``ids``)."""
        path = self.paths.images(chunk)
        z = self._read(path, keys=["ids", "size", "mode", "status", "reason"])
        if z is None:
            return None
        try:
            got = _ids(z)
            if got != list(ids):
                raise ValueError("images of another plan")
            n = len(got)
            size = _rows(z, "size", n, np.integer, (2,))
            mode, status, reason = (_rows(z, k, n, np.str_) for k in ("mode", "status", "reason"))
            return {i: ImageRecord(int(size[k, 0]), int(size[k, 1]), str(mode[k]), str(status[k]), str(reason[k]))
                    for k, i in enumerate(got)}
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None

    def write_images(self, chunk: int, records: Mapping[str, ImageRecord], displays: Mapping[str, bytes]) -> None:
        """Store a chunk's image records (in order) and display JPEGs (one per image with status ok)."""
        ids = list(records)
        blobs = [displays.get(i, b"") for i in ids]
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        write_npz(self.paths.images(chunk), {
            "ids": _text(ids),
            "size": np.array([[r.width, r.height] for r in records.values()], np.int64).reshape(-1, 2),
            "mode": _text([r.original_mode for r in records.values()]),
            "status": _text([r.status for r in records.values()]),
            "reason": _text([r.reason for r in records.values()]),
            "offsets": offsets, "display": np.frombuffer(b"".join(blobs), np.uint8)}, compress=False)

    def read_display(self, chunk: int, image_id: str) -> bytes | None:
        """One image's display JPEG, read without loading the chunk's other images (None when absent)."""
        path = self.paths.images(chunk)
        if path.is_symlink() or not path.is_file():
            return None
        try:
            z = read_npz(path, keys=["ids", "offsets"])
            ids = _ids(z)
            k = ids.index(check_image_id(image_id))
            offsets = _rows(z, "offsets", len(ids) + 1, np.integer)
            start, stop = int(offsets[k]), int(offsets[k + 1])
            if not 0 <= start <= stop or stop - start > MAX_DISPLAY_BYTES:
                return None
            with zipfile.ZipFile(path) as zf, zf.open("display.npy") as member:
                shape, dtype = _npy_header(member)
                if dtype != np.uint8 or len(shape) != 1 or stop > shape[0]:
                    return None
                member.seek(member.tell() + start)
                data = member.read(stop - start)
            return data if len(data) == stop - start and data else None
        except (CorpusError, OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            logger.warning("cannot read the display image of %s from %s: %s", image_id, path, exc)
            return None

    # ---- predictions
    def read_predictions(self, model_key: str, chunk: int, heads: Mapping[str, int]
                         ) -> dict[str, PredictionWork] | None:
        """``heads``: head name -> number of classes (the shapes a valid file must have)."""
        path = self.paths.pred(model_key, chunk)
        z = self._read(path)
        if z is None:
            return None
        try:
            ids = _ids(z)
            n = len(ids)
            if n == 0:
                return {}
            logits = {h: _rows(z, f"logits/{h}", n, np.floating, (c,)) for h, c in heads.items()}
            if not all(np.all(np.isfinite(v)) for v in logits.values()):
                raise ValueError("non-finite logits")
            ev = z.get("evidence")
            if ev is not None and (ev.ndim != 4 or ev.shape[0] != n or min(ev.shape[1:], default=0) < 1
                                   or not np.issubdtype(ev.dtype, np.floating) or not np.all(np.isfinite(ev))):
                raise ValueError("malformed class evidence")
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None
        return {i: PredictionWork({h: logits[h][k] for h in heads}, None if ev is None else ev[k])
                for k, i in enumerate(ids)}

    def write_predictions(self, model_key: str, chunk: int, works: Mapping[str, PredictionWork]) -> None:
        ids = list(works)
        arrays: dict[str, np.ndarray] = {"ids": _text(ids)}
        if ids:
            first = works[ids[0]]
            for h in first.logits:
                arrays[f"logits/{h}"] = np.stack([np.asarray(works[i].logits[h], np.float32) for i in ids])
            if first.evidence is not None:
                arrays["evidence"] = np.stack([np.asarray(works[i].evidence, np.float32) for i in ids])
        write_npz(self.paths.pred(model_key, chunk), arrays)

    # ---- regions
    def read_regions(self, source: str, key: str, chunk: int, n_regions: int, labels: bool = True
                     ) -> ChunkRegions | None:
        """A chunk's region maps (``labels=False``: the failures and digest only, no maps loaded)."""
        path = self.paths.regions(source, key, chunk)
        want = None if labels else ["ids", "failed", "error", "permanent", "digest"]
        z = self._read(path, keys=want)
        if z is None:
            return None
        try:
            ids = _ids(z)
            n = len(ids)
            failed = _rows(z, "failed", n, np.bool_)
            error = _rows(z, "error", n, np.str_)
            permanent = _rows(z, "permanent", n, np.bool_)
            digest = str(_scalar(z, "digest", np.str_))
            works: dict[str, RegionWork] = {}
            if labels:
                lab = _rows(z, "labels", int((~failed).sum()), np.integer, (self.size, self.size))
                if lab.size and (lab.min() < -1 or lab.max() >= n_regions):
                    raise ValueError("region labels outside the vocabulary")
                rows = iter(lab)
                for k, i in enumerate(ids):
                    works[i] = RegionWork(None, str(error[k]), bool(permanent[k])) if failed[k] else \
                        RegionWork(next(rows).astype(np.int16), str(error[k]))
            else:
                for k, i in enumerate(ids):
                    works[i] = RegionWork(None, str(error[k]), bool(permanent[k])) if failed[k] else \
                        RegionWork(np.zeros((0, 0), np.int16), str(error[k]))
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None
        return ChunkRegions(works, digest)

    def write_regions(self, source: str, key: str, chunk: int, works: Mapping[str, RegionWork]) -> ChunkRegions:
        ids = list(works)
        S = self.size
        ok = [works[i].labels for i in ids if works[i].labels is not None]
        digest = regions_digest(key, works)
        write_npz(self.paths.regions(source, key, chunk), {
            "ids": _text(ids), "failed": np.array([works[i].labels is None for i in ids], bool),
            "error": _text([works[i].error for i in ids]),
            "permanent": np.array([works[i].permanent for i in ids], bool),
            "labels": np.stack([np.asarray(x, np.int16) for x in ok]) if ok else np.zeros((0, S, S), np.int16),
            "digest": np.array(digest)})
        return ChunkRegions(dict(works), digest)

    # ---- attributions
    def read_attribution(self, method: str, key: str, chunk: int, heads: Mapping[str, int], n_regions: int,
                         maps: bool = False) -> ChunkAttribution | None:
        """One method's attributions of a chunk; with ``maps`` the display maps too (else ``values`` None)."""
        path = self.paths.attr(method, key, chunk)
        z = self._read(path, keys=None if maps else _attr_keys(heads))
        if z is None:
            return None
        K, S = n_regions, self.size
        try:
            ids = _ids(z)
            n = len(ids)
            digest = str(_scalar(z, "regions_digest", np.str_))
            sources = dict(zip(ids, (str(s) for s in _rows(z, "source_sha", n, np.str_)))) if "source_sha" in z else {}
            if n == 0:
                return ChunkAttribution({}, digest, {})
            n_pixels = _rows(z, "n_pixels", n, np.integer, (K,))
            per_head = {}
            for h, n_classes in heads.items():
                target = _rows(z, f"target/{h}", n, np.integer)
                if n and (target.min() < 0 or target.max() >= n_classes):
                    raise ValueError(f"targets of head {h!r} outside 0..{n_classes - 1}")
                cols: dict[str, Any] = {"target": target, "status": _rows(z, f"status/{h}", n, np.str_),
                        "delta": _rows(z, f"delta/{h}", n, np.floating) if f"delta/{h}" in z else None,
                        "scores": _rows(z, f"scores/{h}", n, np.floating, (K,)) if f"scores/{h}" in z else None,
                        "stats": [_rows(z, f"{s}/{h}", n, np.floating, (K,)) for s in ("sum", "pos", "neg")],
                        "total": _rows(z, f"total/{h}", n, np.floating),
                        "unassigned": _rows(z, f"unassigned/{h}", n, np.floating, (4,)),
                        "scale": _rows(z, f"scale/{h}", n, np.floating)}
                if maps:
                    cols["map"] = _rows(z, f"exact/{h}", n, np.floating, (S, S)) if f"exact/{h}" in z else \
                        _rows(z, f"map/{h}", n, np.integer, (S, S))
                    cols["exact"] = f"exact/{h}" in z
                per_head[h] = cols
            works: dict[str, dict[str, HeadAttribution]] = {}
            for k, i in enumerate(ids):
                works[i] = {}
                for h, c in per_head.items():
                    status = str(c["status"][k])
                    delta = None if c["delta"] is None or not np.isfinite(c["delta"][k]) else float(c["delta"][k])
                    if status != "ok":
                        works[i][h] = HeadAttribution(int(c["target"][k]), status, delta=delta)
                        continue
                    s, p, ng = (a[k].astype(np.float64) for a in c["stats"])
                    stats = RegionStats(n_pixels=n_pixels[k].astype(np.int64), sum=s, pos_sum=p, neg_sum=ng,
                                        unassigned=c["unassigned"][k].astype(np.float64), total=float(c["total"][k]))
                    values = None
                    if maps:
                        values = c["map"][k].astype(np.float64) if c["exact"] else \
                            decode_map(c["map"][k], float(c["scale"][k]))
                        if not np.all(np.isfinite(values)):
                            raise ValueError(f"map of head {h!r} holds NaN or Inf but its status is ok")
                    scores = None if c["scores"] is None else c["scores"][k].astype(np.float64)
                    works[i][h] = HeadAttribution(int(c["target"][k]), status, values, float(c["scale"][k]), delta,
                                                  scores, stats)
        except (KeyError, ValueError, TypeError, StopIteration) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None
        return ChunkAttribution(works, digest, sources)

    def write_attribution(self, method: str, key: str, chunk: int, work: ChunkAttribution, n_regions: int,
                          exact: bool = False) -> ChunkAttribution:
        """Store one method's attributions of a chunk: statistics (which every ok head must carry),
        targets, statuses, deltas, scores, and the maps (``exact``: float64 as given, else the int8
        display form). Returns what :meth:`read_attribution` will read back (without maps)."""
        ids = list(work.works)
        n, K, S = len(ids), n_regions, self.size
        heads = list(work.works[ids[0]]) if ids else []
        arrays: dict[str, np.ndarray] = {"ids": _text(ids), "regions_digest": np.array(work.regions_digest),
                                         "n_pixels": np.zeros((n, K), np.int64)}
        stored: dict[str, dict[str, HeadAttribution]] = {}
        if work.sources:
            arrays["source_sha"] = _text([work.sources.get(i, "") for i in ids])
        for h in heads:
            cols: dict[str, Any] = {
                "target": np.zeros(n, np.int64), "status": [], "delta": np.full(n, np.nan),
                "sum": np.zeros((n, K)), "pos": np.zeros((n, K)), "neg": np.zeros((n, K)), "total": np.full(n, np.nan),
                "unassigned": np.zeros((n, 4)), "scale": np.full(n, np.nan, np.float32),
                "map": np.zeros((n, S, S), np.float64 if exact else np.int8)}
            has_delta = has_scores = False
            scores = np.full((n, K), np.nan)
            for k, i in enumerate(ids):
                a = work.works[i][h]
                cols["target"][k] = a.target
                if a.delta is not None:
                    cols["delta"][k], has_delta = a.delta, True
                if a.scores is not None:
                    scores[k], has_scores = a.scores, True
                ok = a.status == "ok" and a.values is not None and a.stats is not None \
                    and bool(np.all(np.isfinite(a.values)))
                cols["status"].append("nonfinite" if a.status == "ok" and not ok else a.status)
                if not ok:
                    continue
                assert a.values is not None and a.stats is not None
                st = a.stats
                arrays["n_pixels"][k] = st.n_pixels
                cols["sum"][k], cols["pos"][k], cols["neg"][k] = st.sum, st.pos_sum, st.neg_sum
                cols["total"][k], cols["unassigned"][k] = st.total, st.unassigned
                if exact:
                    cols["map"][k] = a.values
                else:
                    cols["map"][k], cols["scale"][k] = encode_map(a.values)
            arrays[f"target/{h}"] = cols["target"]
            arrays[f"status/{h}"] = _text(cols["status"])
            if has_delta:
                arrays[f"delta/{h}"] = cols["delta"]
            if has_scores:
                arrays[f"scores/{h}"] = scores
            for s in ("sum", "pos", "neg", "total", "unassigned", "scale"):
                arrays[f"{s}/{h}"] = cols[s]
            arrays[f"exact/{h}" if exact else f"map/{h}"] = cols["map"]
            for k, i in enumerate(ids):
                a = work.works[i][h]
                stored.setdefault(i, {})[h] = replace(
                    a, status=str(cols["status"][k]), values=None, scale=float(cols["scale"][k]),
                    stats=a.stats if cols["status"][k] == "ok" else None)
        write_npz(self.paths.attr(method, key, chunk), arrays)
        return ChunkAttribution(stored, work.regions_digest, dict(work.sources))

    # ---- validity
    def read_validity(self, key: str, chunk: int, pairs: Sequence[tuple[str, str]]
                      ) -> tuple[dict[str, ValidityWork], str] | None:
        """A chunk's validity records and the region digest they were computed with."""
        path = self.paths.validity(key, chunk)
        z = self._read(path)
        if z is None:
            return None
        try:
            ids = _ids(z)
            n = len(ids)
            if n == 0:
                return {}, str(_scalar(z, "regions_digest", np.str_))
            nv = len(VALIDITY_VALUES)
            cols = {(m, h): (_rows(z, f"values/{m}/{h}", n, np.float64, (nv,)), _rows(z, f"note/{m}/{h}", n, np.str_))
                    for m, h in pairs}
            out = {i: ValidityWork({p: (*(float(x) for x in v[k]), str(note[k]))
                                    for p, (v, note) in cols.items()}) for k, i in enumerate(ids)}
            return out, str(_scalar(z, "regions_digest", np.str_))
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None

    def write_validity(self, key: str, chunk: int, works: Mapping[str, ValidityWork], digest: str) -> None:
        ids = list(works)
        arrays: dict[str, np.ndarray] = {"ids": _text(ids), "regions_digest": np.array(digest)}
        pairs = list(works[ids[0]].records) if ids else []
        for m, h in pairs:
            nv = len(VALIDITY_VALUES)
            arrays[f"values/{m}/{h}"] = np.array([works[i].records[(m, h)][:nv] for i in ids],
                                                 np.float64).reshape(-1, nv)
            arrays[f"note/{m}/{h}"] = _text([works[i].records[(m, h)][nv] for i in ids])
        write_npz(self.paths.validity(key, chunk), arrays)


def _attr_keys(heads: Mapping[str, int]) -> list[str]:
    """The members of an attribution file a table needs (everything but the maps)."""
    keys = ["ids", "regions_digest", "source_sha", "n_pixels"]
    for h in heads:
        keys += [f"{s}/{h}" for s in ("target", "status", "delta", "scores", "sum", "pos", "neg", "total",
                                      "unassigned", "scale")]
    return keys


def _scalar(z: Mapping[str, np.ndarray], key: str, kind: type) -> Any:
    """The 0-d array ``z[key]`` of dtype ``kind`` (``KeyError``/``ValueError`` otherwise)."""
    a = z[key]
    if a.ndim != 0 or not np.issubdtype(a.dtype, kind):
        raise ValueError(f"{key} must be a single {kind.__name__} value, got {a.dtype} {a.shape}")
    return a[()]


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


# --------------------------------------------------------------------------- manifest


def make_manifest(*, model: Mapping[str, Any], heads: Mapping[str, list[str]], methods: Mapping[str, Any],
                  regions: Mapping[str, Any], settings: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's fields (their one definition). ``methods``: name -> {params, key, notes, level}."""
    return {
        "format": CORPUS_FORMAT,
        "model": dict(model),
        "heads": {h: list(c) for h, c in heads.items()},
        "head_order": list(heads),
        "method_order": list(methods),
        "methods": {m: dict(v) for m, v in methods.items()},
        "regions": {**dict(regions), "unassigned_label": -1},
        "settings": dict(settings),
        "normalisation": {"stored": "mean basis: score_signed_l1, score_paper, score_pos, score_neg",
                          "map_encoding": "display only: int8 round(127 * map / scale), scale = max|map| "
                                          "(float32); statistics from the full-precision map; "
                                          "external heatmaps float64 as given"},
        **dict(extra),
    }


def validate_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    """Check the fields a reader relies on (types, names that become path parts); ``CorpusError`` if not."""
    def bad(why: str) -> CorpusError:
        return CorpusError(f"{where}: malformed manifest: {why}")

    if not isinstance(manifest, dict):
        raise bad("not an object")
    if manifest.get("format") != CORPUS_FORMAT:
        hint = "; it was written by an older semcontrib (one file per image): analyse the images into a new " \
            "corpus" if manifest.get("format") == "semcontrib-corpus/1" else ""
        raise CorpusError(f"{where}: unknown corpus format {manifest.get('format')!r}{hint}")
    heads = manifest.get("heads")
    if not isinstance(heads, dict) or not heads or not all(
            isinstance(h, str) and isinstance(c, list) and all(isinstance(x, str) for x in c)
            for h, c in heads.items()):
        raise bad("heads must map head names to lists of class names")
    methods = manifest.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise bad("methods must be a non-empty object")
    for m, info in methods.items():
        if not isinstance(info, dict):
            raise bad(f"method {m!r} must be an object")
        try:
            _check_name(m)
            _check_key(info.get("key", ""))
        except CorpusError as exc:
            raise bad(str(exc)) from None
    reg = manifest.get("regions")
    if not isinstance(reg, dict) or not isinstance(reg.get("vocabulary"), list) or \
            not all(isinstance(v, str) for v in reg["vocabulary"]):
        raise bad("regions.vocabulary must be a list of names")
    try:
        _check_name(reg.get("name", ""))
        _check_key(reg.get("key", ""))
        chunk_keys = reg.get("chunk_keys", {})
        if not isinstance(chunk_keys, dict) or not all(isinstance(c, str) and c.isdigit() for c in chunk_keys):
            raise CorpusError("regions.chunk_keys must map chunk numbers to keys")
        for k in chunk_keys.values():
            _check_key(k)
    except CorpusError as exc:
        raise bad(str(exc)) from None
    for k in ("head_order", "method_order"):
        if k in manifest and not (isinstance(manifest[k], list) and all(isinstance(x, str) for x in manifest[k])):
            raise bad(f"{k} must be a list of names")
    manifest_parts(manifest, where)
    return manifest


def manifest_parts(manifest: Mapping[str, Any], where: Path) -> list[Part]:
    """The table parts a manifest lists, each checked (names inside the corpus, known tables)."""
    parts = manifest.get("parts", [])
    if not isinstance(parts, list):
        raise CorpusError(f"{where}: malformed manifest: parts must be a list")
    return [Part.from_record(p, where) for p in parts]


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of the corpus at ``root``, validated; None when there is none."""
    mpath = Path(root) / MANIFEST
    if not mpath.is_file():
        return None
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise CorpusError(f"{mpath}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorpusError(f"{mpath}: unreadable manifest ({exc})") from exc
    return validate_manifest(manifest, mpath)


# --------------------------------------------------------------------------- reading


def read_images_table(root: Path, manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The images table of the manifest's generation (hold the tables lock shared while reading it):
    the top-level file, or, after a publish that stopped between its renames, the generation's copy."""
    path = Path(root) / "images.parquet"
    if not path.is_file():
        raise CorpusError(f"{root}: missing images.parquet; run `semcontrib analyze` again to rebuild it")
    images, gen = read_table(path)
    want = manifest.get("generation", "")
    if gen != want:  # a publish that stopped between its renames: the generation's own copy
        kept = Path(root) / GENERATIONS / str(want) / "images.parquet"
        if not (isinstance(want, str) and want and kept.is_file()
                and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", want)):
            raise CorpusError(f"{path}: generation {gen!r} does not match the manifest's "
                              f"{want!r}; run `semcontrib analyze` again")
        images, gen = read_table(kept)
        if gen != want:
            raise CorpusError(f"{kept}: generation {gen!r} does not match the manifest's {want!r}")
    return images


class Corpus:
    """Read access to a corpus directory: one consistent generation of manifest and tables.

    Examples
    --------
    >>> corpus = Corpus.open("demo_corpus")                       # doctest: +SKIP
    >>> corpus.contribution_table("nature", "lrp", wide=True)     # doctest: +SKIP
    """

    def __init__(self, root: Path, manifest: dict[str, Any], tables: Mapping[str, pd.DataFrame]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.paths = StorePaths(self.root)
        self.images: pd.DataFrame = tables["images"]
        self.attributions: pd.DataFrame = tables["attributions"]
        self.contributions: pd.DataFrame = tables["contributions"]

    @classmethod
    def open(cls, root: str | Path) -> Corpus:
        """Open a corpus; ``CorpusError`` with a one-line reason when it is not a readable corpus."""
        root = Path(root)
        if not root.is_dir():
            raise CorpusError(f"{root} is not a corpus (no such folder); run `semcontrib analyze` first")
        with _tables_lock(root, exclusive=False):
            manifest = read_manifest(root)
            if manifest is None:
                raise CorpusError(f"{root} is not a corpus (no {MANIFEST}); run `semcontrib analyze` first")
            images = read_images_table(root, manifest)
            parts = manifest_parts(manifest, root / MANIFEST)
            tables = {"images": images}
            for t, columns in (("attributions", ATTRIBUTION_COLUMNS), ("contributions", CONTRIBUTION_COLUMNS)):
                arrow = [_read_part_arrow(root, p) for p in parts if p.table == t]
                if not arrow:
                    tables[t] = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
                    continue
                tables[t] = pa.concat_tables(arrow, promote_options="permissive").to_pandas()
        return cls(root, manifest, tables)

    @property
    def parts(self) -> list[Part]:
        """The table parts of this generation (for readers that scan the Parquet files themselves)."""
        return manifest_parts(self.manifest, self.root / MANIFEST)

    # ---- metadata
    @property
    def heads(self) -> list[str]:
        """Heads in model order."""
        return list(self.manifest.get("head_order") or self.manifest["heads"])

    def classes(self, head: str) -> list[str]:
        return list(self.manifest["heads"][head])

    @property
    def methods(self) -> list[str]:
        """Methods in the order they were asked for."""
        return list(self.manifest.get("method_order") or self.manifest["methods"])

    @property
    def vocabulary(self) -> list[str]:
        return list(self.manifest["regions"]["vocabulary"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["model"].get("input_size", 224))

    def image_ids(self) -> list[str]:
        ok = self.images[self.images["status"] == "ok"]
        return ok["image_id"].tolist()

    # ---- per-image work (found through the images table's chunk column)
    def _store(self) -> WorkStore:
        return WorkStore(self.root, self.input_size, readonly=True)

    def chunk_of(self, image_id: str) -> int | None:
        """The chunk that holds a known image's work, or None (unknown id, or an image never planned)."""
        if not isinstance(image_id, str):
            return None
        if not hasattr(self, "_chunks"):
            ok = self.images[self.images["chunk"] >= 0] if "chunk" in self.images else self.images.iloc[:0]
            self._chunks = dict(zip(ok["image_id"].astype(str), ok["chunk"].astype(int)))
        c = self._chunks.get(image_id)
        return None if c is None else int(c)

    def attribution_map(self, image_id: str, head: str, method: str) -> np.ndarray | None:
        """The stored display map, float64 HxW at model resolution, or None (absent, non-finite or bad)."""
        if method not in self.manifest["methods"]:
            raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
        if head not in self.manifest["heads"]:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        key = self.manifest["methods"][method]["key"]
        work = self._store().read_attribution(method, key, chunk, {head: len(self.manifest["heads"][head])},
                                              len(self.vocabulary), maps=True)
        a = None if work is None else work.works.get(image_id, {}).get(head)
        return None if a is None or a.values is None else a.values

    def logits(self, image_id: str, head: str) -> np.ndarray | None:
        """The head's logits for one image (float32, one per class), or None when not stored or bad."""
        if head not in self.manifest["heads"]:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        works = self._store().read_predictions(self.manifest["model"]["key"], chunk,
                                               {head: len(self.manifest["heads"][head])})
        work = None if works is None else works.get(image_id)
        return None if work is None else np.asarray(work.logits[head], np.float32)

    def region_map(self, image_id: str) -> RegionMap | None:
        reg = self.manifest["regions"]
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        key = reg.get("chunk_keys", {}).get(str(chunk), reg["key"])  # a chunk with region edits has its own
        work = self._store().read_regions(reg["name"], key, chunk, len(self.vocabulary))
        w = None if work is None else work.works.get(image_id)
        if w is None or w.labels is None:
            return None
        return RegionMap(w.labels.astype(np.int32), tuple(reg["vocabulary"]))

    def display_jpeg(self, image_id: str) -> bytes | None:
        """The stored display JPEG of a known image id, or None.

        Never found from user input alone: the id must be in the images table, and the bytes come
        from the chunk file that the table names, inside this corpus's store (never a symlink).
        """
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        path = self.paths.images(chunk)
        if path.is_symlink() or not path.is_file() or self.paths.store.resolve() not in path.resolve().parents:
            return None
        return self._store().read_display(chunk, image_id)

    # ---- derived tables
    def contribution_table(self, head: str | None = None, method: str | None = None,
                           normalisation: str = "signed_l1", basis: str = "mean", wide: bool = False,
                           image_ids: list[str] | None = None) -> pd.DataFrame:
        """Contribution scores derived at read time from the raw statistics.

        Long format: one row per (image, head, method, region) with the raw statistics and
        ``score`` (for ``split``: ``score_pos`` and ``score_neg``). Wide: one row per (image, head,
        method), one column per region (``split`` gives ``REGION+`` and ``REGION-`` columns).
        """
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        df = self.contributions
        if head is not None:
            if head not in self.heads:
                raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
            df = df[df["head"] == head]
        if method is not None:
            if method not in self.methods:
                raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
            df = df[df["method"] == method]
        if image_ids is not None:
            df = df[df["image_id"].isin(image_ids)]
        return score_table(df, self.vocabulary, normalisation, basis, wide)


def score_table(df: pd.DataFrame, vocabulary: list[str], normalisation: str = "signed_l1",
                basis: str = "mean", wide: bool = False) -> pd.DataFrame:
    """Normalise a long raw-statistics table (rows ordered by region within each group)."""
    K = len(vocabulary)
    keys = ["image_id", "head", "method", "target"]
    raw = ["n_pixels", "sum", "pos_sum", "neg_sum"]
    df = df.sort_values(keys[:3] + ["region_index"], kind="stable")
    if len(df) % max(K, 1):
        raise CorpusError("contributions table is not complete per region")
    G = len(df) // max(K, 1)
    arr = {c: df[c].to_numpy(dtype=np.float64).reshape(G, K) for c in raw}
    s = normalise(arr["sum"], arr["pos_sum"], arr["neg_sum"], arr["n_pixels"], basis=basis)
    out = df[keys + ["region", "region_index"] + raw].copy()
    if normalisation == "split":
        out["score_pos"] = s.pos.ravel()
        out["score_neg"] = s.neg.ravel()
    else:
        out["score"] = getattr(s, normalisation).ravel()
    out["absent"] = s.absent.ravel()
    if normalisation == "paper":
        out["paper_unstable"] = np.repeat(s.paper_unstable, K)
    if not wide:
        return out.reset_index(drop=True)
    groups = out.iloc[::K][keys].reset_index(drop=True)
    if normalisation == "split":
        pos = pd.DataFrame(s.pos, columns=[f"{r}+" for r in vocabulary])
        neg = pd.DataFrame(s.neg, columns=[f"{r}-" for r in vocabulary])
        return pd.concat([groups, pos, neg], axis=1)
    scores = pd.DataFrame(getattr(s, normalisation), columns=list(vocabulary))
    wide_df = pd.concat([groups, scores], axis=1)
    if normalisation == "paper":
        wide_df["paper_unstable"] = s.paper_unstable
    return wide_df


def add_default_scores(contributions: pd.DataFrame, n_regions: int) -> None:
    """Add the stored default scores (mean basis) to a long raw-statistics table, in place.

    Rows come in groups of ``n_regions`` consecutive regions per (image, head, method). Adds
    ``score_signed_l1, score_paper, score_pos, score_neg, absent, paper_unstable``.
    """
    K = max(n_regions, 1)
    G = len(contributions) // K
    raw = {c: contributions[c].to_numpy(np.float64).reshape(G, K) for c in ("sum", "pos_sum", "neg_sum", "n_pixels")}
    s = normalise(raw["sum"], raw["pos_sum"], raw["neg_sum"], raw["n_pixels"])
    contributions["score_signed_l1"] = s.signed_l1.ravel()
    contributions["score_paper"] = s.paper.ravel()
    contributions["score_pos"] = s.pos.ravel()
    contributions["score_neg"] = s.neg.ravel()
    contributions["absent"] = s.absent.ravel().astype(bool)
    contributions["paper_unstable"] = np.repeat(s.paper_unstable, K).astype(bool)


def open_corpus(root: str | Path) -> Corpus:
    """Open a corpus directory for reading."""
    return Corpus.open(root)
