"""The model-randomisation sanity check of ``semcontrib validate``: smooth and efficient MPRT.

Smooth and efficient MPRT (Hedstroem et al. 2023, "Sanity checks revisited"; Quantus 0.5 ``SmoothMPRT``
and ``EfficientMPRT``, after Adebayo et al. 2018, "Sanity checks for saliency maps"): on a sample of
images, the heads' weights and then the backbone's top stages are re-initialised cumulatively
(``reset_parameters``, seeded) and the methods recomputed.

* **sMPRT**: every vector, original and randomised, is the mean over ``noise_samples`` copies of the
  image with Gaussian noise of ``noise_magnitude`` times the batch's value range added (seeded; the
  same copies before and after), which removes the noise that makes gradient maps decorrelate for no
  reason. Per step: the median over images of the Spearman correlation of the region vectors to the
  original ones (present regions only).
* **eMPRT**: per step, the median over images of the ratio of the vectors' complexity after / before
  (:func:`complexity`: the Shannon entropy of ``|v| / sum |v|`` over the present regions). > 1: the
  explanation got more spread out once the model stopped knowing anything, which a model-dependent
  explanation should; about 1: it did not change.

Targets stay the original ones. A method whose vectors still correlate at ``flag_threshold`` or more
after the last step is flagged: its vectors do not depend on what the model learned (a method that
ignores the model keeps Spearman 1 and complexity ratio 1 at every step, noise or not).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from semcontrib.corpus import Corpus
from semcontrib.validity import spearman
from semcontrib.validity_inputs import (
    ValidateConfig,
    load_tensor,
    make_corpus_method,
    method_basis,
    region_vectors,
    targets_table,
)


def rowwise_spearman(a: np.ndarray, b: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Spearman between rows of two (N, K) arrays over the present regions of each row.

    Returns float64 (N,); NaN where fewer than 3 regions are present or a side is constant.
    """
    out = np.full(a.shape[0], np.nan)
    for n in range(a.shape[0]):
        idx = np.flatnonzero(present[n])
        if len(idx) >= 3 and np.all(np.isfinite(a[n, idx])) and np.all(np.isfinite(b[n, idx])):
            out[n] = spearman(a[n, idx], b[n, idx])
    return out


