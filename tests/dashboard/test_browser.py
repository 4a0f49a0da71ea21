"""Browser tests: the dashboard on a synthetic corpus in headless Chromium (dash_duo).

Each test starts a fresh app on a private copy of a corpus whose default t-SNE is already cached in
its folder, so the page opens on that embedding at once (as a restarted dashboard does).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from semcontrib.dashboard import edit_ui as E
from semcontrib.dashboard import ids as I
from semcontrib.dashboard import layout, views
from semcontrib.dashboard.app import create_app
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import View

pytestmark = pytest.mark.browser


def _start(dash_duo: Any, corpus: Path, port: int, tmp_path: Path, n: int = 40) -> None:
    dash_duo.start_server(create_app(corpus, cache_dir=tmp_path / "cache"), port=port)
    _wait_points(dash_duo, n)


def _trace(dash_duo: Any) -> dict[str, Any] | None:
    """The scatter's first trace as plain lists (plotly keeps typed arrays)."""
    return dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "if (!g || !g._fullData || !g._fullData.length || !g._fullData[0].x) return null;"
        "const t = g._fullData[0]; return {x: Array.from(t.x), y: Array.from(t.y),"
        " color: Array.from(t.marker.color), customdata: Array.from(t.customdata)};")


def _wait_points(dash_duo: Any, n: int, timeout: float = 60) -> dict[str, Any]:
    end = time.time() + timeout
    t = None
    while time.time() < end:
        t = _trace(dash_duo)
        if t and len(t["x"]) == n:
            return t
        time.sleep(0.2)
    progress = dash_duo.find_element(f"#{I.PROGRESS_TEXT}").text
    raise AssertionError(f"scatter never showed {n} points: {t}; progress: {progress!r}; {dash_duo.get_logs()}")


def _wait_for(predicate: Any, timeout: float = 30, what: str = "") -> Any:
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _click(dash_duo: Any, css: str) -> None:
    """Click by script (an open dropdown menu may cover the element)."""
    dash_duo.driver.execute_script("arguments[0].click()", dash_duo.find_element(css))


def _tab(dash_duo: Any, value: str) -> None:
    _click(dash_duo, f"#{I.TABS} .tab:nth-child({layout.TABS.index(value) + 1})")


def _emit(dash_duo: Any, event: str, indices: list[int]) -> None:
    """Fire a plotly selection/click event with the given corpus indices (as a click or box would)."""
    dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "const pts = arguments[1].map(i => ({curveNumber: 0, pointNumber: i, pointIndex: i, customdata: i,"
        " x: g._fullData[0].x[i], y: g._fullData[0].y[i]}));"
        "g.emit(arguments[0], {points: pts});", event, indices)


def _by_id(dash_duo: Any, component_id: dict[str, str]) -> Any:
    """The element of a pattern-matching id (Dash writes it as compact JSON with sorted keys)."""
    dom_id = json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return dash_duo.driver.execute_script("return document.getElementById(arguments[0])", dom_id)


def _move_slider(dash_duo: Any, column: str, presses: int, key: str = Keys.PAGE_UP) -> None:
    box = _wait_for(lambda: _by_id(dash_duo, {"type": I.RANGE, "column": column}), what=f"slider {column}")
    thumb = box.find_elements(By.CSS_SELECTOR, "[role=slider]")[0]
    thumb.click()
    for _ in range(presses):
        thumb.send_keys(key)
    ActionChains(dash_duo.driver).key_up(key).perform()


# Plotly's drawing listens to DOM mouse events (WebDriver's pointer actions do not reach it headless): a
# freehand lasso is dispatched as a hand makes it, counting the dashboard requests sent while it moves.
LASSO_JS = """
const g = document.querySelector('#scatter .js-plotly-plot'), el = g.querySelector('.nsewdrag');
const r = el.getBoundingClientRect(), pts = arguments[0];
window._requests = 0;
if (!window._fetch) {
  window._fetch = window.fetch;
  window.fetch = function(url, ...rest) {
    if (String(url).includes('_dash-update-component')) { window._requests += 1; }
    return window._fetch(url, ...rest);
  };
}
function ev(type, target, p, buttons) {
  target.dispatchEvent(new MouseEvent(type, {bubbles: true, cancelable: true, button: 0, buttons: buttons,
    clientX: r.left + p[0] * r.width, clientY: r.top + p[1] * r.height, view: window}));
}
ev('mousedown', el, pts[0], 1);
for (const p of pts.slice(1)) { ev('mousemove', document, p, 1); }
const during = window._requests;
ev('mouseup', document, pts[pts.length - 1], 0);
return during;
"""


