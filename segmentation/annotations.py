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
    Label Studio's ``xxxxxxxx-`` upload prefix).
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
* An annotation whose size differs from the image raises ``ValueError`` naming the image (the
  message says when the size is the transposed one: an orientation mismatch, e.g. EXIF rotation).
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

from semcontrib.regions import ImageInput, RegionMap
from semcontrib.segmentation.partition import masks_to_partition
from semcontrib.segmentation.rle import brush_rle_to_mask, coco_rle_decode

logger = logging.getLogger(__name__)

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
CLASS_FILES = ("classes.txt", "classes.json", "class_names.txt", "labels.txt")


@dataclass(frozen=True)
class AnnotatedRegion:
    """One named shape of one image.

    Attributes
    ----------
    label : the region name.
    kind : ``"polygon"``, ``"rle"``, ``"box"``, ``"brush"``, ``"mask"`` or ``"point"``.
    polygons : for ``polygon``: list of float arrays N x 2 of (x, y) pixel coordinates.
    mask : for ``rle`` / ``brush`` / ``mask``: bool HxW.
    box : XYXY pixel box (x0, y0, x1, y1) of the shape (all kinds except ``point``).
    points : for ``point``: float array N x 2 of (x, y) pixel coordinates.
    """

    label: str
    kind: str
    polygons: tuple[np.ndarray, ...] = ()
    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    points: np.ndarray | None = None

    def rasterize(self, height: int, width: int) -> np.ndarray | None:
        """bool HxW mask of the shape; ``None`` for points (they cover no area)."""
        if self.kind == "point":
            return None
        if self.mask is not None:
            return self.mask
        if self.kind == "polygon":
            return polygons_to_mask(self.polygons, height, width)
        if self.box is not None:
            return box_to_mask(self.box, height, width)
        return None


@dataclass
class ImageAnnotations:
    """All regions of one image and the image's annotated size (H, W)."""

    key: str
    height: int
    width: int
    regions: list[AnnotatedRegion] = field(default_factory=list)
    image_id: str = ""


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


