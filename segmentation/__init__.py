"""Region sources: image -> int32 label map + names from a fixed vocabulary.

``REGION_SOURCES`` maps the CLI name (``semcontrib analyze --regions NAME``) to a factory
``factory(spec_argument: str | None, options: dict) -> RegionSource``. Heavy dependencies
(segment-anything, superpixels) are imported inside the sources that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from semcontrib.regions import RegionSource


def _grid(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from segmentation.grid import GridSource

    rows, cols = 3, 3
    if arg:
        try:
            rows, cols = (int(v) for v in arg.lower().split("x"))
        except ValueError as exc:
            raise ValueError(f"grid size must look like 3x3, got {arg!r}") from exc
    rows = int(options.get("rows", rows))
    cols = int(options.get("cols", cols))
    return GridSource(rows=rows, cols=cols)


REGION_SOURCES: dict[str, Callable[[str | None, dict[str, Any]], RegionSource]] = {
    "grid": _grid,
}


def make_region_source(spec: str, **options: Any) -> RegionSource:
    """Build a source from a CLI spec such as ``grid``, ``grid:4x4`` or ``annotations:PATH``."""
    name, _, arg = spec.partition(":")
    if name not in REGION_SOURCES:
        raise ValueError(f"unknown region source {name!r}; choose from {sorted(REGION_SOURCES)}")
    return REGION_SOURCES[name](arg or None, options)
