"""Small worlds shared by the training unit tests: image folders and labelled sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from semcontrib.training import LabelledSet, LabelReport


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / n)


def labelled_set(targets: list[list[int]], classes: dict[str, tuple[str, ...]]) -> LabelledSet:
    n = len(targets)
    report = LabelReport(n, n, {})
    return LabelledSet([f"i{k}" for k in range(n)], [Path(f"i{k}.jpg") for k in range(n)], list(classes),
                       classes, np.asarray(targets, dtype=np.int64), report)

