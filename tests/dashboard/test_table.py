"""The ranked table's rows: the grid's filters and sort order, unknown columns rejected."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from semcontrib.dashboard import table


def test_table_order_filters_sorts_and_rejects_unknown_columns() -> None:
    frame = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "sky": [0.3, np.nan, -0.1, 0.3],
                          "pred": ["cat", "dog", "Cat", "bird"]})
    base = np.array([True, True, True, False])
    assert table.table_order(frame, base, None, [{"colId": "sky", "sort": "desc"}]).tolist() == [0, 2, 1]
    assert table.table_order(frame, base, None, [{"colId": "sky", "sort": "asc"}]).tolist() == [2, 0, 1]
    text = {"pred": {"filterType": "text", "type": "contains", "filter": "CAT"}}
    assert table.table_order(frame, np.ones(4, bool), text, None).tolist() == [0, 2]
    num = {"sky": {"filterType": "number", "type": "inRange", "filter": 0, "filterTo": 1}}
    assert table.table_order(frame, np.ones(4, bool), num, None).tolist() == [0, 3]
    both = {"sky": {"filterType": "number", "operator": "OR", "conditions": [
        {"filterType": "number", "type": "lessThan", "filter": 0},
        {"filterType": "number", "type": "greaterThan", "filter": 0.2}]}}
    assert table.table_order(frame, np.ones(4, bool), both, None).tolist() == [0, 2, 3]
    for bad_filter, bad_sort in [({"nope": {"type": "equals"}}, None), (None, [{"colId": "__class__"}]),
                                 ({"sky": {"filterType": "number", "type": "eval"}}, None)]:
        with pytest.raises(ValueError):
            table.table_order(frame, base, bad_filter, bad_sort)
