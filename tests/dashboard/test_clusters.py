"""What a group is: distinguishing regions with intervals, prototypes and a short label (hand-computed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from semcontrib.dashboard import clusters


def test_difference_interval_and_effect_size_by_hand() -> None:
    # sky: group 1, 3, 5 (mean 3, var 4); rest 0, 2 (mean 1, var 2); person: constant on both sides
    v = np.array([[0.01, 0.2], [0.03, 0.2], [0.05, 0.2], [0.0, 0.2], [0.02, 0.2], [np.nan, 0.2]])
    group = np.array([1, 1, 1, 0, 0, 1], bool)  # the NaN row is left out
    t = clusters.distinguishing_regions(v, ["sky", "person"], group, ~group)
    sky = t.set_index("column").loc["sky"]
    assert sky["difference"] == pytest.approx(0.02)
    half = 1.959963984540054 * np.sqrt(0.0004 / 3 + 0.0002 / 2)
    assert (sky["ci_low"], sky["ci_high"]) == pytest.approx((0.02 - half, 0.02 + half))
    pooled = np.sqrt((2 * 0.0004 + 1 * 0.0002) / 3)
    assert sky["effect_size"] == pytest.approx(0.02 / pooled)
    assert (sky["n_group"], sky["n_rest"]) == (3, 2)
    person = t.set_index("column").loc["person"]
    assert person["difference"] == pytest.approx(0) and person["effect_size"] == 0
    assert t["column"].tolist() == ["sky", "person"]  # largest |effect| first


def test_one_image_on_a_side_has_no_interval_and_bad_shapes_are_refused() -> None:
    t = clusters.distinguishing_regions(np.array([[1.0], [0.0], [0.5]]), ["sky"], np.array([1, 0, 0], bool),
                                        np.array([0, 1, 1], bool))
    assert np.isnan(t.loc[0, "ci_low"]) and t.loc[0, "difference"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="values must be N x 2"):
        clusters.distinguishing_regions(np.zeros((3, 1)), ["a", "b"], np.ones(3, bool), np.ones(3, bool))


def test_prototypes_are_the_members_closest_to_the_mean_direction() -> None:
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071], [0.6, 0.8], [-1.0, 0.0]])
    group = np.array([True, True, True, True, False])
    assert clusters.prototypes(X, group, k=2).tolist() == [2, 3]  # mean direction ~ (0.58, 0.63)
    assert clusters.prototypes(X, np.zeros(5, bool)).tolist() == []
    with pytest.raises(ValueError, match="k must be >= 1"):
        clusters.prototypes(X, group, k=0)


def test_short_label_names_clear_differences_only() -> None:
    t = pd.DataFrame({"column": ["sky", "person", "road"], "difference": [0.2, -0.3, 0.5],
                      "ci_low": [0.1, -0.5, -0.1], "ci_high": [0.3, -0.1, 1.1], "effect_size": [0.8, -1.4, 2.0]})
    assert clusters.short_label(t) == "person −, sky +"  # road's interval holds 0
    assert clusters.short_label(t, top=1) == "person −"
    assert clusters.short_label(t.iloc[2:]) == "no clear difference"


def test_clusters_and_outliers() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 40)
    X = np.eye(3)[labels] + rng.normal(0, 0.05, (120, 3))
    X = np.vstack([X, [[5.0, 5.0, -5.0]]])
    km = clusters.suggest_clusters(X[:120], "kmeans", 3)
    assert pd.crosstab(km, labels).max(axis=0).sum() == 120  # every true group is one cluster
    hd = clusters.suggest_clusters(X[:120], "hdbscan")
    assert len(set(hd.tolist()) - {-1}) == 3
    out = clusters.flag_outliers(X)
    assert out[-1] and out.sum() <= 3
    with pytest.raises(ValueError):
        clusters.suggest_clusters(X, "dbscan")
