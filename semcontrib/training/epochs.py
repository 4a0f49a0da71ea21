"""The ONE epoch loop (:func:`run_epochs`) of head fitting and fine-tuning.

It owns everything but the batches and the loss: device placement, automatic mixed precision on
CUDA, validation, early stopping (the best epoch's weights are restored), the per-epoch state file
(written atomically) and ``resume`` from it.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semcontrib.model import freeze
from semcontrib.training.config import EpochJob, History, StateFile, TrainConfig
from semcontrib.training.features import Progress

logger = logging.getLogger(__name__)


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


@dataclass
class _Record:
    """The losses so far, whether early stopping fired, and the first epoch left to run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    stopped: bool = False
    start: int = 0


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
    record = _resume(job, state, scaler, stopper)
    t0 = time.perf_counter()
    for epoch in range(record.start, max_epochs):
        if record.stopped:
            break
        record.train_loss.append(_train_epoch(job, epoch, scaler, None if frozen else progress))
        if job.val_batches is not None:
            vl = _validation_loss(job, device, amp)
            record.val_loss.append(vl)
            record.stopped = stopper.step(epoch, vl, job.module)
        else:
            record.val_loss.append(float("nan"))
        if state is not None:
            _save_state(state.path, {
                "epoch": epoch, "fingerprint": _plain(state.fingerprint),
                "module": {k: v.detach().cpu() for k, v in job.module.state_dict().items()},
                "optimizer": job.optimizer.state_dict(), "scaler": scaler.state_dict(),
                "stopper": stopper.state_dict(), "train_loss": record.train_loss, "val_loss": record.val_loss,
                "stopped": record.stopped,
            })
        if progress:
            progress("epochs", epoch + 1, max_epochs)
    if stopper.state is not None:
        job.module.load_state_dict(stopper.state)
    best = stopper.best_epoch if stopper.best_epoch >= 0 else len(record.train_loss) - 1
    freeze(job.module)
    return History(record.train_loss, record.val_loss, best, record.stopped, time.perf_counter() - t0,
                   record.start or None, str(device), amp)  # start >= 1 after a resume


def _resume(job: EpochJob, state: StateFile | None, scaler: torch.amp.GradScaler,
            stopper: _EarlyStopping) -> _Record:
    """Load the stored state into the job, scaler and stopper when resuming; the record to go on from."""
    loaded = _load_state(state) if state is not None else None
    if loaded is None:
        return _Record()
    job.module.load_state_dict(loaded["module"])
    job.optimizer.load_state_dict(loaded["optimizer"])
    scaler.load_state_dict(loaded["scaler"])
    stopper.load_state_dict(loaded["stopper"])
    record = _Record(list(loaded["train_loss"]), list(loaded["val_loss"]), bool(loaded["stopped"]),
                     int(loaded["epoch"]) + 1)
    logger.info("resuming from %s after epoch %d", state.path if state else "", record.start)
    return record


def _train_epoch(job: EpochJob, epoch: int, scaler: torch.amp.GradScaler, progress: Progress | None) -> float:
    """One pass over the epoch's training batches; the mean training loss per example."""
    device = next(job.module.parameters()).device
    amp = scaler.is_enabled()
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
        if progress:
            progress("batches", count, job.n_train)
    return total / max(count, 1)


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
