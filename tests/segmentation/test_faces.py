"""``faces``: dlib's detector and 68-point landmarks on the bundled portraits, checked against boxes
drawn by hand, plus the polygons, the partition, the options and the cache key.

The real landmark model (``face-recognition-models``, the ``faces`` extra) is used; loading it and
dlib's detector takes a few seconds once per module, each image about 0.1 s.
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

pytest.importorskip("dlib")

from semcontrib.demo import DEMO_IMAGES  # noqa: E402
from semcontrib.regions import ImageInput, RegionMap, RegionSource, source_key  # noqa: E402
from semcontrib.segmentation import make_region_source  # noqa: E402
from semcontrib.segmentation.faces import (  # noqa: E402
    LANDMARK_LICENCE,
    NO_FACE,
    PART_NAMES,
    FacesSource,
    default_model_path,
    face_polygons,
    rasterise_faces,
    split_source_label,
)
from semcontrib.segmentation.grid import grid_labels  # noqa: E402

# Part boxes drawn by hand, before the source was first run, on 3-4x crops of the photographs with a
# 10-pixel grid (full-size pixel coordinates, x = column, y = row, inclusive): where a person would put
# the centre of each part. "left"/"right" are the subject's own, so left_eye is on the picture's right.
HAND_BOXES: dict[str, dict[str, tuple[int, int, int, int]]] = {  # part -> (x0, y0, x1, y1)
    "astronaut": {"right_eye": (190, 93, 212, 107), "left_eye": (236, 97, 258, 111),
                  "nose": (214, 105, 234, 130), "mouth": (210, 136, 238, 154)},
    "grace_hopper": {"right_eye": (210, 180, 238, 200), "left_eye": (290, 176, 320, 198),
                     "nose": (255, 205, 283, 250), "mouth": (250, 268, 288, 295)},
}


def _photo(name: str) -> np.ndarray:
    rgb = np.asarray(DEMO_IMAGES[name][0]())
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    return np.ascontiguousarray(rgb[..., :3].astype(np.uint8))


@pytest.fixture(scope="module")
def source() -> FacesSource:
    src = make_region_source("faces")
    assert isinstance(src, FacesSource)
    return src


@pytest.fixture(scope="module")
def maps(source: FacesSource) -> dict[str, RegionMap]:
    return {n: source.segment(ImageInput(n, _photo(n))) for n in ("astronaut", "grace_hopper", "coffee")}


def _centroid(rmap: RegionMap, name: str) -> tuple[float, float]:
    ys, xs = np.nonzero(rmap.labels == rmap.names.index(name))
    assert xs.size > 0, f"{name} is empty"
    return float(xs.mean()), float(ys.mean())


def _assert_partition(rmap: RegionMap) -> None:
    counts = np.bincount(rmap.labels.ravel() + 1, minlength=len(rmap.names) + 1)
    assert counts[0] == 0  # no unassigned pixel
    assert counts.sum() == rmap.labels.size  # every pixel exactly one label


# --------------------------------------------------------------------------- the bundled photographs


@pytest.mark.parametrize("name", sorted(HAND_BOXES))
def test_parts_lie_where_drawn_by_hand(maps: dict[str, RegionMap], name: str) -> None:
    rmap = maps[name]
    assert rmap.names == PART_NAMES + ("rest",)
    assert rmap.note == ""
    for part, (x0, y0, x1, y1) in HAND_BOXES[name].items():
        x, y = _centroid(rmap, part)
        assert x0 <= x <= x1 and y0 <= y <= y1, f"{name} {part} centroid ({x:.0f}, {y:.0f}) outside the hand box"
    # the subject's left eye is on the picture's right
    assert _centroid(rmap, "left_eye")[0] > _centroid(rmap, "right_eye")[0]
    # face, brows: present, brows above the eyes, the face around the nose
    assert _centroid(rmap, "brows")[1] < _centroid(rmap, "left_eye")[1]
    fx, fy = _centroid(rmap, "face")
    nx, ny = _centroid(rmap, "nose")
    assert abs(fx - nx) < 15 and abs(fy - ny) < 30
    _assert_partition(rmap)


def test_photo_without_a_face_is_all_rest_with_a_note(maps: dict[str, RegionMap]) -> None:
    rmap = maps["coffee"]
    assert rmap.names == PART_NAMES + ("rest",)
    assert np.all(rmap.labels == rmap.names.index("rest"))
    assert rmap.note == NO_FACE
    assert rmap.resized((10, 12)).note == NO_FACE  # the pipeline resizes maps; the note travels


def test_detection_on_a_downscaled_copy_maps_landmarks_back(source: FacesSource,
                                                            maps: dict[str, RegionMap]) -> None:
    small = FacesSource(max_side=256)  # grace_hopper 600x512 -> 256x218: the face is still ~90 px
    rmap = small.segment(ImageInput("g", _photo("grace_hopper")))
    assert rmap.shape == (600, 512)
    for part, (x0, y0, x1, y1) in HAND_BOXES["grace_hopper"].items():
        # landmarks are predicted at full size from the box scaled back: still where drawn by hand, and
        # within a few pixels of the full-size detection's (the predictor starts from a slightly other box)
        x, y = _centroid(rmap, part)
        assert x0 <= x <= x1 and y0 <= y <= y1, part
        assert np.hypot(x - _centroid(maps["grace_hopper"], part)[0], y - _centroid(maps["grace_hopper"], part)[1]) < 10


def test_upsampling_finds_a_small_face() -> None:
    from PIL import Image

    tiny = np.asarray(Image.fromarray(_photo("astronaut")).resize((192, 192), Image.Resampling.LANCZOS))
    assert FacesSource(upsample=0).detect(tiny) == []  # a 34-pixel face is below the detector's size
    found = FacesSource(upsample=1).detect(tiny)
    assert len(found) == 1
    pts, score = found[0]
    assert score > 0.5 and pts.shape == (68, 2)
    assert 60 < pts[30, 0] < 100 and 35 < pts[30, 1] < 60  # nose tip (224, 126) at 192/512 scale: (84, 47)


def test_threshold_drops_weak_detections(source: FacesSource) -> None:
    rgb = _photo("astronaut")
    scores = [s for _, s in source.detect(rgb)]
    assert len(scores) == 1 and scores[0] > 1.0
    assert FacesSource(threshold=scores[0] + 0.01).detect(rgb) == []


# --------------------------------------------------------------------------- polygons and the partition


def _synthetic_landmarks() -> np.ndarray:
    """An upright face in a 100x100 image: jaw from (20, 40) round to (80, 40), chin (50, 90)."""
    p = np.zeros((68, 2))
    t = np.linspace(np.pi, 0, 17)
    p[0:17] = np.c_[50 + 30 * np.cos(t), 40 + 50 * np.sin(t)]  # jaw: a half ellipse, chin at index 8
    p[17:22] = np.c_[np.linspace(28, 44, 5), [34, 32, 31, 32, 34]]  # the subject's right brow (picture left)
    p[22:27] = np.c_[np.linspace(56, 72, 5), [34, 32, 31, 32, 34]]
    p[27:31] = np.c_[[50] * 4, [40, 46, 52, 58]]  # nose bridge, 27 at (50, 40)
    p[31:36] = np.c_[np.linspace(44, 56, 5), [60, 61, 62, 61, 60]]
    p[36:42] = [(30, 42), (34, 40), (38, 40), (42, 42), (38, 44), (34, 44)]  # right eye
    p[42:48] = [(58, 42), (62, 40), (66, 40), (70, 42), (66, 44), (62, 44)]  # left eye
    p[48:60] = np.c_[40 + 10 * np.cos(np.linspace(0, 2 * np.pi, 13)[:-1]),
                     74 + 4 * np.sin(np.linspace(0, 2 * np.pi, 13)[:-1])]
    p[60:68] = p[48:60:3].repeat(2, axis=0)[:8]
    p[48:60, 0] += 10  # mouth centred at (50, 74)
    return p


def test_polygons_of_a_synthetic_face() -> None:
    p = _synthetic_landmarks()
    polys = face_polygons(p, forehead=0.2)
    s = 50.0  # bridge (50, 40) to chin (50, 90)
    face = polys["face"][0]
    assert face.shape == (17 + 10, 2)
    assert face[:, 1].min() == pytest.approx(31 - 0.2 * s)  # the highest brow point raised by 0.2 s
    assert len(polys["brows"]) == 2
    band = polys["brows"][0]
    assert band[:, 1].max() - band[:, 1].min() == pytest.approx(34 - 31 + 0.12 * s)
    np.testing.assert_array_equal(polys["left_eye"][0], p[42:48])
    with pytest.raises(ValueError, match="68x2"):
        face_polygons(p[:67])


def test_rasterised_parts_win_over_the_face_in_paint_order() -> None:
    vocab = PART_NAMES + ("rest",)
    labels = rasterise_faces([_synthetic_landmarks()], (100, 100), vocab)
    name = {k: n for k, n in enumerate(vocab)}
    assert name[int(labels[42, 64])] == "left_eye"  # picture right
    assert name[int(labels[42, 36])] == "right_eye"
    assert name[int(labels[74, 50])] == "mouth"
    assert name[int(labels[56, 50])] == "nose"
    assert name[int(labels[32, 36])] == "brows"
    assert name[int(labels[25, 50])] == "face"  # forehead: 31 - 10 = 21 is the face's top at the centre
    assert name[int(labels[15, 50])] == "rest" and name[int(labels[95, 50])] == "rest"
    assert name[int(labels[80, 50])] == "face"
    # two faces side by side merge per part; the map stays a partition
    shifted = _synthetic_landmarks() * 0.5 + [100, 0]
    two = rasterise_faces([_synthetic_landmarks(), shifted], (100, 160), vocab)
    eyes = np.nonzero(two == vocab.index("left_eye"))[1]
    assert eyes.min() < 100 < eyes.max()
    _assert_partition(RegionMap(two, vocab))


# --------------------------------------------------------------------------- person from another source


def test_person_from_another_source() -> None:
    src = make_region_source("faces", person="grid:3x3:bottom_center")
    assert src.vocabulary == PART_NAMES + ("person", "rest")
    assert src.uses_evidence is False  # a grid reads no evidence
    rgb = _photo("astronaut")
    rmap = src.segment(ImageInput("a", rgb))
    _assert_partition(rmap)
    person = rmap.labels == rmap.names.index("person")
    cell = grid_labels(512, 512, 3, 3) == 7  # bottom_center
    parts = rmap.labels < len(PART_NAMES)
    assert parts.sum() > 5000
    np.testing.assert_array_equal(person, cell & ~parts)  # the person gets what the face parts leave
    # the middle cell holds the face: its parts keep their pixels, the person takes the rest of the cell
    mid = make_region_source("faces", person="grid:3x3:top_center")
    mmap = mid.segment(ImageInput("a", rgb))
    top = grid_labels(512, 512, 3, 3) == 1
    assert (top & parts).sum() > 5000
    np.testing.assert_array_equal(mmap.labels == mmap.names.index("person"), top & ~parts)
    np.testing.assert_array_equal(mmap.labels[parts], rmap.labels[parts])
    coffee = src.segment(ImageInput("c", _photo("coffee")))
    assert coffee.note == NO_FACE
    assert set(np.unique(coffee.labels)) == {rmap.names.index("person"), rmap.names.index("rest")}
    assert make_region_source("faces", person="landscape:person").uses_evidence is True


# --------------------------------------------------------------------------- options, identity, pickling


@pytest.mark.parametrize(("options", "match"), [
    ({"threshold": "high"}, "threshold must be a number"),
    ({"threshold": "nan"}, "threshold must be a finite number"),
    ({"upsample": "4"}, "upsample must be an integer from 0 to 3"),
    ({"upsample": "1.5"}, "upsample must be an integer"),
    ({"max_side": "32"}, "max_side must be an integer >= 64"),
    ({"forehead": "-0.1"}, "forehead must be a number from 0 to 2"),
    ({"colour": "red"}, r"unknown option\(s\) \['colour'\] for region source 'faces'"),
    ({"person": "landscape"}, "person must look like SPEC:LABEL"),
    ({"person": "landscape:cat"}, "person label 'cat' is not in the vocabulary of 'landscape'"),
    ({"person": "faces:person"}, "person cannot be another faces source"),
    ({"person.max_side": "100"}, "person.KEY options need person=SPEC:LABEL"),
    ({"model": "/nonexistent/shape_predictor_68_face_landmarks.dat"}, "landmark model .* not found"),
])
def test_bad_options_are_rejected(options: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_region_source("faces", **options)


def test_split_source_label() -> None:
    assert split_source_label("annotations:/a/b.json:person") == ("annotations:/a/b.json", "person")
    with pytest.raises(ValueError, match="SPEC:LABEL"):
        split_source_label("landscape:")


def test_params_carry_the_licence_and_the_key_follows_options_and_model(source: FacesSource, tmp_path) -> None:
    assert isinstance(source, RegionSource)
    assert source.params["licence"] == LANDMARK_LICENCE
    assert "not for commercial use" in LANDMARK_LICENCE
    assert source.uses_evidence is False
    ident = source.cache_identity
    assert ident["model_identity"]["name"] == "shape_predictor_68_face_landmarks.dat"
    assert len(ident["model_identity"]["sha256"]) == 64
    key = source_key(source)
    assert source_key(source, model_key="another model") == key  # reads no evidence
    assert source_key(make_region_source("faces")) == key
    assert source_key(make_region_source("faces", threshold="0.6")) != key
    assert source_key(make_region_source("faces", forehead="0.3")) != key
    # another file at the same name: another content hash, another key
    other = tmp_path / "shape_predictor_68_face_landmarks.dat"
    shutil.copyfile(default_model_path().replace("68_face", "5_face"), other)
    assert source_key(make_region_source(f"faces:{other}")) != key


def test_pickles_without_the_loaded_models(source: FacesSource, maps: dict[str, RegionMap]) -> None:
    blob = pickle.dumps(source)  # worker processes get the source pickled
    assert len(blob) < 10_000  # the models are not in it (they are loaded once per process)
    clone = pickle.loads(blob)
    rmap = clone.segment(ImageInput("a", _photo("astronaut")))
    np.testing.assert_array_equal(rmap.labels, maps["astronaut"].labels)


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 8, 3), (3, 2000, 3)])
def test_tiny_and_thin_images_have_no_face(shape: tuple[int, int, int]) -> None:
    rmap = FacesSource(upsample=2).segment(ImageInput("t", np.zeros(shape, np.uint8)))
    assert rmap.note == NO_FACE and rmap.shape == shape[:2]


def test_rejects_a_non_rgb_image(source: FacesSource) -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        source.segment(ImageInput("g", np.zeros((8, 8), np.uint8)))


# --------------------------------------------------------------------------- through the pipeline


def test_analyze_with_faces_regions(tmp_path) -> None:
    """``analyze --regions faces`` with a tiny model: the portrait gets eye, nose and mouth
    contributions; the coffee cup only ``rest``, its image row ok with the reason 'no face found'."""
    from PIL import Image

    from semcontrib.corpus import Corpus
    from semcontrib.pipeline import analyze
    from tests.conftest import tiny_model

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(_photo(name)).save(folder / f"{name}.png")
    rep = analyze(folder, tmp_path / "c", tiny_model(size=224), regions="faces", methods=["gradcam"],
                  validity=False)
    assert rep.n_ok == 2
    c = Corpus.open(tmp_path / "c")
    assert c.manifest["regions"]["params"]["licence"] == LANDMARK_LICENCE
    assert c.manifest["regions"]["vocabulary"] == list(PART_NAMES) + ["rest"]
    images = c.images.set_index(c.images.path.map(lambda p: p.rsplit("/", 1)[-1]))
    assert (images.status == "ok").all()
    assert images.reason["coffee.png"] == f"regions: {NO_FACE}" and images.reason["astronaut.png"] == ""
    ct = c.contributions
    present = ct[~ct.absent].groupby("image_id").region.agg(set)
    assert present[images.image_id["coffee.png"]] == {"rest"}
    assert {"left_eye", "right_eye", "nose", "mouth", "face", "rest"} <= present[images.image_id["astronaut.png"]]
