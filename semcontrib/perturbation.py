"""Region perturbation: scores for the regions of a region map, from forwards of perturbed images.

A *coalition* of an image is the set of its regions kept as they are; every other region is
replaced by a *baseline* image (pixels not assigned to any region, label -1, are always kept).
:func:`forward_coalitions` runs any list of coalitions of a batch through the model, deduplicated
and in batches, and returns every head's logits: one forward of a perturbed image serves all heads.
The region-level attribution methods and :mod:`semcontrib.validity` are built on it.

Methods (``level = "region"``, registered in ``semcontrib.methods.ATTRIBUTION_METHODS``):

* ``occlusion``: ``c_k = f_t(x) - f_t(x with region k replaced by the baseline)``; one forward per
  present region and image, plus the original.
* ``shapley``: Shapley values of the present regions as players; the value of a coalition ``S`` is
  the target logit ``f_t`` with every present region outside ``S`` replaced by the baseline. Exact
  (all ``2^m`` coalitions) when at most ``exact_max`` regions are present, otherwise the mean of
  marginal contributions over ``samples`` random permutations (seeded per image, so a score never
  depends on the other images of the batch). ``delta = sum_k c_k - (f_t(x) - f_t(all present regions
  replaced))`` is the efficiency residual (0 up to rounding in both modes).

Baselines are computed in the model's normalised input space; the preprocessing is affine per
channel, so they equal the preprocessed baseline images:

* ``black``: the preprocessed black image, ``(0 - mean) / std``;
* ``mean``: the image's own per-channel mean colour;
* ``blur``: a Gaussian blur of the image, ``sigma = blur_sigma`` pixels at model resolution
  (default 10, as the IG ``blurred`` baseline; kernel ``2 * round(3 sigma) + 1``, clipped to the image,
  reflect padding). The blur keeps the coarse colour layout and removes shape and texture.

Under a bf16 :func:`semcontrib.model.compute_context` the perturbed forwards run in bfloat16 (the
heads in float32). Scores are differences of logits, so the backbone's rounding shows in them:
on EfficientNet-Lite0, two photographs and a 3x3 grid, occlusion scores moved by up to 0.25 (of
up to 1.8) and the signed_l1 vectors by up to 0.04 against fp32.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from semcontrib.model import MultitaskModel
from semcontrib.settings import PERTURBATION_BASELINES, PERTURBATION_BATCH_SIZE, PERTURBATION_BLUR_SIGMA

if TYPE_CHECKING:
    from semcontrib.methods.base import RegionResult

logger = logging.getLogger(__name__)

BASELINES = PERTURBATION_BASELINES  # the choices have one owner (semcontrib.settings)
DEFAULT_BLUR_SIGMA = PERTURBATION_BLUR_SIGMA
DEFAULT_BATCH_SIZE = PERTURBATION_BATCH_SIZE


# --------------------------------------------------------------------------- baselines and coalitions


def baseline_tensor(model: MultitaskModel, tensor: torch.Tensor, kind: str,
                    blur_sigma: float = DEFAULT_BLUR_SIGMA) -> torch.Tensor:
    """The baseline image of each image of a batch, in the model's normalised input space.

    Parameters
    ----------
    model : gives the normalisation (``spec.mean``, ``spec.std``) for ``black``.
    tensor : float (N, 3, S, S), preprocessed images.
    kind : ``blur``, ``mean`` or ``black`` (see the module docs).
    blur_sigma : Gaussian sigma in pixels at model resolution, for ``blur``.

    Returns
    -------
    float tensor (N, 3, S, S), same dtype and device as ``tensor``.
    """
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose from {BASELINES}")
    x = tensor.detach()
    if kind == "black":
        mean = torch.tensor(model.spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(model.spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return ((0.0 - mean) / std).expand_as(x).contiguous()
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    from torchvision.transforms.functional import gaussian_blur

    k = int(2 * round(3 * blur_sigma) + 1)
    limit = 2 * min(x.shape[-2:]) - 1  # reflect padding needs k // 2 < side
    if k > limit:
        k = limit if limit % 2 else limit - 1
    return gaussian_blur(x, [k, k], [blur_sigma, blur_sigma])


@dataclass(frozen=True)
class Coalitions:
    """Perturbed versions of the images of a batch.

    Attributes
    ----------
    image : int64 (P,), the batch index of the image each row perturbs.
    keep : bool (P, K), the regions kept as they are; the others are replaced by the baseline.
        Entries of regions absent from the image have no effect.
    """

    image: np.ndarray
    keep: np.ndarray

    def __post_init__(self) -> None:
        if self.image.ndim != 1 or self.keep.ndim != 2 or len(self.image) != len(self.keep):
            raise ValueError(f"image must be (P,) and keep (P, K); got {self.image.shape} and {self.keep.shape}")


def present_regions(labels: np.ndarray, n_regions: int) -> np.ndarray:
    """Which vocabulary regions occur in each label map.

    Parameters
    ----------
    labels : int (N, S, S), values in ``-1..n_regions-1`` (-1 = unassigned).
    n_regions : K, the vocabulary size.

    Returns
    -------
    bool (N, K).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be int (N, S, S), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < -1 or labels.max() >= n_regions):
        raise ValueError(f"labels must lie in -1..{n_regions - 1} (the vocabulary has {n_regions} regions)")
    out = np.zeros((labels.shape[0], n_regions), dtype=bool)
    for n in range(labels.shape[0]):
        found = np.unique(labels[n])
        out[n, found[found >= 0]] = True
    return out


