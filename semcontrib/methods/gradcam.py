"""Signed Grad-CAM (captum ``LayerGradCam``), a pixel method: the backbone is split at the Grad-CAM
layer's stage; the prefix runs once, its output is repeated once per head, and a single
``LayerGradCam`` call over the suffix returns every head's map. Not ReLU-ed, not rescaled: sign and
magnitude are data. Upsampled bilinearly to the input size."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.methods.base import AttributionResult, select
from semcontrib.methods.registry import register
from semcontrib.model import HeadAdapter, MultitaskModel


@register
class GradCAM:
    """Signed Grad-CAM (captum ``LayerGradCam``) at a stage of the backbone.

    Parameters
    ----------
    layer : a stage name of the backbone (``model.backbone`` children, e.g. ``layer4`` or ``head``)
        or a dotted path inside one (``layer4.1.conv2``); default: the backbone's last conv block.

    Runs under bf16 autocast (``runs_in_bf16``): the layer's activations and gradients are bfloat16,
    the returned maps float32 (signed_l1 region vectors over a 3x3 grid within ~5e-3 of fp32 on
    EfficientNet-Lite0 and four bundled photographs).
    """

    name = "gradcam"
    level = "pixel"
    runs_in_bf16 = True

    def __init__(self, layer: str | None = None) -> None:
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError("gradcam layer must be a non-empty stage name")
        self.layer = layer

    @property
    def params(self) -> dict[str, Any]:
        return {"layer": self.layer, "relu": False, "upsample": "bilinear"}

    def notes(self, model: MultitaskModel) -> dict[str, str]:
        return {"layer": self.resolve_layer_name(model)}

    def resolve_layer_name(self, model: MultitaskModel) -> str:
        return self.layer or model.spec.cam_layer

    def _split(self, model: MultitaskModel) -> tuple[nn.Module, nn.Module, nn.Module]:
        name = self.resolve_layer_name(model)
        stage, _, sub = name.partition(".")
        k = model.stage_index(stage)
        if stage == "pool":
            raise ValueError("the Grad-CAM layer must be a convolutional stage, not 'pool'")
        layer = model.backbone[k] if not sub else model.backbone[k].get_submodule(sub)
        return model.backbone[:k], model.backbone[k:], layer

    def attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                        targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]:
        from captum.attr import LayerAttribution, LayerGradCam

        prefix, suffix, layer = self._split(model)
        heads = list(targets)
        B = tensor.shape[0]
        with torch.no_grad():
            a = prefix(tensor)
        a_rep = a.repeat(len(heads), *([1] * (a.dim() - 1)))

        def forward(inp: torch.Tensor) -> torch.Tensor:
            logits = model.head_logits(suffix(inp))
            picked = [select(logits[h][i * B:(i + 1) * B], targets[h]) for i, h in enumerate(heads)]
            return torch.cat(picked).unsqueeze(1)

        with torch.enable_grad():
            attr = LayerGradCam(forward, layer).attribute(a_rep, target=0, relu_attributions=False)
        size = tuple(tensor.shape[-2:])
        up = LayerAttribution.interpolate(attr.detach(), size, interpolate_mode="bilinear")[:, 0]
        maps = up.float().cpu().numpy().reshape(len(heads), B, *size)
        return {h: AttributionResult(maps[i]) for i, h in enumerate(heads)}

    def attribute_naive(self, model: MultitaskModel, tensor: torch.Tensor, head: str, target: int) -> np.ndarray:
        from captum.attr import LayerAttribution, LayerGradCam

        name = self.resolve_layer_name(model)
        stage, _, sub = name.partition(".")
        layer = model.backbone[model.stage_index(stage)]
        if sub:
            layer = layer.get_submodule(sub)
        adapter = HeadAdapter(model, head)
        with torch.enable_grad():
            attr = LayerGradCam(adapter, layer).attribute(tensor, target=target, relu_attributions=False)
        up = LayerAttribution.interpolate(attr.detach(), tuple(tensor.shape[-2:]), interpolate_mode="bilinear")
        return up[0, 0].float().cpu().numpy()
