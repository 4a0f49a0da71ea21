"""Fixtures for the training tests: a small labelled set from the bundled photographs, trained once.

The labelled set (``data/train_labels.csv``: 16 photographs x 4 cropped variants = 64 JPEG files)
and the backbone features are built once per test session. With ``pytest -n``, every worker gets
its own session, so the feature cache lives in the shared base temp folder behind a file lock:
the first worker computes the features, the others read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from semcontrib.training import RunOptions, TrainConfig, TrainOutcome, build_sample_dataset, train

VARIANTS = 4
CONFIG = TrainConfig(n_views=1, seed=0)


@dataclass(frozen=True)
class SampleData:
    images: Path
    labels: Path
    cache: Path


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(autouse=True)
def _one_thread_per_xdist_worker():
    """Under ``pytest -n 2`` on 2 cores, two torch threads per worker oversubscribe the CPU."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    shared = _shared_root(tmp_path_factory) / "semcontrib-training"
    shared.mkdir(parents=True, exist_ok=True)
    with FileLock(str(shared / "data.lock")):
        labels = shared / "data" / "labels.csv"
        if not labels.is_file():
            build_sample_dataset(shared / "data", variants=VARIANTS, seed=0)
    return SampleData(shared / "data" / "images", labels, shared / "cache")


@pytest.fixture(scope="session")
def trained(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    """The sample set trained with a frozen EfficientNet-Lite0 (features cached, shared)."""
    out = tmp_path_factory.mktemp("model")
    with FileLock(str(sample_data.cache.parent / "features.lock")):
        return train(sample_data.images, sample_data.labels, out / "model", config=CONFIG,
                     options=RunOptions(cache_dir=sample_data.cache, report_dir=out / "report"))
