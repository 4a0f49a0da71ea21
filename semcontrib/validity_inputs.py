"""What ``semcontrib validate`` reads from a corpus: region vectors, targets, images, model and methods.

Vectors are read in one basis per method level (:data:`semcontrib.settings.SCORE_BASIS`): region sums
for the region methods (their scores), ``SCORE_BASIS["pixel"]`` for the pixel methods, unless the
caller names a basis. Images that cannot be read are left out with a note; the callers go on.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.corpus import Corpus
from semcontrib.settings import SCORE_BASIS


def method_level(method: str) -> str:
    """``pixel`` or ``region`` for a registered method name (``pixel`` for unknown names)."""
    from semcontrib.attribution import ATTRIBUTION_METHODS

    cls = ATTRIBUTION_METHODS.get(method)
    return str(getattr(cls, "level", "pixel"))


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
    from semcontrib.attribution import ATTRIBUTION_METHODS

    cls = ATTRIBUTION_METHODS[method]
    params = {**corpus.manifest["methods"][method].get("params", {}), **(overrides or {})}
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in params.items() if k in accepted})


def region_vectors(model: Any, method_obj: Any, tensor: Any, targets: dict[str, Any], labels: np.ndarray,
                   vocabulary: tuple[str, ...], basis: str) -> dict[str, np.ndarray]:
    """Per head, float64 (N, K) region vectors of one method, in ``basis`` (as the corpus stores them)."""
    from semcontrib.contributions import aggregate

    K = len(vocabulary)
    counts = np.stack([np.bincount(lab[lab >= 0].ravel(), minlength=K) for lab in labels]).astype(np.float64)
    if getattr(method_obj, "level", "pixel") == "region":
        res = method_obj.attribute_regions(model, tensor, targets, labels, vocabulary)
        sums = {h: r.scores for h, r in res.items()}
    else:
        res = method_obj.attribute_batch(model, tensor, targets)
        sums = {h: np.stack([aggregate(r.maps[n].astype(np.float64), labels[n], K).sum for n in range(len(labels))])
                for h, r in res.items()}
    if basis == "sum":
        return sums
    return {h: np.divide(s, counts, out=np.zeros_like(s), where=counts > 0) for h, s in sums.items()}

