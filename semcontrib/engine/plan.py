"""The plan: every input's image id and chunk; new images are planned into new chunks in input order."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from semcontrib import corpus as cstore
from semcontrib.engine.inputs import InputEntry, _text_of, make_image_id
from semcontrib.imageio import sha256_file
from semcontrib.workers import (  # per-image work, in worker processes that never import torch
    path_text,
)

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
        cols = _stat_inputs(entries)
        fresh = _reuse_recorded(cols, old)
        _hash_fresh(cols, entries, fresh)
        ok, reasons = _mark_duplicates(cols, entries)
        place, member, new = _place(cols, old, ok, chunk_size)
        write = np.flatnonzero(ok & (fresh | ~member))  # new images, and planned ones whose file changed
        if len(write):
            cstore.append_plan(root, pd.DataFrame(
                {"image_id": cols.image_ids[write], "path": cols.keys[write], "size": cols.size[write],
                 "mtime_ns": cols.mtime[write], "sha256": cols.sha[write], "chunk": place[write, 0],
                 "position": place[write, 1]}, columns=list(cstore.PLAN_COLUMNS)))
    inputs = [PlannedInput(e, i, h, c, q, reasons.get(k, "")) for k, (e, i, h, c, q) in
              enumerate(zip(entries, cols.image_ids.tolist(), cols.sha.tolist(), place[:, 0].tolist(),
                            place[:, 1].tolist()))]
    chunks: dict[int, list[PlannedInput]] = {}
    planned = np.flatnonzero(place[:, 0] >= 0)
    for k in planned[np.lexsort((place[planned, 1], place[planned, 0]))]:
        chunks.setdefault(int(place[k, 0]), []).append(inputs[k])
    return Plan(inputs, chunks, len(new))


@dataclass
class _Columns:
    """The inputs of one plan as columns (row ``k`` is the ``k``-th entry), filled in step by step."""

    keys: np.ndarray  # object (n,): the absolute path, as text (the plan's join key)
    size: np.ndarray  # int64 (n,): file size, -1 for a file that cannot be stat-ed
    mtime: np.ndarray  # int64 (n,): modification time in ns
    sha: np.ndarray  # object (n,): content sha256 ("" for an unreadable file)
    image_ids: np.ndarray  # object (n,)
    errors: dict[int, str]  # row -> why the file cannot be read


def _stat_inputs(entries: Sequence[InputEntry]) -> _Columns:
    n = len(entries)
    cols = _Columns(np.empty(n, object), np.full(n, -1, np.int64), np.zeros(n, np.int64), np.full(n, None, object),
                    np.full(n, None, object), {})
    for k, e in enumerate(entries):
        text = os.fspath(e.path)
        cols.keys[k] = _text_of(text if _ABSOLUTE.fullmatch(text) else os.path.abspath(text))
        try:
            st = os.stat(e.path)
            cols.size[k], cols.mtime[k] = st.st_size, st.st_mtime_ns
        except OSError as exc:
            cols.errors[k] = f"unreadable file: {exc.strerror or exc}"
    return cols


def _reuse_recorded(cols: _Columns, old: pd.DataFrame) -> np.ndarray:
    """Take sha256 and image id from the plan's latest record of each path whose size and time match;
    return the readable rows that must be hashed (bool (n,))."""
    readable = cols.size >= 0
    if not len(old):
        return readable.copy()
    last = old.drop_duplicates("path", keep="last").set_index("path")
    rec = last.reindex(pd.Index(cols.keys, dtype=object))
    known = rec["sha256"].notna().to_numpy() & readable
    same = known & (rec["size"].to_numpy(np.float64) == cols.size) \
        & (rec["mtime_ns"].to_numpy(np.float64) == cols.mtime)
    cols.sha[same] = rec["sha256"].to_numpy(object)[same]
    cols.image_ids[same] = rec["image_id"].to_numpy(object)[same]
    return readable & ~same


def _hash_fresh(cols: _Columns, entries: Sequence[InputEntry], fresh: np.ndarray) -> None:
    """Hash the ``fresh`` files; an unreadable file gets an id from its path's hash and no sha256."""
    for k in map(int, np.flatnonzero(fresh)):
        try:
            cols.sha[k] = sha256_file(entries[k].path)
        except OSError as exc:
            cols.errors[k] = f"unreadable file: {exc.strerror or exc}"
            continue
        cols.image_ids[k] = make_image_id(entries[k].path, cols.sha[k])
    for k in cols.errors:
        cols.image_ids[k] = make_image_id(entries[k].path, hashlib.sha256(os.fsencode(entries[k].path)).hexdigest())
        cols.sha[k] = ""


def _mark_duplicates(cols: _Columns, entries: Sequence[InputEntry]) -> tuple[np.ndarray, dict[int, str]]:
    """Which rows are planned (bool (n,)) and why the others are not; the k-th copy of a file is
    ``<id>-dup<k>``, with the reason naming the first."""
    image_ids, n = cols.image_ids, len(cols.image_ids)
    ok = np.ones(n, bool)
    ok[list(cols.errors)] = False
    reasons: dict[int, str] = dict(cols.errors)
    ids = pd.Series(image_ids, dtype=object)
    dup = (ids.duplicated(keep="first").to_numpy() & ok) if n else np.zeros(0, bool)
    if dup.any():
        first_path = {i: path_text(entries[k].path) for k, i in enumerate(image_ids) if ok[k]
                      and not dup[k] and i in set(image_ids[dup])}
        copies: Counter[str] = Counter()
        for k in map(int, np.flatnonzero(dup)):
            i = str(image_ids[k])
            copies[i] += 1
            image_ids[k] = f"{i}-dup{copies[i]}"
            reasons[int(k)] = f"duplicate of {first_path[i]}"
        ok &= ~dup
    return ok, reasons


def _place(cols: _Columns, old: pd.DataFrame, ok: np.ndarray, chunk_size: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chunk, position) per row (int64 (n, 2), -1 when not planned), which rows the plan already holds,
    and the rows of new images (placed into new chunks in input order)."""
    n = len(ok)
    place = np.full((n, 2), -1, np.int64)
    if len(old):
        first = old.drop_duplicates("image_id", keep="first").set_index("image_id")
        at = first.reindex(pd.Index(cols.image_ids, dtype=object))
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
    return place, member, new
