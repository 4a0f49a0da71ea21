"""Region edits: shapes a person drew on an image, stored in the corpus as a COCO annotation file.

The file is ``CORPUS/annotations/edits.json`` (:data:`EDITS_FILE`), a COCO object that the
``annotations:`` region source reads as it reads any COCO file::

    {"info": {"format": "semcontrib-edits/1", ...},
     "images": [{"id": "<corpus image id>", "file_name": "cat.jpg", "width": W, "height": H}, ...],
     "categories": [{"id": 1, "name": "eyes"}, ...],
     "annotations": [{"id": 1, "image_id": "<corpus image id>", "category_id": 1,
                      "segmentation": [[x0, y0, x1, y1, ...]], "bbox": [x, y, w, h], "area": A,
                      "iscrowd": 0,
                      "semcontrib": {"edit_id": "<32 hex>", "created": "2026-12-03T21:30:00Z",
                                     "inside": "animal" or null, "shape": "rect" or "polygon"}}, ...]}

One annotation is one edit: one polygon (a rectangle is a 4-corner polygon) in pixel coordinates of the
original (EXIF-upright) image, pixel ``(row i, col j)`` covering ``[j, j+1) x [i, i+1)`` and inside when
its centre is. Edits apply in file order (later ones paint over earlier ones); ``inside`` restricts an
edit to the pixels that already carry that label when the edit applies (CatViz's box ∩ body mask).
The label ``unassigned`` erases (its pixels become unassigned). See
:class:`semcontrib.segmentation.edited.EditedSource` for how an analysis applies them.

Writing
-------
Every change is a read-modify-write of the whole file under the corpus's edits lock
(:func:`semcontrib.corpus.edits_lock`), written with the corpus's atomic writer (temporary file,
fsync, rename): a crash leaves the old file or the new one, never a mixture; a second writer (another
browser tab, another process) waits for the lock and then sees the first one's edits, so nothing is
lost. Each edit carries an ``edit_id`` chosen by its author; appending an id that is already stored
does nothing, so a retried request never duplicates an edit.

Bounds
------
The file holds at most :data:`MAX_EDITS` edits and :data:`MAX_EDITS_BYTES` bytes (checked from its size
before it is read), an image at most :data:`MAX_EDITS_PER_IMAGE` edits, a polygon 3 to
:data:`MAX_POLYGON_POINTS` points, a label at most :data:`MAX_LABEL_CHARS` printable characters.
Everything is validated when read; a malformed file raises ``ValueError`` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from semcontrib.corpus import check_image_id, edits_lock, remove_temporaries_in, write_bytes

logger = logging.getLogger(__name__)

EDITS_FILE = "annotations/edits.json"
EDITS_FORMAT = "semcontrib-edits/1"
MAX_EDITS_BYTES = 8 * 2**20
MAX_EDITS = 20_000
MAX_EDITS_PER_IMAGE = 200
MAX_POLYGON_POINTS = 1_000
MAX_LABEL_CHARS = 64
MAX_SIDE = 1_000_000  # a coordinate's bound, far beyond any image the loader accepts
ERASE_LABEL = "unassigned"
SHAPES = ("rect", "polygon")

_EDIT_ID = re.compile(r"^[0-9a-f]{32}$")
_CREATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


@dataclass(frozen=True)
class RegionEdit:
    """One drawn shape on one image.

    Attributes
    ----------
    edit_id : 32 lower-case hex digits, unique in the file (chosen by the author, e.g. ``uuid4().hex``).
    image_id : the corpus image id.
    file_name : the image's file name (basename), so that other tools can match the image.
    width, height : the original (upright) image size in pixels.
    label : the region name the shape's pixels take (``unassigned`` erases).
    polygon : the (x, y) pixel coordinates of the polygon's corners, 3 to ``MAX_POLYGON_POINTS`` of them.
    inside : ``None``, or a label: the edit then covers only pixels that carry it when it applies.
    created : when it was made, ISO 8601 UTC (``YYYY-MM-DDTHH:MM:SSZ``).
    shape : ``"rect"`` or ``"polygon"`` (how it was drawn; both are stored as polygons).
    """

    edit_id: str
    image_id: str
    file_name: str
    width: int
    height: int
    label: str
    polygon: tuple[tuple[float, float], ...]
    inside: str | None = None
    created: str = ""
    shape: str = "polygon"

    def identity(self) -> list[Any]:
        """What the edit's effect on a region map depends on (not its id or time)."""
        return [self.label, [list(p) for p in self.polygon], self.inside, self.width, self.height]


def check_label(label: Any, what: str = "label") -> str:
    """A region name: text of 1 to ``MAX_LABEL_CHARS`` printable characters, stripped; else ValueError.

    >>> check_label("  eyes ")
    'eyes'
    """
    if not isinstance(label, str):
        raise ValueError(f"{what} must be text, got {type(label).__name__}")
    s = label.strip()
    if not s or len(s) > MAX_LABEL_CHARS or not s.isprintable():
        raise ValueError(f"{what} must be 1 to {MAX_LABEL_CHARS} printable characters, got {s[:80]!r}")
    return s


