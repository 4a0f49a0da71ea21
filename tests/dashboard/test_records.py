"""The records built from grouped callback arguments: whatever the browser sends, a well-formed record."""

from __future__ import annotations

from semcontrib.dashboard.records import Filters, ScatterOptions, View, Weights
from semcontrib.settings import DEFAULT_BASIS


def test_view_defaults_the_basis() -> None:
    # the basis chosen by measured faithfulness (docs/trust.md)
    assert DEFAULT_BASIS == "sum"
    assert View.from_inputs({"head": "h", "method": "m", "normalisation": "n"}) == View("h", "m", "n", "sum")
    assert View.from_inputs({"head": "h", "method": "m", "normalisation": "n", "basis": "mean"}).basis == "mean"


def test_filters_keep_pairs_drop_junk_and_a_full_faithfulness_range() -> None:
    f = Filters.from_inputs({"ids": [{"column": "sky"}, {"column": "water"}, {"column": "x"}],
                             "values": [[0, 10], None, ["a", 1]], "faithfulness": [-1, 1]})
    assert f == Filters(("sky", "water", "x"), ((0.0, 10.0), None, None), None)
    assert Filters.from_inputs({"faithfulness": [0.2, 1]}).faithfulness == (0.2, 1.0)
    assert Filters.from_inputs({"faithfulness": [0, float("nan")]}).faithfulness is None
    assert Filters.from_inputs({}) == Filters()
    hash(f)  # records key the query's caches


def test_weights_clip_negative_and_ignore_bad_numbers() -> None:
    w = Weights.from_inputs({"ids": [{"region": "sky"}, {"region": "water"}, {"region": "built"},
                                     {"region": "person"}], "values": [2, -1, "x", ""]})
    assert w.as_dict() == {"sky": 2.0, "water": 0.0, "built": None, "person": None}


def test_scatter_options() -> None:
    o = ScatterOptions.from_inputs({"highlight": ["a", 3], "mode": "hide", "colour_by": "faithfulness"})
    assert o == ScatterOptions(("a",), True, "faithfulness")
    assert ScatterOptions.from_inputs({"colour_by": "<script>"}).colour_by == "selection"
