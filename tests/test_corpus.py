"""The corpus format's one owner: chunk work files validated on read (foreign, truncated and oversized
files discarded, never by a reader), caps before allocation, manifests checked, the images table and the
table parts published as one generation, display photographs read back exactly and only from inside the
store."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semcontrib import corpus as cstore
from semcontrib.contributions import aggregate
from semcontrib.corpus import (
    ChunkAttribution,
    Corpus,
    CorpusError,
    HeadAttribution,
    ImageRecord,
    PredictionWork,
    RegionWork,
    ValidityWork,
    WorkStore,
    read_npz,
    validate_manifest,
)
from semcontrib.store import files as store_files
from semcontrib.store import generations as store_generations

KEY = "0123456789abcdef"
HEADS = {"a": 2, "b": 3}
K = 4  # regions
S = 8  # model input size
IDS = ["img-0", "img-1", "img-2"]
# one validity record: faithfulness, MoRF, insertion, LeRF and random-order AUCs, note (corpus.VALIDITY_VALUES)
VREC = (0.5, 0.25, 0.75, 0.75, 0.5, "")


@pytest.fixture
def store(tmp_path: Path) -> WorkStore:
    return WorkStore(tmp_path, size=S)


def _labels(k: int) -> np.ndarray:
    labels = np.full((S, S), k % K, np.int16)
    labels[:, S // 2:] = (k + 1) % K
    labels[0] = -1  # unassigned
    return labels


def _maps(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: rng.normal(size=(S, S)) * 10 ** k for k, i in enumerate(IDS)}


def _attribution(maps: dict[str, np.ndarray]) -> ChunkAttribution:
    """Head a ok for every image (a delta on the first), head b ok for the first two, nonfinite for the last."""
    works: dict[str, dict[str, HeadAttribution]] = {}
    for k, i in enumerate(IDS):
        stats = aggregate(maps[i], _labels(k), K)
        works[i] = {"a": HeadAttribution(1, "ok", maps[i], delta=0.25 if k == 0 else None, stats=stats),
                    "b": HeadAttribution(2, "ok", -maps[i], stats=aggregate(-maps[i], _labels(k), K)) if k < 2
                    else HeadAttribution(0, "nonfinite")}
    return ChunkAttribution(works, regions_digest="d" * 16)


def _predictions() -> dict[str, PredictionWork]:
    rng = np.random.default_rng(0)
    return {i: PredictionWork({"a": rng.normal(size=2).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)},
                              rng.random((2, 3, 3)).astype(np.float32)) for i in IDS}


# --------------------------------------------------------------------------- round trips


def test_image_records_and_display_bytes_round_trip(store: WorkStore) -> None:
    records = {"img-0": ImageRecord(640, 480, "RGB"), "img-1": ImageRecord(0, 0, "", "skipped", "not an image"),
               "img-2": ImageRecord(3, 5, "L")}
    rng = np.random.default_rng(3)
    displays = {"img-0": b"\xff\xd8" + rng.bytes(5000), "img-2": b"\xff\xd8\x00\x00" + rng.bytes(17)}
    store.write_images(7, records, displays)
    assert store.paths.images(7).name == "000007.npz"
    assert store.read_images(7, IDS) == records
    assert store.read_images(7, ["img-0", "img-2", "img-1"]) is None  # another plan's chunk: recomputed
    assert not store.paths.images(7).exists()
    store.write_images(7, records, displays)
    for i, data in displays.items():
        assert store.read_display(7, i) == data  # exactly the bytes written, read without the others
    assert store.read_display(7, "img-1") is None and store.read_display(7, "img-9") is None
    assert store.read_display(8, "img-0") is None  # no such chunk


def test_predictions_regions_and_validity_round_trip(store: WorkStore) -> None:
    preds = _predictions()
    store.write_predictions(KEY, 0, preds)
    back = store.read_predictions(KEY, 0, HEADS)
    assert back is not None and list(back) == IDS
    for i in IDS:
        for h in HEADS:
            np.testing.assert_array_equal(back[i].logits[h], preds[i].logits[h])
        np.testing.assert_array_equal(back[i].evidence, preds[i].evidence)
    store.write_predictions(KEY, 1, {i: PredictionWork(p.logits) for i, p in preds.items()})
    back1 = store.read_predictions(KEY, 1, HEADS)
    assert back1 is not None and all(w.evidence is None for w in back1.values())

    works = {"img-0": RegionWork(_labels(0)), "img-1": RegionWork(None, "size mismatch", permanent=True),
             "img-2": RegionWork(_labels(2))}
    written = store.write_regions("grid", KEY, 0, works)
    assert written.digest == cstore.regions_digest(KEY, works)
    regions = store.read_regions("grid", KEY, 0, K)
    assert regions is not None and regions.digest == written.digest
    np.testing.assert_array_equal(regions.works["img-2"].labels, _labels(2))
    assert regions.works["img-1"] == RegionWork(None, "size mismatch", True)
    light = store.read_regions("grid", KEY, 0, K, labels=False)  # failures and digest only
    assert light is not None and light.digest == written.digest and light.works["img-1"].error == "size mismatch"
    assert light.works["img-0"].labels is not None and light.works["img-0"].labels.size == 0
    other = dict(works, **{"img-2": RegionWork(_labels(3))})
    assert cstore.regions_digest(KEY, other) != written.digest  # the digest sees the maps

    validity = {i: ValidityWork({("lrp", "a"): VREC, ("lrp", "b"): (np.nan, 0.1, 0.9, 0.9, 0.4, "few regions")})
                for i in IDS}
    store.write_validity(KEY, 0, validity, written.digest)
    got = store.read_validity(KEY, 0, [("lrp", "a"), ("lrp", "b")])
    assert got is not None and got[1] == written.digest
    assert got[0]["img-1"].records[("lrp", "a")] == VREC
    assert got[0]["img-1"].records[("lrp", "b")][-1] == "few regions"
    assert store.read_validity(KEY, 0, [("ig", "a")]) is None  # a pair it does not hold: recomputed
    assert store.discarded == [str(store.paths.validity(KEY, 0))]


def test_attributions_round_trip_statistics_exactly_and_maps_within_the_display_tolerance(store: WorkStore) -> None:
    maps = _maps()
    work = _attribution(maps)
    store.write_attribution("lrp", KEY, 0, work, K)
    light = store.read_attribution("lrp", KEY, 0, HEADS, K)  # the tables' read: no maps
    full = store.read_attribution("lrp", KEY, 0, HEADS, K, maps=True)
    assert light is not None and full is not None and light.regions_digest == "d" * 16
    for back in (light, full):
        for i in IDS:
            for h in HEADS:
                want, got = work.works[i][h], back.works[i][h]
                assert (got.target, got.status, got.delta) == (want.target, want.status, want.delta)
                if want.status != "ok":
                    assert got.stats is None and got.values is None
                    continue
                assert want.stats is not None and got.stats is not None  # the full-precision statistics
                for f in ("n_pixels", "sum", "pos_sum", "neg_sum", "unassigned"):
                    np.testing.assert_array_equal(getattr(got.stats, f), getattr(want.stats, f))
                assert got.stats.total == want.stats.total
    assert all(a.values is None for w in light.works.values() for a in w.values())
    for i in IDS:
        a = full.works[i]["a"]
        assert a.values is not None and a.values.dtype == np.float64
        scale = float(np.float32(np.abs(maps[i]).max()))
        assert a.scale == scale
        err = np.abs(a.values - maps[i]).max()
        assert 0 < err <= scale / 254 * (1 + 1e-6)  # int8: lossy, within half a level
        q, sc = cstore.encode_map(maps[i])
        np.testing.assert_array_equal(a.values, cstore.decode_map(q, float(sc)))  # the one decoding
    assert full.works["img-2"]["b"].status == "nonfinite" and full.works["img-2"]["b"].values is None
    assert store.discarded == []


def test_exact_maps_region_scores_and_source_hashes_round_trip(store: WorkStore) -> None:
    maps = _maps(2)
    scores = np.array([0.5, -0.25, 0.0, 2.0])
    works = {i: {h: HeadAttribution(0, "ok", maps[i], scores=scores, stats=aggregate(maps[i], _labels(k), K))
                 for h in HEADS} for k, i in enumerate(IDS)}
    sources = {i: f"{k:064x}" for k, i in enumerate(IDS)}
    store.write_attribution("ext", KEY, 0, ChunkAttribution(works, "e" * 16, sources), K, exact=True)
    back = store.read_attribution("ext", KEY, 0, HEADS, K, maps=True)
    assert back is not None and back.sources == sources
    for i in IDS:
        a = back.works[i]["b"]
        assert a.values is not None and np.array_equal(a.values, maps[i])  # float64, exactly as given
        assert np.isnan(a.scale) and a.scores is not None and np.array_equal(a.scores, scores)


def test_a_map_that_is_not_finite_is_stored_as_nonfinite(store: WorkStore) -> None:
    maps = _maps()
    bad = maps["img-1"].copy()
    bad[2, 3] = np.inf
    work = _attribution(maps)
    works = {i: dict(w) for i, w in work.works.items()}
    works["img-1"]["a"] = HeadAttribution(1, "ok", bad, stats=works["img-1"]["a"].stats)
    store.write_attribution("lrp", KEY, 0, ChunkAttribution(works, work.regions_digest), K)
    back = store.read_attribution("lrp", KEY, 0, HEADS, K, maps=True)
    assert back is not None and back.works["img-1"]["a"].status == "nonfinite"
    assert back.works["img-0"]["a"].status == "ok"


def test_map_encoding_edge_cases() -> None:
    q, scale = cstore.encode_map(np.zeros((3, 3)))
    assert scale == 0 and not q.any() and not cstore.decode_map(q, float(scale)).any()
    v = np.array([[1.0, -1.0], [0.5, -0.004]])
    q, scale = cstore.encode_map(v)
    assert q.dtype == np.int8 and q.tolist() == [[127, -127], [64, -1]] and scale == np.float32(1.0)


# --------------------------------------------------------------------------- bad files


def _tamper(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite a valid work file with one change made to its arrays (a foreign or damaged file)."""
    arrays = read_npz(path)
    change(arrays)
    cstore.write_npz(path, arrays)


