"""Faithfulness of every method's region scores on the bundled photographs.

For each photograph, head of the embedded ``imagenet-heads`` model (EfficientNet-Lite0, 4 heads,
predicted class as the target) and region source (``grid:4x4``, ``landscape``), the Spearman rank
correlation between a method's region scores and the drop of the target logit when each present
region alone is removed with ``--baseline`` (default ``road``: ROAD's noisy linear imputation, the
validity record's default, which no method scores with; ``mean`` reproduces the earlier table).
Scores are read in two bases: ``sum`` (the region sum of the map; for the region methods their
scores) and ``mean`` (the sum divided by the region's pixel count). For the ``sum`` basis it also
prints the median gain of the MoRF and LeRF deletion AUCs over the random-order reference
(``random - MoRF`` and ``LeRF - random``, > 0 is better than a random order), with the validity
record's default curve sampling (``--steps``, 0: full curves); the ``mean`` basis gets faithfulness
only. ``--also-baselines`` (default ``mean``: the image's mean colour, the perturbation of the
independent test in issue 19) prints the sum basis's faithfulness under other removals too.

Methods: LRP with the composites ``epsilon``, ``epsilon_plus_flat``, ``epsilon_gamma_box``;
Grad-CAM; IG (``--ig-steps``, black baseline); XRAI when registered; occlusion; shapley (exact up
to 10 present regions, else ``--shapley-samples`` permutations); LIME when registered. Prints the
median over images x heads of each cell (and how many values were finite) and the seconds each
method took. CPU-heavy: run once, ``python benchmarks/bench_faithfulness.py`` (15 to 30 minutes on
one core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

PIXEL_METHODS = {
    "lrp-epsilon": ("lrp", {"composite": "epsilon"}),
    "lrp-epsilon_plus_flat": ("lrp", {"composite": "epsilon_plus_flat"}),
    "lrp-epsilon_gamma_box": ("lrp", {"composite": "epsilon_gamma_box"}),
    "gradcam": ("gradcam", {}),
    "ig": ("ig", {}),
}
REGION_METHODS = ("occlusion", "shapley", "lime")
SOURCES = ("grid:4x4", "landscape")


def load_photos(model, n: int) -> tuple[list[str], list[np.ndarray], torch.Tensor]:
    """The first ``n`` bundled colour photographs: names, original RGB uint8 HxWx3, preprocessed batch."""
    from semcontrib.demo import DEMO_IMAGES
    from semcontrib.imageio import resize_rgb

    names, rgbs = [], []
    for name, (load, _) in DEMO_IMAGES.items():
        arr = np.asarray(load())
        if arr.ndim != 3 or arr.shape[2] < 3:
            continue  # greyscale photographs are left out
        names.append(name)
        rgbs.append(np.ascontiguousarray(arr[:, :, :3]).astype(np.uint8))
        if len(names) == n:
            break
    tensor = torch.cat([model.preprocess(resize_rgb(r, model.input_size)) for r in rgbs])
    return names, rgbs, tensor


def region_labels(model, names: list[str], rgbs: list[np.ndarray], tensor: torch.Tensor, spec: str
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Region maps at model resolution, int32 (N, S, S), and the source's vocabulary (as the pipeline)."""
    from semcontrib.model import predict_with_evidence
    from semcontrib.paths import data_path
    from semcontrib.regions import ImageInput, resize_evidence
    from semcontrib.segmentation import make_region_source

    source = make_region_source(spec)
    groups = json.loads(data_path("imagenet_class_groups.json").read_text())["evidence_groups"]
    _, ev = predict_with_evidence(model, tensor, groups)
    size = model.input_size
    out = []
    for k, (name, rgb) in enumerate(zip(names, rgbs)):
        evidence = resize_evidence(None if ev is None else ev[k], list(groups), rgb.shape[:2])
        rmap = source.segment(ImageInput(name, rgb, "", evidence))
        out.append(rmap.resized((size, size)).labels.astype(np.int32))
    return np.stack(out), tuple(source.vocabulary)


