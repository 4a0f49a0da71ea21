"""The command line as people expect it: -m, --version, help with defaults, -v/-q anywhere, no torch
for commands that do not compute, exit 2 with one line for every expected error, manifest reuse."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import semcontrib
from semcontrib.cli import build_parser, main
from semcontrib.pipeline import settings_for
from tests.conftest import synthetic_rgb, tiny_model

NO_TORCH = ("import sys; sys.modules['torch'] = None; from semcontrib.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
            "bad = [m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in "
            "('torch', 'captum', 'zennit')]\nassert not bad, bad\nsys.exit(code)")


def cli(*args: str, no_torch: bool = False, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", NO_TORCH, *args] if no_torch else [sys.executable, "-m", "semcontrib", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_python_dash_m_and_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"semcontrib {semcontrib.__version__}"


@pytest.mark.parametrize("args", [["--help"], ["export", "--help"], ["dashboard", "--help"], ["analyze", "--help"]])
def test_help_works_when_torch_cannot_be_imported(args):
    r = cli(*args, no_torch=True)
    assert r.returncode == 0, r.stderr
    assert "usage: semcontrib" in r.stdout


def test_export_never_imports_torch(tmp_path):
    from semcontrib.dashboard.synthetic import write_synthetic_corpus

    corpus = write_synthetic_corpus(tmp_path / "syn", n_images=12)
    r = cli("export", str(corpus), "-o", str(tmp_path / "x.csv"), no_torch=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.csv").stat().st_size > 0


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_has_help_text():
    parser = build_parser()
    missing = []
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if action.help in (None, "") and not isinstance(action, argparse._SubParsersAction):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"


def test_defaults_are_shown_in_help():
    # argparse wraps help at the terminal's width (COLUMNS): compare the words, not the line breaks
    text = " ".join(_subparsers(build_parser())["analyze"].format_help().split())
    assert "(default: 8)" in text and "(default: cpu)" in text
    assert "new corpus: lrp,gradcam,ig" in text and "new corpus: grid" in text


def test_verbosity_after_the_subcommand():
    parser = build_parser()
    args = parser.parse_args(["analyze", "in", "--out", "c", "-v", "-v"])
    assert args.verbose == 2
    args = parser.parse_args(["-q", "export", "c", "-o", "x.csv"])
    assert args.quiet is True
    args = parser.parse_args(["export", "c", "-o", "x.csv", "-q"])
    assert args.quiet is True


def _one_line_error(r: subprocess.CompletedProcess, text: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr
    assert any(text in ln for ln in lines), r.stderr
    assert len([ln for ln in lines if "error" in ln]) == 1, r.stderr


def test_expected_errors_exit_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(cli("analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "c")), "no images found")
    _one_line_error(cli("analyze", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")), "does not exist")
    _one_line_error(cli("export", str(tmp_path / "empty"), "-o", str(tmp_path / "x.csv")), "is not a corpus")
    _one_line_error(cli("export", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.csv")), "is not a corpus")
    _one_line_error(cli("analyze", str(tmp_path), "--out", "c", "--batch-size", "0"), "must be at least 1")
    _one_line_error(cli("analyze", str(tmp_path), "--out", "c", "--lrp-composite", "nope"), "invalid choice")


def test_unwritable_output_is_exit_2(tmp_path):
    from semcontrib.dashboard.synthetic import write_synthetic_corpus

    corpus = write_synthetic_corpus(tmp_path / "syn", n_images=6)
    (tmp_path / "afile").write_text("x")
    _one_line_error(cli("export", str(corpus), "-o", str(tmp_path / "afile" / "x.csv"), no_torch=True),
                    "error")


def test_analyze_reuses_the_settings_recorded_in_the_corpus(tmp_path):
    from semcontrib.pipeline import analyze

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_rgb(np.random.default_rng(i), 40, 40)).save(folder / f"a{i}.png")
    out = tmp_path / "c"
    analyze(folder, out, model=tiny_model(), methods=["gradcam"], regions="grid:3x1", validity=False,
            targets={"task_a": "yes"})
    with pytest.raises(ValueError, match="model object given from Python"):
        settings_for(out, {})  # an in-memory model cannot be reused by name
    settings, reused = settings_for(out, {"model": "python:tiny-0-True"})
    assert settings.regions == "grid:3x1" and settings.methods == ("gradcam",) and not settings.validity
    assert settings.targets == {"task_a": "yes"} and "regions" in reused
    # a rerun that names nothing keeps the recorded region source (not the default grid) and computes nothing
    rep = analyze(folder, out, model=tiny_model())
    assert rep.computed == {"predictions": 0, "regions": 0, "attr:gradcam": 0}
    # an option that differs recomputes only what it affects
    rep = analyze(folder, out, model=tiny_model(), methods=["gradcam", "lrp"])
    assert rep.computed == {"predictions": 0, "regions": 0, "attr:gradcam": 0, "attr:lrp": 3}


@pytest.mark.slow
def test_cli_rerun_without_options_says_it_reuses_the_manifest(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_rgb(np.random.default_rng(i), 64, 64)).save(folder / f"a{i}.png")
    out = tmp_path / "c"
    assert main(["-q", "analyze", str(folder), "--out", str(out), "--methods", "gradcam", "--regions", "grid:2x2",
                 "--heads", "nature", "--no-validity"]) == 0
    r = cli("analyze", str(folder), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "reusing the settings recorded" in r.stderr and "regions grid:2x2" in r.stderr
    assert "attr:gradcam 0" in r.stdout and "regions 0" in r.stdout


def test_method_defaults_in_help_match_the_methods():
    import inspect

    from semcontrib.attribution import ATTRIBUTION_METHODS
    from semcontrib.cli import _METHOD_OPTIONS

    analyze = _subparsers(build_parser())["analyze"]
    helps = {a.dest: a.help for a in analyze._actions}
    for dest, (method, param) in _METHOD_OPTIONS.items():
        default = inspect.signature(ATTRIBUTION_METHODS[method].__init__).parameters[param].default
        if default is None:
            continue
        assert f"default {default}" in helps[dest], (dest, default, helps[dest])


def test_no_attributions_drops_the_recorded_external_method(tmp_path):
    from semcontrib.cli import given_settings

    args = build_parser().parse_args(["analyze", "in", "--out", "c", "--no-attributions"])
    assert given_settings(args) == {"external": None}
    args = build_parser().parse_args(["analyze", "in", "--out", "c", "--no-attributions", "--attributions", "d"])
    with pytest.raises(ValueError, match="contradict"):
        given_settings(args)


def test_analyze_takes_label_studio_labels_as_label_columns(tmp_path, capsys):
    import json

    from semcontrib.corpus import Corpus

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_rgb(np.random.default_rng(i), 64, 64)).save(folder / f"a{i}.png")

    def task(tid, name, **choices):
        result = [{"type": "choices", "from_name": t, "value": {"choices": [c]}} for t, c in choices.items()]
        return {"id": tid, "data": {"image": f"/data/upload/1/0123abcd-{name}"}, "annotations": [{"result": result}]}

    export = tmp_path / "export.json"
    export.write_text(json.dumps([task(1, "a0.png", nature="nature", biotic="biotic"), task(2, "a1.png", nature="no"),
                                  {"id": 3, "data": {"image": "a2.png"}, "annotations": []}]))
    out = tmp_path / "c"
    assert main(["-q", "analyze", str(folder), "--out", str(out), "--labels", str(export), "--methods", "gradcam",
                 "--regions", "grid:2x2", "--heads", "nature", "--no-validity"]) == 0
    err = capsys.readouterr().err
    assert "labels: skipped task 3 (a2.png): no annotation" in err
    images = Corpus.open(out).images.sort_values("path")
    assert images["label_nature"].tolist() == ["nature", "no", ""]
    assert images["label_biotic"].tolist() == ["biotic", "", ""]
    assert main(["-q", "analyze", str(folder), "--out", str(out), "--labels", str(tmp_path / "l.csv")]) == 2
    assert "--labels takes a Label Studio JSON export" in capsys.readouterr().err


def test_analyze_with_the_study_methods_records_every_head(tmp_path, capsys):
    """``analyze --methods lime,xrai,gradcam`` (the embedded model, a bundled photograph, few samples and
    IG steps and XRAI's fast ranking to stay fast): contributions and a finite validity record for every
    head and method."""
    pytest.importorskip("saliency")
    from semcontrib.corpus import Corpus
    from semcontrib.demo import write_demo_images

    photos = tmp_path / "photos"
    for p in write_demo_images(photos)[1:]:  # chelsea
        p.unlink()
    out = tmp_path / "c"
    assert main(["-q", "analyze", str(photos), "--out", str(out), "--methods", "lime,xrai,gradcam",
                 "--regions", "grid:2x2", "--lime-samples", "8", "--xrai-steps", "4", "--xrai-algorithm", "fast"]) == 0
    corpus = Corpus.open(out)
    assert set(corpus.heads) == {"nature", "biotic", "material", "landscape", "imagenet"}
    att = corpus.attributions
    for method in ("lime", "xrai", "gradcam"):
        for head in corpus.heads:
            rows = att[(att["method"] == method) & (att["head"] == head)]
            assert len(rows) == 1 and rows["status"].eq("ok").all(), (method, head)
            assert np.isfinite(rows["faithfulness"].astype(float)).all(), (method, head)
            con = corpus.contributions
            assert con[(con["method"] == method) & (con["head"] == head)]["region"].nunique() == 4
    lime = att[att["method"] == "lime"]["delta"].astype(float)
    assert ((lime >= 0) & (lime <= 1)).all()  # 1 - the surrogate's weighted R^2
