"""The corpus store: the one module that knows the corpus format and reads and writes result files.

Layout of a corpus directory (Parquet tables readable in place by pandas and DuckDB)::

    CORPUS/
      manifest.json            model identity and weight hash, heads and classes, methods and their
                               parameters, region source and vocabulary, the settings of the run (reused
                               by the next run), package versions, store keys, the tables' generation
      images.parquet           one row per input image (status ok / skipped, reason, predictions)
      attributions.parquet     one row per (image, head, method): target, logit, map total,
                               IG delta, unassigned statistics, status, validity record
      contributions.parquet    long format: one row per (image, head, method, region): raw
                               statistics and the default normalised scores
      .semcontrib.lock         held by the one run that writes (a second run waits)
      .semcontrib.tables.lock  held exclusively while tables and manifest are replaced, shared by readers
      .generations/<id>/       the current generation's tables (the top-level tables are links to them)
      store/                   per-image work files, each written atomically, keyed by parameters:
        images/<id>.json         image record (size, colour mode) so a rerun need not decode the image
        display/<id>.jpg         the photograph for display (upright RGB, long side <= 512 px)
        pred/<model>/<id>.npz    logits per head, class evidence maps
        attr/<method>-<key>/<id>.npz   per head: target, map at model resolution, status, delta, scores
        regions/<source>-<key>/<id>.npz  int16 region label map at model resolution, or the failure
        validity/<key>/<id>.npz  per method and head: faithfulness, deletion and insertion AUC
      dashboard/               the dashboard's cache (embeddings), keyed by what they depend on

Pixel methods' maps are stored as ``float16(map / scale)`` with ``scale = max|map|`` (float32); the
decoded map ``float64(f16) * scale`` is the canonical map: region statistics are computed from it, so
they can be recomputed from the store at any time and a resumed run reproduces them bit for bit.
Heatmaps brought by the user (``--attributions``) are kept as float64, exactly as given. Region-level
methods store their region scores (float64) beside a display map.

Every work file read is validated (readable, the expected arrays with the expected shapes and sizes);
a bad one is logged with its path, deleted, and recomputed by the caller. Tables and manifest form one
*generation*: they are replaced together under an exclusive lock, the manifest last, and every table
carries its generation id, so a reader never mixes two runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcontrib.contributions import BASES, NORMALISATIONS, normalise
from semcontrib.regions import RegionMap

logger = logging.getLogger(__name__)

CORPUS_FORMAT = "semcontrib-corpus/1"
MANIFEST = "manifest.json"
TABLES = ("images", "attributions", "contributions")
RUN_LOCK = ".semcontrib.lock"
TABLES_LOCK = ".semcontrib.tables.lock"
GENERATION_META = b"semcontrib.generation"

# Upper bounds for anything read from a corpus (a stranger's corpus may be hostile).
MAX_ARRAY_BYTES = 256 * 2**20          # one array inside a work file
MAX_WORK_FILE_BYTES = 512 * 2**20      # one work file
MAX_MANIFEST_BYTES = 16 * 2**20

# Columns of the tables (their one definition; the pipeline builds rows with exactly these).
IMAGE_COLUMNS = ("image_id", "path", "sha256", "width", "height", "status", "reason", "original_mode")
ATTRIBUTION_COLUMNS = ("image_id", "head", "method", "target", "target_index", "logit", "status", "delta",
                       "total", "scale", "unassigned_n", "unassigned_sum", "unassigned_pos", "unassigned_neg",
                       "lrp_ratio", "faithfulness", "deletion_auc", "insertion_auc", "validity_note")
CONTRIBUTION_COLUMNS = ("image_id", "head", "method", "target", "target_index", "region", "region_index",
                        "n_pixels", "sum", "pos_sum", "neg_sum")

_KEY = re.compile(r"^[0-9a-f]{16}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


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


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **dict(arrays))  # type: ignore[arg-type]  # numpy stubs: allow_pickle kw
    _atomic_write(Path(path), buf.getvalue())


def read_npz(path: Path, max_array_bytes: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, never unpickling and never allocating more than the caps.

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
                    version = np.lib.format.read_magic(member)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    raise CorpusError(f"{path}: array {info.filename} holds Python objects")
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                total += nbytes
                if nbytes > max_array_bytes or nbytes > info.file_size or total > MAX_WORK_FILE_BYTES:
                    raise CorpusError(f"{path}: array {info.filename} claims {nbytes} bytes "
                                      f"({info.file_size} stored), over the {max_array_bytes}-byte limit")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except CorpusError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError, TypeError,
            MemoryError, SyntaxError) as exc:
        raise CorpusError(f"{path}: unreadable work file ({type(exc).__name__}: {exc})") from exc


def write_table(path: Path, df: pd.DataFrame, generation: str = "") -> None:
    """Write a Parquet table atomically, with the generation id in its metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[GENERATION_META] = generation.encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    _atomic_write(Path(path), buf.getvalue())


