"""``crashkernel=`` at boot (``kernel/crash_reserve.c``): the crash kernel's region.

The parsing lives in :mod:`pykern.kernel.params`; the per-arch constants the kernel keeps in
``asm/crash_reserve.h`` are below.  The region ends up in ``m.kernel.kexec.crashk_res``
(``crashk_res``) as ``[start, end)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import SZ_16M, SZ_2M, SZ_4G
from ..mm.mmzone import PAGE_SIZE
from .printk import KERN_INFO, KERN_WARNING

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["CRASH_ALIGN", "crash_addr_low_max", "reserve_crashkernel_generic",
           "arch_reserve_crashkernel"]


#: ``CRASH_ALIGN``: arm64's boot protocol wants 2 MiB, x86_64 aligns to 16 MiB.
CRASH_ALIGN = {"arm64": SZ_2M, "x86_64": SZ_16M}


def crash_addr_low_max(m: Machine) -> int:
    """``CRASH_ADDR_LOW_MAX``: arm64 ``arm64_dma_phys_limit`` (the top of ZONE_DMA), x86_64
    4 GiB."""
    return m.kernel.dma_phys_limit if m.arch == "arm64" else SZ_4G


def reserve_crashkernel_generic(m: Machine, crash_size: int, crash_base: int | None) -> None:
    """``reserve_crashkernel_generic`` (MM Z0.5): a fixed ``size@base`` range that must be
    free memory, or the highest ``CRASH_ALIGN``-aligned free range below
    ``CRASH_ADDR_LOW_MAX``; memblock-reserved and recorded as ``crashk_res``.  A failure
    only logs.

    [model] The ``,high``/``,low`` forms and the fall back to high memory are not modelled
    (the parser refuses them).
    """
    k = m.kernel
    mb = k.memblock
    size = (crash_size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if crash_base is not None:
        if mb.is_region_memory(crash_base, size) and not mb.is_region_reserved(crash_base, size):
            found: int | None = crash_base
        else:
            found = None
            k.log.printk(KERN_WARNING, "crashkernel reservation failed - memory is in use.")
    else:
        found = mb.find_in_range(size, CRASH_ALIGN[m.arch], 0, crash_addr_low_max(m))
        if found is None:
            k.log.printk(KERN_WARNING, f"cannot allocate crashkernel (size:{size:#x})")
    if found is None:
        return
    mb.memblock_reserve(found, size)
    k.kexec.crashk_res = (found, found + size)
    k.log.printk(KERN_INFO, f"crashkernel reserved: 0x{found:016x} - 0x{found + size:016x} "
                            f"({size >> 20} MB)")


def arch_reserve_crashkernel(m: Machine) -> None:
    """``arch_reserve_crashkernel`` (arm64 ``arch/arm64/mm/init.c``, x86
    ``arch/x86/kernel/setup.c``): ``crashkernel=`` from the command line, if any, to
    :func:`reserve_crashkernel_generic`."""
    ck = m.kernel.boot_params.crashkernel
    if ck is not None:
        reserve_crashkernel_generic(m, *ck)
