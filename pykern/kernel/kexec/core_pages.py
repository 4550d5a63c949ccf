"""The common case of ``kimage_load_normal_segment``'s loop over destination pages and the
loop of ``kimage_alloc_normal_control_pages`` (``kernel/kexec_core.c``; K9.2, K11, K12.2), in
a module of its own: the compiled build compiles it
from this source (Cython's pure-Python mode, ``core_pages.pxd`` beside it giving C types; see
:data:`pykern._fast.PURE_MODULES`), while :mod:`pykern.kernel.kexec.core` stays plain Python.

:func:`kimage_load_normal_pages` and :func:`kimage_take_control_block` run only while no
allocation can be made to fail: fault
injection's call trace names ``kimage_alloc_page`` and ``kimage_alloc_pages``, and compiled
code leaves no Python frames to name.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from ...mm.page import PG_reserved
from ...mm.page_alloc import PageAlloc, __alloc_frozen_pages_noprof, __free_pages

__all__ = ["kimage_load_normal_pages", "kimage_take_control_block", "LOAD_DONE", "LOAD_STOP",
           "LOAD_NOMEM"]

LOAD_DONE = 0    #: every destination page of the range has its SOURCE entry
LOAD_STOP = 1    #: the destination page returned needs the general path
LOAD_NOMEM = 2   #: the allocator had no page for the destination page returned

_IND_SOURCE = 0x8
_HEAD = -1       #: ``core.HEAD``: the entry is ``image.head``, not a word in RAM


def kimage_load_normal_pages(mm: PageAlloc, gfp: int, maddr: int, end: int, entry: int,
                             last: int, delta: int, ram: Any,
                             pack_two: Callable[[Any, int, int, int], None],
                             flags: bytearray, base: int, limit_pfn: int, firsts: list[int],
                             reach: list[int], dest_set: set[int], dest_index: dict[int, int],
                             src: list[int], unsafe: Callable[[int, int], int | None],
                             ) -> tuple[int, int, int]:
    """Take the SOURCE page of each destination page from ``maddr`` up to ``end`` and add
    its entry, as kimage_load_normal_segment does, while each page is the common case:
    its destination is not a page set aside earlier (``image._dest_set``), and the entry
    and the zero word after it fit the current indirection page (``entry``, ``last``;
    ``delta`` is the buffer offset minus the address there).

    Each page is kimage_alloc_page's: kimage_alloc_pages (``alloc_pages`` with ``gfp``, less
    its page handle, then PG_reserved in ``flags``), and a page at most ``limit_pfn`` that
    is the destination itself or inside no segment (the ``firsts``/``reach`` bisection of
    ``_destination_index``) is taken; any other page goes to ``unsafe(page, maddr)``, which
    returns the page to use or None when no page could be had.  The entry is written into
    ``ram`` with ``pack_two``, recorded in ``dest_index`` and the page appended to ``src``.

    Returns ``(status, maddr, entry)``: LOAD_DONE at ``end``; LOAD_STOP or LOAD_NOMEM at the
    destination page the caller takes over, nothing taken for it."""
    while maddr < end:
        if maddr in dest_set or not (entry + 8 < last and entry != _HEAD):
            return LOAD_STOP, maddr, entry
        got = __alloc_frozen_pages_noprof(mm, gfp, 0)
        if got is None:
            return LOAD_NOMEM, maddr, entry
        pfn: int = got
        flags[pfn - base] |= PG_reserved
        addr = pfn << 12
        if pfn > limit_pfn or addr != maddr and (
                (k := bisect_right(firsts, addr + 0xFFF)) and addr <= reach[k - 1]):
            page = unsafe(addr, maddr)
            if page is None:
                return LOAD_NOMEM, maddr, entry
            addr = page
        pack_two(ram, entry + delta, addr | _IND_SOURCE, 0)
        dest_index[maddr] = entry
        entry += 8
        src.append(addr)
        maddr += 4096
    return LOAD_DONE, maddr, entry


def kimage_take_control_block(mm: PageAlloc, gfp: int, order: int, limit_pfn: int,
                              flags: bytearray, base: int, firsts: list[int],
                              reach: list[int]) -> int | None:
    """The loop of kimage_alloc_normal_control_pages (K9.2): blocks of ``order`` from
    kimage_alloc_pages (``alloc_pages`` with ``gfp``, less its page handle, then PG_reserved
    on each page in ``flags``) until one ends below ``limit_pfn`` (the kernel's test: end
    pfn, exclusive, at or above the limit is refused) and lies in no segment's destination
    (the ``firsts``/``reach`` bisection); the blocks refused on the way are freed again,
    the last first, through kimage_free_pages (PG_reserved cleared, ``__free_pages``).
    Returns the block's address, or None when the allocator ran out first."""
    count = 1 << order
    extra: list[int] = []
    got = None
    while True:
        taken = __alloc_frozen_pages_noprof(mm, gfp, order)
        if taken is None:
            break
        pfn: int = taken
        for j in range(pfn - base, pfn - base + count):
            flags[j] |= PG_reserved
        addr = pfn << 12
        if pfn + count >= limit_pfn:
            extra.append(addr)
            continue
        k = bisect_right(firsts, addr + (count << 12) - 1)
        if k and addr <= reach[k - 1]:
            extra.append(addr)
            continue
        got = addr
        break
    for addr in reversed(extra):
        pfn = addr >> 12
        for j in range(pfn - base, pfn - base + count):
            flags[j] &= ~PG_reserved
        __free_pages(mm, pfn, order)
    return got
