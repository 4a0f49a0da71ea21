"""A chunk's data between the stages: :class:`ChunkState` (what is stored or computed), :class:`ChunkResult`
(what the tables need), and the region statistics of one attribution."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from semcontrib.contributions import RegionStats, aggregate
from semcontrib.corpus import (
    ChunkAttribution,
    ChunkRegions,
    HeadAttribution,
    ImageRecord,
    PredictionWork,
    RegionWork,
    ValidityWork,
)
from semcontrib.engine.plan import PlannedInput
from semcontrib.model import HeadSpec
from semcontrib.settings import (
    SCORE_BASIS,
)


@dataclass(frozen=True)
class ChunkImages:
    """What a chunk's model stages compute from, travelling as one record.

    Attributes
    ----------
    ok : the ids of the chunk's images that are analysed, in chunk order.
    rgb : uint8 HxWx3 per image id, for the images this run decoded (a stored stage needs none).
    targets : head -> int64 (len(ok),), the target class of each image of ``ok``, in that order.
    labels : image id -> int SxS region labels at model resolution (-1: unassigned); empty until the
        region maps are in, and when no stage needs them.
    """

    ok: list[str]
    rgb: Mapping[str, np.ndarray]
    targets: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ChunkResult:
    """What one chunk holds for the tables (no maps): records, predictions, region failures,
    attributions (statistics) per method, validity."""

    records: dict[str, ImageRecord]
    preds: dict[str, PredictionWork]
    regions: dict[str, RegionWork]
    attrs: dict[str, dict[str, dict[str, HeadAttribution]]]
    validity: dict[str, ValidityWork]


@dataclass
class ChunkState:
    """One chunk's data between its stages, as one record: ``results`` maps a stage's name
    (:class:`semcontrib.engine.stage.Stage`) to what it loaded or computed; a stage not there is neither.

    Attributes
    ----------
    chunk, members : the chunk and its planned inputs, in chunk order.
    results : stage name -> result: ``decode`` (image id -> ``Prepared``), ``images`` (image id ->
        ``ImageRecord``), ``predictions`` (image id -> ``PredictionWork``), ``regions`` (``ChunkRegions``),
        ``targets`` and ``labels`` (:class:`ChunkImages`), ``maps:<method>`` and ``attr:<method>``
        (``ChunkAttribution``), ``validity`` (image id -> ``ValidityWork``).
    retry : region failures that may pass count as not stored (they are tried again).
    sources : image id -> what its external heatmap result depends on (empty without external heatmaps).
    prepared : decoding jobs submitted for the chunk (futures of ``Prepared``), collected by ``decode``.
    region_digests : image id -> the digest of its region map (``semcontrib.store.records.image_digest``),
        for the maps known final when the ``regions`` stage started (stored or reused ones; not those
        being computed).
    reused : method -> its stored attributions that stay valid for this chunk (images whose region map is
        the one they were computed with), once looked up; the method computes only the other images.
    """

    chunk: int
    members: list[PlannedInput]
    results: dict[str, Any] = field(default_factory=dict)
    retry: bool = True
    sources: dict[str, str] = field(default_factory=dict)
    prepared: list[Any] = field(default_factory=list)
    region_digests: dict[str, str] = field(default_factory=dict)
    reused: dict[str, ChunkAttribution] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [m.image_id for m in self.members]

    @property
    def records(self) -> dict[str, ImageRecord] | None:
        return self.results.get("images")

    @property
    def preds(self) -> dict[str, PredictionWork] | None:
        return self.results.get("predictions")

    @property
    def regions(self) -> ChunkRegions | None:
        return self.results.get("regions")

    @property
    def validity(self) -> dict[str, ValidityWork] | None:
        return self.results.get("validity")

    def attr(self, method: str) -> ChunkAttribution | None:
        return self.results.get(f"attr:{method}")

    def ok(self) -> list[str]:
        """The images analysed: recorded as ok and, when this run decoded them, decoded."""
        records, decoded = self.records or {}, self.results.get("decode", {})
        return [i for i in self.ids if i in records and records[i].status == "ok"
                and (i not in decoded or decoded[i].rgb is not None)]


class HeadClasses:
    """The ``head(name).classes`` view :func:`resolve_targets` needs, from the recorded class names."""

    def __init__(self, heads: Mapping[str, list[str]]) -> None:
        self.heads = heads

    def head(self, name: str) -> Any:
        return HeadSpec(name, tuple(self.heads[name]))


def with_stats(a: HeadAttribution, labels: np.ndarray, K: int) -> HeadAttribution:
    """``a`` with its region statistics, computed from its full-precision map (or its region scores)."""
    if a.status != "ok" or a.values is None or not np.all(np.isfinite(a.values)):
        return replace(a, status="nonfinite" if a.status == "ok" else a.status, values=None)
    lab = labels.astype(np.int64)
    if a.scores is not None:  # a region-level method: the scores are the contributions
        n_pixels = np.bincount(lab[lab >= 0].ravel(), minlength=K)[:K].astype(np.int64)
        sc = np.where(n_pixels > 0, a.scores, 0.0)
        stats = RegionStats(n_pixels=n_pixels, sum=sc, pos_sum=np.maximum(sc, 0.0), neg_sum=np.minimum(sc, 0.0),
                            unassigned=np.array([float((lab < 0).sum()), 0.0, 0.0, 0.0]), total=float(sc.sum()))
    else:
        stats = aggregate(a.values, lab, K)
    return replace(a, stats=stats)


def subset(data: ChunkImages, ids: list[str]) -> ChunkImages:
    """``data`` for the images ``ids`` (a sub-list of ``data.ok``, in its order): their targets, pixels, labels."""
    if ids == data.ok:
        return data
    pos = {i: k for k, i in enumerate(data.ok)}
    idx = np.array([pos[i] for i in ids], np.int64)
    keep = set(ids)
    return ChunkImages(list(ids), {i: v for i, v in data.rgb.items() if i in keep},
                       {h: np.asarray(t)[idx] for h, t in data.targets.items()},
                       {i: v for i, v in data.labels.items() if i in keep})


def resized(a: HeadAttribution, K: int) -> HeadAttribution | None:
    """A stored attribution's statistics over ``K`` regions: as they are, zero rows appended for regions
    appended to the vocabulary (what :func:`with_stats` gives for a map without those labels), or rows
    dropped when they hold no pixel; None when that cannot be done exactly (a region method's scores,
    which may depend on the vocabulary, or pixels in a dropped region)."""
    st = a.stats
    if st is None or len(st.n_pixels) == K:
        return a
    k = len(st.n_pixels)
    if a.scores is not None or (k > K and np.any(st.n_pixels[K:] != 0)):
        return None

    def fit(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v, np.zeros(K - k, v.dtype)]) if k < K else v[:K].copy()

    return replace(a, stats=RegionStats(n_pixels=fit(st.n_pixels), sum=fit(st.sum), pos_sum=fit(st.pos_sum),
                                        neg_sum=fit(st.neg_sum), unassigned=st.unassigned, total=st.total))


def region_scores(a: HeadAttribution, K: int) -> np.ndarray:
    """Region scores of one attribution for the validity record, in the basis the validity module judges
    (``semcontrib.settings.SCORE_BASIS``: region methods their scores, pixel methods as measured best)."""
    if a.status != "ok" or a.stats is None:
        return np.full(K, np.nan)
    if a.scores is not None:
        return a.scores
    st = a.stats
    if SCORE_BASIS["pixel"] == "sum":
        return np.asarray(st.sum, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(st.n_pixels > 0, st.sum / np.maximum(st.n_pixels, 1), 0.0)


def labels_or_unassigned(work: RegionWork | None, size: int) -> np.ndarray:
    if work is None or work.labels is None:
        return np.full((size, size), -1, np.int32)
    return work.labels.astype(np.int32)


def item_or_none(values: np.ndarray | None, k: int) -> float | None:
    """``values[k]`` as a float, or None when a method gives no such values (its ``delta``)."""
    return None if values is None else float(values[k])
