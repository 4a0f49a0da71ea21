"""Pure view functions of the dashboard: arrays and frames in, arrays and frames out.

No Dash, no disk, no globals: filters, ranking, paging, group statistics, the weighted-cosine
embedding input (the embedding itself is :mod:`semcontrib.dashboard.embedding`, suggested clusters and
outliers :mod:`semcontrib.dashboard.clusters`, the trust table :mod:`semcontrib.dashboard.trust`, the ranked
table's rows :mod:`semcontrib.dashboard.table`), method agreement, named selections and the dashboard
state. Callbacks call these and nothing else computes.

Conventions: ``values`` is float64 N x C (one row per image of the corpus, in corpus order, one column
per score column; NaN where the image has no vector for this head and method); filter ranges and slider
bounds are in percent (score x 100); weights are per region and apply to every column of the region.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from semcontrib.contributions import weighted_unit_vectors

# The embedding moved to :mod:`semcontrib.dashboard.embedding`; these names stay importable from here for
# a caller outside the dashboard's files (benchmarks/bench_million.py).
from semcontrib.dashboard.embedding import fit_tsne as _fit_tsne  # noqa: F401
from semcontrib.dashboard.embedding import pca_2d as pca_2d
from semcontrib.dashboard.embedding import place as place

# The trust table and the ranked table's rows have modules of their own (trust.py, table.py); these names stay
# importable from here for callers outside the dashboard's files (query.py, benchmarks/bench_million.py).
from semcontrib.dashboard.table import table_order as table_order
from semcontrib.dashboard.trust import row_spearman as row_spearman
from semcontrib.dashboard.trust import trust_table as trust_table

# Selection (and class) colours: qualitative, and free of the red and blue that mean "positive" and
# "negative" everywhere else (overlays, bars, heatmaps, the diverging scatter colours).
PALETTE = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
           "#e6ab02", "#1b9e77")
# The one diverging palette of the app (ColorBrewer RdBu, negative blue -> 0 white -> positive red).
DIVERGING = ("#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582",
             "#d6604d", "#b2182b", "#67001f")


@dataclass(frozen=True)
class ScoreMatrix:
    """Contribution scores of every corpus image for one (head, method, normalisation).

    Attributes
    ----------
    ids : object (N,), image ids in corpus order.
    columns : score column names (regions; ``REGION+`` / ``REGION-`` for ``split``), length C.
    column_region : int (C,), the region index of each column.
    values : float64 N x C; NaN rows where ``valid`` is False.
    valid : bool (N,), the image has a vector for this head and method.
    """

    ids: np.ndarray
    columns: tuple[str, ...]
    column_region: np.ndarray
    values: np.ndarray
    valid: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)


def score_matrix(wide: pd.DataFrame, ids: Sequence[str], vocabulary: Sequence[str]) -> ScoreMatrix:
    """Align a wide contribution table (``Corpus.contribution_table(wide=True)``) to ``ids``."""
    vocab = list(vocabulary)
    if all(r in wide.columns for r in vocab):
        columns = vocab
        column_region = list(range(len(vocab)))
    else:
        columns = [f"{r}+" for r in vocab] + [f"{r}-" for r in vocab]
        column_region = list(range(len(vocab))) * 2
        missing = [c for c in columns if c not in wide.columns]
        if missing:
            raise ValueError(f"wide table lacks score columns {missing}")
    frame = wide.drop_duplicates("image_id").set_index("image_id").reindex(list(ids))
    values = frame[columns].to_numpy(dtype=np.float64)
    return ScoreMatrix(np.asarray(ids, dtype=object), tuple(columns),
                       np.asarray(column_region, dtype=np.int64), values, ~np.isnan(values).any(axis=1))


# --------------------------------------------------------------------------- filters


def slider_bounds(values: np.ndarray) -> np.ndarray:
    """(C, 2) slider range per column in percent: data min and max, rounded outwards to 0.1."""
    ok = values[~np.isnan(values).any(axis=1)]
    if len(ok) == 0:
        ok = np.zeros((1, values.shape[1]))
    lo, hi = ok.min(axis=0), ok.max(axis=0)
    lo = np.floor(np.nan_to_num(lo) * 1000) / 10
    hi = np.ceil(np.nan_to_num(hi) * 1000) / 10
    return np.stack([lo, np.maximum(hi, lo + 0.1)], axis=1)


def filter_mask(matrix: ScoreMatrix, ranges: Mapping[str, Sequence[float]] | None) -> np.ndarray:
    """bool (N,): valid images whose score (in percent) lies within ``[lo, hi]`` for every given column.

    Unknown columns are rejected; a column not in ``ranges`` is not filtered.

    Examples
    --------
    >>> m = ScoreMatrix(np.array(["a", "b"], dtype=object), ("sky",), np.array([0]),
    ...                 np.array([[0.1], [0.5]]), np.array([True, True]))
    >>> filter_mask(m, {"sky": [0, 20]}).tolist()
    [True, False]
    """
    mask = matrix.valid.copy()
    for column, bounds in (ranges or {}).items():
        if column not in matrix.columns:
            raise ValueError(f"unknown score column {column!r}; columns are {list(matrix.columns)}")
        if bounds is None or len(bounds) != 2:
            raise ValueError(f"range of {column!r} must be [low, high] in percent, got {bounds!r}")
        lo, hi = float(bounds[0]), float(bounds[1])
        pct = matrix.values[:, matrix.columns.index(column)] * 100
        with np.errstate(invalid="ignore"):
            mask &= (pct >= lo - 1e-9) & (pct <= hi + 1e-9)
    return mask


def ranges_from_sliders(ids: Sequence[Mapping[str, Any]], values: Sequence[Sequence[float] | None],
                        bounds: Mapping[str, Sequence[float]] | None = None) -> dict[str, list[float]]:
    """Pattern-matching slider ids and values -> {column: [lo, hi]}, leaving out sliders at full range."""
    out: dict[str, list[float]] = {}
    for sid, val in zip(ids, values):
        if val is None:
            continue
        col = str(sid["column"])
        full = (bounds or {}).get(col)
        if full is not None and val[0] <= full[0] and val[1] >= full[1]:
            continue
        out[col] = [float(val[0]), float(val[1])]
    return out


# --------------------------------------------------------------------------- weights and embedding


def column_weights(matrix: ScoreMatrix, vocabulary: Sequence[str],
                   weights: Mapping[str, float | None] | None) -> np.ndarray:
    """float64 (C,): each column's region weight (default 1); negative or non-finite weights are rejected."""
    w = np.ones(len(vocabulary))
    for name, value in (weights or {}).items():
        if name not in vocabulary:
            raise ValueError(f"unknown region {name!r} in weights; regions are {list(vocabulary)}")
        v = 1.0 if value is None else float(value)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"weight of {name!r} must be a finite number >= 0, got {value!r}")
        w[list(vocabulary).index(name)] = v
    return w[matrix.column_region]


