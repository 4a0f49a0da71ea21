"""XRAI over semcontrib's IG: equal to the saliency package's own XRAI call, totals equal IG's,
signed densities, isolated heads, unchanged model, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semcontrib.attribution import ATTRIBUTION_METHODS, IntegratedGradients, make_method
from semcontrib.xrai import XraiMethod, xrai_map

saliency = pytest.importorskip("saliency.core")

TARGETS = {"task_a": torch.tensor([0, 1]), "task_b": torch.tensor([2, 0])}


def _images() -> torch.Tensor:
    """Two 32x32 images with coloured blocks (Felzenszwalb finds several segments), preprocessed."""
    rng = np.random.default_rng(0)
    rgb = np.zeros((2, 32, 32, 3))
    rgb[:, :16, :16] = [0.9, 0.1, 0.1]
    rgb[:, 16:, 16:] = [0.1, 0.8, 0.2]
    rgb[1, :, 20:] = [0.2, 0.2, 0.9]
    rgb += rng.normal(0, 0.03, rgb.shape)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float()
    return (x - 0.5) / 0.25  # tiny_model's normalisation


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_xrai_equals_saliency_xrai_on_semcontrib_ig(tiny, algorithm):
    x = _images()
    method = XraiMethod(n_steps=8, algorithm=algorithm)
    res = method.attribute_batch(tiny, x, TARGETS)
    ig = IntegratedGradients(n_steps=8).attribute_batch(tiny, x, TARGETS)
    rgb = method.images(tiny, x)
    for h in TARGETS:
        for n in range(2):
            base = np.repeat(ig[h].maps[n][..., None].astype(np.float64), 3, axis=-1)
            ref = saliency.XRAI().GetMask(rgb[n], None, base_attribution=base,  # saliency segments the image
                                          extra_parameters=saliency.XRAIParameters(algorithm=algorithm))
            np.testing.assert_allclose(res[h].maps[n], ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(res[h].delta, ig[h].delta)  # IG's convergence delta


def test_xrai_keeps_igs_sign_and_total(tiny):
    x = _images()
    res = XraiMethod(n_steps=8).attribute_batch(tiny, x, TARGETS)
    ig = IntegratedGradients(n_steps=8).attribute_batch(tiny, x, TARGETS)
    for h in TARGETS:
        np.testing.assert_allclose(res[h].maps.sum(axis=(1, 2)), ig[h].maps.sum(axis=(1, 2)), rtol=1e-4, atol=1e-4)
        assert (res[h].maps < 0).any() and (res[h].maps > 0).any()  # signed, not a ranking


def test_xrai_map_hand_case():
    """Two disjoint segments: each pixel gets its segment's mean attribution, the best segment first."""
    attr = np.array([[1.0, 3.0, -1.0, -3.0]] * 2)
    left = np.zeros((2, 4), bool)
    left[:, :2] = True
    out = xrai_map(attr, [left, ~left], algorithm="full")
    expected = np.array([[2.0, 2.0, -2.0, -2.0]] * 2)
    # min_pixel_diff (50) exceeds these 4-pixel segments: nothing is added, everything is "uncomputed"
    np.testing.assert_allclose(out, np.full((2, 4), attr.mean()))
    big = np.kron(attr, np.ones((8, 8)))
    lb = np.kron(left, np.ones((8, 8), bool))
    np.testing.assert_allclose(xrai_map(big, [lb, ~lb]), np.kron(expected, np.ones((8, 8))))


def test_xrai_heads_are_isolated_and_model_outputs_unchanged(tiny):
    from tests.conftest import tiny_model

    x = _images()
    with torch.no_grad():
        before = tiny(x)
    res = make_method("xrai", n_steps=4).attribute_batch(tiny, x, TARGETS)
    with torch.no_grad():
        after = tiny(x)
    for h in before:
        assert torch.equal(before[h], after[h])
    other = tiny_model()
    with torch.no_grad():
        other.heads.layers["task_b"].weight.mul_(-3.0)
    res2 = make_method("xrai", n_steps=4).attribute_batch(other, x, TARGETS)
    np.testing.assert_array_equal(res["task_a"].maps, res2["task_a"].maps)
    assert not np.allclose(res["task_b"].maps, res2["task_b"].maps)


def test_xrai_is_registered_with_its_ig_parameters():
    assert ATTRIBUTION_METHODS["xrai"] is XraiMethod and XraiMethod.level == "pixel"
    p = XraiMethod(n_steps=16, baseline="blurred").params
    assert (p["base"], p["n_steps"], p["baseline"], p["algorithm"]) == ("ig", 16, "blurred", "full")


@pytest.mark.parametrize("kwargs, match", [
    ({"n_steps": 0}, "n_steps must be an integer in 1..1024"),
    ({"baseline": "white"}, "unknown xrai IG baseline 'white'"),
    ({"algorithm": "greedy"}, "unknown xrai algorithm 'greedy'"),
])
def test_xrai_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        XraiMethod(**kwargs)