def region_sums(maps: np.ndarray, labels: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image and region: the map's sum (N, K) and the pixel count (N, K)."""
    N = maps.shape[0]
    sums, counts = np.zeros((N, K)), np.zeros((N, K))
    for n in range(N):
        lab = labels[n].ravel()
        ok = lab >= 0
        sums[n] = np.bincount(lab[ok], weights=maps[n].ravel()[ok].astype(np.float64), minlength=K)
        counts[n] = np.bincount(lab[ok], minlength=K)
    return sums, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=8)
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--shapley-samples", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", default="road", help="validity baseline: road (default), blur, mean, black")
    ap.add_argument("--steps", type=int, default=None, help="curve points (default: the validity default)")
    ap.add_argument("--sources", default=",".join(SOURCES), help="region sources, comma-separated")
    ap.add_argument("--methods", default="", help="only these methods (comma-separated names as in the table: "
                    "lrp-epsilon, gradcam, occlusion, ...; default every one)")
    ap.add_argument("--also-baselines", default="mean",
                    help="also print the sum basis's faithfulness under these baselines (comma-separated; '' none)")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from semcontrib.attribution import ATTRIBUTION_METHODS, make_method, resolve_targets
    from semcontrib.model import load_imagenet_heads, predict
    from semcontrib.validity import ValidityConfig, compute_validity

    model = load_imagenet_heads()
    names, rgbs, tensor = load_photos(model, args.images)
    heads = model.head_names
    targets = resolve_targets(model, predict(model, tensor).logits, heads)
    seconds: dict[str, float] = {}
    pixel_maps: dict[str, dict[str, np.ndarray]] = {}
    pixel_methods = dict(PIXEL_METHODS)
    if "xrai" in ATTRIBUTION_METHODS:
        pixel_methods["xrai"] = ("xrai", {})
    chosen = set(args.methods.split(",")) if args.methods else None
    pixel_methods = {k: v for k, v in pixel_methods.items() if chosen is None or k in chosen}
    for label, (name, params) in pixel_methods.items():
        if name in ("ig", "xrai"):
            params = {"n_steps": args.ig_steps}
        t = time.perf_counter()
        res = make_method(name, **params).attribute_batch(model, tensor, targets)
        seconds[label] = time.perf_counter() - t
        pixel_maps[label] = {h: r.maps for h, r in res.items()}
        print(f"  {label}: {seconds[label]:.1f} s", file=sys.stderr, flush=True)

    table: dict[str, dict[str, dict[str, float]]] = {}
    sources = tuple(args.sources.split(","))
    gains: dict[str, dict[str, list[float]]] = {}
    also: dict[str, dict[str, dict[str, list[float]]]] = {}
    config = ValidityConfig(baseline=args.baseline) if args.steps is None else \
        ValidityConfig(baseline=args.baseline, steps=args.steps)
    for spec in sources:
        labels, vocab = region_labels(model, names, rgbs, tensor, spec)
        K = len(vocab)
        present = [(labels[n][labels[n] >= 0]).size and len(np.unique(labels[n][labels[n] >= 0]))
                   for n in range(len(names))]
        print(f"{spec}: present regions per image {present}", file=sys.stderr, flush=True)
        scores: dict[str, dict[str, np.ndarray]] = {}
        for label, per_head in pixel_maps.items():
            for h, maps in per_head.items():
                sums, counts = region_sums(maps, labels, K)
                scores.setdefault(f"{label}/sum", {})[h] = sums
                scores.setdefault(f"{label}/mean", {})[h] = np.divide(sums, counts, out=np.zeros_like(sums),
                                                                      where=counts > 0)
        for name in (m for m in REGION_METHODS if m in ATTRIBUTION_METHODS and (chosen is None or m in chosen)):
            t = time.perf_counter()
            params = {"samples": args.shapley_samples} if name == "shapley" else {}
            res = make_method(name, **params).attribute_regions(model, tensor, targets, labels, vocab)
            seconds[f"{name} ({spec})"] = time.perf_counter() - t
            print(f"  {name} ({spec}): {seconds[f'{name} ({spec})']:.1f} s", file=sys.stderr, flush=True)
            _, counts = region_sums(np.zeros(labels.shape), labels, K)
            for h, r in res.items():
                scores.setdefault(f"{name}/sum", {})[h] = r.scores
                scores.setdefault(f"{name}/mean", {})[h] = np.divide(r.scores, counts, out=np.zeros_like(r.scores),
                                                                     where=counts > 0)
        t = time.perf_counter()
        sums = {k: v for k, v in scores.items() if k.endswith("/sum")}
        validity = compute_validity(model, tensor, labels, vocab, targets, sums, config=config)
        seconds[f"validity ({spec})"] = time.perf_counter() - t
        # the mean basis: faithfulness only (its curves are not printed)
        validity.update(compute_validity(model, tensor, labels, vocab, targets,
                                         {k: v for k, v in scores.items() if k.endswith("/mean")},
                                         config=replace(config, curves=False)))
        for other in (b for b in args.also_baselines.split(",") if b):
            rec_other = compute_validity(model, tensor, labels, vocab, targets, sums,
                                         config=replace(config, baseline=other, curves=False))
            for (key, _h), rec in rec_other.items():
                also.setdefault(other, {}).setdefault(key.split("/")[0], {}).setdefault(spec, []).extend(
                    rec.faithfulness.tolist())
        for (key, _h), rec in validity.items():
            cell = table.setdefault(key.split("/")[0], {}).setdefault(f"{spec}/{key.split('/')[1]}", {"values": []})
            cell["values"].extend(rec.faithfulness.tolist())
            if key.endswith("/sum"):
                g = gains.setdefault(key.split("/")[0], {})
                g.setdefault(f"{spec}/morf", []).extend((rec.random_auc - rec.deletion_auc).tolist())
                g.setdefault(f"{spec}/lerf", []).extend((rec.lerf_auc - rec.random_auc).tolist())

    columns = [f"{s}/{b}" for s in sources for b in ("mean", "sum")]
    print(f"\nmedian faithfulness (Spearman of region scores vs. target-logit drop when the region alone is "
          f"removed, validity baseline {args.baseline}), {len(names)} photographs x {len(heads)} heads, "
          f"EfficientNet-Lite0 imagenet-heads")
    print(f"{'method':24}" + "".join(f"{c:>22}" for c in columns))
    out_json: dict[str, dict[str, dict[str, float]]] = {}
    for method, cells in table.items():
        line = f"{method:24}"
        for c in columns:
            v = np.asarray(cells[c]["values"], dtype=float)
            fin = v[np.isfinite(v)]
            med = float(np.median(fin)) if fin.size else float("nan")
            q1, q3 = (np.percentile(fin, [25, 75]) if fin.size else (np.nan, np.nan))
            out_json.setdefault(method, {})[c] = {"median": med, "q1": float(q1), "q3": float(q3),
                                                  "finite": int(fin.size), "total": int(v.size)}
            line += f"{med:+.2f} [{q1:+.2f},{q3:+.2f}]".rjust(22)
        print(line)
    print("\n| method | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for method, cells in out_json.items():
        print(f"| {method} | " + " | ".join(f"{cells[c]['median']:+.2f}" for c in columns) + " |")
    print("\ncells: median [quartiles]; finite values per cell: "
          + ", ".join(f"{c} {out_json[next(iter(out_json))][c]['finite']}" for c in columns))
    gcols = [f"{s}/{o}" for s in sources for o in ("morf", "lerf")]
    print("\nmedian gain over the random order (sum basis): random - MoRF AUC, LeRF - random AUC")
    print("| method | " + " | ".join(gcols) + " |\n|---|" + "---|" * len(gcols))
    gain_json: dict[str, dict[str, float]] = {}
    for method, cells in gains.items():
        meds = {c: float(np.nanmedian(cells[c])) if np.isfinite(cells[c]).any() else float("nan") for c in gcols}
        gain_json[method] = meds
        print(f"| {method} | " + " | ".join(f"{meds[c]:+.3f}" for c in gcols) + " |")
    also_json: dict[str, dict[str, dict[str, float]]] = {}
    for other, per_method in also.items():
        print(f"\nmedian faithfulness (sum basis) with the region removed by {other} instead")
        print("| method | " + " | ".join(sources) + " |\n|---|" + "---|" * len(sources))
        for method, cells in per_method.items():
            meds = {c: float(np.nanmedian(cells[c])) if np.isfinite(cells[c]).any() else float("nan")
                    for c in sources}
            also_json.setdefault(other, {})[method] = meds
            print(f"| {method} | " + " | ".join(f"{meds[c]:+.2f}" for c in sources) + " |")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"seconds per image ({len(names)} images, all {len(heads)} heads): "
          + ", ".join(f"{k} {v / len(names):.2f}" for k, v in seconds.items()))
    if args.json:
        args.json.write_text(json.dumps({"images": names, "table": out_json, "gains": gain_json, "also": also_json,
                                         "seconds": seconds,
                                         "config": config.params}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
