"""Callback wiring: every callback body is one call into :mod:`dashboard.panels`.

Callbacks take grouped arguments (Dash's flexible callback signatures): ``view`` (head, method,
normalisation, basis), ``filters`` (the range sliders and the faithfulness range), ``weights`` (the region
weights), ``options`` (how points are drawn); each group becomes a record of
:mod:`dashboard.records`. Trigger ids come from :mod:`dashboard.ids`.
"""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx

from semcontrib.dashboard import ids as I
from semcontrib.dashboard import panels, scatter_panel, state_panel
from semcontrib.dashboard.consistency import ViewTag
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import Filters, ScatterOptions, View, Weights


def view(kind: type = State) -> dict[str, Any]:
    """The view group: head, method, normalisation, basis."""
    return {"head": kind(I.HEAD, "value"), "method": kind(I.METHOD, "value"),
            "normalisation": kind(I.NORMALISATION, "value"), "basis": kind(I.BASIS, "value")}


def filters(kind: type = State) -> dict[str, Any]:
    """The filter group: the range sliders (ids and values) and the faithfulness range."""
    return {"ids": State({"type": I.RANGE, "column": ALL}, "id"),
            "values": kind({"type": I.RANGE, "column": ALL}, "value"),
            "faithfulness": kind(I.FAITH_RANGE, "value")}


def weights(kind: type = State) -> dict[str, Any]:
    """The weight group: one number per region."""
    return {"ids": State({"type": I.WEIGHT, "region": ALL}, "id"),
            "values": kind({"type": I.WEIGHT, "region": ALL}, "value")}


def options(kind: type = Input) -> dict[str, Any]:
    """How points are drawn: highlighted classes, dim or hide, colour by selection or faithfulness."""
    return {"highlight": kind(I.HIGHLIGHT, "value"), "mode": kind(I.FILTERED_MODE, "value"),
            "colour_by": kind(I.COLOUR_BY, "value")}


def controls(view_group: dict, algorithm: Any, weight_group: dict) -> ViewTag:
    """The view the controls show (grouped callback arguments -> a tag)."""
    return scatter_panel.controls_tag(View.from_inputs(view_group), algorithm, Weights.from_inputs(weight_group))


# Inputs whose change cancels a running embedding job: the view it was computed for is no longer shown.
EMBED_CANCEL = [Input(I.HEAD, "value"), Input(I.METHOD, "value"), Input(I.NORMALISATION, "value"),
                Input(I.BASIS, "value"), Input(I.ALGORITHM, "value")]
CLUSTER_CANCEL = [Input(I.HEAD, "value"), Input(I.METHOD, "value"), Input(I.NORMALISATION, "value"),
                  Input(I.BASIS, "value")]

# The lasso is drawn in the browser and sent as a polygon once on release (``app.LASSO_JS``). A box select
# or clicked points come as plotly's selectedData (every point, ~100 bytes each), which the browser reduces
# to the box or the clicked point numbers; the server tests the box against its own copy of the embedding
# and maps point numbers to corpus rows.
REDUCE_SELECTION = """
function(sel, shown) {
    if (!sel) { return null; }
    const key = shown && shown.key;  // the layout the user drew on, whatever arrives meanwhile
    const lasso = sel.lassoPoints;
    if (lasso && lasso.x) { return {key: key, lasso: {x: lasso.x, y: lasso.y}}; }
    if (sel.range && sel.range.x) { return {key: key, range: {x: sel.range.x, y: sel.range.y}}; }
    return {key: key, indices: (sel.points || []).filter(p => p.curveNumber === 0).map(p => p.pointNumber)};
}
"""


