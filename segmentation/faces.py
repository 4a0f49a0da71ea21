"""``faces``: people's face parts from dlib's face detector and its 68-point face landmarks, offline.

``--regions faces`` (``pip install 'semcontrib[faces]'``: the ``dlib-bin`` wheel and
``face-recognition-models``, which ships ``shape_predictor_68_face_landmarks.dat``).

Vocabulary (fixed, in this order): ``face, left_eye, right_eye, brows, nose, mouth``, then ``person``
when option ``person=SPEC:LABEL`` names a region of another source, then ``rest``.

**Left and right are the subject's own**: ``left_eye`` is the person's left eye, which lies on the
*picture's right* in a frontal portrait (the convention of the 68-point scheme and of the bundled
part annotations in ``data/part_annotations.coco.json``).

How one image is segmented
--------------------------
1. **Detection** on a copy downscaled (antialiased) so its long side is at most ``max_side`` pixels
   (640): dlib's HOG frontal face detector, ``detector.run(rgb, upsample, threshold)``; each
   ``upsample`` step doubles the working image so faces half as large are found (about 80 px at the
   working size without upsampling, 40 px with one step), at about 4x the time per step.
   Detections with a score at or below ``threshold`` (0.5; dlib's own default is 0, which on the
   bundled photographs with ``upsample=1`` also "finds" a face in a mission patch) are dropped.
2. **Landmarks**: each kept box is scaled back to the full-size image and the 68 landmarks are
   predicted there (the full-resolution pixels, not the downscaled copy), a few ms per face.
3. **Polygons** from the landmarks (iBUG 300-W indices; ``s`` = distance from the nose bridge, point
   27, to the chin, point 8; "up" = the direction from the chin to point 27, so a tilted head
   tilts its regions too):

   ========== ===================================================================================
   region     polygon
   ========== ===================================================================================
   face       jaw line 0-16, closed over the brows (26..17) moved up by ``forehead`` x ``s``
              (0.2: the lower forehead, below the hair or hat of the bundled portraits); minus the parts
   brows      each brow line (17-21, 22-26) thickened to a band ``0.12 s`` high about the line
   nose       convex hull of 27-35 (bridge and nostril base)
   right_eye  36-41 (the subject's right eye: the picture's left)
   left_eye   42-47 (the subject's left eye: the picture's right)
   mouth      outer lip contour 48-59 (the lips and what lies between them)
   ========== ===================================================================================

   A pixel belongs to a polygon when its centre is inside (``skimage.draw.polygon``). Overlaps are
   resolved by painting in the table's order, later parts winning: face, brows, nose, eyes,
   mouth. Every face's part joins the one region of that name (several faces merge per part).
4. **person** (only with ``person=SPEC:LABEL``): the pixels the other source labels ``LABEL``
   that no face part took, e.g. ``person=landscape:person``. The spec is split at its last ``:``;
   the other source is built with ``make_region_source`` and the options given with a
   ``person.`` prefix (``--region-opt person.evidence_threshold=0.4``).
5. **rest**: every other pixel. Every pixel has exactly one label.

An image without a face is not an error: its map is ``rest`` (and ``person`` where the other source
says so) and :attr:`RegionMap.note` says ``no face found``, which the pipeline records as the
image's reason (its status stays ``ok``).

Licence
-------
The landmark model ``shape_predictor_68_face_landmarks.dat`` was trained on the iBUG 300-W data set,
whose licence **excludes commercial use**; so does this source's output. ``params`` carries
:data:`LANDMARK_LICENCE`, so it lands in every corpus manifest built with this source. dlib itself
and its built-in HOG face detector are under the Boost Software Licence.

Cache identity: the params, the sha256 of the landmark model file, dlib's version (the detector is
built into dlib) and, with ``person``, the other source's name, vocabulary and identity.
``uses_evidence`` is that other source's (``landscape`` reads class evidence) and ``False`` without it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Mapping
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from semcontrib.regions import ImageInput, RegionMap, RegionSource, file_identity

logger = logging.getLogger(__name__)

PART_NAMES: tuple[str, ...] = ("face", "left_eye", "right_eye", "brows", "nose", "mouth")
REST = "rest"
PERSON = "person"
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
LANDMARK_LICENCE = ("dlib 68-point landmark model (iBUG 300-W training data): not for commercial use; "
                    "face regions computed with it inherit that restriction")
NO_FACE = "no face found"
INSTALL_HINT = "pip install 'semcontrib[faces]' (the dlib-bin and face-recognition-models wheels)"

# landmark index ranges of the 68-point (iBUG 300-W) scheme
JAW = range(0, 17)
RIGHT_BROW, LEFT_BROW = range(17, 22), range(22, 27)  # the subject's right brow is on the picture's left
NOSE = range(27, 36)
RIGHT_EYE, LEFT_EYE = range(36, 42), range(42, 48)
OUTER_LIPS = range(48, 60)
BROW_THICKNESS = 0.12  # of the nose-bridge-to-chin distance

DEFAULTS: dict[str, Any] = {"threshold": 0.5, "upsample": 0, "max_side": 640, "forehead": 0.2}


def default_model_path() -> str:
    """The 68-point landmark model inside the installed ``face_recognition_models`` package, found
    without importing it (its ``__init__`` needs ``pkg_resources``, which new setuptools lack)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"the faces source needs the face-recognition-models package: {INSTALL_HINT}")
    return os.path.join(list(spec.submodule_search_locations)[0], "models", LANDMARK_MODEL)


