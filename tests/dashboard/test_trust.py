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
