"""SIAM: a semantic concept bottleneck whose concept contributions to each logit are exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.backbones import BackboneSpec, weights_provenance
from semcontrib.model.build import _build_stages
from semcontrib.model.compute import full_precision
from semcontrib.model.multitask import HeadSpec, MultitaskModel


def _inverse_softplus(y: float) -> float:
    return float(np.log(np.expm1(y)))


class SiamHeads(nn.Module):
    """A SIAM-style concept bottleneck on the backbone's last feature map, one linear read-out per head.

    Concept maps (one per vocabulary entry, non-negative)::

        A_k = ReLU(conv1x1_k(F))                              float N x K x h x w

    Per head, a spatial template per concept, the difference of two non-negative templates
    (``T_k = softplus(P_k) - softplus(M_k)``, both initialised constant so that ``T_k = 1 / (h w)``,
    i.e. average pooling), a weight per (class, concept) and a bias per class::

        s_{n,k}   = sum_xy T_k(x, y) * A_{n,k}(x, y)          (bias-free)
        c_{n,c,k} = w_{c,k} * s_{n,k}                         the exact contribution of concept k to class c
        logit_{n,c} = bias_c + sum_k c_{n,c,k}

    The forward pass computes the logits through ``c`` itself, so ``sum_k c + bias`` equals the
    logit exactly. Concept presence for the concept loss (SIAM eq. 3) is read from the maps as
    ``presence_logit_{n,k} = a_k * max_xy A_{n,k} + b_k``.

    Parameters
    ----------
    feature_dim : channels F of the backbone's last feature map.
    map_size : (h, w) of that map at the model's input size.
    concepts : K concept names (the region vocabulary).
    heads : the task heads.
    """

    def __init__(self, feature_dim: int, map_size: tuple[int, int], concepts: Sequence[str],
                 heads: Sequence[HeadSpec]) -> None:
        super().__init__()
        if not concepts:
            raise ValueError("a SIAM model needs at least one concept")
        if len(set(concepts)) != len(concepts):
            raise ValueError(f"concept names must be unique, got {list(concepts)}")
        self.specs = list(heads)
        self.concepts = tuple(str(c) for c in concepts)
        self.map_size = (int(map_size[0]), int(map_size[1]))
        k = len(self.concepts)
        h, w = self.map_size
        self.concept_conv = nn.Conv2d(feature_dim, k, kernel_size=1)
        self.concept_act = nn.ReLU()
        self.template_pos = nn.ParameterDict()
        self.template_neg = nn.ParameterDict()
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        for spec in self.specs:
            self.template_pos[spec.name] = nn.Parameter(torch.empty(k, h, w))
            self.template_neg[spec.name] = nn.Parameter(torch.empty(k, h, w))
            self.weight[spec.name] = nn.Parameter(torch.empty(len(spec.classes), k))
            self.bias[spec.name] = nn.Parameter(torch.empty(len(spec.classes)))
        self.presence_scale = nn.Parameter(torch.ones(k))
        self.presence_bias = nn.Parameter(torch.zeros(k))
        self.reset_parameters(0)

    def reset_parameters(self, seed: int) -> None:
        """Seeded initialisation: constant templates (``T = 1 / (h w)``), uniform weights, zero biases."""
        gen = torch.Generator().manual_seed(seed)
        h, w = self.map_size
        k = len(self.concepts)
        with torch.no_grad():
            bound = 1.0 / float(np.sqrt(self.concept_conv.in_channels))
            self.concept_conv.weight.copy_(torch.empty_like(self.concept_conv.weight).uniform_(-bound, bound,
                                                                                               generator=gen))
            assert self.concept_conv.bias is not None
            self.concept_conv.bias.fill_(0.1)  # concepts start active, so ReLU passes gradients
            for spec in self.specs:
                self.template_pos[spec.name].fill_(_inverse_softplus(2.0 / (h * w)))
                self.template_neg[spec.name].fill_(_inverse_softplus(1.0 / (h * w)))
                wb = 1.0 / float(np.sqrt(k))
                self.weight[spec.name].copy_(torch.empty(len(spec.classes), k).uniform_(-wb, wb, generator=gen))
                self.bias[spec.name].zero_()
            self.presence_scale.fill_(1.0)
            self.presence_bias.zero_()

    def concept_maps(self, feature_map: torch.Tensor) -> torch.Tensor:
        """float N x F x h x w -> non-negative concept maps float N x K x h x w."""
        if feature_map.dim() != 4 or tuple(feature_map.shape[-2:]) != self.map_size:
            raise ValueError(f"expected a feature map N x F x {self.map_size[0]} x {self.map_size[1]}, "
                             f"got {tuple(feature_map.shape)}")
        return self.concept_act(self.concept_conv(feature_map))

    def template(self, head: str) -> torch.Tensor:
        """``T = softplus(P) - softplus(M)`` of one head: float K x h x w."""
        return (nn.functional.softplus(self.template_pos[head])
                - nn.functional.softplus(self.template_neg[head]))

    def contributions(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Concept maps N x K x h x w -> head -> contributions float N x C x K (``w_{c,k} s_{n,k}``)."""
        out = {}
        for spec in self.specs:
            s = torch.einsum("nkhw,khw->nk", maps, self.template(spec.name))
            out[spec.name] = self.weight[spec.name][None] * s[:, None, :]
        return out

    def pixel_contributions(self, maps: torch.Tensor, head: str, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel contribution to each image's target logit, summed over concepts: float N x h x w.

        ``sum_k w_{t,k} T_k(x, y) A_k(x, y)``; its spatial sum is ``logit_t - bias_t``.
        """
        w = self.weight[head][target]  # N x K
        return torch.einsum("nk,khw,nkhw->nhw", w, self.template(head), maps)

    def presence_logits(self, maps: torch.Tensor) -> torch.Tensor:
        """Concept presence logits float N x K: ``a_k * max_xy A_k + b_k``."""
        return self.presence_scale[None] * maps.flatten(2).amax(dim=2) + self.presence_bias[None]

    def logits_from_maps(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        return {h: c.sum(dim=2) + self.bias[h][None] for h, c in self.contributions(maps).items()}

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.logits_from_maps(self.concept_maps(feature_map))

    def forward_train(self, feature_map: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(head logits, concept presence logits N x K, concept maps N x K x h x w) from one pass."""
        maps = self.concept_maps(feature_map)
        return self.logits_from_maps(maps), self.presence_logits(maps), maps


class SiamModel(MultitaskModel):
    """A :class:`MultitaskModel` whose heads are :class:`SiamHeads`.

    ``backbone`` ends with the last convolutional stage (no pooling stage): ``heads`` reads the
    feature map float N x F x h x w. ``forward(tensor)`` returns head -> logits as every model does.
    """

    heads: SiamHeads

    @property
    def concepts(self) -> tuple[str, ...]:
        return self.heads.concepts

    def concept_maps(self, tensor: torch.Tensor) -> torch.Tensor:
        """Preprocessed float N x 3 x S x S -> concept maps float32 N x K x h x w (non-negative).

        The concept layer runs in float32 also under bf16 autocast (as :meth:`head_logits`).
        """
        feats = self.backbone(tensor)
        with full_precision(feats):
            return self.heads.concept_maps(feats.float())

    def concept_contributions(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """head -> float N x C x K: the exact contribution of concept k to the logit of class c.

        ``concept_contributions(x)[h].sum(-1) + bias[h] == model(x)[h]``.
        """
        return self.heads.contributions(self.concept_maps(tensor))


def feature_map_shape(stages: nn.Module, input_size: int) -> tuple[int, int, int]:
    """(F, h, w) of the map ``stages`` produce from one float 1 x 3 x S x S input."""
    was = stages.training
    stages.eval()
    with torch.no_grad():
        out = stages(torch.zeros(1, 3, input_size, input_size))
    stages.train(was)
    if out.dim() != 4:
        raise ValueError(f"the backbone stages must end with a feature map N x F x h x w, got {tuple(out.shape)}")
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def siam_from_stages(spec: BackboneSpec, stages: nn.Sequential, heads: Sequence[HeadSpec],
                     concepts: Sequence[str], identity: Mapping[str, Any] | None = None) -> SiamModel:
    """A :class:`SiamModel` on ``stages`` (an ``nn.Sequential`` whose last stage may be ``pool``, dropped)."""
    names = [n for n, _ in stages.named_children()]
    if names and names[-1] == "pool":
        stages = stages[:-1]
    size = int((identity or {}).get("input_size", spec.input_size))
    channels, h, w = feature_map_shape(stages, size)
    siam_heads = SiamHeads(channels, (h, w), concepts, heads)
    ident = {
        "name": "siam", "backbone": spec.name, "architecture": "siam",
        "input_size": size, "mean": list(spec.mean), "std": list(spec.std),
        "heads": {h.name: list(h.classes) for h in heads}, "concepts": list(siam_heads.concepts),
    }
    ident.update({k: v for k, v in (identity or {}).items() if k not in ("architecture", "concepts")})
    return SiamModel(spec, stages, siam_heads, ident)


def build_siam(backbone: str, heads: Sequence[HeadSpec], concepts: Sequence[str],
               pretrained_weights: Path | None = None, random_init: bool = False) -> SiamModel:
    """A backbone (as :func:`build_multitask`) with :class:`SiamHeads` over the concept vocabulary."""
    spec, stages, _, used = _build_stages(backbone, pretrained_weights, random_init)
    return siam_from_stages(spec, stages, heads, concepts,
                            {"pretrained": weights_provenance(backbone, used)})
