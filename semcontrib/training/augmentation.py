"""Augmentation: random resized crop, flip and colour jitter of uint8 HxWx3 images (numpy + PIL).

Every random draw comes from the ``numpy.random.Generator`` passed in, so a view is a pure function
of (image, generator state): training derives one generator per (seed, epoch, image), which makes
augmented batches independent of DataLoader workers and lets an interrupted run resume exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Random resized crop, horizontal flip and colour jitter (as torchvision's transforms).

    Attributes
    ----------
    scale : range of the crop's area as a fraction of the image area.
    ratio : range of the crop's aspect ratio (width / height), sampled log-uniformly.
    flip : flip horizontally with probability 0.5.
    brightness, contrast, saturation : jitter factors drawn from ``[1 - x, 1 + x]``.
    hue : hue shift drawn from ``[-hue, hue]`` (fraction of the colour circle, at most 0.5).
    """

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")


def crop_box(h: int, w: int, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) as torchvision's ``RandomResizedCrop.get_params``."""
    area = h * w
    log_ratio = (math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*cfg.scale)
        ar = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    return 0, 0, h, w


def augment_rgb(rgb: np.ndarray, size: int, rng: np.random.Generator,
                config: AugmentConfig | None = None) -> np.ndarray:
    """One augmented view: uint8 HxWx3 -> uint8 ``size`` x ``size`` x 3.

    Random resized crop (squashed to ``size``, bicubic), horizontal flip, then brightness,
    contrast, saturation and hue jitter in a random order of the first three.
    """
    return augment_view(rgb, None, size, rng, config)[0]


def augment_view(rgb: np.ndarray, labels: np.ndarray | None, size: int, rng: np.random.Generator,
                 config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One augmented view of an image and (optionally) of its region label map.

    Parameters
    ----------
    rgb : uint8 HxWx3.
    labels : int32 HxW region labels of the same image (``-1`` unassigned), or ``None``. It gets the
        same crop and flip as ``rgb`` (nearest neighbour), not the colour jitter.

    Returns
    -------
    (uint8 ``size`` x ``size`` x 3, int32 ``size`` x ``size`` or ``None``); the random draws are
    those of :func:`augment_rgb`, so the image is identical with or without ``labels``.
    """
    cfg = config or AugmentConfig()
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    if labels is not None and labels.shape != rgb.shape[:2]:
        raise ValueError(f"labels must be HxW = {rgb.shape[:2]}, got {labels.shape}")
    top, left, ch, cw = crop_box(rgb.shape[0], rgb.shape[1], cfg, rng)
    img = Image.fromarray(np.ascontiguousarray(rgb[top:top + ch, left:left + cw]))
    img = img.resize((size, size), Image.Resampling.BICUBIC)
    lab = None
    if labels is not None:
        from semcontrib.regions import nearest_resize

        lab = nearest_resize(np.ascontiguousarray(labels[top:top + ch, left:left + cw]), (size, size))
    if cfg.flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if lab is not None:
            lab = np.ascontiguousarray(lab[:, ::-1])
    ops: list[tuple[Any, float]] = []
    if cfg.brightness:
        ops.append((ImageEnhance.Brightness, rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)))
    if cfg.contrast:
        ops.append((ImageEnhance.Contrast, rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)))
    if cfg.saturation:
        ops.append((ImageEnhance.Color, rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)))
    for k in rng.permutation(len(ops)):
        enhancer, factor = ops[int(k)]
        img = enhancer(img).enhance(float(factor))
    if cfg.hue:
        shift = int(round(rng.uniform(-cfg.hue, cfg.hue) * 255))
        if shift:
            hsv = np.asarray(img.convert("HSV")).copy()
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
            img = Image.fromarray(hsv, "HSV").convert("RGB")
    return np.asarray(img, dtype=np.uint8), (lab.astype(np.int32) if lab is not None else None)
