"""How far to trust each method: per-image rank agreement between methods and the medians of the validity
record, one row per (head, method) (the trust tab). Pure functions on arrays and data frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from semcontrib.validity import CIRCULAR


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
        ``faithfulness, deletion_auc, insertion_auc, lerf_auc, random_auc`` (floats, NaN where not
        computed) and ``validity_note`` (text; a note starting with ``circular`` marks a method judged by
        its own perturbation, :data:`semcontrib.validity.CIRCULAR`).
    vectors : (head, method) -> float N x C score matrix (rows aligned across methods of one head).

    Returns
    -------
    DataFrame with ``head, method, images, median_faithfulness, median_deletion_auc,
    median_insertion_auc, gain_morf, gain_lerf, circular, agreement``. Agreement: median over images and
    other methods of the Spearman correlation between this method's vector and the other method's vector
    of the same image and head. Gains over a random order of the same regions (medians over images, > 0
    beats random): ``gain_morf`` = random AUC - MoRF deletion AUC, ``gain_lerf`` = LeRF AUC - random AUC,
    as ``semcontrib validate`` reports them. ``circular``: the share of the method's records judged by its
    own perturbation; where any is, the medians of faithfulness and of the deletion curves are NaN
    (the record says nothing about the method then, so the table does not rank it on those numbers).

    Examples
    --------
    >>> v = pd.DataFrame({"head": ["h", "h"], "method": ["m", "m"], "deletion_auc": [0.2, 0.4],
    ...                   "lerf_auc": [0.9, 0.7], "random_auc": [0.5, 0.5], "validity_note": ["", ""]})
    >>> t = trust_table(v, {("h", "m"): np.ones((2, 3))})
    >>> [round(t.loc[0, c], 2) for c in ("gain_morf", "gain_lerf", "circular")]
    [0.2, 0.3, 0.0]
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

        circ = _circular_share(sub)
        judged = circ == 0  # a record judged by the method's own perturbation is no evidence about it
        row = {"head": head, "method": method, "images": int((~np.isnan(V).any(axis=1)).sum()),
               "median_faithfulness": median("faithfulness") if judged else float("nan"),
               "median_deletion_auc": median("deletion_auc") if judged else float("nan"),
               "median_insertion_auc": median("insertion_auc") if judged else float("nan"),
               "gain_morf": _median_difference(sub, "random_auc", "deletion_auc") if judged else float("nan"),
               "gain_lerf": _median_difference(sub, "lerf_auc", "random_auc") if judged else float("nan"),
               "circular": circ,
               "agreement": float(np.median(rs)) if len(rs) else float("nan")}
        rows.append(row)
    return pd.DataFrame(rows, columns=TRUST_COLUMNS)


TRUST_COLUMNS = ["head", "method", "images", "median_faithfulness", "median_deletion_auc", "median_insertion_auc",
                 "gain_morf", "gain_lerf", "circular", "agreement"]


def _median_difference(sub: pd.DataFrame, a: str, b: str) -> float:
    """Median over images of ``sub[a] - sub[b]`` (NaN rows left out; NaN when a column is missing)."""
    if a not in sub.columns or b not in sub.columns:
        return float("nan")
    d = sub[a].to_numpy(np.float64) - sub[b].to_numpy(np.float64)
    d = d[~np.isnan(d)]
    return float(np.median(d)) if len(d) else float("nan")


def _circular_share(sub: pd.DataFrame) -> float:
    """The share of ``sub``'s records whose validity note starts with ``circular`` (0 without notes)."""
    if "validity_note" not in sub.columns or not len(sub):
        return 0.0
    notes = sub["validity_note"].fillna("").astype(str)
    return float(notes.str.startswith(CIRCULAR).mean())
