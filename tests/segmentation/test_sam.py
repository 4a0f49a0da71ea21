"""The sam source with a tiny random-weight SAM: automatic and prompted, end to end on CPU."""

import json

import numpy as np
import pytest

from semcontrib.regions import ImageInput
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.landscape import LANDSCAPE_VOCABULARY
from semcontrib.segmentation.sam import CHECKPOINT_ENV, SamSource, build_tiny_sam, sam_model_type

pytest.importorskip("segment_anything")


@pytest.fixture(scope="module")
def tiny_sam():
    return build_tiny_sam(seed=0)


def _image(h=60, w=80):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2] = (110, 160, 235)
    rgb[h // 2:] = (60, 150, 40)
    return ImageInput("scene", rgb, path="/x/scene.png")


def test_automatic_end_to_end(tiny_sam):
    src = make_region_source("sam", model=tiny_sam, min_area="1", points_per_side="4",
                             pred_iou_thresh="0", stability_score_thresh="0")
    rm = src.segment(_image())
    assert rm.names == LANDSCAPE_VOCABULARY and src.vocabulary == LANDSCAPE_VOCABULARY
    assert rm.labels.shape == (60, 80) and rm.labels.dtype == np.int32
    assert rm.labels.min() >= -1 and rm.labels.max() < len(LANDSCAPE_VOCABULARY)
    assert "checkpoint" in src.params


def test_automatic_labels_follow_masks(tiny_sam, monkeypatch):
    """Partition + labelling with known masks (the generator stubbed): smaller wins, min area."""
    src = SamSource(model=tiny_sam, min_area=10)
    top = np.zeros((60, 80), bool)
    top[:30] = True
    allm = np.ones((60, 80), bool)
    speck = np.zeros((60, 80), bool)
    speck[40, 40] = True
    for order in ([top, allm, speck], [speck, allm, top]):
        monkeypatch.setattr(src, "masks", lambda rgb, o=order: list(o))
        rm = src.segment(_image())
        names = np.array(rm.names)
        assert (names[rm.labels[:30]] == "sky").all()
        assert (names[rm.labels[30:]] == "vegetation").all()  # the speck is below min_area


def test_prompted_boxes_and_points(tiny_sam, tmp_path):
    coco = {"images": [{"id": 1, "file_name": "scene.png", "height": 60, "width": 80}],
            "categories": [{"id": 1, "name": "Head"}, {"id": 2, "name": "Eye"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 40, 30]},
                            {"id": 2, "image_id": 1, "category_id": 2, "keypoints": [20, 15, 2]}]}
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps(coco))
    src = make_region_source("sam", model=tiny_sam, prompts=str(p), min_area="0")
    assert src.vocabulary == ("Eye", "Head")
    rm = src.segment(_image())
    assert rm.names == ("Eye", "Head") and rm.labels.shape == (60, 80)
    assert rm.labels.min() >= -1 and rm.labels.max() <= 1


def test_missing_checkpoint(monkeypatch, tmp_path):
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    with pytest.raises(ValueError, match="--sam-checkpoint"):
        make_region_source("sam")
    missing = tmp_path / "sam_vit_b.pth"
    with pytest.raises(FileNotFoundError, match="sam_vit_b.pth"):
        make_region_source("sam", checkpoint=str(missing))
    monkeypatch.setenv(CHECKPOINT_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="sam_vit_b.pth"):
        make_region_source("sam")


def test_model_type_from_checkpoint_shapes(tmp_path):
    torch = pytest.importorskip("torch")
    for dim, kind in ((768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")):
        assert sam_model_type({"image_encoder.patch_embed.proj.weight": torch.zeros(dim, 3, 1, 1)}) == kind
    with pytest.raises(ValueError, match="width 32"):
        sam_model_type({"image_encoder.patch_embed.proj.weight": torch.zeros(32, 3, 1, 1)})
    with pytest.raises(ValueError, match="not a Segment Anything"):
        sam_model_type({})


def test_cache_identity_and_evidence(tiny_sam, tmp_path):
    from semcontrib.regions import source_key, uses_evidence

    auto = SamSource(model=tiny_sam)
    assert uses_evidence(auto)  # the default rule labeller reads the classifier's evidence
    assert source_key(auto, "model-a") != source_key(auto, "model-b")
    assert source_key(auto) == source_key(SamSource(model=tiny_sam))
    assert source_key(SamSource(model=build_tiny_sam(seed=1))) != source_key(auto)  # other weights
    coco = {"images": [{"id": 1, "file_name": "scene.png", "height": 60, "width": 80}],
            "categories": [{"id": 1, "name": "Head"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 40, 30]}]}
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps(coco))
    prompted = SamSource(model=tiny_sam, prompts=p)
    assert not uses_evidence(prompted)  # masks are named by their prompts
    key = source_key(prompted)
    coco["annotations"][0]["bbox"] = [0, 0, 40, 30]
    p.write_text(json.dumps(coco))
    assert source_key(SamSource(model=tiny_sam, prompts=p)) != key


def test_checkpoint_content_is_in_the_key(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import semcontrib.segmentation.sam as sam_mod
    from semcontrib.regions import source_key

    ckpt = tmp_path / "sam.pth"
    torch.save({"w": torch.zeros(2)}, ckpt)
    monkeypatch.setattr(sam_mod, "load_sam", lambda checkpoint, device="cpu": build_tiny_sam())
    key = source_key(SamSource(checkpoint=ckpt))
    assert source_key(SamSource(checkpoint=ckpt)) == key
    torch.save({"w": torch.ones(2)}, ckpt)  # same name, other content
    assert source_key(SamSource(checkpoint=ckpt)) != key
