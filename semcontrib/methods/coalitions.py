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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from semcontrib.model import MultitaskModel
from semcontrib.settings import PERTURBATION_BASELINES, PERTURBATION_BATCH_SIZE, PERTURBATION_BLUR_SIGMA

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


def check_inputs(tensor: torch.Tensor, labels: np.ndarray, vocabulary: tuple[str, ...],
                 targets: dict[str, torch.Tensor], model: MultitaskModel) -> np.ndarray:
    """Check the inputs of a region method's ``attribute_regions`` and say which regions each image has.

    Parameters
    ----------
    tensor : float (N, 3, S, S), preprocessed images.
    labels : int (N, S, S), region maps at model resolution (-1 = unassigned).
    vocabulary : the K region names.
    targets : head -> int64 (N,) target class per image; every head must be one of ``model``'s.
    model : the multitask model (unknown heads raise its ``ValueError``).

    Returns
    -------
    bool (N, K), the regions present in each image (:func:`present_regions`).

    Raises
    ------
    ValueError
        if the shapes disagree, a head is unknown or a label lies outside ``-1..K-1``.
    """
    labels = np.asarray(labels)
    if tensor.ndim != 4 or labels.shape != (tensor.shape[0], *tensor.shape[-2:]):
        raise ValueError(f"labels must be int (N, S, S) matching tensor (N, 3, S, S); got labels {labels.shape}, "
                         f"tensor {tuple(tensor.shape)}")
    for h, t in targets.items():
        model.head(h)
        if t.shape != (tensor.shape[0],):
            raise ValueError(f"targets[{h!r}] must be int64 (N,) with N = {tensor.shape[0]}, got {tuple(t.shape)}")
    return present_regions(labels, len(vocabulary))


def display_maps(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Spread region scores over their pixels, so that a region's pixels sum to its score.

    Parameters
    ----------
    scores : float (N, K), one score per image and region.
    labels : int (N, S, S), region maps (-1 = unassigned).

    Returns
    -------
    float32 (N, S, S): each pixel holds its region's score divided by the region's pixel count; 0 where
    unassigned.

    Examples
    --------
    >>> display_maps(np.array([[2.0, -1.0]]), np.array([[[0, 0], [1, -1]]]))
    array([[[ 1.,  1.],
            [-1.,  0.]]], dtype=float32)
    """
    N, K = scores.shape
    maps = np.zeros(labels.shape, dtype=np.float32)
    for n in range(N):
        counts = np.bincount(labels[n][labels[n] >= 0].ravel(), minlength=K).astype(np.float64)
        per_pixel = np.divide(scores[n], counts, out=np.zeros(K), where=counts > 0)
        lut = np.append(per_pixel, 0.0)
        maps[n] = lut[np.where(labels[n] < 0, K, labels[n])]
    return maps


def target_values(logits: dict[str, np.ndarray], targets: dict[str, torch.Tensor], image: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """The target logit of each coalition row, per head.

    Parameters
    ----------
    logits : head -> float64 (P, n_classes), as :func:`forward_coalitions` returns.
    targets : head -> int64 (N,) target class per image.
    image : int64 (P,), the image each row perturbs (``Coalitions.image``).

    Returns
    -------
    head -> float64 (P,), ``logits[h][p, targets[h][image[p]]]``, for every head of ``targets``.

    Examples
    --------
    >>> target_values({"a": np.array([[1.0, 2.0], [3.0, 4.0]])}, {"a": torch.tensor([1])}, np.array([0, 0]))
    {'a': array([2., 4.])}
    """
    return {h: logits[h][np.arange(len(image)), targets[h].cpu().numpy()[image]] for h in targets}


def coalition_values(method: Any, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                     labels: np.ndarray, coalitions: Coalitions) -> dict[str, np.ndarray]:
    """The target logit of every coalition row, per head, for a coalition method (its ``baseline``,
    ``blur_sigma`` and ``batch_size``): the baseline image, the batched forwards and the targets' logits
    (:func:`baseline_tensor`, :func:`forward_coalitions`, :func:`target_values`).

    Returns
    -------
    head -> float64 (P,), one value per row of ``coalitions``.
    """
    base = baseline_tensor(model, tensor, method.baseline, method.blur_sigma)
    logits = forward_coalitions(model, tensor, base, labels, coalitions, method.batch_size)
    return target_values(logits, targets, coalitions.image)


def baseline_params(method: Any) -> dict[str, Any]:
    """A coalition method's baseline as its cache key names it: ``baseline``, with ``blur_sigma`` for blur."""
    p: dict[str, Any] = {"baseline": method.baseline}
    if method.baseline == "blur":
        p["blur_sigma"] = method.blur_sigma
    return p


def validate_common(baseline: str, blur_sigma: float, batch_size: int) -> None:
    """Reject bad values of the options every coalition-based method shares.

    Parameters
    ----------
    baseline : one of :data:`BASELINES`.
    blur_sigma : a positive number of pixels.
    batch_size : an integer >= 1.

    Raises
    ------
    ValueError
        naming the option, the value given and what is allowed.

    Examples
    --------
    >>> validate_common("blur", 10.0, 0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1, got 0
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose from {BASELINES}")
    if not (isinstance(blur_sigma, (int, float)) and blur_sigma > 0):
        raise ValueError(f"blur_sigma must be a positive number of pixels, got {blur_sigma!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
