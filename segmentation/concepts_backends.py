"""The model backends of the ``concepts`` region source: ``sam3``, ``grounded-sam`` and ``clipseg``
through Hugging Face ``transformers`` (see :mod:`semcontrib.segmentation.concepts` for what each does).

Every backend takes uint8 HxWx3 and a list of prompts and returns, per prompt, scored instance
masks (:class:`~semcontrib.segmentation.concepts.ConceptInstance`). Its models load from local
folders (what ``save_pretrained`` writes) on first use, with ``local_files_only=True``; its
``identity`` is the sha256 of every file in those folders (the region cache key). torch and
transformers are imported inside the methods that use them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.imageio import sha256_file
from semcontrib.segmentation.concepts import (
    BACKENDS,
    DEFAULT_REST,
    MASK_THRESHOLD,
    SCORE_THRESHOLDS,
    ConceptBackend,
    ConceptInstance,
    ConceptSettings,
    ConceptSource,
    _split_list,
    instances_from_probabilities,
)

logger = logging.getLogger(__name__)

#: ``config.json`` ``model_type`` values each backend loads
MODEL_TYPES = {"sam3": ("sam3",), "clipseg": ("clipseg",), "grounded-sam": ("sam", "sam2")}
DETECTOR_TYPES = ("grounding-dino", "mm-grounding-dino", "owlv2", "owlvit")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# --------------------------------------------------------------------------- model folders


def folder_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"files": {relative path: sha256}}`` of every file under a model folder (symlinks are
    followed, as in a hub cache snapshot), so the key changes when any weight, config or tokenizer
    file changes, and not when the folder moves."""
    root = Path(path)
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in Path(rel).parts):
            files[rel] = sha256_file(p)
    return {"files": files}


def resolve_folder(value: str | os.PathLike[str] | None, option: str, backend: str,
                   download: bool = False) -> Path:
    """The local folder of a model named by ``option`` (a folder, or a hub id), checked.

    A hub id (``owner/name``, not an existing path) is looked up in the local Hugging Face cache,
    and fetched only with ``download=True``. Raises a one-line ``ValueError`` saying where to put
    the files when nothing usable is there.
    """
    where = ("put the files save_pretrained writes (config.json, model.safetensors and the "
             "processor's and tokenizer's files) in a folder and pass it")
    if not value:
        raise ValueError(f"concepts backend {backend!r} needs model weights: {where} as "
                         f"--region-opt {option}=FOLDER (nothing is downloaded)")
    path = Path(value).expanduser()
    if not path.exists() and _HUB_ID.match(str(value)):
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(value), local_files_only=not download))
        except Exception as exc:  # noqa: BLE001 - any hub error means: not available here
            hint = "" if download else " (add --region-opt download=true to fetch it on a machine that is online)"
            raise ValueError(f"concepts {option}: {value!r} is neither a folder nor a hub id in the local "
                             f"cache{hint}; or {where} as --region-opt {option}=FOLDER "
                             f"[{type(exc).__name__}]") from None
    if not path.is_dir():
        raise ValueError(f"concepts {option} folder not found: {path}; {where} as --region-opt {option}=FOLDER")
    if not (path / "config.json").is_file():
        raise ValueError(f"concepts {option} folder {path} has no config.json; {where} as --region-opt {option}=FOLDER")
    return path


