"""Exporting the contribution table to CSV or Parquet.

CSV is made safe for spreadsheets: a text cell or header that begins with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return would be evaluated as a formula by Excel, LibreOffice or Google Sheets
(region, class and head names come from annotation files a stranger may have written, image ids and
labels from file names and label files), so it gets a leading apostrophe (OWASP's advice for CSV
injection). Numbers stay numbers. Parquet keeps the raw values.

:func:`csv_bytes` writes the CSV with ``pyarrow.csv`` and neutralises the text columns (the only columns
that can hold such text) column-wise in Arrow: about 20x faster than pandas ``to_csv`` of
:func:`spreadsheet_safe` (benchmarks/bench_million.py). Its text cells are quoted, booleans are
``true``/``false`` and missing numbers are empty cells.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from semcontrib.corpus import Corpus, write_bytes

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_text(value: object) -> object:
    """A text that a spreadsheet would evaluate gets a leading ``'``; anything else is returned as is.

    >>> neutralise_text("=HYPERLINK(\\"x\\")"), neutralise_text("sky"), neutralise_text(-1.5)
    ('\\'=HYPERLINK("x")', 'sky', -1.5)
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names cannot start a spreadsheet formula."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise_text)
        elif isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object).map(neutralise_text)
    out.columns = [neutralise_text(str(c)) for c in out.columns]
    return out


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def neutralise_column(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A text column (or a dictionary of text) whose cells cannot start a spreadsheet formula; any other
    column as it is. Column-wise in Arrow: no Python object per cell.

    >>> neutralise_column(pa.array(["=1+1", "sky", None, "-x"])).to_pylist()
    ["'=1+1", 'sky', None, "'-x"]
    >>> neutralise_column(pa.array(["@a", "b", "@a"]).dictionary_encode()).to_pylist()
    ["'@a", 'b', "'@a"]
    """
    if pa.types.is_dictionary(values.type) and _is_text(values.type.value_type):  # its dictionary only
        if isinstance(values, pa.ChunkedArray):
            return pa.chunked_array([neutralise_column(c) for c in values.chunks], values.type)
        return pa.DictionaryArray.from_arrays(values.indices, neutralise_column(values.dictionary))
    if not _is_text(values.type):
        return values
    risky = pc.starts_with(values, FORMULA_STARTS[0])
    for start in FORMULA_STARTS[1:]:
        risky = pc.or_(risky, pc.starts_with(values, start))
    quote = pa.scalar("'", values.type)
    return pc.if_else(risky, pc.binary_join_element_wise(quote, values, pa.scalar("", values.type)), values)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as spreadsheet-safe CSV (UTF-8, a header row, no index), written by ``pyarrow.csv``: every
    text cell and column name that a spreadsheet would evaluate gets a leading ``'``."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    names = [str(neutralise_text(str(c))) for c in df.columns]
    safe = pa.table([neutralise_column(table.column(k)) for k in range(table.num_columns)], names=names)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(safe, sink)
    return bytes(sink.getvalue().to_pybytes())


def export_table(corpus: Corpus, output: str | Path, *, head: str | None = None, method: str | None = None,
                 normalisation: str = "signed_l1", basis: str = "mean", wide: bool = False) -> int:
    """Write the contribution table (long, or wide: one row per image, head and method); return rows."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"export file must end in .csv or .parquet, got {output.name!r}")
    df = corpus.contribution_table(head, method, normalisation=normalisation, basis=basis, wide=wide)
    if suffix == ".csv":
        write_bytes(output, csv_bytes(df))
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        write_bytes(output, buf.getvalue())
    return len(df)
