"""Plotly figures as plain dicts (no validation pass, so 100,000 points build in milliseconds)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from semcontrib.dashboard.views import (
    CODE_BASE,
    CODE_DIV,
    CODE_FILTERED,
    CODE_HIDDEN,
    CODE_NO_VALUE,
    DIV_BINS,
    DIVERGING,
    N_CODES,
    PALETTE,
    GroupStatistics,
)

SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "star", "hexagon",
           "pentagon", "triangle-left", "triangle-right")
BASE_COLOUR = "rgba(70,110,150,0.85)"
FILTERED_COLOUR = "rgba(180,180,180,0.25)"
POS, NEG = DIVERGING[-2], DIVERGING[1]  # positive red, negative blue: the same hues everywhere
UNIT = "% of the vector"
_MARGIN = {"l": 40, "r": 10, "t": 30, "b": 40}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def class_symbols(predictions: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """Symbol number per point (uint8, index into SYMBOLS) and the legend (class -> symbol name); classes
    beyond the 11 commonest share 'other'."""
    classes, inverse, counts = np.unique(predictions.astype(str), return_inverse=True, return_counts=True)
    order = classes[np.argsort(-counts, kind="stable")]
    many = len(order) > len(SYMBOLS)
    named = list(order[: len(SYMBOLS) - 1] if many else order)
    legend = {c: SYMBOLS[i] for i, c in enumerate(named)}
    if many:
        legend["other classes"] = SYMBOLS[-1]
    lookup = np.array([SYMBOLS.index(legend.get(c, SYMBOLS[-1])) for c in classes], dtype=np.uint8)
    return lookup[inverse.ravel()] if len(classes) else np.zeros(0, np.uint8), legend


# plotly's symbol numbers of SYMBOLS (scattergl takes numbers as well as names)
SYMBOL_NUMBERS = {"circle": 0, "square": 1, "diamond": 2, "cross": 3, "x": 4, "triangle-up": 5,
                  "triangle-down": 6, "triangle-left": 7, "triangle-right": 8, "pentagon": 13, "hexagon": 14,
                  "star": 17}


def diverging_scale() -> list[list[Any]]:
    """The app's diverging colour scale (plotly ``colorscale``): blue -1 … white 0 … red +1."""
    return [[i / (len(DIVERGING) - 1), c] for i, c in enumerate(DIVERGING)]


def _interpolate(t: float) -> str:
    """The diverging colour at ``t`` in [0, 1] (linear between the palette's stops), as hex."""
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in DIVERGING], dtype=np.float64)
    x = t * (len(stops) - 1)
    k = min(int(np.floor(x)), len(stops) - 2)
    rgb = stops[k] + (stops[k + 1] - stops[k]) * (x - k)
    return "#" + "".join(f"{int(round(v)):02x}" for v in rgb)


def code_colours() -> list[str]:
    """CSS colour of every point code of :func:`views.point_codes` (index = code)."""
    out = [BASE_COLOUR] + [_rgba(c, 0.9) for c in PALETTE]
    out += [FILTERED_COLOUR, "rgba(0,0,0,0)", "rgba(120,120,120,0.5)"]
    out += [_rgba(_interpolate((b + 0.5) / DIV_BINS), 0.95) for b in range(DIV_BINS)]
    if len(out) != N_CODES:
        raise RuntimeError("one colour per point code is needed")
    return out


CODE_COLOURS = code_colours()
EDGE = "rgba(110, 110, 110, 0.8)"  # the thin edge of large markers
CODE_EDGE = CODE_FILTERED  # a grey code of the scale, for the same edge where selections are drawn as rings


def _code_scale() -> list[list[Any]]:
    scale: list[list[Any]] = []
    for i, c in enumerate(CODE_COLOURS):
        scale += [[i / N_CODES, c], [(i + 1) / N_CODES, c]]
    return scale


