"""How far to trust each method: per-image rank agreement between methods and the medians of the validity
record, one row per (head, method) (the trust tab). Pure functions on arrays and data frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def row_spearman(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """float64 (N,): Spearman rank correlation of each row of A with the same row of B (N x C each);
    NaN where a row has a NaN or is constant.

    Examples
    --------
    >>> row_spearman(np.array([[1., 2, 3], [1, 1, 1]]), np.array([[3., 5, 9], [1, 2, 3]])).round(3).tolist()
    [1.0, nan]
    """
    from scipy.stats import rankdata

    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    bad = np.isnan(A).any(axis=1) | np.isnan(B).any(axis=1)
    ra = rankdata(np.nan_to_num(A), axis=1)
    rb = rankdata(np.nan_to_num(B), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(axis=1) / den
    r[bad | (den == 0)] = np.nan
    return r


def trust_table(validity: pd.DataFrame, vectors: Mapping[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """How far to trust each method: one row per (head, method).

    Parameters
    ----------
    validity : one row per (image, head, method) with ``head, method`` and, when recorded,
        ``faithfulness, deletion_auc, insertion_auc`` (floats, NaN where not computed).
    vectors : (head, method) -> float N x C score matrix (rows aligned across methods of one head).

    Returns
    -------
    DataFrame with ``head, method, images, median_faithfulness, median_deletion_auc,
    median_insertion_auc, agreement`` (agreement: median over images and other methods of the Spearman
    correlation between this method's vector and the other method's vector of the same image and head).
    """
    rows = []
    for (head, method), V in vectors.items():
        others = [vectors[(h, m)] for (h, m) in vectors if h == head and m != method]
        rs = np.concatenate([row_spearman(V, W) for W in others]) if others else np.zeros(0)
        rs = rs[~np.isnan(rs)]
        sub = validity[(validity["head"] == head) & (validity["method"] == method)] if len(validity) else validity

        def median(col: str, sub: pd.DataFrame = sub) -> float:
            if col not in sub.columns:
                return float("nan")
            v = sub[col].to_numpy(np.float64)
            v = v[~np.isnan(v)]
            return float(np.median(v)) if len(v) else float("nan")

        rows.append({"head": head, "method": method, "images": int((~np.isnan(V).any(axis=1)).sum()),
                     "median_faithfulness": median("faithfulness"),
                     "median_deletion_auc": median("deletion_auc"),
                     "median_insertion_auc": median("insertion_auc"),
                     "agreement": float(np.median(rs)) if len(rs) else float("nan")})
    return pd.DataFrame(rows, columns=["head", "method", "images", "median_faithfulness", "median_deletion_auc",
                                       "median_insertion_auc", "agreement"])
