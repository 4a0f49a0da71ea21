"""Exports: spreadsheet-safe CSV (no text cell or header starts a formula), raw Parquet."""

from __future__ import annotations

import doctest
import io

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import semcontrib.export as E
from semcontrib.export import FORMULA_STARTS, neutralise_text, spreadsheet_safe


def test_docstring_examples() -> None:
    result = doctest.testmod(E)
    assert result.failed == 0
    assert result.attempted >= 1  # the examples ran (a runner that finds none would pass anything)


def test_numbers_stay_numbers_and_text_is_neutralised() -> None:
    df = pd.DataFrame({"=a": ["=1+1", "ok", "-x", "@SUM(A1)", "\ttab", "\rcr", "+1"], "n": [-1.5, 2, -3, 0, 1, 2, 3]})
    safe = spreadsheet_safe(df)
    assert list(safe.columns) == ["'=a", "n"] and safe["n"].tolist() == df["n"].tolist()
    assert safe["'=a"].tolist() == ["'=1+1", "ok", "'-x", "'@SUM(A1)", "'\ttab", "'\rcr", "'+1"]
    assert df.columns[0] == "=a"  # the input is not changed


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_no_text_starts_a_formula(text: str) -> None:
    out = neutralise_text(text)
    assert not str(out).startswith(FORMULA_STARTS)
    assert str(out).lstrip("'") == text.lstrip("'") or str(out) == "'" + text


def test_pyarrow_csv_neutralises_image_ids_labels_and_headers_and_keeps_numbers() -> None:
    import csv

    from semcontrib.export import csv_bytes

    df = pd.DataFrame({"image_id": ["=HYPERLINK(\"http://x\")", "img-1", "@SUM(A1)", "+1"],
                       "label_scene": pd.Categorical(["-cmd", "forest", "\tTAB", "-cmd"]),
                       "=region": ["sky", "\rcr", None, "sea"],
                       "score": [-0.5, 0.25, float("nan"), -1e-20], "n_pixels": [-3, 0, 7, 1],
                       "absent": [True, False, False, True]})
    rows = list(csv.reader(io.StringIO(csv_bytes(df).decode("utf-8"), newline="")))
    assert rows[0] == ["image_id", "label_scene", "'=region", "score", "n_pixels", "absent"]
    cells = {name: [r[k] for r in rows[1:]] for k, name in enumerate(rows[0])}
    assert cells["image_id"] == ["'=HYPERLINK(\"http://x\")", "img-1", "'@SUM(A1)", "'+1"]
    assert cells["label_scene"] == ["'-cmd", "forest", "'\tTAB", "'-cmd"]
    assert cells["'=region"] == ["sky", "'\rcr", "", "sea"]
    assert [float(x) if x else None for x in cells["score"]] == [-0.5, 0.25, None, -1e-20]  # numbers stay numbers
    assert cells["n_pixels"] == ["-3", "0", "7", "1"]
    expected = spreadsheet_safe(df)  # the same text as the pandas path
    assert cells["image_id"] == expected["image_id"].tolist()
    assert cells["label_scene"] == expected["label_scene"].astype(str).tolist()
