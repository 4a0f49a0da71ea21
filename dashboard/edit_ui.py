"""Edit mode (``semcontrib dashboard CORPUS --edit``): the "Edit regions" tab and its callbacks.

Without ``--edit`` nothing here is added: no tab, no callback, so a crafted request to save an edit
names a callback the server does not have and is refused. With it, the tab shows the focused image
(the one clicked in the scatter, or picked in the tab) with its regions' outlines and names and its
saved edits; the user draws rectangles or polygons (Plotly's draw tools), picks a label of the
vocabulary or types a new one, optionally restricts the shapes to pixels of one label, and saves
them; "Undo" removes the image's last edit, "Delete" a chosen one. "Apply" runs the analysis again
as a background job (with progress): only the edited images' chunks are recomputed (see
``segmentation/edited.py``); when it is done the dashboard re-opens the corpus and reloads the page,
so points, filters, bars and cards show the new vectors.

Each callback body is one call into :func:`save`, :func:`figure_for` or :func:`apply_edits_job`;
geometry and validation are :mod:`semcontrib.dashboard.editing`, storage :mod:`semcontrib.edits`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dash import Input, Output, State, dcc, html

from semcontrib.dashboard import editing
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.edits import change_edits, edits_path, read_edits

logger = logging.getLogger(__name__)

TAB = "edit-regions"
GRAPH = "edit-regions-graph"
IMAGE = "edit-regions-image"
TOOL = "edit-regions-tool"
LABEL = "edit-regions-label"
NEW_LABEL = "edit-regions-new-label"
INSIDE = "edit-regions-inside"
SAVE = "edit-regions-save"
UNDO = "edit-regions-undo"
DELETE_PICK = "edit-regions-delete-pick"
DELETE = "edit-regions-delete"
MESSAGE = "edit-regions-message"
LIST = "edit-regions-list"
SHAPES = "edit-regions-shapes"
VERSION = "edit-regions-version"
APPLY = "edit-regions-apply"
PROGRESS = "edit-regions-progress"
APPLIED = "edit-regions-applied"
LOCATION = "edit-regions-location"
SHOWN = "edit-regions-shown"
MAX_IMAGE_OPTIONS = 2000
BUTTON = {"margin": "2px 4px"}


def _image_info(query: CorpusQuery, image_id: Any) -> editing.ImageInfo | None:
    stored = query.known_id(image_id)
    if stored is None:
        return None
    row = query.images.iloc[query.index[stored]]
    return editing.ImageInfo(stored, Path(str(row["path"])).name or "image", int(row["width"]), int(row["height"]))


def tab(query: CorpusQuery) -> Any:
    """The "Edit regions" tab."""
    ids = [str(i) for i in query.ids[:MAX_IMAGE_OPTIONS]]
    vocab = [{"label": n, "value": n} for n in query.vocabulary]
    return dcc.Tab(label="Edit regions", value=TAB, children=html.Div(style={"padding": "6px"}, children=[
        html.Div([html.Span("Image "),
                  dcc.Dropdown(id=IMAGE, options=ids, value=ids[0] if ids else None, clearable=False,
                               style={"width": "320px", "display": "inline-block", "verticalAlign": "middle"}),
                  dcc.RadioItems(id=TOOL, options=[{"label": "rectangle", "value": "drawrect"},
                                                   {"label": "polygon", "value": "drawclosedpath"}],
                                 value="drawrect", inline=True,
                                 style={"display": "inline-block", "marginLeft": "12px"})]),
        dcc.Graph(id=GRAPH, config={"displaylogo": False, "scrollZoom": True,
                                    "modeBarButtonsToAdd": ["drawrect", "drawclosedpath", "eraseshape"]}),
        html.Div([html.Span("Label "),
                  dcc.Dropdown(id=LABEL, options=vocab, value=None, placeholder="a region name",
                               style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"}),
                  html.Span(" or new: "),
                  dcc.Input(id=NEW_LABEL, type="text", maxLength=64, placeholder="e.g. eyes", debounce=False),
                  html.Span(" only inside "),
                  dcc.Dropdown(id=INSIDE, options=vocab, value=None, placeholder="(anywhere)",
                               style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"})]),
        html.Div([html.Button("Save drawn shapes", id=SAVE, n_clicks=0, style=BUTTON),
                  html.Button("Undo last edit", id=UNDO, n_clicks=0, style=BUTTON),
                  dcc.Dropdown(id=DELETE_PICK, options=[], value=None, placeholder="an edit of this image",
                               style={"width": "260px", "display": "inline-block", "verticalAlign": "middle"}),
                  html.Button("Delete", id=DELETE, n_clicks=0, style=BUTTON),
                  html.Button("Apply: recompute edited images", id=APPLY, n_clicks=0,
                              style={**BUTTON, "fontWeight": "600"})]),
        html.Div(id=MESSAGE, className="hint"),
        html.Div(id=PROGRESS, className="hint"),
        html.Ul(id=LIST),
        dcc.Store(id=SHAPES, data=[]), dcc.Store(id=VERSION, data=0), dcc.Store(id=APPLIED), dcc.Store(id=SHOWN),
        dcc.Location(id=LOCATION, refresh=True)]))


def attach(root: Any, query: CorpusQuery) -> Any:
    """Add the edit tab to the layout's tabs (the component with id ``ids.TABS``); return ``root``."""
    stack = [root]
    while stack:
        c = stack.pop()
        if getattr(c, "id", None) == I.TABS:
            c.children = [*list(c.children or []), tab(query)]
            return root
        kids = getattr(c, "children", None)
        stack.extend(kids if isinstance(kids, list) else [kids] if kids is not None and hasattr(kids, "children")
                     else [])
    raise ValueError("the dashboard layout has no tabs to add the edit tab to")


