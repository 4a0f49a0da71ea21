"""Annotation files read into per-image records: COCO JSON, Label Studio JSON exports, class-name files.

Each image's shapes are kept encoded (:class:`AnnotatedRegion`) until its image is segmented by
:class:`~segmentation.annotations.AnnotationSource`, which owns the rules (vocabulary, matching, sizes);
formats and coordinate conventions are described in :mod:`segmentation.annotations`. A problem with one
image's annotations goes into that image's ``ImageAnnotations.errors``; a malformed file structure is a
``ValueError``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
