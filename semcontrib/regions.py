"""The region interface: an image becomes an int32 label map plus names from a fixed vocabulary.

A *region source* (``segmentation.REGION_SOURCES``) turns one :class:`ImageInput` into a
:class:`RegionMap`. Label ``k`` in ``0..K-1`` means ``vocabulary[k]``; :data:`UNASSIGNED` (-1) marks
pixels that belong to no region. The vocabulary is fixed per source (and per source parameters), so
every image's contribution vector has the same dimensions, even when a region is absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

UNASSIGNED = -1
UNASSIGNED_NAME = "unassigned"


@dataclass(frozen=True)
class ImageInput:
    """What a region source sees of one image.

    Attributes
    ----------
    image_id : the corpus id of the image.
    rgb : uint8 HxWx3, the image after EXIF orientation and colour conversion (original size).
    path : the file it came from (for annotation look-ups), or ``""``.
    evidence : optional class evidence from the classifier, group name -> float32 HxW in [0, 1]
        at the size of ``rgb`` (see ``semcontrib.model.class_evidence``); empty when unavailable.
    """

    image_id: str
    rgb: np.ndarray
    path: str = ""
    evidence: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionMap:
    """A partition of an image into named regions.

    Attributes
    ----------
    labels : int32 HxW; values in ``-1..K-1`` (``-1`` = unassigned).
    names : the source's vocabulary, length K; ``names[k]`` names label ``k``.
    note : one line about a map that was made but is not the usual kind (``faces``: "no face found"),
        recorded as the image's reason while its status stays ``ok``; ``""`` for none.
    """

    labels: np.ndarray
    names: tuple[str, ...]
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.labels, np.ndarray) or self.labels.ndim != 2:
            raise ValueError("labels must be a 2-D array (HxW)")
        if self.labels.dtype != np.int32:
            raise TypeError(f"labels must be int32, got {self.labels.dtype}")
        if self.labels.size and (self.labels.min() < UNASSIGNED or self.labels.max() >= len(self.names)):
            raise ValueError(f"labels must lie in -1..{len(self.names) - 1}")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.labels.shape[0]), int(self.labels.shape[1]))

    def resized(self, size: tuple[int, int]) -> RegionMap:
        """Nearest-neighbour resize to ``size`` = (H, W) (pixel centres sampled)."""
        if self.shape == tuple(size):
            return self
        return RegionMap(nearest_resize(self.labels, size), self.names, self.note)


def nearest_resize(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an int HxW label map to ``size`` = (H, W) (pixel centres sampled)."""
    h, w = labels.shape
    H, W = size
    if (h, w) == (H, W):
        return labels
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return np.ascontiguousarray(labels[rows][:, cols])


