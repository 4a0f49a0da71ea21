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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.imageio import display_name
from semcontrib.regions import ImageInput, RegionError, RegionMap, file_identity
from semcontrib.segmentation.partition import masks_to_partition
from semcontrib.segmentation.rle import (
    brush_rle_header,
    brush_rle_to_mask,
    check_mask_size,
    coco_rle_counts,
    coco_rle_decode,
    coco_rle_size,
)

logger = logging.getLogger(__name__)

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
CLASS_FILES = ("classes.txt", "classes.json", "class_names.txt", "labels.txt")


@dataclass(frozen=True)
class AnnotatedRegion:
    """One named shape of one image, kept in its encoded (compact) form until it is rasterised.

    Attributes
    ----------
    label : the region name.
    kind : ``"polygon"``, ``"rle"``, ``"box"``, ``"brush"``, ``"mask"`` or ``"point"``.
    polygons : for ``polygon``: float arrays N x 2 of (x, y) pixel coordinates.
    mask : for ``mask``: bool HxW.
    box : XYXY pixel box (x0, y0, x1, y1) of the shape when known without decoding (see
        :meth:`bounding_box`).
    points : for ``point``: float array N x 2 of (x, y) pixel coordinates.
    encoded : for ``rle``: the COCO RLE object (``size``, ``counts``); for ``brush``: Label Studio's
        ``value.rle`` byte list. Decoded by :meth:`rasterize`, one image at a time.
    """

    label: str
    kind: str
    polygons: tuple[np.ndarray, ...] = ()
    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    points: np.ndarray | None = None
    encoded: Any = None

    def rasterize(self, height: int, width: int) -> np.ndarray | None:
        """bool HxW mask of the shape; ``None`` for points (they cover no area).

        Encoded masks are checked against (``height``, ``width``) and the size caps of
        :mod:`segmentation.rle` before anything is allocated; ``ValueError`` when they disagree.
        """
        if self.kind == "point":
            return None
        if self.mask is not None:
            return self.mask
        if self.kind == "rle":
            size = coco_rle_size(self.encoded)
            if size != (height, width):
                raise ValueError(f"RLE size {size[1]}x{size[0]} (WxH) differs from the image entry "
                                 f"{width}x{height}")
            return coco_rle_decode(self.encoded)
        if self.kind == "brush":
            return brush_rle_to_mask(self.encoded, height, width)
        if self.kind == "polygon":
            return polygons_to_mask(self.polygons, height, width)
        if self.box is not None:
            return box_to_mask(self.box, height, width)
        return None

    def bounding_box(self, height: int, width: int) -> tuple[float, float, float, float] | None:
        """The XYXY box of the shape (decoding an encoded mask if needed); ``None`` for points and
        empty masks."""
        if self.box is not None or self.kind == "point":
            return self.box
        m = self.rasterize(height, width)
        return None if m is None else _mask_box(m)


@dataclass
class ImageAnnotations:
    """All regions of one image, the image's annotated size (H, W) and the problems found in them.

    ``names`` holds every region name the image's annotations mention (also those of shapes that
    failed), so the vocabulary does not depend on which shapes are valid. ``errors`` holds one-line
    messages about this image's annotations found while reading the file (a malformed shape, a size
    over the cap); :meth:`AnnotationSource.segment` raises the first one
    as a permanent :class:`~semcontrib.regions.RegionError`, so one bad image does not stop the file.
    """

    key: str
    height: int
    width: int
    regions: list[AnnotatedRegion] = field(default_factory=list)
    image_id: str = ""
    errors: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