def _set(key: str, value: object) -> Callable[[dict[str, np.ndarray]], None]:
    def change(z: dict[str, np.ndarray]) -> None:
        if value is None:
            del z[key]
        else:
            z[key] = np.asarray(value)
    return change


@pytest.mark.parametrize("change", [
    _set("logits/a", np.zeros((3, 5), np.float32)),                           # wrong shape
    _set("logits/a", np.array([[np.nan, 0]] * 3, np.float32)),                 # not finite
    _set("logits/a", np.zeros((3, 2), np.int64)),                              # not float
    _set("logits/b", None),                                                    # a head missing
    _set("evidence", np.zeros((3, 0, 2, 2), np.float32)),                      # no evidence maps
    _set("evidence", np.zeros((2, 2, 3, 3), np.float32)),                      # not one per image
    _set("ids", np.arange(3)),                                                 # ids not text
    _set("ids", np.array(["img-0", "../x", "img-2"])),                         # an id that is no file name
    _set("ids", None),
], ids=lambda c: "")
def test_foreign_prediction_files_are_discarded(store: WorkStore, change) -> None:
    store.write_predictions(KEY, 0, _predictions())
    path = store.paths.pred(KEY, 0)
    assert store.read_predictions(KEY, 0, HEADS) is not None
    _tamper(path, change)
    assert store.read_predictions(KEY, 0, HEADS) is None
    assert store.discarded == [str(path)] and not path.exists()


