"""pykern: Linux's physical-memory and kexec machinery, emulated over a RAM buffer.

``Machine`` boots a kernel model; ``m.mm`` is its page allocator; ``m.read``
gives the kernel's text views.  See the README for a tour.
"""

from __future__ import annotations

from . import quirks
from .kernel.kexec.uapi import (KEXEC_FILE_DEBUG, KEXEC_FILE_FLAGS, KEXEC_FILE_NO_CMA,
                                 KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH,
                                 KEXEC_FILE_UNLOAD)
from .machine import Machine
from .mm.page import Page

__all__ = ["Machine", "Page", "quirks", "__version__", "KEXEC_FILE_UNLOAD", "KEXEC_FILE_ON_CRASH",
           "KEXEC_FILE_NO_INITRAMFS", "KEXEC_FILE_DEBUG", "KEXEC_FILE_NO_CMA", "KEXEC_FILE_FLAGS"]
__version__ = "0.1.0"
