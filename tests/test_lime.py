"""LIME over regions: equal to captum's Lime with the same samples, kernel and surrogate; isolated
heads; unchanged model; seeded samples; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semcontrib.attribution import ATTRIBUTION_METHODS, make_method
from semcontrib.lime import LimeMethod, cosine_kernel, fit_surrogate, lime_samples
from semcontrib.model import HeadAdapter
from semcontrib.perturbation import baseline_tensor
from tests.conftest import tiny_model

VOC = ("sky", "tree", "road", "car", "person", "boat")  # "boat" never occurs
TARGETS = {"task_a": torch.tensor([0, 1]), "task_b": torch.tensor([2, 0])}


def _batch() -> tuple[torch.Tensor, np.ndarray]:
    """Two images: image 0 has regions 0..3, image 1 regions 0..4 (every pixel assigned, as captum needs)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    labels = np.zeros((2, 32, 32), np.int32)
    labels[:, :16, 16:] = 1
    labels[:, 16:, :16] = 2
    labels[:, 16:, 16:] = 3
    labels[1, :8, :8] = 4
    return x, labels


def _captum_lime(model, x, base, labels, head, target, method: LimeMethod) -> np.ndarray:
    """captum's Lime on one image: feature_mask = the present regions numbered 0..m-1, the samples of
    :func:`lime_samples` through a custom perturb_func, the same kernel on the interpretable samples
    and captum's scikit-learn surrogate."""
    from captum._utils.models.linear_model import SkLearnLasso, SkLearnLinearRegression, SkLearnRidge
    from captum.attr import Lime

    players = np.unique(labels)
    mask = torch.from_numpy(np.searchsorted(players, labels).astype(np.int64))[None, None]
    rows = iter(torch.from_numpy(lime_samples(len(players), method.samples, method.seed).astype(np.float32)))

    def perturb(original, **kwargs):
        return next(rows)[None]

    def similarity(original, perturbed, interpretable, **kwargs):
        return float(cosine_kernel(interpretable.numpy().astype(bool), method.kernel_width)[0])

    surrogate = {"ridge": lambda: SkLearnRidge(alpha=method.alpha), "lasso": lambda: SkLearnLasso(alpha=method.alpha),
                 "none": SkLearnLinearRegression}[method.regulariser]()
    lime = Lime(HeadAdapter(model, head), interpretable_model=surrogate, similarity_func=similarity,
                perturb_func=perturb)
    coef = lime.attribute(x, baselines=base, target=target, feature_mask=mask, n_samples=method.samples,
                          return_input_shape=False)
    out = np.zeros(len(VOC))
    out[players] = coef[0].detach().numpy()
    return out


@pytest.mark.parametrize("params", [{}, {"regulariser": "none", "samples": 40, "kernel_width": 0.5},
                                    {"regulariser": "lasso", "alpha": 0.01, "baseline": "black", "seed": 3}])
def test_lime_equals_captum_lime_per_head(params):
    model = tiny_model()
    x, labels = _batch()
    method = LimeMethod(**params)
    res = method.attribute_regions(model, x, TARGETS, labels, VOC)
    base = baseline_tensor(model, x, method.baseline)
    for h, t in TARGETS.items():
        for n in range(2):
            ref = _captum_lime(model, x[n:n + 1], base[n:n + 1], labels[n], h, int(t[n]), method)
            np.testing.assert_allclose(res[h].scores[n], ref, atol=2e-4, rtol=2e-3)
        assert res[h].scores[:, 5].tolist() == [0.0, 0.0]  # absent region
        assert res[h].scores[0, 4] == 0.0
        assert res[h].delta is not None and np.all((res[h].delta >= -1e-9) & (res[h].delta <= 1 + 1e-9))


def test_lime_delta_is_one_minus_the_weighted_r2_of_the_surrogate():
    model = tiny_model()
    x, labels = _batch()
    method = LimeMethod(regulariser="none", samples=48)
    res = method.attribute_regions(model, x, TARGETS, labels, VOC)
    z = lime_samples(4, 48, 0)  # image 0: regions 0..3, in order
    base = baseline_tensor(model, x, "blur")
    ys = []
    with torch.no_grad():
        for row in z:  # one plain forward per sample, target 0 of task_a
            keep = torch.from_numpy(np.isin(labels[0], np.flatnonzero(row)))[None, None]
            ys.append(float(model(torch.where(keep, x[:1], base[:1]))["task_a"][0, 0]))
    y, w = np.asarray(ys), cosine_kernel(z, 0.25)
    coef, intercept, _ = fit_surrogate(z, y, w, "none", 0.0)
    fit = intercept + z @ coef
    ybar = np.sum(w * y) / w.sum()
    r2 = 1 - np.sum(w * (y - fit) ** 2) / np.sum(w * (y - ybar) ** 2)
    np.testing.assert_allclose(res["task_a"].scores[0, :4], coef, rtol=1e-6, atol=1e-9)
    # 1 - R² is small here (~3e-4): float32 logits of batched vs single forwards move it by ~1e-8 absolute
    np.testing.assert_allclose(res["task_a"].delta[0], 1 - r2, rtol=1e-6, atol=1e-7)


