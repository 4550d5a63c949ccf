"""pykern: Linux's physical-memory and kexec machinery, emulated over a RAM buffer.

``Machine`` boots a kernel model; ``m.mm`` is its page allocator; ``m.read``
gives the kernel's text views.  See the README for a tour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# First: under PYKERN_NO_EXTENSIONS=1 it routes the compiled kernel modules to their source.
from . import _fast  # noqa: F401
from . import quirks
from .kernel.kexec.uapi import (KEXEC_FILE_DEBUG, KEXEC_FILE_FLAGS, KEXEC_FILE_FORCE_DTB,
                                 KEXEC_FILE_NO_CMA, KEXEC_FILE_NO_INITRAMFS,
                                 KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD)

if TYPE_CHECKING:
    from .machine import Machine
    from .mm.page import Page

__all__ = ["Machine", "Page", "quirks", "__version__", "KEXEC_FILE_UNLOAD", "KEXEC_FILE_ON_CRASH",
           "KEXEC_FILE_NO_INITRAMFS", "KEXEC_FILE_DEBUG", "KEXEC_FILE_NO_CMA", "KEXEC_FILE_FLAGS",
           "KEXEC_FILE_FORCE_DTB"]
#: The distribution's name on PyPI; the import name is ``pykern``.
DIST_NAME = "pykern-emu"


def _dist_version() -> str:
    """The installed distribution's version, from its metadata (one source: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(DIST_NAME)
    except PackageNotFoundError:      # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _dist_version()


def __getattr__(name: str) -> Any:
    # Machine and Page load on first use, so that importing a light submodule (the pytest
    # plugin, the uapi constants) does not build the whole kernel model.
    if name == "Machine":
        from .machine import Machine
        return Machine
    if name == "Page":
        from .mm.page import Page
        return Page
    raise AttributeError(f"module 'pykern' has no attribute {name!r}")
