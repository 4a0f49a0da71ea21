"""Concept supervision for SIAM models: what a region source finds in each training image.

A region source (``semcontrib.segmentation.make_region_source``: ``landscape``, ``grid``,
``annotations:PATH``, ...) labels every pixel of an image with one entry of its fixed vocabulary
(or leaves it unassigned). The concept *area* of entry ``k`` in an image is the fraction of the
image's pixels labelled ``k``; a concept is *present* when its area is at least ``min_area``
(``loop.ConceptLoss``). No extra annotation is needed.

The areas are computed once per image, on the whole image; augmented views of that image reuse
them (a crop keeps at least ``AugmentConfig.scale[0]`` of the image, so small concepts can be cut
off in some views: the supervision is image-level, as SIAM's presence labels are).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.training.features import Progress

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConceptAreas:
    """Area fraction of every vocabulary entry in every image.

    Attributes
    ----------
    source : the region source spec (``landscape``, ``annotations:PATH``, ...).
    vocabulary : K concept names, in the source's order.
    areas : float32 N x K in [0, 1] (rows sum to at most 1; NaN rows where the source failed).
    reasons : index -> why the source failed on that image.
    """

    source: str
    vocabulary: tuple[str, ...]
    areas: np.ndarray
    reasons: dict[int, str] = field(default_factory=dict)


def label_areas(labels: np.ndarray, k: int) -> np.ndarray:
    """int HxW labels (``-1`` unassigned) -> float32 K: fraction of all pixels labelled ``0..K-1``.

    >>> label_areas(np.array([[0, 0], [1, -1]]), 3).tolist()
    [0.5, 0.25, 0.0]
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(k, dtype=np.float32)
    valid = labels[labels >= 0]
    return (np.bincount(valid.ravel(), minlength=k)[:k] / labels.size).astype(np.float32)


def concept_areas(paths: Sequence[Path], image_ids: Sequence[str], source: str,
                  options: Mapping[str, Any] | None = None, progress: Progress | None = None,
                  cache_dir: str | Path | None = None) -> ConceptAreas:
    """Run the region source ``source`` on every image and measure each concept's area.

    Images the source cannot read or segment get a NaN row and a reason (the concept loss leaves
    them out); the run goes on. With ``cache_dir``, each image's areas are stored as
    ``cache_dir/concepts/<source key>/<file sha256>.npy`` (float32 K) and read back on the next
    run (the key covers the source's name, vocabulary and parameters; ``annotations`` sources,
    whose output depends on files the key does not cover, are never cached).
    """
    from semcontrib.imageio import ImageLoadError, load_rgb, sha256_file
    from semcontrib.regions import ImageInput, source_key
    from semcontrib.segmentation import make_region_source
    from semcontrib.training.features import atomic_save

    if len(paths) != len(image_ids):
        raise ValueError(f"{len(paths)} paths but {len(image_ids)} image ids")
    src = make_region_source(source, **dict(options or {}))
    vocab = tuple(src.vocabulary)
    cache = None
    if cache_dir is not None and not source.startswith("annotations"):
        cache = Path(cache_dir) / "concepts" / source_key(src)
    areas = np.full((len(paths), len(vocab)), np.nan, dtype=np.float32)
    reasons: dict[int, str] = {}
    for i, (p, rid) in enumerate(zip(paths, image_ids)):
        try:
            stored = cache / f"{sha256_file(p)}.npy" if cache is not None else None
            if stored is not None and stored.is_file():
                arr = np.load(stored)
                if arr.shape == (len(vocab),):
                    areas[i] = arr
                    if progress:
                        progress("concepts", i + 1, len(paths))
                    continue
            rgb = load_rgb(p).rgb
            region_map = src.segment(ImageInput(str(rid), rgb, str(p)))
            areas[i] = label_areas(region_map.labels, len(vocab))
            if stored is not None:
                atomic_save(stored, areas[i])
        except (ImageLoadError, ValueError, OSError) as exc:
            reasons[i] = str(getattr(exc, "reason", exc))
        if progress:
            progress("concepts", i + 1, len(paths))
    if reasons:
        logger.warning("concepts: region source %s failed on %d images (e.g. %s)", source, len(reasons),
                       list(reasons.values())[:3])
    return ConceptAreas(source, vocab, areas, reasons)
