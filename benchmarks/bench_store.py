"""The corpus store at scale (issue 11): files and bytes per image, a rerun with nothing to do, adding 1%.

A synthetic corpus of ``--images`` small photographs (random smooth colour images, 40-56 px) is analysed
with the tiny two-head model of the tests (32 px input, Grad-CAM, a 2x2 grid), so that the store, the
plan and the tables, not the model, are what is measured. Each phase runs in its own process (peak
memory is its own; the rerun's wall time includes starting Python and importing torch, as a user sees it):

* ``analyse``: the first run (throughput of everything around a trivial model);
* ``rerun``: the same command again, with nothing to do (no model loaded, nothing read but the plan);
* ``add``: ``--images / 100`` new photographs added to the folder, the same command again.

The baseline is the engine before the chunked store (git ``--baseline-ref``, format 1: one file per
image and stage, every table rebuilt by every run), measured in the same run on ``--baseline-images``
images; the ratios compare per-image figures. Bytes per image of a real corpus (EfficientNet-Lite0, 4
heads, 224 px maps) come from ``--real-images`` bundled photographs analysed for real.

Run: ``python benchmarks/bench_store.py --images 100000`` (about 15 minutes on 2 cores); ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import baseline_tree, photo_variants

REPO = Path(__file__).resolve().parent.parent

_PHASE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {tree!r})
import numpy as np
from semcontrib.pipeline import analyze
from semcontrib.regions import RegionMap
from tests.conftest import tiny_model

class Grid2:
    name = "grid2"
    vocabulary = ("r0c0", "r0c1", "r1c0", "r1c1")
    params = {{}}
    uses_evidence = False

    def segment(self, image):
        h, w = image.rgb.shape[:2]
        lab = np.zeros((h, w), np.int32)
        lab[:, w // 2:] += 1
        lab[h // 2:] += 2
        return RegionMap(lab, self.vocabulary)

kw = dict(methods=["gradcam"], regions=Grid2(), validity=False, batch_size=64)
if {new!r}:
    kw.update(chunk_size=128, workers=0)
t1 = time.perf_counter()
rep = analyze({images!r}, {out!r}, model=tiny_model(), **kw)
print(json.dumps({{"run_s": time.perf_counter() - t1, "import_s": t1 - t0, "computed": rep.computed,
                  "n_ok": rep.n_ok, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def make_images(folder: Path, start: int, n: int) -> None:
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from tests.conftest import synthetic_rgb

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        Image.fromarray(synthetic_rgb(rng, 40 + i % 17, 56)).save(folder / f"im{i:07d}.png", compress_level=1)


def phase(tree: Path, images: Path, out: Path, new: bool) -> dict:
    code = _PHASE.format(tree=str(tree), images=str(images), out=str(out), new=new)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tree)
    if r.returncode != 0:
        raise SystemExit(f"phase failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t
    return res


def store_stats(root: Path) -> dict:
    files = [p for p in root.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def measure(tree: Path, n: int, work: Path, new: bool) -> dict:
    images, out = work / "images", work / "corpus"
    make_images(images, 0, n)
    first = phase(tree, images, out, new)
    st = store_stats(out)
    rerun = phase(tree, images, out, new)
    add = max(1, n // 100)
    make_images(images, n, add)
    added = phase(tree, images, out, new)
    st_after = store_stats(out)
    return {"images": n, "analyse_s": first["run_s"], "analyse_img_s": n / first["run_s"],
            "analyse_peak_mb": first["peak_mb"], "files": st["files"], "files_per_image": st["files"] / n,
            "bytes_per_image": st["bytes"] / n, "rerun_wall_s": rerun["wall_s"], "rerun_run_s": rerun["run_s"],
            "rerun_computed": sum(rerun["computed"].values()), "add_images": add, "add_wall_s": added["wall_s"],
            "add_run_s": added["run_s"], "add_s_per_new_image": added["run_s"] / add,
            "files_after_add": st_after["files"]}


def real_bytes(n: int, work: Path) -> dict:
    """Bytes per image of a real corpus (Lite0, 4 heads): gradcam + lrp, grid regions, validity off."""
    sys.path.insert(0, str(REPO))
    from semcontrib.pipeline import analyze

    images = work / "real"
    photo_variants(images, n)
    out = work / "real_corpus"
    t = time.perf_counter()
    analyze(images, out, methods=["gradcam", "lrp"], regions="grid", validity=False, chunk_size=128, workers=2)
    seconds = time.perf_counter() - t
    by_kind: dict[str, int] = {}
    for p in (out / "store").rglob("*.npz"):
        kind = p.relative_to(out / "store").parts[0]
        by_kind[kind] = by_kind.get(kind, 0) + p.stat().st_size
    tables = sum(p.stat().st_size for p in out.rglob("*.parquet") if "store" not in p.parts)
    st = store_stats(out)
    return {"images": n, "seconds": seconds, "files": st["files"], "bytes_per_image": st["bytes"] / n,
            "store_bytes_per_image_by_kind": {k: v / n for k, v in sorted(by_kind.items())},
            "table_bytes_per_image": tables / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--baseline-images", type=int, default=2000)
    ap.add_argument("--baseline-ref", default="1c956d5", help="git commit of the engine before the chunked store")
    ap.add_argument("--real-images", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        work = Path(tmp)
        old_tree = baseline_tree(args.baseline_ref, work / "baseline_tree")
        base = measure(old_tree, args.baseline_images, work / "base", new=False)
        same = measure(REPO, args.baseline_images, work / "same", new=True)
        big = measure(REPO, args.images, work / "big", new=True) if args.images != args.baseline_images else same
        real = real_bytes(args.real_images, work) if args.real_images else {}
    res = {"baseline": base, "chunked_same_n": same, "chunked": big, "real_model": real,
           "ratios_same_n": {"files_per_image": base["files_per_image"] / same["files_per_image"],
                             "rerun_wall": base["rerun_wall_s"] / same["rerun_wall_s"],
                             "add_s_per_new_image": base["add_s_per_new_image"] / same["add_s_per_new_image"],
                             "analyse_img_s": same["analyse_img_s"] / base["analyse_img_s"]}}
    if args.json:
        print(json.dumps(res, indent=1))
        return
    for name in ("baseline", "chunked_same_n", "chunked"):
        r = res[name]
        print(f"{name:>15}: {r['images']} images: analyse {r['analyse_s']:.1f} s ({r['analyse_img_s']:.0f} img/s, "
              f"peak {r['analyse_peak_mb']:.0f} MB); {r['files']} files ({r['files_per_image']:.3f}/image), "
              f"{r['bytes_per_image'] / 1024:.1f} KiB/image; rerun {r['rerun_wall_s']:.1f} s wall "
              f"({r['rerun_run_s']:.2f} s in run, computed {r['rerun_computed']}); +{r['add_images']} images "
              f"{r['add_wall_s']:.1f} s wall ({r['add_s_per_new_image'] * 1000:.1f} ms per new image)")
    print("ratios (baseline / chunked, same N): " + ", ".join(f"{k} {v:.1f}x" for k, v in res["ratios_same_n"].items()))
    if real:
        print(f"real model (Lite0, 4 heads, gradcam + lrp, 224 px): {real['bytes_per_image'] / 1024:.1f} KiB/image "
              f"({', '.join(f'{k} {v / 1024:.1f}' for k, v in real['store_bytes_per_image_by_kind'].items())} KiB; "
              f"tables {real['table_bytes_per_image'] / 1024:.1f} KiB); {real['files']} files for "
              f"{real['images']} images")
    print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
