"""Validity: pure metrics against scipy / hand-computed cases; compute_validity on the tiny model
against an independent per-image reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from semcontrib.imputation import NEIGHBOURS, road_impute
from semcontrib.perturbation import OcclusionMethod, baseline_tensor
from semcontrib.validity import (
    ValidityConfig,
    average_ranks,
    circular,
    compute_validity,
    curve_auc,
    curve_steps,
    expected_random_auc,
    method_perturbation,
    removal_order,
    spearman,
    step_weights,
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
    res = compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(baseline="mean"))
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
    res = compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(baseline="blur", steps=0))
    for h, t in TARGETS.items():
        rec = res[("rand", h)]
        for n in range(3):
            present = np.unique(labels[n][labels[n] >= 0])
            order = present[np.argsort(-scores["rand"][h][n][present], kind="stable")]
            dele, ins = _reference_curves(model, x, labels, n, h, int(t[n]), order, "blur")
            assert dele[0] == pytest.approx(ins[-1])  # original image at both ends
            assert rec.deletion_auc[n] == pytest.approx(np.trapezoid(dele, np.linspace(0, 1, len(dele))), abs=1e-6)
            assert rec.insertion_auc[n] == pytest.approx(np.trapezoid(ins, np.linspace(0, 1, len(ins))), abs=1e-6)
            lerf, _ = _reference_curves(model, x, labels, n, h, int(t[n]), order[::-1], "blur")
            assert rec.lerf_auc[n] == pytest.approx(np.trapezoid(lerf, np.linspace(0, 1, len(lerf))), abs=1e-6)
            assert rec.lerf_auc[n] == pytest.approx(rec.insertion_auc[n], abs=1e-12)  # the same curve reversed
            assert 0 <= rec.deletion_auc[n] <= 1 and 0 <= rec.insertion_auc[n] <= 1


def test_faithfulness_equals_an_independent_reference():
    model = tiny_model(seed=1)
    x, labels = _batch()
    s = np.random.default_rng(2).normal(size=(3, len(VOC)))
    res = compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_b": s}},
                           config=ValidityConfig(baseline="black", curves=False))
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

    def count(scores, **kw):
        rows.clear()
        compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(batch_size=10_000, **kw))
        return sum(rows)

    one = count({"m": {"task_a": s}})
    assert count({"m": {"task_a": s, "task_b": s}, "m2": {"task_a": 2 * s, "task_b": s + 1}}) == one
    # full curves, the random reference from one order: per image with m present regions the original, m
    # single deletions, the all-removed image, the m - 2 other MoRF steps and m - 2 other LeRF steps of
    # the one ordering (3m - 2), and at most m - 2 random prefixes
    full = count({"m": {"task_a": s}}, steps=0, exact_random=0, random_samples=1)
    assert sum(3 * m - 2 for m in (5, 4, 2)) <= full <= sum(4 * m - 4 for m in (5, 4, 2))
    # sampled curves cost less: 2 points per curve (1 and m) need no forward beyond faithfulness's
    two = count({"m": {"task_a": s}}, steps=2, exact_random=0, random_samples=1)
    assert two == sum(m + 2 for m in (5, 4, 2))


def test_bad_input():
    model = tiny_model()
    x, labels = _batch()
    with pytest.raises(ValueError, match="baseline"):
        ValidityConfig(baseline="white")
    with pytest.raises(ValueError, match="min_regions"):
        ValidityConfig(min_regions=1)
    with pytest.raises(ValueError, match="must be \\(N, K\\)"):
        compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_a": np.zeros((3, 2))}}, config=ValidityConfig())
    with pytest.raises(ValueError, match="without a target"):
        compute_validity(model, x, labels, VOC, {"task_a": TARGETS["task_a"]},
                         {"m": {"task_b": np.zeros((3, 6))}}, config=ValidityConfig())


@pytest.mark.parametrize("name", ["semcontrib.validity", "semcontrib.imputation"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted >= 1  # the examples ran: a runner that finds none would pass on anything
    assert result.failed == 0


def test_constant_scores_give_nan_with_a_reason_and_curves_still_run():
    model = tiny_model()
    x, labels = _batch()
    res = compute_validity(model, x, labels, VOC, TARGETS, {"flat": {"task_a": np.zeros((3, len(VOC)))}},
                           config=ValidityConfig())
    rec = res[("flat", "task_a")]
    assert np.all(np.isnan(rec.faithfulness))
    assert "scores are constant" in rec.note[0] and "2 regions present" in rec.note[2]
    assert np.all(np.isfinite(rec.deletion_auc)) and np.all(np.isfinite(rec.insertion_auc))


# --------------------------------------------------------------------------- ROAD imputation


def _dense_road(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's linear system written out one equation per removed pixel (dense, slow reference)."""
    C, H, W = image.shape
    pix = list(zip(*np.nonzero(removed)))
    pos = {p: i for i, p in enumerate(pix)}
    A = np.zeros((len(pix), len(pix)))
    b = np.zeros((len(pix), C))
    for i, (r, c) in enumerate(pix):
        for dr, dc, w in NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if not (0 <= rr < H and 0 <= cc < W):
                continue
            A[i, i] += w
            if (rr, cc) in pos:
                A[i, pos[(rr, cc)]] -= w
            else:
                b[i] += w * image[:, rr, cc]
    out = image.copy()
    sol = np.linalg.solve(A, b)
    for i, (r, c) in enumerate(pix):
        out[:, r, c] = sol[i]
    return out