def split_source_label(text: str) -> tuple[str, str]:
    """``"landscape:person"`` -> ``("landscape", "person")``; the spec is split at its last ``:``.

    >>> split_source_label("annotations:/data/people.json:person")
    ('annotations:/data/people.json', 'person')
    """
    spec, sep, label = str(text).rpartition(":")
    if not sep or not spec or not label:
        raise ValueError(f"person must look like SPEC:LABEL (e.g. landscape:person), got {text!r}")
    return spec, label


def face_polygons(points: np.ndarray, forehead: float = DEFAULTS["forehead"]) -> dict[str, list[np.ndarray]]:
    """The part polygons of one face.

    Parameters
    ----------
    points : float 68x2 landmarks as (x, y) = (column, row) pixel coordinates.
    forehead : how far above the brows the face polygon reaches, as a fraction of the distance from
        the nose bridge (point 27) to the chin (point 8).

    Returns
    -------
    part name -> list of float Nx2 (x, y) polygons (``brows`` has two, the other parts one).

    Examples
    --------
    >>> pts = np.zeros((68, 2)); pts[8] = (0, 10)  # chin 10 px below the bridge
    >>> face_polygons(pts)["mouth"][0].shape
    (12, 2)
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"landmarks must be 68x2 (x, y), got shape {p.shape}")
    up = p[27] - p[8]
    s = float(np.hypot(*up))
    up = up / s if s > 0 else np.array([0.0, -1.0])
    brows = p[list(RIGHT_BROW) + list(LEFT_BROW)]
    face = np.concatenate([p[list(JAW)], (brows + forehead * s * up)[::-1]])
    half = 0.5 * BROW_THICKNESS * s * up
    bands = [np.concatenate([p[list(r)] + half, (p[list(r)] - half)[::-1]]) for r in (RIGHT_BROW, LEFT_BROW)]
    return {"face": [face], "brows": bands, "nose": [_convex_hull(p[list(NOSE)])],
            "right_eye": [p[list(RIGHT_EYE)]], "left_eye": [p[list(LEFT_EYE)]], "mouth": [p[list(OUTER_LIPS)]]}


def _convex_hull(xy: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull of Nx2 points, counter-clockwise (collinear points dropped)."""
    pts = sorted({(float(x), float(y)) for x, y in xy})
    if len(pts) < 3:
        return np.asarray(pts, dtype=np.float64)

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    hull: list[tuple[float, float]] = []
    for seq in (pts, pts[::-1]):
        part: list[tuple[float, float]] = []
        for q in seq:
            while len(part) >= 2 and cross(part[-2], part[-1], q) <= 0:
                part.pop()
            part.append(q)
        hull.extend(part[:-1])
    return np.asarray(hull, dtype=np.float64)


# painting order: later parts win where polygons overlap
PAINT_ORDER: tuple[str, ...] = ("face", "brows", "nose", "right_eye", "left_eye", "mouth")


