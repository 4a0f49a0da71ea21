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
    labels_csv, images = Path(labels_csv), Path(images)
    table, skipped_tasks = _read_table(labels_csv, images, classes, group_column)
    table = _choose_tasks(table, tasks, classes)
    tally = _Tally({t: Counter() for t in table.tasks})
    tally.counts["skipped_task"] = len(skipped_tasks)
    for text in skipped_tasks[:5]:
        _add(tally.examples, "skipped_task", text)
    rows = _match_rows(table, images, _list_images(images), tally)
    cls, dropped = _task_classes(table, rows, classes)
    kept_tasks = [t for t in table.tasks if t not in dropped]
    lookup = {t: {c: i for i, c in enumerate(cls[t])} for t in kept_tasks}
    kept = _encode(rows, table.tasks, lookup, tally)
    arr = np.asarray([r.targets for r in kept], dtype=np.int64).reshape(len(kept), len(kept_tasks))
    report = LabelReport(
        n_rows=len(table.frame), n_examples=len(kept), counts=tally.counts, examples=tally.examples,
        empty_cells=dict(tally.empty_cells), unknown_classes={t: dict(c) for t, c in tally.unknown.items() if c},
        single_example_classes=_single_example_classes(arr, kept_tasks, cls), dropped_tasks=dropped,
        skipped_tasks=skipped_tasks,
    )
    for k, n in tally.counts.items():
        if n and k != "unlabelled_image":
            logger.warning("labels: %d x %s (e.g. %s)", n, k, tally.examples.get(k, []))
    return LabelledSet([r.image_id for r in kept], [r.path for r in kept], kept_tasks,
                       {t: cls[t] for t in kept_tasks}, arr, report,
                       [r.group or f"\x00{r.image_id}" for r in kept] if table.group_column is not None else None)


@dataclass(frozen=True)
class _Table:
    """A labels table as read: every cell a string; ``tasks`` empty until :func:`_choose_tasks`."""

    frame: Any  # pandas.DataFrame of str
    source: Path
    id_column: str
    group_column: str | None
    studio: bool
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Row:
    """One matched row: its id, image file, the task cells (in ``_Table.tasks`` order) and group cell."""

    image_id: str
    path: Path
    cells: list[str]
    group: str
    targets: list[int] = field(default_factory=list)


@dataclass
class _Tally:
    """What read_labels counts: problems per ``REPORT_COUNT_KEYS`` key with up to five examples each,
    empty cells per task and unknown labels per task."""

    unknown: dict[str, Counter[str]]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REPORT_COUNT_KEYS, 0))
    examples: dict[str, list[str]] = field(default_factory=dict)
    empty_cells: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, example: str | None = None) -> None:
        self.counts[key] += 1
        if example is not None:
            _add(self.examples, key, example)


def _read_table(labels_csv: Path, images: Path, classes: Mapping[str, Sequence[str]] | None,
                group_column: str | None) -> tuple[_Table, list[str]]:
    """The labels CSV (or Label Studio export) as strings, its id column checked; and the skipped export tasks."""
    import pandas as pd

    from semcontrib.label_studio import is_label_studio_export, read_choices

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
    return _Table(df, labels_csv, id_col, group_column, studio), skipped_tasks


def _choose_tasks(table: _Table, tasks: Sequence[str] | None,
                  classes: Mapping[str, Sequence[str]] | None) -> _Table:
    """``table`` with its task columns: those asked for (checked), else every column but ids and group."""
    columns = list(table.frame.columns)
    if tasks is None:
        tasks = [c for c in columns if c not in ID_COLUMNS and c != table.group_column]
    tasks = list(tasks)
    if not tasks:
        raise ValueError(f"{table.source} has no task column besides {table.id_column!r}")
    missing_cols = [t for t in tasks if t not in columns]
    if missing_cols:
        raise ValueError(f"task columns {missing_cols} not in {table.source}; columns are {columns}")
    if classes is not None:
        absent = [t for t in tasks if t not in classes]
        if absent:
            raise ValueError(f"no classes given for tasks {absent}")
    return replace(table, tasks=tuple(tasks))


def _image_index(images: Path, files: Sequence[Path], studio: bool) -> dict[str, list[Path]]:
    """Every name an id may use for a file: relative path with and without extension, name, stem."""
    index: dict[str, list[Path]] = {}
    for p in files:
        rel = p.relative_to(images).as_posix()
        keys = {rel, rel.rsplit(".", 1)[0], p.name, p.stem}
        if studio:  # files may keep Label Studio's upload prefix, or not
            keys.update(image_name_keys(p.name))
        for k in keys:
            index.setdefault(k, []).append(p)
    return index


