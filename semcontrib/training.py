"""Training the multitask classifier: labels, splits, augmentation, cached features, heads.

Data flows one way::

    labels CSV + image folder ──read_labels──> LabelledSet (paths, targets int64 N x T, report)
        └──split_examples──> Split (train / val / test indices)
        └──extract_features──> FeatureSet (float32 N x (1 + V) x F, view 0 un-augmented)
              └──fit_heads──> trained heads (frozen backbone)
        or ──fine_tune──> trained backbone and heads (augmented on the fly)
    train(...) does all of it and writes the checkpoint (``model.save_checkpoint``) and a report.

Conventions: ``rgb`` is uint8 HxWx3; ``tensor`` is float NCHW normalised with the model's mean
and std; images are squashed (no crop) to ``input_size`` x ``input_size``, bicubic, as everywhere
in semcontrib. Missing labels are ``-1`` in ``targets``.

The loss is *task-balanced*: for each task the cross-entropy is averaged over the examples that
have a label for that task and divided by ``log(K_t)`` (the loss of a uniform guess over the
task's ``K_t`` classes), and these per-task losses are averaged with equal weight. A task with
many classes or many labelled examples therefore does not dominate the others.

Library code reports progress through a ``progress(stage, done, total)`` callback and logs
through :mod:`logging`; only the CLI prints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import nn

from semcontrib.model import HeadSpec, MultitaskModel, build_multitask, freeze, load_model, save_checkpoint

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances (stage: ``"features"``, ``"epochs"``...)."""

ID_COLUMNS = ("image_id", "path")
"""Columns that name the image; every other column is a task unless ``tasks`` is given."""

REPORT_COUNT_KEYS = (
    "missing_image",      # a `path` cell names a file that does not exist
    "unknown_id",         # an `image_id` matches no image file in the folder
    "ambiguous_id",       # an `image_id` matches several files (e.g. a.jpg and a.png)
    "duplicate_id",       # a row names an image an earlier row already named (first row kept)
    "empty_id",           # the id cell is empty
    "empty_cell",         # a task cell is empty (that task is ignored for that image)
    "unknown_class",      # a label outside the classes given (e.g. the checkpoint's classes)
    "no_label",           # a row with no usable label left (dropped)
    "unreadable_image",   # the file exists but cannot be decoded (dropped)
    "unlabelled_image",   # an image in the folder that no row names (ignored)
)


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelReport:
    """What was wrong with a labels CSV, as counts (nothing here stops training).

    Attributes
    ----------
    n_rows : rows in the CSV.
    n_examples : images kept (at least one usable label).
    counts : ``REPORT_COUNT_KEYS`` -> number of occurrences.
    examples : the same keys -> up to 5 example ids (or ``id:task`` for cell problems).
    empty_cells : task -> number of empty cells.
    unknown_classes : task -> {label -> count} of labels outside the given classes.
    single_example_classes : task -> classes with exactly one example (kept; they cannot be
        stratified and always go to the training split).
    dropped_tasks : task -> reason (e.g. fewer than two classes).
    """

    n_rows: int
    n_examples: int
    counts: dict[str, int]
    examples: dict[str, list[str]] = field(default_factory=dict)
    empty_cells: dict[str, int] = field(default_factory=dict)
    unknown_classes: dict[str, dict[str, int]] = field(default_factory=dict)
    single_example_classes: dict[str, list[str]] = field(default_factory=dict)
    dropped_tasks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def n_problems(self) -> int:
        """Problems that lost data (every count except unlabelled images)."""
        return sum(v for k, v in self.counts.items() if k != "unlabelled_image")


@dataclass(frozen=True)
class LabelledSet:
    """Images with one label per task.

    Attributes
    ----------
    image_ids : N ids (the CSV's ``image_id`` or ``path`` cell).
    paths : N image files.
    tasks : T task names (CSV columns), in head order.
    classes : task -> class names in logit order.
    targets : int64 N x T class indices, ``-1`` where the task has no label.
    report : what was dropped or masked, as counts.
    groups : N group names (``group_column`` of :func:`read_labels`), or ``None``: images of one
        group (e.g. crops or a burst of one scene) always land on the same side of the split.
    """

    image_ids: list[str]
    paths: list[Path]
    tasks: list[str]
    classes: dict[str, tuple[str, ...]]
    targets: np.ndarray
    report: LabelReport
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def head_specs(self) -> list[HeadSpec]:
        return [HeadSpec(t, self.classes[t]) for t in self.tasks]

    def subset(self, keep: np.ndarray) -> LabelledSet:
        """The examples at the integer indices ``keep`` (report unchanged)."""
        keep = np.asarray(keep, dtype=np.int64)
        groups = [self.groups[i] for i in keep] if self.groups is not None else None
        return replace(self, image_ids=[self.image_ids[i] for i in keep],
                       paths=[self.paths[i] for i in keep], targets=self.targets[keep], groups=groups)

    def label_mapping(self) -> dict[str, dict[str, int]]:
        """task -> {class name -> logit index}."""
        return {t: {c: i for i, c in enumerate(self.classes[t])} for t in self.tasks}


def _list_images(folder: Path) -> list[Path]:
    from semcontrib.imageio import list_images

    return list_images(folder)


def _add(examples: dict[str, list[str]], key: str, value: str) -> None:
    lst = examples.setdefault(key, [])
    if len(lst) < 5:
        lst.append(value)


