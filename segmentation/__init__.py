"""Region sources: image -> int32 label map + names from a fixed vocabulary.

``REGION_SOURCES`` maps the CLI name (``semcontrib analyze --regions NAME``) to a factory
``factory(spec_argument: str | None, options: dict) -> RegionSource``. Options arrive from the CLI as
strings (``--region-opt KEY=VALUE``) and are converted here; unknown keys raise ``ValueError``.
Heavy dependencies (segment-anything, torch, superpixels) are imported inside the sources that use
them. See ``docs/regions.md`` for every source's options.

=============  ==========================================================================
spec           source
=============  ==========================================================================
``grid[:RxC]`` :class:`segmentation.grid.GridSource` (options ``rows``, ``cols``)
``landscape``  :class:`segmentation.landscape.LandscapeSource`
``sam[:CKPT]`` :class:`segmentation.sam.SamSource`
``annotations:PATH`` :class:`segmentation.annotations.AnnotationSource`
``faces``      :class:`segmentation.faces.FacesSource` (dlib landmarks; non-commercial model)
``parts:boxes=F,foreground=S`` :class:`segmentation.parts.PartsSource`
``concepts:PROMPTS`` :class:`segmentation.concepts.ConceptSource` (text prompts; ``transformers``)
=============  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from semcontrib.regions import RegionSource


def _grid(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.grid import GridSource

    rows, cols = 3, 3
    if arg:
        try:
            rows, cols = (int(v) for v in arg.lower().split("x"))
        except ValueError as exc:
            raise ValueError(f"grid size must look like 3x3, got {arg!r}") from exc
    _check_keys("grid", options, {"rows", "cols"})
    rows = _int("rows", options.get("rows", rows))
    cols = _int("cols", options.get("cols", cols))
    return GridSource(rows=rows, cols=cols)


# --------------------------------------------------------------------------- option parsing


def _check_keys(source: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for region source {source!r}; "
                         f"allowed: {sorted(allowed)}")


def _int(key: str, value: Any) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"option {key} must be an integer, got {value!r}") from exc


def _float(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"option {key} must be a number, got {value!r}") from exc


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"option {key} must be true or false, got {value!r}")


_Converter = Callable[[str, Any], Any]
RULE_OPTIONS: dict[str, _Converter] = {
    "evidence_threshold": _float, "sky_texture": _float, "sky_row": _float, "water_texture": _float,
    "green_exg": _float, "ground_row": _float, "faces": _bool}
LABELLER_OPTIONS = {"labeller", "seg_model", "seg_checkpoint", "seg_mapping", "seg_model_object",
                    "device"} | set(RULE_OPTIONS)
OVERSEGMENT_OPTIONS: dict[str, _Converter] = {
    "scale": _float, "sigma": _float, "min_size": _int, "n_segments": _int, "compactness": _float}
SAM_GENERATOR_OPTIONS: dict[str, _Converter] = {
    "points_per_side": _int, "points_per_batch": _int, "pred_iou_thresh": _float,
    "stability_score_thresh": _float, "crop_n_layers": _int, "box_nms_thresh": _float}


def _labeller(options: dict[str, Any]) -> Any:
    from semcontrib.segmentation.landscape import RuleLabeller

    kind = str(options.get("labeller", "rules"))
    if kind == "rules":
        kw: dict[str, Any] = {k: conv(k, options[k]) for k, conv in RULE_OPTIONS.items() if k in options}
        return RuleLabeller(**kw)
    if kind == "segmentation-model":
        from semcontrib.segmentation.segmodel import SegmentationModelLabeller

        return SegmentationModelLabeller(
            mapping=options.get("seg_mapping", "ade20k"), model=options.get("seg_model_object"),
            architecture=options.get("seg_model"), checkpoint=options.get("seg_checkpoint"),
            device=str(options.get("device", "cpu")))
    raise ValueError(f"unknown labeller {kind!r}; choose 'rules' or 'segmentation-model'")


def _landscape(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.landscape import LandscapeSource

    _check_keys("landscape", options, LABELLER_OPTIONS | set(OVERSEGMENT_OPTIONS)
                | {"oversegmentation", "max_side"})
    method = str(options.get("oversegmentation", arg or "felzenszwalb"))
    seg_params = {k: conv(k, options[k]) for k, conv in OVERSEGMENT_OPTIONS.items() if k in options}
    return LandscapeSource(labeller=_labeller(options), oversegmentation=method,
                           max_side=_int("max_side", options.get("max_side", 320)),
                           segment_params=seg_params)


def _sam(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.sam import SamSource

    _check_keys("sam", options, LABELLER_OPTIONS | set(SAM_GENERATOR_OPTIONS)
                | {"checkpoint", "model", "min_area", "prompts", "max_side"})
    gen = {k: conv(k, options[k]) for k, conv in SAM_GENERATOR_OPTIONS.items() if k in options}
    return SamSource(model=options.get("model"), checkpoint=options.get("checkpoint") or arg,
                     min_area=_int("min_area", options.get("min_area", 100)),
                     labeller=_labeller(options), prompts=options.get("prompts"), generator=gen,
                     max_side=_int("max_side", options.get("max_side", 320)),
                     device=str(options.get("device", "cpu")))


def _annotations(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.annotations import AnnotationSource

    _check_keys("annotations", options, {"path", "min_area", "missing"})
    path = options.get("path") or arg
    if not path:
        raise ValueError("the annotations source needs a path: --regions annotations:PATH")
    return AnnotationSource(path, min_area=_int("min_area", options.get("min_area", 0)),
                            missing=str(options.get("missing", "error")))


def _parts(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.parts import make_parts_source

    return make_parts_source(arg, options)


def _concepts(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.concepts_backends import make_concepts_source

    return make_concepts_source(arg, options)


def _faces(arg: str | None, options: dict[str, Any]) -> RegionSource:
    from semcontrib.segmentation.faces import make_faces_source

    return make_faces_source(arg, options)


REGION_SOURCES: dict[str, Callable[[str | None, dict[str, Any]], RegionSource]] = {
    "grid": _grid,
    "landscape": _landscape,
    "sam": _sam,
    "annotations": _annotations,
    "faces": _faces,
    "parts": _parts,
    "concepts": _concepts,
}


def make_region_source(spec: str, **options: Any) -> RegionSource:
    """Build a source from a CLI spec such as ``grid``, ``grid:4x4``, ``landscape``, ``sam`` or
    ``annotations:PATH``; ``options`` are the source's options (strings are converted)."""
    name, _, arg = spec.partition(":")
    if name not in REGION_SOURCES:
        raise ValueError(f"unknown region source {name!r}; choose from {sorted(REGION_SOURCES)}")
    return REGION_SOURCES[name](arg or None, options)