def _draw_lasso(dash_duo: Any, fractions: list[tuple[float, float]]) -> int:
    """Draw a closed freehand path through ``fractions`` (of the plot area, y down); returns the number of
    requests the page sent while the mouse moved."""
    return int(dash_duo.driver.execute_script(LASSO_JS, [list(p) for p in fractions]))


def _polygon(dash_duo: Any) -> np.ndarray:
    """The polygon the page sent (data coordinates), (K, 2)."""
    sent = dash_duo.driver.execute_script("return window.semcontribLasso || null;")
    assert sent is not None and sent["key"], sent
    return np.column_stack([sent["lasso"]["x"], sent["lasso"]["y"]])


def test_a_freehand_lasso_is_sent_once_on_release_and_tested_on_the_server(
        dash_duo: Any, corpus_copy: Path, free_port: int, tmp_path: Path) -> None:
    """No request while the lasso is drawn, one on release; the count is the server's polygon test on the
    cached embedding; a second lasso replaces the first; a double click clears it."""
    q = CorpusQuery(corpus_copy)
    xy = q.cached_embedding(q.embedding_spec(View("nature", "lrp", "signed_l1", "mean"), "tsne", {})[0])
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    ring = [(0.5 + 0.45 * np.cos(t), 0.5 + 0.45 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]
    left = [(x * 0.6, y) for x, y in ring]
    assert _draw_lasso(dash_duo, left) == 0  # nothing is sent while the mouse moves
    from matplotlib.path import Path as Polygon

    expected = int(Polygon(_polygon(dash_duo)).contains_points(xy).sum())
    assert 1 < expected < 40  # (the count text is plural)
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", f"{expected} images in the lasso")
    assert _draw_lasso(dash_duo, ring) == 0
    everything = int(Polygon(_polygon(dash_duo)).contains_points(xy).sum())  # the new one replaces the first
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", f"{everything} images in the lasso")
    assert everything > expected
    assert dash_duo.driver.execute_script(  # the outline is the page's own: Plotly drew and selected nothing
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "return g.querySelector('svg.semcontrib-lasso polygon').getAttribute('points').split(' ').length;") == 40
    dash_duo.driver.execute_script(
        "document.querySelector('#scatter .nsewdrag').dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))")
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "0 images in the lasso")
    # read-only (no --edit): no edit tab, and an edit request crafted in the page is refused
    assert "Edit regions" not in dash_duo.find_element(f"#{I.TABS}").text
    body = {"output": f"..{E.VERSION}.data...{E.MESSAGE}.children..",
            "outputs": [{"id": E.VERSION, "property": "data"}, {"id": E.MESSAGE, "property": "children"}],
            "inputs": [{"id": E.SAVE, "property": "n_clicks", "value": 1}],
            "state": [{"id": E.NEW_LABEL, "property": "value", "value": "eyes"}],
            "changedPropIds": [f"{E.SAVE}.n_clicks"]}
    status = dash_duo.driver.execute_async_script(
        "const done = arguments[1]; fetch('/_dash-update-component', {method: 'POST', body: arguments[0],"
        " headers: {'Content-Type': 'application/json'}}).then(r => done(r.status), e => done(-1));", json.dumps(body))
    assert status >= 400 and not (corpus_copy / "annotations" / "edits.json").exists()
    assert [entry for entry in dash_duo.get_logs() if "_dash-update-component" not in entry["message"]] == []


HOVER_JS = """
const g = document.querySelector('#scatter .js-plotly-plot'), el = g.querySelector('.nsewdrag');
const r = el.getBoundingClientRect(), xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;
el.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, cancelable: true, view: window,
  clientX: r.left + xa.d2p(arguments[0]), clientY: r.top + ya.d2p(arguments[1])}));
"""


