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
