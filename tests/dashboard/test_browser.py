"""Browser tests: the dashboard on a synthetic corpus in headless Chromium (dash_duo)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from semcontrib.dashboard import figures
from semcontrib.dashboard import ids as I
from semcontrib.dashboard.app import create_app
from semcontrib.dashboard.query import CorpusQuery

pytestmark = pytest.mark.browser

GRAPH_JS = "return document.querySelector('#{} .js-plotly-plot')"


def _start(dash_duo: Any, corpus: Path, port: int, tmp_path: Path) -> None:
    dash_duo.start_server(create_app(corpus, cache_dir=tmp_path / "cache"), port=port)
    _wait_points(dash_duo, 40)


def _trace(dash_duo: Any) -> dict[str, Any]:
    return dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "if (!g || !g.data || !g.data.length) return null;"
        "const t = g.data[0]; return {x: t.x, y: t.y, color: t.marker.color, customdata: t.customdata};")


def _wait_points(dash_duo: Any, n: int, timeout: float = 60) -> dict[str, Any]:
    end = time.time() + timeout
    while time.time() < end:
        t = _trace(dash_duo)
        if t and len(t["x"]) == n:
            return t
        time.sleep(0.2)
    progress = dash_duo.find_element(f"#{I.PROGRESS_TEXT}").text
    raise AssertionError(f"scatter never showed {n} points: {t}; progress: {progress!r}; {dash_duo.get_logs()}")


def _wait_for(predicate: Any, timeout: float = 20, what: str = "") -> Any:
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


def _tab(dash_duo: Any, n: int) -> None:
    _click(dash_duo, f"#{I.TABS} .tab:nth-child({n})")


def _emit(dash_duo: Any, event: str, indices: list[int]) -> None:
    """Fire a plotly selection/click event with the given corpus indices (as a lasso or click would)."""
    dash_duo.driver.execute_script(
        "const g = document.querySelector('#scatter .js-plotly-plot');"
        "const pts = arguments[1].map(i => ({curveNumber: 0, pointNumber: i, pointIndex: i, customdata: i,"
        " x: g.data[0].x[i], y: g.data[0].y[i]}));"
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


def test_region_filter_dims_points_and_keeps_positions(dash_duo: Any, synthetic_corpus: Path, free_port: int,
                                                       tmp_path: Path) -> None:
    _start(dash_duo, synthetic_corpus, free_port, tmp_path)
    before = _trace(dash_duo)
    dash_duo.wait_for_contains_text(f"#{I.FILTER_COUNT}", "40 of 40")
    _move_slider(dash_duo, "sky", 6)
    after = _wait_for(lambda: (t := _trace(dash_duo)) and figures.FILTERED_COLOUR in t["color"] and t,
                      what="dimmed points")
    assert after["x"] == before["x"] and after["y"] == before["y"]  # positions fixed
    text = dash_duo.find_element(f"#{I.FILTER_COUNT}").text
    n_kept = int(text.split(" of ")[0])
    assert 0 < n_kept < 40 and after["color"].count(figures.FILTERED_COLOUR) == 40 - n_kept
    dash_duo.find_element(f"#{I.FILTERED_MODE} input[value=hide]").click()
    _wait_points(dash_duo, n_kept)
    assert dash_duo.get_logs() == []


def test_selection_detail_sort_and_export(dash_duo: Any, synthetic_corpus: Path, free_port: int,
                                          tmp_path: Path) -> None:
    _start(dash_duo, synthetic_corpus, free_port, tmp_path)
    query = CorpusQuery(synthetic_corpus)
    chosen = list(range(0, 40, 3))  # 14 images
    _emit(dash_duo, "plotly_selected", chosen)
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "14 images in the lasso")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("every third <b>one</b>")
    dash_duo.find_element(f"#{I.SELECTION_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "every third <b>one</b> (14 images)")  # text, not HTML
    colours = _wait_for(lambda: (t := _trace(dash_duo)) and "rgba(31,119,180,0.9)" in t["color"] and t["color"],
                        what="selection colour")
    assert [i for i, c in enumerate(colours) if c == "rgba(31,119,180,0.9)"] == chosen

    dash_duo.select_dcc_dropdown(f"#{I.COMPARE}", index=0)
    _tab(dash_duo, 2)
    dash_duo.wait_for_contains_text(f"#{I.DETAIL_PAGE_TEXT}", "page 1 of 2")
    dash_duo.select_dcc_dropdown(f"#{I.DETAIL_SORT}", value="water")
    matrix = query.score_matrix("biotic", "lrp", "signed_l1")
    water = matrix.values[chosen, matrix.columns.index("water")]
    expected = [str(query.ids[chosen[k]]) for k in sorted(range(len(chosen)), key=lambda k: -water[k])][:8]

    def card_ids() -> list[str]:
        return dash_duo.driver.execute_script(
            "return Array.from(document.querySelectorAll('#detail .card-id')).map(e => e.textContent)")

    _wait_for(lambda: card_ids() == expected, what=f"cards sorted by water: {card_ids()} != {expected}")
    _click(dash_duo, f"#{I.DETAIL_ORDER} input[value=asc]")
    _wait_for(lambda: card_ids()[0] == str(query.ids[chosen[int(water.argmin())]]), what="ascending order")
    _click(dash_duo, f"#{I.DETAIL_NEXT}")
    dash_duo.wait_for_contains_text(f"#{I.DETAIL_PAGE_TEXT}", "page 2 of 2")
    _wait_for(lambda: len(card_ids()) == 6, what="6 cards on page 2")
    imgs = dash_duo.find_elements(f"#{I.DETAIL} .image-card img")
    assert all(dash_duo.driver.execute_script("return arguments[0].naturalWidth", im) > 0 for im in imgs)

    _tab(dash_duo, 5)
    dash_duo.select_dcc_dropdown(f"#{I.EXPORT_SCOPE}", index=1)
    _click(dash_duo, f"#{I.EXPORT_CSV}")
    csv = Path(dash_duo.download_path) / "contributions-biotic-lrp-signed_l1-s1.csv"
    _wait_for(csv.is_file, what="CSV download")
    table = pd.read_csv(csv)
    assert sorted(set(table["image_id"])) == sorted(str(query.ids[k]) for k in chosen)
    assert len(table) == 14 * len(query.vocabulary) and set(table["method"]) == {"lrp"}
    _click(dash_duo, f"#{I.EXPORT_PARQUET}")
    pq = csv.with_suffix(".parquet")
    _wait_for(lambda: pq.is_file() and pq.stat().st_size > 0, what="Parquet download")
    time.sleep(0.3)
    pd.testing.assert_frame_equal(pd.read_parquet(pq)[["image_id", "region", "score"]],
                                  table[["image_id", "region", "score"]], check_exact=False)


def test_click_opens_the_image_inspector(dash_duo: Any, synthetic_corpus: Path, free_port: int,
                                         tmp_path: Path) -> None:
    _start(dash_duo, synthetic_corpus, free_port, tmp_path)
    query = CorpusQuery(synthetic_corpus)
    dash_duo.driver.execute_script(
        "document.querySelector('#scatter .js-plotly-plot').emit('plotly_hover', {points: [{curveNumber: 0,"
        " pointNumber: 7, customdata: 7, bbox: {x0: 300, x1: 305, y0: 200, y1: 205}}]})")
    dash_duo.wait_for_contains_text(f"#{I.TOOLTIP}", str(query.ids[7]))
    thumb = dash_duo.find_element(f"#{I.TOOLTIP} img")
    _wait_for(lambda: dash_duo.driver.execute_script("return arguments[0].naturalWidth", thumb) > 0, what="thumb")
    _emit(dash_duo, "plotly_click", [5])
    dash_duo.wait_for_contains_text("#inspector-body", str(query.ids[5]))
    assert "agreement between methods" in dash_duo.find_element(f"#{I.INSPECTOR}").text or \
        dash_duo.find_elements("#inspector-body .js-plotly-plot")


def test_state_save_and_reload(dash_duo: Any, synthetic_corpus: Path, free_port: int, tmp_path: Path) -> None:
    _start(dash_duo, synthetic_corpus, free_port, tmp_path)
    _emit(dash_duo, "plotly_selected", [1, 2, 3])
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "3 images in the lasso")
    dash_duo.find_element(f"#{I.SELECTION_NAME}").send_keys("trio")
    dash_duo.find_element(f"#{I.SELECTION_SAVE}").click()
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    dash_duo.find_element(f"#{I.NORMALISATION} input[value=split]").click()
    _move_slider(dash_duo, "water+", 5)
    _wait_for(lambda: "40 of 40" not in dash_duo.find_element(f"#{I.FILTER_COUNT}").text, what="filter")
    count = dash_duo.find_element(f"#{I.FILTER_COUNT}").text
    weight = _by_id(dash_duo, {"type": I.WEIGHT, "region": "sky"})
    weight.send_keys(Keys.BACKSPACE, "2.5", Keys.TAB)
    _tab(dash_duo, 5)
    dash_duo.find_element(f"#{I.STATE_SAVE}").click()
    saved = Path(dash_duo.download_path) / "dashboard-state.json"
    _wait_for(lambda: saved.is_file() and saved.stat().st_size > 0, what="state download")
    time.sleep(0.3)
    state = json.loads(saved.read_text())
    assert state["normalisation"] == "split" and list(state["filters"]) == ["water+"]
    assert state["weights"]["sky"] == 2.5 and state["selections"][0]["name"] == "trio"

    dash_duo.driver.refresh()  # a fresh page: default state
    _wait_points(dash_duo, 40)
    dash_duo.wait_for_contains_text(f"#{I.FILTER_COUNT}", "40 of 40")
    _tab(dash_duo, 5)
    dash_duo.find_element(f"#{I.STATE_UPLOAD} input[type=file]").send_keys(str(saved))
    dash_duo.wait_for_contains_text(f"#{I.STATE_MESSAGE}", "state loaded: 1 filters, 1 selections")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "trio (3 images)")
    dash_duo.wait_for_text_to_equal(f"#{I.FILTER_COUNT}", count)
    assert dash_duo.find_element(f"#{I.NORMALISATION} input[value=split]").is_selected()
    _wait_for(lambda: _by_id(dash_duo, {"type": I.WEIGHT, "region": "sky"}).get_attribute("value") == "2.5",
              what="restored weight")


def test_edit_selections_clusters_and_weighted_reembedding(dash_duo: Any, synthetic_corpus: Path, free_port: int,
                                                           tmp_path: Path) -> None:
    _start(dash_duo, synthetic_corpus, free_port, tmp_path)
    before = _trace(dash_duo)
    _emit(dash_duo, "plotly_selected", [4, 5])
    dash_duo.wait_for_text_to_equal(f"#{I.LASSO_COUNT}", "2 images in the lasso")
    _click(dash_duo, f"#{I.SELECTION_SAVE}")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "selection 1 (2 images)")
    dash_duo.select_dcc_dropdown(f"#{I.EDIT_TARGET}", index=0)
    dash_duo.find_element(f"#{I.EDIT_NAME}").send_keys("pair")
    _click(dash_duo, f"#{I.EDIT_RENAME}")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "pair (2 images)")
    dash_duo.select_dcc_dropdown(f"#{I.EDIT_COLOUR}", index=3)
    _click(dash_duo, f"#{I.EDIT_RECOLOUR}")
    _wait_for(lambda: (t := _trace(dash_duo)) and t["color"][4] == "rgba(214,39,40,0.9)", what="recoloured")
    _click(dash_duo, f"#{I.EDIT_DELETE}")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "no selections yet")

    _tab(dash_duo, 4)
    _click(dash_duo, f"#{I.CLUSTER_RUN}")
    dash_duo.wait_for_contains_text(f"#{I.CLUSTER_TEXT}", "4 clusters")
    dash_duo.wait_for_contains_text(f"#{I.SELECTION_LIST}", "kmeans cluster 4")

    weight = _by_id(dash_duo, {"type": I.WEIGHT, "region": "person"})
    weight.send_keys(Keys.BACKSPACE, "0", Keys.TAB)
    _click(dash_duo, f"#{I.RECOMPUTE}")
    after = _wait_for(lambda: (t := _trace(dash_duo)) and t["x"] != before["x"] and t, timeout=60,
                      what="a new embedding")
    assert len(after["x"]) == 40
    dash_duo.wait_for_contains_text(f"#{I.PROGRESS_TEXT}", "embedding ready")


def test_real_demo_corpus_loads_in_the_browser(dash_duo: Any, real_corpus: Path, free_port: int,
                                               tmp_path: Path) -> None:
    """The dashboard on a corpus analysed by the real pipeline: scatter, statistics, photos in the detail panel."""
    dash_duo.start_server(create_app(real_corpus, cache_dir=tmp_path / "cache"), port=free_port)
    _wait_points(dash_duo, 3, timeout=90)
    dash_duo.wait_for_contains_text(f"#{I.FILTER_COUNT}", "3 of 3")
    _tab(dash_duo, 2)
    def loaded() -> list[Any]:
        found = [im for im in dash_duo.driver.find_elements(By.CSS_SELECTOR, "img")
                 if im.get_attribute("naturalWidth") not in (None, "0")]
        return found if len(found) >= 3 else []

    images = _wait_for(loaded, timeout=30, what="three photos in the detail panel")
    assert all("/corpus/" in (im.get_attribute("src") or "") for im in images)
    assert dash_duo.get_logs() == []