def typed(values: np.ndarray) -> dict[str, str]:
    """A numpy array as plotly.js's base64 typed array ``{"dtype", "bdata"}`` (little-endian)."""
    arr = np.ascontiguousarray(values)
    kinds = {np.dtype(np.uint8): "u1", np.dtype(np.int32): "i4", np.dtype(np.float32): "f4",
             np.dtype(np.float64): "f8", np.dtype(np.uint16): "u2"}
    if arr.dtype not in kinds:
        raise ValueError(f"dtype must be one of {list(kinds)}, got {arr.dtype}")
    return {"dtype": kinds[arr.dtype], "bdata": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<"))
                                                                 .tobytes()).decode("ascii")}


def marker_update(codes: np.ndarray, highlight: np.ndarray, size: int = 6,
                  outline: np.ndarray | None = None) -> dict[str, Any]:
    """The marker fields that filters, selections and highlights change: colour codes and sizes
    (highlighted points are drawn larger), one byte per point each; with ``outline`` (uint8 selection
    codes, 0 = none; see :func:`views.selection_codes`) a ring in the selection's colour (1 px on small
    markers, so that the fill — a score — still shows)."""
    out: dict[str, Any] = {"color": typed(codes.astype(np.uint8)),
                           "size": typed(np.where(highlight, size + 5, size).astype(np.uint8))}
    # large markers (a small corpus) get a thin grey edge, so that a point whose colour is white (a score
    # near 0) still shows on the white background; hidden points get none
    edge = np.where(codes == CODE_HIDDEN, 0, 1 if size > 5 else 0).astype(np.uint8)
    if outline is None:
        out["line"] = {"width": typed(edge), "color": EDGE}
    else:
        ring = np.where(outline > 0, 1 if size <= 5 else 2, edge).astype(np.uint8)
        colour = np.where(outline > 0, outline, CODE_EDGE).astype(np.uint8)
        out["line"] = {"color": typed(colour), "cmin": -0.5, "cmax": N_CODES - 0.5,
                       "colorscale": _code_scale(), "width": typed(ring)}
    return out


@dataclass(frozen=True)
class Colouring:
    """What the scatter's colours mean, for its colour bar and legend.

    Attributes
    ----------
    title : what colours the points (``"sky (% of the vector)"``, ``"selection"``).
    limit : half-width of a zero-centred diverging range (display units) — the colour bar runs from
        ``-limit`` to ``+limit``; None when the colours are categories.
    categories : (name, hex colour) legend entries of categorical colours (selections, classes).
    outlined : categories are drawn as rings (selections while the fill shows a score).
    """

    title: str
    limit: float | None = None
    categories: tuple[tuple[str, str], ...] = ()
    outlined: bool = False


def points_trace(xy: np.ndarray, rows: np.ndarray, symbols: np.ndarray, codes: np.ndarray,
                 highlight: np.ndarray, *, size: int = 6, outline: np.ndarray | None = None) -> dict[str, Any]:
    """One WebGL trace of the points ``rows`` (int (M,) corpus rows, customdata), coloured by code."""
    return {
        "type": "scattergl", "mode": "markers", "name": "images", "showlegend": False,
        "x": typed(xy[rows, 0].astype(np.float32)), "y": typed(xy[rows, 1].astype(np.float32)),
        "customdata": typed(rows.astype(np.int32)), "hoverinfo": "none",
        "marker": {"symbol": [SYMBOL_NUMBERS[SYMBOLS[k]] for k in symbols[rows]],
                   "cmin": -0.5, "cmax": N_CODES - 0.5, "colorscale": _code_scale(), "showscale": False,
                   **marker_update(codes[rows], highlight[rows], size, None if outline is None else outline[rows])},
        "unselected": {"marker": {"opacity": 0.35}},
    }


def colour_bar_trace(colouring: Colouring) -> dict[str, Any]:
    """An invisible trace that carries the colour bar of a diverging colouring (zero-centred: ``cmin =
    -cmax``, ``cmid = 0``)."""
    limit = float(colouring.limit or 1.0)
    return {"type": "scatter", "mode": "markers", "x": [None], "y": [None], "name": "colour bar",
            "showlegend": False, "hoverinfo": "skip",
            "marker": {"color": [0.0], "colorscale": diverging_scale(), "cmin": -limit, "cmax": limit,
                       "showscale": True, "size": 0.1,
                       "colorbar": {"title": {"text": colouring.title, "side": "right"}, "thickness": 12,
                                    "len": 0.6, "y": 0.3, "x": 1.0, "tickfont": {"size": 10}}}}


