"""The Ray engine (issue 11): a local Ray instance gives exactly the tables of the local engine."""

from __future__ import annotations

import pandas as pd
import pytest

from semcontrib.corpus import Corpus
from semcontrib.demo import write_demo_images
from semcontrib.pipeline import RunOptions, analyze, read_inputs
from semcontrib.settings import AnalysisSettings

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (make test installs it)")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_tables_of_the_local_engine_on_the_bundled_photographs(tmp_path, local_ray):
    from semcontrib.engine.ray import run_on_ray

    photos = tmp_path / "photos"
    write_demo_images(photos)
    settings = AnalysisSettings(model="imagenet-heads", methods=("gradcam",), regions="grid", validity=False)
    options = RunOptions(batch_size=4, chunk_size=5, workers=0)
    analyze(photos, tmp_path / "local", settings=settings, options=options)
    rep = run_on_ray(settings, tmp_path / "ray", options, read_inputs(photos))
    assert rep.n_ok == 12 and rep.chunks == (3, 3) and rep.computed["attr:gradcam"] == 12
    a, b = Corpus.open(tmp_path / "local"), Corpus.open(tmp_path / "ray")
    for x, y in ((a.images, b.images), (a.attributions, b.attributions), (a.contributions, b.contributions)):
        pd.testing.assert_frame_equal(x.drop(columns=["path"], errors="ignore"),
                                      y.drop(columns=["path"], errors="ignore"))
    # the corpus is an ordinary one: the local engine finds nothing to do in it
    again = analyze(photos, tmp_path / "ray", settings=settings, options=options)
    assert set(again.computed.values()) == {0} and not again.model_loaded


def test_ray_refuses_what_it_cannot_do(tmp_path):
    from semcontrib.engine.ray import run_on_ray

    settings = AnalysisSettings(model="imagenet-heads", methods=("gradcam",), regions="grid")
    with pytest.raises(ValueError, match="shard"):
        run_on_ray(settings, tmp_path / "c", RunOptions(shard=(1, 2)), [])
    with pytest.raises(ValueError, match="named model"):
        run_on_ray(AnalysisSettings(model="python:mine"), tmp_path / "c", RunOptions(), [])
