"""Checkpoints of trained models: ``NAME.safetensors`` plus the JSON sidecar ``NAME.json``.

``load_model`` takes an embedded model's name (``MODELS``) or a checkpoint path. Loading never
unpickles arbitrary objects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semcontrib.model.build import MODELS, _sha256_file, build_multitask
from semcontrib.model.multitask import HeadSpec, MultitaskModel, freeze
from semcontrib.model.siam import SiamModel, build_siam

CHECKPOINT_FORMAT = "semcontrib-checkpoint/1"

ARCHITECTURES = ("linear", "siam")
"""Head architectures of trained checkpoints (``semcontrib train --architecture``)."""


def save_checkpoint(model: MultitaskModel, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``PATH.safetensors`` and the JSON sidecar ``PATH.json``; return the sidecar path.

    The sidecar names the format, backbone, heads and class names (in logit order), preprocessing
    (input size, mean, std) and anything in ``extra`` (label mapping, training-data hash, ...).
    """
    from safetensors.torch import save_file

    base = _checkpoint_base(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = base.with_name(base.name + ".safetensors")
    save_file(tensors, str(weights))
    sidecar: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "backbone": model.spec.name,
        "heads": [{"name": h.name, "classes": list(h.classes)} for h in model.head_specs],
        "preprocessing": {"input_size": model.input_size, "resize": "squash",
                          "mean": list(model.spec.mean), "std": list(model.spec.std)},
        "weights": weights.name,
        "weights_sha256": _sha256_file(weights),
    }
    if "pretrained" in model.identity:
        sidecar["pretrained"] = model.identity["pretrained"]
    if isinstance(model, SiamModel):
        sidecar["architecture"] = "siam"
        sidecar["concepts"] = list(model.concepts)
        sidecar["concept_map_size"] = list(model.heads.map_size)
    if extra:
        sidecar.update(dict(extra))
    out = base.with_name(base.name + ".json")
    out.write_text(json.dumps(sidecar, indent=1))
    return out


def _checkpoint_base(path: str | Path) -> Path:
    """``MODEL`` from ``MODEL``, ``MODEL.json`` or ``MODEL.safetensors`` (other dots are kept)."""
    base = Path(path)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_name(base.name[: -len(base.suffix)])
    return base


def load_checkpoint(path: str | Path) -> MultitaskModel:
    """Load a model saved by :func:`save_checkpoint` (``.json`` sidecar or ``.safetensors`` path)."""
    from safetensors.torch import load_file

    base = _checkpoint_base(path)
    sidecar_path = base.with_name(base.name + ".json")
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"checkpoint sidecar not found: {sidecar_path}")
    meta = json.loads(sidecar_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{sidecar_path}: unknown checkpoint format {meta.get('format')!r}")
    weights = sidecar_path.with_name(meta.get("weights", base.name + ".safetensors"))
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    heads = [HeadSpec(h["name"], tuple(h["classes"])) for h in meta["heads"]]
    architecture = meta.get("architecture", "linear")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{sidecar_path}: unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    model: MultitaskModel
    if architecture == "siam":
        model = build_siam(meta["backbone"], heads, tuple(meta["concepts"]), random_init=True)
    else:
        model = build_multitask(meta["backbone"], heads, random_init=True)
    if "pretrained" in meta:
        model.identity["pretrained"] = meta["pretrained"]
    state = load_file(str(weights))
    model.load_state_dict(state, strict=True)
    model.identity.update({
        "name": base.name,
        "checkpoint": str(sidecar_path),
        "weights_sha256": _sha256_file(weights),
    })
    freeze(model)
    return model


def load_model(name_or_path: str | Path = "imagenet-heads", weights: Path | None = None) -> MultitaskModel:
    """An embedded model by name (``MODELS``) or a checkpoint by path."""
    key = str(name_or_path)
    if key in MODELS:
        return MODELS[key](weights)
    base = _checkpoint_base(key)
    if base.with_name(base.name + ".json").is_file():
        return load_checkpoint(base)
    raise ValueError(f"--model {key!r} is neither an embedded model ({sorted(MODELS)}) nor an existing checkpoint")


def model_key(model: MultitaskModel) -> str:
    """A short hash of the model's identity (weights, heads, preprocessing)."""
    blob = json.dumps(model.identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
