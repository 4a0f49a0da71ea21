"""The annotations source: COCO, Label Studio and PNG label maps on one vocabulary."""

import json
import re
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from semcontrib.regions import ImageInput, RegionError
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.annotations import (
    AnnotationSource,
    box_to_mask,
    image_name_keys,
    percent_to_pixels,
    polygons_to_mask,
    rotated_rectangle,
    strip_upload_prefix,
)
from semcontrib.segmentation.rle import coco_rle_encode, mask_to_brush_rle
from tests.segmentation.helpers import peak_bytes

H, W = 20, 30


def _img(name, h=H, w=W, image_id=None):
    return ImageInput(image_id or name, np.zeros((h, w, 3), np.uint8), path=f"/photos/{name}")


def _coco(tmp_path):
    eye = np.zeros((H, W), bool)
    eye[5:8, 5:9] = True
    nose = np.zeros((H, W), bool)
    nose[10:12, 14:16] = True
    data = {
        "images": [{"id": 1, "file_name": "cat.jpg", "height": H, "width": W},
                   {"id": 2, "file_name": "dog.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "Body"}, {"id": 2, "name": "Eye"}, {"id": 3, "name": "Nose"},
                       {"id": 4, "name": "Ear"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 30, 0, 30, 20, 0, 20]]},
            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": coco_rle_encode(eye)},
            {"id": 3, "image_id": 1, "category_id": 3, "segmentation": coco_rle_encode(nose, compressed=False)},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
        ],
    }
    p = tmp_path / "ann.coco.json"
    p.write_text(json.dumps(data))
    return p, eye, nose


def test_coco_polygons_and_rle(tmp_path):
    path, eye, nose = _coco(tmp_path)
    src = make_region_source(f"annotations:{path}")
    assert src.vocabulary == ("Body", "Ear", "Eye", "Nose")  # sorted, includes unused categories
    rm = src.segment(_img("cat.jpg"))
    names = np.array(rm.names)
    assert (names[rm.labels[eye]] == "Eye").all()  # smaller wins over the body polygon
    assert (names[rm.labels[nose]] == "Nose").all()
    assert (rm.labels >= 0).all()
    rm2 = src.segment(_img("dog.png", image_id="2"))
    assert rm2.names == rm.names  # same vocabulary for every image
    assert (rm2.labels[:10, :10] == 0).all() and (rm2.labels[10:] == -1).all()


def test_match_by_image_id_and_missing(tmp_path):
    path, _, _ = _coco(tmp_path)
    src = AnnotationSource(path)
    assert src.lookup(ImageInput("2", np.zeros((H, W, 3), np.uint8))) is not None
    with pytest.raises(ValueError, match="'nope'.*no annotations"):
        src.segment(_img("other.jpg", image_id="nope"))
    lenient = AnnotationSource(path, missing="unassigned")
    assert (lenient.segment(_img("other.jpg", image_id="nope")).labels == -1).all()


def test_size_and_orientation_mismatch(tmp_path):
    path, _, _ = _coco(tmp_path)
    src = AnnotationSource(path)
    with pytest.raises(ValueError, match="cat.jpg.*orientation"):
        src.segment(_img("cat.jpg", h=W, w=H))
    with pytest.raises(ValueError, match="cat.jpg.*size mismatch"):
        src.segment(_img("cat.jpg", h=H + 1, w=W))


def test_percent_to_pixels_and_rotation():
    assert percent_to_pixels(50, 25, 200, 100) == (100.0, 25.0)
    assert percent_to_pixels(0, 100, 640, 427) == (0.0, 427.0)
    c = rotated_rectangle(10, 20, 4, 2, 90)  # clockwise about the top-left corner (y points down)
    assert np.allclose(c, [[10, 20], [10, 24], [8, 24], [8, 20]])


def test_polygon_and_box_pixel_centres():
    m = polygons_to_mask([np.array([[0, 0], [3, 0], [3, 2], [0, 2]])], 4, 5)
    assert m.sum() == 6 and m[:2, :3].all()
    assert np.array_equal(box_to_mask((0, 0, 3, 2), 4, 5), m)


