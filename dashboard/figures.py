"""Plotly figures as plain dicts (no validation pass, so 100,000 points build in milliseconds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from semcontrib.dashboard.views import GroupStatistics

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "star", "hexagon",
           "pentagon", "triangle-left", "triangle-right")
BASE_COLOUR = "rgba(70,110,150,0.85)"
FILTERED_COLOUR = "rgba(180,180,180,0.25)"
POS, NEG = "#d62728", "#1f5fd6"
_MARGIN = {"l": 40, "r": 10, "t": 30, "b": 40}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def class_symbols(predictions: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """Symbol per point and the legend (class -> symbol); classes beyond the 11 commonest share 'other'."""
    classes, counts = np.unique(predictions.astype(str), return_counts=True)
    order = classes[np.argsort(-counts, kind="stable")]
    many = len(order) > len(SYMBOLS)
    named = list(order[: len(SYMBOLS) - 1] if many else order)
    legend = {c: SYMBOLS[i] for i, c in enumerate(named)}
    if many:
        legend["other classes"] = SYMBOLS[-1]
    lookup = {c: legend.get(c, SYMBOLS[-1]) for c in classes}
    return np.array([lookup[c] for c in predictions.astype(str)], dtype=object), legend


def scatter_figure(xy: np.ndarray, predictions: np.ndarray, visible: np.ndarray, colours: np.ndarray,
                   highlight: np.ndarray, hide_filtered: bool, uirevision: str, title: str = "") -> dict[str, Any]:
    """The embedding scatter (one WebGL trace; customdata = corpus index).

    ``colours`` is an object array of CSS colours per point (selection colour or the base colour),
    ``visible`` the filter mask (others dimmed, or left out when ``hide_filtered``), ``highlight`` a
    bool mask drawn larger with a dark outline.
    """
    n = len(xy)
    symbols, legend = class_symbols(predictions) if n else (np.array([], dtype=object), {})
    keep = np.flatnonzero(visible) if hide_filtered else np.arange(n)
    col = np.where(visible, colours, FILTERED_COLOUR)[keep]
    size = np.where(highlight, 11, 7)[keep]
    line_w = np.where(highlight & visible, 1.5, 0.0)[keep]
    trace = {
        "type": "scattergl", "mode": "markers", "name": "images", "showlegend": False,
        "x": np.round(xy[keep, 0], 4).tolist(), "y": np.round(xy[keep, 1], 4).tolist(),
        "customdata": keep.tolist(), "hoverinfo": "none",
        "marker": {"color": col.tolist(), "symbol": symbols[keep].tolist(), "size": size.tolist(),
                   "line": {"width": line_w.tolist(), "color": "#222"}},
        "unselected": {"marker": {"opacity": 0.35}},
    }
    legend_traces = [{"type": "scattergl", "mode": "markers", "x": [None], "y": [None], "name": c,
                      "marker": {"symbol": s, "color": BASE_COLOUR, "size": 9},
                      "hoverinfo": "skip"} for c, s in legend.items()]
    return {
        "data": [trace, *legend_traces],
        "layout": {
            "title": {"text": title, "font": {"size": 13}}, "dragmode": "lasso", "uirevision": uirevision,
            "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "clickmode": "event+select",
            "xaxis": {"visible": False}, "yaxis": {"visible": False, "scaleanchor": "x"},
            "legend": {"title": {"text": "predicted class"}, "itemclick": False, "itemdoubleclick": False},
            "plot_bgcolor": "white", "hovermode": "closest",
        },
    }


def point_colours(n: int, selections: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """object (n,) CSS colour per point: the last selection that contains it, else the base colour."""
    out = np.full(n, BASE_COLOUR, dtype=object)
    for colour, mask in selections:
        out[mask] = _rgba(colour, 0.9)
    return out


def contribution_bars(columns: Sequence[str], values: np.ndarray, title: str = "", height: int = 180
                      ) -> dict[str, Any]:
    """Signed bar chart of one contribution vector (red positive, blue negative)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64))
    return {"data": [{"type": "bar", "x": list(columns), "y": v.round(4).tolist(),
                      "marker": {"color": [POS if x >= 0 else NEG for x in v]},
                      "hovertemplate": "%{x}: %{y:.3f}<extra></extra>"}],
            "layout": {"title": {"text": title, "font": {"size": 11}}, "height": height,
                       "margin": {"l": 35, "r": 5, "t": 22 if title else 5, "b": 55},
                       "yaxis": {"zeroline": True, "zerolinecolor": "#444", "tickfont": {"size": 9}},
                       "xaxis": {"tickfont": {"size": 9}}, "bargap": 0.15}}


def grouped_bars(frame: pd.DataFrame, title: str, colours: Mapping[str, str], yaxis: str = "",
                 height: int = 300, barmode: str = "group") -> dict[str, Any]:
    """One bar trace per column of ``frame`` (index = categories)."""
    data = [{"type": "bar", "name": str(g), "x": [str(i) for i in frame.index],
             "y": np.nan_to_num(frame[g].to_numpy(np.float64)).round(4).tolist(),
             "marker": {"color": colours.get(str(g))}} for g in frame.columns]
    return {"data": data, "layout": {"title": {"text": title, "font": {"size": 13}}, "barmode": barmode,
                                     "height": height, "margin": _MARGIN, "yaxis": {"title": {"text": yaxis}},
                                     "legend": {"orientation": "h", "y": -0.25}}}


def statistics_figures(stats: GroupStatistics, colours: Mapping[str, str]) -> tuple[dict, dict, dict]:
    """(mean weighted contribution per region, top predicted classes, most often top region)."""
    names = list(stats.mean_contribution.columns)
    labels = {g: f"{g} ({stats.sizes.get(g, 0)})" for g in names}
    cols = {labels[g]: colours.get(g, "#777") for g in names}
    means = stats.mean_contribution.rename(columns=labels)
    classes = stats.top_classes.pivot_table(index="class", columns="group", values="share", fill_value=0.0,
                                            sort=False).reindex(columns=names, fill_value=0.0)
    tops = stats.top_region.pivot_table(index="region", columns="group", values="share", fill_value=0.0,
                                        sort=False).reindex(columns=names, fill_value=0.0)
    return (grouped_bars(means, "mean weighted contribution per region", cols, "score"),
            grouped_bars(classes.rename(columns=labels), "top predicted classes", cols, "share of images"),
            grouped_bars(tops.rename(columns=labels), "most often the top-contributing region", cols,
                         "share of images"))


def agreement_heatmap(agreement: pd.DataFrame) -> dict[str, Any]:
    z = agreement.to_numpy(np.float64)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    return {"data": [{"type": "heatmap", "z": [[None if np.isnan(v) else round(float(v), 3) for v in row] for row in z],
                      "x": list(agreement.columns), "y": list(agreement.index), "zmin": -1, "zmax": 1,
                      "colorscale": "RdBu", "reversescale": True, "text": text, "texttemplate": "%{text}",
                      "hovertemplate": "%{y} vs %{x}: %{z:.2f}<extra></extra>"}],
            "layout": {"title": {"text": "agreement between methods (Spearman rank correlation)",
                                 "font": {"size": 12}}, "height": 280,
                       "margin": {"l": 75, "r": 10, "t": 30, "b": 40}}}