def test_lime_on_an_additive_model_recovers_the_region_effects_with_r2_one():
    """A model whose logit is a sum of per-region effects: the unregularised surrogate is exact."""
    effects = np.array([0.5, -1.0, 2.0, 0.25])
    x, labels = _batch()

    class Additive(torch.nn.Module):
        head_names = ("h",)

        def forward(self, inp):
            m = torch.from_numpy(labels[0])
            parts = torch.stack([inp[:, :, m == k].mean(dim=(1, 2)) for k in range(4)], 1).double()
            return {"h": (parts * torch.from_numpy(effects)).sum(1, keepdim=True).float()}

        def head(self, name):
            from semcontrib.model import HeadSpec
            return HeadSpec("h", ("c",))

    model = Additive()
    model.spec = tiny_model().spec  # normalisation for the black baseline
    res = LimeMethod(regulariser="none", baseline="black").attribute_regions(
        model, x[:1], {"h": torch.tensor([0])}, labels[:1], VOC)
    base = baseline_tensor(model, x[:1], "black")
    m = torch.from_numpy(labels[0])
    gap = np.array([float((x[0, :, m == k] - base[0, :, m == k]).mean()) for k in range(4)]) * effects
    np.testing.assert_allclose(res["h"].scores[0, :4], gap, rtol=1e-5, atol=1e-6)
    assert abs(res["h"].delta[0]) < 1e-9


def test_lime_heads_are_isolated_and_model_outputs_unchanged():
    x, labels = _batch()
    model = tiny_model()
    with torch.no_grad():
        before = model(x)
    res = make_method("lime", samples=24).attribute_regions(model, x, TARGETS, labels, VOC)
    with torch.no_grad():
        after = model(x)
    for h in before:
        assert torch.equal(before[h], after[h])
    other = tiny_model()
    with torch.no_grad():
        other.heads.layers["task_b"].weight.mul_(-3.0)  # change only task_b's head
    res2 = make_method("lime", samples=24).attribute_regions(other, x, TARGETS, labels, VOC)
    np.testing.assert_array_equal(res["task_a"].scores, res2["task_a"].scores)
    assert not np.allclose(res["task_b"].scores, res2["task_b"].scores)


def test_lime_samples_are_seeded_and_independent_of_the_batch():
    assert np.array_equal(lime_samples(5, 30, 7), lime_samples(5, 30, 7))
    assert not np.array_equal(lime_samples(5, 30, 7), lime_samples(5, 30, 8))
    x, labels = _batch()
    model = tiny_model()
    both = LimeMethod(samples=20).attribute_regions(model, x, TARGETS, labels, VOC)
    alone = LimeMethod(samples=20).attribute_regions(model, x[1:], {h: t[1:] for h, t in TARGETS.items()},
                                                    labels[1:], VOC)
    for h in TARGETS:
        np.testing.assert_allclose(both[h].scores[1], alone[h].scores[0], rtol=1e-6, atol=1e-9)


def test_lime_image_without_regions_scores_zero_with_nan_delta():
    x, labels = _batch()
    labels[0] = -1
    res = LimeMethod(samples=8).attribute_regions(tiny_model(), x, TARGETS, labels, VOC)
    assert np.all(res["task_a"].scores[0] == 0) and np.isnan(res["task_a"].delta[0])
    assert np.isfinite(res["task_a"].delta[1])


def test_lime_is_registered_as_a_region_method():
    assert ATTRIBUTION_METHODS["lime"] is LimeMethod and LimeMethod.level == "region"
    assert LimeMethod().params == {"samples": 64, "kernel_width": 0.25, "regulariser": "ridge", "baseline": "blur",
                                   "seed": 0, "alpha": 1.0, "blur_sigma": 10.0}


@pytest.mark.parametrize("kwargs, match", [
    ({"samples": 1}, "samples must be an integer in 2..65536"),
    ({"kernel_width": 0}, "kernel_width must be a positive number"),
    ({"regulariser": "elastic"}, "unknown lime regulariser 'elastic'"),
    ({"alpha": -1}, "alpha must be a number >= 0"),
    ({"baseline": "white"}, "unknown baseline 'white'"),
    ({"seed": 1.5}, "seed must be an integer"),
])
def test_lime_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LimeMethod(**kwargs)