def _label_studio(tmp_path):
    brush = np.zeros((H, W), bool)
    brush[15:, 20:] = True
    tasks = [{
        "id": 7,
        "data": {"image": "/data/upload/1/0a1b2c3d-cat.jpg"},
        "annotations": [{"result": [
            {"type": "rectanglelabels", "original_width": W, "original_height": H,
             "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0, "rectanglelabels": ["Head"]}},
            {"type": "polygonlabels", "original_width": W, "original_height": H,
             "value": {"points": [[0, 0], [10, 0], [10, 10], [0, 10]], "polygonlabels": ["Eye"]}},
            {"type": "brushlabels", "original_width": W, "original_height": H,
             "value": {"format": "rle", "rle": mask_to_brush_rle(brush), "brushlabels": ["Tail"]}},
            {"type": "keypointlabels", "original_width": W, "original_height": H,
             "value": {"x": 50, "y": 50, "width": 1, "keypointlabels": ["Nose"]}},
        ]}],
    }]
    p = tmp_path / "ls.json"
    p.write_text(json.dumps(tasks))
    return p, brush


def test_label_studio_export(tmp_path):
    path, brush = _label_studio(tmp_path)
    src = make_region_source("annotations", path=str(path))
    assert src.vocabulary == ("Eye", "Head", "Nose", "Tail")
    rm = src.segment(_img("cat.jpg"))  # matched without Label Studio's upload prefix
    names = np.array(rm.names + ("unassigned",))
    lab = names[rm.labels]  # -1 indexes "unassigned"
    # Head: x 3..18 px, y 2..12 px; Eye polygon x 0..3, y 0..2 px
    assert (lab[2:12, 3:18][lab[2:12, 3:18] != "Eye"] == "Head").all()
    assert (lab[:2, :3] == "Eye").all()
    assert (lab[brush] == "Tail").all()
    assert lab[19, 0] == "unassigned"
    assert "Nose" not in set(lab.ravel())  # points have no area


def test_png_label_maps(tmp_path):
    d = tmp_path / "maps"
    d.mkdir()
    (d / "classes.txt").write_text("unassigned\nsky\nwater\n")
    values = np.zeros((H, W), np.uint8)
    values[:10] = 1
    values[10:15] = 2
    values[15:, :5] = 255
    im = Image.fromarray(values, mode="P")
    im.putpalette([0, 0, 0, 100, 150, 255, 0, 0, 200] + [0] * 759)
    im.save(d / "lake.png")
    Image.fromarray(values).convert("RGB").save(d / "bad.png")
    src = make_region_source(f"annotations:{d}")
    assert src.vocabulary == ("sky", "water")
    rm = src.segment(_img("lake.jpg"))
    assert (rm.labels[:10] == 0).all() and (rm.labels[10:15] == 1).all() and (rm.labels[15:] == -1).all()
    with pytest.raises(ValueError, match="'bad.jpg'.*mode RGB"):
        src.segment(_img("bad.jpg"))


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        make_region_source(f"annotations:{tmp_path / 'missing.json'}")
    with pytest.raises(ValueError, match="needs a path"):
        make_region_source("annotations")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        AnnotationSource(tmp_path / "x.json")
    with pytest.raises(ValueError, match="class-name file"):
        AnnotationSource(tmp_path)


# --------------------------------------------------------------------------- bounded memory, per-image errors


def _write(tmp_path, data, name="ann.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def _one_image_coco(seg, height=H, width=W, name="cat.jpg"):
    return {"images": [{"id": 1, "file_name": name, "height": height, "width": width},
                       {"id": 2, "file_name": "dog.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "Body"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": seg},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5]}]}


def test_masks_stay_encoded_until_their_image_is_segmented(tmp_path, monkeypatch):
    path, eye, _ = _coco(tmp_path)
    decoded = []
    import semcontrib.segmentation.annotation_files as ann_mod  # where AnnotatedRegion decodes

    real = ann_mod.coco_rle_decode
    monkeypatch.setattr(ann_mod, "coco_rle_decode", lambda rle: decoded.append(1) or real(rle))
    src = AnnotationSource(path)
    assert decoded == []  # reading the file decodes nothing
    rec = src.lookup(_img("cat.jpg"))
    assert all(r.mask is None for r in rec.regions)
    assert any(r.kind == "rle" and isinstance(r.encoded, dict) for r in rec.regions)
    src.segment(_img("dog.png", image_id="2"))
    assert decoded == []  # dog.png has no RLE
    src.segment(_img("cat.jpg"))
    assert len(decoded) == 2  # the eye and the nose, on demand


