"""Groups of images: suggested clusters and outliers, and what a group is — the regions that distinguish
it, its typical images, a short label (pure).

:func:`suggest_clusters` (k-means or HDBSCAN) and :func:`flag_outliers` (robust z-score of the mean kNN
distance) work on the weighted unit vectors (``views.embedding_input``, float64 N x C).

For a group (a suggested cluster or a named selection) against the rest of the filtered set:

* :func:`distinguishing_regions` — per score column, the difference of mean scores (group − rest) with a
  95 % Welch interval (normal approximation, ``diff ± 1.96 * sqrt(s_a²/n_a + s_b²/n_b)``) and the effect
  size (Cohen's d with the pooled standard deviation);
* :func:`prototypes` — the group's most typical images: the members closest (cosine) to the group's mean
  weighted unit vector, as ViRelAy shows a cluster by its prototypes;
* :func:`short_label` — ``"sky +, person −"`` from the regions whose interval excludes zero, largest
  effect first.

Scores are fractions of the vector (the views' unit); figures and text show them in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CLUSTERINGS = ("kmeans", "hdbscan")
Z95 = 1.959963984540054
COLUMNS = ("column", "mean_group", "mean_rest", "difference", "ci_low", "ci_high", "effect_size", "n_group",
           "n_rest")


def distinguishing_regions(values: np.ndarray, columns: Sequence[str], group: np.ndarray, rest: np.ndarray,
                           z: float = Z95) -> pd.DataFrame:
    """How each score column differs between ``group`` and ``rest``, largest |effect size| first.

    Parameters
    ----------
    values : float N x C scores (NaN rows = no vector; left out of both sides).
    columns : the C column names.
    group, rest : bool (N,) masks (may overlap; typically ``rest = filtered & ~group``).
    z : the normal quantile of the interval (1.96: 95 %).

    Returns
    -------
    DataFrame with :data:`COLUMNS`: means, their difference, its interval (``ci_low``, ``ci_high``; NaN with
    fewer than 2 images on a side), Cohen's d (0 when both sides are constant), and the side sizes.

    Examples
    --------
    >>> v = np.array([[1.0], [3.0], [0.0], [2.0]])
    >>> t = distinguishing_regions(v, ["sky"], np.array([1, 1, 0, 0], bool), np.array([0, 0, 1, 1], bool))
    >>> t[["difference", "effect_size"]].round(3).values.tolist()
    [[1.0, 0.707]]
    """
    V = np.asarray(values, dtype=np.float64)
    if V.ndim != 2 or V.shape[1] != len(columns):
        raise ValueError(f"values must be N x {len(columns)}, got shape {V.shape}")
    ok = ~np.isnan(V).any(axis=1)
    a, b = V[np.asarray(group, bool) & ok], V[np.asarray(rest, bool) & ok]
    na, nb = len(a), len(b)
    ma = a.mean(axis=0) if na else np.full(V.shape[1], np.nan)
    mb = b.mean(axis=0) if nb else np.full(V.shape[1], np.nan)
    va = a.var(axis=0, ddof=1) if na > 1 else np.full(V.shape[1], np.nan)
    vb = b.var(axis=0, ddof=1) if nb > 1 else np.full(V.shape[1], np.nan)
    diff = ma - mb
    half = z * np.sqrt(va / max(na, 1) + vb / max(nb, 1))
    pooled = np.sqrt(((na - 1) * va + (nb - 1) * vb) / max(na + nb - 2, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(pooled > 1e-12, diff / pooled, np.where(np.isnan(pooled), np.nan, 0.0))  # constant: 0
    table = pd.DataFrame({"column": list(columns), "mean_group": ma, "mean_rest": mb, "difference": diff,
                          "ci_low": diff - half, "ci_high": diff + half, "effect_size": d,
                          "n_group": na, "n_rest": nb}, columns=list(COLUMNS))
    order = np.argsort(-np.nan_to_num(np.abs(d), nan=-1.0), kind="stable")
    return table.iloc[order].reset_index(drop=True)


def prototypes(X: np.ndarray, group: np.ndarray, k: int = 5) -> np.ndarray:
    """int64 rows of the ``k`` members of ``group`` closest (cosine) to the group's mean row of ``X``
    (N x C weighted unit vectors), most typical first; ties keep corpus order.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> prototypes(X, np.array([True, True, False, True]), k=2).tolist()
    [1, 3]
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    idx = np.flatnonzero(np.asarray(group, bool))
    if len(idx) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.nan_to_num(np.asarray(X, dtype=np.float64)[idx])
    centre = rows.mean(axis=0)
    norm = np.linalg.norm(rows, axis=1) * (np.linalg.norm(centre) or 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, rows @ centre / norm, -np.inf)
    return idx[np.argsort(-cos, kind="stable")[:k]].astype(np.int64)


