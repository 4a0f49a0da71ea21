"""Predictions of every head, and the class evidence (CAMs of ImageNet class groups) from the same pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from semcontrib.model.compute import full_precision
from semcontrib.model.multitask import GroupedImagenetHeads, MultitaskModel


@dataclass(frozen=True)
class Predictions:
    """Per head: probabilities float N x n_classes (softmax of the logits) and logits."""

    logits: dict[str, np.ndarray] = field(default_factory=dict)

    def probabilities(self, head: str) -> np.ndarray:
        z = self.logits[head].astype(np.float64)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


@torch.no_grad()
def predict(model: MultitaskModel, tensor: torch.Tensor) -> Predictions:
    """Logits of every head for a float NCHW batch."""
    out = model(tensor)
    return Predictions({k: v.float().cpu().numpy() for k, v in out.items()})


@torch.no_grad()
def class_evidence(model: MultitaskModel, tensor: torch.Tensor,
                   groups: Mapping[str, Sequence[int]]) -> np.ndarray | None:
    """Class activation maps of ImageNet class groups, float32 N x G x h x w in [0, 1].

    Only for models with an ImageNet head (``GroupedImagenetHeads``); ``None`` otherwise. For group
    ``g``: ``sum_{c in g} p_c * CAM_c`` with ``CAM_c = w_c . A`` on the last feature map ``A`` and
    ``p_c`` the class probabilities, clipped at 0 and divided by the per-image maximum over groups.
    """
    return predict_with_evidence(model, tensor, groups)[1]


@torch.no_grad()
def predict_with_evidence(model: MultitaskModel, tensor: torch.Tensor, groups: Mapping[str, Sequence[int]]
                          ) -> tuple[Predictions, np.ndarray | None]:
    """Logits of every head and :func:`class_evidence`, from one forward pass."""
    feats = model.backbone[:-1](tensor)  # N x F x h x w
    with full_precision(tensor):  # heads and evidence in float32 (see MultitaskModel.head_logits)
        # (a wrapped model's backbone may hand its heads something other than one tensor)
        return _logits_and_evidence(model, feats.float() if isinstance(feats, torch.Tensor) else feats, groups)


def _logits_and_evidence(model: MultitaskModel, feats: torch.Tensor, groups: Mapping[str, Sequence[int]]
                         ) -> tuple[Predictions, np.ndarray | None]:
    pooled = model.backbone[-1](feats)
    out = model.heads(pooled)
    preds = Predictions({k: v.float().cpu().numpy() for k, v in out.items()})
    if not isinstance(model.heads, GroupedImagenetHeads):
        return preds, None
    p = torch.softmax(out["imagenet"] if "imagenet" in out else model.heads.fc(pooled), dim=1)
    w = model.heads.fc.weight  # C x F
    maps = []
    for members in groups.values():
        idx = torch.tensor(list(members), dtype=torch.long, device=feats.device)
        weight = (p[:, idx, None] * w[idx][None]).sum(1)  # N x F
        maps.append(torch.einsum("nf,nfhw->nhw", weight, feats))
    cams = torch.stack(maps, dim=1).clamp_min(0)
    peak = cams.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return preds, (cams / peak[:, None, None, None]).float().cpu().numpy()
