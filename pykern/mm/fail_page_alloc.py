"""Page-allocation fault injection (``mm/fail_page_alloc.c``).

``fail_page_alloc`` is one fault attribute (:mod:`pykern.lib.fault_inject`) plus three
filters of its own, with the kernel's defaults: ``ignore-gfp-wait`` Y (requests that may
direct-reclaim never fail), ``ignore-gfp-highmem`` Y (nor do __GFP_HIGHMEM ones) and
``min-order`` 1 (nor do order-0 ones).  :func:`__should_fail_alloc_page` is
called where the kernel's ``prepare_alloc_pages`` calls it, after the order check and the
task's gfp context, before any zone is looked at; a forced failure makes the allocation
return NULL at once, without the allocation-failure warning.

The boot parameter ``fail_page_alloc=<interval>,<probability>,<space>,<times>`` is parsed
by ``setup_fault_attr`` (:mod:`pykern.kernel.params`); the debugfs directory
``/sys/kernel/debug/fail_page_alloc/`` has ``fault_create_debugfs_attr``'s files and the
three above.  The machine is taken to be built with CONFIG_FAULT_INJECTION,
CONFIG_FAIL_PAGE_ALLOC, CONFIG_FAULT_INJECTION_DEBUG_FS and
CONFIG_FAULT_INJECTION_STACKTRACE_FILTER (a debug build: distribution kernels leave them
off).

Divergence [model]: ``gfp_allowed_mask`` is not modelled, so allocations made before the
scheduler is up (device probe at boot) are judged with their whole gfp, where the kernel
would already have masked __GFP_DIRECT_RECLAIM off them.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..lib.fault_inject import (
    FAULT_ATTR_FILES, FAULT_NOWARN, FaultAttr, FaultInject, fault_debugfs_read,
    fault_debugfs_write, python_frames, setup_fault_attr, should_fail_ex,
)
from .gfp import __GFP_DIRECT_RECLAIM, __GFP_HIGHMEM, __GFP_NOFAIL, __GFP_NOWARN

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["FailPageAlloc", "FAIL_PAGE_ALLOC_FILES", "fail_page_alloc_init",
           "__should_fail_alloc_page", "fail_page_alloc_debugfs_read",
           "fail_page_alloc_debugfs_write"]

#: Every file of the directory: name → (field of FailPageAlloc, kind).
FAIL_PAGE_ALLOC_FILES: dict[str, tuple[str, str]] = {
    **{name: ("attr." + fieldname, kind) for name, (fieldname, kind)
       in FAULT_ATTR_FILES.items()},
    "ignore-gfp-wait": ("ignore_gfp_reclaim", "bool"),
    "ignore-gfp-highmem": ("ignore_gfp_highmem", "bool"),
    "min-order": ("min_order", "u32"),
}

#: The page allocator's entry frames in a fail_dump call trace, innermost first.
_ENTRY_FRAMES = ["should_fail_ex", "__should_fail_alloc_page", "prepare_alloc_pages",
                 "__alloc_frozen_pages_noprof", "__alloc_pages_noprof"]
_SKIP_MODULES = ("pykern.lib.fault_inject", "pykern.mm.fail_page_alloc")
_SKIP_NAMES = frozenset({"alloc_pages", "__alloc_frozen_pages_noprof"})


class FailPageAlloc:
    """The ``fail_page_alloc`` struct of one boot (``m.mm.fail_page_alloc``)."""

    def __init__(self, fi: FaultInject, setup: str | None = None) -> None:
        self.fi = fi
        self.attr = FaultAttr("fail_page_alloc")
        self.ignore_gfp_highmem = True
        self.ignore_gfp_reclaim = True
        self.min_order = 1
        if setup is not None:               # setup_fail_page_alloc
            setup_fault_attr(self.attr, setup)

    @property
    def armed(self) -> bool:
        """Can any allocation fail now?  Only with a probability set or a task's fail-nth
        pending (the allocator's fast path makes this test inline)."""
        return bool(self.attr.probability or self.fi.nth_pending)


def __should_fail_alloc_page(fpa: FailPageAlloc, gfp: int, order: int) -> bool:
    """``__should_fail_alloc_page``: the filters, then ``should_fail_ex`` with
    ``1 << order`` and FAULT_NOWARN for a __GFP_NOWARN request."""
    if order < fpa.min_order:
        return False
    if gfp & __GFP_NOFAIL:
        return False
    if fpa.ignore_gfp_highmem and gfp & __GFP_HIGHMEM:
        return False
    if fpa.ignore_gfp_reclaim and gfp & __GFP_DIRECT_RECLAIM:
        return False
    flags = FAULT_NOWARN if gfp & __GFP_NOWARN else 0
    return should_fail_ex(fpa.fi, fpa.attr, 1 << order, flags, _frames)


def fail_page_alloc_init(m: Machine) -> FaultInject:
    """At boot, once the allocator exists: set ``m.mm.fail_page_alloc`` up from the
    command line's last valid ``fail_page_alloc=`` (its parse warnings were printed with
    the command line) and return this boot's :class:`FaultInject`
    (``m.kernel.fault_inject``)."""
    fi = FaultInject(m)
    m.kernel.mm.fail_page_alloc = FailPageAlloc(fi, m.kernel.boot_params.fail_page_alloc)
    return fi


def _frames() -> list[str]:
    return _ENTRY_FRAMES + python_frames(_SKIP_MODULES, _SKIP_NAMES)


def _fpa(m: Machine) -> FailPageAlloc:
    fpa = m.kernel.mm.fail_page_alloc
    assert fpa is not None, "set at boot (fail_page_alloc_init)"
    return fpa


def fail_page_alloc_debugfs_read(m: Machine, rest: str) -> str | None:
    """``/sys/kernel/debug/fail_page_alloc/<file>``."""
    spec = FAIL_PAGE_ALLOC_FILES.get(rest)
    if spec is None:
        return None
    return fault_debugfs_read(_fpa(m), *spec)


def fail_page_alloc_debugfs_write(m: Machine, rest: str, text: str) -> None:
    """Write one of the directory's files (each is mode 0600: all are writable)."""
    spec = FAIL_PAGE_ALLOC_FILES.get(rest)
    if spec is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                "/sys/kernel/debug/fail_page_alloc/" + rest)
    fault_debugfs_write(_fpa(m), *spec, text)
