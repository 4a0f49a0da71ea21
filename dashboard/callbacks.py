"""Callback wiring: every callback body is one call into :mod:`dashboard.panels`."""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx

from semcontrib.dashboard import ids as I
from semcontrib.dashboard import panels
from semcontrib.dashboard.query import CorpusQuery

VIEW = [State(I.HEAD, "value"), State(I.METHOD, "value"), State(I.NORMALISATION, "value")]
VIEW_IN = [Input(I.HEAD, "value"), Input(I.METHOD, "value"), Input(I.NORMALISATION, "value")]
RANGE_IDS = State({"type": I.RANGE, "column": ALL}, "id")
RANGE_VALUES = Input({"type": I.RANGE, "column": ALL}, "value")
WEIGHT_IDS = State({"type": I.WEIGHT, "region": ALL}, "id")
WEIGHT_VALUES = State({"type": I.WEIGHT, "region": ALL}, "value")


def register(app: Dash, query: CorpusQuery, background_manager: Any) -> None:
    """Attach every callback of the dashboard to ``app``."""

    @app.callback(Output(I.FILTER_PANEL, "children"), *VIEW_IN, Input(I.STATE_RESTORE, "data"))
    def _filter_panel(head: str, method: str, norm: str, restore: Any) -> Any:
        restored = I.STATE_RESTORE in ctx.triggered_prop_ids.values()
        return panels.filter_panel(query, head, method, norm, restore, restored)

    @app.callback(Output(I.HIGHLIGHT, "options"), Input(I.HEAD, "value"))
    def _highlight(head: str) -> Any:
        return panels.highlight_options(query, head)

    @app.callback(Output(I.DETAIL_SORT, "options"), *VIEW_IN)
    def _sort_options(head: str, method: str, norm: str) -> Any:
        return panels.sort_options(query, head, method, norm)

    @app.callback(Output(I.EMBEDDING, "data"), Input(I.RECOMPUTE, "n_clicks"), *VIEW_IN,
                  Input(I.ALGORITHM, "value"), Input(I.STATE_RESTORE, "data"), WEIGHT_IDS, WEIGHT_VALUES,
                  background=True, manager=background_manager, interval=250,
                  progress=[Output(I.PROGRESS, "value"), Output(I.PROGRESS_TEXT, "children")],
                  running=[(Output(I.RECOMPUTE, "disabled"), True, False)])
    def _embedding(set_progress: Any, _clicks: Any, head: str, method: str, norm: str, algorithm: str,
                   _restore: Any, weight_ids: Any, weight_values: Any) -> Any:
        return panels.embedding(query, set_progress, head, method, norm, algorithm, weight_ids, weight_values)

    @app.callback(Output(I.SCATTER, "figure"), Output(I.FILTER_COUNT, "children"),
                  Input(I.EMBEDDING, "data"), RANGE_VALUES, Input(I.HIGHLIGHT, "value"),
                  Input(I.SELECTIONS, "data"), Input(I.FILTERED_MODE, "value"), *VIEW, RANGE_IDS)
    def _scatter(emb: Any, values: Any, highlight: Any, sels: Any, mode: str, head: str, method: str,
                 norm: str, range_ids: Any) -> Any:
        return panels.scatter(query, emb, values, highlight, sels, mode, head, method, norm, range_ids)

    @app.callback(Output(I.TOOLTIP, "show"), Output(I.TOOLTIP, "bbox"), Output(I.TOOLTIP, "children"),
                  Input(I.SCATTER, "hoverData"), *VIEW)
    def _tooltip(hover: Any, head: str, method: str, norm: str) -> Any:
        return panels.tooltip(query, hover, head, method, norm)

    @app.callback(Output(I.FOCUS, "data"), Output(I.TABS, "value"), Input(I.SCATTER, "clickData"),
                  prevent_initial_call=True)
    def _focus(click: Any) -> Any:
        return panels.focus_from_click(query, click)

    @app.callback(Output(I.LASSO, "data"), Output(I.LASSO_COUNT, "children"), Input(I.SCATTER, "selectedData"),
                  *VIEW, RANGE_IDS, State({"type": I.RANGE, "column": ALL}, "value"), prevent_initial_call=True)
    def _lasso(selected: Any, head: str, method: str, norm: str, range_ids: Any, values: Any) -> Any:
        return panels.lasso(query, selected, head, method, norm, range_ids, values)

    @app.callback(Output(I.SELECTIONS, "data"), Input(I.SELECTION_SAVE, "n_clicks"),
                  Input(I.EDIT_RENAME, "n_clicks"), Input(I.EDIT_RECOLOUR, "n_clicks"),
                  Input(I.EDIT_DELETE, "n_clicks"), State(I.SELECTIONS, "data"), State(I.LASSO, "data"),
                  State(I.SELECTION_NAME, "value"), State(I.EDIT_TARGET, "value"), State(I.EDIT_NAME, "value"),
                  State(I.EDIT_COLOUR, "value"), prevent_initial_call=True)
    def _edit(_s: Any, _r: Any, _c: Any, _d: Any, sels: Any, lasso: Any, name: Any, target: Any,
              new_name: Any, colour: Any) -> Any:
        return panels.edit_selections(ctx.triggered_id, sels, lasso, name, target, new_name, colour)

    @app.callback(Output(I.SELECTION_LIST, "children"), Output(I.EDIT_TARGET, "options"),
                  Output(I.COMPARE, "options"), Output(I.EXPORT_SCOPE, "options"), Input(I.SELECTIONS, "data"))
    def _selection_lists(sels: Any) -> Any:
        return panels.selection_lists(sels)

    @app.callback(Output(I.STATS_REGIONS, "figure"), Output(I.STATS_CLASSES, "figure"),
                  Output(I.STATS_TOP, "figure"), *VIEW_IN, RANGE_VALUES,
                  Input({"type": I.WEIGHT, "region": ALL}, "value"), Input(I.SELECTIONS, "data"),
                  Input(I.COMPARE, "value"), RANGE_IDS, WEIGHT_IDS)
    def _statistics(head: str, method: str, norm: str, values: Any, weights: Any, sels: Any, compare: Any,
                    range_ids: Any, weight_ids: Any) -> Any:
        return panels.statistics(query, head, method, norm, range_ids, values, weight_ids, weights, sels,
                                 compare)

    @app.callback(Output(I.DETAIL_PAGE, "data"), Input(I.DETAIL_PREV, "n_clicks"),
                  Input(I.DETAIL_NEXT, "n_clicks"), Input(I.DETAIL_SORT, "value"), Input(I.DETAIL_ORDER, "value"),
                  Input(I.COMPARE, "value"), State(I.DETAIL_PAGE, "data"), prevent_initial_call=True)
    def _page(_p: Any, _n: Any, _s: Any, _o: Any, _c: Any, current: Any) -> Any:
        return panels.turn_page(ctx.triggered_id, current)

    @app.callback(Output(I.DETAIL, "children"), Output(I.DETAIL_PAGE_TEXT, "children"), *VIEW_IN,
                  RANGE_VALUES, Input(I.SELECTIONS, "data"), Input(I.COMPARE, "value"),
                  Input(I.DETAIL_SORT, "value"), Input(I.DETAIL_ORDER, "value"), Input(I.DETAIL_PAGE, "data"),
                  RANGE_IDS)
    def _detail(head: str, method: str, norm: str, values: Any, sels: Any, compare: Any, sort: Any,
                order: Any, page: Any, range_ids: Any) -> Any:
        return panels.detail(query, head, method, norm, range_ids, values, sels, compare, sort, order, page)

    @app.callback(Output(I.INSPECTOR, "children"), Input(I.FOCUS, "data"), *VIEW_IN)
    def _inspector(image_id: Any, head: str, method: str, norm: str) -> Any:
        return panels.inspector(query, image_id, head, method, norm)

    @app.callback(Output(I.SELECTIONS, "data", allow_duplicate=True), Output(I.CLUSTER_TEXT, "children"),
                  Input(I.CLUSTER_RUN, "n_clicks"), State(I.CLUSTER_ALGORITHM, "value"), State(I.CLUSTER_K, "value"),
                  *VIEW, RANGE_IDS, State({"type": I.RANGE, "column": ALL}, "value"), WEIGHT_IDS, WEIGHT_VALUES,
                  State(I.SELECTIONS, "data"), prevent_initial_call=True)
    def _clusters(_n: Any, algorithm: str, k: Any, head: str, method: str, norm: str, range_ids: Any,
                  values: Any, weight_ids: Any, weights: Any, sels: Any) -> Any:
        return panels.clusters(query, algorithm, k, head, method, norm, range_ids, values, weight_ids, weights,
                               sels)

    @app.callback(Output(I.EXPORT_DOWNLOAD, "data"), Input(I.EXPORT_CSV, "n_clicks"),
                  Input(I.EXPORT_PARQUET, "n_clicks"), State(I.EXPORT_SCOPE, "value"), State(I.EXPORT_WIDE, "value"),
                  *VIEW, RANGE_IDS, State({"type": I.RANGE, "column": ALL}, "value"), State(I.SELECTIONS, "data"),
                  prevent_initial_call=True)
    def _export(_c: Any, _p: Any, scope: Any, wide: Any, head: str, method: str, norm: str, range_ids: Any,
                values: Any, sels: Any) -> Any:
        return panels.export(query, ctx.triggered_id, scope, wide, head, method, norm, range_ids, values, sels)

    @app.callback(Output(I.STATE_DOWNLOAD, "data"), Input(I.STATE_SAVE, "n_clicks"), *VIEW,
                  State(I.ALGORITHM, "value"), State(I.HIGHLIGHT, "value"), RANGE_IDS,
                  State({"type": I.RANGE, "column": ALL}, "value"), WEIGHT_IDS, WEIGHT_VALUES,
                  State(I.SELECTIONS, "data"), prevent_initial_call=True)
    def _save_state(_n: Any, head: str, method: str, norm: str, algorithm: str, highlight: Any, range_ids: Any,
                    values: Any, weight_ids: Any, weights: Any, sels: Any) -> Any:
        return panels.save_state(head, method, norm, algorithm, highlight, query, range_ids, values, weight_ids,
                                 weights, sels)

    @app.callback(Output(I.HEAD, "value"), Output(I.METHOD, "value"), Output(I.NORMALISATION, "value"),
                  Output(I.ALGORITHM, "value"), Output(I.HIGHLIGHT, "value"),
                  Output({"type": I.WEIGHT, "region": ALL}, "value"),
                  Output(I.SELECTIONS, "data", allow_duplicate=True), Output(I.STATE_RESTORE, "data"),
                  Output(I.STATE_MESSAGE, "children"), Input(I.STATE_UPLOAD, "contents"), WEIGHT_IDS,
                  prevent_initial_call=True)
    def _load_state(contents: Any, weight_ids: Any) -> Any:
        return panels.load_state(query, contents, weight_ids)
