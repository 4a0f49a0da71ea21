"""Screenshots of the main views in headless Chromium, for docs/dashboard.md.

Usage: python -m dashboard.screenshots CORPUS [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from semcontrib.dashboard import ids as I
from semcontrib.dashboard.app import create_app

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-unsafe-swiftshader", "--window-size=1500,1250", "--hide-scrollbars")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus")
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    from selenium import webdriver
    from werkzeug.serving import make_server

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    app = create_app(args.corpus)
    server = make_server("127.0.0.1", args.port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for f in FLAGS:
        options.add_argument(f)
    d = webdriver.Chrome(options=options)
    js = d.execute_script
    try:
        d.get(f"http://127.0.0.1:{args.port}/")
        for _ in range(200):
            if js("const g=document.querySelector('#scatter .js-plotly-plot');return g&&g.data&&g.data.length>0"):
                break
            time.sleep(0.3)
        time.sleep(1.5)
        # a cluster suggestion makes selections to show
        js("document.querySelector('#tabs .tab:nth-child(4)').click()")
        time.sleep(0.5)
        k = d.find_element("css selector", f"#{I.CLUSTER_K}")
        k.clear()
        k.send_keys("3")
        js(f"document.getElementById('{I.CLUSTER_RUN}').click()")
        time.sleep(3)
        js("document.querySelector('#tabs .tab:nth-child(1)').click()")
        time.sleep(2)
        d.save_screenshot(str(out / "overview.png"))
        for index in (0, 1):  # compare the first two clusters
            choices = d.find_elements("css selector", ".dash-dropdown-options .dash-dropdown-option")
            if len(choices) <= index:
                d.find_element("css selector", f"#{I.COMPARE}").click()
                time.sleep(0.5)
                choices = d.find_elements("css selector", ".dash-dropdown-options .dash-dropdown-option")
            if len(choices) > index:
                choices[index].click()
            time.sleep(0.5)
        d.find_element("css selector", "body").send_keys("\ue00c")  # Escape closes the menu
        time.sleep(2)
        js("document.getElementById('tabs').scrollIntoView()")
        time.sleep(1)
        d.save_screenshot(str(out / "statistics.png"))
        js("window.scrollTo(0, 0)")
        js("document.querySelector('#tabs .tab:nth-child(2)').click()")
        time.sleep(4)
        js("document.getElementById('tabs').scrollIntoView()")
        time.sleep(1)
        d.save_screenshot(str(out / "detail.png"))
        js("const g=document.querySelector('#scatter .js-plotly-plot');"
           "g.emit('plotly_click',{points:[{curveNumber:0,pointNumber:2,customdata:2}]})")
        time.sleep(4)
        js("document.getElementById('tabs').scrollIntoView()")
        time.sleep(1)
        d.save_screenshot(str(out / "image.png"))
    finally:
        d.quit()
        server.shutdown()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