def register(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Attach every callback of the dashboard to ``app``, group by group."""
    _controls(app, query, background_manager)
    _embedding(app, query, background_manager)
    _scatter(app, query, background_manager)
    _selections(app, query, background_manager)
    _tabs(app, query, background_manager)
    _clusters(app, query, background_manager)
    _export_state(app, query, background_manager)
    _session(app, query, background_manager)


def _controls(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of the controls that follow the view: filter sliders, class and sort options, colour choices."""
    @app.callback(Output(I.FILTER_PANEL, "children"), Output(I.FILTER_NOTE, "children"),
                  Output(I.SESSION_READY, "data"),
                  inputs={"view": view(Input), "restore": Input(I.STATE_RESTORE, "data"),
                          "current": {"ids": State({"type": I.RANGE, "column": ALL}, "id"),
                                      "values": State({"type": I.RANGE, "column": ALL}, "value"),
                                      "min": State({"type": I.RANGE, "column": ALL}, "min"),
                                      "max": State({"type": I.RANGE, "column": ALL}, "max")}})
    def _filter_panel(view: dict, restore: Any, current: dict) -> Any:
        return panels.filter_panel(query, View.from_inputs(view), restore,
                                   I.STATE_RESTORE in ctx.triggered_prop_ids.values(), current)

    @app.callback(Output(I.HIGHLIGHT, "options"), Input(I.HEAD, "value"))
    def _highlight(head: str) -> Any:
        return panels.highlight_options(query, head)

    @app.callback(Output(I.DETAIL_SORT, "options"), inputs={"view": view(Input)})
    def _sort_options(view: dict) -> Any:
        return panels.sort_options(query, View.from_inputs(view))

    @app.callback(Output(I.COLOUR_BY, "options"), Output(I.COLOUR_BY, "value"),
                  inputs={"view": view(Input), "current": State(I.COLOUR_BY, "value")})
    def _colour_options(view: dict, current: Any) -> Any:
        return panels.colour_options(query, View.from_inputs(view), current)


def _embedding(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of the embedding: cached or computed in a background job, and applied, offered or dropped."""
    @app.callback(output={"embedding": Output(I.EMBEDDING, "data"), "job": Output(I.EMBED_JOB, "data"),
                          "offered": Output(I.OFFERED, "data"), "offer_style": Output(I.OFFER, "style")},
                  inputs={"view": view(Input), "algorithm": Input(I.ALGORITHM, "value"),
                          "recompute": Input(I.RECOMPUTE, "n_clicks"), "weights": weights(State),
                          "restore": Input(I.STATE_RESTORE, "data")})
    def _embedding(view: dict, algorithm: str, recompute: Any, weights: dict, restore: Any) -> Any:
        return scatter_panel.embedding_lookup(query, View.from_inputs(view), algorithm, Weights.from_inputs(weights),
                                              ctx.triggered_id == I.RECOMPUTE)

    @app.callback(Output(I.EMBED_RESULT, "data"), Input(I.EMBED_JOB, "data"),
                  background=True, manager=background_manager, interval=250, prevent_initial_call=True,
                  progress=[Output(I.PROGRESS, "value"), Output(I.PROGRESS_TEXT, "children")],
                  progress_default=["0", ""], cancel=EMBED_CANCEL,
                  running=[(Output(I.RECOMPUTE, "disabled"), True, False)])
    def _embedding_job(set_progress: Any, job: Any) -> Any:
        return scatter_panel.embedding_job(query, set_progress, job)

    @app.callback(output={"embedding": Output(I.EMBEDDING, "data", allow_duplicate=True),
                          "offered": Output(I.OFFERED, "data", allow_duplicate=True),
                          "offer_text": Output(I.OFFER_TEXT, "children"),
                          "offer_style": Output(I.OFFER, "style", allow_duplicate=True),
                          "status": Output(I.PROGRESS_TEXT, "children", allow_duplicate=True)},
                  inputs={"result": Input(I.EMBED_RESULT, "data"), "view": view(State),
                          "algorithm": State(I.ALGORITHM, "value"), "weights": weights(State),
                          "lasso": State(I.LASSO, "data")}, prevent_initial_call=True)
    def _embedding_arrival(result: Any, view: dict, algorithm: Any, weights: dict, lasso: Any) -> Any:
        return scatter_panel.embedding_arrival(query, result, controls(view, algorithm, weights), lasso)

    @app.callback(Output(I.EMBEDDING, "data", allow_duplicate=True), Output(I.OFFERED, "data", allow_duplicate=True),
                  Output(I.OFFER, "style", allow_duplicate=True),
                  inputs={"click": Input(I.OFFER_SHOW, "n_clicks"), "offered": State(I.OFFERED, "data"),
                          "view": view(State), "algorithm": State(I.ALGORITHM, "value"), "weights": weights(State)},
                  prevent_initial_call=True)
    def _show_offer(click: Any, offered: Any, view: dict, algorithm: Any, weights: dict) -> Any:
        return scatter_panel.show_offer(query, offered, controls(view, algorithm, weights))


def _scatter(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of the scatter: its figure, zoom in density mode, hover card, click to open an image."""
    @app.callback(output={"figure": Output(I.SCATTER, "figure"), "count": Output(I.FILTER_COUNT, "children"),
                          "shown": Output(I.SCATTER_SHOWN, "data"),
                          "window": Output(I.SCATTER_WINDOW, "data", allow_duplicate=True)},
                  inputs={"emb": Input(I.EMBEDDING, "data"), "view": view(State), "filters": filters(Input),
                          "selections": Input(I.SELECTIONS, "data"), "options": options(Input),
                          "page": {"shown": State(I.SCATTER_SHOWN, "data"),
                                                           "window": State(I.SCATTER_WINDOW, "data")}},
                  prevent_initial_call="initial_duplicate")
    def _scatter(emb: Any, view: dict, filters: dict, selections: Any, options: dict, page: dict) -> Any:
        return scatter_panel.scatter(query, emb, View.from_inputs(view), Filters.from_inputs(filters), selections,
                                     ScatterOptions.from_inputs(options), **page)

    @app.callback(output={"figure": Output(I.SCATTER, "figure", allow_duplicate=True),
                          "window": Output(I.SCATTER_WINDOW, "data")},
                  inputs={"relayout": Input(I.SCATTER, "relayoutData"), "emb": State(I.EMBEDDING, "data"),
                          "view": view(State), "filters": filters(State), "selections": State(I.SELECTIONS, "data"),
                          "options": options(State)}, prevent_initial_call=True)
    def _zoom(relayout: Any, emb: Any, view: dict, filters: dict, selections: Any, options: dict) -> Any:
        return scatter_panel.zoom(query, relayout, emb, View.from_inputs(view), Filters.from_inputs(filters),
                                  selections, options=ScatterOptions.from_inputs(options))

    @app.callback(Output(I.TOOLTIP, "show"), Output(I.TOOLTIP, "bbox"), Output(I.TOOLTIP, "children"),
                  Output(I.TOOLTIP, "direction"),
                  inputs={"hover": Input(I.SCATTER, "hoverData"), "view": view(State),
                          "emb": State(I.EMBEDDING, "data"), "window": State(I.SCATTER_WINDOW, "data")})
    def _tooltip(hover: Any, view: dict, emb: Any, window: Any) -> Any:
        return scatter_panel.tooltip(query, hover, View.from_inputs(view), emb, window)

    @app.callback(Output(I.FOCUS, "data"), Output(I.TABS, "value"),
                  inputs={"click": Input(I.SCATTER, "clickData"), "emb": State(I.EMBEDDING, "data"),
                          "window": State(I.SCATTER_WINDOW, "data")}, prevent_initial_call=True)
    def _focus(click: Any, emb: Any, window: Any) -> Any:
        return scatter_panel.focus_from_click(query, click, emb, window)


def _selections(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of the lasso, rows picked in the table, named selections."""
    app.clientside_callback(REDUCE_SELECTION, Output(I.LASSO_INPUT, "data"), Input(I.SCATTER, "selectedData"),
                            State(I.SCATTER_SHOWN, "data"), prevent_initial_call=True)

    @app.callback(Output(I.LASSO, "data"), Output(I.LASSO_COUNT, "children"),
                  inputs={"selected": Input(I.LASSO_INPUT, "data"), "emb": State(I.EMBEDDING, "data"),
                          "view": view(State), "filters": filters(State), "window": State(I.SCATTER_WINDOW, "data")},
                  prevent_initial_call=True)
    def _lasso(selected: Any, emb: Any, view: dict, filters: dict, window: Any) -> Any:
        return scatter_panel.lasso(query, selected, emb, View.from_inputs(view), Filters.from_inputs(filters), window)

    @app.callback(Output(I.LASSO, "data", allow_duplicate=True),
                  Output(I.LASSO_COUNT, "children", allow_duplicate=True),
                  Input(I.TABLE, "selectedRows"), prevent_initial_call=True)
    def _table_pick(rows: Any) -> Any:
        return panels.table_pick(query, rows)

    @app.callback(Output(I.SELECTIONS, "data"),
                  inputs={"clicks": [Input(I.SELECTION_SAVE, "n_clicks"), Input(I.EDIT_RENAME, "n_clicks"),
                                     Input(I.EDIT_RECOLOUR, "n_clicks"), Input(I.EDIT_DELETE, "n_clicks")],
                          "selections": State(I.SELECTIONS, "data"), "lasso": State(I.LASSO, "data"),
                          "edit": {"name": State(I.SELECTION_NAME, "value"), "target": State(I.EDIT_TARGET, "value"),
                                   "new_name": State(I.EDIT_NAME, "value"), "colour": State(I.EDIT_COLOUR, "value")}},
                  prevent_initial_call=True)
    def _edit(clicks: Any, selections: Any, lasso: Any, edit: dict) -> Any:
        return panels.edit_selections(query, ctx.triggered_id, selections, lasso, edit)

    @app.callback(Output(I.SELECTION_LIST, "children"), Output(I.EDIT_TARGET, "options"),
                  Output(I.COMPARE, "options"), Output(I.EXPORT_SCOPE, "options"), Input(I.SELECTIONS, "data"))
    def _selection_lists(selections: Any) -> Any:
        return panels.selection_lists(selections)


def _tabs(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of the tabs: statistics, trust, table, detail, image inspector."""
    @app.callback(Output(I.STATS_REGIONS, "figure"), Output(I.STATS_CLASSES, "figure"),
                  Output(I.STATS_TOP, "figure"), Output(I.STATS_DIFF, "figure"),
                  inputs={"tab": Input(I.TABS, "value"), "view": view(Input), "filters": filters(Input),
                          "weights": weights(Input), "selections": Input(I.SELECTIONS, "data"),
                          "compare": Input(I.COMPARE, "value")})
    def _statistics(tab: str, view: dict, filters: dict, weights: dict, selections: Any, compare: Any) -> Any:
        return panels.statistics(query, tab, View.from_inputs(view), Filters.from_inputs(filters),
                                 Weights.from_inputs(weights), selections, compare=compare, trigger=ctx.triggered_id)

    @app.callback(Output(I.TRUST, "children"), inputs={"tab": Input(I.TABS, "value"), "view": view(Input)})
    def _trust(tab: str, view: dict) -> Any:
        return panels.trust(query, tab, View.from_inputs(view))

    @app.callback(Output(I.TABLE_BOX, "children"),
                  inputs={"tab": Input(I.TABS, "value"), "view": view(Input), "filters": filters(Input)},
                  prevent_initial_call=True)
    def _table_box(tab: str, view: dict, filters: dict) -> Any:
        return panels.table_panel(query, tab, View.from_inputs(view))

    @app.callback(Output(I.TABLE, "getRowsResponse"),
                  inputs={"request": Input(I.TABLE, "getRowsRequest"), "view": view(State),
                          "filters": filters(State)}, prevent_initial_call=True)
    def _table_rows(request: Any, view: dict, filters: dict) -> Any:
        return panels.table_rows(query, request, View.from_inputs(view), Filters.from_inputs(filters))

    @app.callback(Output(I.DETAIL_PAGE, "data"),
                  inputs={"clicks": [Input(I.DETAIL_PREV, "n_clicks"), Input(I.DETAIL_NEXT, "n_clicks")],
                          "reset": [Input(I.DETAIL_SORT, "value"), Input(I.DETAIL_ORDER, "value"),
                                    Input(I.COMPARE, "value")],
                          "current": State(I.DETAIL_PAGE, "data")}, prevent_initial_call=True)
    def _page(clicks: Any, reset: Any, current: Any) -> Any:
        return panels.turn_page(ctx.triggered_id, current)

    @app.callback(Output(I.DETAIL, "children"), Output(I.DETAIL_PAGE_TEXT, "children"),
                  inputs={"tab": Input(I.TABS, "value"), "view": view(Input), "filters": filters(Input),
                          "selections": Input(I.SELECTIONS, "data"), "compare": Input(I.COMPARE, "value"),
                          "sort": {"column": Input(I.DETAIL_SORT, "value"), "order": Input(I.DETAIL_ORDER, "value"),
                                   "page": Input(I.DETAIL_PAGE, "data")}})
    def _detail(tab: str, view: dict, filters: dict, selections: Any, compare: Any, sort: dict) -> Any:
        return panels.detail(query, tab, View.from_inputs(view), Filters.from_inputs(filters), selections,
                             compare=compare, sort=sort, trigger=ctx.triggered_id)

    @app.callback(Output(I.INSPECTOR, "children"),
                  inputs={"tab": Input(I.TABS, "value"), "image_id": Input(I.FOCUS, "data"), "view": view(Input)})
    def _inspector(tab: str, image_id: Any, view: dict) -> Any:
        return panels.inspector(query, tab, image_id, View.from_inputs(view))


def _clusters(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of suggested clusters (a background job) and the group profiles."""
    @app.callback(Output(I.CLUSTER_RESULT, "data"),
                  inputs={"run": Input(I.CLUSTER_RUN, "n_clicks"),
                          "options": {"algorithm": State(I.CLUSTER_ALGORITHM, "value"),
                                      "k": State(I.CLUSTER_K, "value")},
                          "view": view(State), "filters": filters(State), "weights": weights(State)},
                  background=True, manager=background_manager, interval=250, prevent_initial_call=True,
                  progress=Output(I.CLUSTER_PROGRESS, "children"), progress_default="", cancel=CLUSTER_CANCEL,
                  running=[(Output(I.CLUSTER_RUN, "disabled"), True, False)])
    def _clusters(set_progress: Any, run: Any, options: dict, view: dict, filters: dict, weights: dict) -> Any:
        return panels.clusters(query, set_progress, options, View.from_inputs(view), Filters.from_inputs(filters),
                               Weights.from_inputs(weights))

    @app.callback(Output(I.SELECTIONS, "data", allow_duplicate=True), Output(I.CLUSTER_TEXT, "children"),
                  Output(I.CLUSTER_PROGRESS, "children", allow_duplicate=True),  # the job's last line, now stale
                  inputs={"result": Input(I.CLUSTER_RESULT, "data"), "view": view(State), "weights": weights(State),
                          "selections": State(I.SELECTIONS, "data")}, prevent_initial_call=True)
    def _apply_clusters(result: Any, view: dict, weights: dict, selections: Any) -> Any:
        return (*panels.apply_clusters(query, result, controls(view, "", weights), selections), "")

    @app.callback(Output(I.CLUSTER_PROFILES, "children"),
                  inputs={"tab": Input(I.TABS, "value"), "view": view(Input), "filters": filters(Input),
                          "weights": weights(Input), "selections": Input(I.SELECTIONS, "data")})
    def _profiles(tab: str, view: dict, filters: dict, weights: dict, selections: Any) -> Any:
        return panels.group_profiles(query, tab, View.from_inputs(view), Filters.from_inputs(filters),
                                     Weights.from_inputs(weights), selections)


def _export_state(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of exports and the state file."""
    @app.callback(Output(I.EXPORT_DOWNLOAD, "data"),
                  inputs={"clicks": [Input(I.EXPORT_CSV, "n_clicks"), Input(I.EXPORT_PARQUET, "n_clicks")],
                          "options": {"scope": State(I.EXPORT_SCOPE, "value"), "wide": State(I.EXPORT_WIDE, "value")},
                          "view": view(State), "filters": filters(State), "selections": State(I.SELECTIONS, "data")},
                  prevent_initial_call=True)
    def _export(clicks: Any, options: dict, view: dict, filters: dict, selections: Any) -> Any:
        return state_panel.export(query, ctx.triggered_id, options, View.from_inputs(view),
                                  Filters.from_inputs(filters), selections)

    @app.callback(Output(I.STATE_DOWNLOAD, "data"),
                  inputs={"click": Input(I.STATE_SAVE, "n_clicks"), "view": view(State),
                          "options": {"algorithm": State(I.ALGORITHM, "value"),
                                      "highlight": State(I.HIGHLIGHT, "value")},
                          "filters": filters(State), "weights": weights(State),
                          "selections": State(I.SELECTIONS, "data")}, prevent_initial_call=True)
    def _save_state(click: Any, view: dict, options: dict, filters: dict, weights: dict, selections: Any) -> Any:
        return state_panel.save_state(query, View.from_inputs(view), options, Filters.from_inputs(filters),
                                      Weights.from_inputs(weights), selections)

    @app.callback(output={"head": Output(I.HEAD, "value"), "method": Output(I.METHOD, "value"),
                          "normalisation": Output(I.NORMALISATION, "value"), "basis": Output(I.BASIS, "value"),
                          "algorithm": Output(I.ALGORITHM, "value"), "highlight": Output(I.HIGHLIGHT, "value"),
                          "weights": Output({"type": I.WEIGHT, "region": ALL}, "value"),
                          "selections": Output(I.SELECTIONS, "data", allow_duplicate=True),
                          "restore": Output(I.STATE_RESTORE, "data"), "message": Output(I.STATE_MESSAGE, "children")},
                  inputs={"contents": Input(I.STATE_UPLOAD, "contents"),
                          "weight_ids": State({"type": I.WEIGHT, "region": ALL}, "id")},
                  prevent_initial_call=True)
    def _load_state(contents: Any, weight_ids: Any) -> Any:
        return state_panel.load_state(query, contents, weight_ids)


def _session(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Callbacks of the session saved with the corpus and the view in the address."""
    @app.callback(output={"head": Output(I.HEAD, "value", allow_duplicate=True),
                          "method": Output(I.METHOD, "value", allow_duplicate=True),
                          "normalisation": Output(I.NORMALISATION, "value", allow_duplicate=True),
                          "basis": Output(I.BASIS, "value", allow_duplicate=True),
                          "algorithm": Output(I.ALGORITHM, "value", allow_duplicate=True),
                          "colour": Output(I.COLOUR_BY, "value", allow_duplicate=True),
                          "highlight": Output(I.HIGHLIGHT, "value", allow_duplicate=True),
                          "weights": Output({"type": I.WEIGHT, "region": ALL}, "value", allow_duplicate=True),
                          "selections": Output(I.SELECTIONS, "data", allow_duplicate=True),
                          "restore": Output(I.STATE_RESTORE, "data", allow_duplicate=True),
                          "message": Output(I.SESSION_TEXT, "children", allow_duplicate=True),
                          "ready": Output(I.SESSION_READY, "data", allow_duplicate=True)},
                  inputs={"search": Input(I.URL, "search"),
                          "current": {**view(State), "algorithm": State(I.ALGORITHM, "value"),
                                      "colour": State(I.COLOUR_BY, "value"), "highlight": State(I.HIGHLIGHT, "value")},
                          "weight_ids": State({"type": I.WEIGHT, "region": ALL}, "id"),
                          "ready": State(I.SESSION_READY, "data")},
                  prevent_initial_call="initial_duplicate")
    def _session_restore(search: Any, current: dict, weight_ids: Any, ready: Any) -> Any:
        return state_panel.session_restore(query, search, current, weight_ids, not ready)

    @app.callback(Output(I.URL, "search"),
                  inputs={"view": view(Input), "algorithm": Input(I.ALGORITHM, "value"),
                          "colour": Input(I.COLOUR_BY, "value"), "ready": Input(I.SESSION_READY, "data")},
                  prevent_initial_call=True)
    def _url(view: dict, algorithm: Any, colour: Any, ready: Any) -> Any:
        return state_panel.url_search(View.from_inputs(view), algorithm, colour, ready)

    @app.callback(Output(I.SESSION_TEXT, "children"),
                  inputs={"view": view(Input), "options": {"algorithm": Input(I.ALGORITHM, "value"),
                                                           "colour": Input(I.COLOUR_BY, "value"),
                                                           "highlight": Input(I.HIGHLIGHT, "value")},
                          "filters": filters(Input), "weights": weights(Input),
                          "selections": Input(I.SELECTIONS, "data"), "ready": State(I.SESSION_READY, "data")},
                  prevent_initial_call=True)
    def _autosave(view: dict, options: dict, filters: dict, weights: dict, selections: Any, ready: Any) -> Any:
        return state_panel.autosave(query, ready, View.from_inputs(view), options, Filters.from_inputs(filters),
                                    weights=Weights.from_inputs(weights), selections=selections)
