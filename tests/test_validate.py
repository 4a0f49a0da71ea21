"""``semcontrib validate``: the report on a tiny corpus analysed by the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semcontrib import validate as V
from semcontrib import validity_inputs as I
from semcontrib import validity_randomisation as R
from semcontrib.attribution import AttributionResult
from semcontrib.corpus import Corpus
from semcontrib.model import predict
from semcontrib.validity import ValidityConfig, spearman
from tests.conftest import synthetic_rgb, tiny_model


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    from semcontrib.pipeline import analyze

    root = tmp_path_factory.mktemp("validate")
    rng = np.random.default_rng(7)
    (root / "images").mkdir()
    for i in range(5):
        Image.fromarray(synthetic_rgb(rng, 40, 48)).save(root / "images" / f"im{i}.png")
    analyze(root / "images", root / "corpus", model=tiny_model(), methods=["gradcam", "ig"],
            method_params={"ig": {"n_steps": 4}}, regions="grid:3x3", batch_size=5, validity=False)
    return root / "corpus"


def test_pure_summaries():
    s = V.summarise(np.array([1.0, np.nan, 3.0, 2.0]))
    assert s == {"median": 2.0, "q1": 1.5, "q3": 2.5, "n": 3, "n_nan": 1}
    assert V.summarise(np.array([np.nan]))["median"] is None
    assert V.anti_correlated_share(np.array([-0.5, 0.2, np.nan, 0.9, -0.1])) == 0.5
    assert V.anti_correlated_share(np.array([np.nan])) is None
    a = np.array([[1.0, 2, 3, 4], [1.0, 2, 3, 4]])
    b = np.array([[1.0, 3, 2, 9], [4.0, 3, 2, 1]])
    present = np.array([[True, True, True, True], [True, True, False, False]])
    rho = R.rowwise_spearman(a, b, present)
    assert rho[0] == pytest.approx(spearman(a[0], b[0])) and np.isnan(rho[1])  # 2 regions: undefined


def test_report_with_model_computes_validity_agreement_and_randomisation(tiny_corpus, tmp_path):
    corpus = Corpus.open(tiny_corpus)
    model = tiny_model()
    before = predict(model, torch.ones(1, 3, 32, 32)).logits
    config = V.ValidateConfig(sample=3, stages=1, validity=ValidityConfig(baseline="mean"))
    report = V.build_report(corpus, config, model=model)
    after = predict(model, torch.ones(1, 3, 32, 32)).logits
    for h in before:  # the check randomises a copy
        np.testing.assert_array_equal(before[h], after[h])
    assert report["validity"].startswith("computed by validate")
    assert report["randomisation"]["status"] == "done"
    assert report["randomisation"]["steps"] == ["heads", "backbone.conv2"]
    assert {(e["head"], e["method"]) for e in report["entries"]} == {
        (h, m) for h in ("task_a", "task_b") for m in ("gradcam", "ig")}
    for e in report["entries"]:
        assert e["faithfulness"]["n"] == 5 and -1 <= e["faithfulness"]["median"] <= 1
        assert 0 <= e["deletion_auc"]["median"] <= 1 and 0 <= e["insertion_auc"]["median"] <= 1
        assert set(e["agreement"]) == {"gradcam", "ig"} - {e["method"]}
        assert len(e["randomisation"]["median_spearman"]) == 2
        assert len(e["randomisation"]["complexity_ratio"]) == 2
        assert all(r is None or r >= 0 for r in e["randomisation"]["complexity_ratio"])
        for side in ("morf", "lerf"):
            assert e["gain_over_random"][side]["n"] >= 1
    files = V.write_report(report, tmp_path / "r")
    data = json.loads(files["json"].read_text())
    assert len(data["entries"]) == 4
    assert "Model randomisation" in files["markdown"].read_text()
    html = files["html"].read_text()
    assert "data:image/png;base64" in html and "semcontrib validity" in html
    assert (tmp_path / "r" / "randomisation.png").is_file()


def test_computed_validity_marks_occlusion_circular_under_blur_only(tmp_path):
    from semcontrib.pipeline import analyze

    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.fromarray(synthetic_rgb(rng, 40, 48)).save(tmp_path / "images" / f"im{i}.png")
    analyze(tmp_path / "images", tmp_path / "corpus", model=tiny_model(), methods=["occlusion", "gradcam"],
            regions="grid:3x3", batch_size=3, validity=False)
    corpus = Corpus.open(tmp_path / "corpus")
    blur = V.build_report(corpus, V.ValidateConfig(sample=0, validity=ValidityConfig(baseline="blur")),
                          model=tiny_model())
    circ = {(e["head"], e["method"]): e["circular"] for e in blur["entries"]}
    assert circ[("task_a", "occlusion")]
    assert not circ[("task_a", "gradcam")]
    occ = next(e for e in blur["entries"] if e["method"] == "occlusion")
    assert occ["faithfulness"]["median"] == pytest.approx(1.0)  # by construction: why it is not ranked
    assert blur["ranking"]["task_a"]["not_ranked"] == {"occlusion": "circular"}
    road = V.build_report(corpus, V.ValidateConfig(sample=0), model=tiny_model())  # the independent default
    assert not any(e["circular"] for e in road["entries"])
    assert {m for m, _ in road["ranking"]["task_a"]["ranked"]} == {"occlusion", "gradcam"}
    for e in road["entries"]:
        assert e["random_auc"]["n"] == 3
        assert e["gain_over_random"]["lerf"]["n"] == 3


def test_report_agreement_matches_the_contribution_table(tiny_corpus):
    corpus = Corpus.open(tiny_corpus)
    report = V.build_report(corpus, V.ValidateConfig(sample=0, basis="sum"), model=tiny_model())
    e = next(e for e in report["entries"] if e["head"] == "task_a" and e["method"] == "gradcam")
    a = corpus.contribution_table("task_a", "gradcam", basis="sum", wide=True).set_index("image_id")
    b = corpus.contribution_table("task_a", "ig", basis="sum", wide=True).set_index("image_id").loc[a.index]
    cols = corpus.vocabulary
    ref = np.median([spearman(a.loc[i, cols].to_numpy(float), b.loc[i, cols].to_numpy(float)) for i in a.index])
    assert e["agreement"]["ig"] == pytest.approx(ref)
    assert report["randomisation"] == {"status": "skipped", "reason": "sample 0"}


class _ModelBlindMethod:
    """A 'method' that ignores the model: the image's brightness."""

    level = "pixel"

    def attribute_batch(self, model, tensor, targets):
        return {h: AttributionResult(tensor.sum(1).numpy().astype(np.float32)) for h in targets}


