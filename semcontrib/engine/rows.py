"""The rows of the attributions and contributions tables, built from columns: the engine's table sink
(:mod:`semcontrib.engine.tables`) and the synthetic corpus (``dashboard/synthetic.py``) both build their
parts here, so a column the store's schema gains (:data:`semcontrib.corpus.ATTRIBUTION_COLUMNS`,
``CONTRIBUTION_COLUMNS``) is added in one place and both writers stay in the layout the lazy reader
expects (image-major, regions in vocabulary order: ``Corpus.view_scores`` reads it without sorting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from semcontrib import corpus as cstore

TEXT_COLUMNS = ("image_id", "target", "status", "region", "validity_note")
INT_COLUMNS = ("target_index", "region_index", "n_pixels", "unassigned_n")
STAT_COLUMNS = ("n_pixels", "sum", "pos_sum", "neg_sum")
ATTRIBUTION_ROW_COLUMNS = [c for c in cstore.ATTRIBUTION_COLUMNS if c not in ("head", "method")]


def typed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with the table's column types even when there are none (an empty part must concatenate);
    text columns stored as categoricals (a writer's dictionary encoding) are kept as they are."""
    for c in df.columns:
        if c in TEXT_COLUMNS:
            if not isinstance(df[c].dtype, pd.CategoricalDtype):
                df[c] = df[c].astype(str)
        elif c in INT_COLUMNS:
            df[c] = df[c].astype(np.int64)
        else:
            df[c] = df[c].astype(np.float64)
    return df


def attribution_frame(rows: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> pd.DataFrame:
    """The attribution rows of one head x method (the table's columns without ``head`` and ``method``, in
    the schema's order), from row dicts or from columns; a validity value a writer does not give is NaN
    and a missing note is ``no validity record``.

    Examples
    --------
    >>> df = attribution_frame([{"image_id": "a-0", "target": "x", "target_index": 1, "status": "ok"}])
    >>> df.loc[0, "validity_note"], str(df["target_index"].dtype), bool(np.isnan(df.loc[0, "faithfulness"]))
    ('no validity record', 'int64', True)
    """
    df = pd.DataFrame(rows, columns=ATTRIBUTION_ROW_COLUMNS)
    if df["validity_note"].isna().any():
        df["validity_note"] = df["validity_note"].astype(object).where(df["validity_note"].notna(),
                                                                       "no validity record")
    if "unassigned_n" in df:
        df["unassigned_n"] = df["unassigned_n"].fillna(0)
    return typed_rows(df)


def contribution_frame(image_ids: Any, targets: Any, target_index: Any, vocabulary: Sequence[str],
                       stats: Sequence[np.ndarray], *, categorical_regions: bool = False) -> pd.DataFrame:
    """The contribution rows of one head x method: one row per (image, region), image-major, regions in
    vocabulary order. ``image_ids``, ``targets`` (text or pandas Categoricals) and ``target_index`` have one
    entry per image; ``stats`` are the four N x K arrays ``n_pixels, sum, pos_sum, neg_sum``.

    Examples
    --------
    >>> df = contribution_frame(["a", "b"], ["x", "y"], [0, 1], ["sky", "sea"],
    ...                         [np.ones((2, 2)), np.full((2, 2), 0.5), np.ones((2, 2)), np.zeros((2, 2))])
    >>> df[["image_id", "region", "region_index", "n_pixels"]].values.tolist()
    [['a', 'sky', 0, 1], ['a', 'sea', 1, 1], ['b', 'sky', 0, 1], ['b', 'sea', 1, 1]]
    """
    K = len(vocabulary)
    index = np.asarray(target_index, np.int64)
    n = len(index)
    region: Any = (pd.Categorical.from_codes(np.tile(np.arange(K), n), dtype=pd.CategoricalDtype(pd.Index(vocabulary)))
                   if categorical_regions else np.tile(np.asarray(vocabulary, dtype=object), n))
    df = pd.DataFrame({
        "image_id": _repeat(image_ids, K), "target": _repeat(targets, K), "target_index": np.repeat(index, K),
        "region": region, "region_index": np.tile(np.arange(K, dtype=np.int64), n),
        **{c: np.asarray(s, np.float64).reshape(n * K) for c, s in zip(STAT_COLUMNS, stats, strict=True)}})
    return typed_rows(df)


def _repeat(values: Any, k: int) -> Any:
    """Each of ``values`` ``k`` times in a row (a Categorical stays one, by its codes)."""
    if isinstance(values, pd.Categorical):
        return pd.Categorical.from_codes(np.repeat(values.codes, k), dtype=values.dtype)
    return np.repeat(np.asarray(values, dtype=object), k)
