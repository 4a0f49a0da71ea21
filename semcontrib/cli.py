"""The ``semcontrib`` command line: analyze, export, demo, validate, train, evaluate, dashboard.

Building the parser imports no torch: ``semcontrib --help``, ``export`` and ``dashboard`` start fast.
Exit status: 0 on success, 2 on a usage or input error (one line on stderr, no traceback), 130 when
interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

from semcontrib import __version__
from semcontrib.settings import (
    DEFAULT_LRP_COMPOSITE,
    DEFAULT_METHODS,
    DEFAULT_MODEL,
    DEFAULT_REGIONS,
    IG_BASELINES,
    IG_METHODS,
    LIME_REGULARISERS,
    LRP_COMPOSITES,
    METHOD_NAMES,
    PERTURBATION_BASELINES,
    PRECISIONS,
    VALIDITY_BASELINES,
    VALIDITY_RANDOM_SAMPLES,
    VALIDITY_STEPS,
    XRAI_ALGORITHMS,
    ExternalAttributions,
    parse_methods,
    parse_targets,
)

# Modules that add their own subcommands with ``register(subparsers)``: module -> {command: one-line help}.
# A module is imported only when its command is run (or for a full parser), so ``semcontrib --help``
# never pays for what they import (training imports torch).
EXTENSIONS: dict[str, dict[str, str]] = {
    "semcontrib.validate": {"validate": "report how far each method's region vectors can be trusted"},
    "semcontrib.regions_eval": {"regions-eval": "score a corpus's regions against annotations of the same images"},
    "semcontrib.training.cli": {"train": "train a multitask classifier (frozen or fine-tuned backbone, or SIAM)",
                                "evaluate": "evaluate a trained model, or compare evaluation reports"},
    "semcontrib.dashboard.cli": {"dashboard": "explore a corpus in the browser (Dash)"},
}

EXPORT_FORMATS = ("table", "virelay", "label-studio")
_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except where there is none to show (None, required, already said)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS) or action.required or "default" in text \
                or isinstance(action.default, bool) or not action.option_strings:
            return text
        return super()._get_help_string(action) or text


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def verbosity_parent() -> argparse.ArgumentParser:
    """``-v`` / ``-q``, accepted before and after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="log more (-vv for debug details)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="log only errors and print only the summary")
    return p


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """Options of ``analyze`` and ``demo``. Those left out reuse what an existing corpus recorded."""
    _add_what_options(p)
    _add_method_options(p)
    _add_run_options(p)


