"""Validity of region scores: do they predict what happens to a head when regions are removed?

For each image, head and method, three numbers (a :class:`ValidityRecord` per (method, head)):

* ``faithfulness``: Spearman rank correlation (ties get average ranks) between the region scores
  and the drops of the target logit when each present region alone is replaced by the baseline,
  over the present regions. NaN, with a note, when fewer than ``min_regions`` (3) regions are
  present or either side is constant. The ``K + 1`` single-deletion forwards of an image are
  shared by every method and head.
* ``deletion_auc``: present regions removed one by one in order of decreasing score (ties: lower
  region index first), the target-class probability (softmax over the head's classes) after each
  step, from the original image (step 0) to every present region removed (step m); the area under
  this curve on ``[0, 1]`` (step j at ``j / m``, trapezoid rule). Lower is better (RISE, D-RISE).
* ``insertion_auc``: the same order, regions revealed one by one starting from the all-baseline
  image. Higher is better. Both lie in ``[0, 1]``; NaN with a note when no region is present.

All perturbed images of all methods and heads go through one deduplicated, batched call of
:func:`semcontrib.perturbation.forward_coalitions` (orderings that coincide share their forwards).

Which scores to pass: any per-image vector whose *order* is the one to judge. Spearman and the
orderings are invariant to a positive per-image rescaling, so a normalisation (``signed_l1``) does
not matter, but the basis does: for pixel methods pass the basis the user reads (``sum`` = the
region sums of the map, ``mean`` = sums divided by pixel counts); for region methods pass their
``RegionResult.scores`` (their ``sum`` basis).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semcontrib.settings import PERTURBATION_BASELINES as BASELINES
from semcontrib.settings import PERTURBATION_BATCH_SIZE as DEFAULT_BATCH_SIZE
from semcontrib.settings import PERTURBATION_BLUR_SIGMA as DEFAULT_BLUR_SIGMA

if TYPE_CHECKING:  # the metrics and ValidityConfig import no torch (the CLI builds its parser without it)
    import torch

    from semcontrib.model import MultitaskModel

logger = logging.getLogger(__name__)

# The basis in which each level of method's region vectors are read and judged: region methods
# score whole regions (their stored sums are their scores); for pixel methods the region sums too,
# the basis measured more faithful on the bundled photographs (docs/trust.md: equal on a grid,
# better on landscape regions for every method but LRP-epsilon, which is anti-faithful in both).
# SCORE_BASIS (semcontrib.settings): the basis each level of method is judged in; see docs/trust.md.


@dataclass(frozen=True)
class ValidityConfig:
    """How validity is measured.

    Attributes
    ----------
    baseline : what a removed region becomes: ``blur`` (default), ``mean`` or ``black``
        (see :mod:`semcontrib.perturbation`).
    blur_sigma : sigma of the ``blur`` baseline, pixels at model resolution.
    min_regions : fewest present regions for a faithfulness value (Spearman of 2 points is +-1).
    curves : compute ``deletion_auc`` and ``insertion_auc`` (False: NaN, no curve forwards).
    batch_size : perturbed images per forward.
    """

    baseline: str = "blur"
    blur_sigma: float = DEFAULT_BLUR_SIGMA
    min_regions: int = 3
    curves: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown validity baseline {self.baseline!r}; choose from {BASELINES}")
        if not self.blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {self.blur_sigma!r}")
        if not (isinstance(self.min_regions, int) and self.min_regions >= 2):
            raise ValueError(f"min_regions must be an integer >= 2, got {self.min_regions!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")

    @property
    def params(self) -> dict[str, object]:
        """The parameters that change the numbers (a cache key)."""
        p: dict[str, object] = {"baseline": self.baseline, "min_regions": self.min_regions, "curves": self.curves}
        if self.baseline == "blur":
            p["blur_sigma"] = self.blur_sigma
        return p


@dataclass(frozen=True)
class ValidityRecord:
    """Validity of one (method, head) for each image of a batch.

    Attributes
    ----------
    faithfulness : float64 (N,), Spearman in [-1, 1] or NaN.
    deletion_auc, insertion_auc : float64 (N,), in [0, 1] or NaN.
    note : N strings, empty or the reasons for NaN values (``"; "``-joined).
    """

    faithfulness: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    note: list[str]


# --------------------------------------------------------------------------- pure metrics


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-d array, ties sharing their average rank (float64).

    Examples
    --------
    >>> average_ranks(np.array([10.0, 30.0, 20.0, 30.0])).tolist()
    [1.0, 3.5, 2.0, 3.5]
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-d, got shape {values.shape}")
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    ranks = np.empty(len(values))
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_vals[end] != sorted_vals[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of ranks start+1..end
            start = end
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties (as ``scipy.stats.spearmanr``).

    Parameters
    ----------
    a, b : float (n,), finite.

    Returns
    -------
    float in [-1, 1]; NaN when n < 2 or either input is constant.

    Examples
    --------
    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0]))
    0.5
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d arrays of one length, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("spearman needs finite values")
    if len(a) < 2:
        return float("nan")
    ra = average_ranks(a) - (len(a) + 1) / 2.0
    rb = average_ranks(b) - (len(b) + 1) / 2.0
    denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.sum(ra * rb) / denom, -1.0, 1.0))


def curve_auc(values: np.ndarray) -> float:
    """Area under a curve sampled at ``m + 1`` equally spaced steps of ``[0, 1]`` (trapezoid rule).

    Parameters
    ----------
    values : float (m + 1,), e.g. the target probability after 0..m regions removed.

    Examples
    --------
    >>> curve_auc(np.array([1.0, 0.5, 0.0]))
    0.5
    >>> curve_auc(np.array([1.0, 0.0, 0.0, 0.0]))
    0.16666666666666666
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"values must be 1-d with at least 2 steps, got shape {values.shape}")
    m = len(values) - 1
    return float((values[:-1] + values[1:]).sum() / (2.0 * m))


