"""Scoring a region source against hand-drawn annotations, and the bundled photographs to score on.

Per class ``c`` over all scored pixels of all images (pooled confusion matrix):

* pixel accuracy (recall) = pixels of ``c`` labelled ``c`` / pixels annotated ``c``;
* IoU = TP / (TP + FP + FN), counting false positives only on annotated pixels.

Pixels that are unannotated, or annotated ``void``, are not scored.

:func:`region_quality` adds what a user of a corpus asks of its regions (``semcontrib regions-eval``):
labels are matched by name, the share of the image each region covers is reported beside the truth's
share, and labels that only one side has are listed.
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
    """Per-class pixel accuracy and IoU (NaN where a class never occurs) plus pooled counts.

    ``annotated`` holds each class's annotated pixels, those predicted outside ``classes`` (e.g.
    unassigned) included; a row of ``confusion`` leaves those out. Empty: the rows' sums.
    """

    classes: tuple[str, ...]
    confusion: np.ndarray  # int64 K x K, rows = annotated class, columns = predicted class
    accuracy: dict[str, float]
    iou: dict[str, float]
    overall_accuracy: float
    n_pixels: int
    annotated: tuple[int, ...] = ()


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


def scores(conf: np.ndarray, classes: Sequence[str], n_pixels: int | None = None,
           annotated: np.ndarray | None = None) -> Scores:
    """Per-class accuracy and IoU from a confusion matrix (rows = truth).

    ``annotated`` (int, one per class) counts every annotated pixel of a class, also those predicted
    outside ``classes``, which the matrix has no column for: they are misses (default: the rows' sums).
    """
    tp = np.diag(conf).astype(np.float64)
    gt = (conf.sum(1) if annotated is None else np.asarray(annotated)).astype(np.float64)
    pred = conf.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp / gt
        iou = tp / (gt + pred - tp)
    total = int(conf.sum()) if n_pixels is None else n_pixels
    return Scores(tuple(classes), conf,
                  {c: float(acc[i]) for i, c in enumerate(classes)},
                  {c: float(iou[i]) for i, c in enumerate(classes)},
                  float(tp.sum() / max(total, 1)), total, tuple(int(v) for v in gt))


def score_maps(pairs: Sequence[tuple[np.ndarray, Sequence[str], np.ndarray, Sequence[str]]],
               classes: Sequence[str]) -> Scores:
    """Pool ``(predicted, pred_names, truth, truth_names)`` pairs into :class:`Scores`.

    ``truth`` pixels named in :data:`IGNORE_NAMES`, or unassigned, are not scored; scored pixels
    predicted outside ``classes`` (e.g. unassigned) count as errors.
    """
    k = len(classes)
    total = np.zeros((k, k), dtype=np.int64)
    annotated = np.zeros(k, dtype=np.int64)
    for predicted, pred_names, truth, truth_names in pairs:
        names = [t if t not in IGNORE_NAMES else "\0ignored" for t in truth_names]
        index = {c: i for i, c in enumerate(classes)}
        t_lut = np.array([index.get(nm, -1) for nm in names] + [-1])
        t = t_lut[truth]
        annotated += np.bincount(t[t >= 0], minlength=k)
        total += confusion(predicted, pred_names, truth, names, classes)
    return scores(total, classes, int(annotated.sum()), annotated)


def format_scores(s: Scores) -> str:
    """A Markdown table of per-class pixel accuracy and IoU."""
    lines = ["| class | annotated pixels | pixel accuracy | IoU |", "|---|---:|---:|---:|"]
    for i, c in enumerate(s.classes):
        n = s.annotated[i] if s.annotated else int(s.confusion[i].sum())
        if n == 0 and s.confusion[:, i].sum() == 0:
            continue
        acc = "n/a" if n == 0 else f"{s.accuracy[c]:.2f}"
        lines.append(f"| {c} | {n} | {acc} | {s.iou[c]:.2f} |")
    lines.append(f"| **all** | {s.n_pixels} | {s.overall_accuracy:.2f} | |")
    return "\n".join(lines)


def label_counts(labels: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """int64 pixel count of each name (length ``len(names)``) in an int HxW label map (``-1`` not counted).

    >>> label_counts(np.array([[0, 0, -1], [2, 0, 2]]), ["a", "b", "c"]).tolist()
    [3, 0, 2]
    """
    flat = np.asarray(labels).ravel()
    flat = flat[flat >= 0]
    if flat.size and flat.max() >= len(names):
        raise ValueError(f"labels reach {int(flat.max())} but there are only {len(names)} names")
    out: np.ndarray = np.bincount(flat, minlength=len(names)).astype(np.int64)
    return out


@dataclass(frozen=True)
class RegionQuality:
    """How well a region source's maps match annotations of the same images, label by label.

    Attributes
    ----------
    scores : pixel accuracy and IoU per label (:class:`Scores`) over the annotated pixels (``void`` and
        unannotated pixels not scored); its classes are the truth's labels, then the labels only the
        prediction has (their accuracy is NaN: never annotated; their IoU 0 where they cover annotated
        pixels).
    predicted_share, truth_share : label -> share of all pixels of the compared images that the
        predicted / annotated region covers (pooled: pixels over pixels; 0 where absent).
    only_predicted, only_truth : labels that one side has and the other does not (matched by name;
        ``void`` is never a label to match).
    n_images : images compared; ``n_image_pixels`` their pixels.
    """

    scores: Scores
    predicted_share: dict[str, float]
    truth_share: dict[str, float]
    only_predicted: tuple[str, ...]
    only_truth: tuple[str, ...]
    n_images: int
    n_image_pixels: int


def region_quality(pairs: Sequence[tuple[np.ndarray, Sequence[str], np.ndarray, Sequence[str]]]
                   ) -> RegionQuality:
    """Pool ``(predicted, pred_names, truth, truth_names)`` pairs (int HxW maps, ``-1`` unassigned, one
    pair per image, each pair the same size) into a :class:`RegionQuality`.

    The vocabularies may differ between images (every pair names its own labels); labels are matched by
    name. ``ValueError`` when a pair's maps differ in size, or when there is no pair.

    Examples
    --------
    >>> pred = np.array([[0, 0, 1, 1]])
    >>> truth = np.array([[0, 1, 1, -1]])
    >>> q = region_quality([(pred, ["eye", "body"], truth, ["eye", "nose"])])
    >>> q.scores.classes, q.only_predicted, q.only_truth
    (('eye', 'nose', 'body'), ('body',), ('nose',))
    >>> q.scores.accuracy["eye"], q.scores.iou["eye"], q.predicted_share["body"], q.truth_share["nose"]
    (1.0, 0.5, 0.5, 0.5)
    """
    if not pairs:
        raise ValueError("region_quality needs at least one (predicted, truth) pair")
    truth_labels: dict[str, None] = {}
    pred_labels: dict[str, None] = {}
    for _, pred_names, _, truth_names in pairs:
        truth_labels.update((n, None) for n in truth_names if n not in IGNORE_NAMES)
        pred_labels.update((n, None) for n in pred_names if n not in IGNORE_NAMES)
    only_truth = tuple(n for n in truth_labels if n not in pred_labels)
    only_predicted = tuple(n for n in pred_labels if n not in truth_labels)
    classes = list(truth_labels) + list(only_predicted)
    index = {c: i for i, c in enumerate(classes)}
    pred_pixels = np.zeros(len(classes), np.int64)
    truth_pixels = np.zeros(len(classes), np.int64)
    n_pixels = 0
    for predicted, pred_names, truth, truth_names in pairs:
        if np.shape(predicted) != np.shape(truth):
            raise ValueError(f"prediction {np.shape(predicted)} and annotation {np.shape(truth)} differ in size")
        n_pixels += int(np.size(truth))
        for counts, names, total in ((label_counts(predicted, pred_names), pred_names, pred_pixels),
                                     (label_counts(truth, truth_names), truth_names, truth_pixels)):
            for name, c in zip(names, counts):
                if name in index:
                    total[index[name]] += c
    scored = score_maps(pairs, classes)
    denominator = max(n_pixels, 1)
    return RegionQuality(scored, {c: float(pred_pixels[i] / denominator) for i, c in enumerate(classes)},
                         {c: float(truth_pixels[i] / denominator) for i, c in enumerate(classes)},
                         only_predicted, only_truth, len(pairs), n_pixels)


def format_quality(q: RegionQuality) -> str:
    """A Markdown table: per label, annotated pixels, pixel accuracy, IoU and the shares of the image
    that the region and the annotation cover; then the labels only one side has."""
    s = q.scores
    lines = ["| label | annotated pixels | pixel accuracy | IoU | share of image | annotated share |",
             "|---|---:|---:|---:|---:|---:|"]

    def num(v: float) -> str:
        return "n/a" if np.isnan(v) else f"{v:.2f}"

    for i, c in enumerate(s.classes):
        n = s.annotated[i]
        lines.append(f"| {c} | {n} | {num(s.accuracy[c])} | {num(s.iou[c])} | {q.predicted_share[c]:.3f} | "
                     f"{q.truth_share[c]:.3f} |")
    lines.append(f"| **all** | {s.n_pixels} | {s.overall_accuracy:.2f} | | | |")
    lines.append("")
    lines.append(f"{q.n_images} images. Only in the regions: {', '.join(q.only_predicted) or 'none'}. "
                 f"Only in the annotations: {', '.join(q.only_truth) or 'none'}.")
    return "\n".join(lines)
