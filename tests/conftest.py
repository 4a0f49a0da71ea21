"""Shared fixtures: tiny deterministic worlds (seeded generators, tiny models, synthetic images)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from semcontrib.backbones import BackboneSpec  # noqa: E402
from semcontrib.model import HeadSpec, LinearHeads, MultitaskModel  # noqa: E402


class Pool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x):
        return self.flatten(self.avgpool(x))


def tiny_model(seed: int = 0, bias: bool = True, size: int = 32, channels: int = 6) -> MultitaskModel:
    """conv(3->C) - ReLU - conv(C->C) - ReLU - pool, two linear heads (2 and 3 classes)."""
    g = torch.Generator().manual_seed(seed)
    stages = nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=bias), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=bias), nn.ReLU()),
        pool=Pool(),
    ))
    heads = LinearHeads(channels, [HeadSpec("task_a", ("no", "yes")), HeadSpec("task_b", ("x", "y", "z"))])
    for p in list(stages.parameters()) + list(heads.parameters()):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    if not bias:
        for layer in heads.layers.values():
            nn.init.zeros_(layer.bias)
    spec = BackboneSpec(name="tiny", build=lambda w, p: (stages, None), feature_dim=channels, input_size=size,
                        cam_layer="conv2", lrp_support="rules", lrp_note="tiny test network",
                        canonizer_names=(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    identity = {"name": f"tiny-{seed}-{bias}", "backbone": "tiny", "input_size": size,
                "heads": {"task_a": ["no", "yes"], "task_b": ["x", "y", "z"]}}
    model = MultitaskModel(spec, stages, heads, identity)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture
def tiny():
    return tiny_model()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def synthetic_rgb(rng: np.random.Generator, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth random colour image (uint8 HxWx3)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (5 + 10 * rng.random()) + rng.random() * 6) for _ in range(3)], -1)
    base += 0.3 * np.stack([np.cos(yy / (4 + 8 * rng.random())) for _ in range(3)], -1)
    img = (base - base.min()) / (np.ptp(base) + 1e-9)
    return (img * 255).astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path: Path, rng) -> Path:
    """Seven synthetic photos and two broken files."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(synthetic_rgb(rng, 40 + 4 * i, 56)).save(folder / f"img{i:02d}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.png").write_text("not an image at all")
    return folder


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory) -> Path:
    """A real analysed corpus: three bundled photographs, EfficientNet-Lite0, landscape regions.

    Every method runs (IG with 4 steps to stay quick); built once per test worker.
    """
    from PIL import Image

    from semcontrib.demo import DEMO_IMAGES
    from semcontrib.pipeline import analyze

    root = tmp_path_factory.mktemp("real")
    for name in ("chelsea", "coffee", "china"):
        Image.fromarray(DEMO_IMAGES[name][0]()).save(root / f"{name}.png")
    analyze(root, root / "corpus", methods=["lrp", "gradcam", "ig"], method_params={"ig": {"n_steps": 4}},
            regions="landscape", batch_size=3)
    return root / "corpus"
