"""Scoring a region source against hand-drawn annotations, and the bundled photographs to score on.

Per class ``c`` over all scored pixels of all images (pooled confusion matrix):

* pixel accuracy (recall) = pixels of ``c`` labelled ``c`` / pixels annotated ``c``;
* IoU = TP / (TP + FP + FN), counting false positives only on annotated pixels.

Pixels that are unannotated, or annotated ``void``, are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_NAMES = ("void",)

#: file name -> (package, loader) of real photographs shipped inside installed packages
BUNDLED_PHOTOGRAPHS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "china.jpg",
                       "flower.jpg", "grace_hopper.jpg")


def load_bundled_photograph(file_name: str) -> np.ndarray:
    """uint8 HxWx3 of a bundled photograph (scikit-image, scikit-learn or matplotlib sample data)."""
    if file_name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"):
        from skimage import data

        return np.ascontiguousarray(getattr(data, file_name.split(".")[0])()[..., :3])
    if file_name in ("china.jpg", "flower.jpg"):
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(file_name))
    if file_name == "grace_hopper.jpg":
        from matplotlib import cbook
        from PIL import Image

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        with Image.open(str(path)) as im:
            return np.asarray(im.convert("RGB"))
    raise ValueError(f"unknown bundled photograph {file_name!r}; choose from {BUNDLED_PHOTOGRAPHS}")


@dataclass(frozen=True)
class Scores:
    """Per-class pixel accuracy and IoU (NaN where a class never occurs) plus pooled counts."""

    classes: tuple[str, ...]
    confusion: np.ndarray  # int64 K x K, rows = annotated class, columns = predicted class
    accuracy: dict[str, float]
    iou: dict[str, float]
    overall_accuracy: float
    n_pixels: int


def confusion(predicted: np.ndarray, pred_names: Sequence[str], truth: np.ndarray,
              truth_names: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """K x K confusion counts on the pixels whose truth label is a name in ``classes``."""
    k = len(classes)
    index = {n: i for i, n in enumerate(classes)}
    p_lut = np.array([index.get(n, -1) for n in pred_names] + [-1])
    t_lut = np.array([index.get(n, -1) for n in truth_names] + [-1])
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction {predicted.shape} and annotation {truth.shape} differ in size")
    t = t_lut[truth]  # -1 indexes the trailing -1
    p = p_lut[predicted]
    keep = t >= 0
    p_kept = np.where(p[keep] >= 0, p[keep], k)  # predictions outside ``classes`` count as misses
    counts = np.bincount(t[keep] * (k + 1) + p_kept, minlength=k * (k + 1)).reshape(k, k + 1)
    out: np.ndarray = counts[:, :k].astype(np.int64)
    return out


def scores(conf: np.ndarray, classes: Sequence[str], n_pixels: int | None = None) -> Scores:
    """Per-class accuracy and IoU from a confusion matrix (rows = truth)."""
    tp = np.diag(conf).astype(np.float64)
    gt = conf.sum(1).astype(np.float64)
    pred = conf.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp / gt
        iou = tp / (gt + pred - tp)
    total = int(conf.sum()) if n_pixels is None else n_pixels
    return Scores(tuple(classes), conf,
                  {c: float(acc[i]) for i, c in enumerate(classes)},
                  {c: float(iou[i]) for i, c in enumerate(classes)},
                  float(tp.sum() / max(total, 1)), total)


def score_maps(pairs: Sequence[tuple[np.ndarray, Sequence[str], np.ndarray, Sequence[str]]],
               classes: Sequence[str]) -> Scores:
    """Pool ``(predicted, pred_names, truth, truth_names)`` pairs into :class:`Scores`.

    ``truth`` pixels named in :data:`IGNORE_NAMES`, or unassigned, are not scored; scored pixels
    predicted outside ``classes`` (e.g. unassigned) count as errors.
    """
    k = len(classes)
    total = np.zeros((k, k), dtype=np.int64)
    n = 0
    for predicted, pred_names, truth, truth_names in pairs:
        names = [t if t not in IGNORE_NAMES else "\0ignored" for t in truth_names]
        index = {c: i for i, c in enumerate(classes)}
        t_lut = np.array([index.get(nm, -1) for nm in names] + [-1])
        n += int((t_lut[truth] >= 0).sum())
        total += confusion(predicted, pred_names, truth, names, classes)
    return scores(total, classes, n)


def format_scores(s: Scores) -> str:
    """A Markdown table of per-class pixel accuracy and IoU."""
    lines = ["| class | annotated pixels | pixel accuracy | IoU |", "|---|---:|---:|---:|"]
    for i, c in enumerate(s.classes):
        n = int(s.confusion[i].sum())
        if n == 0 and s.confusion[:, i].sum() == 0:
            continue
        acc = "n/a" if n == 0 else f"{s.accuracy[c]:.2f}"
        lines.append(f"| {c} | {n} | {acc} | {s.iou[c]:.2f} |")
    lines.append(f"| **all** | {s.n_pixels} | {s.overall_accuracy:.2f} | |")
    return "\n".join(lines)
