"""Screenshots of the dashboard's views in headless Chromium, for docs/dashboard.md and the README.

By default on the synthetic demo corpus of 100,000 images (``semcontrib demo --synthetic 100000``), with
its t-SNE computed first (cached in the corpus folder, so the page opens on it).

Usage: python docs/make_screenshots.py [--corpus DIR | --images 100000] [--out docs/screenshots] [--prefix demo_]

Every tab is taken (overview with the statistics, clusters, statistics comparing two clusters, trust,
table, detail, image, export), the hover card of the topmost point, the sidebar's region weights, the
statistics and detail tabs with split scores, and a lasso drawn on the scatter; the demo corpus with
``--prefix demo_``.

The overview colours the points by one region's score (``--region``, default ``built`` when the corpus has
it, else its first region) on the zero-centred diverging scale; after it, the suggested clusters are drawn
as rings over those colours.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from semcontrib.dashboard import ids as I
from semcontrib.dashboard import layout
from semcontrib.dashboard.app import create_app
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import View
from semcontrib.dashboard.state import url_search
from semcontrib.settings import DEFAULT_BASIS

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-unsafe-swiftshader", "--window-size=1500,1250", "--hide-scrollbars")


# Moves the mouse onto the topmost drawn point (plotly's own hover, as a hand would).
HOVER_TOP = """
const g = document.querySelector('#scatter .js-plotly-plot'), el = g.querySelector('.nsewdrag');
const t = g._fullData[0], xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = el.getBoundingClientRect();
let k = 0;
for (let i = 1; i < t.y.length; i++) { if (t.y[i] > t.y[k]) { k = i; } }
el.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, cancelable: true, view: window,
  clientX: r.left + xa.d2p(t.x[k]), clientY: r.top + ya.d2p(t.y[k])}));
