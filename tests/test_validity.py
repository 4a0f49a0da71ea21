"""Validity: pure metrics against scipy / hand-computed cases; compute_validity on the tiny model
against an independent per-image reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from semcontrib.perturbation import OcclusionMethod, baseline_tensor
from semcontrib.validity import (
    ValidityConfig,
    average_ranks,
    compute_validity,
    curve_auc,
    removal_order,
    spearman,
)
from tests.conftest import tiny_model

VOC = ("a", "b", "c", "d", "e", "f")
TARGETS = {"task_a": torch.tensor([1, 0, 1]), "task_b": torch.tensor([2, 1, 0])}


def _batch() -> tuple[torch.Tensor, np.ndarray]:
    """Three images: 5 regions (+ unassigned pixels), 4 regions, 2 regions."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 32, 32, generator=g)
    labels = np.zeros((3, 32, 32), np.int32)
    labels[:, :16, 16:] = 1
    labels[:, 16:, :16] = 2
    labels[:, 16:, 16:] = 3
    labels[0, :8, :8] = 4
    labels[0, 30:, 30:] = -1
    labels[2] = np.where(labels[2] >= 2, 5, 0)
    return x, labels


# --------------------------------------------------------------------------- pure metrics


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    for n in (3, 5, 12, 40):
        for _ in range(20):
            a = rng.integers(0, 4, n).astype(float)  # many ties
            b = rng.normal(size=n)
            if np.ptp(a) == 0:
                continue
            assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    np.testing.assert_allclose(average_ranks(np.array([3.0, 1, 3, 2, 3])), stats.rankdata([3, 1, 3, 2, 3]))


def test_spearman_edge_cases():
    assert spearman(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == -1.0
    assert np.isnan(spearman(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])))
    assert np.isnan(spearman(np.array([1.0]), np.array([2.0])))
    with pytest.raises(ValueError, match="finite"):
        spearman(np.array([1.0, np.nan]), np.array([1.0, 2]))
    with pytest.raises(ValueError, match="one length"):
        spearman(np.array([1.0, 2]), np.array([1.0, 2, 3]))


def test_curve_auc_hand_computed_and_trapezoid():
    assert curve_auc(np.array([1.0, 1.0])) == 1.0
    assert curve_auc(np.array([0.0, 1.0])) == 0.5
    assert curve_auc(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(1 / 6)
    v = np.random.default_rng(1).random(9)
    assert curve_auc(v) == pytest.approx(np.trapezoid(v, np.linspace(0, 1, 9)))
    with pytest.raises(ValueError, match="at least 2"):
        curve_auc(np.array([0.5]))


def test_removal_order():
    assert removal_order(np.array([0.3, 0.9, -1.0, 0.3]), np.array([True, True, True, True])).tolist() == [1, 0, 3, 2]
    assert removal_order(np.array([5.0, 1.0]), np.array([False, True])).tolist() == [1]


# --------------------------------------------------------------------------- compute_validity


def _reference_curves(model, x, labels, n, head, t, order, baseline):
    """Deletion and insertion probabilities built one perturbed image at a time."""
    base = baseline_tensor(model, x, baseline)[n]
    assigned = torch.from_numpy(labels[n] >= 0)
    dele, ins = [], []
    with torch.no_grad():
        for j in range(len(order) + 1):
            removed = torch.from_numpy(np.isin(labels[n], order[:j]))
            kept = torch.from_numpy(np.isin(labels[n], order[:j])) | ~assigned
            xd = torch.where(removed, base, x[n])
            xi = torch.where(kept, x[n], base)
            dele.append(torch.softmax(model(xd[None])[head][0].double(), 0)[t].item())
            ins.append(torch.softmax(model(xi[None])[head][0].double(), 0)[t].item())
    return np.array(dele), np.array(ins)


def test_occlusion_with_the_same_baseline_is_perfectly_faithful_and_its_negation_is_not():
    model = tiny_model()
    x, labels = _batch()
    occ = OcclusionMethod(baseline="mean").attribute_regions(model, x, TARGETS, labels, VOC)
    scores = {"occ": {h: r.scores for h, r in occ.items()}, "anti": {h: -r.scores for h, r in occ.items()}}
    res = compute_validity(model, x, labels, VOC, TARGETS, scores, ValidityConfig(baseline="mean"))
    assert set(res) == {(m, h) for m in scores for h in TARGETS}
    for h in TARGETS:
        np.testing.assert_allclose(res[("occ", h)].faithfulness[:2], 1.0)
        np.testing.assert_allclose(res[("anti", h)].faithfulness[:2], -1.0)
        assert np.isnan(res[("occ", h)].faithfulness[2])  # two regions only
        assert "2 regions present" in res[("occ", h)].note[2]
        assert res[("occ", h)].note[0] == ""


def test_deletion_and_insertion_auc_equal_an_independent_reference():
    model = tiny_model(seed=3)
    x, labels = _batch()
    rng = np.random.default_rng(0)
    scores = {"rand": {h: rng.normal(size=(3, len(VOC))) for h in TARGETS}}
    res = compute_validity(model, x, labels, VOC, TARGETS, scores, ValidityConfig(baseline="blur"))
    for h, t in TARGETS.items():
        rec = res[("rand", h)]
        for n in range(3):
            present = np.unique(labels[n][labels[n] >= 0])
            order = present[np.argsort(-scores["rand"][h][n][present], kind="stable")]
            dele, ins = _reference_curves(model, x, labels, n, h, int(t[n]), order, "blur")
            assert dele[0] == pytest.approx(ins[-1])  # original image at both ends
            assert rec.deletion_auc[n] == pytest.approx(np.trapezoid(dele, np.linspace(0, 1, len(dele))), abs=1e-6)
            assert rec.insertion_auc[n] == pytest.approx(np.trapezoid(ins, np.linspace(0, 1, len(ins))), abs=1e-6)
            assert 0 <= rec.deletion_auc[n] <= 1 and 0 <= rec.insertion_auc[n] <= 1


def test_faithfulness_equals_an_independent_reference():
    model = tiny_model(seed=1)
    x, labels = _batch()
    s = np.random.default_rng(2).normal(size=(3, len(VOC)))
    res = compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_b": s}},
                           ValidityConfig(baseline="black", curves=False))
    rec = res[("m", "task_b")]
    base = baseline_tensor(model, x, "black")
    for n in range(2):
        present = np.unique(labels[n][labels[n] >= 0])
        t = int(TARGETS["task_b"][n])
        with torch.no_grad():
            f0 = model(x[n:n + 1])["task_b"][0, t].item()
            removed = [torch.where(torch.from_numpy(labels[n] == k), base[n], x[n])[None] for k in present]
            drops = [f0 - model(r)["task_b"][0, t].item() for r in removed]
        assert rec.faithfulness[n] == pytest.approx(stats.spearmanr(s[n, present], drops).statistic, abs=1e-9)
    assert np.all(np.isnan(rec.deletion_auc))