def _add_what_options(p: argparse.ArgumentParser) -> None:
    """The "what to compute" group: model, heads, methods, regions, targets, external heatmaps, validity."""
    g = p.add_argument_group("what to compute (left out on an existing corpus: as recorded in its manifest)")
    g.add_argument("--model", default=None,
                   help=f"embedded model name or checkpoint path (.json sidecar); new corpus: {DEFAULT_MODEL}")
    g.add_argument("--heads", default=None, help="comma-separated heads to explain; new corpus: all heads")
    g.add_argument("--methods", default=None,
                   help=f"comma-separated methods from {', '.join(METHOD_NAMES)}; "
                        f"new corpus: {','.join(DEFAULT_METHODS)}")
    g.add_argument("--regions", default=None,
                   help="region source: grid[:RxC] | landscape | sam | annotations:PATH | "
                        "parts:boxes=PATH,foreground=SPEC[:LABEL] (demo: parts = the shipped part annotations) | "
                        "faces (dlib face parts; pip install 'semcontrib[faces]'; its landmark model is for "
                        "non-commercial use only); "
                        f"new corpus: {DEFAULT_REGIONS}")
    g.add_argument("--region-opt", action="append", type=_kv, default=None, metavar="KEY=VALUE",
                   help="an option for the region source (repeatable)")
    g.add_argument("--sam-checkpoint", default=None,
                   help="SAM checkpoint file for --regions sam (or env SEMCONTRIB_SAM_CHECKPOINT)")
    g.add_argument("--target", action="append", type=_kv, default=None, metavar="HEAD=CLASS",
                   help="explain CLASS of HEAD instead of the predicted class, or HEAD=among:A,B,... for the "
                        "best-scoring class of a set (repeatable); new corpus: the predicted class")
    g.add_argument("--attributions", default=None, metavar="DIR",
                   help="heatmaps computed elsewhere: DIR/<image file stem>.npz with one H×W float array per head")
    g.add_argument("--no-attributions", action="store_true",
                   help="drop the external heatmaps an existing corpus recorded (its other methods stay)")
    g.add_argument("--attributions-name", default=None, metavar="NAME",
                   help="method name of the --attributions heatmaps in the corpus (default: external)")
    v = g.add_mutually_exclusive_group()
    v.add_argument("--no-validity", dest="validity", action="store_false", default=None,
                   help="skip the validity record (faithfulness, MoRF / LeRF deletion AUC, random reference)")
    v.add_argument("--validity", dest="validity", action="store_true", default=None,
                   help="compute the validity record (new corpus: on; turns it back on after --no-validity)")
    g.add_argument("--validity-baseline", default=None, choices=VALIDITY_BASELINES,
                   help="how a region is deleted for the validity record: road (ROAD's noisy linear imputation, "
                   "used by no method) or a perturbation baseline; new corpus: road (docs/trust.md)")
    g.add_argument("--validity-steps", type=int, default=None, metavar="N",
                   help=f"points per deletion curve of the validity record; 0: full curves (precise, costly); "
                   f"new corpus: {VALIDITY_STEPS} (docs/trust.md, 'Cost of the validity record')")
    g.add_argument("--validity-random-samples", type=int, default=None, metavar="N",
                   help=f"seeded random orders of the validity record's random reference where it is not exact "
                   f"(more: more precise, a forward per order and curve point); new corpus: {VALIDITY_RANDOM_SAMPLES}")
    g.add_argument("--validity-sample", type=int, default=None, metavar="N",
                   help="record validity on one image in N, the same in every run (a seeded hash of its id); the "
                   "others get the note 'not in the validity sample'; new corpus: 1, every image (docs/trust.md)")


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """The "method parameters" group (see ``_METHOD_OPTIONS``)."""
    m = p.add_argument_group("method parameters (left out: as recorded, or these defaults)")
    m.add_argument("--lrp-composite", default=None, choices=LRP_COMPOSITES,
                   help=f"zennit composite; default {DEFAULT_LRP_COMPOSITE} (the most faithful measured)")
    m.add_argument("--lrp-epsilon", type=float, default=None, help="epsilon of the LRP-ε rule; default 1e-06")
    m.add_argument("--gradcam-layer", default=None, help="backbone stage for Grad-CAM; default the last conv block")
    m.add_argument("--ig-steps", type=_positive_int, default=None, help="IG interpolation steps; default 32")
    m.add_argument("--ig-baseline", default=None, choices=IG_BASELINES, help="IG baseline; default black")
    m.add_argument("--ig-method", default=None, choices=IG_METHODS, help="IG quadrature; default gausslegendre")
    m.add_argument("--occlusion-baseline", default=None, choices=PERTURBATION_BASELINES,
                   help="what replaces a region for occlusion; default blur")
    m.add_argument("--shapley-baseline", default=None, choices=PERTURBATION_BASELINES,
                   help="what replaces absent regions for shapley; default blur")
    m.add_argument("--lime-samples", type=_positive_int, default=None,
                   help="coalitions sampled per image for lime (the first is the image itself); default 64")
    m.add_argument("--lime-kernel-width", type=float, default=None,
                   help="width of lime's exponential cosine kernel; default 0.25")
    m.add_argument("--lime-regulariser", default=None, choices=LIME_REGULARISERS,
                   help="lime's weighted linear surrogate; default ridge")
    m.add_argument("--lime-alpha", type=float, default=None, help="ridge / lasso penalty of lime; default 1.0")
    m.add_argument("--lime-baseline", default=None, choices=PERTURBATION_BASELINES,
                   help="what replaces a region left out of a lime sample; default blur")
    m.add_argument("--xrai-steps", type=_positive_int, default=None,
                   help="IG steps of xrai's base attribution; default 32")
    m.add_argument("--xrai-baseline", default=None, choices=IG_BASELINES,
                   help="IG baseline of xrai's base attribution; default black")
    m.add_argument("--xrai-algorithm", default=None, choices=XRAI_ALGORITHMS,
                   help="XRAI's ranking: full (greedy, the paper's) or fast (segments ranked once); default full")
    m.add_argument("--shapley-exact-max", type=_positive_int, default=None,
                   help="exact Shapley values up to this many present regions; default 10")
    m.add_argument("--shapley-samples", type=_positive_int, default=None,
                   help="permutations sampled above --shapley-exact-max regions; default 25")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The "how to run" group: batching, device, precision, workers, sharding, engine."""
    r = p.add_argument_group("how to run")
    r.add_argument("--batch-size", type=_positive_int, default=8, help="images per model batch")
    r.add_argument("--chunk-size", type=_positive_int, default=128,
                   help="images per chunk (one work file per chunk and stage; the unit of resumption) for "
                        "images new to the corpus")
    r.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the model runs")
    r.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16: autocast (Grad-CAM, occlusion, Shapley, SIAM; LRP and IG stay fp32); part of the "
                        "store keys")
    r.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs (may be faster on a GPU)")
    r.add_argument("--workers", type=_workers, default=os.cpu_count() or 1,
                   help="worker processes that decode images and run region sources beside the model "
                        "(0: in the main process); default the number of cores")
    r.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="compute only shard I of N of the images (for Slurm arrays, Kubernetes jobs; shards may "
                        "run at once); then run the same command without --shard to write the tables")
    r.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this machine; ray: a Ray cluster with Ray Data (RAY_ADDRESS, or a local Ray)")
    r.add_argument("--no-wait", action="store_true",
                   help="stop at once if another run is writing the corpus (default: wait for it)")


_METHOD_OPTIONS = {  # CLI option -> (method, parameter)
    "lrp_composite": ("lrp", "composite"), "lrp_epsilon": ("lrp", "epsilon"),
    "gradcam_layer": ("gradcam", "layer"),
    "ig_steps": ("ig", "n_steps"), "ig_baseline": ("ig", "baseline"), "ig_method": ("ig", "method"),
    "occlusion_baseline": ("occlusion", "baseline"),
    "shapley_baseline": ("shapley", "baseline"), "shapley_exact_max": ("shapley", "exact_max"),
    "shapley_samples": ("shapley", "samples"),
    "lime_samples": ("lime", "samples"), "lime_kernel_width": ("lime", "kernel_width"),
    "lime_regulariser": ("lime", "regulariser"), "lime_alpha": ("lime", "alpha"),
    "lime_baseline": ("lime", "baseline"),
    "xrai_steps": ("xrai", "n_steps"), "xrai_baseline": ("xrai", "baseline"), "xrai_algorithm": ("xrai", "algorithm"),
}


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The analysis settings the user gave on the command line (what was left out is not here)."""
    given: dict[str, Any] = {}
    if args.model is not None:
        given["model"] = args.model
    if args.heads is not None:
        given["heads"] = tuple(h.strip() for h in args.heads.split(",") if h.strip())
    if args.methods is not None:
        given["methods"] = parse_methods(args.methods)
    if args.regions is not None:
        given["regions"] = args.regions
    if args.region_opt is not None or args.sam_checkpoint:
        opts: dict[str, Any] = dict(args.region_opt or [])
        if args.sam_checkpoint:
            opts["checkpoint"] = args.sam_checkpoint
        given["region_options"] = opts
    if args.target is not None:
        given["targets"] = parse_targets(args.target)
    if args.attributions is not None:
        given["external"] = ExternalAttributions(str(Path(args.attributions).resolve()),
                                                 args.attributions_name or "external")
    elif args.attributions_name is not None:
        raise ValueError("--attributions-name needs --attributions DIR")
    if args.no_attributions:
        if args.attributions is not None:
            raise ValueError("--no-attributions and --attributions DIR contradict each other")
        given["external"] = None
    if args.validity is not None:
        given["validity"] = bool(args.validity)
    if args.validity_baseline is not None:
        given["validity_baseline"] = args.validity_baseline
    for opt in ("validity_steps", "validity_random_samples", "validity_sample"):
        if getattr(args, opt) is not None:
            given[opt] = getattr(args, opt)
    params: dict[str, dict[str, Any]] = {}
    for opt, (method, name) in _METHOD_OPTIONS.items():
        value = getattr(args, opt)
        if value is not None:
            params.setdefault(method, {})[name] = value
    if params:
        given["method_params"] = params
    return given