"""


def _corpus(args: argparse.Namespace) -> Path:
    if args.corpus:
        return Path(args.corpus)
    from semcontrib.dashboard.synthetic import demo_spec, write_synthetic_corpus

    root = Path(args.work) / f"synthetic-{args.images}"
    if not (root / "manifest.json").is_file():
        print(f"writing a synthetic corpus of {args.images} images to {root}")
        write_synthetic_corpus(root, demo_spec(args.images))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", help="a corpus directory (default: the synthetic demo corpus)")
    ap.add_argument("--images", type=int, default=100_000, help="size of the synthetic corpus")
    ap.add_argument("--work", default="/tmp/semcontrib-screenshots", help="where the synthetic corpus is written")
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--port", type=int, default=0, help="the local port (default: a free one)")
    ap.add_argument("--prefix", default="", help="file name prefix (demo_ for the demo corpus)")
    ap.add_argument("--region", default=None, help="colour the overview by this region's score")
    ap.add_argument("--edit", action="store_true", help="edit mode: also the 'Edit regions' tab (nothing is saved)")
    args = ap.parse_args()
    from selenium import webdriver
    from werkzeug.serving import make_server

    root = _corpus(args)
    q = CorpusQuery(root)
    head = next(iter(q.heads))
    method = "lrp" if "lrp" in q.methods else q.methods[0]
    spec, X = q.embedding_spec(View(head, method, "signed_l1", DEFAULT_BASIS), "tsne", {})
    if q.cached_embedding(spec) is None:
        t = time.perf_counter()
        q.compute_embedding(spec, X, print)
        print(f"t-SNE of {len(X)} images in {time.perf_counter() - t:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    session = q.session_path  # the page starts fresh: an earlier session is set aside and put back at the end
    saved_session = session.read_bytes() if session.is_file() else None
    session.unlink(missing_ok=True)
    app = create_app(root, edit=args.edit)
    server = make_server("127.0.0.1", args.port, app.server, threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for f in FLAGS:
        options.add_argument(f)
    d = webdriver.Chrome(options=options)
    js = d.execute_script

    def tab(value: str) -> None:
        js(f"document.querySelector('#tabs .tab:nth-child({layout.TABS.index(value) + 1})').click()")

    def wait(script: str, timeout: float = 120) -> None:
        end = time.time() + timeout
        while time.time() < end and not js(script):
            time.sleep(0.3)

    def shot(name: str, scroll_to: str | None = None) -> None:
        if scroll_to:
            js(f"document.getElementById('{scroll_to}').scrollIntoView()")
        time.sleep(1.5)
        d.save_screenshot(str(out / f"{args.prefix}{name}.png"))
        print(out / f"{args.prefix}{name}.png")

    def choose(dropdown: str, text: str) -> None:
        d.find_element("css selector", f"#{dropdown}").click()
        time.sleep(0.8)
        for option in d.find_elements("css selector", ".dash-dropdown-options .dash-dropdown-option"):
            if text in option.text:
                option.click()
                break
        time.sleep(0.5)
        d.find_element("css selector", "body").send_keys("\ue00c")  # Escape closes the menu

    try:
        # the default view by address: the page would otherwise reopen the corpus's last embedding (the split
        # scores of the previous run's last shots)
        d.get(f"http://127.0.0.1:{port}/" + url_search(spec.view.as_dict(), "tsne", "selection"))
        wait("const g=document.querySelector('#scatter .js-plotly-plot');return g&&g._fullData&&g._fullData.length>0")
        time.sleep(2)
        # the overview: points coloured by one region's score (zero-centred diverging scale, colour bar)
        region = args.region or ("built" if "built" in q.vocabulary else q.vocabulary[0])
        choose(I.COLOUR_BY, f"score of {region} (")
        wait("const g=document.querySelector('#scatter .js-plotly-plot');"
             "return g&&g.layout&&g.layout.title&&"
             f"g.layout.title.text.replace(/<br>/g, ' ').includes('{region} (')")
        js(f"document.getElementById('{I.SUMMARY}').open = false")
        time.sleep(3)
        shot("overview")
        # the hover card of the topmost point (it opens below a point near the top of the scatter)
        js(HOVER_TOP)
        wait(f"return document.querySelector('#{I.TOOLTIP}') && "
             f"document.querySelector('#{I.TOOLTIP}').textContent.length > 0", 20)
        shot("hover")
        js("document.querySelector('#scatter .nsewdrag').dispatchEvent(new MouseEvent('mouseout', {bubbles: true}))")
        # the sidebar's region weights
        js("const s = document.querySelector('.sidebar'); const w = [...s.querySelectorAll('label')]"
           ".find(l => l.textContent.startsWith('Region weights')); s.scrollTop = w.offsetTop - 300;")
        shot("weights")
        js("document.querySelector('.sidebar').scrollTop = 0")
        # clusters make selections to compare (drawn as rings over the score colours from now on)
        tab("clusters")
        time.sleep(0.5)
        k = d.find_element("css selector", f"#{I.CLUSTER_K}")
        k.clear()
        k.send_keys("3")
        js(f"document.getElementById('{I.CLUSTER_RUN}').click()")
        wait(f"return document.getElementById('{I.CLUSTER_TEXT}').textContent.includes('clusters')")
        time.sleep(5)
        shot("clusters", I.TABS)
        js("window.scrollTo(0, 0)")
        tab("statistics")
        for name in ("cluster 1", "cluster 2"):  # compare the first two clusters
            d.find_element("css selector", f"#{I.COMPARE}").click()
            time.sleep(0.8)
            for choice in d.find_elements("css selector", ".dash-dropdown-options .dash-dropdown-option"):
                if name in choice.text:
                    choice.click()
                    break
            time.sleep(0.8)
            d.find_element("css selector", "body").send_keys("\ue00c")
        d.find_element("css selector", "body").send_keys("\ue00c")  # Escape closes the menu
        time.sleep(3)
        shot("statistics", I.TABS)
        tab("trust")
        wait("return document.querySelectorAll('#trust-body tbody tr').length > 0")
        shot("trust", I.TABS)
        tab("table")
        wait("return document.querySelectorAll('#table .ag-row').length > 5")
        # the images 100-199 (the synthetic corpus has photographs for its first 500), by faithfulness
        if str(q.ids[0]).startswith("img"):  # (the demo corpus's ids are photo names: no filter there)
            box = d.find_elements("css selector", "#table .ag-floating-filter input")[0]
            box.send_keys("img00001")
            time.sleep(2)
        js("document.querySelector('#table .ag-header-cell[col-id=faithfulness] .ag-header-cell-label').click()")
        time.sleep(1)
        js("document.querySelector('#table .ag-header-cell[col-id=faithfulness] .ag-header-cell-label').click()")
        time.sleep(4)
        shot("table", I.TABS)
        js("window.scrollTo(0, 0)")
        for _ in range(2):  # compare nothing: the filtered set, in corpus order (the first images have photos)
            js("const x = document.querySelector('#compare .dash-dropdown-clear, #compare .Select-clear');"
               "if (x) x.click();")
        time.sleep(1)
        tab("detail")
        wait("return document.querySelectorAll('#detail .image-card img').length > 0")
        time.sleep(4)
        shot("detail", I.TABS)
        js("window.scrollTo(0, 0)")
        js("const g=document.querySelector('#scatter .js-plotly-plot');"
           "g.emit('plotly_click',{points:[{curveNumber:0,pointNumber:5,pointIndex:5}]})")
        wait("return !!document.getElementById('inspector-body')")
        time.sleep(4)
        shot("image", I.TABS)
        js("window.scrollTo(0, 0)")
        # split scores (a column per sign of each region): twice the columns on every axis
        d.find_element("css selector", f"#{I.NORMALISATION} input[value=split]").click()
        tab("statistics")
        time.sleep(6)
        shot("split_statistics", I.TABS)
        js("window.scrollTo(0, 0)")
        tab("detail")
        wait("return document.querySelectorAll('#detail .image-card img').length > 0")
        time.sleep(5)
        shot("split_detail", I.TABS)
        js("window.scrollTo(0, 0)")
        d.find_element("css selector", f"#{I.NORMALISATION} input[value=signed_l1]").click()
        time.sleep(3)
        tab("export")
        time.sleep(2)
        shot("export", I.TABS)
        js("window.scrollTo(0, 0)")
        if args.edit:
            js(f"document.querySelector('#tabs .tab:nth-child({len(layout.TABS) + 1})').click()")
            wait("const g=document.querySelector('#edit-regions-graph .js-plotly-plot');"
                 "return g&&g.layout&&g.layout.images&&g.layout.images.length>0")
            time.sleep(3)
            shot("edit", I.TABS)
            js("window.scrollTo(0, 0)")
            tab("statistics")
        # a lasso drawn on the scatter (the page's own: the polygon is sent once on release)
        js("""const g = document.querySelector('#scatter .js-plotly-plot'), el = g.querySelector('.nsewdrag');
        const r = el.getBoundingClientRect();
        function ev(t, target, a) { target.dispatchEvent(new MouseEvent(t, {bubbles: true, cancelable: true,
          button: 0, buttons: t === 'mouseup' ? 0 : 1, clientX: r.left + r.width * (0.5 + 0.18 * Math.cos(a)),
          clientY: r.top + r.height * (0.5 + 0.25 * Math.sin(a)), view: window})); }
        ev('mousedown', el, 0);
        for (let i = 1; i <= 48; i++) { ev('mousemove', document, 2 * Math.PI * i / 48); }
        ev('mouseup', document, 2 * Math.PI);""")
        wait(f"return !document.getElementById('{I.LASSO_COUNT}').textContent.startsWith('0 images')")
        time.sleep(2)
        shot("lasso")
    finally:
        d.quit()
        server.shutdown()
        if saved_session is not None:
            session.write_bytes(saved_session)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