def category_legend(colouring: Colouring) -> list[dict[str, Any]]:
    """One legend entry per category (selection or class) with its colour."""
    symbol = "circle-open" if colouring.outlined else "square"
    return [{"type": "scatter", "mode": "markers", "x": [None], "y": [None], "name": name,
             "legendgroup": "colours", "legendgrouptitle": {"text": colouring.title} if k == 0 else None,
             "marker": {"symbol": symbol, "color": colour, "size": 11, "line": {"width": 2, "color": colour}},
             "hoverinfo": "skip"} for k, (name, colour) in enumerate(colouring.categories)]


def wrap(text: str, width: int = 64) -> str:
    """``text`` with ``<br>`` at spaces so that no line is longer than ``width`` characters (a longer word
    stays whole); existing ``<br>`` are kept.

    Examples
    --------
    >>> wrap("t-SNE of nature / lrp / signed_l1 (mean basis)", 20)
    't-SNE of nature /<br>lrp / signed_l1<br>(mean basis)'
    """
    out = []
    for line in text.split("<br>"):
        words, current = line.split(" "), ""
        for word in words:
            if current and len(current) + 1 + len(word) > width:
                out.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        out.append(current)
    return "<br>".join(out)


def scatter_figure(xy: np.ndarray, symbols: np.ndarray, legend: Mapping[str, str], codes: np.ndarray,
                   highlight: np.ndarray, uirevision: str, *, title: str = "",
                   density: dict[str, Any] | None = None, sample: np.ndarray | None = None,
                   colouring: Colouring | None = None, outline: np.ndarray | None = None,
                   meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The embedding scatter.

    Every point is drawn (one WebGL trace, customdata = corpus row) unless ``density`` is given: then the
    points are a density image (``layout.images[0]``, see :func:`density_image`) and only the rows
    ``sample`` are drawn as points (for hover and click). Colours are codes (uint8, see
    :func:`views.point_codes`) on a fixed discrete colour scale, so a filter or selection change
    updates only ``marker.color`` (and the image), never the positions. Traces: the points, the colour
    bar (an empty trace, shown for a diverging ``colouring``), in density mode the hover grid
    (:func:`hover_grid`, trace :data:`HOVER_TRACE`), one legend entry per predicted class
    (symbols), then one per category of ``colouring`` (selections or classes; the last ones, so that a
    ``Patch`` can replace them). Marker size follows the number of points (:func:`views.marker_size`).
    """
    from semcontrib.dashboard.views import marker_size

    colouring = colouring or Colouring("selection")
    rows = np.arange(len(xy)) if sample is None else sample
    size = marker_size(len(xy))
    trace = points_trace(xy, rows, symbols, codes, highlight, size=size, outline=outline)
    bar = colour_bar_trace(colouring)
    bar["visible"] = colouring.limit is not None
    legend_traces = [{"type": "scatter", "mode": "markers", "x": [None], "y": [None], "name": str(c),
                      "legendgroup": "classes", "legendgrouptitle": {"text": "predicted class"} if k == 0 else None,
                      "marker": {"symbol": s, "color": "#555", "size": 9},
                      "hoverinfo": "skip"} for k, (c, s) in enumerate(legend.items())]
    title = wrap(title)  # short lines: the title never runs under the toolbar at the top right
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 13}, "x": 0.01, "xanchor": "left", "y": 0.99,
                  "yanchor": "top", "pad": {"t": 4}},
        "dragmode": "lasso", "uirevision": uirevision, "meta": dict(meta or {}),
        "margin": {"l": 10, "r": 10, "t": 20 + 17 * (title.count("<br>") + 1), "b": 10},
        "clickmode": "event+select", "modebar": {"bgcolor": "rgba(255,255,255,0.85)"},
        "xaxis": {"visible": False}, "yaxis": {"visible": False, "scaleanchor": "x"},
        "legend": {"itemclick": False, "itemdoubleclick": False, "groupclick": "toggleitem",
                   "tracegroupgap": 8, "x": 1.02, "y": 1, "yanchor": "top"},
        "plot_bgcolor": "white", "hovermode": "closest",
    }
    if density is not None:
        layout["images"] = [density]
        x0, y1 = density["x"], density["y"]
        layout["xaxis"]["range"] = [x0, x0 + density["sizex"]]
        layout["yaxis"]["range"] = [y1 - density["sizey"], y1]
    grid = [] if density is None else [hover_grid(density_box(xy))]
    return {"data": [trace, bar, *grid, *legend_traces, *category_legend(colouring)], "layout": layout}


HOVER_CELLS = 200  # cells per side of the density image's hover grid
HOVER_TRACE = 2  # the hover grid's trace number in density mode (after the points and the colour bar)


def density_box(xy: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1): the extent of the density image of ``xy`` (float N x 2), 2 % padding each side."""
    return _layout(xy, 0)[0]


# (xy, size, box, flat bin per point) of the latest embeddings drawn, newest last: an embedding's extent and
# bins do not change between filter updates (the query's embeddings are read-only), and at 1,000,000 images
# computing them costs ~100 ms of every update
_LAYOUTS: list[tuple[np.ndarray, int, tuple[float, float, float, float], np.ndarray | None]] = []


def _frozen(a: np.ndarray) -> bool:
    """Whether ``a`` and every array it views are read-only (so its values cannot change under a cache)."""
    node: Any = a
    while isinstance(node, np.ndarray):
        if node.flags.writeable:
            return False
        node = node.base
    return True


def _layout(xy: np.ndarray, size: int) -> tuple[tuple[float, float, float, float], np.ndarray | None]:
    """(density_box, the flat bin of each point on a ``size`` x ``size`` grid, rows top to bottom; None for
    size 0). Kept for read-only ``xy`` (the query's embeddings), recomputed for any other."""
    for ref, s, box, flat in _LAYOUTS:
        if ref is xy and s == size:
            return box, flat
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = np.maximum(hi - lo, 1e-9) * 0.02
    box = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    flat = None
    if size:
        x0, x1, y0, y1 = box
        origin, span = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
        ij = np.clip(((xy - origin) / span * size).astype(np.int64), 0, size - 1)
        flat = (size - 1 - ij[:, 1]) * size + ij[:, 0]  # image rows run top to bottom
        flat.setflags(write=False)
    if _frozen(xy):
        _LAYOUTS.append((xy, size, box, flat))
        del _LAYOUTS[:-4]
    return box, flat


def hover_grid_extent(box: tuple[float, float, float, float], cells: int = HOVER_CELLS) -> dict[str, float]:
    """The heatmap fields (``x0``, ``dx``, ``y0``, ``dy``: cell centres) of a ``cells`` x ``cells`` grid over
    ``box`` (x0, x1, y0, y1 in data units)."""
    x0, x1, y0, y1 = box
    dx, dy = (x1 - x0) / cells, (y1 - y0) / cells
    return {"x0": x0 + dx / 2, "dx": dx, "y0": y0 + dy / 2, "dy": dy}


def hover_grid(box: tuple[float, float, float, float], cells: int = HOVER_CELLS) -> dict[str, Any]:
    """An invisible heatmap of ``cells`` x ``cells`` cells over ``box``: in density mode it makes plotly
    report a hover (the centre of the cell under the cursor) anywhere over the density image, not only on
    the sampled points; the server answers it with the nearest image. Points drawn on top win when the
    cursor is on one (a heatmap's hover distance is the largest a hover may have)."""
    z = np.zeros((cells, cells), np.uint8)
    return {"type": "heatmap", "name": "hover grid", "showscale": False, "hoverinfo": "none",
            "z": {**typed(z), "shape": f"{cells},{cells}"}, "zmin": 0, "zmax": 1,
            "colorscale": [[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]], **hover_grid_extent(box, cells)}


def density_image(xy: np.ndarray, codes: np.ndarray, size: int = 480) -> dict[str, Any]:
    """A plotly layout image of the point density, coloured by point code (a datashader-style raster).

    ``xy`` is float N x 2, ``codes`` uint8 (N,). Each code is binned on a ``size`` x ``size`` grid; a
    bin's opacity grows with the log of its count; codes are painted in the order filtered, base,
    faithfulness bins, selections, so selections lie on top.
    """
    (x0, x1, y0, y1), flat = _layout(xy, size)
    assert flat is not None
    lo, span = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
    rgba = np.zeros((size * size, 4), np.float64)
    colours = np.array([_parse_rgba(c) for c in CODE_COLOURS])
    present = np.flatnonzero(np.bincount(codes, minlength=N_CODES))
    order = [CODE_FILTERED, CODE_BASE, CODE_NO_VALUE, *range(CODE_DIV, N_CODES), *range(1, CODE_FILTERED)]
    for code in order:
        if code not in present or code == CODE_HIDDEN:
            continue
        counts = np.bincount(flat[codes == code], minlength=size * size).astype(np.float64)
        alpha = np.log1p(counts) / np.log1p(max(counts.max(), 1)) * min(1.0, colours[code, 3] + 0.1)
        alpha = np.where(counts > 0, np.maximum(alpha, 0.25), 0.0)
        a = alpha[:, None]
        rgba[:, :3] = colours[code, :3] * a + rgba[:, :3] * (1 - a)
        rgba[:, 3] = alpha + rgba[:, 3] * (1 - alpha)
    img = np.clip(rgba.reshape(size, size, 4) * [1, 1, 1, 255], 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGBA").save(buf, format="PNG", compress_level=1)
    return {"source": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            "xref": "x", "yref": "y", "x": float(lo[0]), "y": float(lo[1] + span[1]),
            "sizex": float(span[0]), "sizey": float(span[1]), "sizing": "stretch", "layer": "below"}


def _parse_rgba(css: str) -> tuple[float, float, float, float]:
    if css.startswith("#"):
        h = css.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 1.0)
    r, g, b, a = (float(x) for x in css[css.index("(") + 1:-1].split(","))
    return (r, g, b, a)


def point_colours(n: int, selections: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """object (n,) CSS colour per point: the last selection that contains it, else the base colour."""
    out = np.full(n, BASE_COLOUR, dtype=object)
    for colour, mask in selections:
        out[mask] = _rgba(colour, 0.9)
    return out


def tick_text(name: str, width: int = 18, lines: int = 2) -> str:
    """A category's tick label: ``name`` broken after ``_``, ``-`` or a space into at most ``lines`` lines of
    at most ``width`` characters, cut with "…" beyond that (charts keep the full name in their hover text).

    Examples
    --------
    >>> tick_text("built_environment_structures")
    'built_environment_<br>structures'
    >>> tick_text("shadow_region_under_the_trees_left", 10)
    'shadow_<br>region_un…'
    >>> tick_text("vegetation_dense_canopy+", 12, 1)
    'vegetation…+'
    >>> tick_text("sky")
    'sky'
    """
    import re

    name = str(name)
    out = [""]
    for word in re.findall(r"[^_\- ]*[_\- ]?", name)[:-1]:
        while word:
            if len(out[-1]) + len(word) <= width:
                out[-1] += word
                word = ""
            elif out[-1]:
                out.append("")
            else:  # a word longer than a line
                out[-1], word = word[:width], word[width:]
                out.append("")
    out = [line for line in out if line]
    if len(out) > lines:
        sign = name[-1] if name[-1:] in ("+", "-") else ""  # a split column keeps its sign
        out = [*out[:lines - 1], "".join(out[lines - 1:])[:width - 1 - len(sign)] + "…" + sign]
    return "<br>".join(out)


def category_axis(names: Sequence[str], *, width: int = 16, lines: int = 2, most: int | None = None,
                  angle: int | None = None) -> dict[str, Any]:
    """A categorical x axis whose tick labels never run into each other or out of the chart: each name
    shortened by :func:`tick_text`, every k-th name labelled when there are more than ``most`` (a small chart
    of split columns), a fixed ``angle``. By default: level labels of up to three lines up to 6 categories,
    two-line labels at -45 degrees up to 12, one-line vertical labels beyond (a narrow chart of 20 regions,
    or 40 split columns, still has room for one line of text per category)."""
    if angle is None:
        angle, lines, width = (0, lines + 1, width) if len(names) <= 6 else (-45, lines, width) \
            if len(names) <= 12 else (-90, 1, width + 6)
    step = max(1, -(-len(names) // most)) if most else 1
    shown = [str(n) for n in names][::step]
    return {"type": "category", "tickmode": "array", "tickvals": shown,
            "ticktext": [tick_text(n, width, lines) for n in shown], "automargin": True, "tickangle": angle}


def _title(text: str, detail: str = "", size: int = 13) -> dict[str, Any]:
    """A chart title at the top left; ``detail`` (what the scores explain) as its subtitle, a second, smaller
    line, so a long target name does not run out of a narrow chart."""
    title: dict[str, Any] = {"text": text, "font": {"size": size}, "x": 0.01, "xanchor": "left",
                             "xref": "container", "y": 1, "yanchor": "top", "yref": "container", "pad": {"t": 8}}
    if detail:
        title["subtitle"] = {"text": detail, "font": {"size": size - 2, "color": "#555"}}
    return title


def contribution_bars(columns: Sequence[str], values: np.ndarray, title: str = "", height: int = 180
                      ) -> dict[str, Any]:
    """Signed bar chart of one contribution vector in % of the vector (red positive, blue negative); tick
    labels shortened (split columns: every other one labelled in a small chart), full names on hover."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64)) * 100
    small = height < 200
    labels = 60 if len(columns) > 12 and not small else 0  # room for vertical tick labels
    return {"data": [{"type": "bar", "x": list(columns), "y": v.round(2).tolist(),
                      "marker": {"color": [POS if x >= 0 else NEG for x in v]},
                      "hovertemplate": "%{x}: %{y:.1f} %<extra></extra>"}],
            "layout": {"title": {"text": title, "font": {"size": 11}}, "height": height + labels,
                       "margin": {"l": 45, "r": 5, "t": 22 if title else 5, "b": 30},
                       "yaxis": {"zeroline": True, "zerolinecolor": "#444", "tickfont": {"size": 9},
                                 "ticksuffix": " %", "title": {"text": UNIT, "font": {"size": 9}},
                                 "automargin": True},
                       "xaxis": {**category_axis(list(columns), width=12 if small else 18, lines=1 if small else 2,
                                                 most=12 if small else None, angle=-90 if small else None),
                                 "tickfont": {"size": 9}}, "bargap": 0.15}}


def grouped_bars(frame: pd.DataFrame, title: str, colours: Mapping[str, str], yaxis: str = "",
                 height: int = 300, barmode: str = "group", *, detail: str = "") -> dict[str, Any]:
    """One bar trace per column of ``frame`` (index = categories). The legend sits above the plot (never on
    the tick labels), the categories' names are shortened on the axis (:func:`category_axis`) and whole on
    hover; ``detail`` is a second title line."""
    names = [str(i) for i in frame.index]
    data = [{"type": "bar", "name": str(g), "x": names,
             "y": np.nan_to_num(frame[g].to_numpy(np.float64)).round(4).tolist(),
             "marker": {"color": colours.get(str(g))},
             "hovertemplate": f"{g}<br>%{{x}}: %{{y:.3~f}}<extra></extra>"} for g in frame.columns]
    top = 26 + (16 if detail else 0) + 40  # title lines, then up to two rows of legend
    labels = 60 if len(names) > 12 else 0  # vertical tick labels (category_axis)
    return {"data": data, "layout": {"title": _title(title, detail), "barmode": barmode,
                                     "height": height + top - 30 + labels, "margin": {**_MARGIN, "t": top},
                                     "yaxis": {"title": {"text": yaxis}, "automargin": True},
                                     "xaxis": category_axis(names),
                                     "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02,
                                                "yanchor": "bottom"}}}


def _pivot(frame: pd.DataFrame, key: str, groups: Sequence[str]) -> pd.DataFrame:
    """(group, key, share) rows -> index key (first-seen order), one column per group (0 where absent)."""
    keys = list(dict.fromkeys(frame[key].tolist()))
    table = np.zeros((len(keys), len(groups)))
    row, col = {k: i for i, k in enumerate(keys)}, {g: j for j, g in enumerate(groups)}
    for g, k, v in zip(frame["group"], frame[key], frame["share"]):
        if g in col:
            table[row[k], col[g]] = v
    return pd.DataFrame(table, index=keys, columns=list(groups))


def statistics_figures(stats: GroupStatistics, colours: Mapping[str, str], target: str = ""
                       ) -> tuple[dict, dict, dict]:
    """(mean weighted contribution per region in % of the vector, top predicted classes, most often top
    region); ``target`` names what the scores explain (e.g. "head nature, predicted class")."""
    names = list(stats.mean_contribution.columns)
    labels = {g: f"{g} ({stats.sizes.get(g, 0)})" for g in names}
    cols = {labels[g]: colours.get(g, "#777") for g in names}
    means = stats.mean_contribution.rename(columns=labels) * 100
    classes = _pivot(stats.top_classes, "class", names)
    tops = _pivot(stats.top_region, "region", names)
    explained = f"explaining {target}" if target else ""
    return (grouped_bars(means, "mean weighted contribution per region", cols, f"mean score<br>({UNIT}, × weight)",
                         detail=explained),
            grouped_bars(classes.rename(columns=labels), "top predicted classes", cols, "share of images"),
            grouped_bars(tops.rename(columns=labels), "most often the top-contributing region", cols,
                         "share of images", detail=explained))


def difference_chart(table: pd.DataFrame, a: str, b: str, target: str = "") -> dict[str, Any]:
    """Difference of mean scores ``a − b`` per region with its 95 % interval (error bars), in % of the
    vector; ``table`` as :func:`clusters.distinguishing_regions` returns it. Red: higher in ``a``."""
    d = table["difference"].to_numpy(np.float64) * 100
    lo = table["ci_low"].to_numpy(np.float64) * 100
    hi = table["ci_high"].to_numpy(np.float64) * 100
    explained = f"explaining {target}" if target else ""
    names = [str(c) for c in table["column"]]
    return {"data": [{"type": "bar", "x": names, "y": d.round(3).tolist(),
                      "marker": {"color": [POS if x >= 0 else NEG for x in d]},
                      "error_y": {"type": "data", "symmetric": False, "array": (hi - d).round(3).tolist(),
                                  "arrayminus": (d - lo).round(3).tolist(), "color": "#333", "thickness": 1.2},
                      "customdata": np.column_stack([lo, hi, table["effect_size"].to_numpy(np.float64)]
                                                    ).round(3).tolist(),
                      "hovertemplate": "%{x}: %{y:.2f} % [%{customdata[0]:.2f}, %{customdata[1]:.2f}], "
                                       "d = %{customdata[2]:.2f}<extra></extra>"}],
            "layout": {"title": _title(f"{a} − {b}: difference of mean scores with 95 % interval", explained),
                       "height": 300 + (60 if len(names) > 12 else 0),
                       "margin": {**_MARGIN, "t": 50 if explained else 34},
                       "yaxis": {"title": {"text": f"difference<br>({UNIT})"}, "zeroline": True,
                                 "zerolinecolor": "#444", "ticksuffix": " %", "automargin": True},
                       "xaxis": category_axis(names)}}


def agreement_heatmap(agreement: pd.DataFrame) -> dict[str, Any]:
    """Spearman agreement between methods on the app's diverging scale (+1 red, −1 blue), with its colour bar."""
    z = agreement.to_numpy(np.float64)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    return {"data": [{"type": "heatmap", "z": [[None if np.isnan(v) else round(float(v), 3) for v in row] for row in z],
                      "x": list(agreement.columns), "y": list(agreement.index), "zmin": -1, "zmax": 1, "zmid": 0,
                      "colorscale": diverging_scale(), "text": text, "texttemplate": "%{text}",
                      "colorbar": {"title": {"text": "Spearman"}, "thickness": 10},
                      "hovertemplate": "%{y} vs %{x}: %{z:.2f}<extra></extra>"}],
            "layout": {"title": {"text": "agreement between methods (Spearman rank correlation)",
                                 "font": {"size": 12}}, "height": 280,
                       "margin": {"l": 75, "r": 10, "t": 30, "b": 40}}}