@pytest.mark.parametrize("change", [
    _set("target/a", np.array([1, 2, 5])),                                     # target out of range
    _set("target/a", np.array([1.0, 1.0, 1.0])),                               # target not an integer
    _set("status/a", np.array([3, 3, 3])),                                     # status not text
    _set("status/b", np.array(["ok", "ok"])),                                  # one status short
    _set("map/a", np.zeros((3, 4, 4), np.int8)),                               # map of another size
    _set("map/a", np.zeros((3, S, S), np.float32)),                            # a float display map
    _set("sum/a", np.zeros((3, K + 1))),                                       # statistics of another vocabulary
    _set("n_pixels", np.zeros((3, K))),                                        # pixel counts not integers
    _set("regions_digest", None),
    _set("regions_digest", np.array(["x", "y"])),
], ids=lambda c: "")
def test_foreign_attribution_files_are_discarded(store: WorkStore, change) -> None:
    store.write_attribution("lrp", KEY, 0, _attribution(_maps()), K)
    path = store.paths.attr("lrp", KEY, 0)
    assert store.read_attribution("lrp", KEY, 0, HEADS, K, maps=True) is not None
    _tamper(path, change)
    assert store.read_attribution("lrp", KEY, 0, HEADS, K, maps=True) is None
    assert store.discarded == [str(path)] and not path.exists()


def test_an_exact_map_that_is_not_finite_is_discarded(store: WorkStore) -> None:
    maps = _maps()
    works = {i: {h: HeadAttribution(0, "ok", maps[i], stats=aggregate(maps[i], _labels(0), K)) for h in HEADS}
             for i in IDS}
    store.write_attribution("ext", KEY, 0, ChunkAttribution(works, "e" * 16), K, exact=True)
    path = store.paths.attr("ext", KEY, 0)

    def nan(z: dict[str, np.ndarray]) -> None:
        z["exact/a"][1, 2, 2] = np.nan  # the status says ok

    _tamper(path, nan)
    assert store.read_attribution("ext", KEY, 0, HEADS, K, maps=True) is None and not path.exists()


