"""The training loop: head fitting on cached features and fine-tuning, both through one epoch loop.

Both ways of training build an :class:`~semcontrib.training.config.EpochJob` (the trained module, its
optimiser, a function from a batch to the loss, and the batches of each epoch) and hand it to
:func:`~semcontrib.training.epochs.run_epochs`, which owns everything else: device placement, automatic
mixed precision on CUDA, validation, early stopping, the per-epoch state file and ``resume``.

* :func:`fit_heads` (frozen backbone): batches of cached backbone output (one augmented view per
  image and epoch), only the heads train.
* :func:`fine_tune`: batches of images augmented on the fly by a ``torch.utils.data.DataLoader``
  with ``config.workers`` worker processes; backbone and heads train (BatchNorm statistics frozen).

Every random draw of an epoch derives from (``seed``, epoch[, image]) — the batch order, the view
drawn per image, the augmentation of each image — so batches do not depend on the number of
workers, and a run resumed from the state file of epoch ``e`` continues exactly as the
uninterrupted run would have (same weights, same result).

The loss is *task-balanced* (:func:`~semcontrib.training.losses.task_balanced_loss`); a SIAM model adds
the concept loss (:func:`~semcontrib.training.losses.concept_loss`) weighted by ``ConceptLoss.weight``
(SIAM eq. 3).

The settings and records live in :mod:`semcontrib.training.config`, the losses in
:mod:`semcontrib.training.losses` and the epoch loop in :mod:`semcontrib.training.epochs`; this module
re-exports their names, so ``semcontrib.training.loop`` imports as before they moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from semcontrib.model import LinearHeads, MultitaskModel, SiamHeads
from semcontrib.training.augmentation import AugmentConfig, augment_rgb
from semcontrib.training.config import (
    DEVICES,
    EpochJob,
    History,
    StateFile,
    TrainConfig,
    TrainingData,
    resolve_device,
)
from semcontrib.training.epochs import run_epochs
from semcontrib.training.features import Progress
from semcontrib.training.losses import CONCEPT_TARGETS, ConceptLoss, concept_loss, task_balanced_loss

__all__ = [
    "CONCEPT_TARGETS", "DEVICES", "AugmentedImages", "ConceptLoss", "EpochJob", "History", "StateFile",
    "TrainConfig", "TrainingData", "concept_loss", "fine_tune", "fit_heads", "load_working_images",
    "reset_heads", "resolve_device", "run_epochs", "task_balanced_loss",
]


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
