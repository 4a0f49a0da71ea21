"""Region editing in the dashboard, the pure part: drawn shapes to edits, region outlines, the edit figure.

Everything here is a plain function of its arguments (no Dash, no disk): the Dash wiring is
:mod:`semcontrib.dashboard.edit_ui`, the storage :mod:`semcontrib.edits`.

Coordinates are pixels of the original (upright) image, x to the right and y down, as the edits file
stores them; the figure's axes use the same units (y reversed), so Plotly's drawn shapes arrive in
them. Everything a browser sends is checked against the caps below before it is used.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semcontrib.edits import MAX_EDITS_PER_IMAGE, MAX_POLYGON_POINTS, RegionEdit, check_label, make_edit

MAX_REQUEST_SHAPES = 20  # shapes saved in one request
MAX_REQUEST_BYTES = 256 * 1024  # the JSON size of one save request's shapes
MAX_PATH_CHARS = 64 * 1024  # one drawn path's SVG text
MAX_OUTLINE_POINTS = 20_000  # all region outlines of one image together
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATH_TOKEN = re.compile(rf"([MLZ])|({_NUMBER})\s*,\s*({_NUMBER})", re.IGNORECASE)


@dataclass(frozen=True)
class DrawnShape:
    """One shape drawn on the figure: ``"rect"`` or ``"polygon"``, corners as (x, y) pixels."""

    kind: str
    polygon: tuple[tuple[float, float], ...]


def _coord(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{what} must be a number, got {type(v).__name__}")
    try:
        x = float(v)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {str(v)[:40]!r}") from None
    if not np.isfinite(x):
        raise ValueError(f"{what} must be finite")
    return x


def parse_path(path: Any) -> tuple[tuple[float, float], ...]:
    """The corners of a closed SVG path as Plotly's ``drawclosedpath`` writes it (``M x,y L x,y ... Z``).

    >>> parse_path("M1,2L3.5,2L3,4Z")
    ((1.0, 2.0), (3.5, 2.0), (3.0, 4.0))
    """
    if not isinstance(path, str) or len(path) > MAX_PATH_CHARS:
        raise ValueError(f"a drawn path must be text of at most {MAX_PATH_CHARS} characters")
    points: list[tuple[float, float]] = []
    pos = 0
    text = path.strip()
    for m in _PATH_TOKEN.finditer(text):
        if text[pos:m.start()].strip():
            raise ValueError(f"a drawn path may hold only M, L, Z and x,y pairs, got {text[pos:m.start()][:40]!r}")
        pos = m.end()
        if m.group(2) is not None:
            points.append((_coord(m.group(2), "x"), _coord(m.group(3), "y")))
            if len(points) > MAX_POLYGON_POINTS:
                raise ValueError(f"a polygon may have at most {MAX_POLYGON_POINTS} points")
    if text[pos:].strip():
        raise ValueError(f"a drawn path may hold only M, L, Z and x,y pairs, got {text[pos:][:40]!r}")
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    return tuple(points)


def parse_shape(shape: Any) -> DrawnShape:
    """A Plotly layout shape (``type`` ``rect`` with ``x0, y0, x1, y1``, or ``path``) as a :class:`DrawnShape`."""
    if not isinstance(shape, Mapping):
        raise ValueError("a drawn shape must be an object")
    kind = shape.get("type")
    if kind == "rect":
        x0, x1 = sorted((_coord(shape.get("x0"), "x0"), _coord(shape.get("x1"), "x1")))
        y0, y1 = sorted((_coord(shape.get("y0"), "y0"), _coord(shape.get("y1"), "y1")))
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            raise ValueError("a rectangle must have a positive width and height")
        return DrawnShape("rect", ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
    if kind == "path":
        return DrawnShape("polygon", parse_path(shape.get("path")))
    raise ValueError(f"only rectangles and closed paths can be saved, got {str(kind)[:20]!r}")


def drawn_shapes(shapes: Any) -> list[Any]:
    """The drawn shapes of a save request, checked: a list of at most :data:`MAX_REQUEST_SHAPES`, at most
    :data:`MAX_REQUEST_BYTES` as JSON (``ValueError`` beyond)."""
    shapes = shapes or []
    if not isinstance(shapes, list):
        raise ValueError("shapes must be a list")
    if len(shapes) > MAX_REQUEST_SHAPES:
        raise ValueError(f"save at most {MAX_REQUEST_SHAPES} shapes at once, got {len(shapes)}")
    try:
        size = len(json.dumps(shapes))
    except (TypeError, ValueError, RecursionError):
        raise ValueError("shapes must be JSON") from None
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"the drawn shapes exceed {MAX_REQUEST_BYTES} bytes")
    return shapes


@dataclass(frozen=True)
class ImageInfo:
    """What an edit needs to know of its image: id, file name and original size."""

    image_id: str
    file_name: str
    width: int
    height: int


def edits_from_request(image: ImageInfo, shapes: Sequence[Any], label: Any, inside: Any,
                       existing: int = 0) -> list[RegionEdit]:
    """The edits a save request makes: one per drawn shape, clipped to the image, with ``label`` and
    the optional ``inside`` restriction. ``existing`` is how many edits the image already has (the cap
    is :data:`semcontrib.edits.MAX_EDITS_PER_IMAGE`). ``ValueError`` naming what is wrong."""
    if not shapes:
        raise ValueError("draw a rectangle or a polygon on the image first")
    label = check_label(label)
    inside = None if inside in (None, "") else check_label(inside, "inside")
    if existing + len(shapes) > MAX_EDITS_PER_IMAGE:
        raise ValueError(f"an image can have at most {MAX_EDITS_PER_IMAGE} edits")
    out = []
    for s in shapes:
        d = parse_shape(s)
        pts = [(min(max(x, 0.0), image.width), min(max(y, 0.0), image.height)) for x, y in d.polygon]
        out.append(make_edit(image_id=image.image_id, file_name=image.file_name, width=image.width,
                             height=image.height, label=label, polygon=pts, inside=inside, shape=d.kind))
    return out


# --------------------------------------------------------------------------- outlines and the figure


@dataclass(frozen=True)
class Outline:
    """The outline of one region: its name, closed polylines (x, y arrays in image pixels) and where
    its name goes (the centroid of its pixels)."""

    name: str
    lines: tuple[np.ndarray, ...]
    anchor: tuple[float, float]


def region_outlines(labels: np.ndarray, names: Sequence[str], size: tuple[int, int],
                    max_points: int = MAX_OUTLINE_POINTS) -> list[Outline]:
    """Outlines of the regions of a label map (int HxW at any resolution, -1 unassigned), scaled to the
    image ``size`` = (H, W); polylines simplified (0.5 map pixel) and thinned to ``max_points`` in all."""
    from skimage.measure import approximate_polygon, find_contours

    lab = np.asarray(labels)
    h, w = lab.shape
    H, W = size
    sx, sy = W / w, H / h
    out = []
    present = [int(k) for k in np.unique(lab) if k >= 0]
    budget = max(max_points // max(len(present), 1), 8)
    for k in present:
        mask = np.pad(lab == k, 1)
        lines = [approximate_polygon(c, 0.5) for c in find_contours(mask.astype(np.float32), 0.5)]
        lines = [c for c in lines if len(c) >= 3]
        total = sum(len(c) for c in lines)
        step = max(1, int(np.ceil(total / budget)))
        scaled = tuple(np.stack([(c[::step, 1] - 0.5) * sx, (c[::step, 0] - 0.5) * sy]) for c in lines)
        rows, cols = np.nonzero(lab == k)
        out.append(Outline(names[k], scaled, (float((cols.mean() + 0.5) * sx), float((rows.mean() + 0.5) * sy))))
    return out


def as_text(label: str) -> str:
    """A name as Plotly shows it literally (its ``<``, ``>`` and ``&`` would otherwise be markup).

    >>> as_text("<b>eyes</b> & ears")
    '&lt;b&gt;eyes&lt;/b&gt; &amp; ears'
    """
    return html.escape(label, quote=False)


def edit_figure(photo_url: str, size: tuple[int, int], outlines: Sequence[Outline],
                edits: Sequence[RegionEdit], dragmode: str = "drawrect") -> dict[str, Any]:
    """The figure of the edit panel (a Plotly figure dict): the photo, the regions' outlines (solid, with
    their names), the image's saved edits (dashed, with their labels), axes in image pixels, and the
    draw tools. Drawn shapes are layout shapes; saved edits are traces, so that they are not among them."""
    H, W = size
    traces: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for o in outlines:
        xs: list[float | None] = []
        ys: list[float | None] = []
        for line in o.lines:
            xs += [*line[0].tolist(), float(line[0][0]), None]
            ys += [*line[1].tolist(), float(line[1][0]), None]
        traces.append({"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": as_text(o.name),
                       "line": {"width": 1.5, "color": "rgba(255,255,255,0.9)"}, "hoverinfo": "name",
                       "showlegend": False})
        annotations.append({"x": o.anchor[0], "y": o.anchor[1], "text": as_text(o.name), "showarrow": False,
                            "font": {"color": "white", "size": 12}, "bgcolor": "rgba(0,0,0,0.45)"})
    for n, e in enumerate(edits, start=1):
        xs2 = [p[0] for p in e.polygon] + [e.polygon[0][0]]
        ys2 = [p[1] for p in e.polygon] + [e.polygon[0][1]]
        what = e.label if e.inside is None else f"{e.label} (inside {e.inside})"
        traces.append({"type": "scatter", "mode": "lines", "x": xs2, "y": ys2, "name": f"edit {n}: {as_text(what)}",
                       "line": {"width": 2, "dash": "dash", "color": "#ffd400"}, "hoverinfo": "name",
                       "showlegend": False})
        annotations.append({"x": min(xs2), "y": min(ys2), "text": f"{n}: {as_text(what)}", "showarrow": False,
                            "xanchor": "left", "yanchor": "bottom", "font": {"color": "black", "size": 11},
                            "bgcolor": "rgba(255,212,0,0.85)"})
    return {"data": traces, "layout": {
        "images": [{"source": photo_url, "xref": "x", "yref": "y", "x": 0, "y": 0, "sizex": W, "sizey": H,
                    "sizing": "stretch", "layer": "below", "xanchor": "left", "yanchor": "top"}],
        "xaxis": {"range": [0, W], "showgrid": False, "zeroline": False, "constrain": "domain"},
        "yaxis": {"range": [H, 0], "showgrid": False, "zeroline": False, "scaleanchor": "x"},
        "annotations": annotations, "dragmode": dragmode, "shapes": [], "uirevision": photo_url,
        "newshape": {"line": {"color": "#00e5ff", "width": 2}, "fillcolor": "rgba(0,229,255,0.15)"},
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "height": 520}}
