"""Region-level methods: equal to captum's FeatureAblation / ShapleyValue(Sampling), efficiency,
absent regions, isolated heads, unchanged model, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from semcontrib.attribution import ATTRIBUTION_METHODS, RegionResult, make_method
from semcontrib.model import HeadAdapter, predict
from semcontrib.perturbation import (
    Coalitions,
    OcclusionMethod,
    ShapleyMethod,
    baseline_tensor,
    exact_shapley,
    forward_coalitions,
    present_regions,
)
from tests.conftest import tiny_model

VOC = ("sky", "tree", "road", "car", "person", "boat")  # "boat" never occurs
TARGETS = {"task_a": torch.tensor([0, 1]), "task_b": torch.tensor([2, 0])}


def _batch() -> tuple[torch.Tensor, np.ndarray]:
    """Two images; image 0 has regions 0..3 and unassigned pixels, image 1 has regions 0..4."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    labels = np.zeros((2, 32, 32), np.int32)
    labels[:, :16, 16:] = 1
    labels[:, 16:, :16] = 2
    labels[:, 16:, 16:] = 3
    labels[1, :8, :8] = 4
    labels[0, 28:, 28:] = -1
    return x, labels


def _captum_scores(attr: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """Region score from a captum map (every pixel of a feature holds the feature's value)."""
    out = np.zeros(len(VOC))
    for k in range(len(VOC)):
        if (mask == k).any():
            out[k] = attr[0, 0][torch.from_numpy(mask == k)][0].item()
    return out


def _captum_mask(labels: np.ndarray) -> torch.Tensor:
    """Feature mask for captum: regions keep their label; unassigned pixels become the last feature
    (captum ablates them as a feature of their own, which the test then ignores)."""
    mask = np.where(labels < 0, labels.max() + 1, labels).astype(np.int64)
    return torch.from_numpy(mask)[None, None]


@pytest.mark.parametrize("baseline", ["blur", "mean", "black"])
def test_occlusion_equals_captum_feature_ablation_per_head(baseline):
    from captum.attr import FeatureAblation

    model = tiny_model()
    x, labels = _batch()
    labels[0, 28:, 28:] = 3  # FeatureAblation: every pixel is a feature; no unassigned pixels here
    res = OcclusionMethod(baseline=baseline).attribute_regions(model, x, TARGETS, labels, VOC)
    base = baseline_tensor(model, x, baseline)
    for h, t in TARGETS.items():
        for n in range(2):
            attr = FeatureAblation(HeadAdapter(model, h)).attribute(
                x[n:n + 1], baselines=base[n:n + 1], target=int(t[n]), feature_mask=_captum_mask(labels[n]))
            np.testing.assert_allclose(res[h].scores[n], _captum_scores(attr, labels[n]), atol=1e-5)
        assert res[h].delta is None


def test_shapley_exact_equals_captum_shapley_values_and_is_efficient():
    from captum.attr import ShapleyValues

    model = tiny_model()
    x, labels = _batch()
    labels[0, 28:, 28:] = 3
    method = ShapleyMethod(baseline="mean")
    res = method.attribute_regions(model, x, TARGETS, labels, VOC)
    base = baseline_tensor(model, x, "mean")
    for h, t in TARGETS.items():
        for n in range(2):
            attr = ShapleyValues(HeadAdapter(model, h)).attribute(
                x[n:n + 1], baselines=base[n:n + 1], target=int(t[n]), feature_mask=_captum_mask(labels[n]))
            np.testing.assert_allclose(res[h].scores[n], _captum_scores(attr, labels[n]), atol=1e-5)
            # efficiency against an independent forward of the original and the all-baseline image
            with torch.no_grad():
                full = model(x[n:n + 1])[h][0, t[n]].item()
                empty = model(base[n:n + 1])[h][0, t[n]].item()
            assert res[h].scores[n].sum() == pytest.approx(full - empty, abs=1e-5)
        assert np.all(np.abs(res[h].delta) < 1e-9)


def test_shapley_sampling_uses_captums_permutations():
    from captum.attr import ShapleyValueSampling

    model = tiny_model()
    x, labels = _batch()
    labels[0, 28:, 28:] = 3
    method = ShapleyMethod(baseline="blur", exact_max=2, samples=7, seed=3)
    res = method.attribute_regions(model, x, TARGETS, labels, VOC)
    base = baseline_tensor(model, x, "blur")
    for h, t in TARGETS.items():
        for n in range(2):
            torch.manual_seed(3)
            attr = ShapleyValueSampling(HeadAdapter(model, h)).attribute(
                x[n:n + 1], baselines=base[n:n + 1], target=int(t[n]), feature_mask=_captum_mask(labels[n]),
                n_samples=7)
            np.testing.assert_allclose(res[h].scores[n], _captum_scores(attr, labels[n]), atol=1e-5)
        assert np.all(np.abs(res[h].delta) < 1e-9)  # every permutation telescopes exactly


def test_shapley_sampling_converges_to_exact_values():
    model = tiny_model(seed=2)
    x, labels = _batch()
    exact = ShapleyMethod(exact_max=10).attribute_regions(model, x, TARGETS, labels, VOC)
    sampled = ShapleyMethod(exact_max=3, samples=400, seed=1).attribute_regions(model, x, TARGETS, labels, VOC)
    for h in TARGETS:
        err = np.abs(sampled[h].scores - exact[h].scores).max()
        scale = np.abs(exact[h].scores).max()
        assert err < 0.1 * scale


def test_exact_shapley_hand_computed_and_reference():
    # v(empty)=0, v(A)=1, v(B)=2, v(AB)=4: phi_A = (1 + (4 - 2)) / 2, phi_B = (2 + (4 - 1)) / 2
    np.testing.assert_allclose(exact_shapley(np.array([0.0, 1, 2, 4])), [1.5, 2.5])
    rng = np.random.default_rng(0)
    m = 4
    v = rng.normal(size=2 ** m)
    ref = np.zeros(m)  # mean of marginal contributions over all m! orderings
    for perm in itertools.permutations(range(m)):
        c = 0
        for i in perm:
            ref[i] += v[c | (1 << i)] - v[c]
            c |= 1 << i
    np.testing.assert_allclose(exact_shapley(v), ref / math.factorial(m))
    assert exact_shapley(np.array([3.0])).shape == (0,)
    with pytest.raises(ValueError, match="2\\^m"):
        exact_shapley(np.zeros(3))


@pytest.mark.parametrize("name", ["occlusion", "shapley"])
def test_absent_regions_score_zero_and_display_map_conserves(name):
    model = tiny_model()
    x, labels = _batch()
    res = make_method(name).attribute_regions(model, x, TARGETS, labels, VOC)
    present = present_regions(labels, len(VOC))
    for r in res.values():
        assert isinstance(r, RegionResult)
        assert r.scores.shape == (2, len(VOC)) and r.scores.dtype == np.float64
        assert r.maps.shape == (2, 32, 32) and r.maps.dtype == np.float32
        assert np.all(r.scores[~present] == 0)
        assert np.all(r.maps[labels < 0] == 0)
        for n in range(2):
            for k in np.flatnonzero(present[n]):
                assert r.maps[n][labels[n] == k].astype(np.float64).sum() == pytest.approx(r.scores[n, k], rel=1e-5)


def test_unassigned_pixels_are_never_replaced():
    """Efficiency with unassigned pixels: the scores sum to f(x) - f(every region replaced, the
    unassigned pixels kept as they are)."""
    model = tiny_model()
    x, labels = _batch()
    res = ShapleyMethod(baseline="black").attribute_regions(model, x, TARGETS, labels, VOC)
    base = baseline_tensor(model, x, "black")
    unassigned = torch.from_numpy(labels < 0)[:, None].expand_as(x)
    with torch.no_grad():
        full = model(x)
        removed = model(torch.where(unassigned, x, base))
        removed_all = model(base)
    for h, t in TARGETS.items():
        gap = (full[h] - removed[h]).gather(1, t[:, None])[:, 0].double().numpy()
        np.testing.assert_allclose(res[h].scores.sum(1), gap, atol=1e-5)
        gap_all = (full[h] - removed_all[h]).gather(1, t[:, None])[:, 0].double().numpy()
        assert abs(res[h].scores[0].sum() - gap_all[0]) > 1e-4  # image 0 has unassigned pixels


@pytest.mark.parametrize("name", ["occlusion", "shapley"])
def test_heads_isolated(name):
    x, labels = _batch()
    a = tiny_model()
    b = tiny_model()
    with torch.no_grad():
        b.heads.layers["task_b"].weight.mul_(-3.0)
    ra = make_method(name).attribute_regions(a, x, TARGETS, labels, VOC)
    rb = make_method(name).attribute_regions(b, x, TARGETS, labels, VOC)
    np.testing.assert_array_equal(ra["task_a"].scores, rb["task_a"].scores)
    assert not np.allclose(ra["task_b"].scores, rb["task_b"].scores)


def test_one_forward_per_distinct_perturbed_image_serves_every_head():
    model = tiny_model()
    x, labels = _batch()
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    OcclusionMethod(batch_size=1000).attribute_regions(model, x, TARGETS, labels, VOC)
    # image 0: original + 4 regions, image 1: original + 5 regions; all heads from one forward
    assert calls == [2 + 4 + 5]


def test_forward_coalitions_dedupes_and_ignores_absent_regions():
    model = tiny_model()
    x, labels = _batch()
    base = baseline_tensor(model, x, "mean")
    keep = np.ones((4, 6), bool)
    keep[1, 5] = False  # region 5 is absent: same image as row 0
    keep[2, 0] = False
    keep[3, 0] = False
    calls = []
    model.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    out = forward_coalitions(model, x, base, labels, Coalitions(np.array([0, 0, 0, 1]), keep))
    assert calls == [3]
    np.testing.assert_array_equal(out["task_a"][0], out["task_a"][1])
    with torch.no_grad():
        ref = model(x[:1])["task_b"][0].double().numpy()
    np.testing.assert_allclose(out["task_b"][0], ref, rtol=1e-6)


def test_forward_coalitions_perturb_hook_replaces_the_baseline_paste():
    model = tiny_model()
    x, labels = _batch()
    keep = np.ones((3, 6), bool)
    keep[1, 0] = False
    keep[2, [1, 2]] = False
    seen = []

    def perturb(images, kept, rows):  # removed pixels become 7.0: a perturbation no baseline gives
        seen.append(rows.copy())
        assert kept.dtype == torch.bool and tuple(kept.shape) == (len(rows), 1, *labels.shape[1:])
        return torch.where(kept, images, torch.full_like(images, 7.0))

    base = torch.zeros_like(x)  # ignored when perturb is given
    out = forward_coalitions(model, x, base, labels, Coalitions(np.array([0, 0, 1]), keep), perturb=perturb)
    rows = np.concatenate(seen)
    assert rows.shape == (3, 1 + 6) and sorted(rows[:, 0].tolist()) == [0, 0, 1]
    for r, (n, k) in enumerate(zip([0, 0, 1], keep)):
        removed = torch.from_numpy(np.isin(labels[n], np.flatnonzero(~k)))
        with torch.no_grad():
            ref = model(torch.where(removed, torch.tensor(7.0), x[n])[None])["task_a"][0].double().numpy()
        np.testing.assert_allclose(out["task_a"][r], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["occlusion", "shapley"])
def test_model_outputs_and_inputs_unchanged_after_attribution(name):
    model = tiny_model()
    x, labels = _batch()
    x0 = x.clone()
    before = predict(model, x)
    make_method(name).attribute_regions(model, x, TARGETS, labels, VOC)
    after = predict(model, x)
    for h in model.head_names:
        np.testing.assert_array_equal(before.logits[h], after.logits[h])
    assert torch.equal(x, x0)


def test_registry_levels_and_params():
    assert ATTRIBUTION_METHODS["occlusion"] is OcclusionMethod
    assert ATTRIBUTION_METHODS["shapley"] is ShapleyMethod
    assert {c.level for n, c in ATTRIBUTION_METHODS.items() if n in ("lrp", "gradcam", "ig")} == {"pixel"}
    assert OcclusionMethod(baseline="mean").params == {"baseline": "mean"}
    assert ShapleyMethod(seed=4).params["seed"] == 4
    assert isinstance(ShapleyMethod().notes(tiny_model()), str)


def test_baselines():
    model = tiny_model()
    x, _ = _batch()
    black = baseline_tensor(model, x, "black")
    assert torch.allclose(black, torch.full_like(x, (0 - 0.5) / 0.25))
    mean = baseline_tensor(model, x, "mean")
    assert torch.allclose(mean[:, :, 3, 5], x.mean(dim=(2, 3)))
    blur = baseline_tensor(model, x, "blur", blur_sigma=2.0)
    assert blur.shape == x.shape and blur.std() < x.std()
    const = torch.full_like(x, 0.7)
    assert torch.allclose(baseline_tensor(model, const, "blur"), const, atol=1e-5)  # kernel sums to 1


@pytest.mark.parametrize("bad", [
    lambda: OcclusionMethod(baseline="white"),
    lambda: OcclusionMethod(blur_sigma=0),
    lambda: ShapleyMethod(exact_max=40),
    lambda: ShapleyMethod(samples=0),
    lambda: ShapleyMethod(batch_size=0),
    lambda: make_method("occlusion", baseline="noise"),
])
def test_bad_parameters_raise_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def test_bad_labels_raise_value_error():
    model = tiny_model()
    x, labels = _batch()
    with pytest.raises(ValueError, match="-1..5"):
        OcclusionMethod().attribute_regions(model, x, TARGETS, labels + 3, VOC)
    with pytest.raises(ValueError, match="labels must be"):
        OcclusionMethod().attribute_regions(model, x, TARGETS, labels[:, :16], VOC)
    with pytest.raises(ValueError, match="targets"):
        OcclusionMethod().attribute_regions(model, x, {"task_a": torch.tensor([0])}, labels, VOC)


def test_docstring_examples():
    import doctest

    import semcontrib.attribution
    from semcontrib.methods import coalitions, occlusion, shapley

    attempted = 0
    for module in (coalitions, occlusion, shapley):  # the families of semcontrib.perturbation
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted > 0
    result = doctest.testmod(semcontrib.attribution)
    assert result.failed == 0
    assert result.attempted > 0
