"""The plan: every input's image id and chunk; new images are planned into new chunks in input order.

The planner works on columns: the inputs' absolute paths (Arrow text), sizes and modification times (NumPy;
for a folder they come from the listing's one ``os.scandir`` walk), matched against the plan table (Arrow)
with hash lookups (``pyarrow.compute.index_in``): the latest record of each path, the first record of each
image id. A rerun with nothing to do makes no Python object per input: the :class:`Plan` it returns holds
arrays, and makes a chunk's :class:`PlannedInput` members only when they are asked for.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from semcontrib import corpus as cstore
from semcontrib.engine.inputs import InputEntry, InputList, _text_of, make_image_id
from semcontrib.engine.workers import (  # per-image work, in worker processes that never import torch
    path_text,
)
from semcontrib.imageio import sha256_file
from semcontrib.store.plan import read_plan_table

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


class Plan:
    """The inputs of one run in input order, as columns, and the chunks they fall in.

    Attributes
    ----------
    entries : the inputs (n), in input order (an :class:`InputList` for a folder).
    image_ids : Arrow string (n,): each input's image id (``<id>-dup<k>`` for the k-th copy of a file).
    sha256 : Arrow string (n,): content sha256 (``""`` for an unreadable file).
    chunk, position : int64 (n,): each input's place; -1 when it is not planned.
    reasons : row -> why that input is not planned (rows without one are planned).
    new_images : how many images this plan added.

    :attr:`inputs` (every input as a :class:`PlannedInput`) and :attr:`chunks` (chunk -> members in position
    order, a mapping whose members are made when a chunk is looked up) keep the interface of the plan as
    objects; :meth:`chunk_rows`, :meth:`chunk_ids`, :meth:`path_texts` and :meth:`skipped` give what a
    rerun with nothing to do needs without making any.
    """

    def __init__(self, entries: Sequence[InputEntry], image_ids: pa.Array, sha256: pa.Array, place: np.ndarray,
                 reasons: Mapping[int, str], new_images: int) -> None:
        """``place``: int64 (n, 2), each input's chunk and position (-1 when not planned)."""
        self.entries, self.image_ids, self.sha256 = entries, image_ids, sha256
        chunk = self.chunk = np.ascontiguousarray(place[:, 0])
        position = self.position = np.ascontiguousarray(place[:, 1])
        self.reasons, self.new_images = dict(reasons), int(new_images)
        planned = np.flatnonzero(chunk >= 0)
        self._rows = planned[np.lexsort((position[planned], chunk[planned]))]  # chunk-major, then position
        sorted_chunks = chunk[self._rows]
        starts = np.flatnonzero(np.r_[True, sorted_chunks[1:] != sorted_chunks[:-1]]) if len(planned) \
            else np.zeros(0, np.int64)
        self.chunk_numbers: np.ndarray = sorted_chunks[starts]  # int64, ascending
        self._bounds = np.r_[starts, len(self._rows)]
        self.chunks: PlanChunks = PlanChunks(self)

    def __len__(self) -> int:
        return len(self.chunk)

    def chunk_rows(self, chunk: int) -> np.ndarray:
        """The input rows (int64) of one chunk's members, in position order; ``KeyError`` for another."""
        k = int(np.searchsorted(self.chunk_numbers, chunk))
        if k >= len(self.chunk_numbers) or self.chunk_numbers[k] != chunk:
            raise KeyError(chunk)
        return self._rows[self._bounds[k]:self._bounds[k + 1]]

    def chunk_ids(self, chunk: int) -> list[str]:
        """The image ids of one chunk's members, in position order (``members_digest`` hashes them)."""
        return self.image_ids.take(pa.array(self.chunk_rows(chunk))).to_pylist()

    def rows_as_inputs(self, rows: np.ndarray) -> list[PlannedInput]:
        """The :class:`PlannedInput` of ``rows`` (int (m,)), in that order."""
        rows = np.asarray(rows, np.int64)
        entries = self.entries.take(rows) if isinstance(self.entries, InputList) else \
            [self.entries[k] for k in rows.tolist()]
        index = pa.array(rows)
        return [PlannedInput(e, i, h, c, q, self.reasons.get(k, "")) for e, i, h, c, q, k in
                zip(entries, self.image_ids.take(index).to_pylist(), self.sha256.take(index).to_pylist(),
                    self.chunk[rows].tolist(), self.position[rows].tolist(), rows.tolist())]

    def path_texts(self) -> pa.Array:
        """Arrow string (n,): each input's path as the images table shows it (:func:`path_text`); for a
        folder's listing made from its columns, without a ``Path`` per input."""
        if isinstance(self.entries, InputList):
            scan = self.entries.scan
            base = str(Path(scan.folder))  # as the entries' paths spell it (Path drops "./" and "//")
            prefix = _text_of("" if base == "." else os.path.join(base, ""))
            try:
                return pc.binary_join_element_wise(prefix, pa.array(scan.relative, pa.string()), "")
            except UnicodeEncodeError:  # names that are not UTF-8
                return pa.array([prefix + _text_of(r) for r in scan.relative.tolist()], pa.string())
        return pa.array([path_text(e.path) for e in self.entries], pa.string())

    def skipped(self) -> list[tuple[str, str]]:
        """(path text, reason) of the inputs that are not planned, in input order."""
        return [(path_text(self.entries[k].path), r) for k, r in sorted(self.reasons.items())]

    @functools.cached_property
    def inputs(self) -> list[PlannedInput]:
        """Every input as a :class:`PlannedInput`, in input order (one object per input: made once, on use)."""
        return self.rows_as_inputs(np.arange(len(self.chunk)))


