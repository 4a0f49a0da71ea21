"""Pure metrics of the validity record (:mod:`semcontrib.validity`): ranks and Spearman correlation,
removal orders, the steps at which a deletion curve is evaluated, trapezoid AUCs and the expected AUC of a
random removal order. Plain functions on numpy arrays; :mod:`semcontrib.validity` re-exports them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_ranks", "curve_auc", "curve_steps", "expected_random_auc", "removal_order", "softmax_at",
           "spearman", "step_weights"]


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-d array, ties sharing their average rank (float64).

    Examples
    --------
    >>> average_ranks(np.array([10.0, 30.0, 20.0, 30.0])).tolist()
    [1.0, 3.5, 2.0, 3.5]
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-d, got shape {values.shape}")
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    ranks = np.empty(len(values))
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_vals[end] != sorted_vals[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of ranks start+1..end
            start = end
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties (as ``scipy.stats.spearmanr``).

    Parameters
    ----------
    a, b : float (n,), finite.

    Returns
    -------
    float in [-1, 1]; NaN when n < 2 or either input is constant.

    Examples
    --------
    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0]))
    0.5
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d arrays of one length, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("spearman needs finite values")
    if len(a) < 2:
        return float("nan")
    ra = average_ranks(a) - (len(a) + 1) / 2.0
    rb = average_ranks(b) - (len(b) + 1) / 2.0
    denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.sum(ra * rb) / denom, -1.0, 1.0))


def curve_auc(values: np.ndarray) -> float:
    """Area under a curve sampled at ``m + 1`` equally spaced steps of ``[0, 1]`` (trapezoid rule).

    Parameters
    ----------
    values : float (m + 1,), e.g. the target probability after 0..m regions removed.

    Examples
    --------
    >>> curve_auc(np.array([1.0, 0.5, 0.0]))
    0.5
    >>> curve_auc(np.array([1.0, 0.0, 0.0, 0.0]))
    0.16666666666666666
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"values must be 1-d with at least 2 steps, got shape {values.shape}")
    m = len(values) - 1
    return float((values[:-1] + values[1:]).sum() / (2.0 * m))


def removal_order(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Indices of the present regions by decreasing score (ties: lower index first).

    Examples
    --------
    >>> removal_order(np.array([0.1, 0.0, 0.5, 0.1]), np.array([True, False, True, True])).tolist()
    [2, 0, 3]
    """
    idx = np.flatnonzero(present)
    return idx[np.argsort(-np.asarray(scores, dtype=np.float64)[idx], kind="stable")]


def curve_steps(m: int, steps: int) -> np.ndarray:
    """The removal counts at which a curve over ``m`` regions is evaluated: 0, then ``steps`` counts
    spread evenly over ``1..m`` (always 1 and m); every count when ``steps`` is 0 or at least m.

    Examples
    --------
    >>> curve_steps(9, 4).tolist()
    [0, 1, 4, 6, 9]
    >>> curve_steps(3, 4).tolist()
    [0, 1, 2, 3]
    """
    if m <= 0:
        return np.zeros(1, np.int64)
    if steps == 0 or steps >= m:
        return np.arange(m + 1, dtype=np.int64)
    return np.unique(np.concatenate([[0], np.rint(np.linspace(1, m, steps)).astype(np.int64)]))


def step_weights(js: np.ndarray, m: int) -> np.ndarray:
    """Trapezoid weights of a curve evaluated at removal counts ``js`` (step j at ``j / m``), so that
    ``AUC = sum(weights * values)``; with every count, the weights of :func:`curve_auc`.

    Examples
    --------
    >>> step_weights(np.array([0, 1, 2]), 2).tolist()
    [0.25, 0.5, 0.25]
    """
    x = np.asarray(js, np.float64) / max(m, 1)
    w = np.zeros(len(x))
    gap = np.diff(x) / 2.0
    w[:-1] += gap
    w[1:] += gap
    return w


def expected_random_auc(step_means: np.ndarray, js: np.ndarray, m: int) -> float:
    """Expected AUC of a uniformly random removal order, from the mean value of each step.

    A random order's first ``j`` regions are a uniformly random subset of size ``j``, so by linearity
    ``E[AUC] = sum_j w_j E[p(S_j removed)]``, ``E[p(S_j removed)]`` the mean over all subsets of size
    ``j`` (exact) or over seeded random orders' prefixes (an unbiased estimate).

    Parameters
    ----------
    step_means : float (len(js),), the mean value at each evaluated step.
    js, m : the evaluated removal counts and the number of regions.

    Examples
    --------
    >>> expected_random_auc(np.array([1.0, 0.5, 0.0]), np.array([0, 1, 2]), 2)
    0.5
    """
    return float(np.dot(step_weights(js, m), np.asarray(step_means, np.float64)))


def softmax_at(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The softmax probability of each row's target class: float (R,) from logits (R, C) and int targets (R,).

    Examples
    --------
    >>> softmax_at(np.array([[0.0, 0.0], [0.0, np.log(3.0)]]), np.array([0, 1])).round(3).tolist()
    [0.5, 0.75]
    """
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p[np.arange(len(z)), target] / p.sum(axis=1)
