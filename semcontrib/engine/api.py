"""The Python API: :func:`analyze` and :func:`settings_for`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from semcontrib import corpus as cstore
from semcontrib.engine.options import AnalysisReport, RunOptions
from semcontrib.engine.run import AnalysisRun
from semcontrib.settings import (
    IN_MEMORY_MODEL,
    AnalysisSettings,
    ExternalAttributions,
    reuse,
)

# --------------------------------------------------------------------------- the Python API


def settings_for(out: str | Path, given: Mapping[str, Any]) -> tuple[AnalysisSettings, list[str]]:
    """The settings of a run: those recorded in an existing corpus, with ``given`` fields replacing them.

    Returns the settings and the names of the fields taken from the corpus (empty for a new corpus).
    """
    manifest = cstore.read_manifest(Path(out)) if Path(out).is_dir() else None
    if manifest is None or "settings" not in manifest:
        return AnalysisSettings(**dict(given)), []
    return reuse(AnalysisSettings.from_record(manifest["settings"]), given)


def analyze(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    model: Any = None,
    *,
    settings: AnalysisSettings | None = None,
    options: RunOptions | None = None,
    **given: Any,
) -> AnalysisReport:
    """Analyse images into the corpus at ``out`` (created or resumed).

    Parameters
    ----------
    inputs : folder, CSV of paths (with optional label columns) or list of image paths.
    out : the corpus directory.
    model : an embedded model name (``imagenet-heads``), a checkpoint path, or a loaded model
        (``MultitaskModel`` or :func:`semcontrib.wrap_model`).
    settings : an :class:`~semcontrib.settings.AnalysisSettings`; or give its fields as keywords:
        ``heads``, ``methods`` (``lrp``, ``gradcam``, ``ig``, ``occlusion``, ``shapley``, ``siam``),
        ``method_params`` (e.g. ``{"ig": {"n_steps": 16}}``), ``regions`` (``grid``, ``grid:4x4``,
        ``landscape``, ``sam``, ``annotations:PATH``), ``region_options``, ``targets`` (head -> class,
        or ``among:A,B``), ``external`` (heatmaps computed elsewhere), ``validity``, ``validity_baseline``.
        On an existing corpus, the fields not given are those recorded in its manifest.
    options : :class:`RunOptions`; or give ``batch_size``, ``chunk_size``, ``device``, ``workers``, ``shard``,
        ``wait``, ``progress`` as keywords.
    """
    opt_fields = {k: given.pop(k) for k in ("batch_size", "chunk_size", "device", "precision", "channels_last",
                                            "workers", "shard", "wait", "progress") if k in given}
    options = options or RunOptions(**opt_fields)
    loaded = None
    if model is not None and not isinstance(model, (str, Path)):
        loaded = model
        name = getattr(model, "identity", {}).get("name", type(model).__name__)
        given["model"] = f"{IN_MEMORY_MODEL}{name}"
    elif model is not None:
        given["model"] = str(model)
    for k in ("heads", "methods"):
        if k in given and given[k] is not None:
            given[k] = tuple(given[k])
    if given.get("external") is not None and not isinstance(given["external"], ExternalAttributions):
        given["external"] = ExternalAttributions(**dict(given["external"]))
    source = None
    if given.get("regions") is not None and not isinstance(given["regions"], str):
        source = given.pop("regions")  # a region source object
        given["regions"] = str(source.name)
    given = {k: v for k, v in given.items() if v is not None}
    if settings is None:
        settings, _ = settings_for(out, given)
    run = AnalysisRun(settings, out, loaded, options, source)
    return run.run(inputs)