def read_coco(data: dict[str, Any], source: str = "") -> list[ImageAnnotations]:
    """Parse a COCO dict into :class:`ImageAnnotations` records."""
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{source}: COCO file lacks {key!r}")
    cats = {c["id"]: str(c["name"]) for c in data["categories"]}
    images: dict[Any, ImageAnnotations] = {}
    for im in data["images"]:
        if "file_name" not in im or "height" not in im or "width" not in im:
            raise ValueError(f"{source}: COCO image entry needs file_name, height and width: {im}")
        images[im["id"]] = ImageAnnotations(str(im["file_name"]), int(im["height"]), int(im["width"]),
                                            image_id=str(im["id"]))
    for ann in data["annotations"]:
        rec = images.get(ann.get("image_id"))
        if rec is None:
            raise ValueError(f"{source}: annotation {ann.get('id')} refers to unknown image "
                             f"{ann.get('image_id')}")
        if ann.get("category_id") not in cats:
            raise ValueError(f"{source}: annotation {ann.get('id')} has unknown category "
                             f"{ann.get('category_id')}")
        label = cats[ann["category_id"]]
        seg = ann.get("segmentation")
        box = None
        if ann.get("bbox"):
            bx, by, bw, bh = (float(v) for v in ann["bbox"])
            box = (bx, by, bx + bw, by + bh)
        if isinstance(seg, dict):
            mask = coco_rle_decode(seg)
            if mask.shape != (rec.height, rec.width):
                raise ValueError(f"image {rec.key!r}: RLE size {mask.shape} differs from the image entry "
                                 f"{(rec.height, rec.width)}")
            rec.regions.append(AnnotatedRegion(label, "rle", mask=mask, box=box or _mask_box(mask)))
        elif isinstance(seg, list) and seg:
            polys = tuple(np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg)
            if box is None:
                allp = np.concatenate(polys)
                box = (float(allp[:, 0].min()), float(allp[:, 1].min()),
                       float(allp[:, 0].max()), float(allp[:, 1].max()))
            rec.regions.append(AnnotatedRegion(label, "polygon", polygons=polys, box=box))
        elif box is not None:
            rec.regions.append(AnnotatedRegion(label, "box", box=box))
        kp = ann.get("keypoints")
        if kp:
            arr = np.asarray(kp, dtype=np.float64).reshape(-1, 3)
            pts = arr[arr[:, 2] > 0, :2]
            if len(pts):
                rec.regions.append(AnnotatedRegion(label, "point", points=pts))
    return list(images.values())


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def read_label_studio(tasks: list[Any], source: str = "") -> list[ImageAnnotations]:
    """Parse a Label Studio JSON export (list of tasks) into :class:`ImageAnnotations` records."""
    out: list[ImageAnnotations] = []
    for task in tasks:
        if not isinstance(task, dict):
            raise ValueError(f"{source}: Label Studio export must be a list of task objects")
        data = task.get("data", {})
        image = data.get("image") or task.get("file_upload") or next(iter(data.values()), "")
        if not image:
            raise ValueError(f"{source}: task {task.get('id')} names no image")
        results = []
        for ann in task.get("annotations") or task.get("completions") or []:
            if ann.get("was_cancelled"):
                continue
            results.extend(ann.get("result", []))
        rec: ImageAnnotations | None = None
        for res in results:
            ow, oh = res.get("original_width"), res.get("original_height")
            if ow is None or oh is None:
                raise ValueError(f"{source}: image {image!r}: result lacks original_width/original_height")
            if rec is None:
                rec = ImageAnnotations(str(image), int(oh), int(ow), image_id=str(task.get("id", "")))
            elif (rec.height, rec.width) != (int(oh), int(ow)):
                raise ValueError(f"{source}: image {image!r}: results disagree on the original size")
            v = res.get("value", {})
            typ = res.get("type", "")
            labels = v.get(typ) or v.get("labels") or []
            if not labels:
                continue
            w, h = rec.width, rec.height
            for label in labels:
                if typ == "rectanglelabels":
                    x, y = percent_to_pixels(v["x"], v["y"], w, h)
                    bw, bh = percent_to_pixels(v["width"], v["height"], w, h)
                    rot = float(v.get("rotation", 0) or 0)
                    if rot:
                        corners = rotated_rectangle(x, y, bw, bh, rot)
                        rec.regions.append(AnnotatedRegion(
                            label, "polygon", polygons=(corners,),
                            box=(*corners.min(0).tolist(), *corners.max(0).tolist())))
                    else:
                        rec.regions.append(AnnotatedRegion(label, "box", box=(x, y, x + bw, y + bh)))
                elif typ == "polygonlabels":
                    pts = np.array([percent_to_pixels(px, py, w, h) for px, py in v["points"]])
                    rec.regions.append(AnnotatedRegion(
                        label, "polygon", polygons=(pts,),
                        box=(*pts.min(0).tolist(), *pts.max(0).tolist())))
                elif typ == "brushlabels":
                    if v.get("format", "rle") != "rle":
                        raise ValueError(f"{source}: image {image!r}: brush format {v.get('format')!r} "
                                         "is not supported (only 'rle')")
                    mask = brush_rle_to_mask(v["rle"], h, w)
                    rec.regions.append(AnnotatedRegion(label, "brush", mask=mask, box=_mask_box(mask)))
                elif typ == "keypointlabels":
                    pt = np.array([percent_to_pixels(v["x"], v["y"], w, h)])
                    rec.regions.append(AnnotatedRegion(label, "point", points=pt))
                else:
                    logger.warning("%s: image %r: ignoring Label Studio result type %r", source, image, typ)
        if rec is not None:
            out.append(rec)
    return out


def read_class_names(directory: Path) -> list[str]:
    """The class names of a PNG label-map directory (``classes.txt`` or ``classes.json`` ...)."""
    for name in CLASS_FILES:
        p = directory / name
        if p.is_file():
            if p.suffix == ".json":
                names = json.loads(p.read_text())
                if not isinstance(names, list):
                    raise ValueError(f"{p}: expected a JSON list of class names")
                return [str(n) for n in names]
            return [line.strip() for line in p.read_text().splitlines()]
    raise ValueError(f"{directory}: a PNG label-map directory needs a class-name file, one of {CLASS_FILES}")


