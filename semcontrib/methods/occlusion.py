"""``occlusion``: each present region replaced by the baseline, one forward each (see
:mod:`semcontrib.methods.coalitions` for the baselines and the batched forwards it is built on)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from semcontrib.methods.coalitions import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_SIGMA,
    Coalitions,
    baseline_params,
    check_inputs,
    coalition_values,
    display_maps,
    validate_common,
)
from semcontrib.model import MultitaskModel

if TYPE_CHECKING:
    from semcontrib.methods.base import RegionResult


class OcclusionMethod:
    """Occlusion of whole regions: ``c_k = f_t(x) - f_t(x with region k replaced by the baseline)``.

    Parameters
    ----------
    baseline : ``blur`` (default), ``mean`` or ``black`` (see the module docs).
    blur_sigma : sigma of the ``blur`` baseline, pixels at model resolution.
    batch_size : perturbed images per forward (memory bound; no effect on the scores).
    """

    name = "occlusion"
    level = "region"
    runs_in_bf16 = True  # forwards only; logit differences carry bf16 features' rounding (module docs)

    def __init__(self, baseline: str = "blur", blur_sigma: float = DEFAULT_BLUR_SIGMA,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        validate_common(baseline, blur_sigma, batch_size)
        self.baseline = baseline
        self.blur_sigma = float(blur_sigma)
        self.batch_size = batch_size

    @property
    def params(self) -> dict[str, Any]:
        return baseline_params(self)

    def notes(self, model: MultitaskModel) -> str:
        return (f"region occlusion, baseline {self.baseline}: score = target-logit drop when the region alone "
                "is replaced by the baseline; scores do not sum to the logit")

    def attribute_regions(self, model: MultitaskModel, tensor: torch.Tensor, targets: dict[str, torch.Tensor],
                          labels: np.ndarray, vocabulary: tuple[str, ...]) -> dict[str, RegionResult]:
        """Scores of every vocabulary region per head (see the class docs).

        Parameters
        ----------
        tensor : float (N, 3, S, S), preprocessed images.
        targets : head -> int64 (N,) target classes.
        labels : int (N, S, S) region maps at model resolution (-1 = unassigned).
        vocabulary : the K region names.

        Returns
        -------
        head -> RegionResult with scores float64 (N, K), 0 for absent regions.
        """
        from semcontrib.methods.base import RegionResult

        present = check_inputs(tensor, labels, vocabulary, targets, model)
        N, K = present.shape
        image, keep, region = [], [], []
        for n in range(N):
            image.append(n)
            keep.append(np.ones(K, bool))
            region.append(-1)
            for k in np.flatnonzero(present[n]):
                row = np.ones(K, bool)
                row[k] = False
                image.append(n)
                keep.append(row)
                region.append(int(k))
        img = np.asarray(image, np.int64)
        values = coalition_values(self, model, tensor, targets, labels, Coalitions(img, np.asarray(keep)))
        reg = np.asarray(region)
        out: dict[str, RegionResult] = {}
        for h, v in values.items():
            full = v[reg == -1]  # (N,) one original row per image, in image order
            scores = np.zeros((N, K))
            sel = reg >= 0
            scores[img[sel], reg[sel]] = full[img[sel]] - v[sel]
            out[h] = RegionResult(scores, display_maps(scores, labels), None)
        return out


