"""The method registry and the AttributionMethod protocol (semcontrib.methods.base, .registry)."""

from __future__ import annotations

import pytest

from semcontrib.methods import (
    ATTRIBUTION_METHODS,
    AttributionMethod,
    PixelMethod,
    RegionMethod,
    is_pixel_method,
    is_region_method,
    make_method,
    register,
)
from semcontrib.methods.registry import ATTRIBUTION_METHODS as REGISTRY
from semcontrib.settings import METHOD_NAMES, PIXEL_METHODS, REGION_METHODS


def test_the_registry_holds_every_cli_method_once_and_is_the_shims():
    import semcontrib.attribution

    assert list(ATTRIBUTION_METHODS) == ["lrp", "gradcam", "ig", "occlusion", "shapley", "siam", "lime", "xrai"]
    assert sorted(ATTRIBUTION_METHODS) == sorted(METHOD_NAMES)
    assert ATTRIBUTION_METHODS is REGISTRY is semcontrib.attribution.ATTRIBUTION_METHODS


@pytest.mark.parametrize("name", sorted(METHOD_NAMES))
def test_every_method_satisfies_the_protocol_of_its_level(name):
    method = make_method(name)
    assert isinstance(method, AttributionMethod)
    assert method.name == name
    assert isinstance(method.params, dict)
    if name in PIXEL_METHODS:
        assert (method.level, is_pixel_method(method), is_region_method(method)) == ("pixel", True, False)
        assert isinstance(method, PixelMethod)
    else:
        assert name in REGION_METHODS
        assert (method.level, is_pixel_method(method), is_region_method(method)) == ("region", False, True)
        assert isinstance(method, RegionMethod)


def test_register_refuses_a_second_class_under_a_name_and_classes_without_name_or_level():
    class Other:
        name = "lrp"
        level = "pixel"

    with pytest.raises(ValueError, match="'lrp' is registered twice"):
        register(Other)  # type: ignore[type-var]

    class Nameless:
        level = "pixel"

    with pytest.raises(TypeError, match="Nameless has no method name"):
        register(Nameless)  # type: ignore[type-var]

    class Sideways:
        name = "sideways"
        level = "diagonal"

    with pytest.raises(TypeError, match="level must be one of"):
        register(Sideways)  # type: ignore[type-var]
    assert "sideways" not in ATTRIBUTION_METHODS
    assert register(ATTRIBUTION_METHODS["ig"]) is ATTRIBUTION_METHODS["ig"]  # registering again is harmless


def test_make_method_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown attribution method 'nope'; choose from \['gradcam'"):
        make_method("nope")


def test_docstring_examples():
    import doctest

    import semcontrib.attribution
    import semcontrib.methods.targets

    for module in (semcontrib.attribution, semcontrib.methods.targets):
        result = doctest.testmod(module)
        assert result.failed == 0
        assert result.attempted > 0
