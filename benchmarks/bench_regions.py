"""Seconds per image for each region source on the bundled photographs.

Usage::

    python benchmarks/bench_regions.py [--repeat 1] [--sam-points 16] [--vit-b-random] [--device cpu]

Sources timed: ``grid``; ``landscape`` (default rule labeller, without and with class evidence; the
evidence itself is the pipeline's cost and is computed once beforehand); ``sam`` with the tiny
random-weight model of the tests (``--sam-points`` points per side; masks from random weights are
few, so this times the generator's machinery, not a real model's mask count); with
``--vit-b-random``, ``sam`` with a randomly initialised vit_b-sized model (the real model's compute,
use on a GPU machine; no checkpoint is downloaded).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from semcontrib.regions import ImageInput, resize_evidence
from semcontrib.segmentation import make_region_source
from semcontrib.segmentation.metrics import BUNDLED_PHOTOGRAPHS, load_bundled_photograph


def _evidence(photos: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    from semcontrib.model import class_evidence, load_imagenet_heads
    from semcontrib.paths import data_path

    model = load_imagenet_heads()
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())["evidence_groups"]
    out = {}
    for name, rgb in photos.items():
        small = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.Resampling.BILINEAR)).copy()
        maps = class_evidence(model, model.preprocess(small), groups)
        assert maps is not None
        out[name] = dict(resize_evidence(maps[0], list(groups), rgb.shape[:2]))
    return out


def _time(src, images: list[ImageInput], repeat: int) -> float:
    src.segment(images[0])  # warm-up (imports, lazy model set-up)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for im in images:
            src.segment(im)
    return (time.perf_counter() - t0) / (repeat * len(images))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--sam-points", type=int, default=16)
    ap.add_argument("--vit-b-random", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    torch.set_grad_enabled(False)
    photos = {n: load_bundled_photograph(n) for n in BUNDLED_PHOTOGRAPHS}
    evidence = _evidence(photos)
    plain = [ImageInput(n, rgb, n) for n, rgb in photos.items()]
    with_ev = [ImageInput(n, rgb, n, evidence[n]) for n, rgb in photos.items()]
    sizes = sorted({f"{r.shape[1]}x{r.shape[0]}" for r in photos.values()})
    print(f"{len(photos)} photographs ({', '.join(sizes)}), torch threads {torch.get_num_threads()}")

    from semcontrib.segmentation.sam import build_tiny_sam

    rows = [
        ("grid (3x3)", make_region_source("grid"), plain),
        ("landscape (rules, no evidence)", make_region_source("landscape"), plain),
        ("landscape (rules + evidence)", make_region_source("landscape"), with_ev),
        (f"sam tiny ({args.sam_points}x{args.sam_points} points)",
         make_region_source("sam", model=build_tiny_sam(), points_per_side=str(args.sam_points),
                            pred_iou_thresh="0", stability_score_thresh="0", device=args.device), with_ev),
    ]
    if args.vit_b_random:
        from segment_anything import sam_model_registry

        rows.append((f"sam vit_b random weights ({args.sam_points}x{args.sam_points} points)",
                     make_region_source("sam", model=sam_model_registry["vit_b"](checkpoint=None),
                                        points_per_side=str(args.sam_points), device=args.device), with_ev))
    print(f"{'source':<48} {'s/image':>9}")
    for label, src, images in rows:
        print(f"{label:<48} {_time(src, images, args.repeat):9.3f}", flush=True)


if __name__ == "__main__":
    main()
