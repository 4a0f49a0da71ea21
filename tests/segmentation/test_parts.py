"""``parts``: part boxes intersected with a foreground source's mask; body and background for the rest."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from semcontrib.paths import data_path
from semcontrib.regions import ImageInput, RegionError, RegionMap, RegionSource, source_key
from semcontrib.segmentation import REGION_SOURCES, make_region_source
from semcontrib.segmentation.annotations import AnnotationSource, box_to_mask
from semcontrib.segmentation.parts import PartsSource, parse_parts_spec


class FakeForeground:
    """A foreground source with a known mask: label ``cat`` on rows 2..5, cols 1..6 of an 8x10 image."""

    name = "fake"
    vocabulary = ("cat", "floor")
    uses_evidence = False

    def __init__(self, tag: str = "v1") -> None:
        self.tag = tag

    @property
    def params(self) -> dict[str, Any]:
        return {"tag": self.tag}

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        labels = np.full((h, w), 1, dtype=np.int32)
        labels[2:6, 1:7] = 0
        labels[7, :] = -1
        return RegionMap(labels, self.vocabulary)


def coco(tmp_path, boxes: dict[str, list[float]], name: str = "a.png", h: int = 8, w: int = 10,
         file: str = "boxes.json") -> str:
    cats = sorted(boxes)
    data = {"images": [{"id": 1, "file_name": name, "height": h, "width": w}],
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": i + 1, "bbox": boxes[c]}
                            for i, c in enumerate(cats)]}
    path = tmp_path / file
    path.write_text(json.dumps(data))
    return str(path)


def image(name: str = "a.png", h: int = 8, w: int = 10) -> ImageInput:
    return ImageInput(name.split(".")[0], np.zeros((h, w, 3), np.uint8), f"/x/{name}")


def test_hand_computed_tiny_case(tmp_path):
    # eye box: cols 0..2, rows 1..3 -> inside the cat (rows 2..5, cols 1..6): rows 2..3, cols 1..2
    # ear box: cols 7..8, rows 0..1 -> entirely outside the cat: no ear pixels
    path = coco(tmp_path, {"eye": [0, 1, 3, 3], "ear": [7, 0, 2, 2]})
    src = PartsSource(AnnotationSource(path), FakeForeground(), "cat")
    assert src.vocabulary == ("ear", "eye", "body", "background")
    got = src.segment(image()).labels
    want = np.full((8, 10), 3, dtype=np.int32)  # background
    want[2:6, 1:7] = 2                           # body
    want[2:4, 1:3] = 1                           # eye
    np.testing.assert_array_equal(got, want)


def test_parts_lie_inside_box_and_foreground(tmp_path):
    boxes = {"left_eye": [5, 1, 3, 3], "right_eye": [1, 3, 2, 4], "nose": [3, 4, 3, 1]}
    path = coco(tmp_path, boxes)
    cat = coco(tmp_path, {"cat": [1, 2, 6, 4]}, file="fg.json")
    src = make_region_source(f"parts:boxes={path},foreground=annotations:{cat}:cat")
    rmap = src.segment(image())
    fg = box_to_mask((1, 2, 7, 6), 8, 10)
    for name, (x, y, w, h) in boxes.items():
        k = rmap.names.index(name)
        region = rmap.labels == k
        assert region.any(), name
        assert not (region & ~box_to_mask((x, y, x + w, y + h), 8, 10)).any(), f"{name} outside its box"
        assert not (region & ~fg).any(), f"{name} outside the foreground"
    body, background = rmap.names.index("body"), rmap.names.index("background")
    assert (rmap.labels == body).any() and (rmap.labels == background).any()
    assert np.array_equal(rmap.labels == background, ~fg)
    assert (rmap.labels >= 0).all()


def test_whole_source_foreground_takes_every_assigned_pixel(tmp_path):
    path = coco(tmp_path, {"eye": [0, 0, 10, 8]})
    src = PartsSource(AnnotationSource(path), FakeForeground(), None)
    labels = src.segment(image()).labels
    assert (labels[:7] == 0).all()  # every assigned pixel of the foreground, inside the box
    assert (labels[7] == 2).all()   # the foreground's unassigned row is background


def test_several_foreground_labels_join_with_plus(tmp_path):
    path = coco(tmp_path, {"eye": [0, 0, 10, 8]})
    src = make_region_source("parts", boxes=path, foreground="landscape:animal+person")
    assert src.foreground.name == "landscape" and src.foreground_label == "animal+person"
    both = PartsSource(AnnotationSource(path), FakeForeground(), "cat+floor").segment(image()).labels
    assert (both[:7] == 0).all() and (both[7] == 2).all()
    with pytest.raises(ValueError, match="'dog' is not in the vocabulary"):
        PartsSource(AnnotationSource(path), FakeForeground(), "cat+dog")


def test_missing_image(tmp_path):
    path = coco(tmp_path, {"eye": [0, 1, 3, 3]}, name="other.png")
    src = PartsSource(AnnotationSource(path), FakeForeground(), "cat")
    labels = src.segment(image()).labels
    assert set(np.unique(labels)) == {1, 2}  # body and background only
    assert (labels[2:6, 1:7] == 1).all()
    with pytest.raises(RegionError, match="has no part annotations") as err:
        PartsSource(AnnotationSource(path), FakeForeground(), "cat", missing="error").segment(image())
    assert err.value.permanent
    assert (PartsSource(AnnotationSource(path), FakeForeground(), "cat", missing="unassigned")
            .segment(image()).labels == -1).all()


def test_spec_parsing():
    assert parse_parts_spec("boxes=a.json,foreground=landscape:animal,body=fur") == {
        "boxes": "a.json", "foreground": "landscape:animal", "body": "fur"}
    assert parse_parts_spec("boxes=x,y.json,foreground=concepts:eye,ear:eye")["foreground"] == "concepts:eye,ear:eye"
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_parts_spec("a.json,foreground=sam")
    with pytest.raises(ValueError, match="given twice"):
        parse_parts_spec("boxes=a,boxes=b")


def test_factory_and_options(tmp_path):
    path = coco(tmp_path, {"eye": [0, 1, 3, 3]})
    assert "parts" in REGION_SOURCES
    by_spec = make_region_source(f"parts:boxes={path},foreground=landscape:animal")
    by_opts = make_region_source("parts", boxes=path, foreground="landscape:animal")
    assert isinstance(by_spec, RegionSource)
    assert by_spec.vocabulary == ("eye", "body", "background")
    assert by_spec.foreground_label == "animal" and by_spec.foreground.name == "landscape"
    assert source_key(by_spec, "m1") == source_key(by_opts, "m1")
    whole = make_region_source("parts", boxes=path, foreground="grid:2x2")
    assert whole.foreground_label is None and whole.foreground.name == "grid"
    inner = make_region_source("parts", boxes=path, foreground="landscape:animal",
                               **{"foreground.faces": "no"})
    assert inner.foreground.params["faces"] is False
    with pytest.raises(ValueError, match="needs an annotation file"):
        make_region_source("parts:foreground=landscape")
    with pytest.raises(ValueError, match="needs a foreground"):
        make_region_source(f"parts:boxes={path}")
    with pytest.raises(ValueError, match="not a region source spec"):
        make_region_source(f"parts:boxes={path},foreground=nosuch:animal")
    with pytest.raises(ValueError, match="unknown option"):
        make_region_source(f"parts:boxes={path},foreground=landscape", colour="red")
    with pytest.raises(ValueError, match="in the spec but"):
        make_region_source(f"parts:boxes={path},foreground=landscape,body=skin", body="fur")
    with pytest.raises(ValueError, match="cannot itself be a parts source"):
        make_region_source(f"parts:boxes={path},foreground=parts:x")
    with pytest.raises(ValueError, match="two different"):
        make_region_source(f"parts:boxes={path},foreground=landscape,body=x,background=x")
    clash = coco(tmp_path, {"body": [0, 1, 3, 3]}, file="clash.json")
    with pytest.raises(ValueError, match="has a part named 'body'"):
        make_region_source(f"parts:boxes={clash},foreground=landscape")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        PartsSource(AnnotationSource(path), FakeForeground(), "dog")


def test_cache_key_follows_boxes_content_and_foreground(tmp_path):
    path = coco(tmp_path, {"eye": [0, 1, 3, 3]})
    key = source_key(make_region_source(f"parts:boxes={path},foreground=landscape:animal"), "m1")
    assert key == source_key(make_region_source(f"parts:boxes={path},foreground=landscape:animal"), "m1")
    coco(tmp_path, {"eye": [0, 1, 4, 3]})  # same file, other content
    assert source_key(make_region_source(f"parts:boxes={path},foreground=landscape:animal"), "m1") != key
    key = source_key(make_region_source(f"parts:boxes={path},foreground=landscape:animal"), "m1")
    assert source_key(make_region_source(f"parts:boxes={path},foreground=landscape:person"), "m1") != key
    assert source_key(make_region_source(f"parts:boxes={path},foreground=landscape:animal",
                                         **{"foreground.evidence_threshold": "0.6"}), "m1") != key
    a = PartsSource(AnnotationSource(path), FakeForeground("v1"), "cat")
    b = PartsSource(AnnotationSource(path), FakeForeground("v2"), "cat")
    assert source_key(a) != source_key(b)


def test_evidence_use_is_the_foregrounds(tmp_path):
    path = coco(tmp_path, {"eye": [0, 1, 3, 3]})
    landscape = make_region_source(f"parts:boxes={path},foreground=landscape:animal")
    assert landscape.uses_evidence is True
    assert source_key(landscape, "model-a") != source_key(landscape, "model-b")
    grid = make_region_source(f"parts:boxes={path},foreground=grid")
    assert grid.uses_evidence is False
    assert source_key(grid, "model-a") == source_key(grid, "model-b")


def test_foreground_map_of_the_wrong_size_is_a_permanent_error(tmp_path):
    class Wrong(FakeForeground):
        def segment(self, image: ImageInput) -> RegionMap:
            return RegionMap(np.zeros((2, 2), np.int32), self.vocabulary)

    path = coco(tmp_path, {"eye": [0, 1, 3, 3]})
    with pytest.raises(RegionError, match="returned a 2x2 map") as err:
        PartsSource(AnnotationSource(path), Wrong(), "cat").segment(image())
    assert err.value.permanent


def test_cat_eyes_inside_box_and_animal_mask_on_chelsea(tmp_path):
    """The acceptance case: boxes around the cat's eyes, foreground the landscape source's animal region
    (with the class evidence the pipeline would pass: animal evidence over the cat)."""
    from semcontrib.segmentation.metrics import load_bundled_photograph

    rgb = load_bundled_photograph("chelsea.png")
    h, w = rgb.shape[:2]
    eyes = {"left_eye": [290, 105, 60, 65], "right_eye": [128, 80, 86, 72]}
    path = coco(tmp_path, eyes, name="chelsea.png", h=h, w=w)
    src = make_region_source(f"parts:boxes={path},foreground=landscape:animal")
    evidence = {g: np.zeros((h, w), np.float32) for g in ("animal", "person", "built", "vegetation", "water")}
    evidence["animal"][:, :360] = 0.9
    im = ImageInput("chelsea", rgb, "/x/chelsea.png", evidence)
    rmap = src.segment(im)
    animal = src.foreground.segment(im)
    animal_mask = animal.labels == animal.names.index("animal")
    for name, (x, y, bw, bh) in eyes.items():
        region = rmap.labels == rmap.names.index(name)
        assert region.sum() > 0.5 * bw * bh, name  # most of the box: the eyes are on the cat
        assert not (region & ~box_to_mask((x, y, x + bw, y + bh), h, w)).any()
        assert not (region & ~animal_mask).any()
    assert (rmap.labels == rmap.names.index("body")).sum() > 0.3 * h * w
    assert (rmap.labels == rmap.names.index("background")).any()


def test_shipped_part_annotations():
    src = AnnotationSource(data_path("part_annotations.coco.json"))
    assert src.vocabulary == ("face", "left_ear", "left_eye", "mouth", "nose", "right_eye")
    from semcontrib.segmentation.metrics import load_bundled_photograph

    for name, parts in (("chelsea.png", {"left_eye", "right_eye", "nose", "left_ear"}),
                        ("astronaut.png", {"left_eye", "right_eye", "nose", "mouth", "face"}),
                        ("grace_hopper.jpg", {"left_eye", "right_eye", "nose", "mouth", "face"})):
        rgb = load_bundled_photograph(name)
        rmap = src.segment(ImageInput(name.split(".")[0], rgb, name))
        present = {rmap.names[k] for k in np.unique(rmap.labels) if k >= 0}
        assert present == parts, name
        cols = {n: np.nonzero(rmap.labels == rmap.names.index(n))[1].mean() for n in ("left_eye", "right_eye")}
        # the subject's own left: on the picture's right for a subject facing the camera
        assert cols["left_eye"] > cols["right_eye"], name