def _check_polygon(points: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(points, (list, tuple)) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
        n = len(points) if isinstance(points, (list, tuple)) else type(points).__name__
        raise ValueError(f"a polygon needs 3 to {MAX_POLYGON_POINTS} points, got {n}")
    out = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2 or any(
                isinstance(c, bool) or not isinstance(c, (int, float)) for c in p):
            raise ValueError(f"a polygon point must be [x, y] numbers, got {str(p)[:60]}")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > MAX_SIDE:
            raise ValueError(f"a polygon point must be finite and within {MAX_SIDE}, got [{x}, {y}]")
        out.append((x, y))
    return tuple(out)


def now_utc() -> str:
    """The current time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_edit(*, image_id: str, file_name: str, width: int, height: int, label: str,
              polygon: Sequence[Sequence[float]], inside: str | None = None, shape: str = "polygon",
              edit_id: str | None = None, created: str | None = None) -> RegionEdit:
    """A validated :class:`RegionEdit` (``ValueError`` naming what is wrong).

    >>> e = make_edit(image_id="cat-0123456789", file_name="cat.jpg", width=4, height=3, label="eyes",
    ...               polygon=[[0, 0], [2, 0], [2, 2], [0, 2]], shape="rect", edit_id="0" * 32,
    ...               created="2026-01-01T00:00:00Z")
    >>> e.label, e.polygon[2], e.inside
    ('eyes', (2.0, 2.0), None)
    """
    check_image_id(image_id)
    if not isinstance(file_name, str) or not file_name or "/" in file_name or len(file_name) > 255:
        raise ValueError(f"file_name must be a file's base name, got {str(file_name)[:80]!r}")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
            raise ValueError(f"{name} must be an integer from 1 to {MAX_SIDE}, got {v!r}")
    edit_id = uuid.uuid4().hex if edit_id is None else edit_id
    if not isinstance(edit_id, str) or not _EDIT_ID.match(edit_id):
        raise ValueError(f"edit_id must be 32 lower-case hex digits, got {str(edit_id)[:80]!r}")
    created = now_utc() if created is None else created
    if not isinstance(created, str) or not _CREATED.match(created):
        raise ValueError(f"created must be an ISO 8601 UTC time like 2026-01-01T00:00:00Z, got {str(created)[:40]!r}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {str(shape)[:40]!r}")
    return RegionEdit(edit_id, image_id, file_name, width, height, check_label(label),
                      _check_polygon(polygon), None if inside is None else check_label(inside, "inside"),
                      created, shape)


# --------------------------------------------------------------------------- COCO form


def edits_to_coco(edits: Sequence[RegionEdit]) -> dict[str, Any]:
    """The COCO object holding ``edits`` (in order), readable by the ``annotations:`` source."""
    images: dict[str, dict[str, Any]] = {}
    for e in edits:
        images.setdefault(e.image_id, {"id": e.image_id, "file_name": e.file_name, "width": e.width,
                                       "height": e.height})
    labels = sorted({e.label for e in edits})
    cat = {name: k + 1 for k, name in enumerate(labels)}
    anns = []
    for n, e in enumerate(edits, start=1):
        xs = [p[0] for p in e.polygon]
        ys = [p[1] for p in e.polygon]
        area = 0.5 * abs(sum(xs[k] * ys[k - 1] - xs[k - 1] * ys[k] for k in range(len(xs))))
        anns.append({"id": n, "image_id": e.image_id, "category_id": cat[e.label],
                     "segmentation": [[c for p in e.polygon for c in p]],
                     "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], "area": area, "iscrowd": 0,
                     "semcontrib": {"edit_id": e.edit_id, "created": e.created, "inside": e.inside,
                                    "shape": e.shape}})
    return {"info": {"format": EDITS_FORMAT, "description": "region edits made in the semcontrib dashboard; "
                     "edits apply in annotation order over the automatic regions"},
            "images": list(images.values()), "categories": [{"id": cat[n], "name": n} for n in labels],
            "annotations": anns}


def coco_to_edits(data: Any, source: str = "edits") -> list[RegionEdit]:
    """The edits of a COCO object written by :func:`edits_to_coco`, validated (``ValueError`` naming the
    file and the annotation when anything is malformed, duplicated or over a bound)."""
    from semcontrib.segmentation.annotations import read_coco

    records = read_coco(data, source)  # the checks every COCO annotation input gets
    for rec in records:
        if rec.errors:
            raise ValueError(f"{source}: image {rec.image_id!r}: {rec.errors[0]}")
    images = {str(im["id"]): im for im in data["images"]}
    cats = {c["id"]: str(c["name"]) for c in data["categories"]}
    if len(data["annotations"]) > MAX_EDITS:
        raise ValueError(f"{source}: {len(data['annotations'])} edits, more than the limit of {MAX_EDITS}")
    out: list[RegionEdit] = []
    seen: set[str] = set()
    per_image: dict[str, int] = {}
    for ann in data["annotations"]:
        where = f"{source}: annotation {str(ann.get('id'))[:40]}"
        extra = ann.get("semcontrib")
        seg = ann.get("segmentation")
        if not isinstance(extra, dict):
            raise ValueError(f"{where}: lacks the 'semcontrib' object (edit_id, created, inside, shape)")
        if not isinstance(seg, list) or len(seg) != 1 or not isinstance(seg[0], list) or len(seg[0]) % 2:
            raise ValueError(f"{where}: an edit's segmentation must be one polygon [[x0, y0, x1, y1, ...]]")
        im = images[str(ann["image_id"])]
        try:
            e = make_edit(image_id=str(im["id"]), file_name=str(im["file_name"]), width=im["width"],
                          height=im["height"], label=cats[ann["category_id"]],
                          polygon=[seg[0][k:k + 2] for k in range(0, len(seg[0]), 2)], inside=extra.get("inside"),
                          shape=extra.get("shape", "polygon"), edit_id=extra.get("edit_id"),
                          created=extra.get("created"))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if e.edit_id in seen:
            raise ValueError(f"{where}: edit_id {e.edit_id} appears twice")
        seen.add(e.edit_id)
        per_image[e.image_id] = per_image.get(e.image_id, 0) + 1
        if per_image[e.image_id] > MAX_EDITS_PER_IMAGE:
            raise ValueError(f"{where}: image {e.image_id!r} has more than {MAX_EDITS_PER_IMAGE} edits")
        out.append(e)
    return out


def encode_edits(edits: Sequence[RegionEdit]) -> bytes:
    """The file's bytes; ``ValueError`` when they would exceed :data:`MAX_EDITS_BYTES` or the other bounds."""
    if len(edits) > MAX_EDITS:
        raise ValueError(f"at most {MAX_EDITS} edits can be stored, got {len(edits)}")
    data = (json.dumps(edits_to_coco(edits), indent=1) + "\n").encode()
    if len(data) > MAX_EDITS_BYTES:
        raise ValueError(f"the edits file would be {len(data)} bytes, over the limit of {MAX_EDITS_BYTES}")
    return data


def read_edits(path: str | Path) -> list[RegionEdit]:
    """The edits stored in ``path`` (``[]`` when there is no such file), validated."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size > MAX_EDITS_BYTES:
        raise ValueError(f"{path}: {size} bytes, over the limit of {MAX_EDITS_BYTES} for an edits file")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return coco_to_edits(data, str(path))


def edits_digest(edits: Iterable[RegionEdit]) -> str:
    """A short hash (16 hex digits) of what a sequence of edits does to a region map, in order."""
    blob = json.dumps([e.identity() for e in edits], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the corpus's edits file


def edits_path(corpus: str | Path) -> Path:
    """``CORPUS/annotations/edits.json``."""
    return Path(corpus) / EDITS_FILE


@dataclass(frozen=True)
class EditsChange:
    """What :func:`change_edits` did: the edits stored now, and the ids added and removed."""

    edits: tuple[RegionEdit, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]


def change_edits(corpus: str | Path, add: Sequence[RegionEdit] = (), remove: Iterable[str] = ()) -> EditsChange:
    """Append ``add`` and delete the edits whose ids are in ``remove``, as one atomic change under the
    corpus's edits lock (a read-modify-write of the whole file).

    An added edit whose id is already stored is left out (a retried request); removing an unknown id
    does nothing. ``ValueError`` (nothing written) when the result would exceed a bound or the stored
    file is malformed (a hand-edited file is never overwritten by a change it cannot read).
    """
    path = edits_path(corpus)
    remove = set(remove)
    with edits_lock(Path(corpus)):
        remove_temporaries_in(path.parent)  # a killed writer's leftovers (we hold the lock: none is active)
        old = read_edits(path)
        ids = {e.edit_id for e in old}
        new = [e for e in add if e.edit_id not in ids]
        if len({e.edit_id for e in new}) != len(new):
            raise ValueError("the same edit_id appears twice in one change")
        kept = [e for e in old if e.edit_id not in remove]
        result = kept + new
        per_image: dict[str, int] = {}
        for e in result:
            per_image[e.image_id] = per_image.get(e.image_id, 0) + 1
            if per_image[e.image_id] > MAX_EDITS_PER_IMAGE:
                raise ValueError(f"image {e.image_id!r} would have more than {MAX_EDITS_PER_IMAGE} edits")
        removed = tuple(e.edit_id for e in old if e.edit_id in remove)
        if new or removed:
            write_bytes(path, encode_edits(result))
            logger.info("%s: %d edit(s) added, %d removed, %d stored", path, len(new), len(removed), len(result))
    return EditsChange(tuple(result), tuple(e.edit_id for e in new), removed)


def add_edits(corpus: str | Path, edits: Sequence[RegionEdit]) -> EditsChange:
    """Append ``edits`` (see :func:`change_edits`)."""
    return change_edits(corpus, add=edits)


def remove_edits(corpus: str | Path, edit_ids: Iterable[str]) -> EditsChange:
    """Delete the edits with these ids (see :func:`change_edits`)."""
    return change_edits(corpus, remove=edit_ids)