@torch.no_grad()
def forward_coalitions(model: MultitaskModel, tensor: torch.Tensor, baseline: torch.Tensor,
                       labels: np.ndarray, coalitions: Coalitions,
                       batch_size: int = DEFAULT_BATCH_SIZE, *, perturb: Any = None) -> dict[str, np.ndarray]:
    """Every head's logits for each coalition, one forward per distinct perturbed image.

    Parameters
    ----------
    model : the multitask model.
    tensor, baseline : float (N, 3, S, S), the images and their baselines (normalised space).
    labels : int (N, S, S), the region maps at model resolution (-1 = unassigned, always kept).
    coalitions : the P perturbed images wanted.
    batch_size : perturbed images per forward.
    perturb : optional ``(images (B, 3, S, S), kept pixels bool (B, 1, S, S), rows int64 (B, 1 + K):
        image index and kept regions) -> perturbed images``, used instead of pasting ``baseline``
        (ROAD imputation in :mod:`semcontrib.validity`).

    Returns
    -------
    dict head -> float64 (P, n_classes), in the order of ``coalitions``. Identical rows (same
    image, same kept present regions) are computed once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    N, K = labels.shape[0], coalitions.keep.shape[1]
    if tensor.shape[0] != N or baseline.shape != tensor.shape or tuple(tensor.shape[-2:]) != labels.shape[1:]:
        raise ValueError(f"tensor {tuple(tensor.shape)}, baseline {tuple(baseline.shape)} and labels "
                         f"{labels.shape} must describe the same N images of the same size")
    present = present_regions(labels, K)
    image = coalitions.image.astype(np.int64)
    if len(image) and (image.min() < 0 or image.max() >= N):
        raise ValueError(f"coalition image indices must lie in 0..{N - 1}")
    keep = coalitions.keep.astype(bool) | ~present[image]  # absent regions: no pixels, no effect
    rows = np.concatenate([image[:, None], keep.astype(np.int64)], axis=1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True) if len(rows) else (rows, np.zeros(0, int))
    inverse = np.asarray(inverse).reshape(-1)
    device = tensor.device
    lab = torch.from_numpy(np.where(labels < 0, K, labels).astype(np.int64)).to(device)  # -1 -> column K
    outs: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        img = torch.from_numpy(chunk[:, 0]).to(device)
        lut = torch.ones((len(chunk), K + 1), dtype=torch.bool, device=device)
        lut[:, :K] = torch.from_numpy(chunk[:, 1:].astype(bool)).to(device)
        pix = torch.gather(lut, 1, lab[img].flatten(1)).view(len(chunk), 1, *labels.shape[1:])
        x = torch.where(pix, tensor[img], baseline[img]) if perturb is None else perturb(tensor[img], pix, chunk)
        for h, z in model(x).items():
            outs.setdefault(h, []).append(z.double().cpu())
    heads = model.head_names
    if not len(unique):
        return {h: np.zeros((0, len(model.head(h).classes))) for h in heads}
    logger.debug("forward_coalitions: %d rows, %d distinct perturbed images", len(rows), len(unique))
    return {h: torch.cat(v).numpy()[inverse] for h, v in outs.items()}


def _check_inputs(tensor: torch.Tensor, labels: np.ndarray, vocabulary: tuple[str, ...],
                  targets: dict[str, torch.Tensor], model: MultitaskModel) -> np.ndarray:
    labels = np.asarray(labels)
    if tensor.ndim != 4 or labels.shape != (tensor.shape[0], *tensor.shape[-2:]):
        raise ValueError(f"labels must be int (N, S, S) matching tensor (N, 3, S, S); got labels {labels.shape}, "
                         f"tensor {tuple(tensor.shape)}")
    for h, t in targets.items():
        model.head(h)
        if t.shape != (tensor.shape[0],):
            raise ValueError(f"targets[{h!r}] must be int64 (N,) with N = {tensor.shape[0]}, got {tuple(t.shape)}")
    return present_regions(labels, len(vocabulary))


def _display_maps(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float32 (N, S, S): each pixel = its region's score / the region's pixel count; 0 if unassigned."""
    N, K = scores.shape
    maps = np.zeros(labels.shape, dtype=np.float32)
    for n in range(N):
        counts = np.bincount(labels[n][labels[n] >= 0].ravel(), minlength=K).astype(np.float64)
        per_pixel = np.divide(scores[n], counts, out=np.zeros(K), where=counts > 0)
        lut = np.append(per_pixel, 0.0)
        maps[n] = lut[np.where(labels[n] < 0, K, labels[n])]
    return maps


