"""What an analysis is asked to do: one record, read from the CLI, Python or a corpus's manifest.

This module never imports torch, so the command line can build its parser, print ``--help`` and run
``export`` or ``dashboard`` without paying for it. The choices the CLI offers live here (their one
owner); the modules that implement them (``semcontrib.attribution``) check that they agree.

Examples
--------
>>> s = AnalysisSettings(methods=("gradcam",), regions="grid:2x2")
>>> s.method_params_for("gradcam")
{}
>>> AnalysisSettings.from_record(s.to_record()) == s
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Methods that run a model; ``external`` reads heatmaps the user computed elsewhere.
PIXEL_METHODS = ("lrp", "gradcam", "ig", "xrai")
REGION_METHODS = ("occlusion", "shapley", "siam", "lime")
METHOD_NAMES = PIXEL_METHODS + REGION_METHODS
EXTERNAL_METHOD = "external"
DEFAULT_METHODS = ("lrp", "gradcam", "ig")
DEFAULT_REGIONS = "grid"
DEFAULT_MODEL = "imagenet-heads"

LRP_COMPOSITES = ("epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
                  "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")
IG_BASELINES = ("black", "blurred")
IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
PERTURBATION_BASELINES = ("blur", "mean", "black")
LIME_REGULARISERS = ("ridge", "lasso", "none")  # the surrogate of ``lime`` (semcontrib.lime)
XRAI_ALGORITHMS = ("full", "fast")  # saliency's XRAI ranking (semcontrib.xrai)
PERTURBATION_BLUR_SIGMA = 10.0  # pixels at model resolution, as IG's blurred baseline
PERTURBATION_BATCH_SIZE = 16    # perturbed images per forward (larger batches are slower per image on CPU)
# How the validity record removes a region: ROAD's noisy linear imputation (semcontrib.imputation),
# which no attribution method scores with, or one of the perturbation baselines (docs/trust.md).
VALIDITY_BASELINES = ("road", *PERTURBATION_BASELINES)
DEFAULT_VALIDITY_BASELINE = "road"
VALIDITY_STEPS = 4              # points per deletion curve (0: every step), see semcontrib.validity
VALIDITY_RANDOM_SAMPLES = 4     # seeded random orders for the random reference when not exact

# The basis in which each level of method's region vectors are read and judged: region methods score
# whole regions (their stored sums are their scores); for pixel methods the region sums too, the basis
# measured more faithful on the bundled photographs (docs/trust.md).
SCORE_BASIS: dict[str, str] = {"pixel": "sum", "region": "sum"}
DEFAULT_BASIS = "sum"  # the basis the dashboard shows first (docs/trust.md)
DEFAULT_LRP_COMPOSITE = "epsilon_gamma_box"  # the most faithful composite measured (docs/trust.md)
# Numeric precision of the model's forward and backward passes (``semcontrib.model.ComputeOptions``):
# ``bf16`` runs them under ``torch.autocast``; every stored output stays float32/float64.
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"

# A method name as it may appear in a corpus (and so in a work-file folder name).
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_method_name(name: str) -> str:
    """A method name: lower-case letters, digits and ``_``, starting with a letter, at most 32 long."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid method name {name!r}: use lower-case letters, digits and _ (at most 32)")
    return name


