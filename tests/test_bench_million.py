"""benchmarks/bench_million.py at a tiny size, so that the million-image benchmark cannot rot: its corpus is
a readable corpus of the promised shape, each phase gives its figures (planning reruns plan nothing, a
compacted corpus has fewer parts and the same rows), and the summary names every goal."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_million", BENCH / "bench_million.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def corpus(bench, tmp_path_factory):
    root = tmp_path_factory.mktemp("million") / "corpus"
    written = bench.write_corpus(root, 300)
    return root, written


def test_the_corpus_is_written_through_the_store_with_every_head_method_and_region(bench, corpus):
    from semcontrib.corpus import Corpus

    root, written = corpus
    c = Corpus.open(root)
    assert written["parts"] == 2 * 4 * 3 and written["bytes"] > 0
    assert len(c.contributions) == written["rows_contributions"] == 300 * 4 * 3 * 8
    assert len(c.attributions) == 300 * 4 * 3
    assert c.heads == list(bench.HEADS) and c.methods == list(bench.METHODS) and c.vocabulary == list(bench.VOCABULARY)
    assert (c.images["status"] == "ok").sum() == 300


def test_planning_reruns_plan_nothing_and_adding_plans_only_the_new_files(bench, tmp_path):
    from common import make_files  # the benchmarks' shared helpers (on the path while ``bench`` is)

    make_files(tmp_path / "in", 0, 40)
    params = {"tree": str(bench.REPO), "folder": str(tmp_path / "in"), "root": str(tmp_path / "plan")}
    first = bench.phase_plan(params)
    rerun = bench.phase_plan(params)
    make_files(tmp_path / "in", 10**8 - 40, 3)
    added = bench.phase_plan(params)
    assert (first["inputs"], first["new_images"]) == (40, 40)
    assert (rerun["inputs"], rerun["new_images"]) == (40, 0)
    assert (added["inputs"], added["new_images"]) == (43, 3)


def test_view_phase_times_every_interaction_on_a_lazily_read_view(bench, corpus):
    root, _ = corpus
    r = bench.phase_view({"root": str(root), "n": 300})
    assert r["export_images"] == 300 and r["export_bytes"] > 0
    assert 0 < r["lasso_images"] < 300 and 0 < r["filtered"] < 300
    assert set(r["sort_ms_by_column"]) == {"sky", "image_id", "pred_landscape", "faithfulness"}
    engine = bench.phase_engine({"root": str(root), "n": 300})
    assert (engine["filtered"], engine["lasso_images"]) == (r["filtered"], r["lasso_images"])  # same view, same answer


def test_compaction_phase_merges_the_grown_corpus_into_equal_tables(bench, tmp_path):
    r = bench.phase_compact({"work": str(tmp_path), "n": 400, "runs": 3, "open": True})
    assert r["parts_once"] == 24 and r["parts_grown"] == 24 * 3 and r["parts_compacted"] == 24
    assert r["equal"] is True and r["report"] == [72, 24]


def test_summary_names_each_goal_and_marks_failures(bench):
    view = {"read_s": 0.1, "first_view_s": 0.1, "open_s": 0.2, "filter_ms": 1.0, "filtered": 5,
            "lasso_ms": 600.0, "lasso_images": 3, "sort_ms": 2.0, "sort_ms_by_column": {"sky": 2.0},
            "export_s": 0.5, "export_images": 10, "export_bytes": 100, "peak_mb": 10.0}
    res = {"view": view, "engine": {**view, "export_s": 7.0}, "engine_before": {**view, "export_s": 9.5},
           "reader_ref": "abc1234",
           "open": {"failed": "over the memory limit (10 MB) after 3 s", "watch_peak_mb": 11.0}}
    rows = bench.summary_rows(res, Namespace(n=10, baseline_n=10))
    met = {label.strip(): m for label, _, _, m, _ in rows}
    base = {label.strip(): b for label, _, _, _, b in rows}
    assert met["lazy view read by hand (one head x method): filter (one region range)"] == "yes"
    assert met["lazy view read by hand (one head x method): lasso (polygon on the server + selection)"] == "NO"
    assert met["Corpus.open"] == "NO"
    export = "engine (CorpusQuery): export of a 10-image selection (CSV, long)"
    assert met[export] == "NO" and base[export] == "before (abc1234): 9.50 s"  # the baseline reader, same run


def test_export_steps_time_the_engines_csv_against_pandas(bench):
    import pandas as pd

    table = pd.DataFrame({"image_id": ["=a", "b"], "score": [0.5, -0.25]})
    steps = bench._export_steps(table, 0.0)
    assert steps["csv_writer"] == "pyarrow.csv" and steps["bytes"] > 0 and steps["pandas_bytes"] > 0
    assert steps["engine_csv_s"] >= 0 and steps["pandas_csv_s"] >= steps["csv_s"]
