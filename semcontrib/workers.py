"""Moved to :mod:`semcontrib.engine.workers` (the engine owns its worker processes); this name stays for one
release and is the same module object, so its private names, monkeypatching and pickled jobs keep working."""

import sys

from semcontrib.engine import workers as _workers

sys.modules[__name__] = _workers
