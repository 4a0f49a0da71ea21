"""Where the package's shipped data files live.

They are installed inside the package, as ``semcontrib.data`` (the repository's ``data/`` folder), and
read with :mod:`importlib.resources`, so they are found from a wheel as well as from a checkout.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def data_dir() -> Path:
    """The folder of shipped data files (override with the environment variable ``SEMCONTRIB_DATA``)."""
    env = os.environ.get("SEMCONTRIB_DATA")
    if env:
        return Path(env)
    return Path(str(resources.files("semcontrib.data")))


def data_path(name: str) -> Path:
    """Path of one shipped data file; ``FileNotFoundError`` naming it when it is missing."""
    path = data_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"shipped data file missing: {path} (a broken install? reinstall semcontrib)")
    return path
