"""``parts``: named part boxes (or polygons) joined with a foreground mask, CatViz's protocol in one source.

``--regions parts:boxes=ANNOTATIONS,foreground=SPEC[:LABEL]``

* ``boxes`` is any file (or PNG directory) the ``annotations`` source reads (COCO, Label Studio, PNG
  label maps); its shapes are the parts (an ``eye`` box, a ``nose`` polygon). Overlapping parts follow
  the shared smaller-wins rule (:mod:`segmentation.partition`).
* ``foreground`` is another region source's spec, as ``--regions`` takes it, optionally followed by
  ``:LABEL``: ``landscape:animal`` is the landscape source's ``animal`` region, ``annotations:F:cat``
  the ``cat`` shapes of file ``F``, ``sam`` (no label) every pixel that source assigns. Several labels
  join with ``+``: ``landscape:animal+person`` (what ``semcontrib demo --regions parts`` uses).
* A part keeps only its pixels **inside the foreground** (CatViz: the annotators' boxes intersected
  with a DeepLabV3 body mask); the rest of the foreground is ``body`` (option ``body=NAME``), and
  everything else ``background`` (option ``background=NAME``), so every pixel is assigned.

The vocabulary is the annotation file's part names (sorted, as ``annotations`` has them), then the body
name, then the background name: fixed for every image.

Reading ``foreground=SPEC:LABEL``
---------------------------------
The text after ``foreground=`` is split at its last ``:``; when the part before it builds a source
whose vocabulary holds the part after it (every ``+``-joined name of it), that is the source and its
label (``landscape:animal``, ``annotations:parts.json:cat``). Otherwise the whole text is the source's
spec and there is no label (``sam``, ``annotations:parts.json``). Option ``foreground_label=NAME``
says the label outright.
Options of the foreground source are given with a ``foreground.`` prefix:
``--region-opt foreground.evidence_threshold=0.4``.

Images the boxes file does not annotate (option ``missing``)
------------------------------------------------------------
``body`` (default): no parts; the foreground is ``body`` and the rest ``background`` (a photograph
without parts still gets its body/background split). ``error``: a permanent
:class:`~semcontrib.regions.RegionError` naming the image (as ``annotations`` does). ``unassigned``: every
pixel unassigned (as ``annotations`` with ``missing=unassigned``).

Cache identity: the boxes file's content hash (through the annotations source), the foreground
source's name, vocabulary and own identity, the label and the names; ``uses_evidence`` is the
foreground source's (``landscape`` reads the classifier's class evidence, so the model counts).

Examples
--------
>>> from semcontrib.segmentation.parts import parse_parts_spec
>>> parse_parts_spec("boxes=eyes.json,foreground=landscape:animal")
{'boxes': 'eyes.json', 'foreground': 'landscape:animal'}
>>> parse_parts_spec("boxes=a,b.json,foreground=concepts:eye,ear,cat:cat,body=fur")
{'boxes': 'a,b.json', 'foreground': 'concepts:eye,ear,cat:cat', 'body': 'fur'}
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import numpy as np

from semcontrib.imageio import display_name
from semcontrib.regions import (
    UNASSIGNED,
    ImageInput,
    RegionError,
    RegionMap,
    RegionSource,
    cache_identity,
    uses_evidence,
)
from semcontrib.segmentation.annotations import AnnotationSource

logger = logging.getLogger(__name__)

#: keys that ``parts:KEY=VALUE,...`` and ``--region-opt KEY=VALUE`` accept
SPEC_KEYS = ("boxes", "foreground", "foreground_label", "body", "background", "missing", "min_area")
MISSING = ("body", "error", "unassigned")
FOREGROUND_PREFIX = "foreground."


def parse_parts_spec(arg: str | None) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` (keys from :data:`SPEC_KEYS`) -> dict.

    A comma belongs to the value before it unless it starts a known ``KEY=``, so file names and
    foreground specs may hold commas (``foreground=concepts:eye,ear,cat:cat``). ``ValueError`` for text
    before the first key, an unknown key, or a key given twice.
    """
    out: dict[str, str] = {}
    if not arg:
        return out
    current: str | None = None
    for piece in arg.split(","):
        key, eq, value = piece.partition("=")
        key = key.strip()
        if eq and key in SPEC_KEYS:
            if key in out:
                raise ValueError(f"parts: {key}= given twice in {arg!r}")
            out[key] = value.strip()
            current = key
        elif current is None:
            raise ValueError(f"parts: expected KEY=VALUE with KEY one of {list(SPEC_KEYS)}, got {piece!r} "
                             "(e.g. parts:boxes=parts.json,foreground=landscape:animal)")
        else:
            out[current] += "," + piece
    return out


