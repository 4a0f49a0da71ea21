"""Explain your own torch model: :func:`wrap_model` turns any module into a model ``analyze`` explains.

The wrapped module may return a dict ``head name -> logits`` (float N x n_classes), a tuple of
logits in the order of ``heads``, or one logits tensor when there is one head. The result is a
:class:`WrappedModel`, a :class:`~semcontrib.model.MultitaskModel` whose backbone is
``nn.Sequential(net=<your module>, pool=Identity)`` and whose head module turns your output into
the dict the attribution engine reads. So every method works unchanged:

* ``gradcam``: the Grad-CAM layer is a module of yours (the module object or its dotted name,
  e.g. ``"layer4"``); default: the last direct child of your module that outputs a 4-D feature map.
* ``ig``: the black baseline is the preprocessed black image (``(0 - mean) / std``).
* ``lrp``: zennit rules where your layers are covered, a plain gradient where they are not. The
  forward pass is traced with ``torch.fx``; every operation is classified (see :class:`LRPCoverage`)
  and the result is written into the corpus manifest (``methods.lrp.notes``), e.g.
  ``"zennit rules on 60 of 60 operations"`` or ``"... gradient through 2 uncovered operations: ..."``.
  BatchNorms that directly follow a convolution or linear layer in the traced data flow are merged
  into it (zennit's ``NamedMergeBatchNorm``, so the canonized model computes the same outputs);
  residual sums inside torchvision ResNet blocks get zennit's ResNet canonizers (Norm rule).

The model key (``semcontrib.model.model_key``) hashes the identity, which holds a SHA-256 of the
module's ``state_dict`` (names, dtypes, shapes and bytes of every parameter and buffer), so changed
weights recompute every work file of the corpus.

Examples
--------
>>> import torchvision, semcontrib                                        # doctest: +SKIP
>>> net = MyTwoHeadNet()  # forward(x) -> {"animal": N x 3, "indoor": N x 2}  # doctest: +SKIP
>>> model = semcontrib.wrap_model(net, heads={"animal": ["cat", "dog", "bird"],
...                                           "indoor": ["no", "yes"]},
...                               input_size=224, gradcam_layer="backbone.layer4")  # doctest: +SKIP
>>> semcontrib.analyze("photos/", "corpus/", model=model, regions="grid")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import operator
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.backbones import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, _exact_merge
from semcontrib.model import HeadSpec, MultitaskModel, freeze

logger = logging.getLogger(__name__)

OUTPUT_KINDS = ("dict", "tuple", "tensor")
NET = "net"  # the backbone stage that holds the user's module
PREFIX = f"backbone.{NET}."  # module names relative to the MultitaskModel (what zennit composites see)

# call_function / call_method targets that only move, select or reshape values: relevance passes them
# exactly as the gradient does, so they need no rule and are not counted as operations.
_SHAPE_OPS = {
    "flatten", "view", "reshape", "permute", "transpose", "squeeze", "unsqueeze", "contiguous", "size", "dim",
    "getitem", "getattr", "cat", "concat", "stack", "chunk", "split", "clone", "to", "float", "type_as",
    "expand", "expand_as", "unbind", "narrow", "select", "t", "movedim", "unflatten", "detach",
}
_SUM_OPS = {"add", "iadd", "add_", "sum"}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the module's input.

    Attributes
    ----------
    input_size : side S of the square input in pixels (images are squashed to S x S first).
    mean, std : per-channel normalisation of pixel values in [0, 1]: ``(rgb / 255 - mean) / std``.
    transform : optional callable uint8 S x S x 3 -> float tensor 3 x S x S (or 1 x 3 x S x S); when
        given, it must be that per-channel affine map (e.g. torchvision ``ToTensor`` + ``Normalize``);
        ``mean`` and ``std`` are then read off it (IG's black baseline and LRP's box bounds need them).
    """

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    transform: Callable[[np.ndarray], torch.Tensor] | None = None


