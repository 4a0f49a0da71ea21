"""``grid``: named cells of a rows x cols grid, a baseline region source that needs nothing."""

from __future__ import annotations

from typing import Any

import numpy as np

from semcontrib.regions import ImageInput, RegionMap

_ROW_NAMES = {3: ("top", "middle", "bottom")}
_COL_NAMES = {3: ("left", "center", "right")}


def grid_names(rows: int, cols: int) -> tuple[str, ...]:
    """``top_left`` ... ``bottom_right`` for 3x3, ``r{i}c{j}`` otherwise."""
    if rows in _ROW_NAMES and cols in _COL_NAMES:
        return tuple(f"{r}_{c}" for r in _ROW_NAMES[rows] for c in _COL_NAMES[cols])
    return tuple(f"r{i}c{j}" for i in range(rows) for j in range(cols))


class GridSource:
    """Split the image into ``rows`` x ``cols`` cells of (nearly) equal size; every pixel is assigned.

    Cell ``(i, j)`` covers rows ``floor(i*H/rows) .. floor((i+1)*H/rows)-1`` (likewise for columns);
    its label is ``i*cols + j``.
    """

    name = "grid"
    uses_evidence = False
    cheap = True  # a few milliseconds per image: a small run starts no worker processes for it

    def __init__(self, rows: int = 3, cols: int = 3) -> None:
        if not (isinstance(rows, int) and isinstance(cols, int)) or rows < 1 or cols < 1:
            raise ValueError(f"grid rows and cols must be positive integers, got {rows}x{cols}")
        if rows * cols > 1024:
            raise ValueError(f"grid of {rows}x{cols} cells is too fine (at most 1024 cells)")
        self.rows = rows
        self.cols = cols
        self._names = grid_names(rows, cols)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._names

    @property
    def params(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols}

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The params: a grid reads no file and no evidence."""
        return self.params

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        return RegionMap(grid_labels(h, w, self.rows, self.cols), self._names)


def grid_labels(h: int, w: int, rows: int, cols: int) -> np.ndarray:
    """int32 HxW cell labels."""
    r = (np.arange(h) * rows // max(h, 1)).astype(np.int32)
    c = (np.arange(w) * cols // max(w, 1)).astype(np.int32)
    return (r[:, None] * cols + c[None, :]).astype(np.int32)
