"""The app factory, the callbacks over HTTP, the image routes (safety), the query module and the CLI,
without a browser."""

from __future__ import annotations

import argparse
import base64
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semcontrib.dashboard import app as app_module
from semcontrib.dashboard import cli, embedding, figures, layout, panels, scatter_panel, state_panel, views
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.app import create_app
from semcontrib.dashboard.callback_client import CallbackClient
from semcontrib.dashboard.overlay import boundaries, overlay_rgb, place_labels
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import Filters, ScatterOptions, View, Weights
from semcontrib.dashboard.synthetic import SyntheticSpec, write_synthetic_corpus

# the outputs of the embedding lookup callback
LOOKUP = (f"{I.EMBEDDING}.data", f"{I.EMBED_JOB}.data", f"{I.OFFERED}.data", f"{I.OFFER}.style")

VIEW = View("nature", "lrp", "signed_l1", "mean")
RANGE_PROP = json.dumps({"column": ["ALL"], "type": I.RANGE}, separators=(",", ":")) + ".value"


@pytest.fixture
def corpus(synthetic_corpus: Path, tmp_path: Path) -> Path:
    """A private copy (tests here write the dashboard cache into the corpus folder)."""
    return Path(shutil.copytree(synthetic_corpus, tmp_path / "corpus"))


@pytest.fixture(scope="module")
def client(synthetic_corpus: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = Path(shutil.copytree(synthetic_corpus, tmp_path_factory.mktemp("c") / "corpus"))
    app = create_app(root, cache_dir=tmp_path_factory.mktemp("cache"))
    return app.server.test_client()


def _callbacks(root: Path) -> CallbackClient:
    c = CallbackClient(create_app(root))
    q = CorpusQuery(root)
    for cid, prop, value in [(I.HEAD, "value", "nature"), (I.METHOD, "value", "lrp"),
                             (I.NORMALISATION, "value", "signed_l1"), (I.BASIS, "value", "mean"),
                             (I.ALGORITHM, "value", "tsne"), (I.HIGHLIGHT, "value", []),
                             (I.FILTERED_MODE, "value", "dim"), (I.COLOUR_BY, "value", "selection"),
                             (I.FAITH_RANGE, "value", [-1, 1]), (I.SELECTIONS, "data", []),
                             (I.TABS, "value", "statistics"), (I.COMPARE, "value", [])]:
        c.set(cid, prop, value)
    c.set_all(I.WEIGHT, "value", [({"type": I.WEIGHT, "region": r}, 1) for r in q.vocabulary])
    c.set_all(I.RANGE, "value", [({"type": I.RANGE, "column": r}, [-100.0, 100.0]) for r in q.vocabulary])
    return c


def test_images_are_served_by_known_id_only_with_nosniff(client, synthetic_corpus: Path) -> None:  # type: ignore[no-untyped-def]
    image_id = CorpusQuery(synthetic_corpus).ids[0]
    r = client.get(f"/corpus/photo/{image_id}")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(r.data)).size == (160, 120)
    r = client.get(f"/corpus/overlay/nature/lrp/{image_id}")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.data)).size == (160, 120)
    assert client.get(f"/corpus/thumb/{image_id}").status_code == 200
    for bad in ("nope", "..", "broken0-0000000000", "%2e%2e%2fmanifest.json", "img0000000-0000000000.jpg"):
        r = client.get(f"/corpus/photo/{bad}")
        assert r.status_code == 404 or r.mimetype == "text/html", bad  # Dash's page, never a file
        assert b"semcontrib-corpus" not in r.data
    assert client.get(f"/corpus/overlay/cats/lrp/{image_id}").status_code == 404
    assert client.get(f"/corpus/overlay/nature/gradcam/{image_id}").status_code == 404
    assert client.get("/").headers["X-Content-Type-Options"] == "nosniff"


