"""Region statistics, contribution scores and the weighted cosine similarity (pure functions).

Notation follows CatViz. For a signed attribution map ``R`` (float HxW) and regions ``k = 1..K``
with pixel sets ``P_k`` of size ``n_k``:

* raw statistics per region: ``n_k``, ``sum_k = sum_{p in P_k} R_p``, ``pos_sum_k`` (sum of the
  positive values), ``neg_sum_k`` (sum of the negative values, <= 0). Unassigned pixels get the same
  statistics in a separate record, so ``sum_k sum_k + unassigned.sum == sum(R)`` (conservation).
* mean relevance ``A_k = sum_k / n_k`` (eq. 4); basis ``sum`` uses ``A_k = sum_k`` instead.
* ``signed_l1`` (default): ``H_k = A_k / sum_j |A_j|`` so that ``sum_k |H_k| = 1``.
* ``split``: ``H+_k = (pos_sum_k/n_k) / sum_j (pos_sum_j/n_j)`` and
  ``H-_k = (neg_sum_k/n_k) / sum_j |neg_sum_j/n_j|`` (so ``H-`` lies in [-1, 0]).
* ``paper``: ``H_k = A_k / sum_j A_j`` exactly as eq. 5; flagged *unstable* when
  ``|sum_j A_j| < paper_tolerance * sum_j |A_j|`` (the ratio explodes or flips sign there).
* a region absent from an image (``n_k = 0``) scores 0 and is marked absent.
* weighted cosine similarity (eq. 6):
  ``cos_w(u, v) = sum_k w_k u_k v_k / (sqrt(sum_k w_k u_k^2) * sqrt(sum_k w_k v_k^2))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALISATIONS = ("signed_l1", "split", "paper")
BASES = ("mean", "sum")
DEFAULT_PAPER_TOLERANCE = 0.05


@dataclass(frozen=True)
class RegionStats:
    """Raw statistics of one attribution map over K regions.

    Attributes
    ----------
    n_pixels : int64 (K,)
    sum, pos_sum, neg_sum : float64 (K,); ``pos_sum >= 0``, ``neg_sum <= 0``, ``sum = pos_sum + neg_sum``.
    unassigned : float64 (4,) = (n_pixels, sum, pos_sum, neg_sum) of the unassigned pixels.
    total : float64, the sum of the whole map.
    """

    n_pixels: np.ndarray
    sum: np.ndarray
    pos_sum: np.ndarray
    neg_sum: np.ndarray
    unassigned: np.ndarray
    total: float


def aggregate(attribution: np.ndarray, labels: np.ndarray, n_regions: int) -> RegionStats:
    """Per-region statistics of a signed map.

    Parameters
    ----------
    attribution : float HxW, finite.
    labels : int HxW with values in ``-1..n_regions-1`` (-1 = unassigned).
    n_regions : K, the vocabulary size.

    Examples
    --------
    >>> import numpy as np
    >>> s = aggregate(np.array([[1.0, -2.0], [3.0, 0.5]]), np.array([[0, 0], [1, -1]]), 2)
    >>> s.sum.tolist(), s.pos_sum.tolist(), s.neg_sum.tolist(), s.n_pixels.tolist()
    ([-1.0, 3.0], [1.0, 3.0], [-2.0, 0.0], [2, 1])
    >>> float(s.unassigned[1]), s.total
    (0.5, 2.5)
    """
    attribution = np.asarray(attribution)
    labels = np.asarray(labels)
    if attribution.shape != labels.shape or attribution.ndim != 2:
        raise ValueError(f"attribution {attribution.shape} and labels {labels.shape} must be equal HxW shapes")
    if n_regions < 0:
        raise ValueError("n_regions must be >= 0")
    values = attribution.astype(np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("attribution contains NaN or Inf")
    lab = labels.astype(np.int64).ravel()
    if lab.size and (lab.min() < -1 or lab.max() >= n_regions):
        raise ValueError(f"labels must lie in -1..{n_regions - 1}")
    idx = lab + 1  # bin 0 = unassigned
    size = n_regions + 1
    n = np.bincount(idx, minlength=size)
    s = np.bincount(idx, weights=values, minlength=size)
    pos = np.bincount(idx, weights=np.where(values > 0, values, 0.0), minlength=size)
    neg = np.bincount(idx, weights=np.where(values < 0, values, 0.0), minlength=size)
    return RegionStats(
        n_pixels=n[1:].astype(np.int64), sum=s[1:], pos_sum=pos[1:], neg_sum=neg[1:],
        unassigned=np.array([n[0], s[0], pos[0], neg[0]], dtype=np.float64),
        total=float(values.sum()),
    )


def _per_region(values: np.ndarray, n_pixels: np.ndarray, basis: str) -> np.ndarray:
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    values = np.asarray(values, dtype=np.float64)
    n = np.asarray(n_pixels, dtype=np.float64)
    if basis == "sum":
        return np.where(n > 0, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, values / np.where(n > 0, n, 1.0), 0.0)


def _safe_div(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d != 0, a / np.where(d != 0, d, 1.0), 0.0)


@dataclass(frozen=True)
class Scores:
    """Normalised contribution scores over the last axis (regions).

    Attributes
    ----------
    signed_l1, paper, pos, neg : float64 (..., K)
    absent : bool (..., K), ``n_k == 0``
    paper_unstable : bool (...), eq. 5's denominator is tiny (see module docs)
    """

    signed_l1: np.ndarray
    paper: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    absent: np.ndarray
    paper_unstable: np.ndarray


def normalise(sum_: np.ndarray, pos_sum: np.ndarray, neg_sum: np.ndarray, n_pixels: np.ndarray,
              basis: str = "mean", paper_tolerance: float = DEFAULT_PAPER_TOLERANCE) -> Scores:
    """Every normalisation from raw statistics; arrays (..., K), regions on the last axis.

    Examples
    --------
    >>> s = normalise(np.array([2.0, -4.0, 0.0]), np.array([2.0, 0.0, 0.0]),
    ...               np.array([0.0, -4.0, 0.0]), np.array([1, 2, 0]))
    >>> s.signed_l1.tolist(), s.absent.tolist()
    ([0.5, -0.5, 0.0], [False, False, True])
    >>> s.paper.tolist(), bool(s.paper_unstable)
    ([0.0, 0.0, 0.0], True)
    """
    if not 0 <= paper_tolerance < 1:
        raise ValueError("paper_tolerance must lie in [0, 1)")
    n = np.asarray(n_pixels)
    A = _per_region(sum_, n, basis)
    P = _per_region(pos_sum, n, basis)
    N = _per_region(neg_sum, n, basis)
    l1 = np.abs(A).sum(axis=-1, keepdims=True)
    total = A.sum(axis=-1, keepdims=True)
    unstable = (np.abs(total) <= paper_tolerance * l1)[..., 0] | (l1[..., 0] == 0)
    paper = _safe_div(A, total)  # exactly eq. 5; 0 only where the denominator is exactly 0
    return Scores(
        signed_l1=_safe_div(A, l1),
        paper=paper,
        pos=_safe_div(P, P.sum(axis=-1, keepdims=True)),
        neg=_safe_div(N, np.abs(N).sum(axis=-1, keepdims=True)),
        absent=n == 0,
        paper_unstable=unstable,
    )


def weighted_cosine(u: np.ndarray, v: np.ndarray, weights: np.ndarray | None = None) -> float:
    """CatViz eq. 6 between two contribution vectors; 0 when either weighted norm is 0.

    Examples
    --------
    >>> weighted_cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([1.0, 3.0]))
    0.5
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w = _check_weights(weights, u.shape[-1])
    if u.shape != v.shape or u.ndim != 1:
        raise ValueError("u and v must be 1-D vectors of equal length")
    nu = np.sqrt(np.sum(w * u * u))
    nv = np.sqrt(np.sum(w * v * v))
    if nu == 0 or nv == 0:
        return 0.0
    return float(np.sum(w * u * v) / (nu * nv))


def _check_weights(weights: np.ndarray | None, k: int) -> np.ndarray:
    if weights is None:
        return np.ones(k)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,):
        raise ValueError(f"weights must have shape ({k},), got {w.shape}")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite and non-negative")
    return w


def weighted_unit_vectors(vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows ``sqrt(w) * v / ||sqrt(w) * v||`` (float64 N x K); zero rows stay zero.

    Their dot products are the weighted cosine similarities, and their squared Euclidean distances
    are ``2 - 2 cos_w``, so any Euclidean embedding of them (t-SNE, UMAP) embeds by eq. 6.
    """
    X = np.asarray(vectors, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError("vectors must be N x K")
    w = _check_weights(weights, X.shape[1])
    Y = X * np.sqrt(w)[None, :]
    norm = np.linalg.norm(Y, axis=1, keepdims=True)
    return np.where(norm > 0, Y / np.where(norm > 0, norm, 1.0), 0.0)


def weighted_cosine_matrix(vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """All pairwise eq. 6 similarities, float64 N x N."""
    U = weighted_unit_vectors(vectors, weights)
    return U @ U.T
