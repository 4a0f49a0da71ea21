"""Planning at scale (issue 22 item 1): listing + planning ``--n`` inputs with the engine before the columnar
planner (git ``--baseline-ref``) and with this one, in one run.

``--n`` distinct 8-byte files named like images (1,000 a folder) are planned three times by each engine,
each time in a fresh process (``read_inputs`` + ``make_plan`` through ``semcontrib.pipeline``, what a run
does before it looks at any chunk): the first run (hashes every file), a rerun with nothing to do, and a run
after adding 1 % new files. Printed per engine and run: the process's wall time (Python start and imports
included), the time listing and planning, peak memory, and whether torch was imported; then the ratios.

Run: ``python benchmarks/bench_planning.py --n 100000``; ``--work DIR`` keeps the files (and reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHUNK = 128
sys.path.insert(0, str(HERE))

from common import baseline_tree, make_files, work_folder  # noqa: E402


def phase(tree: str, folder: str, root: str) -> dict[str, Any]:
    """One planning run of the engine in ``tree`` (this process)."""
    t0 = time.perf_counter()
    sys.path.insert(0, tree)
    from semcontrib.pipeline import make_plan, read_inputs

    t1, c1 = time.perf_counter(), time.process_time()
    entries = read_inputs(Path(folder))
    t2 = time.perf_counter()
    plan = make_plan(Path(root), entries, CHUNK)
    t3, c3 = time.perf_counter(), time.process_time()
    return {"inputs": len(entries), "new_images": plan.new_images, "chunks": len(plan.chunks),
            "import_s": t1 - t0, "list_s": t2 - t1, "plan_s": t3 - t2, "run_s": t3 - t1, "run_cpu_s": c3 - c1,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": "torch" in sys.modules}


def run_phase(tree: Path, folder: Path, root: Path) -> dict[str, Any]:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", json.dumps(
        [str(tree), str(folder), str(root)])], capture_output=True, text=True, cwd=tree,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1:], "wall_s": wall}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": wall, "load": os.getloadavg()[0]}


def measure(engines: dict[str, Path], work: Path, n: int) -> dict[str, dict[str, Any]]:
    source = work / f"inputs{n}"
    if not (source / "complete").exists():
        shutil.rmtree(source, ignore_errors=True)
        make_files(source, 0, n)
        (source / "complete").write_text("")
    res: dict[str, dict[str, Any]] = {}
    for name, tree in engines.items():
        folder, root = work / f"in_{name}", work / f"plan_{name}"
        for p in (folder, root):
            shutil.rmtree(p, ignore_errors=True)
        shutil.copytree(source, folder, copy_function=os.link)
        root.mkdir()
        r = {"first": run_phase(tree, folder, root), "rerun": run_phase(tree, folder, root)}
        make_files(folder, 10**8 - n, max(1, n // 100))  # new names, after every earlier one in listing order
        r["add"] = run_phase(tree, folder, root)
        res[name] = r
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    return res


def report(res: dict[str, dict[str, Any]], n: int) -> None:
    print(f"planning {n:,} inputs (chunk {CHUNK}); load average now {os.getloadavg()[0]:.1f}")
    print(f"{'engine':8} {'run':6} {'wall s':>7} {'import s':>8} {'list s':>7} {'plan s':>7} {'cpu s':>6} "
          f"{'peak MB':>8} {'torch':>5} {'new':>8} {'load':>5}")
    for name, r in res.items():
        for step, x in r.items():
            if "failed" in x:
                print(f"{name:8} {step:6} failed: {x['failed']}")
                continue
            print(f"{name:8} {step:6} {x['wall_s']:7.2f} {x['import_s']:8.2f} {x['list_s']:7.2f} {x['plan_s']:7.2f} "
                  f"{x['run_cpu_s']:6.2f} {x['peak_mb']:8.0f} {str(x['torch']):>5} {x['new_images']:8,} "
                  f"{x['load']:5.1f}")
    if {"before", "after"} <= set(res) and not any("failed" in x for r in res.values() for x in r.values()):
        b, a = res["before"], res["after"]
        print(f"rerun with nothing to do: wall {b['rerun']['wall_s']:.2f} s -> {a['rerun']['wall_s']:.2f} s "
              f"({b['rerun']['wall_s'] / a['rerun']['wall_s']:.1f}x); listing + planning "
              f"{b['rerun']['run_s']:.2f} s -> {a['rerun']['run_s']:.2f} s "
              f"({b['rerun']['run_s'] / a['rerun']['run_s']:.1f}x); peak {b['rerun']['peak_mb']:.0f} MB -> "
              f"{a['rerun']['peak_mb']:.0f} MB")
        for name in ("before", "after"):
            r = res[name]
            share = r["add"]["run_s"] / r["first"]["run_s"] * 100
            print(f"adding 1 % ({name}): {r['add']['run_s']:.2f} s of listing + planning, "
                  f"{share:.1f} % of the first run's {r['first']['run_s']:.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--baseline-ref", default="fe5c413", help="git commit of the engine before ('' for none)")
    ap.add_argument("--engines", default="before,after", help="which to run: before, after or both")
    ap.add_argument("--after-tree", default=str(REPO), help="the engine measured as 'after' (default: this checkout)")
    ap.add_argument("--work", help="work folder (kept; default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(*json.loads(args.phase))))
        return 0
    with work_folder(args.work, "bench_planning_") as work:
        engines: dict[str, Path] = {}
        wanted = args.engines.split(",")
        if "before" in wanted and args.baseline_ref:
            engines["before"] = baseline_tree(args.baseline_ref, work / f"tree_{args.baseline_ref}")
        if "after" in wanted:
            engines["after"] = Path(args.after_tree)
        res = measure(engines, work, args.n)
        print(json.dumps(res)) if args.json else report(res, args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