class PlanChunks(Mapping[int, list[PlannedInput]]):
    """A plan's chunks: chunk number (ascending) -> its members in position order, made on each lookup (or
    taken from :attr:`Plan.inputs` once that is made)."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan

    def __getitem__(self, chunk: int) -> list[PlannedInput]:
        plan = self._plan
        rows = plan.chunk_rows(chunk)
        made = plan.__dict__.get("inputs")  # every input already made (:attr:`Plan.inputs`): those objects
        return [made[k] for k in rows.tolist()] if made is not None else plan.rows_as_inputs(rows)

    def __contains__(self, chunk: object) -> bool:
        numbers = self._plan.chunk_numbers
        if not isinstance(chunk, (int, np.integer)):
            return False
        k = int(np.searchsorted(numbers, chunk))
        return k < len(numbers) and bool(numbers[k] == chunk)

    def __iter__(self) -> Iterator[int]:
        return iter(self._plan.chunk_numbers.tolist())

    def __len__(self) -> int:
        return len(self._plan.chunk_numbers)


_ABSOLUTE = re.compile(r"/(?!/)(?:(?!//|/\./|/\.\./|/\.?\.?$).)*")  # already what os.path.abspath gives


def make_plan(root: Path, entries: Sequence[InputEntry], chunk_size: int) -> Plan:
    """Find every input's image id and chunk, planning new images into new chunks in input order.

    A file whose size and modification time match the plan's latest record of its path is not read again
    (its recorded sha256 and image id are used); any other is hashed. Runs under the corpus's plan lock, so
    shards started at the same time agree on one plan. The inputs are matched against the plan as columns
    (Arrow hash lookups on the path and the image id, NumPy comparisons of size and time); for a folder
    (:class:`InputList`) the sizes and times are the listing's, so a rerun makes no Python object per input.
    """
    with cstore.plan_lock(root):
        old = read_plan_table(root)
        cols = _input_columns(entries)
        fresh = _reuse_recorded(cols, old)
        _hash_fresh(cols, entries, fresh)
        record = _first_records(cols, old)
        ok, reasons = _mark_duplicates(cols, entries, record)
        place, member, new = _place(record, old, ok, chunk_size)
        write = np.flatnonzero(ok & (fresh | ~member))  # new images, and planned ones whose file changed
        if len(write):
            at = pa.array(write)
            cstore.append_plan(root, pa.table(
                {"image_id": cols.image_ids.take(at), "chunk": place[write, 0], "position": place[write, 1],
                 "path": cols.keys.take(at), "size": cols.size[write], "mtime_ns": cols.mtime[write],
                 "sha256": cols.sha.take(at)}))
    return Plan(entries, cols.image_ids, cols.sha, place, reasons, len(new))


@dataclass
class _Columns:
    """The inputs of one plan as columns (row ``k`` is the ``k``-th entry), filled in step by step."""

    keys: pa.Array  # string (n,): the absolute path, as text (the plan's join key)
    size: np.ndarray  # int64 (n,): file size, -1 for a file that cannot be stat-ed
    mtime: np.ndarray  # int64 (n,): modification time in ns
    sha: pa.Array = field(init=False)  # string (n,): content sha256 ("" for an unreadable file)
    image_ids: pa.Array = field(init=False)  # string (n,)
    errors: dict[int, str] = field(default_factory=dict)  # row -> why the file cannot be read

    def __post_init__(self) -> None:
        self.sha = self.image_ids = pa.nulls(len(self.size), pa.string())

    def fill(self, ids: Mapping[int, str], shas: Mapping[int, str]) -> None:
        """Set the image id and sha256 of some rows (the same rows in both)."""
        if not ids:
            return
        rows = sorted(ids)
        mask = np.zeros(len(self.size), bool)
        mask[rows] = True
        self.image_ids = pc.replace_with_mask(self.image_ids, mask, pa.array([ids[k] for k in rows], pa.string()))
        self.sha = pc.replace_with_mask(self.sha, mask, pa.array([shas[k] for k in rows], pa.string()))


def _input_columns(entries: Sequence[InputEntry]) -> _Columns:
    """The inputs' path keys, sizes and times: a folder's from its listing, any other's by ``stat``."""
    if isinstance(entries, InputList):
        scan = entries.scan
        prefix = os.path.join(os.path.abspath(scan.folder), "")
        try:
            rel = pa.array(scan.relative, pa.string())
            keys = pc.binary_join_element_wise(_text_of(prefix), rel, "")
        except UnicodeEncodeError:  # names that are not UTF-8: their text, one at a time
            keys = pa.array([_text_of(prefix + r) for r in scan.relative.tolist()], pa.string())
        cols = _Columns(keys, scan.size.copy(), scan.mtime_ns.copy())
        for k in map(int, np.flatnonzero(cols.size < 0)):  # gone since the listing, or unreadable: why
            _stat_row(cols, k, entries[k].path)
        return cols
    n = len(entries)
    texts = []
    cols = _Columns(pa.nulls(0, pa.string()), np.full(n, -1, np.int64), np.zeros(n, np.int64))
    for k, e in enumerate(entries):
        text = os.fspath(e.path)
        texts.append(_text_of(text if _ABSOLUTE.fullmatch(text) else os.path.abspath(text)))
        _stat_row(cols, k, e.path)
    cols.keys = pa.array(texts, pa.string())
    return cols