def test_a_symlink_out_of_the_store_is_not_followed(corpus: Path, tmp_path: Path) -> None:
    q = CorpusQuery(corpus)
    image_id = str(q.ids[1])
    assert q.photo_jpeg(image_id) is not None  # a regular chunk file inside the store is served
    chunk = q.corpus.chunk_of(image_id)
    assert chunk is not None
    chunk_file = q.corpus.paths.images(chunk)
    secret = tmp_path / "secret.npz"  # the same bytes, outside the store
    secret.write_bytes(chunk_file.read_bytes())
    chunk_file.unlink()
    chunk_file.symlink_to(secret)
    assert q.photo_jpeg(image_id) is None and q.thumbnail(image_id) is None
    # a symlinked folder of chunk files: the chunk file resolves outside the store
    chunk_file.unlink()
    outside = tmp_path / "outside"
    chunk_file.parent.rename(outside)
    (outside / chunk_file.name).write_bytes(secret.read_bytes())
    chunk_file.parent.symlink_to(outside, target_is_directory=True)
    assert CorpusQuery(corpus).photo_jpeg(image_id) is None
    assert (outside / chunk_file.name).exists()  # refused, not deleted


def test_request_bodies_are_capped(client) -> None:  # type: ignore[no-untyped-def]
    big = b"x" * (app_module.MAX_REQUEST_BYTES + 10)
    r = client.post("/_dash-update-component", data=big, content_type="application/json")
    assert r.status_code == 413


def test_state_upload_refusals_are_messages_not_http_500(corpus: Path) -> None:
    c = _callbacks(corpus)
    (key,) = c.triggered_by(f"{I.STATE_UPLOAD}.contents")

    def upload(obj: object) -> str:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        c.set(I.STATE_UPLOAD, "contents", "data:application/json;base64," + base64.b64encode(text.encode()).decode())
        r = c.call(key, [f"{I.STATE_UPLOAD}.contents"])
        return str(r.value(I.STATE_MESSAGE, "children"))

    good = {"version": 1, "head": "nature", "method": "lrp", "normalisation": "signed_l1"}
    assert upload({**good, "filters": []}).startswith("state not loaded: filters must be an object")
    t = time.perf_counter()
    assert "at most 50 selections" in upload({**good, "selections": [{}] * 200_000})
    assert time.perf_counter() - t < 5
    assert "reserved" in upload({**good, "selections": [{"name": "filtered", "image_ids": []}]})
    msg = upload({**good, "selections": [{"name": "mine", "image_ids": [str(CorpusQuery(corpus).ids[0]), "nope"]}]})
    assert msg.startswith("state loaded") and "1 image ids not in this corpus were dropped" in msg
    assert "not JSON" in upload("[" * 50_000)


def test_filter_update_is_a_patch_of_colours_and_the_lasso_sends_a_polygon(corpus: Path) -> None:
    c = _callbacks(corpus)
    c.call(c.find(*LOOKUP), [f"{I.HEAD}.value"])
    emb = c.values[(I.EMBEDDING, "data")]
    assert emb["key"].startswith("pca") and c.values[(I.EMBED_JOB, "data")]["head"] == "nature"
    scatter = c.find(f"{I.SCATTER}.figure", f"{I.FILTER_COUNT}.children", f"{I.SCATTER_SHOWN}.data",
                     f"{I.SCATTER_WINDOW}.data")
    full = c.call(scatter, [f"{I.EMBEDDING}.data"]).value(I.SCATTER, "figure")
    assert full["data"][0]["x"]["dtype"] == "f4"
    assert c.values[(I.SCATTER_SHOWN, "data")]["key"] == emb["key"]
    c.set_all(I.RANGE, "value", [({"type": I.RANGE, "column": "sky"}, [0.0, 10.0])])
    r = c.call(scatter, [RANGE_PROP])
    patch = r.value(I.SCATTER, "figure")
    assert patch["__dash_patch_update"] and "bdata" in json.dumps(patch["operations"])
    assert '"x"' not in json.dumps(patch) and r.request_bytes < 5000  # no positions either way
    q = CorpusQuery(corpus)
    mask = q.filter_mask(VIEW, Filters(("sky",), ((0.0, 10.0),)))
    codes = np.frombuffer(base64.b64decode(patch["operations"][0]["params"]["value"]["color"]["bdata"]), np.uint8)
    assert ((codes == views.CODE_FILTERED) == ~mask).all()
    assert r.value(I.FILTER_COUNT, "children") == f"{int(mask.sum())} of 40 images pass the filters"
    # a lasso polygon around every point: the server answers with the visible ones, as a bit mask
    c.set(I.LASSO_INPUT, "data", {"lasso": {"x": [-1e3, 1e3, 1e3, -1e3], "y": [-1e3, -1e3, 1e3, 1e3]}})
    c.call(c.find(f"{I.LASSO}.data", f"{I.LASSO_COUNT}.children", trigger=f"{I.LASSO_INPUT}.data"),
           [f"{I.LASSO_INPUT}.data"])
    lasso = c.values[(I.LASSO, "data")]
    assert views.decode_members(lasso["members"], 40).tolist() == mask.tolist()


