"""What each callback computes: one function per callback, composing the query, the pure views and
the figure and component builders. Functions here take plain values (what Dash passes) and return
plain values (what Dash expects); they keep no state between calls.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from dash import dcc, html, no_update

from semcontrib.dashboard import figures, layout, views
from semcontrib.dashboard.query import CorpusQuery

FULL_RANGE = None
PAGE_SIZE = 8


def _ranges(query: CorpusQuery, matrix: views.ScoreMatrix, slider_ids: Sequence[Mapping[str, Any]],
            slider_values: Sequence[Sequence[float] | None]) -> dict[str, list[float]]:
    bounds = {c: b.tolist() for c, b in zip(matrix.columns, views.slider_bounds(matrix.values))}
    pairs = [(i, v) for i, v in zip(slider_ids, slider_values) if str(i.get("column")) in matrix.columns]
    return views.ranges_from_sliders([p[0] for p in pairs], [p[1] for p in pairs], bounds)


def filtered(query: CorpusQuery, head: str, method: str, norm: str, slider_ids: Sequence[Mapping[str, Any]],
             slider_values: Sequence[Sequence[float] | None]) -> tuple[views.ScoreMatrix, np.ndarray]:
    """(score matrix, filter mask) of the current view."""
    matrix = query.score_matrix(head, method, norm)
    return matrix, views.filter_mask(matrix, _ranges(query, matrix, slider_ids, slider_values))


def _weights(query: CorpusQuery, weight_ids: Sequence[Mapping[str, Any]], weight_values: Sequence[Any]
             ) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for i, v in zip(weight_ids, weight_values):
        try:
            out[str(i["region"])] = None if v is None or v == "" else max(0.0, float(v))
        except (TypeError, ValueError):
            out[str(i["region"])] = None
    return out


def _groups(query: CorpusQuery, mask: np.ndarray, selections: Sequence[Mapping[str, Any]],
            compare: Sequence[str] | None) -> list[tuple[str, str, np.ndarray]]:
    """(name, colour, members within the filter) of the filtered set, or of the 1-2 compared selections."""
    chosen = [s for s in selections if s["id"] in (compare or [])][:2]
    if not chosen:
        return [("filtered set", "#999999", mask)]
    return [(s["name"], s["colour"], views.members_mask(query.index, len(query.ids), s["image_ids"]) & mask)
            for s in chosen]


# --------------------------------------------------------------------------- controls


def filter_panel(query: CorpusQuery, head: str, method: str, norm: str, restore: Mapping[str, Any] | None,
                 restored: bool) -> list[Any]:
    matrix = query.score_matrix(head, method, norm)
    bounds = views.slider_bounds(matrix.values)
    wanted = (restore or {}).get("filters", {}) if restored else {}
    return layout.filter_sliders(matrix.columns, bounds, wanted)


def highlight_options(query: CorpusQuery, head: str) -> list[dict[str, str]]:
    present = set(query.predictions(head))
    return [{"label": c, "value": c} for c in query.heads[head] if c in present]


# --------------------------------------------------------------------------- embedding and scatter


def embedding(query: CorpusQuery, set_progress: Any, head: str, method: str, norm: str, algorithm: str,
              weight_ids: Sequence[Mapping[str, Any]], weight_values: Sequence[Any]) -> dict[str, Any]:
    """Background job: the embedding store {key, x, y, head, method, normalisation, algorithm}."""
    steps = iter(range(1, 10))

    def say(msg: str) -> None:
        set_progress((str(next(steps, 9)), msg))

    say("loading contribution vectors")
    key, Y = query.embedding(head, method, norm, algorithm, _weights(query, weight_ids, weight_values), say)
    set_progress(("10", f"embedding ready: {algorithm} of {len(Y)} images"))
    return {"key": key, "x": np.round(Y[:, 0], 5).tolist(), "y": np.round(Y[:, 1], 5).tolist(), "head": head,
            "method": method, "normalisation": norm, "algorithm": algorithm}


def scatter(query: CorpusQuery, emb: Mapping[str, Any] | None, slider_values: Sequence[Any],
            highlight: Sequence[str] | None, selections: Sequence[Mapping[str, Any]] | None, mode: str,
            head: str, method: str, norm: str, slider_ids: Sequence[Mapping[str, Any]]) -> tuple[dict, str]:
    """(scatter figure, filter count text)."""
    matrix, mask = filtered(query, head, method, norm, slider_ids, slider_values)
    count = f"{int(mask.sum())} of {matrix.n} images pass the filters"
    if not emb or len(emb.get("x", [])) != matrix.n:
        return {"data": [], "layout": {"title": {"text": "computing the embedding…"},
                                       "xaxis": {"visible": False}, "yaxis": {"visible": False}}}, count
    xy = np.column_stack([emb["x"], emb["y"]])
    sel = [(s["colour"], views.members_mask(query.index, matrix.n, s["image_ids"])) for s in selections or []]
    preds = query.predictions(head)
    hl = np.isin(preds, list(highlight or []))
    title = (f"{emb['algorithm']} of {emb['head']} / {emb['method']} / {emb['normalisation']} "
             f"(weighted cosine); symbols: predicted {head}")
    fig = figures.scatter_figure(xy, preds, mask, figures.point_colours(matrix.n, sel), hl, mode == "hide",
                                 uirevision=str(emb["key"]), title=title)
    return fig, count


def tooltip(query: CorpusQuery, hover: Mapping[str, Any] | None, head: str, method: str, norm: str
            ) -> tuple[bool, Any, Any]:
    if not hover or not hover.get("points"):
        return False, no_update, no_update
    pt = hover["points"][0]
    k = pt.get("customdata")
    if not isinstance(k, int) or not 0 <= k < len(query.ids) or not pt.get("bbox"):
        return False, no_update, no_update
    matrix = query.score_matrix(head, method, norm)
    return True, pt.get("bbox"), layout.tooltip_card(query, k, matrix, head)


def focus_from_click(query: CorpusQuery, click: Mapping[str, Any] | None) -> tuple[Any, Any]:
    pts = (click or {}).get("points") or []
    k = pts[0].get("customdata") if pts else None
    if not isinstance(k, int) or not 0 <= k < len(query.ids):
        return no_update, no_update
    return str(query.ids[k]), "image"


# --------------------------------------------------------------------------- selections


def lasso(query: CorpusQuery, selected: Mapping[str, Any] | None, head: str, method: str, norm: str,
          slider_ids: Sequence[Mapping[str, Any]], slider_values: Sequence[Any]) -> tuple[list[str], str]:
    _, mask = filtered(query, head, method, norm, slider_ids, slider_values)
    ids = views.lasso_ids(selected, query.ids, mask)
    return ids, f"{len(ids)} images in the lasso"


def edit_selections(trigger: Any, selections: list[dict[str, Any]] | None, lasso_ids: list[str] | None,
                    new_name: str | None, target: str | None, edit_name: str | None, colour: str | None
                    ) -> list[dict[str, Any]] | Any:
    sels = selections or []
    if trigger == "selection-save":
        return views.add_selection(sels, new_name or "", lasso_ids or []) if lasso_ids else no_update
    if not target or target not in {s["id"] for s in sels}:
        return no_update
    if trigger == "edit-rename":
        return views.edit_selection(sels, target, name=edit_name)
    if trigger == "edit-recolour" and colour:
        return views.edit_selection(sels, target, colour=colour)
    if trigger == "edit-delete":
        return views.edit_selection(sels, target, delete=True)
    return no_update


def selection_lists(selections: list[dict[str, Any]] | None) -> tuple[Any, list, list, list]:
    sels = selections or []
    opts = [{"label": f"{s['name']} ({len(s['image_ids'])})", "value": s["id"]} for s in sels]
    scope = [{"label": "filtered set", "value": "filtered"}] + opts
    return layout.selection_list(sels), opts, opts, scope


# --------------------------------------------------------------------------- statistics and detail


def statistics(query: CorpusQuery, head: str, method: str, norm: str, slider_ids: Sequence[Mapping[str, Any]],
               slider_values: Sequence[Any], weight_ids: Sequence[Mapping[str, Any]], weight_values: Sequence[Any],
               selections: Sequence[Mapping[str, Any]] | None, compare: Sequence[str] | None
               ) -> tuple[dict, dict, dict]:
    matrix, mask = filtered(query, head, method, norm, slider_ids, slider_values)
    w = views.column_weights(matrix, query.vocabulary, _weights(query, weight_ids, weight_values))
    chosen = [s for s in selections or [] if s["id"] in (compare or [])][:2]
    groups = [("filtered set", "#999999", mask)] + [
        (s["name"], s["colour"], views.members_mask(query.index, matrix.n, s["image_ids"]) & mask) for s in chosen]
    stats = views.group_statistics(matrix, w, query.predictions(head), [(g[0], g[2]) for g in groups])
    return figures.statistics_figures(stats, {g[0]: g[1] for g in groups})


def sort_options(query: CorpusQuery, head: str, method: str, norm: str) -> list[dict[str, str]]:
    cols = query.score_matrix(head, method, norm).columns
    return [{"label": "corpus order", "value": ""}] + [{"label": c, "value": c} for c in cols]


def turn_page(trigger: Any, current: int | None) -> int:
    p = int(current or 0)
    return max(0, p - 1) if trigger == "detail-prev" else p + 1 if trigger == "detail-next" else 0


def detail(query: CorpusQuery, head: str, method: str, norm: str, slider_ids: Sequence[Mapping[str, Any]],
           slider_values: Sequence[Any], selections: Sequence[Mapping[str, Any]] | None,
           compare: Sequence[str] | None, sort: str | None, order: str, page_number: int | None
           ) -> tuple[list[Any], str]:
    matrix, mask = filtered(query, head, method, norm, slider_ids, slider_values)
    column = sort if sort in matrix.columns else None
    columns, texts = [], []
    n_pages = 1
    pages = []
    for name, colour, members in _groups(query, mask, selections or [], compare):
        ordered = views.rank(matrix, members, column, descending=order != "asc")
        on_page, p, n = views.page(ordered, page_number or 0, PAGE_SIZE)
        n_pages = max(n_pages, n)
        pages.append(p)
        columns.append(layout.detail_column(query, name, colour, len(ordered), on_page, matrix, head, method))
        texts.append(f"{name}: {len(ordered)} images")
    p = max(pages) if pages else 0
    return columns, f"page {p + 1} of {n_pages} · " + " · ".join(texts)


def inspector(query: CorpusQuery, image_id: str | None, head: str, method: str, norm: str) -> Any:
    if not image_id or query.known_id(image_id) is None:
        return html.P("Click a point in the scatter to inspect one image.", className="hint")
    return layout.inspector(query, str(query.known_id(image_id)), head, method, norm)


# --------------------------------------------------------------------------- clusters


def clusters(query: CorpusQuery, algorithm: str, k: int | None, head: str, method: str, norm: str,
             slider_ids: Sequence[Mapping[str, Any]], slider_values: Sequence[Any],
             weight_ids: Sequence[Mapping[str, Any]], weight_values: Sequence[Any],
             selections: list[dict[str, Any]] | None) -> tuple[Any, str]:
    """Suggested clusters of the filtered set and its outliers, appended as named selections."""
    matrix, mask = filtered(query, head, method, norm, slider_ids, slider_values)
    idx = np.flatnonzero(mask)
    if len(idx) < 3:
        return no_update, "too few images pass the filters to cluster"
    w = views.column_weights(matrix, query.vocabulary, _weights(query, weight_ids, weight_values))
    X = views.embedding_input(matrix, w)[idx]
    labels = views.suggest_clusters(X, algorithm, int(k or 4))
    sels = list(selections or [])
    made = []
    for c in sorted(set(labels.tolist()) - {-1}):
        ids = [str(i) for i in query.ids[idx[labels == c]]]
        sels = views.add_selection(sels, f"{algorithm} cluster {c + 1}", ids)
        made.append(len(ids))
    outliers = views.flag_outliers(X)
    if outliers.any():
        sels = views.add_selection(sels, "outliers", [str(i) for i in query.ids[idx[outliers]]])
    text = (f"{len(made)} clusters ({', '.join(map(str, made))} images), {int((labels == -1).sum())} noise, "
            f"{int(outliers.sum())} outliers (mean distance to 5 nearest neighbours, robust z > 3.5); "
            "added as selections")
    return sels, text


# --------------------------------------------------------------------------- export and state


def export(query: CorpusQuery, trigger: Any, scope: str | None, wide: Sequence[str] | None, head: str,
           method: str, norm: str, slider_ids: Sequence[Mapping[str, Any]], slider_values: Sequence[Any],
           selections: Sequence[Mapping[str, Any]] | None) -> Any:
    matrix, mask = filtered(query, head, method, norm, slider_ids, slider_values)
    members = mask
    name = "filtered"
    for s in selections or []:
        if s["id"] == scope:
            members = views.members_mask(query.index, matrix.n, s["image_ids"]) & mask
            name = s["id"]
    table = query.contribution_table(head, method, norm, [str(i) for i in query.ids[members]],
                                     wide=bool(wide))
    stem = f"contributions-{head}-{method}-{norm}-{name}"
    if trigger == "export-parquet":
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        return dcc.send_bytes(buf.getvalue(), f"{stem}.parquet")
    return dcc.send_data_frame(table.to_csv, f"{stem}.csv", index=False)


def save_state(head: str, method: str, norm: str, algorithm: str, highlight: Sequence[str] | None,
               query: CorpusQuery, slider_ids: Sequence[Mapping[str, Any]], slider_values: Sequence[Any],
               weight_ids: Sequence[Mapping[str, Any]], weight_values: Sequence[Any],
               selections: Sequence[Mapping[str, Any]] | None) -> Any:
    matrix = query.score_matrix(head, method, norm)
    state = views.DashboardState(
        head, method, norm, algorithm, tuple(highlight or []), _ranges(query, matrix, slider_ids, slider_values),
        {k: (1.0 if v is None else v) for k, v in _weights(query, weight_ids, weight_values).items()},
        tuple(dict(s) for s in selections or []))
    return {"content": state.to_json(), "filename": "dashboard-state.json", "type": "application/json"}


def load_state(query: CorpusQuery, contents: str | None, weight_ids: Sequence[Mapping[str, Any]]) -> tuple:
    """Outputs: head, method, normalisation, algorithm, highlight, weights, selections, restore, message."""
    keep = (no_update,) * 7
    if not contents:
        return (*keep, no_update, "")
    try:
        text = base64.b64decode(contents.split(",", 1)[1]).decode("utf-8")
        st = views.parse_state(text, query.heads, query.methods, query.normalisations, query.vocabulary)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        return (*keep, no_update, f"state not loaded: {exc}")
    weights = [st.weights.get(str(i["region"]), 1.0) for i in weight_ids]
    restore = {"filters": st.filters}
    return (st.head, st.method, st.normalisation, st.algorithm, list(st.highlight), weights,
            list(st.selections), restore,
            f"state loaded: {len(st.filters)} filters, {len(st.selections)} selections")
