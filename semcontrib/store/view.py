"""Reading a corpus lazily: checked reads of some columns of one part, and one view's scores as NumPy.

A *view* is one head x method x normalisation x basis. Its scores come from one partition of the
contributions table (``contributions/head=H/method=M/``), of which only the row keys and the raw
statistics its normalisation needs are read (``image_id``, ``region_index``, ``n_pixels`` and ``sum``, or
for ``split`` ``pos_sum`` and ``neg_sum``).

The engine writes each part's rows image-major (its chunks in order, each chunk's images in plan order),
an image's K regions as K consecutive rows in vocabulary order (``region_index`` 0..K-1), and a head x
method partition's parts in chunk order. :func:`scores_from_rows` relies on that layout only after
checking it on the rows read (every ``region_index`` in sequence, every image's K rows consecutive and
every image once); a partition laid out otherwise gives None, and the caller takes the general path
(:func:`semcontrib.store.reader.score_table`, which sorts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from semcontrib.contributions import _per_region, _safe_div
from semcontrib.store.files import check_table_size
from semcontrib.store.parts import Part
from semcontrib.store.schema import CorpusError, inside

RAW_COLUMNS = ("n_pixels", "sum", "pos_sum", "neg_sum")


@dataclass(frozen=True)
class ViewScores:
    """The scores of one view for the images of a corpus.

    Attributes
    ----------
    image_ids : object (N,), the images of status ok, in the images table's order.
    columns : score column names, length C: the regions, or for ``split`` ``REGION+`` then ``REGION-``.
    column_region : int64 (C,), the region index of each column.
    values : float64 N x C; a row of NaN for an image without a vector in this view.
    """

    image_ids: np.ndarray
    columns: tuple[str, ...]
    column_region: np.ndarray
    values: np.ndarray


def score_columns(vocabulary: Sequence[str], normalisation: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(column names, int64 region index of each) of a view's scores.

    >>> score_columns(["sky", "sea"], "split")[0]
    ('sky+', 'sea+', 'sky-', 'sea-')
    """
    K = len(vocabulary)
    if normalisation == "split":
        return (*(f"{r}+" for r in vocabulary), *(f"{r}-" for r in vocabulary)), np.tile(np.arange(K), 2)
    return tuple(vocabulary), np.arange(K, dtype=np.int64)


# --------------------------------------------------------------------------- checked reads of one part


def _path(root: Path, part: Part) -> Path:
    path = Path(root) / part.file
    if not inside(root, path):
        raise CorpusError(f"{path}: a link that leads outside the corpus; run `semcontrib analyze` again")
    return path


def check_part(root: Path, part: Part) -> None:
    """Check a listed part from its footer alone (no rows are read): inside the corpus, within the size
    cap, readable, and holding the rows the manifest says; ``CorpusError`` otherwise."""
    path = _path(root, part)
    check_table_size(path)
    rows = pq.read_metadata(path).num_rows
    if rows != part.rows:
        raise CorpusError(f"{path}: {rows} rows, the manifest says {part.rows}; run `semcontrib analyze` again")


def part_columns(root: Path, part: Part) -> list[str]:
    """The column names a part stores (its footer only)."""
    path = _path(root, part)
    try:
        return list(pq.read_schema(path).names)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise CorpusError(f"{path}: unreadable table part ({exc}); run `semcontrib analyze` again") from exc


def read_part_columns(root: Path, part: Part, columns: Sequence[str] | None = None,
                      as_dictionary: Sequence[str] = ()) -> pa.Table:
    """Some columns of one part as stored (no partition columns; all with None), checked as
    :func:`semcontrib.store.parts.read_part_rows` checks a whole part. A part that is no longer there was
    removed by a later publish: the corpus changed since it was opened.

    Text columns named in ``as_dictionary`` are read as dictionaries (a few distinct values: much less to
    decode); :func:`restore_text` turns them back into text once the rows wanted are taken."""
    path = _path(root, part)
    if not path.exists():
        raise CorpusError(f"{path}: a table part of the generation opened is gone (a later analysis or "
                          "compaction replaced it); open the corpus again")
    check_table_size(path)
    try:
        if columns is not None:
            stored = set(pq.read_schema(path).names)
            missing = [c for c in columns if c not in stored]
            if missing:
                raise CorpusError(f"{path}: table part lacks columns {missing}; run `semcontrib analyze` again")
        schema = pq.read_schema(path)
        read = schema.names if columns is None else list(columns)
        text = [c for c in as_dictionary if c in read and c in schema.names and _is_text(schema.field(c).type)]
        table = pq.read_table(path, columns=None if columns is None else list(columns), read_dictionary=text)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               _DECODED: ",".join(text).encode()})
    except (OSError, pa.ArrowException, ValueError) as exc:
        if isinstance(exc, CorpusError):
            raise
        raise CorpusError(f"{path}: unreadable table part ({exc}); run `semcontrib analyze` again") from exc
    if table.num_rows != part.rows:
        raise CorpusError(f"{path}: {table.num_rows} rows, the manifest says {part.rows}; "
                          "run `semcontrib analyze` again")
    return table


