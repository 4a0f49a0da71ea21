"""The whole run with a tiny stand-in model: unreadable images are skipped and counted."""

from __future__ import annotations

from pathlib import Path

import torch

from semcontrib.training import (
    TrainConfig,
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