# --------------------------------------------------------------------------- callback bodies


def figure_for(query: CorpusQuery, image_id: Any, tool: Any) -> tuple[Any, Any, Any]:
    """The figure, the list of the image's edits and the delete choices."""
    info = _image_info(query, image_id)
    if info is None:
        return {"data": [], "layout": {"height": 120}}, [html.Li("pick an image")], []
    edits = [e for e in read_edits(edits_path(query.root)) if e.image_id == info.image_id]
    labels = query.region_labels(info.image_id)
    outlines = [] if labels is None else editing.region_outlines(labels, query.vocabulary, (info.height, info.width))
    fig = editing.edit_figure(f"/corpus/photo/{info.image_id}", (info.height, info.width), outlines, edits,
                              dragmode=tool if tool in ("drawrect", "drawclosedpath") else "drawrect")
    fig["layout"]["uirevision"] = f"{info.image_id}:{len(edits)}:{edits[-1].edit_id if edits else ''}"
    items = [html.Li(f"{n}: {e.label}" + (f" (inside {e.inside})" if e.inside else "") + f" · {e.shape} · {e.created}")
             for n, e in enumerate(edits, start=1)]
    options = [{"label": f"{n}: {e.label}", "value": e.edit_id} for n, e in enumerate(edits, start=1)]
    return fig, items or [html.Li("no edits on this image")], options


def figure_update(query: CorpusQuery, image_id: Any, tool: Any, drawn: dict[str, Any]) -> tuple[Any, ...]:
    """The edit figure's six outputs: figure, edit list, delete choices, drawn shapes, the graph's
    ``relayoutData`` and the key of what the figure shows (image, number of edits, last edit).

    ``drawn`` holds the browser's ``shapes`` (the shape store), ``relayout`` (the graph's last
    ``relayoutData``) and ``shown`` (the key of the figure on the page). While the figure shows the same
    image with the same edits (a tool change, or the callback fired again by a late focus or tab update),
    the shapes the user drew are kept: put back into the figure, the store left as it is. Otherwise
    (another image, an edit saved or removed) they are dropped, and so is ``relayoutData``, so that a
    save never reads a shape drawn on the figure before."""
    fig, items, options = figure_for(query, image_id, tool)
    key = str(fig["layout"].get("uirevision", ""))
    if key and key == drawn.get("shown"):
        try:
            kept = editing.drawn_shapes(track_shapes(drawn.get("relayout"), editing.drawn_shapes(drawn.get("shapes"))))
        except ValueError:
            kept = []
        fig["layout"]["shapes"] = kept
        return fig, items, options, dash_no_update(), dash_no_update(), key
    return fig, items, options, [], None, key


