"""The ``segmentation-model`` labeller: a torchvision semantic segmentation model + a class mapping.

Any torchvision segmentation model (``deeplabv3_resnet50``, ``deeplabv3_mobilenet_v3_large``,
``fcn_resnet50``, ``lraspp_mobilenet_v3_large``, ...) whose weights come from a checkpoint the user
names (a state dict read with ``torch.load(weights_only=True)``; never downloaded), or an
already-built ``nn.Module`` returning ``{"out": N x C x h x w}`` (or a tensor) logits.

A *mapping* file (JSON) names the model's classes in output order and maps each to a landscape
vocabulary name::

    {"classes": ["background", "aeroplane", ...], "mapping": {"background": "other", ...}}

Examples ship in ``data/mapping_ade20k.json`` (150 ADE20K classes) and ``data/mapping_voc.json``
(21 Pascal VOC classes); ``mapping=ade20k`` / ``mapping=voc`` select them.

The model runs on the labeller's working-size image (ImageNet mean/std normalisation); each pixel's
arg-max class maps to a vocabulary index and each segment takes the majority of its pixels.

torch and torchvision are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.paths import data_path
from semcontrib.regions import RegionError, file_identity
from semcontrib.segmentation.landscape import LANDSCAPE_VOCABULARY

logger = logging.getLogger(__name__)

BUNDLED_MAPPINGS = {"ade20k": "mapping_ade20k.json", "voc": "mapping_voc.json"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def mapping_path(spec: str | os.PathLike[str]) -> Path:
    """The file of a mapping spec: a bundled name (``ade20k``, ``voc``) or a path."""
    key = str(spec)
    return Path(data_path(BUNDLED_MAPPINGS[key])) if key in BUNDLED_MAPPINGS else Path(key)


def module_identity(model: Any) -> dict[str, Any]:
    """``{"class": name, "state_sha256": hash}`` of an in-memory ``nn.Module``'s state dict (names,
    dtypes, shapes and bytes of every tensor, one tensor at a time), so two different in-memory
    models never share a region cache key."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {"class": type(model).__name__, "state_sha256": digest.hexdigest()}


def load_mapping(spec: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Read a class mapping; return (class names, int LUT class index -> vocabulary index)."""
    path = mapping_path(spec)
    if not Path(path).is_file():
        raise FileNotFoundError(f"class mapping not found: {path} (or use one of {sorted(BUNDLED_MAPPINGS)})")
    data = json.loads(Path(path).read_text())
    classes = data.get("classes")
    mapping = data.get("mapping")
    if not isinstance(classes, list) or not isinstance(mapping, dict):
        raise ValueError(f"{path}: a mapping needs 'classes' (a list) and 'mapping' (an object)")
    lut = []
    for c in classes:
        target = mapping.get(c, data.get("default"))
        if target not in LANDSCAPE_VOCABULARY:
            raise ValueError(f"{path}: class {c!r} maps to {target!r}, not one of {LANDSCAPE_VOCABULARY}")
        lut.append(LANDSCAPE_VOCABULARY.index(target))
    return [str(c) for c in classes], np.asarray(lut, dtype=np.int64)


def load_segmentation_model(architecture: str, checkpoint: str | os.PathLike[str], num_classes: int) -> Any:
    """A torchvision segmentation model with weights from a local state dict (never downloads)."""
    import torch
    import torchvision

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"segmentation model checkpoint not found: {path}")
    if architecture not in torchvision.models.list_models(module=torchvision.models.segmentation):
        raise ValueError(f"unknown torchvision segmentation model {architecture!r}; choose from "
                         f"{torchvision.models.list_models(module=torchvision.models.segmentation)}")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    aux = any(k.startswith("aux_classifier.") for k in state)
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if not architecture.startswith("lraspp"):
        kwargs["aux_loss"] = aux
    model = torchvision.models.get_model(architecture, **kwargs)
    model.load_state_dict(state, strict=True)
    return model.eval()


class SegmentationModelLabeller:
    """Label segments by the majority of a segmentation model's per-pixel classes.

    Parameters
    ----------
    mapping : a mapping file path or ``"ade20k"`` / ``"voc"``.
    model : an ``nn.Module`` (input float N x 3 x h x w normalised with ImageNet mean/std; output
        ``{"out": logits}`` or logits N x C x h x w with C = number of mapped classes).
    architecture, checkpoint : build the model with :func:`load_segmentation_model` instead.
    device : torch device (default ``"cpu"``).
    """

    name = "segmentation-model"
    uses_evidence = False  # labels come from the segmentation model, not the classifier's evidence

    def __init__(self, mapping: str | os.PathLike[str], model: Any = None, architecture: str | None = None,
                 checkpoint: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        self.mapping = str(mapping)
        self.classes, self.lut = load_mapping(mapping)
        if model is None:
            if not architecture or not checkpoint:
                raise ValueError("the segmentation-model labeller needs a model, or both 'seg_model' "
                                 "(a torchvision architecture) and 'seg_checkpoint' (a local state dict)")
            model = load_segmentation_model(architecture, checkpoint, len(self.classes))
        self.model = model.to(device).eval()
        self.architecture = architecture or type(model).__name__
        self.checkpoint = Path(checkpoint).name if checkpoint else "in-memory"
        self._checkpoint_path = Path(checkpoint) if checkpoint else None
        self.device = device

    @property
    def params(self) -> dict[str, Any]:
        return {"labeller": self.name, "architecture": self.architecture, "checkpoint": self.checkpoint,
                "mapping": self.mapping}

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """``params`` plus the sha256 of the checkpoint (or of an in-memory model's state dict) and
        of the mapping file, computed once."""
        model = (file_identity(self._checkpoint_path) if self._checkpoint_path is not None
                 else module_identity(self.model))
        return {**self.params, "model_identity": model, "mapping_identity": file_identity(mapping_path(self.mapping))}

    def pixel_labels(self, rgb: np.ndarray) -> np.ndarray:
        """Vocabulary index per pixel (int64 HxW) for uint8 HxWx3."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)
        t = (t - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        with torch.no_grad():
            out = self.model(t.unsqueeze(0).to(self.device))
        logits = out["out"] if isinstance(out, Mapping) else out
        if logits.shape[1] != len(self.lut):
            raise RegionError(f"the segmentation model outputs {logits.shape[1]} classes but the mapping "
                              f"{self.mapping} names {len(self.lut)}", permanent=True)
        if tuple(logits.shape[-2:]) != rgb.shape[:2]:
            logits = torch.nn.functional.interpolate(logits, size=rgb.shape[:2], mode="bilinear",
                                                     align_corners=False)
        cls = logits[0].argmax(0).cpu().numpy()
        return self.lut[cls]

    def label(self, rgb: np.ndarray, segments: np.ndarray, evidence: Mapping[str, np.ndarray]) -> np.ndarray:
        vocab_px = self.pixel_labels(rgb)
        n = int(segments.max()) + 1 if segments.size else 0
        valid = segments >= 0
        k = len(LANDSCAPE_VOCABULARY)
        votes = np.bincount(segments[valid] * k + vocab_px[valid], minlength=n * k).reshape(n, k)
        out = votes.argmax(1)
        out[votes.sum(1) == 0] = LANDSCAPE_VOCABULARY.index("other")
        return out