def test_density_mode_hover_anywhere_shows_the_nearest_image(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Density mode (here from 11 images on): the mouse over an image drawn only in the density image, not
    among the sampled points, opens the hover card of that image (the server's nearest-point lookup)."""
    from semcontrib.dashboard import scatter_panel

    monkeypatch.setattr(scatter_panel, "POINTS_MAX", 10)
    monkeypatch.setattr(scatter_panel, "SAMPLE_POINTS", 6)
    q = CorpusQuery(corpus_copy)
    xy = q.cached_embedding(q.embedding_spec(View("nature", "lrp", "signed_l1", "mean"), "tsne", {})[0])
    assert xy is not None
    _start(dash_duo, corpus_copy, free_port, tmp_path, n=6)
    sample = set(_wait_points(dash_duo, 6)["customdata"])
    # an image away from the sampled points (so the hover is the grid's, not a point's)
    far = [k for k in range(40) if k not in sample]
    k = max(far, key=lambda i: min(np.hypot(*(xy[i] - xy[j])) for j in sample))
    dash_duo.driver.execute_script(HOVER_JS, float(xy[k, 0]), float(xy[k, 1]))
    dash_duo.wait_for_contains_text(f"#{I.TOOLTIP}", str(q.ids[k]), timeout=10)
    assert [e for e in dash_duo.get_logs() if "favicon" not in e["message"]] == []


def test_cached_embedding_filter_dims_points_and_keeps_positions(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                                 tmp_path: Path) -> None:
    q = CorpusQuery(corpus_copy)
    spec, _ = q.embedding_spec(View("nature", "lrp", "signed_l1", "mean"), "tsne", {})
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    before = _trace(dash_duo)
    assert before is not None
    cached = q.cached_embedding(spec)
    assert cached is not None  # the restarted page shows the stored t-SNE, not a PCA placeholder
    np.testing.assert_allclose(before["x"], cached[:, 0].astype(np.float32), rtol=1e-6)
    dash_duo.wait_for_contains_text(f"#{I.FILTER_COUNT}", "40 of 40")
    _move_slider(dash_duo, "sky", 6)
    after = _wait_for(lambda: (t := _trace(dash_duo)) and views.CODE_FILTERED in t["color"] and t,
                      what="dimmed points")
    assert after["x"] == before["x"] and after["y"] == before["y"]  # positions fixed
    n_kept = int(dash_duo.find_element(f"#{I.FILTER_COUNT}").text.split(" of ")[0])
    assert 0 < n_kept < 40 and after["color"].count(views.CODE_FILTERED) == 40 - n_kept
    dash_duo.find_element(f"#{I.FILTERED_MODE} input[value=hide]").click()
    _wait_for(lambda: (t := _trace(dash_duo)) and t["color"].count(views.CODE_HIDDEN) == 40 - n_kept, what="hidden")
    dash_duo.select_dcc_dropdown(f"#{I.COLOUR_BY}", value="faithfulness")
    _wait_for(lambda: (t := _trace(dash_duo)) and max(t["color"]) >= views.CODE_FAITH, what="faithfulness colours")
    assert "SYNTHETIC CORPUS" in dash_duo.find_element(f"#{I.SYNTHETIC_BANNER}").text
    assert "40 images analysed, 1 skipped" in dash_duo.find_element(f"#{I.SUMMARY}").text
    assert dash_duo.get_logs() == []


def _shown(dash_duo: Any) -> dict[str, Any] | None:
    """What the scatter shows (its meta: embedding key, algorithm, ready) and what the controls say."""
    return dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "const c = document.querySelector('#algorithm input:checked');"
        "if (!g || !g.layout || !g.layout.meta || !c) return null;"
        "return {algorithm: g.layout.meta.algorithm, ready: g.layout.meta.ready, key: g.layout.meta.key,"
        " control: c.value, x: g._fullData && g._fullData[0].x ? Array.from(g._fullData[0].x) : null};")


def _jobs() -> list[Any]:
    """The background jobs (spawned processes) of this test process's dashboard server."""
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def test_umap_then_back_to_tsne_never_shows_another_view(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                         tmp_path: Path) -> None:
    """The race of the issue: pick UMAP, switch back to t-SNE while its job runs. The job is cancelled,
    and whatever it would have returned, the scatter shows the view the controls say from then on."""
    q = CorpusQuery(corpus_copy)
    tsne = q.cached_embedding(q.embedding_spec(View("nature", "lrp", "signed_l1", "mean"), "tsne", {})[0])
    assert tsne is not None
    umap_file = q._cache_file(q.embedding_spec(View("nature", "lrp", "signed_l1", "mean"), "umap", {})[0].key)
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    started = time.time()
    _click(dash_duo, f"#{I.ALGORITHM} input[value=umap]")
    placeholder = _wait_for(lambda: (s := _shown(dash_duo)) and s["algorithm"] == "umap" and s, what="UMAP placeholder")
    assert not placeholder["ready"]  # a PCA layout of the UMAP view, labelled as such
    dash_duo.wait_for_contains_text(f"#{I.PROGRESS_TEXT}", "UMAP of", timeout=60)  # the job is running
    assert _jobs(), "the UMAP job should be running"
    _click(dash_duo, f"#{I.ALGORITHM} input[value=tsne]")
    _wait_for(lambda: (s := _shown(dash_duo)) and s["algorithm"] == "tsne" and s["ready"], what="t-SNE back")
    switched = time.time()
    samples = 0
    end = time.time() + 120
    while time.time() < end:  # from now until the job is gone (cancelled), and a little after
        s = _shown(dash_duo)
        assert s is not None and s["control"] == "tsne" and s["algorithm"] == "tsne", s
        np.testing.assert_allclose(s["x"], tsne[:, 0].astype(np.float32), rtol=1e-6)
        samples += 1
        if not _jobs() and samples > 10:
            break
        time.sleep(0.2)
    assert not _jobs(), "the superseded UMAP job still runs"
    assert not umap_file.exists()  # cancelled before it could store its result
    title = dash_duo.driver.execute_script(
        "return document.querySelector('#scatter .js-plotly-plot').layout.title.text")
    assert title.startswith("t-SNE of nature / lrp / signed_l1")
    print(f"race: UMAP job seen after {switched - started:.1f} s; {samples} consistent samples until it was gone")


def test_colour_by_a_region_score_has_a_zero_centred_colour_bar_and_lists_selections(
        dash_duo: Any, corpus_copy: Path, free_port: int, tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    _emit(dash_duo, "plotly_selected", [1, 2, 3])
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "3 images in the lasso")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("trio")
    dash_duo.find_element(f"#{I.SELECTION_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    dash_duo.select_dcc_dropdown(f"#{I.COLOUR_BY}", value="score of water (% of the vector)")

    def colour_bar() -> dict[str, Any] | None:
        return dash_duo.driver.execute_script(
            "const g = document.querySelector('#scatter .js-plotly-plot');"
            "if (!g || !g._fullData) return null;"
            "const bar = g._fullData.find(t => t.marker && t.marker.showscale && t.visible === true);"
            "if (!bar) return null;"
            "return {cmin: bar.marker.cmin, cmax: bar.marker.cmax, title: bar.marker.colorbar.title.text,"
            " names: g._fullData.filter(t => t.showlegend !== false).map(t => t.name),"
            " bars: document.querySelectorAll('#scatter .colorbar').length};")

    bar = _wait_for(colour_bar, what="a colour bar")
    assert bar["cmin"] == -bar["cmax"] and bar["cmax"] > 0 and bar["bars"] == 1
    assert bar["title"] == "water (% of the vector)"
    assert "trio (3)" in bar["names"]  # the legend lists the saved selection
    matrix = CorpusQuery(corpus_copy).score_matrix(View("nature", "lrp", "signed_l1", "mean"))
    water = matrix.values[:, matrix.columns.index("water")] * 100
    t = _trace(dash_duo)
    assert t is not None
    expected = views.diverging_codes(water, bar["cmax"])
    assert t["color"] == expected.tolist()  # every point coloured by its own water score
    assert dash_duo.get_logs() == []


def test_session_is_saved_with_the_corpus_and_restored_on_reload(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                                 tmp_path: Path) -> None:
    """Selections, filters, colour and view are saved as they change and come back on reload; filters
    survive a method change; the view is in the address."""
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    _emit(dash_duo, "plotly_selected", [1, 2, 3])
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "3 images in the lasso")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("trio")
    dash_duo.find_element(f"#{I.SELECTION_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    _move_slider(dash_duo, "sky", 6)
    _wait_for(lambda: "40 of 40" not in dash_duo.find_element(f"#{I.FILTER_COUNT}").text, what="filter")
    _click(dash_duo, f"#{I.NORMALISATION} input[value=paper]")
    dash_duo.wait_for_contains_text(f"#{I.FILTER_NOTE}", "kept filters: sky")
    count = _wait_for(lambda: (t := dash_duo.find_element(f"#{I.FILTER_COUNT}").text) and "40 of 40" not in t and t,
                      what="the sky filter under paper")
    dash_duo.select_dcc_dropdown(f"#{I.COLOUR_BY}", value="score of water (% of the vector)")
    dash_duo.wait_for_contains_text(f"#{I.SESSION_TEXT}", "saved with the corpus: 1 selections, 1 filters")
    _wait_for(lambda: "colour=score%3Awater" in dash_duo.driver.current_url, what="the view in the address")
    assert "normalisation=paper" in dash_duo.driver.current_url
    session = corpus_copy / "dashboard" / "session.json"
    assert json.loads(session.read_text())["filters"].keys() == {"sky"}

    dash_duo.driver.refresh()  # the page reopens as it was left
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    dash_duo.wait_for_text_to_equal(f"#{I.FILTER_COUNT}", count)
    assert dash_duo.find_element(f"#{I.NORMALISATION} input[value=paper]").is_selected()
    _wait_for(lambda: "water (% of the vector)" in (dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "return g && g.layout && g.layout.title ? g.layout.title.text : ''") or ""), what="colour by water")
    assert dash_duo.get_logs() == []


def test_selection_detail_sort_and_export(dash_duo: Any, corpus_copy: Path, free_port: int, tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    query = CorpusQuery(corpus_copy)
    chosen = list(range(0, 40, 3))  # 14 images
    _emit(dash_duo, "plotly_selected", chosen)
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "14 images in the lasso")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("every third <b>one</b>")
    dash_duo.find_element(f"#{I.SELECTION_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "every third <b>one</b> (14 images)")  # text, not HTML
    colours = _wait_for(lambda: (t := _trace(dash_duo)) and 1 in t["color"] and t["color"], what="selection colour")
    assert [i for i, c in enumerate(colours) if c == 1] == chosen

    dash_duo.select_dcc_dropdown(f"#{I.COMPARE}", index=0)
    _tab(dash_duo, "detail")
    dash_duo.wait_for_contains_text(f"#{I.DETAIL_PAGE_TEXT}", "page 1 of 2")
    dash_duo.select_dcc_dropdown(f"#{I.DETAIL_SORT}", value="water")
    matrix = query.score_matrix(View("nature", "lrp", "signed_l1", "mean"))
    water = matrix.values[chosen, matrix.columns.index("water")]
    expected = [str(query.ids[chosen[k]]) for k in sorted(range(len(chosen)), key=lambda k: -water[k])][:8]

    def card_ids() -> list[str]:
        return dash_duo.driver.execute_script(
            "return Array.from(document.querySelectorAll('#detail .card-id')).map(e => e.textContent)")

    _wait_for(lambda: card_ids() == expected, what=f"cards sorted by water: {card_ids()} != {expected}")
    assert "faithfulness" in dash_duo.find_element(f"#{I.DETAIL} .validity").text
    _click(dash_duo, f"#{I.DETAIL_ORDER} input[value=asc]")
    _wait_for(lambda: card_ids()[0] == str(query.ids[chosen[int(water.argmin())]]), what="ascending order")
    _click(dash_duo, f"#{I.DETAIL_NEXT}")
    dash_duo.wait_for_contains_text(f"#{I.DETAIL_PAGE_TEXT}", "page 2 of 2")
    _wait_for(lambda: len(card_ids()) == 6, what="6 cards on page 2")
    imgs = dash_duo.find_elements(f"#{I.DETAIL} .image-card img")
    assert all(dash_duo.driver.execute_script("return arguments[0].naturalWidth", im) > 0 for im in imgs)

    _tab(dash_duo, "export")
    dash_duo.select_dcc_dropdown(f"#{I.EXPORT_SCOPE}", index=1)
    _click(dash_duo, f"#{I.EXPORT_CSV}")
    csv = Path(dash_duo.download_path) / "contributions-nature-lrp-signed_l1-mean-s1-long.csv"
    _wait_for(csv.is_file, what="CSV download")
    time.sleep(0.3)
    table = pd.read_csv(csv)
    assert sorted(set(table["image_id"])) == sorted(str(query.ids[k]) for k in chosen)
    assert len(table) == 14 * len(query.vocabulary) and set(table["method"]) == {"lrp"}


def test_table_view_sorts_on_the_server_and_picked_rows_become_a_selection(
        dash_duo: Any, corpus_copy: Path, free_port: int, tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    query = CorpusQuery(corpus_copy)
    _tab(dash_duo, "table")

    def first_ids() -> list[str]:
        return dash_duo.driver.execute_script(
            "return Array.from(document.querySelectorAll('#table .ag-center-cols-container .ag-row'))"
            ".sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))"
            ".map(r => ((r.querySelector('[col-id=image_id]') || {}).textContent || '').trim()).slice(0, 5)")

    _wait_for(lambda: len(first_ids()) == 5 and all(first_ids()), what="table rows")
    assert first_ids() == [str(i) for i in query.ids[:5]]  # corpus order before any sort
    _click(dash_duo, "#table .ag-header-cell[col-id=sky] .ag-header-cell-label")  # ascending
    sky = query.score_matrix(View("nature", "lrp", "signed_l1", "mean")).values[:, 0]
    expected = [str(query.ids[k]) for k in np.argsort(sky, kind="stable")[:5]]
    _wait_for(lambda: first_ids() == expected, what=f"rows sorted by sky: {first_ids()} != {expected}")
    thumbs = dash_duo.find_elements("#table .ag-row img")
    _wait_for(lambda: any(dash_duo.driver.execute_script("return arguments[0].naturalWidth", im) > 0
                          for im in thumbs), what="thumbnails")
    rows = dash_duo.find_elements("#table .ag-center-cols-container .ag-row")[:2]
    for row in rows:
        dash_duo.driver.execute_script("arguments[0].querySelector('[col-id=image_id]').click()", row)
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "2 images picked in the table")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("from the table")
    _click(dash_duo, f"#{I.SELECTION_SAVE}")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "from the table (2 images)")


def test_basis_choice_changes_the_scores_and_the_trust_table(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                             tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    query = CorpusQuery(corpus_copy)

    def bars() -> list[float] | None:
        return dash_duo.driver.execute_script(
            "const g = document.querySelector('#stats-regions .js-plotly-plot');"
            "return g && g._fullData && g._fullData.length ? Array.from(g._fullData[0].y) : null;")

    mean = _wait_for(bars, what="statistics")
    expected = {b: np.round(np.nanmean(query.score_matrix(View("nature", "lrp", "signed_l1", b)).values, axis=0)
                            * 100, 4) for b in ("mean", "sum")}  # in % of the vector
    np.testing.assert_allclose(mean, expected["mean"], atol=2e-4)
    dash_duo.find_element(f"#{I.BASIS} input[value=sum]").click()
    # wait for the final render (an intermediate one may already differ from the mean basis)
    summed = _wait_for(lambda: (b := bars()) and np.allclose(b, expected["sum"], atol=2e-4) and b,
                       what="sum-basis statistics")
    np.testing.assert_allclose(summed, expected["sum"], atol=2e-4)
    _tab(dash_duo, "trust")
    dash_duo.wait_for_contains_text("#trust-body", "median faithfulness")
    rows = dash_duo.find_elements("#trust-body tbody tr")
    assert len(rows) == 4  # 2 heads x 2 methods


def test_click_opens_the_image_inspector_with_validity(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                       tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    query = CorpusQuery(corpus_copy)
    dash_duo.driver.execute_script(
        "document.querySelector('#scatter .js-plotly-plot').emit('plotly_hover', {points: [{curveNumber: 0,"
        " pointNumber: 7, pointIndex: 7, bbox: {x0: 300, x1: 305, y0: 200, y1: 205}}]})")
    dash_duo.wait_for_contains_text(f"#{I.TOOLTIP}", str(query.ids[7]))
    _emit(dash_duo, "plotly_click", [5])
    dash_duo.wait_for_contains_text("#inspector-body", str(query.ids[5]))
    assert "faithfulness" in dash_duo.find_element("#inspector-body .validity-table").text


def test_state_save_and_reload(dash_duo: Any, corpus_copy: Path, free_port: int, tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    _emit(dash_duo, "plotly_selected", [1, 2, 3])
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "3 images in the lasso")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("trio")
    dash_duo.find_element(f"#{I.SELECTION_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    dash_duo.find_element(f"#{I.NORMALISATION} input[value=split]").click()
    _move_slider(dash_duo, "water+", 5)
    _wait_for(lambda: "40 of 40" not in dash_duo.find_element(f"#{I.FILTER_COUNT}").text, what="filter")
    count = dash_duo.find_element(f"#{I.FILTER_COUNT}").text
    _tab(dash_duo, "export")
    dash_duo.find_element(f"#{I.STATE_SAVE}").click()
    saved = Path(dash_duo.download_path) / "dashboard-state.json"
    _wait_for(lambda: saved.is_file() and saved.stat().st_size > 0, what="state download")
    time.sleep(0.3)
    state = json.loads(saved.read_text())
    assert state["normalisation"] == "split" and list(state["filters"]) == ["water+"]
    assert state["selections"][0]["name"] == "trio" and len(state["selections"][0]["image_ids"]) == 3

    dash_duo.driver.refresh()  # a fresh page
    _wait_points(dash_duo, 40)
    _tab(dash_duo, "export")
    dash_duo.find_element(f"#{I.STATE_UPLOAD} input[type=file]").send_keys(str(saved))
    dash_duo.wait_for_contains_text(f"#{I.STATE_MESSAGE}", "state loaded: 1 filters, 1 selections")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    dash_duo.wait_for_text_to_equal(f"#{I.FILTER_COUNT}", count)
    assert dash_duo.find_element(f"#{I.NORMALISATION} input[value=split]").is_selected()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**state, "filters": []}))
    dash_duo.find_element(f"#{I.STATE_UPLOAD} input[type=file]").send_keys(str(bad))
    dash_duo.wait_for_contains_text(f"#{I.STATE_MESSAGE}", "state not loaded: filters must be an object")


def test_clusters_and_weighted_reembedding_run_in_the_background(dash_duo: Any, corpus_copy: Path, free_port: int,
                                                                 tmp_path: Path) -> None:
    _start(dash_duo, corpus_copy, free_port, tmp_path)
    before = _trace(dash_duo)
    assert before is not None
    _tab(dash_duo, "clusters")
    _click(dash_duo, f"#{I.CLUSTER_RUN}")
    dash_duo.wait_for_contains_text(f"#{I.CLUSTER_TEXT}", "4 clusters", timeout=90)
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "kmeans cluster 4")
    weight = _by_id(dash_duo, {"type": I.WEIGHT, "region": "person"})
    weight.send_keys(Keys.BACKSPACE, "0", Keys.TAB)
    _click(dash_duo, f"#{I.RECOMPUTE}")
    dash_duo.wait_for_contains_text(f"#{I.PROGRESS_TEXT}", "t-SNE ready and shown", timeout=120)
    after = _wait_for(lambda: (t := _trace(dash_duo)) and t["x"] != before["x"] and t, timeout=30,
                      what="the new embedding")
    assert len(after["x"]) == 40


