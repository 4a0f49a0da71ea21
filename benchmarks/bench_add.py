"""Adding 1 % to a corpus, the whole ``semcontrib analyze`` with the real model (issue 22 item 1).

``-n`` distinct photographs (the bundled ones, then mirrored, rotated and resized variants) are analysed by
``semcontrib analyze`` in a fresh process each time, as a user runs it: the first run, a rerun with nothing
to do, and a run after adding 1 % new photographs (at least one). Printed: each run's wall time (Python
start, imports and model load included), its time per new image, and the +1 % run as a share of the first
run (the goal: at most 5 %). The cheapest real configuration is the default (Grad-CAM, grid regions, no
validity record): the model's share of a run is smallest there, so the fixed costs weigh most.

``bench_million.py --phases plan`` measures what does not shrink with the model: listing and planning a
million files (``docs/scaling.md`` combines the two).

Run: ``python benchmarks/bench_add.py -n 400``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import photo_variants  # noqa: E402


def analyze(images: Path, out: Path, args: argparse.Namespace) -> float:
    """Seconds of wall time of one ``semcontrib analyze`` process."""
    cmd = [sys.executable, "-m", "semcontrib", "analyze", str(images), "--out", str(out), "--methods", args.methods,
           "--regions", args.regions, "--workers", str(args.workers), "--quiet"]
    if not args.validity:
        cmd.append("--no-validity")
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"semcontrib analyze failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=400, help="photographs in the first run")
    ap.add_argument("--methods", default="gradcam")
    ap.add_argument("--regions", default="grid")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--validity", action="store_true", help="record validity too (default: --no-validity)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    add = max(1, args.images // 100)
    with tempfile.TemporaryDirectory(prefix="bench_add_") as tmp:
        work = Path(tmp)
        every, images, out = work / "every", work / "images", work / "corpus"
        photo_variants(every, args.images + add)
        files = sorted(every.iterdir(), key=lambda p: (p.name.startswith("variant"), p.name))
        images.mkdir()
        for f in files[:args.images]:
            shutil.copy2(f, images / f.name)
        res = {"images": args.images, "added": add, "first_s": analyze(images, out, args)}
        res["rerun_s"] = analyze(images, out, args)
        for f in files[args.images:]:
            shutil.copy2(f, images / f.name)
        res["add_s"] = analyze(images, out, args)
    share = res["add_s"] / res["first_s"]
    res["add_share"] = share
    validity = "with validity" if args.validity else "no validity"
    print(f"semcontrib analyze, {args.methods}, regions {args.regions}, {validity}, workers {args.workers}, "
          "Lite0 imagenet-heads; wall time of each process (start, imports and model load included)")
    print(f"  first run       {args.images:6d} images  {res['first_s']:8.1f} s  "
          f"{res['first_s'] / args.images:.3f} s per image")
    print(f"  rerun, nothing  {0:6d} images  {res['rerun_s']:8.1f} s")
    print(f"  adding 1 %      {add:6d} images  {res['add_s']:8.1f} s  {res['add_s'] / add:.3f} s per new image")
    print(f"  adding 1 % / first run: {share * 100:.1f} %  (goal <= 5 %: {'met' if share <= 0.05 else 'NOT met'})")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
