"""Pure view functions of the dashboard: arrays and frames in, arrays and frames out.

No Dash, no disk, no globals: filters, ranking, paging, group statistics, the weighted-cosine
embedding input and the embedding itself, suggested clusters and outliers, method agreement,
named selections and the dashboard state. Callbacks call these and nothing else computes.

Conventions: ``values`` is float64 N x C (one row per image of the corpus, in corpus order, one column
per score column; NaN where the image has no vector for this head and method); filter ranges and slider
bounds are in percent (score x 100); weights are per region and apply to every column of the region.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from semcontrib.contributions import weighted_unit_vectors

EMBEDDINGS = ("tsne", "umap")
CLUSTERINGS = ("kmeans", "hdbscan")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f")
STATE_VERSION = 1


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


def embed(X: np.ndarray, algorithm: str = "tsne", seed: int = 0, max_fit: int = 3000,
          progress: Callable[[str], None] | None = None) -> np.ndarray:
    """float64 N x 2 embedding of the rows of ``X`` (weighted unit vectors).

    Up to ``max_fit`` rows are embedded exactly (t-SNE with PCA initialisation, or UMAP). For larger
    corpora a seeded subsample of ``max_fit`` rows is embedded and every other row is placed at the
    distance-weighted mean position of its 5 nearest subsample neighbours (same metric), so a
    100,000-image corpus re-embeds in tens of seconds rather than an hour. Output is centred and scaled to unit max-abs.
    """
    if algorithm not in EMBEDDINGS:
        raise ValueError(f"algorithm must be one of {EMBEDDINGS}, got {algorithm!r}")
    if max_fit < 10:
        raise ValueError("max_fit must be >= 10")
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    say = progress or (lambda _msg: None)
    if n == 0:
        return np.zeros((0, 2))
    if n < 4:
        return np.column_stack([np.arange(n, dtype=np.float64), np.zeros(n)])
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, size=max_fit, replace=False)) if n > max_fit else np.arange(n)
    # tiny jitter separates identical rows (zero vectors, duplicates), which t-SNE/UMAP dislike
    Xf = X[fit_idx] + rng.normal(0, 1e-6, (len(fit_idx), X.shape[1]))
    say(f"embedding {len(fit_idx)} images with {algorithm}")
    if algorithm == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(Xf) - 1) / 3)))
        # exact gradients are faster than Barnes-Hut below ~600 points
        Y_fit = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                     method="exact" if len(Xf) <= 600 else "barnes_hut",
                     max_iter=500 if len(Xf) > 600 else 1000).fit_transform(Xf)
    else:
        import umap

        Y_fit = umap.UMAP(n_neighbors=int(min(15, len(Xf) - 1)), random_state=seed, n_jobs=1,
                          init="random" if len(Xf) < 20 else "spectral").fit_transform(Xf)
    Y = np.zeros((n, 2))
    Y[fit_idx] = Y_fit
    if n > len(fit_idx):
        say(f"placing {n - len(fit_idx)} more images by nearest neighbours")
        from sklearn.neighbors import NearestNeighbors

        rest = np.setdiff1d(np.arange(n), fit_idx)
        nn = NearestNeighbors(n_neighbors=5).fit(X[fit_idx])
        dist, ind = nn.kneighbors(X[rest])
        w = 1.0 / (dist + 1e-6)
        Y[rest] = (Y_fit[ind] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    Y -= Y.mean(axis=0)
    scale = np.abs(Y).max()
    return Y / scale if scale > 0 else Y


def embedding_key(corpus_key: str, head: str, method: str, normalisation: str, algorithm: str,
                  weights: np.ndarray, seed: int = 0) -> str:
    """A hash of everything an embedding depends on (its cache key)."""
    import hashlib

    payload = json.dumps([corpus_key, head, method, normalisation, algorithm,
                          np.round(weights, 6).tolist(), seed])
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


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


def members_mask(ids_index: Mapping[str, int], n: int, image_ids: Sequence[str]) -> np.ndarray:
    """bool (n,) from image ids; ids not in the corpus are ignored."""
    mask = np.zeros(n, dtype=bool)
    idx = [ids_index[i] for i in image_ids if i in ids_index]
    mask[idx] = True
    return mask


def lasso_ids(selected: Mapping[str, Any] | None, ids: np.ndarray, visible: np.ndarray) -> list[str]:
    """Image ids of the points in a plotly ``selectedData`` (customdata = corpus index) that are visible."""
    if not selected:
        return []
    out = []
    for pt in selected.get("points", []):
        cd = pt.get("customdata")
        i = cd[0] if isinstance(cd, list) else cd
        if isinstance(i, int) and 0 <= i < len(ids) and visible[i]:
            out.append(str(ids[i]))
    return list(dict.fromkeys(out))


def add_selection(selections: Sequence[Mapping[str, Any]], name: str, image_ids: Sequence[str],
                  colour: str | None = None) -> list[dict[str, Any]]:
    """A new list with one more named selection (id ``s<N>``, next palette colour unless given)."""
    name = (name or "").strip() or f"selection {len(selections) + 1}"
    used = {s["id"] for s in selections}
    k = len(selections) + 1
    while f"s{k}" in used:
        k += 1
    colour = colour or PALETTE[len(selections) % len(PALETTE)]
    return [dict(s) for s in selections] + [{"id": f"s{k}", "name": name[:80], "colour": colour,
                                             "image_ids": list(image_ids)}]


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


def group_statistics(matrix: ScoreMatrix, weights: np.ndarray, predictions: np.ndarray,
                     groups: Sequence[tuple[str, np.ndarray]], top_n: int = 10) -> GroupStatistics:
    """Mean weighted contribution per column, top predicted classes and top region for each group."""
    W = matrix.values * weights[None, :]
    means: dict[str, np.ndarray] = {}
    classes, tops = [], []
    sizes = {}
    top_col = np.full(matrix.n, -1)
    valid = matrix.valid
    if valid.any():
        top_col[valid] = np.argmax(W[valid], axis=1)
    for name, mask in groups:
        m = mask & valid
        sizes[name] = int(m.sum())
        means[name] = W[m].mean(axis=0) if m.any() else np.zeros(len(matrix.columns))
        if m.any():
            vc = pd.Series(predictions[m]).value_counts(normalize=True).head(top_n)
            classes += [(name, str(c), float(s)) for c, s in vc.items()]
            counts = np.bincount(top_col[m], minlength=len(matrix.columns)) / m.sum()
            tops += [(name, matrix.columns[k], float(counts[k])) for k in np.argsort(-counts, kind="stable")
                     if counts[k] > 0]
    return GroupStatistics(pd.DataFrame(means, index=list(matrix.columns)),
                           pd.DataFrame(classes, columns=["group", "class", "share"]),
                           pd.DataFrame(tops, columns=["group", "region", "share"]), sizes)


# --------------------------------------------------------------------------- clusters, outliers, agreement


def suggest_clusters(X: np.ndarray, algorithm: str = "kmeans", k: int = 4, seed: int = 0,
                     max_fit: int = 20000) -> np.ndarray:
    """int (N,) cluster labels of weighted unit vectors (-1 = noise for HDBSCAN).

    HDBSCAN on more than ``max_fit`` rows fits a subsample and labels the rest by nearest neighbour.
    """
    if algorithm not in CLUSTERINGS:
        raise ValueError(f"algorithm must be one of {CLUSTERINGS}, got {algorithm!r}")
    n = len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if algorithm == "kmeans":
        if not 2 <= k <= 50:
            raise ValueError(f"k must lie in 2..50, got {k}")
        from sklearn.cluster import KMeans, MiniBatchKMeans

        k = min(k, n)
        if n > max_fit:
            return MiniBatchKMeans(k, random_state=seed, n_init=3).fit_predict(X).astype(np.int64)
        return KMeans(k, random_state=seed, n_init=4).fit_predict(X).astype(np.int64)
    from sklearn.cluster import HDBSCAN

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, max_fit, replace=False)) if n > max_fit else np.arange(n)
    labels_fit = HDBSCAN(min_cluster_size=max(3, len(idx) // 50), copy=True).fit_predict(X[idx])
    if len(idx) == n:
        return labels_fit.astype(np.int64)
    from sklearn.neighbors import NearestNeighbors

    labels = np.empty(n, dtype=np.int64)
    labels[idx] = labels_fit
    rest = np.setdiff1d(np.arange(n), idx)
    labels[rest] = labels_fit[NearestNeighbors(n_neighbors=1).fit(X[idx]).kneighbors(X[rest])[1][:, 0]]
    return labels


def flag_outliers(X: np.ndarray, n_neighbors: int = 5, threshold: float = 3.5) -> np.ndarray:
    """bool (N,): rows whose mean distance to their nearest neighbours is far above typical.

    Robust z-score ``(d - median) / (1.4826 * MAD) > threshold`` of the mean kNN distance.
    """
    n = len(X)
    if n <= n_neighbors + 1:
        return np.zeros(n, dtype=bool)
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(X).kneighbors(X)
    d = dist[:, 1:].mean(axis=1)
    med = np.median(d)
    mad = 1.4826 * np.median(np.abs(d - med))
    if mad == 0:  # most points coincide: flag the few that do not
        far = d > med + 1e-9
        return far if far.mean() < 0.05 else np.zeros(n, dtype=bool)
    return (d - med) / mad > threshold


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


# --------------------------------------------------------------------------- dashboard state


@dataclass(frozen=True)
class DashboardState:
    """What a saved dashboard state restores.

    Attributes
    ----------
    head, method, normalisation, algorithm : the view.
    highlight : predicted classes to highlight.
    filters : score column -> [low, high] in percent.
    weights : region -> weight.
    selections : the named selections ({id, name, colour, image_ids}).
    """

    head: str
    method: str
    normalisation: str
    algorithm: str
    highlight: tuple[str, ...]
    filters: dict[str, list[float]]
    weights: dict[str, float]
    selections: tuple[dict[str, Any], ...]

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "head": self.head, "method": self.method,
                           "normalisation": self.normalisation, "algorithm": self.algorithm,
                           "highlight": list(self.highlight), "filters": self.filters,
                           "weights": self.weights, "selections": list(self.selections)}, indent=1)


def parse_state(text: str, heads: Mapping[str, Sequence[str]], methods: Sequence[str],
                normalisations: Sequence[str], vocabulary: Sequence[str]) -> DashboardState:
    """Validate a saved state against this corpus; raise ValueError saying what is wrong."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"state is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
        raise ValueError(f"state must be a JSON object with version {STATE_VERSION}")
    head, method, norm = str(obj.get("head")), str(obj.get("method")), str(obj.get("normalisation"))
    if head not in heads:
        raise ValueError(f"unknown head {head!r}; this corpus has {list(heads)}")
    if method not in methods:
        raise ValueError(f"unknown method {method!r}; this corpus has {list(methods)}")
    if norm not in normalisations:
        raise ValueError(f"unknown normalisation {norm!r}")
    algorithm = obj.get("algorithm", "tsne")
    if algorithm not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {algorithm!r}")
    highlight = tuple(str(c) for c in obj.get("highlight") or [] if str(c) in heads[head])
    filters = {}
    for col, rng in (obj.get("filters") or {}).items():
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int | float) for x in rng)):
            raise ValueError(f"filter {col!r} must be [low, high]")
        filters[str(col)] = [float(rng[0]), float(rng[1])]
    weights = {}
    for region, w in (obj.get("weights") or {}).items():
        if region not in vocabulary or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"bad weight {region!r}: {w!r}")
        weights[str(region)] = float(w)
    selections: list[dict[str, Any]] = []
    for s in obj.get("selections") or []:
        if not (isinstance(s, dict) and isinstance(s.get("name"), str)
                and isinstance(s.get("image_ids"), list)):
            raise ValueError("each selection needs a name and a list of image_ids")
        colour = s.get("colour") if s.get("colour") in PALETTE else PALETTE[len(selections) % len(PALETTE)]
        selections.append({"id": str(s.get("id") or f"s{len(selections) + 1}"), "name": s["name"][:80],
                           "colour": colour, "image_ids": [str(i) for i in s["image_ids"]]})
    return DashboardState(head, method, norm, algorithm, highlight, filters, weights, tuple(selections))