# --------------------------------------------------------------------------- the source


class AnnotationSource:
    """Region source ``annotations:PATH`` (see the module docstring for formats and rules).

    Parameters
    ----------
    path : a COCO or Label Studio ``.json`` file, or a directory of PNG label maps.
    min_area : shapes with fewer pixels are ignored (default 0).
    missing : what to do with an image that has no annotations: ``"error"`` (default, ``ValueError``
        naming the image) or ``"unassigned"`` (every pixel unassigned).
    """

    name = "annotations"

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
        elif self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: not valid JSON ({exc})") from exc
            if isinstance(data, dict):
                records = read_coco(data, str(self.path))
                self.format = "coco"
            elif isinstance(data, list):
                records = read_label_studio(data, str(self.path))
                self.format = "label-studio"
            else:
                raise ValueError(f"{self.path}: expected a COCO object or a Label Studio task list")
            labels = {r.label for rec in records for r in rec.regions}
            if "categories" in data and isinstance(data, dict):
                labels |= {str(c["name"]) for c in data["categories"]}
            self._vocabulary = tuple(sorted(labels))
            for rec in records:
                for k in _keys_for(rec.key) + ([rec.image_id] if rec.image_id else []):
                    self._records.setdefault(k, rec)
        else:
            raise ValueError(f"annotation path not found: {self.path}")
        if self._png_classes is not None:
            self.format = "png"

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    @property
    def params(self) -> dict[str, Any]:
        return {"path": str(self.path), "min_area": self.min_area, "missing": self.missing,
                "format": self.format}

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
        check_size(image, (rec.height, rec.width), (h, w))
        index = {n: i for i, n in enumerate(self._vocabulary)}
        masks, labels = [], []
        for r in rec.regions:
            m = r.rasterize(h, w)
            if m is not None:
                masks.append(m)
                labels.append(index[r.label])
        label_map, _ = masks_to_partition(masks, labels, self.min_area, shape=(h, w))
        return RegionMap(label_map, self._vocabulary)

    def _missing(self, image: ImageInput, h: int, w: int) -> RegionMap:
        if self.missing == "error":
            raise ValueError(f"image {image.image_id!r} ({image.path or 'no path'}) has no annotations in "
                             f"{self.path}")
        return RegionMap(np.full((h, w), -1, dtype=np.int32), self._vocabulary)

    def _segment_png(self, image: ImageInput, h: int, w: int) -> RegionMap:
        from PIL import Image

        assert self._png_classes is not None
        path = next((self._png_files[k] for k in self._candidates(image) if k in self._png_files), None)
        if path is None:
            return self._missing(image, h, w)
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"image {image.image_id!r}: label map {path} is mode {im.mode}; expected "
                                 "a palette (P) or grey (L) PNG whose values are class indices")
            values = np.asarray(im).astype(np.int64)
        check_size(image, values.shape[:2], (h, w))
        index = {n: i for i, n in enumerate(self._vocabulary)}
        lut = np.array([index.get(n, -1) for n in self._png_classes] + [-1], dtype=np.int32)
        values = np.where(values < len(self._png_classes), values, len(self._png_classes))
        return RegionMap(lut[values].astype(np.int32), self._vocabulary)


def check_size(image: ImageInput, annotated: tuple[int, int], actual: tuple[int, int]) -> None:
    """Raise ``ValueError`` naming the image when the annotated (H, W) differs from the image's."""
    annotated = (int(annotated[0]), int(annotated[1]))
    if annotated == actual:
        return
    where = f"image {image.image_id!r} ({image.path or 'no path'})"
    if annotated == actual[::-1]:
        raise ValueError(f"{where}: orientation mismatch: annotated as {annotated[1]}x{annotated[0]} (WxH) "
                         f"but the image is {actual[1]}x{actual[0]}; was it rotated (EXIF orientation)?")
    raise ValueError(f"{where}: size mismatch: annotated as {annotated[1]}x{annotated[0]} (WxH) but the "
                     f"image is {actual[1]}x{actual[0]}")
