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