def rasterise_faces(faces: list[np.ndarray], shape: tuple[int, int], vocabulary: tuple[str, ...],
                    base: np.ndarray | None = None, forehead: float = DEFAULTS["forehead"]) -> np.ndarray:
    """int32 HxW labels over ``vocabulary`` from the 68x2 (x, y) landmarks of each face.

    ``base`` (int32 HxW, labels of ``vocabulary``) is painted over; default: every pixel ``rest``.
    Parts are painted in :data:`PAINT_ORDER` (all faces' ``face`` polygons first, and so on), so a
    later part wins where polygons overlap and several faces merge per part.
    """
    from skimage.draw import polygon

    h, w = shape
    labels = (np.full((h, w), vocabulary.index(REST), dtype=np.int32) if base is None
              else np.array(base, dtype=np.int32, copy=True))
    polys = [face_polygons(f, forehead) for f in faces]
    for part in PAINT_ORDER:
        k = vocabulary.index(part)
        for fp in polys:
            for poly in fp[part]:
                rr, cc = polygon(poly[:, 1], poly[:, 0], shape=(h, w))
                labels[rr, cc] = k
    return labels


@lru_cache(maxsize=1)
def _load_detector() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()  # ~2 s: the HOG model is deserialised from dlib's binary


@lru_cache(maxsize=2)
def _load_predictor(path: str) -> Any:
    import dlib

    return dlib.shape_predictor(path)  # ~2.5 s for the 99 MB 68-point model


