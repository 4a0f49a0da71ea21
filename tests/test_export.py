"""Exports: spreadsheet-safe CSV (no text cell or header starts a formula), raw Parquet."""

from __future__ import annotations

import doctest

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
