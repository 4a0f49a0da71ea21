"""The analysis run under its historical import path: :mod:`semcontrib.engine`, re-exported.

The engine lives in :mod:`semcontrib.engine` (one module per concept; see its docs for the data flow). Every
name of ``semcontrib.engine.__all__`` stays importable from here for one release, and so do the few names
the single-module pipeline had beyond them (its private names, two settings and ``path_text``). The list is
the engine's: a name added there is re-exported here without a second list. Patch a name where it is used
(``semcontrib.engine.run.load_model``), not here. Each name is imported from its module when first used, so
that planning through this module (``read_inputs``, ``make_plan``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from semcontrib import engine as _engine

if TYPE_CHECKING:  # the engine's names, for type checkers; at run time each is imported when first used
    from semcontrib.engine import *  # noqa: F403 (re-exports exactly the engine's __all__)

# the old private names of the single-module pipeline -> the engine's name for the same object (one release)
_OLD_PRIVATE = {
    "_hash": "hash_key",
    "_model_fingerprint": "model_fingerprint",
    "_validity_digest": "validity_digest",
    "_members_digest": "members_digest",
    "_versions": "package_versions",
    "_HeadClasses": "HeadClasses",
    "_with_stats": "with_stats",
    "_region_scores": "region_scores",
    "_labels_or_unassigned": "labels_or_unassigned",
    "_item": "item_or_none",
    "_read_external": "read_external",
    "_external_source": "external_source",
    "_typed": "typed_rows",
    "_Generation": "Generation",
    "_TableSink": "TableSink",
    "_ChunkState": "ChunkState",
    "_make_method": "build_method",
    "_make_source": "build_source",
    "_resolved_params": "resolved_params",
}
# names the single-module pipeline exported that are not the engine package's -> their module
_OUTSIDE_ENGINE = {
    "DEFAULT_METHODS": "semcontrib.settings",
    "REGION_METHODS": "semcontrib.settings",
    "path_text": "semcontrib.engine.workers",
}


def __getattr__(name: str) -> Any:
    """Import a name from its module on first use (PEP 562) and keep it here."""
    if name in _OUTSIDE_ENGINE:
        value = getattr(importlib.import_module(_OUTSIDE_ENGINE[name]), name)
    elif name in _OLD_PRIVATE or name in _engine.__all__:
        value = getattr(_engine, _OLD_PRIVATE.get(name, name))
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = sorted([*_engine.__all__, *_OLD_PRIVATE, *_OUTSIDE_ENGINE])
