"""``python -m semcontrib``: the command line."""

import sys

from semcontrib.cli import main

sys.exit(main())
