"""What ``semcontrib validate`` reads from a corpus: region vectors, targets, images, model and methods.

Vectors are read in one basis per method level (:data:`semcontrib.settings.SCORE_BASIS`): region sums
for the region methods (their scores), ``SCORE_BASIS["pixel"]`` for the pixel methods, unless the
caller names a basis. Images that cannot be read are left out with a note; the callers go on.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.corpus import Corpus
from semcontrib.methods.base import is_region_method
from semcontrib.settings import SCORE_BASIS
from semcontrib.validity import ValidityConfig


@dataclass(frozen=True)
class ValidateConfig:
    """Options of the report.

    Attributes
    ----------
    sample : images in the randomisation check (each step recomputes every method on them).
    stages : backbone stages randomised after the heads, from the top (``pool`` excluded).
    seed : seed of the re-initialisation and of the image sample.
    basis : ``auto`` (per method level, see the module docs), ``mean`` or ``sum``.
    flag_threshold : a method whose median correlation after the last step is at least this is flagged.
    validity : how validity is computed when the corpus does not store it.
    batch_size : images per batch when recomputing.
    check_params : method -> parameters that replace the corpus's in the randomisation check, to
        bound its cost (default: shapley by sampling with 10 permutations above 6 regions, lime
        with 32 samples, xrai over IG with 8 steps; the original vectors of the check are
        recomputed with the same parameters, so every step compares like with like).
    noise_samples : noisy copies each vector of the randomisation check is averaged over (sMPRT;
        1 with ``noise_magnitude`` 0 is plain MPRT).
    noise_magnitude : the noise's standard deviation as a share of the tensor's value range.
    truth : an annotation file (or PNG directory) of the corpus's images: the report gains the
        region-quality section of ``semcontrib regions-eval`` (:mod:`semcontrib.regions_eval`).
    """

    sample: int = 4
    stages: int = 2
    seed: int = 0
    basis: str = "auto"
    flag_threshold: float = 0.5
    validity: ValidityConfig = field(default_factory=ValidityConfig)
    batch_size: int = 8
    check_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"shapley": {"exact_max": 6, "samples": 10}, "lime": {"samples": 32},
                                 "xrai": {"n_steps": 8}})
    noise_samples: int = 3
    noise_magnitude: float = 0.1
    truth: str | None = None

    def __post_init__(self) -> None:
        if self.basis not in ("auto", "mean", "sum"):
            raise ValueError(f"basis must be auto, mean or sum, got {self.basis!r}")
        if not (isinstance(self.sample, int) and self.sample >= 0):
            raise ValueError(f"sample must be an integer >= 0 (0 skips the randomisation check), got {self.sample!r}")
        if not (isinstance(self.stages, int) and self.stages >= 0):
            raise ValueError(f"stages must be an integer >= 0, got {self.stages!r}")
        if not -1 <= self.flag_threshold <= 1:
            raise ValueError(f"flag_threshold must lie in [-1, 1], got {self.flag_threshold!r}")
        if not (isinstance(self.noise_samples, int) and self.noise_samples >= 1):
            raise ValueError(f"noise_samples must be an integer >= 1, got {self.noise_samples!r}")
        if not 0 <= self.noise_magnitude < 1:
            raise ValueError(f"noise_magnitude must lie in [0, 1), got {self.noise_magnitude!r}")


def method_level(method: str) -> str:
    """``pixel`` or ``region`` for a registered method name (``pixel`` for unknown names)."""
    from semcontrib.methods import ATTRIBUTION_METHODS

    cls = ATTRIBUTION_METHODS.get(method)
    return "pixel" if cls is None else str(cls.level)


def method_basis(method: str, basis: str) -> str:
    return SCORE_BASIS[method_level(method)] if basis == "auto" else basis


def corpus_vectors(corpus: Corpus, head: str, method: str, basis: str, image_ids: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Region vectors of ``image_ids`` from the corpus: scores float64 (N, K) and present bool (N, K).

    Images without a vector get NaN scores and no present region.
    """
    K = len(corpus.vocabulary)
    df = corpus.contribution_table(head, method, normalisation="signed_l1", basis=basis)
    pos = {i: n for n, i in enumerate(image_ids)}
    scores = np.full((len(image_ids), K), np.nan)
    present = np.zeros((len(image_ids), K), bool)
    df = df[df["image_id"].isin(pos)]
    rows = df["image_id"].map(pos).to_numpy(np.int64)
    cols = df["region_index"].to_numpy(np.int64)
    scores[rows, cols] = df["score"].to_numpy(np.float64)
    present[rows, cols] = ~df["absent"].to_numpy(bool)
    return scores, present


