"""EfficientNet-Lite0/1/2 with their packaged ImageNet weights: provenance, canonizers, LRP conservation.

Small inputs (64 x 64) keep these fast; the networks and canonizers do not depend on the input size.
"""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from semcontrib.attribution import LRP
from semcontrib.backbones import BACKBONES, LITE_PACKAGES, lite_weights_path, weights_provenance
from semcontrib.model import HeadSpec, build_multitask

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
HEADS = [HeadSpec("a", ("x", "y")), HeadSpec("b", ("p", "q", "r"))]


@pytest.fixture(scope="module", params=LITES)
def lite(request):
    torch.manual_seed(0)
    return build_multitask(request.param, HEADS).eval()


def test_packaged_weights_load_and_record_where_they_came_from(lite):
    name = lite.spec.name
    prov = lite.identity["pretrained"]
    package = LITE_PACKAGES[name][0]
    assert prov["source"] == "package" and prov["package"] == package
    assert prov["version"] == importlib.metadata.version(package)
    assert prov["file"] == lite_weights_path(name).name and len(prov["sha256"]) == 64
    assert BACKBONES[name].input_size == {"efficientnet_lite0": 224, "efficientnet_lite1": 240,
                                          "efficientnet_lite2": 260}[name]
    assert weights_provenance(name, None) == {"source": "random-init"}


def test_canonized_model_outputs_are_unchanged(lite):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = lite(x)
    composite = LRP().make_composite(lite)
    with torch.no_grad(), composite.context(lite) as modified:
        canon = modified(x)
    for head in plain:
        torch.testing.assert_close(canon[head], plain[head], rtol=1e-4, atol=1e-4)


def test_lrp_conserves_relevance_without_biases(lite):
    """With BatchNorm shifts, running means and head biases zeroed, no layer has a bias after merging,
    so LRP-epsilon's input relevance sums to the target logit (SIAM and the corpus rely on this)."""
    model = build_multitask(lite.spec.name, HEADS).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.zero_()
                m.running_mean.zero_()
            if isinstance(m, torch.nn.Linear):
                m.bias.zero_()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, 64, 64) * 0.5
    target = torch.tensor([0, 1])
    result = LRP(composite="epsilon", epsilon=1e-9).attribute_batch(model, x, {"a": target})["a"]
    with torch.no_grad():
        logit = model(x)["a"].gather(1, target.view(-1, 1))[:, 0]
    torch.testing.assert_close(torch.from_numpy(result.maps).double().sum(dim=(1, 2)), logit.double(),
                               rtol=1e-3, atol=1e-4)