def test_road_one_pixel_hole_is_the_weighted_neighbour_mean_and_borders_renormalise():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 5, 6))
    hole = np.zeros((5, 6), bool)
    hole[2, 3] = True
    out = road_impute(img, hole, noise=0.0)
    w4, w8 = 1 / 6, 1 / 12
    expect = (w4 * (img[:, 1, 3] + img[:, 3, 3] + img[:, 2, 2] + img[:, 2, 4])
              + w8 * (img[:, 1, 2] + img[:, 1, 4] + img[:, 3, 2] + img[:, 3, 4]))
    np.testing.assert_allclose(out[:, 2, 3], expect, rtol=1e-6)
    np.testing.assert_array_equal(out[:, ~hole], img[:, ~hole].astype(np.float32))  # known pixels untouched
    corner = np.zeros((5, 6), bool)
    corner[0, 0] = True  # 3 neighbours inside: weights 1/6, 1/6, 1/12 renormalised by 5/12
    out = road_impute(img, corner, noise=0.0)
    expect = (w4 * img[:, 0, 1] + w4 * img[:, 1, 0] + w8 * img[:, 1, 1]) / (2 * w4 + w8)
    np.testing.assert_allclose(out[:, 0, 0], expect, rtol=1e-6)


def test_road_equals_the_dense_reference_on_random_holes():
    rng = np.random.default_rng(1)
    for _ in range(5):
        img = rng.normal(size=(3, 9, 11))
        hole = rng.random((9, 11)) < 0.4
        np.testing.assert_allclose(road_impute(img, hole, noise=0.0), _dense_road(img, hole), atol=1e-5)


def test_road_without_known_pixels_fills_and_noise_is_seeded_on_imputed_pixels_only():
    img = np.random.default_rng(2).normal(size=(3, 8, 8))
    everything = np.ones((8, 8), bool)
    np.testing.assert_allclose(road_impute(img, everything, noise=0.0, fill=np.array([1.0, 2.0, 3.0])),
                               np.broadcast_to(np.array([1.0, 2.0, 3.0])[:, None, None], (3, 8, 8)))
    hole = np.zeros((8, 8), bool)
    hole[2:5, 3:7] = True
    a = road_impute(img, hole, noise=0.01, rng=np.random.default_rng(5))
    b = road_impute(img, hole, noise=0.01, rng=np.random.default_rng(5))
    clean = road_impute(img, hole, noise=0.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, ~hole], clean[:, ~hole])
    assert 0.005 < float(np.std(a[:, hole] - clean[:, hole])) < 0.02
    with pytest.raises(ValueError, match="removed bool"):
        road_impute(img, hole[:4])
    with pytest.raises(ValueError, match="noise"):
        road_impute(img, hole, noise=-1.0)


def test_road_coarse_solve_of_a_large_hole_stays_close_to_the_exact_one():
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    img = np.stack([np.sin(3 * xx) + yy, np.cos(2 * yy), xx * yy])
    hole = np.zeros((64, 64), bool)
    hole[8:56, 10:50] = True
    exact = road_impute(img, hole, noise=0.0, exact_max=10**9)
    coarse = road_impute(img, hole, noise=0.0, exact_max=256, factor=4)
    assert float(np.median(np.abs(exact - coarse)[:, hole])) < 0.02
    assert float(np.max(np.abs(exact - coarse))) < 0.15


# --------------------------------------------------------------------------- curves, random reference, circular


def test_curve_steps_and_weights():
    assert curve_steps(9, 4).tolist() == [0, 1, 4, 6, 9]
    assert curve_steps(9, 0).tolist() == list(range(10))
    assert curve_steps(0, 4).tolist() == [0]
    v = np.random.default_rng(3).random(8)
    assert float(np.dot(step_weights(np.arange(8), 7), v)) == pytest.approx(curve_auc(v))
    js = np.array([0, 1, 4, 7])
    assert float(np.dot(step_weights(js, 7), v[js])) == pytest.approx(np.trapezoid(v[js], js / 7))


def test_expected_random_auc_equals_the_mean_over_all_permutations():
    import itertools

    rng = np.random.default_rng(4)
    m = 4
    value = {frozenset(s): rng.random() for j in range(m + 1) for s in itertools.combinations(range(m), j)}
    brute = np.mean([curve_auc(np.array([value[frozenset(p[:j])] for j in range(m + 1)]))
                     for p in itertools.permutations(range(m))])
    means = np.array([np.mean([v for s, v in value.items() if len(s) == j]) for j in range(m + 1)])
    assert expected_random_auc(means, np.arange(m + 1), m) == pytest.approx(brute, abs=1e-12)
    js = np.array([0, 1, 3, 4])  # sampled steps: the same identity on the sampled grid
    brute_js = np.mean([float(np.dot(step_weights(js, m), [value[frozenset(p[:j])] for j in js]))
                        for p in itertools.permutations(range(m))])
    assert expected_random_auc(means[js], js, m) == pytest.approx(brute_js, abs=1e-12)


