"""``sam``: Segment Anything masks as regions, labelled on the landscape vocabulary (or prompted by names).

Two modes
---------
automatic (default)
    ``segment_anything.SamAutomaticMaskGenerator`` proposes masks; overlaps are resolved by
    :func:`segmentation.partition.masks_to_partition` (the smaller mask wins, masks under
    ``min_area`` pixels are dropped, uncovered pixels are unassigned), and every kept mask is
    labelled by the same labeller as ``landscape`` (default :class:`~segmentation.landscape.RuleLabeller`),
    so SAM gives sharper boundaries with the same vocabulary and vector dimensions.
prompted (``prompts=PATH``, an annotation file readable by ``annotations``)
    each named box (rectangles, polygons and masks prompt with their bounding box) or point of the
    image becomes a ``SamPredictor`` prompt; the predicted mask gets the prompt's name. The vocabulary
    is the annotation file's set of names; overlaps follow the same smaller-wins rule.

Checkpoints are never downloaded: the path comes from the ``checkpoint`` option (CLI
``--sam-checkpoint``) or the ``SEMCONTRIB_SAM_CHECKPOINT`` environment variable. The model type
(``vit_b``, ``vit_l``, ``vit_h``) is read from the checkpoint's tensor shapes, and the state dict is
loaded with ``torch.load(weights_only=True)`` (no arbitrary unpickling).

torch and segment-anything are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.regions import ImageInput, RegionError, RegionMap, file_identity
from semcontrib.segmentation.landscape import (
    LANDSCAPE_VOCABULARY,
    Labeller,
    RuleLabeller,
    check_rgb,
    labeller_identity,
    labeller_uses_evidence,
    nearest_resize,
    resize_float,
    resize_rgb,
    working_size,
)
from semcontrib.segmentation.partition import masks_to_partition
from semcontrib.segmentation.segmodel import module_identity

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "SEMCONTRIB_SAM_CHECKPOINT"
EMBED_DIM_TO_TYPE = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
GENERATOR_DEFAULTS: dict[str, Any] = {
    "points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95, "crop_n_layers": 0, "box_nms_thresh": 0.7,
}


def sam_model_type(state_dict: Mapping[str, Any]) -> str:
    """``vit_b`` / ``vit_l`` / ``vit_h`` from the patch-embedding width of a SAM state dict."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        raise ValueError(f"not a Segment Anything checkpoint: no {key!r} tensor")
    dim = int(state_dict[key].shape[0])
    if dim not in EMBED_DIM_TO_TYPE:
        raise ValueError(f"unknown SAM image encoder width {dim}; known: {EMBED_DIM_TO_TYPE}")
    return EMBED_DIM_TO_TYPE[dim]


def load_sam(checkpoint: str | os.PathLike[str] | None, device: str = "cpu") -> Any:
    """Build a ``segment_anything.modeling.Sam`` from a local checkpoint (never downloads).

    ``checkpoint`` falls back to ``$SEMCONTRIB_SAM_CHECKPOINT``.
    """
    import torch
    from segment_anything import sam_model_registry

    path_str = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if not path_str:
        raise ValueError("the sam source needs a checkpoint: pass --sam-checkpoint PATH (option "
                         f"'checkpoint') or set {CHECKPOINT_ENV}; nothing is downloaded")
    path = Path(path_str)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path} (download it yourself, e.g. "
                                "sam_vit_b_01ec64.pth; semcontrib never downloads weights)")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model_type = sam_model_type(state)
    sam = sam_model_registry[model_type](checkpoint=None)
    sam.load_state_dict(state, strict=True)
    logger.info("loaded SAM %s from %s", model_type, path)
    return sam.to(device).eval()


def build_tiny_sam(seed: int = 0, img_size: int = 128, embed_dim: int = 32) -> Any:
    """A tiny random-weight SAM built from segment-anything's own classes (tests, benchmarks).

    ViT encoder with patch 16, depth 1, 2 heads; prompt embedding width ``embed_dim``; a one-layer
    two-way transformer in the mask decoder. Runs in well under a second per image on a CPU.
    """
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    grid = img_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=1, num_heads=2, mlp_ratio=2.0,
            out_chans=embed_dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=False, window_size=0, global_attn_indexes=()),
        prompt_encoder=PromptEncoder(embed_dim=embed_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=8),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=embed_dim, mlp_dim=2 * embed_dim,
                                          num_heads=2),
            transformer_dim=embed_dim, iou_head_depth=1, iou_head_hidden_dim=16),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


