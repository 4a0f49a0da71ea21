"""Region editing, the pure part: drawn shapes parsed and capped, edits from a request, outlines, the figure."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.dashboard import editing
from semcontrib.dashboard.editing import (
    ImageInfo,
    as_text,
    drawn_shapes,
    edit_figure,
    edits_from_request,
    parse_shape,
    region_outlines,
)
from semcontrib.edits import make_edit

IMAGE = ImageInfo("cat-0123456789", "cat.jpg", 40, 30)


def test_rectangles_and_paths_become_polygons():
    assert parse_shape({"type": "rect", "x0": 9, "y0": 2.5, "x1": 1, "y1": 7}) == editing.DrawnShape(
        "rect", ((1.0, 2.5), (9.0, 2.5), (9.0, 7.0), (1.0, 7.0)))  # corners ordered, whatever the drag direction
    assert parse_shape({"type": "path", "path": "M 1,2 L3.5,2 L 3e0 , 4 Z"}).polygon == ((1, 2), (3.5, 2), (3, 4))


@pytest.mark.parametrize(("shape", "match"), [
    ({"type": "circle", "x0": 0, "y0": 0, "x1": 1, "y1": 1}, "only rectangles and closed paths"),
    ({"type": "rect", "x0": 1, "y0": 0, "x1": 1, "y1": 5}, "positive width and height"),
    ({"type": "rect", "x0": "nan", "y0": 0, "x1": 1, "y1": 5}, "finite"),
    ({"type": "rect", "x0": [1], "y0": 0, "x1": 1, "y1": 5}, "x0 must be a number"),
    ({"type": "path", "path": "M1,2L3,4Z"}, "at least 3 points, got 2"),
    ({"type": "path", "path": "M1,2L3,4C5,6,7,8Z"}, "only M, L, Z and x,y pairs"),
    ({"type": "path", "path": "M1,2L3,4L5,6<script>"}, "only M, L, Z and x,y pairs"),
    ({"type": "path", "path": "M0,0" + "L1,1" * 1000}, "at most 1000 points"),
    ({"type": "path", "path": "M0,0" + " " * 70_000}, "at most 65536 characters"),
    ("rect", "must be an object"),
])
def test_bad_shapes_are_refused(shape, match):
    with pytest.raises(ValueError, match=match):
        parse_shape(shape)


def test_request_caps_shapes_and_bytes():
    rect = {"type": "rect", "x0": 0, "y0": 0, "x1": 1, "y1": 1}
    assert drawn_shapes(None) == []
    assert drawn_shapes([rect]) == [rect]
    with pytest.raises(ValueError, match="at most 20 shapes at once, got 21"):
        drawn_shapes([rect] * 21)
    with pytest.raises(ValueError, match="exceed 262144 bytes"):
        drawn_shapes([{"type": "path", "path": "M0,0" + "L1,1" * 70_000}])
    with pytest.raises(ValueError, match="shapes must be a list"):
        drawn_shapes({"0": rect})


def test_edits_from_a_request_are_clipped_to_the_image_and_labelled():
    shapes = [{"type": "rect", "x0": -5, "y0": 2, "x1": 60, "y1": 10},
              {"type": "path", "path": "M1,1L5,1L5,5Z"}]
    got = edits_from_request(IMAGE, shapes, " eyes ", "animal")
    assert [e.label for e in got] == ["eyes", "eyes"] and got[0].inside == "animal"
    assert got[0].polygon == ((0, 2), (40, 2), (40, 10), (0, 10)) and got[0].shape == "rect"
    assert got[1].shape == "polygon" and got[0].edit_id != got[1].edit_id
    assert (got[0].width, got[0].height, got[0].file_name) == (40, 30, "cat.jpg")
    assert edits_from_request(IMAGE, shapes[:1], "eyes", "")[0].inside is None
    with pytest.raises(ValueError, match="draw a rectangle or a polygon"):
        edits_from_request(IMAGE, [], "eyes", None)
    with pytest.raises(ValueError, match="label must be 1 to 64 printable"):
        edits_from_request(IMAGE, shapes, "\t", None)
    with pytest.raises(ValueError, match="at most 200 edits"):
        edits_from_request(IMAGE, shapes, "eyes", None, existing=199)


def test_outlines_trace_each_region_and_anchor_its_name():
    lab = np.full((4, 4), -1, np.int32)
    lab[1:3, 1:3] = 0  # a 2x2 square in a 4x4 map
    lab[0, 3] = 1
    (square, corner) = region_outlines(lab, ["cat", "sky"], (40, 80))  # image 80 wide, 40 high: x*20, y*10
    assert square.name == "cat" and corner.name == "sky"
    xs, ys = square.lines[0]
    # the contour runs half a map pixel outside the pixel centres 1..2: map 0.5..2.5 -> image x 20..60, y 10..30
    assert xs.min() == pytest.approx(20) and xs.max() == pytest.approx(60)
    assert ys.min() == pytest.approx(10) and ys.max() == pytest.approx(30)
    assert square.anchor == pytest.approx((40.0, 20.0))
    assert corner.anchor == pytest.approx((70.0, 5.0))
    big = np.arange(64 * 64).reshape(64, 64) % 2  # a checkerboard: many tiny contours, thinned to the budget
    out = region_outlines(big.astype(np.int32), ["a", "b"], (64, 64), max_points=200)
    assert sum(line.shape[1] for o in out for line in o.lines) <= 2 * 200


def test_figure_shows_names_as_text_and_saved_edits_apart_from_drawn_shapes():
    lab = np.zeros((2, 2), np.int32)
    outlines = region_outlines(lab, ["<img src=x onerror=alert(1)>"], (30, 40))
    e = make_edit(image_id=IMAGE.image_id, file_name="cat.jpg", width=40, height=30, label="<b>eyes</b>",
                  polygon=[[0, 0], [4, 0], [4, 4]], inside="a&b")
    fig = edit_figure("/corpus/photo/cat-0123456789", (30, 40), outlines, [e])
    texts = [a["text"] for a in fig["layout"]["annotations"]]
    assert texts == ["&lt;img src=x onerror=alert(1)&gt;", "1: &lt;b&gt;eyes&lt;/b&gt; (inside a&amp;b)"]
    assert all("<" not in t["name"] for t in fig["data"])
    assert fig["layout"]["shapes"] == [] and fig["layout"]["dragmode"] == "drawrect"
    assert fig["layout"]["yaxis"]["range"] == [30, 0] and fig["layout"]["images"][0]["sizex"] == 40
    assert as_text("a<b") == "a&lt;b"
