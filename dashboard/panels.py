"""What each callback computes: one function per callback, composing the query, the pure views and the
figure and component builders.

Functions take the records of :mod:`semcontrib.dashboard.records` (the view, the filters, the weights,
the scatter options) and plain values, and return what Dash expects; they keep no state between calls
(the query caches read-only results). Panels that only one tab shows compute only while their tab is
open, so a filter change costs the scatter and the open tab, not every panel.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from dash import Patch, dcc, html, no_update

from semcontrib.dashboard import clusters as cluster_views
from semcontrib.dashboard import figures, layout, state, views
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.consistency import ViewTag, decide, decide_clusters, lasso_pending
from semcontrib.dashboard.embedding import EMBEDDINGS, progress_fraction
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import Filters, ScatterOptions, View, Weights

PAGE_SIZE = 8
POINTS_MAX = 200_000  # above this many images the scatter is a density image plus a sample of points
SAMPLE_POINTS = 20_000
TABLE_BLOCK_MAX = 500


def _selections(query: CorpusQuery, selections: Any) -> list[tuple[dict[str, Any], np.ndarray]]:
    return views.selection_masks(selections if isinstance(selections, list) else [], len(query.ids))


# --------------------------------------------------------------------------- controls


def filter_panel(query: CorpusQuery, view: View, restore: Mapping[str, Any] | None, restored: bool,
                 current: Mapping[str, Any] | None = None) -> tuple[list[Any], str, Any]:
    """(the range sliders of the view's score columns, a note, ready). A restored state sets them (and the
    session may be saved from then on: ``ready``); otherwise the filters set before the view changed
    (``current``: the sliders' ids, values, min and max) are kept for every column the new view still has
    (clamped to its range), and the note says which were reset."""
    matrix = query.score_matrix(view)
    bounds = views.slider_bounds(matrix.values)
    if restored:
        return layout.filter_sliders(matrix.columns, bounds, (restore or {}).get("filters", {})), "", True
    cur = current or {}
    ids, values = cur.get("ids") or [], cur.get("values") or []
    full = {str(i.get("column")): [lo, hi] for i, lo, hi in zip(ids, cur.get("min") or [], cur.get("max") or [])
            if isinstance(i, Mapping)}
    active = views.ranges_from_sliders([i for i in ids if isinstance(i, Mapping)], values, full)
    kept = {c: r for c, r in active.items() if c in matrix.columns}
    reset = [c for c in active if c not in matrix.columns]
    note = (f"kept filters: {', '.join(kept)}" if kept else "") + (
        ("; " if kept else "") + f"reset (not a column of this view): {', '.join(reset)}" if reset else "")
    return layout.filter_sliders(matrix.columns, bounds, kept), note, no_update


def highlight_options(query: CorpusQuery, head: str) -> list[dict[str, str]]:
    present = set(query.predictions(head))
    return [{"label": c, "value": c} for c in query.heads[head] if c in present]


# --------------------------------------------------------------------------- embedding and scatter


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
    sels = _selections(query, selections)
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
         filters: Filters, selections: Any, options: ScatterOptions) -> dict[str, Any]:
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
    symbols, _legend = figures.class_symbols(query.predictions(view.head))
    patch = Patch()
    trace = figures.points_trace(xy, rows, symbols, codes, highlight, views.marker_size(len(xy)), outline)
    for field in ("x", "y", "customdata"):
        patch["data"][0][field] = trace[field]
    patch["data"][0]["marker"].update({k: trace["marker"][k] for k in ("symbol", "color", "size", "line")})
    return {"figure": patch, "window": window}


def scatter(query: CorpusQuery, emb: Mapping[str, Any] | None, view: View, filters: Filters, selections: Any,
            options: ScatterOptions, shown: Any, window: Any = None) -> dict[str, Any]:
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
    symbols, legend = figures.class_symbols(query.predictions(view.head))
    n_fixed = 2 + len(legend)
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


def _row(query: CorpusQuery, event: Mapping[str, Any] | None, emb: Any = None, window: Any = None) -> int | None:
    pts = (event or {}).get("points") or []
    if not pts or not isinstance(pts[0], Mapping) or pts[0].get("curveNumber") != 0:
        return None
    rows = point_rows(query, [pts[0].get("pointNumber")], emb, window)
    return int(rows[0]) if len(rows) else None


def tooltip(query: CorpusQuery, hover: Mapping[str, Any] | None, view: View, emb: Any = None,
            window: Any = None) -> tuple[bool, Any, Any]:
    k = _row(query, hover, emb, window)
    if k is None or not (hover or {})["points"][0].get("bbox"):
        return False, no_update, no_update
    return True, hover["points"][0].get("bbox"), layout.tooltip_card(query, k, query.score_matrix(view))  # type: ignore[index]


def focus_from_click(query: CorpusQuery, click: Mapping[str, Any] | None, emb: Any = None,
                     window: Any = None) -> tuple[Any, Any]:
    k = _row(query, click, emb, window)
    if k is None:
        return no_update, no_update
    return str(query.ids[k]), "image"


# --------------------------------------------------------------------------- selections


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


def table_pick(query: CorpusQuery, rows: Sequence[Mapping[str, Any]] | None) -> tuple[Any, Any]:
    """Rows picked in the table become the lasso (so they are saved as a selection the same way)."""
    if not rows:
        return no_update, no_update
    mask = np.zeros(len(query.ids), dtype=bool)
    picked = [r.get("index") for r in rows if isinstance(r, Mapping)]
    mask[[k for k in picked if isinstance(k, int) and 0 <= k < len(mask)]] = True
    return ({"members": views.encode_members(mask), "n": int(mask.sum())},
            f"{int(mask.sum())} images picked in the table")


def edit_selections(query: CorpusQuery, trigger: Any, selections: Any, lasso_store: Any, edit: Mapping[str, Any]
                    ) -> list[dict[str, Any]] | Any:
    """Save the lasso as a named selection, or rename, recolour or delete one (``edit``: name, target,
    new_name, colour)."""
    sels = [s for s, _ in _selections(query, selections)]
    if trigger == I.SELECTION_SAVE:
        try:
            members = views.decode_members((lasso_store or {}).get("members"), len(query.ids))
        except ValueError:
            return no_update
        name = str(edit.get("name") or "")
        if not members.any() or len(sels) >= state.MAX_SELECTIONS or name.strip().lower() in state.RESERVED_NAMES:
            return no_update
        return views.add_selection(sels, name, members)
    target = edit.get("target")
    if not target or target not in {s["id"] for s in sels}:
        return no_update
    if trigger == I.EDIT_RENAME:
        new_name = str(edit.get("new_name") or "")
        if new_name.strip().lower() in state.RESERVED_NAMES:
            return no_update
        return views.edit_selection(sels, target, name=new_name)
    if trigger == I.EDIT_RECOLOUR and edit.get("colour") in views.PALETTE:
        return views.edit_selection(sels, target, colour=edit.get("colour"))
    if trigger == I.EDIT_DELETE:
        return views.edit_selection(sels, target, delete=True)
    return no_update


def selection_lists(selections: Any) -> tuple[Any, list, list, list]:
    sels = [s for s in selections or [] if isinstance(s, Mapping)]
    opts = [{"label": f"{s.get('name')} ({s.get('n', 0)})", "value": s.get("id")} for s in sels]
    scope = [{"label": "filtered set", "value": "filtered"}] + opts
    return layout.selection_list(sels), opts, opts, scope


def _groups(query: CorpusQuery, mask: np.ndarray, selections: Any, compare: Sequence[str] | None
            ) -> list[tuple[str, str, np.ndarray]]:
    """(name, colour, members within the filter) of the filtered set, or of the 1-2 compared selections."""
    chosen = [(s, m) for s, m in _selections(query, selections) if s["id"] in (compare or [])][:2]
    if not chosen:
        return [("filtered set", "#999999", mask)]
    return [(s["name"], s["colour"], m & mask) for s, m in chosen]


# --------------------------------------------------------------------------- statistics, detail, table, trust


def _unaffected(trigger: Any, tab: str, own_tab: str, compare: Sequence[str] | None) -> bool:
    """A panel need not be redrawn when its tab is closed, or when only the selections changed and none is
    compared (it shows the filtered set only)."""
    return tab != own_tab or (trigger == I.SELECTIONS and not compare)


def statistics(query: CorpusQuery, tab: str, view: View, filters: Filters, weights: Weights, selections: Any,
               compare: Sequence[str] | None, trigger: Any = None) -> Any:
    """(mean contribution per region, top classes, top region, the difference of the two compared
    selections with intervals — an empty chart with a hint unless two are compared)."""
    if _unaffected(trigger, tab, "statistics", compare):
        return no_update, no_update, no_update, no_update
    mask = query.filter_mask(view, filters)
    chosen = [(s, m & mask) for s, m in _selections(query, selections) if s["id"] in (compare or [])][:2]
    groups = [("filtered set", "#999999", mask)] + [(s["name"], s["colour"], m) for s, m in chosen]
    stats = views.group_statistics(query.weighted_scores(view, weights), None, None, [(g[0], g[2]) for g in groups])
    target = query.target_text(view)
    figs = figures.statistics_figures(stats, {g[0]: g[1] for g in groups}, target)
    if len(chosen) == 2:
        matrix = query.score_matrix(view)
        table = cluster_views.distinguishing_regions(matrix.values, matrix.columns, chosen[0][1], chosen[1][1])
        table = table.set_index("column").reindex(list(matrix.columns)).reset_index()
        diff = figures.difference_chart(table, chosen[0][0]["name"], chosen[1][0]["name"], target)
    else:
        diff = {"data": [], "layout": {"height": 60, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
                                       "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                       "annotations": [{"text": "compare two selections to see their difference "
                                                                "per region, with 95 % intervals",
                                                        "showarrow": False, "font": {"color": "#666"}}]}}
    return (*figs, diff)


def colour_options(query: CorpusQuery, view: View, current: Any) -> tuple[list[dict[str, str]], Any]:
    """(what points can be coloured by in this view, the value): the choice is kept when the view still
    has it (a region's score under another method), else colouring falls back to the selections."""
    options = layout.colour_choices(query, view)
    return options, current if current in {o["value"] for o in options} else "selection"


def sort_options(query: CorpusQuery, view: View) -> list[dict[str, str]]:
    cols = query.score_matrix(view).columns
    extra = [{"label": "faithfulness", "value": "faithfulness"}] if query.has_validity else []
    return [{"label": "corpus order", "value": ""}] + [{"label": c, "value": c} for c in cols] + extra


def turn_page(trigger: Any, current: int | None) -> int:
    p = int(current or 0)
    return max(0, p - 1) if trigger == I.DETAIL_PREV else p + 1 if trigger == I.DETAIL_NEXT else 0


def detail(query: CorpusQuery, tab: str, view: View, filters: Filters, selections: Any,
           compare: Sequence[str] | None, sort: Mapping[str, Any], trigger: Any = None) -> tuple[Any, Any]:
    """(card columns, page text); ``sort``: column, order, page."""
    if _unaffected(trigger, tab, "detail", compare):
        return no_update, no_update
    matrix = query.score_matrix(view)
    mask = query.filter_mask(view, filters)
    column = sort.get("column")
    faith = query.faithfulness(view)
    columns, texts, pages = [], [], []
    n_pages = 1
    for name, colour, members in _groups(query, mask, selections, compare):
        if column == "faithfulness" and faith is not None:
            idx = np.flatnonzero(members)
            key = np.where(np.isnan(faith[idx]), np.inf, faith[idx] if sort.get("order") == "asc" else -faith[idx])
            ordered = idx[np.argsort(key, kind="stable")]
        else:
            ordered = views.rank(matrix, members, column if column in matrix.columns else None,
                                 descending=sort.get("order") != "asc")
        on_page, p, n = views.page(ordered, sort.get("page") or 0, PAGE_SIZE)
        n_pages = max(n_pages, n)
        pages.append(p)
        columns.append(layout.detail_column(query, name, colour, len(ordered), on_page, matrix, view))
        texts.append(f"{name}: {len(ordered)} images")
    p = max(pages) if pages else 0
    return columns, f"page {p + 1} of {n_pages} · " + " · ".join(texts)


def table_panel(query: CorpusQuery, tab: str, view: View) -> Any:
    """A fresh grid (it asks for its rows again) when the view or the filters change while it is shown."""
    if tab != "table":
        return no_update
    return layout.table_grid(query, view)


def table_rows(query: CorpusQuery, request: Mapping[str, Any] | None, view: View, filters: Filters) -> Any:
    """dash-ag-grid's ``getRowsResponse`` for one block of the ranked table (server-side rows)."""
    if not isinstance(request, Mapping):
        return no_update
    frame = query.table_frame(view)
    try:
        start = max(0, int(request.get("startRow") or 0))
        end = min(start + TABLE_BLOCK_MAX, max(start, int(request.get("endRow") or start + 100)))
        order = views.table_order(frame, query.filter_mask(view, filters), request.get("filterModel"),
                                  request.get("sortModel"))
    except (TypeError, ValueError):
        return {"rowData": [], "rowCount": 0}
    rows = frame.iloc[order[start:end]]
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    for r in records:
        r["thumb"] = layout.thumb_url(str(r["image_id"]))
    return {"rowData": records, "rowCount": int(len(order))}


def trust(query: CorpusQuery, tab: str, view: View) -> Any:
    if tab != "trust":
        return no_update
    return layout.trust_panel(query.trust(view.normalisation, view.basis), query.has_validity)


def inspector(query: CorpusQuery, tab: str, image_id: str | None, view: View) -> Any:
    if tab != "image":
        return no_update
    if not image_id or query.known_id(image_id) is None:
        return html.P("Click a point in the scatter (or an image id in the table) to inspect one image.",
                      className="hint")
    return layout.inspector(query, str(query.known_id(image_id)), view)


# --------------------------------------------------------------------------- clusters (background job)


def clusters(query: CorpusQuery, set_progress: Any, options: Mapping[str, Any], view: View, filters: Filters,
             weights: Weights) -> dict[str, Any]:
    """Background job: suggested clusters of the filtered set and its outliers, tagged with the view they
    were computed for (``{"view", "groups": [{"name", "members"}], "text"}``); :func:`apply_clusters`
    adds them as named selections only if that view is still the one shown."""
    set_progress("clustering…")
    tag = ViewTag.of(view.as_dict(), "", weights.as_dict())
    mask = query.filter_mask(view, filters)
    idx = np.flatnonzero(mask)
    if len(idx) < 3:
        return {"view": tag.to_json(), "groups": [], "text": "too few images pass the filters to cluster"}
    matrix = query.score_matrix(view)
    w = views.column_weights(matrix, query.vocabulary, weights.as_dict())
    X = views.embedding_input(matrix, w)[idx]
    algorithm = options.get("algorithm") if options.get("algorithm") in cluster_views.CLUSTERINGS else "kmeans"
    try:
        k = int(options.get("k") or 4)
    except (TypeError, ValueError):
        k = 4
    labels = cluster_views.suggest_clusters(X, algorithm, min(max(k, 2), 50))
    groups, made = [], []
    for c in sorted(set(labels.tolist()) - {-1}):
        members = np.zeros(len(query.ids), dtype=bool)
        members[idx[labels == c]] = True
        groups.append({"name": f"{algorithm} cluster {c + 1}", "members": views.encode_members(members)})
        made.append(int(members.sum()))
    set_progress("looking for outliers…")
    outliers = cluster_views.flag_outliers(X) if len(X) <= 200_000 else np.zeros(len(X), dtype=bool)
    if outliers.any():
        members = np.zeros(len(query.ids), dtype=bool)
        members[idx[outliers]] = True
        groups.append({"name": "outliers", "members": views.encode_members(members)})
    text = (f"{len(made)} clusters ({', '.join(map(str, made))} images), {int((labels == -1).sum())} noise, "
            f"{int(outliers.sum())} outliers (mean distance to 5 nearest neighbours, robust z > 3.5) of "
            f"{view.label}; added as selections — their profiles are below")
    return {"view": tag.to_json(), "groups": groups, "text": text}


def apply_clusters(query: CorpusQuery, result: Any, controls: ViewTag, selections: Any) -> tuple[Any, str]:
    """(selections with the clusters of ``result`` appended, the message) when ``result`` was computed for
    the scores and weights shown now; else the selections unchanged and a message saying so."""
    if not isinstance(result, Mapping):
        return no_update, ""
    if decide_clusters(ViewTag.from_json(result.get("view")), controls) == "drop":
        return no_update, ("clusters were computed for another view (head, method, normalisation, basis or "
                           "weights changed since) and were not added; suggest them again")
    sels = [s for s, _ in _selections(query, selections)]
    for g in result.get("groups") or []:
        try:
            members = views.decode_members(g.get("members"), len(query.ids))
        except (ValueError, AttributeError):
            continue
        if len(sels) >= state.MAX_SELECTIONS:
            break
        sels = views.add_selection(sels, str(g.get("name")), members)
        sels[-1]["kind"] = "cluster"
    return sels, str(result.get("text") or "")


def group_profiles(query: CorpusQuery, tab: str, view: View, filters: Filters, weights: Weights,
                   selections: Any) -> Any:
    """The clusters tab: for each named selection (clusters included), within the filtered set, the regions
    that distinguish it from the rest (difference of means with a 95 % interval, effect size), its most
    typical images and a short label."""
    if tab != "clusters":
        return no_update
    sels = _selections(query, selections)
    if not sels:
        return html.P("No selections yet: suggest clusters above, or save a lasso, to see what each group is.",
                      className="hint")
    mask = query.filter_mask(view, filters)
    matrix = query.score_matrix(view)
    w = views.column_weights(matrix, query.vocabulary, weights.as_dict())
    X = views.embedding_input(matrix, w)
    cards = []
    for s, m in sels[:state.MAX_SELECTIONS]:
        group = m & mask
        table = cluster_views.distinguishing_regions(matrix.values, matrix.columns, group, mask & ~m)
        cards.append(layout.group_profile(s, int(group.sum()), table, cluster_views.short_label(table),
                                          [str(query.ids[k]) for k in cluster_views.prototypes(X, group, 5)]))
    return html.Div([html.P(f"Each group against the rest of the filtered set ({view.label}; "
                            f"{query.target_text(view)}). Differences in {figures.UNIT}, with 95 % intervals; "
                            "d: effect size (Cohen's d). Images: the most typical members (closest to the "
                            "group's mean vector).", className="hint"), *cards])


# --------------------------------------------------------------------------- export and state


def export(query: CorpusQuery, trigger: Any, options: Mapping[str, Any], view: View, filters: Filters,
           selections: Any) -> Any:
    mask = query.filter_mask(view, filters)
    members, name = mask, "filtered"
    for s, m in _selections(query, selections):
        if s["id"] == options.get("scope"):
            members, name = m & mask, s["id"]
    table = query.contribution_table(view, [str(i) for i in query.ids[members]], wide=bool(options.get("wide")))
    shape = "wide" if options.get("wide") else "long"
    stem = f"contributions-{view.head}-{view.method}-{view.normalisation}-{view.basis}-{name}-{shape}"
    if trigger == I.EXPORT_PARQUET:
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        return dcc.send_bytes(buf.getvalue(), f"{stem}.parquet")
    return dcc.send_data_frame(table.to_csv, f"{stem}.csv", index=False)


def save_state(query: CorpusQuery, view: View, options: Mapping[str, Any], filters: Filters, weights: Weights,
               selections: Any) -> Any:
    matrix = query.score_matrix(view)
    bounds = {c: b.tolist() for c, b in zip(matrix.columns, views.slider_bounds(matrix.values))}
    pairs = [(c, v) for c, v in zip(filters.columns, filters.values) if c in matrix.columns]
    ranges = views.ranges_from_sliders([{"column": c} for c, _ in pairs], [v for _, v in pairs], bounds)
    st = state.DashboardState(
        view.head, view.method, view.normalisation, view.basis, str(options.get("algorithm") or "tsne"),
        tuple(str(c) for c in options.get("highlight") or []), ranges,
        {k: (1.0 if v is None else v) for k, v in weights.as_dict().items()},
        tuple(s for s, _ in _selections(query, selections)))
    return {"content": st.to_json(query.ids), "filename": "dashboard-state.json", "type": "application/json"}


def load_state(query: CorpusQuery, contents: Any, weight_ids: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Outputs of a state upload: the view, algorithm, highlight, weights, selections, restore, message."""
    keep: dict[str, Any] = {k: no_update for k in ("head", "method", "normalisation", "basis", "algorithm",
                                                    "highlight", "selections", "restore")}
    keep["weights"] = [no_update] * len(weight_ids)  # a wildcard output takes one value per component
    if not contents:
        return {**keep, "message": ""}
    try:
        if not isinstance(contents, str) or len(contents) > state.MAX_STATE_BYTES * 4 // 3 + 100:
            raise state.StateError(f"a state file may be at most {state.MAX_STATE_BYTES} bytes")
        data = base64.b64decode(contents.split(",", 1)[1], validate=True)
        st = state.parse_state(data, state.Context(query.heads, query.methods, query.normalisations,
                                                   query.vocabulary, query.index))
    except (ValueError, IndexError, binascii.Error) as exc:
        return {**keep, "message": f"state not loaded: {exc}"}
    dropped = f"; {st.dropped_ids} image ids not in this corpus were dropped" if st.dropped_ids else ""
    return {"head": st.head, "method": st.method, "normalisation": st.normalisation, "basis": st.basis,
            "algorithm": st.algorithm, "highlight": list(st.highlight),
            "weights": [st.weights.get(str(i.get("region")), 1.0) for i in weight_ids],
            "selections": list(st.selections), "restore": {"filters": st.filters},
            "message": f"state loaded: {len(st.filters)} filters, {len(st.selections)} selections{dropped}"}


# --------------------------------------------------------------------------- the session (saved with the corpus)


def _context(query: CorpusQuery) -> state.Context:
    return state.Context(query.heads, query.methods, query.normalisations, query.vocabulary, query.index)


def session_restore(query: CorpusQuery, search: Any, current: Mapping[str, Any],
                    weight_ids: Sequence[Mapping[str, Any]], initial: bool) -> dict[str, Any]:
    """On page load (``initial``): the session saved with the corpus (view, algorithm, colour, highlight,
    weights, filters, selections), with the view of the address (``?head=…``) on top. Later changes of
    the address (back, forward) set the view only. A value equal to the control's (``current``) is left
    alone, so nothing is recomputed for nothing. Outputs as :func:`load_state`, plus ``colour`` and
    ``ready`` (autosave may write from now on)."""
    keep: dict[str, Any] = {k: no_update for k in ("head", "method", "normalisation", "basis", "algorithm",
                                                    "colour", "highlight", "selections", "restore")}
    keep["weights"] = [no_update] * len(weight_ids)
    wanted: dict[str, Any] = {}
    message = ""
    if initial:
        text = query.read_session()
        if text is not None:
            try:
                st, note = state.parse_session(text, _context(query), query.ids)
            except ValueError as exc:
                st, note = None, f"the saved session was not restored: {exc}"
            if st is not None:
                wanted = {"head": st.head, "method": st.method, "normalisation": st.normalisation,
                          "basis": st.basis, "algorithm": st.algorithm, "colour": st.colour,
                          "highlight": list(st.highlight)}
                keep["selections"] = list(st.selections)
                keep["restore"] = {"filters": st.filters}  # the filter panel applies them, then sets ready
                keep["weights"] = [st.weights.get(str(i.get("region")), 1.0) for i in weight_ids]
                message = f"session restored: {len(st.selections)} selections, {len(st.filters)} filters"
            message = "; ".join(m for m in (message, note) if m)
    wanted.update(state.parse_url(search, _context(query)))
    for k, v in wanted.items():
        if current.get(k) != v:
            keep[k] = v
    ready = no_update if keep["restore"] is not no_update else True
    return {**keep, "message": message or no_update, "ready": ready}


def autosave(query: CorpusQuery, ready: Any, view: View, options: Mapping[str, Any], filters: Filters,
             weights: Weights, selections: Any) -> Any:
    """Save the session with the corpus (``CORPUS/dashboard/session.json``) after every change, once the
    saved one was restored (``ready``); returns the line that says so."""
    if not ready:
        return no_update
    try:
        query.check_view(view)
    except ValueError:
        return no_update
    matrix = query.score_matrix(view)
    bounds = {c: b.tolist() for c, b in zip(matrix.columns, views.slider_bounds(matrix.values))}
    pairs = [(c, v) for c, v in zip(filters.columns, filters.values) if c in matrix.columns]
    ranges = views.ranges_from_sliders([{"column": c} for c, _ in pairs], [v for _, v in pairs], bounds)
    algorithm = str(options.get("algorithm") or "tsne")
    st = state.DashboardState(
        view.head, view.method, view.normalisation, view.basis,
        algorithm if algorithm in EMBEDDINGS else "tsne",
        tuple(str(c) for c in options.get("highlight") or []), ranges,
        {k: (1.0 if v is None else v) for k, v in weights.as_dict().items()},
        tuple(s for s, _ in _selections(query, selections)), 0, str(options.get("colour") or "selection"))
    if not query.write_session(state.session_json(st, query.ids)):
        return "not saved: the corpus folder is read-only (use Export & state to keep this session)"
    return f"saved with the corpus: {len(st.selections)} selections, {len(ranges)} filters, this view"


def url_search(view: View, algorithm: Any, colour: Any, ready: Any = True) -> Any:
    """The address's query string of the view shown; nothing until the saved session and the address's
    own view were restored (``ready``), so the page's default view never overwrites the address it was
    opened with."""
    if not ready:
        return no_update
    return state.url_search(view.as_dict(), str(algorithm or "tsne"), str(colour or "selection"))
