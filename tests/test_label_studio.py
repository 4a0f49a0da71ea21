"""Label Studio, both ways. Regions: the documented task shape, and a round trip (export, import unchanged) to the
same regions. Labels: the choices reader's rules (prefixes, unannotated, ties, majority, unknown choices,
duplicates), the labelling config, matching analysis inputs, bad input, and a bounded fuzz."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcontrib.cli import main
from semcontrib.corpus import Corpus
from semcontrib.label_studio import (
    ChoiceLabels,
    export_label_studio,
    image_reference,
    parse_choices,
    read_choices,
    read_label_config,
    region_results,
    with_labels,
)
from semcontrib.pipeline import InputEntry, analyze
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


# --------------------------------------------------------------------------- labels (the choices reader)

CLASSES = {"nature": ("nature", "non-nature"), "biotic": ("biotic", "abiotic")}


def _result(control: str, *choices: str) -> dict:
    return {"type": "choices", "from_name": control, "to_name": "image", "value": {"choices": list(choices)}}


def _task(tid: int, image: str, *annotations: list[dict], cancelled: bool = False) -> dict:
    anns = [{"id": 100 + k, "result": r, "was_cancelled": cancelled} for k, r in enumerate(annotations)]
    return {"id": tid, "data": {"image": image}, "annotations": anns}


def test_rules_of_the_reader():
    tasks = [
        _task(1, "/data/upload/3/0a1b2c3d-fox.jpg", [_result("nature", "nature"), _result("biotic", "biotic")]),
        _task(2, "/data/upload/3/deadbeef-car.jpg"),  # no annotation
        _task(3, "road.jpg", [_result("nature", "non-nature")], [_result("nature", "nature")]),  # tie
        _task(4, "tree.jpg", [_result("nature", "nature")], [_result("nature", "nature")],
              [_result("nature", "non-nature")]),  # majority 2:1
        _task(5, "cat.jpg", [_result("nature", "maybe")]),  # not a class
        _task(6, "/data/upload/9/12345678-fox.jpg", [_result("nature", "nature")]),  # fox.jpg again
        _task(7, "sky.jpg", [_result("nature", "nature")], cancelled=True),
        _task(8, "hill.jpg", [_result("nature", "nature", "non-nature"), _result("biotic", "abiotic")]),
        {"id": 9, "data": {"text": 3}, "annotations": []},
        _task(10, "moss.jpg", [{"type": "rectanglelabels", "from_name": "box", "value": {}},
                               _result("biotic", "biotic")]),
    ]
    got = parse_choices(tasks, CLASSES)
    assert [(r.task_id, r.image, dict(r.labels)) for r in got.rows] == [
        ("1", "0a1b2c3d-fox.jpg", {"nature": "nature", "biotic": "biotic"}),
        ("4", "tree.jpg", {"nature": "nature"}),
        ("8", "hill.jpg", {"biotic": "abiotic"}),  # two choices in one control: no answer there
        ("10", "moss.jpg", {"biotic": "biotic"}),
    ]
    assert [str(s) for s in got.skipped] == [
        "task 2 (deadbeef-car.jpg): no annotation",
        "task 3 (road.jpg): annotations disagree on nature (non-nature 1, nature 1)",
        "task 5 (cat.jpg): choice maybe is not a class of nature (nature, non-nature)",
        "task 6 (12345678-fox.jpg): image already labelled by task 1",
        "task 7 (sky.jpg): no annotation",
        "task 9 (?): names no image (data.image)",
    ]
    assert got.tasks == ("nature", "biotic") and got.classes == CLASSES


def test_without_classes_every_choice_seen_is_a_class():
    tasks = [_task(1, "a.jpg", [_result("nature", "nature")]), _task(2, "b.jpg", [_result("nature", "maybe")]),
             _task(3, "c.jpg", [_result("scene", "x")])]
    got = parse_choices(tasks)
    assert got.tasks == ("nature", "scene") and got.classes == {"nature": ("maybe", "nature"), "scene": ("x",)}
    assert not got.skipped


@pytest.mark.parametrize("data, match", [
    ({"id": 1}, "must be a JSON list of tasks, got dict"),
    ([1], "item 0 is 1, not a task object"),
])
def test_malformed_exports_raise_one_line_errors(data, match):
    with pytest.raises(ValueError, match=match):
        parse_choices(data)


def test_read_choices_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Label Studio export not found"):
        read_choices(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="bad.json: not a JSON file"):
        read_choices(bad)
    good = tmp_path / "ok.json"
    good.write_text(json.dumps([_task(1, "a.jpg", [_result("nature", "nature")])]))
    assert isinstance(read_choices(good), ChoiceLabels)


def test_label_config(tmp_path):
    cfg = tmp_path / "config.xml"
    cfg.write_text('<View><Image name="image" value="$image"/>'
                   '<Choices name="nature" toName="image"><Choice value="nature"/><Choice value="non-nature"/>'
                   '</Choices>'
                   '<Choices name="biotic" toName="image"><Choice value="Biotic" alias="biotic"/>'
                   '<Choice value="abiotic"/></Choices></View>')
    assert read_label_config(cfg) == CLASSES
    for text, match in [("<View><Choices name='a'><Choice value='x'/><Choice value='x'/></Choices></View>",
                         "names a class twice"),
                        ("<View><Image name='i'/></View>", "no <Choices name=...> control"),
                        ("<View><Choices><Choice value='x'/></Choices></View>", "needs a name"),
                        ("<View", "not a Label Studio labelling config"),
                        ('<!DOCTYPE v [<!ENTITY a "b">]><View/>', "DOCTYPE or entities")]:
        cfg.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_label_config(cfg)


def test_with_labels_matches_inputs_by_file_name_with_or_without_prefix():
    labels = parse_choices([_task(1, "/data/upload/3/0a1b2c3d-fox.jpg", [_result("nature", "nature")]),
                            _task(2, "/x/car.png", [_result("biotic", "abiotic")]),
                            _task(3, "gone.jpg", [_result("nature", "nature")])])
    entries = [InputEntry(Path("/photos/fox.jpg")), InputEntry(Path("/photos/0a1b2c3d-car.png"), {"site": "a"}),
               InputEntry(Path("/photos/other.jpg"))]
    out, unmatched = with_labels(entries, labels)
    assert [dict(e.labels) for e in out] == [{"nature": "nature", "biotic": ""},
                                             {"site": "a", "nature": "", "biotic": "abiotic"}, {}]
    assert unmatched == ["task 3 (gone.jpg)"]


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=60, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6))
_json = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                     max_leaves=8)
_choice = st.sampled_from(["nature", "non-nature", "biotic", "abiotic", "x"])
_result_st = st.fixed_dictionaries({"type": st.sampled_from(["choices", "labels", 3]),
                                    "from_name": st.one_of(st.sampled_from(["nature", "biotic"]), _json),
                                    "value": st.one_of(
                                        st.fixed_dictionaries({"choices": st.lists(_choice, max_size=2)}), _json)})
_task_st = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 9), _json),
     "data": st.one_of(st.fixed_dictionaries({"image": st.one_of(st.sampled_from(["a.jpg", "0a1b2c3d-a.jpg"]),
                                                                  _json)}), _json),
     "annotations": st.one_of(st.lists(st.fixed_dictionaries(
         {"result": st.one_of(st.lists(_result_st, max_size=3), _json), "was_cancelled": st.booleans()}),
         max_size=3), _json)})


@FUZZ
@given(tasks=st.one_of(st.lists(_task_st, max_size=5), _json), with_classes=st.booleans())
def test_fuzz_reader_returns_labels_or_one_line_value_error(tasks, with_classes):
    try:
        got = parse_choices(tasks, CLASSES if with_classes else None)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    n = len(tasks)
    assert len(got.rows) + len(got.skipped) == n
    for row in got.rows:
        assert row.labels and all(t in got.tasks and c in got.classes[t] for t, c in row.labels.items())
    assert all("\n" not in str(s) for s in got.skipped)


def test_module_examples():
    import doctest

    from semcontrib import label_studio

    result = doctest.testmod(label_studio)
    assert result.attempted >= 5 and result.failed == 0
