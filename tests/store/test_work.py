"""The work store's one read-validate-discard path (semcontrib.store.work): every reader, fed a work file
whose arrays are well formed as npz but wrong for that reader, reads None, records the file and deletes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from semcontrib.store.files import write_npz
from semcontrib.store.work import WorkStore

KEY = "0123456789abcdef"
HEADS = {"task_a": 3}

READERS: dict[str, tuple[Callable[[WorkStore], Path], Callable[[WorkStore], object]]] = {
    "images": (lambda s: s.paths.images(0), lambda s: s.read_images(0, ["a"])),
    "predictions": (lambda s: s.paths.pred(KEY, 0), lambda s: s.read_predictions(KEY, 0, HEADS)),
    "regions": (lambda s: s.paths.regions("grid", KEY, 0), lambda s: s.read_regions("grid", KEY, 0, 4)),
    "attribution": (lambda s: s.paths.attr("lrp", KEY, 0), lambda s: s.read_attribution("lrp", KEY, 0, HEADS, 4)),
    "validity": (lambda s: s.paths.validity(KEY, 0), lambda s: s.read_validity(KEY, 0, [("lrp", "task_a")])),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_discards_a_file_with_the_wrong_arrays(tmp_path: Path, reader: str) -> None:
    store = WorkStore(tmp_path, size=8)
    where, read = READERS[reader]
    path = where(store)
    write_npz(path, {"ids": np.array(["a"]), "unexpected": np.zeros(3)})
    assert read(store) is None
    assert store.discarded == [str(path)]
    assert not path.exists()


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_reader_only_logs_a_bad_file_of_a_readonly_store(tmp_path: Path, reader: str) -> None:
    store = WorkStore(tmp_path, size=8, readonly=True)
    where, read = READERS[reader]
    path = where(store)
    write_npz(path, {"ids": np.array(["a"]), "unexpected": np.zeros(3)})
    assert read(store) is None
    assert store.discarded == [str(path)]
    assert path.exists()


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_missing_file_reads_none_and_discards_nothing(tmp_path: Path, reader: str) -> None:
    store = WorkStore(tmp_path, size=8)
    assert READERS[reader][1](store) is None
    assert store.discarded == []
