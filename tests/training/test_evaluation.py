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
