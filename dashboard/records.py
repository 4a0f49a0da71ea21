"""The records that callbacks pass to panels: the view, the filters, the weights, the scatter options.

Dash hands a callback its arguments grouped (flexible callback signatures, see
:mod:`semcontrib.dashboard.callbacks`); each group becomes one frozen record here, so a panel takes
``(query, view, filters, weights, ...)`` instead of ten loose values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semcontrib.settings import DEFAULT_BASIS


@dataclass(frozen=True)
class View:
    """What the scores are: one head, one method, one normalisation, one basis (mean or sum)."""

    head: str
    method: str
    normalisation: str
    basis: str = DEFAULT_BASIS

    @classmethod
    def from_inputs(cls, group: Mapping[str, Any]) -> View:
        """From the grouped callback argument ``{"head", "method", "normalisation", "basis"}``."""
        return cls(str(group.get("head")), str(group.get("method")), str(group.get("normalisation")),
                   str(group.get("basis") or DEFAULT_BASIS))

    def as_dict(self) -> dict[str, str]:
        return {"head": self.head, "method": self.method, "normalisation": self.normalisation, "basis": self.basis}

    @property
    def label(self) -> str:
        return f"{self.head} / {self.method} / {self.normalisation} ({self.basis} basis)"


@dataclass(frozen=True)
class Filters:
    """The range filters as the sliders give them (in percent), and the faithfulness range.

    Attributes
    ----------
    columns : score column of each slider.
    values : ``(low, high)`` of each slider, or None for a slider that never reported a value.
    faithfulness : ``(low, high)`` in [-1, 1], or None when not filtered.
    """

    columns: tuple[str, ...] = ()
    values: tuple[tuple[float, float] | None, ...] = ()
    faithfulness: tuple[float, float] | None = None

    @classmethod
    def from_inputs(cls, group: Mapping[str, Any]) -> Filters:
        """From ``{"ids": [slider ids], "values": [[lo, hi] | None], "faithfulness": [lo, hi] | None}``."""
        ids = group.get("ids") or []
        values = group.get("values") or []
        cols, vals = [], []
        for sid, val in zip(ids, values):
            cols.append(str(sid.get("column")) if isinstance(sid, Mapping) else str(sid))
            vals.append(_pair(val))
        faith = _pair(group.get("faithfulness"))
        if faith is not None and faith[0] <= -1 and faith[1] >= 1:
            faith = None
        return cls(tuple(cols), tuple(vals), faith)


@dataclass(frozen=True)
class Weights:
    """Region weights of the weighted cosine (None = the default weight 1)."""

    regions: tuple[str, ...] = ()
    values: tuple[float | None, ...] = ()

    @classmethod
    def from_inputs(cls, group: Mapping[str, Any]) -> Weights:
        """From ``{"ids": [weight input ids], "values": [number | None]}``; bad numbers count as unset."""
        regions, values = [], []
        for wid, v in zip(group.get("ids") or [], group.get("values") or []):
            regions.append(str(wid.get("region")) if isinstance(wid, Mapping) else str(wid))
            try:
                f = None if v is None or v == "" else float(v)
            except (TypeError, ValueError):
                f = None
            values.append(None if f is None or not math.isfinite(f) else max(0.0, f))
        return cls(tuple(regions), tuple(values))

    def as_dict(self) -> dict[str, float | None]:
        return dict(zip(self.regions, self.values))


@dataclass(frozen=True)
class ScatterOptions:
    """How points are drawn: highlighted classes, dim or hide filtered points, and what colours them:
    ``selection``, ``faithfulness``, ``class`` (the predicted class) or ``score:COLUMN`` (one score column
    of the view; checked against the view's columns where it is used)."""

    highlight: tuple[str, ...] = ()
    hide_filtered: bool = False
    colour_by: str = "selection"

    @classmethod
    def from_inputs(cls, group: Mapping[str, Any]) -> ScatterOptions:
        hl = group.get("highlight") or []
        colour = group.get("colour_by")
        ok = isinstance(colour, str) and (colour in ("faithfulness", "class") or colour.startswith("score:"))
        return cls(tuple(str(c) for c in hl if isinstance(c, str)), group.get("mode") == "hide",
                   str(colour)[:200] if ok else "selection")


def _pair(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (lo, hi)
