"""Validity of region scores: do they predict what happens to a head when regions are removed?

For each image, head and method, a :class:`ValidityRecord` per (method, head) holds:

* ``faithfulness``: Spearman rank correlation (ties get average ranks) between the region scores
  and the drops of the target logit when each present region alone is removed, over the present
  regions. NaN, with a note, when fewer than ``min_regions`` (3) regions are present or either side
  is constant. The ``m + 1`` single-deletion forwards of an image are shared by every method and head.
* ``deletion_auc`` (MoRF): present regions removed one by one in order of decreasing score (ties:
  lower region index first), the target-class probability (softmax over the head's classes) after
  each step, from the original image (step 0) to every present region removed (step m); the area
  under this curve on ``[0, 1]`` (step j at ``j / m``, trapezoid rule). Lower is better.
* ``lerf_auc`` (LeRF): the same with the *least* relevant region removed first. Higher is better.
* ``insertion_auc``: regions revealed in the method's order starting from every region removed.
  Revealing the top j regions is removing the bottom ``m - j``: the insertion curve is the LeRF
  curve read backwards, so ``insertion_auc == lerf_auc`` (kept for readers of earlier corpora).
* ``random_auc``: the expected deletion AUC of a uniformly random order of the same regions, on the
  same steps (the reference of MoRF and of LeRF alike: a reversed random order is a random order).
  ``E[AUC] = sum_j w_j mean_{|S| = j} p(S removed)`` with the steps' trapezoid weights ``w_j``
  (:func:`expected_random_auc`); the step means are exact where all subsets of a step are at most
  ``exact_random`` forwards per image, otherwise estimated from ``random_samples`` seeded random
  orders (prefixes of the same permutations at every step). Step 1 is always exact: it is the mean
  of the single deletions. Gains over random: ``random_auc - deletion_auc`` (MoRF) and
  ``lerf_auc - random_auc`` (LeRF), both > 0 for a useful order.

How a region is removed (``baseline``): ``road`` (default) is ROAD's noisy linear imputation
(:mod:`semcontrib.imputation`, Rong et al. 2022): the removed pixels are interpolated from the kept
ones around them plus seeded noise (seed: ``seed`` and the set of removed regions, so a perturbed
image never depends on the batch), which neither keeps the region's blurred content nor paints its
shape in a flat colour. No attribution method scores with it, so the test is independent of every
method. ``blur``, ``mean`` and ``black`` are the baselines of :mod:`semcontrib.perturbation`; a
region method that scores with the same baseline as the test (``occlusion`` with ``blur`` under a
``blur`` test) is judged by its own definition: :func:`circular` says so and the record's note
starts with ``circular``.

Cost (:attr:`ValidityConfig.steps`): curves are evaluated at ``steps`` removal counts spread evenly
over ``1..m`` (always 1 and m; 0 gives full curves) and the AUC is the trapezoid over those points;
step 0 (the original), step 1 (a single deletion) and step m (all removed) are shared with the
faithfulness forwards, so a curve costs ``steps - 2`` forwards. All perturbed images of all
methods and heads of a batch go through one deduplicated, batched call of
:func:`semcontrib.perturbation.forward_coalitions` (identical removal sets share their forward).

Which scores to pass: any per-image vector whose *order* is the one to judge. Spearman and the
orderings are invariant to a positive per-image rescaling, so a normalisation (``signed_l1``) does
not matter, but the basis does (``semcontrib.settings.SCORE_BASIS``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from semcontrib.settings import DEFAULT_VALIDITY_BASELINE, VALIDITY_RANDOM_SAMPLES, VALIDITY_STEPS
from semcontrib.settings import PERTURBATION_BATCH_SIZE as DEFAULT_BATCH_SIZE
from semcontrib.settings import PERTURBATION_BLUR_SIGMA as DEFAULT_BLUR_SIGMA
from semcontrib.settings import VALIDITY_BASELINES as BASELINES
from semcontrib.validity_curves import (  # noqa: F401 - the pure metrics, re-exported (tests and readers import them here)
    average_ranks,
    curve_auc,
    curve_steps,
    expected_random_auc,
    removal_order,
    softmax_at,
    spearman,
    step_weights,
)

if TYPE_CHECKING:  # the metrics and ValidityConfig import no torch (the CLI builds its parser without it)
    import torch

    from semcontrib.model import MultitaskModel

logger = logging.getLogger(__name__)

CIRCULAR = "circular"  # the first word of the note of a record judged by the method's own perturbation
NOT_SAMPLED = "not in the validity sample"  # the note of an image left out by ValidityConfig.sample
CPU_BATCH_SIZE = 4  # perturbed images per forward on CPU (see ValidityConfig.batch_size)


@dataclass(frozen=True)
class ValidityConfig:
    """How validity is measured.

    Attributes
    ----------
    baseline : what a removed region becomes: ``road`` (default: ROAD's noisy linear imputation),
        ``blur``, ``mean`` or ``black`` (see the module docs).
    blur_sigma : sigma of the ``blur`` baseline, pixels at model resolution.
    road_noise : standard deviation of ROAD's noise on imputed pixels (normalised input units).
    seed : seed of ROAD's noise and of the random orders.
    min_regions : fewest present regions for a faithfulness value (Spearman of 2 points is +-1).
    curves : compute the deletion AUCs and the random reference (False: NaN, no curve forwards).
    steps : points per curve besides the original, spread evenly over 1..m removed regions; 0 (or
        at least m) evaluates every step (full curves, the precise and costly setting).
    random_samples : seeded random orders for the random reference where it is not exact.
    exact_random : the random reference is exact when all subsets it needs are at most this many
        extra forwards per image.
    batch_size : perturbed images per forward; None (default): 4 on CPU, where small batches are faster
        per image (0.023 s against 0.034 s at 16, one thread, ``benchmarks/bench_validity.py``), and
        the perturbation batch size (16) on an accelerator.
    sample : the engine records validity on one image in ``sample``, those whose id hashes (with
        ``seed``) to a multiple of it (:meth:`in_sample`: the same images in every run, shard and chunk
        layout); the others get NaN values and the note :data:`NOT_SAMPLED`. 1 (default): every image.
    """

    baseline: str = DEFAULT_VALIDITY_BASELINE
    blur_sigma: float = DEFAULT_BLUR_SIGMA
    road_noise: float = 0.01
    seed: int = 0
    min_regions: int = 3
    curves: bool = True
    steps: int = VALIDITY_STEPS
    random_samples: int = VALIDITY_RANDOM_SAMPLES
    exact_random: int = 16
    batch_size: int | None = None
    sample: int = 1

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown validity baseline {self.baseline!r}; choose from {BASELINES}")
        if not self.blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {self.blur_sigma!r}")
        if not (isinstance(self.road_noise, (int, float)) and 0 <= self.road_noise < 10):
            raise ValueError(f"road_noise must be a number in [0, 10), got {self.road_noise!r}")
        if not (isinstance(self.min_regions, int) and self.min_regions >= 2):
            raise ValueError(f"min_regions must be an integer >= 2, got {self.min_regions!r}")
        if not (isinstance(self.steps, int) and (self.steps == 0 or self.steps >= 2)):
            raise ValueError(f"steps must be 0 (full curves) or an integer >= 2, got {self.steps!r}")
        for name in ("random_samples", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1) and not (name == "batch_size" and v is None):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.exact_random, int) and self.exact_random >= 0):
            raise ValueError(f"exact_random must be an integer >= 0, got {self.exact_random!r}")
        if not (type(self.sample) is int and self.sample >= 1):
            raise ValueError(f"sample must be an integer >= 1 (one image in N), got {self.sample!r}")

    def in_sample(self, image_id: str) -> bool:
        """Whether the engine records validity for ``image_id``: always with ``sample`` 1, else when the
        sha256 of the seed and the id, as an integer, is a multiple of ``sample``.

        >>> ValidityConfig().in_sample("img-1"), ValidityConfig(sample=2).in_sample("img-1")
        (True, False)
        >>> sum(ValidityConfig(sample=4).in_sample(f"img{k}") for k in range(4000))  # about 1,000
        1028
        """
        if self.sample == 1:
            return True
        digest = hashlib.sha256(f"{self.seed}:{image_id}".encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:8], "big") % self.sample == 0

    @property
    def perturbation(self) -> str:
        """The removal as a method would name it: ``blur:10.0``, ``mean``, ``black`` or ``road``."""
        return f"blur:{float(self.blur_sigma)}" if self.baseline == "blur" else self.baseline

    @property
    def params(self) -> dict[str, object]:
        """The parameters that change the numbers (a cache key)."""
        p: dict[str, object] = {"baseline": self.baseline, "min_regions": self.min_regions, "curves": self.curves,
                                "steps": self.steps, "random_samples": self.random_samples,
                                "exact_random": self.exact_random, "seed": self.seed}
        if self.baseline == "blur":
            p["blur_sigma"] = self.blur_sigma
        if self.baseline == "road":
            p["road_noise"] = self.road_noise
            p["road"] = 2  # 2: float32 noise draws (the imputation's solver version)
        if self.sample != 1:  # absent at 1: the records of every image keep the key they had before
            p["sample"] = self.sample
        return p


@dataclass(frozen=True)
class ValidityRecord:
    """Validity of one (method, head) for each image of a batch.

    Attributes
    ----------
    faithfulness : float64 (N,), Spearman in [-1, 1] or NaN.
    deletion_auc, lerf_auc, insertion_auc, random_auc : float64 (N,), in [0, 1] or NaN: the MoRF and
        LeRF deletion AUCs, the insertion AUC (equal to ``lerf_auc``) and the random-order reference.
    note : N strings, empty or the reasons for NaN values (``"; "``-joined); a record judged by the
        method's own perturbation starts with ``circular``.
    """

    faithfulness: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    lerf_auc: np.ndarray
    random_auc: np.ndarray
    note: list[str]


def method_perturbation(level: str, params: dict[str, object]) -> str | None:
    """The perturbation a method scores with, named as :attr:`ValidityConfig.perturbation`, or None.

    Region-level methods with a ``baseline`` parameter (occlusion, shapley, lime) score by replacing
    regions with it; pixel methods score otherwise.

    Examples
    --------
    >>> method_perturbation("region", {"baseline": "blur", "blur_sigma": 10})
    'blur:10.0'
    >>> method_perturbation("pixel", {"baseline": "black"}) is None
    True
    """
    base = params.get("baseline")
    if level != "region" or not isinstance(base, str):
        return None
    if base == "blur":
        return f"blur:{float(params.get('blur_sigma', DEFAULT_BLUR_SIGMA))}"  # type: ignore[arg-type]
    return base


def circular(level: str, params: dict[str, object], config: ValidityConfig) -> bool:
    """Whether a method is judged by the perturbation it scores with (its record says nothing new).

    Examples
    --------
    >>> circular("region", {"baseline": "blur"}, ValidityConfig(baseline="blur"))
    True
    >>> circular("region", {"baseline": "blur"}, ValidityConfig())  # ROAD imputation: independent
    False
    """
    return method_perturbation(level, params) == config.perturbation


# --------------------------------------------------------------------------- validity of a batch


class _InferenceModel:
    """A model's forward for the perturbed images of the validity record: a channels-last copy traced and
    frozen by TorchScript (``torch.jit.freeze`` folds batch norm into the convolutions), run in inference
    mode. The same function as the model's forward up to float rounding (compared with the model on the
    first image it sees; on a difference above 1e-3 of the logits' scale, or a failed trace, the model
    itself is used); on CPU about half the model's time per image (``benchmarks/bench_validity.py``).
    ``head_names`` and ``head`` are the model's."""

    def __init__(self, model: MultitaskModel) -> None:
        self.model = model
        self.net: Any = None  # traced on the first call (tracing needs an input)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def _build(self, x: torch.Tensor) -> Any:
        import copy
        import warnings

        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about the heads' Python loops (fixed shapes)
                clone = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
                net = torch.jit.freeze(torch.jit.trace(clone, x[:1].contiguous(memory_format=torch.channels_last),
                                                       strict=False, check_trace=False))
            got, ref = net(x[:1].contiguous(memory_format=torch.channels_last)), self.model(x[:1])
            for h, z in ref.items():
                if float((got[h].float() - z.float()).abs().max()) > 1e-3 * (1.0 + float(z.abs().max())):
                    raise ValueError(f"its logits differ from the model's on head {h!r}")
            return net
        except Exception as exc:  # noqa: BLE001 - whatever TorchScript cannot trace runs as it is
            logger.warning("validity: no traced inference copy of the model (%s); using the model", exc)
            return self.model

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch

        with torch.inference_mode():
            if torch.is_autocast_enabled(x.device.type):  # reduced precision: the model's own autocast path
                return self.model(x)
            if self.net is None:
                self.net = self._build(x)
            if self.net is self.model:
                return self.model(x)
            return self.net(x.contiguous(memory_format=torch.channels_last))