def test_randomisation_flags_a_method_that_ignores_the_model(tiny_corpus, monkeypatch):
    corpus = Corpus.open(tiny_corpus)
    real = R.make_corpus_method
    monkeypatch.setattr(R, "make_corpus_method",
                        lambda c, m, o=None: _ModelBlindMethod() if m == "ig" else real(c, m, o))
    report = V.build_report(corpus, V.ValidateConfig(sample=4, stages=1), model=tiny_model())
    flags = {(e["head"], e["method"]): e["randomisation"]["flagged"] for e in report["entries"]}
    assert flags[("task_a", "ig")] and flags[("task_b", "ig")]
    assert not flags[("task_a", "gradcam")] and not flags[("task_b", "gradcam")]
    ig = next(e for e in report["entries"] if e["method"] == "ig")
    assert ig["randomisation"]["median_spearman"] == [1.0, 1.0]
    assert ig["randomisation"]["complexity_ratio"] == pytest.approx([1.0, 1.0])  # eMPRT: no change either


def test_stored_validity_is_read_and_unloadable_model_skips_randomisation(tiny_corpus, tmp_path, monkeypatch):
    corpus = Corpus.open(tiny_corpus)
    att = corpus.attributions.copy()
    att["faithfulness"] = np.linspace(-0.5, 1.0, len(att))
    att["deletion_auc"] = 0.25
    att["insertion_auc"] = 0.75
    att["lerf_auc"] = 0.75
    att["random_auc"] = 0.5
    att["validity_note"] = np.where(att["method"] == "ig", "circular: ig scores with the blur perturbation", "")
    monkeypatch.setattr(type(corpus), "attributions", property(lambda self: att))  # a read-on-first-use property
    corpus.manifest = {**corpus.manifest, "validity": {"baseline": "blur"}}  # as an analysis with validity
    report = V.build_report(corpus, V.ValidateConfig(sample=2))
    assert report["validity"] == "stored in the corpus"
    assert report["randomisation"]["status"] == "skipped"
    assert "tiny-0-True" in report["randomisation"]["reason"]
    e = report["entries"][0]
    sub = att[(att["head"] == e["head"]) & (att["method"] == e["method"])]
    assert e["faithfulness"]["median"] == pytest.approx(float(np.median(sub["faithfulness"])))
    assert e["anti_correlated_share"] == pytest.approx(float(np.mean(sub["faithfulness"] < 0)))
    assert e["deletion_auc"]["median"] == 0.25
    assert e["gain_over_random"]["morf"]["median"] == pytest.approx(0.25)  # random - MoRF
    assert e["gain_over_random"]["lerf"]["median"] == pytest.approx(0.25)  # LeRF - random
    assert "skipped" in e["randomisation"]
    circ = {(x["head"], x["method"]): x["circular"] for x in report["entries"]}
    assert circ[("task_a", "ig")]
    assert not circ[("task_a", "gradcam")]
    for h in ("task_a", "task_b"):  # the circular method is listed apart, never ranked
        assert [m for m, _ in report["ranking"][h]["ranked"]] == ["gradcam"]
        assert report["ranking"][h]["not_ranked"] == {"ig": "circular"}
    files = V.write_report(report, tmp_path / "r2")
    md = files["markdown"].read_text()
    assert "Skipped:" in md
    assert sum("(circular: not evidence)" in line for line in md.splitlines() if line.startswith("| ig ")) == 2
    assert not any("circular: not" in line for line in md.splitlines() if line.startswith("| gradcam "))
    assert not (tmp_path / "r2" / "randomisation.png").exists()
    assert "not ranked: ig (circular)" in md