def test_a_5000_image_rle_file_loads_in_bounded_memory(tmp_path):
    """5,000 images of 1000x1000 with one RLE each: decoded up front they would take 5 GB."""
    n, side = 5000, 1000
    m = np.zeros((side, side), bool)
    m[100:900, 200:800] = True
    rle = coco_rle_encode(m)
    data = {"images": [{"id": i, "file_name": f"im{i:05d}.jpg", "height": side, "width": side} for i in range(n)],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "segmentation": rle} for i in range(n)]}
    path = _write(tmp_path, data)
    tracemalloc.start()
    try:
        src = AnnotationSource(path)
        loaded_peak = tracemalloc.get_traced_memory()[1]
        rm = src.segment(ImageInput("im04321", np.zeros((side, side, 3), np.uint8), path="/x/im04321.jpg"))
    finally:
        tracemalloc.stop()
    assert loaded_peak < 40_000_000  # the file is ~0.8 MB; one decoded mask would already be 1 MB
    assert (rm.labels[m] == 0).all() and (rm.labels[~m] == -1).all()


def test_rle_size_over_the_cap_or_differing_is_that_images_error(tmp_path):
    data = _one_image_coco({"size": [60000, 60000], "counts": [3_600_000_000]}, 60000, 60000)
    src = AnnotationSource(_write(tmp_path, data))  # the file loads: one bad image does not stop it
    with pytest.raises(RegionError, match=r"ann.json: image 'cat.jpg' .*60000x60000.*exceeds the limit") as exc:
        src.segment(_img("cat.jpg"))
    assert exc.value.permanent and "\n" not in str(exc.value)
    assert src.segment(_img("dog.png")).labels.shape == (H, W)  # the other image is fine

    data = _one_image_coco({"size": [6000, 6000], "counts": "0"})
    src = AnnotationSource(_write(tmp_path, data, "b.json"))
    with pytest.raises(RegionError, match=r"b.json: .*RLE size 6000x6000 \(WxH\) differs from the image entry 30x20"):
        src.segment(_img("cat.jpg"))


def test_malformed_shapes_are_that_images_permanent_error(tmp_path):
    for seg, message in (([[0, 0, 1]], "polygon"), ({"size": [H, W], "counts": "!!"}, "invalid character"),
                         ({"size": [H, W], "counts": [1, 2]}, "sum to 3"), ("oops", "segmentation must be")):
        src = AnnotationSource(_write(tmp_path, _one_image_coco(seg)))
        with pytest.raises(RegionError, match=message) as exc:
            src.segment(_img("cat.jpg"))
        assert exc.value.permanent
        src.segment(_img("dog.png"))


def test_label_studio_brush_header_checked_before_decoding(tmp_path):
    claim = mask_to_brush_rle(np.ones((2, 2), bool))
    claim[:4] = [255, 255, 255, 255]  # claims 2**32 - 1 values
    good = mask_to_brush_rle(np.ones((H, W), bool))
    tasks = [{"id": 1, "data": {"image": "cat.jpg"}, "annotations": [{"result": [
        {"type": "brushlabels", "original_width": W, "original_height": H,
         "value": {"format": "rle", "rle": claim, "brushlabels": ["Tail"]}}]}]},
        {"id": 2, "data": {"image": "dog.jpg"}, "annotations": [{"result": [
            {"type": "brushlabels", "original_width": W, "original_height": H,
             "value": {"format": "rle", "rle": good, "brushlabels": ["Tail"]}},
            {"type": "choices", "value": {"choices": ["outdoor"]}}]}]},  # other result types are ignored
        {"id": 3, "data": {"image": "big.jpg"}, "annotations": [{"result": [
            {"type": "brushlabels", "original_width": 60000, "original_height": 60000,
             "value": {"format": "rle", "rle": claim, "brushlabels": ["Tail"]}}]}]}]
    src = AnnotationSource(_write(tmp_path, tasks))
    assert src.vocabulary == ("Tail",)
    with pytest.raises(RegionError, match=rf"image 'cat.jpg'.*holds {2**32 - 1} values, expected 20x30x4"):
        src.segment(_img("cat.jpg"))
    with pytest.raises(RegionError, match="60000x60000.*exceeds the limit"):
        src.segment(_img("big.jpg"))
    assert (src.segment(_img("dog.jpg")).labels == 0).all()


