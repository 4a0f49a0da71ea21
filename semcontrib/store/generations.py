"""Generations: publishing tables and manifest together (the manifest last) under the tables lock, reading the
images table of the current generation, and compaction of a partition's small parts."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from semcontrib.store.files import (
    _tables_lock,
    _write_arrow,
    read_table,
    remove_stale_temporaries,
    run_lock,
    write_json,
    write_table,
)
from semcontrib.store.manifest import manifest_parts, read_manifest
from semcontrib.store.parts import Part, part_folder, read_part_rows
from semcontrib.store.schema import GENERATIONS, MANIFEST, PARTITIONED, CorpusError

logger = logging.getLogger(__name__)


def publish(root: Path, images: pd.DataFrame, parts: Sequence[Part], manifest: Mapping[str, Any]) -> str:
    """Make ``images`` and ``parts`` (already written) with ``manifest`` the corpus's generation.

    The images table is first written complete into ``.generations/<id>/``; the manifest, written next,
    makes that generation (with its list of parts) current; then the top-level ``images.parquet`` is
    replaced by a hard link to it, and older generations and parts no longer listed are removed. A crash
    at any point leaves a readable corpus: before the manifest, the old generation whole; after it, the
    new one (readers fall back to ``.generations/<id>/`` for a top-level table not yet replaced).
    Readers (:meth:`Corpus.open`) take the same lock shared, so they never see a half-replaced corpus.
    """
    root = Path(root)
    generation = f"{time.time_ns():x}-{os.getpid():x}"
    gen_dir = root / GENERATIONS / generation
    with _tables_lock(root, exclusive=True):
        write_table(gen_dir / "images.parquet", images, generation)
        write_json(root / MANIFEST, {**manifest, "generation": generation,
                                     "parts": [p.to_record() for p in parts]})
        _link_replace(gen_dir / "images.parquet", root / "images.parquet")
        for old in (root / GENERATIONS).iterdir():
            if old.name != generation:
                _remove_tree(old)
        listed = {root / p.file for p in parts}
        for t in PARTITIONED:
            for f in (root / t).rglob("part-*.parquet") if (root / t).is_dir() else ():
                if f not in listed:
                    with contextlib.suppress(OSError):
                        f.unlink()
            for d in sorted((root / t).rglob("*"), reverse=True) if (root / t).is_dir() else ():
                with contextlib.suppress(OSError):
                    d.rmdir()  # only empty partition folders go
        for stale in ("attributions.parquet", "contributions.parquet"):  # a format-1 corpus's tables
            (root / stale).unlink(missing_ok=True)
    return generation


# --------------------------------------------------------------------------- compaction

COMPACT_MIN_PARTS = 16            # a partition with more parts than this is compacted when a run publishes
COMPACT_TARGET_ROWS = 2_000_000   # rows a merged part holds at most (a larger part stays as it is)


def compaction_runs(parts: Sequence[Part], min_parts: int | None = None,
                    target_rows: int | None = None) -> list[list[int]]:
    """Which parts to merge: runs of list positions, each to become one part.

    Only partitions (table, head, method, key) with more than ``min_parts`` parts are compacted. A
    run is a stretch of consecutive parts of one partition, gathered greedily while their rows stay
    within ``target_rows``; runs of one part are left out. Merging consecutive parts keeps every
    table's row order, and the greedy rule is idempotent (two neighbouring runs hold more than
    ``target_rows`` rows together), so a compacted corpus is not compacted again. Defaults:
    ``COMPACT_MIN_PARTS`` and ``COMPACT_TARGET_ROWS``.
    """
    min_parts = COMPACT_MIN_PARTS if min_parts is None else min_parts
    target_rows = COMPACT_TARGET_ROWS if target_rows is None else target_rows
    if min_parts < 1 or target_rows < 1:
        raise ValueError(f"min_parts and target_rows must be at least 1, got {min_parts} and {target_rows}")
    group = [(p.table, p.head, p.method, p.key) for p in parts]
    crowded = {g for g, n in Counter(group).items() if n > min_parts}
    runs: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for k, p in enumerate(parts):
        if current and group[current[0]] == group[k] and rows + p.rows <= target_rows:
            current.append(k)
            rows += p.rows
            continue
        if len(current) > 1:
            runs.append(current)
        current, rows = ([k], p.rows) if group[k] in crowded else ([], 0)
    if len(current) > 1:
        runs.append(current)
    return runs


def compact_parts(root: Path, parts: Sequence[Part], min_parts: int | None = None,
                  target_rows: int | None = None) -> list[Part]:
    """``parts`` with each run of :func:`compaction_runs` replaced by one new part that holds the run's rows
    in order (written atomically). Nothing is removed: the merged parts' files go when a publish makes
    a generation that no longer lists them, so a crash before that leaves the current generation whole."""
    root = Path(root)
    out = list(parts)
    for run in reversed(compaction_runs(parts, min_parts, target_rows)):
        members = [parts[k] for k in run]
        tables = [read_part_rows(root, p) for p in members]
        first = members[0]
        rel = f"{part_folder(first.table, first.head, first.method)}/part-{uuid.uuid4().hex}.parquet"
        _write_arrow(root / rel, pa.concat_tables(tables, promote_options="permissive"))
        chunks = tuple(sorted({c for p in members for c in p.chunks}))
        out[run[0]:run[-1] + 1] = [Part(first.table, first.head, first.method, rel, first.key, chunks,
                                        sum(p.rows for p in members))]
    return out


@dataclass(frozen=True)
class CompactionReport:
    """What :func:`compact` did: parts listed before and after, and the new generation (None: unchanged)."""

    parts_before: int
    parts_after: int
    generation: str | None


def compact(root: str | Path, target_rows: int = COMPACT_TARGET_ROWS, wait: bool = True) -> CompactionReport:
    """Merge the small parts of every partition of a corpus (``semcontrib compact CORPUS``).

    Holds the corpus's run lock (so no analysis runs meanwhile), writes the merged parts, then
    publishes them as a new generation with the same images table and manifest fields: readers see
    the old generation or the new one, whole, and the tables are equal (same rows, same order)."""
    root = Path(root)
    if not root.is_dir() or not (root / MANIFEST).is_file():
        raise CorpusError(f"{root} is not a corpus (no {MANIFEST}); run `semcontrib analyze` first")
    with run_lock(root, wait=wait):
        remove_stale_temporaries(root)
        manifest = read_manifest(root)
        if manifest is None:
            raise CorpusError(f"{root}: the manifest went away while compacting")
        parts = manifest_parts(manifest, root / MANIFEST)
        merged = compact_parts(root, parts, min_parts=1, target_rows=target_rows)
        if [p.file for p in merged] == [p.file for p in parts]:
            return CompactionReport(len(parts), len(parts), None)
        with _tables_lock(root, exclusive=False):
            images = read_images_table(root, manifest)
        rest = {k: v for k, v in manifest.items() if k not in ("generation", "parts")}
        generation = publish(root, images, merged, rest)
    logger.info("compacted %s: %d table parts into %d", root, len(parts), len(merged))
    return CompactionReport(len(parts), len(merged), generation)


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


def read_images_table(root: Path, manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The images table of the manifest's generation (hold the tables lock shared while reading it):
    the top-level file, or, after a publish that stopped between its renames, the generation's copy."""
    path = Path(root) / "images.parquet"
    if not path.is_file():
        raise CorpusError(f"{root}: missing images.parquet; run `semcontrib analyze` again to rebuild it")
    images, gen = read_table(path)
    want = manifest.get("generation", "")
    if gen != want:  # a publish that stopped between its renames: the generation's own copy
        kept = Path(root) / GENERATIONS / str(want) / "images.parquet"
        if not (isinstance(want, str) and want and kept.is_file()
                and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", want)):
            raise CorpusError(f"{path}: generation {gen!r} does not match the manifest's "
                              f"{want!r}; run `semcontrib analyze` again")
        images, gen = read_table(kept)
        if gen != want:
            raise CorpusError(f"{kept}: generation {gen!r} does not match the manifest's {want!r}")
    return images
