"""One GPU check: every GPU figure the project lacks, in one prepared command, as ONE JSON line.

    bash benchmarks/gpu_check.sh              # on a machine with an NVIDIA GPU: at most about 8 minutes
    bash benchmarks/gpu_check.sh --dry-run    # CPU, a tiny model, tiny sizes: the same code, in seconds

Installs nothing. ``analyze`` (the whole run: decoding, display JPEGs, predictions, region source,
attributions, statistics, tables) on ``-n`` photographs (the bundled ones, then mirrored and rotated
variants) with the embedded EfficientNet-Lite0 ``imagenet-heads`` model, in these configurations:

* methods ``no-IG`` (lrp, gradcam), ``IG16`` (ig, 16 steps) and ``default`` (lrp, gradcam, ig with its
  default parameters) x precision fp32 / bf16 x channels-last off / on, grid regions, ``--workers W``;
* ``default``, landscape regions, fp32 and bf16 (``--workers W``);
* ``default``, grid, fp32, ``--workers 0`` (the tables must equal those with workers);
  the dry run computes the matrix without workers and this one with one worker, and of the matrix
  only the configurations the checks need and one landscape run;
* ``no-IG``, grid, fp32 on the CPU, on the first ``--cpu-images`` photographs (the GPU's tables must
  agree with the CPU's).

Each configuration reports images per second (wall time of ``analyze``, after one untimed warm-up
run) and its GPU memory peak (``torch.cuda.max_memory_allocated``). Then the checks the CPU tests
make, on the tables (``score_signed_l1`` of the contributions table, per method, largest |difference|):

* ``workers``: workers W and workers 0 give the same images table and the same scores (the CPU test
  asks bit equality; on a GPU two fp32 runs may differ in the last bits, cuDNN's kernels being
  non-deterministic, so up to ``1e-5``);
* ``bf16``: bf16 + channels-last against fp32 (tests/test_pipeline.py): methods that run in fp32
  whatever the precision (lrp, ig) within ``1e-5``, Grad-CAM above 0 (bf16 did run) and within
  ``0.05`` (docs/scaling.md: 5.2e-3 measured on the CPU);
* ``channels_last``: fp32 + channels-last against fp32, within ``1e-3`` (float rounding order; with
  TF32 convolutions, PyTorch's default on a GPU, rounding is coarser than on a CPU);
* ``cpu``: the GPU's fp32 scores against the CPU's, within ``0.05`` (TF32 rounding).

Finally ``benchmarks/bench_training.py --device cuda`` (in a subprocess) gives training figures. A
configuration that would start after ``--budget`` seconds is skipped and listed in ``skipped``.
Without CUDA (and without ``--dry-run``) it prints one line saying so and exits with status 2; it
exits with 1 when a check fails (the JSON line is printed either way).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METHOD_SETS = {"no-IG": ("lrp", "gradcam"), "IG16": ("ig",), "default": ("lrp", "gradcam", "ig")}
PARAMS = {"no-IG": {}, "IG16": {"ig": {"n_steps": 16}}, "default": {}}
FP32_INSIDE = {"lrp", "ig"}  # run in fp32 whatever the precision (semcontrib.attribution)
TOLERANCE = {"workers": 1e-5, "bf16_fp32_inside": 1e-5, "bf16_gradcam": 0.05, "channels_last": 1e-3, "cpu": 0.05}


def _tiny_model() -> Any:
    """A two-conv, two-head model at 32 px (the dry run's stand-in for Lite0), seeded."""
    import torch
    from torch import nn

    from semcontrib.backbones import BackboneSpec
    from semcontrib.model import HeadSpec, LinearHeads, MultitaskModel

    class Pool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    g = torch.Generator().manual_seed(0)
    stages = nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()),
        conv2=nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()), pool=Pool()))
    heads = LinearHeads(6, [HeadSpec("a", ("no", "yes")), HeadSpec("b", ("x", "y", "z"))])
    with torch.no_grad():
        for p in [*stages.parameters(), *heads.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    spec = BackboneSpec(name="tiny", build=lambda w, p: (stages, None), feature_dim=6, input_size=32,
                        cam_layer="conv2", lrp_support="rules", lrp_note="gpu_check dry run",
                        canonizer_names=(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model = MultitaskModel(spec, stages, heads, {"name": "gpu-check-tiny", "backbone": "tiny", "input_size": 32,
                                                 "heads": {"a": ["no", "yes"], "b": ["x", "y", "z"]}})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _images(folder: Path, n: int, dry: bool) -> None:
    if dry:  # small smooth random images
        import numpy as np
        from PIL import Image

        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:48, 0:64]
        for k in range(n):
            img = np.stack([np.sin(xx / (4 + 8 * rng.random()) + 6 * rng.random()) + np.cos(yy / (3 + 6 * rng.random()))
                            for _ in range(3)], -1)
            Image.fromarray(((img + 2) * 63).astype(np.uint8)).save(folder / f"img{k:03d}.png")
        return
    sys.path.insert(0, str(HERE))
    from common import photo_variants

    photo_variants(folder, n)


def _configs(workers: int, full: bool) -> list[dict[str, Any]]:
    """The analyze configurations, the ones the checks need first (``full``: the whole matrix, else
    those and one landscape run)."""
    base = {"regions": "grid", "workers": workers, "channels_last": False}
    first = [{**base, "methods": "default", "precision": "fp32"},
             {**base, "methods": "default", "precision": "fp32", "workers": _other_workers(workers)},
             {**base, "methods": "default", "precision": "bf16", "channels_last": True},
             {**base, "methods": "default", "precision": "fp32", "channels_last": True},
             {**base, "methods": "no-IG", "precision": "fp32", "device": "cpu"}]
    rest = [{**base, "methods": m, "precision": p, "channels_last": cl}
            for m in METHOD_SETS for p in ("fp32", "bf16") for cl in (False, True)]
    rest += [{**base, "methods": "default", "precision": p, "regions": "landscape"} for p in ("fp32", "bf16")]
    if not full:
        rest = rest[-2:-1]
    out: list[dict[str, Any]] = []
    for c in first + rest:
        if c not in out:
            out.append(c)
    return out


def _other_workers(workers: int) -> int:
    """The worker count the workers check compares with: none, or one when the matrix runs without."""
    return 0 if workers > 0 else 1


def _name(c: dict[str, Any]) -> str:
    return (f"{c['methods']}/{c['precision']}{'+cl' if c['channels_last'] else ''}/{c['regions']}/"
            f"w{c['workers']}{'/cpu' if c.get('device') == 'cpu' else ''}")


def _analyze(model: Any, images: Path, out: Path, c: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from semcontrib.pipeline import analyze

    device = c.get("device", args.device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rep = analyze(images, out, model=model, methods=list(METHOD_SETS[c["methods"]]), method_params=PARAMS[c["methods"]],
                  regions=c["regions"], validity=False, batch_size=args.batch_size, chunk_size=args.chunk_size,
                  device=device, precision=c["precision"], channels_last=c["channels_last"], workers=c["workers"])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"config": _name(c), **{k: c[k] for k in ("methods", "precision", "channels_last", "regions", "workers")},
            "device": device, "images": rep.n_ok, "seconds": round(seconds, 3),
            "img_per_s": round(rep.n_ok / seconds, 3),
            "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}


def _scores(root: Path) -> Any:
    from semcontrib.corpus import Corpus

    c = Corpus.open(root)
    keys = ["image_id", "head", "method", "region_index"]
    return c.images.drop(columns=["path"]), c.contributions.set_index(keys)[["target", "score_signed_l1"]].sort_index()


def _diff(a: Path, b: Path) -> dict[str, Any]:
    """Largest |score difference| per method over the rows both corpora hold with the same target, how many
    such rows, and whether the two images tables are equal."""
    ia, ca = _scores(a)
    ib, cb = _scores(b)
    ids = sorted(set(ia["image_id"]) & set(ib["image_id"]))
    images_equal = ia.set_index("image_id").loc[ids].equals(ib.set_index("image_id").loc[ids])
    j = ca.add_suffix("_a").join(cb.add_suffix("_b"), how="inner")
    same = j[j["target_a"] == j["target_b"]]
    per = (same["score_signed_l1_a"] - same["score_signed_l1_b"]).abs().groupby(level="method").max()
    return {"max_abs_diff": {m: float(v) for m, v in per.items()}, "rows": int(len(same)),
            "other_target_rows": int(len(j) - len(same)), "images_equal": bool(images_equal)}


def _checks(outs: dict[str, Path], workers: int) -> dict[str, Any]:
    def out(**kw: Any) -> Path | None:
        c = {"regions": "grid", "workers": workers, "channels_last": False, "methods": "default",
             "precision": "fp32", **kw}
        return outs.get(_name(c))

    checks: dict[str, Any] = {}
    ref = out()
    pairs = {"workers": out(workers=_other_workers(workers)), "bf16": out(precision="bf16", channels_last=True),
             "channels_last": out(channels_last=True), "cpu": out(methods="no-IG", device="cpu")}
    for name, other in pairs.items():
        if ref is None or other is None:
            checks[name] = {"ok": None, "why": "not run"}
            continue
        d = _diff(ref, other)
        diffs = d["max_abs_diff"]
        if name == "bf16":
            tol = {m: TOLERANCE["bf16_fp32_inside"] if m in FP32_INSIDE else TOLERANCE["bf16_gradcam"] for m in diffs}
            ok = all(v <= tol[m] for m, v in diffs.items()) and diffs.get("gradcam", 1.0) > 0
        else:
            tol = {m: TOLERANCE[name] for m in diffs}
            ok = all(v <= tol[m] for m, v in diffs.items())
        if name == "workers":
            ok = ok and d["images_equal"] and d["other_target_rows"] == 0
        checks[name] = {"ok": bool(ok and d["rows"] > 0), "tolerance": tol, **d}
    return checks


_TRAINING = {
    "backbone_ms_per_view": r"backbone \S+: ([\d.]+) ms per view",
    "heads_ms_per_epoch": r"heads: ([\d.]+) ms per epoch",
    "fine_tune_ms_per_image": r"fine-tuning \(\w+\) on \S+: ([\d.]+) ms per image",
    "fine_tune_cpu_ms_per_image": r"fine-tuning on cpu: ([\d.]+) ms per image",
    "ratio_cpu_over_gpu": r"ratio cpu / \S+: ([\d.]+)x",
}


def _training(args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """``bench_training.py`` in a subprocess, its printed figures parsed (``error`` when it failed)."""
    if args.dry_run:
        extra = ["--device", "cpu", "--images", "20", "--views", "0", "--sample", "2", "--ft-images", "2",
                 "--batch-size", "2"]
    else:
        extra = ["--device", "cuda", "--images", "2000", "--sample", "64", "--ft-images", "64", "--batch-size", "32",
                 "--workers", str(min(args.workers, 4))]
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, str(HERE / "bench_training.py"), *extra], capture_output=True, text=True,
                           timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    figures: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 1)}
    for key, pattern in _TRAINING.items():
        m = re.search(pattern, r.stdout)
        if m:
            figures[key] = float(m.group(1))
    if "fine_tune_ms_per_image" in figures:
        figures["fine_tune_img_per_s"] = round(1000 / max(figures["fine_tune_ms_per_image"], 1e-9), 2)
    if "backbone_ms_per_view" not in figures:
        figures["error"] = "could not read bench_training.py's figures"
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    start = time.perf_counter()
    result: dict[str, Any] = {"gpu_check": 1, "mode": "dry-run" if args.dry_run else "gpu", "device": args.device,
                              "torch": torch.__version__, "cuda": torch.version.cuda, "images": args.images,
                              "batch_size": args.batch_size, "workers": args.workers}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(args.device)
        result["tf32_convolutions"] = bool(torch.backends.cudnn.allow_tf32)
    if args.dry_run:
        model = _tiny_model()
    else:
        from semcontrib.model import load_model

        model = load_model("imagenet-heads")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        _images(work / "images", args.images, args.dry_run)
        cpu_images = work / "cpu_images"
        cpu_images.mkdir()
        for p in sorted((work / "images").iterdir())[:args.cpu_images]:
            os.link(p, cpu_images / p.name)
        warm = {"regions": "grid", "workers": 0, "channels_last": False, "methods": "default", "precision": "fp32"}
        _analyze(model, cpu_images, work / "warm-up", warm, args)  # CUDA context, kernels, allocator: untimed
        runs, outs, skipped = [], {}, []
        for c in _configs(args.workers, not args.dry_run):
            if time.perf_counter() - start > args.budget:
                skipped.append(_name(c))
                continue
            out = work / f"c{len(outs)}"
            runs.append(_analyze(model, cpu_images if c.get("device") == "cpu" else work / "images", out, c, args))
            outs[_name(c)] = out
        result["analyze"] = runs
        result["skipped"] = skipped
        peaks = [r["gpu_peak_mb"] for r in runs if r["gpu_peak_mb"] is not None]
        result["gpu_peak_mb"] = max(peaks) if peaks else None
        result["checks"] = _checks(outs, args.workers)
    result["training"] = _training(args, args.total - (time.perf_counter() - start) - 5)
    result["ok"] = all(c["ok"] is not False for c in result["checks"].values())
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, a tiny model, tiny sizes (seconds)")
    ap.add_argument("-n", "--images", type=int, default=None, help="photographs per configuration (GPU: 256)")
    ap.add_argument("--batch-size", type=int, default=None, help="GPU: 64")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (GPU: min(8, cores))")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds after which no further analyze configuration starts (GPU: 330)")
    ap.add_argument("--device", default=None, help="cuda or cuda:N (dry run: cpu)")
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.device = args.device or ("cpu" if dry else "cuda")
    args.images = args.images or (6 if dry else 256)
    args.batch_size = args.batch_size or (3 if dry else 64)
    args.chunk_size = 3 if dry else 128
    args.workers = (0 if dry else min(8, os.cpu_count() or 1)) if args.workers is None else args.workers
    args.budget = args.budget or (120.0 if dry else 330.0)
    args.total = 240.0 if dry else 470.0  # the training figures must be done by then
    args.cpu_images = 3 if dry else 8
    os.environ.setdefault("OMP_NUM_THREADS", "1" if dry else str(min(8, os.cpu_count() or 1)))
    import torch

    if not dry and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device available (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "run it on a machine with an NVIDIA GPU, or use --dry-run for the CPU smoke test", file=sys.stderr)
        return 2
    if dry:
        torch.set_num_threads(1)
    import logging

    logging.basicConfig(level=logging.ERROR)
    result = run(args)
    print(json.dumps(result, separators=(",", ":")))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
