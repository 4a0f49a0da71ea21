"""What the export, state-file and session callbacks compute: the contribution table of the filtered set
or a selection as CSV or Parquet, the state file (save and load), and the session saved with the corpus
(restored on page load, with the view of the address on top; saved after every change).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from dash import dcc, no_update

from semcontrib.dashboard import ids as I
from semcontrib.dashboard import panels, state, views
from semcontrib.dashboard.embedding import EMBEDDINGS
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import Filters, View, Weights


def export(query: CorpusQuery, trigger: Any, options: Mapping[str, Any], view: View, filters: Filters,
           selections: Any) -> Any:
    mask = query.filter_mask(view, filters)
    members, name = mask, "filtered"
    for s, m in panels.selection_masks(query, selections):
        if s["id"] == options.get("scope"):
            members, name = m & mask, s["id"]
    shape = "wide" if options.get("wide") else "long"
    stem = f"contributions-{view.head}-{view.method}-{view.normalisation}-{view.basis}-{name}-{shape}"
    fmt = "parquet" if trigger == I.EXPORT_PARQUET else "csv"  # CSV: spreadsheet-safe, written by pyarrow
    data = query.export_bytes(view, [str(i) for i in query.ids[members]], wide=bool(options.get("wide")), fmt=fmt)
    return dcc.send_bytes(data, f"{stem}.{fmt}")


def _ranges(query: CorpusQuery, view: View, filters: Filters) -> dict[str, list[float]]:
    """The filters set on the view's columns (column -> [low, high] in percent; full-range sliders left out)."""
    matrix = query.score_matrix(view)
    bounds = {c: b.tolist() for c, b in zip(matrix.columns, views.slider_bounds(matrix.values))}
    pairs = [(c, v) for c, v in zip(filters.columns, filters.values) if c in matrix.columns]
    ranges = views.ranges_from_sliders([{"column": c} for c, _ in pairs], [v for _, v in pairs], bounds)
    return ranges


def save_state(query: CorpusQuery, view: View, options: Mapping[str, Any], filters: Filters, weights: Weights,
               selections: Any) -> Any:
    ranges = _ranges(query, view, filters)
    st = state.DashboardState(
        view.head, view.method, view.normalisation, view.basis, str(options.get("algorithm") or "tsne"),
        tuple(str(c) for c in options.get("highlight") or []), ranges,
        {k: (1.0 if v is None else v) for k, v in weights.as_dict().items()},
        tuple(s for s, _ in panels.selection_masks(query, selections)))
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
             *, weights: Weights, selections: Any) -> Any:
    """Save the session with the corpus (``CORPUS/dashboard/session.json``) after every change, once the
    saved one was restored (``ready``); returns the line that says so."""
    if not ready:
        return no_update
    try:
        query.check_view(view)
    except ValueError:
        return no_update
    ranges = _ranges(query, view, filters)
    algorithm = str(options.get("algorithm") or "tsne")
    st = state.DashboardState(
        view.head, view.method, view.normalisation, view.basis,
        algorithm if algorithm in EMBEDDINGS else "tsne",
        tuple(str(c) for c in options.get("highlight") or []), ranges,
        {k: (1.0 if v is None else v) for k, v in weights.as_dict().items()},
        tuple(s for s, _ in panels.selection_masks(query, selections)), 0, str(options.get("colour") or "selection"))
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
