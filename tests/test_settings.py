"""What an analysis is asked to do: the settings record, its manifest form, and the reuse rules."""

from __future__ import annotations

import doctest

import pytest

import semcontrib.settings as S
from semcontrib.settings import AnalysisSettings, ExternalAttributions, reuse


def test_docstring_examples() -> None:
    assert doctest.testmod(S).failed == 0


def test_record_round_trip() -> None:
    s = AnalysisSettings(model="m.json", heads=("a",), methods=("lrp", "occlusion"),
                         method_params={"lrp": {"composite": "epsilon"}}, regions="annotations:x.json",
                         region_options={"min_area": 3}, targets={"a": "among:x,y"},
                         external=ExternalAttributions("/maps", "mine"), validity=False, validity_baseline="mean",
                         validity_steps=0, validity_random_samples=9)
    assert AnalysisSettings.from_record(s.to_record()) == s
    assert s.all_methods == ("lrp", "occlusion", "mine")


@pytest.mark.parametrize("kw, match", [
    ({"methods": ()}, "at least one"), ({"methods": ("saliency",)}, "unknown attribution method"),
    ({"methods": ("lrp", "lrp")}, "named twice"), ({"validity_baseline": "grey"}, "validity baseline"),
    ({"validity_steps": 1}, "validity steps"), ({"validity_steps": 2.5}, "validity steps"),
    ({"validity_random_samples": 0}, "validity random samples"),
    ({"validity_sample": 0}, "validity sample must be"), ({"validity_sample": 1.5}, "validity sample must be"),
])
def test_bad_settings(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        AnalysisSettings(**kw)
    with pytest.raises(ValueError, match="malformed manifest settings|must be an object"):
        AnalysisSettings.from_record({"methods": ["lrp"], "targets": []})


def test_reuse_rules() -> None:
    rec = AnalysisSettings(model="a.json", heads=("h1", "h2"), methods=("gradcam", "ig"),
                           method_params={"gradcam": {"layer": "stage5"}, "ig": {"n_steps": 8}},
                           regions="grid", region_options={"rows": 2}, targets={"h1": "x", "h2": "y"})
    # nothing given: everything as recorded
    s, reused = reuse(rec, {})
    assert s == rec and set(reused) >= {"model", "heads", "methods", "regions", "region_options", "targets"}
    # another region source: the recorded source options do not leak into it
    s, _ = reuse(rec, {"regions": "grid:4x4"})
    assert s.regions == "grid:4x4" and s.region_options == {}
    # another model: its heads, targets and Grad-CAM layer are not reused; other parameters are
    s, reused = reuse(rec, {"model": "b.json"})
    assert s.heads == () and s.targets == {} and s.method_params == {"ig": {"n_steps": 8}}
    assert "heads" not in reused and "targets" not in reused
    # other heads: only their targets are kept
    s, _ = reuse(rec, {"heads": ("h2",)})
    assert s.targets == {"h2": "y"}
    # parameters given for one method replace that method's, parameter by parameter
    s, _ = reuse(rec, {"method_params": {"ig": {"baseline": "blurred"}}})
    assert s.method_params == {"gradcam": {"layer": "stage5"}, "ig": {"n_steps": 8, "baseline": "blurred"}}
    # a model object given from Python cannot be reused by name
    with pytest.raises(ValueError, match="model object given from Python"):
        reuse(AnalysisSettings(model="python:tiny"), {})
    assert reuse(AnalysisSettings(model="python:tiny"), {"model": "python:tiny"})[0].model == "python:tiny"


def test_names_that_become_path_parts() -> None:
    for bad in ("../x", "Lrp", "a b", "x" * 40, ""):
        with pytest.raises(ValueError):
            S.check_method_name(bad)
    assert S.check_method_name("external_2") == "external_2"


def test_validity_fields_are_named_as_validity_config_fields() -> None:
    """The engine passes every ``validity_*`` setting to ValidityConfig by name (validity_steps -> steps)."""
    from dataclasses import fields

    from semcontrib.validity import ValidityConfig

    s = AnalysisSettings()
    config = {f.name for f in fields(ValidityConfig)}
    names = [f.name[len("validity_"):] for f in fields(AnalysisSettings) if f.name.startswith("validity_")]
    assert names and set(names) <= config
    built = ValidityConfig(**{n: getattr(s, f"validity_{n}") for n in names})
    assert built == ValidityConfig()  # the settings' defaults are the record's defaults


def test_analyze_validity_options_become_settings() -> None:
    import argparse

    from semcontrib.cli import add_analysis_options, given_settings

    p = argparse.ArgumentParser()
    add_analysis_options(p)
    given = given_settings(p.parse_args(["--validity-steps", "0", "--validity-random-samples", "8"]))
    assert given["validity_steps"] == 0 and given["validity_random_samples"] == 8
    assert "validity_steps" not in given_settings(p.parse_args([]))  # left out: as recorded
    assert given_settings(p.parse_args(["--validity-sample", "16"]))["validity_sample"] == 16
    assert "validity_sample" not in given_settings(p.parse_args([]))
    with pytest.raises(ValueError, match="validity steps"):
        AnalysisSettings(**given_settings(p.parse_args(["--validity-steps", "1"])))