def removal_order(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Indices of the present regions by decreasing score (ties: lower index first).

    Examples
    --------
    >>> removal_order(np.array([0.1, 0.0, 0.5, 0.1]), np.array([True, False, True, True])).tolist()
    [2, 0, 3]
    """
    idx = np.flatnonzero(present)
    return idx[np.argsort(-np.asarray(scores, dtype=np.float64)[idx], kind="stable")]


def _softmax_at(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p[np.arange(len(z)), target] / p.sum(axis=1)


# --------------------------------------------------------------------------- validity of a batch


def compute_validity(model: MultitaskModel, tensor: torch.Tensor, labels: np.ndarray, vocabulary: tuple[str, ...],
                     targets: dict[str, torch.Tensor], scores: dict[str, dict[str, np.ndarray]],
                     config: ValidityConfig) -> dict[tuple[str, str], ValidityRecord]:
    """Faithfulness, deletion and insertion AUC of every (method, head) for a batch.

    Parameters
    ----------
    model : the model whose heads the scores explain.
    tensor : float (N, 3, S, S), preprocessed images.
    labels : int (N, S, S) region maps at model resolution (-1 = unassigned, never removed).
    vocabulary : the K region names.
    targets : head -> int64 (N,), the explained class of each image.
    scores : method -> head -> float (N, K) region scores (see the module docs for which basis).
    config : baseline and options.

    Returns
    -------
    (method, head) -> ValidityRecord.
    """
    from semcontrib.perturbation import Coalitions, baseline_tensor, forward_coalitions, present_regions

    labels = np.asarray(labels)
    N, K = tensor.shape[0], len(vocabulary)
    if labels.shape != (N, *tensor.shape[-2:]):
        raise ValueError(f"labels must be int (N, S, S) matching tensor {tuple(tensor.shape)}, got {labels.shape}")
    present = present_regions(labels, K)
    for m, per_head in scores.items():
        for h, s in per_head.items():
            if h not in targets:
                raise ValueError(f"scores[{m!r}] has head {h!r} without a target; targets: {sorted(targets)}")
            if np.shape(s) != (N, K):
                raise ValueError(f"scores[{m!r}][{h!r}] must be (N, K) = {(N, K)}, got {np.shape(s)}")
    tgt = {h: t.cpu().numpy().astype(np.int64) for h, t in targets.items()}

    # rows: per image the original and every single deletion; then the curves of every (method, head)
    image: list[int] = []
    keep: list[np.ndarray] = []
    single: dict[tuple[int, int], int] = {}  # (n, k) -> row; k = -1: the original
    for n in range(N):
        single[(n, -1)] = len(image)
        image.append(n)
        keep.append(np.ones(K, bool))
        for k in np.flatnonzero(present[n]):
            row = np.ones(K, bool)
            row[k] = False
            single[(n, int(k))] = len(image)
            image.append(n)
            keep.append(row)
    curves: dict[tuple[str, str, int], tuple[int, int]] = {}  # -> (first deletion row, first insertion row)
    if config.curves:
        for m, per_head in scores.items():
            for h, s in per_head.items():
                for n in range(N):
                    order = removal_order(np.asarray(s)[n], present[n])
                    steps = len(order) + 1
                    deletion = np.ones((steps, K), bool)
                    insertion = np.zeros((steps, K), bool)
                    for j in range(1, steps):
                        deletion[j:, order[j - 1]] = False
                        insertion[j:, order[j - 1]] = True
                    curves[(m, h, n)] = (len(image), len(image) + steps)
                    image.extend([n] * (2 * steps))
                    keep.extend(deletion)
                    keep.extend(insertion)
    base = baseline_tensor(model, tensor, config.baseline, config.blur_sigma)
    logits = forward_coalitions(model, tensor, base, labels,
                                Coalitions(np.asarray(image, np.int64), np.asarray(keep).reshape(-1, K)),
                                config.batch_size)

    out: dict[tuple[str, str], ValidityRecord] = {}
    for m, per_head in scores.items():
        for h, s in per_head.items():
            s = np.asarray(s, dtype=np.float64)
            z = logits[h]
            faith = np.full(N, np.nan)
            dauc = np.full(N, np.nan)
            iauc = np.full(N, np.nan)
            notes: list[str] = []
            for n in range(N):
                why: list[str] = []
                regions = np.flatnonzero(present[n])
                t = tgt[h][n]
                if len(regions) < config.min_regions:
                    why.append(f"faithfulness: {len(regions)} regions present, fewer than {config.min_regions}")
                elif not np.all(np.isfinite(s[n, regions])):
                    why.append("faithfulness: non-finite scores")
                else:
                    f0 = z[single[(n, -1)], t]
                    drops = np.array([f0 - z[single[(n, int(k))], t] for k in regions])
                    rho = spearman(s[n, regions], drops)
                    if np.isnan(rho):
                        side = "scores" if np.ptp(s[n, regions]) == 0 else "logit drops"
                        why.append(f"faithfulness: the {side} are constant over the present regions")
                    faith[n] = rho
                if config.curves:
                    if len(regions) == 0:
                        why.append("curves: no region present")
                    else:
                        d0, i0 = curves[(m, h, n)]
                        steps = len(regions) + 1
                        tt = np.full(steps, t)
                        dauc[n] = curve_auc(_softmax_at(z[d0:d0 + steps], tt))
                        iauc[n] = curve_auc(_softmax_at(z[i0:i0 + steps], tt))
                notes.append("; ".join(why))
            out[(m, h)] = ValidityRecord(faith, dauc, iauc, notes)
    logger.debug("validity: %d images, %d (method, head) pairs, %d rows", N, len(out), len(image))
    return out
