"""The corpus format's one owner: work files validated on read, caps before allocation, manifests
checked, tables and manifest published as one generation."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semcontrib import corpus as cstore
from semcontrib.corpus import (
    CorpusError,
    HeadAttribution,
    PredictionWork,
    RegionWork,
    ValidityWork,
    WorkStore,
    read_npz,
    validate_manifest,
)

KEY = "0123456789abcdef"
HEADS = {"a": 2, "b": 3}


@pytest.fixture
def store(tmp_path: Path) -> WorkStore:
    return WorkStore(tmp_path, size=8)


def test_round_trips(store: WorkStore) -> None:
    pred = PredictionWork({"a": np.array([0.5, -1], np.float32), "b": np.zeros(3, np.float32)},
                          np.random.default_rng(0).random((2, 3, 3)).astype(np.float32))
    store.write_predictions(KEY, "img-1", pred)
    got = store.read_predictions(KEY, "img-1", HEADS)
    assert got is not None and np.array_equal(got.logits["a"], pred.logits["a"])
    values = np.random.default_rng(1).normal(size=(8, 8))
    attr = {"a": HeadAttribution(1, "ok", values, delta=0.25), "b": HeadAttribution(2, "nonfinite")}
    written = store.write_attribution("lrp", KEY, "img-1", attr)
    back = store.read_attribution("lrp", KEY, "img-1", HEADS, n_regions=4)
    for h in HEADS:  # the writer returns exactly what a reader gets back
        assert (written[h].target, written[h].status, written[h].delta) == (back[h].target, back[h].status,
                                                                            back[h].delta)
        assert (written[h].values is None and back[h].values is None) or np.array_equal(written[h].values,
                                                                                       back[h].values)
    assert back is not None and back["a"].target == 1 and back["a"].delta == 0.25 and back["b"].status == "nonfinite"
    f16, scale = cstore.encode_map(values)
    assert np.array_equal(back["a"].values, cstore.decode_map(f16, float(scale)))  # the canonical decoded map
    store.write_attribution("ext", KEY, "img-1", {"a": HeadAttribution(0, "ok", values),
                                                  "b": HeadAttribution(0, "ok", values)}, exact=True)
    exact = store.read_attribution("ext", KEY, "img-1", HEADS, n_regions=4)
    assert exact is not None and np.array_equal(exact["a"].values, values)  # float64, as given
    labels = np.zeros((8, 8), np.int16)
    labels[:, 4:] = 3
    store.write_regions("grid", KEY, "img-1", RegionWork(labels))
    assert np.array_equal(store.read_regions("grid", KEY, "img-1", 4).labels, labels)
    store.write_regions("grid", KEY, "img-2", RegionWork(None, "size mismatch", permanent=True))
    assert store.read_regions("grid", KEY, "img-2", 4).error == "size mismatch"
    store.write_regions("grid", KEY, "img-3", RegionWork(None, "I/O error", permanent=False))
    assert store.read_regions("grid", KEY, "img-3", 4) is None  # transient: retried
    store.write_validity(KEY, "img-1", ValidityWork({("lrp", "a"): (0.5, 0.25, 0.75, "")}))
    assert store.read_validity(KEY, "img-1", [("lrp", "a")]).records[("lrp", "a")] == (0.5, 0.25, 0.75, "")
    assert store.discarded == []


@pytest.mark.parametrize("arrays", [
    {"logits/a": np.zeros(5, np.float32), "logits/b": np.zeros(3, np.float32)},      # wrong shape
    {"logits/a": np.array([np.nan, 0], np.float32), "logits/b": np.zeros(3, np.float32)},  # not finite
    {"logits/a": np.zeros(2, np.int64), "logits/b": np.zeros(3, np.float32)},          # not float
    {"logits/a": np.zeros(2, np.float32)},                                              # a head missing
    {"logits/a": np.zeros(2, np.float32), "logits/b": np.zeros(3, np.float32), "evidence": np.zeros((0, 2, 2))},
])
def test_foreign_prediction_files_are_discarded(store: WorkStore, arrays) -> None:
    path = store.paths.pred(KEY, "img-1")
    cstore.write_npz(path, arrays)
    assert store.read_predictions(KEY, "img-1", HEADS) is None
    assert store.discarded == [str(path)] and not path.exists()


@pytest.mark.parametrize("arrays", [
    {"target/a": np.array([1, 2]), "status/a": np.array("ok")},                       # target not a scalar
    {"target/a": np.int64(5), "status/a": np.array("nonfinite")},                       # target out of range
    {"target/a": np.int64(0), "status/a": np.array("ok"), "exact/a": np.full((8, 8), np.nan)},  # NaN but ok
    {"target/a": np.int64(0), "status/a": np.array("ok"), "exact/a": np.zeros((4, 4))},  # wrong size
    {"target/a": np.int64(0), "status/a": np.int64(3)},                                 # status not text
])
def test_foreign_attribution_files_are_discarded(store: WorkStore, arrays) -> None:
    path = store.paths.attr("lrp", KEY, "img-1")
    cstore.write_npz(path, arrays)
    assert store.read_attribution("lrp", KEY, "img-1", {"a": 2}, n_regions=4) is None
    assert not path.exists()


def test_foreign_region_and_validity_files_are_discarded(store: WorkStore) -> None:
    for arrays in ({"labels": np.full((8, 8), 7, np.int16)}, {"error": np.array("x"), "permanent": np.ones(2)},
                   {"nothing": np.zeros(1)}):
        cstore.write_npz(store.paths.regions("grid", KEY, "img-1"), arrays)
        assert store.read_regions("grid", KEY, "img-1", 4) is None
    cstore.write_npz(store.paths.validity(KEY, "img-1"), {"values/lrp/a": np.zeros(3, np.int64),
                                                           "note/lrp/a": np.array("")})
    assert store.read_validity(KEY, "img-1", [("lrp", "a")]) is None
    assert len(store.discarded) == 4


def test_a_reader_never_deletes(tmp_path: Path) -> None:
    ro = WorkStore(tmp_path, size=8, readonly=True)
    path = ro.paths.pred(KEY, "img-1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    assert ro.read_predictions(KEY, "img-1", HEADS) is None and path.exists()


def _crafted_npz(path: Path, shape: tuple[int, ...], descr: str = "<f8") -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.npy", buf.getvalue() + b"\0" * 64)


def test_array_headers_are_checked_before_anything_is_allocated(tmp_path: Path) -> None:
    _crafted_npz(tmp_path / "huge.npz", (300_000, 300_000))  # 720 GB claimed by a 200-byte file
    with pytest.raises(CorpusError, match="claims 720000000000 bytes"):
        read_npz(tmp_path / "huge.npz")
    _crafted_npz(tmp_path / "lie.npz", (1000,))  # 8000 bytes claimed, 64 stored
    with pytest.raises(CorpusError, match="claims 8000 bytes"):
        read_npz(tmp_path / "lie.npz")
    _crafted_npz(tmp_path / "obj.npz", (2,), descr="|O")
    with pytest.raises(CorpusError, match="Python objects"):
        read_npz(tmp_path / "obj.npz")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(CorpusError, match="unreadable work file"):
        read_npz(tmp_path / "trunc.npz")


def _manifest() -> dict:
    return cstore.make_manifest(
        model={"name": "m", "key": KEY}, heads={"a": ["x", "y"]},
        methods={"lrp": {"params": {}, "key": KEY, "notes": "", "level": "pixel"}},
        regions={"name": "grid", "params": {}, "vocabulary": ["r0", "r1"], "key": KEY},
        settings={}, extra={})


@pytest.mark.parametrize("change", [
    {"format": "other/1"}, {"heads": {"a": "x"}}, {"methods": {"../x": {"key": KEY}}},
    {"methods": {"lrp": {"key": "../../etc"}}}, {"regions": {"name": "grid", "key": KEY, "vocabulary": [1]}},
    {"regions": {"name": "a/b", "key": KEY, "vocabulary": []}}, {"head_order": "a"},
])
def test_manifest_fields_are_validated(change) -> None:
    m = {**_manifest(), **change}
    with pytest.raises(CorpusError):
        validate_manifest(m, Path("manifest.json"))
    assert validate_manifest(_manifest(), Path("manifest.json"))["format"] == cstore.CORPUS_FORMAT


def test_publish_is_one_generation(tmp_path: Path) -> None:
    tables = {t: pd.DataFrame({"image_id": ["i"], "x": [1.0]}) for t in cstore.TABLES}
    gen = cstore.publish(tmp_path, tables, _manifest())
    manifest = json.loads((tmp_path / cstore.MANIFEST).read_text())
    assert manifest["generation"] == gen
    for t in cstore.TABLES:
        df, g = cstore.read_table(tmp_path / f"{t}.parquet")
        assert g == gen and (tmp_path / cstore.GENERATIONS / gen / f"{t}.parquet").samefile(tmp_path / f"{t}.parquet")
    gen2 = cstore.publish(tmp_path, tables, _manifest())
    assert [p.name for p in (tmp_path / cstore.GENERATIONS).iterdir()] == [gen2] and gen2 != gen


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "", "x" * 200, 5])
def test_image_ids_that_are_not_file_names_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        cstore.check_image_id(bad)