def track_shapes(relayout: Any, shapes: Any) -> Any:
    """The drawn shapes after a relayout: its full ``shapes`` list, or one shape moved or resized."""
    shapes = list(shapes or [])
    if not isinstance(relayout, dict):
        return shapes
    if "shapes" in relayout:
        return relayout["shapes"] if isinstance(relayout["shapes"], list) else []
    for key, value in relayout.items():  # "shapes[0].x0": 12.5, or "shapes[1].path": "M..."
        if key.startswith("shapes[") and "]." in key:
            try:
                k, field = int(key[7:key.index("]")]), key[key.index("].") + 2:]
            except ValueError:
                continue
            if 0 <= k < len(shapes) and isinstance(shapes[k], dict) and field in ("x0", "x1", "y0", "y1", "path"):
                shapes[k] = {**shapes[k], field: value}
    return shapes


def save(query: CorpusQuery, trigger: str, request: dict[str, Any]) -> tuple[Any, str]:
    """Save the drawn shapes, undo the image's last edit, or delete one (``trigger``); returns the new
    version number (refreshes the figure) and a one-line message. Bad input is the message, never a crash."""
    version = request.get("version")
    version = version if isinstance(version, int) and not isinstance(version, bool) else 0
    info = _image_info(query, request.get("image_id"))
    if info is None:
        return version, "pick an image first"
    try:
        if trigger == SAVE:
            # the shape store, with the graph's last relayout applied here too: the click can reach the
            # server before the store's own update does (a drawn shape would be missing)
            shapes = editing.drawn_shapes(track_shapes(request.get("relayout"),
                                                       editing.drawn_shapes(request.get("shapes"))))
            label = request.get("new_label") or request.get("label")
            if not label:
                raise ValueError("choose a label, or type a new one")
            existing = sum(e.image_id == info.image_id for e in read_edits(edits_path(query.root)))
            new = editing.edits_from_request(info, shapes, label, request.get("inside"), existing)
            done = change_edits(query.root, add=new)
            return version + 1, f"saved {len(done.added)} edit(s) labelled {new[0].label!r}; press Apply to recompute"
        mine = [e for e in read_edits(edits_path(query.root)) if e.image_id == info.image_id]
        if trigger == UNDO:
            if not mine:
                return version, "this image has no edits to undo"
            change_edits(query.root, remove=[mine[-1].edit_id])
            return version + 1, f"removed the last edit ({mine[-1].label!r})"
        if trigger == DELETE:
            pick = request.get("delete")
            if pick not in {e.edit_id for e in mine}:
                return version, "choose one of this image's edits to delete"
            change_edits(query.root, remove=[pick])
            return version + 1, "deleted the edit"
    except ValueError as exc:
        return version, f"not saved: {exc}"
    return version, ""


def apply_edits_job(set_progress: Any, query: CorpusQuery) -> dict[str, Any]:
    """The background job of "Apply": analyse the corpus's images again with its recorded settings (the
    edits apply automatically); only the chunks of edited images compute. Runs in a spawned process."""
    from semcontrib.pipeline import analyze  # the job's own process loads the model, never the server

    images = query.all_images
    paths = [str(p) for p in images["path"]]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        return {"ok": False, "message": f"cannot recompute: {len(missing)} image file(s) moved, e.g. {missing[0]}"}

    def progress(done: int, total: int) -> None:
        set_progress(f"recomputing: {done} / {total} images of the changed chunks")

    try:
        report = analyze(paths, query.root, progress=progress)
    except (ValueError, OSError) as exc:
        return {"ok": False, "message": f"recompute failed: {exc}"}
    return {"ok": True, "message": f"recomputed: {report.computed}"}


