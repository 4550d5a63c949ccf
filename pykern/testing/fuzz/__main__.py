"""``python -m pykern.testing.fuzz``: the same as ``pykern fuzz``."""

import sys

from .command import main

sys.exit(main())
