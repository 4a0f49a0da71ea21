"""The bundled photographs: real images that install offline, written as files for the demo."""

from __future__ import annotations

from PIL import Image

from semcontrib.demo import DEMO_IMAGES, write_demo_images


def test_write_demo_images(tmp_path) -> None:
    paths = write_demo_images(tmp_path / "photos")
    assert len(paths) == len(DEMO_IMAGES) >= 10
    assert len({p.stem for p in paths}) == len(paths)  # one file per stem (external heatmaps key on it)
    for p in paths:
        with Image.open(p) as img:
            assert min(img.size) >= 64
    again = write_demo_images(tmp_path / "photos")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_parts_demo_spec_builds_a_parts_corpus_of_the_portraits(tmp_path) -> None:
    """``semcontrib demo --regions parts``: the shipped part annotations cut to landscape's animal and person
    regions; per-part contributions of the portrait, body/background only for a photograph without parts."""
    import numpy as np

    from semcontrib.corpus import Corpus
    from semcontrib.demo import DEMO_IMAGES, demo_regions
    from semcontrib.pipeline import analyze
    from semcontrib.segmentation import make_region_source
    from tests.conftest import tiny_model

    spec, folder = demo_regions("parts")
    assert folder == "corpus-parts" and demo_regions(None) == ("landscape", "corpus")
    assert make_region_source(spec).vocabulary == (
        "face", "left_ear", "left_eye", "mouth", "nose", "right_eye", "body", "background")
    for name in ("astronaut", "coffee"):
        Image.fromarray(DEMO_IMAGES[name][0]()).save(tmp_path / f"{name}.png")
    analyze(tmp_path, tmp_path / folder, tiny_model(size=64), methods=["gradcam"], regions=spec,
            validity=False, batch_size=2, workers=0)
    corpus = Corpus.open(tmp_path / folder)
    table = corpus.contribution_table(head="task_a", method="gradcam")
    present = {(i.split("-")[0], r) for i, r, n in zip(table["image_id"], table["region"], table["n_pixels"]) if n > 0}
    # the tiny model has no ImageNet head, so no class evidence: the astronaut is `person` by the face cue
    assert {("astronaut", p) for p in ("face", "left_eye", "right_eye", "nose", "mouth", "body")} <= present
    assert {r for i, r in present if i == "coffee"} <= {"body", "background"}
    astronaut = next(i for i in corpus.image_ids() if i.startswith("astronaut"))
    rmap = corpus.region_map(astronaut)
    cols = {n: np.nonzero(rmap.labels == rmap.names.index(n))[1].mean() for n in ("left_eye", "right_eye")}
    assert cols["left_eye"] > cols["right_eye"]  # the subject's left eye is on the picture's right
