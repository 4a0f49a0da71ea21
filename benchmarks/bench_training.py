"""How long training takes: backbone features per view, heads on cached features, fine-tuning per epoch.

    python benchmarks/bench_training.py [--backbone efficientnet_lite0] [--images 2000] [--views 4]
        [--device cpu|cuda|auto] [--workers N] [--no-amp] [--ft-images 32] [--architecture linear|siam]

Measures, on ``--device``:

1. the backbone's throughput on the bundled sample photographs (feature extraction, frozen backbone);
2. the heads trained on synthetic cached features of ``--images`` images (the cost does not depend on
   the pixels) for 20 epochs;
3. one fine-tuning epoch (backbone and heads, augmentation in ``--workers`` DataLoader workers, mixed
   precision on CUDA unless ``--no-amp``) on ``--ft-images`` sample photographs, extrapolated to
   ``--images`` images.

With ``--device cuda`` the same fine-tuning epoch is also run on the CPU (on fewer images) in the same
process, and the ratio CPU / GPU is printed; on the CPU the ratio printed is a fine-tuning epoch
against a frozen-backbone epoch (features cached), both for ``--images`` images.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _fine_tune_epoch(args: argparse.Namespace, device: str, paths: list[Path], heads: list) -> float:
    """Seconds per image of one fine-tuning epoch on ``device`` (no validation)."""
    from semcontrib.model import build_multitask, build_siam
    from semcontrib.training import TrainConfig, TrainingData, fine_tune, load_working_images

    if args.architecture == "siam":
        model = build_siam(args.backbone, heads, ("sky", "water", "vegetation", "built"),
                           Path(args.weights) if args.weights else None)
    else:
        model = build_multitask(args.backbone, heads, Path(args.weights) if args.weights else None)
    images, _ = load_working_images(paths, int(model.input_size * 1.25))
    imgs = [im for im in images if im is not None]
    rng = np.random.default_rng(0)
    targets = np.stack([rng.integers(0, len(h.classes), len(imgs)) for h in heads], 1)
    data = TrainingData(targets, [h.name for h in heads], np.arange(len(imgs)), np.arange(0))
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, device=device, workers=args.workers, amp=args.amp)
    hist = fine_tune(model, imgs, data, cfg)
    return hist.seconds / len(imgs)


def main() -> None:
    from semcontrib.model import HeadSpec, build_multitask
    from semcontrib.training import (
        LabelledSet,
        LabelReport,
        TrainConfig,
        TrainingData,
        build_sample_dataset,
        extract_features,
        fit_heads,
        resolve_device,
        split_examples,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--architecture", default="linear", choices=("linear", "siam"))
    ap.add_argument("--images", type=int, default=2000, help="data set size the estimates are for")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--sample", type=int, default=32, help="photographs used to time the backbone")
    ap.add_argument("--ft-images", type=int, default=32, help="photographs in the timed fine-tuning epoch")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--no-amp", dest="amp", action="store_false")
    args = ap.parse_args()
    device = resolve_device(args.device)

    heads = [HeadSpec("nature", ("nature", "non-nature")), HeadSpec("biotic", ("abiotic", "biotic")),
             HeadSpec("material", ("immaterial", "material")),
             HeadSpec("landscape", ("artificial", "agricultural", "forest", "wetland", "water", "other"))]
    model = build_multitask(args.backbone, heads, pretrained_weights=Path(args.weights) if args.weights else None)
    model.eval().to(device)
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; torch threads: {torch.get_num_threads()}; workers: {args.workers}; "
          f"amp: {args.amp and device.type == 'cuda'}")
    with tempfile.TemporaryDirectory() as tmp:
        n_variants = max(1, max(args.sample, args.ft_images) // 16 + 1)
        folder, _ = build_sample_dataset(tmp, variants=n_variants)
        paths = sorted(folder.glob("*.jpg"))
        extract_features(model, paths[:4], n_views=0)  # warm-up
        t0 = time.perf_counter()
        extract_features(model, paths[: args.sample], n_views=args.views)
        if device.type == "cuda":
            torch.cuda.synchronize()
        per_view = (time.perf_counter() - t0) / (min(args.sample, len(paths)) * (1 + args.views))
        print(f"backbone {args.backbone}: {per_view * 1000:.1f} ms per view "
              f"({min(args.sample, len(paths))} photographs x {1 + args.views} views, decoding included)")

        rng = np.random.default_rng(0)
        n, dim = args.images, model.spec.feature_dim
        feats = rng.normal(size=(n, 1 + args.views, dim)).astype(np.float32)
        targets = np.stack([rng.integers(0, len(h.classes), n) for h in heads], 1)
        ls = LabelledSet([str(i) for i in range(n)], [Path(f"{i}.jpg") for i in range(n)],
                         [h.name for h in heads], {h.name: h.classes for h in heads}, targets, LabelReport(n, n, {}))
        split = split_examples(ls, seed=0)
        cfg = TrainConfig(epochs=20, patience=1000, device=str(device))
        hist = fit_heads(model, feats, TrainingData(targets, ls.tasks, split.train, split.val), cfg)
        per_epoch = hist.seconds / len(hist.train_loss)
        first = per_view * n * (1 + args.views)
        print(f"heads: {per_epoch * 1000:.0f} ms per epoch on {len(split.train)} training images "
              f"({len(hist.train_loss)} epochs in {hist.seconds:.1f} s)")
        print(f"estimate for {n} images, frozen backbone, {args.views} views: features {first / 60:.1f} min "
              f"(first run only), heads {per_epoch * 200:.0f} s at most (200 epochs)")

        ft_paths = paths[: args.ft_images]
        _fine_tune_epoch(args, str(device), ft_paths[: args.batch_size], heads)  # warm-up
        per_image = _fine_tune_epoch(args, str(device), ft_paths, heads)
        print(f"fine-tuning ({args.architecture}) on {device}: {per_image * 1000:.1f} ms per image per epoch "
              f"({len(ft_paths)} images); estimate {per_image * n:.0f} s per epoch for {n} images")
        if device.type == "cuda":
            cpu_paths = ft_paths[: max(args.batch_size, 8)]
            cpu_per_image = _fine_tune_epoch(args, "cpu", cpu_paths, heads)
            print(f"fine-tuning on cpu: {cpu_per_image * 1000:.1f} ms per image per epoch ({len(cpu_paths)} images); "
                  f"estimate {cpu_per_image * n:.0f} s per epoch for {n} images")
            print(f"ratio cpu / {device}: {cpu_per_image / per_image:.1f}x")
        else:
            print(f"ratio fine-tuning epoch / frozen-backbone epoch: {per_image * n / per_epoch:.0f}x")


if __name__ == "__main__":
    main()
