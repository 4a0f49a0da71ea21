"""A rerun with nothing to do, whole (issue 22 item 1): ``analyze`` on a finished corpus in a fresh process,
with the engine before (git ``--baseline-ref``) and with this checkout, in one run.

A first run analyses ``--n`` small synthetic images (the tests' tiny model, named ``tiny``; Grad-CAM on the
grid) with this checkout; then each engine reruns it ``--repeat`` times, alternating, each time in a fresh
process (``python -c``: Python start, imports, listing, planning, the chunks' checks, publish). Printed per
engine: the median process wall time, the time to import ``semcontrib.pipeline`` and to run ``analyze``,
peak memory, whether torch was imported, and the chunks that needed work (must be 0); then the ratios.
What torch costs does not grow with ``--n`` (planning does: ``bench_planning.py`` measures it at 100,000).

Run: ``python benchmarks/bench_rerun.py``; ``--n 2000`` for more inputs; ``--json`` for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHUNK = 128

_FIRST = r"""
import sys
sys.path.insert(0, {tree!r})
from pathlib import Path
import numpy as np
from PIL import Image
import semcontrib.engine.run as engine_run
from semcontrib.pipeline import analyze
from tests.conftest import tiny_model

folder = Path({folder!r})
folder.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i in range({n}):
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"im{{i:06d}}.png")
engine_run.load_model = lambda name: tiny_model()
rep = analyze(folder, {out!r}, model="tiny", methods=["gradcam"], regions="grid", validity=False,
              batch_size=64, chunk_size={chunk})
print(rep.chunks, rep.n_ok)
"""

_RERUN = r"""
import json, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {tree!r})
from semcontrib.pipeline import analyze
t1 = time.perf_counter()
rep = analyze({folder!r}, {out!r}, model="tiny", methods=["gradcam"], regions="grid", validity=False,
              batch_size=64, chunk_size={chunk})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "run_s": t2 - t1, "todo": rep.chunks[1], "n_ok": rep.n_ok,
                  "model_loaded": rep.model_loaded, "torch": "torch" in sys.modules,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def rerun(tree: Path, folder: Path, out: Path) -> dict[str, Any]:
    code = _RERUN.format(tree=str(tree), folder=str(folder), out=str(out), chunk=CHUNK)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1:], "wall_s": wall}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": wall, "load": os.getloadavg()[0]}


def measure(engines: dict[str, Path], work: Path, n: int, repeat: int) -> dict[str, Any]:
    folder, out = work / "images", work / "corpus"
    first = subprocess.run([sys.executable, "-c", _FIRST.format(tree=str(REPO), folder=str(folder), out=str(out),
                                                                 n=n, chunk=CHUNK)],
                           capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if first.returncode != 0:
        raise SystemExit(f"the first run failed: {first.stderr.strip().splitlines()[-1:]}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for _ in range(repeat):  # alternating, so that a change in the machine's load touches both
        for name, tree in engines.items():
            runs[name].append(rerun(tree, folder, out))
    return {"n": n, "first": first.stdout.strip(), "runs": runs}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return {"failed": runs[0]["failed"]}
    med = {k: statistics.median(r[k] for r in ok) for k in ("wall_s", "import_s", "run_s", "peak_mb")}
    return {**med, "torch": sorted({r["torch"] for r in ok}), "todo": sorted({r["todo"] for r in ok}),
            "model_loaded": sorted({r["model_loaded"] for r in ok}), "load": statistics.median(r["load"] for r in ok)}


def report(res: dict[str, Any]) -> None:
    print(f"rerun with nothing to do of {res['n']:,} images (chunk {CHUNK}; first run: chunks, ok = {res['first']}); "
          f"median of {len(next(iter(res['runs'].values())))} fresh processes per engine")
    print(f"{'engine':8} {'wall s':>7} {'import s':>8} {'run s':>6} {'peak MB':>8} {'torch':>12} {'todo':>5} "
          f"{'model':>7} {'load':>5}")
    s = {name: summary(runs) for name, runs in res["runs"].items()}
    for name, x in s.items():
        if "failed" in x:
            print(f"{name:8} failed: {x['failed']}")
            continue
        print(f"{name:8} {x['wall_s']:7.2f} {x['import_s']:8.2f} {x['run_s']:6.2f} {x['peak_mb']:8.0f} "
              f"{str(x['torch']):>12} {str(x['todo']):>5} {str(x['model_loaded']):>7} {x['load']:5.1f}")
    if {"before", "after"} <= set(s) and not any("failed" in x for x in s.values()):
        b, a = s["before"], s["after"]
        print(f"after vs before: wall {b['wall_s']:.2f} s -> {a['wall_s']:.2f} s ({b['wall_s'] / a['wall_s']:.2f}x), "
              f"peak {b['peak_mb']:.0f} MB -> {a['peak_mb']:.0f} MB ({b['peak_mb'] - a['peak_mb']:+.0f} MB saved)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images of the corpus (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per engine (default 3)")
    ap.add_argument("--baseline-ref", default="84e439f", help="git commit of the engine before ('' for none)")
    ap.add_argument("--after-tree", default=str(REPO), help="the engine measured as 'after' (default: this checkout)")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from common import baseline_tree, work_folder

    with work_folder(args.work, "bench_rerun_") as work:
        engines: dict[str, Path] = {}
        if args.baseline_ref:
            engines["before"] = baseline_tree(args.baseline_ref, work / f"tree_{args.baseline_ref}")
        engines["after"] = Path(args.after_tree)
        res = measure(engines, work, args.n, args.repeat)
        print(json.dumps(res)) if args.json else report(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
