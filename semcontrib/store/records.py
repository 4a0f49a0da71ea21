"""Work records: what one chunk's stage stores per image (frozen dataclasses), and the helpers that read their
arrays back from a work file."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semcontrib.contributions import RegionStats
from semcontrib.store.schema import check_image_id

# --------------------------------------------------------------------------- work records


@dataclass(frozen=True)
class ImageRecord:
    """What a run learnt about one image file, so a rerun need not decode it again.

    ``status`` is ``ok`` or ``skipped`` with ``reason`` saying why (unreadable, not an image)."""

    width: int
    height: int
    original_mode: str
    status: str = "ok"
    reason: str = ""


@dataclass(frozen=True)
class PredictionWork:
    """The model's outputs for one image: logits per head (float32) and class evidence (G×h×w) or None."""

    logits: Mapping[str, np.ndarray]
    evidence: np.ndarray | None = None


@dataclass(frozen=True)
class HeadAttribution:
    """One head's attribution of one image.

    Attributes
    ----------
    target : class index explained.
    status : ``ok``, ``nonfinite`` (the method gave NaN/Inf), or ``missing: REASON`` (external maps).
    values : float64 S×S map (pixel methods, external heatmaps) or the display map (region methods);
        None unless status is ok (and None when read back without maps).
    scale : the display encoding's scale (NaN for maps stored exactly).
    delta : the method's residual (IG convergence delta, Shapley efficiency residual), or None.
    scores : float64 K region scores of a region-level method, or None for pixel methods.
    stats : the region statistics (None unless status is ok).
    """

    target: int
    status: str
    values: np.ndarray | None = None
    scale: float = float("nan")
    delta: float | None = None
    scores: np.ndarray | None = None
    stats: RegionStats | None = None


@dataclass(frozen=True)
class RegionWork:
    """A region map at model resolution (int16 S×S, -1 unassigned), or why there is none (``error``);
    with a map, ``error`` is its note (:attr:`semcontrib.regions.RegionMap.note`, e.g. "no face found")."""

    labels: np.ndarray | None
    error: str = ""
    permanent: bool = True


@dataclass(frozen=True)
class ChunkRegions:
    """The region maps of one chunk's images, a digest of them that later stages record, and each image's
    own digest (:func:`image_digest`; empty for a file written before they were stored)."""

    works: Mapping[str, RegionWork]
    digest: str
    image_digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkAttribution:
    """One method's attributions of one chunk: image id -> head -> :class:`HeadAttribution`, the digest of
    the region maps its statistics were computed with, (external heatmaps) each source file's sha256, and the
    digest of each image's region map (:func:`image_digest`; empty when not recorded: no image's work is reused
    on its own)."""

    works: Mapping[str, Mapping[str, HeadAttribution]]
    regions_digest: str
    sources: Mapping[str, str] = field(default_factory=dict)
    image_digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidityWork:
    """The validity record of one image: (method, head) -> (*the VALIDITY_VALUES, note)."""

    records: Mapping[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)


def regions_digest(key: str, works: Mapping[str, RegionWork]) -> str:
    """A short hash of a chunk's region maps (ids, labels, failures) under the region key ``key``."""
    h = hashlib.sha256(key.encode())
    for image_id in sorted(works):
        w = works[image_id]
        h.update(image_id.encode() + b"\0")
        if w.labels is not None:
            h.update(np.ascontiguousarray(w.labels, np.int16).tobytes())
        else:
            h.update(f"error:{w.error}:{w.permanent}".encode())
    return h.hexdigest()[:16]


def image_digest(image_id: str, work: RegionWork) -> str:
    """A short hash of one image's region map (its id and labels, or its failure): work computed from a map
    with the same digest is the same whatever the chunk's other maps, region key or vocabulary size (labels
    index the vocabulary; names appended to it add regions that this map does not hold)."""
    h = hashlib.sha256(image_id.encode() + b"\0")
    if work.labels is not None:
        lab = np.ascontiguousarray(work.labels, np.int16)
        h.update(repr(lab.shape).encode() + lab.tobytes())
    else:
        h.update(f"error:{work.error}:{work.permanent}".encode())
    return h.hexdigest()[:16]


def _ids(z: Mapping[str, np.ndarray], name: str = "ids") -> list[str]:
    a = z[name]
    if a.ndim != 1 or a.dtype.kind != "U":
        raise ValueError(f"{name} must be a 1-d text array, got {a.dtype} {a.shape}")
    return [check_image_id(str(x)) for x in a]


def _text(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=str) if len(values) else np.zeros(0, "<U1")


def _rows(z: Mapping[str, np.ndarray], key: str, n: int, kind: type, tail: tuple[int, ...] = ()) -> np.ndarray:
    a = z[key]
    if a.shape != (n, *tail) or not np.issubdtype(a.dtype, kind):
        raise ValueError(f"{key} is {a.dtype} {a.shape}, expected {kind.__name__} {(n, *tail)}")
    return a
