"""Files and locks: atomic writes (JSON, npz, Parquet, bytes), bounded npz and Parquet reads, temporary-file
cleanup, and the corpus's file locks (run, plan, tables, edits)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcontrib.store.schema import (
    EDITS_LOCK,
    GENERATION_META,
    GENERATIONS,
    MAX_ARRAY_BYTES,
    MAX_TABLE_BYTES,
    MAX_WORK_FILE_BYTES,
    PARTITIONED,
    PLAN_LOCK,
    RUN_LOCK,
    TABLES_LOCK,
    CorpusBusyError,
    CorpusError,
)

logger = logging.getLogger(__name__)


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
