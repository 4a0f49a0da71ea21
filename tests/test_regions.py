"""The region interface: RegionError's classification and the region cache key (source_key)."""

import hashlib
import json
import pickle

import numpy as np
import pytest

import semcontrib.imageio
from semcontrib.regions import (
    ImageInput,
    RegionError,
    RegionMap,
    cache_identity,
    file_identity,
    source_key,
    uses_evidence,
)
from semcontrib.segmentation import make_region_source


def test_region_error_is_a_one_line_value_error_with_a_class():
    err = RegionError("image 'a.jpg':\nsize mismatch", permanent=True)
    assert isinstance(err, ValueError) and err.permanent is True
    assert str(err) == err.reason == "image 'a.jpg': size mismatch"
    again = pickle.loads(pickle.dumps(RegionError("disk", permanent=False)))
    assert isinstance(again, RegionError) and again.permanent is False and again.reason == "disk"


def _coco(path, name="x"):
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
                                "categories": [{"id": 1, "name": name}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                                 "bbox": [0, 0, 2, 2]}]}))
    return path


def test_same_inputs_give_the_same_key(tmp_path):
    ann = _coco(tmp_path / "a.json")
    for spec in ("grid", "grid:4x4", "landscape", f"annotations:{ann}"):
        assert source_key(make_region_source(spec)) == source_key(make_region_source(spec))
        assert source_key(make_region_source(spec), "m1") == source_key(make_region_source(spec), "m1")


def test_an_edited_annotation_file_gives_another_key(tmp_path):
    ann = _coco(tmp_path / "a.json")
    before = source_key(make_region_source(f"annotations:{ann}"))
    data = json.loads(ann.read_text())
    data["annotations"][0]["bbox"] = [0, 0, 3, 3]  # same vocabulary, same path, other content
    ann.write_text(json.dumps(data))
    after = source_key(make_region_source(f"annotations:{ann}"))
    assert before != after
    ident = cache_identity(make_region_source(f"annotations:{ann}"))
    assert ident["file"]["sha256"] == hashlib.sha256(ann.read_bytes()).hexdigest()


def test_an_edited_png_label_map_gives_another_key(tmp_path):
    from PIL import Image

    (tmp_path / "classes.txt").write_text("sky\n")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    before = source_key(make_region_source(f"annotations:{tmp_path}"))
    Image.fromarray(np.eye(4, dtype=np.uint8)).save(tmp_path / "a.png")
    assert source_key(make_region_source(f"annotations:{tmp_path}")) != before


def test_model_key_counts_only_for_sources_that_use_evidence(tmp_path):
    landscape = make_region_source("landscape")
    assert uses_evidence(landscape)
    assert source_key(landscape, "model-a") != source_key(landscape, "model-b")
    for src in (make_region_source("grid"), make_region_source(f"annotations:{_coco(tmp_path / 'a.json')}")):
        assert not uses_evidence(src)
        assert source_key(src, "model-a") == source_key(src, "model-b") == source_key(src)


def test_landscape_with_a_segmentation_model_reads_no_evidence_but_hashes_its_mapping(tmp_path):
    torch = pytest.importorskip("torch")
    from semcontrib.paths import data_path

    mapping = tmp_path / "voc.json"
    mapping.write_bytes(data_path("mapping_voc.json").read_bytes())

    def build(model):
        return make_region_source("landscape", labeller="segmentation-model", seg_model_object=model,
                                  seg_mapping=str(mapping))

    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 21, 1)
    src = build(model)
    assert not uses_evidence(src)
    assert source_key(src, "model-a") == source_key(src, "model-b")
    key = source_key(src)
    assert source_key(build(model)) == key
    assert source_key(build(torch.nn.Conv2d(3, 21, 1))) != key  # other in-memory weights
    data = json.loads(mapping.read_text())
    data["mapping"]["background"] = "water"
    mapping.write_text(json.dumps(data))
    assert source_key(build(model)) != key  # an edited mapping file


class PlainSource:
    """A source written by someone else: no cache_identity, no uses_evidence."""

    name = "plain"
    vocabulary = ("a",)

    def __init__(self, level):
        self.level = level

    @property
    def params(self):
        return {"level": self.level}

    def segment(self, image: ImageInput) -> RegionMap:
        return RegionMap(np.zeros(image.rgb.shape[:2], np.int32), self.vocabulary)


def test_sources_without_the_optional_members_key_on_params_and_the_model():
    assert cache_identity(PlainSource(1)) == {"level": 1}
    assert uses_evidence(PlainSource(1))  # unknown: assume it may read the evidence
    assert source_key(PlainSource(1)) != source_key(PlainSource(2))
    assert source_key(PlainSource(1), "m") != source_key(PlainSource(1), "n")


def test_files_are_hashed_once_per_source_in_chunks(tmp_path, monkeypatch):
    ann = _coco(tmp_path / "a.json")
    calls = []
    real = semcontrib.imageio.sha256_file
    monkeypatch.setattr(semcontrib.imageio, "sha256_file", lambda p: calls.append(p) or real(p))
    src = make_region_source(f"annotations:{ann}")
    key = source_key(src)
    ann.write_text(ann.read_text().replace('"x"', '"y"'))
    assert source_key(src) == key and len(calls) == 1  # cached on the object, not re-read
    big = tmp_path / "big.bin"
    payload = np.random.default_rng(0).bytes(3 * 2**20 + 17)  # more than one 1 MiB chunk
    big.write_bytes(payload)
    assert file_identity(big) == {"name": "big.bin", "sha256": hashlib.sha256(payload).hexdigest()}
    assert file_identity(None) is None
    assert file_identity(tmp_path / "missing.pth")["sha256"].startswith("unreadable")


# --------------------------------------------------------------------------- docs/regions.md's custom source


def _docs_example() -> str:
    """The Python block under "## Your own region source" in docs/regions.md, as it stands."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "regions.md").read_text()
    section = text.split("## Your own region source", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_custom_source_of_the_docs_runs_through_analyze(tmp_path, monkeypatch):
    """The 20-line source of docs/regions.md, executed as written (in a temporary folder, with a tiny
    classifier in place of the default one): registered by name, analysed end to end, its vocabulary
    and params in the corpus, a contribution for both regions of every image."""
    from semcontrib.corpus import Corpus
    from semcontrib.model import MODELS
    from semcontrib.regions import RegionSource
    from semcontrib.segmentation import REGION_SOURCES
    from semcontrib.settings import DEFAULT_MODEL
    from tests.conftest import tiny_model

    code = _docs_example()
    assert 15 <= len([line for line in code.splitlines() if line.strip()]) <= 30  # "a 20-line source"
    monkeypatch.setitem(MODELS, DEFAULT_MODEL, lambda weights=None: tiny_model(size=32))  # no download
    monkeypatch.setitem(REGION_SOURCES, "halves", None)  # removed again after the test
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/regions.md", "exec"), namespace)
    assert isinstance(namespace["HalvesSource"](), RegionSource)
    report = namespace["report"]
    assert report.n_ok == 2
    corpus = Corpus.open(tmp_path / "corpus-halves")
    regions = corpus.manifest["regions"]
    assert regions["name"] == "halves" and regions["vocabulary"] == ["top", "bottom"]
    assert regions["params"] == {"split": 0.4}
    present = corpus.contributions[~corpus.contributions.absent].groupby("image_id").region.agg(set)
    assert len(present) == 2 and all(regions_of == {"top", "bottom"} for regions_of in present)
