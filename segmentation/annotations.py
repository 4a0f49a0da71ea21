"""``annotations``: named regions drawn by people, imported from COCO, Label Studio or PNG label maps.

Supported inputs (``annotations:PATH``)
---------------------------------------
COCO JSON (a ``.json`` object with ``images``, ``annotations``, ``categories``)
    ``segmentation`` as polygons (lists ``[x0, y0, x1, y1, ...]`` in pixel coordinates, pixel
    ``(row i, col j)`` covering ``[j, j+1) x [i, i+1)``; a pixel is inside when its centre is) or RLE
    (compressed string or uncompressed list ``counts``, see :mod:`segmentation.rle`). An annotation
    with only a ``bbox`` ``[x, y, w, h]`` is a box; ``keypoints`` ``[x, y, v, ...]`` (v > 0) are
    point prompts for the ``sam`` source.
Label Studio JSON export (a ``.json`` list of tasks)
    ``rectanglelabels`` (``x, y, width, height`` in percent of ``original_width/height``, rotated by
    ``rotation`` degrees clockwise about the top-left corner), ``polygonlabels`` (``points`` in
    percent), ``brushlabels`` (``format: "rle"``, Label Studio's brush RLE) and ``keypointlabels``
    (``x, y`` in percent; point prompts). The image is ``data.image`` (its basename, also without
    Label Studio's ``xxxxxxxx-`` upload prefix). A task without ``annotations`` is read from its
    ``predictions`` (pre-annotations, as ``semcontrib export --format label-studio`` writes them).
PNG label maps (a directory)
    One palette (mode ``P``) or grey (mode ``L``) PNG per image, pixel value = class index, plus a
    class-name file ``classes.txt`` (one name per line, line ``i`` names value ``i``) or
    ``classes.json`` (a list). Values without a name, and names ``""`` / ``unassigned``, are
    unassigned.

Rules
-----
* The vocabulary is the sorted set of label names in the whole file (directory), the same for every
  image.
* Images are matched by the basename of ``ImageInput.path``, its stem, or ``ImageInput.image_id``.
* Overlapping shapes are resolved by :func:`segmentation.partition.masks_to_partition`
  (smaller wins); pixels no shape covers are unassigned.
* An annotation whose size differs from the image raises a permanent
  :class:`~semcontrib.regions.RegionError` naming the file and the image (the message says when the
  size is the transposed one: an orientation mismatch, e.g. EXIF rotation).

Bounds
------
The file is indexed per image with masks kept encoded; a mask is decoded when its image is
segmented, after every size it claims has been checked against the image and against
:data:`segmentation.rle.MAX_MASK_PIXELS` (see :mod:`segmentation.rle`). A problem with one image's
annotations is that image's permanent ``RegionError``; only a malformed file structure fails when
the source is built (``ValueError``). See ``docs/regions.md``.

The file readers and the per-image records (:class:`AnnotatedRegion`, :class:`ImageAnnotations`) are in
:mod:`segmentation.annotation_files`; this module is the region source and its size checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.imageio import display_name
from semcontrib.regions import ImageInput, RegionError, RegionMap, file_identity
from semcontrib.segmentation.annotation_files import (
    CLASS_FILES,
    LABEL_STUDIO_TYPES,
    AnnotatedRegion,
    ImageAnnotations,
    _keys_for,
    box_to_mask,
    image_name_keys,
    percent_to_pixels,
    polygons_to_mask,
    read_class_names,
    read_coco,
    read_label_studio,
    rotated_rectangle,
    strip_upload_prefix,
)
from semcontrib.segmentation.partition import masks_to_partition
from semcontrib.segmentation.rle import check_mask_size

__all__ = [  # the readers and records live in annotation_files; imported from here as before
    "CLASS_FILES", "LABEL_STUDIO_TYPES", "AnnotatedRegion", "AnnotationSource", "ImageAnnotations",
    "box_to_mask", "check_size", "image_name_keys", "percent_to_pixels", "polygons_to_mask",
    "read_class_names", "read_coco", "read_label_map", "read_label_studio", "rotated_rectangle",
    "strip_upload_prefix",
]


class AnnotationSource:
    """Region source ``annotations:PATH`` (see the module docstring for formats and rules).

    The file is read once and indexed per image with every mask still encoded; a mask is decoded
    when its image is segmented, after its size has been checked against the image, so memory
    grows with the file and with one image, not with the number of images.

    Parameters
    ----------
    path : a COCO or Label Studio ``.json`` file, or a directory of PNG label maps.
    min_area : shapes with fewer pixels are ignored (default 0).
    missing : what to do with an image that has no annotations: ``"error"`` (default, a permanent
        :class:`~semcontrib.regions.RegionError` naming the image) or ``"unassigned"`` (every pixel
        unassigned).

    Errors of :meth:`segment` are :class:`~semcontrib.regions.RegionError` with a one-line message
    naming the annotation file and the image: permanent for what the annotations say (size
    mismatch, not annotated, malformed shape, label map of the wrong mode or too large), transient
    for I/O errors reading a label map.
    """

    name = "annotations"
    uses_evidence = False

    def __init__(self, path: str | os.PathLike[str], min_area: int = 0, missing: str = "error") -> None:
        self.path = Path(path)
        if missing not in ("error", "unassigned"):
            raise ValueError(f"missing must be 'error' or 'unassigned', got {missing!r}")
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        self.min_area = int(min_area)
        self.missing = missing
        self._png_classes: list[str] | None = None
        self._records: dict[str, ImageAnnotations] = {}
        if self.path.is_dir():
            self._png_classes = read_class_names(self.path)
            names = {n for n in self._png_classes if n and n != "unassigned"}
            self._png_files = {k: p for p in sorted(self.path.glob("*.png")) for k in _keys_for(p.name)}
            self._vocabulary = tuple(sorted(names))
            self.format = "png"
        elif self.path.is_file():
            try:
                data = json.loads(self.path.read_bytes())
            except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise ValueError(f"{self.path}: not valid JSON ({' '.join(str(exc).split())})") from None
            except OSError as exc:
                raise ValueError(f"{self.path}: cannot be read ({exc.strerror or exc})") from None
            if isinstance(data, dict):
                records = read_coco(data, str(self.path))
                self.format = "coco"
            elif isinstance(data, list):
                records = read_label_studio(data, str(self.path))
                self.format = "label-studio"
            else:
                raise ValueError(f"{self.path}: expected a COCO object or a Label Studio task list")
            labels = {n for rec in records for n in rec.names}
            if self.format == "coco":
                labels |= {str(c["name"]) for c in data["categories"]}
            self._vocabulary = tuple(sorted(labels))
            for rec in records:
                for k in _keys_for(rec.key) + ([rec.image_id] if rec.image_id else []):
                    self._records.setdefault(k, rec)
        else:
            raise ValueError(f"annotation path not found: {self.path}")

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    @property
    def params(self) -> dict[str, Any]:
        return {"path": str(self.path), "min_area": self.min_area, "missing": self.missing,
                "format": self.format}

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """``params`` plus the sha256 of the annotation file (or of the class file and every PNG label
        map of a directory), hashed once per source object in 1 MiB chunks."""
        ident = dict(self.params)
        if self._png_classes is None:
            ident["file"] = file_identity(self.path)
        else:
            digest = hashlib.sha256()
            for name in CLASS_FILES:
                if (self.path / name).is_file():
                    digest.update(json.dumps(file_identity(self.path / name)).encode())
            for p in sorted(set(self._png_files.values())):
                digest.update(json.dumps(file_identity(p)).encode())
            ident["files_sha256"] = digest.hexdigest()
        return ident

    def _candidates(self, image: ImageInput) -> list[str]:
        keys = _keys_for(image.path) if image.path else []
        return keys + [str(image.image_id)] + _keys_for(str(image.image_id))

    def lookup(self, image: ImageInput) -> ImageAnnotations | None:
        """The annotations of ``image`` (by path basename, stem or image_id), or ``None``."""
        for k in self._candidates(image):
            if k in self._records:
                return self._records[k]
        return None

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = np.asarray(image.rgb).shape[:2]
        if self._png_classes is not None:
            return self._segment_png(image, h, w)
        rec = self.lookup(image)
        if rec is None:
            return self._missing(image, h, w)
        if rec.errors:
            raise RegionError(f"{display_name(self.path)}: {_where(image)}: {rec.errors[0]}", permanent=True)
        check_size(image, (rec.height, rec.width), (h, w), self.path)
        index = {n: i for i, n in enumerate(self._vocabulary)}
        masks, labels = [], []
        for r in rec.regions:
            try:
                m = r.rasterize(h, w)
            except ValueError as exc:
                raise RegionError(f"{display_name(self.path)}: {_where(image)}: {r.kind} {r.label!r}: {exc}",
                                  permanent=True) from None
            if m is not None:
                masks.append(m)
                labels.append(index[r.label])
        label_map, _ = masks_to_partition(masks, labels, self.min_area, shape=(h, w))
        return RegionMap(label_map, self._vocabulary)

    def _missing(self, image: ImageInput, h: int, w: int) -> RegionMap:
        if self.missing == "error":
            raise RegionError(f"{_where(image)} has no annotations in {display_name(self.path)}", permanent=True)
        return RegionMap(np.full((h, w), -1, dtype=np.int32), self._vocabulary)

    def _segment_png(self, image: ImageInput, h: int, w: int) -> RegionMap:
        assert self._png_classes is not None
        path = next((self._png_files[k] for k in self._candidates(image) if k in self._png_files), None)
        if path is None:
            return self._missing(image, h, w)
        values = read_label_map(path, image, (h, w))
        index = {n: i for i, n in enumerate(self._vocabulary)}
        lut = np.array([index.get(n, -1) for n in self._png_classes] + [-1], dtype=np.int32)
        values = np.where(values < len(self._png_classes), values, len(self._png_classes))
        return RegionMap(lut[values].astype(np.int32), self._vocabulary)


def read_label_map(path: Path, image: ImageInput, size: tuple[int, int]) -> np.ndarray:
    """The class indices (int64 HxW) of a PNG label map for ``image`` of ``size`` = (H, W).

    The header is checked first (mode ``P`` or ``L``, size equal to the image's and at most
    :data:`segmentation.rle.MAX_MASK_PIXELS`), so no pixel is decoded for a map that cannot fit.
    Raises :class:`~semcontrib.regions.RegionError`: permanent for a map that is not a usable image,
    transient for an I/O error (the file could not be read).
    """
    from PIL import Image, UnidentifiedImageError

    where = f"{_where(image)}: label map {display_name(path)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, with our limit
            im = Image.open(path)
        with im:
            check_mask_size(im.height, im.width, what="label map")
            if im.mode not in ("P", "L"):
                raise RegionError(f"{where} is mode {im.mode}; expected a palette (P) or grey (L) PNG whose "
                                  "values are class indices", permanent=True)
            check_size(image, (im.height, im.width), size, path)
            im.load()
            return np.asarray(im).astype(np.int64)
    except RegionError:
        raise
    except UnidentifiedImageError:
        raise RegionError(f"{where} is not an image Pillow can read", permanent=True) from None
    except OSError as exc:
        # Pillow's decoding errors are OSErrors without an errno; the system's I/O errors have one
        raise RegionError(f"{where}: {exc.strerror or exc}", permanent=exc.errno is None) from None
    except (ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
        raise RegionError(f"{where}: {exc}", permanent=True) from None


def _where(image: ImageInput) -> str:
    return f"image {display_name(image.image_id)!r} ({display_name(image.path) if image.path else 'no path'})"


def check_size(image: ImageInput, annotated: tuple[int, int], actual: tuple[int, int],
               source: str | os.PathLike[str] = "") -> None:
    """Raise a permanent :class:`~semcontrib.regions.RegionError` naming the image (and the annotation
    file ``source``, when given) when the annotated (H, W) differs from the image's."""
    annotated = (int(annotated[0]), int(annotated[1]))
    actual = (int(actual[0]), int(actual[1]))
    if annotated == actual:
        return
    where = f"{display_name(source)}: {_where(image)}" if source else _where(image)
    if annotated == actual[::-1]:
        raise RegionError(f"{where}: orientation mismatch: annotated as {annotated[1]}x{annotated[0]} (WxH) "
                          f"but the image is {actual[1]}x{actual[0]}; was it rotated (EXIF orientation)?",
                          permanent=True)
    raise RegionError(f"{where}: size mismatch: annotated as {annotated[1]}x{annotated[0]} (WxH) but the "
                      f"image is {actual[1]}x{actual[0]}", permanent=True)
