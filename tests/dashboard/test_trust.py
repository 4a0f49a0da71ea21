"""The trust table: per-image rank agreement and the validity medians."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from semcontrib.dashboard import trust


def test_row_spearman_matches_scipy_and_trust_table_medians() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    A, B = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    B[:10] = A[:10] * 3 + 1
    A[20, 2] = np.nan
    r = trust.row_spearman(A, B)
    for i in (0, 11, 33):
        assert r[i] == pytest.approx(spearmanr(A[i], B[i]).statistic)
    assert np.isnan(r[20]) and (r[:10] == pytest.approx(1.0))
    validity = pd.DataFrame({"head": ["h"] * 4, "method": ["a", "a", "a", "b"],
                             "faithfulness": [0.1, 0.5, np.nan, -0.2], "deletion_auc": [0.2, 0.4, 0.3, 0.9]})
    t = trust.trust_table(validity, {("h", "a"): A[:10], ("h", "b"): B[:10]}).set_index("method")
    assert t.loc["a", "median_faithfulness"] == pytest.approx(0.3)  # NaN left out
    assert t.loc["a", "median_deletion_auc"] == pytest.approx(0.3)
    assert t.loc["a", "agreement"] == pytest.approx(1.0) and t.loc["b", "images"] == 10
    assert np.isnan(trust.trust_table(validity.drop(columns="faithfulness"), {("h", "a"): A})
                    .loc[0, "median_faithfulness"])


def test_trust_table_gains_over_random_are_the_validate_reports_medians() -> None:
    """gain_morf = median(random - MoRF), gain_lerf = median(LeRF - random), per (head, method), as validate."""
    validity = pd.DataFrame({"head": ["h"] * 3, "method": ["a"] * 3, "deletion_auc": [0.2, 0.5, np.nan],
                             "lerf_auc": [0.9, 0.6, 0.8], "random_auc": [0.6, 0.4, 0.5],
                             "validity_note": ["", "", ""]})
    t = trust.trust_table(validity, {("h", "a"): np.ones((3, 4))})
    assert t.loc[0, "gain_morf"] == pytest.approx(np.median([0.4, -0.1]))  # the NaN image left out
    assert t.loc[0, "gain_lerf"] == pytest.approx(np.median([0.3, 0.2, 0.3]))
    assert t.loc[0, "circular"] == 0.0
    assert np.isnan(trust.trust_table(validity.drop(columns="random_auc"), {("h", "a"): np.ones((3, 4))})
                    .loc[0, "gain_morf"])


def test_a_method_judged_by_its_own_perturbation_is_not_ranked_on_that_record() -> None:
    validity = pd.DataFrame({"head": ["h"] * 4, "method": ["occlusion", "occlusion", "gradcam", "gradcam"],
                             "faithfulness": [1.0, 1.0, 0.3, 0.5], "deletion_auc": [0.1, 0.1, 0.4, 0.4],
                             "lerf_auc": [0.9, 0.9, 0.6, 0.6], "random_auc": [0.5, 0.5, 0.5, 0.5],
                             "insertion_auc": [0.9, 0.9, 0.7, 0.7],
                             "validity_note": ["circular: occlusion scores with the blur perturbation", "circular",
                                               "", ""]})
    V = np.ones((2, 3))
    t = trust.trust_table(validity, {("h", "occlusion"): V, ("h", "gradcam"): V}).set_index("method")
    assert t.loc["occlusion", "circular"] == 1.0
    for col in ("median_faithfulness", "median_deletion_auc", "median_insertion_auc", "gain_morf", "gain_lerf"):
        assert np.isnan(t.loc["occlusion", col]), col
    assert t.loc["gradcam", "circular"] == 0.0
    assert t.loc["gradcam", "median_faithfulness"] == pytest.approx(0.4)
    assert t.loc["gradcam", "gain_morf"] == pytest.approx(0.1)


def test_trust_panel_shows_gains_and_marks_circular_methods() -> None:
    from semcontrib.dashboard.layout import trust_panel

    table = pd.DataFrame([{"head": "h", "method": "occlusion", "images": 2, "median_faithfulness": np.nan,
                           "median_deletion_auc": np.nan, "median_insertion_auc": np.nan, "gain_morf": np.nan,
                           "gain_lerf": np.nan, "circular": 1.0, "agreement": 0.5},
                          {"head": "h", "method": "gradcam", "images": 2, "median_faithfulness": 0.4,
                           "median_deletion_auc": 0.4, "median_insertion_auc": 0.7, "gain_morf": 0.1,
                           "gain_lerf": -0.05, "circular": 0.0, "agreement": 0.5}])
    text = str(trust_panel(table, True).to_plotly_json())
    for shown in ("gain over random: MoRF", "gain over random: LeRF", "+0.10", "-0.05",
                  "circular: all its records judged by its own perturbation (not ranked)"):
        assert shown in text, shown
