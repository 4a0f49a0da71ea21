"""Prediction for training and evaluation: head logits of image files, or of cached backbone features."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semcontrib.model import MultitaskModel, SiamModel
from semcontrib.training.features import Progress, model_device, to_tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathPredictions:
    """Logits of image files and what the forward passes cost.

    Attributes
    ----------
    logits : head -> float32 N x K (rows of unreadable images are NaN).
    reasons : index -> why an image could not be read.
    forward_seconds : wall time of the model's forward passes alone (no decoding, after one untimed
        warm-up pass), synchronised on CUDA.
    n_images : images that went through the model.
    device : the device they ran on.
    """

    logits: dict[str, np.ndarray]
    reasons: dict[int, str]
    forward_seconds: float
    n_images: int
    device: str

    @property
    def ms_per_image(self) -> float:
        """Inference milliseconds per image (forward pass only; NaN without images)."""
        return 1000.0 * self.forward_seconds / self.n_images if self.n_images else float("nan")


@torch.no_grad()
def predict_paths_timed(model: MultitaskModel, paths: Sequence[Path], batch_size: int = 32,
                        progress: Progress | None = None) -> PathPredictions:
    """Logits of every head for image files, through the full model on the model's device."""
    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    device = model_device(model)
    out = {h.name: np.full((len(paths), len(h.classes)), np.nan, dtype=np.float32) for h in model.head_specs}
    reasons: dict[int, str] = {}
    pending: list[tuple[int, np.ndarray]] = []
    seconds = 0.0
    n_done = 0
    if paths:  # warm-up (lazy kernel initialisation) outside the timed passes
        model(torch.zeros(1, 3, model.input_size, model.input_size, device=device))

    def flush() -> None:
        nonlocal seconds, n_done
        if not pending:
            return
        batch = np.stack([v for _, v in pending])
        x = to_tensor(model, batch, device)
        t0 = time.perf_counter()
        logits = model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        n_done += len(pending)
        rows = [i for i, _ in pending]
        for name, z in logits.items():
            out[name][rows] = z.float().cpu().numpy()
        pending.clear()

    for i, p in enumerate(paths):
        try:
            pending.append((i, resize_rgb(load_rgb(p).rgb, model.input_size)))
        except ImageLoadError as exc:
            reasons[i] = exc.reason
        if len(pending) >= batch_size:
            flush()
        if progress:
            progress("predict", i + 1, len(paths))
    flush()
    return PathPredictions(out, reasons, seconds, n_done, str(device))


def predict_paths(model: MultitaskModel, paths: Sequence[Path], batch_size: int = 32,
                  progress: Progress | None = None) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Logits of every head for image files, through the full model.

    Returns
    -------
    logits : head -> float32 N x K (rows of unreadable images are NaN).
    reasons : index -> why an image could not be read.
    """
    p = predict_paths_timed(model, paths, batch_size, progress)
    return p.logits, p.reasons


@torch.no_grad()
def predict_features(model: MultitaskModel, features: np.ndarray) -> dict[str, np.ndarray]:
    """Head logits from cached backbone output (float32 N x F, or N x F x h x w for SIAM): head -> N x K."""
    model.heads.eval()
    x = torch.from_numpy(np.ascontiguousarray(features)).to(model_device(model.heads))
    out = model.heads(x)
    return {k: v.float().cpu().numpy() for k, v in out.items()}


@torch.no_grad()
def predict_concept_presence(model: SiamModel, paths: Sequence[Path], batch_size: int = 32) -> np.ndarray:
    """Concept presence probabilities of a SIAM model for image files: float32 N x K (NaN rows: unreadable)."""
    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    model.eval()
    device = model_device(model)
    out = np.full((len(paths), len(model.concepts)), np.nan, dtype=np.float32)
    for s in range(0, len(paths), batch_size):
        rows, views = [], []
        for i in range(s, min(s + batch_size, len(paths))):
            try:
                views.append(resize_rgb(load_rgb(paths[i]).rgb, model.input_size))
                rows.append(i)
            except ImageLoadError:
                continue
        if rows:
            maps = model.concept_maps(to_tensor(model, np.stack(views), device))
            out[rows] = torch.sigmoid(model.heads.presence_logits(maps)).float().cpu().numpy()
    return out
