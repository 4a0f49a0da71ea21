"""``concepts:PROMPTS``: regions named by text prompts, found by a promptable segmentation model.

``concepts:eye,ear,nose,cat,rest`` asks a model for every instance of each prompt; the vocabulary is
the list, in order. The name ``rest`` (another with option ``rest=NAME``) is not prompted: it takes
every pixel that no prompt claims. Without a rest name in the list those pixels are unassigned
(``-1``), as in ``sam`` and ``annotations``. An image where nothing is found is all ``rest``.

Backends (option ``backend``), all through Hugging Face ``transformers``
------------------------------------------------------------------------
``sam3`` (default)
    ``Sam3Model`` + ``Sam3Processor``: the image's vision features are computed once, then each
    prompt is decoded into scored instance masks.
``grounded-sam``
    a zero-shot detector (``GroundingDinoForObjectDetection`` or ``Owlv2ForObjectDetection``, from
    the ``detector`` folder) finds scored boxes for each prompt; ``SamModel`` or ``Sam2Model`` (the
    ``model`` folder) turns all the boxes of the image into masks in one pass of its mask decoder.
``clipseg``
    ``CLIPSegForImageSegmentation``: one soft map per prompt (all prompts in one batch). With
    ``assign=argmax`` (default) a pixel can only go to the prompt with the highest probability; with
    ``assign=threshold`` every prompt above ``mask_threshold`` claims it and the overlap rule decides.
    The instances of a prompt are the connected components (8-neighbourhood) of what it claims, each
    scored by its peak probability.

From instances to regions (:func:`concept_labels`)
--------------------------------------------------
1. An instance is kept when its score is above ``score_threshold`` and it has at least
   ``min_area`` pixels (and at least one); a mask pixel is on when its probability is above
   ``mask_threshold``.
2. The instances of one prompt merge into its region; a prompt named in ``sides`` becomes two
   regions, ``left_NAME`` and ``right_NAME`` (see :func:`split_sides`).
3. Overlaps between regions follow the shared rule of :func:`segmentation.partition.masks_to_partition`:
   the smaller region wins (an eye on a face, a face on a person).
4. Pixels no region claims go to the rest name (or stay unassigned without one).

Sides are **the subject's own** by default (``side_convention=subject``), as in the ``faces`` source
and the shipped part annotations: the subject is taken to face the camera, so ``left_eye`` is the
instance on the picture's *right*. Nothing checks which way the subject faces (a cat seen from
behind gets its sides swapped). With ``side_convention=picture``, ``left_eye`` is the instance on the
left of the image as you look at it. The split itself is by position only (:func:`split_sides`).

Weights come only from a local folder (what ``save_pretrained`` writes) or, with ``download=true``
and a network, from a hub id; nothing is downloaded otherwise. The region cache key
(:attr:`ConceptSource.cache_identity`) holds the prompts, every option that changes the output,
and the sha256 of every file in the model folders, so editing the prompt list or replacing the
weights recomputes the regions, while moving the folder does not.

torch and transformers are imported inside the backends, when a model is first used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

import numpy as np

from semcontrib.regions import UNASSIGNED, ImageInput, RegionMap
from semcontrib.segmentation.partition import masks_to_partition

logger = logging.getLogger(__name__)

BACKENDS = ("sam3", "grounded-sam", "clipseg")
DEFAULT_REST = "rest"
#: default ``score_threshold`` per backend: SAM 3's instance score (detection logit times presence),
#: the detector's box score, CLIPSeg's peak probability of a connected component
SCORE_THRESHOLDS = {"sam3": 0.5, "grounded-sam": 0.3, "clipseg": 0.5}
MASK_THRESHOLD = 0.5
ASSIGN_MODES = ("argmax", "threshold")
#: ``subject``: ``left_X`` is the subject's own left, on the picture's right (the subject is taken to face
#: the camera), as in ``faces``; ``picture``: ``left_X`` is on the picture's left
SIDE_CONVENTIONS = ("subject", "picture")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ConceptInstance:
    """One instance a backend found for one prompt.

    Attributes
    ----------
    mask : bool HxW at the image's size.
    score : the backend's confidence in [0, 1] (see :data:`SCORE_THRESHOLDS`).
    """

    mask: np.ndarray
    score: float


def _split_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"eye, ear"`` / ``["eye", "ear"]`` -> ``("eye", "ear")``; quotes around the list or an item
    (left by a shell or a config file) are removed; empty items are refused."""
    if value is None:
        return ()
    items = value.strip().strip("'\"").split(",") if isinstance(value, str) else list(value)
    out = tuple(str(v).strip().strip("'\"").strip() for v in items)
    if isinstance(value, str) and not value.strip().strip("'\""):
        return ()
    if any(not v for v in out):
        raise ValueError(f"empty name in the list {value!r} (names are separated by commas)")
    return out


