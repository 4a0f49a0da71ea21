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

* ``--browser``: the lasso in headless Chromium (software WebGL, as in CI): browser time from mouse down
  to the lasso's count shown, for a path of 48 moves 16 ms apart around a tenth of the points, with the
  dashboard's lasso (drawn in the page only; the polygon sent once on release and tested on the server) and,
  as the baseline in the same page, Plotly's own lasso (every point re-selected on every move).

Usage: python benchmarks/bench_dashboard.py [--images 100000] [--json] [--keep DIR] [--embed-images N] [--browser]
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

from semcontrib.dashboard import embedding
from semcontrib.dashboard import ids as I
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
    panel = c.call(c.find(f"{I.FILTER_PANEL}.children", f"{I.FILTER_NOTE}.children"), [f"{I.HEAD}.value"])
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
    model = embedding.fit_tsne(X[rows[:m]], 0, lambda _msg: None)
    embed_s = time.perf_counter() - t
    t = time.perf_counter()
    embedding.place(model, X[rows[m:]])
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


# Draws a closed path on the scatter as a hand does (mouse down, one move every ``step`` ms, up) and
# times, in the browser, from mouse down to the lasso count shown; ``arguments``: the path as fractions
# of the plot area (y down), the ms between moves. The count is first reset to 0 by the caller.
DRAW_JS = """
const done = arguments[arguments.length - 1], pts = arguments[0], stepMs = arguments[1];
const g = document.querySelector('#scatter .js-plotly-plot'), el = g.querySelector('.nsewdrag');
const r = el.getBoundingClientRect(), count = document.getElementById('lasso-count');
function ev(type, target, p, buttons) {
  target.dispatchEvent(new MouseEvent(type, {bubbles: true, cancelable: true, button: 0, buttons: buttons,
    clientX: r.left + p[0] * r.width, clientY: r.top + p[1] * r.height, view: window}));
}
window._sent = null;
if (!window._fetch) {
  window._fetch = window.fetch;
  window.fetch = function(url, ...rest) {
    if (window._sent === null && String(url).includes('_dash-update-component')) { window._sent = performance.now(); }
    return window._fetch(url, ...rest);
  };
}
const t0 = performance.now();
ev('mousedown', el, pts[0], 1);
let i = 1;
function step() {
  if (i < pts.length) { ev('mousemove', document, pts[i], 1); i += 1; setTimeout(step, stepMs); return; }
  const moved = performance.now() - t0;
  ev('mouseup', document, pts[pts.length - 1], 0);
  const released = performance.now();
  window._sent = null;
  const poll = setInterval(() => {
    if (!count.textContent.startsWith('0 images')) {
      clearInterval(poll);
      const now = performance.now();
      done({moves_ms: moved, total_ms: now - t0, after_release_ms: now - released,
            request_sent_ms: window._sent === null ? null : window._sent - released, text: count.textContent});
    }
  }, 5);
}
setTimeout(step, stepMs);
"""


