"""``landscape``: over-segment a photograph and label every segment from a fixed landscape vocabulary.

Pipeline (all at a working size whose long side is at most ``max_side`` pixels, 320 by default;
labels are upsampled back to the original size by nearest neighbour):

1. **Over-segmentation** with scikit-image: ``felzenszwalb`` (default; ``scale=150, sigma=0.8,
   min_size=40`` at the working size) or ``slic`` (``n_segments=250, compactness=10, start_label=0``).
2. **Labelling**: a pluggable *labeller* gives every segment one vocabulary index (see
   :class:`RuleLabeller`, the default, and ``segmentation.segmodel.SegmentationModelLabeller``).
3. **Merging**: segments with the same label form one region; the region's label is its vocabulary
   index, so region ``k`` means the same thing in every image.

The vocabulary is fixed and ordered: :data:`LANDSCAPE_VOCABULARY`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol

import numpy as np

from semcontrib.regions import UNASSIGNED, ImageInput, RegionError, RegionMap, nearest_resize

logger = logging.getLogger(__name__)

LANDSCAPE_VOCABULARY: tuple[str, ...] = (
    "sky", "water", "vegetation", "bare_ground", "built", "person", "animal", "other",
)
SKY, WATER, VEGETATION, BARE_GROUND, BUILT, PERSON, ANIMAL, OTHER = range(8)

OVERSEGMENTATIONS = ("felzenszwalb", "slic")


class Labeller(Protocol):
    """Gives each segment of a segment map a vocabulary index.

    ``label(rgb, segments, evidence)``: ``rgb`` uint8 HxWx3 (working size), ``segments`` int32 HxW
    with ids ``0..S-1`` (``-1`` = ignore), ``evidence`` group name -> float32 HxW in [0, 1] (same
    size, possibly empty). Returns int array of length S with values in
    ``0..len(LANDSCAPE_VOCABULARY)-1``.

    Optional members, read through :func:`labeller_identity` and :func:`labeller_uses_evidence`:
    ``cache_identity`` (dict, default ``params``; add the content hash of every file the labeller
    reads) and ``uses_evidence`` (bool, default ``True``: whether ``label`` reads ``evidence``).
    """

    name: str

    @property
    def params(self) -> dict[str, Any]: ...

    def label(self, rgb: np.ndarray, segments: np.ndarray,
              evidence: Mapping[str, np.ndarray]) -> np.ndarray: ...


def labeller_identity(labeller: Labeller) -> dict[str, Any]:
    """``labeller.cache_identity`` when defined, else its ``params``."""
    ident = getattr(labeller, "cache_identity", None)
    return dict(ident) if ident is not None else dict(labeller.params)


def labeller_uses_evidence(labeller: Labeller) -> bool:
    """``labeller.uses_evidence`` when defined, else ``True`` (an unknown labeller may read it)."""
    return bool(getattr(labeller, "uses_evidence", True))


# --------------------------------------------------------------------------- helpers


def working_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(h, w) scaled so that the long side is at most ``max_side`` (never upscaled)."""
    s = min(1.0, max_side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-averaged (antialiased) resize of uint8 HxWx3 to ``size`` = (h, w)."""
    if rgb.shape[:2] == size:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float HxW map to ``size`` = (h, w)."""
    if arr.shape == size:
        return arr.astype(np.float32, copy=False)
    from skimage.transform import resize

    return resize(arr.astype(np.float32), size, order=1, mode="edge", anti_aliasing=False,
                  preserve_range=True).astype(np.float32)


def oversegment(rgb: np.ndarray, method: str = "felzenszwalb", **kwargs: Any) -> np.ndarray:
    """Over-segment uint8 HxWx3 into int32 segment ids ``0..S-1`` covering every pixel."""
    from skimage import segmentation as sks

    if method == "felzenszwalb":
        params = {"scale": 150.0, "sigma": 0.8, "min_size": 40} | kwargs
        seg = sks.felzenszwalb(rgb, **params)
    elif method == "slic":
        params = {"n_segments": 250, "compactness": 10.0, "start_label": 0} | kwargs
        seg = sks.slic(rgb, **params)
    else:
        raise ValueError(f"unknown over-segmentation {method!r}; choose from {OVERSEGMENTATIONS}")
    _, inverse = np.unique(seg, return_inverse=True)
    return inverse.reshape(seg.shape).astype(np.int32)


# --------------------------------------------------------------------------- segment features


@dataclass(frozen=True)
class SegmentFeatures:
    """Per-segment statistics (arrays of length S) at the working size.

    Colour: ``r, g, b`` means in [0, 1]; ``hue`` in degrees [0, 360), ``sat``, ``val`` (HSV of the
    mean colour); ``exg`` excess green ``2g - r - b`` on chromaticities ``x / (r + g + b)``.
    Texture: ``texture`` mean Sobel gradient magnitude of the luminance.
    Position: ``row`` mean row / H (0 = top), ``top`` fraction of the segment's pixels on the top
    border row band (first 2 % of rows), ``area`` fraction of the image.
    Evidence: ``evidence[group]`` mean class evidence (0 where unavailable).
    """

    r: np.ndarray
    g: np.ndarray
    b: np.ndarray
    hue: np.ndarray
    sat: np.ndarray
    val: np.ndarray
    exg: np.ndarray
    texture: np.ndarray
    row: np.ndarray
    top: np.ndarray
    bottom_row: np.ndarray
    area: np.ndarray
    evidence: dict[str, np.ndarray]


def segment_features(rgb: np.ndarray, segments: np.ndarray,
                     evidence: Mapping[str, np.ndarray]) -> SegmentFeatures:
    """Compute :class:`SegmentFeatures` for segments ``0..S-1`` (``-1`` ignored)."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    h, w = segments.shape
    n = int(segments.max()) + 1 if segments.size and segments.max() >= 0 else 0
    valid = segments >= 0
    ids = segments[valid]
    count = np.bincount(ids, minlength=n).astype(np.float64)
    safe = np.maximum(count, 1)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(ids, weights=values[valid].astype(np.float64), minlength=n) / safe

    f = rgb.astype(np.float32) / 255.0
    r, g, b = (mean(f[..., c]) for c in range(3))
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    delta = mx - mn
    hue = np.zeros(n)
    nz = delta > 1e-6
    rr = nz & (mx == r)
    gg = nz & (mx == g) & ~rr
    bb = nz & ~rr & ~gg
    hue[rr] = (60 * ((g[rr] - b[rr]) / delta[rr])) % 360
    hue[gg] = 60 * ((b[gg] - r[gg]) / delta[gg]) + 120
    hue[bb] = 60 * ((r[bb] - g[bb]) / delta[bb]) + 240
    sat = np.where(mx > 1e-6, delta / np.maximum(mx, 1e-6), 0.0)
    total = np.maximum(f.sum(axis=2), 1e-3)
    chroma_exg = (2 * f[..., 1] - f[..., 0] - f[..., 2]) / total
    texture = mean(sobel(rgb2gray(rgb)))
    rows = np.broadcast_to(np.arange(h, dtype=np.float64)[:, None] / max(h - 1, 1), (h, w))
    band = max(1, int(round(0.02 * h)))
    top_count = np.bincount(segments[:band][valid[:band]], minlength=n).astype(np.float64)
    bottom_row = np.zeros(n)
    if n:
        ys = np.broadcast_to(np.arange(h)[:, None], (h, w))[valid]
        np.maximum.at(bottom_row, ids, ys / max(h - 1, 1))
    ev = {k: mean(np.asarray(v, dtype=np.float32)) for k, v in evidence.items()}
    return SegmentFeatures(r=r, g=g, b=b, hue=hue, sat=sat, val=mx, exg=mean(chroma_exg), texture=texture,
                           row=mean(rows), top=top_count / (band * w),
                           bottom_row=bottom_row, area=count / max(h * w, 1), evidence=ev)


def adjacency(segments: np.ndarray) -> list[set[int]]:
    """Neighbour sets of segments ``0..S-1`` (4-connectivity)."""
    n = int(segments.max()) + 1 if segments.size else 0
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for a, b in ((segments[:, :-1], segments[:, 1:]), (segments[:-1, :], segments[1:, :])):
        diff = (a != b) & (a >= 0) & (b >= 0)
        if not diff.any():
            continue
        pairs = np.unique(np.stack([a[diff], b[diff]], axis=1), axis=0)
        for x, y in pairs.tolist():
            nbrs[x].add(y)
            nbrs[y].add(x)
    return nbrs


# --------------------------------------------------------------------------- the default labeller


def _face_cascade_path() -> str:
    import os

    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", "lbpcascade_frontalface_opencv.xml")


def detect_faces(rgb: np.ndarray, min_skin: float = 0.3) -> list[tuple[int, int, int, int]]:
    """Frontal faces in uint8 HxWx3 as (row, col, height, width) boxes.

    Uses scikit-image's LBP cascade (``lbpcascade_frontalface_opencv.xml``, shipped with
    scikit-image), keeps a detection only when at least ``min_skin`` of its pixels have a skin
    chroma (YCbCr: 77 <= Cb <= 127 and 133 <= Cr <= 173).
    """
    from skimage.feature import Cascade

    h, w = rgb.shape[:2]
    if min(h, w) < 24:
        return []
    cascade = Cascade(_face_cascade_path())
    found = cascade.detect_multi_scale(img=rgb, scale_factor=1.2, step_ratio=1, min_size=(20, 20),
                                       max_size=(max(h, w), max(h, w)))
    f = rgb.astype(np.float32)
    cb = 128 - 0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2]
    cr = 128 + 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2]
    skin = (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)
    boxes = []
    for d in found:
        r, c, hh, ww = int(d["r"]), int(d["c"]), int(d["height"]), int(d["width"])
        if skin[r:r + hh, c:c + ww].mean() >= min_skin:
            boxes.append((r, c, hh, ww))
    return boxes


@dataclass
class RuleLabeller:
    """The default labeller: documented colour, texture and position rules plus class evidence.

    Rules, applied per segment in this order (the first that fires wins; thresholds are attributes):

    1. **sky** — smooth (``texture < sky_texture``), in the upper part (``row < sky_row``), and either
       blue (hue 185-260 degrees, saturation >= 0.08, value >= 0.12) or bright and grey
       (saturation < 0.15, value >= 0.65); and connected to the top border through such segments.
       Segments with animal or person evidence >= ``evidence_threshold`` are never sky.
    2. **person** — a frontal face found by scikit-image's LBP cascade (with skin-coloured pixels);
       segments lying mostly (>= 50 %) inside the face box or inside the body box below it (rows
       ``top - 0.3 h .. top + 6 h``, columns ``left - w .. left + 2 w``) become person; or mean
       ``person`` evidence >= ``evidence_threshold``.
    3. **animal** — mean ``animal`` evidence >= ``evidence_threshold``.
    4. **vegetation** — green: excess green ``2g - r - b`` (chromaticities) >= ``green_exg``, or
       hue 65-170 degrees with saturation >= 0.15; or mean ``vegetation`` evidence >=
       ``evidence_threshold``.
    5. **water** — mean ``water`` evidence >= ``evidence_threshold``; or smooth
       (``texture < water_texture``), blue-ish (hue 160-260, saturation >= 0.03), not touching the top
       border and below the horizon (its mean row is below the lowest mean row of the sky segments).
    6. **built** — mean ``built`` evidence >= ``evidence_threshold``.
    7. **bare_ground** — in the lower part (``row >= ground_row``) and earth-coloured (hue < 65
       degrees or > 330, or saturation < 0.25), or snow (saturation < 0.12, value >= 0.8, not
       touching the top).
    8. **other** — everything else.

    Evidence (``ImageInput.evidence``) comes from the classifier's class activation maps; without it
    rules 2-6 use only their colour / face cues.
    """

    evidence_threshold: float = 0.3
    sky_texture: float = 0.045
    sky_row: float = 0.5
    water_texture: float = 0.04
    green_exg: float = 0.08
    ground_row: float = 0.5
    faces: bool = True
    name: str = "rules"
    uses_evidence: ClassVar[bool] = True  # rules 1-6 read the classifier's class evidence

    @property
    def params(self) -> dict[str, Any]:
        return {"labeller": self.name, "evidence_threshold": self.evidence_threshold,
                "sky_texture": self.sky_texture, "sky_row": self.sky_row,
                "water_texture": self.water_texture, "green_exg": self.green_exg,
                "ground_row": self.ground_row, "faces": self.faces}

    def label(self, rgb: np.ndarray, segments: np.ndarray,
              evidence: Mapping[str, np.ndarray]) -> np.ndarray:
        F = segment_features(rgb, segments, evidence)
        n = F.area.size
        out = np.full(n, -1, dtype=np.int64)
        zero = np.zeros(n)
        ev = {k: F.evidence.get(k, zero) for k in ("animal", "person", "built", "vegetation", "water")}
        t = self.evidence_threshold

        # 1. sky
        blue = (F.hue >= 185) & (F.hue <= 260) & (F.sat >= 0.08) & (F.val >= 0.12)
        grey = (F.sat < 0.15) & (F.val >= 0.65)
        cand = (F.texture < self.sky_texture) & (F.row < self.sky_row) & (blue | grey)
        cand &= (ev["animal"] < t) & (ev["person"] < t)
        nbrs = adjacency(segments)
        stack = [i for i in range(n) if cand[i] and F.top[i] > 0]
        sky = np.zeros(n, dtype=bool)
        while stack:
            i = stack.pop()
            if sky[i]:
                continue
            sky[i] = True
            stack.extend(j for j in nbrs[i] if cand[j] and not sky[j])
        out[sky] = SKY

        # evidence fires only for the segment's dominant group
        stacked = np.stack([ev[k] for k in ev])
        top_group = np.asarray(list(ev))[stacked.argmax(0)]

        def fires(group: str) -> np.ndarray:
            return (ev[group] >= t) & (top_group == group)

        # 2. person
        person = fires("person")
        if self.faces:
            person |= self._face_segments(rgb, segments, n)
        out[(out < 0) & person] = PERSON
        # 3. animal
        out[(out < 0) & fires("animal")] = ANIMAL
        # 4. vegetation
        green = (F.exg >= self.green_exg) | ((F.hue >= 65) & (F.hue <= 170) & (F.sat >= 0.15))
        out[(out < 0) & (green | fires("vegetation"))] = VEGETATION
        # 5. water
        horizon = float(F.row[sky].max()) if sky.any() else 0.0
        bluish = (F.hue >= 160) & (F.hue <= 260) & (F.sat >= 0.03)
        water = (F.texture < self.water_texture) & bluish & (F.top == 0) & (F.row > horizon)
        out[(out < 0) & (water | fires("water"))] = WATER
        # 6. built
        out[(out < 0) & fires("built")] = BUILT
        # 7. bare ground, or built surfaces indoors
        earth = (F.hue < 65) | (F.hue > 330) | (F.sat < 0.25)
        snow = (F.sat < 0.12) & (F.val >= 0.8) & (F.top == 0)
        ground = (out < 0) & (((F.row >= self.ground_row) & earth) | snow)
        image_ev = {k: float((v * F.area).sum()) for k, v in ev.items()}
        indoor = (not sky.any() and not (out == VEGETATION).any() and any(image_ev.values())
                  and max(image_ev, key=lambda k: image_ev[k]) == "built")
        out[ground] = BUILT if indoor else BARE_GROUND
        # 8. other
        out[out < 0] = OTHER
        return out

    def _face_segments(self, rgb: np.ndarray, segments: np.ndarray, n: int) -> np.ndarray:
        h, w = segments.shape
        inside = np.zeros((h, w), dtype=bool)
        for r, c, hh, ww in detect_faces(rgb):
            inside[max(0, r):r + hh, max(0, c):c + ww] = True
            r0, r1 = max(0, int(r - 0.3 * hh)), min(h, int(r + 6 * hh))
            c0, c1 = max(0, int(c - ww)), min(w, int(c + 2 * ww))
            inside[r0:r1, c0:c1] = True
        if not inside.any():
            return np.zeros(n, dtype=bool)
        valid = segments >= 0
        count = np.bincount(segments[valid], minlength=n)
        hit = np.bincount(segments[valid & inside], minlength=n)
        return hit >= 0.5 * np.maximum(count, 1)


# --------------------------------------------------------------------------- the source


class LandscapeSource:
    """Region source ``landscape``: over-segment, label each segment, merge same-label segments.

    Parameters
    ----------
    labeller : a :class:`Labeller` (default :class:`RuleLabeller`).
    oversegmentation : ``"felzenszwalb"`` (default) or ``"slic"``.
    max_side : the working size's long side in pixels (default 320).
    segment_params : extra keyword arguments for the over-segmentation function.

    ``segment`` returns labels over :data:`LANDSCAPE_VOCABULARY` at the original size; every pixel
    is assigned (``other`` collects what no rule claims). ``uses_evidence`` is the labeller's
    (``True`` for :class:`RuleLabeller`), so the region cache key includes the model key then.
    """

    name = "landscape"

    def __init__(self, labeller: Labeller | None = None, oversegmentation: str = "felzenszwalb",
                 max_side: int = 320, segment_params: Mapping[str, Any] | None = None) -> None:
        if oversegmentation not in OVERSEGMENTATIONS:
            raise ValueError(f"unknown over-segmentation {oversegmentation!r}; "
                             f"choose from {OVERSEGMENTATIONS}")
        if not isinstance(max_side, int) or max_side < 16:
            raise ValueError(f"max_side must be an integer >= 16, got {max_side!r}")
        self.labeller: Labeller = labeller if labeller is not None else RuleLabeller()
        self.oversegmentation = oversegmentation
        self.max_side = max_side
        self.segment_params = dict(segment_params or {})

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return LANDSCAPE_VOCABULARY

    @property
    def params(self) -> dict[str, Any]:
        return {"oversegmentation": self.oversegmentation, "max_side": self.max_side,
                "segment_params": self.segment_params, **self.labeller.params}

    @property
    def uses_evidence(self) -> bool:
        return labeller_uses_evidence(self.labeller)

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """``params`` with the labeller's identity (file hashes of a segmentation model), once."""
        return {**self.params, "labeller_identity": labeller_identity(self.labeller)}

    def segment(self, image: ImageInput) -> RegionMap:
        rgb = check_rgb(image)
        h, w = rgb.shape[:2]
        size = working_size(h, w, self.max_side)
        small = resize_rgb(rgb, size)
        evidence = {k: resize_float(np.asarray(v), size) for k, v in image.evidence.items()}
        segments = oversegment(small, self.oversegmentation, **self.segment_params)
        seg_labels = np.asarray(self.labeller.label(small, segments, evidence))
        labels_small = seg_labels[segments].astype(np.int32)
        logger.debug("landscape %s: %d segments -> %s", image.image_id, int(segments.max()) + 1,
                     sorted({LANDSCAPE_VOCABULARY[k] for k in np.unique(labels_small)}))
        return RegionMap(nearest_resize(labels_small, (h, w)).astype(np.int32), LANDSCAPE_VOCABULARY)


def check_rgb(image: ImageInput) -> np.ndarray:
    """Validate ``image.rgb`` (uint8 HxWx3) and its evidence maps (HxW); return the rgb array.

    Raises a permanent :class:`~semcontrib.regions.RegionError` otherwise."""
    rgb = np.asarray(image.rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise RegionError(f"image {image.image_id!r}: rgb must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}",
                          permanent=True)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise RegionError(f"image {image.image_id!r} is empty", permanent=True)
    for k, v in image.evidence.items():
        if np.asarray(v).shape != rgb.shape[:2]:
            raise RegionError(f"image {image.image_id!r}: evidence {k!r} is {np.asarray(v).shape}, "
                              f"expected {rgb.shape[:2]}", permanent=True)
    return rgb


__all__ = ["LANDSCAPE_VOCABULARY", "LandscapeSource", "RuleLabeller", "UNASSIGNED"]