def resize_evidence(maps: np.ndarray | None, names: Sequence[str], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Class evidence G x h x w (float) -> group name -> float32 HxW in [0, 1] at ``size`` (bilinear).

    This is the form :attr:`ImageInput.evidence` takes; ``None`` gives an empty mapping.
    """
    if maps is None:
        return {}
    from PIL import Image

    H, W = size
    out = {}
    for g, name in enumerate(names):
        img = Image.fromarray(np.asarray(maps[g], dtype=np.float32), mode="F").resize(
            (W, H), Image.Resampling.BILINEAR)
        out[name] = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return out


class RegionError(ValueError):
    """A region source could not segment one image; ``reason`` says why (one line).

    ``permanent`` is ``True`` when the input itself causes the failure and will cause it again with
    the same inputs (an annotation whose size differs from the image's, an image the unchanged
    annotation file does not name, a malformed shape): the pipeline stores the reason and keeps it.
    It is ``False`` for transient causes (an I/O error reading a file the source needs): the
    pipeline retries the image on the next run.

    Examples
    --------
    >>> err = RegionError("image 'a.jpg': size mismatch", permanent=True)
    >>> isinstance(err, ValueError), err.permanent, str(err)
    (True, True, "image 'a.jpg': size mismatch")
    """

    def __init__(self, reason: str, permanent: bool) -> None:
        reason = " ".join(str(reason).split())  # one line
        super().__init__(reason)
        self.reason = reason
        self.permanent = bool(permanent)

    def __reduce__(self) -> tuple[Any, ...]:  # keeps ``permanent`` across pickling (worker processes)
        return (type(self), (self.reason, self.permanent))


@runtime_checkable
class RegionSource(Protocol):
    """Turns an image into a :class:`RegionMap` over a fixed vocabulary.

    ``name`` is the registry key, ``vocabulary`` the fixed region names, ``params`` the settings that
    change its output, and ``segment`` does the work.

    Two optional members make the region cache key (:func:`source_key`) complete; every source in
    ``semcontrib.segmentation`` has them:

    ``cache_identity`` (a dict, default ``params``)
        everything the output depends on besides the image: the params plus the sha256 of the
        content of every file the source reads (annotation files, checkpoints, mapping files),
        computed once per source object.
    ``uses_evidence`` (a bool, default ``True`` when absent, to be safe)
        whether ``segment`` reads :attr:`ImageInput.evidence`, the classifier's class evidence; the
        key then includes the model key, so another model gives other region maps.

    Two more optional members are read by the run, never by name of the source:

    ``uses_torch`` (a bool, default ``False``)
        the source runs torch models (``concepts``); worker processes then import torch and give it
        one thread each (see ``semcontrib.workers``).
    ``cheap`` (a bool, default ``False``)
        the source's work is a few milliseconds per image and reads no evidence (``grid``); a small run
        then starts no worker processes for it (:func:`is_cheap`, ``semcontrib.workers.pool_workers``).
    ``image_identity(image_id, path) -> str`` and ``base``
        a source whose output for *some* images depends on more than its identity (the region edits
        of ``segmentation.edited``, which wraps every source) returns a non-empty mark for those
        images; the run folds a chunk's marks into that chunk's region key, and reads the other
        images' maps from ``base``'s stored maps.

    With ``--workers`` above 0 the source is pickled into spawned worker processes, so its class must
    be importable there (defined in a module, not in ``__main__`` or a notebook); drop loaded models
    in ``__getstate__`` and load them again on first use.

    Errors: ``segment`` raises :class:`RegionError` for an image it cannot segment, with
    ``permanent=True`` when the input causes it (size mismatch, image not annotated, malformed
    shape) and ``permanent=False`` for transient causes (I/O errors). Any other exception from a
    source is unexpected; callers should record it as transient.
    """

    name: str

    @property
    def vocabulary(self) -> tuple[str, ...]: ...

    @property
    def params(self) -> dict[str, Any]: ...

    def segment(self, image: ImageInput) -> RegionMap: ...


def cache_identity(source: RegionSource) -> dict[str, Any]:
    """``source.cache_identity`` when the source defines it, else its ``params``."""
    ident = getattr(source, "cache_identity", None)
    return dict(ident) if ident is not None else dict(source.params)


def uses_evidence(source: RegionSource) -> bool:
    """``source.uses_evidence`` when defined, else ``True`` (a source of unknown kind may read it)."""
    return bool(getattr(source, "uses_evidence", True))


def is_cheap(source: RegionSource) -> bool:
    """``source.cheap`` when defined, else ``False`` (a source of unknown cost gets its workers)."""
    return bool(getattr(source, "cheap", False))


def source_key(source: RegionSource, model_key: str | None = None) -> str:
    """A short hash (16 hex digits) of everything a source's region maps depend on.

    The source's name, vocabulary and :func:`cache_identity` (params and the content hashes of the
    files it reads), plus ``model_key`` when the source uses the classifier's class evidence
    (:func:`uses_evidence`); for other sources ``model_key`` is ignored, so their region maps are
    shared between models.
    """
    blob: dict[str, Any] = {"name": source.name, "vocabulary": list(source.vocabulary),
            "identity": cache_identity(source)}
    if uses_evidence(source):
        blob["model"] = model_key
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_identity(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """``{"name": basename, "sha256": content hash}`` of a file (read in 1 MiB chunks), ``None`` for
    ``None``/``""``; a file that cannot be read gives ``"sha256": "unreadable: <reason>"``."""
    if not path:
        return None
    from semcontrib.imageio import sha256_file

    p = Path(path)
    try:
        digest = sha256_file(p)
    except OSError as exc:
        digest = f"unreadable: {exc.strerror or exc}"
    return {"name": p.name, "sha256": digest}