def _stat_row(cols: _Columns, k: int, path: Path) -> None:
    try:
        st = os.stat(path)
        cols.size[k], cols.mtime[k] = st.st_size, st.st_mtime_ns
    except OSError as exc:
        cols.size[k], cols.mtime[k] = -1, 0
        cols.errors[k] = f"unreadable file: {exc.strerror or exc}"


def _reuse_recorded(cols: _Columns, old: pa.Table) -> np.ndarray:
    """Take sha256 and image id from the plan's latest record of each path whose size and time match;
    return the readable rows that must be hashed (bool (n,))."""
    readable = cols.size >= 0
    n_old = old.num_rows
    if not n_old:
        return readable.copy()
    latest_first = pa.array(np.arange(n_old - 1, -1, -1))
    found = pc.index_in(cols.keys, value_set=old.column("path").take(latest_first))  # first = latest
    known = found.is_valid().to_numpy(zero_copy_only=False) & readable
    row = n_old - 1 - found.fill_null(0).to_numpy().astype(np.int64)
    same = known & (old.column("size").to_numpy()[row] == cols.size) \
        & (old.column("mtime_ns").to_numpy()[row] == cols.mtime) \
        & old.column("sha256").is_valid().to_numpy(zero_copy_only=False)[row]
    at = pa.array(row, mask=~same)  # null where not reused: the value stays null
    cols.sha = _array(old.column("sha256").take(at))
    cols.image_ids = _array(old.column("image_id").take(at))
    return readable & ~same


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _hash_fresh(cols: _Columns, entries: Sequence[InputEntry], fresh: np.ndarray) -> None:
    """Hash the ``fresh`` files; an unreadable file gets an id from its path's hash and no sha256."""
    ids: dict[int, str] = {}
    shas: dict[int, str] = {}
    for k in map(int, np.flatnonzero(fresh)):
        path = entries[k].path
        try:
            shas[k] = sha256_file(path)
        except OSError as exc:
            cols.errors[k] = f"unreadable file: {exc.strerror or exc}"
            continue
        ids[k] = make_image_id(path, shas[k])
    for k in cols.errors:
        path = entries[k].path
        ids[k] = make_image_id(path, hashlib.sha256(os.fsencode(path)).hexdigest())
        shas[k] = ""
    cols.fill(ids, shas)


