"""``shapley``: Shapley values of the present regions as players, exact or by seeded permutations (see
:mod:`semcontrib.methods.coalitions` for the baselines and the batched forwards it is built on)."""

from __future__ import annotations

import math
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

if TYPE_CHECKING:
    from semcontrib.methods.base import RegionResult


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
        validate_common(baseline, blur_sigma, batch_size)
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
        return {**baseline_params(self), "exact_max": self.exact_max, "samples": self.samples, "seed": self.seed}

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

        present = check_inputs(tensor, labels, vocabulary, targets, model)
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
        coalitions = Coalitions(np.asarray(image, np.int64), np.asarray(keeps).reshape(-1, K))
        values = coalition_values(self, model, tensor, targets, labels, coalitions)
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
            out[h] = RegionResult(scores, display_maps(scores, labels), delta)
        return out
