"""Worker processes decode, make display JPEGs and run torch-free region sources without ever importing
torch (a spawned worker starts in a fraction of the 2-3 s an import of torch takes); a source that
needs torch says so and gets it."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from PIL import Image

from semcontrib.engine.workers import PrepareJob, RegionContext, _Executor, prepare_image
from semcontrib.regions import ImageInput, RegionMap


class TorchProbe:
    """Region 1 everywhere when torch is imported in the process that segments, else region 0."""

    name = "probe"
    vocabulary = ("without_torch", "with_torch")
    params: dict[str, Any] = {}
    uses_evidence = False
    uses_torch = False

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        return RegionMap(np.full((h, w), int("torch" in sys.modules), np.int32), self.vocabulary)


class TorchUser(TorchProbe):
    uses_torch = True


def _prepare(tmp_path, source, workers: int):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(path)
    executor = _Executor(workers, RegionContext(source, source.vocabulary, (), 8))
    try:
        return executor.submit(prepare_image, PrepareJob("photo-0", path, 8, True, True)).result()
    finally:
        executor.close()


def test_a_worker_decodes_and_segments_without_importing_torch(tmp_path):
    prepared = _prepare(tmp_path, TorchProbe(), workers=1)
    assert prepared.record.status == "ok" and prepared.display_jpeg.startswith(b"\xff\xd8")
    assert prepared.rgb is not None and prepared.rgb.shape == (8, 8, 3)
    assert prepared.regions is not None and prepared.regions.labels is not None
    assert set(np.unique(prepared.regions.labels)) == {0}  # torch was not in the worker's sys.modules


def test_a_source_that_needs_torch_gets_it_in_its_worker(tmp_path):
    prepared = _prepare(tmp_path, TorchUser(), workers=1)
    assert prepared.regions is not None and prepared.regions.labels is not None
    assert set(np.unique(prepared.regions.labels)) == {1}
