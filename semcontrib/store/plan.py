"""The plan: which images form which chunk, extended by later runs and never rewritten."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcontrib.store.files import check_table_size, write_table
from semcontrib.store.schema import PLAN_COLUMNS, CorpusError, StorePaths, inside

# --------------------------------------------------------------------------- the plan


def read_plan(root: Path) -> pd.DataFrame:
    """Every planned image (columns ``PLAN_COLUMNS``; an image id may appear again with a newer path,
    size or mtime, the last row being the latest). Unreadable parts raise ``CorpusError``."""
    folder = StorePaths(Path(root)).plan
    frames = []
    for f in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else ():
        if not inside(root, f):
            raise CorpusError(f"{f}: a link that leads outside the corpus; analyse into a new corpus")
        check_table_size(f)
        try:
            df = pq.read_table(f, columns=list(PLAN_COLUMNS)).to_pandas()
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise CorpusError(f"{f}: unreadable plan part ({exc}); the corpus's plan is damaged, "
                              "analyse into a new corpus") from exc
        frames.append(df)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("image_id", "path", "sha256") else np.int64)
                             for c in PLAN_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def append_plan(root: Path, rows: pd.DataFrame) -> None:
    """Add rows to the plan (call it while holding :func:`plan_lock`). Parts are named in order."""
    if rows.empty:
        return
    folder = StorePaths(Path(root)).plan
    n = len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0
    write_table(folder / f"part-{n:06d}-{uuid.uuid4().hex[:8]}.parquet",
                rows[list(PLAN_COLUMNS)].reset_index(drop=True))