@pytest.mark.parametrize("change", [
    _set("labels", np.full((2, S, S), 7, np.int16)),                           # labels outside the vocabulary
    _set("labels", np.zeros((3, S, S), np.int16)),                             # one map per failed image too
    _set("labels", np.zeros((2, S, S), np.float32)),                           # not integers
    _set("failed", np.ones(3)),                                                # not booleans
    _set("digest", None),
], ids=lambda c: "")
def test_foreign_region_files_are_discarded(store: WorkStore, change) -> None:
    store.write_regions("grid", KEY, 0, {"img-0": RegionWork(_labels(0)), "img-1": RegionWork(None, "bad"),
                                         "img-2": RegionWork(_labels(2))})
    path = store.paths.regions("grid", KEY, 0)
    assert store.read_regions("grid", KEY, 0, K) is not None
    _tamper(path, change)
    assert store.read_regions("grid", KEY, 0, K) is None
    assert store.discarded == [str(path)] and not path.exists()


def test_foreign_validity_files_are_discarded(store: WorkStore) -> None:
    store.write_validity(KEY, 0, {i: ValidityWork({("lrp", "a"): VREC}) for i in IDS}, "d" * 16)
    path = store.paths.validity(KEY, 0)
    _tamper(path, _set("values/lrp/a", np.zeros((3, 3), np.int64)))
    assert store.read_validity(KEY, 0, [("lrp", "a")]) is None and not path.exists()


def _write_all(store: WorkStore) -> list[tuple[Path, Callable[[], object]]]:
    """One valid file of every stage, each with the read that validates it."""
    store.write_images(0, {i: ImageRecord(4, 4, "RGB") for i in IDS}, {i: b"\xff\xd8jpeg" for i in IDS})
    store.write_predictions(KEY, 0, _predictions())
    store.write_regions("grid", KEY, 0, {i: RegionWork(_labels(k)) for k, i in enumerate(IDS)})
    store.write_attribution("lrp", KEY, 0, _attribution(_maps()), K)
    store.write_validity(KEY, 0, {i: ValidityWork({("lrp", "a"): VREC}) for i in IDS}, "d" * 16)
    p = store.paths
    return [(p.images(0), lambda: store.read_images(0, IDS)),
            (p.pred(KEY, 0), lambda: store.read_predictions(KEY, 0, HEADS)),
            (p.regions("grid", KEY, 0), lambda: store.read_regions("grid", KEY, 0, K)),
            (p.attr("lrp", KEY, 0), lambda: store.read_attribution("lrp", KEY, 0, HEADS, K, maps=True)),
            (p.validity(KEY, 0), lambda: store.read_validity(KEY, 0, [("lrp", "a")]))]


