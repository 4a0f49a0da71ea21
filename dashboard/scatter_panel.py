"""What the embedding and scatter callbacks compute: the embedding (cached, or a background job whose
result is applied, offered or dropped), the scatter figure (every point, or above :data:`POINTS_MAX` a
density image plus a sample of points), zoom, hover, click and the lasso.

Functions take the records of :mod:`semcontrib.dashboard.records` and plain values and return what Dash
expects; they keep no state between calls (the query caches read-only results).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from dash import Patch, no_update

from semcontrib.dashboard import figures, layout, panels, views
from semcontrib.dashboard.consistency import ViewTag, decide, lasso_pending
from semcontrib.dashboard.embedding import progress_fraction
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import Filters, ScatterOptions, View, Weights

POINTS_MAX = 200_000  # above this many images the scatter is a density image plus a sample of points
SAMPLE_POINTS = 20_000


def controls_tag(view: View, algorithm: Any, weights: Weights) -> ViewTag:
    """The view the controls show now (what a background result is checked against)."""
    return ViewTag.of(view.as_dict(), str(algorithm or ""), weights.as_dict())


def _embedding_store(key: str, spec: Any, ready: bool) -> dict[str, Any]:
    tag = ViewTag.of(spec.view.as_dict(), spec.algorithm, dict(spec.weights))
    name = tag.algorithm_name
    return {"key": key, "label": f"{name} of {spec.view.label}" if ready
            else f"PCA of {spec.view.label} — {name} being computed", "ready": ready, "head": spec.view.head,
            "view": tag.to_json()}


HIDDEN = {"display": "none"}
OFFER_STYLE = {"display": "inline-block", "background": "#fff3cd", "border": "1px solid #d39e00",
               "padding": "2px 8px", "margin": "2px 0", "borderRadius": "4px"}


def embedding_lookup(query: CorpusQuery, view: View, algorithm: str, weights: Weights, recompute: bool
                     ) -> dict[str, Any]:
    """Outputs ``embedding`` (the browser's store: key, label and the view it shows), ``job`` (a request
    for the background job, or no_update) and ``offer`` (hidden: a result offered for another view is
    withdrawn). A cached embedding (this process or the corpus folder) is shown at once; else an instant
    PCA layout is shown and the job computes the real one. Changing the view also cancels a running job
    (``cancel=`` of the job's callback)."""
    spec, X = query.embedding_spec(view, algorithm, weights.as_dict())
    withdrawn = {"offered": None, "offer_style": HIDDEN}
    if query.cached_embedding(spec) is not None:
        return {"embedding": _embedding_store(spec.client_key, spec, True), "job": no_update, **withdrawn}
    quick = query.quick_embedding(spec, X)
    job = {**view.as_dict(), "algorithm": algorithm, "weights": dict(spec.weights), "key": spec.client_key}
    return {"embedding": _embedding_store(quick, spec, False), "job": job, **withdrawn}


def embedding_job(query: CorpusQuery, set_progress: Any, job: Mapping[str, Any] | None) -> Any:
    """Background job: compute the embedding of ``job`` and store it in the corpus folder. Returns the
    result tagged with its view (``{"embedding", "view"}``), which :func:`embedding_arrival` applies
    only if that view is still the one the controls show."""
    if not isinstance(job, Mapping):
        return no_update
    view = View.from_inputs(job)
    name = ViewTag.of(view.as_dict(), str(job.get("algorithm"))).algorithm_name
    set_progress(("0", f"{name} of {view.label}: loading the contribution vectors"))
    spec, X = query.embedding_spec(view, str(job.get("algorithm")), job.get("weights") or {})
    fraction = {"value": 0.0}

    def say(msg: str) -> None:
        fraction["value"] = progress_fraction(msg, fraction["value"])
        set_progress((f"{10 * fraction['value']:.1f}", msg))

    Y = query.compute_embedding(spec, X, say)
    set_progress(("10", f"{name} ready: {len(Y)} images"))
    store = _embedding_store(spec.client_key, spec, True)
    return {"embedding": store, "view": store["view"]}


def embedding_arrival(query: CorpusQuery, result: Any, controls: ViewTag, lasso_store: Any) -> dict[str, Any]:
    """A finished embedding job: applied when it is the view the controls show and the user is not
    working on the layout shown (no pending lasso); offered ("t-SNE ready — show") when the user is, or
    has changed the weights since; dropped when the view changed (outputs ``embedding``, ``offered``,
    ``offer_text``, ``offer_style``, ``status``: the line under the progress bar)."""
    keep = {"embedding": no_update, "offered": no_update, "offer_text": no_update, "offer_style": no_update,
            "status": no_update}
    if not isinstance(result, Mapping) or not isinstance(result.get("embedding"), Mapping):
        return keep
    tag = ViewTag.from_json(result.get("view"))
    decision = decide(tag, controls, busy=lasso_pending(lasso_store))
    if decision == "drop" or tag is None or query.embedding_by_key(result["embedding"].get("key")) is None:
        name = tag.algorithm_name if tag else "an embedding"
        return {**keep, "status": f"a {name} of another view finished and was not shown"}
    if decision == "apply":
        return {**keep, "embedding": dict(result["embedding"]), "offered": None, "offer_style": HIDDEN,
                "status": f"{tag.algorithm_name} ready and shown"}
    why = "weights changed since" if tag.weights != controls.weights else "your lasso is kept until then"
    return {**keep, "offered": dict(result), "offer_text": f"{tag.algorithm_name} ready ({why}) — ",
            "offer_style": OFFER_STYLE, "status": f"{tag.algorithm_name} ready: offered above the scatter"}


def show_offer(query: CorpusQuery, offered: Any, controls: ViewTag) -> tuple[Any, Any, dict[str, str]]:
    """'Show' pressed: (the embedding store, offered cleared, offer hidden); nothing when the offered
    result is for another view than the controls show."""
    if not isinstance(offered, Mapping) or not isinstance(offered.get("embedding"), Mapping):
        return no_update, None, HIDDEN
    if decide(ViewTag.from_json(offered.get("view")), controls) == "drop":
        return no_update, None, HIDDEN
    return dict(offered["embedding"]), None, HIDDEN


def _ordered_selections(query: CorpusQuery, selections: Any) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Suggested clusters first, the user's own selections after them (drawn on top)."""
    sels = panels.selection_masks(query, selections)
    return [x for x in sels if x[0].get("kind") == "cluster"] + [x for x in sels if x[0].get("kind") != "cluster"]


def _selection_legend(sels: Sequence[tuple[dict[str, Any], np.ndarray]]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{s.get('name')} ({int(m.sum())})", str(s.get("colour"))) for s, m in sels)


def _codes(query: CorpusQuery, view: View, filters: Filters, selections: Any, options: ScatterOptions
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, figures.Colouring]:
    """(visible mask, point codes, highlight mask, selection rings or None, what the colours mean)."""
    mask = query.filter_mask(view, filters)
    sels = _ordered_selections(query, selections)
    pairs = [(s["colour"], m) for s, m in sels]
    legend = _selection_legend(sels)
    n = len(query.ids)
    highlight = query.highlight_mask(view.head, options.highlight) & mask
    colour = options.colour_by
    matrix = query.score_matrix(view)
    if colour == "faithfulness":
        faith = query.faithfulness(view)
        values = np.full(n, np.nan) if faith is None else faith
        codes = views.point_codes(mask, [], hide_filtered=options.hide_filtered, values=values, limit=1.0)
        return mask, codes, highlight, views.selection_codes(n, pairs), figures.Colouring(
            "faithfulness (Spearman)", 1.0, legend, outlined=True)
    if colour.startswith("score:") and colour[6:] in matrix.columns:
        column = colour[6:]
        values = matrix.values[:, matrix.columns.index(column)] * 100
        limit = round(views.symmetric_limit(values), 2) or 1.0
        codes = views.point_codes(mask, [], hide_filtered=options.hide_filtered, values=values, limit=limit)
        return mask, codes, highlight, views.selection_codes(n, pairs), figures.Colouring(
            f"{column} ({figures.UNIT})", limit, legend, outlined=True)
    if colour == "class":
        cats, names = views.categories(query.predictions(view.head), len(views.PALETTE))
        codes = views.point_codes(mask, [], hide_filtered=options.hide_filtered, categories=cats)
        return mask, codes, highlight, None, figures.Colouring(
            f"predicted {view.head}", None, tuple((c, views.PALETTE[k]) for k, c in enumerate(names)))
    codes = views.point_codes(mask, pairs, hide_filtered=options.hide_filtered)
    return mask, codes, highlight, None, figures.Colouring("selection", None, legend)


def _sample(n: int) -> np.ndarray:
    return np.sort(np.random.default_rng(0).choice(n, size=min(n, SAMPLE_POINTS), replace=False))


def shown_rows(n: int, xy: np.ndarray | None, window: Any) -> np.ndarray | None:
    """Corpus rows drawn as points in density mode: a fixed sample, or, zoomed in to ``window``
    ([x0, x1, y0, y1]), the images inside it (evenly thinned to at most SAMPLE_POINTS). None: every point."""
    if n <= POINTS_MAX:
        return None
    box = _window(window)
    if xy is None or box is None:
        return _sample(n)
    x0, x1, y0, y1 = box
    inside = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
    if len(inside) > SAMPLE_POINTS:
        inside = inside[np.linspace(0, len(inside) - 1, SAMPLE_POINTS).astype(np.int64)]
    return inside


def _window(window: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(window, list) or len(window) != 4:
        return None
    try:
        x0, x1, y0, y1 = (float(v) for v in window)
    except (TypeError, ValueError):
        return None
    if not all(np.isfinite([x0, x1, y0, y1])):
        return None
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


def zoom(query: CorpusQuery, relayout: Mapping[str, Any] | None, emb: Mapping[str, Any] | None, view: View,
         filters: Filters, selections: Any, *, options: ScatterOptions) -> dict[str, Any]:
    """Density mode, zoomed in: draw the images inside the window as points (a Patch of trace 0). Outputs
    ``figure`` and ``window`` (what :func:`shown_rows` needs to map point numbers back to images)."""
    xy = query.embedding_by_key((emb or {}).get("key"))
    if xy is None or len(xy) <= POINTS_MAX or not isinstance(relayout, Mapping):
        return {"figure": no_update, "window": no_update}
    keys = ("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]")
    if all(k in relayout for k in keys):
        window: list[float] | None = [relayout[k] for k in keys]
    elif relayout.get("xaxis.autorange") or relayout.get("autosize"):
        window = None
    else:
        return {"figure": no_update, "window": no_update}
    rows = shown_rows(len(xy), xy, window)
    assert rows is not None
    _, codes, highlight, outline, _colouring = _codes(query, view, filters, selections, options)
    symbols, _legend = _symbols(query, view.head)
    patch = Patch()
    trace = figures.points_trace(xy, rows, symbols, codes, highlight, size=views.marker_size(len(xy)),
                                 outline=outline)
    for field in ("x", "y", "customdata"):
        patch["data"][0][field] = trace[field]
    patch["data"][0]["marker"].update({k: trace["marker"][k] for k in ("symbol", "color", "size", "line")})
    box = _window(window) or figures.density_box(xy)
    patch["data"][figures.HOVER_TRACE].update(figures.hover_grid_extent(box))  # hover cells as fine as the view
    return {"figure": patch, "window": window}


# query -> head -> (symbols, legend): kept for the query's life, not beyond it
_SYMBOLS: weakref.WeakKeyDictionary[CorpusQuery, dict[str, tuple[np.ndarray, dict[str, str]]]] = (
    weakref.WeakKeyDictionary())


def _symbols(query: CorpusQuery, head: str) -> tuple[np.ndarray, dict[str, str]]:
    """:func:`figures.class_symbols` of ``head``'s predictions (the array read-only): they do not change for
    the query's life, and at 1,000,000 images computing them costs ~200 ms of every scatter update."""
    kept = _SYMBOLS.setdefault(query, {})
    if head not in kept:
        symbols, legend = figures.class_symbols(query.predictions(head))
        symbols.setflags(write=False)
        kept[head] = (symbols, legend)
    symbols, legend = kept[head]
    return symbols, dict(legend)


def scatter(query: CorpusQuery, emb: Mapping[str, Any] | None, view: View, filters: Filters, selections: Any,
            options: ScatterOptions, *, shown: Any = None, window: Any = None) -> dict[str, Any]:
    """Outputs ``figure``, ``count`` (how many images pass the filters) and ``shown`` (what the figure is
    built with: the embedding key, the colouring, and the number of its traces). When the page already
    shows this embedding coloured the same way, the figure is a ``Patch`` of the point colours (and the
    density image, and the selection legend) only; else the whole figure is sent."""
    mask, codes, highlight, outline, colouring = _codes(query, view, filters, selections, options)
    count = f"{int(mask.sum())} of {len(mask)} images pass the filters"
    key = (emb or {}).get("key")
    xy = query.embedding_by_key(key)
    if xy is None:
        return {"figure": {"data": [], "layout": {"title": {"text": "computing the embedding…"},
                                                  "xaxis": {"visible": False}, "yaxis": {"visible": False}}},
                "count": count, "shown": None, "window": None}
    dense = len(xy) > POINTS_MAX
    signature = f"{options.colour_by}|{colouring.limit}|{view.head}"
    symbols, legend = _symbols(query, view.head)
    n_fixed = 2 + dense + len(legend)  # points, colour bar, hover grid (density mode), class symbols
    if isinstance(shown, Mapping) and shown.get("key") == key and shown.get("signature") == signature:
        patch = Patch()
        drawn = shown_rows(len(xy), xy, window)
        rows = drawn if drawn is not None else slice(None)
        patch["data"][0]["marker"].update(figures.marker_update(
            codes[rows], highlight[rows], views.marker_size(len(xy)), None if outline is None else outline[rows]))
        if dense:
            patch["layout"]["images"][0]["source"] = figures.density_image(xy, codes)["source"]
        for k in reversed(range(int(shown.get("categories") or 0))):
            del patch["data"][n_fixed + k]
        patch["data"].extend(figures.category_legend(colouring))
        return {"figure": patch, "count": count, "window": no_update,
                "shown": {**shown, "categories": len(colouring.categories)}}
    title = f"{(emb or {}).get('label', '')}<br>symbol: predicted {view.head} · colour: {colouring.title}"
    tag = (emb or {}).get("view") or {}
    fig = figures.scatter_figure(xy, symbols, legend, codes, highlight, uirevision=str(key), title=title,
                                 density=figures.density_image(xy, codes) if dense else None,
                                 sample=shown_rows(len(xy), xy, None), colouring=colouring, outline=outline,
                                 meta={"key": key, "algorithm": tag.get("algorithm"),
                                       "ready": bool((emb or {}).get("ready")), "colour": options.colour_by})
    return {"figure": fig, "count": count, "window": None,
            "shown": {"key": key, "signature": signature, "categories": len(colouring.categories)}}


def point_rows(query: CorpusQuery, point_numbers: Sequence[Any], emb: Mapping[str, Any] | None = None,
               window: Any = None) -> np.ndarray:
    """int64 corpus rows of the scatter's points (plotly point numbers of trace 0: every image in corpus
    order, or in density mode the rows :func:`shown_rows` draws); bad numbers are dropped."""
    n = len(query.ids)
    xy = query.embedding_by_key((emb or {}).get("key")) if n > POINTS_MAX else None
    rows = shown_rows(n, xy, window)
    m = n if rows is None else len(rows)
    ok = np.array([p for p in point_numbers if isinstance(p, int) and not isinstance(p, bool) and 0 <= p < m],
                  dtype=np.int64)
    return ok if rows is None else rows[ok]


@functools.lru_cache(maxsize=2)
def _tree(query: CorpusQuery, key: str) -> Any:
    """A k-d tree of the positions of embedding ``key`` (read-only; the two latest are kept)."""
    from scipy.spatial import cKDTree

    xy = query.embedding_by_key(key)
    return None if xy is None else cKDTree(xy)


def nearest_row(query: CorpusQuery, position: Sequence[Any], emb: Mapping[str, Any] | None, window: Any = None
                ) -> int | None:
    """Density mode: the corpus row of the image nearest to ``position`` ((x, y) in data units, the centre
    of the hover grid's cell under the cursor), or None when none lies within one cell of it (a cell of the
    grid over ``window``, or over the whole density image when not zoomed)."""
    key = (emb or {}).get("key")
    xy = query.embedding_by_key(key)
    if xy is None or len(xy) <= POINTS_MAX or len(position) != 2:
        return None
    try:
        x, y = float(position[0]), float(position[1])
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(x) and np.isfinite(y)):
        return None
    x0, x1, y0, y1 = _window(window) or figures.density_box(xy)
    cell = float(np.hypot(x1 - x0, y1 - y0)) / figures.HOVER_CELLS
    distance, k = _tree(query, str(key)).query([x, y])
    return int(k) if distance <= cell else None


def _row(query: CorpusQuery, event: Mapping[str, Any] | None, emb: Any = None, window: Any = None) -> int | None:
    pts = (event or {}).get("points") or []
    if not pts or not isinstance(pts[0], Mapping):
        return None
    if pts[0].get("curveNumber") == figures.HOVER_TRACE:  # the density image's hover grid
        return nearest_row(query, [pts[0].get("x"), pts[0].get("y")], emb, window)
    if pts[0].get("curveNumber") != 0:
        return None
    rows = point_rows(query, [pts[0].get("pointNumber")], emb, window)
    return int(rows[0]) if len(rows) else None


# About half the hover card's height (a 200 px wide photo and four lines, ~260 px) as a share of the plot's
# height (the 600 px scatter less its title and margins, ~500 px).
CARD_HALF = 0.28


def card_direction(height: float) -> str:
    """Where the hover card opens from a point at ``height`` (0 = the bottom of the plot, 1 = its top): to
    its right, or below a point near the top and above one near the bottom, so the card never reaches past
    the scatter's top (where the page may end) or bottom.

    Examples
    --------
    >>> [card_direction(h) for h in (0.95, 0.5, 0.1)]
    ['bottom', 'right', 'top']
    """
    return "bottom" if height > 1 - CARD_HALF else "top" if height < CARD_HALF else "right"


def _height_in_plot(xy: np.ndarray | None, k: int, window: Any) -> float:
    """Where image ``k`` lies between the bottom (0) and the top (1) of the plot: the zoom ``window`` of
    density mode, else the extent of the points (plotly's own range, less its small padding)."""
    if xy is None or not 0 <= k < len(xy):
        return 0.5
    box = _window(window)
    y0, y1 = (box[2], box[3]) if box else (float(xy[:, 1].min()), float(xy[:, 1].max()))
    return float(np.clip((xy[k, 1] - y0) / (y1 - y0), 0, 1)) if y1 > y0 else 0.5


def tooltip(query: CorpusQuery, hover: Mapping[str, Any] | None, view: View, emb: Any = None,
            window: Any = None) -> tuple[bool, Any, Any, Any]:
    """(show, bbox, the hover card, its direction) of the image under the cursor: a drawn point, or in
    density mode the image nearest to the cursor (:func:`nearest_row`)."""
    k = _row(query, hover, emb, window)
    bbox = (hover or {})["points"][0].get("bbox") if k is not None else None
    if k is None or not isinstance(bbox, Mapping):
        return False, no_update, no_update, no_update
    where = _height_in_plot(query.embedding_by_key((emb or {}).get("key")), k, window)
    return True, bbox, layout.tooltip_card(query, k, query.score_matrix(view)), card_direction(where)


def focus_from_click(query: CorpusQuery, click: Mapping[str, Any] | None, emb: Any = None,
                     window: Any = None) -> tuple[Any, Any]:
    k = _row(query, click, emb, window)
    if k is None:
        return no_update, no_update
    return str(query.ids[k]), "image"


def lasso(query: CorpusQuery, selected: Mapping[str, Any] | None, emb: Mapping[str, Any] | None, view: View,
          filters: Filters, window: Any = None) -> tuple[dict[str, Any], str]:
    """(the lasso store ``{members, n}``, its text) from the browser's reduced selection (a polygon, a box
    or corpus rows) tested against the server's embedding."""
    drawn_on = selected.get("key") if isinstance(selected, Mapping) else None
    if isinstance(drawn_on, str) and query.embedding_by_key(drawn_on) is not None:
        emb = {"key": drawn_on}  # the layout the polygon was drawn on, even if another has arrived since
    if isinstance(selected, Mapping) and isinstance(selected.get("indices"), list):
        selected = {"indices": point_rows(query, selected["indices"][:len(query.ids)], emb, window).tolist()}
    mask = views.lasso_mask(selected, query.embedding_by_key((emb or {}).get("key")),
                            query.filter_mask(view, filters))
    return ({"members": views.encode_members(mask), "n": int(mask.sum()), "key": (emb or {}).get("key")},
            f"{int(mask.sum())} image{'' if mask.sum() == 1 else 's'} in the lasso")


