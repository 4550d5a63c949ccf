"""``init/initramfs.c``: the initrd's memory once the root file system is unpacked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mm.memblock import clip_to_memory
from ..mm.mm_init import free_reserved_page
from ..mm.mmzone import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["free_initrd_mem"]


def free_initrd_mem(m: Machine, start: int, size: int) -> None:
    """``free_initrd_mem`` (MM Z0.3): at the end of boot the initrd's pages, widened to
    whole pages, leave memblock's reservations and go to the buddy allocator one by one
    (``free_reserved_area``), with the kernel's log line."""
    k = m.kernel
    lo = start & ~(PAGE_SIZE - 1)
    hi = (start + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    k.memblock.memblock_phys_free(lo, hi - lo)
    for b, e in clip_to_memory(k.memblock, lo, hi):
        for pfn in range(b >> PAGE_SHIFT, e >> PAGE_SHIFT):
            free_reserved_page(k.mm, pfn)
    k.log.info(f"Freeing initrd memory: {(hi - lo) >> 10}K")
