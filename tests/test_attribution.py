"""Attribution: hand-computed Grad-CAM, IG completeness, LRP conservation, batched == per-call captum/zennit."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from semcontrib.attribution import LRP, GradCAM, IntegratedGradients, make_method, resolve_targets
from semcontrib.backbones import BackboneSpec
from semcontrib.model import HeadSpec, LinearHeads, MultitaskModel, predict
from tests.conftest import Pool, tiny_model


def hand_model() -> MultitaskModel:
    """1x1 conv (3->2, hand weights) + ReLU, mean pool, one head with weights [[2, -3], [1, 1]]."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, -1, 1]]).view(2, 3, 1, 1))
    stages = nn.Sequential(OrderedDict(feat=nn.Sequential(conv, nn.ReLU()), pool=Pool()))
    heads = LinearHeads(2, [HeadSpec("h", ("a", "b"))])
    with torch.no_grad():
        heads.layers["h"].weight.copy_(torch.tensor([[2.0, -3.0], [1.0, 1.0]]))
        heads.layers["h"].bias.copy_(torch.tensor([0.5, 0.0]))
    spec = BackboneSpec("hand", lambda w, p: (stages, None), 2, 2, "feat", "rules", "", ())
    m = MultitaskModel(spec, stages, heads, {"name": "hand"})
    return m.eval()


def test_gradcam_equals_hand_computation():
    m = hand_model()
    x = torch.tensor([[[1.0, 2], [3, 4]], [[0, 1], [2, 0]], [[1, 1], [1, 1]]]).unsqueeze(0)
    # A0 = relu(R) = [[1,2],[3,4]];  A1 = relu(B - G) = [[1,0],[0,1]]
    # d logit_a / d A_k(i,j) = W[a,k] / 4  ->  alpha = (2/4, -3/4)
    # cam = 0.5 * A0 - 0.75 * A1  (signed: no ReLU, no rescaling)
    expected = np.array([[-0.25, 1.0], [1.5, 1.25]])
    res = GradCAM().attribute_batch(m, x, {"h": torch.tensor([0])})
    np.testing.assert_allclose(res["h"].maps[0], expected, atol=1e-6)
    np.testing.assert_allclose(GradCAM().attribute_naive(m, x, "h", 0), expected, atol=1e-6)


