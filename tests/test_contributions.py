"""Aggregation, normalisations and weighted cosine against slow literal re-implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semcontrib.contributions import (
    aggregate,
    normalise,
    weighted_cosine,
    weighted_cosine_matrix,
    weighted_unit_vectors,
)


def literal_stats(R, L, K):
    """Pixel-by-pixel loops, as the formulas read."""
    n = [0] * K
    s = [0.0] * K
    pos = [0.0] * K
    neg = [0.0] * K
    un = 0.0
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            k = int(L[i, j])
            v = float(R[i, j])
            if k < 0:
                un += v
                continue
            n[k] += 1
            s[k] += v
            if v > 0:
                pos[k] += v
            elif v < 0:
                neg[k] += v
    return n, s, pos, neg, un


def literal_scores(n, s, pos, neg, basis="mean"):
    K = len(n)

    def per(v, k):
        if n[k] == 0:
            return 0.0
        return v / n[k] if basis == "mean" else v

    A = [per(s[k], k) for k in range(K)]                       # eq. 4
    l1 = sum(abs(a) for a in A)
    signed = [a / l1 if l1 else 0.0 for a in A]
    tot = sum(A)
    paper = [a / tot if tot else 0.0 for a in A]               # eq. 5
    P = [per(pos[k], k) for k in range(K)]
    N = [per(neg[k], k) for k in range(K)]
    sp, sn = sum(P), sum(abs(x) for x in N)
    return signed, paper, [p / sp if sp else 0.0 for p in P], [x / sn if sn else 0.0 for x in N]


@pytest.mark.parametrize("basis", ["mean", "sum"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregate_and_normalise_match_literal_formulas(seed, basis):
    rng = np.random.default_rng(seed)
    K = 5
    R = rng.normal(size=(13, 17))
    L = rng.integers(-1, K, size=(13, 17))
    L[L == 3] = 2  # region 3 absent
    st = aggregate(R, L, K)
    n, s, pos, neg, un = literal_stats(R, L, K)
    np.testing.assert_array_equal(st.n_pixels, n)
    np.testing.assert_allclose(st.sum, s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.pos_sum, pos, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.neg_sum, neg, rtol=1e-12, atol=1e-12)
    assert math.isclose(st.unassigned[1], un, abs_tol=1e-12)
    sc = normalise(st.sum, st.pos_sum, st.neg_sum, st.n_pixels, basis=basis)
    signed, paper, hp, hn = literal_scores(n, s, pos, neg, basis)
    np.testing.assert_allclose(sc.signed_l1, signed, atol=1e-12)
    np.testing.assert_allclose(sc.paper, paper, atol=1e-12)
    np.testing.assert_allclose(sc.pos, hp, atol=1e-12)
    np.testing.assert_allclose(sc.neg, hn, atol=1e-12)
    assert sc.absent.tolist() == [k == 3 for k in range(K)]
    assert sc.signed_l1[3] == 0 and sc.pos[3] == 0
    assert math.isclose(np.abs(sc.signed_l1).sum(), 1.0, rel_tol=1e-12)
    assert math.isclose(sc.pos.sum(), 1.0, rel_tol=1e-12) and math.isclose(sc.neg.sum(), -1.0, rel_tol=1e-12)


def test_conservation_region_sums_plus_unassigned_equal_total(rng):
    R = rng.normal(size=(31, 29)) * 10
    L = rng.integers(-1, 7, size=R.shape)
    st = aggregate(R, L, 7)
    assert math.isclose(st.sum.sum() + st.unassigned[1], R.sum(), rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(st.total, R.sum(), rel_tol=1e-12)
    assert st.n_pixels.sum() + st.unassigned[0] == R.size
    np.testing.assert_allclose(st.pos_sum + st.neg_sum, st.sum, atol=1e-12)


def test_hand_computed_two_by_two():
    R = np.array([[1.0, -3.0], [2.0, 4.0]])
    L = np.array([[0, 0], [1, 1]])
    st = aggregate(R, L, 2)
    # A = (-2/2, 6/2) = (-1, 3);  signed: (-1/4, 3/4);  paper: (-1/2, 3/2)
    sc = normalise(st.sum, st.pos_sum, st.neg_sum, st.n_pixels)
    np.testing.assert_allclose(sc.signed_l1, [-0.25, 0.75])
    np.testing.assert_allclose(sc.paper, [-0.5, 1.5])
    # positive parts: (1/2, 6/2) = (0.5, 3) -> (1/7, 6/7); negative parts: (-3/2, 0) -> (-1, 0)
    np.testing.assert_allclose(sc.pos, [1 / 7, 6 / 7])
    np.testing.assert_allclose(sc.neg, [-1.0, 0.0])
    assert not sc.paper_unstable


def test_paper_flags_tiny_denominator():
    sc = normalise(np.array([1.0, -0.99]), np.array([1.0, 0.0]), np.array([0.0, -0.99]), np.array([1, 1]))
    assert bool(sc.paper_unstable)
    assert abs(sc.paper[0]) > 50  # eq. 5 exactly, which is why it is flagged


def test_all_zero_map_gives_zero_scores():
    st = aggregate(np.zeros((4, 4)), np.zeros((4, 4), int), 2)
    sc = normalise(st.sum, st.pos_sum, st.neg_sum, st.n_pixels)
    assert np.all(sc.signed_l1 == 0) and np.all(np.isfinite(sc.paper)) and bool(sc.paper_unstable)


def test_normalise_is_vectorised_over_leading_axes(rng):
    S = rng.normal(size=(6, 4))
    P = np.abs(S)
    N = -np.abs(rng.normal(size=(6, 4)))
    n = rng.integers(0, 5, size=(6, 4))
    batch = normalise(S, P, N, n)
    for i in range(6):
        one = normalise(S[i], P[i], N[i], n[i])
        np.testing.assert_allclose(batch.signed_l1[i], one.signed_l1)
        assert batch.paper_unstable[i] == one.paper_unstable


def literal_weighted_cosine(u, v, w):
    num = sum(w[k] * u[k] * v[k] for k in range(len(u)))
    du = math.sqrt(sum(w[k] * u[k] ** 2 for k in range(len(u))))
    dv = math.sqrt(sum(w[k] * v[k] ** 2 for k in range(len(v))))
    return num / (du * dv)


def test_weighted_cosine_matches_eq6(rng):
    for _ in range(20):
        u, v = rng.normal(size=6), rng.normal(size=6)
        w = rng.random(6) * 3
        assert math.isclose(weighted_cosine(u, v, w), literal_weighted_cosine(u, v, w), rel_tol=1e-12)
    X = rng.normal(size=(5, 6))
    w = rng.random(6)
    M = weighted_cosine_matrix(X, w)
    for i in range(5):
        for j in range(5):
            assert math.isclose(M[i, j], literal_weighted_cosine(X[i], X[j], w), rel_tol=1e-9, abs_tol=1e-12)
    U = weighted_unit_vectors(X, w)
    D2 = ((U[:, None] - U[None]) ** 2).sum(-1)
    np.testing.assert_allclose(D2, 2 - 2 * M, atol=1e-12)


def test_weight_zero_ignores_a_region():
    assert math.isclose(weighted_cosine(np.array([1.0, 5.0]), np.array([1.0, -5.0]), np.array([1.0, 0.0])), 1.0)


@pytest.mark.parametrize("bad", [
    dict(attribution=np.zeros((2, 2)), labels=np.zeros((2, 3), int), n=1),
    dict(attribution=np.array([[np.nan, 0.0]]), labels=np.zeros((1, 2), int), n=1),
    dict(attribution=np.zeros((1, 2)), labels=np.array([[0, 5]]), n=2),
    dict(attribution=np.zeros((1, 2)), labels=np.array([[0, -2]]), n=2),
])
def test_aggregate_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        aggregate(bad["attribution"], bad["labels"], bad["n"])


def test_bad_weights_and_basis_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        weighted_cosine(np.ones(2), np.ones(2), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        weighted_cosine(np.ones(2), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="basis"):
        normalise(np.ones(2), np.ones(2), np.zeros(2), np.ones(2), basis="median")