def embedding_input(matrix: ScoreMatrix, weights: np.ndarray) -> np.ndarray:
    """float64 N x C unit rows whose Euclidean geometry is the weighted cosine of CatViz eq. 6.

    Rows without a vector (invalid) and zero vectors stay zero.
    """
    return weighted_unit_vectors(np.nan_to_num(matrix.values), weights)


def embedding_key(params: Mapping[str, Any]) -> str:
    """A hash of the parameters an embedding depends on (view, weights, algorithm, seed, version)."""
    payload = json.dumps(dict(params), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def content_hash(ids: np.ndarray, X: np.ndarray) -> str:
    """A hash of the embedded rows: their image ids and their float32 vectors."""
    h = hashlib.sha256("\n".join(map(str, ids)).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- ranking and paging


def rank(matrix: ScoreMatrix, members: np.ndarray, column: str | None, descending: bool = True) -> np.ndarray:
    """Indices of ``members`` (bool mask or index array) ordered by a column's score; ties keep corpus order.

    ``column=None`` keeps corpus order. Invalid rows go last.
    """
    idx = np.flatnonzero(members) if members.dtype == bool else np.asarray(members, dtype=np.int64)
    if column is None:
        return idx
    if column not in matrix.columns:
        raise ValueError(f"unknown score column {column!r}; columns are {list(matrix.columns)}")
    v = matrix.values[idx, matrix.columns.index(column)]
    key = np.where(np.isnan(v), np.inf, -v if descending else v)
    return idx[np.argsort(key, kind="stable")]


def page(indices: np.ndarray, page_number: int, page_size: int) -> tuple[np.ndarray, int, int]:
    """(indices on the page, the page number clamped to 0..n_pages-1, n_pages >= 1). Never capped."""
    if page_size < 1:
        raise ValueError("page_size must be >= 1")
    n_pages = max(1, math.ceil(len(indices) / page_size))
    p = min(max(int(page_number), 0), n_pages - 1)
    return indices[p * page_size:(p + 1) * page_size], p, n_pages


# --------------------------------------------------------------------------- selections


def encode_members(mask: np.ndarray) -> str:
    """A bool (N,) membership mask as base64 of its packed bits (N/8 bytes; what the browser stores)."""
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def decode_members(encoded: Any, n: int) -> np.ndarray:
    """bool (n,) from :func:`encode_members`; anything else (wrong type, length or alphabet) is a ValueError."""
    if not isinstance(encoded, str) or len(encoded) != 4 * math.ceil(math.ceil(n / 8) / 3):
        raise ValueError(f"selection members must be the base64 bit mask of {n} images")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("selection members are not base64") from None
    if len(raw) != math.ceil(n / 8):
        raise ValueError(f"selection members must be the base64 bit mask of {n} images")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n).astype(bool)


def members_mask(ids_index: Mapping[str, int], n: int, image_ids: Sequence[str]) -> np.ndarray:
    """bool (n,) from image ids; ids not in the corpus are ignored."""
    mask = np.zeros(n, dtype=bool)
    idx = [ids_index[i] for i in image_ids if i in ids_index]
    mask[idx] = True
    return mask


def lasso_mask(selected: Mapping[str, Any] | None, xy: np.ndarray | None, visible: np.ndarray) -> np.ndarray:
    """bool (N,): the visible points a lasso, a box or a list of indices picked.

    ``selected`` is what the browser reduces plotly's ``selectedData`` to: ``{"lasso": {"x": [...], "y": [...]}}``
    (polygon in data coordinates), ``{"range": {"x": [x0, x1], "y": [y0, y1]}}`` or ``{"indices": [int, ...]}``
    (corpus rows). Polygons and boxes are tested against ``xy`` (float N x 2, the server's embedding), so the
    browser never sends the points themselves.
    """
    n = len(visible)
    out = np.zeros(n, dtype=bool)
    if not isinstance(selected, Mapping):
        return out
    lasso, box, indices = selected.get("lasso"), selected.get("range"), selected.get("indices")
    if xy is not None and len(xy) == n and isinstance(lasso, Mapping):
        px, py = _floats(lasso.get("x")), _floats(lasso.get("y"))
        if len(px) >= 3 and len(px) == len(py):
            from matplotlib.path import Path as Polygon

            lo, hi = np.array([px.min(), py.min()]), np.array([px.max(), py.max()])
            near = np.flatnonzero(((xy >= lo) & (xy <= hi)).all(axis=1))
            inside = Polygon(np.column_stack([px, py])).contains_points(xy[near])
            out[near[inside]] = True
    elif xy is not None and len(xy) == n and isinstance(box, Mapping):
        bx, by = _floats(box.get("x")), _floats(box.get("y"))
        if len(bx) == 2 and len(by) == 2:
            out = ((xy[:, 0] >= bx.min()) & (xy[:, 0] <= bx.max()) & (xy[:, 1] >= by.min())
                   & (xy[:, 1] <= by.max()))
    elif isinstance(indices, list):
        idx = np.array([i for i in indices if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n],
                       dtype=np.int64)
        out[idx] = True
    return out & visible


def _floats(values: Any) -> np.ndarray:
    if not isinstance(values, list) or len(values) > 100_000:
        return np.zeros(0)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.zeros(0)
    return arr if arr.ndim == 1 and np.isfinite(arr).all() else np.zeros(0)


def lasso_ids(selected: Mapping[str, Any] | None, ids: np.ndarray, visible: np.ndarray) -> list[str]:
    """Image ids of the visible points a selection picked (see :func:`lasso_mask`; indices only)."""
    return [str(i) for i in ids[lasso_mask(selected, None, visible)]]


def add_selection(selections: Sequence[Mapping[str, Any]], name: str, members: np.ndarray,
                  colour: str | None = None) -> list[dict[str, Any]]:
    """A new list with one more named selection (id ``s<N>``, next palette colour unless given).

    ``members`` is a bool (N,) mask; the selection stores it encoded (:func:`encode_members`) with its size.
    """
    name = (name or "").strip()[:80] or f"selection {len(selections) + 1}"
    used = {s["id"] for s in selections}
    k = len(selections) + 1
    while f"s{k}" in used:
        k += 1
    colour = colour or PALETTE[len(selections) % len(PALETTE)]
    members = np.asarray(members, dtype=bool)
    return [dict(s) for s in selections] + [{"id": f"s{k}", "name": name, "colour": colour,
                                             "members": encode_members(members), "n": int(members.sum())}]


def selection_masks(selections: Sequence[Mapping[str, Any]] | None, n: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(selection, bool (n,) members) of every well-formed selection; malformed ones are left out."""
    out = []
    for s in selections or []:
        if not isinstance(s, Mapping) or not isinstance(s.get("id"), str):
            continue
        try:
            out.append((dict(s), decode_members(s.get("members"), n)))
        except ValueError:
            continue
    return out


def edit_selection(selections: Sequence[Mapping[str, Any]], selection_id: str, *, name: str | None = None,
                   colour: str | None = None, delete: bool = False) -> list[dict[str, Any]]:
    """A new list with one selection renamed, recoloured or deleted."""
    if selection_id not in {s["id"] for s in selections}:
        raise ValueError(f"no selection {selection_id!r}")
    if colour is not None and colour not in PALETTE:
        raise ValueError(f"colour must be one of {PALETTE}")
    out = []
    for s in selections:
        s = dict(s)
        if s["id"] == selection_id:
            if delete:
                continue
            if name is not None and name.strip():
                s["name"] = name.strip()[:80]
            if colour is not None:
                s["colour"] = colour
        out.append(s)
    return out


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class GroupStatistics:
    """Statistics of named image groups (each a bool mask over the corpus).

    Attributes
    ----------
    mean_contribution : DataFrame, index = score columns, one column per group: mean weighted score.
    top_classes : DataFrame (group, class, share), the 10 most often predicted classes of each group.
    top_region : DataFrame (group, region, share), how often each region has the largest weighted score.
    sizes : group name -> number of images.
    """

    mean_contribution: pd.DataFrame
    top_classes: pd.DataFrame
    top_region: pd.DataFrame
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightedScores:
    """What group statistics need of one view and weighting, computed once (the query caches it).

    Attributes
    ----------
    columns : score column names (C).
    W : float64 N x C weighted scores, 0 where the image has no vector.
    valid : bool (N,), the image has a vector.
    top : int64 (N,), the column with the largest weighted score (-1 without a vector).
    classes : int64 (N,) code of the predicted class; ``class_names`` : the names of the codes.
    """

    columns: tuple[str, ...]
    W: np.ndarray
    valid: np.ndarray
    top: np.ndarray
    classes: np.ndarray
    class_names: tuple[str, ...]


def weighted_scores(matrix: ScoreMatrix, weights: np.ndarray, predictions: np.ndarray) -> WeightedScores:
    """Weighted scores, top column and predicted-class codes of every image (see :class:`WeightedScores`)."""
    W = np.nan_to_num(matrix.values * weights[None, :])
    top = np.full(matrix.n, -1, dtype=np.int64)
    if matrix.valid.any():
        top[matrix.valid] = np.argmax(W[matrix.valid], axis=1)
    codes, names = pd.factorize(pd.Series(predictions, dtype=object))
    return WeightedScores(matrix.columns, W, matrix.valid, top, np.asarray(codes, dtype=np.int64),
                          tuple(str(c) for c in names))


def group_statistics(matrix: ScoreMatrix | WeightedScores, weights: np.ndarray | None, predictions: np.ndarray | None,
                     groups: Sequence[tuple[str, np.ndarray]], top_n: int = 10) -> GroupStatistics:
    """Mean weighted contribution per column, top predicted classes and top region for each group.

    ``matrix`` is a score matrix (then ``weights`` and ``predictions`` are needed) or precomputed
    :class:`WeightedScores` (then they are ignored). Images without a vector are left out of every group.
    """
    ws = matrix if isinstance(matrix, WeightedScores) else weighted_scores(matrix, np.asarray(weights),
                                                                              np.asarray(predictions))
    C = len(ws.columns)
    means: dict[str, np.ndarray] = {}
    classes, tops = [], []
    sizes = {}
    for name, mask in groups:
        m = mask & ws.valid
        count = int(m.sum())
        sizes[name] = count
        means[name] = (m.astype(np.float64) @ ws.W) / count if count else np.zeros(C)
        if count:
            share = np.bincount(ws.classes[m], minlength=len(ws.class_names)) / count
            order = np.argsort(-share, kind="stable")[:top_n]
            classes += [(name, ws.class_names[c], float(share[c])) for c in order if share[c] > 0]
            counts = np.bincount(ws.top[m], minlength=C) / count
            tops += [(name, ws.columns[k], float(counts[k])) for k in np.argsort(-counts, kind="stable")
                     if counts[k] > 0]
    return GroupStatistics(pd.DataFrame(means, index=list(ws.columns)),
                           pd.DataFrame(classes, columns=["group", "class", "share"]),
                           pd.DataFrame(tops, columns=["group", "region", "share"]), sizes)


# ------------------------------------------------------- agreement (suggested clusters and outliers: clusters.py)


def method_agreement(vectors: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Spearman rank correlation of region scores between every pair of methods (NaN if constant)."""
    names = list(vectors)
    out = pd.DataFrame(np.nan, index=names, columns=names)
    for a in names:
        for b in names:
            u, v = np.asarray(vectors[a], float), np.asarray(vectors[b], float)
            if np.isnan(u).any() or np.isnan(v).any() or np.ptp(u) == 0 or np.ptp(v) == 0:
                continue
            ru, rv = pd.Series(u).rank().to_numpy(), pd.Series(v).rank().to_numpy()
            out.loc[a, b] = float(np.corrcoef(ru, rv)[0, 1])
    return out


# --------------------------------------------------------------------------- point codes (scatter colours)

CODE_BASE = 0  # codes 1..len(PALETTE): the selection (or class) colours, in palette order
CODE_FILTERED = len(PALETTE) + 1
CODE_HIDDEN = len(PALETTE) + 2
CODE_NO_VALIDITY = len(PALETTE) + 3  # no value to colour by (no validity record, no vector)
CODE_NO_VALUE = CODE_NO_VALIDITY
DIV_BINS = 21  # odd: zero falls in the middle (white) bin
CODE_DIV = len(PALETTE) + 4  # codes CODE_DIV .. CODE_DIV + DIV_BINS - 1: -limit .. +limit
FAITH_BINS = DIV_BINS  # faithfulness is coloured on the diverging bins with limit 1
CODE_FAITH = CODE_DIV
N_CODES = CODE_DIV + DIV_BINS


def symmetric_limit(values: np.ndarray) -> float:
    """The half-width of a zero-centred colour range for ``values`` (NaN ignored): the largest |value|,
    or its 99th percentile from 200 values on (a few extremes would wash every other point out); 1 when
    there is nothing to colour.

    Examples
    --------
    >>> symmetric_limit(np.array([-0.2, 0.05, np.nan]))
    0.2
    """
    a = np.abs(np.asarray(values, dtype=np.float64))
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return 1.0
    limit = float(np.percentile(a, 99) if len(a) >= 200 else a.max())
    return limit if limit > 0 else 1.0


def diverging_codes(values: np.ndarray, limit: float) -> np.ndarray:
    """uint8 (N,): the diverging bin code of each value on ``[-limit, limit]`` (values beyond it saturate;
    zero lands in the middle bin), ``CODE_NO_VALUE`` for NaN.

    Examples
    --------
    >>> (diverging_codes(np.array([-1.0, 0.0, 1.0, np.nan]), 1.0) - CODE_DIV).tolist()[:3]
    [0, 10, 20]
    """
    if not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f"limit must be a positive number, got {limit!r}")
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bins = np.clip(np.floor((v / limit + 1) / 2 * DIV_BINS), 0, DIV_BINS - 1)
    return np.where(np.isnan(v), CODE_NO_VALUE, CODE_DIV + np.nan_to_num(bins)).astype(np.uint8)


def selection_codes(n: int, selections: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """uint8 (n,): 1 + the palette index of the last selection holding each point, 0 for none."""
    codes = np.zeros(n, dtype=np.uint8)
    for colour, mask in selections:
        codes[mask] = 1 + (PALETTE.index(colour) if colour in PALETTE else 0)
    return codes


def point_codes(visible: np.ndarray, selections: Sequence[tuple[str, np.ndarray]],
                faithfulness: np.ndarray | None = None, hide_filtered: bool = False, *,
                values: np.ndarray | None = None, limit: float = 1.0,
                categories: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N,): the colour code of every point (see ``figures.CODE_COLOURS``).

    By default a point takes the colour of the last selection that holds it (``selections``: (palette
    colour, bool mask)), else the base colour. With ``values`` (float (N,), NaN = none; e.g. one region's
    score) it takes its diverging bin on ``[-limit, limit]``; ``faithfulness`` is the same with limit 1.
    With ``categories`` (int (N,), -1 = none, e.g. a predicted class) it takes palette colour
    ``categories % len(PALETTE)``. Filtered-out points are dimmed, or hidden when ``hide_filtered``.
    """
    n = len(visible)
    if faithfulness is not None:
        values, limit = faithfulness, 1.0
    if values is not None:
        codes = diverging_codes(values, limit)
    elif categories is not None:
        cat = np.asarray(categories, dtype=np.int64)
        codes = np.where(cat < 0, CODE_BASE, 1 + cat % len(PALETTE)).astype(np.uint8)
    else:
        codes = selection_codes(n, selections)
    codes[~visible] = CODE_HIDDEN if hide_filtered else CODE_FILTERED
    return codes


def categories(labels: np.ndarray, k: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(int64 (N,) category code, names): the ``k - 1`` commonest labels get codes 0.. in order of
    frequency (ties: alphabetical), every other label shares the last code, named ``"other"``.

    Examples
    --------
    >>> codes, names = categories(np.array(["b", "a", "b", "c", "d"], dtype=object), 3)
    >>> codes.tolist(), names
    ([0, 1, 0, 2, 2], ('b', 'a', 'other'))
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    uniq, inverse, counts = np.unique(np.asarray(labels).astype(str), return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    if len(uniq) <= k:
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        return rank[inverse.ravel()], tuple(str(u) for u in uniq[order])
    rank = np.full(len(uniq), k - 1, dtype=np.int64)
    rank[order[:k - 1]] = np.arange(k - 1)
    return rank[inverse.ravel()], (*(str(u) for u in uniq[order[:k - 1]]), "other")


def marker_size(n: int) -> int:
    """Marker size in pixels for a scatter of ``n`` points: 12 for a dozen, shrinking with log10(n) to 3.

    Examples
    --------
    >>> [marker_size(n) for n in (12, 1_000, 100_000)]
    [12, 8, 4]
    """
    return int(np.clip(round(15 - 2.3 * math.log10(max(n, 1))), 3, 12))
