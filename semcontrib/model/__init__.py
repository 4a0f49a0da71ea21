"""The model: a backbone with its classifier removed and named heads, and how it runs.

Data formats: ``rgb`` is uint8 HxWx3; ``tensor`` is float NCHW, normalised with the model's mean
and std; head logits are float N x n_classes.

One module per concept; every name is importable from ``semcontrib.model`` as before the split:

- ``multitask.py``: ``MultitaskModel``, its head modules (``LinearHeads``,
  ``GroupedImagenetHeads``), ``HeadAdapter``, ``freeze``;
- ``build.py``: the embedded models (``MODELS``, CLI ``--model NAME``), ``build_multitask``;
- ``siam.py``: the SIAM concept bottleneck (``SiamHeads``, ``SiamModel``, ``build_siam``);
- ``checkpoint.py``: ``save_checkpoint``/``load_checkpoint`` (``NAME.safetensors`` plus the sidecar
  ``NAME.json``; loading never unpickles arbitrary objects), ``load_model``, ``model_key``;
- ``compute.py``: ``ComputeOptions``, ``compute_context`` and the device/precision/memory-format helpers;
- ``prediction.py``: ``Predictions``, ``predict``, ``predict_with_evidence``, ``class_evidence``.

``HeadSpec`` lives in :mod:`semcontrib.heads` and ``compute.py`` imports torch only where its functions run,
so importing this package, ``HeadSpec`` or ``ComputeOptions`` does not import torch (a rerun with nothing
to compute never does); every other name imports its module, and torch, when first asked for.

Backbone specs stay in :mod:`semcontrib.backbones` (the ``BACKBONES`` registry, the ``--backbone``
choices) and :func:`semcontrib.wrap.wrap_model` in :mod:`semcontrib.wrap` (a user's own module as a model).
"""

import importlib
from typing import TYPE_CHECKING, Any

from semcontrib.heads import HeadSpec
from semcontrib.model.compute import (  # torch is imported where these run, not here
    ComputeOptions,
    autocast_active,
    compute_context,
    full_precision,
    prepare_model,
    to_memory_format,
)
from semcontrib.paths import data_path
from semcontrib.settings import DEFAULT_PRECISION, PRECISIONS

if TYPE_CHECKING:  # the names below, for type checkers; at run time they are imported when first used
    from semcontrib.backbones import (
        BACKBONES,
        LITE_PACKAGES,
        BackboneSpec,
        build_canonizers,
        lite_weights_path,
        weights_provenance,
    )
    from semcontrib.model.build import (
        MODELS,
        _build_stages,
        _sha256_file,
        build_multitask,
        load_imagenet_backbone,
        load_imagenet_heads,
    )
    from semcontrib.model.checkpoint import (
        ARCHITECTURES,
        CHECKPOINT_FORMAT,
        _checkpoint_base,
        load_checkpoint,
        load_model,
        model_key,
        save_checkpoint,
    )
    from semcontrib.model.multitask import (
        GroupedImagenetHeads,
        HeadAdapter,
        LinearHeads,
        MultitaskModel,
        freeze,
    )
    from semcontrib.model.prediction import (
        Predictions,
        _logits_and_evidence,
        class_evidence,
        predict,
        predict_with_evidence,
    )
    from semcontrib.model.siam import (
        SiamHeads,
        SiamModel,
        _inverse_softplus,
        build_siam,
        feature_map_shape,
        siam_from_stages,
    )

# name -> the module that defines it; every one imports torch, so none is imported before it is asked for
_LAZY = {
    **dict.fromkeys(["BACKBONES", "LITE_PACKAGES", "BackboneSpec", "build_canonizers", "lite_weights_path",
                     "weights_provenance"], "semcontrib.backbones"),
    **dict.fromkeys(["MODELS", "_build_stages", "_sha256_file", "build_multitask", "load_imagenet_backbone",
                     "load_imagenet_heads"], "semcontrib.model.build"),
    **dict.fromkeys(["ARCHITECTURES", "CHECKPOINT_FORMAT", "_checkpoint_base", "load_checkpoint", "load_model",
                     "model_key", "save_checkpoint"], "semcontrib.model.checkpoint"),
    **dict.fromkeys(["GroupedImagenetHeads", "HeadAdapter", "LinearHeads", "MultitaskModel", "freeze"],
                    "semcontrib.model.multitask"),
    **dict.fromkeys(["Predictions", "_logits_and_evidence", "class_evidence", "predict", "predict_with_evidence"],
                    "semcontrib.model.prediction"),
    **dict.fromkeys(["SiamHeads", "SiamModel", "_inverse_softplus", "build_siam", "feature_map_shape",
                     "siam_from_stages"], "semcontrib.model.siam"),
}


def __getattr__(name: str) -> Any:
    """Import the torch modules when one of their names is first asked for (PEP 562), and then every lazy
    name at once, so that ``vars(semcontrib.model)`` holds all of ``__all__`` as it did when eager."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for lazy, module in _LAZY.items():
        globals()[lazy] = getattr(importlib.import_module(module), lazy)
    return globals()[name]


__all__ = [
    "ARCHITECTURES", "BACKBONES", "CHECKPOINT_FORMAT", "DEFAULT_PRECISION", "LITE_PACKAGES", "MODELS", "PRECISIONS",
    "BackboneSpec", "ComputeOptions", "GroupedImagenetHeads", "HeadAdapter", "HeadSpec", "LinearHeads",
    "MultitaskModel", "Predictions", "SiamHeads", "SiamModel", "autocast_active", "build_canonizers",
    "build_multitask", "build_siam", "class_evidence", "compute_context", "data_path", "feature_map_shape",
    "freeze", "full_precision", "lite_weights_path", "load_checkpoint", "load_imagenet_backbone",
    "load_imagenet_heads", "load_model", "model_key", "predict", "predict_with_evidence", "prepare_model",
    "save_checkpoint", "siam_from_stages", "to_memory_format", "weights_provenance",
    # private names kept for code that imported them from the single module
    "_build_stages", "_checkpoint_base", "_inverse_softplus", "_logits_and_evidence", "_sha256_file",
]
