"""The component tree and the component builders (pure: values in, components out).

User strings (selection names, class names, file names) only ever become component text, which React
escapes; nothing is rendered as HTML or markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
from dash import dcc, html

from semcontrib.dashboard import figures, views
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.query import CorpusQuery

SIDEBAR = {"width": "300px", "flex": "0 0 300px", "padding": "8px 12px", "borderRight": "1px solid #ddd",
           "overflowY": "auto", "height": "100vh", "position": "sticky", "top": "0", "fontSize": "13px",
           "boxSizing": "border-box"}
LABEL = {"fontWeight": "600", "marginTop": "10px", "display": "block"}
BUTTON = {"margin": "4px 4px 4px 0"}
CARD = {"border": "1px solid #ddd", "borderRadius": "4px", "padding": "6px", "margin": "4px",
        "width": "250px", "display": "inline-block", "verticalAlign": "top", "fontSize": "12px"}
GRAPH_CONFIG: Any = {"displayModeBar": False}


def photo_url(image_id: str) -> str:
    return f"/corpus/photo/{quote(image_id, safe='')}"


def thumb_url(image_id: str) -> str:
    return f"/corpus/thumb/{quote(image_id, safe='')}"


def overlay_url(image_id: str, head: str, method: str) -> str:
    return f"/corpus/overlay/{quote(head, safe='')}/{quote(method, safe='')}/{quote(image_id, safe='')}"


def _label(text: str) -> html.Label:
    return html.Label(text, style=LABEL)


def build(query: CorpusQuery) -> html.Div:
    heads = list(query.heads)
    head = heads[0]
    method = "lrp" if "lrp" in query.methods else query.methods[0]
    weights = [html.Div([html.Span(r, style={"display": "inline-block", "width": "150px"}),
                         dcc.Input(id={"type": I.WEIGHT, "region": r}, type="number", min=0, step=0.1, value=1,
                                   debounce=True, style={"width": "90px", "display": "inline-block"})])
               for r in query.vocabulary]
    sidebar = html.Div(style=SIDEBAR, children=[
        html.H3("semcontrib", style={"margin": "4px 0"}),
        html.Div(f"{query.root.name}: {len(query.ids)} images"
                 + (f", {query.n_skipped} skipped" if query.n_skipped else ""), className="hint"),
        _label("Head"),
        dcc.Dropdown(id=I.HEAD, options=heads, value=head, clearable=False),
        _label("Method"),
        dcc.Dropdown(id=I.METHOD, options=query.methods, value=method, clearable=False),
        _label("Normalisation"),
        dcc.RadioItems(id=I.NORMALISATION, options=list(query.normalisations), value="signed_l1", inline=True),
        _label("Embedding"),
        dcc.RadioItems(id=I.ALGORITHM, options=[{"label": "t-SNE", "value": "tsne"},
                                                {"label": "UMAP", "value": "umap"}], value="tsne", inline=True),
        _label("Highlight predicted classes"),
        dcc.Dropdown(id=I.HIGHLIGHT, options=[], value=[], multi=True, placeholder="classes…"),
        _label("Filtered-out points"),
        dcc.RadioItems(id=I.FILTERED_MODE, options=[{"label": "dim", "value": "dim"},
                                                    {"label": "hide", "value": "hide"}], value="dim", inline=True),
        _label("Region filters (score in %)"),
        html.Div(id=I.FILTER_COUNT, className="hint"),
        html.Div(id=I.FILTER_PANEL),
        _label("Region weights (embedding, statistics, clusters)"),
        *weights,
        html.Button("Recompute embedding", id=I.RECOMPUTE, n_clicks=0, style=BUTTON),
        html.Progress(id=I.PROGRESS, value="0", max="10", style={"width": "100%"}),
        html.Div(id=I.PROGRESS_TEXT, className="hint"),
    ])
    selection_bar = html.Div(style={"padding": "4px 0", "fontSize": "13px"}, children=[
        html.Span(id=I.LASSO_COUNT, children="0 images in the lasso", style={"marginRight": "8px"}),
        dcc.Input(id=I.SELECTION_NAME, type="text", placeholder="selection name", maxLength=80,
                  style={"width": "220px", "display": "inline-block"}),
        html.Button("Save lasso as selection", id=I.SELECTION_SAVE, n_clicks=0, style=BUTTON),
        html.Div(id=I.SELECTION_LIST),
        html.Div([
            dcc.Dropdown(id=I.EDIT_TARGET, options=[], placeholder="selection to edit",
                         style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"}),
            dcc.Input(id=I.EDIT_NAME, type="text", placeholder="new name", maxLength=80,
                      style={"width": "200px", "display": "inline-block"}),
            html.Button("Rename", id=I.EDIT_RENAME, n_clicks=0, style=BUTTON),
            dcc.Dropdown(id=I.EDIT_COLOUR, options=[{"label": html.Span("■ " + c, style={"color": c}), "value": c}
                                                    for c in views.PALETTE], placeholder="colour",
                         style={"width": "130px", "display": "inline-block", "verticalAlign": "middle"}),
            html.Button("Recolour", id=I.EDIT_RECOLOUR, n_clicks=0, style=BUTTON),
            html.Button("Delete", id=I.EDIT_DELETE, n_clicks=0, style=BUTTON),
        ]),
        html.Div([html.Span("Compare (statistics, detail): ", style={"fontWeight": "600"}),
                  dcc.Dropdown(id=I.COMPARE, options=[], value=[], multi=True, placeholder="one or two selections",
                               style={"width": "420px", "display": "inline-block", "verticalAlign": "middle"})]),
    ])
    tabs = dcc.Tabs(id=I.TABS, value="statistics", children=[
        dcc.Tab(label="Statistics", value="statistics", children=html.Div([
            dcc.Graph(id=I.STATS_REGIONS, config=GRAPH_CONFIG),
            html.Div([dcc.Graph(id=I.STATS_CLASSES, config=GRAPH_CONFIG, style={"flex": "1"}),
                      dcc.Graph(id=I.STATS_TOP, config=GRAPH_CONFIG, style={"flex": "1"})],
                     style={"display": "flex"})])),
        dcc.Tab(label="Detail", value="detail", children=html.Div([
            html.Div([html.Span("Sort by "),
                      dcc.Dropdown(id=I.DETAIL_SORT, options=[], value="", clearable=False,
                                   style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"}),
                      dcc.RadioItems(id=I.DETAIL_ORDER, options=[{"label": "descending", "value": "desc"},
                                                                 {"label": "ascending", "value": "asc"}],
                                     value="desc", inline=True, style={"display": "inline-block"}),
                      html.Button("◀ previous", id=I.DETAIL_PREV, n_clicks=0, style=BUTTON),
                      html.Button("next ▶", id=I.DETAIL_NEXT, n_clicks=0, style=BUTTON),
                      html.Span(id=I.DETAIL_PAGE_TEXT)], style={"padding": "6px"}),
            html.Div(id=I.DETAIL, style={"display": "flex", "gap": "12px"})])),
        dcc.Tab(label="Image", value="image", children=html.Div(id=I.INSPECTOR, style={"padding": "6px"})),
        dcc.Tab(label="Clusters", value="clusters", children=html.Div(style={"padding": "6px"}, children=[
            html.P("Suggest groups of images the model decides about in the same way (weighted vectors of the "
                   "filtered set); each cluster and the outliers become named selections."),
            dcc.RadioItems(id=I.CLUSTER_ALGORITHM, options=[{"label": "k-means", "value": "kmeans"},
                                                            {"label": "HDBSCAN", "value": "hdbscan"}],
                           value="kmeans", inline=True),
            html.Span(" k = "), dcc.Input(id=I.CLUSTER_K, type="number", min=2, max=50, step=1, value=4,
                                          style={"width": "80px", "display": "inline-block"}),
            html.Button("Suggest clusters", id=I.CLUSTER_RUN, n_clicks=0, style=BUTTON),
            html.Div(id=I.CLUSTER_TEXT)])),
        dcc.Tab(label="Export & state", value="export", children=html.Div(style={"padding": "6px"}, children=[
            html.H4("Contribution table"),
            html.Span("Scope: "),
            dcc.Dropdown(id=I.EXPORT_SCOPE, options=[{"label": "filtered set", "value": "filtered"}],
                         value="filtered", clearable=False,
                         style={"width": "260px", "display": "inline-block", "verticalAlign": "middle"}),
            dcc.Checklist(id=I.EXPORT_WIDE, options=[{"label": "wide (one row per image)", "value": "wide"}],
                          value=[], inline=True, style={"display": "inline-block", "marginLeft": "8px"}),
            html.Div([html.Button("Download CSV", id=I.EXPORT_CSV, n_clicks=0, style=BUTTON),
                      html.Button("Download Parquet", id=I.EXPORT_PARQUET, n_clicks=0, style=BUTTON)]),
            dcc.Download(id=I.EXPORT_DOWNLOAD),
            html.H4("Dashboard state (filters, weights, selections)"),
            html.Button("Save state (JSON)", id=I.STATE_SAVE, n_clicks=0, style=BUTTON),
            dcc.Download(id=I.STATE_DOWNLOAD),
            dcc.Upload(id=I.STATE_UPLOAD, children=html.Div("Load a state: drop a JSON file here or click"),
                       style={"border": "1px dashed #888", "padding": "10px", "margin": "6px 0",
                              "width": "360px", "textAlign": "center"}, accept=".json,application/json"),
            html.Div(id=I.STATE_MESSAGE)])),
    ])
    main = html.Div(style={"flex": "1", "padding": "6px 12px", "minWidth": "0"}, children=[
        dcc.Graph(id=I.SCATTER, style={"height": "560px"}, config={"displaylogo": False, "scrollZoom": True},
                  clear_on_unhover=True),
        dcc.Tooltip(id=I.TOOLTIP, direction="right"),
        selection_bar,
        tabs,
    ])
    stores = [dcc.Store(id=I.EMBEDDING), dcc.Store(id=I.SELECTIONS, data=[]), dcc.Store(id=I.LASSO, data=[]),
              dcc.Store(id=I.FOCUS), dcc.Store(id=I.DETAIL_PAGE, data=0), dcc.Store(id=I.STATE_RESTORE)]
    return html.Div([sidebar, main, *stores],
                    style={"display": "flex", "fontFamily": "system-ui, sans-serif", "fontSize": "14px"})


def filter_sliders(columns: Sequence[str], bounds: np.ndarray, wanted: Mapping[str, Sequence[float]]) -> list[Any]:
    out: list[Any] = []
    for col, (lo, hi) in zip(columns, bounds):
        lo, hi = float(lo), float(hi)
        value = [lo, hi]
        if col in wanted:
            value = [max(lo, float(wanted[col][0])), min(hi, float(wanted[col][1]))]
        out.append(html.Div([
            html.Div(col, style={"fontSize": "12px"}),
            dcc.RangeSlider(id={"type": I.RANGE, "column": col}, min=lo, max=hi, step=0.1, value=value,
                            marks=None, allowCross=False, updatemode="mouseup",
                            tooltip={"placement": "bottom", "always_visible": False}),
        ], className="region-filter"))
    return out


def _predictions(query: CorpusQuery, k: int) -> html.Ul:
    row = query.images.iloc[k]
    return html.Ul([html.Li(f"{h}: {row[f'pred_{h}']} ({row[f'prob_{h}']:.2f})") for h in query.heads],
                   style={"margin": "2px 0", "paddingLeft": "16px"})


def tooltip_card(query: CorpusQuery, k: int, matrix: views.ScoreMatrix, head: str) -> html.Div:
    image_id = str(query.ids[k])
    v = matrix.values[k]
    order = np.argsort(-np.abs(np.nan_to_num(v)))[:4]
    return html.Div(style={"width": "200px", "fontSize": "12px", "whiteSpace": "normal"}, children=[
        html.Img(src=thumb_url(image_id), style={"width": "100%"}),
        html.B(image_id, style={"wordBreak": "break-all"}),
        _predictions(query, k),
        html.Div([html.Div(f"{matrix.columns[j]}: {v[j]:+.3f}") for j in order] if matrix.valid[k]
                 else "no vector for this head and method"),
    ])


def image_card(query: CorpusQuery, k: int, matrix: views.ScoreMatrix, head: str, method: str) -> html.Div:
    image_id = str(query.ids[k])
    return html.Div(className="image-card", style=CARD, children=[
        html.Img(src=overlay_url(image_id, head, method), style={"width": "100%"}, alt=image_id),
        html.Div(image_id, className="card-id", style={"fontWeight": "600", "wordBreak": "break-all"}),
        _predictions(query, k),
        dcc.Graph(figure=figures.contribution_bars(matrix.columns, matrix.values[k], height=160),
                  config=GRAPH_CONFIG, style={"height": "160px"}),
    ])


def detail_column(query: CorpusQuery, name: str, colour: str, total: int, on_page: np.ndarray,
                  matrix: views.ScoreMatrix, head: str, method: str) -> html.Div:
    return html.Div(style={"flex": "1", "borderTop": f"4px solid {colour}"}, children=[
        html.H4(f"{name} ({total} images)", style={"margin": "4px"}),
        html.Div([image_card(query, int(k), matrix, head, method) for k in on_page]
                 or [html.P("no images", className="hint")]),
    ])


def selection_list(selections: Sequence[Mapping[str, Any]]) -> html.Ul:
    if not selections:
        return html.Ul([html.Li("no selections yet: lasso points in the scatter, then save them",
                                className="hint")])
    return html.Ul([html.Li([html.Span("■ ", style={"color": s["colour"], "fontSize": "16px"}),
                             html.Span(s["name"], className="selection-name"),
                             html.Span(f" ({len(s['image_ids'])} images)")], className="selection-item")
                    for s in selections], style={"margin": "4px 0"})


def inspector(query: CorpusQuery, image_id: str, head: str, method: str, norm: str) -> html.Div:
    """One image: photo + overlay, its vector for every head side by side, and for every method with their
    agreement (Spearman rank correlation of region scores)."""
    import pandas as pd

    k = query.index[image_id]
    vectors = query.image_vectors(image_id, norm)
    columns = query.score_matrix(head, method, norm).columns
    by_head = pd.DataFrame({h: vectors[(h, method)] for h in query.heads if (h, method) in vectors},
                           index=list(columns))
    by_method = pd.DataFrame({m: vectors[(head, m)] for m in query.methods if (head, m) in vectors},
                             index=list(columns))
    colours = {c: views.PALETTE[i % len(views.PALETTE)] for i, c in enumerate([*query.heads, *query.methods])}
    agreement = views.method_agreement({m: by_method[m].to_numpy() for m in by_method.columns})
    return html.Div(id="inspector-body", children=[
        html.Div(style={"display": "flex", "gap": "12px"}, children=[
            html.Div(style={"flex": "0 0 360px"}, children=[
                html.Img(src=overlay_url(image_id, head, method), style={"width": "360px"}, alt=image_id),
                html.Img(src=photo_url(image_id), style={"width": "360px", "marginTop": "4px"}, alt=image_id),
            ]),
            html.Div(style={"flex": "1"}, children=[
                html.H4(image_id, style={"margin": "4px 0"}),
                html.Div(f"{head} / {method} / {norm}; overlay: red pushes towards the target, blue against "
                         "it, opacity ∝ |value| up to the 99th percentile of |map| of this image; "
                         "white lines are region borders.",
                         className="hint"),
                _predictions(query, k),
                dcc.Graph(figure=figures.contribution_bars(columns, query.score_matrix(head, method, norm)
                                                           .values[k], title=f"{head} / {method}", height=220),
                          config=GRAPH_CONFIG),
            ]),
        ]),
        dcc.Graph(figure=figures.grouped_bars(by_head, f"every head ({method})", colours, "score", 280),
                  config=GRAPH_CONFIG),
        html.Div(style={"display": "flex"}, children=[
            dcc.Graph(figure=figures.grouped_bars(by_method, f"every method ({head})", colours, "score", 280),
                      config=GRAPH_CONFIG, style={"flex": "2"}),
            dcc.Graph(figure=figures.agreement_heatmap(agreement), config=GRAPH_CONFIG, style={"flex": "1"}),
        ]),
    ])
