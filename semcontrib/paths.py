"""Where the project's shipped data files live."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_DATA = Path(__file__).resolve().parent.parent / "data"


def data_dir() -> Path:
    """The ``data/`` folder (override with ``SEMCONTRIB_DATA``)."""
    env = os.environ.get("SEMCONTRIB_DATA")
    return Path(env) if env else _REPO_DATA


def data_path(name: str) -> Path:
    path = data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"shipped data file missing: {path}")
    return path
