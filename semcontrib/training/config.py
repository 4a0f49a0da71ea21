"""What a training run is given and what it returns: settings, data, state file, one job, its history."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.training.augmentation import AugmentConfig
from semcontrib.training.losses import ConceptLoss

DEVICES = ("auto", "cpu", "cuda")


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