def test_restarted_dashboard_shows_its_last_embedding_without_recomputing(corpus: Path) -> None:
    q = CorpusQuery(corpus)
    spec, X = q.embedding_spec(VIEW, "tsne", {"sky": 2.0})
    said: list[str] = []
    Y = q.compute_embedding(spec, X, said.append)
    assert (corpus / "dashboard" / "embeddings" / f"{spec.key}.npz").is_file() and said
    # a new process: the layout opens on that view with that embedding, and the lookup needs no job
    app = create_app(corpus)
    c = _callbacks(corpus)
    c.client = app.server.test_client()
    c.app = app
    stores = {s.id: s for s in _walk(app.layout) if getattr(s, "id", None) in (I.EMBEDDING, I.HEAD)}
    assert stores[I.EMBEDDING].data["key"] == spec.client_key and stores[I.EMBEDDING].data["ready"]
    c.set_all(I.WEIGHT, "value", [({"type": I.WEIGHT, "region": r}, 2.0 if r == "sky" else 1) for r in q.vocabulary])
    r = c.call(c.find(*LOOKUP), [f"{I.HEAD}.value"])
    assert r.value(I.EMBEDDING, "data")["key"] == spec.client_key and r.value(I.EMBED_JOB, "data") is None
    assert np.array_equal(CorpusQuery(corpus).embedding_by_key(spec.client_key), Y)
    # other weights are another embedding
    assert q.embedding_spec(VIEW, "tsne", {"sky": 1.0})[0].key != spec.key


def _walk(node: object) -> list:  # type: ignore[type-arg]
    out = [node]
    children = getattr(node, "children", None)
    for ch in children if isinstance(children, list) else [children] if children is not None else []:
        out += _walk(ch)
    return out


def test_images_added_later_are_placed_into_the_stored_map(tmp_path: Path) -> None:
    from semcontrib import corpus as cstore

    root = write_synthetic_corpus(tmp_path / "c", SyntheticSpec(n_images=70, n_maps=0, seed=5))
    q = CorpusQuery(root)
    spec, X = q.embedding_spec(VIEW, "tsne", {})
    # the stored map of an earlier version of the corpus: its first 60 images, unchanged since
    Y60 = embedding.embed(X[:60], "tsne")
    cstore.write_npz(q._cache_file(spec.key), {"ids": q.ids[:60].astype(str), "X": X[:60].astype(np.float32),
                                               "Y": Y60, "content": np.array("older")})
    said: list[str] = []
    Y = q.compute_embedding(spec, X, said.append)
    assert any("placing 10 new images into the stored map of 60" in s for s in said)
    np.testing.assert_allclose(Y[:60], Y60)  # the old points stay where they were
    assert np.isfinite(Y[60:]).all() and CorpusQuery(root).cached_embedding(spec) is not None
    # a changed vector of a stored image: no placement, a full recompute
    X_changed = X.copy()
    X_changed[0] = X[1]
    assert q._place_new_rows(spec, X_changed, None) is None


