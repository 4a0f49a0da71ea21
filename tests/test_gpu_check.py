"""benchmarks/gpu_check.sh: its dry run (CPU, tiny model) prints one JSON line of figures and passing
checks, so the GPU check cannot rot between GPU slots; without CUDA it stops with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_dry_run_prints_one_json_line_of_figures_and_passing_checks():
    r = _run("--dry-run")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["mode"] == "dry-run" and result["ok"] is True and result["skipped"] == []
    names = {a["config"] for a in result["analyze"]}
    assert {"default/fp32/grid/w0", "default/fp32/grid/w1", "default/bf16+cl/grid/w0", "default/fp32+cl/grid/w0",
            "no-IG/fp32/grid/w0/cpu", "default/fp32/landscape/w0"} <= names
    for a in result["analyze"]:
        assert a["images"] == (3 if a["device"] == "cpu" and a["config"].endswith("/cpu") else 6)
        assert a["img_per_s"] > 0 and a["gpu_peak_mb"] is None
    for name in ("workers", "bf16", "channels_last", "cpu"):
        check = result["checks"][name]
        assert check["ok"] is True and check["rows"] > 0, (name, check)
        assert all(check["max_abs_diff"][m] <= check["tolerance"][m] for m in check["max_abs_diff"])
    assert result["checks"]["workers"]["max_abs_diff"] == {"gradcam": 0.0, "ig": 0.0, "lrp": 0.0}
    assert result["checks"]["bf16"]["max_abs_diff"]["gradcam"] > 0  # bf16 did run
    assert result["training"]["fine_tune_img_per_s"] > 0 and result["training"]["backbone_ms_per_view"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_stops_with_one_line():
    r = _run()
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "no CUDA device" in r.stderr
