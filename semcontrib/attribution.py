"""Attribution methods under their historical import path: this module re-exports :mod:`semcontrib.methods`.

New code imports from :mod:`semcontrib.methods` (the records and the protocol from
:mod:`semcontrib.methods.base`); the names below stay importable from here for one release.

``ATTRIBUTION_METHODS`` maps the CLI name to the method class:

>>> from semcontrib.attribution import ATTRIBUTION_METHODS
>>> list(ATTRIBUTION_METHODS)
['lrp', 'gradcam', 'ig', 'occlusion', 'shapley', 'siam', 'lime', 'xrai']
>>> sorted({cls.level for cls in ATTRIBUTION_METHODS.values()})
['pixel', 'region']
"""

from __future__ import annotations

from semcontrib.methods import (
    AMONG_PREFIX,
    ATTRIBUTION_METHODS,
    LRP,
    AttributionMethod,
    AttributionResult,
    GradCAM,
    IntegratedGradients,
    PixelMethod,
    RegionMethod,
    RegionResult,
    SiamContributions,
    is_pixel_method,
    is_region_method,
    make_method,
    resolve_targets,
)
from semcontrib.methods.base import select as _select
from semcontrib.methods.lrp import prefixed_canonizers
from semcontrib.methods.targets import class_indices

_prefixed_canonizers = prefixed_canonizers  # the old private names (one release)
_class_indices = class_indices

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
    "_class_indices",
    "_prefixed_canonizers",
    "_select",
    "class_indices",
    "prefixed_canonizers",
    "is_pixel_method",
    "is_region_method",
    "make_method",
    "resolve_targets",
]
