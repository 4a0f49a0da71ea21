"""Layer-wise relevance propagation (zennit), a pixel method: one forward through the canonized,
hooked model; one backward per head, each seeded with the head's target logit (so relevance sums to
the logit, up to what biases absorb)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from semcontrib.methods.base import AttributionResult
from semcontrib.methods.registry import register
from semcontrib.model import HeadAdapter, MultitaskModel, full_precision
from semcontrib.settings import DEFAULT_LRP_COMPOSITE, LRP_COMPOSITES


@register
class LRP:
    """Layer-wise relevance propagation with zennit.

    Parameters
    ----------
    composite : ``epsilon`` (default, as the CatViz paper: LRP-epsilon on every conv and dense
        layer, Pass on activations, Norm on sums and average pools) or a zennit composite name
        (``epsilon_plus``, ``epsilon_gamma_box``, ...).
    epsilon : the epsilon of the LRP-epsilon rule.

    Notes
    -----
    LRP always runs in float32, also inside a bf16 :func:`semcontrib.model.compute_context`
    (autocast is turned off for it; ``runs_in_bf16 = False``): the rules divide by each layer's
    stabilised output (``z + epsilon sign(z)``), which bfloat16's 8 significant bits do not carry.
    Measured on EfficientNet-Lite0 and four bundled photographs, 3x3 grid, signed_l1 region vectors
    against fp32 (``benchmarks/bench_precision.py`` and the same maps compared per pixel):
    ``epsilon_gamma_box`` moved them by up to 0.057 (maps: relative L1 error up to 34 %, correlation
    0.92 on two of the four photographs), ``epsilon`` by up to 0.28 (correlation down to 0.22).
    """

    name = "lrp"
    level = "pixel"
    runs_in_bf16 = False

    def __init__(self, composite: str = DEFAULT_LRP_COMPOSITE, epsilon: float = 1e-6) -> None:
        if composite not in LRP_COMPOSITES:
            raise ValueError(f"unknown LRP composite {composite!r}; choose from {LRP_COMPOSITES}")
        if not (isinstance(epsilon, (int, float)) and epsilon > 0):
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        self.composite = composite
        self.epsilon = float(epsilon)

    @property
    def params(self) -> dict[str, Any]:
        return {"composite": self.composite, "epsilon": self.epsilon}

    def notes(self, model: MultitaskModel) -> dict[str, str]:
        return {"lrp_support": model.spec.lrp_support, "lrp_note": model.spec.lrp_note}

    def make_composite(self, model: MultitaskModel, prefix: str = "backbone.") -> Any:
        from zennit.composites import COMPOSITES, LayerMapComposite, layer_map_base
        from zennit.rules import Epsilon
        from zennit.types import Convolution, Linear

        canonizers = model.canonizers() if prefix == "backbone." else prefixed_canonizers(model, prefix)
        if self.composite == "epsilon":
            layer_map = layer_map_base() + [(Convolution, Epsilon(epsilon=self.epsilon)),
                                            (Linear, Epsilon(epsilon=self.epsilon))]
            return LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
        if self.composite == "epsilon_gamma_box":
            device = next(model.parameters()).device  # zennit's ZBox bounds must live beside the model
            mean = torch.tensor(model.spec.mean, device=device).view(1, 3, 1, 1)
            std = torch.tensor(model.spec.std, device=device).view(1, 3, 1, 1)
            size = model.input_size
            low = ((0 - mean) / std).expand(1, 3, size, size)
            high = ((1 - mean) / std).expand(1, 3, size, size)
            return COMPOSITES[self.composite](low=low, high=high, epsilon=self.epsilon, canonizers=canonizers)
        return COMPOSITES[self.composite](epsilon=self.epsilon, canonizers=canonizers)

    def attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                        targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]:
        with full_precision(tensor):  # see the class notes: bf16 relevance is unreliable
            return self._attribute_batch(model, tensor, targets)

    def _attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                         targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]:
        composite = self.make_composite(model)
        x = tensor.detach().clone().requires_grad_(True)
        heads = list(targets)
        out: dict[str, AttributionResult] = {}
        with torch.enable_grad(), composite.context(model) as modified:
            logits = modified(x)
            for i, head in enumerate(heads):
                z = logits[head]
                t = targets[head].view(-1, 1)
                seed = torch.zeros_like(z).scatter(1, t, z.gather(1, t).detach())
                (grad,) = torch.autograd.grad(z, x, grad_outputs=seed, retain_graph=i < len(heads) - 1)
                out[head] = AttributionResult(grad.sum(1).float().cpu().numpy())
        return out

    def attribute_naive(self, model: MultitaskModel, tensor: torch.Tensor, head: str, target: int) -> np.ndarray:
        from zennit.attribution import Gradient

        adapter = HeadAdapter(model, head)
        composite = self.make_composite(model, prefix="model.backbone.")

        def seed(z: torch.Tensor) -> torch.Tensor:
            t = torch.full((z.shape[0], 1), target, dtype=torch.long, device=z.device)
            return torch.zeros_like(z).scatter(1, t, z.gather(1, t))

        with Gradient(model=adapter, composite=composite) as attributor:
            _, relevance = attributor(tensor.detach().clone(), seed)
        return relevance.sum(1)[0].float().cpu().numpy()


def prefixed_canonizers(model: MultitaskModel, prefix: str) -> list:
    """zennit canonizers for ``model``'s backbone reached under ``prefix`` (e.g. ``model.backbone.`` when the
    model is wrapped in an adapter), as ``model.canonizers()`` gives them for ``backbone.``."""
    from semcontrib.backbones import build_canonizers

    return build_canonizers(model.spec, model.backbone, prefix=prefix)
