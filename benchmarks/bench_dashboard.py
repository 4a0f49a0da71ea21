"""The dashboard's updates at 100,000 to 1,000,000 images, timed through the real callbacks.

Builds a synthetic corpus (tables only: 2 heads, 2 methods, 8 regions) with ``dashboard.synthetic``,
starts the app with ``create_app`` and drives its callbacks over HTTP with Flask's test client, building
each request as Dash's renderer does (``dashboard.callback_client``). Every figure is the sum over every
server callback the browser calls for that change, measured request to response, with the bytes of
the request and the response as Dash sends them:

* filter update: one region slider moved (the scatter colours, the filter count, the open tab's
  statistics, and the callbacks of hidden tabs, which return at once);
* selection update: a lasso polygon covering about a fifth of the points tested on the server, saved as
  a named selection, and everything that redraws for it (scatter colours, lists, statistics);
* embed_s: openTSNE (FFT) of ``--embed-images`` images of the corpus (default: all up to 20,000; the
  dashboard fits up to 100,000 and places the rest with ``transform``); place_ms_per_image: placing
  1,000 more images into that map with openTSNE's ``transform``.

Usage: python benchmarks/bench_dashboard.py [--images 100000] [--json] [--keep DIR] [--embed-images N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.dashboard import ids as I
from semcontrib.dashboard import views
from semcontrib.dashboard.app import create_app
from semcontrib.dashboard.callback_client import CallbackClient
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import View
from semcontrib.dashboard.synthetic import SyntheticSpec, write_synthetic_corpus

# the outputs of the embedding lookup callback
LOOKUP = (f"{I.EMBEDDING}.data", f"{I.EMBED_JOB}.data", f"{I.OFFERED}.data", f"{I.OFFER}.style")

VOCABULARY = ("sky", "water", "vegetation", "bare_ground", "built", "person", "animal", "other")
HEADS = {"landscape": ["forest", "coast", "mountain", "urban", "field"], "nature": ["nature", "non_nature"]}
RANGE_PROP = json.dumps({"column": ["ALL"], "type": I.RANGE}, separators=(",", ":")) + ".value"


def _sliders(children: Any) -> list[tuple[dict[str, Any], list[float]]]:
    """(id, [lo, hi]) of every RangeSlider in the filter panel's children (JSON as Dash returns it)."""
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("props", {})
            if node.get("type") == "RangeSlider" and isinstance(props.get("id"), dict):
                out.append((props["id"], [float(props["min"]), float(props["max"])]))
            for v in props.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(children)
    return out


def _fire(client: CallbackClient, prop: str) -> tuple[float, int, list[tuple[str, float, int]]]:
    """Call every callback the browser calls when ``prop`` changes: (total ms, total bytes, parts)."""
    parts = []
    for key in client.triggered_by(prop):
        r = client.call(key, [prop])
        parts.append((key, r.ms, r.bytes))
    return sum(p[1] for p in parts), sum(p[2] for p in parts), parts


