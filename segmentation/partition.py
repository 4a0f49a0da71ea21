"""Turn overlapping binary masks into a partition (each pixel in at most one region).

The overlap rule (used by the ``sam`` and ``annotations`` sources)
-----------------------------------------------------------------
1. Masks with fewer than ``min_area`` pixels are dropped.
2. Where masks overlap, the **smaller mask wins** (fewer pixels), so small parts drawn or found on top
   of large ones (an eye on a face, a person on a field) keep their pixels.
3. Ties in area are broken by the mask's label, then by the mask's content (the index of its first
   pixel in row-major order, then a hash of its bytes) — never by the order the masks arrive in, so
   the result does not depend on mask order.
4. Pixels that no kept mask covers are unassigned (``-1``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from semcontrib.regions import UNASSIGNED


def _mask_key(mask: np.ndarray, label: int) -> tuple[int, int, int, str]:
    flat = mask.ravel()
    first = int(np.argmax(flat)) if flat.any() else -1
    digest = hashlib.sha1(np.packbits(flat).tobytes()).hexdigest()
    return (int(flat.sum()), int(label), first, digest)


def masks_to_partition(masks: Sequence[np.ndarray], labels: Sequence[int] | None = None,
                       min_area: int = 0, shape: tuple[int, int] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Resolve overlapping masks into one int32 label map by the smaller-mask-wins rule.

    Parameters
    ----------
    masks : bool arrays HxW (all the same shape).
    labels : one int label per mask (default: the mask's index). Several masks may share a label.
    min_area : masks with fewer pixels are ignored.
    shape : (H, W) of the output, required when ``masks`` is empty.

    Returns
    -------
    label_map : int32 HxW, the winning mask's label, ``-1`` where no kept mask covers the pixel.
    owner : int32 HxW, the index (into ``masks``) of the winning mask, ``-1`` where uncovered.
    """
    if labels is None:
        labels = list(range(len(masks)))
    if len(labels) != len(masks):
        raise ValueError(f"got {len(masks)} masks but {len(labels)} labels")
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    if not masks:
        if shape is None:
            raise ValueError("shape is required when there are no masks")
        empty = np.full(shape, UNASSIGNED, dtype=np.int32)
        return empty, empty.copy()
    arrays = [np.asarray(m).astype(bool) for m in masks]
    hw = arrays[0].shape
    if len(hw) != 2 or any(a.shape != hw for a in arrays):
        raise ValueError("all masks must be 2-D and of the same shape")
    if shape is not None and tuple(shape) != hw:
        raise ValueError(f"masks are {hw}, expected shape {tuple(shape)}")
    keys = [_mask_key(a, int(lab)) for a, lab in zip(arrays, labels)]
    order = sorted((i for i in range(len(arrays)) if keys[i][0] >= max(min_area, 1)),
                   key=lambda i: keys[i], reverse=True)
    owner = np.full(hw, UNASSIGNED, dtype=np.int32)
    for i in order:  # largest first; smaller masks paint over them
        owner[arrays[i]] = i
    lut = np.asarray(list(labels) + [UNASSIGNED], dtype=np.int32)
    label_map = lut[owner]  # owner == -1 picks the appended UNASSIGNED
    return label_map.astype(np.int32), owner
