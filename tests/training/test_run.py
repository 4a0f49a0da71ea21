"""The whole run with a tiny stand-in model: unreadable images are skipped and counted; resume through train()."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semcontrib.training import (
    ModelSetup,
    RunOptions,
    TrainConfig,
    state_path,
)
from tests.training.helpers import write_images


def test_unreadable_images_are_skipped_and_counted_in_training(tmp_path, monkeypatch):
    import semcontrib.training as tr
    from semcontrib.model import HeadSpec, LinearHeads

    img = tmp_path / "img"
    names = [f"{k}.jpg" for k in range(12)]
    write_images(img, names)
    (img / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    rows = [f"{k},{'yes' if k % 2 else 'no'}" for k in range(12)] + ["bad,yes"]
    (tmp_path / "l.csv").write_text("image_id,t\n" + "\n".join(rows) + "\n")

    def tiny_model(backbone, heads, pretrained_weights=None, random_init=False):
        return _TinyModel(LinearHeads(4, heads), [HeadSpec(h.name, h.classes) for h in heads])

    import semcontrib.model
    import semcontrib.training.run

    monkeypatch.setattr(semcontrib.training.run, "build_multitask", tiny_model)
    monkeypatch.setattr(semcontrib.model, "save_checkpoint", lambda model, out, extra=None: Path(str(out) + ".json"))
    out = tr.train(img, tmp_path / "l.csv", tmp_path / "m", config=TrainConfig(n_views=1, epochs=3))
    assert out.labelled.report.counts["unreadable_image"] == 1
    assert "bad" not in out.labelled.image_ids and len(out.labelled) == 12


class _Spec:
    name = "tiny"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    feature_dim = 4
    input_size = 8


class _TinyModel(torch.nn.Module):
    """A 4-feature backbone (channel means and max) with real linear heads."""

    def __init__(self, heads, specs):
        super().__init__()
        self.spec = _Spec()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten(1))
        self.heads = heads
        self.head_specs = specs
        self.input_size = 8
        self.identity = {}

    def forward(self, x):
        return self.heads(self.backbone(x))


def _tiny_world(tmp_path, monkeypatch):
    from semcontrib.model import HeadSpec, LinearHeads

    img = tmp_path / "img"
    write_images(img, [f"{k}.jpg" for k in range(20)])
    rows = [f"{k},{'yes' if k % 2 else 'no'}" for k in range(20)]
    (tmp_path / "l.csv").write_text("image_id,t\n" + "\n".join(rows) + "\n")

    def tiny_model(backbone, heads, pretrained_weights=None, random_init=False):
        torch.manual_seed(0)  # the same stand-in backbone for every run
        return _TinyModel(LinearHeads(4, heads), [HeadSpec(h.name, h.classes) for h in heads])

    import semcontrib.model
    import semcontrib.training.run

    saved = {}

    def save(model, out, extra=None):
        saved[str(out)] = ({k: v.clone() for k, v in model.state_dict().items()}, extra)
        return Path(str(out) + ".json")

    monkeypatch.setattr(semcontrib.training.run, "build_multitask", tiny_model)
    monkeypatch.setattr(semcontrib.model, "save_checkpoint", save)
    return img, tmp_path / "l.csv", saved


class _Stop(Exception):
    pass


def test_train_resumes_after_an_interruption_with_the_same_result(tmp_path, monkeypatch):
    import semcontrib.training as tr

    img, csv, saved = _tiny_world(tmp_path, monkeypatch)
    cfg = TrainConfig(n_views=2, epochs=6, patience=100, batch_size=4, device="cpu")
    whole = tr.train(img, csv, tmp_path / "whole", ModelSetup(), cfg)

    def stop(stage, done, total):
        if stage == "epochs" and done == 4:
            raise _Stop

    with pytest.raises(_Stop):
        tr.train(img, csv, tmp_path / "cut", ModelSetup(), cfg, RunOptions(resume=True), progress=stop)
    assert state_path(tmp_path / "cut").is_file()
    resumed = tr.train(img, csv, tmp_path / "cut", ModelSetup(), cfg, RunOptions(resume=True))
    assert resumed.history.resumed_at == 4 and resumed.history.train_loss == whole.history.train_loss
    w_whole, w_cut = saved[str(tmp_path / "whole")][0], saved[str(tmp_path / "cut")][0]
    assert all(torch.equal(w_whole[k], w_cut[k]) for k in w_whole)
    assert resumed.evaluation.to_dict()["tasks"] == whole.evaluation.to_dict()["tasks"]
    assert not state_path(tmp_path / "cut").exists()  # removed once the checkpoint is saved
    # another setting (here the learning rate) refuses the stored state
    with pytest.raises(_Stop):
        tr.train(img, csv, tmp_path / "cut", ModelSetup(), cfg, RunOptions(resume=True), progress=stop)
    with pytest.raises(ValueError, match="other settings"):
        tr.train(img, csv, tmp_path / "cut", ModelSetup(), TrainConfig(**{**cfg.to_dict(), "lr": 0.01,
                                                                          "augment": cfg.augment}),
                 RunOptions(resume=True))


def test_the_trained_model_is_frozen_on_the_cpu(tmp_path, monkeypatch):
    import semcontrib.training as tr

    img, csv, _ = _tiny_world(tmp_path, monkeypatch)
    out = tr.train(img, csv, tmp_path / "m", ModelSetup(), TrainConfig(n_views=1, epochs=2, device="cpu"))
    assert not any(p.requires_grad for p in out.model.parameters())
    assert all(p.device.type == "cpu" for p in out.model.parameters()) and not out.model.training


def test_fine_tuned_siam_run_reports_concepts_and_the_plain_models_cost(tmp_path, monkeypatch):
    """The fine-tuning branch of a SIAM run (tiny stand-in models): concept AP and the plain model's accuracy."""
    import semcontrib.model
    import semcontrib.training.run as run
    from tests.conftest import tiny_model

    img = tmp_path / "img"
    write_images(img, [f"{k}.jpg" for k in range(20)])
    (tmp_path / "l.csv").write_text("image_id,task_a\n" + "\n".join(f"{k},{'yes' if k % 2 else 'no'}"
                                                                       for k in range(20)) + "\n")

    def siam(backbone, heads, concepts, weights=None, random_init=False):
        base = tiny_model()
        return semcontrib.model.siam_from_stages(base.spec, base.backbone, heads, concepts)

    def plain(backbone, heads, pretrained_weights=None, random_init=False):
        base = tiny_model()
        return semcontrib.model.MultitaskModel(base.spec, base.backbone,
                                               semcontrib.model.LinearHeads(6, heads), {"input_size": 32})

    monkeypatch.setattr(run, "build_siam", siam)
    monkeypatch.setattr(run, "build_multitask", plain)
    monkeypatch.setattr(semcontrib.model, "save_checkpoint", lambda model, out, extra=None: Path(str(out) + ".json"))
    out = run.train(img, tmp_path / "l.csv", tmp_path / "m",
                    ModelSetup(freeze_backbone=False, architecture="siam", concepts="grid:2x2"),
                    TrainConfig(epochs=2, batch_size=4, device="cpu"))
    report = out.evaluation
    assert report.concepts["source"] == "grid:2x2" and report.concepts["n"] == len(out.split.test)
    assert set(report.plain_model["tasks"]) == {"task_a"}
    cost = report.plain_model["tasks"]["task_a"]
    assert cost["cost"] == pytest.approx(cost["plain_accuracy"] - cost["siam_accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match="needs concepts"):
        ModelSetup(architecture="siam")