def _png_header(width, height, mode_byte=0):
    """The bytes of a PNG whose IHDR claims ``width`` x ``height`` (8-bit grey), with a tiny IDAT."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_png_label_map_sizes_checked_before_decoding(tmp_path):
    d = tmp_path / "maps"
    d.mkdir()
    (d / "classes.txt").write_text("sky\n")
    (d / "huge.png").write_bytes(_png_header(60000, 60000))  # over Pillow's own bomb limit
    (d / "big.png").write_bytes(_png_header(10000, 10000))  # under Pillow's limit, over ours
    (d / "short.png").write_bytes(_png_header(W, H))  # right size, truncated data
    (d / "junk.png").write_bytes(b"not a png at all")
    src = AnnotationSource(d)
    from PIL import Image

    Image.init()  # Pillow imports every format plugin when it first meets an unknown file: not the decoder's memory
    for name, message in (("huge", "exceeds|decompression"), ("big", "exceeds the limit"),
                          ("short", "label map"), ("junk", "not an image")):
        result, peak = peak_bytes(lambda n=name: src.segment(_img(f"{n}.jpg")))
        assert isinstance(result, RegionError) and re.search(message, str(result)), (name, result)
        assert result.permanent and peak < 5_000_000, (name, peak)


def test_io_errors_are_transient(tmp_path, monkeypatch):
    import errno

    from PIL import Image

    d = tmp_path / "maps"
    d.mkdir()
    (d / "classes.txt").write_text("sky\n")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(d / "lake.png")
    src = AnnotationSource(d)
    assert (src.segment(_img("lake.jpg")).labels == 0).all()

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Image, "open", broken)
    with pytest.raises(RegionError, match="Input/output error") as exc:
        src.segment(_img("lake.jpg"))
    assert not exc.value.permanent


def test_size_mismatch_and_missing_are_permanent(tmp_path):
    path, _, _ = _coco(tmp_path)
    src = AnnotationSource(path)
    with pytest.raises(RegionError, match="size") as exc:
        src.segment(_img("cat.jpg", h=H + 1))
    assert exc.value.permanent
    assert str(path) in str(exc.value) and "'cat.jpg'" in str(exc.value)
    with pytest.raises(RegionError, match="no annotations") as exc:
        src.segment(_img("other.jpg", image_id="nope"))
    assert exc.value.permanent
    assert "'nope'" in str(exc.value)


_ACCEPTANCE = r"""
import json, resource, sys, time
import numpy as np
from semcontrib.regions import ImageInput, RegionError
from semcontrib.segmentation import make_region_source
t0 = time.perf_counter()
src = make_region_source("annotations:" + sys.argv[1])
out = []
for name, h, w in (("huge.png", 100, 100), ("claims.png", 100, 100), ("fine.png", 100, 100)):
    try:
        rm = src.segment(ImageInput(name, np.zeros((h, w, 3), np.uint8), "/photos/" + name))
        out.append(["ok", int((rm.labels >= 0).sum())])
    except RegionError as exc:
        out.append([str(exc), exc.permanent])
