"""``alloc_contig_range`` and ``free_contig_range`` (``mm/page_alloc.c``), the MM R rules.

Kept in a module of their own because they drive isolation and migration on
top of the buddy allocator rather than being part of it.
"""

from __future__ import annotations

import errno
from array import array
from typing import TYPE_CHECKING

from . import gfp as G
from .migrate import isolate_migratepages_range, migrate_pages, putback_movable_pages
from .mmzone import MAX_PAGE_ORDER, pageblock_nr_pages
from .page import PG_buddy, PG_head, PG_reserved, PG_valid
from .page_alloc import (
    __free_pages, del_page_from_free_list, find_large_buddy, free_one_page,
    free_pages_prepare, page_zone, post_alloc_hook,
)
from .page_isolation import (
    PB_ISOLATE_MODE_CMA_ALLOC, PB_ISOLATE_MODE_OTHER, start_isolate_page_range,
    test_pages_isolated, undo_isolate_page_range,
)
from .vmstat import count_vm_events

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["ACR_FLAGS_NONE", "ACR_FLAGS_CMA", "alloc_contig_range", "free_contig_range",
           "free_contig_range_pages", "__alloc_contig_verify_gfp_mask",
           "__alloc_contig_migrate_range", "isolate_freepages_range", "release_free_list",
           "split_free_pages"]

ACR_FLAGS_NONE = 0
ACR_FLAGS_CMA = 1

#: ``__alloc_contig_verify_gfp_mask``'s masks (6.17): the reclaim modifiers and the action
#: modifiers a caller may pass (__GFP_SKIP_ZERO and __GFP_SKIP_KASAN are KASAN-only bits
#: pykern does not model, MM C1.13), and the hints that are dropped before the check.
_RECLAIM_MASK = G.__GFP_IO | G.__GFP_FS | G.__GFP_RECLAIM
_ACTION_MASK = (G.__GFP_COMP | G.__GFP_RETRY_MAYFAIL | G.__GFP_NOWARN | G.__GFP_ZERO
                | G.__GFP_ZEROTAGS)
_CC_ACTION_MASK = G.__GFP_RETRY_MAYFAIL | G.__GFP_NOWARN
_IGNORED = (G.GFP_ZONEMASK | G.__GFP_RECLAIMABLE | G.__GFP_WRITE | G.__GFP_HARDWALL
            | G.__GFP_THISNODE | G.__GFP_MOVABLE)
MAX_FOLIO_ORDER = 18  # PUD order with 4 KiB pages: the largest folio arm64/x86_64 make


def __alloc_contig_verify_gfp_mask(gfp: int) -> int | None:
    """``__alloc_contig_verify_gfp_mask`` (MM R1): the gfp for migration, or None for EINVAL.

    Zone, mobility and placement hints (__GFP_WRITE and __GFP_HARDWALL included) are
    dropped first; what is left must be reclaim or action modifiers.  The migration gfp
    keeps the reclaim bits, RETRY_MAYFAIL and NOWARN, and always carries __GFP_HARDWALL,
    __GFP_MOVABLE and __GFP_RETRY_MAYFAIL, as the kernel builds it.
    """
    gfp &= ~_IGNORED
    if gfp & ~(_RECLAIM_MASK | _ACTION_MASK):
        return None
    return ((gfp & (_RECLAIM_MASK | _CC_ACTION_MASK)) | G.__GFP_HARDWALL | G.__GFP_MOVABLE
            | G.__GFP_RETRY_MAYFAIL)


def __alloc_contig_migrate_range(m: Machine, start: int, end: int, gfp: int) -> int:
    """``__alloc_contig_migrate_range`` (MM R3): migrate the in-use pages out of
    [start, end); 0, -EBUSY after 5 rounds on the same list, or -ENOMEM."""
    pages: list[int] = []
    pfn, tries, ret = start, 0, 0
    while pfn < end or pages:
        if not pages:
            pfn = isolate_migratepages_range(m, pfn, end, pages)
            tries = 0
            if not pages:
                continue
        else:
            tries += 1
            if tries == 5:
                ret = -errno.EBUSY
                break
        ret = migrate_pages(m, pages, gfp)
        if ret == -errno.ENOMEM:
            break
    if ret < 0:
        putback_movable_pages(m, pages)
        return ret
    return 0


