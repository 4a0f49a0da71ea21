"""``semcontrib regions-eval CORPUS --truth ANNOTATIONS``: how well a corpus's regions match annotations.

Per label (matched by name between the corpus's vocabulary and the annotation file's): pixel accuracy,
IoU, and the share of the image the region covers beside the share the annotation covers, pooled over
every image of the corpus that the annotation file names (:func:`semcontrib.segmentation.metrics.region_quality`);
then the labels only one side has, and the images left out with the reason.

How the maps are compared
-------------------------
The corpus keeps each image's region map at the model's input size (S x S, read through
:meth:`semcontrib.corpus.Corpus.region_map`); it is resized (nearest neighbour) to the image's original
size, where the annotation is drawn (read by :class:`semcontrib.segmentation.annotations.AnnotationSource`,
COCO, Label Studio or PNG label maps). Unannotated pixels, and pixels annotated ``void``, are not scored.
An image the annotation file does not name, whose annotation has another size, or whose regions failed,
is left out and listed with its reason; the run goes on.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.corpus import Corpus, write_json
from semcontrib.regions import ImageInput, RegionError
from semcontrib.segmentation.metrics import RegionQuality, format_quality, region_quality

logger = logging.getLogger(__name__)

REPORT_JSON = "regions_quality.json"
REPORT_MD = "regions_quality.md"


@dataclass(frozen=True)
class RegionsEvaluation:
    """The quality of one corpus's regions against one annotation file.

    Attributes
    ----------
    corpus, truth : the corpus folder and the annotation file (or PNG directory).
    regions : the corpus's region spec, as its manifest records it.
    quality : the pooled per-label figures (``None`` when no image could be compared).
    per_image : image id -> (pixel accuracy, mean IoU over the labels annotated in that image).
    skipped : (image id, reason) of each image left out.
    """

    corpus: str
    truth: str
    regions: str
    quality: RegionQuality | None
    per_image: dict[str, tuple[float, float]]
    skipped: tuple[tuple[str, str], ...]


def evaluate_corpus(corpus: Corpus, truth: str | Path) -> RegionsEvaluation:
    """Score every analysed image of ``corpus`` that ``truth`` annotates (see the module docstring).

    ``ValueError`` when ``truth`` is not an annotation file the ``annotations`` source reads.
    """
    from semcontrib.segmentation.annotations import AnnotationSource

    source = AnnotationSource(truth, missing="error")
    images = corpus.images
    rows = {str(i): (int(h), int(w), str(p)) for i, h, w, p in
            zip(images["image_id"], images["height"], images["width"], images["path"])}
    pairs = []
    per_image: dict[str, tuple[float, float]] = {}
    skipped: list[tuple[str, str]] = []
    for image_id in corpus.image_ids():
        h, w, path = rows[image_id]
        blank = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (h, w, 3))  # the source reads only the size
        try:
            annotated = source.segment(ImageInput(image_id, blank, path))
        except RegionError as exc:
            skipped.append((image_id, exc.reason))
            continue
        predicted = corpus.region_map(image_id)
        if predicted is None:
            skipped.append((image_id, "no region map stored (its regions failed, or the work file is missing)"))
            continue
        pair = (predicted.resized((h, w)).labels, predicted.names, annotated.labels, annotated.names)
        one = region_quality([pair])
        if one.scores.n_pixels == 0:
            skipped.append((image_id, "no annotated pixel to score (only void or nothing drawn)"))
            continue
        annotated_labels = [c for i, c in enumerate(one.scores.classes) if one.scores.annotated[i] > 0]
        per_image[image_id] = (one.scores.overall_accuracy,
                               float(np.mean([one.scores.iou[c] for c in annotated_labels])))
        pairs.append(pair)
    quality = region_quality(pairs) if pairs else None
    regions = str(corpus.manifest.get("settings", {}).get("regions") or corpus.manifest["regions"].get("name", ""))
    logger.info("regions-eval: %d images compared, %d left out", len(pairs), len(skipped))
    return RegionsEvaluation(str(corpus.root), str(truth), regions, quality, per_image, tuple(skipped))


def _number(v: float) -> float | None:
    return None if math.isnan(v) else round(float(v), 6)


def report_record(ev: RegionsEvaluation) -> dict[str, Any]:
    """The evaluation as a JSON-ready dict (NaN -> ``null``)."""
    labels: dict[str, Any] = {}
    q = ev.quality
    if q is not None:
        for i, c in enumerate(q.scores.classes):
            labels[c] = {"annotated_pixels": q.scores.annotated[i], "pixel_accuracy": _number(q.scores.accuracy[c]),
                         "iou": _number(q.scores.iou[c]), "share": _number(q.predicted_share[c]),
                         "annotated_share": _number(q.truth_share[c])}
    return {"corpus": ev.corpus, "truth": ev.truth, "regions": ev.regions,
            "images_compared": len(ev.per_image),
            "overall_accuracy": None if q is None else _number(q.scores.overall_accuracy),
            "labels": labels,
            "only_in_regions": [] if q is None else list(q.only_predicted),
            "only_in_annotations": [] if q is None else list(q.only_truth),
            "per_image": {i: {"pixel_accuracy": _number(a), "mean_iou": _number(m)}
                          for i, (a, m) in ev.per_image.items()},
            "skipped": [{"image_id": i, "reason": r} for i, r in ev.skipped]}


def format_report(ev: RegionsEvaluation) -> str:
    """Markdown: the per-label table, the per-image figures and the images left out."""
    lines = [f"# Region quality of `{ev.regions}`", "",
             f"Corpus `{ev.corpus}` against `{ev.truth}`.", ""]
    if ev.quality is None:
        lines.append("No image of the corpus could be compared with the annotations.")
    else:
        lines += [format_quality(ev.quality), "", "| image | pixel accuracy | mean IoU |", "|---|---:|---:|"]
        lines += [f"| {i} | {a:.2f} | {m:.2f} |" for i, (a, m) in ev.per_image.items()]
    if ev.skipped:
        lines += ["", f"Left out ({len(ev.skipped)}):", ""]
        lines += [f"- {i}: {r}" for i, r in ev.skipped]
    return "\n".join(lines) + "\n"


def write_report(ev: RegionsEvaluation, folder: str | Path) -> list[Path]:
    """Write ``regions_quality.json`` and ``regions_quality.md`` into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / REPORT_JSON, report_record(ev))
    md = folder / REPORT_MD
    md.write_text(format_report(ev))
    return [folder / REPORT_JSON, md]


