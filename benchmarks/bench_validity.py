"""What the validity record costs beside the analysis it judges, and what its sampled curves give up.

Cost. For each configuration (``--methods gradcam --regions grid`` and the default methods with
``--regions landscape``), on the bundled photographs (``-n`` files: the bundled ones, then mirrored
and rotated variants), with the embedded ``imagenet-heads`` model loaded once and the same options:

1. ``analyze --no-validity`` into a new corpus: the analysis alone (decoding, predictions, regions,
   attributions, tables), timed;
2. ``analyze --validity`` on that corpus: everything else is read back from the store, so this run
   is the validity record (plus reading the stored work, which favours no side), timed.

The ratio (2) / (1) is printed per configuration; both runs happen in the same process, one after
the other, so machine load shifts both alike (repeat with ``--repeat``: the median ratio is printed).
``--baseline-ref REF`` then measures the same configuration with the code of git ``REF`` (its own
``bench_validity.py``, in a fresh process on a ``git archive`` of REF, right after): before and after
in one run.

The record timed here is what ``analyze`` computes; the engine does not yet hand the analysis' logits to
:func:`semcontrib.validity.compute_validity` (``original_logits``), which would save the original image's
forward (1 of the ``m + 2`` or more forwards per image).

Precision of sampled curves (``--tolerance``): on the first ``--tolerance-images`` photographs and
their stored scores (the corpus of each configuration), :func:`semcontrib.validity.compute_validity`
with each of ``--tolerance-steps`` curve points (the default random orders) against full curves
(``steps=0``) and the exact random reference: the median, 90th percentile and largest absolute
difference of the MoRF / LeRF AUCs, of the random reference and of the gains over random, over every
(image, head, method), and the forwards per image each setting asks for (the full curves' perturbed
images are memoised, so the sampled settings cost no further forwards; the counts are what they would
cost alone). Faithfulness is never sampled.

Run: ``python benchmarks/bench_validity.py`` (a few minutes on one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import photo_variants

CONFIGS = {"gradcam-grid": {"methods": ["gradcam"], "regions": "grid"},
           "default-landscape": {"methods": None, "regions": "landscape"}}


def _timed(fn, *args, **kw) -> tuple[float, float]:
    """Wall and CPU seconds of this process (one torch thread: the CPU seconds are those of the work, less
    sensitive than the wall seconds to other jobs on a shared machine)."""
    t, c = time.perf_counter(), time.process_time()
    fn(*args, **kw)
    return time.perf_counter() - t, time.process_time() - c


def cost(model, photos: Path, work: Path, name: str, spec: dict, batch_size: int, sample: int = 1) -> dict:
    """``sample`` > 1: the record on one image in ``sample`` (``--validity-sample``)."""
    from semcontrib.pipeline import analyze

    out = work / f"{name}-{time.time_ns()}"
    kw = {"regions": spec["regions"], "batch_size": batch_size}
    if spec["methods"]:
        kw["methods"] = spec["methods"]
    alone, alone_cpu = _timed(analyze, photos, out, model=model, validity=False, **kw)
    if sample > 1:
        kw["validity_sample"] = sample
    record, record_cpu = _timed(analyze, photos, out, model=model, validity=True, **kw)
    return {"analysis_s": alone, "validity_s": record, "ratio": record / alone, "analysis_cpu_s": alone_cpu,
            "validity_cpu_s": record_cpu, "cpu_ratio": record_cpu / alone_cpu, "corpus": str(out)}


def baseline_cost(ref: str, work: Path, name: str, args: argparse.Namespace) -> dict:
    """The same configuration measured by this script on the library of git ``ref`` (``semcontrib`` imported
    from a ``git archive`` of it), in a fresh process."""
    import os
    import subprocess

    from common import baseline_tree

    tree = baseline_tree(ref, work / "baseline")
    out = work / f"baseline-{name}.json"
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "-n", str(args.images), "--configs", name,
                    "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--json", str(out)],
                   check=True, env=env, cwd=tree)
    return json.loads(out.read_text())["results"][name]


def direct_cost(model, corpus_dir: str, steps: int) -> tuple[float, float]:
    """Seconds of :func:`compute_validity` over every image of a corpus with ``steps`` curve points (the
    other options default), reading images, region maps and scores as ``validate`` does: what the
    record would cost at that setting (the pipeline reads the same inputs from its store)."""
    import torch

    from semcontrib.corpus import Corpus
    from semcontrib.validity import ValidityConfig, compute_validity
    from semcontrib.validity_inputs import corpus_vectors, load_tensor, method_basis, targets_table

    t, c = time.perf_counter(), time.process_time()
    corpus = Corpus.open(corpus_dir)
    ids = corpus.image_ids()
    for start in range(0, len(ids), 8):
        used, tensor, labels, _ = load_tensor(corpus, model, ids[start:start + 8])
        targets = {h: torch.from_numpy(np.array(t)) for h, t in targets_table(corpus, used).items()}
        scores = {m: {h: corpus_vectors(corpus, h, m, method_basis(m, "auto"), used)[0]
                      for h in corpus.heads} for m in corpus.methods}
        compute_validity(model, tensor, labels, tuple(corpus.vocabulary), targets, scores,
                         config=ValidityConfig(steps=steps))
    return time.perf_counter() - t, time.process_time() - c


class CachedModel:
    """The model with its logits memoised per input image (sha1 of the float32 bytes): the sampled
    settings reuse the perturbed images of the full curves (ROAD's noise is seeded per removal set, so
    the same removal gives the same image), and ``requested`` counts the forwards each setting asks for."""

    def __init__(self, model) -> None:
        self.model = model
        self.cache: dict[str, dict] = {}
        self.requested = 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, x):
        import hashlib

        import torch

        self.requested += len(x)
        keys = [hashlib.sha1(xi.detach().cpu().contiguous().numpy().tobytes()).hexdigest() for xi in x]
        miss = [i for i, k in enumerate(keys) if k not in self.cache]
        if miss:
            with torch.no_grad():
                out = self.model(x[miss])
            for j, i in enumerate(miss):
                self.cache[keys[i]] = {h: z[j].clone() for h, z in out.items()}
        return {h: torch.stack([self.cache[k][h] for k in keys]) for h in self.model.head_names}


def tolerance(model, corpus_dir: str, steps_list: list[int], n_images: int) -> dict:
    """Sampled curves (each ``steps``, default random orders) against full curves and the exact random
    reference, on the first ``n_images`` images of a corpus and their stored scores."""
    import torch

    from semcontrib.corpus import Corpus
    from semcontrib.validity import ValidityConfig, compute_validity
    from semcontrib.validity_inputs import corpus_vectors, load_tensor, method_basis, targets_table

    corpus = Corpus.open(corpus_dir)
    ids = corpus.image_ids()[:n_images]
    cached = CachedModel(model)
    diffs: dict[int, dict[str, list[float]]] = {s: {} for s in steps_list}
    forwards = {"full": 0, **{s: 0 for s in steps_list}}
    scale: dict[str, list[float]] = {}  # |full-curve value|: what the differences compare with
    for start in range(0, len(ids), 4):
        used, tensor, labels, _ = load_tensor(corpus, model, ids[start:start + 4])
        targets = {h: torch.from_numpy(np.array(t)) for h, t in targets_table(corpus, used).items()}
        scores = {m: {h: corpus_vectors(corpus, h, m, method_basis(m, "auto"), used)[0]
                      for h in corpus.heads} for m in corpus.methods}
        vocab = tuple(corpus.vocabulary)
        cached.requested = 0
        full = compute_validity(cached, tensor, labels, vocab, targets, scores,
                                config=ValidityConfig(steps=0, exact_random=10**6))
        forwards["full"] += cached.requested
        for steps in steps_list:
            cached.requested = 0
            recs = compute_validity(cached, tensor, labels, vocab, targets, scores, config=ValidityConfig(steps=steps))
            forwards[steps] += cached.requested
            for key, a in recs.items():
                b = full[key]
                pairs = {"morf_auc": (a.deletion_auc, b.deletion_auc), "lerf_auc": (a.lerf_auc, b.lerf_auc),
                         "random_auc": (a.random_auc, b.random_auc),
                         "morf_gain": (a.random_auc - a.deletion_auc, b.random_auc - b.deletion_auc),
                         "lerf_gain": (a.lerf_auc - a.random_auc, b.lerf_auc - b.random_auc)}
                for c, (x, y) in pairs.items():
                    d = np.abs(x - y)
                    diffs[steps].setdefault(c, []).extend(d[np.isfinite(d)].tolist())
                    if steps == steps_list[0]:
                        scale.setdefault(c, []).extend(np.abs(y[np.isfinite(y)]).tolist())
    return {"images": len(ids), "full_median_abs": {c: float(np.median(v)) for c, v in scale.items() if v},
            "forwards_per_image": {str(k): v / max(len(ids), 1) for k, v in forwards.items()},
            "diff": {str(s): {c: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
                                  "max": float(np.max(v)), "n": len(v)} for c, v in d.items() if v}
                     for s, d in diffs.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=12)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-steps", default="", help="also time the record directly at these curve steps "
                    "(comma-separated, e.g. 2,3), beside the analysis alone")
    ap.add_argument("--tolerance", action="store_true", help="also compare sampled against full curves")
    ap.add_argument("--tolerance-images", type=int, default=4, help="images of the tolerance comparison")
    ap.add_argument("--tolerance-steps", default="2,3,4", help="curve steps compared against full curves")
    ap.add_argument("--baseline-ref", default="", help="also measure each configuration with the code of this "
                    "git ref (e.g. a commit before a change), in a fresh process right after")
    ap.add_argument("--validity-sample", type=int, default=1,
                    help="record validity on one image in N (analyze --validity-sample N); the baseline keeps 1")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from semcontrib.model import load_imagenet_heads

    model = load_imagenet_heads()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = work / "photos"
        photos.mkdir()
        photo_variants(photos, args.images)
        for name in args.configs.split(","):
            runs = [cost(model, photos, work, name, CONFIGS[name], args.batch_size, args.validity_sample)
                    for _ in range(args.repeat)]
            ratio = float(np.median([r["ratio"] for r in runs]))
            cpu_ratio = float(np.median([r["cpu_ratio"] for r in runs]))
            results[name] = {"runs": [{k: v for k, v in r.items() if k != "corpus"} for r in runs],
                             "median_ratio": ratio, "median_cpu_ratio": cpu_ratio}
            print(f"{name}: analysis alone " + ", ".join(f"{r['analysis_s']:.1f}" for r in runs)
                  + " s (CPU " + ", ".join(f"{r['analysis_cpu_s']:.1f}" for r in runs)
                  + " s); validity record " + ", ".join(f"{r['validity_s']:.1f}" for r in runs)
                  + " s (CPU " + ", ".join(f"{r['validity_cpu_s']:.1f}" for r in runs)
                  + f" s); ratio record / analysis {ratio:.2f} (CPU {cpu_ratio:.2f})"
                  + (f" [one image in {args.validity_sample}]" if args.validity_sample > 1 else ""), flush=True)
            if args.baseline_ref:
                base = baseline_cost(args.baseline_ref, work, name, args)
                results[name]["baseline"] = {"ref": args.baseline_ref, **base}
                b = base["runs"][-1]
                print(f"  at {args.baseline_ref}: analysis alone {b['analysis_s']:.1f} s (CPU "
                      f"{b['analysis_cpu_s']:.1f} s); validity record {b['validity_s']:.1f} s (CPU "
                      f"{b['validity_cpu_s']:.1f} s); ratio record / analysis {base['median_ratio']:.2f} "
                      f"(CPU {base['median_cpu_ratio']:.2f})", flush=True)
            for st in (int(v) for v in args.cost_steps.split(",") if v):
                sec, cpu = direct_cost(model, runs[-1]["corpus"], st)
                last = runs[-1]
                results[name].setdefault("cost_steps", {})[str(st)] = {
                    "validity_s": sec, "ratio": sec / last["analysis_s"], "validity_cpu_s": cpu,
                    "cpu_ratio": cpu / last["analysis_cpu_s"]}
                print(f"  record at steps={st} (direct): {sec:.1f} s (CPU {cpu:.1f} s); ratio record / analysis "
                      f"{sec / last['analysis_s']:.2f} (CPU {cpu / last['analysis_cpu_s']:.2f})", flush=True)
            if args.tolerance:
                steps_list = [int(v) for v in args.tolerance_steps.split(",")]
                tol = tolerance(model, runs[-1]["corpus"], steps_list, args.tolerance_images)
                results[name]["tolerance"] = tol
                print(f"  tolerance on {tol['images']} images; forwards per image: "
                      + ", ".join(f"{'full curves' if k == 'full' else f'steps={k}'} {v:.0f}"
                                  for k, v in tol["forwards_per_image"].items()), flush=True)
                print("  median |value| with full curves: "
                      + ", ".join(f"{c} {v:.4f}" for c, v in tol["full_median_abs"].items()), flush=True)
                for st, per in tol["diff"].items():
                    for c, v in per.items():
                        print(f"  steps={st} |sampled - full| {c}: median {v['median']:.4f}, p90 {v['p90']:.4f}, "
                              f"max {v['max']:.4f} (n={v['n']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"images": args.images, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
