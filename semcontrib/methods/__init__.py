"""Attribution methods: a signed map per (image, head, method), or a score per region.

``base`` holds the records and the :class:`~semcontrib.methods.base.AttributionMethod` protocol,
``registry`` the ``ATTRIBUTION_METHODS`` registry; one module per family registers its classes:
``lrp``, ``gradcam``, ``ig`` (pixel methods) and ``siam`` (region method). ``occlusion`` and
``shapley`` (:mod:`semcontrib.perturbation`), ``lime`` (:mod:`semcontrib.lime`) and ``xrai``
(:mod:`semcontrib.xrai`) live outside this package and are registered here. ``targets`` resolves
which class of each head is explained.

Precision: every method runs inside the caller's :func:`semcontrib.model.compute_context`; with
``bf16`` its passes run under ``torch.autocast`` in bfloat16 where the method's ``runs_in_bf16`` is
True (``gradcam``, ``occlusion``, ``shapley``, ``siam``), in float32 where it is False (``lrp``,
``ig``: their bf16 maps were measured too far from fp32; see their notes). The heads always run in
float32 (:meth:`semcontrib.model.MultitaskModel.head_logits`) and every returned array is float32/float64.
"""

from __future__ import annotations

from semcontrib.lime import LimeMethod
from semcontrib.methods.base import (
    AttributionMethod,
    AttributionResult,
    PixelMethod,
    RegionMethod,
    RegionResult,
    is_pixel_method,
    is_region_method,
)
from semcontrib.methods.gradcam import GradCAM
from semcontrib.methods.ig import IntegratedGradients
from semcontrib.methods.lrp import LRP
from semcontrib.methods.registry import ATTRIBUTION_METHODS, make_method, register
from semcontrib.methods.siam import SiamContributions
from semcontrib.methods.targets import AMONG_PREFIX, resolve_targets
from semcontrib.perturbation import OcclusionMethod, ShapleyMethod
from semcontrib.xrai import XraiMethod

for _foreign in (OcclusionMethod, ShapleyMethod, LimeMethod, XraiMethod):
    register(_foreign)
# the registry's order, as the CLI lists the methods: pixel methods, then region methods
for _name in ("lrp", "gradcam", "ig", "occlusion", "shapley", "siam", "lime", "xrai"):
    ATTRIBUTION_METHODS[_name] = ATTRIBUTION_METHODS.pop(_name)

__all__ = [
    "AMONG_PREFIX",
    "ATTRIBUTION_METHODS",
    "AttributionMethod",
    "AttributionResult",
    "GradCAM",
    "IntegratedGradients",
    "LRP",
    "PixelMethod",
    "RegionMethod",
    "RegionResult",
    "SiamContributions",
    "is_pixel_method",
    "is_region_method",
    "make_method",
    "register",
    "resolve_targets",
]