def _target_values(logits: dict[str, np.ndarray], targets: dict[str, torch.Tensor], image: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """float64 (P,) target logit of each coalition row, per head."""
    return {h: logits[h][np.arange(len(image)), targets[h].cpu().numpy()[image]] for h in targets}


def _validate_common(baseline: str, blur_sigma: float, batch_size: int) -> None:
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose from {BASELINES}")
    if not (isinstance(blur_sigma, (int, float)) and blur_sigma > 0):
        raise ValueError(f"blur_sigma must be a positive number of pixels, got {blur_sigma!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


# --------------------------------------------------------------------------- occlusion


class OcclusionMethod:
    """Occlusion of whole regions: ``c_k = f_t(x) - f_t(x with region k replaced by the baseline)``.

    Parameters
    ----------
    baseline : ``blur`` (default), ``mean`` or ``black`` (see the module docs).
    blur_sigma : sigma of the ``blur`` baseline, pixels at model resolution.
    batch_size : perturbed images per forward (memory bound; no effect on the scores).
    """

    name = "occlusion"
    level = "region"
    runs_in_bf16 = True  # forwards only; logit differences carry bf16 features' rounding (module docs)

    def __init__(self, baseline: str = "blur", blur_sigma: float = DEFAULT_BLUR_SIGMA,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        _validate_common(baseline, blur_sigma, batch_size)
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.batch_size = batch_size

    @property
    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"baseline": self.baseline}
        if self.baseline == "blur":
            p["blur_sigma"] = self.blur_sigma
        return p

    def notes(self, model: MultitaskModel) -> str:
        return (f"region occlusion, baseline {self.baseline}: score = target-logit drop when the region alone "
                "is replaced by the baseline; scores do not sum to the logit")

    def attribute_regions(self, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                          labels: np.ndarray, vocabulary: tuple[str, ...]) -> dict[str, RegionResult]:
        """Scores of every vocabulary region per head (see the class docs).

        Parameters
        ----------
        tensor : float (N, 3, S, S), preprocessed images.
        targets : head -> int64 (N,) target classes.
        labels : int (N, S, S) region maps at model resolution (-1 = unassigned).
        vocabulary : the K region names.

        Returns
        -------
        head -> RegionResult with scores float64 (N, K), 0 for absent regions.
        """
        from semcontrib.methods.base import RegionResult

        present = _check_inputs(tensor, labels, vocabulary, targets, model)
        N, K = present.shape
        image, keep, region = [], [], []
        for n in range(N):
            image.append(n)
            keep.append(np.ones(K, bool))
            region.append(-1)
            for k in np.flatnonzero(present[n]):
                row = np.ones(K, bool)
                row[k] = False
                image.append(n)
                keep.append(row)
                region.append(int(k))
        img = np.asarray(image, np.int64)
        base = baseline_tensor(model, tensor, self.baseline, self.blur_sigma)
        logits = forward_coalitions(model, tensor, base, labels, Coalitions(img, np.asarray(keep)), self.batch_size)
        values = _target_values(logits, targets, img)
        reg = np.asarray(region)
        out: dict[str, RegionResult] = {}
        for h, v in values.items():
            full = v[reg == -1]  # (N,) one original row per image, in image order
            scores = np.zeros((N, K))
            sel = reg >= 0
            scores[img[sel], reg[sel]] = full[img[sel]] - v[sel]
            out[h] = RegionResult(scores, _display_maps(scores, labels), None)
        return out


# --------------------------------------------------------------------------- Shapley values


def shapley_weights(m: int) -> np.ndarray:
    """float64 (m,): ``w[s] = s! (m - s - 1)! / m!``, the weight of a coalition of size s without player i."""
    return np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])


