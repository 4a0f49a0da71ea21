"""LIME over regions: a weighted linear surrogate of every head, fitted on seeded region coalitions.

The regions of the region map that occur in an image are LIME's *interpretable features* (Ribeiro
et al. 2016, "Why should I trust you?"). For image ``n`` with ``m`` present regions:

1. **Samples.** ``samples`` binary vectors ``z`` in ``{0, 1}^m`` (1 = the region is kept, 0 = it is
   replaced by the baseline, as in :mod:`semcontrib.perturbation`). Row 0 keeps every region (the
   image itself, as ``lime_image`` does); the other rows are independent Bernoulli(1/2) draws per
   region from ``torch.Generator().manual_seed(seed)`` (captum's ``default_perturb_func`` draws the
   same distribution). The draws depend on ``m`` and ``seed`` only, so a score never depends on the
   other images of a batch.
2. **Forwards.** The perturbed images of every image go through
   :func:`semcontrib.perturbation.forward_coalitions` together: deduplicated, batched, and one
   forward serves every head.
3. **Kernel.** Sample ``z`` weighs ``pi(z) = exp(-d(z)^2 / (2 w^2))`` with ``d`` the cosine distance
   between ``z`` and the all-ones vector in the interpretable space, ``d = 1 - sqrt(|z| / m)`` (1 for
   the empty coalition), and ``w = kernel_width`` (default 0.25, ``lime_image``'s width; this is
   ``lime_image``'s ``sqrt(exp(-d^2 / w^2))`` and captum's ``get_exp_kernel_similarity_function`` with
   ``distance_mode="cosine"``, computed on the interpretable samples).
4. **Surrogate.** Per head, a linear model ``g(z) = b + sum_k c_k z_k`` fitted to the target logit
   ``f_t`` of the samples, weighted by ``pi``, with scikit-learn (as captum's ``SkLearnLinearModel``):
   ``regulariser="ridge"`` (default, ``Ridge(alpha)``, ``lime_image``'s surrogate), ``"lasso"``
   (``Lasso(alpha)``, captum's default surrogate) or ``"none"`` (weighted least squares,
   ``LinearRegression``).
5. **Scores.** ``c_k`` is region ``k``'s score; absent regions score 0. The surrogate's fit, its
   weighted coefficient of determination ``R^2 = 1 - sum pi (y - g)^2 / sum pi (y - mean_pi y)^2``
   (scikit-learn's ``score`` with ``sample_weight``), is kept per image and head as the result's
   ``delta = 1 - R^2``: the share of the weighted variance of the target logit over the samples the
   surrogate leaves unexplained (0 = a perfect linear fit; NaN for an image without regions).

The scores are coefficients, not a decomposition: they do not sum to ``f(x) - f(baseline)``.
Under a bf16 compute context the forwards run in bfloat16, as for ``shapley``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from semcontrib.methods.coalitions import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_SIGMA,
    Coalitions,
    baseline_params,
    check_inputs,
    coalition_values,
    display_maps,
    validate_common,
)
from semcontrib.model import MultitaskModel
from semcontrib.settings import LIME_REGULARISERS

if TYPE_CHECKING:
    from semcontrib.methods.base import RegionResult

logger = logging.getLogger(__name__)

REGULARISERS = LIME_REGULARISERS  # the choices have one owner (semcontrib.settings)


def lime_samples(m: int, n_samples: int, seed: int) -> np.ndarray:
    """The interpretable samples of an image with ``m`` present regions.

    Returns
    -------
    bool (n_samples, m): row 0 all True; the others Bernoulli(1/2) per region, seeded.

    Examples
    --------
    >>> z = lime_samples(3, 4, seed=0)
    >>> z.shape, bool(z[0].all())
    ((4, 3), True)
    """
    g = torch.Generator().manual_seed(seed)
    draws = torch.bernoulli(torch.full((max(n_samples - 1, 0), m), 0.5), generator=g).numpy().astype(bool)
    return np.concatenate([np.ones((1, m), bool), draws])[:n_samples]


def cosine_kernel(samples: np.ndarray, kernel_width: float) -> np.ndarray:
    """float64 (S,): ``exp(-d^2 / (2 w^2))``, ``d`` = cosine distance of each binary sample to all-ones.

    Examples
    --------
    >>> cosine_kernel(np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], bool), 0.25).round(4)
    array([1.    , 0.0183, 0.    ])
    """
    z = np.asarray(samples, bool)
    m = z.shape[1]
    cos = np.sqrt(z.sum(1) / m) if m else np.zeros(len(z))
    d = 1.0 - cos
    return np.exp(-(d ** 2) / (2.0 * kernel_width ** 2))


def fit_surrogate(samples: np.ndarray, values: np.ndarray, weights: np.ndarray, regulariser: str,
                  alpha: float) -> tuple[np.ndarray, float, float]:
    """Weighted linear surrogate of ``values`` on ``samples``.

    Parameters
    ----------
    samples : bool or float (S, m) interpretable samples.
    values : float (S,) the target logit of each sample.
    weights : float (S,) kernel weights.
    regulariser, alpha : see :class:`LimeMethod`.

    Returns
    -------
    coefficients float64 (m,), intercept, weighted R^2.
    """
    from sklearn.linear_model import Lasso, LinearRegression, Ridge

    x = np.asarray(samples, np.float64)
    y = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    model: Any = (Ridge(alpha=alpha) if regulariser == "ridge" else Lasso(alpha=alpha) if regulariser == "lasso"
                  else LinearRegression())
    model.fit(x, y, sample_weight=w)
    return np.asarray(model.coef_, np.float64).reshape(-1), float(model.intercept_), float(model.score(x, y, w))


class LimeMethod:
    """LIME with the regions as interpretable features (see the module docs).

    Parameters
    ----------
    samples : coalitions sampled per image (row 0 is the image itself), at least 2.
    kernel_width : width ``w`` of the exponential cosine kernel (> 0; default 0.25 as ``lime_image``).
    regulariser : ``ridge`` (default), ``lasso`` or ``none``.
    alpha : strength of the ridge or lasso penalty (>= 0; ignored by ``none``).
    baseline : ``blur`` (default), ``mean`` or ``black``: what replaces a region left out.
    seed : seed of each image's samples.
    blur_sigma : sigma of the ``blur`` baseline, pixels at model resolution.
    batch_size : perturbed images per forward (no effect on the scores).
    """

    name = "lime"
    level = "region"
    runs_in_bf16 = True  # forwards only, as occlusion and shapley

    def __init__(self, *, samples: int = 64, kernel_width: float = 0.25, regulariser: str = "ridge",
                 alpha: float = 1.0, baseline: str = "blur", seed: int = 0,
                 blur_sigma: float = DEFAULT_BLUR_SIGMA, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        validate_common(baseline, blur_sigma, batch_size)
        if not (isinstance(samples, int) and not isinstance(samples, bool) and 2 <= samples <= 65536):
            raise ValueError(f"lime samples must be an integer in 2..65536, got {samples!r}")
        if not (isinstance(kernel_width, (int, float)) and np.isfinite(kernel_width) and kernel_width > 0):
            raise ValueError(f"lime kernel_width must be a positive number, got {kernel_width!r}")
        if regulariser not in REGULARISERS:
            raise ValueError(f"unknown lime regulariser {regulariser!r}; choose from {REGULARISERS}")
        if not (isinstance(alpha, (int, float)) and np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"lime alpha must be a number >= 0, got {alpha!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.samples = samples
        self.kernel_width = float(kernel_width)
        self.regulariser = regulariser
        self.alpha = float(alpha)
        self.baseline = baseline
        self.seed = seed
        self.blur_sigma = float(blur_sigma)
        self.batch_size = batch_size

    @property
    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"samples": self.samples, "kernel_width": self.kernel_width,
                             "regulariser": self.regulariser, **baseline_params(self), "seed": self.seed}
        if self.regulariser != "none":
            p["alpha"] = self.alpha
        return p

    def notes(self, model: MultitaskModel) -> str:
        return (f"LIME over regions, baseline {self.baseline}: {self.samples} seeded coalitions per image, "
                f"exponential cosine kernel (width {self.kernel_width}), {self.regulariser} surrogate; scores = "
                "its coefficients (they do not sum to the logit); delta = 1 - the surrogate's weighted R^2")

    def attribute_regions(self, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                          labels: np.ndarray, vocabulary: tuple[str, ...]) -> dict[str, RegionResult]:
        """LIME score of every present region per head; absent regions score 0.

        Parameters and returns as :meth:`semcontrib.perturbation.OcclusionMethod.attribute_regions`;
        ``delta`` is float64 (N,), ``1 -`` the surrogate's weighted R^2.
        """
        from semcontrib.methods.base import RegionResult

        present = check_inputs(tensor, labels, vocabulary, targets, model)
        N, K = present.shape
        image: list[int] = []
        keeps: list[np.ndarray] = []
        plans: list[tuple[np.ndarray, int, np.ndarray]] = []  # players, first row, samples
        for n in range(N):
            players = np.flatnonzero(present[n])
            z = lime_samples(len(players), self.samples, self.seed)
            rows = np.zeros((len(z), K), bool)
            rows[:, players] = z
            plans.append((players, len(image), z))
            keeps.extend(rows)
            image.extend([n] * len(z))
        coalitions = Coalitions(np.asarray(image, np.int64), np.asarray(keeps).reshape(-1, K))
        values = coalition_values(self, model, tensor, targets, labels, coalitions)
        out: dict[str, RegionResult] = {}
        for h, v in values.items():
            scores = np.zeros((N, K))
            delta = np.full(N, np.nan)
            for n, (players, first, z) in enumerate(plans):
                if not len(players):
                    continue
                coef, _, r2 = fit_surrogate(z, v[first:first + len(z)], cosine_kernel(z, self.kernel_width),
                                            self.regulariser, self.alpha)
                scores[n, players] = coef
                delta[n] = 1.0 - r2
            out[h] = RegionResult(scores, display_maps(scores, labels), delta)
        return out
