"""``semcontrib regions-eval``: a corpus's region maps scored against annotations of the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from semcontrib.corpus import Corpus
from semcontrib.pipeline import analyze
from semcontrib.regions_eval import evaluate_corpus, report_record
from semcontrib.regions_eval import main as regions_eval
from tests.conftest import tiny_model


@pytest.fixture(scope="module")
def grid_corpus(tmp_path_factory):
    """Three 40x40 photographs analysed with 2x2 grid regions (r0c0 r0c1 / r1c0 r1c1) by a tiny model (S=32)."""
    root = tmp_path_factory.mktemp("reval")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{name}.png")
    analyze(root, root / "corpus", tiny_model(size=32), methods=["gradcam"], regions="grid:2x2",
            validity=False, workers=0)
    return root


def truth_file(root, images: dict[str, list[tuple[str, list[float]]]], size=(40, 40)) -> str:
    names = sorted({label for shapes in images.values() for label, _ in shapes})
    data = {"images": [{"id": i + 1, "file_name": f, "height": size[0], "width": size[1]}
                       for i, f in enumerate(images)],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)], "annotations": []}
    for i, shapes in enumerate(images.values()):
        for label, poly in shapes:
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": i + 1,
                                        "category_id": names.index(label) + 1, "segmentation": [poly]})
    path = root / "truth.json"
    path.write_text(json.dumps(data))
    return str(path)


def square(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_hand_computed_against_grid_regions(grid_corpus):
    # a.png: r0c0 drawn exactly on the top-left quadrant (a hit), "sky" over the top half (never predicted)
    # b.png: r0c1 drawn over the whole left column x 0..10 (all r0c0 / r1c0 in the corpus: misses)
    truth = truth_file(grid_corpus, {"a.png": [("r0c0", square(0, 0, 20, 20)), ("sky", square(20, 0, 40, 20))],
                                     "b.png": [("r0c1", square(0, 0, 10, 40))]})
    ev = evaluate_corpus(Corpus.open(grid_corpus / "corpus"), truth)
    q = ev.quality
    assert q is not None and q.n_images == 2
    assert q.scores.accuracy["r0c0"] == 1.0
    # b's r0c1 column (x 0..10) is r0c0 in its top half (200 px) and r1c0 below: r0c0 IoU 400 / (400 + 200)
    assert q.scores.iou["r0c0"] == pytest.approx(2 / 3)
    assert q.scores.accuracy["r0c1"] == 0.0
    # r0c1 predicted on a's sky quadrant (400 px, annotated sky): IoU = 0 / (400 annotated + 400 predicted)
    assert q.scores.iou["r0c1"] == 0.0 and q.scores.accuracy["sky"] == 0.0
    assert q.only_truth == ("sky",) and set(q.only_predicted) == {"r1c0", "r1c1"}
    assert q.predicted_share["r0c0"] == pytest.approx(0.25)  # of all pixels of the two images
    assert q.truth_share["r0c0"] == pytest.approx(400 / 3200)
    assert q.truth_share["r0c1"] == pytest.approx(400 / 3200)
    assert sorted(i.split("-")[0] for i in ev.per_image) == ["a", "b"]
    assert [i.split("-")[0] for i, _ in ev.skipped] == ["c"]
    assert "has no annotations" in ev.skipped[0][1]
    a = next(i for i in ev.per_image if i.startswith("a"))
    assert ev.per_image[a] == (0.5, 0.5)  # r0c0 right, sky wrong; mean IoU of (1.0, 0.0)
    record = report_record(ev)
    assert record["labels"]["r1c0"]["pixel_accuracy"] is None  # NaN (never annotated) -> null
    assert record["labels"]["r0c0"]["iou"] == pytest.approx(2 / 3, abs=1e-6)
    assert record["images_compared"] == 2


def test_cli_prints_and_writes_the_report(grid_corpus, capsys):
    truth = truth_file(grid_corpus, {"a.png": [("r0c0", square(0, 0, 20, 20))]})
    out = grid_corpus / "report"
    assert regions_eval([str(grid_corpus / "corpus"), "--truth", truth, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| r0c0 | 400 | 1.00 | 1.00 | 0.250 | 0.250 |" in text
    assert "Only in the regions: r0c1, r1c0, r1c1" in text
    saved = json.loads((out / "regions_quality.json").read_text())
    assert saved["labels"]["r0c0"]["annotated_pixels"] == 400
    assert (out / "regions_quality.md").read_text().startswith("# Region quality of `grid:2x2`")


def test_bad_truth_and_no_match(grid_corpus, capsys):
    with pytest.raises(ValueError, match="annotation path not found"):
        regions_eval([str(grid_corpus / "corpus"), "--truth", str(grid_corpus / "nope.json")])
    other = truth_file(grid_corpus, {"zzz.png": [("r0c0", square(0, 0, 20, 20))]})
    assert regions_eval([str(grid_corpus / "corpus"), "--truth", other]) == 2
    assert "No image of the corpus could be compared" in capsys.readouterr().out
    wrong_size = truth_file(grid_corpus, {"a.png": [("r0c0", square(0, 0, 20, 20))]}, size=(30, 40))
    ev = evaluate_corpus(Corpus.open(grid_corpus / "corpus"), wrong_size)
    assert ev.quality is None and any("size mismatch" in r for _, r in ev.skipped)


def test_semcontrib_command_runs_it(grid_corpus, capsys):
    from semcontrib.cli import main

    truth = truth_file(grid_corpus, {"b.png": [("r1c1", square(20, 20, 40, 40))]})
    assert main(["regions-eval", str(grid_corpus / "corpus"), "--truth", truth]) == 0
    assert "| r1c1 | 400 | 1.00 | 1.00 |" in capsys.readouterr().out
    assert main(["regions-eval", str(grid_corpus / "corpus"), "--truth", str(grid_corpus / "nope.json")]) == 2
    assert "semcontrib regions-eval: error: annotation path not found" in capsys.readouterr().err