def test_synthetic_demo_opens_labelled_synthetic(dash_duo: Any, free_port: int, tmp_path: Path) -> None:
    from semcontrib.cli import main

    assert main(["demo", "--synthetic", "120", "--out", str(tmp_path), "--no-dashboard"]) == 0
    _start(dash_duo, tmp_path / "synthetic-120", free_port, tmp_path, n=120)  # a PCA layout while t-SNE runs
    assert "SYNTHETIC CORPUS" in dash_duo.find_element(f"#{I.SYNTHETIC_BANNER}").text
    assert "synthetic" in dash_duo.find_element("h3").text
    dash_duo.wait_for_contains_text(f"#{I.SUMMARY}", "120 images analysed, 3 skipped")


def test_real_demo_corpus_loads_in_the_browser(dash_duo: Any, real_corpus: Path, free_port: int,
                                               tmp_path: Path) -> None:
    """The dashboard on a corpus analysed by the real pipeline: scatter, photos in the detail panel."""
    dash_duo.start_server(create_app(real_corpus, cache_dir=tmp_path / "cache"), port=free_port)
    _wait_points(dash_duo, 3, timeout=90)
    dash_duo.wait_for_contains_text(f"#{I.FILTER_COUNT}", "3 of 3")
    _tab(dash_duo, "detail")

    def loaded() -> list[Any]:
        found = [im for im in dash_duo.driver.find_elements(By.CSS_SELECTOR, "img")
                 if im.get_attribute("naturalWidth") not in (None, "0")]
        return found if len(found) >= 3 else []

    images = _wait_for(loaded, timeout=30, what="three photos in the detail panel")
    assert all("/corpus/" in (im.get_attribute("src") or "") for im in images)
    assert "images analysed" in dash_duo.find_element(f"#{I.SUMMARY}").text
