"""Unit tests of the pure view functions (no browser, no Dash)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from semcontrib.contributions import weighted_cosine_matrix
from semcontrib.dashboard import figures, views


def _matrix(values: list[list[float]], columns: tuple[str, ...] = ("sky", "water", "built")) -> views.ScoreMatrix:
    v = np.asarray(values, dtype=np.float64)
    return views.ScoreMatrix(np.array([f"i{k}" for k in range(len(v))], dtype=object), columns,
                             np.arange(len(columns)), v, ~np.isnan(v).any(axis=1))


M = _matrix([[0.5, -0.3, 0.2], [0.1, 0.1, -0.8], [-0.6, 0.2, 0.2], [np.nan, np.nan, np.nan]])


def test_score_matrix_aligns_wide_table_and_marks_missing_rows() -> None:
    wide = pd.DataFrame({"image_id": ["b", "a"], "sky": [0.1, 0.2], "water": [0.3, 0.4]})
    m = views.score_matrix(wide, ["a", "b", "c"], ["sky", "water"])
    assert m.values[:2].tolist() == [[0.2, 0.4], [0.1, 0.3]]
    assert m.valid.tolist() == [True, True, False]
    split = pd.DataFrame({"image_id": ["a"], "sky+": [1.0], "water+": [0.0], "sky-": [0.0], "water-": [-1.0]})
    s = views.score_matrix(split, ["a"], ["sky", "water"])
    assert s.columns == ("sky+", "water+", "sky-", "water-") and s.column_region.tolist() == [0, 1, 0, 1]


def test_filter_mask_percent_ranges_and_invalid_rows() -> None:
    assert views.filter_mask(M, {}).tolist() == [True, True, True, False]
    assert views.filter_mask(M, {"sky": [0, 100]}).tolist() == [True, True, False, False]
    assert views.filter_mask(M, {"sky": [0, 100], "built": [-100, 0]}).tolist() == [False, True, False, False]
    assert views.filter_mask(M, {"sky": [50, 50]}).tolist() == [True, False, False, False]  # inclusive bounds
    with pytest.raises(ValueError, match="unknown score column"):
        views.filter_mask(M, {"person": [0, 1]})
    with pytest.raises(ValueError, match="low, high"):
        views.filter_mask(M, {"sky": [0]})


def test_slider_bounds_cover_the_data_and_full_range_sliders_do_not_filter() -> None:
    b = views.slider_bounds(M.values)
    assert b[:, 0].tolist() == [-60.0, -30.0, -80.0] and b[:, 1].tolist() == [50.0, 20.0, 20.0]
    ids = [{"column": c} for c in M.columns]
    full = {c: list(x) for c, x in zip(M.columns, b.tolist())}
    assert views.ranges_from_sliders(ids, b.tolist(), full) == {}
    assert views.ranges_from_sliders(ids, [[0, 50], *b[1:].tolist()], full) == {"sky": [0.0, 50.0]}


def test_rank_orders_by_a_column_and_keeps_ties_in_corpus_order() -> None:
    members = np.array([True, True, True, True])
    assert views.rank(M, members, "sky").tolist() == [0, 1, 2, 3]  # NaN last
    assert views.rank(M, members, "sky", descending=False).tolist() == [2, 1, 0, 3]
    assert views.rank(M, members, "water").tolist() == [2, 1, 0, 3]
    assert views.rank(M, np.array([True, False, True, False]), "built").tolist() == [0, 2]  # tie: corpus order
    assert views.rank(M, members, None).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        views.rank(M, members, "nope")


def test_page_is_never_capped() -> None:
    idx = np.arange(19)
    assert [len(views.page(idx, p, 8)[0]) for p in range(3)] == [8, 8, 3]
    on, p, n = views.page(idx, 99, 8)
    assert (p, n, on.tolist()) == (2, 3, [16, 17, 18])
    assert views.page(np.arange(0), 0, 8)[2] == 1


def test_embedding_input_is_weighted_cosine() -> None:
    rng = np.random.default_rng(0)
    m = _matrix(rng.normal(size=(12, 3)).tolist())
    w = views.column_weights(m, ["sky", "water", "built"], {"water": 3.0, "built": 0.0})
    assert w.tolist() == [1.0, 3.0, 0.0]
    U = views.embedding_input(m, w)
    np.testing.assert_allclose(U @ U.T, weighted_cosine_matrix(m.values, w), atol=1e-12)
    # squared distances are 2 - 2 cos_w
    d2 = ((U[:, None] - U[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d2, 2 - 2 * weighted_cosine_matrix(m.values, w), atol=1e-12)
    with pytest.raises(ValueError, match="finite number >= 0"):
        views.column_weights(m, ["sky", "water", "built"], {"sky": -1})
    with pytest.raises(ValueError, match="unknown region"):
        views.column_weights(m, ["sky", "water", "built"], {"cat": 1})


def test_split_columns_share_their_region_weight() -> None:
    m = views.ScoreMatrix(np.array(["a"], dtype=object), ("sky+", "water+", "sky-", "water-"),
                          np.array([0, 1, 0, 1]), np.zeros((1, 4)), np.array([True]))
    assert views.column_weights(m, ["sky", "water"], {"sky": 2}).tolist() == [2, 1, 2, 1]


def test_group_statistics() -> None:
    w = np.array([1.0, 2.0, 1.0])
    preds = np.array(["cat", "dog", "cat", "cat"], dtype=object)
    all_ = np.array([True, True, True, True])
    first = np.array([True, False, False, False])
    st = views.group_statistics(M, w, preds, [("all", all_), ("first", first)])
    np.testing.assert_allclose(st.mean_contribution["all"], [0.0, 0.0, -0.4 / 3], atol=1e-12)  # NaN row left out
    np.testing.assert_allclose(st.mean_contribution["first"], [0.5, -0.6, 0.2])
    assert st.sizes == {"all": 3, "first": 1}
    top = st.top_classes[st.top_classes.group == "all"].set_index("class")["share"]
    assert top.to_dict() == pytest.approx({"cat": 2 / 3, "dog": 1 / 3})
    # weighted arg-max: image 0 sky (0.5), image 1 water (0.2 after weight), image 2 water (0.4)
    reg = st.top_region[st.top_region.group == "all"].set_index("region")["share"]
    assert reg.to_dict() == pytest.approx({"water": 2 / 3, "sky": 1 / 3})


def test_selections_add_edit_delete() -> None:
    sels = views.add_selection([], "  cats ", np.array([True, True, False]))
    sels = views.add_selection(sels, "", np.array([False, False, True]))
    assert [(s["id"], s["name"], s["colour"], s["n"]) for s in sels] == [
        ("s1", "cats", views.PALETTE[0], 2), ("s2", "selection 2", views.PALETTE[1], 1)]
    assert views.decode_members(sels[0]["members"], 3).tolist() == [True, True, False]
    renamed = views.edit_selection(sels, "s2", name="<b>dogs</b>")
    assert renamed[1]["name"] == "<b>dogs</b>" and sels[1]["name"] == "selection 2"  # new list, text kept as is
    assert views.edit_selection(sels, "s1", colour=views.PALETTE[5])[0]["colour"] == views.PALETTE[5]
    assert [s["id"] for s in views.edit_selection(sels, "s1", delete=True)] == ["s2"]
    assert views.add_selection(views.edit_selection(sels, "s1", delete=True), "x", np.zeros(3, bool))[-1]["id"] == "s3"
    with pytest.raises(ValueError):
        views.edit_selection(sels, "s9", delete=True)
    with pytest.raises(ValueError, match="colour"):
        views.edit_selection(sels, "s1", colour="javascript:alert(1)")


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000, 100_003])
def test_members_round_trip_and_reject_foreign_masks(n: int) -> None:
    mask = np.random.default_rng(n).random(n) < 0.3
    enc = views.encode_members(mask)
    assert len(enc) <= 4 * (n // 24 + 1) + 4  # a bit per image, base64
    assert views.decode_members(enc, n).tolist() == mask.tolist()
    for bad in (None, 12, enc + "AAAA", enc[:-4] if n > 24 else "", "!" * len(enc)):
        with pytest.raises(ValueError):
            views.decode_members(bad, n)
    assert views.selection_masks([{"id": "s1", "members": "junk"}, "x", {"id": "s2", "members": enc}], n)[0][0][
        "id"] == "s2"


def test_lasso_mask_polygon_box_and_indices_keep_only_visible_points() -> None:
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.5, 0.1]])
    visible = np.array([True, True, True, False])
    square = {"lasso": {"x": [-0.5, 1.5, 1.5, -0.5], "y": [-0.5, -0.5, 1.5, 1.5]}}
    assert views.lasso_mask(square, xy, visible).tolist() == [True, True, False, False]
    box = {"range": {"x": [1.5, 2.5], "y": [1.5, 2.5]}}
    assert views.lasso_mask(box, xy, visible).tolist() == [False, False, True, False]
    rows = {"indices": [0, 2, 3, 9, -1, "x", True]}
    assert views.lasso_mask(rows, None, visible).tolist() == [True, False, True, False]
    for junk in (None, [], {"lasso": {"x": [0, 1], "y": [0, 1]}}, {"lasso": {"x": ["a"] * 3, "y": [1, 2, 3]}},
                 {"range": {"x": [0, float("nan")], "y": [0, 1]}}, {"lasso": "x"}):
        assert not views.lasso_mask(junk, xy, visible).any()  # type: ignore[arg-type]
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    assert views.lasso_ids(rows, ids, visible) == ["a", "c"]


def test_point_codes_colour_selections_dim_or_hide_and_bin_faithfulness() -> None:
    visible = np.array([True, True, False, True])
    sel = [(views.PALETTE[2], np.array([False, True, True, False])),
           (views.PALETTE[0], np.array([False, False, False, True]))]
    codes = views.point_codes(visible, sel)
    assert codes.tolist() == [views.CODE_BASE, 3, views.CODE_FILTERED, 1]
    assert views.point_codes(visible, sel, hide_filtered=True)[2] == views.CODE_HIDDEN
    faith = np.array([-1.0, 0.999, np.nan, 0.0])
    codes = views.point_codes(visible, sel, faith)
    assert codes[0] == views.CODE_FAITH and codes[1] == views.CODE_FAITH + views.FAITH_BINS - 1
    assert codes[2] == views.CODE_FILTERED and codes[3] == views.CODE_FAITH + views.FAITH_BINS // 2
    assert views.point_codes(np.ones(1, bool), [], np.array([np.nan]))[0] == views.CODE_NO_VALIDITY
    assert len(figures.CODE_COLOURS) == views.N_CODES


def test_method_agreement_is_spearman() -> None:
    a = views.method_agreement({"lrp": np.array([1.0, 2, 3, 4]), "ig": np.array([10.0, 20, 30, 40]),
                                "gradcam": np.array([4.0, 3, 2, 1]), "flat": np.zeros(4)})
    assert a.loc["lrp", "ig"] == pytest.approx(1.0) and a.loc["lrp", "gradcam"] == pytest.approx(-1.0)
    assert np.isnan(a.loc["lrp", "flat"])


def test_scatter_figure_sends_typed_arrays_and_density_image() -> None:
    import base64

    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    symbols, legend = figures.class_symbols(np.array(["a", "b", "a"], dtype=object))
    codes = views.point_codes(np.array([True, False, True]), [])
    fig = figures.scatter_figure(xy, symbols, legend, codes, np.zeros(3, bool), "k")
    t = fig["data"][0]
    assert t["type"] == "scattergl" and t["customdata"]["dtype"] == "i4"
    assert np.frombuffer(base64.b64decode(t["x"]["bdata"]), "<f4").tolist() == [0.0, 1.0, 2.0]
    assert np.frombuffer(base64.b64decode(t["marker"]["color"]["bdata"]), np.uint8).tolist() == codes.tolist()
    assert t["marker"]["symbol"] == [0, 1, 0] and {d["name"] for d in fig["data"][2:]} == {"a", "b"}
    assert fig["layout"]["uirevision"] == "k"  # positions and zoom stay when filters change
    rng = np.random.default_rng(0)
    many = rng.normal(size=(5000, 2))
    img = figures.density_image(many, np.zeros(5000, np.uint8), size=64)
    from PIL import Image

    png = Image.open(__import__("io").BytesIO(base64.b64decode(img["source"].split(",", 1)[1])))
    alpha = np.asarray(png)[..., 3]
    assert png.size == (64, 64) and alpha[32, 32] > alpha[2, 2]  # denser in the middle
    assert img["x"] < many[:, 0].min() and img["x"] + img["sizex"] > many[:, 0].max()
    with pytest.raises(ValueError, match="dtype"):
        figures.typed(np.zeros(2, np.int64))


def test_density_image_reuses_bins_of_read_only_embeddings_only() -> None:
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(3000, 2))
    codes = np.where(rng.random(3000) < 0.5, views.CODE_BASE, views.CODE_FILTERED).astype(np.uint8)
    fresh = figures.density_image(xy, codes, size=32)
    frozen = xy.copy()
    frozen.setflags(write=False)
    assert figures.density_image(frozen, codes, size=32) == fresh  # first call: computed and kept
    assert figures.density_image(frozen, codes, size=32) == fresh  # second: from the kept bins, same image
    assert figures.density_box(frozen) == figures.density_box(xy)
    assert figures.density_image(xy, codes, size=32) == fresh
    xy[: len(xy) // 2, 0] += 10  # a writable array may change in place: never served from the cache
    moved = figures.density_image(xy, codes, size=32)
    assert moved["sizex"] > fresh["sizex"] + 9 and moved["source"] != fresh["source"]


def test_many_classes_share_symbols() -> None:
    preds = np.array([f"c{i % 30}" for i in range(300)], dtype=object)
    symbols, legend = figures.class_symbols(preds)
    assert len(legend) == len(figures.SYMBOLS) and "other classes" in legend
    assert symbols.max() == len(figures.SYMBOLS) - 1


def test_diverging_codes_are_zero_centred_and_categories_rank_by_frequency() -> None:
    codes = views.diverging_codes(np.array([-3.0, -1.0, 0.0, 0.04, 1.0, 9.0, np.nan]), 1.0) - views.CODE_DIV
    assert codes.tolist()[:6] == [0, 0, 10, 10, 20, 20]  # saturating beyond the limit; 0 in the middle bin
    assert views.diverging_codes(np.array([np.nan]), 1.0)[0] == views.CODE_NO_VALUE
    with pytest.raises(ValueError, match="limit must be a positive number"):
        views.diverging_codes(np.zeros(2), 0.0)
    assert views.symmetric_limit(np.array([-0.3, 0.1])) == 0.3 and views.symmetric_limit(np.array([np.nan])) == 1.0
    big = np.r_[np.full(300, 0.1), 50.0]  # one extreme does not set the scale from 200 values on
    assert views.symmetric_limit(big) == pytest.approx(0.1)
    cats, names = views.categories(np.array(["x", "y", "y", "z", "w", "w", "w"], dtype=object), 3)
    assert names == ("w", "y", "other") and cats.tolist() == [2, 1, 1, 2, 0, 0, 0]
    vis = np.ones(3, bool)
    assert views.point_codes(vis, [], categories=np.array([0, 1, -1])).tolist() == [1, 2, views.CODE_BASE]
    assert views.selection_codes(3, [(views.PALETTE[1], np.array([True, False, True]))]).tolist() == [2, 0, 2]
    assert [views.marker_size(n) for n in (12, 100_000, 10 ** 7)] == [12, 4, 3]


def test_colour_bar_is_zero_centred_and_positive_is_red_everywhere() -> None:
    bar = figures.colour_bar_trace(figures.Colouring("sky (% of the vector)", 12.5))
    assert bar["marker"]["cmin"] == -12.5 and bar["marker"]["cmax"] == 12.5
    assert bar["marker"]["colorscale"][-1][1] == views.DIVERGING[-1] and figures.POS in views.DIVERGING[6:]
    heat = figures.agreement_heatmap(pd.DataFrame([[1.0, -1.0], [-1.0, 1.0]], index=["a", "b"], columns=["a", "b"]))
    assert heat["data"][0]["colorscale"][-1][1] == views.DIVERGING[-1] and heat["data"][0]["zmid"] == 0
    assert not set(views.PALETTE) & {figures.POS, figures.NEG}  # selections never look like a sign
    bars = figures.contribution_bars(["sky", "water"], np.array([0.25, -0.5]))
    assert bars["data"][0]["y"] == [25.0, -50.0] and bars["data"][0]["marker"]["color"] == [figures.POS, figures.NEG]
