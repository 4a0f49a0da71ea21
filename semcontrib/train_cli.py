"""The ``train`` and ``evaluate`` subcommands (registered by ``semcontrib.cli``).

``semcontrib train IMAGES LABELS.csv --out MODEL [--backbone B] [--weights PATH] [--random-init]
[--epochs N] [--freeze-backbone] [--seed S] [--batch-size N] [--views V] [--tasks T1,T2]
[--cache-dir DIR] [--report DIR]``

``semcontrib evaluate MODEL IMAGES LABELS.csv [--out REPORT_DIR] [--subset auto|test|all]``

``semcontrib evaluate --compare REPORT_DIR [REPORT_DIR ...] [--out TABLE_DIR]``

Only this module prints; progress bars come from tqdm through the library's progress callback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SEMCONTRIB_CACHE`` or ``$XDG_CACHE_HOME/semcontrib/features`` (``~/.cache/...``)."""
    env = os.environ.get("SEMCONTRIB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "semcontrib" / "features"


@contextmanager
def tqdm_progress(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}
    labels = {"features": "backbone features", "epochs": "epochs", "batches": "batches of the epoch",
              "predict": "predicting"}

    def progress(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.refresh()
            bar = bars[stage] = tqdm(total=total, desc=labels.get(stage, stage), unit="",
                                     file=sys.stderr, dynamic_ncols=True)
        if done < bar.n:  # a stage that repeats (batches of the next epoch)
            bar.reset(total=total)
        elif bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            if bar.n < (bar.total or 0):  # early stopping ends before the maximum
                bar.total = bar.n
                bar.refresh()
            bar.close()


def _print_report(report: Any) -> None:
    print(f"{'task':<16} {'n':>5} {'accuracy':>9} {'F1 (w)':>8} {'majority':>9}")
    for t, m in report.tasks.items():
        print(f"{t:<16} {m.n:>5} {m.accuracy:>9.3f} {m.f1_weighted:>8.3f} {m.majority_accuracy:>9.3f}")
    print(f"{'mean':<16} {report.n_examples:>5} {report.mean_accuracy:>9.3f} {report.mean_f1:>8.3f}")


def _print_label_problems(label_report: dict[str, Any]) -> None:
    counts = {k: v for k, v in label_report.get("counts", {}).items() if v and k != "unlabelled_image"}
    unlabelled = label_report.get("counts", {}).get("unlabelled_image", 0)
    if unlabelled:
        print(f"{unlabelled} images in the folder have no row in the CSV (ignored)")
    if counts:
        print("label problems (skipped or masked, see the report): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for t, cl in label_report.get("single_example_classes", {}).items():
        print(f"  {t}: classes with a single example: {', '.join(cl)}")
    for t, why in label_report.get("dropped_tasks", {}).items():
        print(f"  task {t} dropped: {why}")


def run_train(args: argparse.Namespace) -> int:
    """``semcontrib train``: exit 0 on success, 2 on bad input."""
    from semcontrib.backbones import MissingWeightsError
    from semcontrib.training import AugmentConfig, TrainConfig, train

    try:
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, n_views=args.views,
                          patience=args.patience, lr=args.lr, augment=AugmentConfig())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report_dir = Path(args.report) if args.report else out.with_name(out.name + "_report")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    try:
        with tqdm_progress(not args.quiet) as progress:
            outcome = train(args.images, args.labels, out, backbone=args.backbone, weights=args.weights,
                            random_init=args.random_init, freeze_backbone=args.freeze_backbone, tasks=tasks,
                            config=cfg, cache_dir=cache if args.freeze_backbone else None,
                            group_column=args.group_column,
                            progress=progress, report_dir=report_dir)
    except (MissingWeightsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h = outcome.history
    _print_label_problems(outcome.labelled.report.to_dict())
    s = outcome.split
    print(f"split: {s.method} seed {s.seed}: train {len(s.train)}, validation {len(s.val)}, "
          f"test {len(s.test)}" + (f" ({s.note})" if s.note else ""))
    print(f"trained {len(h.train_loss)} epochs (best {h.best_epoch + 1}"
          + (", stopped early" if h.stopped_early else "") + f") in {outcome.seconds:.1f} s")
    print("held-out test split:")
    _print_report(outcome.evaluation)
    print(f"checkpoint: {outcome.checkpoint} (+ {outcome.checkpoint.with_suffix('.safetensors').name})")
    print(f"report: {report_dir / 'report.html'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``semcontrib evaluate``: a report for one model, or a table comparing several reports."""
    from semcontrib import evaluation

    if args.compare:
        try:
            reports = {str(p): evaluation.load_report(p) for p in args.compare}
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out = Path(args.out or "comparison")
        files = evaluation.write_comparison(reports, out)
        print(files["markdown"].read_text())
        print(f"table: {files['csv']}, {files['html']}")
        return 0
    if not (args.model and args.images and args.labels):
        print("error: evaluate needs MODEL IMAGES LABELS.csv (or --compare REPORT_DIR ...)", file=sys.stderr)
        return 2
    from semcontrib.training import evaluate_model

    try:
        with tqdm_progress(not args.quiet) as progress:
            report = evaluate_model(args.model, args.images, args.labels, subset=args.subset,
                                    batch_size=args.batch_size, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(str(args.model)).with_suffix("").with_name(
        Path(str(args.model)).with_suffix("").name + "_eval")
    files = evaluation.write_report(report, out)
    _print_label_problems(report.label_report)
    print(f"subset: {report.meta.get('subset')}")
    _print_report(report)
    print(f"report: {files['html']}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``train`` and ``evaluate`` to the ``semcontrib`` command's subparsers."""
    from semcontrib.backbones import BACKBONES

    p = subparsers.add_parser(
        "train", help="train a multitask classifier (one head per label column)",
        description="Train one linear head per task column of LABELS.csv on a backbone, evaluate it on "
        "a held-out 10%% split and save MODEL.safetensors + MODEL.json.")
    p.add_argument("images", help="folder of images the CSV refers to")
    p.add_argument("labels", help="CSV with image_id (or path) and one column per task")
    p.add_argument("--out", required=True, help="checkpoint path without suffix")
    p.add_argument("--backbone", default="efficientnet_lite0", choices=sorted(BACKBONES))
    p.add_argument("--weights", default=None, help="local ImageNet weights file (torchvision backbones)")
    p.add_argument("--random-init", action="store_true", help="start from random weights (explicitly)")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="train only the heads on cached features (recommended on a CPU)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs (default 200 frozen, 15 fine-tuning; early stopping decides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of the heads")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    p.add_argument("--views", type=int, default=4, help="augmented views cached per image (frozen backbone)")
    p.add_argument("--tasks", default=None, help="comma-separated task columns (default: all but the id)")
    p.add_argument("--group-column", default=None,
                   help="column naming groups of near-duplicate images kept on one side of the split")
    p.add_argument("--cache-dir", default=None, help=f"feature cache (default {default_cache_dir()})")
    p.add_argument("--no-cache", action="store_true", help="do not cache backbone features")
    p.add_argument("--report", default=None, help="report folder (default MODEL_report)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "evaluate", help="evaluate a trained model, or compare evaluation reports",
        description="Write an evaluation report (JSON, Markdown, HTML) for MODEL on a labelled folder, "
        "or with --compare put several reports into one table.")
    e.add_argument("model", nargs="?", help="checkpoint (MODEL or MODEL.json)")
    e.add_argument("images", nargs="?", help="folder of images")
    e.add_argument("labels", nargs="?", help="labels CSV")
    e.add_argument("--out", default=None,
                   help="report folder (default MODEL_eval; with --compare: comparison)")
    e.add_argument("--subset", default="auto", choices=("auto", "test", "all"),
                   help="auto: the checkpoint's held-out test images when the CSV holds them, else all")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--compare", nargs="+", metavar="REPORT", default=None,
                   help="report folders (or report.json files) to compare in one table")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=run_evaluate)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m semcontrib.train_cli train ...``) until ``semcontrib.cli`` wires it."""
    parser = argparse.ArgumentParser(prog="semcontrib")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