def _match_rows(table: _Table, images: Path, files: Sequence[Path], tally: _Tally) -> list[_Row]:
    """The rows whose id names exactly one image file not named before (the files no row names are
    counted as ``unlabelled_image``)."""
    index = _image_index(images, files, table.studio)
    rows: list[_Row] = []
    seen: set[Path] = set()
    for _, row in table.frame.iterrows():
        rid = str(row[table.id_column]).strip()
        if not rid:
            tally.add("empty_id")
            continue
        path = _row_path(rid, table, images, index, tally)
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            tally.add("duplicate_id", rid)
            continue
        seen.add(resolved)
        group = str(row[table.group_column]).strip() if table.group_column is not None else ""
        rows.append(_Row(rid, path, [str(row[t]).strip() for t in table.tasks], group))
    unlabelled = [p for p in files if p.resolve() not in seen]
    tally.counts["unlabelled_image"] = len(unlabelled)
    for p in unlabelled[:5]:
        _add(tally.examples, "unlabelled_image", p.relative_to(images).as_posix())
    return rows


def _row_path(rid: str, table: _Table, images: Path, index: Mapping[str, list[Path]], tally: _Tally) -> Path | None:
    """The image file a row's id names, or ``None`` (counted in ``tally``)."""
    if table.id_column == "path":
        p = Path(rid)
        p = p if p.is_absolute() else images / p
        if not p.is_file():
            tally.add("missing_image", rid)
            return None
        return p
    rid_key = rid.replace("\\", "/")
    hits = index.get(rid_key, [])
    if table.studio:  # the uploaded name, then without its prefix
        hits = next((index[k] for k in image_name_keys(rid_key) if k in index), [])
    if not hits:
        tally.add("unknown_id", rid)
        return None
    if len(set(hits)) > 1:
        tally.add("ambiguous_id", rid)
        return None
    return hits[0]


def _task_classes(table: _Table, rows: Sequence[_Row], classes: Mapping[str, Sequence[str]] | None
                  ) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Each task's classes (given, or the sorted distinct labels) and the tasks dropped, with why."""
    cls: dict[str, tuple[str, ...]] = {}
    for j, t in enumerate(table.tasks):
        if classes is not None:
            cls[t] = tuple(str(c) for c in classes[t])
        else:
            cls[t] = tuple(sorted({r.cells[j] for r in rows if r.cells[j]}))
    dropped: dict[str, str] = {}
    if classes is None:
        for t in table.tasks:
            if len(cls[t]) < 2:
                dropped[t] = f"fewer than two classes ({list(cls[t])})"
    if all(t in dropped for t in table.tasks):
        raise ValueError(f"no task in {table.source} has two classes among the matched images: {dropped}")
    return cls, dropped


def _encode(rows: Sequence[_Row], tasks: Sequence[str], lookup: Mapping[str, Mapping[str, int]],
            tally: _Tally) -> list[_Row]:
    """The rows with at least one usable label, each with its class indices (-1: none) for the kept tasks."""
    kept: list[_Row] = []
    for row in rows:
        tr = []
        for j, t in enumerate(tasks):
            if t not in lookup:
                continue
            cell = row.cells[j]
            if not cell:
                tally.add("empty_cell", f"{row.image_id}:{t}")
                tally.empty_cells[t] += 1
                tr.append(-1)
            elif cell not in lookup[t]:
                tally.add("unknown_class", f"{row.image_id}:{t}={cell}")
                tally.unknown[t][cell] += 1
                tr.append(-1)
            else:
                tr.append(lookup[t][cell])
        if all(v < 0 for v in tr):
            tally.add("no_label", row.image_id)
            continue
        kept.append(replace(row, targets=tr))
    return kept


def _single_example_classes(arr: np.ndarray, tasks: Sequence[str], cls: Mapping[str, Sequence[str]]
                            ) -> dict[str, list[str]]:
    """Per task, the classes with exactly one labelled example (they cannot be on both sides of a split)."""
    single: dict[str, list[str]] = {}
    for j, t in enumerate(tasks):
        c = Counter(arr[:, j][arr[:, j] >= 0].tolist())
        ones = [cls[t][k] for k, n in sorted(c.items()) if n == 1]
        if ones:
            single[t] = ones
    return single


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
