"""The region interface: an image becomes an int32 label map plus names from a fixed vocabulary.

A *region source* (``segmentation.REGION_SOURCES``) turns one :class:`ImageInput` into a
:class:`RegionMap`. Label ``k`` in ``0..K-1`` means ``vocabulary[k]``; :data:`UNASSIGNED` (-1) marks
pixels that belong to no region. The vocabulary is fixed per source (and per source parameters), so
every image's contribution vector has the same dimensions, even when a region is absent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

UNASSIGNED = -1
UNASSIGNED_NAME = "unassigned"


@dataclass(frozen=True)
class ImageInput:
    """What a region source sees of one image.

    Attributes
    ----------
    image_id : the corpus id of the image.
    rgb : uint8 HxWx3, the image after EXIF orientation and colour conversion (original size).
    path : the file it came from (for annotation look-ups), or ``""``.
    evidence : optional class evidence from the classifier, group name -> float32 HxW in [0, 1]
        at the size of ``rgb`` (see ``semcontrib.model.class_evidence``); empty when unavailable.
    """

    image_id: str
    rgb: np.ndarray
    path: str = ""
    evidence: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionMap:
    """A partition of an image into named regions.

    Attributes
    ----------
    labels : int32 HxW; values in ``-1..K-1`` (``-1`` = unassigned).
    names : the source's vocabulary, length K; ``names[k]`` names label ``k``.
    """

    labels: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.labels, np.ndarray) or self.labels.ndim != 2:
            raise ValueError("labels must be a 2-D array (HxW)")
        if self.labels.dtype != np.int32:
            raise TypeError(f"labels must be int32, got {self.labels.dtype}")
        if self.labels.size and (self.labels.min() < UNASSIGNED or self.labels.max() >= len(self.names)):
            raise ValueError(f"labels must lie in -1..{len(self.names) - 1}")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.labels.shape[0]), int(self.labels.shape[1]))

    def resized(self, size: tuple[int, int]) -> RegionMap:
        """Nearest-neighbour resize to ``size`` = (H, W) (pixel centres sampled)."""
        if self.shape == tuple(size):
            return self
        return RegionMap(nearest_resize(self.labels, size), self.names)


def nearest_resize(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an int HxW label map to ``size`` = (H, W) (pixel centres sampled)."""
    h, w = labels.shape
    H, W = size
    if (h, w) == (H, W):
        return labels
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return np.ascontiguousarray(labels[rows][:, cols])


def resize_evidence(maps: np.ndarray | None, names: Sequence[str], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Class evidence G x h x w (float) -> group name -> float32 HxW in [0, 1] at ``size`` (bilinear).

    This is the form :attr:`ImageInput.evidence` takes; ``None`` gives an empty mapping.
    """
    if maps is None:
        return {}
    from PIL import Image

    H, W = size
    out = {}
    for g, name in enumerate(names):
        img = Image.fromarray(np.asarray(maps[g], dtype=np.float32), mode="F").resize(
            (W, H), Image.Resampling.BILINEAR)
        out[name] = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return out


@runtime_checkable
class RegionSource(Protocol):
    """Turns an image into a :class:`RegionMap` over a fixed vocabulary.

    ``name`` is the registry key, ``vocabulary`` the fixed region names, ``params`` the settings that
    change its output (they form the cache key), and ``segment`` does the work.
    """

    name: str

    @property
    def vocabulary(self) -> tuple[str, ...]: ...

    @property
    def params(self) -> dict[str, Any]: ...

    def segment(self, image: ImageInput) -> RegionMap: ...


def source_key(source: RegionSource) -> str:
    """A short hash of a source's name, vocabulary and parameters."""
    blob = json.dumps({"name": source.name, "vocabulary": list(source.vocabulary),
                       "params": source.params}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
