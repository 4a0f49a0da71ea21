"""Concept areas from a region source: hand-computed areas, failures recorded, the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.training import concept_areas, label_areas
from tests.training.helpers import write_images


def test_label_areas_by_hand():
    labels = np.array([[0, 0, 2], [1, -1, 2]])
    np.testing.assert_allclose(label_areas(labels, 4), [2 / 6, 1 / 6, 2 / 6, 0.0])
    assert label_areas(np.zeros((0, 0), np.int32), 2).tolist() == [0.0, 0.0]


def test_concept_areas_of_a_grid_record_failures_and_are_cached(tmp_path, monkeypatch):
    img = tmp_path / "img"
    write_images(img, ["a.jpg", "b.jpg"])
    (img / "bad.jpg").write_bytes(b"not an image")
    paths = [img / "a.jpg", img / "bad.jpg", img / "b.jpg"]
    out = concept_areas(paths, ["a", "bad", "b"], "grid:2x2", cache_dir=tmp_path / "cache")
    assert len(out.vocabulary) == 4 and out.source == "grid:2x2"
    np.testing.assert_allclose(out.areas[[0, 2]], 0.25)
    assert np.isnan(out.areas[1]).all() and set(out.reasons) == {1}
    assert len(list((tmp_path / "cache" / "concepts").rglob("*.npy"))) == 2

    from semcontrib.segmentation.grid import GridSource

    def broken(self, image):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(GridSource, "segment", broken)
    again = concept_areas([paths[0], paths[2]], ["a", "b"], "grid:2x2", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.areas, out.areas[[0, 2]])
    with pytest.raises(ValueError, match="image ids"):
        concept_areas(paths, ["a"], "grid")