def test_query_views_validity_and_basis(corpus: Path, tmp_path: Path) -> None:
    q = CorpusQuery(corpus)
    assert len(q.ids) == 40 and q.n_skipped == 1 and q.known_id("broken0-0000000000") is None
    assert q.is_synthetic and q.has_validity and q.summary()["reasons"] == {"not an image": 1}
    m = q.score_matrix(View("nature", "ig", "split", "mean"))
    assert m.columns[:2] == ("sky+", "water+") and m.valid.all()
    mean, total = q.score_matrix(VIEW).values, q.score_matrix(View("nature", "lrp", "signed_l1", "sum")).values
    assert not np.allclose(mean, total)  # the basis changes the scores
    faith = q.faithfulness(VIEW)
    assert faith is not None and np.nanmin(faith) >= -1 and np.nanmax(faith) <= 1
    only = q.filter_mask(VIEW, Filters(faithfulness=(0.5, 1.0)))
    assert only.sum() == int((faith >= 0.5).sum()) > 0
    trust = q.trust("signed_l1", "mean")
    assert len(trust) == 4 and trust["median_faithfulness"].notna().all()
    with pytest.raises(ValueError, match="unknown head"):
        q.score_matrix(View("cats", "lrp", "signed_l1"))
    with pytest.raises(ValueError, match="basis"):
        q.score_matrix(View("nature", "lrp", "signed_l1", "median"))
    # an older corpus without validity columns: "no validity record"
    old = Path(shutil.copytree(corpus, tmp_path / "old"))
    from semcontrib import corpus as cstore

    c = cstore.Corpus.open(old)
    validity = ["faithfulness", "deletion_auc", "insertion_auc", "validity_note"]
    parts = [cstore.write_part(old, p.table, p.head, p.method, cstore.read_part(old, p).drop(columns=validity),
                               key=p.key, chunks=p.chunks) if p.table == "attributions" else p for p in c.parts]
    cstore.publish(old, c.images, parts, c.manifest)
    assert not set(validity) & set(cstore.Corpus.open(old).attributions.columns)
    q_old = CorpusQuery(old)
    assert not q_old.has_validity and q_old.faithfulness(VIEW) is None and q_old.image_validity(str(q.ids[0])) is None
    assert "no validity record" in json.dumps(panels.inspector(q_old, "image", str(q.ids[0]), VIEW).to_plotly_json(),
                                              default=str)


def test_panels_clusters_state_and_table(corpus: Path) -> None:
    q = CorpusQuery(corpus)
    result = panels.clusters(q, lambda _m: None, {"algorithm": "kmeans", "k": 3}, VIEW, Filters(), Weights())
    sels, text = panels.apply_clusters(q, result, scatter_panel.controls_tag(VIEW, "tsne", Weights()), [])
    assert [s["name"] for s in sels][:3] == ["kmeans cluster 1", "kmeans cluster 2", "kmeans cluster 3"]
    assert sum(s["n"] for s in sels[:3]) == 40 and "3 clusters" in text
    saved = state_panel.save_state(q, View("nature", "lrp", "paper", "sum"),
                                   {"algorithm": "umap", "highlight": ["nature"]},
                                   Filters(("sky",), ((0.0, 10.0),)), Weights(("sky",), (3.0,)), sels)
    upload = "data:application/json;base64," + base64.b64encode(saved["content"].encode()).decode()
    loaded = state_panel.load_state(q, upload, [{"region": "sky"}, {"region": "water"}])
    assert loaded["basis"] == "sum" and loaded["restore"] == {"filters": {"sky": [0.0, 10.0]}}
    assert loaded["weights"] == [3.0, 1.0] and [s["n"] for s in loaded["selections"]] == [s["n"] for s in sels]
    rows = panels.table_rows(q, {"startRow": 0, "endRow": 10, "sortModel": [{"colId": "faithfulness", "sort": "desc"}],
                                 "filterModel": {}}, VIEW, Filters())
    faith = [r["faithfulness"] for r in rows["rowData"] if r["faithfulness"] is not None]
    assert rows["rowCount"] == 40 and faith == sorted(faith, reverse=True) and len(rows["rowData"]) == 10
    assert panels.table_rows(q, {"startRow": 0, "endRow": 10, "sortModel": [{"colId": "nope"}]}, VIEW,
                             Filters()) == {"rowData": [], "rowCount": 0}
    picked = panels.table_pick(q, [{"index": 3}, {"index": 5}, {"index": "x"}, {"index": 10 ** 9}])
    assert views.decode_members(picked[0]["members"], 40).nonzero()[0].tolist() == [3, 5]
    sc = scatter_panel.scatter(q, None, VIEW, Filters(), [], ScatterOptions(colour_by="faithfulness"))
    assert sc["count"] == "40 of 40 images pass the filters"


