"""Pageblock isolation (``mm/page_isolation.c``), the MM I rules.

Isolation toggles the pageblock's isolate bit and moves its free blocks to
the Isolate lists, where the allocator never looks (MM I6).  Modes are the
6.17 ``enum pb_isolate_mode`` values.  The free-list half of isolation
(``pageblock_isolate_and_move_free_pages`` and its reverse, ``find_large_buddy``,
``__putback_isolated_page``) lives in ``mm/page_alloc.c`` and so in
:mod:`pykern.mm.page_alloc`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .mmzone import (
    MAX_ORDER_NR_PAGES, MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_ISOLATE, ZONE_MOVABLE,
    pageblock_align, pageblock_nr_pages, pageblock_order, pageblock_start_pfn,
)
from .page import PG_buddy, PG_head, PG_lru, PG_movable_ops, PG_reserved, PG_valid
from .page_alloc import (
    __putback_isolated_page, del_page_from_free_list, find_buddy_page_pfn,
    get_pfnblock_migratetype, page_zone, pageblock_isolate_and_move_free_pages,
    pageblock_unisolate_and_move_free_pages, toggle_pageblock_isolate,
)

if TYPE_CHECKING:
    from .page_alloc import PageAlloc

__all__ = ["PB_ISOLATE_MODE_MEM_OFFLINE", "PB_ISOLATE_MODE_CMA_ALLOC", "PB_ISOLATE_MODE_OTHER",
           "start_isolate_page_range", "undo_isolate_page_range", "test_pages_isolated",
           "has_unmovable_pages", "set_migratetype_isolate", "unset_migratetype_isolate",
           "isolate_single_pageblock"]

PB_ISOLATE_MODE_MEM_OFFLINE = 0
PB_ISOLATE_MODE_CMA_ALLOC = 1
PB_ISOLATE_MODE_OTHER = 2


#: 1 for a flag byte of a RAM page (``pfn_to_online_page`` finds a page there).
_VALID = bytes(b & PG_valid for b in range(256))
#: 1 for a flag byte ``isolate_single_pageblock``'s walk stops at: a RAM page that heads a
#: free block or a compound page (every other page is stepped over one pfn at a time).
_BUDDY_OR_HEAD = bytes(1 if b & PG_valid and b & (PG_buddy | PG_head) else 0
                       for b in range(256))


def __first_valid_page(mm: PageAlloc, pfn: int, nr_pages: int) -> int | None:
    """``__first_valid_page``: the first RAM pfn of [pfn, pfn + nr_pages), or None."""
    mem = mm.mem_map
    base = mem.base_pfn
    lo, hi = max(pfn, base), min(pfn + nr_pages, mem.end_pfn)
    if lo >= hi:
        return None
    flags = mem.flags
    if flags[lo - base] & PG_valid:
        return lo
    k = flags[lo - base:hi - base].translate(_VALID).find(1)
    return None if k < 0 else lo + k


def has_unmovable_pages(mm: PageAlloc, start: int, end: int, mode: int) -> int | None:
    """``has_unmovable_pages`` (MM I3): the first unmovable pfn of [start, end) (one
    pageblock), or None."""
    mem = mm.mem_map
    flags, refcount, orders, base = mem.flags, mem.refcount, mem.order, mem.base_pfn
    if get_pfnblock_migratetype(mm, start) == MIGRATE_CMA:
        return None if mode == PB_ISOLATE_MODE_CMA_ALLOC else start
    zone = page_zone(mm, start)
    pfn = start
    while pfn < end:
        i = pfn - base
        f = flags[i]
        if f & PG_reserved or not f & PG_valid:
            return pfn
        if zone.idx == ZONE_MOVABLE:
            pfn += 1
            continue
        if f & PG_head:
            if not f & PG_lru:
                return pfn
            pfn += 1 << orders[i]
            continue
        if not refcount[i]:
            pfn += (1 << orders[i]) if f & PG_buddy else 1
            continue
        if f & (PG_lru | PG_movable_ops):
            pfn += 1
            continue
        return pfn
    return None


def set_migratetype_isolate(mm: PageAlloc, pfn: int, mode: int, start: int, end: int) -> int:
    """``set_migratetype_isolate`` (MM I2): isolate the pageblock of ``pfn``; 0 or -EBUSY.

    The unmovable-page scan covers [max(pfn, start), min(end of the block, end)): it
    starts at the page the caller passes, which for the inner blocks of
    ``start_isolate_page_range`` is the block's first valid page, so a block that
    begins with a hole is scanned from its first RAM page.
    """
    if get_pfnblock_migratetype(mm, pfn) == MIGRATE_ISOLATE:
        return -errno.EBUSY
    block = pageblock_start_pfn(pfn)
    lo, hi = max(pfn, start), min(block + pageblock_nr_pages, end)
    if has_unmovable_pages(mm, lo, hi, mode) is None:
        zone = page_zone(mm, block)
        if not pageblock_isolate_and_move_free_pages(mm, zone, block):
            return -errno.EBUSY
        zone.nr_isolate_pageblock += 1
        return 0
    return -errno.EBUSY


def unset_migratetype_isolate(mm: PageAlloc, pfn: int) -> None:
    """``unset_migratetype_isolate`` (MM I7): give the pageblock its type back, its free
    pages with it."""
    if get_pfnblock_migratetype(mm, pfn) != MIGRATE_ISOLATE:
        return
    zone = page_zone(mm, pfn)
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    isolated_order = -1
    if mem.flags[i] & PG_buddy:
        order = mem.order[i]
        if pageblock_order <= order < MAX_PAGE_ORDER:
            buddy = find_buddy_page_pfn(mm, zone, pfn, order)
            if buddy is not None and get_pfnblock_migratetype(mm, buddy) != MIGRATE_ISOLATE:
                del_page_from_free_list(mm, pfn, zone, order, MIGRATE_ISOLATE)
                isolated_order = order
    if isolated_order < 0:
        pageblock_unisolate_and_move_free_pages(mm, zone, pfn)
    else:
        toggle_pageblock_isolate(mm, pfn, False)          # clear_pageblock_isolate
        __putback_isolated_page(mm, pfn, isolated_order, get_pfnblock_migratetype(mm, pfn))
    zone.nr_isolate_pageblock -= 1


def isolate_single_pageblock(mm: PageAlloc, boundary: int, mode: int, before: bool,
                             skip_isolation: bool) -> int:
    """``isolate_single_pageblock`` (MM I4): isolate one edge block and refuse a compound
    page across its edge."""
    block = boundary - pageblock_nr_pages if before else boundary
    zone = page_zone(mm, block)
    start = max(block & ~(MAX_ORDER_NR_PAGES - 1), zone.zone_start_pfn)
    if not skip_isolation:
        ret = set_migratetype_isolate(mm, block, mode, block, block + pageblock_nr_pages)
        if ret:
            return ret
    mem = mm.mem_map
    if not mem.pfn_valid(boundary if before else boundary - 1):
        return 0
    # The walk from ``start``: __first_valid_page skips holes, a free block or a compound
    # page that ends by the boundary is stepped over whole, any other page one pfn at a
    # time.  Only free-block and compound heads can stop it, so it goes from one to the
    # next (stops[k] is pfn0 + k's entry of _BUDDY_OR_HEAD; the flags do not change here).
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    pfn0 = max(start, base)
    stops = flags[pfn0 - base:boundary - base].translate(_BUDDY_OR_HEAD)
    pfn = pfn0
    while pfn < boundary:
        k = stops.find(1, pfn - pfn0)
        if k < 0:
            break
        pfn = pfn0 + k
        i = pfn - base
        f = flags[i]
        if f & PG_buddy:
            pfn += 1 << orders[i]
            continue
        nr = 1 << orders[i]
        if pfn + nr <= boundary:
            pfn += nr
            continue
        if not skip_isolation:
            unset_migratetype_isolate(mm, block)
        return -errno.EBUSY
    return 0


def start_isolate_page_range(mm: PageAlloc, start: int, end: int, mode: int) -> int:
    """``start_isolate_page_range`` (MM I1): isolate every pageblock touched by
    [start, end); 0 or -EBUSY."""
    istart = pageblock_start_pfn(start)
    iend = pageblock_align(end)
    ret = isolate_single_pageblock(mm, istart, mode, False, False)
    if ret:
        return ret
    skip = istart == iend - pageblock_nr_pages
    ret = isolate_single_pageblock(mm, iend, mode, True, skip)
    if ret:
        unset_migratetype_isolate(mm, istart)
        return ret
    for pfn in range(istart + pageblock_nr_pages, iend - pageblock_nr_pages, pageblock_nr_pages):
        page = __first_valid_page(mm, pfn, pageblock_nr_pages)
        if page is not None and set_migratetype_isolate(mm, page, mode, start, end):
            undo_isolate_page_range(mm, istart, pfn)
            unset_migratetype_isolate(mm, iend - pageblock_nr_pages)
            return -errno.EBUSY
    return 0


def undo_isolate_page_range(mm: PageAlloc, start: int, end: int) -> None:
    """``undo_isolate_page_range`` (MM I8): unisolate each isolated pageblock of
    [start, end)."""
    for pfn in range(pageblock_start_pfn(start), pageblock_align(end), pageblock_nr_pages):
        page = __first_valid_page(mm, pfn, pageblock_nr_pages)
        if page is not None and get_pfnblock_migratetype(mm, page) == MIGRATE_ISOLATE:
            unset_migratetype_isolate(mm, page)


def __test_page_isolated_in_pageblock(mm: PageAlloc, pfn: int, end_pfn: int,
                                      mode: int) -> int:
    """``__test_page_isolated_in_pageblock`` (MM I9): walk [pfn, end_pfn) over free
    blocks; the pfn where the walk stopped.  (No hwpoisoned or offline pages are modelled,
    so ``mode`` changes nothing.)"""
    mem = mm.mem_map
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    while pfn < end_pfn:
        i = pfn - base
        if flags[i] & PG_buddy:
            pfn += 1 << orders[i]
        else:
            break
    return pfn


def test_pages_isolated(mm: PageAlloc, start: int, end: int, mode: int) -> int:
    """``test_pages_isolated`` (MM I9): 0 when every page of [start, end) is free in
    isolated blocks.

    The block check steps from ``start`` itself, as the kernel's loop does.
    """
    pfn = start
    while pfn < end:
        page = __first_valid_page(mm, pfn, pageblock_nr_pages)
        if page is not None and get_pfnblock_migratetype(mm, page) != MIGRATE_ISOLATE:
            break
        pfn += pageblock_nr_pages
    if pfn < end or __first_valid_page(mm, start, end - start) is None:
        return -errno.EBUSY
    pfn = __test_page_isolated_in_pageblock(mm, start, end, mode)
    return -errno.EBUSY if pfn < end else 0