def read_labels(labels_csv: str | Path, images: str | Path, tasks: Sequence[str] | None = None,
                classes: Mapping[str, Sequence[str]] | None = None,
                group_column: str | None = None) -> LabelledSet:
    """Read a labels CSV and match its rows to the image files under ``images``.

    Parameters
    ----------
    labels_csv : CSV with an ``image_id`` column (a file name under ``images``, with or without
        extension, or a relative path) or a ``path`` column (relative to ``images`` or absolute),
        and one column per task holding class names.
    images : the folder the ids refer to.
    tasks : the task columns to use; default every column except ``image_id`` / ``path``.
    classes : task -> allowed class names in logit order (e.g. a checkpoint's, for evaluation).
        Default: the sorted distinct labels found in the data.
    group_column : a column naming each image's group (not a task); images of one group stay on
        one side of the split. An empty cell makes the image its own group.

    Returns
    -------
    LabelledSet
        Bad rows and cells are dropped or masked and counted in ``.report``, never raised.

    Raises
    ------
    FileNotFoundError
        If ``labels_csv`` or the ``images`` folder does not exist.
    ValueError
        If the CSV has no id column, a named task column is missing, or no task has two classes.
    """
    import pandas as pd

    labels_csv, images = Path(labels_csv), Path(images)
    if not labels_csv.is_file():
        raise FileNotFoundError(f"labels CSV not found: {labels_csv}")
    if not images.is_dir():
        raise FileNotFoundError(f"image folder not found: {images}")
    try:
        df = pd.read_csv(labels_csv, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{labels_csv} is empty; expected a header with image_id or path "
                         "and task columns") from None
    df.columns = [str(c).strip() for c in df.columns]
    id_col = "path" if "path" in df.columns else "image_id" if "image_id" in df.columns else None
    if id_col is None:
        raise ValueError(f"{labels_csv} needs an 'image_id' or 'path' column; it has {list(df.columns)}")
    if group_column is not None and group_column not in df.columns:
        raise ValueError(f"group column {group_column!r} not in {labels_csv}; columns are {list(df.columns)}")
    if tasks is None:
        tasks = [c for c in df.columns if c not in ID_COLUMNS and c != group_column]
    tasks = list(tasks)
    if not tasks:
        raise ValueError(f"{labels_csv} has no task column besides {id_col!r}")
    missing_cols = [t for t in tasks if t not in df.columns]
    if missing_cols:
        raise ValueError(f"task columns {missing_cols} not in {labels_csv}; columns are {list(df.columns)}")
    if classes is not None:
        absent = [t for t in tasks if t not in classes]
        if absent:
            raise ValueError(f"no classes given for tasks {absent}")

    counts = dict.fromkeys(REPORT_COUNT_KEYS, 0)
    examples: dict[str, list[str]] = {}
    empty_cells: Counter[str] = Counter()
    unknown: dict[str, Counter[str]] = {t: Counter() for t in tasks}

    files = _list_images(images)
    index: dict[str, list[Path]] = {}
    for p in files:
        rel = p.relative_to(images).as_posix()
        keys = {rel, rel.rsplit(".", 1)[0], p.name, p.stem}
        for k in keys:
            index.setdefault(k, []).append(p)

    rows: list[tuple[str, Path, list[str]]] = []
    row_groups: list[str] = []
    seen: set[Path] = set()
    for _, row in df.iterrows():
        rid = str(row[id_col]).strip()
        if not rid:
            counts["empty_id"] += 1
            continue
        if id_col == "path":
            p = Path(rid)
            p = p if p.is_absolute() else images / p
            if not p.is_file():
                counts["missing_image"] += 1
                _add(examples, "missing_image", rid)
                continue
            path = p
        else:
            rid_key = rid.replace("\\", "/")
            hits = index.get(rid_key, [])
            if not hits:
                counts["unknown_id"] += 1
                _add(examples, "unknown_id", rid)
                continue
            if len(set(hits)) > 1:
                counts["ambiguous_id"] += 1
                _add(examples, "ambiguous_id", rid)
                continue
            path = hits[0]
        resolved = path.resolve()
        if resolved in seen:
            counts["duplicate_id"] += 1
            _add(examples, "duplicate_id", rid)
            continue
        seen.add(resolved)
        rows.append((rid, path, [str(row[t]).strip() for t in tasks]))
        row_groups.append(str(row[group_column]).strip() if group_column is not None else "")
    labelled_paths = {p.resolve() for _, p, _ in rows}
    unlabelled = [p for p in files if p.resolve() not in labelled_paths and p.resolve() not in seen]
    counts["unlabelled_image"] = len(unlabelled)
    for p in unlabelled[:5]:
        _add(examples, "unlabelled_image", p.relative_to(images).as_posix())

    # classes: given, or the sorted distinct labels
    cls: dict[str, tuple[str, ...]] = {}
    for j, t in enumerate(tasks):
        if classes is not None:
            cls[t] = tuple(str(c) for c in classes[t])
        else:
            cls[t] = tuple(sorted({r[2][j] for r in rows if r[2][j]}))

    dropped: dict[str, str] = {}
    if classes is None:
        for t in tasks:
            if len(cls[t]) < 2:
                dropped[t] = f"fewer than two classes ({list(cls[t])})"
    kept_tasks = [t for t in tasks if t not in dropped]
    if not kept_tasks:
        raise ValueError(f"no task in {labels_csv} has two classes among the matched images: {dropped}")

    lookup = {t: {c: i for i, c in enumerate(cls[t])} for t in kept_tasks}
    ids: list[str] = []
    paths: list[Path] = []
    targets: list[list[int]] = []
    groups: list[str] = []
    for (rid, path, cells), grp in zip(rows, row_groups):
        tr = []
        for j, t in enumerate(tasks):
            if t in dropped:
                continue
            cell = cells[j]
            if not cell:
                counts["empty_cell"] += 1
                empty_cells[t] += 1
                _add(examples, "empty_cell", f"{rid}:{t}")
                tr.append(-1)
            elif cell not in lookup[t]:
                counts["unknown_class"] += 1
                unknown[t][cell] += 1
                _add(examples, "unknown_class", f"{rid}:{t}={cell}")
                tr.append(-1)
            else:
                tr.append(lookup[t][cell])
        if all(v < 0 for v in tr):
            counts["no_label"] += 1
            _add(examples, "no_label", rid)
            continue
        ids.append(rid)
        paths.append(path)
        targets.append(tr)
        groups.append(grp or f"\x00{rid}")
    arr = np.asarray(targets, dtype=np.int64).reshape(len(targets), len(kept_tasks))
    single: dict[str, list[str]] = {}
    for j, t in enumerate(kept_tasks):
        c = Counter(arr[:, j][arr[:, j] >= 0].tolist())
        ones = [cls[t][k] for k, n in sorted(c.items()) if n == 1]
        if ones:
            single[t] = ones
    report = LabelReport(
        n_rows=len(df), n_examples=len(ids), counts=counts, examples=examples,
        empty_cells=dict(empty_cells), unknown_classes={t: dict(c) for t, c in unknown.items() if c},
        single_example_classes=single, dropped_tasks=dropped,
    )
    for k, n in counts.items():
        if n and k != "unlabelled_image":
            logger.warning("labels: %d x %s (e.g. %s)", n, k, examples.get(k, []))
    return LabelledSet(ids, paths, kept_tasks, {t: cls[t] for t in kept_tasks}, arr, report,
                       groups if group_column is not None else None)