def targets_table(corpus: Corpus, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """head -> int64 (N,) target index (the first method's; every method explains the same target)."""
    att = corpus.attributions
    out = {}
    for h in corpus.heads:
        sub = att[att["head"] == h].drop_duplicates("image_id").set_index("image_id")["target_index"]
        out[h] = sub.reindex(list(image_ids)).fillna(-1).to_numpy(np.int64)
    return out


def load_corpus_model(corpus: Corpus) -> tuple[Any, str]:
    """The corpus's model reloaded from its manifest, or (None, the reason it could not be)."""
    from semcontrib.model import MODELS, load_model, model_key

    ident = corpus.manifest.get("model", {})
    source = ident.get("checkpoint") or ident.get("name")
    if not source:
        return None, "the manifest names no model"
    if "checkpoint" not in ident and source not in MODELS:
        return None, f"model {source!r} is neither an embedded model ({sorted(MODELS)}) nor a checkpoint"
    try:
        model = load_model(source)
    except (ValueError, OSError) as exc:
        return None, f"model {source!r} could not be loaded: {exc}"
    if ident.get("key") and model_key(model) != ident["key"]:
        return None, f"model {source!r} loads, but its key {model_key(model)} is not the corpus's {ident['key']}"
    return model, ""


def load_tensor(corpus: Corpus, model: Any, image_ids: Sequence[str]) -> tuple[list[str], Any, np.ndarray, str]:
    """Preprocessed images and region maps of those ids that can be read; ids used, tensor, labels, note."""
    import torch

    from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb

    paths = corpus.images.set_index("image_id")["path"]
    used, tensors, labels, problems = [], [], [], []
    for i in image_ids:
        rmap = corpus.region_map(i)
        try:
            rgb = load_rgb(Path(paths[i])).rgb
        except (ImageLoadError, OSError, KeyError) as exc:
            problems.append(f"{i}: {exc}")
            continue
        if rmap is None:
            problems.append(f"{i}: no region map")
            continue
        used.append(i)
        tensors.append(model.preprocess(resize_rgb(rgb, model.input_size)))
        labels.append(rmap.labels.astype(np.int32))
    note = f"{len(problems)} images unreadable ({'; '.join(problems[:3])})" if problems else ""
    tensor = torch.cat(tensors) if tensors else None
    return used, tensor, (np.stack(labels) if labels else np.zeros((0, 0, 0), np.int32)), note


def make_corpus_method(corpus: Corpus, method: str, overrides: dict[str, Any] | None = None) -> Any:
    """The method object with the corpus's parameters (those its constructor takes), updated by ``overrides``."""
    from semcontrib.methods import ATTRIBUTION_METHODS

    cls = ATTRIBUTION_METHODS[method]
    params = {**corpus.manifest["methods"][method].get("params", {}), **(overrides or {})}
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in params.items() if k in accepted})


def region_vectors(model: Any, method_obj: Any, tensor: Any, targets: dict[str, Any], labels: np.ndarray,
                   vocabulary: tuple[str, ...], *, basis: str) -> dict[str, np.ndarray]:
    """Per head, float64 (N, K) region vectors of one method, in ``basis`` (as the corpus stores them)."""
    from semcontrib.contributions import aggregate

    K = len(vocabulary)
    counts = np.stack([np.bincount(lab[lab >= 0].ravel(), minlength=K) for lab in labels]).astype(np.float64)
    if is_region_method(method_obj):
        res = method_obj.attribute_regions(model, tensor, targets, labels, vocabulary)
        sums = {h: r.scores for h, r in res.items()}
    else:
        res = method_obj.attribute_batch(model, tensor, targets)
        sums = {h: np.stack([aggregate(r.maps[n].astype(np.float64), labels[n], K).sum for n in range(len(labels))])
                for h, r in res.items()}
    if basis == "sum":
        return sums
    return {h: np.divide(s, counts, out=np.zeros_like(s), where=counts > 0) for h, s in sums.items()}