def test_random_auc_of_compute_validity_is_exact_on_four_regions():
    import itertools

    model = tiny_model(seed=2)
    x, labels = _batch()
    s = np.random.default_rng(6).normal(size=(3, len(VOC)))
    rec = compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_a": s}},
                           config=ValidityConfig(baseline="mean", steps=0, exact_random=100))[("m", "task_a")]
    n, t = 1, int(TARGETS["task_a"][1])  # image 1: regions 0..3
    present = np.unique(labels[n][labels[n] >= 0])
    aucs = []
    for perm in itertools.permutations(present):
        dele, _ = _reference_curves(model, x, labels, n, "task_a", t, np.array(perm), "mean")
        aucs.append(curve_auc(dele))
    assert rec.random_auc[n] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert np.all(np.isfinite(rec.random_auc[:2])) and np.isfinite(rec.random_auc[2])


def test_road_validity_gives_finite_curves_and_references_with_three_or_more_regions():
    model = tiny_model(seed=4)
    x, labels = _batch()
    s = np.random.default_rng(7).normal(size=(3, len(VOC)))
    a = compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_b": s}}, config=ValidityConfig())
    b = compute_validity(model, x, labels, VOC, TARGETS, {"m": {"task_b": s}}, config=ValidityConfig())
    rec = a[("m", "task_b")]
    for c in ("faithfulness", "deletion_auc", "lerf_auc", "random_auc"):
        assert np.all(np.isfinite(getattr(rec, c)[:2])), c
        np.testing.assert_array_equal(getattr(rec, c), getattr(b[("m", "task_b")], c))  # seeded


def test_circular_note():
    assert method_perturbation("region", {"baseline": "mean"}) == "mean"
    assert circular("region", {"baseline": "blur", "blur_sigma": 10.0}, ValidityConfig(baseline="blur"))
    assert not circular("region", {"baseline": "blur", "blur_sigma": 5.0}, ValidityConfig(baseline="blur"))
    assert not circular("region", {"baseline": "blur"}, ValidityConfig())
    assert not circular("pixel", {"baseline": "black"}, ValidityConfig(baseline="black"))
    model = tiny_model()
    x, labels = _batch()
    occ = OcclusionMethod(baseline="blur").attribute_regions(model, x, TARGETS, labels, VOC)
    scores = {"occlusion": {h: r.scores for h, r in occ.items()}, "other": {h: -r.scores for h, r in occ.items()}}
    res = compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(baseline="blur", curves=False),
                           circular_methods={"occlusion"})
    assert all(note.startswith("circular: occlusion") for note in res[("occlusion", "task_a")].note)
    assert not any("circular" in note for note in res[("other", "task_a")].note)
    np.testing.assert_allclose(res[("occlusion", "task_a")].faithfulness[:2], 1.0)  # by construction


# --------------------------------------------------------------------------- cost: traced copy, given originals


def test_inference_model_computes_the_models_function_and_is_rebuilt_when_a_weight_changes():
    from semcontrib.validity import inference_model

    model = tiny_model(seed=5)
    x, _ = _batch()
    fast = inference_model(model)
    assert fast is not model and inference_model(model) is fast  # built once per model
    with torch.no_grad():
        ref = model(x)
    got = fast(x)
    for h in ref:
        torch.testing.assert_close(got[h], ref[h], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        next(model.parameters()).mul_(-1.0)  # in place, as validate's randomisation check does
        ref2 = model(x)
    again = inference_model(model)
    assert again is not fast
    torch.testing.assert_close(again(x)["task_a"], ref2["task_a"], atol=1e-5, rtol=1e-5)
    handle = model.register_forward_hook(lambda mod, inp, out: None)
    assert inference_model(model) is model  # a watched model runs as it is
    handle.remove()


def test_given_original_logits_give_the_same_record_without_forwarding_the_originals():
    model = tiny_model(seed=6)
    x, labels = _batch()
    s = np.random.default_rng(8).normal(size=(3, len(VOC)))
    scores = {"m": {"task_a": s, "task_b": -s}}
    rows: list[int] = []
    handle = model.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    plain = compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(baseline="mean"))
    n_plain = sum(rows)
    rows.clear()
    with torch.no_grad():
        original = {h: z.double().numpy() for h, z in model(x).items()}
    rows.clear()
    given = compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(baseline="mean"),
                             original_logits=original)
    handle.remove()
    assert sum(rows) == n_plain - 3  # one original per image
    for key, rec in plain.items():
        for c in ("faithfulness", "deletion_auc", "lerf_auc", "random_auc"):
            np.testing.assert_allclose(getattr(given[key], c), getattr(rec, c), atol=1e-9, err_msg=c)
    with pytest.raises(ValueError, match="original_logits"):
        compute_validity(model, x, labels, VOC, TARGETS, scores, config=ValidityConfig(),
                         original_logits={"task_a": original["task_a"]})