def polygons_to_mask(polygons: Iterable[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise (x, y) pixel-coordinate polygons (union); a pixel is inside when its centre is."""
    from skimage.draw import polygon as draw_polygon

    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(p) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(p)}")
        rr, cc = draw_polygon(p[:, 1] - 0.5, p[:, 0] - 0.5, shape=(height, width))
        mask[rr, cc] = True
    return mask


def box_to_mask(box: tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
    """bool HxW mask of the pixels whose centres lie in the XYXY box."""
    x0, y0, x1, y1 = box
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return ((rows >= y0) & (rows < y1))[:, None] & ((cols >= x0) & (cols < x1))[None, :]


def percent_to_pixels(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """Label Studio percent coordinates (0-100 of the original size) to pixel coordinates."""
    return x / 100.0 * width, y / 100.0 * height


def rotated_rectangle(x: float, y: float, w: float, h: float, rotation: float) -> np.ndarray:
    """Corners (4 x 2, pixel x/y) of a rectangle rotated clockwise by ``rotation`` degrees about its
    top-left corner (Label Studio's convention)."""
    a = math.radians(rotation)
    ca, sa = math.cos(a), math.sin(a)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    rot = np.array([[ca, -sa], [sa, ca]])
    return corners @ rot.T + np.array([x, y])


# --------------------------------------------------------------------------- readers


def _keys_for(name: str) -> list[str]:
    base = os.path.basename(str(name))
    keys = [base, os.path.splitext(base)[0]]
    stripped = _UPLOAD_PREFIX.sub("", base)
    if stripped != base:
        keys += [stripped, os.path.splitext(stripped)[0]]
    return keys


def image_name_keys(name: str) -> list[str]:
    """The names an image reference matches: its base name and stem, also without the upload prefix.

    >>> image_name_keys("/data/upload/3/0a1b2c3d-fox.jpg")
    ['0a1b2c3d-fox.jpg', '0a1b2c3d-fox', 'fox.jpg', 'fox']
    """
    return _keys_for(name)


def strip_upload_prefix(name: str) -> str:
    """A base name without Label Studio's ``xxxxxxxx-`` upload prefix (``fox.jpg`` for ``0a1b2c3d-fox.jpg``)."""
    return _UPLOAD_PREFIX.sub("", os.path.basename(str(name)))


def _short(v: Any) -> str:
    """``repr`` of a value cut to 60 characters, for one-line messages."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _id(v: Any, what: str, source: str) -> Any:
    """A JSON id usable as a dict key (numbers and strings), else ``ValueError``."""
    if isinstance(v, (str, int, float)) or v is None:
        return v
    raise ValueError(f"{source}: {what} must be a number or a string, got {_short(v)}")


def _numbers(values: Any, what: str, multiple: int = 1, minimum: int = 0) -> np.ndarray:
    """A flat list of finite numbers as float64, its length a multiple of ``multiple``, else ValueError."""
    if not isinstance(values, (list, tuple)) or any(isinstance(v, (bool, str)) or v is None for v in values):
        raise ValueError(f"{what} must be a list of numbers, got {_short(values)}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be a list of numbers, got {_short(values)}") from None
    if arr.ndim != 1 or len(arr) % multiple or len(arr) < minimum or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be a flat list of finite numbers, a multiple of {multiple} and at least "
                         f"{minimum} long, got {_short(values)}")
    return arr


def _polygon_box(polys: tuple[np.ndarray, ...]) -> tuple[float, float, float, float]:
    allp = np.concatenate(polys)
    return (float(allp[:, 0].min()), float(allp[:, 1].min()), float(allp[:, 0].max()), float(allp[:, 1].max()))


def _coco_regions(ann: dict[str, Any], label: str, rec: ImageAnnotations) -> list[AnnotatedRegion]:
    """The shapes of one COCO annotation, checked cheaply (nothing decoded); ValueError if malformed."""
    out = []
    seg = ann.get("segmentation")
    box = None
    if ann.get("bbox"):
        bx, by, bw, bh = _numbers(ann["bbox"], "bbox", 4, 4)[:4].tolist()
        box = (bx, by, bx + bw, by + bh)
    if isinstance(seg, dict):
        size = coco_rle_size(seg)  # validated against the cap; nothing allocated
        if size != (rec.height, rec.width):
            raise ValueError(f"RLE size {size[1]}x{size[0]} (WxH) differs from the image entry "
                             f"{rec.width}x{rec.height}")
        if isinstance(seg.get("counts"), list):  # uncompressed: keep 8 bytes per run, not a Python int each
            seg = {"size": list(size), "counts": coco_rle_counts(seg)}
        out.append(AnnotatedRegion(label, "rle", box=box, encoded=seg))
    elif isinstance(seg, list) and seg:
        polys = tuple(_numbers(p, "polygon", 2, 6).reshape(-1, 2) for p in seg)
        out.append(AnnotatedRegion(label, "polygon", polygons=polys, box=box or _polygon_box(polys)))
    elif seg not in (None, []):
        raise ValueError(f"segmentation must be polygons (a list) or RLE (an object), got {_short(seg)}")
    elif box is not None:
        out.append(AnnotatedRegion(label, "box", box=box))
    kp = ann.get("keypoints")
    if kp:
        arr = _numbers(kp, "keypoints", 3).reshape(-1, 3)
        pts = arr[arr[:, 2] > 0, :2]
        if len(pts):
            out.append(AnnotatedRegion(label, "point", points=pts))
    return out


def read_coco(data: dict[str, Any], source: str = "") -> list[ImageAnnotations]:
    """Parse a COCO dict into :class:`ImageAnnotations` records (one per image entry).

    Raises ``ValueError`` for a malformed file (missing sections, an image entry without
    ``file_name``, an annotation of an unknown image or category). Problems of one image's
    annotations (a malformed shape, an RLE size that differs from the image entry or exceeds
    :data:`segmentation.rle.MAX_MASK_PIXELS`) are kept in that record's ``errors`` instead. Masks
    stay encoded: reading is linear in the file and allocates nothing an RLE claims.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a COCO file must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{source}: COCO file lacks {key!r} (a list)")
    cats: dict[Any, str] = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise ValueError(f"{source}: COCO category needs id and name: {_short(c)}")
        cats[_id(c["id"], "category id", source)] = str(c["name"])
    images: dict[Any, ImageAnnotations] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "file_name" not in im or "height" not in im or "width" not in im:
            raise ValueError(f"{source}: COCO image entry needs file_name, height and width: {_short(im)}")
        rec = ImageAnnotations(str(im["file_name"]), 0, 0, image_id=str(im.get("id", "")))
        try:
            rec.height, rec.width = check_mask_size(im["height"], im["width"], what="image entry")
        except ValueError as exc:
            rec.errors.append(str(exc))
        images[_id(im.get("id"), "image id", source)] = rec
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise ValueError(f"{source}: COCO annotation must be an object, got {_short(ann)}")
        image_id = ann.get("image_id")
        found = images.get(image_id) if isinstance(image_id, (str, int, float)) else None
        if found is None:
            raise ValueError(f"{source}: annotation {_short(ann.get('id'))} refers to unknown image "
                             f"{_short(image_id)}")
        category = ann.get("category_id")
        if not isinstance(category, (str, int, float)) or category not in cats:
            raise ValueError(f"{source}: annotation {_short(ann.get('id'))} has unknown category "
                             f"{_short(category)}")
        label = cats[category]
        rec = found
        rec.names.add(label)
        if rec.errors:
            continue
        try:
            rec.regions.extend(_coco_regions(ann, label, rec))
        except (ValueError, TypeError, OverflowError) as exc:
            rec.errors.append(f"annotation {_short(ann.get('id'))}: {exc}")
    return list(images.values())


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


LABEL_STUDIO_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels", "keypointlabels")


def _label_studio_regions(typ: str, v: dict[str, Any], labels: list[str], w: int, h: int
                          ) -> list[AnnotatedRegion]:
    """The shapes of one Label Studio result, checked cheaply (brush RLE kept encoded)."""
    out = []
    for label in labels:
        if typ == "rectanglelabels":
            x, y, bw, bh = _numbers([v.get("x"), v.get("y"), v.get("width"), v.get("height")], "rectangle")
            x, y = percent_to_pixels(x, y, w, h)
            bw, bh = percent_to_pixels(bw, bh, w, h)
            rot = float(_numbers([v.get("rotation", 0) or 0], "rotation")[0])
            if rot:
                corners = rotated_rectangle(x, y, bw, bh, rot)
                out.append(AnnotatedRegion(label, "polygon", polygons=(corners,),
                                           box=(*corners.min(0).tolist(), *corners.max(0).tolist())))
            else:
                out.append(AnnotatedRegion(label, "box", box=(x, y, x + bw, y + bh)))
        elif typ == "polygonlabels":
            points = v.get("points")
            if not isinstance(points, list) or any(not isinstance(p, list) or len(p) != 2 for p in points):
                raise ValueError(f"polygon points must be a list of [x, y] pairs, got {_short(points)}")
            flat = _numbers([c for p in points for c in p], "polygon points", 2, 6).reshape(-1, 2)
            pts = flat * np.array([w / 100.0, h / 100.0])
            out.append(AnnotatedRegion(label, "polygon", polygons=(pts,),
                                       box=(*pts.min(0).tolist(), *pts.max(0).tolist())))
        elif typ == "brushlabels":
            if v.get("format", "rle") != "rle":
                raise ValueError(f"brush format {_short(v.get('format'))} is not supported (only 'rle')")
            head = brush_rle_header(v.get("rle") if isinstance(v.get("rle"), list) else [])
            if head.num != h * w * 4:
                raise ValueError(f"brush RLE holds {head.num} values, expected {h}x{w}x4 = {h * w * 4}")
            out.append(AnnotatedRegion(label, "brush", encoded=v["rle"]))
        else:  # keypointlabels
            x, y = _numbers([v.get("x"), v.get("y")], "keypoint")
            out.append(AnnotatedRegion(label, "point", points=np.array([percent_to_pixels(x, y, w, h)])))
    return out


def read_label_studio(tasks: list[Any], source: str = "") -> list[ImageAnnotations]:
    """Parse a Label Studio JSON export (list of tasks) into :class:`ImageAnnotations` records.

    Raises ``ValueError`` for a malformed export (a task that is not an object or names no image).
    Problems of one image's results (no or inconsistent ``original_width/height``, a size over
    :data:`segmentation.rle.MAX_MASK_PIXELS`, a brush RLE whose header disagrees with the size, a
    malformed shape) are kept in that record's ``errors``. Brush masks stay encoded. Result types
    other than :data:`LABEL_STUDIO_TYPES` are ignored (one warning per type).
    """
    if not isinstance(tasks, list):
        raise ValueError(f"{source}: a Label Studio export must be a JSON list of tasks")
    out: list[ImageAnnotations] = []
    ignored: set[str] = set()
    for task in tasks:
        if not isinstance(task, dict):
            raise ValueError(f"{source}: Label Studio export must be a list of task objects")
        data: dict[str, Any] = task["data"] if isinstance(task.get("data"), dict) else {}
        image = data.get("image") or task.get("file_upload") or next(iter(data.values()), "")
        if not image or not isinstance(image, str):
            raise ValueError(f"{source}: task {_short(task.get('id'))} names no image")
        results: list[dict[str, Any]] = []
        # a task's annotations; a task that has none: its pre-annotations (``predictions``, as
        # ``semcontrib export --format label-studio`` writes them)
        anns = task.get("annotations") or task.get("completions") or task.get("predictions") or []
        for ann in anns if isinstance(anns, list) else []:
            if isinstance(ann, dict) and not ann.get("was_cancelled") and isinstance(ann.get("result"), list):
                results.extend(r for r in ann["result"] if isinstance(r, dict))
        rec = ImageAnnotations(str(image), 0, 0, image_id=str(task.get("id", "")))
        size: tuple[int, int] | None = None
        for res in results:
            typ = res.get("type", "")
            v = res.get("value")
            if typ not in LABEL_STUDIO_TYPES or not isinstance(v, dict):
                if str(typ) not in ignored:
                    ignored.add(str(typ))
                    logger.warning("%s: ignoring Label Studio result type %s", source, _short(typ))
                continue
            labels = v.get(typ) or v.get("labels") or []
            labels = [str(x) for x in labels] if isinstance(labels, list) else [str(labels)]
            rec.names.update(labels)
            if not labels or rec.errors:
                continue
            try:
                this = check_mask_size(res.get("original_height"), res.get("original_width"),
                                       what="original image")
                if size is None:
                    size = this
                    rec.height, rec.width = size
                elif this != size:
                    raise ValueError(f"results disagree on the original size ({size[1]}x{size[0]} and "
                                     f"{this[1]}x{this[0]})")
                rec.regions.extend(_label_studio_regions(typ, v, labels, rec.width, rec.height))
            except (ValueError, TypeError, OverflowError) as exc:
                rec.errors.append(f"{typ} result {_short(res.get('id'))}: {exc}")
        if results:
            out.append(rec)
    return out


def read_class_names(directory: Path) -> list[str]:
    """The class names of a PNG label-map directory (``classes.txt`` or ``classes.json`` ...)."""
    for name in CLASS_FILES:
        p = directory / name
        if p.is_file():
            if p.suffix == ".json":
                try:
                    names = json.loads(p.read_bytes())
                except (ValueError, RecursionError) as exc:
                    raise ValueError(f"{p}: not valid JSON ({exc})") from None
                if not isinstance(names, list):
                    raise ValueError(f"{p}: expected a JSON list of class names")
                return [str(n) for n in names]
            return [line.strip() for line in p.read_text(errors="replace").splitlines()]
    raise ValueError(f"{directory}: a PNG label-map directory needs a class-name file, one of {CLASS_FILES}")


# --------------------------------------------------------------------------- the source


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
