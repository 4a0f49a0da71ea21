"""What each callback computes: one function per callback, composing the query, the pure views and the
figure and component builders. The embedding and the scatter are :mod:`semcontrib.dashboard.scatter_panel`,
export, the state file and the session saved with the corpus :mod:`semcontrib.dashboard.state_panel`;
this module holds the controls, the selections and the tabs.

Functions take the records of :mod:`semcontrib.dashboard.records` (the view, the filters, the weights,
the scatter options) and plain values, and return what Dash expects; they keep no state between calls
(the query caches read-only results). Panels that only one tab shows compute only while their tab is
open, so a filter change costs the scatter and the open tab, not every panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from dash import html, no_update

from semcontrib.dashboard import clusters as cluster_views
from semcontrib.dashboard import figures, layout, state, views
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.consistency import ViewTag, decide_clusters
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import Filters, View, Weights

PAGE_SIZE = 8
TABLE_BLOCK_MAX = 500


def selection_masks(query: CorpusQuery, selections: Any) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(selection, bool (N,) members) of every well-formed named selection of the browser's store."""
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


# --------------------------------------------------------------------------- selections


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
    sels = [s for s, _ in selection_masks(query, selections)]
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
    chosen = [(s, m) for s, m in selection_masks(query, selections) if s["id"] in (compare or [])][:2]
    if not chosen:
        return [("filtered set", "#999999", mask)]
    return [(s["name"], s["colour"], m & mask) for s, m in chosen]


# --------------------------------------------------------------------------- statistics, detail, table, trust


def _unaffected(trigger: Any, tab: str, own_tab: str, compare: Sequence[str] | None) -> bool:
    """A panel need not be redrawn when its tab is closed, or when only the selections changed and none is
    compared (it shows the filtered set only)."""
    return tab != own_tab or (trigger == I.SELECTIONS and not compare)


def statistics(query: CorpusQuery, tab: str, view: View, filters: Filters, weights: Weights, selections: Any,
               *, compare: Sequence[str] | None, trigger: Any = None) -> Any:
    """(mean contribution per region, top classes, top region, the difference of the two compared
    selections with intervals — an empty chart with a hint unless two are compared)."""
    if _unaffected(trigger, tab, "statistics", compare):
        return no_update, no_update, no_update, no_update
    mask = query.filter_mask(view, filters)
    chosen = [(s, m & mask) for s, m in selection_masks(query, selections) if s["id"] in (compare or [])][:2]
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
           *, compare: Sequence[str] | None, sort: Mapping[str, Any], trigger: Any = None) -> tuple[Any, Any]:
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
        columns.append(layout.detail_column(query, name, colour, len(ordered), on_page, matrix, view=view))
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
    sels = [s for s, _ in selection_masks(query, selections)]
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
    sels = selection_masks(query, selections)
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