def _settings(args: argparse.Namespace, out: Path) -> Any:
    """Settings from the options given, the rest as the corpus recorded (new corpus: the defaults)."""
    from semcontrib.pipeline import settings_for

    given = given_settings(args)
    settings, reused = settings_for(out, given)
    if reused:
        shown = ", ".join(f"{k} {_show(getattr(settings, k))}" for k in reused
                          if k in ("model", "methods", "regions", "targets", "external"))
        print(f"reusing the settings recorded in {out / 'manifest.json'}: {shown}", file=sys.stderr)
    return settings


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(v)
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items()) or "(none)"
    return str(v)


def _options(args: argparse.Namespace, progress: Any) -> Any:
    from semcontrib.pipeline import RunOptions

    return RunOptions(batch_size=args.batch_size, chunk_size=args.chunk_size, device=args.device,
                      precision=args.precision, channels_last=args.channels_last, workers=args.workers,
                      shard=args.shard, wait=not args.no_wait, progress=progress)


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 256:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 256, got {text!r}")
    return n


def _shard(text: str) -> tuple[int, int]:
    from semcontrib.settings import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--shard ", "")) from None


def run_analyze(args: argparse.Namespace) -> int:
    from semcontrib.pipeline import AnalysisRun, checked_inputs

    out = Path(args.out)
    entries = checked_inputs(args.input, out)  # input errors before the model is loaded
    if args.labels is not None:
        entries = _with_label_studio_labels(entries, args)
    elif args.label_config is not None:
        raise ValueError("--label-config needs --labels EXPORT.json")
    settings = _settings(args, out)
    with _progress_bar(args) as progress:
        options = _options(args, progress)
        if args.engine == "ray":
            from semcontrib.engine.ray import run_on_ray

            report = run_on_ray(settings, out, options, entries)
        else:
            report = AnalysisRun(settings, out, options=options).run(entries)
    print(report.summary())
    return 0


