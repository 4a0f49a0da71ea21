"""The ``semcontrib`` command line: analyze, export, demo (+ train, evaluate, dashboard)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
import time
from pathlib import Path
from typing import Any

# Modules that add their own subcommands with ``register(subparsers)``, when present.
EXTENSIONS = ("semcontrib.train_cli", "semcontrib.dashboard.cli")


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    from semcontrib.attribution import ATTRIBUTION_METHODS, IG_BASELINES, IG_METHODS, LRP_COMPOSITES

    p.add_argument("--model", default="imagenet-heads",
                   help="embedded model name (imagenet-heads) or checkpoint path (.json sidecar)")
    p.add_argument("--heads", default=None, help="comma-separated heads to explain (default: all)")
    p.add_argument("--methods", default="lrp,gradcam,ig",
                   help=f"comma-separated attribution methods from {sorted(ATTRIBUTION_METHODS)}")
    p.add_argument("--regions", default="grid",
                   help="region source: grid[:RxC] | landscape | sam | annotations:PATH")
    p.add_argument("--region-opt", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="option for the region source (repeatable)")
    p.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint for --regions sam "
                   "(or env SEMCONTRIB_SAM_CHECKPOINT)")
    p.add_argument("--target", action="append", type=_kv, default=[], metavar="HEAD=CLASS",
                   help="explain this class of HEAD instead of the predicted class (repeatable)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--lrp-composite", default="epsilon", choices=list(LRP_COMPOSITES))
    p.add_argument("--lrp-epsilon", type=float, default=1e-6)
    p.add_argument("--gradcam-layer", default=None, help="backbone stage (default: last conv block)")
    p.add_argument("--ig-steps", type=int, default=32)
    p.add_argument("--ig-baseline", default="black", choices=list(IG_BASELINES))
    p.add_argument("--ig-method", default="gausslegendre", choices=list(IG_METHODS))


def analysis_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    params = {"lrp": {"composite": args.lrp_composite, "epsilon": args.lrp_epsilon},
              "gradcam": {"layer": args.gradcam_layer},
              "ig": {"n_steps": args.ig_steps, "baseline": args.ig_baseline, "method": args.ig_method}}
    region_options: dict[str, Any] = dict(args.region_opt)
    if args.sam_checkpoint:
        region_options["checkpoint"] = args.sam_checkpoint
    return {
        "model": args.model,
        "heads": [h.strip() for h in args.heads.split(",")] if args.heads else None,
        "methods": methods,
        "method_params": {m: params[m] for m in methods if m in params},
        "regions": args.regions,
        "region_options": region_options,
        "targets": dict(args.target),
        "batch_size": args.batch_size,
        "device": args.device,
    }


def run_analyze(args: argparse.Namespace) -> int:
    from semcontrib.pipeline import analyze

    report = _run_with_progress(analyze, args.input, args.out, **analysis_kwargs(args))
    print(report.summary())
    return 0


def _run_with_progress(fn: Any, *a: Any, **kw: Any) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=0, unit="img", desc="analysing", disable=not sys.stderr.isatty() and None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return fn(*a, progress=progress, **kw)
    finally:
        bar.close()


def run_export(args: argparse.Namespace) -> int:
    from semcontrib.corpus import Corpus
    from semcontrib.export import export_table

    corpus = Corpus.open(args.corpus)
    n = export_table(corpus, args.output, head=args.head, method=args.method,
                     normalisation=args.normalisation, basis=args.basis, wide=args.wide)
    print(f"wrote {n} rows to {args.output}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    if args.synthetic is not None:  # a synthetic corpus of N images (random numbers, no model)
        from semcontrib.corpus import MANIFEST
        from semcontrib.dashboard.synthetic import demo_spec, write_synthetic_corpus

        if args.synthetic < 10:
            raise ValueError(f"--synthetic needs at least 10 images, got {args.synthetic}")
        root = Path(args.out) / f"synthetic-{args.synthetic}"
        if not (root / MANIFEST).is_file():
            print(f"demo: writing a SYNTHETIC corpus of {args.synthetic} images (random numbers, not the output "
                  f"of a model) to {root}")
            t = time.perf_counter()
            write_synthetic_corpus(root, demo_spec(args.synthetic))
            print(f"synthetic corpus ready in {time.perf_counter() - t:.0f} s")
        if not args.no_dashboard:
            from semcontrib.dashboard.app import serve

            serve(root, host=args.host, port=args.port)
        return 0
    from semcontrib.demo import write_demo_images
    from semcontrib.pipeline import analyze

    out = Path(args.out)
    images = write_demo_images(out / "images")
    print(f"demo: {len(images)} photographs from scikit-image, scikit-learn and matplotlib in {out / 'images'}")
    t = time.perf_counter()
    kwargs = analysis_kwargs(args)
    kwargs["regions"] = args.regions
    report = _run_with_progress(analyze, out / "images", out / "corpus", **kwargs)
    print(report.summary())
    print(f"demo corpus ready in {time.perf_counter() - t:.0f} s: {out / 'corpus'}")
    if args.no_dashboard:
        return 0
    if importlib.util.find_spec("semcontrib.dashboard.app") is None:
        print("the dashboard is not installed in this version; explore the corpus with `semcontrib export`.")
        return 0
    from semcontrib.dashboard.app import serve

    serve(out / "corpus", host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semcontrib", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="analyse images into a corpus")
    p.add_argument("input", help="folder of images, or CSV of image paths (+ label columns)")
    p.add_argument("--out", required=True, help="corpus directory (created, or resumed)")
    add_analysis_options(p)
    p.set_defaults(func=run_analyze)

    p = sub.add_parser("export", help="export the contribution table")
    p.add_argument("corpus")
    p.add_argument("-o", "--output", required=True, help="FILE.csv or FILE.parquet")
    p.add_argument("--head", default=None)
    p.add_argument("--method", default=None)
    p.add_argument("--normalisation", default="signed_l1", choices=["signed_l1", "split", "paper"])
    p.add_argument("--basis", default="mean", choices=["mean", "sum"])
    p.add_argument("--wide", action="store_true", help="one row per image, one column per region")
    p.set_defaults(func=run_export)

    p = sub.add_parser("demo", help="analyse bundled photographs and open the dashboard")
    p.add_argument("--out", default="demo_corpus")
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--synthetic", type=int, default=None, metavar="N",
                   help="instead of the bundled photographs, open a synthetic corpus of N images (random numbers, "
                        "no model; labelled synthetic in the page) to try the dashboard at scale, e.g. 100000")
    add_analysis_options(p)
    p.set_defaults(func=run_demo, regions="landscape")

    for name in EXTENSIONS:
        if importlib.util.find_spec(name.split(".")[0]) and importlib.util.find_spec(name):
            importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"semcontrib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