class PartsSource:
    """Region source ``parts`` (see the module docstring).

    Parameters
    ----------
    boxes : the :class:`~segmentation.annotations.AnnotationSource` of the part shapes.
    foreground : the region source whose mask the parts are cut to.
    foreground_label : the foreground's region name (several joined with ``+``), or ``None`` for every
        pixel it assigns.
    foreground_spec : the spec the foreground was built from (shown in ``params``).
    body, background : names of the rest of the foreground and of everything else.
    missing : ``"body"``, ``"error"`` or ``"unassigned"``: images the boxes file does not annotate.
    """

    name = "parts"

    def __init__(self, boxes: AnnotationSource, foreground: RegionSource, foreground_label: str | None = None,
                 *, foreground_spec: str = "", body: str = "body", background: str = "background",
                 missing: str = "body") -> None:
        if missing not in MISSING:
            raise ValueError(f"parts: missing must be one of {list(MISSING)}, got {missing!r}")
        if not body or not background or body == background:
            raise ValueError(f"parts: body and background need two different non-empty names, got {body!r} "
                             f"and {background!r}")
        for name, what in ((body, "body"), (background, "background")):
            if name in boxes.vocabulary:
                raise ValueError(f"parts: the boxes file {display_name(boxes.path)} has a part named {name!r}, "
                                 f"the {what} name; choose another with {what}=NAME")
        wanted = tuple(foreground_label.split("+")) if foreground_label is not None else ()
        bad = [n for n in wanted if n not in foreground.vocabulary]
        if bad:
            raise ValueError(f"parts: foreground label {bad[0]!r} is not in the vocabulary of "
                             f"{foreground.name!r}: {list(foreground.vocabulary)}")
        self._fg_indices = [foreground.vocabulary.index(n) for n in wanted]
        self.boxes = boxes
        self.foreground = foreground
        self.foreground_label = foreground_label
        self.foreground_spec = foreground_spec or foreground.name
        self.body = body
        self.background = background
        self.missing = missing
        self._parts = tuple(boxes.vocabulary)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return (*self._parts, self.body, self.background)

    @property
    def params(self) -> dict[str, Any]:
        return {"boxes": str(self.boxes.path), "foreground": self.foreground_spec,
                "foreground_label": self.foreground_label, "body": self.body,
                "background": self.background, "missing": self.missing, "min_area": self.boxes.min_area}

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """``params`` plus the boxes file's identity (its content hash) and the foreground source's
        name, vocabulary and identity."""
        ident = dict(self.params)
        ident["boxes"] = cache_identity(self.boxes)
        ident["foreground"] = {"spec": self.foreground_spec, "name": self.foreground.name,
                               "vocabulary": list(self.foreground.vocabulary),
                               "identity": cache_identity(self.foreground)}
        return ident

    @property
    def uses_evidence(self) -> bool:
        """The foreground source's: ``landscape`` reads the classifier's class evidence."""
        return uses_evidence(self.foreground)

    @property
    def uses_torch(self) -> bool:
        """The foreground source's (``concepts`` runs torch models): workers then give torch one thread."""
        return bool(getattr(self.foreground, "uses_torch", False))

    def annotated(self, image: ImageInput) -> bool:
        """Whether the boxes file (or PNG directory) has an entry for ``image``."""
        if self.boxes.format == "png":
            return any(k in self.boxes._png_files for k in self.boxes._candidates(image))
        return self.boxes.lookup(image) is not None

    def foreground_mask(self, image: ImageInput) -> np.ndarray:
        """bool HxW: the foreground label's pixels (or every assigned pixel without a label)."""
        h, w = np.asarray(image.rgb).shape[:2]
        fmap = self.foreground.segment(image)
        if fmap.shape != (h, w):
            raise RegionError(f"parts: foreground source {self.foreground.name!r} returned a {fmap.shape[1]}x"
                              f"{fmap.shape[0]} map for a {w}x{h} image", permanent=True)
        if self.foreground_label is None:
            mask: np.ndarray = fmap.labels != UNASSIGNED
            return mask
        return np.isin(fmap.labels, self._fg_indices)

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = np.asarray(image.rgb).shape[:2]
        n = len(self._parts)
        annotated = self.annotated(image)
        if not annotated and self.missing == "unassigned":
            return RegionMap(np.full((h, w), UNASSIGNED, dtype=np.int32), self.vocabulary)
        if not annotated and self.missing == "error":
            raise RegionError(f"parts: image {display_name(image.image_id)!r} has no part annotations in "
                              f"{display_name(self.boxes.path)}", permanent=True)
        fg = self.foreground_mask(image)
        labels = np.where(fg, n, n + 1).astype(np.int32)
        if annotated:
            parts = self.boxes.segment(image).labels  # a partition of the parts; -1 where no part
            inside = fg & (parts >= 0)
            labels[inside] = parts[inside]
        return RegionMap(labels, self.vocabulary)


