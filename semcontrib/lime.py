"""Moved to :mod:`semcontrib.methods.lime` (one module per method family in the methods package); this name
stays for one release and is the same module object."""

import sys

from semcontrib.methods import lime as _moved

sys.modules[__name__] = _moved
