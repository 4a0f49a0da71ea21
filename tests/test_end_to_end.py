"""End to end on bundled photographs with the real EfficientNet-Lite0 weights, against golden numbers."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from semcontrib.cli import main
from tests.golden.regenerate import HERE, compute

GOLDEN = HERE / "e2e_lite0_grid.json"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return compute(tmp_path_factory.mktemp("e2e"))


def test_golden_file_is_the_recorded_one():
    recorded = (HERE / "SHA256SUMS").read_text().split()[0]
    assert hashlib.sha256(GOLDEN.read_bytes()).hexdigest() == recorded, \
        "golden file edited by hand: regenerate it with python tests/golden/regenerate.py"


def test_predictions_are_sensible_and_match_golden(result):
    p = result["predictions"]
    assert p["chelsea"]["nature"] == "nature" and p["chelsea"]["biotic"] == "biotic"
    assert p["coffee"]["nature"] == "non_nature" and p["coffee"]["biotic"] == "abiotic"
    assert p["coffee"]["imagenet"] == "espresso"
    assert all(p[photo]["material"] == "material" for photo in ("chelsea", "coffee", "astronaut"))
    assert p == json.loads(GOLDEN.read_text())["predictions"]


def test_contribution_vectors_match_golden(result):
    golden = json.loads(GOLDEN.read_text())
    assert result["vocabulary"] == golden["vocabulary"]
    assert set(result["signed_l1"]) == set(golden["signed_l1"])
    for key, vec in golden["signed_l1"].items():
        # statistics come from full-precision maps; CPU kernel differences move scores by far less
        np.testing.assert_allclose(result["signed_l1"][key], vec, atol=5e-3, err_msg=key)


def test_cli_analyze_on_real_photos_with_a_broken_file(tmp_path, capsys):
    from PIL import Image

    from semcontrib.demo import DEMO_IMAGES

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(DEMO_IMAGES["coffee"][0]()).save(folder / "coffee.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "coffee.jpg").read_bytes()[:2000])
    code = main(["analyze", str(folder), "--out", str(tmp_path / "c"), "--methods", "gradcam,lrp",
                 "--regions", "grid:2x2", "--heads", "nature,imagenet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 analysed, 1 skipped" in out and "truncated.jpg" in out