@dataclass(frozen=True)
class ExternalAttributions:
    """Heatmaps computed elsewhere: ``folder/<image file stem>.npz``, one float H×W array per head name."""

    folder: str
    name: str = EXTERNAL_METHOD

    def __post_init__(self) -> None:
        check_method_name(self.name)
        if self.name in METHOD_NAMES:
            raise ValueError(f"--attributions-name {self.name!r} is a built-in method; choose another name")


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that decides what an analysis computes (not where, nor how fast).

    Attributes
    ----------
    model : an embedded model name or a checkpoint path.
    heads : heads to explain; empty means every head of the model.
    methods : attribution methods, in the order they are shown.
    method_params : per method, its keyword parameters (e.g. ``{"ig": {"n_steps": 16}}``).
    regions : a region source spec (``grid``, ``grid:4x4``, ``landscape``, ``sam``, ``annotations:PATH``).
    region_options : options for the region source.
    targets : head -> class to explain instead of the predicted class (``CLASS`` or ``among:A,B``).
    external : heatmaps computed elsewhere, stored as one more method, or None.
    validity : whether each vector gets its validity record.
    validity_baseline : how a region is deleted for the validity record (road, blur, mean, black).
    validity_steps : points per deletion curve of the validity record (0: full curves, the precise and
        costly setting; ``semcontrib.validity.ValidityConfig.steps``).
    validity_random_samples : seeded random orders of the random reference where it is not exact
        (``ValidityConfig.random_samples``).
    validity_sample : record validity on one image in N, chosen by a seeded hash of its id (the others get
        NaN and a note); 1 (default): every image (``ValidityConfig.sample``).
    """

    model: str = DEFAULT_MODEL
    heads: tuple[str, ...] = ()
    methods: tuple[str, ...] = DEFAULT_METHODS
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    regions: str = DEFAULT_REGIONS
    region_options: Mapping[str, Any] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    external: ExternalAttributions | None = None
    validity: bool = True
    validity_baseline: str = DEFAULT_VALIDITY_BASELINE
    validity_steps: int = VALIDITY_STEPS
    validity_random_samples: int = VALIDITY_RANDOM_SAMPLES
    validity_sample: int = 1

    def __post_init__(self) -> None:
        if not self.methods and self.external is None:
            raise ValueError("at least one attribution method (or --attributions DIR) is needed")
        for m in self.methods:
            if m not in METHOD_NAMES:
                raise ValueError(f"unknown attribution method {m!r}; choose from {', '.join(METHOD_NAMES)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"a method is named twice in {list(self.methods)}")
        if self.validity_baseline not in VALIDITY_BASELINES:
            raise ValueError(f"validity baseline must be one of {VALIDITY_BASELINES}, "
                             f"got {self.validity_baseline!r}")
        if not (type(self.validity_steps) is int and (self.validity_steps == 0 or self.validity_steps >= 2)):
            raise ValueError(f"validity steps must be 0 (full curves) or an integer >= 2, got {self.validity_steps!r}")
        if not (type(self.validity_random_samples) is int and self.validity_random_samples >= 1):
            raise ValueError(f"validity random samples must be an integer >= 1, got {self.validity_random_samples!r}")
        if not (type(self.validity_sample) is int and self.validity_sample >= 1):
            raise ValueError(f"validity sample must be an integer >= 1 (one image in N), got {self.validity_sample!r}")

    @property
    def all_methods(self) -> tuple[str, ...]:
        """The methods in corpus order: the computed ones, then the external heatmaps' name."""
        return self.methods + ((self.external.name,) if self.external else ())

    def method_params_for(self, method: str) -> dict[str, Any]:
        return dict(self.method_params.get(method, {}))

    # ---- the manifest's form (plain JSON)
    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        rec["heads"] = list(self.heads)
        rec["methods"] = list(self.methods)
        rec["method_params"] = {m: dict(p) for m, p in self.method_params.items()}
        rec["region_options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.region_options.items()}
        rec["targets"] = dict(self.targets)
        rec["external"] = ({"folder": self.external.folder, "name": self.external.name}
                           if self.external else None)
        if self.validity_sample == 1:  # every image: recorded as before the option existed (same fingerprint)
            del rec["validity_sample"]
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> AnalysisSettings:
        """Rebuild settings from a manifest's ``settings`` (``ValueError`` when malformed)."""
        if not isinstance(rec, Mapping):
            raise ValueError("manifest settings must be an object")
        known = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {k: v for k, v in rec.items() if k in known}
        try:
            kw["heads"] = tuple(str(h) for h in kw.get("heads") or ())
            kw["methods"] = tuple(str(m) for m in kw.get("methods") or ())
            ext = kw.get("external")
            kw["external"] = ExternalAttributions(str(ext["folder"]), str(ext["name"])) if ext else None
            for k in ("method_params", "region_options", "targets"):
                if not isinstance(kw.get(k, {}), Mapping):
                    raise ValueError(f"manifest settings.{k} must be an object")
            return cls(**kw)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"malformed manifest settings: {exc}") from exc

    def merged(self, given: Mapping[str, Any]) -> AnalysisSettings:
        """These settings with the fields in ``given`` replaced (the options a user did give)."""
        return replace(self, **dict(given))


IN_MEMORY_MODEL = "python:"  # prefix of ``model`` for a model object given from Python


def reuse(recorded: AnalysisSettings, given: Mapping[str, Any]) -> tuple[AnalysisSettings, list[str]]:
    """The settings of a rerun: what the user gave, the rest as ``recorded``, and what was reused.

    Rules, so that nothing recorded for another setting leaks into this one:

    * ``region_options`` are reused only when ``regions`` is not given;
    * with another ``model``, its ``heads``, ``targets`` and Grad-CAM layer are not reused;
    * with other ``heads``, only the recorded targets of those heads are kept;
    * ``method_params`` given for a method replace that method's recorded ones parameter by parameter;
    * a model object given from Python cannot be reused by name (``ValueError``).

    >>> rec = AnalysisSettings(methods=("ig",), regions="grid", region_options={"rows": 2},
    ...                        method_params={"ig": {"n_steps": 8}})
    >>> s, reused = reuse(rec, {"regions": "grid:4x4", "method_params": {"ig": {"baseline": "blurred"}}})
    >>> s.region_options, s.method_params, "region_options" in reused
    ({}, {'ig': {'n_steps': 8, 'baseline': 'blurred'}}, False)
    """
    given = dict(given)
    out: dict[str, Any] = {}
    reused: list[str] = []
    other_model = "model" in given and given["model"] != recorded.model
    if "model" not in given and recorded.model.startswith(IN_MEMORY_MODEL):
        raise ValueError(f"this corpus was analysed with a model object given from Python "
                         f"({recorded.model[len(IN_MEMORY_MODEL):]}); give the model again (--model or model=)")
    for f in fields(AnalysisSettings):
        k = f.name
        if k in given:
            continue
        if k == "region_options" and "regions" in given:
            continue
        if k in ("heads", "targets") and other_model:
            continue
        out[k] = getattr(recorded, k)
        reused.append(k)
    heads = given.get("heads", out.get("heads", ()))
    if "targets" in out and heads:
        out["targets"] = {h: t for h, t in out["targets"].items() if h in heads}
    params = {m: dict(p) for m, p in recorded.method_params.items()}
    if other_model and "layer" in params.get("gradcam", {}):
        del params["gradcam"]["layer"]
    for m, p in (given.pop("method_params", None) or {}).items():
        params.setdefault(m, {}).update(p)
    out["method_params"] = {m: p for m, p in params.items() if p}
    out.update(given)
    return AnalysisSettings(**out), reused


def parse_methods(text: str) -> tuple[str, ...]:
    """``"lrp, gradcam"`` -> ``("lrp", "gradcam")``."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def parse_targets(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``[("nature", "nature")]`` -> ``{"nature": "nature"}``; a head named twice is an error."""
    out: dict[str, str] = {}
    for head, target in pairs:
        if head in out:
            raise ValueError(f"--target names head {head!r} twice")
        if not target:
            raise ValueError(f"--target {head}= needs a class (or among:CLASS,CLASS,...)")
        out[head] = target
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1 <= I <= N) -> (I, N); ``ValueError`` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard must be I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))
