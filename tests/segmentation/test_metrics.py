"""Region quality against annotations: hand-computed cases and a per-pixel reference re-implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semcontrib.segmentation.metrics import format_quality, label_counts, region_quality, score_maps


def test_hand_computed_two_images():
    # image 1 (2x3): prediction names (eye, body, background); truth names (eye, nose, void)
    p1 = np.array([[0, 0, 1], [1, 2, 2]])
    t1 = np.array([[0, 1, 1], [-1, 2, 0]])
    # image 2 (1x4): prediction (body, eye) in another order; truth only nose
    p2 = np.array([[0, 0, 1, -1]])
    t2 = np.array([[0, 0, -1, 0]])
    q = region_quality([(p1, ["eye", "body", "background"], t1, ["eye", "nose", "void"]),
                        (p2, ["body", "eye"], t2, ["nose"])])
    assert q.scores.classes == ("eye", "nose", "body", "background")
    assert q.only_truth == ("nose",) and q.only_predicted == ("body", "background")
    # scored pixels: image 1: (0,0) eye->eye, (0,1) nose->eye, (0,2) nose->body, (1,2) eye->background
    #                image 2: (0,0) nose->body, (0,1) nose->body, (0,3) nose->unassigned (a miss)
    assert q.scores.n_pixels == 7
    assert q.scores.accuracy["eye"] == 0.5  # 1 of 2 eye pixels
    assert q.scores.iou["eye"] == pytest.approx(1 / 3)  # TP 1, truth 2, predicted eye on scored pixels 2
    assert q.scores.accuracy["nose"] == 0.0 and q.scores.iou["nose"] == 0.0
    assert math.isnan(q.scores.accuracy["body"]) and q.scores.iou["body"] == 0.0
    assert q.scores.overall_accuracy == pytest.approx(1 / 7)
    # shares over all 10 pixels of both images, whatever is annotated
    assert q.predicted_share == pytest.approx({"eye": 3 / 10, "nose": 0.0, "body": 4 / 10, "background": 2 / 10})
    assert q.truth_share == pytest.approx({"eye": 2 / 10, "nose": 5 / 10, "body": 0.0, "background": 0.0})
    assert q.n_images == 2 and q.n_image_pixels == 10


def reference(pairs, classes):
    """Per-pixel loops: accuracy = hits / annotated, IoU = hits / (annotated + predicted - hits) on
    annotated (non-void) pixels."""
    hits = dict.fromkeys(classes, 0)
    gt = dict.fromkeys(classes, 0)
    pr = dict.fromkeys(classes, 0)
    for pred, pnames, truth, tnames in pairs:
        for p, t in zip(pred.ravel(), truth.ravel()):
            if t < 0 or tnames[t] == "void":
                continue
            tn = tnames[t]
            pn = pnames[p] if p >= 0 else None
            gt[tn] += 1
            if pn in pr:
                pr[pn] += 1
            if pn == tn:
                hits[tn] += 1
    acc = {c: hits[c] / gt[c] if gt[c] else math.nan for c in classes}
    iou = {c: hits[c] / (gt[c] + pr[c] - hits[c]) if gt[c] + pr[c] else math.nan for c in classes}
    return acc, iou


def test_matches_a_per_pixel_reference_on_random_maps():
    rng = np.random.default_rng(7)
    pnames, tnames = ["a", "b", "c", "body"], ["c", "a", "b", "void", "nose"]
    pairs = [(rng.integers(-1, 4, (5, 6)), pnames, rng.integers(-1, 5, (5, 6)), tnames) for _ in range(3)]
    q = region_quality(pairs)
    acc, iou = reference(pairs, q.scores.classes)
    for c in q.scores.classes:
        np.testing.assert_equal(q.scores.accuracy[c], acc[c])
        np.testing.assert_allclose(q.scores.iou[c], iou[c])


def test_unassigned_predictions_are_misses_in_accuracy_and_iou():
    s = score_maps([(np.array([[0, -1, -1, 0]]), ["a"], np.array([[0, 0, 0, -1]]), ["a"])], ["a"])
    assert s.accuracy["a"] == pytest.approx(1 / 3) and s.iou["a"] == pytest.approx(1 / 3)
    assert s.annotated == (3,) and s.n_pixels == 3


def test_shares_of_a_partition_sum_to_its_assigned_fraction():
    rng = np.random.default_rng(3)
    pred = rng.integers(-1, 3, (20, 30))
    truth = rng.integers(-1, 2, (20, 30))
    q = region_quality([(pred, ["x", "y", "z"], truth, ["x", "y"])])
    assert sum(q.predicted_share.values()) == pytest.approx((pred >= 0).mean())
    assert sum(q.truth_share.values()) == pytest.approx((truth >= 0).mean())


def test_label_counts_and_bad_input():
    assert label_counts(np.array([[1, 1], [-1, 0]]), ["a", "b"]).tolist() == [1, 2]
    with pytest.raises(ValueError, match="only 2 names"):
        label_counts(np.array([[2]]), ["a", "b"])
    with pytest.raises(ValueError, match="differ in size"):
        region_quality([(np.zeros((2, 2), int), ["a"], np.zeros((2, 3), int), ["a"])])
    with pytest.raises(ValueError, match="at least one"):
        region_quality([])


def test_format_quality_lists_every_label_and_what_is_missing():
    q = region_quality([(np.array([[0, 1]]), ["eye", "body"], np.array([[0, 0]]), ["eye"])])
    text = format_quality(q)
    assert "| eye | 2 | 0.50 | 0.50 | 0.500 | 1.000 |" in text
    assert "| body | 0 | n/a | 0.00 | 0.500 | 0.000 |" in text
    assert "Only in the regions: body. Only in the annotations: none." in text
