"""The multitask model: a backbone (``nn.Sequential`` of named stages) and a module of named heads.

Data formats: ``rgb`` is uint8 HxWx3; ``tensor`` is float NCHW, normalised with the model's mean
and std; head logits are float N x n_classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.backbones import BackboneSpec, build_canonizers
from semcontrib.heads import HeadSpec  # defined without torch (the engine's records name heads)


class LinearHeads(nn.Module):
    """One linear layer per head on the pooled features (trained multitask models)."""

    def __init__(self, feature_dim: int, heads: Sequence[HeadSpec]) -> None:
        super().__init__()
        self.specs = list(heads)
        self.layers = nn.ModuleDict({h.name: nn.Linear(feature_dim, len(h.classes)) for h in heads})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {h.name: self.layers[h.name](features) for h in self.specs}


class GroupedImagenetHeads(nn.Module):
    """Heads derived from the 1000 ImageNet logits through class groups.

    A group's logit is the logsumexp of its classes' logits, so the softmax over a head's groups
    equals the summed ImageNet probability of each group (every head is a partition).
    The ImageNet linear layer runs once; every head reads its logits.
    """

    def __init__(self, fc: nn.Linear, imagenet_classes: Sequence[str],
                 groups: Mapping[str, Mapping[str, Sequence[int]]], include_imagenet: bool = True) -> None:
        super().__init__()
        self.fc = fc
        self.specs: list[HeadSpec] = []
        self._members: dict[str, list[torch.Tensor]] = {}
        for head, head_groups in groups.items():
            self.specs.append(HeadSpec(head, tuple(head_groups)))
            idx = []
            for gi, (_, members) in enumerate(head_groups.items()):
                buf = torch.tensor(sorted(members), dtype=torch.long)
                self.register_buffer(f"_idx_{head}_{gi}", buf, persistent=False)
                idx.append(buf)
            self._members[head] = idx
        if include_imagenet:
            self.specs.append(HeadSpec("imagenet", tuple(imagenet_classes)))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.fc(features)
        out: dict[str, torch.Tensor] = {}
        for spec in self.specs:
            if spec.name == "imagenet":
                out["imagenet"] = logits
                continue
            members = [getattr(self, f"_idx_{spec.name}_{gi}") for gi in range(len(spec.classes))]
            out[spec.name] = torch.stack([torch.logsumexp(logits[:, m], dim=1) for m in members], dim=1)
        return out


class MultitaskModel(nn.Module):
    """A backbone (``nn.Sequential`` of named stages ending in ``pool``) and a head module.

    ``forward(tensor)`` returns a dict head name -> logits (float N x n_classes).
    """

    def __init__(self, spec: BackboneSpec, backbone: nn.Sequential, heads: nn.Module,
                 identity: dict[str, Any]) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.heads = heads
        self.identity = identity
        self.head_specs: list[HeadSpec] = list(heads.specs)  # type: ignore[arg-type]

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.head_specs]

    def head(self, name: str) -> HeadSpec:
        for h in self.head_specs:
            if h.name == name:
                return h
        raise ValueError(f"unknown head {name!r}; this model has {self.head_names}")

    def forward(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head_logits(self.backbone(tensor))

    def head_logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The heads on the backbone's output, always in float32.

        Under bf16 autocast (:func:`compute_context`) the backbone runs in bfloat16, but rounding the
        logits to bfloat16 (8 significant bits: steps of 0.0625 at a logit of 10) would swamp the
        logit differences that perturbation methods score, so the heads run with autocast off.
        """
        if not isinstance(features, torch.Tensor):  # a wrapped model's heads may take what its backbone gives
            return self.heads(features)
        with torch.autocast(features.device.type, enabled=False):
            return self.heads(features.float())

    def stage_index(self, stage: str) -> int:
        names = [n for n, _ in self.backbone.named_children()]
        if stage not in names:
            raise ValueError(f"unknown stage {stage!r}; stages are {names}")
        return names.index(stage)

    def canonizers(self) -> list:
        """zennit canonizers for this model (module names relative to the model)."""
        return build_canonizers(self.spec, self.backbone, prefix="backbone.")

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 HxWx3 at model resolution -> normalised float 1x3xSxS."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
        t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
        mean = torch.tensor(self.spec.mean).view(3, 1, 1)
        std = torch.tensor(self.spec.std).view(3, 1, 1)
        return ((t - mean) / std).unsqueeze(0)

    @property
    def input_size(self) -> int:
        return int(self.identity.get("input_size", self.spec.input_size))


class HeadAdapter(nn.Module):
    """Expose one head's logits as the single output (float N x n_classes) of a plain module.

    captum gets a plain forward function; zennit composites registered on the adapter still reach
    every module inside the wrapped model.
    """

    def __init__(self, model: MultitaskModel, head: str) -> None:
        super().__init__()
        model.head(head)  # validates
        self.model = model
        self.head_name = head

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.model(tensor)[self.head_name]


def freeze(module: nn.Module) -> nn.Module:
    """Evaluation mode and no parameter gradients (attribution needs input gradients only)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
