"""Table parts: one Parquet file of one table, head and method, listing the chunks whose rows it holds."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from semcontrib.store.files import check_table_size, write_table
from semcontrib.store.schema import _PART, PARTITIONED, CorpusError, _check_key, _check_name, inside

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- table parts and publishing


@dataclass(frozen=True)
class Part:
    """One Parquet file of a partitioned table: its (head, method) partition, the key of what its rows
    were computed from, and the chunks whose rows it holds (in order)."""

    table: str
    head: str
    method: str
    file: str
    key: str
    chunks: tuple[int, ...]
    rows: int

    def to_record(self) -> dict[str, Any]:
        return {"table": self.table, "head": self.head, "method": self.method, "file": self.file,
                "key": self.key, "chunks": _ranges(self.chunks), "rows": self.rows}

    @classmethod
    def from_record(cls, rec: Any, where: Path) -> Part:
        try:
            part = cls(str(rec["table"]), str(rec["head"]), str(rec["method"]), str(rec["file"]),
                       _check_key(str(rec["key"])), _unranges(rec["chunks"]), int(rec["rows"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusError(f"{where}: malformed part record ({exc})") from None
        if part.table not in PARTITIONED or not _PART.match(part.file) or ".." in part.file.split("/"):
            raise CorpusError(f"{where}: malformed part record for {part.file!r}")
        return part


def _ranges(chunks: Sequence[int]) -> list[list[int]]:
    """Sorted chunk indices as ``[first, last]`` runs (short manifests at a million images)."""
    out: list[list[int]] = []
    for c in chunks:
        if out and c == out[-1][1] + 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


MAX_CHUNKS = 1_000_000  # chunk indices one part may list (128M images at the default chunk size)


def _unranges(runs: Any) -> tuple[int, ...]:
    pairs = [(int(a), int(b)) for a, b in runs]
    if any(not 0 <= a <= b for a, b in pairs) or sum(b - a + 1 for a, b in pairs) > MAX_CHUNKS:
        raise ValueError(f"bad chunk ranges (more than {MAX_CHUNKS} chunks, or reversed)")
    out: list[int] = []
    for a, b in pairs:
        out.extend(range(a, b + 1))
    return tuple(out)


def part_folder(table: str, head: str, method: str) -> str:
    """The hive folder of one partition (names URI-escaped, as pyarrow and DuckDB decode them)."""
    return f"{table}/head={quote(head, safe='')}/method={quote(_check_name(method), safe='')}"


def write_part(root: Path, table: str, head: str, method: str, df: pd.DataFrame, *, key: str,
               chunks: Sequence[int]) -> Part:
    """Write one new part (rows without the partition columns) atomically; return its record."""
    if table not in PARTITIONED:
        raise ValueError(f"table must be one of {PARTITIONED}, got {table!r}")
    rel = f"{part_folder(table, head, method)}/part-{uuid.uuid4().hex}.parquet"
    write_table(Path(root) / rel, df.drop(columns=["head", "method"], errors="ignore").reset_index(drop=True))
    return Part(table, head, method, rel, key, tuple(chunks), len(df))


def read_part(root: Path, part: Part) -> pd.DataFrame:
    """One part's rows with its ``head`` and ``method`` columns restored."""
    return _read_part_arrow(root, part).to_pandas()


def part_intact(root: Path, part: Part) -> bool:
    """Whether a listed part is there, inside the corpus, readable (its Parquet footer) and of the
    recorded length."""
    if not inside(root, Path(root) / part.file):
        logger.warning("table part %s leads outside the corpus; its rows will be rebuilt", part.file)
        return False
    try:
        return pq.read_metadata(Path(root) / part.file).num_rows == part.rows
    except (OSError, pa.ArrowException, ValueError) as exc:
        logger.warning("table part %s is damaged (%s); its rows will be rebuilt", part.file, exc)
        return False


def read_part_rows(root: Path, part: Part) -> pa.Table:
    """One part's file as stored (no partition columns), checked: inside the corpus, within the size
    cap, readable, and holding the rows the manifest says (``CorpusError`` otherwise)."""
    path = Path(root) / part.file
    if not inside(root, path):
        raise CorpusError(f"{path}: a link that leads outside the corpus; run `semcontrib analyze` again")
    check_table_size(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable table part ({exc}); run `semcontrib analyze` again") from exc
    if table.num_rows != part.rows:
        raise CorpusError(f"{path}: {table.num_rows} rows, the manifest says {part.rows}; "
                          "run `semcontrib analyze` again")
    return table


def _read_part_arrow(root: Path, part: Part) -> pa.Table:
    """One part as an Arrow table with its ``head`` and ``method`` columns (text, from the partition)."""
    table = read_part_rows(root, part)
    zeros = pa.array(np.zeros(table.num_rows, np.int32))
    for k, (name, value) in enumerate((("head", part.head), ("method", part.method)), start=1):
        column = pa.DictionaryArray.from_arrays(zeros, pa.array([value])).cast(pa.string())
        table = table.add_column(min(k, table.num_columns), name, column)
    return table
