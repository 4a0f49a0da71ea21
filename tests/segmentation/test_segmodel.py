"""The segmentation-model labeller: class mappings and tiny torchvision-style models."""

import numpy as np
import pytest

from semcontrib.regions import ImageInput
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.landscape import LANDSCAPE_VOCABULARY
from semcontrib.segmentation.segmodel import load_mapping

torch = pytest.importorskip("torch")


class HalfAndHalf(torch.nn.Module):
    """ADE20K-shaped output: class 2 (sky) on the top half, class 4 (tree) below."""

    def forward(self, x):
        n, _, h, w = x.shape
        out = torch.zeros(n, 150, h, w)
        out[:, 2, : h // 2] = 1
        out[:, 4, h // 2:] = 1
        return {"out": out}


def test_bundled_mappings():
    for name, n in (("ade20k", 150), ("voc", 21)):
        classes, lut = load_mapping(name)
        assert len(classes) == n == len(lut) and lut.max() < len(LANDSCAPE_VOCABULARY)
    classes, lut = load_mapping("ade20k")
    assert LANDSCAPE_VOCABULARY[lut[classes.index("sky")]] == "sky"
    assert LANDSCAPE_VOCABULARY[lut[classes.index("person")]] == "person"


def test_labels_follow_the_model():
    src = make_region_source("landscape", labeller="segmentation-model", seg_model_object=HalfAndHalf(),
                             seg_mapping="ade20k")
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:20] = 128  # segments align with the halves; the colours say nothing about sky or trees
    rgb[20:] = (120, 20, 20)
    rm = src.segment(ImageInput("r", rgb))
    names = np.array(rm.names)
    assert rm.names == LANDSCAPE_VOCABULARY and (rm.labels >= 0).all()
    assert (names[rm.labels[:20]] == "sky").all()
    assert (names[rm.labels[20:]] == "vegetation").all()


def test_torchvision_checkpoint_round_trip(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                             num_classes=21)
    ckpt = tmp_path / "tiny_lraspp.pth"
    torch.save(model.state_dict(), ckpt)
    src = make_region_source("landscape", labeller="segmentation-model", seg_model="lraspp_mobilenet_v3_large",
                             seg_checkpoint=str(ckpt), seg_mapping="voc", max_side="64")
    rm = src.segment(ImageInput("r", np.full((48, 64, 3), 120, np.uint8)))
    assert rm.labels.shape == (48, 64) and (rm.labels >= 0).all()
    assert src.params["checkpoint"] == "tiny_lraspp.pth"


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        make_region_source("landscape", labeller="segmentation-model", seg_model="fcn_resnet50",
                           seg_checkpoint=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="seg_checkpoint"):
        make_region_source("landscape", labeller="segmentation-model")
    src = make_region_source("landscape", labeller="segmentation-model", seg_model_object=HalfAndHalf(),
                             seg_mapping="voc")
    with pytest.raises(ValueError, match="150 classes but the mapping"):
        src.segment(ImageInput("r", np.zeros((8, 8, 3), np.uint8)))
