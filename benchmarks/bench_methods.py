"""Seconds per image of each attribution method, end to end, on the twelve bundled photographs.

Usage::

    python benchmarks/bench_methods.py [--methods gradcam,lime,xrai] [--regions grid] [--threads 2]

For each method, one ``semcontrib analyze PHOTOS --out FRESH --methods M --regions R`` in this process
(the embedded EfficientNet-Lite0 ``imagenet-heads`` model, every head, the method's default options),
twice: without the validity record (``--no-validity``: decoding, predictions, regions, the method,
statistics, tables) and with it (the default: faithfulness and deletion/insertion curves per head).
The first method is the baseline measured in the same run (Grad-CAM by default, the cheapest): every
line prints wall-clock and CPU seconds per image (CPU: this process and its finished worker processes;
steadier than wall-clock on a shared machine) and the ratio of CPU seconds to the baseline's. A first
untimed run warms imports and the model. Also prints, per method, the heads that have contributions
for every image and a validity record for every image, so the figures come from complete results.

Measured 2026-12-05 on the shared 2-core CPU machine, 12 photographs, every head (nature, biotic,
material, landscape, imagenet), seconds per image; ratios are within one run (the machine's load
changed between runs, so compare across runs only by the ratios)::

    run                          method    wall   cpu   ratio | +validity wall   cpu  ratio
    --methods gradcam,lime       gradcam   0.51   0.49    1.0 |           2.65  2.92    1.0
    (quiet machine)              lime      2.56   4.01    8.2 |          10.06  9.43    3.2
    --methods gradcam,xrai       gradcam   0.13   0.22    1.0 |           1.27  1.98    1.0
    (mostly quiet)               xrai     25.52  24.64  110.7 |          29.58 25.76   13.0

lime: 64 coalition forwards per image shared by the five heads. xrai: IG with 32 steps, then
saliency's full XRAI ranking once per head (its Python loop over segments took about half the
profile; ``--xrai-algorithm fast`` ranks once). Every run had contributions and a validity record
for every head and image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _analyze(photos: Path, out: Path, method: str, regions: str, validity: bool) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process and its finished workers) of one analysis."""
    from semcontrib.cli import main

    args = ["-q", "analyze", str(photos), "--out", str(out), "--methods", method, "--regions", regions]
    args += [] if validity else ["--no-validity"]
    t0, c0 = time.perf_counter(), _cpu()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(args)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    if rc != 0:
        sys.exit(f"analyze --methods {method} exited {rc}: {err.getvalue()[-400:]}")
    return seconds, cpu


def _heads(out: Path, method: str) -> tuple[list[str], list[str]]:
    """Heads whose contributions of ``method`` cover every image, and heads whose validity record
    (faithfulness) is finite for every image."""
    import numpy as np

    from semcontrib.corpus import Corpus

    corpus = Corpus.open(out)
    n = int((corpus.images["status"] == "ok").sum())
    con = corpus.contributions[corpus.contributions["method"] == method]
    att = corpus.attributions[corpus.attributions["method"] == method]
    heads = sorted(h for h, g in con.groupby("head") if g["image_id"].nunique() == n)
    checked = sorted(h for h, g in att.groupby("head")
                     if len(g) == n and bool(np.isfinite(g["faithfulness"].astype(float)).all()))
    return heads, checked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="gradcam,lime,xrai", help="the first is the baseline")
    ap.add_argument("--regions", default="grid")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--no-validity", dest="validity", action="store_false",
                    help="leave out the runs with the validity record")
    args = ap.parse_args()

    import torch

    from semcontrib.demo import write_demo_images

    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = root / "photos"
        n = len(write_demo_images(photos))
        _analyze(photos, root / "warm", methods[0], args.regions, validity=False)
        rows = []
        for m in methods:
            plain = _analyze(photos, root / f"{m}-plain", m, args.regions, validity=False)
            full = _analyze(photos, root / f"{m}-validity", m, args.regions, validity=True) if args.validity else None
            checked = root / (f"{m}-validity" if args.validity else f"{m}-plain")
            rows.append((m, plain, full, *_heads(checked, m)))
            print(f"done: {m}", file=sys.stderr, flush=True)
    print(f"{n} bundled photographs, --regions {args.regions}, {args.threads} torch threads, "
          f"baseline {methods[0]} (same run); wall-clock and CPU seconds per image")
    print(f"{'method':10s} {'wall':>7s} {'cpu':>7s} {'ratio':>6s} | {'+validity wall':>14s} {'cpu':>7s} {'ratio':>6s}"
          "  | heads with contributions / with validity")
    base = rows[0]
    for m, plain, full, heads, checked in rows:
        line = f"{m:10s} {plain[0] / n:7.2f} {plain[1] / n:7.2f} {plain[1] / base[1][1]:6.1f} | "
        if full is not None and base[2] is not None:
            line += f"{full[0] / n:14.2f} {full[1] / n:7.2f} {full[1] / base[2][1]:6.1f}"
        else:
            line += f"{'-':>14s} {'-':>7s} {'-':>6s}"
        print(f"{line}  | {','.join(heads) or '-'} / {','.join(checked) or '-'}")

if __name__ == "__main__":
    main()