_DECODED = b"semcontrib.read_as_dictionary"


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def restore_text(table: pa.Table) -> pa.Table:
    """The columns :func:`read_part_columns` read as dictionaries, back as the text they are stored as."""
    names = [c for c in (table.schema.metadata or {}).get(_DECODED, b"").decode().split(",") if c]
    for c in names:
        k = table.schema.get_field_index(c)
        column = table.column(k)
        table = table.set_column(k, c, column.cast(column.type.value_type))
    return table.replace_schema_metadata({k: v for k, v in (table.schema.metadata or {}).items() if k != _DECODED})


def with_partition_columns(table: pa.Table, part: Part) -> pa.Table:
    """A part's rows with its ``head`` and ``method`` columns (text, from the partition) after the first."""
    zeros = pa.array(np.zeros(table.num_rows, np.int32))
    for k, (name, value) in enumerate((("head", part.head), ("method", part.method)), start=1):
        column = pa.DictionaryArray.from_arrays(zeros, pa.array([value])).cast(pa.string())
        table = table.add_column(min(k, table.num_columns), name, column)
    return table


# --------------------------------------------------------------------------- one view's scores


def _as_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text values of a column stored as text or as a dictionary of text (a categorical)."""
    return values.cast(values.type.value_type) if pa.types.is_dictionary(values.type) else values


def group_ids(image_id: pa.ChunkedArray, region_index: np.ndarray, K: int) -> np.ndarray | None:
    """object (G,): the image of each run of K rows, when the rows are laid out as the engine writes
    them (``region_index`` 0..K-1 in every run, one image per run, and the next run another image);
    None otherwise."""
    n = len(region_index)
    if K < 1 or n % K:
        return None
    G = n // K
    if G and not (region_index.reshape(G, K) == np.arange(K)).all():
        return None
    ids = _as_text(image_id)
    if ids.null_count:
        return None
    if n > 1:  # each row against the next: the same image within a run, another one where a run starts
        same = pc.equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        if not np.array_equal(same, np.arange(1, n) % K != 0):
            return None
    first = ids.take(pa.array(np.arange(0, n, K, dtype=np.int64)))
    return np.asarray(first.to_numpy(zero_copy_only=False), dtype=object)


def align_rows(groups: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
    """int64 (N,): for each of ``ids``, its run among ``groups`` (-1 where it has none); None when an
    image has two runs (the caller then takes the general path)."""
    if len(groups) == len(ids) and (groups == ids).all():  # the images table in chunk order: no lookup
        return np.arange(len(ids), dtype=np.int64)
    index = pd.Index(groups)
    if not index.is_unique:
        return None
    return np.asarray(index.get_indexer(pd.Index(ids)), dtype=np.int64)


def view_columns(normalisation: str) -> tuple[str, ...]:
    """The columns a view reads: the row keys and the raw statistics its normalisation needs."""
    return ("image_id", "region_index", "n_pixels", *(("pos_sum", "neg_sum") if normalisation == "split" else ("sum",)))


def normalised(raw: dict[str, np.ndarray], normalisation: str, basis: str) -> np.ndarray:
    """float64 G x C: one normalisation of raw statistics (G x K each, the columns of
    :func:`view_columns`), computed alone with the formulas of :func:`semcontrib.contributions.normalise`
    (the same numbers, tested), which computes every normalisation."""
    n = raw["n_pixels"]
    if normalisation == "split":
        P = _per_region(raw["pos_sum"], n, basis)
        N = _per_region(raw["neg_sum"], n, basis)
        return np.hstack([_safe_div(P, P.sum(axis=-1, keepdims=True)),
                          _safe_div(N, np.abs(N).sum(axis=-1, keepdims=True))])
    A = _per_region(raw["sum"], n, basis)
    if normalisation == "paper":
        return _safe_div(A, A.sum(axis=-1, keepdims=True))
    if normalisation == "signed_l1":
        return _safe_div(A, np.abs(A).sum(axis=-1, keepdims=True))
    raise ValueError(f"unknown normalisation {normalisation!r}")


def scores_from_rows(table: pa.Table, K: int, ids: np.ndarray, normalisation: str, basis: str) -> np.ndarray | None:
    """float64 N x C scores of a partition's rows (columns :func:`view_columns`, parts concatenated in
    order) aligned to ``ids``; None when the rows are not laid out as the engine writes them.

    The rows are normalised in the order stored (no sort, no text beyond the image ids)."""
    region_index = table.column("region_index").to_numpy()
    groups = group_ids(table.column("image_id"), region_index, K)
    if groups is None:
        return None
    rows = align_rows(groups, ids)
    if rows is None:
        return None
    G = len(groups)
    raw = {c: np.asarray(table.column(c).to_numpy(), dtype=np.float64).reshape(G, K)
           for c in view_columns(normalisation)[2:]}
    scores = normalised(raw, normalisation, basis)
    if len(rows) == G and (rows == np.arange(G)).all():
        return np.ascontiguousarray(scores, dtype=np.float64)
    out = np.full((len(ids), scores.shape[1]), np.nan)
    found = rows >= 0
    out[found] = scores[rows[found]]
    return out