def data_hash(labelled: LabelledSet, file_hashes: Sequence[str] | None = None) -> str:
    """sha256 over (image id, image content sha256, labels) of every example, in order.

    ``file_hashes`` (one sha256 per path) avoids reading the files again.
    """
    from semcontrib.imageio import sha256_file

    hashes = list(file_hashes) if file_hashes is not None else [sha256_file(p) for p in labelled.paths]
    h = hashlib.sha256()
    h.update(json.dumps({t: list(labelled.classes[t]) for t in labelled.tasks}, sort_keys=True).encode())
    for rid, fh, tr in zip(labelled.image_ids, hashes, labelled.targets.tolist()):
        h.update(f"{rid}\t{fh}\t{tr}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """Indices into a :class:`LabelledSet` (int64 arrays, disjoint, sorted).

    ``method`` says how it was stratified: ``"stratified:joint"`` (all tasks' labels together),
    ``"stratified:<task>"`` (one task's labels) or ``"random"``; ``note`` says why.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    seed: int
    note: str = ""

    def to_dict(self, image_ids: Sequence[str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "seed": self.seed, "note": self.note,
                             "n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}
        if image_ids is not None:
            d["val_ids"] = [image_ids[i] for i in self.val]
            d["test_ids"] = [image_ids[i] for i in self.test]
        return d


def _allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Largest-remainder allocation of ``total`` over strata (strata of size 1 get nothing)."""
    n = sum(sizes)
    eligible = [s if s >= 2 else 0 for s in sizes]
    n_el = sum(eligible)
    if n_el == 0 or total == 0:
        return [0] * len(sizes)
    total = min(total, sum(s - 1 for s in eligible if s))
    quotas = [total * s / n_el for s in eligible]
    base = [min(int(math.floor(q)), max(s - 1, 0)) for q, s in zip(quotas, eligible)]
    rest = total - sum(base)
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - base[i]), i))
    for i in order:
        if rest <= 0:
            break
        if eligible[i] and base[i] < eligible[i] - 1:
            base[i] += 1
            rest -= 1
    del n
    return base


def _stratified_take(pool: np.ndarray, keys: Sequence[str], n_take: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    strata: dict[str, list[int]] = {}
    for i, k in zip(pool.tolist(), keys):
        strata.setdefault(k, []).append(i)
    names = sorted(strata)
    alloc = _allocate([len(strata[k]) for k in names], n_take)
    taken: list[int] = []
    for k, a in zip(names, alloc):
        members = np.asarray(strata[k])
        rng.shuffle(members)
        taken.extend(members[:a].tolist())
    take = np.asarray(sorted(taken), dtype=np.int64)
    rest = np.setdiff1d(pool, take)
    return rest, take


def _strata_usable(keys: Sequence[str], n_take: int) -> bool:
    """Stratification is usable when most examples sit in strata that can give one away."""
    c = Counter(keys)
    in_big = sum(n for n in c.values() if n >= 2)
    return in_big >= 0.8 * len(keys) and sum(n - 1 for n in c.values() if n >= 2) >= n_take


def split_examples(labelled: LabelledSet, seed: int = 0, test_fraction: float = 0.1,
                   val_fraction: float = 0.1) -> Split:
    """A seeded train / validation / test split, stratified where possible.

    The test set takes ``test_fraction`` of all examples; the validation set (early stopping)
    takes ``val_fraction`` of the rest. Strata are, in order of preference, the joint labels of
    all tasks, the labels of a single task (the one with most classes first), else none (random).
    A stratum with one example (e.g. a class with a single image) always stays in training.
    With ``labelled.groups``, whole groups are split (fractions count groups), stratified on the
    labels of each group's first image.

    Raises
    ------
    ValueError
        If a fraction is outside [0, 0.5] or there are fewer than 3 examples.
    """
    for name, frac in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= frac <= 0.5:
            raise ValueError(f"{name} must be in [0, 0.5], got {frac}")
    if labelled.groups is not None:
        return _split_groups(labelled, seed, test_fraction, val_fraction)
    n = len(labelled)
    if n < 3:
        raise ValueError(f"need at least 3 labelled images to split, got {n}")
    rng = np.random.default_rng(seed)
    all_idx = np.arange(n, dtype=np.int64)
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    if test_fraction > 0:
        n_test = max(1, n_test)
    n_val = int(round(val_fraction * (n - n_test))) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = max(1, n_val)
    tg = labelled.targets
    candidates: list[tuple[str, list[str]]] = [
        ("joint", ["|".join(str(v) for v in row) for row in tg.tolist()])]
    order = sorted(range(len(labelled.tasks)), key=lambda j: (-len(labelled.classes[labelled.tasks[j]]), j))
    for j in order:
        candidates.append((labelled.tasks[j], [str(v) for v in tg[:, j].tolist()]))
    method, keys, note = "random", ["all"] * n, ""
    for name, k in candidates:
        if _strata_usable(k, n_test + n_val):
            method, keys = f"stratified:{name}", k
            break
    if method == "random":
        note = "every stratification leaves too many classes with a single example; random split"
    elif method != "stratified:joint":
        note = "joint label combinations too rare; stratified on one task"
    if method != "stratified:joint":
        logger.warning("split: %s", note)
    key_of = dict(zip(all_idx.tolist(), keys))
    rest, test = _stratified_take(all_idx, keys, n_test, rng)
    train, val = _stratified_take(rest, [key_of[i] for i in rest.tolist()], n_val, rng)
    return Split(train, val, test, method, seed, note)


def _split_groups(labelled: LabelledSet, seed: int, test_fraction: float, val_fraction: float) -> Split:
    assert labelled.groups is not None
    first: dict[str, int] = {}
    members: dict[str, list[int]] = {}
    for i, g in enumerate(labelled.groups):
        first.setdefault(g, i)
        members.setdefault(g, []).append(i)
    names = sorted(first, key=lambda g: first[g])
    if len(names) < 3:
        raise ValueError(f"need at least 3 groups to split by group, got {len(names)}")
    reps = labelled.subset(np.asarray([first[g] for g in names]))
    inner = split_examples(replace(reps, groups=None), seed, test_fraction, val_fraction)

    def expand(idx: np.ndarray) -> np.ndarray:
        return np.asarray(sorted(i for k in idx.tolist() for i in members[names[k]]), dtype=np.int64)

    note = f"split by group ({len(names)} groups); " + (inner.note or "")
    return Split(expand(inner.train), expand(inner.val), expand(inner.test), f"group+{inner.method}", seed,
                 note.strip().rstrip(";"))


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Random resized crop, horizontal flip and colour jitter (as torchvision's transforms).

    Attributes
    ----------
    scale : range of the crop's area as a fraction of the image area.
    ratio : range of the crop's aspect ratio (width / height), sampled log-uniformly.
    flip : flip horizontally with probability 0.5.
    brightness, contrast, saturation : jitter factors drawn from ``[1 - x, 1 + x]``.
    hue : hue shift drawn from ``[-hue, hue]`` (fraction of the colour circle, at most 0.5).
    """

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")


def _crop_box(h: int, w: int, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) as torchvision's ``RandomResizedCrop.get_params``."""
    area = h * w
    log_ratio = (math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*cfg.scale)
        ar = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    return 0, 0, h, w


def augment_rgb(rgb: np.ndarray, size: int, rng: np.random.Generator,
                config: AugmentConfig | None = None) -> np.ndarray:
    """One augmented view: uint8 HxWx3 -> uint8 ``size`` x ``size`` x 3.

    Random resized crop (squashed to ``size``, bicubic), horizontal flip, then brightness,
    contrast, saturation and hue jitter in a random order of the first three.
    """
    cfg = config or AugmentConfig()
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    top, left, ch, cw = _crop_box(rgb.shape[0], rgb.shape[1], cfg, rng)
    img = Image.fromarray(np.ascontiguousarray(rgb[top:top + ch, left:left + cw]))
    img = img.resize((size, size), Image.Resampling.BICUBIC)
    if cfg.flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    ops: list[tuple[Any, float]] = []
    if cfg.brightness:
        ops.append((ImageEnhance.Brightness, rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)))
    if cfg.contrast:
        ops.append((ImageEnhance.Contrast, rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)))
    if cfg.saturation:
        ops.append((ImageEnhance.Color, rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)))
    for k in rng.permutation(len(ops)):
        enhancer, factor = ops[int(k)]
        img = enhancer(img).enhance(float(factor))
    if cfg.hue:
        shift = int(round(rng.uniform(-cfg.hue, cfg.hue) * 255))
        if shift:
            hsv = np.asarray(img.convert("HSV")).copy()
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
            img = Image.fromarray(hsv, "HSV").convert("RGB")
    return np.asarray(img, dtype=np.uint8)


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSet:
    """Backbone features of every example, un-augmented and augmented.

    Attributes
    ----------
    features : float32 N x (1 + V) x F; view 0 is the plain (squashed) image, views 1..V are
        augmented. Rows of unreadable images are zero.
    ok : bool N, False where the image could not be read.
    file_hashes : N sha256 of the image files ("" where unreadable).
    reasons : index -> why the image could not be read.
    key : identity of the backbone weights and view settings (the cache key).
    """

    features: np.ndarray
    ok: np.ndarray
    file_hashes: list[str]
    reasons: dict[int, str]
    key: str


def backbone_key(model: MultitaskModel) -> str:
    """sha256 of the backbone's weights and the preprocessing (16 hex digits)."""
    h = hashlib.sha256()
    ident = [model.spec.name, model.input_size, list(model.spec.mean), list(model.spec.std)]
    h.update(json.dumps(ident).encode())
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _views_key(n_views: int, seed: int, augment: AugmentConfig) -> str:
    blob = json.dumps({"n_views": n_views, "seed": seed, "augment": asdict(augment), "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_views(rgb: np.ndarray, size: int, n_views: int, rng: np.random.Generator,
                augment: AugmentConfig) -> np.ndarray:
    """uint8 HxWx3 -> uint8 (1 + n_views) x size x size x 3: the squashed image, then augmented views."""
    from semcontrib.imageio import resize_rgb

    views = [resize_rgb(rgb, size)]
    views.extend(augment_rgb(rgb, size, rng, augment) for _ in range(n_views))
    return np.stack(views)


def _to_tensor(model: MultitaskModel, batch: np.ndarray) -> torch.Tensor:
    """uint8 N x S x S x 3 -> normalised float N x 3 x S x S."""
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std).view(1, 3, 1, 1)
    return (t - mean) / std


def extract_features(model: MultitaskModel, paths: Sequence[Path], n_views: int = 4, seed: int = 0,
                     augment: AugmentConfig | None = None, batch_size: int = 32,
                     cache_dir: str | Path | None = None, progress: Progress | None = None) -> FeatureSet:
    """Backbone features of each image and of ``n_views`` augmented views of it.

    The views of an image are drawn from a generator seeded by (``seed``, the file's sha256), so
    they do not depend on the order of the files. With ``cache_dir``, each image's features are
    stored as ``cache_dir/<backbone key>/<views key>/<file sha256>.npy`` (float32 (1 + V) x F)
    and read back on the next run.

    Returns
    -------
    FeatureSet
        ``features`` float32 N x (1 + n_views) x F.
    """
    from semcontrib.imageio import ImageLoadError, load_rgb, sha256_file

    if n_views < 0:
        raise ValueError(f"n_views must be >= 0, got {n_views}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    augment = augment or AugmentConfig()
    size = model.input_size
    key = f"{backbone_key(model)}/{_views_key(n_views, seed, augment)}"
    cache = Path(cache_dir) / key if cache_dir is not None else None
    n = len(paths)
    dim = model.spec.feature_dim
    feats = np.zeros((n, 1 + n_views, dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    hashes = [""] * n
    reasons: dict[int, str] = {}
    pending: list[tuple[int, np.ndarray]] = []  # (example index, views uint8 (1+V) x S x S x 3)
    done = 0
    was_training = model.training
    model.eval()

    def flush() -> None:
        nonlocal done
        if not pending:
            return
        batch = np.concatenate([v for _, v in pending])
        with torch.inference_mode():
            out = model.backbone(_to_tensor(model, batch)).float().numpy()
        out = out.reshape(len(pending), 1 + n_views, dim)
        for (i, _), f in zip(pending, out):
            feats[i] = f
            ok[i] = True
            if cache is not None:
                _atomic_save(cache / f"{hashes[i]}.npy", f)
        done += len(pending)
        pending.clear()
        if progress:
            progress("features", done, n)

    try:
        for i, p in enumerate(paths):
            try:
                hashes[i] = sha256_file(p)
            except OSError as exc:
                reasons[i] = f"unreadable: {exc}"
                hashes[i] = ""
                done += 1
                continue
            if cache is not None:
                cached = cache / f"{hashes[i]}.npy"
                if cached.is_file():
                    try:
                        arr = np.load(cached)
                        if arr.shape == (1 + n_views, dim):
                            feats[i] = arr
                            ok[i] = True
                            done += 1
                            if progress:
                                progress("features", done, n)
                            continue
                    except (OSError, ValueError):
                        logger.warning("ignoring corrupt cache file %s", cached)
            try:
                rgb = load_rgb(p).rgb
            except ImageLoadError as exc:
                reasons[i] = exc.reason
                hashes[i] = ""
                done += 1
                continue
            rng = np.random.default_rng([seed, int(hashes[i][:15], 16)])
            pending.append((i, image_views(rgb, size, n_views, rng, augment)))
            if sum(len(v) for _, v in pending) >= batch_size:
                flush()
        flush()
    finally:
        model.train(was_training)
    return FeatureSet(feats, ok, hashes, reasons, key)


# --------------------------------------------------------------------------- loss and training


def task_balanced_loss(logits: Mapping[str, torch.Tensor], targets: torch.Tensor,
                       tasks: Sequence[str]) -> torch.Tensor:
    """Mean over tasks of (cross-entropy averaged over labelled examples) / log(K_t).

    Parameters
    ----------
    logits : task -> float N x K_t.
    targets : int64 N x T class indices, ``-1`` where unlabelled.
    tasks : the T task names in the column order of ``targets``.

    Tasks with no labelled example in the batch are left out of the mean; if no task has one,
    the loss is a zero that still carries a gradient.
    """
    parts = []
    for j, t in enumerate(tasks):
        y = targets[:, j]
        mask = y >= 0
        if not bool(mask.any()):
            continue
        z = logits[t][mask]
        k = z.shape[1]
        parts.append(nn.functional.cross_entropy(z, y[mask]) / math.log(max(k, 2)))
    if not parts:
        return sum(v.sum() * 0.0 for v in logits.values())  # type: ignore[return-value]
    return torch.stack(parts).mean()


@dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes
    ----------
    epochs : maximum epochs (``None``: 200 with a frozen backbone, 15 when fine-tuning). With a
        frozen backbone one epoch is one pass over the training images, each as one of its cached
        views drawn at random.
    batch_size : images per optimisation step (and per feature-extraction batch).
    lr : Adam learning rate of the heads.
    backbone_lr : Adam learning rate of the backbone when fine-tuning.
    weight_decay : Adam weight decay (L2) of the heads.
    patience : stop after this many epochs without a validation-loss improvement of ``min_delta``;
        the weights of the best epoch are restored.
    n_views : augmented views cached per image (frozen backbone).
    test_fraction, val_fraction : see :func:`split_examples`.
    seed : seeds the split, the views, the initialisation and the batch order.
    augment : augmentation settings.
    """

    epochs: int | None = None
    batch_size: int = 32
    lr: float = 3e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 10
    min_delta: float = 1e-4
    n_views: int = 4
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("lr", "backbone_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.n_views < 0:
            raise ValueError(f"n_views must be >= 0, got {self.n_views}")

    def max_epochs(self, frozen: bool) -> int:
        return self.epochs if self.epochs is not None else (200 if frozen else 15)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class History:
    """Per epoch: mean training loss, validation loss (NaN without a validation set)."""

    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    stopped_early: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _EarlyStopping:
    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.bad = 0
        self.state: dict[str, torch.Tensor] | None = None

    def step(self, epoch: int, loss: float, module: nn.Module) -> bool:
        """Record ``loss``; return True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad = loss, epoch, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience


def _reset_heads(model: MultitaskModel, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    layers = model.heads.layers
    if not isinstance(layers, nn.ModuleDict):
        raise TypeError("training needs a model with linear heads (semcontrib.model.LinearHeads)")
    for layer in layers.values():
        assert isinstance(layer, nn.Linear)
        bound = 1.0 / math.sqrt(layer.in_features)
        with torch.no_grad():
            layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=gen))
            layer.bias.zero_()


def fit_heads(model: MultitaskModel, features: np.ndarray, targets: np.ndarray, tasks: Sequence[str],
              train_idx: np.ndarray, val_idx: np.ndarray, config: TrainConfig | None = None,
              progress: Progress | None = None) -> History:
    """Train the linear heads on cached backbone features (the backbone stays frozen).

    Parameters
    ----------
    features : float32 N x (1 + V) x F from :func:`extract_features`; training draws one of the
        augmented views 1..V (or view 0 when V = 0) per image and epoch; validation uses view 0.
    targets : int64 N x T, ``-1`` where unlabelled.
    train_idx, val_idx : int indices into the N examples.

    The heads are re-initialised from ``config.seed``; on return they hold the weights of the
    epoch with the lowest validation loss (the last epoch without a validation set).
    """
    cfg = config or TrainConfig()
    if features.ndim != 3 or features.shape[0] != targets.shape[0]:
        raise ValueError(f"features must be N x (1+V) x F matching targets N x T; got {features.shape} "
                         f"and {targets.shape}")
    if len(train_idx) == 0:
        raise ValueError("no training examples")
    heads = model.heads
    _reset_heads(model, cfg.seed)
    heads.train()
    for p in heads.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([cfg.seed, 1])
    n_aug = features.shape[1] - 1
    y_all = torch.from_numpy(targets)
    x_val = torch.from_numpy(features[val_idx, 0])
    y_val = y_all[val_idx]
    stopper = _EarlyStopping(cfg.patience, cfg.min_delta)
    max_epochs = cfg.max_epochs(True)
    train_losses: list[float] = []
    val_losses: list[float] = []
    stopped = False
    t0 = time.perf_counter()
    for epoch in range(max_epochs):
        order = rng.permutation(np.asarray(train_idx))
        views = rng.integers(1, n_aug + 1, size=len(order)) if n_aug else np.zeros(len(order), dtype=np.int64)
        total, count = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            x = torch.from_numpy(features[idx, views[s:s + cfg.batch_size]])
            loss = task_balanced_loss(heads(x), y_all[idx], tasks)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        train_losses.append(total / max(count, 1))
        if len(val_idx):
            with torch.no_grad():
                heads.eval()
                vl = float(task_balanced_loss(heads(x_val), y_val, tasks))
                heads.train()
            val_losses.append(vl)
            if stopper.step(epoch, vl, heads):
                stopped = True
        else:
            val_losses.append(float("nan"))
        if progress:
            progress("epochs", epoch + 1, max_epochs)
        if stopped:
            break
    return _finish_training(heads, stopper, train_losses, val_losses, stopped, t0)


def _finish_training(module: nn.Module, stopper: _EarlyStopping, train_losses: list[float],
                     val_losses: list[float], stopped: bool, t0: float) -> History:
    """Restore the best epoch's weights, freeze the module for inference, and report the history."""
    if stopper.state is not None:
        module.load_state_dict(stopper.state)
    best = stopper.best_epoch if stopper.best_epoch >= 0 else len(train_losses) - 1
    freeze(module)
    return History(train_losses, val_losses, best, stopped, time.perf_counter() - t0)


def _load_working_images(paths: Sequence[Path], size: int) -> tuple[list[np.ndarray | None], dict[int, str]]:
    """Each image squashed to ``size`` x ``size`` (uint8), kept in memory for fine-tuning."""
    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    out: list[np.ndarray | None] = []
    reasons: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            out.append(resize_rgb(load_rgb(p).rgb, size))
        except ImageLoadError as exc:
            out.append(None)
            reasons[i] = exc.reason
    return out, reasons


def fine_tune(model: MultitaskModel, images: Sequence[np.ndarray], targets: np.ndarray, tasks: Sequence[str],
              train_idx: np.ndarray, val_idx: np.ndarray, config: TrainConfig | None = None,
              progress: Progress | None = None) -> History:
    """Train backbone and heads together, augmenting every batch on the fly.

    Parameters
    ----------
    images : N uint8 images (any size; each view is cropped from it and squashed to the input size).
    targets : int64 N x T, ``-1`` where unlabelled.

    BatchNorm layers keep their ImageNet statistics (eval mode): batches on a CPU are small.
    """
    cfg = config or TrainConfig()
    if len(train_idx) == 0:
        raise ValueError("no training examples")
    size = model.input_size
    _reset_heads(model, cfg.seed)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam([
        {"params": model.backbone.parameters(), "lr": cfg.backbone_lr},
        {"params": model.heads.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
    ])
    rng = np.random.default_rng([cfg.seed, 2])
    y_all = torch.from_numpy(targets)
    from semcontrib.imageio import resize_rgb

    def set_mode() -> None:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def val_loss() -> float:
        if not len(val_idx):
            return float("nan")
        model.eval()
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(val_idx), cfg.batch_size):
                idx = val_idx[s:s + cfg.batch_size]
                batch = np.stack([resize_rgb(images[i], size) for i in idx])
                loss = task_balanced_loss(model(_to_tensor(model, batch)), y_all[idx], tasks)
                total += float(loss) * len(idx)
        return total / len(val_idx)

    stopper = _EarlyStopping(cfg.patience, cfg.min_delta)
    max_epochs = cfg.max_epochs(False)
    train_losses: list[float] = []
    val_losses: list[float] = []
    stopped = False
    t0 = time.perf_counter()
    for epoch in range(max_epochs):
        set_mode()
        order = rng.permutation(np.asarray(train_idx))
        total, count = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            batch = np.stack([augment_rgb(images[i], size, rng, cfg.augment) for i in idx])
            loss = task_balanced_loss(model(_to_tensor(model, batch)), y_all[idx], tasks)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if progress:
                progress("batches", count, len(order))
        train_losses.append(total / max(count, 1))
        vl = val_loss()
        val_losses.append(vl)
        if len(val_idx) and stopper.step(epoch, vl, model):
            stopped = True
        if progress:
            progress("epochs", epoch + 1, max_epochs)
        if stopped:
            break
    return _finish_training(model, stopper, train_losses, val_losses, stopped, t0)


# --------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict_paths(model: MultitaskModel, paths: Sequence[Path], batch_size: int = 32,
                  progress: Progress | None = None) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Logits of every head for image files, through the full model.

    Returns
    -------
    logits : head -> float32 N x K (rows of unreadable images are NaN).
    reasons : index -> why an image could not be read.
    """
    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    out = {h.name: np.full((len(paths), len(h.classes)), np.nan, dtype=np.float32) for h in model.head_specs}
    reasons: dict[int, str] = {}
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        batch = np.stack([v for _, v in pending])
        logits = model(_to_tensor(model, batch))
        rows = [i for i, _ in pending]
        for name, z in logits.items():
            out[name][rows] = z.float().numpy()
        pending.clear()

    for i, p in enumerate(paths):
        try:
            pending.append((i, resize_rgb(load_rgb(p).rgb, model.input_size)))
        except ImageLoadError as exc:
            reasons[i] = exc.reason
        if len(pending) >= batch_size:
            flush()
        if progress:
            progress("predict", i + 1, len(paths))
    flush()
    return out, reasons


@torch.no_grad()
def predict_features(model: MultitaskModel, features: np.ndarray) -> dict[str, np.ndarray]:
    """Head logits from pooled features float32 N x F: head -> float32 N x K."""
    model.heads.eval()
    out = model.heads(torch.from_numpy(np.ascontiguousarray(features)))
    return {k: v.float().numpy() for k, v in out.items()}


# --------------------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class TrainOutcome:
    """The result of :func:`train`.

    Attributes
    ----------
    model : the trained model (eval mode, gradients off).
    checkpoint : the sidecar path (``MODEL.json``; weights in ``MODEL.safetensors``).
    labelled : the examples used (unreadable images removed).
    split : indices into ``labelled``.
    history : losses per epoch.
    evaluation : the report on the held-out test split (``semcontrib.evaluation.EvaluationReport``).
    seconds : wall time of feature extraction plus training.
    """

    model: MultitaskModel
    checkpoint: Path
    labelled: LabelledSet
    split: Split
    history: History
    evaluation: Any
    seconds: float
    feature_seconds: float


def _drop_unreadable(labelled: LabelledSet, reasons: Mapping[int, str]) -> tuple[LabelledSet, np.ndarray]:
    if not reasons:
        return labelled, np.arange(len(labelled))
    keep = np.asarray([i for i in range(len(labelled)) if i not in reasons], dtype=np.int64)
    counts = dict(labelled.report.counts)
    counts["unreadable_image"] = counts.get("unreadable_image", 0) + len(reasons)
    examples = {k: list(v) for k, v in labelled.report.examples.items()}
    for i, why in list(reasons.items())[:5]:
        _add(examples, "unreadable_image", f"{labelled.image_ids[i]} ({why})")
    report = replace(labelled.report, counts=counts, examples=examples, n_examples=len(keep))
    logger.warning("skipping %d unreadable images", len(reasons))
    return replace(labelled.subset(keep), report=report), keep


def class_counts(labelled: LabelledSet, idx: np.ndarray) -> dict[str, dict[str, int]]:
    """task -> {class -> number of labelled examples among ``idx``}."""
    out: dict[str, dict[str, int]] = {}
    for j, t in enumerate(labelled.tasks):
        col = labelled.targets[idx, j]
        out[t] = {c: int((col == k).sum()) for k, c in enumerate(labelled.classes[t])}
    return out


def train(images: str | Path, labels_csv: str | Path, out: str | Path, backbone: str = "efficientnet_lite0",
          weights: str | Path | None = None, random_init: bool = False, freeze_backbone: bool = True,
          tasks: Sequence[str] | None = None, config: TrainConfig | None = None,
          group_column: str | None = None,
          cache_dir: str | Path | None = None, progress: Progress | None = None,
          report_dir: str | Path | None = None) -> TrainOutcome:
    """Read labels, split, train, evaluate on the held-out split and save the checkpoint.

    Parameters
    ----------
    images, labels_csv : see :func:`read_labels`.
    out : checkpoint path without suffix; writes ``OUT.safetensors`` and the sidecar ``OUT.json``.
    backbone : a ``semcontrib.backbones.BACKBONES`` key.
    weights : local ImageNet weights file (torchvision backbones); Lite0's ship with its package.
    random_init : start from random weights instead (only when asked).
    freeze_backbone : train only the heads, on cached features of ``config.n_views`` augmented views.
    cache_dir : where backbone features are cached between runs (frozen backbone only).
    report_dir : where the evaluation report goes (JSON, Markdown, HTML, plots); ``None``: none.
    group_column : see :func:`read_labels`; keeps each group on one side of the split.

    Returns
    -------
    TrainOutcome
    """
    from semcontrib import evaluation

    cfg = config or TrainConfig()
    labelled = read_labels(labels_csv, images, tasks=tasks, group_column=group_column)
    model = build_multitask(backbone, labelled.head_specs(),
                            pretrained_weights=Path(weights) if weights else None, random_init=random_init)
    model.eval()
    t0 = time.perf_counter()
    if freeze_backbone:
        fs = extract_features(model, labelled.paths, n_views=cfg.n_views, seed=cfg.seed, augment=cfg.augment,
                              batch_size=cfg.batch_size, cache_dir=cache_dir, progress=progress)
        labelled, keep = _drop_unreadable(labelled, fs.reasons)
        feats = fs.features[keep]
        file_hashes = [fs.file_hashes[i] for i in keep]
        t_feat = time.perf_counter() - t0
        split = split_examples(labelled, cfg.seed, cfg.test_fraction, cfg.val_fraction)
        history = fit_heads(model, feats, labelled.targets, labelled.tasks, split.train, split.val, cfg,
                            progress)
        test_logits = predict_features(model, feats[split.test, 0])
    else:
        from semcontrib.imageio import sha256_file

        work, reasons = _load_working_images(labelled.paths, int(round(model.input_size * 1.25)))
        labelled, keep = _drop_unreadable(labelled, reasons)
        imgs = [work[i] for i in keep]
        file_hashes = [sha256_file(p) for p in labelled.paths]
        t_feat = time.perf_counter() - t0
        split = split_examples(labelled, cfg.seed, cfg.test_fraction, cfg.val_fraction)
        history = fine_tune(model, [im for im in imgs if im is not None], labelled.targets, labelled.tasks,
                            split.train, split.val, cfg, progress)
        test_logits, _ = predict_paths(model, [labelled.paths[i] for i in split.test], cfg.batch_size)
    seconds = time.perf_counter() - t0
    freeze(model)
    train_counts = class_counts(labelled, split.train)
    report = evaluation.evaluate_logits(
        test_logits, labelled.targets[split.test], labelled.tasks, labelled.classes,
        image_ids=[labelled.image_ids[i] for i in split.test], baseline_counts=train_counts,
        label_report=labelled.report.to_dict(),
        meta={"model": str(out), "backbone": backbone, "subset": "test", "evaluated": "at training",
              "freeze_backbone": freeze_backbone, "split": split.to_dict()},
    )
    dhash = data_hash(labelled, file_hashes)
    extra = {
        "label_mapping": labelled.label_mapping(),
        "tasks": list(labelled.tasks),
        "training": {
            "data_sha256": dhash,
            "labels_csv": Path(labels_csv).name,
            "n_examples": len(labelled),
            "freeze_backbone": freeze_backbone,
            "group_column": group_column,
            "pretrained": "random-init" if random_init else (Path(weights).name if weights else "package"),
            "config": cfg.to_dict(),
            "split": split.to_dict(labelled.image_ids),
            "class_counts_train": train_counts,
            "history": history.to_dict(),
            "label_report": labelled.report.to_dict(),
            "seconds": round(seconds, 3),
        },
        "metrics": report.summary(),
    }
    checkpoint = save_checkpoint(model, out, extra=extra)
    if report_dir is not None:
        evaluation.write_report(report, report_dir, history=history.to_dict())
    return TrainOutcome(model, checkpoint, labelled, split, history, report, seconds, t_feat)


def evaluate_model(model: str | Path | MultitaskModel, images: str | Path, labels_csv: str | Path,
                   subset: str = "auto", batch_size: int = 32, progress: Progress | None = None) -> Any:
    """Evaluate a saved model on a labelled folder: an ``evaluation.EvaluationReport``.

    Parameters
    ----------
    model : a checkpoint path (or an already loaded model).
    subset : ``"all"`` (every labelled image), ``"test"`` (only the checkpoint's held-out test
        ids; an error if the checkpoint has none), or ``"auto"`` (``"test"`` when the labels hold
        every held-out id of the checkpoint, i.e. this is the training data, else ``"all"``).

    The model's heads must be columns of the CSV; labels outside the model's classes are counted
    as ``unknown_class`` and ignored.
    """
    from semcontrib import evaluation

    if subset not in ("auto", "all", "test"):
        raise ValueError(f"subset must be 'auto', 'all' or 'test', got {subset!r}")
    meta: dict[str, Any] = {}
    if isinstance(model, MultitaskModel):
        m = model
    else:
        m = load_model(str(model))
        sidecar = Path(str(model))
        sidecar = sidecar.with_suffix(".json") if sidecar.suffix != ".json" else sidecar
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
    tasks = m.head_names
    labelled = read_labels(labels_csv, images, tasks=tasks, classes={h.name: h.classes for h in m.head_specs})
    training = meta.get("training", {})
    test_ids = training.get("split", {}).get("test_ids")
    chosen = subset
    if subset in ("auto", "test"):
        present = set(labelled.image_ids)
        if test_ids and set(test_ids) <= present:
            chosen = "test"
        elif subset == "test":
            raise ValueError("subset='test' needs a checkpoint whose held-out ids are all in the labels CSV")
        else:
            chosen = "all"
    if chosen == "test":
        wanted = set(test_ids or [])
        labelled = labelled.subset(np.asarray([i for i, r in enumerate(labelled.image_ids) if r in wanted]))
    logits, reasons = predict_paths(m, labelled.paths, batch_size, progress)
    labelled, keep = _drop_unreadable(labelled, reasons)
    logits = {k: v[keep] for k, v in logits.items()}
    return evaluation.evaluate_logits(
        logits, labelled.targets, labelled.tasks, labelled.classes, image_ids=labelled.image_ids,
        baseline_counts=training.get("class_counts_train"), label_report=labelled.report.to_dict(),
        meta={"model": str(model) if not isinstance(model, MultitaskModel) else m.identity.get("name"),
              "backbone": m.spec.name, "subset": chosen, "labels_csv": str(labels_csv)},
    )


# --------------------------------------------------------------------------- sample data


def _photo(source: str, name: str) -> np.ndarray:
    """A bundled photograph as uint8 HxWx3 (greyscale replicated)."""
    if source == "skimage":
        import skimage.data

        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
    elif source == "sklearn":
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name)
    elif source == "matplotlib":
        from matplotlib import cbook

        f = cbook.get_sample_data(name, asfileobj=True)
        try:
            img = np.asarray(Image.open(f).convert("RGB"))  # type: ignore[arg-type]
        finally:
            f.close()  # type: ignore[union-attr]
    else:
        raise ValueError(f"unknown photo source {source!r}; use skimage, sklearn or matplotlib")
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


def build_sample_dataset(out: str | Path, variants: int = 5, seed: int = 0, max_side: int = 320,
                         labels_csv: str | Path | None = None) -> tuple[Path, Path]:
    """A small labelled set from the photographs bundled with scikit-image, scikit-learn and matplotlib.

    Each photograph of ``data/train_photos.csv`` (labels in ``data/train_labels.csv``) gives
    ``variants`` JPEG files ``<id>_vNN.jpg``: a random crop (40-100 % of the area), a random flip
    and a small colour change, at most ``max_side`` pixels on a side. Greyscale photographs stay
    greyscale files.

    Returns
    -------
    (images folder, labels CSV) under ``out``; the CSV has one row per variant.
    """
    import pandas as pd

    from semcontrib.paths import data_path

    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    out = Path(out)
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    photos = pd.read_csv(data_path("train_photos.csv"), dtype=str, keep_default_na=False)
    labels = pd.read_csv(labels_csv or data_path("train_labels.csv"), dtype=str, keep_default_na=False)
    by_id = labels.set_index("image_id")
    cfg = AugmentConfig(scale=(0.4, 1.0), brightness=0.15, contrast=0.15, saturation=0.15, hue=0.0)
    rows = []
    for k, ph in enumerate(photos.itertuples(index=False)):
        rgb = _photo(str(ph.source), str(ph.name))
        grey = bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))
        rng = np.random.default_rng([seed, k])
        h, w = rgb.shape[:2]
        for v in range(variants):
            top, left, ch, cw = _crop_box(h, w, cfg, rng)
            crop = rgb[top:top + ch, left:left + cw]
            scale = min(1.0, max_side / max(crop.shape[:2]))
            size = (max(8, int(round(crop.shape[1] * scale))), max(8, int(round(crop.shape[0] * scale))))
            img = Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.BICUBIC)
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15)))
            if grey:
                img = img.convert("L")
            vid = f"{ph.image_id}_v{v:02d}"
            img.save(folder / f"{vid}.jpg", quality=90)
            rows.append({"image_id": vid, **by_id.loc[str(ph.image_id)].to_dict()})
    csv = out / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return folder, csv

