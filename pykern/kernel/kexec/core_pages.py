"""The page loops of a kexec load (``kernel/kexec_core.c``; K9.2, K11, K11.7, K12.2) in a
module of their own: ``kimage_load_normal_segment``'s loop over destination pages with
``kimage_alloc_page`` inside it, the loop of ``kimage_alloc_normal_control_pages``, and the
load's recorded ``copy_highpage`` runs.  The compiled build compiles this source (Cython's
pure-Python mode, ``core_pages.pxd`` beside it giving C types; see
:data:`pykern._fast.PURE_MODULES`), while :mod:`pykern.kernel.kexec.core` stays plain Python.

:func:`kimage_load_normal_pages` and :func:`kimage_take_control_block` run only while no
allocation can be made to fail: fault injection's call trace names ``kimage_alloc_page`` and
``kimage_alloc_pages``, and compiled code leaves no Python frames to name, so with fault
injection armed the load takes those functions in ``core.py`` instead (a differential test
holds both ways together).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...mm.page import PG_reserved
from ...mm.page_alloc import PageAlloc, __alloc_frozen_pages_noprof, __free_pages

__all__ = ["copy_highpages", "kimage_load_normal_pages", "kimage_take_control_block",
           "LOAD_DONE", "LOAD_STOP", "LOAD_NOMEM"]

LOAD_DONE = 0    #: every destination page of the range has its SOURCE entry
LOAD_STOP = 1    #: the destination page returned needs the general path
LOAD_NOMEM = 2   #: the allocator had no page for the destination page returned

_IND_SOURCE = 0x8
_HEAD = -1       #: ``core.HEAD``: the entry is ``image.head``, not a word in RAM
_WORD = struct.Struct("<Q")

if TYPE_CHECKING:
    from .core import _OwedPages


def kimage_load_normal_pages(mm: PageAlloc, gfp: int, maddr: int, end: int, entry: int,
                             last: int, delta: int, ram: Any,
                             pack_two: Callable[[Any, int, int, int], None],
                             flags: bytearray, base: int, limit_pfn: int, firsts: list[int],
                             reach: list[int], dest_pages: dict[int, None],
                             dest_index: dict[int, int], src: list[int],
                             unusable_pages: list[int], owed: _OwedPages,
                             offset: Callable[[int, int], int]) -> tuple[int, int, int]:
    """Take the SOURCE page of each destination page from ``maddr`` up to ``end`` and add
    its entry, as kimage_load_normal_segment does, while the entry and the zero word after
    it fit the current indirection page (``entry``, ``last``; ``delta`` is the buffer offset
    minus the address there).

    Each page is kimage_alloc_page's (K11): a destination set aside earlier (in
    ``dest_pages``, ``image.dest_pages_added``) is its own source; otherwise pages come from
    kimage_alloc_pages (``alloc_pages`` with ``gfp``, less its page handle, then PG_reserved
    in ``flags``) until one will do: a page above ``limit_pfn`` goes to
    ``unusable_pages`` (``image.unusable_pages_added``); a page that is the destination
    itself or inside no
    segment (the ``firsts``/``reach`` bisection of ``_destination_index``) is taken; a
    page whose destination is already loaded (``dest_index``: where its SOURCE entry
    sits, read through ``offset``) takes over that entry and those bytes
    (``owed.copy_highpage``), and the old source page is taken; any other page is set
    aside as a destination.  The entry is written into ``ram`` with ``pack_two``, recorded
    in ``dest_index`` and the page appended to ``src``.

    Returns ``(status, maddr, entry)``: LOAD_DONE at ``end``; LOAD_STOP or LOAD_NOMEM at the
    destination page the caller takes over (for LOAD_STOP nothing was taken for it)."""
    seg_mem, first, copies = owed.mem, owed.first, owed.copies
    while maddr < end:
        if not (entry + 8 < last and entry != _HEAD):
            return LOAD_STOP, maddr, entry
        if maddr in dest_pages:
            del dest_pages[maddr]
            addr = maddr
        else:
            while True:
                got = __alloc_frozen_pages_noprof(mm, gfp, 0)
                if got is None:
                    return LOAD_NOMEM, maddr, entry
                pfn: int = got
                flags[pfn - base] |= PG_reserved
                addr = pfn << 12
                if pfn > limit_pfn:
                    unusable_pages.append(addr)
                    continue
                if addr == maddr:
                    break
                k = bisect_right(firsts, addr + 0xFFF)
                if not k or addr > reach[k - 1]:
                    break
                loc = dest_index.get(addr)
                if loc is not None:
                    # its destination is loaded: it takes over that SOURCE entry and bytes
                    at = offset(loc, 8)
                    word = _WORD.unpack_from(ram, at)[0]
                    old = word & ~0xFFF
                    # owed.copy_highpage(addr, old), inline: a page still owed gets its
                    # bytes written in place, else the copy is recorded
                    j = ((addr - seg_mem) >> 12) - first
                    if 0 <= j < len(src) and src[j] == old:
                        src[j] = addr
                    else:
                        copies.append((addr, old))
                    _WORD.pack_into(ram, at, addr | (word & 0xFFF))
                    addr = old
                    break
                dest_pages[addr] = None
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


def copy_highpages(ram: Any, copies: list[tuple[int, int]], offset: Callable[[int, int], int],
                   copy_range: Callable[[Any, int, Any, int, int], None],
                   prefault_write: Callable[[int, int], None]) -> None:
    """``copy_highpage`` of each ``(destination page, page copied from)`` of ``copies``, in
    order (K11.7, the copies a load's ``_OwedPages`` recorded), one ``copy_range`` per run
    of pairs that both advance a page at a time (``offset``: RAM address to buffer
    offset; ``prefault_write``: :meth:`pykern.mm.memory.PhysMem.prefault_write`)."""
    n = len(copies)
    k = 0
    while k < n:
        to, frm = copies[k]
        e = k + 1
        while e < n and copies[e][0] == to + ((e - k) << 12) \
                and copies[e][1] == frm + ((e - k) << 12):
            e += 1
        size = (e - k) << 12
        prefault_write(to, size)
        copy_range(ram, offset(to, size), ram, offset(frm, size), size)
        k = e