def _damaged(data: bytes, damage: str) -> bytes:
    if damage == "corrupted":  # the zip directory intact, a compressed member's bytes changed: a CRC or zlib error
        mid = len(data) // 2
        return data[:mid] + bytes(b ^ 0x5A for b in data[mid:mid + 8]) + data[mid + 8:]
    return {"truncated": data[: len(data) // 2], "garbage": b"PK\x03\x04" + bytes(200), "empty": b""}[damage]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "corrupted"])
def test_truncated_and_garbage_files_are_discarded_and_recomputed(store: WorkStore, damage: str) -> None:
    files = _write_all(store)
    if damage == "corrupted":  # the images file is stored uncompressed, its middle is display bytes
        files = files[1:]
    assert all(read() is not None for _, read in files)
    for path, read in files:
        path.write_bytes(_damaged(path.read_bytes(), damage))
        assert read() is None and not path.exists(), path
    assert store.discarded == [str(p) for p, _ in files]


def test_a_reader_never_deletes(tmp_path: Path) -> None:
    files = _write_all(WorkStore(tmp_path, size=S))
    ro = WorkStore(tmp_path, size=S, readonly=True)
    reads = [(path, read) for (path, _), read in zip(files, [
        lambda: ro.read_images(0, IDS), lambda: ro.read_predictions(KEY, 0, HEADS),
        lambda: ro.read_regions("grid", KEY, 0, K), lambda: ro.read_attribution("lrp", KEY, 0, HEADS, K, maps=True),
        lambda: ro.read_validity(KEY, 0, [("lrp", "a")])])]
    assert all(read() is not None for _, read in reads)
    assert ro.read_images(0, IDS[:2]) is None and files[0][0].exists()  # another plan's chunk: kept
    for path, read in reads:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        assert read() is None and path.read_bytes() == data[: len(data) // 2], path  # left as it was
    assert ro.read_display(0, "img-1") is None and files[0][0].exists()
    assert ro.discarded == [str(files[0][0])] + [str(p) for p, _ in reads]


def _crafted_npz(path: Path, shape: tuple[int, ...], descr: str = "<f8", name: str = "a") -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.npy", buf.getvalue() + b"\0" * 64)


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


def test_a_chunk_file_claiming_huge_arrays_is_discarded_without_allocating(store: WorkStore) -> None:
    """Tiny files whose arrays claim 1 GiB (a map) and 8 GiB (the display bytes): discarded (the attribution
    file) or refused (the display), and the reads allocate next to nothing."""
    path = store.paths.attr("lrp", KEY, 0)
    _crafted_npz(path, (128, 8, 2**20), descr="|i1", name="map/a")
    display = store.paths.images(0)
    _crafted_npz(display, (2**33,), descr="|u1", name="display")
    tracemalloc.start()
    try:
        assert store.read_attribution("lrp", KEY, 0, HEADS, K, maps=True) is None
        assert store.read_display(0, "img-0") is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20 and not path.exists()


# --------------------------------------------------------------------------- manifest


def _manifest(heads: dict[str, list[str]] | None = None) -> dict:
    return cstore.make_manifest(
        model={"name": "m", "key": KEY, "input_size": S}, heads=heads or {"a": ["x", "y"]},
        methods={"lrp": {"params": {}, "key": KEY, "notes": "", "level": "pixel"}},
        regions={"name": "grid", "params": {}, "vocabulary": ["r0", "r1"], "key": KEY},
        settings={}, extra={})


def _part_record(file: str) -> dict:
    return {"table": "contributions", "head": "a", "method": "lrp", "file": file, "key": KEY, "chunks": [[0, 0]],
            "rows": 1}


_PART = "contributions/head=a/method=lrp/part-" + "0" * 32 + ".parquet"


@pytest.mark.parametrize("change, message", [
    ({"format": "other/1"}, "unknown corpus format 'other/1'"),
    ({"heads": {"a": "x"}}, "heads must map head names to lists of class names"),
    ({"methods": {"../x": {"key": KEY}}}, r"invalid name '\.\./x'"),
    ({"methods": {"lrp": {"key": "../../etc"}}}, r"invalid store key '\.\./\.\./etc'"),
    ({"regions": {"name": "grid", "key": KEY, "vocabulary": [1]}}, "regions.vocabulary must be a list of names"),
    ({"regions": {"name": "a/b", "key": KEY, "vocabulary": []}}, "invalid name 'a/b'"),
    ({"head_order": "a"}, "head_order must be a list of names"),
    ({"parts": "all"}, "parts must be a list"),
    ({"parts": [_part_record("../../etc/passwd")]}, r"malformed part record for '\.\./\.\./etc/passwd'"),
    ({"parts": [_part_record("contributions/head=a/method=lrp/../../../x/part-" + "0" * 32 + ".parquet")]},
     r"malformed part record for 'contributions/head=a/method=lrp/\.\./"),
    ({"parts": [_part_record("images.parquet")]}, "malformed part record for 'images.parquet'"),
    ({"parts": [{**_part_record(_PART), "table": "images"}]}, "malformed part record for 'contributions/head=a"),
    ({"parts": [{**_part_record(_PART), "chunks": [[3, 1]]}]}, "bad chunk ranges"),
    ({"parts": [{**_part_record(_PART), "key": "x"}]}, "invalid store key 'x'"),
], ids=lambda c: "")
def test_manifest_fields_are_validated(change, message) -> None:
    m = {**_manifest(), **change}
    with pytest.raises(CorpusError, match=message):
        validate_manifest(m, Path("manifest.json"))
    good = {**_manifest(), "parts": [_part_record("contributions/head=a/method=lrp/part-" + "0" * 32 + ".parquet")]}
    assert validate_manifest(good, Path("manifest.json"))["format"] == cstore.CORPUS_FORMAT


# --------------------------------------------------------------------------- tables: parts and generations


def _images(ids: list[str], chunks: list[int]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"image_id": ids, "path": [f"/in/{i}.jpg" for i in ids], "sha256": "0" * 64,
                         "width": np.full(n, 4), "height": np.full(n, 4), "status": ["ok" if c >= 0 else "skipped"
                                                                                  for c in chunks],
                         "reason": "", "original_mode": "RGB", "chunk": np.asarray(chunks, np.int64)})


def _rows(table: str, ids: list[str], value: float) -> pd.DataFrame:
    if table == "attributions":
        return pd.DataFrame({"image_id": ids, "head": "a", "method": "lrp", "target": "x", "target_index": 0,
                             "total": value})
    return pd.DataFrame({"image_id": np.repeat(ids, 2), "head": "a", "method": "lrp", "region": ["r0", "r1"] * len(ids),
                         "region_index": [0, 1] * len(ids), "sum": value})


def test_publish_is_one_generation_of_images_and_parts(tmp_path: Path) -> None:
    parts = [cstore.write_part(tmp_path, t, "a", "lrp", _rows(t, ["i0", "i1"], 1.0), key=KEY, chunks=[0])
             for t in cstore.PARTITIONED]
    for p in parts:  # partition columns come from the folder names, not the file
        assert p.file.startswith(f"{p.table}/head=a/method=lrp/part-")
        assert p.rows == (2 if p.table == "attributions" else 4)
        assert not {"head", "method"} & set(pd.read_parquet(tmp_path / p.file).columns)
    gen = cstore.publish(tmp_path, _images(["i0", "i1"], [0, 0]), parts, _manifest())
    manifest = json.loads((tmp_path / cstore.MANIFEST).read_text())
    assert manifest["generation"] == gen and manifest["parts"] == [p.to_record() for p in parts]
    df, g = cstore.read_table(tmp_path / "images.parquet")
    assert g == gen and (tmp_path / cstore.GENERATIONS / gen / "images.parquet").samefile(tmp_path / "images.parquet")
    c = Corpus.open(tmp_path)
    assert c.parts == parts and list(c.images["chunk"]) == [0, 0] and c.chunk_of("i1") == 0
    assert list(c.attributions.columns[:3]) == ["image_id", "head", "method"]
    assert (c.contributions["head"] == "a").all() and (c.contributions["method"] == "lrp").all()
    assert len(c.contributions) == 4 and c.attributions["total"].tolist() == [1.0, 1.0]

    # a killed run left a part the manifest does not list: readers never see it ...
    orphan = cstore.write_part(tmp_path, "contributions", "a", "lrp", _rows("contributions", ["i0"], 9.0),
                               key=KEY, chunks=[0])
    assert len(Corpus.open(tmp_path).contributions) == 4
    # ... and the next publish removes it, with the old generation and partitions no longer listed
    more = [cstore.write_part(tmp_path, t, "a", "lrp", _rows(t, ["i2"], 2.0),
                              key=KEY, chunks=[1]) for t in cstore.PARTITIONED]
    gone = cstore.write_part(tmp_path, "attributions", "b", "lrp", _rows("attributions", ["i0"], 3.0),
                             key=KEY, chunks=[0])
    gen2 = cstore.publish(tmp_path, _images(["i0", "i1", "i2", "bad"], [0, 0, 1, -1]), parts + more, _manifest())
    assert gen2 != gen and [p.name for p in (tmp_path / cstore.GENERATIONS).iterdir()] == [gen2]
    assert not (tmp_path / orphan.file).exists() and not (tmp_path / gone.file).exists()
    assert not (tmp_path / "attributions" / "head=b").exists()  # empty partition folders go too
    assert all((tmp_path / p.file).exists() for p in parts + more)
    c2 = Corpus.open(tmp_path)
    assert sorted(c2.attributions["image_id"]) == ["i0", "i1", "i2"] and len(c2.contributions) == 6
    assert c2.chunk_of("i2") == 1 and c2.chunk_of("bad") is None and c2.chunk_of("nope") is None


def test_hive_names_are_escaped_and_decoded(tmp_path: Path) -> None:
    head = "land use/cover 50%"
    part = cstore.write_part(tmp_path, "attributions", head, "lrp", _rows("attributions", ["i0"], 1.0),
                             key=KEY, chunks=[0])
    assert part.file.startswith("attributions/head=land%20use%2Fcover%2050%25/method=lrp/")
    cstore.publish(tmp_path, _images(["i0"], [0]), [part], _manifest({head: ["x", "y"]}))
    assert Corpus.open(tmp_path).attributions["head"].tolist() == [head]
    import pyarrow.dataset as ds

    table = ds.dataset(tmp_path / "attributions", format="parquet", partitioning="hive").to_table()
    assert table.column("head").to_pylist() == [head]  # pyarrow decodes the folder name to the head


def test_a_part_that_does_not_match_its_manifest_record_is_refused(tmp_path: Path) -> None:
    part = cstore.write_part(tmp_path, "attributions", "a", "lrp", _rows("attributions", ["i0", "i1"], 1.0),
                             key=KEY, chunks=[0])
    cstore.publish(tmp_path, _images(["i0", "i1"], [0, 0]), [part], _manifest())
    cstore.write_table(tmp_path / part.file, _rows("attributions", ["i0"], 1.0).drop(columns=["head", "method"]))
    with pytest.raises(CorpusError, match="1 rows, the manifest says 2"):
        Corpus.open(tmp_path)
    (tmp_path / part.file).write_bytes(b"PAR1 not really")
    with pytest.raises(CorpusError, match="unreadable table"):
        Corpus.open(tmp_path)


def test_chunk_ranges_are_compact_in_the_manifest() -> None:
    part = cstore.Part("contributions", "a", "lrp", "contributions/head=a/method=lrp/part-" + "0" * 32 + ".parquet",
                       KEY, (0, 1, 2, 3, 7, 9, 10), 5)
    rec = part.to_record()
    assert rec["chunks"] == [[0, 3], [7, 7], [9, 10]]
    assert cstore.Part.from_record(rec, Path("m")) == part


# --------------------------------------------------------------------------- display photographs, through Corpus


def _corpus_with_photos(root: Path) -> tuple[Corpus, dict[str, bytes]]:
    rng = np.random.default_rng(5)
    photos = {"i0": b"\xff\xd8" + rng.bytes(3000), "i2": b"\xff\xd8" + rng.bytes(10)}
    store = WorkStore(root, size=S)
    store.write_images(0, {"i0": ImageRecord(4, 4, "RGB"), "i1": ImageRecord(4, 4, "RGB")}, {"i0": photos["i0"]})
    store.write_images(1, {"i2": ImageRecord(4, 4, "RGB")}, {"i2": photos["i2"]})
    cstore.publish(root, _images(["i0", "i1", "i2", "bad"], [0, 0, 1, -1]), [], _manifest())
    return Corpus.open(root), photos


def test_display_photographs_are_read_back_exactly(tmp_path: Path) -> None:
    c, photos = _corpus_with_photos(tmp_path / "c")
    assert c.display_jpeg("i0") == photos["i0"] and c.display_jpeg("i2") == photos["i2"]
    assert c.display_jpeg("i1") is None  # planned, but no photograph stored
    for unknown in ("bad", "nope", "../i0", "000000", 5):
        assert c.display_jpeg(unknown) is None  # type: ignore[arg-type]


def test_a_symlinked_chunk_file_is_refused(tmp_path: Path) -> None:
    c, photos = _corpus_with_photos(tmp_path / "c")
    chunk_file = c.paths.images(0)
    outside = tmp_path / "elsewhere.npz"
    outside.write_bytes(chunk_file.read_bytes())
    chunk_file.unlink()
    chunk_file.symlink_to(outside)
    assert c.display_jpeg("i0") is None and outside.exists()
    assert c.display_jpeg("i2") == photos["i2"]  # the other chunk is a regular file
    chunk_file.unlink()  # a symlinked folder: the file resolves outside the store
    folder = chunk_file.parent
    folder.rename(tmp_path / "images")
    (tmp_path / "images" / chunk_file.name).write_bytes(outside.read_bytes())
    folder.symlink_to(tmp_path / "images", target_is_directory=True)
    assert c.display_jpeg("i0") is None and c.display_jpeg("i2") is None


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "", "x" * 200, 5])
def test_image_ids_that_are_not_file_names_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        cstore.check_image_id(bad)