print(json.dumps({"results": out, "seconds": time.perf_counter() - t0,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def test_acceptance_rle_claiming_60000x60000_in_a_subprocess(tmp_path):
    """Issue 9: a clear one-line error for that image in seconds, peak memory under 2.5 GB."""
    fine = np.zeros((100, 100), bool)
    fine[10:20, 10:20] = True
    data = {"images": [{"id": 1, "file_name": "huge.png", "height": 60000, "width": 60000},
                       {"id": 2, "file_name": "claims.png", "height": 100, "width": 100},
                       {"id": 3, "file_name": "fine.png", "height": 100, "width": 100}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [60000, 60000],
                                                                            "counts": [0, 3_600_000_000]}},
                {"id": 2, "image_id": 2, "category_id": 1, "segmentation": {"size": [60000, 60000],
                                                                            "counts": "0" + "o" * 6 + "1"}},
                {"id": 3, "image_id": 3, "category_id": 1, "segmentation": coco_rle_encode(fine)}]}
    path = _write(tmp_path, data, "hostile.json")
    proc = subprocess.run([sys.executable, "-c", _ACCEPTANCE, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (huge, huge_permanent), (claims, claims_permanent), fine_result = report["results"]
    assert "hostile.json: image 'huge.png'" in huge and "60000x60000" in huge and "\n" not in huge
    assert "hostile.json: image 'claims.png'" in claims and "60000x60000" in claims and "exceeds" in claims
    assert huge_permanent and claims_permanent
    assert fine_result == ["ok", 100]
    assert report["peak_rss_bytes"] < 2.5 * 2**30
    assert report["seconds"] < 60  # loose: it takes well under a second


# --------------------------------------------------------------------------- fuzzing the readers

FUZZ = settings(max_examples=40, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(), st.text(max_size=4))
_json = st.recursive(_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                     max_leaves=8)
_names = st.sampled_from(["a.png", "b.png"])


def _corrupt(draw, data):
    """Replace 0-2 randomly chosen parts (anywhere in the nested structure) by arbitrary JSON."""
    for _ in range(draw(st.integers(0, 2))):
        parent, key = None, None
        node = data
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            return draw(_json)
        parent[key] = draw(_json)
    return data


@st.composite
def _coco_data(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    coord = st.floats(-3, 15, allow_nan=False)
    mask = draw(hnp.arrays(bool, (h, w)))
    rle = coco_rle_encode(mask, compressed=draw(st.booleans()))
    seg = st.one_of(st.lists(st.lists(coord, min_size=6, max_size=10).map(lambda v: v[:len(v) // 2 * 2]),
                             min_size=1, max_size=2), st.just(rle))
    anns = draw(st.lists(st.fixed_dictionaries(
        {"id": st.integers(0, 9), "image_id": st.integers(1, 2), "category_id": st.integers(1, 2)},
        optional={"segmentation": seg, "bbox": st.lists(st.floats(0, 12), min_size=4, max_size=4),
                  "keypoints": st.lists(st.integers(0, 12), min_size=3, max_size=3)}), max_size=4))
    data = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w},
                       {"id": 2, "file_name": "b.png", "height": h, "width": w}],
            "annotations": anns, "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}]}
    return _corrupt(draw, data), (h, w)


@st.composite
def _label_studio_data(draw):
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    pct = st.floats(-10, 110)
    labels = st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2)
    mask = draw(hnp.arrays(bool, (h, w)))
    values = {
        "rectanglelabels": st.fixed_dictionaries({"x": pct, "y": pct, "width": pct, "height": pct,
                                                  "rotation": st.sampled_from([0, 30]), "rectanglelabels": labels}),
        "polygonlabels": st.fixed_dictionaries({"points": st.lists(st.lists(pct, min_size=2, max_size=2),
                                                                   min_size=3, max_size=5),
                                                "polygonlabels": labels}),
        "brushlabels": st.fixed_dictionaries({"format": st.just("rle"), "rle": st.just(mask_to_brush_rle(mask)),
                                              "brushlabels": labels}),
        "keypointlabels": st.fixed_dictionaries({"x": pct, "y": pct, "keypointlabels": labels}),
    }
    typ = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3))
    tasks = [{"id": i, "data": {"image": name},
              "annotations": [{"result": [{"type": t, "original_width": w, "original_height": h,
                                           "value": draw(values[t])} for t in typ]}]}
             for i, name in enumerate(draw(st.lists(_names, max_size=2, unique=True)))]
    return _corrupt(draw, tasks), (h, w)


def _fuzz_source(tmp_path, data, size):
    """Every input either loads or raises ValueError; every image then segments or raises RegionError
    (one line); memory stays bounded."""
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(data))
    tracemalloc.start()
    try:
        try:
            src = AnnotationSource(path)
        except ValueError as exc:
            assert "\n" not in str(exc)
            return
        assert all(isinstance(n, str) for n in src.vocabulary)
        for name in ("a.png", "b.png"):
            try:
                rm = src.segment(ImageInput(name, np.zeros((*size, 3), np.uint8), path=name))
            except RegionError as exc:
                assert "\n" not in str(exc) and name in str(exc)
            else:
                assert rm.labels.shape == size and rm.names == src.vocabulary
        assert tracemalloc.get_traced_memory()[1] < 20_000_000
    finally:
        tracemalloc.stop()


@FUZZ
@given(_coco_data())
def test_coco_reader_fuzz(tmp_path, case):
    _fuzz_source(tmp_path, *case)


@FUZZ
@given(_label_studio_data())
def test_label_studio_reader_fuzz(tmp_path, case):
    _fuzz_source(tmp_path, *case)


def test_image_name_keys_and_upload_prefix():
    """The keys one image reference matches (shared by the region reader and the choices reader)."""
    assert image_name_keys("/data/upload/3/0a1b2c3d-fox.jpg") == ["0a1b2c3d-fox.jpg", "0a1b2c3d-fox", "fox.jpg", "fox"]
    assert image_name_keys("fox.jpg") == ["fox.jpg", "fox"]
    assert image_name_keys("0A1B2C3D-fox.jpg") == ["0A1B2C3D-fox.jpg", "0A1B2C3D-fox"]  # Label Studio writes lower hex
    assert strip_upload_prefix("/x/0a1b2c3d-my-fox.jpg") == "my-fox.jpg"
    assert strip_upload_prefix("abc-fox.jpg") == "abc-fox.jpg"  # not eight hex digits: a name, kept
