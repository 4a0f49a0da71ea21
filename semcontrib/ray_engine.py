"""Moved to :mod:`semcontrib.engine.ray` (the engine's stages on a Ray cluster); this name stays for one release
and is the same module object."""

import sys

from semcontrib.engine import ray as _ray

sys.modules[__name__] = _ray