@pytest.mark.parametrize("bad", [-1, 10**9, 1.5, "3", None])
def test_chunk_indices_are_checked(bad) -> None:
    with pytest.raises(CorpusError, match="invalid chunk index"):
        cstore.StorePaths(Path("c")).images(bad)


def test_a_hostile_chunk_range_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    import tracemalloc

    rec = {"table": "contributions", "head": "a", "method": "lrp", "file": "contributions/head=a/method=lrp/"
           f"part-{'0' * 32}.parquet", "key": "0" * 16, "chunks": [[0, 5_000_000]] * 4, "rows": 0}
    tracemalloc.start()
    with pytest.raises(cstore.CorpusError, match="chunk ranges"):
        cstore.Part.from_record(rec, tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000


def test_a_table_claiming_too_much_is_refused_from_its_footer(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.parquet"
    cstore.write_table(path, pd.DataFrame({"a": np.arange(1000)}))
    cstore.check_table_size(path)  # within the limit
    monkeypatch.setattr(store_files, "MAX_TABLE_BYTES", 100)
    with pytest.raises(cstore.CorpusError, match="limit"):
        cstore.read_table(path)


# --------------------------------------------------------------------------- compaction


def _part(k: int, rows: int, head: str = "a", table: str = "contributions") -> cstore.Part:
    return cstore.Part(table, head, "gradcam", f"{table}/head={head}/method=gradcam/part-{k:032x}.parquet",
                       KEY, (k,), rows)


def test_compaction_runs_merge_consecutive_small_parts_of_crowded_partitions_only():
    parts = [_part(0, 5), _part(1, 5), _part(2, 5), _part(3, 20), _part(4, 5), _part(5, 5),
             _part(6, 5, head="b"), _part(7, 5, head="b")]
    # partition a has 6 parts (> 3), b has 2: a's parts gathered while they hold <= 12 rows together
    assert cstore.compaction_runs(parts, min_parts=3, target_rows=12) == [[0, 1], [4, 5]]
    assert cstore.compaction_runs(parts, min_parts=3, target_rows=15) == [[0, 1, 2], [4, 5]]
    assert cstore.compaction_runs(parts, min_parts=1, target_rows=100) == [[0, 1, 2, 3, 4, 5], [6, 7]]
    assert cstore.compaction_runs(parts, min_parts=6, target_rows=100) == []
    with pytest.raises(ValueError, match="at least 1"):
        cstore.compaction_runs(parts, min_parts=0)


def _grow(folder: Path, out: Path, **kw) -> None:
    """One incremental run per photograph: chunk k holds image k, each run adds one part per partition."""
    from semcontrib.pipeline import analyze
    from tests.conftest import tiny_model

    paths = sorted(folder.glob("img*.png"))
    for n in range(1, len(paths) + 1):
        analyze(paths[:n], out, model=tiny_model(), methods=["gradcam", "lrp"], regions="grid", validity=False,
                chunk_size=1, batch_size=1, workers=0, **kw)


def _tables(root: Path) -> list[pd.DataFrame]:
    c = Corpus.open(root)
    return [c.images.drop(columns=["path"]), c.attributions, c.contributions]


def test_compact_merges_the_parts_and_keeps_the_tables_equal(image_folder, tmp_path, monkeypatch, capsys):
    from semcontrib.cli import main

    monkeypatch.setattr(store_generations, "COMPACT_MIN_PARTS", 1000)  # no compaction while growing
    out = tmp_path / "grown"
    _grow(image_folder, out)
    before = _tables(out)
    parts = Corpus.open(out).parts
    assert len(parts) == 2 * 2 * 2 * 7  # tables x heads x methods x runs
    assert main(["compact", str(out)]) == 0
    assert "56 table parts merged into 8" in capsys.readouterr().out
    after = Corpus.open(out)
    assert len(after.parts) == 8 and all(p.chunks == tuple(range(7)) and p.rows > 0 for p in after.parts)
    for a, b in zip(before, _tables(out)):  # the same rows in the same order
        pd.testing.assert_frame_equal(a, b)
    files = {p.relative_to(out).as_posix() for p in out.rglob("part-*.parquet") if "store" not in p.parts}
    assert files == {p.file for p in after.parts}  # the merged parts' files are gone
    assert main(["compact", str(out)]) == 0
    assert "nothing to compact (8 table parts)" in capsys.readouterr().out
    # a rerun with nothing to do computes nothing and keeps the compacted generation
    from semcontrib.pipeline import analyze
    from tests.conftest import tiny_model

    rep = analyze(sorted(image_folder.glob("img*.png")), out, model=tiny_model(), methods=["gradcam", "lrp"],
                  regions="grid", validity=False, chunk_size=1, batch_size=1, workers=0)
    assert set(rep.computed.values()) == {0} and rep.chunks == (7, 0)
    assert [p.file for p in Corpus.open(out).parts] == [p.file for p in after.parts]
    assert main(["compact", str(tmp_path / "nowhere")]) == 2
    assert "is not a corpus" in capsys.readouterr().err


def test_publish_compacts_crowded_partitions_and_the_tables_stay_those_of_a_run_without(image_folder, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(store_generations, "COMPACT_MIN_PARTS", 1000)
    _grow(image_folder, tmp_path / "plain")
    monkeypatch.setattr(store_generations, "COMPACT_MIN_PARTS", 3)
    _grow(image_folder, tmp_path / "compacted")
    per_partition = pd.Series([(p.table, p.head, p.method) for p in Corpus.open(tmp_path / "compacted").parts])
    assert per_partition.value_counts().max() <= 3 < 7
    for a, b in zip(_tables(tmp_path / "plain"), _tables(tmp_path / "compacted")):
        pd.testing.assert_frame_equal(a, b)


def test_a_compaction_killed_before_its_manifest_leaves_the_old_generation(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(store_generations, "COMPACT_MIN_PARTS", 1000)
    out = tmp_path / "c"
    _grow(image_folder, out)
    before = _tables(out)
    listed = [p.file for p in Corpus.open(out).parts]

    def killed(path, obj):
        raise OSError("killed")

    with monkeypatch.context() as m:
        m.setattr(store_generations, "write_json", killed)
        with pytest.raises(OSError, match="killed"):
            cstore.compact(out)
    assert [p.file for p in Corpus.open(out).parts] == listed
    for a, b in zip(before, _tables(out)):
        pd.testing.assert_frame_equal(a, b)
    assert cstore.compact(out).parts_after == 8  # the next one goes through and removes the orphans
    files = {p.relative_to(out).as_posix() for p in out.rglob("part-*.parquet") if "store" not in p.parts}
    assert files == {p.file for p in Corpus.open(out).parts}
