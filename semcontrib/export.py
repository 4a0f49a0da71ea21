"""Exporting the contribution table to CSV or Parquet.

CSV is made safe for spreadsheets: a text cell or header that begins with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return would be evaluated as a formula by Excel, LibreOffice or Google Sheets
(region, class and head names come from annotation files a stranger may have written), so it gets a
leading apostrophe (OWASP's advice for CSV injection). Numbers stay numbers. Parquet keeps the raw values.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

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


def export_table(corpus: Corpus, output: str | Path, head: str | None = None, method: str | None = None,
                 normalisation: str = "signed_l1", basis: str = "mean", wide: bool = False) -> int:
    """Write the contribution table (long, or wide: one row per image, head and method); return rows."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"export file must end in .csv or .parquet, got {output.name!r}")
    df = corpus.contribution_table(head, method, normalisation=normalisation, basis=basis, wide=wide)
    if suffix == ".csv":
        write_bytes(output, spreadsheet_safe(df).to_csv(index=False).encode())
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        write_bytes(output, buf.getvalue())
    return len(df)