@dataclass(frozen=True)
class ConceptSettings:
    """What the ``concepts`` source asks for and how it turns instances into regions.

    Attributes
    ----------
    names : the region names in order (prompts and the rest name), e.g. ``("eye", "ear", "rest")``;
        a comma-separated string is split.
    rest : the name that is not prompted and takes unclaimed pixels (default ``"rest"``).
    sides : prompts split into ``left_``/``right_`` regions by position (:func:`split_sides`).
    side_convention : ``subject`` (default: ``left_X`` is the subject's left, on the picture's right) or
        ``picture`` (``left_X`` is on the picture's left); see :data:`SIDE_CONVENTIONS`.
    score_threshold : instances must score above it (default: :data:`SCORE_THRESHOLDS` of the backend).
    mask_threshold : a pixel belongs to an instance when its probability is above it (default 0.5).
    min_area : instances with fewer pixels are dropped (default 0).
    assign : CLIPSeg only: ``argmax`` (a pixel goes to its most likely prompt) or ``threshold``.
    """

    names: tuple[str, ...]
    rest: str = DEFAULT_REST
    sides: tuple[str, ...] = ()
    score_threshold: float = 0.5
    mask_threshold: float = MASK_THRESHOLD
    min_area: int = 0
    assign: str = "argmax"
    side_convention: str = "subject"

    def __post_init__(self) -> None:
        names = _split_list(self.names) if isinstance(self.names, str) else tuple(self.names)
        object.__setattr__(self, "names", tuple(str(n).strip() for n in names))
        object.__setattr__(self, "sides", _split_list(self.sides))
        object.__setattr__(self, "rest", str(self.rest).strip())
        if not self.names or any(not n for n in self.names):
            raise ValueError("concepts needs a comma-separated list of prompts, e.g. concepts:eye,ear,rest")
        dup = sorted({n for n in self.names if self.names.count(n) > 1})
        if dup:
            raise ValueError(f"concepts: prompt(s) {dup} appear more than once")
        if not self.rest:
            raise ValueError("concepts: the rest name must not be empty")
        if not self.prompts:
            raise ValueError(f"concepts: nothing to prompt besides the rest name {self.rest!r}")
        bad = [s for s in self.sides if s not in self.prompts]
        if bad:
            raise ValueError(f"concepts: sides {bad} are not among the prompts {list(self.prompts)}")
        vocab = self.vocabulary
        clash = sorted({v for v in vocab if vocab.count(v) > 1})
        if clash:
            raise ValueError(f"concepts: region name(s) {clash} would appear twice after splitting sides")
        for key in ("score_threshold", "mask_threshold"):
            v = float(getattr(self, key))
            if not 0.0 <= v < 1.0 or math.isnan(v):
                raise ValueError(f"concepts: {key} must be in [0, 1), got {v}")
            object.__setattr__(self, key, v)
        if int(self.min_area) < 0:
            raise ValueError(f"concepts: min_area must be >= 0, got {self.min_area}")
        object.__setattr__(self, "min_area", int(self.min_area))
        if self.assign not in ASSIGN_MODES:
            raise ValueError(f"concepts: assign must be one of {ASSIGN_MODES}, got {self.assign!r}")
        if self.side_convention not in SIDE_CONVENTIONS:
            raise ValueError(f"concepts: side_convention must be one of {SIDE_CONVENTIONS}, "
                             f"got {self.side_convention!r}")

    @property
    def prompts(self) -> tuple[str, ...]:
        """The names sent to the model (every name but the rest name), in order."""
        return tuple(n for n in self.names if n != self.rest)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The region names: the list in order, each side-split prompt as ``left_X, right_X``."""
        out: list[str] = []
        for n in self.names:
            out.extend((f"left_{n}", f"right_{n}") if n in self.sides else (n,))
        return tuple(out)

    @property
    def params(self) -> dict[str, Any]:
        return {"prompts": list(self.names), "rest": self.rest, "sides": list(self.sides),
                "score_threshold": self.score_threshold, "mask_threshold": self.mask_threshold,
                "min_area": self.min_area, "assign": self.assign, "side_convention": self.side_convention}


# --------------------------------------------------------------------------- the pure part


def split_sides(instances: Sequence[ConceptInstance], width: int) -> tuple[list[ConceptInstance],
                                                                             list[ConceptInstance]]:
    """Split the instances of one prompt into (picture-left, picture-right) by column centroid.

    With two or more instances the dividing line is halfway between the leftmost and the rightmost
    centroid (a pair of eyes splits into one each); with one instance, or when all centroids
    coincide, it is the image's vertical centre line ``width / 2``. An instance whose centroid lies
    exactly on the line goes right. Pixel ``(row i, col j)`` has centre column ``j + 0.5``.

    >>> m = np.zeros((2, 6), bool); a = m.copy(); a[:, 0] = True; b = m.copy(); b[:, 4] = True
    >>> left, right = split_sides([ConceptInstance(b, 0.9), ConceptInstance(a, 0.8)], 6)
    >>> [i.score for i in left], [i.score for i in right]
    ([0.8], [0.9])
    """
    if not instances:
        return [], []
    cols = np.arange(width, dtype=np.float64) + 0.5
    centres = []
    for inst in instances:
        per_col = np.asarray(inst.mask, bool).sum(axis=0)
        centres.append(float((per_col * cols).sum() / max(per_col.sum(), 1)))
    line = (min(centres) + max(centres)) / 2 if max(centres) > min(centres) else width / 2
    left = [i for i, c in zip(instances, centres) if c < line]
    right = [i for i, c in zip(instances, centres) if c >= line]
    return left, right


def concept_labels(found: Sequence[Sequence[ConceptInstance]], settings: ConceptSettings,
                   shape: tuple[int, int]) -> np.ndarray:
    """int32 HxW labels over ``settings.vocabulary`` from the instances found for each prompt.

    ``found[p]`` are the instances of ``settings.prompts[p]``. Thresholds, merging, sides, the
    smaller-wins overlap rule and the rest region as in the module docstring.

    >>> s = ConceptSettings(("eye", "cat", "rest"))
    >>> cat = np.zeros((2, 4), bool); cat[:, 1:] = True
    >>> eye = np.zeros((2, 4), bool); eye[0, 2] = True
    >>> concept_labels([[ConceptInstance(eye, 0.9)], [ConceptInstance(cat, 0.8)]], s, (2, 4))
    array([[2, 1, 0, 1],
           [2, 1, 1, 1]], dtype=int32)
    """
    prompts = settings.prompts
    if len(found) != len(prompts):
        raise ValueError(f"expected instances for {len(prompts)} prompts, got {len(found)}")
    vocab = settings.vocabulary
    index = {n: i for i, n in enumerate(vocab)}
    h, w = shape
    masks: list[np.ndarray] = []
    labels: list[int] = []

    def add(name: str, kept: Sequence[ConceptInstance]) -> None:
        if kept:
            merged = np.zeros((h, w), bool)
            for inst in kept:
                merged |= np.asarray(inst.mask, bool)
            masks.append(merged)
            labels.append(index[name])

    for prompt, instances in zip(prompts, found):
        kept = []
        for inst in instances:
            mask = np.asarray(inst.mask)
            if mask.shape != (h, w):
                raise ValueError(f"prompt {prompt!r}: mask is {mask.shape}, expected {(h, w)}")
            if float(inst.score) > settings.score_threshold and np.count_nonzero(mask) >= max(settings.min_area, 1):
                kept.append(inst)
        if prompt in settings.sides:
            picture_left, picture_right = split_sides(kept, w)
            subject = settings.side_convention == "subject"  # facing the camera: its left is the picture's right
            add(f"left_{prompt}", picture_right if subject else picture_left)
            add(f"right_{prompt}", picture_left if subject else picture_right)
        else:
            add(prompt, kept)
    label_map, _ = masks_to_partition(masks, labels, 0, shape=(h, w))
    if settings.rest in index:
        label_map[label_map == UNASSIGNED] = index[settings.rest]
    return label_map


# --------------------------------------------------------------------------- backends (concepts_backends.py)


@runtime_checkable
class ConceptBackend(Protocol):
    """Finds scored instance masks for text prompts in one image.

    ``find(rgb, prompts)`` takes uint8 HxWx3 and returns, for each prompt in order, its instances
    (bool HxW masks at the image's size). ``identity`` holds everything besides the settings that
    the output depends on (the content hashes of the weights); it enters the region cache key.
    """

    name: str

    @property
    def identity(self) -> dict[str, Any]: ...

    def find(self, rgb: np.ndarray, prompts: Sequence[str]) -> list[list[ConceptInstance]]: ...


def instances_from_probabilities(probs: np.ndarray, settings: ConceptSettings) -> list[list[ConceptInstance]]:
    """Soft maps (float P x H x W in [0, 1]) -> per prompt, its connected components (8-neighbourhood)
    above ``mask_threshold`` (and, with ``assign=argmax``, where it is the most likely prompt; ties go
    to the first prompt), each scored by its peak probability.

    Components that :func:`concept_labels` would drop (peak not above ``score_threshold``, fewer than
    ``max(min_area, 1)`` pixels) are left out here already, so that speckled maps do not cost one
    full-size mask per speck; the labels are the same either way.
    """
    from scipy import ndimage

    probs = np.asarray(probs, dtype=np.float32)
    claims = probs > settings.mask_threshold
    if settings.assign == "argmax" and len(probs):
        claims &= np.argmax(probs, axis=0)[None] == np.arange(len(probs))[:, None, None]
    found = []
    for p in range(len(probs)):
        comp, n = ndimage.label(claims[p], structure=np.ones((3, 3), bool))
        instances = []
        if n:
            ids = np.arange(1, n + 1)
            peaks = ndimage.maximum(probs[p], comp, index=ids)
            areas = np.bincount(comp.ravel(), minlength=n + 1)[1:]
            for k, box in enumerate(ndimage.find_objects(comp)):
                if box is None or peaks[k] <= settings.score_threshold or areas[k] < max(settings.min_area, 1):
                    continue
                mask = np.zeros(comp.shape, bool)
                mask[box] = comp[box] == k + 1
                instances.append(ConceptInstance(mask, float(peaks[k])))
        found.append(instances)
    return found


# --------------------------------------------------------------------------- the source


@dataclass
class ConceptSource:
    """Region source ``concepts`` (see the module docstring).

    Parameters
    ----------
    settings : prompts, rest name, sides, thresholds (:class:`ConceptSettings`).
    backend : a :class:`ConceptBackend` (built by
        :func:`~semcontrib.segmentation.concepts_backends.make_backend`, or your own, e.g. in tests).
    """

    settings: ConceptSettings
    backend: ConceptBackend
    name: str = field(default="concepts", init=False)
    uses_evidence: bool = field(default=False, init=False)
    #: the backends run torch models: pipeline workers then import torch and use one thread each
    uses_torch: bool = field(default=True, init=False)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.settings.vocabulary

    @property
    def params(self) -> dict[str, Any]:
        p = {"backend": self.backend.name, **self.settings.params}
        folders = getattr(self.backend, "folders", {})
        p.update({k: str(v) for k, v in sorted(folders.items())})
        return p

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """The settings and the backend's identity (sha256 of every file of its model folders),
        computed once; the folders' paths are left out, so a moved folder keeps its regions."""
        return {**self.settings.params, "backend": self.backend.name, "backend_identity": self.backend.identity}

    def segment(self, image: ImageInput) -> RegionMap:
        from semcontrib.segmentation.landscape import check_rgb

        rgb = check_rgb(image)
        found = self.backend.find(rgb, self.settings.prompts)
        labels = concept_labels(found, self.settings, rgb.shape[:2])
        logger.debug("concepts %s: %s", image.image_id,
                     {p: len(f) for p, f in zip(self.settings.prompts, found)})
        return RegionMap(labels, self.vocabulary)