class FacesSource:
    """Region source ``faces`` (see the module docstring for the regions, the rules and the licence).

    Parameters
    ----------
    model : path of ``shape_predictor_68_face_landmarks.dat`` (default: the one in the installed
        ``face_recognition_models`` package).
    threshold : detections scoring at or below it are dropped (0.5).
    upsample : detector upsampling steps, 0-3 (0); each finds faces half as large, ~4x slower.
    max_side : long side in pixels of the downscaled copy the detector sees (640; >= 64).
    forehead : face polygon's reach above the brows, fraction of bridge-to-chin distance (0.2; 0-2).
    person : another region source and its label for the rest of the person, e.g. a
        ``LandscapeSource`` and ``"person"``; ``person_spec`` is its spec, shown in ``params``.
    """

    name = "faces"

    def __init__(self, model: str | os.PathLike[str] | None = None, *, threshold: float = DEFAULTS["threshold"],
                 upsample: int = DEFAULTS["upsample"], max_side: int = DEFAULTS["max_side"],
                 forehead: float = DEFAULTS["forehead"], person: tuple[RegionSource, str] | None = None,
                 person_spec: str = "") -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"faces: threshold must be a finite number, got {threshold!r}")
        if isinstance(upsample, bool) or not isinstance(upsample, int) or not 0 <= upsample <= 3:
            raise ValueError(f"faces: upsample must be an integer from 0 to 3, got {upsample!r}")
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 64:
            raise ValueError(f"faces: max_side must be an integer >= 64, got {max_side!r}")
        if isinstance(forehead, bool) or not isinstance(forehead, (int, float)) or not 0 <= forehead <= 2:
            raise ValueError(f"faces: forehead must be a number from 0 to 2, got {forehead!r}")
        if importlib.util.find_spec("dlib") is None:
            raise ValueError(f"the faces source needs dlib: {INSTALL_HINT}")
        self.model = str(model) if model else default_model_path()
        if not os.path.isfile(self.model):
            raise ValueError(f"faces: landmark model {self.model!r} not found; {INSTALL_HINT}, or give "
                             f"--region-opt model=PATH/{LANDMARK_MODEL}")
        self.threshold = float(threshold)
        self.upsample = upsample
        self.max_side = max_side
        self.forehead = float(forehead)
        self.person: tuple[RegionSource, str] | None = None
        self.person_spec = ""
        if person is not None:
            source, label = person
            if label not in source.vocabulary:
                raise ValueError(f"faces: person label {label!r} is not in the vocabulary of "
                                 f"{source.name!r}: {list(source.vocabulary)}")
            self.person = (source, label)
            self.person_spec = person_spec or f"{source.name}:{label}"
        self._vocabulary = PART_NAMES + ((PERSON,) if self.person else ()) + (REST,)

    # ---- the region-source contract
    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    @property
    def params(self) -> dict[str, Any]:
        return {"model": os.path.basename(self.model), "threshold": self.threshold, "upsample": self.upsample,
                "max_side": self.max_side, "forehead": self.forehead, "person": self.person_spec or None,
                "sides": "subject's own (left_eye = the person's left eye, on the picture's right)",
                "licence": LANDMARK_LICENCE}

    @cached_property
    def cache_identity(self) -> dict[str, Any]:
        """``params`` plus the landmark model's sha256, dlib's version and the person source's identity."""
        import dlib

        from semcontrib.regions import cache_identity

        ident = dict(self.params)
        ident["model_identity"] = file_identity(self.model)
        ident["dlib"] = str(getattr(dlib, "__version__", "unknown"))
        if self.person is not None:
            src = self.person[0]
            ident["person_identity"] = {"name": src.name, "vocabulary": list(src.vocabulary),
                                        "identity": cache_identity(src)}
        return ident

    @property
    def uses_evidence(self) -> bool:
        """The person source's (``landscape`` with its rules reads class evidence); ``False`` without one."""
        if self.person is None:
            return False
        from semcontrib.regions import uses_evidence

        return uses_evidence(self.person[0])

    @property
    def uses_torch(self) -> bool:
        """The person source's (``concepts`` runs torch models); dlib itself needs no torch."""
        return self.person is not None and bool(getattr(self.person[0], "uses_torch", False))

    # ---- the models, loaded once per process and shared by every source object (not pickled)
    @property
    def _detector(self) -> Any:
        return _load_detector()

    @property
    def _predictor(self) -> Any:
        return _load_predictor(self.model)

    # ---- the work
    def detect(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """The faces in uint8 HxWx3 as (68x2 float (x, y) landmarks at full size, detector score),
        best score first; only detections scoring above ``threshold``."""
        import dlib

        from semcontrib.segmentation.landscape import resize_rgb, working_size

        h, w = rgb.shape[:2]
        size = working_size(h, w, self.max_side)
        small = np.ascontiguousarray(resize_rgb(rgb, size))
        sy, sx = h / size[0], w / size[1]
        rects, scores, _ = self._detector.run(small, self.upsample, self.threshold)
        full = np.ascontiguousarray(rgb)
        faces = []
        for rect, score in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
            if score <= self.threshold:
                continue
            box = dlib.rectangle(int(round(rect.left() * sx)), int(round(rect.top() * sy)),
                                 int(round(rect.right() * sx)), int(round(rect.bottom() * sy)))
            shape = self._predictor(full, box)
            pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float64)
            faces.append((pts, float(score)))
        return faces

    def segment(self, image: ImageInput) -> RegionMap:
        rgb = np.asarray(image.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"faces: image must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        base = np.full((h, w), self._vocabulary.index(REST), dtype=np.int32)
        if self.person is not None:
            src, label = self.person
            other = src.segment(image)
            base[other.labels == other.names.index(label)] = self._vocabulary.index(PERSON)
        faces = self.detect(rgb)
        if not faces:
            logger.info("faces: %s: %s (threshold %s, upsample %d)", image.image_id or image.path, NO_FACE,
                        self.threshold, self.upsample)
            return RegionMap(base, self._vocabulary, note=NO_FACE)
        labels = rasterise_faces([f for f, _ in faces], (h, w), self._vocabulary, base, self.forehead)
        return RegionMap(labels, self._vocabulary)


def make_faces_source(arg: str | None, options: Mapping[str, Any]) -> FacesSource:
    """Build :class:`FacesSource` from CLI options (strings converted; unknown keys rejected).

    ``arg`` (``--regions faces:PATH``) is the landmark model path, as option ``model`` is.
    """
    allowed = {"model", "threshold", "upsample", "max_side", "forehead", "person"}
    unknown = {k for k in options if k not in allowed and not k.startswith("person.")}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for region source 'faces'; "
                         f"allowed: {sorted(allowed)} and person.KEY")
    kw: dict[str, Any] = {}
    for key, conv in (("threshold", float), ("forehead", float), ("upsample", int), ("max_side", int)):
        if key in options:
            value = options[key]
            try:
                if isinstance(value, bool):
                    raise ValueError
                kw[key] = conv(value)
            except (TypeError, ValueError) as exc:
                kind = "an integer" if conv is int else "a number"
                raise ValueError(f"faces: option {key} must be {kind}, got {value!r}") from exc
    person = None
    spec = ""
    if options.get("person"):
        from semcontrib.segmentation import make_region_source

        spec, label = split_source_label(str(options["person"]))
        if spec.partition(":")[0] == "faces":
            raise ValueError("faces: person cannot be another faces source")
        sub = {k[len("person."):]: v for k, v in options.items() if k.startswith("person.")}
        person = (make_region_source(spec, **sub), label)
        spec = str(options["person"])
    elif any(k.startswith("person.") for k in options):
        raise ValueError("faces: person.KEY options need person=SPEC:LABEL")
    return FacesSource(model=options.get("model") or arg, person=person, person_spec=spec, **kw)