class SamSource:
    """Region source ``sam`` (see the module docstring).

    Parameters
    ----------
    model : an already-built ``segment_anything.modeling.Sam`` (tests), or ``None`` to load
        ``checkpoint``.
    checkpoint : path of a SAM checkpoint (``.pth``); default ``$SEMCONTRIB_SAM_CHECKPOINT``.
    min_area : masks with fewer pixels (at the original size) are dropped (default 100).
    labeller : labels automatic masks (default :class:`~segmentation.landscape.RuleLabeller`).
    prompts : an annotation path (COCO / Label Studio / PNG dir) for prompted mode, or ``None``.
    generator : keyword arguments for ``SamAutomaticMaskGenerator`` (defaults: ``GENERATOR_DEFAULTS``).
    max_side : working size of the labeller (as in ``landscape``).
    device : torch device for SAM (default ``"cpu"``).
    """

    name = "sam"
    uses_torch = True  # its workers import torch and run it with one thread each

    def __init__(self, model: Any = None, *, checkpoint: str | os.PathLike[str] | None = None,
                 min_area: int = 100, labeller: Labeller | None = None,
                 prompts: str | os.PathLike[str] | None = None,
                 generator: Mapping[str, Any] | None = None, max_side: int = 320,
                 device: str = "cpu") -> None:
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        unknown = set(generator or {}) - set(GENERATOR_DEFAULTS) - {
            "stability_score_offset", "crop_nms_thresh", "crop_overlap_ratio",
            "crop_n_points_downscale_factor", "min_mask_region_area"}
        if unknown:
            raise ValueError(f"unknown SAM generator options {sorted(unknown)}")
        self.checkpoint = str(checkpoint or os.environ.get(CHECKPOINT_ENV) or "")
        self._from_checkpoint = model is None
        self.model = model if model is not None else load_sam(checkpoint, device)
        if model is not None:
            self.model = model.to(device).eval()
        self.min_area = int(min_area)
        self.labeller: Labeller = labeller if labeller is not None else RuleLabeller()
        self.generator_options = {**GENERATOR_DEFAULTS, **dict(generator or {})}
        self.max_side = max_side
        self.device = device
        self._prompts = None
        if prompts is not None:
            from semcontrib.segmentation.annotations import AnnotationSource

            self._prompts = AnnotationSource(prompts)
        self._generator: Any = None
        self._predictor: Any = None

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._prompts.vocabulary if self._prompts is not None else LANDSCAPE_VOCABULARY

    @property
    def uses_evidence(self) -> bool:
        """Automatic mode labels masks with the labeller, which reads class evidence (the default
        :class:`~segmentation.landscape.RuleLabeller` does); prompted mode names masks by their
        prompts and reads none."""
        return self._prompts is None and labeller_uses_evidence(self.labeller)

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """``params`` plus the sha256 of the checkpoint (or of the in-memory model's state dict), of
        the prompts file (prompted mode) or the labeller's files (automatic mode), computed once."""
        ident = dict(self.params)
        ident["model_identity"] = (file_identity(self.checkpoint) if self.checkpoint and self._from_checkpoint
                                   else module_identity(self.model))
        if self._prompts is not None:
            ident["prompts_identity"] = self._prompts.cache_identity
        else:
            ident["labeller_identity"] = labeller_identity(self.labeller)
        return ident

    @property
    def params(self) -> dict[str, Any]:
        ident = Path(self.checkpoint).name if self.checkpoint else f"in-memory:{type(self.model).__name__}"
        p: dict[str, Any] = {"checkpoint": ident, "min_area": self.min_area,
                             "generator": self.generator_options, "max_side": self.max_side}
        if self._prompts is not None:
            p["prompts"] = str(self._prompts.path)
        else:
            p.update(self.labeller.params)
        return p

    # ------------------------------------------------------------------ automatic

    def masks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """SAM's automatic masks for uint8 HxWx3, as bool HxW arrays."""
        import torch
        from segment_anything import SamAutomaticMaskGenerator

        if self._generator is None:
            self._generator = SamAutomaticMaskGenerator(self.model, output_mode="binary_mask",
                                                        **self.generator_options)
        with torch.no_grad():
            found = self._generator.generate(np.ascontiguousarray(rgb))
        return [np.asarray(m["segmentation"], dtype=bool) for m in found]

    def segment(self, image: ImageInput) -> RegionMap:
        rgb = check_rgb(image)
        if self._prompts is not None:
            return self._segment_prompted(image, rgb)
        h, w = rgb.shape[:2]
        masks = self.masks(rgb)
        _, owner = masks_to_partition(masks, None, self.min_area, shape=(h, w))
        kept, segments_full = np.unique(owner, return_inverse=True)
        segments_full = segments_full.reshape(h, w).astype(np.int32)
        if kept.size and kept[0] == -1:
            segments_full -= 1  # -1 stays unassigned, masks become 0..S-1
        n_segments = int(segments_full.max()) + 1 if segments_full.size else 0
        logger.debug("sam %s: %d masks, %d kept", image.image_id, len(masks), n_segments)
        if n_segments == 0:
            return RegionMap(np.full((h, w), -1, dtype=np.int32), LANDSCAPE_VOCABULARY)
        size = working_size(h, w, self.max_side)
        small = resize_rgb(rgb, size)
        seg_small = nearest_resize(segments_full, size)
        evidence = {k: resize_float(np.asarray(v), size) for k, v in image.evidence.items()}
        seg_labels = np.asarray(self.labeller.label(small, seg_small, evidence), dtype=np.int64)
        if seg_labels.size < n_segments:  # a tiny mask vanished at the working size: label it other
            seg_labels = np.concatenate([seg_labels, np.full(n_segments - seg_labels.size,
                                                             LANDSCAPE_VOCABULARY.index("other"))])
        lut = np.concatenate([seg_labels, [-1]]).astype(np.int32)
        return RegionMap(lut[segments_full], LANDSCAPE_VOCABULARY)

    # ------------------------------------------------------------------ prompted

    def _segment_prompted(self, image: ImageInput, rgb: np.ndarray) -> RegionMap:
        import torch
        from segment_anything import SamPredictor

        from semcontrib.segmentation.annotations import check_size

        assert self._prompts is not None
        h, w = rgb.shape[:2]
        rec = self._prompts.lookup(image)
        vocab = self._prompts.vocabulary
        if rec is None:
            return self._prompts._missing(image, h, w)
        if rec.errors:
            raise RegionError(f"{self._prompts.path}: image {image.image_id!r}: {rec.errors[0]}", permanent=True)
        check_size(image, (rec.height, rec.width), (h, w), self._prompts.path)
        if self._predictor is None:
            self._predictor = SamPredictor(self.model)
        index = {n: i for i, n in enumerate(vocab)}
        masks, labels = [], []
        with torch.no_grad():
            self._predictor.set_image(np.ascontiguousarray(rgb))
            for region in rec.regions:
                if region.kind == "point" and region.points is not None:
                    out, _, _ = self._predictor.predict(point_coords=np.asarray(region.points),
                                                        point_labels=np.ones(len(region.points)),
                                                        multimask_output=False)
                else:
                    try:
                        box = region.bounding_box(h, w)
                    except ValueError as exc:
                        raise RegionError(f"{self._prompts.path}: image {image.image_id!r}: {region.kind} "
                                          f"{region.label!r}: {exc}", permanent=True) from None
                    if box is None:
                        continue
                    out, _, _ = self._predictor.predict(box=np.asarray(box, dtype=np.float64),
                                                        multimask_output=False)
                masks.append(np.asarray(out[0], dtype=bool))
                labels.append(index[region.label])
        label_map, _ = masks_to_partition(masks, labels, self.min_area, shape=(h, w))
        return RegionMap(label_map, vocab)