def test_forwards_are_shared_across_methods_and_heads():
    model = tiny_model()
    x, labels = _batch()
    s = np.random.default_rng(4).normal(size=(3, len(VOC)))
    rows: list[int] = []
    model.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))

    def count(scores):
        rows.clear()
        compute_validity(model, x, labels, VOC, TARGETS, scores, ValidityConfig(batch_size=10_000))
        return sum(rows)

    one = count({"m": {"task_a": s}})
    assert count({"m": {"task_a": s, "task_b": s}, "m2": {"task_a": 2 * s, "task_b": s + 1}}) == one
    # per image with m present regions: the original, m single deletions, the all-removed image, and
    # the m - 2 other deletion steps and m - 2 other insertion steps of the one ordering: 3m - 2
    assert one == sum(3 * m - 2 for m in (5, 4, 2))


def test_bad_input():
    model = tiny_model()
    x, labels = _batch()
    with pytest.raises(ValueError, match="baseline"):
        ValidityConfig(baseline="white")
    with pytest.raises(ValueError, match="min_regions"):
        ValidityConfig(min_regions=1)
    with pytest.raises(ValueError, match="must be \\(N, K\\)"):
        compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_a": np.zeros((3, 2))}}, ValidityConfig())
    with pytest.raises(ValueError, match="without a target"):
        compute_validity(model, x, labels, VOC, {"task_a": TARGETS["task_a"]},
                         {"m": {"task_b": np.zeros((3, 6))}}, ValidityConfig())


def test_docstring_examples():
    import doctest

    import semcontrib.validity

    assert doctest.testmod(semcontrib.validity).failed == 0


def test_constant_scores_give_nan_with_a_reason_and_curves_still_run():
    model = tiny_model()
    x, labels = _batch()
    res = compute_validity(model, x, labels, VOC, TARGETS, {"flat": {"task_a": np.zeros((3, len(VOC)))}},
                           ValidityConfig())
    rec = res[("flat", "task_a")]
    assert np.all(np.isnan(rec.faithfulness))
    assert "scores are constant" in rec.note[0] and "2 regions present" in rec.note[2]
    assert np.all(np.isfinite(rec.deletion_auc)) and np.all(np.isfinite(rec.insertion_auc))
