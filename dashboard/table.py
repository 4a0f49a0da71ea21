"""The ranked table's rows, served block by block to dash-ag-grid (server-side row model): the grid's
column filters and sort order applied to the table frame. Pure functions on data frames; every column
and filter type a request names is checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

TEXT_OPS = ("contains", "notContains", "equals", "notEqual", "startsWith", "endsWith")
NUMBER_OPS = ("equals", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual", "inRange")


def _column_filter(column: pd.Series, spec: Mapping[str, Any]) -> np.ndarray:
    if "conditions" in spec and isinstance(spec["conditions"], list):
        parts = [_column_filter(column, c) for c in spec["conditions"][:4] if isinstance(c, Mapping)]
        if not parts:
            return np.ones(len(column), dtype=bool)
        return np.logical_or.reduce(parts) if spec.get("operator") == "OR" else np.logical_and.reduce(parts)
    op = spec.get("type")
    if spec.get("filterType") == "text":
        if op not in TEXT_OPS or not isinstance(spec.get("filter"), str):
            raise ValueError(f"text filter type must be one of {TEXT_OPS} with a text value")
        s = column.astype(str).str.lower()
        f = spec["filter"].lower()
        hit = {"contains": lambda: s.str.contains(f, regex=False),
               "notContains": lambda: ~s.str.contains(f, regex=False),
               "equals": lambda: s == f, "notEqual": lambda: s != f, "startsWith": lambda: s.str.startswith(f),
               "endsWith": lambda: s.str.endswith(f)}[op]()
        return np.asarray(hit, dtype=bool)
    if op not in NUMBER_OPS:
        raise ValueError(f"number filter type must be one of {NUMBER_OPS}")
    v = column.to_numpy(np.float64)
    a = _as_float(spec.get("filter"))
    with np.errstate(invalid="ignore"):
        if op == "inRange":
            b = _as_float(spec.get("filterTo"))
            return (v >= a) & (v <= b)
        return {"equals": v == a, "notEqual": v != a, "lessThan": v < a, "lessThanOrEqual": v <= a,
                "greaterThan": v > a, "greaterThanOrEqual": v >= a}[op]


def _as_float(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"a number filter needs a number, got {type(value).__name__}")
    return float(value)


def table_order(frame: pd.DataFrame, base: np.ndarray, filter_model: Mapping[str, Any] | None,
                sort_model: Sequence[Mapping[str, Any]] | None) -> np.ndarray:
    """int64 row positions of ``frame`` that pass ``base`` (bool (N,)) and the grid's column filters,
    in the grid's sort order (ties and NaN last, in corpus order).

    ``filter_model`` and ``sort_model`` are dash-ag-grid's ``getRowsRequest`` fields; unknown columns and
    filter types are rejected with a ValueError.
    """
    mask = np.asarray(base, dtype=bool).copy()
    for col, spec in (filter_model or {}).items():
        if col not in frame.columns or not isinstance(spec, Mapping):
            raise ValueError(f"cannot filter on {str(col)[:80]!r}; columns are {list(frame.columns)}")
        mask &= _column_filter(frame[col], spec)
    idx = np.flatnonzero(mask)
    for sort in reversed(list(sort_model or [])[:3]):
        col = str(sort.get("colId")) if isinstance(sort, Mapping) else ""
        if col not in frame.columns:
            raise ValueError(f"cannot sort by {str(col)[:80]!r}")
        values = frame[col].to_numpy()[idx]
        if values.dtype.kind in "fiub":
            v = values.astype(np.float64)
            key = np.where(np.isnan(v), np.inf, -v if sort.get("sort") == "desc" else v)
            idx = idx[np.argsort(key, kind="stable")]
        else:
            order = np.argsort(values.astype(str), kind="stable")
            idx = idx[order[::-1]] if sort.get("sort") == "desc" else idx[order]
    return idx