def read_table(path: Path) -> tuple[pd.DataFrame, str]:
    """A table and its generation id (``CorpusError`` when it cannot be read)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable table ({exc}); run `semcontrib analyze` again to rebuild it") from exc
    gen = (table.schema.metadata or {}).get(GENERATION_META, b"").decode(errors="replace")
    return table.to_pandas(), gen


def write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(Path(path), data)


def remove_stale_temporaries(root: Path) -> int:
    """Delete ``.*.tmp`` files a killed writer left behind in ``root`` and its store; return how many.

    Call it only while holding the run lock (no other writer is active then)."""
    n = 0
    root = Path(root)
    for p in [*root.glob(".*.tmp"), *(root / "store").rglob(".*.tmp"), *(root / GENERATIONS).rglob(".*.tmp")]:
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def run_lock(root: Path, wait: bool = True, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the corpus's writer lock for one run.

    A second run waits (logging once that it does) or, with ``wait=False``, raises
    :class:`CorpusBusyError` at once. The lock is an ``fcntl`` lock: it is released when the process
    ends, however it ends, so a killed run never leaves the corpus locked.
    """
    root.mkdir(parents=True, exist_ok=True)
    with open(root / RUN_LOCK, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise CorpusBusyError(f"{root} is being written by another semcontrib run; "
                                      "wait for it, or run without --no-wait to queue behind it") from None
            logger.warning("%s is being written by another run; waiting for it to finish", root)
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


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


def publish(root: Path, tables: Mapping[str, pd.DataFrame], manifest: Mapping[str, Any]) -> str:
    """Replace the tables and the manifest as one generation; return its id.

    The new tables are first written complete into ``.generations/<id>/``; the manifest, written
    next, makes that generation current; then the top-level tables (what DuckDB and pandas users
    read) are replaced by hard links to it, and older generations are removed. A crash at any point
    leaves a readable corpus: before the manifest, the old generation whole; after it, the new one
    (readers fall back to ``.generations/<id>/`` for a top-level table not yet replaced). Readers
    (:meth:`Corpus.open`) take the same lock shared, so they never see a half-replaced corpus.
    """
    generation = f"{time.time_ns():x}-{os.getpid():x}"
    gen_dir = root / GENERATIONS / generation
    with _tables_lock(root, exclusive=True):
        for name in TABLES:
            write_table(gen_dir / f"{name}.parquet", tables[name], generation)
        write_json(root / MANIFEST, {**manifest, "generation": generation})
        for name in TABLES:
            _link_replace(gen_dir / f"{name}.parquet", root / f"{name}.parquet")
        for old in (root / GENERATIONS).iterdir():
            if old.name != generation:
                _remove_tree(old)
    return generation


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
    """float HxW (finite) -> (float16 HxW in [-1, 1], float32 scale)."""
    scale = np.float32(np.max(np.abs(values))) if values.size else np.float32(0)
    if scale == 0 or not np.isfinite(scale):
        return np.zeros(values.shape, np.float16), np.float32(0 if scale == 0 else scale)
    return (values.astype(np.float64) / float(scale)).astype(np.float16), scale


def decode_map(f16: np.ndarray, scale: float) -> np.ndarray:
    """The canonical map, float64 HxW."""
    return f16.astype(np.float64) * float(np.float32(scale))


# --------------------------------------------------------------------------- store paths


@dataclass(frozen=True)
class StorePaths:
    """Where one corpus keeps its work files (see the module docs). Every name part is checked."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    def image_record(self, image_id: str) -> Path:
        return self.store / "images" / f"{check_image_id(image_id)}.json"

    def display(self, image_id: str) -> Path:
        return self.store / "display" / f"{check_image_id(image_id)}.jpg"

    def pred(self, model_key: str, image_id: str) -> Path:
        return self.store / "pred" / _check_key(model_key) / f"{check_image_id(image_id)}.npz"

    def attr(self, method: str, key: str, image_id: str) -> Path:
        return self.store / "attr" / f"{_check_name(method)}-{_check_key(key)}" / f"{check_image_id(image_id)}.npz"

    def regions(self, source: str, key: str, image_id: str) -> Path:
        return self.store / "regions" / f"{_check_name(source)}-{_check_key(key)}" / f"{check_image_id(image_id)}.npz"

    def validity(self, key: str, image_id: str) -> Path:
        return self.store / "validity" / _check_key(key) / f"{check_image_id(image_id)}.npz"

    @property
    def dashboard_cache(self) -> Path:
        """The dashboard's own cache folder (embeddings); never read by the analysis."""
        return self.root / "dashboard"


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


# --------------------------------------------------------------------------- work files


@dataclass(frozen=True)
class ImageRecord:
    """What a run learnt about one image file (so a rerun need not decode it again)."""

    width: int
    height: int
    original_mode: str


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
        None unless status is ok.
    scale : the float16 encoding's scale (NaN for maps stored exactly).
    delta : the method's residual (IG convergence delta, Shapley efficiency residual), or None.
    scores : float64 K region scores of a region-level method, or None for pixel methods.
    """

    target: int
    status: str
    values: np.ndarray | None = None
    scale: float = float("nan")
    delta: float | None = None
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class RegionWork:
    """A region map at model resolution (int16 S×S, -1 unassigned), or why there is none."""

    labels: np.ndarray | None
    error: str = ""
    permanent: bool = True


@dataclass(frozen=True)
class ValidityWork:
    """The validity record of one image: (method, head) -> (faithfulness, deletion AUC, insertion AUC, note)."""

    records: Mapping[tuple[str, str], tuple[float, float, float, str]] = field(default_factory=dict)


class WorkStore:
    """Reads and writes the work files of one corpus; every read validated, bad files deleted.

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

    def _read(self, path: Path) -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            return read_npz(path)
        except CorpusError as exc:
            self._discard(path, str(exc).split(": ", 1)[-1])
            return None

    # ---- image records and display images
    def read_image_record(self, image_id: str) -> ImageRecord | None:
        path = self.paths.image_record(image_id)
        if not path.is_file() or not self.paths.display(image_id).is_file():
            return None
        try:
            raw = json.loads(path.read_bytes()[:4096])
            return ImageRecord(int(raw["width"]), int(raw["height"]), str(raw["original_mode"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None

    def write_image(self, image_id: str, record: ImageRecord, display_jpeg: bytes) -> None:
        write_bytes(self.paths.display(image_id), display_jpeg)
        write_json(self.paths.image_record(image_id), {"width": record.width, "height": record.height,
                                                        "original_mode": record.original_mode})

    # ---- predictions
    def read_predictions(self, model_key: str, image_id: str, heads: Mapping[str, int]) -> PredictionWork | None:
        """``heads``: head name -> number of classes (the shapes a valid file must have)."""
        path = self.paths.pred(model_key, image_id)
        z = self._read(path)
        if z is None:
            return None
        logits = {}
        for h, n in heads.items():
            a = z.get(f"logits/{h}")
            if a is None or a.shape != (n,) or not np.issubdtype(a.dtype, np.floating) or \
                    not np.all(np.isfinite(a)):
                self._discard(path, f"no valid logits for head {h!r}")
                return None
            logits[h] = a
        ev = z.get("evidence")
        if ev is not None and (ev.ndim != 3 or min(ev.shape) < 1 or not np.issubdtype(ev.dtype, np.floating)
                               or not np.all(np.isfinite(ev))):
            self._discard(path, "malformed class evidence")
            return None
        return PredictionWork(logits, ev)

    def write_predictions(self, model_key: str, image_id: str, work: PredictionWork) -> None:
        arrays: dict[str, np.ndarray] = {f"logits/{h}": np.asarray(v, np.float32) for h, v in work.logits.items()}
        if work.evidence is not None:
            arrays["evidence"] = work.evidence
        write_npz(self.paths.pred(model_key, image_id), arrays)

    # ---- attributions
    def read_attribution(self, method: str, key: str, image_id: str, heads: Mapping[str, int],
                         n_regions: int) -> dict[str, HeadAttribution] | None:
        path = self.paths.attr(method, key, image_id)
        z = self._read(path)
        if z is None:
            return None
        out = {}
        S = self.size
        try:
            for h, n_classes in heads.items():
                t = int(_scalar(z, f"target/{h}", np.integer))
                status = str(_scalar(z, f"status/{h}", np.str_))
                if not 0 <= t < n_classes:
                    raise ValueError(f"target {t} outside 0..{n_classes - 1}")
                delta = float(_scalar(z, f"delta/{h}", np.floating)) if f"delta/{h}" in z else None
                scores = z.get(f"scores/{h}")
                if scores is not None and scores.shape != (n_regions,):
                    raise ValueError(f"scores of head {h!r} have shape {scores.shape}")
                if status != "ok":
                    out[h] = HeadAttribution(t, status, delta=delta)
                    continue
                if f"exact/{h}" in z:
                    values = z[f"exact/{h}"].astype(np.float64)
                    scale = float("nan")
                else:
                    scale = float(_scalar(z, f"scale/{h}", np.floating))
                    values = decode_map(z[f"map/{h}"], scale)
                if values.shape != (S, S):
                    raise ValueError(f"map of head {h!r} is {values.shape}, expected {(S, S)}")
                if not np.all(np.isfinite(values)):
                    raise ValueError(f"map of head {h!r} holds NaN or Inf but its status is ok")
                out[h] = HeadAttribution(t, status, values, scale, delta,
                                         None if scores is None else scores.astype(np.float64))
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None
        return out

    def write_attribution(self, method: str, key: str, image_id: str, heads: Mapping[str, HeadAttribution],
                          exact: bool = False) -> dict[str, HeadAttribution]:
        """Store one image's attribution; ``exact`` keeps maps as float64 instead of scaled float16.

        Returns what :meth:`read_attribution` will read back (the canonical, decoded form), so a
        caller need not read the file it has just written.
        """
        arrays: dict[str, Any] = {}
        stored: dict[str, HeadAttribution] = {}
        for h, a in heads.items():
            arrays[f"target/{h}"] = np.int64(a.target)
            delta = None if a.delta is None else float(np.float64(a.delta))
            scores = None if a.scores is None else np.asarray(a.scores, np.float64)
            if delta is not None:
                arrays[f"delta/{h}"] = np.float64(delta)
            if scores is not None:
                arrays[f"scores/{h}"] = scores
            ok = a.status == "ok" and a.values is not None and bool(np.all(np.isfinite(a.values)))
            status = "nonfinite" if a.status == "ok" and not ok else a.status
            arrays[f"status/{h}"] = np.array(status)
            if not ok:
                stored[h] = HeadAttribution(a.target, status, delta=delta)
                continue
            assert a.values is not None
            if exact:
                values = np.asarray(a.values, np.float64)
                arrays[f"exact/{h}"] = values
                stored[h] = HeadAttribution(a.target, status, values, float("nan"), delta, scores)
            else:
                f16, scale = encode_map(a.values)
                arrays[f"map/{h}"] = f16
                arrays[f"scale/{h}"] = np.float32(scale)
                stored[h] = HeadAttribution(a.target, status, decode_map(f16, float(scale)), float(scale), delta,
                                            scores)
        write_npz(self.paths.attr(method, key, image_id), arrays)
        return stored

    # ---- regions
    def read_regions(self, source: str, key: str, image_id: str, n_regions: int) -> RegionWork | None:
        """The stored region map; None when missing, bad, or a failure that may pass (to retry it)."""
        path = self.paths.regions(source, key, image_id)
        z = self._read(path)
        if z is None:
            return None
        if "labels" in z:
            lab = z["labels"]
            if lab.shape != (self.size, self.size) or not np.issubdtype(lab.dtype, np.integer) or \
                    (lab.size and (lab.min() < -1 or lab.max() >= n_regions)):
                self._discard(path, "malformed region map")
                return None
            return RegionWork(lab.astype(np.int16))
        if "error" in z:
            try:
                permanent = bool(_scalar(z, "permanent", np.bool_)) if "permanent" in z else True
                str(_scalar(z, "error", np.str_))
            except (KeyError, ValueError, TypeError) as exc:
                self._discard(path, f"{type(exc).__name__}: {exc}")
                return None
            if not permanent:
                return None  # a transient failure: try again
            return RegionWork(None, str(z["error"]), True)
        self._discard(path, "neither labels nor error")
        return None

    def write_regions(self, source: str, key: str, image_id: str, work: RegionWork) -> None:
        if work.labels is not None:
            write_npz(self.paths.regions(source, key, image_id), {"labels": work.labels.astype(np.int16)})
        else:
            write_npz(self.paths.regions(source, key, image_id),
                      {"error": np.array(work.error), "permanent": np.array(work.permanent)})

    # ---- validity
    def read_validity(self, key: str, image_id: str, pairs: list[tuple[str, str]]) -> ValidityWork | None:
        path = self.paths.validity(key, image_id)
        z = self._read(path)
        if z is None:
            return None
        try:
            recs = {}
            for m, h in pairs:
                v = z[f"values/{m}/{h}"]
                if v.shape != (3,) or v.dtype != np.float64:
                    raise ValueError(f"validity of {m}/{h} is {v.dtype} {v.shape}, expected float64 (3,)")
                recs[(m, h)] = (float(v[0]), float(v[1]), float(v[2]), str(_scalar(z, f"note/{m}/{h}", np.str_)))
            return ValidityWork(recs)
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None

    def write_validity(self, key: str, image_id: str, work: ValidityWork) -> None:
        arrays: dict[str, np.ndarray] = {}
        for (m, h), (f, d, i, note) in work.records.items():
            arrays[f"values/{m}/{h}"] = np.array([f, d, i], np.float64)
            arrays[f"note/{m}/{h}"] = np.array(note)
        write_npz(self.paths.validity(key, image_id), arrays)


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
                          "map_encoding": "float16(map / scale), scale = max|map| (float32); "
                                          "external heatmaps float32 as given"},
        **dict(extra),
    }


def validate_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    """Check the fields a reader relies on (types, names that become path parts); ``CorpusError`` if not."""
    def bad(why: str) -> CorpusError:
        return CorpusError(f"{where}: malformed manifest: {why}")

    if not isinstance(manifest, dict):
        raise bad("not an object")
    if manifest.get("format") != CORPUS_FORMAT:
        raise CorpusError(f"{where}: unknown corpus format {manifest.get('format')!r}")
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
    except CorpusError as exc:
        raise bad(str(exc)) from None
    for k in ("head_order", "method_order"):
        if k in manifest and not (isinstance(manifest[k], list) and all(isinstance(x, str) for x in manifest[k])):
            raise bad(f"{k} must be a list of names")
    return manifest


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
            tables = {}
            for t in TABLES:
                path = root / f"{t}.parquet"
                if not path.is_file():
                    raise CorpusError(f"{root}: missing {t}.parquet; run `semcontrib analyze` again to rebuild it")
                df, gen = read_table(path)
                want = manifest.get("generation", "")
                if gen != want:  # a publish that stopped between its renames: the generation's own copy
                    kept = root / GENERATIONS / str(want) / f"{t}.parquet"
                    if not (isinstance(want, str) and want and kept.is_file()
                            and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", want)):
                        raise CorpusError(f"{path}: generation {gen!r} does not match the manifest's "
                                          f"{want!r}; run `semcontrib analyze` again")
                    df, gen = read_table(kept)
                    if gen != want:
                        raise CorpusError(f"{kept}: generation {gen!r} does not match the manifest's {want!r}")
                tables[t] = df
        return cls(root, manifest, tables)

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

    # ---- per-image files
    def _store(self) -> WorkStore:
        return WorkStore(self.root, self.input_size, readonly=True)

    def attribution_map(self, image_id: str, head: str, method: str) -> np.ndarray | None:
        """The stored map, float64 HxW at model resolution, or None (absent, non-finite or bad)."""
        if method not in self.manifest["methods"]:
            raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
        if head not in self.manifest["heads"]:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        key = self.manifest["methods"][method]["key"]
        path = self.paths.attr(method, key, check_image_id(image_id))
        if not path.is_file():
            return None
        try:
            z = read_npz(path)
            if str(z[f"status/{head}"]) != "ok":
                return None
            values = z[f"exact/{head}"].astype(np.float64) if f"exact/{head}" in z else \
                decode_map(z[f"map/{head}"], float(z[f"scale/{head}"]))
        except (CorpusError, KeyError, ValueError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            return None
        return values if values.ndim == 2 else None

    def logits(self, image_id: str, head: str) -> np.ndarray | None:
        """The head's logits for one image (float32, one per class), or None when not stored or bad."""
        if head not in self.manifest["heads"]:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        work = self._store().read_predictions(self.manifest["model"]["key"], check_image_id(image_id),
                                              {head: len(self.manifest["heads"][head])})
        return None if work is None else np.asarray(work.logits[head], np.float32)

    def region_map(self, image_id: str) -> RegionMap | None:
        reg = self.manifest["regions"]
        path = self.paths.regions(reg["name"], reg["key"], check_image_id(image_id))
        if not path.is_file():
            return None
        try:
            z = read_npz(path)
            if "labels" not in z:
                return None
            return RegionMap(z["labels"].astype(np.int32), tuple(reg["vocabulary"]))
        except (CorpusError, ValueError, TypeError) as exc:
            logger.warning("cannot read %s: %s", path, exc)
            return None

    def display_path(self, image_id: str) -> Path | None:
        """Path of the stored display JPEG of a known image id, or None.

        Never built from user input alone: the id must be in the images table, and the file must be a
        regular file (not a symlink) whose resolved path lies inside this corpus's store.
        """
        if not isinstance(image_id, str) or image_id not in set(self.images["image_id"]):
            return None
        try:
            p = self.paths.display(image_id)
        except ValueError:
            return None
        if p.is_symlink() or not p.is_file():
            return None
        store = self.paths.store.resolve()
        resolved = p.resolve()
        if store not in resolved.parents:
            return None
        return resolved

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