def complexity(vectors: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Complexity of region vectors as eMPRT measures it: the Shannon entropy (nats) of
    ``|v| / sum |v|`` over the present regions of each row (0 log 0 = 0); NaN for an all-zero row.

    Examples
    --------
    >>> complexity(np.array([[1.0, -1.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]]), np.ones((2, 4), bool)).round(4).tolist()
    [0.6931, 1.3863]
    """
    a = np.where(present, np.abs(np.asarray(vectors, np.float64)), 0.0)
    tot = a.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a / tot
        ent = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    ent[(tot[:, 0] == 0) | ~np.isfinite(tot[:, 0])] = np.nan
    return ent


def complexity_ratio(original: np.ndarray, randomised: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per row, complexity after / before randomisation (eMPRT's score; NaN where undefined).

    Examples
    --------
    >>> complexity_ratio(np.array([[1.0, 1, 0, 0]]), np.array([[1.0, 1, 1, 1]]), np.ones((1, 4), bool)).tolist()
    [2.0]
    """
    before = complexity(original, present)
    after = complexity(randomised, present)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = after / before
    r[~np.isfinite(r)] = np.nan
    return r


def median_finite(v: np.ndarray) -> float | None:
    """The median of the finite values, None where there are none."""
    fin = np.asarray(v, dtype=np.float64)
    fin = fin[np.isfinite(fin)]
    return float(np.median(fin)) if fin.size else None



def randomisation_steps(model: Any, stages: int) -> list[str]:
    """``heads`` then ``backbone.STAGE`` for the top ``stages`` backbone stages (``pool`` and
    parameter-free stages excluded), in the order they are randomised."""
    names = [n for n, mod in model.backbone.named_children() if n != "pool" and any(True for _ in mod.parameters())]
    return ["heads", *(f"backbone.{n}" for n in reversed(names[-stages:] if stages else []))]


def randomise(model: Any, step: str, seed: int) -> None:
    """Re-initialise every layer of the heads (``heads``) or of one backbone stage (``backbone.STAGE``),
    in place, seeded."""
    import torch

    if step != "heads" and not step.startswith("backbone."):
        raise ValueError(f"a randomisation step is 'heads' or 'backbone.STAGE', got {step!r}")
    part = model.heads if step == "heads" else model.backbone[model.stage_index(step[len("backbone."):])]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mod in part.modules():
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()


def noisy_copies(tensor: Any, samples: int, magnitude: float, seed: int) -> list[Any]:
    """``samples`` copies of a batch with Gaussian noise of ``magnitude`` x the batch's value range
    (sMPRT's input noise), seeded; one copy without noise when ``magnitude`` is 0."""
    import torch

    if magnitude == 0:
        return [tensor]
    sigma = magnitude * float(tensor.max() - tensor.min())
    g = torch.Generator().manual_seed(seed)
    return [tensor + sigma * torch.randn(tensor.shape, generator=g, dtype=tensor.dtype).to(tensor.device)
            for _ in range(samples)]


def smoothed_vectors(model: Any, method_obj: Any, copies: list[Any], targets: dict[str, Any], labels: np.ndarray,
                     vocabulary: tuple[str, ...], *, basis: str) -> dict[str, np.ndarray]:
    """Per head, the region vectors of one method averaged over the noisy copies of the batch (sMPRT)."""
    runs = [region_vectors(model, method_obj, x, targets, labels, vocabulary, basis=basis) for x in copies]
    return {h: np.mean([r[h] for r in runs], axis=0) for h in runs[0]}


def randomisation_check(corpus: Corpus, model: Any, config: ValidateConfig) -> dict[str, Any]:
    """Cascading model randomisation on a sample (sMPRT / eMPRT, see the module docs); per (head, method)
    the median correlation and the median complexity ratio per step."""
    import torch

    rng = np.random.default_rng(config.seed)
    ids = corpus.image_ids()
    sample = sorted(rng.choice(len(ids), size=min(config.sample, len(ids)), replace=False).tolist())
    used, tensor, labels, note = load_tensor(corpus, model, [ids[k] for k in sample])
    if not used:
        return {"status": "skipped", "reason": f"no sample image could be read; {note}"}
    tgt = targets_table(corpus, used)
    targets = {h: torch.from_numpy(np.maximum(t, 0)) for h, t in tgt.items()}
    vocab = tuple(corpus.vocabulary)
    K = len(vocab)
    present = np.stack([np.bincount(lab[lab >= 0].ravel(), minlength=K) > 0 for lab in labels])
    methods = {m: make_corpus_method(corpus, m, config.check_params.get(m)) for m in corpus.methods}
    bases = {m: method_basis(m, config.basis) for m in methods}
    steps = randomisation_steps(model, config.stages)
    work = copy.deepcopy(model)
    copies = noisy_copies(tensor, config.noise_samples, config.noise_magnitude, config.seed)
    original = {m: smoothed_vectors(work, obj, copies, targets, labels, vocab, basis=bases[m])
                for m, obj in methods.items()}
    result: dict[str, Any] = {"status": "done", "sample": used, "steps": steps, "note": note,
                              "method_params": {m: config.check_params[m] for m in methods if m in config.check_params},
                              "flag_threshold": config.flag_threshold, "noise_samples": len(copies),
                              "noise_magnitude": config.noise_magnitude, "per": {}, "complexity": {}}
    for s, step in enumerate(steps):
        randomise(work, step, config.seed + s)
        for m, obj in methods.items():
            vec = smoothed_vectors(work, obj, copies, targets, labels, vocab, basis=bases[m])
            for h in corpus.heads:
                rho = rowwise_spearman(original[m][h], vec[h], present)
                result["per"].setdefault(f"{h}|{m}", []).append(median_finite(rho))
                ratio = complexity_ratio(original[m][h], vec[h], present)
                result["complexity"].setdefault(f"{h}|{m}", []).append(median_finite(ratio))
    return result