def _own_jobs() -> list[Any]:
    """The background jobs (spawned processes) of this process's dashboard server."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def browser_lasso(root: Path, share: float = 0.1, baseline: bool = True, step_ms: float = 16.0,
                  timeout_s: float = 300.0) -> dict[str, Any]:
    """Browser time of a lasso around ``share`` of the points, in headless Chromium (software WebGL), on
    the layout the page opens on (its t-SNE job is stopped, so the layout and the CPU stay still): the
    dashboard's lasso (``app.LASSO_JS``: drawn in the page, sent once on release, tested on the server)
    and, as the baseline in the same page, Plotly's own lasso (which re-selects every WebGL point on each
    move and redraws them on release, then sends the polygon)."""
    import socket
    import threading

    from selenium import webdriver
    from werkzeug.serving import make_server

    app = create_app(root)
    q = CorpusQuery(root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1100", "--enable-unsafe-swiftshader"):
        options.add_argument(flag)
    d = webdriver.Chrome(options=options)
    d.set_script_timeout(timeout_s)
    out: dict[str, Any] = {"images": len(q.ids)}
    try:
        t = time.perf_counter()
        d.get(f"http://127.0.0.1:{port}/")
        meta = None
        while time.perf_counter() - t < timeout_s:
            meta = d.execute_script("const g = document.querySelector('#scatter .js-plotly-plot');"
                                    "return g && g.layout && g.layout.meta && g.layout.meta.key ?"
                                    " {key: g.layout.meta.key, x: g._fullLayout.xaxis.range,"
                                    " y: g._fullLayout.yaxis.range} : null;")
            if meta:
                break
            time.sleep(0.2)
        if not meta:
            raise RuntimeError("the scatter never showed")
        out["page_ready_s"] = round(time.perf_counter() - t, 1)
        for job in _own_jobs():  # the page's t-SNE job: stop it, so the layout stays and the CPU is free
            job.kill()
        time.sleep(2)
        meta = d.execute_script("const g = document.querySelector('#scatter .js-plotly-plot');"
                                "return {key: g.layout.meta.key, x: g._fullLayout.xaxis.range,"
                                " y: g._fullLayout.yaxis.range, points: g._fullData[0].x.length};")
        xy = q.embedding_by_key(meta["key"])
        for head in q.heads if xy is None else []:  # the page's placeholder layout: the same PCA, computed here
            for method in q.methods:
                for basis in ("mean", "sum"):
                    spec, X = q.embedding_spec(View(head, method, "signed_l1", basis), "tsne", {})
                    if f"pca{spec.key}-{spec.content}" == meta["key"]:
                        xy = q.embedding_by_key(q.quick_embedding(spec, X))
        assert xy is not None and len(xy) == len(q.ids)
        (x0, x1), (y0, y1) = meta["x"], meta["y"]
        frac = np.column_stack([(xy[:, 0] - x0) / (x1 - x0), (y1 - xy[:, 1]) / (y1 - y0)])
        centre = np.median(frac, axis=0)
        radius = float(np.quantile(np.hypot(*(frac - centre).T), share))
        angles = np.linspace(0, 2 * np.pi, 48)
        path = [[float(centre[0] + radius * np.cos(a)), float(centre[1] + radius * np.sin(a))] for a in angles]
        out["points_drawn"] = int(meta["points"])
        out["lasso_images_expected"] = int((np.hypot(*(frac - centre).T) < radius).sum())

        def reset(js: str) -> None:
            d.execute_script(js)
            end = time.perf_counter() + 60
            while not d.find_element("id", I.LASSO_COUNT).text.startswith("0 images") and time.perf_counter() < end:
                time.sleep(0.05)

        new = d.execute_async_script(DRAW_JS, path, step_ms)
        out["freehand"] = {k: (round(v) if isinstance(v, float) else v) for k, v in new.items()}
        t = time.perf_counter()
        reset("document.querySelector('#scatter .nsewdrag').dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))")
        out["freehand_clear_ms"] = round((time.perf_counter() - t) * 1000)
        if baseline:
            reset("window.semcontribLassoOff = true")  # the same page, Plotly's own lasso
            old = d.execute_async_script(DRAW_JS, path, step_ms)
            out["plotly_lasso"] = {k: (round(v) if isinstance(v, float) else v) for k, v in old.items()}
            out["ratio_total"] = round(old["total_ms"] / max(new["total_ms"], 1.0), 1)
    finally:
        d.quit()
        server.shutdown()
        for job in _own_jobs():
            job.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--keep", help="write the corpus here (and reuse it when present)")
    ap.add_argument("--embed-images", type=int, default=20_000, help="images the timed t-SNE fits (default 20000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--browser", action="store_true",
                    help="instead of the callback timings: browser time of a lasso around a tenth of the points, in "
                         "headless Chromium, against Plotly's own lasso in the same page")
    ap.add_argument("--no-baseline", action="store_true", help="with --browser: skip Plotly's own lasso")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "corpus"
    build_s = 0.0
    if not (root / "manifest.json").is_file():
        t = time.perf_counter()
        write_synthetic_corpus(root, SyntheticSpec(n_images=args.images, heads=HEADS, methods=("lrp", "ig"),
                                                   vocabulary=VOCABULARY, n_maps=0))
        build_s = time.perf_counter() - t
    if args.browser:
        result = browser_lasso(root, baseline=not args.no_baseline)
    else:
        result = measure(root, args.embed_images)
    result["build_s"] = round(build_s, 1)
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
