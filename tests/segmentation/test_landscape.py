"""The landscape source: partition invariants, rules on synthetic scenes, accuracy floor on photographs."""

import json

import numpy as np
import pytest
from PIL import Image

from semcontrib.paths import data_path
from semcontrib.regions import ImageInput, resize_evidence
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.annotations import AnnotationSource
from semcontrib.segmentation.landscape import LANDSCAPE_VOCABULARY, LandscapeSource
from semcontrib.segmentation.metrics import load_bundled_photograph, score_maps

# measured on data/landscape_annotations.coco.json (see docs/regions.md); floors sit a little below
ACCURACY_FLOOR = {"sky": 0.95, "water": 0.8, "vegetation": 0.88, "built": 0.57, "person": 0.9,
                  "animal": 0.87}
IOU_FLOOR = {"sky": 0.6, "water": 0.7, "vegetation": 0.86, "built": 0.55, "person": 0.82, "animal": 0.85}
OVERALL_FLOOR = 0.77


def _scene(h=120, w=160, seed=0):
    """Blue sky on top, green meadow below, with mild noise."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((h, w, 3), np.float64)
    rgb[: h // 2] = (110, 160, 235)
    rgb[h // 2:] = (60, 150, 40)
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_synthetic_sky_and_vegetation_without_evidence():
    rgb = _scene()
    rm = LandscapeSource().segment(ImageInput("scene", rgb))
    names = np.array(rm.names)
    assert (names[rm.labels[:50]] == "sky").mean() > 0.95
    assert (names[rm.labels[70:]] == "vegetation").mean() > 0.95


@pytest.mark.parametrize("method", ["felzenszwalb", "slic"])
def test_partition_covers_every_pixel_once_at_original_size(method):
    rgb = load_bundled_photograph("coffee.png")[:333, :517]  # odd size, downscaled internally
    rm = make_region_source("landscape", oversegmentation=method, max_side="200").segment(
        ImageInput("c", np.ascontiguousarray(rgb)))
    assert rm.labels.shape == rgb.shape[:2] and rm.labels.dtype == np.int32
    assert ((rm.labels >= 0) & (rm.labels < len(LANDSCAPE_VOCABULARY))).all()  # one region per pixel
    assert rm.names == LANDSCAPE_VOCABULARY


def test_same_vocabulary_for_every_image():
    src = make_region_source("landscape", faces="false")
    for i, name in enumerate(["chelsea.png", "rocket.jpg"]):
        rgb = load_bundled_photograph(name)
        assert src.segment(ImageInput(str(i), rgb)).names == LANDSCAPE_VOCABULARY
    assert src.segment(ImageInput("tiny", np.zeros((3, 2, 3), np.uint8))).names == LANDSCAPE_VOCABULARY


def test_bad_input():
    with pytest.raises(ValueError, match="'x'.*uint8 HxWx3"):
        LandscapeSource().segment(ImageInput("x", np.zeros((4, 4), np.uint8)))
    with pytest.raises(ValueError, match="evidence 'animal'"):
        LandscapeSource().segment(ImageInput("x", np.zeros((4, 4, 3), np.uint8),
                                             evidence={"animal": np.zeros((2, 2), np.float32)}))
    with pytest.raises(ValueError, match="over-segmentation"):
        make_region_source("landscape", oversegmentation="watershed")
    with pytest.raises(ValueError, match="unknown option"):
        make_region_source("landscape", colour="blue")
    with pytest.raises(ValueError, match="evidence_threshold must be a number"):
        make_region_source("landscape", evidence_threshold="high")


@pytest.fixture(scope="module")
def scored():
    """Score the default labeller (with the default model's class evidence) on the annotated photos."""
    from semcontrib.model import class_evidence, load_imagenet_heads

    model = load_imagenet_heads()
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())["evidence_groups"]
    truth = AnnotationSource(data_path("landscape_annotations.coco.json"))
    src = make_region_source("landscape")
    pairs = []
    for rec in {id(r): r for r in truth._records.values()}.values():
        rgb = load_bundled_photograph(rec.key)
        h, w = rgb.shape[:2]
        small = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.Resampling.BILINEAR)).copy()
        ev = resize_evidence(class_evidence(model, model.preprocess(small), groups)[0], list(groups), (h, w))
        pred = src.segment(ImageInput(rec.key, rgb, rec.key, ev))
        gt = truth.segment(ImageInput(rec.key, rgb, rec.key))
        pairs.append((pred.labels, pred.names, gt.labels, gt.names))
    return score_maps(pairs, LANDSCAPE_VOCABULARY)


def test_accuracy_floor(scored):
    for c, floor in ACCURACY_FLOOR.items():
        assert scored.accuracy[c] >= floor, (c, scored.accuracy[c])
    for c, floor in IOU_FLOOR.items():
        assert scored.iou[c] >= floor, (c, scored.iou[c])
    assert scored.overall_accuracy >= OVERALL_FLOOR
