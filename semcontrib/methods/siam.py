"""The exact concept contributions of a SIAM model, a region method (``siam``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.methods.base import RegionResult
from semcontrib.methods.registry import register
from semcontrib.model import MultitaskModel, full_precision


@register
class SiamContributions:
    """The exact concept contributions of a SIAM model (``semcontrib.model.SiamModel``), as regions.

    For image ``n`` and the target class ``t`` of a head, ``scores[n, k]`` is the contribution of the
    concept named ``vocabulary[k]`` to the target logit, ``w_{t,k} * sum_xy T_k(x, y) A_k(x, y)``
    (see :class:`semcontrib.model.SiamHeads`); it does not depend on the region label map. The
    display map is the per-pixel contribution summed over concepts, ``sum_k w_{t,k} T_k A_k``
    (h x w), upsampled bilinearly to S x S. ``delta`` is ``logit - bias - sum_k scores`` (zero up to
    rounding). A region-level method: ``level = "region"``.
    """

    name = "siam"
    level = "region"
    runs_in_bf16 = True  # the backbone; the concept layer and read-out run in float32

    @property
    def params(self) -> dict[str, Any]:
        return {"upsample": "bilinear"}

    def notes(self, model: MultitaskModel) -> str:
        return ("exact per-concept contributions of a SIAM model (template-weighted concept maps times "
                "the head weight); independent of the region map")

    def attribute_regions(self, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                          labels: np.ndarray, vocabulary: tuple[str, ...]) -> dict[str, RegionResult]:
        from semcontrib.model import SiamModel

        if not isinstance(model, SiamModel):
            raise ValueError(f"method 'siam' needs a SIAM model (semcontrib train --architecture siam); "
                             f"got {type(model).__name__}")
        if tuple(model.concepts) != tuple(vocabulary):
            raise ValueError(f"method 'siam': the model's concept vocabulary {list(model.concepts)} differs "
                             f"from the region source's vocabulary {list(vocabulary)}; analyse with the "
                             "region source the model was trained with")
        size = tuple(tensor.shape[-2:])
        with torch.no_grad():
            maps = model.concept_maps(tensor)  # float32; the read-out below runs in float32 too
        with torch.no_grad(), full_precision(maps):
            contributions = model.heads.contributions(maps)
            logits = model.heads.logits_from_maps(maps)
            out: dict[str, RegionResult] = {}
            for head, target in targets.items():
                t = target.to(maps.device).long()
                rows = torch.arange(len(t), device=maps.device)
                scores = contributions[head][rows, t].double()  # N x K
                logit = logits[head][rows, t].double()
                delta = logit - model.heads.bias[head][t].double() - scores.sum(dim=1)
                pixel = model.heads.pixel_contributions(maps, head, t)[:, None]
                display = nn.functional.interpolate(pixel, size=size, mode="bilinear", align_corners=False)[:, 0]
                out[head] = RegionResult(scores.cpu().numpy(), display.float().cpu().numpy(),
                                         delta.cpu().numpy())
        return out