def _with_label_studio_labels(entries: Sequence[Any], args: argparse.Namespace) -> list[Any]:
    """The inputs with a Label Studio export's choices as label columns; skipped tasks are reported."""
    from semcontrib.label_studio import is_label_studio_export, read_choices, read_label_config, with_labels

    if not is_label_studio_export(args.labels):
        raise ValueError(f"--labels takes a Label Studio JSON export (.json), got {args.labels}; a CSV of image "
                         "paths given as the input brings its own label columns")
    classes = read_label_config(args.label_config) if args.label_config else None
    labels = read_choices(args.labels, classes)
    entries, unmatched = with_labels(entries, labels)
    for task in labels.skipped:
        print(f"labels: skipped {task}", file=sys.stderr)
    if unmatched:
        print(f"labels: {len(unmatched)} labelled tasks match no input image (e.g. {', '.join(unmatched[:3])})",
              file=sys.stderr)
    print(f"labels: {len(labels.rows) - len(unmatched)} inputs labelled ({', '.join(labels.tasks)}): "
          f"columns {', '.join('label_' + t for t in labels.tasks)}", file=sys.stderr)
    return entries


class _progress_bar:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quiet = getattr(args, "quiet", False)
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="img", desc="analysing", disable=None)

        def progress(done: int, total: int) -> None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

        return progress

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def run_export(args: argparse.Namespace) -> int:
    from semcontrib.corpus import Corpus

    corpus = Corpus.open(args.corpus)
    if args.format == "virelay":
        from semcontrib.virelay import export_virelay

        out = export_virelay(corpus, args.output, head=args.head, method=args.method)
        print(f"wrote a ViRelAy project to {out}")
        return 0
    if args.format == "label-studio":
        from semcontrib.label_studio import export_label_studio

        n = export_label_studio(corpus, args.output, image_root=args.image_root)
        print(f"wrote {n} Label Studio tasks to {args.output} (labeling config: "
              f"{Path(args.output).with_suffix('.label_config.xml')})")
        return 0
    from semcontrib.export import export_table

    n = export_table(corpus, args.output, head=args.head, method=args.method,
                     normalisation=args.normalisation, basis=args.basis, wide=args.wide)
    print(f"wrote {n} rows to {args.output}")
    return 0


