"""The plan: which images form which chunk, extended by later runs and never rewritten."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcontrib.store.files import check_table_size, write_bytes
from semcontrib.store.schema import PLAN_COLUMNS, CorpusError, StorePaths, inside

# --------------------------------------------------------------------------- the plan

PLAN_SCHEMA = pa.schema([(c, pa.string() if c in ("image_id", "path", "sha256") else pa.int64())
                         for c in PLAN_COLUMNS])


def read_plan_table(root: Path) -> pa.Table:
    """Every planned image as one Arrow table (schema :data:`PLAN_SCHEMA`, parts in order; an image id may
    appear again with a newer path, size or mtime, the last row being the latest). Unreadable parts raise
    ``CorpusError``."""
    folder = StorePaths(Path(root)).plan
    tables = []
    for f in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else ():
        if not inside(root, f):
            raise CorpusError(f"{f}: a link that leads outside the corpus; analyse into a new corpus")
        check_table_size(f)
        try:
            tables.append(pq.read_table(f, columns=list(PLAN_COLUMNS)).select(list(PLAN_COLUMNS))
                          .cast(PLAN_SCHEMA))
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise CorpusError(f"{f}: unreadable plan part ({exc}); the corpus's plan is damaged, "
                              "analyse into a new corpus") from exc
    if not tables:
        return PLAN_SCHEMA.empty_table()
    return pa.concat_tables(tables).combine_chunks()


def read_plan(root: Path) -> pd.DataFrame:
    """:func:`read_plan_table` as a data frame (columns ``PLAN_COLUMNS``)."""
    return read_plan_table(root).to_pandas()


def append_plan(root: Path, rows: pd.DataFrame | pa.Table) -> None:
    """Add rows to the plan (call it while holding :func:`plan_lock`). Parts are named in order."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows[list(PLAN_COLUMNS)],
                                                                         preserve_index=False)
    if table.num_rows == 0:
        return
    folder = StorePaths(Path(root)).plan
    n = len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0
    buf = io.BytesIO()
    # path, image id and sha256 are (nearly) unique: plain-encoded and zstd, a part of 1M rows reads in about
    # a third of the time of the default dictionary + snappy (bench_planning.py); chunk keeps its dictionary
    pq.write_table(table.select(list(PLAN_COLUMNS)).cast(PLAN_SCHEMA), buf, use_dictionary=["chunk"],
                   compression="zstd")
    write_bytes(folder / f"part-{n:06d}-{uuid.uuid4().hex[:8]}.parquet", buf.getvalue())