_INFERENCE: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def inference_model(model: MultitaskModel) -> Any:
    """What the validity record runs its perturbed images through: the traced inference copy of ``model``
    (:class:`_InferenceModel`), built once per model and rebuilt when a weight changes in place (e.g. the
    randomisation check of ``validate``); the model itself when it is in training mode or carries forward
    hooks (an attributor or a counter is watching it), or is no ``torch.nn.Module`` (a wrapper)."""
    import torch

    if not isinstance(model, torch.nn.Module) or model.training or any(
            m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return model
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    signature = tuple((t.device, t.data_ptr(), t._version) for t in tensors)
    cached = _INFERENCE.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    fast = _InferenceModel(model)
    _INFERENCE[model] = (signature, fast)
    return fast


def _road_perturb(config: ValidityConfig) -> Any:
    """The ``perturb`` hook of :func:`forward_coalitions` for ROAD imputation (seeded per removal set)."""
    import torch

    from semcontrib.imputation import road_impute

    def perturb(images: torch.Tensor, kept: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        out = images.clone()
        xs = images.detach().cpu().double().numpy()
        ks = kept[:, 0].cpu().numpy()
        for b in range(len(rows)):
            removed = ~ks[b]
            if removed.any():
                seed = [config.seed, *np.packbits(rows[b, 1:].astype(bool)).tolist()]  # the kept regions
                filled = road_impute(xs[b], removed, noise=config.road_noise, rng=np.random.default_rng(seed),
                                     fill=0.0)
                out[b] = torch.from_numpy(filled).to(out.dtype)
        return out

    return perturb


class _Rows:
    """One row per distinct (image, set of removed regions) of a batch; every metric reads its rows here."""

    def __init__(self, n_regions: int) -> None:
        self.n_regions = n_regions
        self.image: list[int] = []  # the image of each row
        self.keep: list[np.ndarray] = []  # bool (K,) per row: the regions kept
        self.row: dict[tuple[int, bytes], int] = {}

    def need(self, n: int, removed: np.ndarray) -> int:
        """The row of image ``n`` with the regions ``removed`` (indices) removed, added when new."""
        mask = np.zeros(self.n_regions, bool)
        mask[removed] = True
        key = (n, np.packbits(mask).tobytes())
        if key not in self.row:
            self.row[key] = len(self.image)
            self.image.append(n)
            self.keep.append(~mask)
        return self.row[key]


@dataclass(frozen=True)
class _Plan:
    """The perturbed images of a batch: per image its present regions (int arrays), the removal counts of its
    curves and the rows of each step of the random reference; per (method, head, image) its removal order."""

    rows: _Rows
    regions: list[np.ndarray]
    steps: list[np.ndarray]
    orders: dict[tuple[str, str, int], np.ndarray]
    random_rows: list[list[list[int]]]  # per image, per step: the rows whose mean is that step's value


@dataclass(frozen=True)
class _Batch:
    """What the records of a batch read: the plan, per head the logits and target probability of every row,
    the explained classes (int64 (N,)) and the random reference (float (N,))."""

    plan: _Plan
    logits: dict[str, np.ndarray]
    prob: dict[str, np.ndarray]
    tgt: dict[str, np.ndarray]
    random_auc: dict[str, np.ndarray]
    config: ValidityConfig


def _check_inputs(tensor: torch.Tensor, labels: np.ndarray, n_regions: int, targets: dict[str, torch.Tensor],
                  scores: dict[str, dict[str, np.ndarray]], original_logits: Mapping[str, np.ndarray] | None) -> None:
    """Raise ValueError on inputs of :func:`compute_validity` whose shapes do not match."""
    N, K = tensor.shape[0], n_regions
    if labels.shape != (N, *tensor.shape[-2:]):
        raise ValueError(f"labels must be int (N, S, S) matching tensor {tuple(tensor.shape)}, got {labels.shape}")
    for meth, per_head in scores.items():
        for h, s in per_head.items():
            if h not in targets:
                raise ValueError(f"scores[{meth!r}] has head {h!r} without a target; targets: {sorted(targets)}")
            if np.shape(s) != (N, K):
                raise ValueError(f"scores[{meth!r}][{h!r}] must be (N, K) = {(N, K)}, got {np.shape(s)}")
    if original_logits is not None:
        for h in targets:
            got = np.shape(original_logits[h]) if h in original_logits else "none"
            if got == "none" or len(got) != 2 or got[0] != N:
                raise ValueError(f"original_logits must hold float (N, n_classes) with N = {N} for every head of the "
                                 f"targets; head {h!r}: {got}")


def _random_rows(rows: _Rows, n: int, regions: np.ndarray, steps: np.ndarray, config: ValidityConfig
                 ) -> list[list[int]]:
    """Per step of image ``n``'s curves, the rows whose mean is the random reference's value there: every
    subset of the step's size where all are few enough, else the prefixes of seeded random orders."""
    m = len(regions)
    inner = [int(j) for j in steps if 2 <= j <= m - 1]
    exact = sum(math.comb(m, j) for j in inner) <= config.exact_random
    perms = [] if exact else [np.random.default_rng([config.seed, m, r]).permutation(m)
                              for r in range(config.random_samples)]
    per_step: list[list[int]] = []
    for j in steps:
        if j <= 1 or j == m or exact:
            subsets = [list(c) for c in itertools.combinations(regions, int(j))]
        else:
            subsets = [list(regions[p[:j]]) for p in perms]
        per_step.append([rows.need(n, np.asarray(sub, np.int64)) for sub in subsets])
    return per_step


def _plan(present: np.ndarray, scores: dict[str, dict[str, np.ndarray]], config: ValidityConfig) -> _Plan:
    """Every perturbed image the metrics of a batch need, from bool (N, K) present regions."""
    N, K = present.shape
    rows = _Rows(K)
    regions = [np.flatnonzero(present[n]) for n in range(N)]
    steps = [curve_steps(len(r), config.steps) for r in regions]
    orders: dict[tuple[str, str, int], np.ndarray] = {}
    random_rows: list[list[list[int]]] = []
    for n in range(N):
        rows.need(n, regions[n][:0])
        for k in regions[n]:
            rows.need(n, np.array([k]))
        if not config.curves or not len(regions[n]):
            random_rows.append([])
            continue
        rows.need(n, regions[n])
        for meth, per_head in scores.items():
            for h, sc in per_head.items():
                if not np.all(np.isfinite(np.asarray(sc)[n, regions[n]])):
                    continue
                order = removal_order(np.asarray(sc)[n], present[n])
                orders[(meth, h, n)] = order
                for j in steps[n]:
                    rows.need(n, order[:j])
                    rows.need(n, order[::-1][:j])
        random_rows.append(_random_rows(rows, n, regions[n], steps[n], config))
    return _Plan(rows, regions, steps, orders, random_rows)


def _perturbed_logits(model: MultitaskModel, tensor: torch.Tensor, labels: np.ndarray, coalitions: Any,
                      config: ValidityConfig) -> dict[str, np.ndarray]:
    """Head -> logits of the perturbed images of ``coalitions`` (one batched, deduplicated forward)."""
    from semcontrib.methods.coalitions import baseline_tensor, forward_coalitions

    if config.baseline == "road":
        base, perturb = tensor, _road_perturb(config)
    else:
        base, perturb = baseline_tensor(model, tensor, config.baseline, config.blur_sigma), None
    batch = config.batch_size or (CPU_BATCH_SIZE if tensor.device.type == "cpu" else DEFAULT_BATCH_SIZE)
    return forward_coalitions(inference_model(model), tensor, base, labels, coalitions, batch, perturb=perturb)


def _with_originals(part: Mapping[str, np.ndarray], given: np.ndarray, rows_image: np.ndarray,
                    original_logits: Mapping[str, np.ndarray] | None, heads: Collection[str]) -> dict[str, np.ndarray]:
    """Head -> float64 logits of every row: the forwarded rows from ``part``, the ``given`` rows (the originals)
    from the caller's ``original_logits``."""
    logits: dict[str, np.ndarray] = {}
    for h in heads:
        z = np.empty((len(rows_image), part[h].shape[1]))
        z[~given] = part[h]
        if given.any():
            z[given] = np.asarray(original_logits[h], np.float64)[rows_image[given]]  # type: ignore[index]
        logits[h] = z
    return logits


def _random_aucs(plan: _Plan, prob: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Head -> float (N,) expected AUC of a random removal order (NaN without curves)."""
    N = len(plan.regions)
    random_auc = {h: np.full(N, np.nan) for h in prob}
    for h in prob:
        for n in range(N):
            if plan.random_rows[n]:
                means = np.array([prob[h][rs].mean() for rs in plan.random_rows[n]])
                random_auc[h][n] = expected_random_auc(means, plan.steps[n], len(plan.regions[n]))
    return random_auc


def _faithfulness(batch: _Batch, h: str, s: np.ndarray, n: int) -> tuple[float, str]:
    """Image ``n``'s Spearman between the scores ``s`` (float64 (N, K)) and the single-deletion logit drops of
    head ``h``, and the reason when it is NaN (else "")."""
    reg, t, z, config = batch.plan.regions[n], batch.tgt[h][n], batch.logits[h], batch.config
    if len(reg) < config.min_regions:
        return float("nan"), f"faithfulness: {len(reg)} regions present, fewer than {config.min_regions}"
    if not np.all(np.isfinite(s[n, reg])):
        return float("nan"), "faithfulness: non-finite scores"
    need = batch.plan.rows.need
    f0 = z[need(n, reg[:0]), t]
    drops = np.array([f0 - z[need(n, np.array([k])), t] for k in reg])
    rho = spearman(s[n, reg], drops)
    if np.isnan(rho):
        side = "scores" if np.ptp(s[n, reg]) == 0 else "logit drops"
        return rho, f"faithfulness: the {side} are constant over the present regions"
    return rho, ""


def _curves(batch: _Batch, key: tuple[str, str, int]) -> tuple[float, float, float, str]:
    """The MoRF and LeRF AUCs and random reference of one (method, head, image), and the reason when NaN."""
    _, h, n = key
    nan = float("nan")
    reg = batch.plan.regions[n]
    if len(reg) == 0:
        return nan, nan, nan, "curves: no region present"
    if key not in batch.plan.orders:
        return nan, nan, nan, "curves: non-finite scores"
    order, js, need, prob = batch.plan.orders[key], batch.plan.steps[n], batch.plan.rows.need, batch.prob[h]
    w = step_weights(js, len(reg))
    morf = float(np.dot(w, prob[[need(n, order[:j]) for j in js]]))
    lerf = float(np.dot(w, prob[[need(n, order[::-1][:j]) for j in js]]))
    return morf, lerf, float(batch.random_auc[h][n]), ""


def _record(batch: _Batch, meth: str, h: str, s: np.ndarray, circular_note: str) -> ValidityRecord:
    """The record of one (method, head) from float64 (N, K) scores; ``circular_note`` starts every note."""
    N = len(batch.plan.regions)
    faith, morf, lerf, rnd = (np.full(N, np.nan) for _ in range(4))
    notes: list[str] = []
    for n in range(N):
        why = [circular_note] if circular_note else []
        faith[n], note = _faithfulness(batch, h, s, n)
        why += [note] if note else []
        if batch.config.curves:
            morf[n], lerf[n], rnd[n], note = _curves(batch, (meth, h, n))
            why += [note] if note else []
        notes.append("; ".join(why))
    return ValidityRecord(faith, morf, lerf.copy(), lerf, rnd, notes)


def compute_validity(model: MultitaskModel, tensor: torch.Tensor, labels: np.ndarray, vocabulary: tuple[str, ...],
                     targets: dict[str, torch.Tensor], scores: dict[str, dict[str, np.ndarray]], *,
                     config: ValidityConfig, circular_methods: Collection[str] = (),
                     original_logits: Mapping[str, np.ndarray] | None = None) -> dict[tuple[str, str], ValidityRecord]:
    """Faithfulness, MoRF / LeRF deletion AUCs and the random reference of every (method, head).

    Parameters
    ----------
    model : the model whose heads the scores explain.
    tensor : float (N, 3, S, S), preprocessed images.
    labels : int (N, S, S) region maps at model resolution (-1 = unassigned, never removed).
    vocabulary : the K region names.
    targets : head -> int64 (N,), the explained class of each image.
    scores : method -> head -> float (N, K) region scores (see the module docs for which basis).
    config : baseline and options (this and the options below are keyword-only).
    circular_methods : methods that score with this test's own perturbation (:func:`circular`):
        their notes start with ``circular``.
    original_logits : head -> float (N, n_classes), the unperturbed images' logits when the caller has
        them (the analysis' predictions): step 0 of every curve and the reference of every single-deletion
        drop then costs no forward. Every head of ``targets`` must be there.

    Returns
    -------
    (method, head) -> ValidityRecord.
    """
    from semcontrib.methods.coalitions import Coalitions, present_regions

    labels = np.asarray(labels)
    N, K = tensor.shape[0], len(vocabulary)
    _check_inputs(tensor, labels, K, targets, scores, original_logits)
    present = present_regions(labels, K)
    tgt = {h: t.cpu().numpy().astype(np.int64) for h, t in targets.items()}
    plan = _plan(present, scores, config)

    rows_image, rows_keep = np.asarray(plan.rows.image, np.int64), np.asarray(plan.rows.keep, bool).reshape(-1, K)
    # the rows of the original images, whose logits the caller gave
    given = np.asarray(rows_keep.all(axis=1) if original_logits is not None else np.zeros(len(rows_image), bool))
    part = _perturbed_logits(model, tensor, labels, Coalitions(rows_image[~given], rows_keep[~given]), config)
    logits = _with_originals(part, given, rows_image, original_logits, tgt)
    prob = {h: softmax_at(logits[h], tgt[h][rows_image]) if len(rows_image) else np.zeros(0) for h in tgt}
    batch = _Batch(plan, logits, prob, tgt, _random_aucs(plan, prob), config)

    out: dict[tuple[str, str], ValidityRecord] = {}
    for meth, per_head in scores.items():
        note = (f"{CIRCULAR}: {meth} scores with the {config.baseline} perturbation this test uses"
                if meth in circular_methods else "")
        for h, s in per_head.items():
            out[(meth, h)] = _record(batch, meth, h, np.asarray(s, dtype=np.float64), note)
    logger.debug("validity: %d images, %d (method, head) pairs, %d distinct perturbed images (%d given)", N, len(out),
                 len(rows_image), int(given.sum()))
    return out