def split_foreground(text: str, options: dict[str, Any]) -> tuple[RegionSource, str | None]:
    """Build the foreground source of ``SPEC[:LABEL]`` (see the module docstring) and its label.

    ``options`` are the foreground source's own options (``foreground.`` prefix already removed).
    """
    from semcontrib.segmentation import make_region_source

    if not text:
        raise ValueError("parts needs a foreground: parts:boxes=FILE,foreground=SPEC[:LABEL] "
                         "(e.g. foreground=landscape:animal)")
    if text.partition(":")[0] == "parts":
        raise ValueError("parts: the foreground cannot itself be a parts source")
    head, sep, label = text.rpartition(":")
    if sep and label:
        try:
            source = make_region_source(head, **options)
        except ValueError:
            source = None
        if source is not None and all(n in source.vocabulary for n in label.split("+")):
            return source, label
    try:
        return make_region_source(text, **options), None
    except ValueError as exc:
        hint = (f" (nor is {head!r} a source whose vocabulary has {label!r})" if sep and label else "")
        raise ValueError(f"parts: foreground {text!r} is not a region source spec{hint}: {exc}") from None


def make_parts_source(arg: str | None, options: dict[str, Any]) -> PartsSource:
    """The ``parts`` factory of ``REGION_SOURCES``: ``arg`` is the text after ``parts:`` (``KEY=VALUE,...``),
    ``options`` the ``--region-opt`` pairs (the same keys, plus ``foreground.KEY`` for the foreground
    source's own options). A key given both ways must have the same value."""
    settings = parse_parts_spec(arg)
    inner: dict[str, Any] = {}
    for key, value in options.items():
        if key.startswith(FOREGROUND_PREFIX) and len(key) > len(FOREGROUND_PREFIX):
            inner[key[len(FOREGROUND_PREFIX):]] = value
        elif key not in SPEC_KEYS:
            raise ValueError(f"unknown option(s) [{key!r}] for region source 'parts'; allowed: "
                             f"{sorted(SPEC_KEYS)} and foreground.KEY for the foreground source's options")
        elif key in settings and str(settings[key]) != str(value):
            raise ValueError(f"parts: {key} is {settings[key]!r} in the spec but {value!r} in --region-opt")
        else:
            settings[key] = str(value)
    boxes = settings.get("boxes")
    if not boxes:
        raise ValueError("parts needs an annotation file of part boxes: "
                         "--regions parts:boxes=FILE,foreground=SPEC[:LABEL]")
    try:
        min_area = int(settings.get("min_area", 0))
    except ValueError:
        raise ValueError(f"option min_area must be an integer, got {settings['min_area']!r}") from None
    foreground_text = settings.get("foreground", "")
    foreground, label = split_foreground(foreground_text, inner)
    if settings.get("foreground_label"):
        label = settings["foreground_label"]
    return PartsSource(AnnotationSource(boxes, min_area=min_area), foreground, label,
                       foreground_spec=foreground_text, body=settings.get("body", "body"),
                       background=settings.get("background", "background"),
                       missing=settings.get("missing", "body"))
