"""The display-map codec: a float map as int8 plus a float32 scale."""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- map encoding


def encode_map(values: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """float HxW (finite) -> (int8 HxW in [-127, 127], float32 scale = max|map|): the display form."""
    scale = np.float32(np.max(np.abs(values))) if values.size else np.float32(0)
    if scale == 0 or not np.isfinite(scale):
        return np.zeros(values.shape, np.int8), np.float32(0 if scale == 0 else scale)
    q = np.rint(values.astype(np.float64) / float(scale) * 127.0)
    return np.clip(q, -127, 127).astype(np.int8), scale


def decode_map(q: np.ndarray, scale: float) -> np.ndarray:
    """The display map, float64 HxW (within ``scale / 254`` of the computed map)."""
    return q.astype(np.float64) * (float(np.float32(scale)) / 127.0)