def _first_records(cols: _Columns, old: pa.Table) -> np.ndarray:
    """The plan row of the first record of each row's image id (int64 (n,), -1 for an id the plan lacks)."""
    if not old.num_rows:
        return np.full(len(cols.size), -1, np.int64)
    at = pc.index_in(cols.image_ids, value_set=old.column("image_id"))
    return at.fill_null(-1).to_numpy().astype(np.int64)


def _mark_duplicates(cols: _Columns, entries: Sequence[InputEntry], record: np.ndarray
                     ) -> tuple[np.ndarray, dict[int, str]]:
    """Which rows are planned (bool (n,)) and why the others are not; the k-th copy of a file is
    ``<id>-dup<k>``, with the reason naming the first. Rows whose id the plan holds are compared by their
    ``record`` (integers: one sort), the others (new images) by their id."""
    n = len(cols.size)
    ok = np.ones(n, bool)
    ok[list(cols.errors)] = False
    reasons: dict[int, str] = dict(cols.errors)
    first = np.arange(n)  # the first row with the same image id
    known, unknown = np.flatnonzero(record >= 0), np.flatnonzero(record < 0)
    if len(known):
        _, at, inverse = np.unique(record[known], return_index=True, return_inverse=True)
        first[known] = known[at[inverse.ravel()]]
    if len(unknown):
        ids = cols.image_ids.take(pa.array(unknown))
        first[unknown] = unknown[pc.index_in(ids, value_set=ids).to_numpy(zero_copy_only=False)]
    dup = (first != np.arange(n)) & ok
    if dup.any():
        rows = np.flatnonzero(dup)
        originals = cols.image_ids.take(pa.array(rows)).to_pylist()
        copies: Counter[str] = Counter()
        ids_of: dict[int, str] = {}
        for k, i in zip(rows.tolist(), originals):
            copies[i] += 1
            ids_of[k] = f"{i}-dup{copies[i]}"
            reasons[k] = f"duplicate of {path_text(entries[int(first[k])].path)}"
        cols.fill(ids_of, dict(zip(ids_of, cols.sha.take(pa.array(rows)).to_pylist())))
        ok &= ~dup
    return ok, reasons


def _place(record: np.ndarray, old: pa.Table, ok: np.ndarray, chunk_size: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chunk, position) per row (int64 (n, 2), -1 when not planned): the place of the first record of its
    id (``record``), or, for new images, one in new chunks in input order; which rows the plan already
    holds, and the rows of new images."""
    n = len(ok)
    place = np.full((n, 2), -1, np.int64)
    member = (record >= 0) & ok
    if old.num_rows:
        row = record[member]
        place[member, 0] = old.column("chunk").to_numpy()[row]
        place[member, 1] = old.column("position").to_numpy()[row]
    next_chunk = int(pc.max(old.column("chunk")).as_py()) + 1 if old.num_rows else 0
    new = np.flatnonzero(ok & ~member)
    order = np.arange(len(new))
    place[new, 0] = next_chunk + order // chunk_size
    place[new, 1] = order % chunk_size
    return place, member, new
