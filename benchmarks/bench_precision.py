"""Throughput and accuracy of the attribution methods in fp32, bf16 and fp32 + channels-last.

The embedded EfficientNet-Lite0 ``imagenet-heads`` model analyses N bundled photographs (every
head, the predicted class as target) with ``attribute_batch`` of ``lrp``, ``gradcam`` and ``ig``,
once per compute configuration (``semcontrib.model.ComputeOptions``):

* ``fp32``: the reference;
* ``bf16``: forward and backward under ``torch.autocast(..., dtype=torch.bfloat16)``;
* ``fp32+cl``: fp32 with channels-last weights and inputs;
* ``bf16+cl``: both;
* ``bf16-raw``: bf16 also for the methods that turn autocast off for themselves (``runs_in_bf16 =
  False``: ``lrp``, ``ig``), by calling their inner ``_attribute_batch``: the measurement behind
  that choice. A measurement only; the package never does this.

Per method and configuration it prints images per second (after one untimed warm-up batch) and the
ratio to fp32 measured in the same run, and the largest absolute difference to fp32 of the
``signed_l1`` region vectors (basis ``sum``, the stored basis of pixel methods) over a 3x3 grid
region map (``semcontrib.segmentation.grid``), over every image, head and region. The targets are
fixed from the fp32 prediction so that every configuration explains the same class.

Run: ``python benchmarks/bench_precision.py -n 4``; ``--device cuda`` on a GPU machine;
``--json FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import demo_rgbs

CONFIGS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp32+cl": ("fp32", True),
           "bf16+cl": ("bf16", True), "bf16-raw": ("bf16", False)}
DEFAULT_CONFIGS = ("fp32", "bf16", "fp32+cl", "bf16-raw")
METHODS = ("lrp", "gradcam", "ig")


def region_vectors(maps, labels, n_regions: int):
    """float64 (B, K) signed_l1 vectors (basis ``sum``) of float (B, S, S) maps over one label map."""
    import numpy as np

    from semcontrib.contributions import aggregate, normalise

    stats = [aggregate(m, labels, n_regions) for m in maps]
    s = normalise(np.stack([t.sum for t in stats]), np.stack([t.pos_sum for t in stats]),
                  np.stack([t.neg_sum for t in stats]), np.stack([t.n_pixels for t in stats]), basis="sum")
    return s.signed_l1


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from semcontrib.attribution import make_method, resolve_targets
    from semcontrib.model import ComputeOptions, load_imagenet_heads, predict
    from semcontrib.segmentation.grid import grid_labels

    torch.set_num_threads(args.threads)
    ComputeOptions(args.device).check_available()
    model = load_imagenet_heads()
    tensor_cpu = torch.cat([model.preprocess(r) for r in demo_rgbs(args.images, model.input_size)])
    size = model.input_size
    labels = grid_labels(size, size, 3, 3)
    heads = model.head_names
    methods = {"lrp": make_method("lrp"), "gradcam": make_method("gradcam"),
               "ig": make_method("ig", n_steps=args.ig_steps, internal_batch_size=args.ig_batch)}
    reference_logits = predict(model, tensor_cpu).logits
    targets = resolve_targets(model, reference_logits, heads)
    batches = [(s, min(s + args.batch_size, args.images)) for s in range(0, args.images, args.batch_size)]

    results: dict = {"images": args.images, "batch_size": args.batch_size, "ig_steps": args.ig_steps,
                     "device": args.device, "threads": args.threads, "torch": torch.__version__,
                     "heads": heads, "configs": {}}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for cname in args.configs:
        precision, channels_last = CONFIGS[cname]
        opts = ComputeOptions(args.device, precision, channels_last)
        opts.prepare(model)
        tensor = opts.tensor(tensor_cpu)
        dev_targets = {h: t.to(args.device) for h, t in targets.items()}
        per: dict = {}
        vectors[cname] = {}
        for mname in args.methods:
            meth = methods[mname]
            call = meth.attribute_batch
            if cname == "bf16-raw" and not meth.runs_in_bf16:
                call = meth._attribute_batch  # bypass the method's own fp32 fallback (see the module docs)
            with opts.context():  # warm-up (kernel selection, allocator), not timed
                call(model, tensor[:1], {h: t[:1] for h, t in dev_targets.items()})
            seconds = 0.0
            vecs = []
            for s, e in batches:
                sub = {h: t[s:e] for h, t in dev_targets.items()}
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with opts.context():
                    res = call(model, tensor[s:e], sub)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds += time.perf_counter() - t0
                for h in heads:
                    assert res[h].maps.dtype == np.float32, (cname, mname, res[h].maps.dtype)
                vecs.append(np.stack([region_vectors(res[h].maps, labels, 9) for h in heads], axis=1))
            v = np.concatenate(vecs)  # (N, heads, 9)
            vectors[cname][mname] = v
            entry = {"seconds": seconds, "images_per_s": args.images / seconds, "finite": bool(np.isfinite(v).all())}
            if cname != "fp32" and "fp32" in vectors:
                ref = vectors["fp32"][mname]
                entry["max_abs_diff_vs_fp32"] = float(np.abs(v - ref).max())
                entry["mean_abs_diff_vs_fp32"] = float(np.abs(v - ref).mean())
            per[mname] = entry
        results["configs"][cname] = per
        ComputeOptions(args.device).prepare(model)  # back to contiguous fp32 for the next configuration
    logits_after = predict(model, tensor_cpu).logits
    results["logits_unchanged"] = bool(all(np.array_equal(reference_logits[h], logits_after[h]) for h in heads))
    return results


def report(r: dict) -> None:
    print(f"{r['images']} images (batch {r['batch_size']}) x {len(r['heads'])} heads, EfficientNet-Lite0, "
          f"device {r['device']}, {r['threads']} threads, torch {r['torch']}, ig n_steps={r['ig_steps']}")
    print("region vectors: signed_l1 (basis sum) over a 3x3 grid; diff = largest |v - v_fp32| over images, "
          "heads, regions")
    base = r["configs"].get("fp32", {})
    print(f"{'method':8} {'config':8} {'img/s':>8} {'x fp32':>7} {'max diff':>10} {'mean diff':>10}")
    for cname, per in r["configs"].items():
        for mname, e in per.items():
            ratio = e["images_per_s"] / base[mname]["images_per_s"] if mname in base else float("nan")
            md = e.get("max_abs_diff_vs_fp32")
            mn = e.get("mean_abs_diff_vs_fp32")
            print(f"{mname:8} {cname:8} {e['images_per_s']:8.3f} {ratio:7.2f} "
                  f"{'-' if md is None else f'{md:.2e}':>10} {'-' if mn is None else f'{mn:.2e}':>10}"
                  f"{'' if e['finite'] else '  NON-FINITE'}")
    print(f"model logits unchanged after all runs: {r['logits_unchanged']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--ig-batch", type=int, default=16, help="IG interpolated images per forward")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(DEFAULT_CONFIGS))
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if "fp32" not in args.configs:
        args.configs = ["fp32", *args.configs]
    try:
        results = run(args)
    except ValueError as exc:
        if "CUDA" not in str(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
