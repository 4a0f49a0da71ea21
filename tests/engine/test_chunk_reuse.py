"""The pure helpers of per-image reuse: a chunk's record for some of its images, and stored statistics
fitted to a vocabulary grown (or shrunk) at its end."""

from __future__ import annotations

import numpy as np

from semcontrib.corpus import HeadAttribution, RegionWork
from semcontrib.engine.chunk import ChunkImages, resized, subset, with_stats
from semcontrib.store.records import image_digest


def test_subset_keeps_the_targets_pixels_and_labels_of_the_images_asked_for_in_order():
    data = ChunkImages(["a", "b", "c"], {"a": np.zeros(1), "c": np.ones(1)},
                       {"h": np.array([5, 6, 7])}, {"b": np.full((2, 2), 1), "c": np.full((2, 2), 2)})
    part = subset(data, ["a", "c"])
    assert part.ok == ["a", "c"]
    assert part.targets["h"].tolist() == [5, 7]
    assert set(part.rgb) == {"a", "c"} and set(part.labels) == {"c"}
    assert subset(data, ["a", "b", "c"]) is data
    assert subset(data, []).targets["h"].tolist() == []


def test_resized_statistics_equal_those_computed_with_the_grown_vocabulary():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 6))
    labels = rng.integers(-1, 3, size=(6, 6))
    a = HeadAttribution(1, "ok", values)
    stored = with_stats(a, labels, 3)
    for K in (3, 5):
        got, want = resized(stored, K), with_stats(a, labels, K)
        assert got is not None and got.stats is not None and want.stats is not None
        for f in ("n_pixels", "sum", "pos_sum", "neg_sum", "unassigned"):
            assert np.array_equal(getattr(got.stats, f), getattr(want.stats, f)), (K, f)
        assert got.stats.total == want.stats.total
    assert resized(stored, 3) is stored
    shrunk = resized(with_stats(a, labels, 5), 3)  # regions dropped from the end hold no pixel here
    assert shrunk is not None and shrunk.stats is not None and np.array_equal(shrunk.stats.sum, stored.stats.sum)
    assert resized(stored, 2) is None  # region 2 holds pixels: the statistics cannot be dropped


def test_resized_leaves_region_scores_and_failures_alone():
    labels = np.array([[0, 1], [1, -1]])
    scored = with_stats(HeadAttribution(0, "ok", np.zeros((2, 2)), scores=np.array([1.0, 2.0])), labels, 2)
    assert resized(scored, 3) is None  # a region method's scores may depend on the vocabulary: recomputed
    failed = HeadAttribution(0, "nonfinite")
    assert resized(failed, 7) is failed


def test_image_digest_follows_the_map_and_the_failure_not_the_chunk():
    lab = np.zeros((4, 4), np.int16)
    d = image_digest("a", RegionWork(lab))
    assert d == image_digest("a", RegionWork(lab.astype(np.int32).copy()))
    other = lab.copy()
    other[0, 0] = 1
    assert len({d, image_digest("b", RegionWork(lab)), image_digest("a", RegionWork(other)),
                image_digest("a", RegionWork(np.zeros((2, 8), np.int16))),
                image_digest("a", RegionWork(None, "bad")), image_digest("a", RegionWork(None, "bad", False))}) == 6
