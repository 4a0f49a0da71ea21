"""Throughput and peak memory of the batched attribution engine against the naive approach.

Both analyse the same N bundled photographs with the embedded EfficientNet-Lite0 ``imagenet-heads``
model, every head and every method, with the same settings:

* naive: one forward for the prediction, then one plain captum / zennit call per image, per head,
  per method (``attribute_naive``: a full forward and backward each);
* engine: ``attribute_batch`` on batches of ``--batch-size`` images (shared forward passes, one
  backward per head target; Grad-CAM's backbone prefix once per batch; IG's interpolated batches
  shared by all heads).

Each side runs in its own subprocess so that peak resident memory (ru_maxrss) is its own.
Prints images per second, peak memory and the ratio. Run: ``python benchmarks/bench_pipeline.py``.

``--end-to-end``: the whole ``analyze`` (decoding, display images, predictions, region source,
attributions, statistics, tables) on ``-n`` photographs (the bundled ones, then mirrored and rotated
variants), for ``--methods`` and ``--regions``, in three configurations measured in the same run: the
engine before the chunked store (git ``--baseline-ref``), the chunked engine in one process
(``--workers 0``), and with ``--workers`` worker processes. ``--device cuda [--precision bf16]
[--channels-last]`` runs the chunked configurations on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from common import baseline_tree, demo_rgbs, photo_variants


def _phase(phase: str, n: int, batch_size: int, ig_steps: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from semcontrib.attribution import make_method, resolve_targets
    from semcontrib.model import load_imagenet_heads, predict

    model = load_imagenet_heads()
    rgbs = demo_rgbs(n, model.input_size)
    tensor = torch.cat([model.preprocess(r) for r in rgbs])
    methods = {"lrp": make_method("lrp"), "gradcam": make_method("gradcam"),
               "ig": make_method("ig", n_steps=ig_steps)}
    heads = model.head_names
    per_method: dict[str, float] = {m: 0.0 for m in methods}
    t0 = time.perf_counter()
    if phase == "naive":
        for i in range(n):
            x = tensor[i:i + 1]
            logits = predict(model, x).logits
            for m, meth in methods.items():
                t = time.perf_counter()
                for h in heads:
                    meth.attribute_naive(model, x, h, int(np.argmax(logits[h][0])))
                per_method[m] += time.perf_counter() - t
    else:
        for s in range(0, n, batch_size):
            x = tensor[s:s + batch_size]
            targets = resolve_targets(model, predict(model, x).logits, heads)
            for m, meth in methods.items():
                t = time.perf_counter()
                meth.attribute_batch(model, x, targets)
                per_method[m] += time.perf_counter() - t
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"phase": phase, "seconds": seconds, "images_per_s": n / seconds, "peak_mb": peak_mb,
            "per_method_s": per_method}


_E2E = r"""
import json, resource, sys, time
sys.path.insert(0, {tree!r})
import torch
torch.set_num_threads({threads})
from semcontrib.pipeline import analyze
kw = dict(methods={methods!r}, regions={regions!r}, validity=False, batch_size={batch})
kw.update({extra!r})
t = time.perf_counter()
rep = analyze({images!r}, {out!r}, **kw)
print(json.dumps({{"seconds": time.perf_counter() - t, "n_ok": rep.n_ok,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def end_to_end(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        work = Path(tmp)
        photo_variants(work / "images", args.images)
        old = baseline_tree(args.baseline_ref, work / "baseline_tree")
        gpu = {"device": args.device, "precision": args.precision, "channels_last": args.channels_last} \
            if args.device != "cpu" else {}
        chunked = {**gpu, **({"chunk_size": args.chunk_size} if args.chunk_size else {})}
        configs = [("baseline (format 1)", old, {"device": args.device} if args.device != "cpu" else {}),
                   ("chunked, workers 0", repo, {"workers": 0, **chunked}),
                   (f"chunked, workers {args.workers}", repo, {"workers": args.workers, **chunked})]
        for name, tree, extra in configs:
            code = _E2E.format(tree=str(tree), threads=args.threads, methods=args.methods.split(","),
                               regions=args.regions, batch=args.batch_size, extra=extra, images=str(work / "images"),
                               out=str(work / name.replace(" ", "_").replace(",", "")))
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree)
            if r.returncode != 0:
                print(f"{name} failed:\n{r.stderr[-2000:]}")
                return 1
            results[name] = json.loads(r.stdout.strip().splitlines()[-1])
    chunks = f", chunks of {args.chunk_size}" if args.chunk_size else ""
    print(f"analyze end to end: {args.images} photographs{chunks}, methods {args.methods}, regions {args.regions}, "
          f"Lite0 imagenet-heads (4 heads), batch {args.batch_size}, device {args.device}, {args.threads} threads")
    base = results["baseline (format 1)"]["seconds"]
    for name, r in results.items():
        print(f"  {name:24} {args.images / r['seconds']:7.2f} img/s  {r['seconds']:7.1f} s  peak {r['peak_mb']:6.0f} MB"
              f"  {base / r['seconds']:.2f}x baseline")
    if args.json:
        print(json.dumps(results))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phase", choices=["naive", "engine"], help=argparse.SUPPRESS)
    ap.add_argument("--end-to-end", action="store_true", help="the whole analyze, against the format-1 engine")
    ap.add_argument("--methods", default="gradcam", help="--end-to-end: comma-separated methods")
    ap.add_argument("--regions", default="landscape", help="--end-to-end: region source")
    ap.add_argument("--workers", type=int, default=2, help="--end-to-end: worker processes")
    ap.add_argument("--chunk-size", type=int, default=0,
                    help="--end-to-end: images per chunk of the chunked engine (default: the engine's, 128); a worker "
                    "pool starts from 4 chunks")
    ap.add_argument("--baseline-ref", default="1c956d5", help="--end-to-end: git commit of the format-1 engine")
    ap.add_argument("--device", default="cpu", help="--end-to-end: cpu or cuda")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.end_to_end:
        return end_to_end(args)
    if args.phase:
        print(json.dumps(_phase(args.phase, args.images, args.batch_size, args.ig_steps, args.threads)))
        return 0
    results = {}
    for phase in ("naive", "engine"):
        cmd = [sys.executable, __file__, "--phase", phase, "-n", str(args.images), "--batch-size",
               str(args.batch_size), "--ig-steps", str(args.ig_steps), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[phase] = json.loads(out)
    nv, en = results["naive"], results["engine"]
    print(f"{args.images} images x 4 heads x 3 methods (lrp, gradcam, ig n_steps={args.ig_steps}), "
          f"EfficientNet-Lite0, {args.threads} CPU threads")
    print(f"{'':8} {'img/s':>8} {'seconds':>9} {'peak MB':>9}   per method (s)")
    for r in (nv, en):
        pm = "  ".join(f"{k} {v:.1f}" for k, v in r["per_method_s"].items())
        print(f"{r['phase']:8} {r['images_per_s']:8.3f} {r['seconds']:9.1f} {r['peak_mb']:9.0f}   {pm}")
    print(f"speed-up (engine / naive throughput): {en['images_per_s'] / nv['images_per_s']:.2f}x; "
          f"peak memory ratio: {en['peak_mb'] / nv['peak_mb']:.2f}")
    for m in nv["per_method_s"]:
        print(f"  {m}: {nv['per_method_s'][m] / max(en['per_method_s'][m], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
