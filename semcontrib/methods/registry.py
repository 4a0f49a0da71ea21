"""The method registry: ``ATTRIBUTION_METHODS`` maps a CLI name to its method class.

A method family registers its classes with the :func:`register` decorator (as zennit's composites
register with ``register_composite``); ``semcontrib.methods.complete_registry`` imports every family (it runs
when the package's ``ATTRIBUTION_METHODS``, ``make_method`` or a method class is first asked for, and
in :func:`make_method`), so the registry is complete once it has run. Methods that live outside this package
(``occlusion``, ``shapley``, ``lime``, ``xrai``) are registered there with a plain call.
"""

from __future__ import annotations

from typing import Any, TypeVar

from semcontrib.methods.base import LEVELS, AttributionMethod

ATTRIBUTION_METHODS: dict[str, type[AttributionMethod]] = {}

M = TypeVar("M", bound=type[AttributionMethod])


def register(cls: M) -> M:
    """Register a method class under its ``name`` (a class decorator); a name is registered once."""
    name = vars(cls).get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} has no method name (a class attribute `name`)")
    if cls.level not in LEVELS:
        raise TypeError(f"method {name!r}: level must be one of {LEVELS}, got {cls.level!r}")
    if ATTRIBUTION_METHODS.get(name, cls) is not cls:
        raise ValueError(f"attribution method {name!r} is registered twice")
    ATTRIBUTION_METHODS[name] = cls
    return cls


def make_method(name: str, **params: Any) -> AttributionMethod:
    """Instantiate a method by its CLI name with its parameters."""
    from semcontrib.methods import complete_registry  # every family registered, whoever imported this module

    complete_registry()
    if name not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {name!r}; choose from {sorted(ATTRIBUTION_METHODS)}")
    return ATTRIBUTION_METHODS[name](**params)