def folder_model_type(path: Path) -> str:
    """``model_type`` of a saved model's ``config.json``."""
    try:
        return str(json.loads((path / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError) as exc:
        raise ValueError(f"concepts: cannot read {path / 'config.json'}: {exc}") from None


def _check_type(path: Path, allowed: Sequence[str], what: str) -> str:
    kind = folder_model_type(path)
    if kind not in allowed:
        raise ValueError(f"concepts: {path} holds a {kind or 'unknown'!r} model; {what} needs one of {list(allowed)}")
    return kind


def _pixels(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3, C-contiguous and writable (a copy only when needed: torch warns on read-only arrays,
    and the pipeline hands sources read-only images)."""
    return np.require(rgb, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p)) if p > 0 else -math.inf


class _HfBackend:
    """Shared parts: model folders, lazy loading, device, pickling without the loaded models."""

    name = ""

    def __init__(self, settings: ConceptSettings, folders: dict[str, Path], device: str = "cpu") -> None:
        self.settings = settings
        self.folders = folders
        self.device = device
        self._loaded: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:  # worker processes load their own copy
        state = dict(self.__dict__)
        state["_loaded"] = None
        return state

    @cached_property
    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, **{k: folder_identity(p) for k, p in sorted(self.folders.items())}}

    def loaded(self) -> dict[str, Any]:
        if self._loaded is None:
            self._loaded = self._load()
            logger.info("concepts: loaded %s from %s", self.name,
                        ", ".join(f"{k}={p}" for k, p in sorted(self.folders.items())))
        return self._loaded

    def _load(self) -> dict[str, Any]:
        raise NotImplementedError

    def _ready(self, model: Any) -> Any:
        """A loaded model on the backend's device, in inference mode."""
        return model.to(self.device).eval()


class Sam3Backend(_HfBackend):
    """``sam3``: ``Sam3Model`` + ``Sam3Processor`` from the ``model`` folder."""

    name = "sam3"

    def _load(self) -> dict[str, Any]:
        from transformers import Sam3Model, Sam3Processor

        path = self.folders["model"]
        return {"model": self._ready(Sam3Model.from_pretrained(path, local_files_only=True)),
                "processor": Sam3Processor.from_pretrained(path, local_files_only=True)}

    def find(self, rgb: np.ndarray, prompts: Sequence[str]) -> list[list[ConceptInstance]]:
        import torch

        parts = self.loaded()
        model, proc = parts["model"], parts["processor"]
        found: list[list[ConceptInstance]] = []
        with torch.inference_mode():
            image = proc(images=_pixels(rgb), return_tensors="pt")
            sizes = image["original_sizes"].tolist()
            vision = model.get_vision_features(pixel_values=image["pixel_values"].to(self.device))
            for prompt in prompts:
                text = proc(text=prompt, return_tensors="pt").to(self.device)
                out = model(vision_embeds=vision, input_ids=text["input_ids"],
                            attention_mask=text.get("attention_mask"))
                res = proc.post_process_instance_segmentation(
                    out, threshold=self.settings.score_threshold, mask_threshold=self.settings.mask_threshold,
                    target_sizes=sizes)[0]
                masks = res["masks"].bool().cpu().numpy()
                found.append([ConceptInstance(m, float(s)) for m, s in zip(masks, res["scores"].tolist())])
        return found


class GroundedSamBackend(_HfBackend):
    """``grounded-sam``: detector boxes per prompt (``detector`` folder: Grounding DINO or OWLv2),
    then SAM / SAM 2 masks from all boxes at once (``model`` folder)."""

    name = "grounded-sam"

    def _load(self) -> dict[str, Any]:
        from transformers import AutoModel, AutoModelForZeroShotObjectDetection, AutoProcessor

        det, seg = self.folders["detector"], self.folders["model"]
        detector = AutoModelForZeroShotObjectDetection.from_pretrained(det, local_files_only=True)
        return {"detector": self._ready(detector),
                "detector_processor": AutoProcessor.from_pretrained(det, local_files_only=True),
                "detector_type": folder_model_type(det),
                "model": self._ready(AutoModel.from_pretrained(seg, local_files_only=True)),
                "processor": AutoProcessor.from_pretrained(seg, local_files_only=True)}

    def boxes(self, rgb: np.ndarray, prompt: str) -> tuple[list[list[float]], list[float]]:
        """Boxes ``[x0, y0, x1, y1]`` (pixels, clipped to the image) scoring above the score
        threshold, and their scores, for one prompt."""
        import torch

        parts = self.loaded()
        det, proc, kind = parts["detector"], parts["detector_processor"], parts["detector_type"]
        h, w = rgb.shape[:2]
        thr = self.settings.score_threshold
        with torch.inference_mode():
            if kind in ("owlv2", "owlvit"):
                inputs = proc(text=[[prompt]], images=_pixels(rgb), return_tensors="pt")
                out = det(**inputs.to(self.device))
                side = max(h, w) if kind == "owlv2" else None  # OWLv2 pads to a square at the bottom/right
                res = proc.post_process_grounded_object_detection(
                    out, threshold=thr, target_sizes=[(side, side) if side else (h, w)])[0]
            else:
                text = prompt.strip().lower()
                text = text if text.endswith(".") else text + "."
                inputs = proc(images=_pixels(rgb), text=text, return_tensors="pt")
                out = det(**inputs.to(self.device))
                res = proc.post_process_grounded_object_detection(
                    out, inputs["input_ids"], threshold=thr, text_threshold=0.0, target_sizes=[(h, w)])[0]
        boxes = res["boxes"].cpu().numpy().astype(np.float64).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        scores = res["scores"].cpu().numpy().tolist()
        keep = [i for i in range(len(boxes)) if boxes[i, 2] > boxes[i, 0] and boxes[i, 3] > boxes[i, 1]]
        return [boxes[i].tolist() for i in keep], [float(scores[i]) for i in keep]

    def find(self, rgb: np.ndarray, prompts: Sequence[str]) -> list[list[ConceptInstance]]:
        import torch

        per_prompt = [self.boxes(rgb, p) for p in prompts]
        all_boxes = [b for boxes, _ in per_prompt for b in boxes]
        found: list[list[ConceptInstance]] = [[] for _ in prompts]
        if not all_boxes:
            return found
        parts = self.loaded()
        model, proc = parts["model"], parts["processor"]
        with torch.inference_mode():
            inputs = proc(images=_pixels(rgb), input_boxes=[all_boxes], return_tensors="pt")
            out = model(pixel_values=inputs["pixel_values"].to(self.device),
                        input_boxes=inputs["input_boxes"].to(self.device), multimask_output=False)
            extra = {"reshaped_input_sizes": inputs["reshaped_input_sizes"]} if "reshaped_input_sizes" in inputs else {}
            masks = proc.post_process_masks(out.pred_masks.cpu(), inputs["original_sizes"],
                                            mask_threshold=_logit(self.settings.mask_threshold), **extra)[0]
        masks = masks.reshape(len(all_boxes), *masks.shape[-2:]).bool().numpy()
        k = 0
        for p, (_boxes, scores) in enumerate(per_prompt):
            for s in scores:
                found[p].append(ConceptInstance(masks[k], s))
                k += 1
        return found


class ClipSegBackend(_HfBackend):
    """``clipseg``: ``CLIPSegForImageSegmentation`` soft maps, one per prompt (see the module docstring)."""

    name = "clipseg"

    def _load(self) -> dict[str, Any]:
        from transformers import AutoProcessor, CLIPSegForImageSegmentation

        path = self.folders["model"]
        return {"model": self._ready(CLIPSegForImageSegmentation.from_pretrained(path, local_files_only=True)),
                "processor": AutoProcessor.from_pretrained(path, local_files_only=True)}

    def probabilities(self, rgb: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """float32 P x H x W: each prompt's probability per pixel, resized bilinearly to the image."""
        import torch

        parts = self.loaded()
        model, proc = parts["model"], parts["processor"]
        h, w = rgb.shape[:2]
        with torch.inference_mode():
            inputs = proc(text=list(prompts), images=[_pixels(rgb)] * len(prompts),
                          padding=True, return_tensors="pt")
            logits = model(**inputs.to(self.device)).logits
            logits = logits.reshape(len(prompts), 1, *logits.shape[-2:]).float()
            probs = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear",
                                                    align_corners=False).sigmoid()[:, 0]
        return probs.cpu().numpy().astype(np.float32)

    def find(self, rgb: np.ndarray, prompts: Sequence[str]) -> list[list[ConceptInstance]]:
        return instances_from_probabilities(self.probabilities(rgb, prompts), self.settings)


def make_backend(name: str, settings: ConceptSettings, model: str | os.PathLike[str] | None = None,
                 detector: str | os.PathLike[str] | None = None, device: str = "cpu",
                 download: bool = False) -> ConceptBackend:
    """Check the folders of backend ``name`` and return it (its models load on first use)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown concepts backend {name!r}; choose from {list(BACKENDS)}")
    folders = {"model": resolve_folder(model, "model", name, download)}
    _check_type(folders["model"], MODEL_TYPES[name], f"the {name} backend's model folder")
    if name == "grounded-sam":
        folders["detector"] = resolve_folder(detector, "detector", name, download)
        _check_type(folders["detector"], DETECTOR_TYPES, "the grounded-sam backend's detector folder")
    elif detector:
        raise ValueError(f"concepts: option detector is only used by the grounded-sam backend, not {name!r}")
    cls = {"sam3": Sam3Backend, "grounded-sam": GroundedSamBackend, "clipseg": ClipSegBackend}[name]
    return cls(settings, folders, device)


# --------------------------------------------------------------------------- the registry factory


CONCEPT_OPTIONS = {"prompts", "backend", "model", "detector", "rest", "sides", "side_convention",
                   "score_threshold", "mask_threshold", "min_area", "assign", "device", "download"}


def make_concepts_source(arg: str | None, options: dict[str, Any]) -> ConceptSource:
    """The ``concepts:PROMPTS`` registry factory: options as given with ``--region-opt`` (strings are
    converted; unknown keys are refused). From Python an already-built :class:`ConceptBackend` may
    be passed as ``backend``."""
    from semcontrib.segmentation import _bool, _check_keys, _float, _int

    _check_keys("concepts", options, CONCEPT_OPTIONS)
    names = options.get("prompts") or arg
    if not names:
        raise ValueError('concepts needs prompts: --regions concepts:"eye,ear,rest" (or --region-opt prompts=...)')
    backend = options.get("backend", "sam3")
    kind = backend if isinstance(backend, str) else str(getattr(backend, "name", "custom"))
    if kind not in BACKENDS and isinstance(backend, str):
        raise ValueError(f"unknown concepts backend {backend!r}; choose from {list(BACKENDS)}")
    if "assign" in options and kind != "clipseg":
        raise ValueError(f"concepts: option assign is only used by the clipseg backend, not {kind!r}")
    settings = ConceptSettings(
        names=_split_list(names) if isinstance(names, str) else tuple(names),
        rest=str(options.get("rest", DEFAULT_REST)),
        sides=_split_list(options.get("sides")),
        score_threshold=_float("score_threshold", options.get("score_threshold",
                                                             SCORE_THRESHOLDS.get(kind, 0.5))),
        mask_threshold=_float("mask_threshold", options.get("mask_threshold", MASK_THRESHOLD)),
        min_area=_int("min_area", options.get("min_area", 0)),
        assign=str(options.get("assign", "argmax")),
        side_convention=str(options.get("side_convention", "subject")))
    if not isinstance(backend, str):
        return ConceptSource(settings, backend)
    return ConceptSource(settings, make_backend(
        backend, settings, model=options.get("model"), detector=options.get("detector"),
        device=str(options.get("device", "cpu")), download=_bool("download", options.get("download", False))))
