"""pykern: Linux's physical-memory and kexec machinery, emulated over a RAM buffer.

``Machine`` boots a kernel model; ``m.mm`` is its page allocator; ``m.read``
gives the kernel's text views.  See the README for a tour.
"""

from __future__ import annotations

from . import quirks
from .machine import Machine
from .mm.page import Page

__all__ = ["Machine", "Page", "quirks", "__version__"]
__version__ = "0.1.0"
