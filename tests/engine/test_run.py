"""The run's stage declarations and its worker-pool decision (a cheap region source on a small run starts none)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from semcontrib.engine import STAGES, AnalysisRun, RunOptions, analyze
from semcontrib.engine import run as engine_run
from semcontrib.engine.workers import CHEAP_RUN_CHUNKS, Executor, pool_workers
from semcontrib.regions import ImageInput, RegionMap
from semcontrib.settings import AnalysisSettings
from tests.conftest import tiny_model


class Bands:
    """Four horizontal bands; ``cheap`` as the grid source declares it."""

    name = "bands"
    vocabulary = ("band0", "band1", "band2", "band3")
    params: dict[str, Any] = {}
    uses_evidence = False

    def __init__(self, cheap: bool) -> None:
        self.cheap = cheap

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        lab = np.repeat((np.arange(h) * 4 // h).astype(np.int32)[:, None], w, axis=1)
        return RegionMap(lab, self.vocabulary)


@pytest.mark.parametrize(("workers", "cheap", "chunks", "expected"), [
    (2, True, 1, 0),
    (2, True, CHEAP_RUN_CHUNKS - 1, 0),
    (2, True, CHEAP_RUN_CHUNKS, 2),
    (2, False, 1, 2),
    (0, True, 1, 0),
    (0, False, 10, 0),
])
def test_pool_workers_starts_none_for_a_cheap_source_on_a_small_run(workers, cheap, chunks, expected):
    assert pool_workers(workers, Bands(cheap), chunks) == expected


def test_a_source_without_the_attribute_is_not_cheap():
    class Plain:
        name = "plain"

    assert pool_workers(3, Plain(), 1) == 3  # type: ignore[arg-type]


@pytest.fixture
def pools(monkeypatch) -> list[int]:
    """The worker counts the run asks pools for (each pool runs inline here, so no process starts)."""
    asked: list[int] = []

    def recording(workers: int, context: Any) -> Executor:
        asked.append(workers)
        return Executor(0, context)

    monkeypatch.setattr(engine_run, "Executor", recording)
    return asked


@pytest.mark.parametrize(("cheap", "expected"), [(True, 0), (False, 2)])
def test_a_small_run_with_a_cheap_source_starts_no_pool(image_folder, tmp_path, pools, cheap, expected):
    rep = analyze(image_folder, tmp_path / "c", tiny_model(), methods=("gradcam",), regions=Bands(cheap),
                  validity=False, batch_size=3, chunk_size=3, workers=2)
    assert rep.n_ok == 7 and rep.chunks == (3, 3)
    assert pools == [expected]  # one pool for the run, with no process for the cheap source


def test_the_stages_declare_keys_and_inputs(tmp_path):
    settings = AnalysisSettings(model="python:tiny", methods=("gradcam", "occlusion"), regions="grid",
                                validity=True)
    run = AnalysisRun(settings, tmp_path / "c", tiny_model(), RunOptions())
    st = {s.name: s for s in run.stages}
    assert list(st) == ["decode", "images", "predictions", "regions", "targets", "maps:gradcam", "labels",
                        "attr:gradcam", "attr:occlusion", "validity"]
    assert (st["predictions"].key, st["regions"].key, st["validity"].key) == (run.mkey, run.rkey, run.vkey)
    assert st["attr:gradcam"].key == run.method_keys["gradcam"] and st["attr:gradcam"].reads == ("maps:gradcam",
                                                                                                 "labels")
    assert st["attr:occlusion"].reads == ("decode", "labels")  # a region method reads the pixels itself
    assert set(st["validity"].reads) >= {"attr:gradcam", "attr:occlusion", "labels"}
    assert {n: s.group for n, s in st.items() if s.stored} == {
        "images": "model", "predictions": "model", "regions": "regions", "attr:gradcam": "attributions",
        "attr:occlusion": "attributions", "validity": "attributions"}
    assert {s.group for s in run.stages if s.stored} == set(STAGES)  # each group is one Ray stage
    # the work files in the order the manifests' chunk_files digests were recorded with (a rerun compares them)
    p = run.store.paths
    assert [s.path(3) for s in run.stages if s.path is not None] == [
        p.images(3), p.pred(run.mkey, 3), p.regions("grid", run.rkey, 3),
        p.attr("gradcam", run.method_keys["gradcam"], 3), p.attr("occlusion", run.method_keys["occlusion"], 3),
        p.validity(run.vkey, 3)]
    # nothing between the region maps and their first reader reads them: segmentation overlaps the maps
    order = list(st)
    first_reader = min(order.index(n) for n, s in st.items() if "regions" in s.reads)
    assert order.index("maps:gradcam") < first_reader


def test_the_grid_is_cheap_and_a_source_that_reads_evidence_is_not():
    from semcontrib.regions import is_cheap
    from semcontrib.segmentation import make_region_source

    assert is_cheap(make_region_source("grid"))
    assert not is_cheap(make_region_source("landscape"))  # it segments while the model works: workers pay


def test_validity_from_the_stored_predictions_equals_validity_with_the_originals_forwarded(image_folder, tmp_path,
                                                                                            monkeypatch):
    import pandas as pd

    import semcontrib.validity as validity
    from semcontrib.corpus import VALIDITY_VALUES, Corpus

    def tables(out):
        a = Corpus.open(out).attributions
        return a.sort_values(["image_id", "head", "method"]).reset_index(drop=True)[list(VALIDITY_VALUES)]

    kw = dict(methods=("gradcam",), regions=Bands(True), validity=True, validity_baseline="mean", batch_size=3,
              chunk_size=4, workers=0)
    analyze(image_folder, tmp_path / "given", tiny_model(), **kw)
    forward = validity.compute_validity

    def without(*args, original_logits=None, **more):
        return forward(*args, **more)

    monkeypatch.setattr(validity, "compute_validity", without)
    analyze(image_folder, tmp_path / "forwarded", tiny_model(), **kw)
    given, forwarded = tables(tmp_path / "given"), tables(tmp_path / "forwarded")
    assert given["faithfulness"].notna().any()
    pd.testing.assert_frame_equal(given, forwarded, rtol=1e-6)


def test_the_stage_groups_one_after_another_store_what_a_local_run_needs(image_folder, tmp_path):
    from semcontrib.engine import make_plan, read_inputs

    out, model = tmp_path / "c", tiny_model()
    settings = AnalysisSettings(model="python:tiny", methods=("gradcam", "occlusion"), regions="bands",
                                validity=True, validity_baseline="mean")
    run = AnalysisRun(settings, out, model, RunOptions(batch_size=3, chunk_size=3), source=Bands(False))
    plan = make_plan(out, read_inputs(image_folder), 3)
    with pytest.raises(ValueError, match=r"regions reads images, predictions, which is not stored"):
        run.compute_stage("regions", 0, plan.chunks[0])
    with pytest.raises(ValueError, match="stage must be one of"):
        run.compute_stage("tables", 0, plan.chunks[0])
    for group in ("model", "regions", "attributions"):
        for c in plan.chunks:
            run.compute_stage(group, c, plan.chunks[c])
    assert run.computed == {"predictions": 7, "regions": 7, "attr:gradcam": 7, "attr:occlusion": 7, "validity": 7}
    rep = analyze(image_folder, out, model, methods=settings.methods, regions=Bands(False), validity=True,
                  validity_baseline="mean", batch_size=3, chunk_size=3)
    assert rep.n_ok == 7 and set(rep.computed.values()) == {0}  # read, never recomputed


# ---- a rerun with nothing to do never imports torch (issue 22 item 1)

def _torch_modules(importtime: str) -> list[str]:
    """The torch modules named in ``python -X importtime``'s report (stderr): one line per imported module."""
    names = [line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")]
    return sorted(n for n in names if n.split(".")[0] == "torch")


@pytest.fixture
def finished(image_folder, tmp_path, monkeypatch) -> tuple[Any, Any]:
    """(image folder, corpus) analysed with the tiny model named ``tiny``; later loads of it fail loudly."""
    monkeypatch.setattr(engine_run, "load_model", lambda name: tiny_model())
    out = tmp_path / "c"
    rep = analyze(image_folder, out, model="tiny", methods=("gradcam", "occlusion"), regions="grid",
                  validity=False, batch_size=3, chunk_size=3)
    assert rep.chunks == (3, 3) and rep.model_loaded

    def no_model(name: str) -> Any:
        raise AssertionError(f"the model {name!r} was loaded")

    monkeypatch.setattr(engine_run, "load_model", no_model)
    return image_folder, out


def test_the_importtime_report_names_torch_when_torch_is_imported():
    """The check below can fail: the same report of a process that imports torch names it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import semcontrib.model.multitask"],
                          capture_output=True, text=True, check=True)
    assert "torch" in _torch_modules(done.stderr)


@pytest.mark.parametrize("entry", ["api", "cli"])
def test_a_rerun_with_nothing_to_do_never_imports_torch(finished, entry):
    """Through the Python API and through the CLI entry (``python -m semcontrib analyze``), each in a fresh
    process reading the corpus a first run wrote: nothing to compute, the model not loaded, torch never
    imported (``-X importtime`` lists every module the process imported)."""
    import subprocess
    import sys

    folder, out = finished
    if entry == "api":
        code = ("from semcontrib.engine import analyze\n"
                f"rep = analyze({str(folder)!r}, {str(out)!r}, model='tiny', methods=('gradcam', 'occlusion'), "
                "regions='grid', validity=False, batch_size=3, chunk_size=3)\n"
                "print(rep.model_loaded, rep.chunks)")
        args = ["-c", code]
    else:
        args = ["-m", "semcontrib", "analyze", str(folder), "--out", str(out), "--batch-size", "3",
                "--chunk-size", "3"]
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, check=True)
    if entry == "api":
        assert done.stdout.split() == ["False", "(3,", "0)"], done.stdout
    else:
        assert "chunks: 0 of 3 needed work (model not loaded)" in done.stdout, done.stdout
    assert _torch_modules(done.stderr) == []


def test_a_rerun_holds_the_recorded_methods_and_builds_one_when_a_chunk_uses_it(finished, monkeypatch):
    """On a recorded identity the run's methods are ``DeferredMethod``: level and parameters as recorded, the
    method object built only when a chunk computes with it; a rerun with nothing to do builds none."""
    from semcontrib.corpus import Corpus
    from semcontrib.engine.run import DeferredMethod
    from semcontrib.methods import make_method

    folder, out = finished
    settings = AnalysisSettings(model="tiny", methods=("gradcam", "occlusion"), regions="grid", validity=False)
    run = AnalysisRun(settings, out, options=RunOptions(batch_size=3, chunk_size=3))
    assert all(isinstance(m, DeferredMethod) for m in run.methods.values())
    recorded = Corpus.open(out).manifest["methods"]
    for name, method in run.methods.items():
        assert (method.level, method.params) == (recorded[name]["level"], recorded[name]["params"])
        assert method.level == make_method(name).level
    rep = run.run(folder)
    assert rep.chunks == (3, 0)
    assert not rep.model_loaded
    assert [m for m in run.methods.values() if vars(m)["_method"] is not None] == []  # none built
    # a new image: its chunk computes with the methods, built from the settings (the recorded parameters)
    from PIL import Image

    Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(folder / "img99.png")
    monkeypatch.setattr(engine_run, "load_model", lambda name: tiny_model())
    run = AnalysisRun(settings, out, options=RunOptions(batch_size=3, chunk_size=3))
    rep = run.run(folder)
    assert rep.chunks == (4, 1)  # the new image's chunk
    assert rep.model_loaded
    assert rep.computed["attr:occlusion"] == 1
    built = vars(run.methods["gradcam"])["_method"]
    assert type(built) is type(make_method("gradcam")) and built.params == recorded["gradcam"]["params"]
    assert "img99" in " ".join(Corpus.open(out).images.path)
