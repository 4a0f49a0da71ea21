"""The signed heatmap overlay of one photograph, with region outlines, as PNG bytes (pure function).

The 224x224 attribution and region maps are squashed versions of the whole image, so they are stretched
over the photograph. Colours: red for positive, blue for negative, opacity proportional to
``min(|value| / v, 1)`` with ``v`` the 99th percentile of ``|map|`` of this image (symmetric around zero;
a percentile rather than the maximum, because LRP and IG maps put their extremes on a few pixels and a
max-scaled overlay is then invisible); region boundaries are drawn in white with a dark edge.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image


def _resize_float(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR))


def boundaries(labels: np.ndarray) -> np.ndarray:
    """bool HxW: pixels whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def overlay_rgb(photo: np.ndarray, attribution: np.ndarray | None, labels: np.ndarray | None,
                max_alpha: float = 0.75, percentile: float = 99.0,
                names: Sequence[str] | None = None) -> np.ndarray:
    """uint8 HxWx3: ``photo`` (uint8 HxWx3) under the signed map and the region outlines (both any size);
    with ``names`` (``names[k]`` names label ``k``) each region's name is written at its centre, white
    on a dark box, so it reads on any background."""
    h, w = photo.shape[:2]
    out = photo.astype(np.float64)
    if attribution is not None and attribution.size:
        vmax = float(np.percentile(np.abs(attribution), percentile)) or float(np.max(np.abs(attribution)))
        if vmax > 0 and np.isfinite(vmax):
            v = np.clip(_resize_float(attribution / vmax, (w, h)), -1, 1)
            colour = np.where(v[..., None] >= 0, np.array([220.0, 20, 20]), np.array([20.0, 60, 230]))
            alpha = (np.abs(v) * max_alpha)[..., None]
            out = out * (1 - alpha) + colour * alpha
    if labels is not None and labels.size:
        img = Image.fromarray(labels.astype(np.int32), mode="I")
        lab = np.asarray(img.resize((w, h), Image.Resampling.NEAREST))
        edge = boundaries(lab)
        dark = np.zeros_like(edge)
        dark[1:, :] |= edge[:-1, :]
        dark[:, 1:] |= edge[:, :-1]
        out[dark & ~edge] = (30, 30, 30)
        out[edge] = (255, 255, 255)
        if names:
            return label_regions(np.clip(out, 0, 255).astype(np.uint8), lab, names)
    return np.clip(out, 0, 255).astype(np.uint8)


def region_anchors(labels: np.ndarray, min_share: float = 0.01) -> list[tuple[int, int, int]]:
    """(label, row, column) of every region covering at least ``min_share`` of the image: the region's
    pixel nearest to its centroid (so a ring-shaped region is labelled on itself), largest region first."""
    out = []
    total = labels.size
    values, counts = np.unique(labels[labels >= 0], return_counts=True)
    for k in values[np.argsort(-counts, kind="stable")]:
        rows, cols = np.nonzero(labels == k)
        if len(rows) < min_share * total:
            continue
        cy, cx = rows.mean(), cols.mean()
        j = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
        out.append((int(k), int(rows[j]), int(cols[j])))
    return out


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, inclusive


def _overlaps(box: Box, placed: Sequence[Box]) -> bool:
    return any(box[0] <= b[2] and b[0] <= box[2] and box[1] <= b[3] and b[1] <= box[3] for b in placed)


def _candidates(region: np.ndarray, anchor: tuple[int, int], step: int, most: int = 400) -> np.ndarray:
    """int (M, 2) (row, column) of the region's pixels on a ``step`` grid, nearest to ``anchor`` first."""
    rows, cols = np.nonzero(region[::step, ::step])
    rc = np.column_stack([rows * step, cols * step])
    rc = np.vstack([np.array([anchor]), rc])
    order = np.argsort((rc[:, 0] - anchor[0]) ** 2 + (rc[:, 1] - anchor[1]) ** 2, kind="stable")
    return rc[order[:most]]


def place_labels(labels: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[tuple[int, Box]]:
    """Where each region's name goes, without two names overlapping: ``(label, box)`` for the regions of
    :func:`region_anchors` (largest first), ``sizes[label]`` the (width, height) in pixels of its name's box.

    A name is centred on its region's anchor when it fits there; else at the nearest spot (a grid of the
    region's pixels) where its box touches no name already placed and lies mostly (>= half) on its region
    (a thin band gets its name along it, not across its neighbours); else at the nearest free spot; a name
    with no free spot is left out (its region is still outlined). Boxes stay inside the image.
    """
    h, w = labels.shape
    placed: list[tuple[int, Box]] = []
    for k, row, col in region_anchors(labels):
        if k >= len(sizes):
            continue
        bw, bh = sizes[k]
        region = labels == k
        best: Box | None = None
        for r, c in _candidates(region, (row, col), max(2, bh // 2)):
            x0 = int(min(max(c - bw // 2, 0), max(w - bw, 0)))
            y0 = int(min(max(r - bh // 2, 0), max(h - bh, 0)))
            box = (x0, y0, x0 + bw - 1, y0 + bh - 1)
            if _overlaps(box, [b for _, b in placed]):
                continue
            if region[box[1]:box[3] + 1, box[0]:box[2] + 1].mean() >= 0.5:
                best = box
                break
            best = best or box
        if best is not None:
            placed.append((k, best))
    return placed


def label_regions(rgb: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """uint8 HxWx3: ``rgb`` with each region's name (``names[label]``), white on a dark box, placed by
    :func:`place_labels` (no two names overlap)."""
    from PIL import ImageDraw, ImageFont

    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    size = max(10, min(rgb.shape[:2]) // 28)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    boxes = [draw.textbbox((0, 0), str(n), font=font) for n in names]
    sizes = [(int(b[2] - b[0]) + 5, int(b[3] - b[1]) + 3) for b in boxes]  # the text and a 2 px / 1 px margin
    for k, (x0, y0, x1, y1) in place_labels(labels, sizes):
        draw.rectangle((x0, y0, x1, y1), fill=(20, 20, 20))
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), str(names[k]), fill=(255, 255, 255), font=font, anchor="mm")
    return np.asarray(img)


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def jpeg_thumbnail(jpeg: bytes, side: int = 160) -> bytes:
    """A JPEG of at most ``side`` pixels on its long side."""
    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
