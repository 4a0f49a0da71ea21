"""``concepts:PROMPTS``: the pure partition with hand-checked maps and a reference, the settings, the
registry's options, the cache key, and the real transformers loading + inference path on tiny
random-weight SAM 3, Grounding DINO + SAM / SAM 2 and CLIPSeg models saved with ``save_pretrained``."""

from __future__ import annotations

import doctest
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semcontrib.regions import ImageInput, RegionSource, source_key
from semcontrib.segmentation import concepts as C
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.concepts import (
    ConceptInstance,
    ConceptSettings,
    concept_labels,
    instances_from_probabilities,
    split_sides,
)


def box(shape: tuple[int, int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """bool mask with rows r0..r1 and columns c0..c1 (inclusive) on."""
    m = np.zeros(shape, bool)
    m[r0:r1 + 1, c0:c1 + 1] = True
    return m


class FakeBackend:
    """Returns fixed instances per prompt and records what it was asked."""

    name = "fake"

    def __init__(self, found: list[list[ConceptInstance]], tag: str = "v1") -> None:
        self.found = found
        self.tag = tag
        self.calls: list[tuple[str, ...]] = []

    @property
    def identity(self) -> dict[str, Any]:
        return {"weights": self.tag}

    def find(self, rgb: np.ndarray, prompts) -> list[list[ConceptInstance]]:
        self.calls.append(tuple(prompts))
        return self.found


def rgb_image(h: int = 6, w: int = 8, seed: int = 0) -> ImageInput:
    rgb = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    return ImageInput(f"img{seed}", rgb)


# --------------------------------------------------------------------------- the pure part


def test_fake_backend_gives_the_hand_checked_label_map():
    shape = (6, 8)
    found = [
        [ConceptInstance(box(shape, 2, 2, 5, 6), 0.9), ConceptInstance(box(shape, 2, 2, 2, 3), 0.8)],  # eye: B, A
        [ConceptInstance(box(shape, 0, 1, 1, 2), 0.7), ConceptInstance(box(shape, 5, 5, 7, 7), 0.2)],  # ear, weak
        [ConceptInstance(box(shape, 1, 5, 1, 6), 0.95)],  # cat
    ]
    backend = FakeBackend(found)
    src = make_region_source("concepts:eye,ear,cat,rest", backend=backend, sides="eye")
    assert isinstance(src, RegionSource) and src.name == "concepts" and src.uses_evidence is False
    assert src.vocabulary == ("left_eye", "right_eye", "ear", "cat", "rest")
    rmap = src.segment(rgb_image())
    assert backend.calls == [("eye", "ear", "cat")]  # rest is not prompted
    expected = np.array([
        [4, 2, 2, 4, 4, 4, 4, 4],
        [4, 2, 2, 3, 3, 3, 3, 4],  # the ear (4 px) wins over the cat (30 px) where they overlap
        [4, 3, 1, 1, 3, 0, 0, 4],  # subject's sides: the picture-left eye is right_eye (1), the other left_eye (0)
        [4, 3, 3, 3, 3, 3, 3, 4],
        [4, 3, 3, 3, 3, 3, 3, 4],
        [4, 3, 3, 3, 3, 3, 3, 4],  # the weak ear at (5, 7) (score 0.2 <= 0.5) is dropped: rest
    ], np.int32)
    np.testing.assert_array_equal(rmap.labels, expected)
    assert rmap.names == src.vocabulary


def test_instances_of_a_prompt_merge_and_thresholds_are_strict():
    shape = (4, 4)
    s = ConceptSettings(("dot", "rest"), score_threshold=0.5, min_area=2)
    a, b = box(shape, 0, 0, 0, 1), box(shape, 3, 3, 2, 3)
    single = box(shape, 2, 2, 0, 0)
    labels = concept_labels([[ConceptInstance(a, 0.6), ConceptInstance(b, 0.51), ConceptInstance(single, 0.99),
                              ConceptInstance(box(shape, 1, 1, 0, 3), 0.5)]], s, shape)
    np.testing.assert_array_equal(labels == 0, a | b)  # merged; 1 px < min_area; score 0.5 is not above 0.5
    assert (labels[~(a | b)] == 1).all()
    with pytest.raises(ValueError, match=r"prompt 'dot': mask is \(3, 3\), expected \(4, 4\)"):
        concept_labels([[ConceptInstance(np.ones((3, 3), bool), 0.9)]], s, shape)
    with pytest.raises(ValueError, match="expected instances for 1 prompts, got 2"):
        concept_labels([[], []], s, shape)


def test_nothing_found_is_all_rest_and_without_rest_unassigned():
    shape = (3, 5)
    assert (concept_labels([[], []], ConceptSettings("eye,ear,rest"), shape) == 2).all()
    renamed = ConceptSettings("background,eye,ear", rest="background")
    assert renamed.prompts == ("eye", "ear") and renamed.vocabulary[0] == "background"
    assert (concept_labels([[], []], renamed, shape) == 0).all()
    no_rest = concept_labels([[ConceptInstance(box(shape, 0, 0, 0, 0), 0.9)], []], ConceptSettings("eye,ear"), shape)
    assert no_rest[0, 0] == 0 and (no_rest.ravel()[1:] == -1).all()


def reference_labels(found, settings: ConceptSettings, shape) -> np.ndarray:
    """Pixel by pixel: among the regions covering it, the smallest (then the lowest label) wins."""
    vocab = settings.vocabulary
    regions: dict[int, np.ndarray] = {}
    for prompt, insts in zip(settings.prompts, found):
        kept = [i.mask for i in insts
                if i.score > settings.score_threshold and i.mask.sum() >= max(settings.min_area, 1)]
        if kept:
            regions[vocab.index(prompt)] = np.logical_or.reduce(kept)
    out = np.full(shape, vocab.index(settings.rest) if settings.rest in vocab else -1, np.int32)
    for r in range(shape[0]):
        for c in range(shape[1]):
            covering = [(int(m.sum()), k) for k, m in regions.items() if m[r, c]]
            if covering:
                out[r, c] = min(covering)[1]
    return out


def test_partition_matches_the_reference_and_ignores_instance_order():
    rng = np.random.default_rng(7)
    shape = (9, 11)
    s = ConceptSettings("a,b,rest,c,d", score_threshold=0.3, min_area=3)
    for _ in range(30):
        found = []
        for _p in s.prompts:
            insts = []
            for _i in range(rng.integers(0, 3)):
                r0, c0 = rng.integers(0, 8), rng.integers(0, 10)
                insts.append(ConceptInstance(box(shape, r0, r0 + rng.integers(0, 4), c0, c0 + rng.integers(0, 5)),
                                             float(rng.random())))
            found.append(insts)
        labels = concept_labels(found, s, shape)
        np.testing.assert_array_equal(labels, reference_labels(found, s, shape))
        shuffled = [list(reversed(f)) for f in found]
        np.testing.assert_array_equal(concept_labels(shuffled, s, shape), labels)


def test_split_sides_is_by_picture_position():
    shape = (3, 10)
    left_blob, right_blob = box(shape, 1, 1, 1, 2), box(shape, 1, 1, 6, 8)
    left, right = split_sides([ConceptInstance(right_blob, 0.9), ConceptInstance(left_blob, 0.9)], 10)
    assert [i.mask is left_blob for i in left] == [True]
    assert [i.mask is right_blob for i in right] == [True]
    # one instance: the image's centre line decides (centroid 3.0 < 5 -> left; 7.5 >= 5 -> right)
    assert len(split_sides([ConceptInstance(left_blob, 0.9)], 10)[0]) == 1
    assert len(split_sides([ConceptInstance(right_blob, 0.9)], 10)[1]) == 1


@pytest.mark.parametrize(("convention", "picture_left_is"), [("subject", "right_eye"), ("picture", "left_eye")])
def test_side_conventions(convention: str, picture_left_is: str):
    """``subject`` (the default, as in ``faces`` and the shipped part annotations): the subject faces the
    camera, so its left eye is on the picture's right; ``picture``: left is the picture's left."""
    shape = (3, 10)
    picture_left, picture_right = box(shape, 1, 1, 1, 2), box(shape, 1, 1, 6, 8)
    s = ConceptSettings("eye,rest", sides="eye", side_convention=convention)
    assert s.vocabulary == ("left_eye", "right_eye", "rest") and s.params["side_convention"] == convention
    labels = concept_labels([[ConceptInstance(picture_right, 0.9), ConceptInstance(picture_left, 0.8)]], s, shape)
    names = np.array(s.vocabulary)[labels]
    assert (names[picture_left] == picture_left_is).all()
    assert (names[picture_right] == ({"left_eye", "right_eye"} - {picture_left_is}).pop()).all()
    assert (names[~(picture_left | picture_right)] == "rest").all()
    one = concept_labels([[ConceptInstance(picture_right, 0.9)]], s, shape)  # one eye: one side, the rest is rest
    one_side = "left_eye" if convention == "subject" else "right_eye"
    assert set(np.array(s.vocabulary)[np.unique(one)]) == {"rest", one_side}
    assert ConceptSettings("eye,rest", sides="eye").side_convention == "subject"


def test_clipseg_argmax_and_threshold_assignment():
    probs = np.array([
        [[0.9, 0.8, 0.1, 0.7]],
        [[0.6, 0.95, 0.2, 0.1]],
    ], np.float32)  # two prompts, one row of four pixels
    argmax = instances_from_probabilities(probs, ConceptSettings("a,b", assign="argmax"))
    assert [len(f) for f in argmax] == [2, 1]  # a: pixels 0 and 3 (two components), b: pixel 1
    np.testing.assert_array_equal(argmax[0][0].mask, [[True, False, False, False]])
    assert [round(i.score, 2) for i in argmax[0]] == [0.9, 0.7] and round(argmax[1][0].score, 2) == 0.95
    thresh = instances_from_probabilities(probs, ConceptSettings("a,b", assign="threshold"))
    np.testing.assert_array_equal(thresh[0][0].mask, [[True, True, False, False]])  # 8-connected, one component
    np.testing.assert_array_equal(thresh[1][0].mask, [[True, True, False, False]])


def test_clipseg_components_dropped_early_give_the_same_labels():
    """instances_from_probabilities leaves out what concept_labels would drop: same labels."""
    rng = np.random.default_rng(3)
    probs = rng.random((3, 20, 24)).astype(np.float32)
    strict = ConceptSettings("a,b,c,rest", score_threshold=0.8, mask_threshold=0.4, min_area=3)
    loose = ConceptSettings("a,b,c,rest", score_threshold=0.0, mask_threshold=0.4, min_area=0)
    early = instances_from_probabilities(probs, strict)
    everything = instances_from_probabilities(probs, loose)
    assert sum(map(len, early)) < sum(map(len, everything))  # some were dropped early
    np.testing.assert_array_equal(concept_labels(early, strict, (20, 24)), concept_labels(everything, strict, (20, 24)))


def test_settings_are_validated():
    with pytest.raises(ValueError, match=r"prompt\(s\) \['eye'\] appear more than once"):
        ConceptSettings("eye,ear,eye")
    with pytest.raises(ValueError, match="empty name"):
        ConceptSettings("eye,,ear")
    with pytest.raises(ValueError, match="nothing to prompt besides the rest name 'rest'"):
        ConceptSettings("rest")
    with pytest.raises(ValueError, match=r"sides \['nose'\] are not among the prompts"):
        ConceptSettings("eye,rest", sides="nose")
    with pytest.raises(ValueError, match=r"region name\(s\) \['left_eye'\] would appear twice"):
        ConceptSettings("eye,left_eye", sides="eye")
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\), got 1.5"):
        ConceptSettings("eye", score_threshold=1.5)
    with pytest.raises(ValueError, match="assign must be one of"):
        ConceptSettings("eye", assign="vote")
    with pytest.raises(ValueError, match=r"side_convention must be one of \('subject', 'picture'\), got 'viewer'"):
        make_region_source("concepts:eye,rest", backend=FakeBackend([[]]), side_convention="viewer")
    # quotes a shell or a config file left around the list or an item are removed
    assert ConceptSettings('"eye, ear ,rest"').names == ("eye", "ear", "rest")
    assert ConceptSettings("eye,'ear'", sides='"eye"').sides == ("eye",)


def test_registry_options():
    fake = FakeBackend([[], []])
    src = make_region_source("concepts", prompts="cat, dog, background", rest="background", backend=fake,
                             score_threshold="0.25", mask_threshold="0.4", min_area="7")
    assert src.vocabulary == ("cat", "dog", "background")
    assert src.params["score_threshold"] == 0.25 and src.params["mask_threshold"] == 0.4
    assert src.params["min_area"] == 7 and src.params["backend"] == "fake"
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['prompt'\] for region source 'concepts'"):
        make_region_source("concepts:eye", prompt="x")
    with pytest.raises(ValueError, match="unknown concepts backend 'sam4'"):
        make_region_source("concepts:eye", backend="sam4")
    with pytest.raises(ValueError, match="option assign is only used by the clipseg backend"):
        make_region_source("concepts:eye", backend="sam3", assign="argmax", model="x")
    with pytest.raises(ValueError, match="min_area must be an integer"):
        make_region_source("concepts:eye", backend=fake, min_area="many")
    with pytest.raises(ValueError, match="concepts needs prompts"):
        make_region_source("concepts")


def test_missing_model_says_where_to_put_it(tmp_path):
    with pytest.raises(ValueError, match=r"backend 'sam3' needs model weights: put the files save_pretrained "
                                         r"writes .* --region-opt model=FOLDER"):
        make_region_source("concepts:eye,rest")
    missing = tmp_path / "sam3-weights"
    with pytest.raises(ValueError, match=r"concepts model folder not found: .*sam3-weights; put the files "
                                         r"save_pretrained writes \(config.json, model.safetensors.* "
                                         r"as --region-opt model=FOLDER$"):
        make_region_source("concepts:eye,rest", model=str(missing))
    missing.mkdir()
    with pytest.raises(ValueError, match="sam3-weights has no config.json"):
        make_region_source("concepts:eye,rest", model=str(missing))
    (missing / "config.json").write_text('{"model_type": "clipseg"}')
    with pytest.raises(ValueError, match=r"holds a 'clipseg' model; the sam3 backend's model folder needs one of "
                                         r"\['sam3'\]"):
        make_region_source("concepts:eye,rest", model=str(missing))
    (missing / "config.json").write_text('{"model_type": "sam"}')
    with pytest.raises(ValueError, match="backend 'grounded-sam' needs model weights: .* detector=FOLDER"):
        make_region_source("concepts:eye,rest", backend="grounded-sam", model=str(missing))
    # a hub id that is not in the local cache is not fetched without download=true
    with pytest.raises(ValueError, match=r"'nobody-here/no-such-model' is neither a folder nor a hub id in the "
                                         r"local cache \(add --region-opt download=true"):
        make_region_source("concepts:eye,rest", model="nobody-here/no-such-model")
    with pytest.raises(ValueError) as info:
        make_region_source("concepts:eye,rest", model=str(tmp_path / "nope"))
    assert "\n" not in str(info.value)  # one line


def test_module_doctests_run():
    result = doctest.testmod(C)
    assert result.attempted >= 2 and result.failed == 0


# --------------------------------------------------------------------------- tiny real models


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny random-weight models saved with save_pretrained, built once per test session."""
    pytest.importorskip("transformers")
    from semcontrib.segmentation import concepts_tiny

    root = tmp_path_factory.mktemp("concept-models")
    return {kind: build(root / kind) for kind, build in concepts_tiny.BUILDERS.items()}


def photo(h: int = 48, w: int = 64, seed: int = 0) -> ImageInput:
    rng = np.random.default_rng(seed)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2] = (90, 140, 220)
    rgb[h // 2:] = (60, 130, 50)
    rgb[h // 3: 2 * h // 3, w // 4: w // 2] = (200, 180, 150)
    rgb = np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)
    return ImageInput(f"photo{seed}", rgb)


def check_partition(rmap, vocab) -> None:
    assert rmap.names == vocab and rmap.labels.dtype == np.int32
    assert rmap.labels.min() >= 0 and rmap.labels.max() < len(vocab)  # rest takes every unclaimed pixel


def test_sam3_reuses_vision_features_and_matches_the_plain_forward(tiny):
    import torch

    src = make_region_source("concepts:eye,ear,rest", backend="sam3", model=str(tiny["sam3"]), score_threshold="0")
    img = photo()
    backend = src.backend
    model = backend.loaded()["model"]
    calls = []
    original = model.get_vision_features
    model.get_vision_features = lambda **kw: calls.append(1) or original(**kw)
    rmap = src.segment(img)
    assert calls == [1]  # once per image, for both prompts
    check_partition(rmap, ("eye", "ear", "rest"))
    # reference: each prompt through the plain forward (pixels and text together), the same post-processing
    proc = backend.loaded()["processor"]
    ref = []
    with torch.inference_mode():
        for prompt in ("eye", "ear"):
            inputs = proc(images=img.rgb, text=prompt, return_tensors="pt")
            out = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                        attention_mask=inputs["attention_mask"])
            res = proc.post_process_instance_segmentation(out, threshold=0.0, mask_threshold=0.5,
                                                          target_sizes=inputs["original_sizes"].tolist())[0]
            ref.append([ConceptInstance(m.bool().numpy(), float(s)) for m, s in zip(res["masks"], res["scores"])])
    assert [len(r) for r in ref] == [5, 5]  # the tiny model has 5 queries; all score above 0
    np.testing.assert_array_equal(rmap.labels, concept_labels(ref, src.settings, img.rgb.shape[:2]))
    # with the default score threshold (0.5) the random model finds nothing: all rest, not an error
    default = make_region_source("concepts:eye,ear,rest", backend="sam3", model=str(tiny["sam3"]))
    assert default.settings.score_threshold == 0.5
    assert (default.segment(img).labels == 2).all()


@pytest.mark.parametrize(("sam", "detector"), [("sam", "grounding-dino"), ("sam2", "owlv2")])
def test_grounded_sam_boxes_then_masks(tiny, sam, detector):
    src = make_region_source("concepts:eye,ear,rest", backend="grounded-sam", model=str(tiny[sam]),
                             detector=str(tiny[detector]), score_threshold="0", sides="eye")
    img = photo(seed=1)  # 48 x 64: OWLv2 pads it to a square at the bottom, its boxes are clipped back
    boxes = [src.backend.boxes(img.rgb, p) for p in ("eye", "ear")]
    assert all(len(b) == len(s) > 0 for b, s in boxes)
    h, w = img.rgb.shape[:2]
    for bs, _ in boxes:
        for x0, y0, x1, y1 in bs:
            assert 0 <= x0 < x1 <= w
            assert 0 <= y0 < y1 <= h
    found = src.backend.find(img.rgb, ("eye", "ear"))
    assert [len(f) for f in found] == [len(b) for b, _ in boxes]  # one mask per box
    assert all(i.mask.shape == (h, w) and i.mask.dtype == bool for f in found for i in f)
    assert [[i.score for i in f] for f in found] == [s for _, s in boxes]  # each mask keeps its box's score
    check_partition(src.segment(img), ("left_eye", "right_eye", "ear", "rest"))
    # no box: SAM is not even run, and the image is all rest
    backend = src.backend
    backend.boxes = lambda rgb, prompt: ([], [])
    backend.loaded()["model"].forward = lambda *a, **k: pytest.fail("SAM ran without boxes")
    assert (src.segment(img).labels == 3).all()


def test_clipseg_batch_matches_one_prompt_at_a_time(tiny):
    src = make_region_source("concepts:sky,grass,rest", backend="clipseg", model=str(tiny["clipseg"]),
                             score_threshold="0", mask_threshold="0.45")
    img = photo(seed=2)
    both = src.backend.probabilities(img.rgb, ("sky", "grass"))
    assert both.shape == (2, *img.rgb.shape[:2]) and 0 < both.min() and both.max() < 1
    one = np.concatenate([src.backend.probabilities(img.rgb, (p,)) for p in ("sky", "grass")])
    np.testing.assert_allclose(both, one, atol=1e-5)
    rmap = src.segment(img)
    check_partition(rmap, ("sky", "grass", "rest"))
    expected = concept_labels(instances_from_probabilities(both, src.settings), src.settings, img.rgb.shape[:2])
    np.testing.assert_array_equal(rmap.labels, expected)


def test_cache_key_follows_prompts_options_and_folder_content(tiny, tmp_path):
    def key(model, spec="concepts:eye,ear,rest", **opts):
        return source_key(make_region_source(spec, backend="sam3", model=str(model), **opts), model_key="m1")

    base = key(tiny["sam3"])
    moved = tmp_path / "elsewhere" / "my-sam3"
    shutil.copytree(tiny["sam3"], moved)
    (moved / ".DS_Store").write_bytes(b"junk")  # hidden files are not model files
    assert key(moved) == base  # same content elsewhere: same regions
    assert key(tiny["sam3"], device="cuda:7") == base  # the device does not change the key (nothing loads)
    assert source_key(make_region_source("concepts:eye,ear,rest", backend="sam3", model=str(tiny["sam3"])),
                      model_key="another classifier") == base  # no class evidence is read
    assert key(tiny["sam3"], spec="concepts:eye,nose,rest") != base
    assert key(tiny["sam3"], spec="concepts:ear,eye,rest") != base  # the order is the vocabulary
    assert key(tiny["sam3"], sides="eye") != base
    assert key(tiny["sam3"], score_threshold="0.4") != base
    assert key(tiny["sam3"], rest="eye") != key(tiny["sam3"])  # another rest name is another partition
    from semcontrib.segmentation.concepts_tiny import save_tiny_sam3

    save_tiny_sam3(moved, seed=1)  # other weights in the same folder
    assert key(moved) != base


def test_source_pickles_without_its_loaded_model(tiny):
    src = make_region_source("concepts:sky,rest", backend="clipseg", model=str(tiny["clipseg"]), score_threshold="0")
    img = photo(seed=3)
    first = src.segment(img)
    blob = pickle.dumps(src)
    assert len(blob) < 20_000  # the weights are not in it (the worker loads its own copy)
    again = pickle.loads(blob)
    assert again.backend._loaded is None
    np.testing.assert_array_equal(again.segment(img).labels, first.labels)


# --------------------------------------------------------------------------- end to end


def test_analyze_cli_with_a_tiny_sam3_recomputes_on_new_prompts_or_weights(tiny, tmp_path, monkeypatch, capsys):
    """The acceptance check: ``semcontrib analyze PHOTOS --out C --regions concepts:"eye,ear,rest"
    --region-opt backend=sam3 --region-opt model=FOLDER`` with a tiny SAM 3 saved by save_pretrained;
    the vocabulary is the prompt list; other prompts, another model folder or sides recompute the regions.
    (``--workers 0``: regions in this process, so the test does not pay for worker processes importing
    transformers; the worker path is the pipeline's, tested there.)"""
    from PIL import Image

    from semcontrib.cli import main
    from semcontrib.corpus import Corpus
    from semcontrib.model import MODELS
    from semcontrib.segmentation.concepts_tiny import save_tiny_sam3
    from semcontrib.settings import DEFAULT_MODEL
    from tests.conftest import tiny_model

    monkeypatch.setitem(MODELS, DEFAULT_MODEL, lambda weights=None: tiny_model())  # no download
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(photo(40, 56, seed=i).rgb).save(photos / f"p{i}.png")
    other = save_tiny_sam3(tmp_path / "other-sam3", seed=5)
    out = tmp_path / "corpus"

    def analyze(spec: str, model: Path = tiny["sam3"], *opts: str) -> str:
        capsys.readouterr()
        extra = [a for o in opts for a in ("--region-opt", o)]
        assert main(["-q", "analyze", str(photos), "--out", str(out), "--methods", "gradcam", "--no-validity",
                     "--workers", "0", "--regions", spec, "--region-opt", "backend=sam3",
                     "--region-opt", f"model={model}", "--region-opt", "score_threshold=0", *extra]) == 0
        return capsys.readouterr().out

    assert "regions 2" in analyze('concepts:"eye,ear,rest"')  # the quotes a shell may leave are removed
    corpus = Corpus.open(out)
    regions = corpus.manifest["regions"]
    assert regions["name"] == "concepts" and regions["vocabulary"] == ["eye", "ear", "rest"]
    assert regions["params"]["prompts"] == ["eye", "ear", "rest"] and regions["params"]["backend"] == "sam3"
    assert set(corpus.contributions["region"]) == {"eye", "ear", "rest"}  # one row per region, present or not
    assert "regions 0" in analyze("concepts:eye,ear,rest")  # nothing changed: regions kept
    assert "regions 2" in analyze("concepts:eye,nose,rest")  # another prompt list
    assert Corpus.open(out).manifest["regions"]["vocabulary"] == ["eye", "nose", "rest"]
    assert "regions 2" in analyze("concepts:eye,nose,rest", other)  # another model folder (other weights)
    assert "regions 2" in analyze("concepts:eye,nose,rest", other, "sides=eye")
    assert Corpus.open(out).manifest["regions"]["vocabulary"] == ["left_eye", "right_eye", "nose", "rest"]


def test_analyze_cli_with_a_tiny_clipseg(tiny, tmp_path, monkeypatch, capsys):
    """The same command with ``backend=clipseg``: the light backend runs end to end too."""
    from PIL import Image

    from semcontrib.cli import main
    from semcontrib.corpus import Corpus
    from semcontrib.model import MODELS
    from semcontrib.settings import DEFAULT_MODEL
    from tests.conftest import tiny_model

    monkeypatch.setitem(MODELS, DEFAULT_MODEL, lambda weights=None: tiny_model())  # no download
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(photo(40, 56, seed=4).rgb).save(photos / "p.png")
    assert main(["-q", "analyze", str(photos), "--out", str(tmp_path / "c"), "--methods", "gradcam",
                 "--no-validity", "--workers", "0", "--regions", "concepts:sky,grass,rest",
                 "--region-opt", "backend=clipseg", "--region-opt", f"model={tiny['clipseg']}",
                 "--region-opt", "score_threshold=0", "--region-opt", "mask_threshold=0.45"]) == 0
    corpus = Corpus.open(tmp_path / "c")
    assert corpus.manifest["regions"]["vocabulary"] == ["sky", "grass", "rest"]
    assert corpus.manifest["regions"]["params"]["backend"] == "clipseg"
    assert (corpus.images.status == "ok").all() and len(corpus.images) == 1


def test_concepts_says_it_runs_torch_and_sources_built_on_it_say_so_too(tmp_path):
    """Workers give torch one thread when the source (or the source a ``parts`` foreground or a ``faces``
    person comes from) says ``uses_torch``; the pipeline never asks for a source by name."""
    import json

    src = make_region_source("concepts:cat,rest", backend=FakeBackend([[]]))
    assert src.uses_torch is True
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 6, "width": 8}],
                                 "categories": [{"id": 1, "name": "eye"}], "annotations": []}))
    parts = make_region_source(f"parts:boxes={boxes},foreground=concepts:cat,rest:cat",
                               **{"foreground.backend": FakeBackend([[]])})
    assert parts.foreground.name == "concepts" and parts.uses_torch is True
    assert make_region_source(f"parts:boxes={boxes},foreground=grid").uses_torch is False