def register(app: Any, query: CorpusQuery) -> None:
    """The edit tab's callbacks (registered only with ``--edit``)."""

    @app.callback(Output(IMAGE, "value"), Input(I.FOCUS, "data"), prevent_initial_call=True)
    def _follow_focus(focus: Any) -> Any:
        return query.known_id(focus) or dash_no_update()

    @app.callback(Output(GRAPH, "figure"), Output(LIST, "children"), Output(DELETE_PICK, "options"),
                  Output(SHAPES, "data"), Output(GRAPH, "relayoutData"), Output(SHOWN, "data"),
                  inputs={"image_id": Input(IMAGE, "value"), "version": Input(VERSION, "data"),
                          "tool": Input(TOOL, "value"),
                          "drawn": {"shapes": State(SHAPES, "data"), "relayout": State(GRAPH, "relayoutData"),
                                    "shown": State(SHOWN, "data")}})
    def _figure(image_id: Any, version: Any, tool: Any, drawn: dict[str, Any]) -> Any:
        return figure_update(query, image_id, tool, drawn)

    @app.callback(Output(SHAPES, "data", allow_duplicate=True), Input(GRAPH, "relayoutData"),
                  State(SHAPES, "data"), prevent_initial_call=True)
    def _shapes(relayout: Any, shapes: Any) -> Any:
        return track_shapes(relayout, shapes)

    @app.callback(Output(VERSION, "data"), Output(MESSAGE, "children"),
                  inputs={"save": Input(SAVE, "n_clicks"), "undo": Input(UNDO, "n_clicks"),
                          "delete_click": Input(DELETE, "n_clicks"),
                          "request": {"image_id": State(IMAGE, "value"), "shapes": State(SHAPES, "data"),
                                      "relayout": State(GRAPH, "relayoutData"),
                                      "label": State(LABEL, "value"), "new_label": State(NEW_LABEL, "value"),
                                      "inside": State(INSIDE, "value"), "delete": State(DELETE_PICK, "value"),
                                      "version": State(VERSION, "data")}},
                  prevent_initial_call=True)
    def _save(save: Any, undo: Any, delete_click: Any, request: dict[str, Any]) -> Any:
        from dash import ctx

        return save_request(query, str(ctx.triggered_id), request)

    @app.callback(Output(APPLIED, "data"), Input(APPLY, "n_clicks"), background=True,
                  progress=Output(PROGRESS, "children"), running=[(Output(APPLY, "disabled"), True, False)],
                  prevent_initial_call=True)
    def _apply(set_progress: Any, n_clicks: Any) -> Any:
        return apply_edits_job(set_progress, query)

    @app.callback(Output(PROGRESS, "children", allow_duplicate=True), Output(LOCATION, "href"),
                  Input(APPLIED, "data"), State(LOCATION, "href"), prevent_initial_call=True)
    def _applied(result: Any, href: Any) -> Any:
        return after_apply(query, result, href)


def save_request(query: CorpusQuery, trigger: str, request: dict[str, Any]) -> tuple[Any, str]:
    """:func:`save`, for a request whose fields come from the browser (any JSON)."""
    if not isinstance(request, dict):
        return 0, "not saved: malformed request"
    return save(query, trigger, request)


def after_apply(query: CorpusQuery, result: Any, href: Any) -> tuple[str, Any]:
    """After the job: re-open the corpus (new tables, vocabulary) and reload the page; or show why not."""
    if not isinstance(result, dict) or not result.get("ok"):
        return str(result.get("message") if isinstance(result, dict) else "recompute failed"), dash_no_update()
    query.__setstate__(query.__getstate__())  # re-open the corpus in place: every callback sees the new one
    return str(result["message"]), reload_href(href)


def reload_href(href: Any) -> str:
    """``href`` with ``applied=<time>`` in its query: a different address, so that ``dcc.Location`` (which
    reloads only when the address changes) reloads the page, whose layout is rebuilt from the re-opened
    corpus (new regions, filters). The rest of the query (the view) is kept.

    >>> reload_href("http://h:1/?head=a&applied=1").startswith("http://h:1/?head=a&applied=")
    True
    """
    import time
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(str(href or "/"))
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "applied"] + [("applied", str(time.time_ns()))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def dash_no_update() -> Any:
    from dash import no_update

    return no_update
