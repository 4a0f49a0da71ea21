"""Exporting the contribution table to CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

from semcontrib.corpus import Corpus, write_bytes


def export_table(corpus: Corpus, output: str | Path, head: str | None = None, method: str | None = None,
                 normalisation: str = "signed_l1", basis: str = "mean", wide: bool = False) -> int:
    """Write the contribution table (long, or wide: one row per image, head and method); return rows."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"export file must end in .csv or .parquet, got {output.name!r}")
    df = corpus.contribution_table(head, method, normalisation=normalisation, basis=basis, wide=wide)
    if suffix == ".csv":
        write_bytes(output, df.to_csv(index=False).encode())
    else:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        write_bytes(output, buf.getvalue())
    return len(df)