def test_cli_registers_the_dashboard_subcommand_and_refuses_remote_binding(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "some/corpus"])
    assert (args.corpus, args.host, args.port, args.allow_remote, args.func) == (
        "some/corpus", "127.0.0.1", 8050, False, cli.run)
    with pytest.raises(app_module.RemoteBindError, match="--allow-remote"):
        app_module.check_host("0.0.0.0", allow_remote=False)
    app_module.check_host("0.0.0.0", allow_remote=True)
    app_module.check_host("127.0.0.1", allow_remote=False)
    from semcontrib.cli import main

    assert main(["dashboard", "nowhere", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and "Traceback" not in err


def test_demo_synthetic_writes_a_labelled_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from semcontrib.cli import main

    assert main(["demo", "--synthetic", "30", "--out", str(tmp_path), "--no-dashboard"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    q = CorpusQuery(tmp_path / "synthetic-30")
    assert len(q.ids) == 30 and q.is_synthetic and len(q.methods) == 3 and len(q.vocabulary) == 8
    assert main(["demo", "--synthetic", "3", "--out", str(tmp_path), "--no-dashboard"]) == 2
    assert "at least 10" in capsys.readouterr().err


def test_overlay_is_red_positive_blue_negative_with_outlines() -> None:
    photo = np.full((20, 40, 3), 128, np.uint8)
    attribution = np.zeros((10, 10))
    attribution[:, :5] = 1.0
    attribution[:, 5:] = -0.5
    labels = np.zeros((10, 10), np.int32)
    labels[5:] = 1
    out = overlay_rgb(photo, attribution, labels).astype(int)
    assert out[2, 2, 0] > out[2, 2, 2] and out[2, 37, 2] > out[2, 37, 0]  # red left, blue right
    assert out[2, 2, 0] - 128 > out[2, 37, 2] - 128  # |1| stronger than |-0.5|
    assert (out[boundaries(np.repeat(np.repeat(labels, 2, 0), 4, 1))] == 255).all()


def test_region_names_never_overlap_and_stay_on_thin_regions() -> None:
    # eight horizontal bands, some 6 px high, on a 240 x 160 image; names need boxes of 80 x 12 px
    cuts = [0, 40, 46, 52, 90, 96, 130, 136, 160]
    labels = np.zeros((160, 240), np.int32)
    for k, (a, b) in enumerate(zip(cuts, cuts[1:])):
        labels[a:b] = k
    placed = place_labels(labels, [(80, 12)] * 8)
    boxes = [b for _, b in placed]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1], (a, b)
        assert 0 <= a[0] and a[2] < 240 and 0 <= a[1] and a[3] < 160
    assert {k for k, _ in placed} >= {0, 3, 6}  # the wide bands are always named, inside themselves
    for k, (x0, y0, x1, y1) in placed:
        if cuts[k + 1] - cuts[k] >= 12:
            assert (labels[y0:y1 + 1, x0:x1 + 1] == k).mean() >= 0.5
    rgb = overlay_rgb(np.full((160, 240, 3), 200, np.uint8), None, labels, names=[f"region_{k}" for k in range(8)])
    assert rgb.shape == (160, 240, 3)


def test_export_sends_the_filtered_set_or_a_selection_as_safe_csv_or_parquet(corpus: Path) -> None:
    q = CorpusQuery(corpus)
    sels = views.add_selection([], "three", np.isin(np.arange(len(q.ids)), [1, 4, 7]))
    sent = state_panel.export(q, I.EXPORT_CSV, {"scope": sels[0]["id"]}, VIEW, Filters(), sels)
    assert sent["filename"] == f"contributions-nature-lrp-signed_l1-mean-{sels[0]['id']}-long.csv"
    table = pd.read_csv(io.BytesIO(base64.b64decode(sent["content"])))
    assert sorted(set(table["image_id"])) == sorted(str(q.ids[k]) for k in (1, 4, 7))
    wide = state_panel.export(q, I.EXPORT_PARQUET, {"wide": True}, VIEW, Filters(), sels)
    assert wide["filename"].endswith("-filtered-wide.parquet")
    assert len(pd.read_parquet(io.BytesIO(base64.b64decode(wide["content"])))) == len(q.ids)


def test_dashboard_never_imports_torch() -> None:
    code = ("import sys, semcontrib.dashboard.app, semcontrib.dashboard.cli, semcontrib.dashboard.synthetic; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('semcontrib.model', "
            "'semcontrib.attribution', 'semcontrib.pipeline'))]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_real_corpus_views(real_corpus: Path) -> None:
    """The views on a corpus analysed by the real pipeline (Lite0, landscape regions)."""
    q = CorpusQuery(real_corpus)
    assert "vegetation" in q.vocabulary
    view = View(next(iter(q.heads)), q.methods[0], "signed_l1", "mean")
    sc = scatter_panel.scatter(q, None, view, Filters(), [], ScatterOptions())
    assert sc["count"].endswith(f"of {len(q.ids)} images pass the filters")
    cols, text = panels.detail(q, "detail", view, Filters(), [], compare=[],
                               sort={"column": q.vocabulary[0], "order": "desc"})
    assert text.startswith("page 1 of")
    assert q.overlay_png(str(q.ids[0]), view.head, view.method)
    assert not q.is_synthetic


def density_mode(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CorpusQuery, dict, np.ndarray]:
    """The corpus's query, its quick t-SNE and the points, with 40 images counting as "many" (density mode,
    a sample of 6 drawn)."""
    monkeypatch.setattr(scatter_panel, "POINTS_MAX", 10)
    monkeypatch.setattr(scatter_panel, "SAMPLE_POINTS", 6)
    q = CorpusQuery(corpus)
    spec, X = q.embedding_spec(VIEW, "tsne", {})
    emb = {"key": q.quick_embedding(spec, X)}
    xy = q.embedding_by_key(emb["key"])
    assert xy is not None
    return q, emb, xy


def test_density_mode_draws_a_sample_and_the_points_of_a_zoom_window(corpus: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    q, emb, xy = density_mode(corpus, monkeypatch)
    full = scatter_panel.scatter(q, emb, VIEW, Filters(), [], ScatterOptions())
    fig = full["figure"]
    assert fig["layout"]["images"][0]["source"].startswith("data:image/png;base64,")
    sample = scatter_panel.shown_rows(40, xy, None)
    assert sample is not None and len(sample) == 6
    drawn = np.frombuffer(base64.b64decode(fig["data"][0]["customdata"]["bdata"]), "<i4")
    assert drawn.tolist() == sample.tolist()
    # a filter update patches the image and the sample's colours
    patch = scatter_panel.scatter(q, emb, VIEW, Filters(("sky",), ((0.0, 5.0),)), [], ScatterOptions(),
                                  shown=full["shown"])
    ops = json.dumps(patch["figure"].to_plotly_json())
    assert "images" in ops and "bdata" in ops
    # zoomed in: the images inside the window are drawn, and point numbers map back to them
    x0, x1 = np.quantile(xy[:, 0], [0.0, 0.5])
    window = [x0, x1, float(xy[:, 1].min()), float(xy[:, 1].max())]
    relayout = {"xaxis.range[0]": x0, "xaxis.range[1]": x1, "yaxis.range[0]": window[2], "yaxis.range[1]": window[3]}
    z = scatter_panel.zoom(q, relayout, emb, VIEW, Filters(), [], options=ScatterOptions())
    assert z["window"] == window
    inside = scatter_panel.shown_rows(40, xy, window)
    assert inside is not None and (xy[inside, 0] <= x1).all() and len(inside) == 6  # thinned to SAMPLE_POINTS
    assert scatter_panel.point_rows(q, [0, 5, 6, -1], emb, window).tolist() == [inside[0], inside[5]]
    assert scatter_panel.zoom(q, {"xaxis.autorange": True}, emb, VIEW, Filters(), [],
                              options=ScatterOptions())["window"] is None
    assert scatter_panel.focus_from_click(q, {"points": [{"curveNumber": 0, "pointNumber": 1}]}, emb, window)[0] == \
        str(q.ids[inside[1]])


def test_density_mode_hover_anywhere_finds_the_nearest_image(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q, emb, xy = density_mode(corpus, monkeypatch)
    fig = scatter_panel.scatter(q, emb, VIEW, Filters(), [], ScatterOptions())["figure"]
    grid = fig["data"][figures.HOVER_TRACE]
    assert grid["type"] == "heatmap" and grid["hoverinfo"] == "none" and grid["z"]["shape"] == "200,200"
    x0, x1, y0, y1 = figures.density_box(xy)
    assert grid["x0"] == pytest.approx(x0 + (x1 - x0) / 400) and grid["dy"] == pytest.approx((y1 - y0) / 200)
    sample = set(scatter_panel.shown_rows(40, xy, None).tolist())
    k = next(i for i in range(40) if i not in sample)  # an image drawn only in the density image
    cell = np.array([(x1 - x0) / 200, (y1 - y0) / 200])
    near = xy[k] + cell * 0.3  # the centre of the hover cell, a little off the point
    hover = {"points": [{"curveNumber": figures.HOVER_TRACE, "x": near[0], "y": near[1],
                         "bbox": {"x0": 1, "x1": 2, "y0": 1, "y1": 2}}]}
    show, bbox, card, _direction = scatter_panel.tooltip(q, hover, VIEW, emb, None)
    assert show is True and bbox["x0"] == 1 and str(q.ids[k]) in json.dumps(card.to_plotly_json(), default=str)
    far = {"points": [{**hover["points"][0], "x": x1 + 10 * (x1 - x0), "y": y1}]}
    assert scatter_panel.tooltip(q, far, VIEW, emb, None)[0] is False  # no image within a cell: no card
    assert scatter_panel.nearest_row(q, ["a", None], emb) is None
    assert [scatter_panel.card_direction(h) for h in (0.95, 0.5, 0.1)] == ["bottom", "right", "top"]
    top = int(np.argmax(xy[:, 1]))  # the topmost image's card opens below it
    assert scatter_panel.tooltip(q, {"points": [{**hover["points"][0], "x": xy[top, 0], "y": xy[top, 1]}]},
                                 VIEW, emb, None)[3] == "bottom"
    assert scatter_panel.focus_from_click(q, hover, emb, None)[0] == str(q.ids[k])
    # zoomed in, the grid covers the window (finer cells), and the nearest image is found there too
    window = [float(xy[k, 0] - 1), float(xy[k, 0] + 1), float(xy[k, 1] - 1), float(xy[k, 1] + 1)]
    relayout = dict(zip(("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]"), window))
    z = scatter_panel.zoom(q, relayout, emb, VIEW, Filters(), [], options=ScatterOptions())
    ops = json.dumps(z["figure"].to_plotly_json())
    assert '"dx": 0.01' in ops
    assert scatter_panel.nearest_row(q, list(xy[k]), emb, window) == k


def test_the_table_shows_human_labels_to_filter_and_sort_by(corpus: Path) -> None:
    """label_<task> columns (a labels CSV or ``analyze --labels EXPORT.json``) are table columns, filterable."""
    q = CorpusQuery(corpus)
    assert q.label_columns == ["label_scene"]
    assert "label_scene" in [c["field"] for c in layout.table_columns(q, VIEW)]
    wanted = str(q.images["label_scene"].iloc[0])
    rows = panels.table_rows(q, {"startRow": 0, "endRow": 100, "sortModel": [],
                                 "filterModel": {"label_scene": {"filterType": "text", "type": "equals",
                                                                 "filter": wanted}}}, VIEW, Filters())
    expected = int((q.images["label_scene"] == wanted).sum())
    assert 0 < rows["rowCount"] == expected < 40 and {r["label_scene"] for r in rows["rowData"]} == {wanted}


def test_filters_survive_a_view_change_and_the_session_is_saved_and_restored(corpus: Path) -> None:
    q = CorpusQuery(corpus)
    sky = q.slider_bounds(VIEW)["sky"]
    current = {"ids": [{"type": I.RANGE, "column": "sky"}, {"type": I.RANGE, "column": "water"}],
               "values": [[sky[0], 5.0], [-100.0, 100.0]], "min": [sky[0], -100.0], "max": [sky[1], 100.0]}
    sliders, note, ready = panels.filter_panel(q, View("nature", "ig", "signed_l1", "mean"), None, False, current)
    kept = {s.children[1].id["column"]: s.children[1].value for s in sliders}
    assert kept["sky"][1] == 5.0 and note == "kept filters: sky" and ready is panels.no_update
    _sliders, note, _ = panels.filter_panel(q, View("nature", "ig", "split", "mean"), None, False, current)
    assert note == "reset (not a column of this view): sky"
    # saved with the corpus as it changes, restored on the next page load (with the address's view on top)
    sels = views.add_selection([], "trio", np.arange(40) < 3)
    said = state_panel.autosave(q, True, VIEW, {"algorithm": "umap", "colour": "score:water"},
                                Filters(("sky",), ((0.0, 5.0),)), weights=Weights(("sky",), (2.0,)), selections=sels)
    assert said.startswith("saved with the corpus: 1 selections, 1 filters")
    assert state_panel.autosave(q, False, VIEW, {}, Filters(), weights=Weights(), selections=[]) \
        is panels.no_update  # not yet restored
    ids = [{"type": I.WEIGHT, "region": r} for r in q.vocabulary]
    now = {"head": "nature", "method": "lrp", "normalisation": "signed_l1", "basis": "mean", "algorithm": "tsne",
           "colour": "selection", "highlight": []}
    out = state_panel.session_restore(CorpusQuery(corpus), "?method=ig", now, ids, initial=True)
    assert out["selections"][0]["name"] == "trio" and out["restore"] == {"filters": {"sky": [0.0, 5.0]}}
    assert out["method"] == "ig" and out["algorithm"] == "umap" and out["colour"] == "score:water"
    assert out["head"] is panels.no_update and out["weights"][q.vocabulary.index("sky")] == 2.0
    assert out["ready"] is panels.no_update  # set by the filter panel once it applied the filters
    later = state_panel.session_restore(q, "?method=lrp", {**now, "method": "ig"}, ids, initial=False)
    assert later["method"] == "lrp" and later["selections"] is panels.no_update


def test_a_job_whose_page_stopped_polling_is_stopped(tmp_path: Path) -> None:
    """A closed page stops polling its job; after ``orphan_s`` without a poll the job's process is killed,
    while a job still polled runs on."""
    import diskcache

    manager = app_module.SpawnDiskcacheManager(diskcache.Cache(str(tmp_path / "jobs")), orphan_s=5.0)
    closed = subprocess.Popen(["sleep", "60"])
    open_page = subprocess.Popen(["sleep", "60"])
    try:
        for p in (closed, open_page):
            manager.watch.started(p.pid, now=0.0)
        manager.watch.seen(open_page.pid, now=4.0)
        assert manager.reap(now=3.0) == []
        assert manager.reap(now=6.0) == [closed.pid]
        assert not manager.job_running(closed.pid) and open_page.poll() is None
        assert manager.job_running(open_page.pid)  # a poll: seen again, so not an orphan at 8 s
        assert manager.reap(now=time.monotonic() + 4.0) == []
    finally:
        for p in (closed, open_page):
            p.kill()
            p.wait()
    with pytest.raises(ValueError, match="orphan_s must be a positive number"):
        app_module.JobWatch(0)


def test_an_image_without_its_display_file_gets_a_placeholder(corpus: Path, tmp_path: Path) -> None:
    q = CorpusQuery(corpus)
    image_id = str(q.ids[1])
    chunk = q.corpus.chunk_of(image_id)
    assert chunk is not None
    q.corpus.paths.images(chunk).unlink()  # the display file is gone
    client = create_app(corpus, cache_dir=tmp_path / "cache").server.test_client()
    for url in (f"/corpus/photo/{image_id}", f"/corpus/thumb/{image_id}", f"/corpus/overlay/nature/lrp/{image_id}"):
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "image/png" and r.headers["Cache-Control"] == "no-store", url
        assert Image.open(io.BytesIO(r.data)).size == (240, 180)
    assert client.get("/corpus/photo/nope").status_code == 404  # an unknown id is still refused
