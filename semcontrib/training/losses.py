"""The training losses: the task-balanced loss of every model and the concept loss of a SIAM model.

The loss is *task-balanced* (:func:`task_balanced_loss`); a SIAM model adds the concept loss
(:func:`concept_loss`) weighted by ``ConceptLoss.weight`` (SIAM eq. 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from semcontrib.model import SiamHeads

CONCEPT_TARGETS = ("presence", "area", "both")


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