def isolate_freepages_range(m: Machine, start: int, end: int,
                            freelist: list[tuple[int, int]] | None = None) -> int:
    """``isolate_freepages_range`` in strict mode (MM R6): take every free block of
    [start, end) off its list; the pfn after the last one, or 0 on a gap.

    The walk goes pageblock by pageblock as ``isolate_freepages_block`` does; each block
    that is taken whole adds its pages to /proc/vmstat ``compact_isolated``, a block that
    hits a gap adds nothing.  On a gap everything taken so far goes back
    (``release_free_list``).  ``freelist`` receives the taken blocks as (pfn, order).
    """
    mm = m.kernel.mm
    mem = mm.mem_map
    zone = page_zone(mm, start)
    taken: list[tuple[int, int]] = [] if freelist is None else freelist
    pfn = start
    while pfn < end:
        block_end = min((pfn | (pageblock_nr_pages - 1)) + 1, end)
        isolated = 0
        while pfn < block_end:
            i = pfn - mem.base_pfn
            ok = (zone.zone_spans_pfn(pfn) and 0 <= i < len(mem.flags)
                  and mem.flags[i] & PG_valid and mem.flags[i] & PG_buddy)
            if not ok:
                release_free_list(m, taken)
                return 0
            order = mem.order[i]
            del_page_from_free_list(mm, pfn, zone, order, mem.freelist_mt[i])
            taken.append((pfn, order))
            isolated += 1 << order
            pfn += 1 << order
        count_vm_events(mm, "compact_isolated", isolated)
    return pfn


def release_free_list(m: Machine, freelist: list[tuple[int, int]]) -> None:
    """``release_free_list`` (``mm/compaction.c``): give isolated free blocks back.

    Lowest order first, each order's blocks in the order they were taken; every block
    goes through the post-allocation hook (``mark_allocated`` with __GFP_MOVABLE, so
    init_on_alloc clears it) and is then freed like any allocation (init_on_free clears
    it, /proc/vmstat ``pgfree`` counts it).
    """
    mm = m.kernel.mm
    mem = mm.mem_map
    for order in sorted({o for _, o in freelist}):
        for pfn, o in freelist:
            if o != order:
                continue
            i = pfn - mem.base_pfn
            mem.flags[i] &= ~PG_buddy
            mem.order[i] = 0
            mem.refcount[i] = 1
            mem.alloc_order[i] = order
            post_alloc_hook(mm, pfn, 1 << order, G.__GFP_MOVABLE)
            __free_pages(mm, pfn, order)
    freelist.clear()


def split_free_pages(m: Machine, start: int, end: int, gfp: int) -> None:
    """``split_free_pages`` (MM R7): the post-allocation hook on every grabbed page with
    the caller's gfp (so init_on_alloc=1 clears them, as it clears any allocation), then
    order-0 pages with one reference each, in pfn order.  [model] The grabbed range as one
    run of pages rather than the list of blocks ``isolate_freepages_range`` took."""
    mm = m.kernel.mm
    mem = mm.mem_map
    i, j = start - mem.base_pfn, end - mem.base_pfn
    mem.flags[i:j] = bytes([PG_valid]) * (j - i)
    mem.order[i:j] = bytes(j - i)
    mem.alloc_order[i:j] = bytes(j - i)
    refcount = mem.refcount
    refcount[i:j] = array(refcount.typecode, (1,)) * (j - i)   # set_page_refcounted, per page
    post_alloc_hook(mm, start, end - start, gfp)


def alloc_contig_range(m: Machine, start: int, end: int, acr_flags: int, gfp: int) -> int:
    """``alloc_contig_range_noprof`` (MM R2): make [start, end) allocated to the caller;
    0 or -errno.

    Pages handed out go through the post-allocation hook with ``gfp`` (init_on_alloc=1
    clears them, MM P8).  With __GFP_COMP and a grabbed range that is not exactly
    [start, end) the kernel warns, returns -EINVAL and leaves the grabbed free pages off
    every list (**[quirk]** ``contig-comp-mismatch-leak``; the fix releases them, as
    upstream's "mm/page_alloc: free allocated PFNs if the range does not match" does).
    """
    mm = m.kernel.mm
    order = (end - start).bit_length() - 1
    if gfp & G.__GFP_COMP and order > MAX_FOLIO_ORDER:
        return -errno.EINVAL
    mig_gfp = __alloc_contig_verify_gfp_mask(gfp)
    if mig_gfp is None:
        return -errno.EINVAL
    mode = PB_ISOLATE_MODE_CMA_ALLOC if acr_flags & ACR_FLAGS_CMA else PB_ISOLATE_MODE_OTHER
    ret = start_isolate_page_range(mm, start, end, mode)
    if ret == 0:
        ret = _alloc_isolated(m, start, end, mode, gfp, mig_gfp)
    undo_isolate_page_range(mm, start, end)
    return ret


