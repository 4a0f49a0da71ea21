"""Moved to :mod:`semcontrib.methods`: the baselines and batched coalition forwards in
:mod:`semcontrib.methods.coalitions`, ``occlusion`` in :mod:`semcontrib.methods.occlusion`, ``shapley`` in
:mod:`semcontrib.methods.shapley`. This module re-exports their names for one release."""

from semcontrib.methods.coalitions import (  # noqa: F401
    BASELINES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_SIGMA,
    Coalitions,
    baseline_tensor,
    forward_coalitions,
    present_regions,
)
from semcontrib.methods.occlusion import OcclusionMethod  # noqa: F401
from semcontrib.methods.shapley import ShapleyMethod, exact_shapley, shapley_weights  # noqa: F401
