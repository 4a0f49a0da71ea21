"""Labels: a labels CSV (or a Label Studio JSON export) and an image folder become a :class:`LabelledSet`.

``targets`` is int64 N x T (one column per task, in head order), ``-1`` where a task has no label.
Bad rows and cells are dropped or masked and counted in a :class:`LabelReport`, never raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.model import HeadSpec
from semcontrib.segmentation.annotations import image_name_keys

logger = logging.getLogger(__name__)



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
    "skipped_task",       # a Label Studio task left out (no annotation, disagreement, unknown choice, ...)
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
    skipped_tasks : every Label Studio task left out, as ``task ID (IMAGE): reason``.
    """

    n_rows: int
    n_examples: int
    counts: dict[str, int]
    examples: dict[str, list[str]] = field(default_factory=dict)
    empty_cells: dict[str, int] = field(default_factory=dict)
    unknown_classes: dict[str, dict[str, int]] = field(default_factory=dict)
    single_example_classes: dict[str, list[str]] = field(default_factory=dict)
    dropped_tasks: dict[str, str] = field(default_factory=dict)
    skipped_tasks: list[str] = field(default_factory=list)

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
        and one column per task holding class names; or a Label Studio JSON export (a ``.json``
        file, read by :func:`semcontrib.label_studio.read_choices`: one ``choices`` control per task,
        images matched by file name, also without the upload prefix). Its rejected tasks are
        reported in ``report.skipped_tasks``; with ``classes``, a choice outside them rejects its task.
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

    from semcontrib.label_studio import is_label_studio_export, read_choices

    labels_csv, images = Path(labels_csv), Path(images)
    studio = is_label_studio_export(labels_csv)
    if not labels_csv.is_file():
        raise FileNotFoundError(f"labels {'export' if studio else 'CSV'} not found: {labels_csv}")
    if not images.is_dir():
        raise FileNotFoundError(f"image folder not found: {images}")
    skipped_tasks: list[str] = []
    if studio:
        if group_column is not None:
            raise ValueError("a group column needs a labels CSV; a Label Studio export has none")
        export = read_choices(labels_csv, classes)
        skipped_tasks = [str(t) for t in export.skipped]
        df = pd.DataFrame([[r.image, *(r.labels.get(t, "") for t in export.tasks)] for r in export.rows],
                          columns=["image_id", *export.tasks], dtype=object)
    else:
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
    counts["skipped_task"] = len(skipped_tasks)
    for text in skipped_tasks[:5]:
        _add(examples, "skipped_task", text)
    empty_cells: Counter[str] = Counter()
    unknown: dict[str, Counter[str]] = {t: Counter() for t in tasks}

    files = _list_images(images)
    index: dict[str, list[Path]] = {}
    for p in files:
        rel = p.relative_to(images).as_posix()
        keys = {rel, rel.rsplit(".", 1)[0], p.name, p.stem}
        if studio:  # files may keep Label Studio's upload prefix, or not
            keys.update(image_name_keys(p.name))
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
            if studio:  # the uploaded name, then without its prefix
                hits = next((index[k] for k in image_name_keys(rid_key) if k in index), [])
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
        single_example_classes=single, dropped_tasks=dropped, skipped_tasks=skipped_tasks,
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


def drop_unreadable(labelled: LabelledSet, reasons: Mapping[int, str]) -> tuple[LabelledSet, np.ndarray]:
    """Remove the examples at the indices of ``reasons`` (unreadable images), counting them in the report.

    Returns the smaller set and the int64 indices kept.
    """
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