def _inputs(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


@pytest.mark.parametrize("method", [LRP(composite="epsilon"), GradCAM(),
                                    IntegratedGradients(n_steps=8, internal_batch_size=16),
                                    IntegratedGradients(n_steps=5, baseline="blurred", method="riemann_trapezoid",
                                                        blur_sigma=2.0)])
def test_batched_engine_equals_one_call_per_image_and_head(method, tiny):
    x = _inputs()
    targets = {"task_a": torch.tensor([0, 1, 1]), "task_b": torch.tensor([2, 0, 1])}
    res = method.attribute_batch(tiny, x, targets)
    for h, t in targets.items():
        for i in range(3):
            ref = method.attribute_naive(tiny, x[i:i + 1], h, int(t[i]))
            scale = np.abs(ref).max() + 1e-12
            assert np.abs(res[h].maps[i] - ref).max() / scale < 1e-4, (h, i)  # float32 round-off


def test_ig_completeness_and_delta_are_consistent(tiny):
    x = _inputs(2)
    ig = IntegratedGradients(n_steps=128)
    targets = {"task_a": torch.tensor([1, 0]), "task_b": torch.tensor([0, 2])}
    res = ig.attribute_batch(tiny, x, targets)
    base = ig.baseline_tensor(tiny, x)
    with torch.no_grad():
        fx, fb = tiny(x), tiny(base)
    for h, t in targets.items():
        gap = (fx[h].gather(1, t[:, None]) - fb[h].gather(1, t[:, None])).squeeze(1).numpy()
        total = res[h].maps.sum(axis=(1, 2))
        np.testing.assert_allclose(res[h].delta, total - gap, rtol=1e-4, atol=1e-5)
        assert np.all(np.abs(total - gap) <= 0.02 * np.abs(gap) + 1e-4), (total, gap)


def test_lrp_epsilon_on_bias_free_relu_net_conserves_and_equals_input_times_gradient():
    m = tiny_model(seed=3, bias=False)
    x = _inputs(2, seed=5)
    lrp = LRP(composite="epsilon", epsilon=1e-9)
    targets = {"task_a": torch.tensor([0, 1]), "task_b": torch.tensor([2, 1])}
    res = lrp.attribute_batch(m, x, targets)
    for h, t in targets.items():
        xg = x.clone().requires_grad_(True)
        logit = m(xg)[h].gather(1, t[:, None]).sum()
        (grad,) = torch.autograd.grad(logit, xg)
        ixg = (xg * grad).sum(1).detach().numpy()
        np.testing.assert_allclose(res[h].maps, ixg, rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            logits = m(x)[h].gather(1, t[:, None]).squeeze(1).numpy()
        np.testing.assert_allclose(res[h].maps.sum(axis=(1, 2)), logits, rtol=1e-4)


@pytest.mark.parametrize("name", ["lrp", "gradcam", "ig"])
def test_model_outputs_unchanged_after_attribution(name, tiny):
    x = _inputs(2)
    before = predict(tiny, x)
    params = {"n_steps": 4} if name == "ig" else {}
    make_method(name, **params).attribute_batch(tiny, x, {"task_a": torch.tensor([0, 1])})
    after = predict(tiny, x)
    for h in tiny.head_names:
        np.testing.assert_array_equal(before.logits[h], after.logits[h])


def test_resolve_targets_predicted_or_named(tiny):
    logits = {"task_a": np.array([[0.0, 1.0], [2.0, 1.0]]), "task_b": np.array([[0, 0, 1.0], [1.0, 0, 0]])}
    t = resolve_targets(tiny, logits, ["task_a", "task_b"], {"task_b": "y"})
    assert t["task_a"].tolist() == [1, 0] and t["task_b"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="no class"):
        resolve_targets(tiny, logits, ["task_a"], {"task_a": "maybe"})


@pytest.mark.parametrize("bad", [
    lambda: make_method("shap"),
    lambda: LRP(composite="nope"),
    lambda: LRP(epsilon=0),
    lambda: IntegratedGradients(n_steps=0),
    lambda: IntegratedGradients(baseline="white"),
    lambda: IntegratedGradients(method="simpson"),
])
def test_bad_method_parameters_raise_value_error(bad):
    with pytest.raises(ValueError):
        bad()


def test_gradcam_rejects_unknown_layer(tiny):
    with pytest.raises(ValueError, match="unknown stage"):
        GradCAM(layer="layer9").attribute_batch(tiny, _inputs(1), {"task_a": torch.tensor([0])})


def test_resolve_targets_among_a_named_set_picks_the_best_per_image(tiny):
    logits = {"task_a": np.array([[0.0, 1.0], [2.0, 1.0], [5.0, 5.5]]),
              "task_b": np.array([[0, 3.0, 1.0], [1.0, 0, 2.0], [9.0, 0.5, 0.4]])}
    t = resolve_targets(tiny, logits, ["task_a", "task_b"], {"task_b": "among:y,z"})
    assert t["task_b"].tolist() == [1, 2, 1]  # image 2 is predicted x, still explained as y or z
    assert t["task_a"].tolist() == [1, 0, 1]
    single = resolve_targets(tiny, logits, ["task_b"], {"task_b": "among:x"})
    assert single["task_b"].tolist() == [0, 0, 0]
    assert t["task_b"].dtype == torch.long


@pytest.mark.parametrize("rule, match", [
    ("among:y,w", "no class 'w'"),
    ("among:", "non-empty"),
    ("among:y,,z", "non-empty"),
    ("among:y,y", "twice"),
])
def test_resolve_targets_among_rejects_bad_sets(tiny, rule, match):
    logits = {"task_b": np.zeros((2, 3))}
    with pytest.raises(ValueError, match=match):
        resolve_targets(tiny, logits, ["task_b"], {"task_b": rule})