def run_compact(args: argparse.Namespace) -> int:
    from semcontrib.corpus import compact

    rep = compact(args.corpus, target_rows=args.target_rows, wait=not args.no_wait)
    if rep.generation is None:
        print(f"{args.corpus}: nothing to compact ({rep.parts_before} table parts)")
    else:
        print(f"{args.corpus}: {rep.parts_before} table parts merged into {rep.parts_after} "
              f"(generation {rep.generation})")
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
    from semcontrib.demo import demo_regions, write_demo_images
    from semcontrib.pipeline import AnalysisRun

    if args.shard is not None or args.engine != "local":
        raise ValueError("the demo runs in one local run; --shard and --engine ray are for `semcontrib analyze`")
    out = Path(args.out)
    images = write_demo_images(out / "images")
    print(f"demo: {len(images)} photographs from scikit-image, scikit-learn and matplotlib in {out / 'images'}")
    t = time.perf_counter()
    args.regions, folder = demo_regions(args.regions)  # `--regions parts`: the shipped part annotations
    corpus = out / folder
    settings = _settings(args, corpus)
    with _progress_bar(args) as progress:
        report = AnalysisRun(settings, corpus, options=_options(args, progress)).run(out / "images")
    print(report.summary())
    print(f"demo corpus ready in {time.perf_counter() - t:.0f} s: {corpus}")
    if args.no_dashboard:
        return 0
    if importlib.util.find_spec("semcontrib.dashboard.app") is None:
        print("the dashboard is not installed in this version; explore the corpus with `semcontrib export`.")
        return 0
    from semcontrib.dashboard.app import serve

    serve(corpus, host=args.host, port=args.port)
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``argv``, only the extension that ``argv`` runs is imported."""
    common = verbosity_parent()
    parser = argparse.ArgumentParser(prog="semcontrib", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"semcontrib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kw: dict[str, Any] = {"parents": [common], "formatter_class": HelpFormatter}
    _add_analyze(sub, kw)
    _add_export(sub, kw)
    _add_compact(sub, kw)
    _add_demo(sub, kw)
    _add_extensions(sub, common, argv)
    return parser


def _add_analyze(sub: _Subparsers, kw: dict[str, Any]) -> None:
    p = sub.add_parser("analyze", help="analyse images into a corpus (or resume / extend one)", **kw)
    p.add_argument("input", help="folder of images, CSV of image paths (+ label columns), or one image")
    p.add_argument("--out", required=True, help="corpus directory (created, or resumed)")
    p.add_argument("--labels", default=None, metavar="EXPORT.json",
                   help="human labels from a Label Studio JSON export (one choices control per task), matched to "
                   "the inputs by file name (also without the upload prefix), stored as label_<task> columns; "
                   "skipped tasks are reported")
    p.add_argument("--label-config", default=None, metavar="CONFIG.xml",
                   help="with --labels: the Label Studio labelling config; a choice outside its classes skips its task")
    add_analysis_options(p)
    p.set_defaults(func=run_analyze)


def _add_export(sub: _Subparsers, kw: dict[str, Any]) -> None:
    p = sub.add_parser("export", help="export the contribution table, or the corpus as a ViRelAy project", **kw)
    p.add_argument("corpus", help="corpus directory")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.csv or FILE.parquet; a folder for --format virelay; FILE.json for label-studio")
    p.add_argument("--format", default="table", choices=EXPORT_FORMATS,
                   help="table: CSV/Parquet contribution table; virelay: a ViRelAy project folder; "
                        "label-studio: tasks with the regions as brush pre-annotations (+ FILE.label_config.xml)")
    p.add_argument("--image-root", default=None, metavar="DIR",
                   help="label-studio: reference images as /data/local-files/?d=<path under DIR> "
                        "(default: the paths as analysed)")
    p.add_argument("--head", default=None, help="only this head (default: all; virelay: the first)")
    p.add_argument("--method", default=None, help="only this method (default: all; virelay: the first)")
    p.add_argument("--normalisation", default="signed_l1", choices=["signed_l1", "split", "paper"],
                   help="how region statistics become scores")
    p.add_argument("--basis", default="mean", choices=["mean", "sum"],
                   help="per-pixel mean or sum of each region's attribution")
    p.add_argument("--wide", action="store_true", help="one row per image, head and method; a column per region")
    p.set_defaults(func=run_export)


def _add_compact(sub: _Subparsers, kw: dict[str, Any]) -> None:
    p = sub.add_parser("compact", help="merge a corpus's small table parts (left by many incremental runs)", **kw)
    p.add_argument("corpus", help="corpus directory")
    p.add_argument("--target-rows", type=_positive_int, default=2_000_000,
                   help="rows a merged part holds at most")
    p.add_argument("--no-wait", action="store_true", help="fail at once if a run is writing the corpus")
    p.set_defaults(func=run_compact)


def _add_demo(sub: _Subparsers, kw: dict[str, Any]) -> None:
    p = sub.add_parser("demo", help="analyse bundled photographs and open the dashboard", **kw)
    p.add_argument("--out", default="demo_corpus", help="folder for the photographs and the corpus")
    p.add_argument("--no-dashboard", action="store_true", help="only build the corpus")
    p.add_argument("--host", default="127.0.0.1", help="address the dashboard binds (loopback)")
    p.add_argument("--port", type=int, default=8050, help="port of the dashboard")
    p.add_argument("--synthetic", type=int, default=None, metavar="N",
                   help="instead of the bundled photographs, open a synthetic corpus of N images (random numbers, "
                        "no model; labelled synthetic in the page) to try the dashboard at scale, e.g. 100000")
    add_analysis_options(p)
    p.set_defaults(func=run_demo)


def _add_extensions(sub: _Subparsers, common: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Each extension's subcommands: registered in full, or (with ``argv`` naming another command) as a
    placeholder listed in ``--help`` whose module is imported only when it is run."""
    wanted = _command_in(argv) if argv is not None else None
    for name, commands in EXTENSIONS.items():
        if argv is not None and wanted not in commands:
            for cmd, text in commands.items():  # a placeholder: listed in --help, loaded when run
                sub.add_parser(cmd, help=text, add_help=False)
            continue
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:
            continue
        module = importlib.import_module(name)
        before = set(sub.choices)
        module.register(sub)
        for cmd in set(sub.choices) - before:  # -v/-q after every extension's subcommand too
            sp = sub.choices[cmd]
            if not any(a.dest == "quiet" for a in sp._actions):
                for action in common._actions:
                    sp._add_action(action)


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is one), or None."""
    known = {c for commands in EXTENSIONS.values() for c in commands}
    return next((a for a in argv if a in known), None)


def _configure_logging(args: argparse.Namespace) -> None:
    verbose = getattr(args, "verbose", 0) or 0
    level = logging.ERROR if getattr(args, "quiet", False) else \
        logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    _configure_logging(args)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, LookupError) as exc:
        if isinstance(exc, (TypeError, LookupError)) and getattr(args, "verbose", None):
            raise
        if isinstance(exc, (TypeError, LookupError)) and not _is_expected(exc):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"semcontrib {args.command}: error: {text}", file=sys.stderr)
        return 2


def _is_expected(exc: BaseException) -> bool:
    """Errors of bad input that are not ValueError/OSError (e.g. a missing-weights error)."""
    return type(exc).__name__ in {"MissingWeightsError", "CorpusError", "ImageLoadError"}


if __name__ == "__main__":
    sys.exit(main())
