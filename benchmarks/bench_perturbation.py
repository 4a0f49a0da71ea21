"""Region perturbation with shared forwards against one captum call per head; validity overhead.

On ``--images`` bundled photographs, the embedded ``imagenet-heads`` model (EfficientNet-Lite0,
4 heads, predicted class as the target) and ``grid:4x4`` regions (16 players):

1. ``occlusion`` and ``shapley`` (``--shapley-samples`` permutations, sampling mode) of
   :mod:`semcontrib.perturbation`, every head from one forward of each distinct perturbed image,
   against captum's ``FeatureAblation`` / ``ShapleyValueSampling`` called once per image and head
   with the same region map as ``feature_mask``, the same baseline (blur) and the same batching
   (``perturbations_per_eval = --batch-size``; on a CPU, larger batches are slower per image). The scores
   are checked to agree (occlusion exactly; shapley with the same permutations, as captum draws
   them after ``torch.manual_seed(seed)``).
2. The validity overhead: :func:`semcontrib.validity.compute_validity` (faithfulness only, and with
   the deletion / insertion curves) for the region scores of lrp, gradcam and ig (``--ig-steps``),
   against the time those three attributions take.

Prints seconds, forwards and ratios. Run: ``python benchmarks/bench_perturbation.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_faithfulness import load_photos, region_labels, region_sums  # noqa: E402


class _Counter:
    """Counts images through the model's forward."""

    def __init__(self, model) -> None:
        self.images = 0
        model.register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:
        self.images += int(inputs[0].shape[0])


def _captum(kind: str, model, tensor, base, labels, targets, samples: int, seed: int, per_eval: int) -> dict:
    from captum.attr import FeatureAblation, ShapleyValueSampling

    from semcontrib.model import HeadAdapter

    K = int(labels.max()) + 1
    out = {}
    for h, t in targets.items():
        scores = np.zeros((len(tensor), K))
        for n in range(len(tensor)):
            mask = torch.from_numpy(labels[n].astype(np.int64))[None, None]
            adapter = HeadAdapter(model, h)
            if kind == "occlusion":
                attr = FeatureAblation(adapter).attribute(tensor[n:n + 1], baselines=base[n:n + 1], target=int(t[n]),
                                                          feature_mask=mask, perturbations_per_eval=per_eval)
            else:
                torch.manual_seed(seed)
                attr = ShapleyValueSampling(adapter).attribute(
                    tensor[n:n + 1], baselines=base[n:n + 1], target=int(t[n]), feature_mask=mask,
                    n_samples=samples, perturbations_per_eval=per_eval)
            flat = attr[0, 0].flatten()
            first = np.array([np.flatnonzero(labels[n].ravel() == k)[0] for k in range(K)])
            scores[n] = flat[torch.from_numpy(first)].double().numpy()
        out[h] = scores
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--images", type=int, default=2)
    ap.add_argument("--shapley-samples", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16,
                    help="perturbed images per forward, ours and captum's perturbations_per_eval alike")
    ap.add_argument("--ig-steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from semcontrib.attribution import make_method, resolve_targets
    from semcontrib.model import load_imagenet_heads, predict
    from semcontrib.perturbation import baseline_tensor
    from semcontrib.validity import ValidityConfig, compute_validity

    model = load_imagenet_heads()
    counter = _Counter(model)
    names, rgbs, tensor = load_photos(model, args.images)
    labels, vocab = region_labels(model, names, rgbs, tensor, "grid:4x4")
    heads = model.head_names
    targets = resolve_targets(model, predict(model, tensor).logits, heads)
    base = baseline_tensor(model, tensor, "blur")
    print(f"{len(names)} photographs x {len(heads)} heads, grid 4x4 (16 regions), EfficientNet-Lite0, "
          f"{args.threads} CPU thread(s)")
    print(f"{'':10} {'ours s':>8} {'captum s':>9} {'ours fwd':>9} {'captum fwd':>11} {'speed-up':>9}  max |diff|")
    for kind in ("occlusion", "shapley"):
        params = {"batch_size": args.batch_size}
        if kind == "shapley":
            params.update(samples=args.shapley_samples, exact_max=10, seed=0)
        counter.images = 0
        t = time.perf_counter()
        ours = make_method(kind, **params).attribute_regions(model, tensor, targets, labels, vocab)
        ours_s, ours_f = time.perf_counter() - t, counter.images
        counter.images = 0
        t = time.perf_counter()
        ref = _captum(kind, model, tensor, base, labels, targets, args.shapley_samples, 0, args.batch_size)
        cap_s, cap_f = time.perf_counter() - t, counter.images
        diff = max(float(np.abs(ours[h].scores - ref[h]).max()) for h in heads)
        print(f"{kind:10} {ours_s:8.1f} {cap_s:9.1f} {ours_f:9d} {cap_f:11d} {cap_s / ours_s:8.2f}x  {diff:.1e}")

    t = time.perf_counter()
    scores: dict[str, dict[str, np.ndarray]] = {}
    timing: dict[str, float] = {}
    for m, p in (("lrp", {}), ("gradcam", {}), ("ig", {"n_steps": args.ig_steps})):
        t = time.perf_counter()
        res = make_method(m, **p).attribute_batch(model, tensor, targets)
        timing[m] = time.perf_counter() - t
        scores[m] = {h: region_sums(r.maps, labels, len(vocab))[0] for h, r in res.items()}
    attr_s = sum(timing.values())
    print(f"\nattribution lrp + gradcam + ig({args.ig_steps} steps): {attr_s:.1f} s "
          f"({', '.join(f'{k} {v:.1f}' for k, v in timing.items())})")
    for curves in (False, True):
        counter.images = 0
        t = time.perf_counter()
        compute_validity(model, tensor, labels, vocab, targets, scores,
                         config=ValidityConfig(curves=curves, batch_size=args.batch_size))
        v_s = time.perf_counter() - t
        what = "faithfulness + deletion/insertion curves" if curves else "faithfulness only"
        print(f"validity ({what}): {v_s:.1f} s, {counter.images} forwards for "
              f"{len(scores)} methods x {len(heads)} heads; overhead {v_s / attr_s:.2f}x the attribution time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
