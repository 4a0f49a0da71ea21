"""Attribution methods: a signed map per (image, head, method), or a score per region.

``base`` holds the records and the :class:`~semcontrib.methods.base.AttributionMethod` protocol,
``registry`` the ``ATTRIBUTION_METHODS`` registry; one module per family registers its classes:
``lrp``, ``gradcam``, ``ig``, ``xrai`` (pixel methods), ``siam``, ``occlusion``, ``shapley`` and ``lime``
(region methods; the last three on the baselines and batched coalition forwards of ``coalitions``).
``semcontrib.perturbation``, ``semcontrib.lime`` and ``semcontrib.xrai`` stay one release as aliases.
``targets`` resolves which class of each head is explained.

Precision: every method runs inside the caller's :func:`semcontrib.model.compute_context`; with
``bf16`` its passes run under ``torch.autocast`` in bfloat16 where the method's ``runs_in_bf16`` is
True (``gradcam``, ``occlusion``, ``shapley``, ``siam``), in float32 where it is False (``lrp``,
``ig``: their bf16 maps were measured too far from fp32; see their notes). The heads always run in
float32 (:meth:`semcontrib.model.MultitaskModel.head_logits`) and every returned array is float32/float64.

Importing this package imports only ``base`` (no torch): the families, the registry and ``targets`` are
imported, and the registry completed, when one of their names is first asked for (``make_method``,
``ATTRIBUTION_METHODS``, a method class), so that a rerun with nothing to compute never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from semcontrib.methods.base import (  # torch-free: the engine reads levels without importing the families
    AttributionMethod,
    AttributionResult,
    PixelMethod,
    RegionMethod,
    RegionResult,
    is_pixel_method,
    is_region_method,
)

if TYPE_CHECKING:  # the names below, for type checkers; at run time they are imported when first used
    from semcontrib.methods.gradcam import GradCAM
    from semcontrib.methods.ig import IntegratedGradients
    from semcontrib.methods.lrp import LRP
    from semcontrib.methods.registry import ATTRIBUTION_METHODS, make_method, register
    from semcontrib.methods.siam import SiamContributions
    from semcontrib.methods.targets import AMONG_PREFIX, resolve_targets

# name -> the module that defines it; each imports torch (the registry's families do), so none is imported
# before one of these names is asked for, and then the registry is completed first
_LAZY = {"GradCAM": "semcontrib.methods.gradcam", "IntegratedGradients": "semcontrib.methods.ig",
         "LRP": "semcontrib.methods.lrp", "SiamContributions": "semcontrib.methods.siam",
         "ATTRIBUTION_METHODS": "semcontrib.methods.registry", "make_method": "semcontrib.methods.registry",
         "register": "semcontrib.methods.registry",
         "AMONG_PREFIX": "semcontrib.methods.targets", "resolve_targets": "semcontrib.methods.targets"}
_FAMILIES = ("semcontrib.methods.lrp", "semcontrib.methods.gradcam", "semcontrib.methods.ig",
             "semcontrib.methods.siam")
_complete = False


def complete_registry() -> None:
    """Import every method family, so that ``ATTRIBUTION_METHODS`` holds every method, in the registry's
    order as the CLI lists them: pixel methods, then region methods. Imports torch; runs once."""
    global _complete
    if _complete:
        return
    for family in _FAMILIES:
        importlib.import_module(family)
    from semcontrib.methods.lime import LimeMethod
    from semcontrib.methods.occlusion import OcclusionMethod
    from semcontrib.methods.registry import ATTRIBUTION_METHODS, register
    from semcontrib.methods.shapley import ShapleyMethod
    from semcontrib.methods.xrai import XraiMethod

    for foreign in (OcclusionMethod, ShapleyMethod, LimeMethod, XraiMethod):
        register(foreign)
    for name in ("lrp", "gradcam", "ig", "occlusion", "shapley", "siam", "lime", "xrai"):
        ATTRIBUTION_METHODS[name] = ATTRIBUTION_METHODS.pop(name)
    _complete = True


def __getattr__(name: str) -> Any:
    """The registry and the method classes, imported (with torch) when first asked for (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    complete_registry()
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


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
    "complete_registry",
    "is_pixel_method",
    "is_region_method",
    "make_method",
    "register",
    "resolve_targets",
]
