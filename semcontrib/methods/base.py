"""What every attribution method is: the result records and the :class:`AttributionMethod` protocol.

A method has a ``name`` (its CLI name and registry key), a ``level``, ``runs_in_bf16``, ``params``
(what its store key hashes) and ``notes(model)`` (recorded in the manifest), and one verb for a batch:

* ``level = "pixel"`` (:class:`PixelMethod`): ``attribute_batch(model, tensor, targets)`` returns per
  head an :class:`AttributionResult`, a signed map per image that the engine aggregates over regions;
* ``level = "region"`` (:class:`RegionMethod`): ``attribute_regions(model, tensor, targets, labels,
  vocabulary)`` returns per head a :class:`RegionResult`, one score per vocabulary region.

``tensor`` is float NCHW (B images, normalised for the model); ``targets`` maps a head to an int64
tensor (B,) of class indices; ``labels`` is int32 (B, S, S) region labels at model resolution.
This module needs neither torch nor the model at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch

    from semcontrib.model import MultitaskModel

LEVELS = ("pixel", "region")


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


@runtime_checkable
class AttributionMethod(Protocol):
    """What the engine, the manifest and ``validate`` read of every method."""

    name: str
    level: str  # one of LEVELS
    runs_in_bf16: bool

    @property
    def params(self) -> dict[str, Any]: ...

    def notes(self, model: MultitaskModel) -> dict[str, str] | str: ...


@runtime_checkable
class PixelMethod(AttributionMethod, Protocol):
    """A method whose verb returns a signed map per head and image (``level = "pixel"``)."""

    def attribute_batch(self, model: MultitaskModel, tensor: torch.Tensor,
                        targets: dict[str, torch.Tensor]) -> dict[str, AttributionResult]: ...


@runtime_checkable
class RegionMethod(AttributionMethod, Protocol):
    """A method whose verb scores the regions of a region map directly (``level = "region"``)."""

    def attribute_regions(self, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                          labels: np.ndarray, vocabulary: tuple[str, ...]) -> dict[str, RegionResult]: ...


def is_region_method(method: AttributionMethod) -> TypeGuard[RegionMethod]:
    """True for a region-level method (its verb is ``attribute_regions``)."""
    return method.level == "region"


def is_pixel_method(method: AttributionMethod) -> TypeGuard[PixelMethod]:
    """True for a pixel-level method (its verb is ``attribute_batch``)."""
    return method.level == "pixel"


def select(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row ``i``, ``logits[i, target[i]]`` (float (B, C), int64 (B,) -> float (B,))."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)
