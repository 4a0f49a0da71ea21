"""XRAI (Kapishnikov et al. 2019): Integrated Gradients made region-wise over a multi-scale over-segmentation.

Computed with the PAIR ``saliency`` package (``pip install semcontrib[study]``; Apache-2.0, numpy and
scikit-image only, no TensorFlow), from semcontrib's own batched IG (:class:`semcontrib.attribution.
IntegratedGradients`: one set of interpolated forwards shared by every head):

1. **Base attribution.** IG of each head's target logit, summed over colour channels (the map the
   ``ig`` method stores), with ``n_steps`` and ``baseline`` recorded in the method's parameters.
2. **Segments.** ``saliency``'s multi-scale Felzenszwalb over-segmentation of the image (scales 50,
   100, 150, 250, 500 and 1200 at 224 x 224, sigma 0.8, minimum segment 150 pixels, each segment
   dilated by a disk of radius 5), computed once per image and shared by every head.
3. **Ranking.** ``saliency.core.XRAI`` with the base attribution and the segments given: segments are
   added greedily by the gain in density (mean base attribution over the pixels a segment adds) until
   the image is covered (``area_threshold`` 1.0; ``algorithm="full"``, or ``"fast"``, which ranks
   the segments once, ignoring overlaps).
4. **Map.** Each pixel holds the density of the segment it was added with; pixels no segment covers
   hold the density of what is left. This map is then aggregated over the region map like every
   pixel method's.

Sign. XRAI is usually shown as a ranking, but its map here is **signed** and is not made positive:
the base attribution is the signed IG of the target, so a segment whose pixels lower the target logit
on average has a negative density (and is ranked after every segment that raises it). Each pixel's
value is the mean signed IG of the pixels added with it, so the map's total equals the IG map's total
(IG's completeness carries over: ``delta`` is IG's convergence delta), and a region's sum is the IG
of its pixels, redistributed within XRAI's segments. (``saliency`` reduces a 3-channel base
attribution by the channel maximum; the channel-summed IG is given to it in all three channels, so
that reduction leaves it unchanged.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from semcontrib.model import MultitaskModel
from semcontrib.settings import IG_BASELINES, XRAI_ALGORITHMS

if TYPE_CHECKING:
    from semcontrib.methods.base import AttributionResult

logger = logging.getLogger(__name__)


def _saliency_xrai() -> Any:
    try:
        from saliency.core import xrai
    except ImportError:
        raise ValueError("method 'xrai' needs the PAIR saliency package: pip install 'semcontrib[study]' "
                         "(or pip install saliency)") from None
    return xrai


def xrai_segments(rgb: np.ndarray) -> list[np.ndarray]:
    """``saliency``'s multi-scale Felzenszwalb segments of one image.

    Parameters
    ----------
    rgb : float (H, W, 3), any value range (``saliency`` rescales it to [-1, 1]).

    Returns
    -------
    list of bool (H, W) masks (dilated, overlapping).
    """
    return list(_saliency_xrai()._get_segments_felzenszwalb(np.asarray(rgb, np.float64)))


def xrai_map(attribution: np.ndarray, segments: list[np.ndarray], algorithm: str = "full") -> np.ndarray:
    """XRAI's map of one image from a signed base attribution.

    Parameters
    ----------
    attribution : float (H, W), the base attribution (channel-summed).
    segments : bool (H, W) masks, e.g. :func:`xrai_segments`.
    algorithm : ``full`` or ``fast`` (``saliency.core.XRAIParameters.algorithm``).

    Returns
    -------
    float64 (H, W): each pixel holds the density of the segment it was added with (see the module docs).
    """
    xrai = _saliency_xrai()
    attr = np.asarray(attribution, np.float64)
    base = np.repeat(attr[..., None], 3, axis=-1)  # saliency reduces channels by max: unchanged
    params = xrai.XRAIParameters(algorithm=algorithm)
    out = xrai.XRAI().GetMaskWithDetails(base, call_model_function=None, segments=segments,
                                         base_attribution=base, extra_parameters=params)
    return np.asarray(out.attribution_mask, np.float64)


class XraiMethod:
    """XRAI over semcontrib's IG (see the module docs).

    Parameters
    ----------
    n_steps : IG quadrature points of the base attribution.
    baseline : IG baseline, ``black`` or ``blurred``.
    algorithm : ``full`` (default, the paper's greedy ranking) or ``fast``.
    internal_batch_size : interpolated images per IG forward (memory bound).
    """

    name = "xrai"
    level = "pixel"
    runs_in_bf16 = False  # its IG base attribution runs in float32 (see IntegratedGradients)

    def __init__(self, n_steps: int = 32, baseline: str = "black", algorithm: str = "full",
                 internal_batch_size: int = 16) -> None:
        from semcontrib.methods.ig import IntegratedGradients

        if baseline not in IG_BASELINES:
            raise ValueError(f"unknown xrai IG baseline {baseline!r}; choose from {IG_BASELINES}")
        if algorithm not in XRAI_ALGORITHMS:
            raise ValueError(f"unknown xrai algorithm {algorithm!r}; choose from {XRAI_ALGORITHMS}")
        self.ig = IntegratedGradients(n_steps=n_steps, baseline=baseline, internal_batch_size=internal_batch_size)
        self.algorithm = algorithm

    @property
    def params(self) -> dict[str, Any]:
        return {"base": "ig", "n_steps": self.ig.n_steps, "baseline": self.ig.baseline, "method": self.ig.method,
                "algorithm": self.algorithm, "segments": "saliency felzenszwalb"}

    def notes(self, model: MultitaskModel) -> str:
        return (f"XRAI (PAIR saliency {_saliency_version()}) over signed IG ({self.ig.n_steps} steps, "
                f"{self.ig.baseline} baseline): each pixel = mean IG of its XRAI segment; signed, totals equal "
                "IG's; delta = IG's convergence delta")

    def images(self, model: MultitaskModel, tensor: torch.Tensor) -> np.ndarray:
        """float64 (N, S, S, 3) the images in [0, 1] (the preprocessing undone)."""
        mean = torch.tensor(model.spec.mean, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(model.spec.std, dtype=torch.float64).view(1, 3, 1, 1)
        x = tensor.detach().cpu().double() * std + mean
        return x.permute(0, 2, 3, 1).clamp(0, 1).numpy()

    def attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                        targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]:
        from semcontrib.methods.base import AttributionResult

        _saliency_xrai()  # fail before IG's cost when the package is missing
        ig = self.ig.attribute_batch(model, tensor, targets)
        segments = [xrai_segments(rgb) for rgb in self.images(model, tensor)]
        out: dict[str, AttributionResult] = {}
        for h, res in ig.items():
            maps = np.stack([xrai_map(res.maps[n], segments[n], self.algorithm) for n in range(len(segments))])
            out[h] = AttributionResult(maps.astype(np.float32), res.delta)
        return out

    def attribute_naive(self, model: MultitaskModel, tensor: torch.Tensor, head: str, target: int) -> np.ndarray:
        """One image and head: captum's IG (:meth:`IntegratedGradients.attribute_naive`), then XRAI."""
        base = self.ig.attribute_naive(model, tensor, head, target)
        return xrai_map(base, xrai_segments(self.images(model, tensor)[0]), self.algorithm).astype(np.float32)


def _saliency_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("saliency")
    except PackageNotFoundError:
        return "missing"