def _alloc_isolated(m: Machine, start: int, end: int, mode: int, gfp: int,
                    mig_gfp: int) -> int:
    mm = m.kernel.mm
    ret = __alloc_contig_migrate_range(m, start, end, mig_gfp)
    if ret and ret != -errno.EBUSY:
        return ret
    outer_start = find_large_buddy(mm, start)
    if test_pages_isolated(mm, outer_start, end, mode):
        return -errno.EBUSY
    freelist: list[tuple[int, int]] = []
    outer_end = isolate_freepages_range(m, outer_start, end, freelist)
    if not outer_end:
        return -errno.EBUSY
    if not gfp & G.__GFP_COMP:
        split_free_pages(m, outer_start, outer_end, gfp)
        if start != outer_start:
            free_contig_range(m, outer_start, start - outer_start)
        if end != outer_end:
            free_contig_range(m, end, outer_end - end)
        return 0
    n = end - start
    if start == outer_start and end == outer_end and n & (n - 1) == 0:
        split_free_pages(m, start, end, gfp)
        mem = mm.mem_map
        mem.flags[start - mem.base_pfn] |= PG_head
        mem.order[start - mem.base_pfn] = n.bit_length() - 1
        return 0
    if m.fixes.on("contig-comp-mismatch-leak"):
        release_free_list(m, freelist)
        m.kernel.log.warn(f"WARNING: PFN range: allocated [{outer_start}, {outer_end}) does not "
                          f"match requested [{start}, {end}), freeing allocated PFNs")
    else:
        m.kernel.log.warn(f"WARNING: PFN range: requested [{start}, {end}), allocated "
                          f"[{outer_start}, {outer_end})")
    return -errno.EINVAL


def free_contig_range_pages(m: Machine, pfn: int, nr_pages: int) -> None:
    """``free_contig_range`` as the kernel writes it (MM R10): one reference dropped from
    each page, ascending.

    The reference twin of :func:`free_contig_range`'s batched path (a test compares them).
    """
    mm = m.kernel.mm
    mem = mm.mem_map
    still = 0
    for p in range(pfn, pfn + nr_pages):
        still += mem.refcount[p - mem.base_pfn] != 1
        __free_pages(mm, p, 0)
    if still:
        m.kernel.log.warn(f"WARNING: {still} pages are still in use!")


_FREE_MASK = bytes(b & (PG_valid | PG_reserved | PG_buddy) for b in range(256))


def free_contig_range(m: Machine, pfn: int, nr_pages: int) -> None:
    """``free_contig_range`` (MM R10): one reference dropped from each page, ascending.

    When every page is a plain order-0 allocation holding its last reference (what
    alloc_contig_range hands out), freeing page by page ends in the same free lists as
    freeing the range in aligned blocks, lowest first: each block is complete, and merges
    with its neighbours, at the moment its last page would have been freed, and the lists
    of the intermediate pieces come and go without moving anybody else.  That batched path
    is taken; anything unusual goes page by page (:func:`free_contig_range_pages`).
    """
    mm = m.kernel.mm
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    n = nr_pages
    refcount = mem.refcount
    if n < 2 or i < 0 or i + n > len(mem.flags) or mm.init_on_free or \
            mem.alloc_order[i:i + n].count(0) != n or \
            refcount[i:i + n] != array(refcount.typecode, (1,)) * n or \
            mem.flags[i:i + n].translate(_FREE_MASK).count(PG_valid) != n:
        free_contig_range_pages(m, pfn, nr_pages)
        return
    refcount[i:i + n] = array(refcount.typecode, (0,)) * n
    mem.alloc_order[i:i + n] = b"\xff" * n
    mem.order[i:i + n] = bytes(n)
    p, end = pfn, pfn + n
    while p < end:
        order = min(MAX_PAGE_ORDER, (p & -p).bit_length() - 1) if p else MAX_PAGE_ORDER
        zone = page_zone(mm, p)
        while p + (1 << order) > min(end, zone.zone_end_pfn):
            order -= 1
        free_pages_prepare(mm, p, order)
        free_one_page(mm, zone, p, order)
        p += 1 << order