def run_regions_eval(args: argparse.Namespace) -> int:
    corpus = Corpus.open(args.corpus)
    ev = evaluate_corpus(corpus, args.truth)
    print(format_report(ev), end="")
    if args.out:
        paths = write_report(ev, args.out)
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0 if ev.quality is not None else 2


def register(subparsers: Any) -> None:
    """Add ``regions-eval`` to the ``semcontrib`` command's subparsers."""
    p = subparsers.add_parser(
        "regions-eval", help="score a corpus's regions against annotations of the same images",
        description="Per label (matched by name): pixel accuracy, IoU and the share of the image each region "
        "covers, against annotations (COCO, Label Studio or PNG label maps) of the corpus's images; labels only "
        "one side has, and images left out, are listed. See docs/regions.md.")
    p.add_argument("corpus", help="a corpus written by `semcontrib analyze`")
    p.add_argument("--truth", required=True, metavar="ANNOTATIONS",
                   help="annotation file or PNG label-map folder, as `--regions annotations:PATH` reads")
    p.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="also write regions_quality.json and regions_quality.md into DIR")
    p.set_defaults(func=run_regions_eval)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m semcontrib.regions_eval CORPUS --truth FILE``)."""
    parser = argparse.ArgumentParser(prog="semcontrib")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["regions-eval", *(argv or [])])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    import sys

    raise SystemExit(main(sys.argv[1:]))
