"""Metrics against hand computations; report files; the comparison table."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.training.evaluation import (
    compare_reports,
    evaluate_logits,
    load_report,
    task_metrics,
    write_comparison,
    write_report,
)


def test_task_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2, -1])
    y_pred = np.array([0, 0, 1, 1, 0, 2, 2])
    m = task_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.confusion == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert m.support == [3, 2, 1]
    # F1 per class: a: p=2/3 r=2/3 -> 2/3; b: p=1/2 r=1/2 -> 1/2; c: 1
    assert m.f1_weighted == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1 * 1) / 6)
    assert m.f1_macro == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m.majority_class == "a" and m.majority_accuracy == pytest.approx(0.5)
    # the baseline uses training counts when given
    m2 = task_metrics(y_true, y_pred, ["a", "b", "c"], baseline_counts={"a": 1, "b": 5, "c": 0})
    assert m2.majority_class == "b" and m2.majority_accuracy == pytest.approx(2 / 6)


def test_task_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        task_metrics(np.array([0, 1]), np.array([0]), ["a", "b"])
    with pytest.raises(ValueError, match="only 2 classes"):
        task_metrics(np.array([0, 2]), np.array([0, 1]), ["a", "b"])
    empty = task_metrics(np.array([-1, -1]), np.array([0, 1]), ["a", "b"])
    assert empty.n == 0 and np.isnan(empty.accuracy)


def _report(shift: float = 0.0, backbone: str = "resnet18"):
    logits = {"t1": np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0 + shift], [0.0, 2.0]]),
              "t2": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])}
    targets = np.array([[0, 0], [1, 1], [1, 2], [1, -1]])
    return evaluate_logits(logits, targets, ["t1", "t2"], {"t1": ("no", "yes"), "t2": ("x", "y", "z")},
                           image_ids=["a", "b", "c", "d"], meta={"backbone": backbone, "subset": "test"},
                           label_report={"n_rows": 5, "n_examples": 4, "counts": {"unknown_id": 1},
                                         "examples": {"unknown_id": ["zz"]}})


def test_evaluate_logits_means_and_predictions():
    r = _report()
    assert r.tasks["t1"].accuracy == pytest.approx(0.75)
    assert r.tasks["t2"].accuracy == pytest.approx(1.0) and r.tasks["t2"].n == 3
    assert r.mean_accuracy == pytest.approx(0.875)
    assert r.mean_f1 == pytest.approx((r.tasks["t1"].f1_weighted + 1.0) / 2)
    assert r.predictions[3]["t2"] == {"true": None, "pred": "x"}
    with pytest.raises(ValueError, match="no logits"):
        evaluate_logits({}, np.zeros((1, 1), int), ["t"], {"t": ("a", "b")})


def test_report_files_roundtrip_and_comparison(tmp_path):
    r1, r2 = _report(0.0, "resnet18"), _report(2.0, "densenet121")
    files = write_report(r1, tmp_path / "r1", history={"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
                                                       "best_epoch": 1})
    write_report(r2, tmp_path / "r2")
    for key in ("json", "markdown", "html", "metrics", "history", "t1", "t2"):
        assert files[key].is_file()
    md = files["markdown"].read_text()
    assert "| t1 | 4 | 0.750 |" in md and "unknown_id" in md and "confusion" in md
    back = load_report(tmp_path / "r1")
    assert back.tasks["t1"].confusion == r1.tasks["t1"].confusion
    table = compare_reports({"r1": back, "r2": load_report(tmp_path / "r2" / "report.json")})
    assert list(table.index) == ["r1", "r2"]
    assert table.loc["r2", "backbone"] == "densenet121"
    assert table.loc["r2", "t1 accuracy"] == pytest.approx(1.0)
    out = write_comparison({"r1": back, "r2": r2}, tmp_path / "cmp")
    assert "densenet121" in out["markdown"].read_text()
    assert "<table>" in out["html"].read_text()
    with pytest.raises(ValueError, match="at least one"):
        compare_reports({})
    (tmp_path / "bogus.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a semcontrib evaluation report"):
        load_report(tmp_path / "bogus.json")


def test_report_loss_equals_the_training_loss():
    import torch

    from semcontrib.training import task_balanced_loss as torch_loss
    from semcontrib.training.evaluation import task_balanced_loss

    rng = np.random.default_rng(0)
    logits = {"a": rng.normal(size=(7, 2)), "b": rng.normal(size=(7, 4)) * 3}
    targets = np.stack([rng.integers(0, 2, 7), rng.integers(-1, 4, 7)], 1)
    expected = float(torch_loss({k: torch.from_numpy(v) for k, v in logits.items()}, torch.from_numpy(targets),
                                ["a", "b"]))
    assert task_balanced_loss(logits, targets, ["a", "b"]) == pytest.approx(expected, rel=1e-6)
    report = evaluate_logits(logits, targets, ["a", "b"], {"a": ("x", "y"), "b": ("p", "q", "r", "s")})
    assert report.loss == pytest.approx(expected, rel=1e-6)
    assert np.isnan(task_balanced_loss(logits, np.full((7, 2), -1), ["a", "b"]))


def test_concept_metrics_by_hand():
    from semcontrib.training.evaluation import concept_metrics

    presence = np.array([[0.9, 0.2, 0.5], [0.8, 0.6, 0.5], [0.1, 0.4, 0.5], [np.nan, 0.0, 0.0]])
    areas = np.array([[0.5, 0.0, 0.2], [0.3, 0.05, 0.3], [0.0, 0.2, 0.1], [0.5, 0.5, 0.5]])
    m = concept_metrics(presence, areas, ("sky", "water", "built"), min_area=0.1)
    # sky: positives ranked first -> AP 1; water: truth [0, 0, 1] with scores .2 .6 .4 -> precision 1/2 at
    # the positive; built: always present -> undefined
    assert m["average_precision"] == {"sky": 1.0, "water": 0.5, "built": None}
    assert m["mean_average_precision"] == 0.75 and m["n"] == 3
    assert m["prevalence"]["sky"] == pytest.approx(2 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="N x 3"):
        concept_metrics(presence[:, :2], areas, ("sky", "water", "built"), 0.1)


def test_comparison_table_has_loss_accuracy_f1_and_inference_time():
    from semcontrib.training.evaluation import plain_comparison

    targets = np.array([[0], [1], [1], [0]])
    good = evaluate_logits({"t": np.array([[2.0, 0], [0, 2], [0, 2], [2, 0]])}, targets, ["t"], {"t": ("a", "b")},
                           meta={"backbone": "efficientnet_lite0", "ms_per_image": 12.5, "device": "cpu"})
    bad = evaluate_logits({"t": np.array([[0.0, 1], [0, 1], [0, 1], [0, 1]])}, targets, ["t"], {"t": ("a", "b")},
                          meta={"backbone": "efficientnet_lite1", "ms_per_image": 20.0, "device": "cpu"})
    df = compare_reports({"lite0": good, "lite1": bad})
    for col in ("test_loss", "t accuracy", "mean_accuracy", "mean_f1", "ms_per_image"):
        assert col in df.columns
    assert df.loc["lite0", "ms_per_image"] == 12.5 and df.loc["lite1", "mean_accuracy"] == 0.5
    assert df.loc["lite0", "test_loss"] < df.loc["lite1", "test_loss"]
    cost = plain_comparison(bad, good)
    assert cost["mean_cost"] == 0.5 and cost["tasks"]["t"]["cost"] == 0.5
