"""Server time of the dashboard's updates on a 100,000-image synthetic corpus.

Builds the corpus tables (no maps) with ``dashboard.synthetic``, then times, in this process, exactly
what the callbacks compute (``dashboard.panels``): a filter update (scatter figure + filter count), a
selection update (saving a lasso of 20,000 images + recolouring the scatter + the statistics), and a
re-embedding (t-SNE on a 3,000-image subsample + nearest-neighbour placement of the rest). Figures are
plain dicts sent as JSON; the JSON encoding time is reported separately.

Usage: python benchmarks/bench_dashboard.py [--images 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.utils

from semcontrib.dashboard import panels, views
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.synthetic import write_synthetic_corpus

VOCABULARY = ("sky", "water", "vegetation", "bare_ground", "built", "person", "animal", "other")
HEADS = {"landscape": ["forest", "coast", "mountain", "urban", "field"], "nature": ["nature", "non_nature"]}


def timed(fn, repeat: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--keep", help="write the corpus here (and reuse it when present)")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "corpus"
    if not (root / "manifest.json").is_file():
        t = time.perf_counter()
        write_synthetic_corpus(root, n_images=args.images, heads=HEADS, methods=("lrp", "ig"),
                               vocabulary=VOCABULARY, with_maps=False)
        print(f"built a {args.images}-image corpus (2 heads, 2 methods, 8 regions) in {time.perf_counter() - t:.0f} s")
    q = CorpusQuery(root)
    head, method, norm = "landscape", "lrp", "signed_l1"
    t = time.perf_counter()
    matrix = q.score_matrix(head, method, norm)
    print(f"first load of the score matrix (once per head/method/normalisation): "
          f"{(time.perf_counter() - t) * 1000:.0f} ms")
    n = matrix.n
    xy = np.random.default_rng(0).normal(size=(n, 2))
    emb = {"key": "k", "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "head": head, "method": method,
           "normalisation": norm, "algorithm": "tsne"}
    bounds = views.slider_bounds(matrix.values)
    sky = [{"column": "sky"}]
    sky_range = [[0.0, float(bounds[0, 1])]]
    ms, (fig, count) = timed(lambda: panels.scatter(q, emb, sky_range, ["coast"], [], "dim", head, method, norm, sky))
    enc, _ = timed(lambda: json.dumps(fig, cls=plotly.utils.PlotlyJSONEncoder), repeat=3)
    print(f"filter update (scatter of {n} points + count; {count}): {ms:.0f} ms server, "
          f"+{enc:.0f} ms JSON encoding")
    ms_stats, _ = timed(lambda: panels.statistics(q, head, method, norm, sky, sky_range, [], [], [], []))
    print(f"filter update of the statistics bar charts: {ms_stats:.0f} ms")

    lasso_ids = [str(i) for i in q.ids[:20_000]]
    selected = {"points": [{"customdata": i} for i in range(20_000)]}

    def selection_update() -> object:
        ids, _ = panels.lasso(q, selected, head, method, norm, sky, sky_range)
        sels = views.add_selection([], "big lasso", ids)
        fig = panels.scatter(q, emb, sky_range, [], sels, "dim", head, method, norm, sky)
        stats = panels.statistics(q, head, method, norm, sky, sky_range, [], [], sels, [sels[0]["id"]])
        return fig, stats

    ms_sel, _ = timed(selection_update)
    print(f"selection update (lasso of {len(lasso_ids)} -> named selection -> scatter colours + statistics): "
          f"{ms_sel:.0f} ms")
    ms_detail, _ = timed(lambda: panels.detail(q, head, method, norm, sky, sky_range, [], [], "water", "desc", 3))
    print(f"detail page (rank {n} images by a region, one page of cards): {ms_detail:.0f} ms")

    w = views.column_weights(matrix, q.vocabulary, {"sky": 2.0})
    t = time.perf_counter()
    Y = views.embed(views.embedding_input(matrix, w), "tsne", max_fit=3000)
    print(f"re-embedding of {n} images (t-SNE on a 3000-image subsample, PCA init, then the rest placed "
          f"by 5 nearest neighbours): {time.perf_counter() - t:.1f} s; shape {Y.shape}")


if __name__ == "__main__":
    main()
