"""Label Studio export: the documented task shape, and a round trip (export, import unchanged) to the same regions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from semcontrib.cli import main
from semcontrib.corpus import Corpus
from semcontrib.label_studio import export_label_studio, image_reference, region_results
from semcontrib.pipeline import analyze
from semcontrib.segmentation.rle import brush_rle_to_mask

pytest.importorskip("torch")
from tests.conftest import tiny_model  # noqa: E402
from tests.test_pipeline import HoleyGrid  # noqa: E402  (two regions, an unassigned border, a never-used name)

# Label Studio's task import format (https://labelstud.io/guide/task_format, "Basic Label Studio JSON format"
# and "Import pre-annotated data"; brush results: https://labelstud.io/guide/export#Brush-labels), as a schema.
RESULT = {
    "type": "object",
    "required": ["id", "from_name", "to_name", "type", "value", "original_width", "original_height"],
    "properties": {
        "id": {"type": "string"}, "from_name": {"type": "string"}, "to_name": {"type": "string"},
        "type": {"enum": ["brushlabels"]},
        "original_width": {"type": "integer", "minimum": 1}, "original_height": {"type": "integer", "minimum": 1},
        "image_rotation": {"type": "number"},
        "value": {"type": "object", "required": ["format", "rle", "brushlabels"], "properties": {
            "format": {"const": "rle"},
            "rle": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
            "brushlabels": {"type": "array", "items": {"type": "string"}, "minItems": 1}}},
    },
}
TASKS = {
    "type": "array",
    "items": {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "object", "required": ["image"], "properties": {"image": {"type": "string"}}},
        "predictions": {"type": "array", "items": {"type": "object", "required": ["result"], "properties": {
            "model_version": {"type": "string"}, "score": {"type": "number"},
            "result": {"type": "array", "items": RESULT}}}},
    }},
}


@pytest.fixture
def corpus(image_folder, tmp_path):
    out = tmp_path / "c"
    analyze(image_folder, out, model=tiny_model(), regions=HoleyGrid(), methods=["gradcam"], batch_size=3,
            chunk_size=3, validity=False, workers=0)
    return out


def test_tasks_follow_label_studio_format_and_reimport_to_the_same_regions(corpus, image_folder, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "tasks.json"
    assert main(["export", str(corpus), "--format", "label-studio", "-o", str(out)]) == 0
    tasks = json.loads(out.read_text())
    jsonschema.validate(tasks, TASKS)
    c = Corpus.open(corpus)
    assert len(tasks) == 7 == len(c.image_ids())
    first = tasks[0]
    assert first["data"]["semcontrib_image_id"] in c.image_ids()
    assert first["data"]["image"].endswith(".png")
    labels = {r["value"]["brushlabels"][0] for t in tasks for r in t["predictions"][0]["result"]}
    assert labels == {"left", "right"}  # regions present; "never" is used by no pixel
    config = ET.fromstring((tmp_path / "tasks.label_config.xml").read_text())
    assert [lab.get("value") for lab in config.iter("Label")] == ["left", "right", "never"]

    # import unchanged: the same region map, pixel for pixel, by name
    back = tmp_path / "back"
    analyze(image_folder, back, model=tiny_model(), regions=f"annotations:{out}", methods=["gradcam"],
            batch_size=3, chunk_size=3, validity=False, workers=0)
    d = Corpus.open(back)
    assert d.image_ids() == c.image_ids()
    for i in c.image_ids():
        a, b = c.region_map(i), d.region_map(i)
        assert a is not None and b is not None
        names_a = np.array([*a.names, "-"])[a.labels]  # -1 indexes the last entry: unassigned
        names_b = np.array([*b.names, "-"])[b.labels]
        assert np.array_equal(names_a, names_b), i
        assert (a.labels == -1).any()  # the unassigned border survives the trip


def test_brush_results_decode_to_the_upsampled_map():
    lab = np.array([[0, 0, 1], [-1, 1, 1]], np.int32)
    res = region_results(lab, ["a", "b"], (4, 6), "img")
    assert [r["value"]["brushlabels"] for r in res] == [["a"], ["b"]]
    a = brush_rle_to_mask(res[0]["value"]["rle"], 4, 6)
    b = brush_rle_to_mask(res[1]["value"]["rle"], 4, 6)
    expected_a = np.zeros((4, 6), bool)
    expected_a[:2, :4] = True  # each source pixel is a 2x2 block
    assert np.array_equal(a, expected_a)
    assert np.array_equal(b, np.kron(lab == 1, np.ones((2, 2), bool)))
    assert res[0]["original_width"] == 6 and res[0]["original_height"] == 4


def test_image_reference_and_bad_output(corpus, tmp_path):
    assert image_reference("/p/x/a.png", None) == "/p/x/a.png"
    assert image_reference("/p/x/a.png", "/p") == "/data/local-files/?d=x/a.png"
    with pytest.raises(ValueError, match="is not under --image-root"):
        image_reference("/q/a.png", "/p")
    with pytest.raises(ValueError, match="must end in .json"):
        export_label_studio(Corpus.open(corpus), tmp_path / "tasks.csv")