@dataclass(frozen=True)
class LRPCoverage:
    """Which operations of the wrapped module LRP rules cover (from a ``torch.fx`` trace).

    Attributes
    ----------
    n_operations : operations counted (leaf modules called, and tensor functions that are not pure
        reshapes or selections).
    covered : per kind of covered operation, how many (``"conv/linear: epsilon"``, ...).
    uncovered : ``"name (kind)"`` of every operation relevance passes as a plain gradient.
    merge_pairs : (linear-layer names, BatchNorm name) merged by the canonizer, relative to the module.
    resnet_blocks : whether torchvision ResNet blocks are present (their sums get zennit's canonizers).
    traced : False when ``torch.fx`` could not trace the forward pass (then only modules are checked).
    trace_error : why tracing failed, or ``""``.
    """

    n_operations: int
    covered: dict[str, int]
    uncovered: tuple[str, ...]
    merge_pairs: tuple[tuple[tuple[str, ...], str], ...]
    resnet_blocks: bool
    traced: bool
    trace_error: str = ""

    @property
    def support(self) -> str:
        """``rules`` (every operation has a rule), ``partial`` or ``modified_gradient`` (no rule at all)."""
        n_rules = sum(v for k, v in self.covered.items() if not k.startswith("max-pool"))
        if n_rules == 0:
            return "modified_gradient"
        return "rules" if not self.uncovered and self.traced else "partial"

    def note(self) -> str:
        """One line for the manifest, e.g. ``zennit rules on 60 of 60 operations (...)``.

        ``conv/linear: composite rule`` is the rule of the LRP composite in use (Epsilon for
        semcontrib's default ``epsilon``)."""
        n_cov = self.n_operations - len(self.uncovered)
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.covered.items()))
        text = f"zennit rules on {n_cov} of {self.n_operations} operations ({parts})"
        if self.merge_pairs:
            text += f"; {len(self.merge_pairs)} BatchNorm merged into the preceding layer"
        if self.uncovered:
            shown = ", ".join(self.uncovered[:12]) + (" ..." if len(self.uncovered) > 12 else "")
            text += f"; gradient through {len(self.uncovered)} uncovered operations: {shown}"
        if not self.traced:
            text += ("; forward could not be traced with torch.fx "
                     f"({self.trace_error}), so operations outside modules were not checked and pass as "
                     "a plain gradient")
        return text


# --------------------------------------------------------------------------- modules


class OutputHeads(nn.Module):
    """The wrapped module's output (dict, tuple or one tensor) -> dict head name -> logits."""

    def __init__(self, heads: Sequence[HeadSpec], kind: str) -> None:
        super().__init__()
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"output kind must be one of {OUTPUT_KINDS}, got {kind!r}")
        self.specs = list(heads)
        self.kind = kind

    def forward(self, out: Any) -> dict[str, torch.Tensor]:
        names = [h.name for h in self.specs]
        if self.kind == "dict":
            return {n: out[n] for n in names}
        if self.kind == "tuple":
            return dict(zip(names, out))
        return {names[0]: out}


