"""The REGION_SOURCES registry: specs, option conversion, shared invariants of every source."""

import json

import numpy as np
import pytest

from semcontrib.regions import RegionSource, source_key
from semcontrib.segmentation import REGION_SOURCES, make_region_source
from semcontrib.segmentation.grid import GridSource


def test_registry_names():
    assert {"grid", "landscape", "sam", "annotations"} <= set(REGION_SOURCES)
    with pytest.raises(ValueError, match="unknown region source"):
        make_region_source("superpixels")


def test_grid_still_works():
    src = make_region_source("grid:4x4")
    assert isinstance(src, GridSource) and len(src.vocabulary) == 16
    assert make_region_source("grid", rows="2", cols="5").vocabulary[-1] == "r1c4"
    with pytest.raises(ValueError, match="rows must be an integer"):
        make_region_source("grid", rows="two")


def test_sources_are_region_sources_with_stable_keys(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
            "categories": [{"id": 1, "name": "x"}], "annotations": []}
    (tmp_path / "a.json").write_text(json.dumps(coco))
    for spec in ("grid", "landscape", f"annotations:{tmp_path / 'a.json'}"):
        src = make_region_source(spec)
        assert isinstance(src, RegionSource)
        assert source_key(src) == source_key(make_region_source(spec))
    assert source_key(make_region_source("landscape")) != source_key(
        make_region_source("landscape", evidence_threshold="0.5"))


def test_option_conversion_errors():
    with pytest.raises(ValueError, match="faces must be true or false"):
        make_region_source("landscape", faces="maybe")
    with pytest.raises(ValueError, match="labeller"):
        make_region_source("landscape", labeller="oracle")
    src = make_region_source("landscape", faces="no", max_side="128", scale="50")
    assert src.params["faces"] is False and src.params["max_side"] == 128
    assert np.isclose(src.params["segment_params"]["scale"], 50.0)


# --------------------------------------------------------------------------- one contract for every source


def _coco_one(tmp_path, h: int, w: int) -> str:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "img.png", "height": h, "width": w}],
        "categories": [{"id": 1, "name": "eye"}, {"id": 2, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 3]},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [1, 1, 20, 12]}]}))
    return str(path)


class _FakeConcepts:
    name = "fake"
    identity = {"weights": "none"}

    def find(self, rgb, prompts):
        from semcontrib.segmentation.concepts import ConceptInstance

        mask = np.zeros(rgb.shape[:2], bool)
        mask[2:6, 3:9] = True
        return [[ConceptInstance(mask, 0.9)] for _ in prompts]


def _build(name: str, tmp_path, h: int, w: int):
    """A source of each registered kind, built offline through the registry."""
    ann = _coco_one(tmp_path, h, w)
    if name == "sam":
        pytest.importorskip("segment_anything")
        from semcontrib.segmentation.sam import build_tiny_sam

        return make_region_source("sam", model=build_tiny_sam(seed=0), min_area="1", points_per_side="2")
    if name == "faces":
        pytest.importorskip("dlib")
    specs = {"grid": "grid:2x3", "landscape": "landscape", "annotations": f"annotations:{ann}", "faces": "faces",
             "parts": f"parts:boxes={ann},foreground=grid:1x1", "concepts": "concepts:eye,cat,rest"}
    options = {"concepts": {"backend": _FakeConcepts()}}.get(name, {})
    return make_region_source(specs[name], **options)


@pytest.mark.parametrize("name", sorted(REGION_SOURCES))
def test_every_registered_source_keeps_the_same_contract(name, tmp_path):
    """Registered by name; a fixed vocabulary of distinct names; JSON-able params; a cache identity and
    an evidence flag of its own (so its key is exact); a stable key; and ``segment`` gives an int32 map of
    the image's size over that vocabulary. A new source added to REGION_SOURCES is checked here too."""
    from semcontrib.regions import ImageInput, RegionMap, cache_identity

    h, w = 16, 24
    src = _build(name, tmp_path, h, w)
    assert isinstance(src, RegionSource)
    assert src.name == name
    vocab = tuple(src.vocabulary)
    assert vocab and all(isinstance(v, str) and v for v in vocab) and len(set(vocab)) == len(vocab)
    json.dumps(src.params, default=str)
    assert hasattr(src, "cache_identity") and hasattr(src, "uses_evidence")
    json.dumps(cache_identity(src), default=str)
    assert source_key(src, "m") == source_key(_build(name, tmp_path, h, w), "m")
    rgb = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    rmap = src.segment(ImageInput("img", rgb, str(tmp_path / "img.png")))
    assert isinstance(rmap, RegionMap)
    assert rmap.names == vocab and rmap.shape == (h, w) and rmap.labels.dtype == np.int32
