"""How long training takes on this machine: backbone features per view, and the heads on cached features.

    python benchmarks/bench_training.py [--backbone efficientnet_lite0] [--images 2000] [--views 4]

Measures the backbone's throughput on a few batches of real photographs (the bundled sample set),
then trains the heads of a four-task model on synthetic cached features of ``--images`` images
(the cost of training on cached features does not depend on the pixels), and prints the estimate
for a first run (features computed) and a re-run (features cached).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from semcontrib.model import HeadSpec, build_multitask
    from semcontrib.training import (
        LabelledSet,
        LabelReport,
        TrainConfig,
        build_sample_dataset,
        extract_features,
        fit_heads,
        split_examples,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--sample", type=int, default=32, help="photographs used to time the backbone")
    args = ap.parse_args()

    heads = [HeadSpec("nature", ("nature", "non-nature")), HeadSpec("biotic", ("abiotic", "biotic")),
             HeadSpec("material", ("immaterial", "material")),
             HeadSpec("landscape", ("artificial", "agricultural", "forest", "wetland", "water", "other"))]
    model = build_multitask(args.backbone, heads, pretrained_weights=Path(args.weights) if args.weights else None,
                            random_init=args.weights is None and args.backbone != "efficientnet_lite0")
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = build_sample_dataset(tmp, variants=max(1, args.sample // 16))
        paths = sorted(folder.glob("*.jpg"))[: args.sample]
        extract_features(model, paths[:4], n_views=0)  # warm-up
        t0 = time.perf_counter()
        extract_features(model, paths, n_views=args.views)
        per_view = (time.perf_counter() - t0) / (len(paths) * (1 + args.views))
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"backbone {args.backbone}: {per_view * 1000:.0f} ms per view "
          f"({len(paths)} photographs x {1 + args.views} views)")

    rng = np.random.default_rng(0)
    n, dim = args.images, model.spec.feature_dim
    feats = rng.normal(size=(n, 1 + args.views, dim)).astype(np.float32)
    targets = np.stack([rng.integers(0, len(h.classes), n) for h in heads], 1)
    ls = LabelledSet([str(i) for i in range(n)], [Path(f"{i}.jpg") for i in range(n)], [h.name for h in heads],
                     {h.name: h.classes for h in heads}, targets, LabelReport(n, n, {}))
    split = split_examples(ls, seed=0)
    cfg = TrainConfig(epochs=50, patience=1000)
    hist = fit_heads(model, feats, targets, ls.tasks, split.train, split.val, cfg)
    per_epoch = hist.seconds / len(hist.train_loss)
    first = per_view * n * (1 + args.views)
    print(f"heads: {per_epoch * 1000:.0f} ms per epoch on {len(split.train)} training images "
          f"({len(hist.train_loss)} epochs in {hist.seconds:.1f} s)")
    print(f"estimate for {n} images, frozen backbone, {args.views} views: features {first / 60:.1f} min "
          f"(first run only), heads {per_epoch * 200:.0f} s at most (200 epochs)")


if __name__ == "__main__":
    main()
