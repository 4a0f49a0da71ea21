"""Unit tests of the pure view functions (no browser, no Dash)."""

from __future__ import annotations

import json

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


def _knn_preservation(X: np.ndarray, Y: np.ndarray, k: int = 5) -> float:
    from sklearn.neighbors import NearestNeighbors

    a = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)[1][:, 1:]
    b = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y)[1][:, 1:]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def test_embed_keeps_clusters_apart_and_subsample_placement_works() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(4)
    labels = np.repeat(np.arange(4), 30)
    X = views.embedding_input(_matrix((centres[labels] + rng.normal(0, 0.1, (120, 4))).tolist(),
                                      ("a", "b", "c", "d")), np.ones(4))
    from sklearn.neighbors import KNeighborsClassifier

    for max_fit in (1000, 40):  # exact, then subsample + nearest-neighbour placement
        Y = views.embed(X, "tsne", max_fit=max_fit)
        assert Y.shape == (120, 2) and np.abs(Y).max() == pytest.approx(1.0)
        acc = KNeighborsClassifier(5).fit(Y, labels).score(Y, labels)
        assert acc > 0.95, (max_fit, acc)
    assert _knn_preservation(X, views.embed(X, "tsne")) > 0.3
    with pytest.raises(ValueError, match="algorithm"):
        views.embed(X, "pca")
    assert views.embed(X[:2]).shape == (2, 2)


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
    sels = views.add_selection([], "  cats ", ["a", "b"])
    sels = views.add_selection(sels, "", ["c"])
    assert [(s["id"], s["name"], s["colour"]) for s in sels] == [("s1", "cats", views.PALETTE[0]),
                                                                  ("s2", "selection 2", views.PALETTE[1])]
    renamed = views.edit_selection(sels, "s2", name="<b>dogs</b>")
    assert renamed[1]["name"] == "<b>dogs</b>" and sels[1]["name"] == "selection 2"  # new list, text kept as is
    assert views.edit_selection(sels, "s1", colour=views.PALETTE[5])[0]["colour"] == views.PALETTE[5]
    assert [s["id"] for s in views.edit_selection(sels, "s1", delete=True)] == ["s2"]
    assert views.add_selection(views.edit_selection(sels, "s1", delete=True), "x", [])[-1]["id"] == "s3"
    with pytest.raises(ValueError):
        views.edit_selection(sels, "s9", delete=True)
    with pytest.raises(ValueError, match="colour"):
        views.edit_selection(sels, "s1", colour="javascript:alert(1)")


def test_lasso_ids_keep_only_visible_points() -> None:
    ids = np.array(["a", "b", "c"], dtype=object)
    sel = {"points": [{"customdata": 0}, {"customdata": 2}, {"customdata": 7}, {"customdata": "x"}]}
    assert views.lasso_ids(sel, ids, np.array([True, True, False])) == ["a"]
    assert views.lasso_ids(None, ids, np.ones(3, bool)) == []


def test_clusters_and_outliers() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 40)
    X = np.eye(3)[labels] + rng.normal(0, 0.05, (120, 3))
    X = np.vstack([X, [[5.0, 5.0, -5.0]]])
    km = views.suggest_clusters(X[:120], "kmeans", 3)
    assert pd.crosstab(km, labels).max(axis=0).sum() == 120  # every true group is one cluster
    hd = views.suggest_clusters(X[:120], "hdbscan")
    assert len(set(hd.tolist()) - {-1}) == 3
    out = views.flag_outliers(X)
    assert out[-1] and out.sum() <= 3
    with pytest.raises(ValueError):
        views.suggest_clusters(X, "dbscan")


def test_method_agreement_is_spearman() -> None:
    a = views.method_agreement({"lrp": np.array([1.0, 2, 3, 4]), "ig": np.array([10.0, 20, 30, 40]),
                                "gradcam": np.array([4.0, 3, 2, 1]), "flat": np.zeros(4)})
    assert a.loc["lrp", "ig"] == pytest.approx(1.0) and a.loc["lrp", "gradcam"] == pytest.approx(-1.0)
    assert np.isnan(a.loc["lrp", "flat"])


def test_state_round_trip_and_validation() -> None:
    heads = {"nature": ["nature", "non-nature"]}
    st = views.DashboardState("nature", "lrp", "split", "umap", ("nature",), {"sky+": [0.0, 50.0]}, {"sky": 2.0},
                              ({"id": "s1", "name": "x", "colour": views.PALETTE[0], "image_ids": ["a"]},))
    back = views.parse_state(st.to_json(), heads, ["lrp"], ("signed_l1", "split"), ["sky"])
    assert back == st
    bad = json.loads(st.to_json())
    for key, value, msg in [("head", "cats", "unknown head"), ("weights", {"sky": -1}, "bad weight"),
                            ("filters", {"sky": "all"}, "low, high"), ("version", 9, "version")]:
        with pytest.raises(ValueError, match=msg):
            views.parse_state(json.dumps({**bad, key: value}), heads, ["lrp"], ("signed_l1", "split"), ["sky"])
    with pytest.raises(ValueError, match="not JSON"):
        views.parse_state("{", heads, ["lrp"], ("split",), ["sky"])


def test_scatter_figure_dims_or_hides_filtered_points() -> None:
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5]])
    preds = np.array(["a", "b", "a"], dtype=object)
    visible = np.array([True, False, True])
    colours = figures.point_colours(3, [("#ff7f0e", np.array([False, False, True]))])
    dim = figures.scatter_figure(xy, preds, visible, colours, np.zeros(3, bool), False, "k")
    t = dim["data"][0]
    assert t["type"] == "scattergl" and t["customdata"] == [0, 1, 2]
    assert t["marker"]["color"][1] == figures.FILTERED_COLOUR and t["marker"]["color"][2].startswith("rgba(255,127")
    assert t["marker"]["symbol"] == ["circle", "square", "circle"]
    assert {d["name"] for d in dim["data"][1:]} == {"a", "b"}
    hide = figures.scatter_figure(xy, preds, visible, colours, np.zeros(3, bool), True, "k")["data"][0]
    assert hide["customdata"] == [0, 2] and hide["x"] == [0.0, 2.0]
    assert dim["layout"]["uirevision"] == "k"  # positions and zoom stay when filters change


def test_many_classes_share_symbols() -> None:
    preds = np.array([f"c{i % 30}" for i in range(300)], dtype=object)
    symbols, legend = figures.class_symbols(preds)
    assert len(legend) == len(figures.SYMBOLS) and "other classes" in legend
    assert set(symbols) <= set(figures.SYMBOLS)