def short_label(table: pd.DataFrame, top: int = 2) -> str:
    """``"sky +, person −"``: the ``top`` columns with the largest |effect size| whose interval excludes
    zero (``+``: higher in the group); ``"no clear difference"`` when none does.

    Examples
    --------
    >>> t = pd.DataFrame({"column": ["sky", "person", "road"], "difference": [0.2, -0.1, 0.01],
    ...                   "ci_low": [0.1, -0.2, -0.02], "ci_high": [0.3, -0.05, 0.04],
    ...                   "effect_size": [1.5, -0.9, 0.1]})
    >>> short_label(t)
    'sky +, person −'
    """
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    clear = table[(table["ci_low"] > 0) | (table["ci_high"] < 0)]
    clear = clear.iloc[np.argsort(-np.abs(clear["effect_size"].to_numpy(np.float64)), kind="stable")][:top]
    if clear.empty:
        return "no clear difference"
    return ", ".join(f"{c} {'+' if d > 0 else '−'}" for c, d in zip(clear["column"], clear["difference"]))


def suggest_clusters(X: np.ndarray, algorithm: str = "kmeans", k: int = 4, seed: int = 0,
                     max_fit: int = 20000) -> np.ndarray:
    """int (N,) cluster labels of weighted unit vectors (-1 = noise for HDBSCAN).

    HDBSCAN on more than ``max_fit`` rows fits a subsample and labels the rest by nearest neighbour.
    """
    if algorithm not in CLUSTERINGS:
        raise ValueError(f"algorithm must be one of {CLUSTERINGS}, got {algorithm!r}")
    n = len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if algorithm == "kmeans":
        if not 2 <= k <= 50:
            raise ValueError(f"k must lie in 2..50, got {k}")
        from sklearn.cluster import KMeans, MiniBatchKMeans

        k = min(k, n)
        if n > max_fit:
            return MiniBatchKMeans(k, random_state=seed, n_init=3).fit_predict(X).astype(np.int64)
        return KMeans(k, random_state=seed, n_init=4).fit_predict(X).astype(np.int64)
    from sklearn.cluster import HDBSCAN

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, max_fit, replace=False)) if n > max_fit else np.arange(n)
    labels_fit = HDBSCAN(min_cluster_size=max(3, len(idx) // 50), copy=True).fit_predict(X[idx])
    if len(idx) == n:
        return labels_fit.astype(np.int64)
    from sklearn.neighbors import NearestNeighbors

    labels = np.empty(n, dtype=np.int64)
    labels[idx] = labels_fit
    rest = np.setdiff1d(np.arange(n), idx)
    labels[rest] = labels_fit[NearestNeighbors(n_neighbors=1).fit(X[idx]).kneighbors(X[rest])[1][:, 0]]
    return labels


def flag_outliers(X: np.ndarray, n_neighbors: int = 5, threshold: float = 3.5) -> np.ndarray:
    """bool (N,): rows whose mean distance to their nearest neighbours is far above typical.

    Robust z-score ``(d - median) / (1.4826 * MAD) > threshold`` of the mean kNN distance.
    """
    n = len(X)
    if n <= n_neighbors + 1:
        return np.zeros(n, dtype=bool)
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(X).kneighbors(X)
    d = dist[:, 1:].mean(axis=1)
    med = np.median(d)
    mad = 1.4826 * np.median(np.abs(d - med))
    if mad == 0:  # most points coincide: flag the few that do not
        far = d > med + 1e-9
        return far if far.mean() < 0.05 else np.zeros(n, dtype=bool)
    return (d - med) / mad > threshold
