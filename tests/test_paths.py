"""Shipped data files are read from inside the package (importlib.resources), not from a checkout."""

from __future__ import annotations

import json

import pytest

from semcontrib.paths import data_dir, data_path


def test_data_files_come_from_the_package(monkeypatch) -> None:
    monkeypatch.delenv("SEMCONTRIB_DATA", raising=False)
    import semcontrib.data

    assert data_dir().samefile(next(iter(semcontrib.data.__path__)))
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())
    assert set(groups["heads"]) >= {"nature", "biotic", "landscape"}
    for name in ("landscape_annotations.coco.json", "mapping_ade20k.json", "train_labels.csv"):
        assert data_path(name).is_file()


def test_missing_file_and_override(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="shipped data file missing"):
        data_path("nothing.json")
    (tmp_path / "x.json").write_text("{}")
    monkeypatch.setenv("SEMCONTRIB_DATA", str(tmp_path))
    assert data_path("x.json") == tmp_path / "x.json"