@pytest.mark.parametrize("module", [V, R])
def test_docstring_examples(module):
    import doctest

    result = doctest.testmod(module)
    assert result.attempted >= 1
    assert result.failed == 0


def test_command_writes_the_report(tiny_corpus, tmp_path, capsys):
    assert V.main([str(tiny_corpus), "-o", str(tmp_path / "out"), "--sample", "0"]) == 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(data["entries"]) == 4
    assert data["config"]["validity"]["baseline"] == "road"  # the independent default
    assert V.main([str(tiny_corpus), "-o", str(tmp_path / "full"), "--sample", "0", "--validity-baseline", "blur",
                   "--validity-steps", "0", "--validity-random-samples", "9"]) == 0
    cfg = json.loads((tmp_path / "full" / "report.json").read_text())["config"]["validity"]
    assert (cfg["baseline"], cfg["steps"], cfg["random_samples"]) == ("blur", 0, 9)
    assert "report:" in capsys.readouterr().out


def test_truth_adds_the_region_quality_section(tiny_corpus, tmp_path):
    truth = tmp_path / "truth.json"  # im0.png (48 wide, 40 high): its top-left cell annotated as top_left
    truth.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "im0.png", "height": 40, "width": 48}],
        "categories": [{"id": 1, "name": "top_left"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 16, 0, 16, 13, 0, 13]]}]}))
    assert V.main([str(tiny_corpus), "-o", str(tmp_path / "out"), "--sample", "0", "--truth", str(truth)]) == 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["region_quality"]["record"]["images_compared"] == 1
    assert data["region_quality"]["record"]["labels"]["top_left"]["iou"] > 0.5
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Region quality against annotations" in md
    assert "\n## Region quality of" in md  # regions-eval's own title, one level down
    assert V.main([str(tiny_corpus), "-o", str(tmp_path / "bad"), "--sample", "0",
                   "--truth", str(tmp_path / "nope.json")]) == 0  # a bad annotation file: said, report goes on
    bad = json.loads((tmp_path / "bad" / "report.json").read_text())["region_quality"]
    assert "nope.json" in bad["skipped"] or "no such" in bad["skipped"].lower()


def test_complexity_and_emprt_ratio_hand_computed():
    present = np.ones((3, 4), bool)
    v = np.array([[1.0, -1.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(R.complexity(v, present), [np.log(2), np.log(4), 0.0], atol=1e-12)
    only_two = np.array([[True, True, False, False]] * 3)
    np.testing.assert_allclose(R.complexity(v, only_two)[:2], [np.log(2), np.log(2)])  # absent regions ignored
    assert np.isnan(R.complexity(np.zeros((1, 4)), present[:1])[0])
    rand = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    ratio = R.complexity_ratio(v, rand, present)
    assert ratio[0] == pytest.approx(2.0)  # ln 4 / ln 2: the explanation spread out
    assert ratio[1] == pytest.approx(0.0)  # ln 1 / ln 4: it collapsed onto one region
    assert np.isnan(ratio[2])  # before: one region, entropy 0: no ratio


def test_smoothing_averages_over_seeded_noisy_copies(tiny_corpus):
    corpus = Corpus.open(tiny_corpus)
    model = tiny_model()
    used, tensor, labels, _ = I.load_tensor(corpus, model, corpus.image_ids()[:2])
    targets = {h: torch.from_numpy(np.maximum(t, 0)) for h, t in I.targets_table(corpus, used).items()}
    method = I.make_corpus_method(corpus, "gradcam")
    vocab = tuple(corpus.vocabulary)
    plain = I.region_vectors(model, method, tensor, targets, labels, vocab, basis="sum")
    one = R.smoothed_vectors(model, method, R.noisy_copies(tensor, 3, 0.0, 0), targets, labels, vocab, basis="sum")
    for h in plain:
        np.testing.assert_allclose(one[h], plain[h])  # no noise: plain MPRT
    copies = R.noisy_copies(tensor, 3, 0.1, 5)
    assert len(copies) == 3 and not torch.equal(copies[0], copies[1])
    assert all(torch.equal(a, b) for a, b in zip(copies, R.noisy_copies(tensor, 3, 0.1, 5)))
    spread = float((tensor.max() - tensor.min()) * 0.1)
    assert float((copies[0] - tensor).std()) == pytest.approx(spread, rel=0.1)
    smooth = R.smoothed_vectors(model, method, copies, targets, labels, vocab, basis="sum")
    each = [I.region_vectors(model, method, x, targets, labels, vocab, basis="sum") for x in copies]
    for h in smooth:
        np.testing.assert_allclose(smooth[h], np.mean([e[h] for e in each], axis=0), rtol=1e-6, atol=1e-9)


def test_bad_config():
    with pytest.raises(ValueError, match="basis"):
        V.ValidateConfig(basis="median")
    with pytest.raises(ValueError, match="sample"):
        V.ValidateConfig(sample=-1)
    with pytest.raises(ValueError, match="noise_samples"):
        V.ValidateConfig(noise_samples=0)
    with pytest.raises(ValueError, match="noise_magnitude"):
        V.ValidateConfig(noise_magnitude=1.5)
