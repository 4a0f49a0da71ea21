"""Attribution: a signed float32 map HxW at model input resolution per (image, head, method).

``ATTRIBUTION_METHODS`` maps the CLI name to the method class. Every method has one verb for a
batch, ``attribute_batch(model, tensor, targets) -> {head: AttributionResult}``, which shares work
across heads, and ``attribute_naive(model, tensor, head, target)``, one plain captum / zennit call
for one image and one head (the reference the batched engine is tested against, and the baseline of
``benchmarks/bench_pipeline.py``).

How work is shared (``tensor`` is float NCHW, B images):

* ``lrp`` (zennit): one forward through the canonized, hooked model; one backward per head, each
  seeded with the head's target logit (so relevance sums to the logit, up to what biases absorb).
* ``gradcam`` (captum ``LayerGradCam``): the backbone is split at the Grad-CAM layer's stage; the
  prefix runs once, its output is repeated once per head, and a single ``LayerGradCam`` call over the
  suffix returns every head's map. Not ReLU-ed, not rescaled: sign and magnitude are data.
  Upsampled bilinearly to the input size.
* ``ig`` (Integrated Gradients, captum's quadrature): the interpolated batches are built and run
  forward once; every head takes its own backward through them. The convergence delta
  ``sum(attribution) - (f(x) - f(baseline))`` is kept per image and head.

Every method class has a ``level``: ``"pixel"`` methods (above) return a map per head that is
aggregated over the regions afterwards (``xrai``, in :mod:`semcontrib.xrai`, is one: XRAI's map over
this module's batched IG); ``"region"`` methods (``occlusion``, ``shapley``, in
:mod:`semcontrib.perturbation`; ``lime``, in :mod:`semcontrib.lime`) score the regions of a region map directly with
``attribute_regions(model, tensor, targets, labels, vocabulary) -> {head: RegionResult}``.

Precision: every method runs inside the caller's :func:`semcontrib.model.compute_context`; with
``bf16`` its passes run under ``torch.autocast`` in bfloat16 where the method's ``runs_in_bf16`` is
True (``gradcam``, ``occlusion``, ``shapley``, ``siam``), in float32 where it is False (``lrp``,
``ig``: their bf16 maps were measured too far from fp32; see their notes). The heads always run in float32
(:meth:`semcontrib.model.MultitaskModel.head_logits`) and every returned array is float32/float64.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.lime import LimeMethod
from semcontrib.model import HeadAdapter, MultitaskModel, full_precision
from semcontrib.perturbation import OcclusionMethod, ShapleyMethod
from semcontrib.settings import DEFAULT_LRP_COMPOSITE, IG_BASELINES, IG_METHODS, LRP_COMPOSITES  # one owner
from semcontrib.xrai import XraiMethod

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttributionResult:
    """One head's maps for a batch.

    Attributes
    ----------
    maps : float32 (B, H, W), summed over colour channels.
    delta : float32 (B,) IG convergence delta, or None for other methods.
    """

    maps: np.ndarray
    delta: np.ndarray | None = None


@dataclass(frozen=True)
class RegionResult:
    """One head's region scores for a batch, from a region-level method.

    Attributes
    ----------
    scores : float64 (N, K), one score per image and vocabulary region (0 for absent regions).
    maps : float32 (N, S, S) display map at model resolution: each pixel holds its region's score
        divided by the region's pixel count (so the region sum of the map is the score; 0 on
        unassigned pixels).
    delta : float64 (N,) the method's residual (shapley: efficiency residual
        ``sum(scores) - (f(x) - f(all present regions removed))``), or None (occlusion).
    """

    scores: np.ndarray
    maps: np.ndarray
    delta: np.ndarray | None


def _select(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


# --------------------------------------------------------------------------- LRP



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

        canonizers = model.canonizers() if prefix == "backbone." else _prefixed_canonizers(model, prefix)
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


def _prefixed_canonizers(model: MultitaskModel, prefix: str) -> list:
    from semcontrib.backbones import build_canonizers

    return build_canonizers(model.spec, model.backbone, prefix=prefix)


# --------------------------------------------------------------------------- Grad-CAM


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
            picked = [_select(logits[h][i * B:(i + 1) * B], targets[h]) for i, h in enumerate(heads)]
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


# --------------------------------------------------------------------------- Integrated Gradients



class IntegratedGradients:
    """Integrated Gradients with captum's quadrature rules.

    Parameters
    ----------
    n_steps : number of quadrature points.
    baseline : ``black`` (pixel value 0 in every channel) or ``blurred`` (Gaussian blur of the image,
        sigma ``blur_sigma`` pixels).
    method : captum's approximation method.
    internal_batch_size : interpolated images per forward pass (memory bound).

    Notes
    -----
    IG always runs in float32, also inside a bf16 :func:`semcontrib.model.compute_context`
    (autocast is turned off for it; ``runs_in_bf16 = False``). Measured on EfficientNet-Lite0 and
    two bundled photographs (16 steps): bf16 input gradients differ from fp32 by ~49 % (relative L1)
    per pixel, the maps correlate only 0.81-0.89 with fp32, the convergence delta grows, and the
    signed_l1 region vectors over a 3x3 grid move by up to 0.18, against 5e-3 for Grad-CAM
    (``benchmarks/bench_precision.py``). IG's maps are sums of per-pixel gradients that
    cancel almost completely (``|sum| / sum|.|`` ~ 0.003), so bfloat16's 8 significant bits do not
    suffice.
    """

    name = "ig"
    level = "pixel"
    runs_in_bf16 = False

    def __init__(self, n_steps: int = 32, baseline: str = "black", method: str = "gausslegendre",
                 internal_batch_size: int = 16, blur_sigma: float = 10.0) -> None:
        if not (isinstance(n_steps, int) and 1 <= n_steps <= 1024):
            raise ValueError(f"n_steps must be an integer in 1..1024, got {n_steps!r}")
        if baseline not in IG_BASELINES:
            raise ValueError(f"unknown IG baseline {baseline!r}; choose from {IG_BASELINES}")
        if method not in IG_METHODS:
            raise ValueError(f"unknown IG method {method!r}; choose from {IG_METHODS}")
        if internal_batch_size < 1:
            raise ValueError("internal_batch_size must be >= 1")
        if blur_sigma <= 0:
            raise ValueError("blur_sigma must be > 0")
        self.n_steps = n_steps
        self.baseline = baseline
        self.method = method
        self.internal_batch_size = internal_batch_size
        self.blur_sigma = float(blur_sigma)

    @property
    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"n_steps": self.n_steps, "baseline": self.baseline, "method": self.method}
        if self.baseline == "blurred":
            p["blur_sigma"] = self.blur_sigma
        return p

    def notes(self, model: MultitaskModel) -> dict[str, str]:
        return {}

    def baseline_tensor(self, model: MultitaskModel, tensor: torch.Tensor) -> torch.Tensor:
        """The baseline in the model's normalised input space (float NCHW)."""
        mean = torch.tensor(model.spec.mean, dtype=tensor.dtype, device=tensor.device).view(1, 3, 1, 1)
        std = torch.tensor(model.spec.std, dtype=tensor.dtype, device=tensor.device).view(1, 3, 1, 1)
        if self.baseline == "black":
            return ((0.0 - mean) / std).expand_as(tensor).contiguous()
        from torchvision.transforms.functional import gaussian_blur

        k = int(2 * round(3 * self.blur_sigma) + 1)
        # Blurring commutes with the per-channel affine normalisation (the kernel sums to 1).
        return gaussian_blur(tensor, [k, k], [self.blur_sigma, self.blur_sigma])

    def _alphas(self) -> tuple[list[float], list[float]]:
        from captum.attr._utils.approximation_methods import approximation_parameters

        step_sizes_fn, alphas_fn = approximation_parameters(self.method)
        return list(step_sizes_fn(self.n_steps)), list(alphas_fn(self.n_steps))

    def attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                        targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]:
        with full_precision(tensor):  # see the class notes: bf16 IG gradients are too noisy
            return self._attribute_batch(model, tensor, targets)

    def _attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                         targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]:
        heads = list(targets)
        B = tensor.shape[0]
        x = tensor.detach()
        base = self.baseline_tensor(model, x)
        diff = x - base
        steps, alphas = self._alphas()
        total = {h: torch.zeros_like(x) for h in heads}
        per_chunk = max(1, self.internal_batch_size // B)
        for start in range(0, len(alphas), per_chunk):
            al = alphas[start:start + per_chunk]
            st = torch.tensor(steps[start:start + per_chunk], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
            xi = torch.cat([base + a * diff for a in al]).requires_grad_(True)
            with torch.enable_grad():
                out = model(xi)
                for i, h in enumerate(heads):
                    s = _select(out[h], targets[h].repeat(len(al))).sum()
                    (g,) = torch.autograd.grad(s, xi, retain_graph=i < len(heads) - 1)
                    total[h] += (st * g.view(len(al), B, *x.shape[1:])).sum(0)
        with torch.no_grad():
            end = model(x)
            start_out = model(base)
        result = {}
        for h in heads:
            attr = diff * total[h]
            gap = _select(end[h], targets[h]) - _select(start_out[h], targets[h])
            delta = attr.double().sum(dim=(1, 2, 3)) - gap.double()
            result[h] = AttributionResult(attr.sum(1).float().cpu().numpy(), delta.float().cpu().numpy())
        return result

    def attribute_naive(self, model: MultitaskModel, tensor: torch.Tensor, head: str, target: int) -> np.ndarray:
        from captum.attr import IntegratedGradients as CaptumIG

        adapter = HeadAdapter(model, head)
        base = self.baseline_tensor(model, tensor)
        with torch.enable_grad():
            attr = CaptumIG(adapter).attribute(tensor, baselines=base, target=target, n_steps=self.n_steps,
                                               method=self.method, internal_batch_size=self.internal_batch_size)
        return attr.sum(1)[0].detach().float().cpu().numpy()


# --------------------------------------------------------------------------- region-level methods


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


ATTRIBUTION_METHODS: dict[str, type] = {
    "lrp": LRP,
    "gradcam": GradCAM,
    "ig": IntegratedGradients,
    "occlusion": OcclusionMethod,
    "shapley": ShapleyMethod,
    "siam": SiamContributions,
    "lime": LimeMethod,
    "xrai": XraiMethod,
}


def make_method(name: str, **params: Any) -> Any:
    """Instantiate a method by its CLI name with its parameters."""
    if name not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {name!r}; choose from {sorted(ATTRIBUTION_METHODS)}")
    return ATTRIBUTION_METHODS[name](**params)


AMONG_PREFIX = "among:"


def resolve_targets(model: MultitaskModel, logits: dict[str, np.ndarray], heads: Sequence[str],
                    named: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Target class index per head and image.

    Parameters
    ----------
    model : the model (for the heads' class names).
    logits : per head, float (N, n_classes).
    heads : the heads to resolve.
    named : head -> target rule; a head without a rule gets its predicted class. A rule is either
        a class name (that class for every image) or ``among:CLASS,CLASS,...`` (per image, the
        best-scoring class of that set, so that every vector answers the same question even for
        images predicted as something else, as CatViz did with the top cat class).

    Returns
    -------
    dict head -> int64 tensor (N,) of class indices.

    Examples
    --------
    >>> import numpy as np
    >>> from semcontrib.model import HeadSpec
    >>> class M:  # anything with ``head(name).classes``
    ...     def head(self, name): return HeadSpec(name, ("cat", "dog", "car"))
    >>> logits = {"h": np.array([[0.0, 1.0, 9.0], [3.0, 1.0, 9.0]])}
    >>> resolve_targets(M(), logits, ["h"], {"h": "among:cat,dog"})["h"].tolist()
    [1, 0]
    """
    named = dict(named or {})
    unknown = set(named) - set(heads)
    if unknown:
        raise ValueError(f"targets name heads that are not analysed: {sorted(unknown)}")
    out: dict[str, torch.Tensor] = {}
    for h in heads:
        spec = model.head(h)
        scores = np.asarray(logits[h])
        n = scores.shape[0]
        rule = named.get(h)
        if rule is None:
            out[h] = torch.from_numpy(np.argmax(scores, axis=1)).long()
        elif rule.startswith(AMONG_PREFIX):
            idx = _class_indices(h, spec.classes, rule[len(AMONG_PREFIX):])
            best = np.asarray(idx)[np.argmax(scores[:, idx], axis=1)]
            out[h] = torch.from_numpy(best).long()
        else:
            out[h] = torch.full((n,), _class_indices(h, spec.classes, rule, single=True)[0], dtype=torch.long)
    return out


def _class_indices(head: str, classes: Sequence[str], text: str, single: bool = False) -> list[int]:
    """Indices of comma-separated class names (one name when ``single``), validated."""
    names = [text] if single else [c.strip() for c in text.split(",")]
    if not names or any(not c for c in names):
        raise ValueError(f"target for head {head!r}: expected among:CLASS,CLASS,... with non-empty names, "
                         f"got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"target for head {head!r} names a class twice: {text!r}")
    missing = [c for c in names if c not in classes]
    if missing:
        raise ValueError(f"head {head!r} has no class {missing[0]!r}; classes: {list(classes)[:20]}")
    return [list(classes).index(c) for c in names]
