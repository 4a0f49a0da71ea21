"""Fixtures of the dashboard tests: a synthetic corpus (built once per session) and Chromium flags."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from semcontrib.dashboard.synthetic import write_synthetic_corpus

CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1200",
                  "--enable-unsafe-swiftshader")


def pytest_setup_options():
    """dash_duo's Chrome options: the flags this sandbox needs."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return options


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 images (+1 skipped), heads nature (2 classes) and biotic (3), methods lrp and ig, 5 regions, with a
    validity record. Shared: tests that write into a corpus (the dashboard's cache) use ``corpus_copy``."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "syn", n_images=40)


@pytest.fixture(scope="session")
def embedded_corpus(synthetic_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic corpus with the t-SNE of its default view cached in its folder (as a dashboard leaves it)."""
    from semcontrib.dashboard.query import CorpusQuery
    from semcontrib.dashboard.records import View

    root = Path(shutil.copytree(synthetic_corpus, tmp_path_factory.mktemp("embedded") / "syn"))
    q = CorpusQuery(root)
    q.compute_embedding(*q.embedding_spec(View("nature", "lrp", "signed_l1", "mean"), "tsne", {}))
    return root


@pytest.fixture
def corpus_copy(embedded_corpus: Path, tmp_path: Path) -> Path:
    """A private copy of ``embedded_corpus`` for one test."""
    return Path(shutil.copytree(embedded_corpus, tmp_path / "syn"))


@pytest.fixture
def free_port() -> int:
    """A free local port (dash_duo's default port sequence collides between xdist workers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
