"""The app factory, the image routes (safety), the query module and the CLI, without a browser."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcontrib.dashboard import cli, panels, views
from semcontrib.dashboard.app import create_app
from semcontrib.dashboard.overlay import boundaries, overlay_rgb
from semcontrib.dashboard.query import CorpusQuery


@pytest.fixture(scope="module")
def client(synthetic_corpus: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    app = create_app(synthetic_corpus, cache_dir=tmp_path_factory.mktemp("cache"))
    return app.server.test_client()


def test_images_are_served_by_known_id_only(client, synthetic_corpus: Path) -> None:  # type: ignore[no-untyped-def]
    image_id = CorpusQuery(synthetic_corpus).ids[0]
    r = client.get(f"/corpus/photo/{image_id}")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(r.data)).size == (160, 120)
    r = client.get(f"/corpus/overlay/nature/lrp/{image_id}")
    assert r.status_code == 200 and Image.open(io.BytesIO(r.data)).size == (160, 120)
    assert client.get(f"/corpus/thumb/{image_id}").status_code == 200
    for bad in ("nope", "..", "broken0-0000000000", "%2e%2e%2fmanifest.json", "img000000-0000000000.jpg"):
        r = client.get(f"/corpus/photo/{bad}")
        assert r.status_code == 404 or r.mimetype == "text/html", bad  # Dash's page, never a file
        assert b"semcontrib-corpus" not in r.data
    assert client.get(f"/corpus/overlay/cats/lrp/{image_id}").status_code == 404
    assert client.get(f"/corpus/overlay/nature/gradcam/{image_id}").status_code == 404


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


def test_query_reads_only_ok_images_and_caches_embeddings(synthetic_corpus: Path, tmp_path: Path) -> None:
    q = CorpusQuery(synthetic_corpus, cache_dir=tmp_path)
    assert len(q.ids) == 40 and q.n_skipped == 1 and q.known_id("broken0-0000000000") is None
    m = q.score_matrix("nature", "ig", "split")
    assert m.columns[:2] == ("sky+", "water+") and m.valid.all()
    key, Y = q.embedding("nature", "ig", "signed_l1", "tsne", {"sky": 2})
    key2, Y2 = q.embedding("nature", "ig", "signed_l1", "tsne", {"sky": 2})
    assert key == key2 and np.array_equal(Y, Y2) and Y.shape == (40, 2)
    assert q.embedding("nature", "ig", "signed_l1", "tsne", {"sky": 1})[0] != key
    with pytest.raises(ValueError, match="unknown head"):
        q.score_matrix("cats", "lrp", "signed_l1")


def test_panels_clusters_and_state(synthetic_corpus: Path) -> None:
    q = CorpusQuery(synthetic_corpus)
    sels, text = panels.clusters(q, "kmeans", 3, "nature", "lrp", "signed_l1", [], [], [], [], [])
    assert [s["name"] for s in sels][:3] == ["kmeans cluster 1", "kmeans cluster 2", "kmeans cluster 3"]
    assert sum(len(s["image_ids"]) for s in sels[:3]) == 40 and "3 clusters" in text
    saved = panels.save_state("nature", "lrp", "paper", "umap", ["nature"], q, [{"column": "sky"}], [[0, 10]],
                              [{"region": "sky"}], [3], sels)
    st = views.parse_state(saved["content"], q.heads, q.methods, q.normalisations, q.vocabulary)
    assert st.filters == {"sky": [0.0, 10.0]} and st.weights == {"sky": 3.0} and len(st.selections) == len(sels)


def test_cli_registers_the_dashboard_subcommand() -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "some/corpus"])
    assert (args.corpus, args.host, args.port, args.func) == ("some/corpus", "127.0.0.1", 8050, cli.run)


def test_dashboard_never_imports_torch() -> None:
    code = ("import sys, semcontrib.dashboard.app, semcontrib.dashboard.cli, semcontrib.dashboard.synthetic; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('semcontrib.model', "
            "'semcontrib.attribution', 'semcontrib.pipeline'))]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_real_corpus_views(real_corpus: Path) -> None:
    """The views on a corpus analysed by the real pipeline (Lite0, landscape regions)."""
    REAL = Path(os.environ.get("SEMCONTRIB_DEMO_CORPUS", real_corpus))
    q = CorpusQuery(REAL)
    assert "vegetation" in q.vocabulary or os.environ.get("SEMCONTRIB_DEMO_CORPUS")
    head, method = next(iter(q.heads)), q.methods[0]
    fig, count = panels.scatter(q, None, [], [], [], "dim", head, method, "signed_l1", [])
    assert count.endswith(f"of {len(q.ids)} images pass the filters")
    cols, text = panels.detail(q, head, method, "signed_l1", [], [], [], [], q.vocabulary[0], "desc", 0)
    assert text.startswith("page 1 of")
    assert q.overlay_png(str(q.ids[0]), head, method)