def exact_shapley(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values from the values of all coalitions.

    Parameters
    ----------
    values : float (2^m,), ``values[c]`` is the value of the coalition whose members are the set
        bits of ``c`` (bit i = player i).

    Returns
    -------
    float64 (m,).

    Examples
    --------
    >>> exact_shapley(np.array([0.0, 1.0, 2.0, 4.0]))  # v({0})=1, v({1})=2, v({0,1})=4
    array([1.5, 2.5])
    """
    values = np.asarray(values, dtype=np.float64)
    m = int(round(math.log2(len(values)))) if len(values) else -1
    if m < 0 or 2 ** m != len(values):
        raise ValueError(f"values must have length 2^m, got {len(values)}")
    idx = np.arange(2 ** m)
    size = np.array([bin(c).count("1") for c in idx])
    w = shapley_weights(m) if m else np.zeros(0)
    phi = np.zeros(m)
    for i in range(m):
        without = idx[(idx >> i) & 1 == 0]
        phi[i] = np.sum(w[size[without]] * (values[without | (1 << i)] - values[without]))
    return phi


class ShapleyMethod:
    """Shapley values of the present regions (see the module docs).

    Parameters
    ----------
    baseline : ``blur`` (default), ``mean`` or ``black``.
    exact_max : exact Shapley values when at most this many regions are present (``2^m`` forwards
        per image), otherwise permutation sampling.
    samples : permutations per image in sampling mode (``samples * m`` forwards at most).
    seed : seed of each image's permutations (``torch.Generator().manual_seed(seed)``, then one
        ``torch.randperm(m)`` per sample: the permutations captum's ``ShapleyValueSampling`` draws
        after ``torch.manual_seed(seed)``).
    blur_sigma : sigma of the ``blur`` baseline, pixels at model resolution.
    batch_size : perturbed images per forward.
    """

    name = "shapley"
    level = "region"
    runs_in_bf16 = True  # forwards only; logit differences carry bf16 features' rounding (module docs)

    def __init__(self, baseline: str = "blur", exact_max: int = 10, samples: int = 25, seed: int = 0,
                 blur_sigma: float = DEFAULT_BLUR_SIGMA, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        _validate_common(baseline, blur_sigma, batch_size)
        if not (isinstance(exact_max, int) and 0 <= exact_max <= 16):
            raise ValueError(f"exact_max must be an integer in 0..16 (2^exact_max forwards), got {exact_max!r}")
        if not (isinstance(samples, int) and samples >= 1):
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.baseline = baseline
        self.exact_max = exact_max
        self.samples = samples
        self.seed = seed
        self.blur_sigma = float(blur_sigma)
        self.batch_size = batch_size

    @property
    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"baseline": self.baseline, "exact_max": self.exact_max, "samples": self.samples,
                             "seed": self.seed}
        if self.baseline == "blur":
            p["blur_sigma"] = self.blur_sigma
        return p

    def notes(self, model: MultitaskModel) -> str:
        return (f"region Shapley values, baseline {self.baseline}: exact up to {self.exact_max} present regions, "
                f"else {self.samples} seeded permutations; scores sum to f(x) - f(all regions replaced), "
                "delta = the residual")

    def permutations(self, m: int) -> list[list[int]]:
        """The ``samples`` permutations of ``m`` players used in sampling mode (same for every image)."""
        g = torch.Generator().manual_seed(self.seed)
        return [torch.randperm(m, generator=g).tolist() for _ in range(self.samples)]

    def attribute_regions(self, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                          labels: np.ndarray, vocabulary: tuple[str, ...]) -> dict[str, RegionResult]:
        """Shapley value of every present region per head; absent regions score 0.

        Parameters and returns as :meth:`OcclusionMethod.attribute_regions`; ``delta`` is float64 (N,).
        """
        from semcontrib.methods.base import RegionResult

        present = _check_inputs(tensor, labels, vocabulary, targets, model)
        N, K = present.shape
        image: list[int] = []
        keeps: list[np.ndarray] = []
        plans: list[tuple[np.ndarray, int, list[list[int]] | None]] = []  # players, first row, permutations
        for n in range(N):
            players = np.flatnonzero(present[n])
            m = len(players)
            first = len(image)
            if m <= self.exact_max:
                bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None, :]) & 1  # (2^m, m)
                rows = np.zeros((2 ** m, K), bool)
                rows[:, players] = bits.astype(bool)
                perms = None
            else:
                perms = self.permutations(m)
                rows = np.zeros((1 + len(perms) * m, K), bool)  # row 0: no player kept
                for s, perm in enumerate(perms):
                    for j in range(m):
                        rows[1 + s * m + j, players[perm[:j + 1]]] = True
            keeps.extend(rows)
            image.extend([n] * len(rows))
            plans.append((players, first, perms))
        img = np.asarray(image, np.int64)
        base = baseline_tensor(model, tensor, self.baseline, self.blur_sigma)
        logits = forward_coalitions(model, tensor, base, labels, Coalitions(img, np.asarray(keeps).reshape(-1, K)),
                                    self.batch_size)
        values = _target_values(logits, targets, img)
        out: dict[str, RegionResult] = {}
        for h, v in values.items():
            scores = np.zeros((N, K))
            delta = np.zeros(N)
            for n, (players, first, perms) in enumerate(plans):
                m = len(players)
                if perms is None:
                    vals = v[first:first + 2 ** m]
                    phi = exact_shapley(vals)
                    gap = vals[-1] - vals[0]
                else:
                    empty = v[first]
                    phi = np.zeros(m)
                    for s, perm in enumerate(perms):
                        chain = np.concatenate([[empty], v[first + 1 + s * m:first + 1 + (s + 1) * m]])
                        phi[perm] += np.diff(chain)
                    phi /= len(perms)
                    gap = v[first + m] - empty  # the first permutation's last row keeps every player
                scores[n, players] = phi
                delta[n] = phi.sum() - gap
            out[h] = RegionResult(scores, _display_maps(scores, labels), delta)
        return out
