"""``python -m pykern.cli`` (``python -m pykern`` is the same command)."""

import sys

from .parser import main

sys.exit(main())