def measure(root: Path, embed_images: int, repeat: int = 5) -> dict[str, Any]:
    app = create_app(root)
    q = CorpusQuery(root)
    c = CallbackClient(app)
    for cid, prop, value in [(I.HEAD, "value", "landscape"), (I.METHOD, "value", "lrp"),
                             (I.NORMALISATION, "value", "signed_l1"), (I.BASIS, "value", "mean"),
                             (I.ALGORITHM, "value", "tsne"), (I.HIGHLIGHT, "value", ["coast"]),
                             (I.FILTERED_MODE, "value", "dim"), (I.COLOUR_BY, "value", "selection"),
                             (I.FAITH_RANGE, "value", [-1, 1]), (I.SELECTIONS, "data", []),
                             (I.TABS, "value", "statistics"), (I.COMPARE, "value", []),
                             (I.DETAIL_SORT, "value", ""), (I.DETAIL_ORDER, "value", "desc"),
                             (I.DETAIL_PAGE, "data", 0)]:
        c.set(cid, prop, value)
    c.set_all(I.WEIGHT, "value", [({"type": I.WEIGHT, "region": r}, 1) for r in q.vocabulary])
    t = time.perf_counter()
    panel = c.call(c.find(f"{I.FILTER_PANEL}.children"), [f"{I.HEAD}.value"])
    first_load_s = time.perf_counter() - t
    sliders = _sliders(panel.value(I.FILTER_PANEL, "children"))
    c.set_all(I.RANGE, "value", sliders)
    emb = c.call(c.find(*LOOKUP), [f"{I.HEAD}.value"])
    scatter = c.find(f"{I.SCATTER}.figure", f"{I.FILTER_COUNT}.children", f"{I.SCATTER_SHOWN}.data",
                     f"{I.SCATTER_WINDOW}.data")
    full = c.call(scatter, [f"{I.EMBEDDING}.data"])
    n = len(q.ids)

    # filter update: the sky slider's upper bound moves (then back, alternately)
    sky = next(i for i, (sid, _) in enumerate(sliders) if sid["column"] == "sky")
    lo, hi = sliders[sky][1]
    filt_ms, filt_bytes, filt_parts = [], [], []
    for k in range(repeat):
        moved = list(sliders)
        moved[sky] = (sliders[sky][0], [lo, lo + (hi - lo) * (0.5 if k % 2 == 0 else 0.6)])
        c.set_all(I.RANGE, "value", moved)
        ms, nbytes, parts = _fire(c, RANGE_PROP)
        filt_ms.append(ms)
        filt_bytes.append(nbytes)
        filt_parts = parts
    # selection update: a lasso polygon around a fifth of the points, saved as a selection
    shown = q.embedding_spec(View("landscape", "lrp", "signed_l1", "mean"), "tsne", {})
    xy = q.embedding_by_key(q.quick_embedding(*shown))  # the layout the app shows before its t-SNE is ready
    assert xy is not None and c.values[(I.EMBEDDING, "data")]["key"] == q.quick_embedding(*shown)
    cx, cy = np.quantile(xy[:, 0], [0.0, 0.45]), np.quantile(xy[:, 1], [0.0, 1.0])
    polygon = {"lasso": {"x": [cx[0], cx[1], cx[1], cx[0]], "y": [cy[0], cy[0], cy[1], cy[1]]}}
    sel_ms, sel_bytes, sel_parts, lasso_n = [], [], [], 0
    for _ in range(repeat):
        c.set(I.SELECTIONS, "data", [])
        c.set(I.LASSO_INPUT, "data", polygon)
        c.set(I.SELECTION_NAME, "value", "a fifth")
        r1 = c.call(c.find(f"{I.LASSO}.data", f"{I.LASSO_COUNT}.children", trigger=f"{I.LASSO_INPUT}.data"),
                    [f"{I.LASSO_INPUT}.data"])
        lasso_n = int(c.values[(I.LASSO, "data")]["n"])
        r2 = c.call(c.find(f"{I.SELECTIONS}.data", trigger=f"{I.SELECTION_SAVE}.n_clicks"),
                    [f"{I.SELECTION_SAVE}.n_clicks"])
        ms, nbytes, parts = _fire(c, f"{I.SELECTIONS}.data")
        sel_ms.append(r1.ms + r2.ms + ms)
        sel_bytes.append(r1.bytes + r2.bytes + nbytes)
        sel_parts = [(r1.output, r1.ms, r1.bytes), (r2.output, r2.ms, r2.bytes), *parts]

    # embedding: openTSNE on (a seeded subset of) the corpus, then placement of 1,000 more images
    spec, X = q.embedding_spec(View("landscape", "lrp", "signed_l1", "mean"), "tsne", {"sky": 2.0})
    rng = np.random.default_rng(1)
    m = min(embed_images, n - 1000)
    rows = rng.choice(n, size=m + 1000, replace=False)
    t = time.perf_counter()
    model = views._fit_tsne(X[rows[:m]], 0, lambda _msg: None)
    embed_s = time.perf_counter() - t
    t = time.perf_counter()
    views.place(model, X[rows[m:]])
    place_ms = (time.perf_counter() - t) * 1000 / 1000

    def med(v: list[float]) -> float:
        return float(statistics.median(v))

    return {
        "images": n, "heads": len(q.heads), "methods": len(q.methods), "regions": len(q.vocabulary),
        "mode": "density image + 20,000 points" if n > 200_000 else "every point",
        "filter_update_ms": round(med(filt_ms), 1), "filter_update_bytes": int(max(filt_bytes)),
        "selection_update_ms": round(med(sel_ms), 1), "selection_update_bytes": int(max(sel_bytes)),
        "embed_s": round(embed_s, 1), "embed_images": m, "place_ms_per_image": round(place_ms, 3),
        "first_load_s": round(first_load_s, 2), "lasso_images": lasso_n,
        "initial_scatter_bytes": full.bytes, "embedding_lookup_ms": round(emb.ms, 1),
        "filter_update_parts": [(k[:60], round(ms, 1), b) for k, ms, b in filt_parts],
        "selection_update_parts": [(k[:60], round(ms, 1), b) for k, ms, b in sel_parts],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--keep", help="write the corpus here (and reuse it when present)")
    ap.add_argument("--embed-images", type=int, default=20_000, help="images the timed t-SNE fits (default 20000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "corpus"
    build_s = 0.0
    if not (root / "manifest.json").is_file():
        t = time.perf_counter()
        write_synthetic_corpus(root, SyntheticSpec(n_images=args.images, heads=HEADS, methods=("lrp", "ig"),
                                                   vocabulary=VOCABULARY, n_maps=0))
        build_s = time.perf_counter() - t
    result = measure(root, args.embed_images)
    result["build_s"] = round(build_s, 1)
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
