"""The training loop: one epoch loop for head fitting on cached features and for fine-tuning.

Both ways of training build an :class:`EpochJob` (the trained module, its optimiser, a function
from a batch to the loss, and the batches of each epoch) and hand it to :func:`run_epochs`, which
owns everything else: device placement, automatic mixed precision on CUDA, validation, early
stopping, the per-epoch state file and ``resume``.

* :func:`fit_heads` (frozen backbone): batches of cached backbone output (one augmented view per
  image and epoch), only the heads train.
* :func:`fine_tune`: batches of images augmented on the fly by a ``torch.utils.data.DataLoader``
  with ``config.workers`` worker processes; backbone and heads train (BatchNorm statistics frozen).

Every random draw of an epoch derives from (``seed``, epoch[, image]) — the batch order, the view
drawn per image, the augmentation of each image — so batches do not depend on the number of
workers, and a run resumed from the state file of epoch ``e`` continues exactly as the
uninterrupted run would have (same weights, same result).

The loss is *task-balanced* (:func:`task_balanced_loss`); a SIAM model adds the concept loss
(:func:`concept_loss`) weighted by ``ConceptLoss.weight`` (SIAM eq. 3).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.model import LinearHeads, MultitaskModel, SiamHeads, freeze
from semcontrib.training.augmentation import AugmentConfig, augment_rgb
from semcontrib.training.features import Progress

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CONCEPT_TARGETS = ("presence", "area", "both")


# --------------------------------------------------------------------------- losses


def task_balanced_loss(logits: Mapping[str, torch.Tensor], targets: torch.Tensor,
                       tasks: Sequence[str]) -> torch.Tensor:
    """Mean over tasks of (cross-entropy averaged over labelled examples) / log(K_t).

    Parameters
    ----------
    logits : task -> float N x K_t.
    targets : int64 N x T class indices, ``-1`` where unlabelled.
    tasks : the T task names in the column order of ``targets``.

    Tasks with no labelled example in the batch are left out of the mean; if no task has one,
    the loss is a zero that still carries a gradient.
    """
    parts = []
    for j, t in enumerate(tasks):
        y = targets[:, j]
        mask = y >= 0
        if not bool(mask.any()):
            continue
        z = logits[t][mask].float()
        k = z.shape[1]
        parts.append(nn.functional.cross_entropy(z, y[mask]) / math.log(max(k, 2)))
    if not parts:
        return sum(v.sum() * 0.0 for v in logits.values())  # type: ignore[return-value]
    return torch.stack(parts).mean()


@dataclass(frozen=True)
class ConceptLoss:
    """The concept term of a SIAM model's loss: ``loss = task loss + weight * concept loss`` (SIAM eq. 3).

    Attributes
    ----------
    weight : weight of the concept loss (the task loss has weight 1; SIAM weights concepts above it).
    target : ``presence`` (binary cross-entropy of the presence logits against "the concept covers at
        least ``min_area`` of the image"), ``area`` (binary cross-entropy of the mean of
        ``sigmoid(a_k A_k + b_k)`` over the map against the concept's area fraction) or ``both``.
    min_area : area fraction from which a concept counts as present.
    """

    weight: float = 5.0
    target: str = "presence"
    min_area: float = 0.01

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"concept weight must be >= 0, got {self.weight}")
        if self.target not in CONCEPT_TARGETS:
            raise ValueError(f"concept target must be one of {CONCEPT_TARGETS}, got {self.target!r}")
        if not 0 < self.min_area < 1:
            raise ValueError(f"min_area must be in (0, 1), got {self.min_area}")


def concept_loss(heads: SiamHeads, presence_logits: torch.Tensor, maps: torch.Tensor, areas: torch.Tensor,
                 spec: ConceptLoss) -> torch.Tensor:
    """Multi-label concept loss of a batch.

    Parameters
    ----------
    presence_logits : float N x K (``SiamHeads.presence_logits``).
    maps : concept maps float N x K x h x w.
    areas : float N x K area fraction of each concept in each image (NaN rows: no regions known,
        left out).
    """
    ok = ~torch.isnan(areas).any(dim=1)
    if not bool(ok.any()):
        return presence_logits.sum() * 0.0
    parts = []
    a = areas[ok].float()
    if spec.target in ("presence", "both"):
        present = (a >= spec.min_area).float()
        parts.append(nn.functional.binary_cross_entropy_with_logits(presence_logits[ok].float(), present))
    if spec.target in ("area", "both"):
        scale = heads.presence_scale.view(1, -1, 1, 1)
        bias = heads.presence_bias.view(1, -1, 1, 1)
        predicted = torch.sigmoid(scale * maps[ok].float() + bias).mean(dim=(2, 3)).clamp(1e-6, 1 - 1e-6)
        target = a.clamp(0, 1)
        # written out: F.binary_cross_entropy refuses to run under CUDA autocast
        parts.append(-(target * predicted.log() + (1 - target) * (1 - predicted).log()).mean())
    return torch.stack(parts).mean()


# --------------------------------------------------------------------------- settings and results


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (the same defaults from Python and from ``semcontrib train``).

    Attributes
    ----------
    epochs : maximum epochs (``None``: 200 with a frozen backbone, 15 when fine-tuning). With a
        frozen backbone one epoch is one pass over the training images, each as one of its cached
        views drawn at random.
    batch_size : images per optimisation step (and per feature-extraction batch).
    lr : Adam learning rate of the heads.
    backbone_lr : Adam learning rate of the backbone when fine-tuning.
    weight_decay : Adam weight decay (L2) of the heads.
    patience : stop after this many epochs without a validation-loss improvement of ``min_delta``;
        the weights of the best epoch are restored.
    n_views : augmented views cached per image (frozen backbone).
    test_fraction, val_fraction : see :func:`~semcontrib.training.split.split_examples`.
    seed : seeds the split, the views, the initialisation and the batch order.
    augment : augmentation settings.
    device : ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
    workers : DataLoader worker processes that decode and augment images (feature extraction
        and fine-tuning; 0: in the main process). Results do not depend on it.
    amp : automatic mixed precision (float16 autocast and a gradient scaler) on CUDA; ignored on
        the CPU.
    """

    epochs: int | None = None
    batch_size: int = 32
    lr: float = 3e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 10
    min_delta: float = 1e-4
    n_views: int = 4
    test_fraction: float = 0.1
    val_fraction: float = 0.1
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "auto"
    workers: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("lr", "backbone_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.n_views < 0:
            raise ValueError(f"n_views must be >= 0, got {self.n_views}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    def max_epochs(self, frozen: bool) -> int:
        return self.epochs if self.epochs is not None else (200 if frozen else 15)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the interrupted one (not epochs, device, workers)."""
        d = self.to_dict()
        for k in ("epochs", "device", "workers", "amp"):
            d.pop(k)
        return d


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ``ValueError``."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class History:
    """Per epoch: mean training loss, validation loss (NaN without a validation set).

    ``resumed_at`` is the first epoch run after a resume (``None``: not resumed); ``device`` and
    ``amp`` say where and how it ran; ``seconds`` covers the epochs run in this process.
    """

    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    stopped_early: bool
    seconds: float
    resumed_at: int | None = None
    device: str = "cpu"
    amp: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingData:
    """What the loop learns from, besides the inputs.

    Attributes
    ----------
    targets : int64 N x T class indices, ``-1`` where unlabelled.
    tasks : the T task (head) names, in the column order of ``targets``.
    train_idx, val_idx : int indices into the N examples.
    concept_areas : float32 N x K area fraction of each concept per image (SIAM only; NaN rows where
        the region source failed), else ``None``.
    concept_loss : the concept term (SIAM only).
    """

    targets: np.ndarray
    tasks: Sequence[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    concept_areas: np.ndarray | None = None
    concept_loss: ConceptLoss | None = None

    def __post_init__(self) -> None:
        if self.targets.ndim != 2 or self.targets.shape[1] != len(self.tasks):
            raise ValueError(f"targets must be N x {len(self.tasks)}, got {self.targets.shape}")
        if self.concept_areas is not None and self.concept_areas.shape[0] != self.targets.shape[0]:
            raise ValueError(f"concept_areas must have {self.targets.shape[0]} rows, got {self.concept_areas.shape}")


@dataclass(frozen=True)
class StateFile:
    """Where the per-epoch training state goes, and whether to resume from it.

    Attributes
    ----------
    path : the state file (``torch.save`` of tensors and plain values; read with ``weights_only``).
    fingerprint : what must match to resume (settings, data hash, model); a mismatch is a ``ValueError``.
    resume : continue from ``path`` when it exists (else start afresh).
    """

    path: Path
    fingerprint: Mapping[str, Any]
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass
class EpochJob:
    """One training run for :func:`run_epochs`.

    Attributes
    ----------
    module : the module whose weights train, are checkpointed and restored at the best epoch.
    optimizer : its optimiser.
    loss : batch (already on the device) -> scalar loss.
    train_batches : epoch -> iterable of batches (tuples of tensors, first dimension the batch).
    val_batches : () -> iterable of validation batches, or ``None`` without a validation set.
    train_mode : puts the modules in training mode for an epoch.
    n_train : training examples per epoch (for progress).
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    loss: Callable[[tuple[torch.Tensor, ...]], torch.Tensor]
    train_batches: Callable[[int], Iterable[tuple[torch.Tensor, ...]]]
    val_batches: Callable[[], Iterable[tuple[torch.Tensor, ...]]] | None
    train_mode: Callable[[], None]
    n_train: int = 0


class _EarlyStopping:
    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.bad = 0
        self.state: dict[str, torch.Tensor] | None = None

    def step(self, epoch: int, loss: float, module: nn.Module) -> bool:
        """Record ``loss``; return True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad = loss, epoch, 0
            self.state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad, "state": self.state}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.best, self.best_epoch, self.bad = float(d["best"]), int(d["best_epoch"]), int(d["bad"])
        self.state = d["state"]


# --------------------------------------------------------------------------- the state file


def _save_state(path: Path, payload: dict[str, Any]) -> None:
    """Atomic ``torch.save`` (temporary file + rename): a kill leaves the previous epoch's state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_state(state: StateFile) -> dict[str, Any] | None:
    if not (state.resume and state.path.is_file()):
        return None
    payload = torch.load(str(state.path), map_location="cpu", weights_only=True)
    if payload.get("fingerprint") != _plain(state.fingerprint):
        raise ValueError(f"cannot resume from {state.path}: it was written by a run with other settings, "
                         "data or model; remove it or train without --resume")
    return payload


def _plain(x: Any) -> Any:
    """JSON-like copy (tuples -> lists) so fingerprints compare equal after a save and a load."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------- the loop


def run_epochs(job: EpochJob, config: TrainConfig, frozen: bool, state: StateFile | None = None,
               progress: Progress | None = None) -> History:
    """Train ``job`` for at most ``config.max_epochs(frozen)`` epochs with early stopping.

    After every epoch the state (weights, optimiser, gradient scaler, early-stopping record,
    losses) is written to ``state.path``; with ``state.resume`` a run continues after the last
    epoch stored there. On return ``job.module`` holds the weights of the epoch with the lowest
    validation loss (the last epoch without a validation set), in evaluation mode, gradients off.
    """
    device = next(job.module.parameters()).device
    amp = bool(config.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    stopper = _EarlyStopping(config.patience, config.min_delta)
    max_epochs = config.max_epochs(frozen)
    train_losses: list[float] = []
    val_losses: list[float] = []
    stopped = False
    start = 0
    resumed_at: int | None = None
    loaded = _load_state(state) if state is not None else None
    if loaded is not None:
        job.module.load_state_dict(loaded["module"])
        job.optimizer.load_state_dict(loaded["optimizer"])
        scaler.load_state_dict(loaded["scaler"])
        stopper.load_state_dict(loaded["stopper"])
        train_losses, val_losses = list(loaded["train_loss"]), list(loaded["val_loss"])
        stopped = bool(loaded["stopped"])
        start = resumed_at = int(loaded["epoch"]) + 1
        logger.info("resuming from %s after epoch %d", state.path if state else "", start)
    t0 = time.perf_counter()
    for epoch in range(start, max_epochs):
        if stopped:
            break
        job.train_mode()
        total, count = 0.0, 0
        for batch in job.train_batches(epoch):
            batch = tuple(b.to(device, non_blocking=True) for b in batch)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                loss = job.loss(batch)
            job.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(job.optimizer)
            scaler.update()
            n = int(batch[0].shape[0])
            total += float(loss.detach()) * n
            count += n
            if progress and not frozen:
                progress("batches", count, job.n_train)
        train_losses.append(total / max(count, 1))
        if job.val_batches is not None:
            vl = _validation_loss(job, device, amp)
            val_losses.append(vl)
            stopped = stopper.step(epoch, vl, job.module)
        else:
            val_losses.append(float("nan"))
        if state is not None:
            _save_state(state.path, {
                "epoch": epoch, "fingerprint": _plain(state.fingerprint),
                "module": {k: v.detach().cpu() for k, v in job.module.state_dict().items()},
                "optimizer": job.optimizer.state_dict(), "scaler": scaler.state_dict(),
                "stopper": stopper.state_dict(), "train_loss": train_losses, "val_loss": val_losses,
                "stopped": stopped,
            })
        if progress:
            progress("epochs", epoch + 1, max_epochs)
    if stopper.state is not None:
        job.module.load_state_dict(stopper.state)
    best = stopper.best_epoch if stopper.best_epoch >= 0 else len(train_losses) - 1
    freeze(job.module)
    return History(train_losses, val_losses, best, stopped, time.perf_counter() - t0, resumed_at,
                   str(device), amp)


def _validation_loss(job: EpochJob, device: torch.device, amp: bool) -> float:
    assert job.val_batches is not None
    job.module.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        for batch in job.val_batches():
            batch = tuple(b.to(device, non_blocking=True) for b in batch)
            n = int(batch[0].shape[0])
            total += float(job.loss(batch)) * n
            count += n
    return total / max(count, 1)


# --------------------------------------------------------------------------- the two jobs


def reset_heads(model: MultitaskModel, seed: int) -> None:
    """Seeded re-initialisation of the trainable heads (linear: uniform weights, zero biases)."""
    heads = model.heads
    if isinstance(heads, SiamHeads):
        heads.reset_parameters(seed)
        return
    layers = getattr(heads, "layers", None)
    if not isinstance(heads, LinearHeads) and not isinstance(layers, nn.ModuleDict):
        raise TypeError("training needs a model with linear or SIAM heads (semcontrib.model.LinearHeads, "
                        "SiamHeads)")
    assert isinstance(layers, nn.ModuleDict)
    gen = torch.Generator().manual_seed(seed)
    for layer in layers.values():
        assert isinstance(layer, nn.Linear)
        bound = 1.0 / math.sqrt(layer.in_features)
        with torch.no_grad():
            layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=gen).to(
                layer.weight.device))
            layer.bias.zero_()


def _loss_fn(heads: nn.Module, body: nn.Module | None, data: TrainingData
             ) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
    """batch (x, y[, areas]) -> task-balanced loss (+ weighted concept loss for SIAM heads)."""
    tasks = list(data.tasks)
    spec = data.concept_loss or ConceptLoss()

    def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        feats = body(x) if body is not None else x
        if isinstance(heads, SiamHeads):
            logits, presence, maps = heads.forward_train(feats)
            task = task_balanced_loss(logits, y, tasks)
            if len(batch) > 2 and spec.weight > 0:
                return task + spec.weight * concept_loss(heads, presence, maps, batch[2], spec)
            return task
        return task_balanced_loss(heads(feats), y, tasks)

    return loss


def _epoch_order(seed: int, tag: int, epoch: int, idx: np.ndarray) -> np.ndarray:
    return np.random.default_rng([seed, tag, epoch]).permutation(np.asarray(idx))


def _tensors(data: TrainingData, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
    y = torch.from_numpy(data.targets[rows])
    if data.concept_areas is None:
        return (y,)
    return (y, torch.from_numpy(np.ascontiguousarray(data.concept_areas[rows], dtype=np.float32)))


def fit_heads(model: MultitaskModel, features: np.ndarray, data: TrainingData, config: TrainConfig | None = None,
              progress: Progress | None = None, state: StateFile | None = None) -> History:
    """Train the heads on cached backbone output (the backbone stays frozen).

    Parameters
    ----------
    features : float32 N x (1 + V) x F (or N x (1 + V) x F x h x w for SIAM heads) from
        :func:`~semcontrib.training.features.extract_features`; training draws one of the
        augmented views 1..V (or view 0 when V = 0) per image and epoch; validation uses view 0.
    data : targets, tasks, split indices (and concept areas for SIAM heads).
    state : the per-epoch state file (and whether to resume from it).

    The heads are re-initialised from ``config.seed`` and trained on ``config.device``; on return
    they hold the weights of the epoch with the lowest validation loss.
    """
    cfg = config or TrainConfig()
    if features.ndim < 3 or features.shape[0] != data.targets.shape[0]:
        raise ValueError(f"features must be N x (1+V) x F matching targets N x T; got {features.shape} "
                         f"and {data.targets.shape}")
    if len(data.train_idx) == 0:
        raise ValueError("no training examples")
    device = resolve_device(cfg.device)
    heads = model.heads
    reset_heads(model, cfg.seed)
    heads.to(device)
    for p in heads.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_aug = features.shape[1] - 1

    def train_batches(epoch: int) -> Iterable[tuple[torch.Tensor, ...]]:
        order = _epoch_order(cfg.seed, 1, epoch, data.train_idx)
        rng = np.random.default_rng([cfg.seed, 1, epoch, 1])
        views = rng.integers(1, n_aug + 1, size=len(order)) if n_aug else np.zeros(len(order), dtype=np.int64)
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            x = torch.from_numpy(np.ascontiguousarray(features[idx, views[s:s + cfg.batch_size]]))
            yield (x, *_tensors(data, idx))

    def val_batches() -> Iterable[tuple[torch.Tensor, ...]]:
        for s in range(0, len(data.val_idx), cfg.batch_size):
            idx = np.asarray(data.val_idx[s:s + cfg.batch_size])
            yield (torch.from_numpy(np.ascontiguousarray(features[idx, 0])), *_tensors(data, idx))

    def train_mode() -> None:
        heads.train()

    job = EpochJob(heads, opt, _loss_fn(heads, None, data), train_batches,
                   val_batches if len(data.val_idx) else None, train_mode, len(data.train_idx))
    return run_epochs(job, cfg, True, state, progress)


def load_working_images(paths: Sequence[Path], size: int) -> tuple[list[np.ndarray | None], dict[int, str]]:
    """Each image squashed to ``size`` x ``size`` (uint8), kept in memory for fine-tuning."""
    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    out: list[np.ndarray | None] = []
    reasons: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            out.append(resize_rgb(load_rgb(p).rgb, size))
        except ImageLoadError as exc:
            out.append(None)
            reasons[i] = exc.reason
    return out, reasons


class AugmentedImages(torch.utils.data.Dataset):
    """Items ``(epoch, index)`` -> (uint8 S x S x 3 view, targets int64 T[, areas float32 K]).

    The view of image ``i`` in epoch ``e`` is drawn from ``default_rng([seed, 2, e, i])``, so it is
    the same in any worker; ``epoch = -1`` gives the plain squashed image (validation).
    """

    def __init__(self, images: Sequence[np.ndarray], data: TrainingData, size: int, seed: int,
                 augment: AugmentConfig) -> None:
        self.images, self.data, self.size, self.seed, self.augment = images, data, size, seed, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[np.ndarray, ...]:
        from semcontrib.imageio import resize_rgb

        epoch, i = item
        if epoch < 0:
            view = resize_rgb(self.images[i], self.size)
        else:
            view = augment_rgb(self.images[i], self.size, np.random.default_rng([self.seed, 2, epoch, i]),
                               self.augment)
        rest = [self.data.targets[i]]
        if self.data.concept_areas is not None:
            rest.append(self.data.concept_areas[i].astype(np.float32))
        return (view, *rest)


def _collate(items: list[tuple[np.ndarray, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.stack([it[j] for it in items])) for j in range(len(items[0])))


def fine_tune(model: MultitaskModel, images: Sequence[np.ndarray], data: TrainingData,
              config: TrainConfig | None = None, progress: Progress | None = None,
              state: StateFile | None = None) -> History:
    """Train backbone and heads together, augmenting every batch on the fly in DataLoader workers.

    Parameters
    ----------
    images : N uint8 images (any size; each view is cropped from it and squashed to the input size).
    data : targets, tasks, split indices (and concept areas for SIAM heads).
    state : the per-epoch state file (and whether to resume from it).

    BatchNorm layers keep their ImageNet statistics (eval mode): batches on a CPU are small.
    Runs on ``config.device`` with ``config.workers`` DataLoader workers and, on CUDA, mixed precision.
    """
    cfg = config or TrainConfig()
    if len(data.train_idx) == 0:
        raise ValueError("no training examples")
    device = resolve_device(cfg.device)
    reset_heads(model, cfg.seed)
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam([
        {"params": model.backbone.parameters(), "lr": cfg.backbone_lr},
        {"params": model.heads.parameters(), "lr": cfg.lr, "weight_decay": cfg.weight_decay},
    ])
    dataset = AugmentedImages(images, data, model.input_size, cfg.seed, cfg.augment)
    mean = torch.tensor(model.spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std, device=device).view(1, 3, 1, 1)

    def loader(batches: list[list[tuple[int, int]]]) -> Iterable[tuple[torch.Tensor, ...]]:
        dl = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers,
                                         collate_fn=_collate, pin_memory=device.type == "cuda")
        for rgb, *rest in dl:
            x = rgb.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            yield ((x - mean) / std, *rest)

    def train_batches(epoch: int) -> Iterable[tuple[torch.Tensor, ...]]:
        order = _epoch_order(cfg.seed, 2, epoch, data.train_idx).tolist()
        return loader([[(epoch, i) for i in order[s:s + cfg.batch_size]]
                       for s in range(0, len(order), cfg.batch_size)])

    def val_batches() -> Iterable[tuple[torch.Tensor, ...]]:
        idx = np.asarray(data.val_idx).tolist()
        return loader([[(-1, i) for i in idx[s:s + cfg.batch_size]] for s in range(0, len(idx), cfg.batch_size)])

    def train_mode() -> None:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    job = EpochJob(model, opt, _loss_fn(model.heads, model.backbone, data), train_batches,
                   val_batches if len(data.val_idx) else None, train_mode, len(data.train_idx))
    return run_epochs(job, cfg, False, state, progress)