class WrappedModel(MultitaskModel):
    """A user's module as a :class:`~semcontrib.model.MultitaskModel` (built by :func:`wrap_model`)."""

    def __init__(self, module: nn.Module, heads: Sequence[HeadSpec], kind: str, *, spec: BackboneSpec,
                 preprocessing: Preprocessing, coverage: LRPCoverage, identity: dict[str, Any]) -> None:
        backbone = nn.Sequential(OrderedDict([(NET, module), ("pool", nn.Identity())]))
        super().__init__(spec, backbone, OutputHeads(heads, kind), identity)
        self.preprocessing = preprocessing
        self.coverage = coverage

    @property
    def module(self) -> nn.Module:
        """The wrapped module."""
        return self.backbone[0]

    def canonizers(self) -> list:
        """BatchNorm merges found in the traced data flow, and zennit's ResNet block canonizers."""
        from zennit.canonizers import NamedMergeBatchNorm
        from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

        out: list = []
        if self.coverage.merge_pairs:
            pairs = [([PREFIX + n for n in linears], PREFIX + bn) for linears, bn in self.coverage.merge_pairs]
            out.append(_exact_merge(NamedMergeBatchNorm)(pairs))
        if self.coverage.resnet_blocks:
            out += [ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
        return out

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 S x S x 3 -> float 1 x 3 x S x S (the user's transform, or mean/std normalisation)."""
        if self.preprocessing.transform is None:
            return super().preprocess(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
        return _call_transform(self.preprocessing.transform, rgb)


# --------------------------------------------------------------------------- public function


def wrap_model(module: nn.Module, heads: Mapping[str, Sequence[str]], *, input_size: int = 224,
               mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
               transform: Callable[[np.ndarray], torch.Tensor] | None = None,
               gradcam_layer: str | nn.Module | None = None, name: str | None = None) -> WrappedModel:
    """Wrap a torch module that returns logits so that ``semcontrib.analyze`` explains it.

    Parameters
    ----------
    module : the model. ``forward(tensor)`` takes float 1 x 3 x S x S (normalised) and returns a dict
        head name -> logits (float N x n_classes), a tuple of logits in the order of ``heads``, or one
        logits tensor when ``heads`` has one entry. It is put in evaluation mode and its parameters
        stop requiring gradients (attribution needs input gradients only); its weights are not changed.
    heads : head name -> class names in logit order, e.g. ``{"animal": ["cat", "dog"]}``.
    input_size : side S of the square input in pixels.
    mean, std : per-channel normalisation of pixel values in [0, 1] (default: ImageNet's).
    transform : instead of ``mean``/``std``, a callable uint8 S x S x 3 -> float tensor (3 x S x S or
        1 x 3 x S x S) that applies ``(rgb / 255 - mean) / std`` per channel (such as torchvision's
        ``Compose([ToTensor(), Normalize(mean, std)])``); anything else is rejected, because IG's
        baseline and LRP's box bounds are defined through mean and std.
    gradcam_layer : the Grad-CAM layer, a submodule of ``module`` or its dotted name (``"layer4"``);
        default: the last direct child of ``module`` that outputs a 4-D feature map.
    name : the model's name in the manifest (default: the module's class name).

    Returns
    -------
    WrappedModel

    Raises
    ------
    TypeError : ``module`` is not an ``nn.Module``, ``heads`` not a mapping, ``transform`` not callable,
        or the forward output is not a dict, tuple/list or tensor.
    ValueError : empty or inconsistent heads, bad sizes, mean/std, Grad-CAM layer, an output whose
        shape does not match the heads, or a transform that is not a per-channel affine map.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    specs = _head_specs(heads)
    pre = _preprocessing(input_size, mean, std, transform)
    freeze(module)
    kind = _probe_output(module, specs, pre.input_size)
    cam = _gradcam_layer_name(module, gradcam_layer, pre.input_size)
    coverage = lrp_coverage(module)
    label = name or type(module).__name__
    spec = BackboneSpec(
        name=f"wrapped:{label}", build=_no_build, feature_dim=0, input_size=pre.input_size,
        cam_layer=f"{NET}.{cam}", lrp_support=coverage.support, lrp_note=coverage.note(),
        canonizer_names=(), mean=pre.mean, std=pre.std)
    identity = _identity(module, label, pre, specs, {"output": kind, "gradcam_layer": cam})
    model = WrappedModel(module, specs, kind, spec=spec, preprocessing=pre, coverage=coverage, identity=identity)
    freeze(model)
    logger.info("wrapped %s: heads %s, Grad-CAM layer %s; LRP: %s", label, [h.name for h in specs], cam,
                coverage.note())
    return model


def _identity(module: nn.Module, label: str, pre: Preprocessing, specs: Sequence[HeadSpec],
              probed: Mapping[str, str]) -> dict[str, Any]:
    """The wrapped model's identity (hashed into the model key): weights, preprocessing, what
    ``probed`` found (``output`` kind, ``gradcam_layer``) and heads, in this order."""
    return {
        "name": label,
        "backbone": f"wrapped:{type(module).__module__}.{type(module).__qualname__}",
        "weights_sha256": state_dict_sha256(module),
        "input_size": pre.input_size, "mean": list(pre.mean), "std": list(pre.std),
        "preprocessing": "transform" if pre.transform is not None else "mean/std",
        "output": probed["output"],
        "gradcam_layer": probed["gradcam_layer"],
        "heads": {h.name: list(h.classes) for h in specs},
    }


def _no_build(weights: Any, pretrained: bool) -> Any:
    raise ValueError("a wrapped model cannot be rebuilt from a backbone name; call wrap_model again")


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor in ``module.state_dict()``."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- validation


def _head_specs(heads: Mapping[str, Sequence[str]]) -> list[HeadSpec]:
    if not isinstance(heads, Mapping):
        raise TypeError("heads must be a mapping head name -> class names, e.g. {'animal': ['cat', 'dog']}")
    if not heads:
        raise ValueError("heads must name at least one head")
    specs = []
    for head, classes in heads.items():
        if not isinstance(head, str) or not head or "/" in head:
            raise ValueError(f"head names must be non-empty strings without '/', got {head!r}")
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise TypeError(f"head {head!r}: class names must be a list of strings, got {type(classes).__name__}")
        names = tuple(classes)
        if len(names) < 1 or not all(isinstance(c, str) and c for c in names):
            raise ValueError(f"head {head!r}: class names must be a non-empty list of non-empty strings")
        if len(set(names)) != len(names):
            raise ValueError(f"head {head!r}: class names must be unique")
        specs.append(HeadSpec(head, names))
    return specs


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    try:
        t = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be three numbers (one per RGB channel), got {values!r}") from None
    if len(t) != 3 or not all(np.isfinite(t)):
        raise ValueError(f"{what} must be three finite numbers (one per RGB channel), got {values!r}")
    return (t[0], t[1], t[2])


def _preprocessing(input_size: int, mean: Sequence[float], std: Sequence[float],
                   transform: Callable[[np.ndarray], torch.Tensor] | None) -> Preprocessing:
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or not 8 <= input_size <= 4096:
        raise ValueError(f"input_size must be an integer in 8..4096 (pixels), got {input_size!r}")
    size = int(input_size)
    m, s = _triple(mean, "mean"), _triple(std, "std")
    if min(s) <= 0:
        raise ValueError(f"std must be positive, got {std!r}")
    if transform is None:
        return Preprocessing(size, m, s, None)
    if not callable(transform):
        raise TypeError(f"transform must be a callable uint8 HxWx3 -> float tensor, got {type(transform).__name__}")
    black = _call_transform(transform, np.zeros((size, size, 3), np.uint8))[0]
    white = _call_transform(transform, np.full((size, size, 3), 255, np.uint8))[0]
    lo, hi = black.mean(dim=(1, 2)), white.mean(dim=(1, 2))
    if not torch.all(hi > lo):
        raise ValueError("transform must increase with pixel value per channel ((rgb / 255 - mean) / std)")
    std_t = 1.0 / (hi - lo)
    mean_t = -lo * std_t
    probe = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    got = _call_transform(transform, probe)[0].double()
    expect = (torch.from_numpy(probe).permute(2, 0, 1).double() / 255.0 - mean_t.double().view(3, 1, 1)) \
        / std_t.double().view(3, 1, 1)
    if not torch.allclose(got, expect, rtol=1e-4, atol=1e-4 * float(expect.abs().max())):
        raise ValueError("transform must be a per-channel affine map (rgb / 255 - mean) / std at the input size "
                         "(no resizing, cropping or colour changes); pass input_size, mean and std instead")
    return Preprocessing(size, _triple(mean_t.tolist(), "mean"), _triple(std_t.tolist(), "std"), transform)


def _call_transform(transform: Callable[[np.ndarray], torch.Tensor], rgb: np.ndarray) -> torch.Tensor:
    t = transform(np.array(rgb, dtype=np.uint8, copy=True))
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"transform must return a torch.Tensor, got {type(t).__name__}")
    if t.dim() == 3:
        t = t.unsqueeze(0)
    size = rgb.shape[:2]
    if t.shape != (1, 3, *size) or not t.is_floating_point():
        raise ValueError(f"transform must return a float tensor 3 x {size[0]} x {size[1]} (or with a leading 1), "
                         f"got {t.dtype} {tuple(t.shape)}")
    return t.float()


def _probe_output(module: nn.Module, specs: Sequence[HeadSpec], size: int) -> str:
    """Run one forward pass on a zero image; check the output against the heads; return its kind."""
    with torch.no_grad():
        out = module(torch.zeros(2, 3, size, size))
    names = [h.name for h in specs]
    if isinstance(out, Mapping):
        missing = [n for n in names if n not in out]
        if missing:
            raise ValueError(f"the module's output dict has keys {sorted(out)}, but heads {missing} are missing")
        kind, tensors = "dict", [out[n] for n in names]
    elif isinstance(out, (tuple, list)):
        if len(out) != len(specs):
            raise ValueError(f"the module returns {len(out)} outputs, but {len(specs)} heads were given {names}")
        kind, tensors = "tuple", list(out)
    elif isinstance(out, torch.Tensor):
        if len(specs) != 1:
            raise ValueError(f"the module returns one tensor, so give exactly one head (got {names})")
        kind, tensors = "tensor", [out]
    else:
        raise TypeError(f"the module must return a dict, tuple or tensor of logits, got {type(out).__name__}")
    for spec, t in zip(specs, tensors):
        if not isinstance(t, torch.Tensor) or t.shape != (2, len(spec.classes)):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"head {spec.name!r}: expected logits of shape N x {len(spec.classes)} "
                             f"({len(spec.classes)} class names), got {shape} for N = 2")
    return kind


def _gradcam_layer_name(module: nn.Module, layer: str | nn.Module | None, size: int) -> str:
    names = {id(m): n for n, m in module.named_modules() if n}
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise ValueError("gradcam_layer must be a submodule of the wrapped module (not the module itself)")
        return _check_feature_layer(module, names[id(layer)], size)
    if isinstance(layer, str):
        try:
            module.get_submodule(layer)
        except AttributeError:
            top = [n for n, _ in module.named_children()]
            raise ValueError(f"gradcam_layer {layer!r} is not a submodule; top-level children are {top}") from None
        if not layer:
            raise ValueError("gradcam_layer must name a submodule, not ''")
        return _check_feature_layer(module, layer, size)
    if layer is not None:
        raise TypeError(f"gradcam_layer must be a module, a dotted name or None, got {type(layer).__name__}")
    seen: list[str] = []
    hooks = [child.register_forward_hook(
        lambda _m, _i, o, n=n: seen.append(n) if isinstance(o, torch.Tensor) and o.dim() == 4 else None)
        for n, child in module.named_children()]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ValueError("no direct child of the module outputs a 4-D feature map; pass gradcam_layer "
                         "(a submodule or its dotted name)")
    return seen[-1]


# --------------------------------------------------------------------------- LRP coverage


def _check_feature_layer(module: nn.Module, name: str, size: int) -> str:
    """The Grad-CAM layer must run once per forward pass and output a feature map N x C x h x w."""
    outputs: list[Any] = []
    hook = module.get_submodule(name).register_forward_hook(lambda _m, _i, o: outputs.append(o))
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    finally:
        hook.remove()
    if len(outputs) != 1:
        raise ValueError(f"gradcam_layer {name!r} runs {len(outputs)} times in forward; it must run exactly once")
    if not isinstance(outputs[0], torch.Tensor) or outputs[0].dim() != 4:
        got = tuple(outputs[0].shape) if isinstance(outputs[0], torch.Tensor) else type(outputs[0]).__name__
        raise ValueError(f"gradcam_layer {name!r} must output a feature map N x C x h x w, got {got}")
    return name


def _kind_of(target: Any) -> str:
    """A short lower-case name of a call_function / call_method target (``add``, ``flatten``, ...)."""
    if isinstance(target, str):
        return target
    if target in (operator.add, operator.iadd):
        return "add"
    return getattr(target, "__name__", str(target)).lower()


def lrp_coverage(module: nn.Module) -> LRPCoverage:
    """Classify every operation of ``module``'s forward pass by the LRP rule it gets (pure inspection).

    Rules follow zennit's composites (``layer_map_base`` plus a rule on conv and linear layers, Epsilon
    in semcontrib's default ``epsilon``): conv/linear -> the composite's rule, activations -> Pass, average
    pooling and canonized residual sums -> Norm, BatchNorm -> merged into the preceding conv/linear
    layer where the data flow allows, else Pass. Max-pooling keeps its gradient (winner takes all, the
    usual LRP treatment). Anything else — other modules, sums outside torchvision ResNet blocks,
    products, functional activations, matrix products, means — passes relevance as a plain gradient
    and is listed as uncovered, as is a conv/linear module called more than once (zennit keeps one
    state per module).
    """
    resnet_types = _resnet_block_types()
    resnet_blocks = any(isinstance(m, resnet_types) for m in module.modules()) if resnet_types else False
    tally = _CoverageTally()
    try:
        import torch.fx as fx

        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: fall back to a module scan
        for name, m in module.named_modules():
            if name and not list(m.children()):
                tally.add_module(name, m, 1)
        return LRPCoverage(tally.n_ops, tally.covered, tuple(tally.uncovered), (), resnet_blocks, False,
                           f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = _merge_pairs(module, graph, calls)
    tally.merged = {bn for _, bn in pairs}
    done: set[str] = set()
    for node in graph.nodes:
        if node.op == "call_module":
            target = str(node.target)
            if target not in done:
                done.add(target)
                tally.add_module(target, module.get_submodule(target), calls[target])
        elif node.op in ("call_function", "call_method"):
            tally.add_function(module, node, resnet_types)
    return LRPCoverage(tally.n_ops, tally.covered, tuple(tally.uncovered), tuple(pairs), resnet_blocks, True)


class _CoverageTally:
    """The operations :func:`lrp_coverage` found: covered ones counted per rule, uncovered ones named."""

    def __init__(self) -> None:
        self.covered: dict[str, int] = {}
        self.uncovered: list[str] = []
        self.merged: set[str] = set()  # BatchNorm modules merged into the layer before them

    @property
    def n_ops(self) -> int:
        return sum(self.covered.values()) + len(self.uncovered)

    def cover(self, kind: str) -> None:
        self.covered[kind] = self.covered.get(kind, 0) + 1

    def add_module(self, name: str, m: nn.Module, calls: int) -> None:
        """One leaf module, called ``calls`` times in the forward pass."""
        from zennit.types import Activation, AvgPool, BatchNorm, Convolution, MaxPool
        from zennit.types import Linear as ZLinear

        if isinstance(m, (Convolution, ZLinear)):
            if calls > 1:
                self.uncovered.append(f"{name} ({type(m).__name__} called {calls} times)")
            else:
                self.cover("conv/linear: composite rule")
        elif isinstance(m, Activation):
            self.cover("activation: pass")
        elif isinstance(m, AvgPool):
            self.cover("avg-pool: norm")
        elif isinstance(m, BatchNorm):
            self.cover("batchnorm: merged" if name in self.merged else "batchnorm: pass (not merged)")
        elif isinstance(m, MaxPool):
            self.cover("max-pool: winner-take-all gradient")
        elif isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d)):
            return
        else:
            self.uncovered.append(f"{name} ({type(m).__name__})")

    def add_function(self, module: nn.Module, node: Any, resnet_types: tuple[type, ...]) -> None:
        """One ``call_function`` / ``call_method`` node of the traced graph."""
        kind = _kind_of(node.target)
        if kind in _SHAPE_OPS:
            return
        if kind in _SUM_OPS and kind != "sum" and _inside(module, node, resnet_types):
            self.cover("residual sum: norm (ResNet canonizer)")
        else:
            where = next(reversed(node.meta.get("nn_module_stack", {}) or {"": None}), "") or "forward"
            self.uncovered.append(f"{where}.{kind} ({node.op})" if where != "forward" else f"{kind} ({node.op})")


def _resnet_block_types() -> tuple[type, ...]:
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return ()
    return (BasicBlock, Bottleneck)


def _inside(module: nn.Module, node: Any, types: tuple[type, ...]) -> bool:
    """Whether an fx node runs inside a module of one of ``types`` (from its ``nn_module_stack``)."""
    if not types:
        return False
    for path in (node.meta.get("nn_module_stack") or {}):
        try:
            if isinstance(module.get_submodule(path), types):
                return True
        except AttributeError:
            continue
    return False


def _merge_pairs(module: nn.Module, graph: Any, calls: Mapping[str, int]
                 ) -> list[tuple[tuple[str, ...], str]]:
    """(conv/linear name,), BatchNorm name) where the BatchNorm's only input is that layer's only use."""
    from zennit.types import BatchNorm, Convolution
    from zennit.types import Linear as ZLinear

    pairs: list[tuple[tuple[str, ...], str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(module.get_submodule(str(node.target)), BatchNorm):
            continue
        if calls[str(node.target)] != 1 or not node.args:
            continue
        prev = node.args[0]
        if getattr(prev, "op", None) != "call_module" or len(prev.users) != 1 or calls[str(prev.target)] != 1:
            continue
        if isinstance(module.get_submodule(str(prev.target)), (Convolution, ZLinear)):
            pairs.append(((str(prev.target),), str(node.target)))
    return pairs


__all__ = ["wrap_model", "WrappedModel", "Preprocessing", "LRPCoverage", "lrp_coverage", "state_dict_sha256",
           "OutputHeads", "OUTPUT_KINDS"]
