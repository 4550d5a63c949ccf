"""Pageblock isolation (``mm/page_isolation.c``), the MM I rules.

Isolation toggles the pageblock's isolate bit and moves its free blocks to
the Isolate lists, where the allocator never looks (MM I6).  Modes are the
6.17 ``enum pb_isolate_mode`` values.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .internal import FPI_NONE, FPI_TO_TAIL
from .mmzone import (
    MAX_ORDER_NR_PAGES, MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_ISOLATE, ZONE_MOVABLE,
    pageblock_nr_pages, pageblock_order,
)
from .page import PG_buddy, PG_head, PG_lru, PG_movable_ops, PG_reserved, PG_valid

if TYPE_CHECKING:
    from .page_alloc import PageAlloc

__all__ = ["PB_ISOLATE_MODE_MEM_OFFLINE", "PB_ISOLATE_MODE_CMA_ALLOC", "PB_ISOLATE_MODE_OTHER",
           "start_isolate_page_range", "undo_isolate_page_range", "test_pages_isolated",
           "find_large_buddy", "set_migratetype_isolate", "unset_migratetype_isolate"]

PB_ISOLATE_MODE_MEM_OFFLINE = 0
PB_ISOLATE_MODE_CMA_ALLOC = 1
PB_ISOLATE_MODE_OTHER = 2


def _pageblock_start(pfn: int) -> int:
    return pfn & ~(pageblock_nr_pages - 1)


def _valid(mm: PageAlloc, pfn: int) -> bool:
    return mm.mem_map.pfn_valid(pfn)


def _first_valid_page(mm: PageAlloc, pfn: int, nr: int) -> int | None:
    """``__first_valid_page``: the first RAM pfn of [pfn, pfn + nr)."""
    mem = mm.mem_map
    lo, hi = max(pfn, mem.base_pfn), min(pfn + nr, mem.end_pfn)
    if lo >= hi:
        return None
    for p in range(lo, hi):
        if mem.flags[p - mem.base_pfn] & PG_valid:
            return p
    return None


def find_large_buddy(mm: PageAlloc, start_pfn: int) -> int:
    """``find_large_buddy`` (MM R5 / I5.1): head of a free block that covers
    ``start_pfn``, else itself."""
    mem = mm.mem_map
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    order, pfn = 0, start_pfn
    while not (0 <= pfn - base < len(flags) and flags[pfn - base] & PG_buddy):
        order += 1
        if order > MAX_PAGE_ORDER:
            return start_pfn
        pfn &= ~0 << order
    if pfn + (1 << orders[pfn - base]) > start_pfn:
        return pfn
    return start_pfn


def has_unmovable_pages(mm: PageAlloc, start: int, end: int, mode: int) -> int | None:
    """``has_unmovable_pages`` (MM I3): the first unmovable pfn of [start, end) (one
    pageblock), or None."""
    mem = mm.mem_map
    flags, refcount, orders, base = mem.flags, mem.refcount, mem.order, mem.base_pfn
    if mm.get_pfnblock_migratetype(start) == MIGRATE_CMA:
        return None if mode == PB_ISOLATE_MODE_CMA_ALLOC else start
    zone = mm.page_zone(start)
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


def move_freepages_block_isolate(mm: PageAlloc, pfn: int, isolate: bool) -> bool:
    """``__move_freepages_block_isolate`` (MM I5): move the pageblock's free pages to
    the Isolate lists (``isolate``) or back; whether it could."""
    zone = mm.page_zone(pfn)
    isolated = mm.get_pfnblock_migratetype(pfn) == MIGRATE_ISOLATE
    if isolate == isolated:
        return False
    prep = mm.prep_move_freepages_block(zone, pfn, False)
    if prep is None:
        return False
    start = prep[0]
    mem = mm.mem_map
    head = find_large_buddy(mm, start)
    si = start - mem.base_pfn
    if head != start or (mem.flags[si] & PG_buddy and mem.order[si] > pageblock_order):
        order = mem.order[head - mem.base_pfn]
        mm.del_page_from_free_list(head, zone, order, mem.freelist_mt[head - mem.base_pfn])
        mm.set_pageblock_isolate(start, isolate)
        mm.split_large_buddy(zone, head, order, FPI_NONE)
        return True
    real = mm.get_pageblock_migratetype_raw(start)
    old, new = (real, MIGRATE_ISOLATE) if isolate else (MIGRATE_ISOLATE, real)
    mm._move_freepages_block(zone, start, old, new)
    mm.set_pageblock_isolate(start, isolate)
    return True


def set_migratetype_isolate(mm: PageAlloc, pfn: int, mode: int, start: int, end: int) -> int:
    """``set_migratetype_isolate`` (MM I2): isolate the pageblock of ``pfn``; 0 or -EBUSY.

    The unmovable-page scan covers [max(pfn, start), min(end of the block, end)): it
    starts at the page the caller passes, which for the inner blocks of
    ``start_isolate_page_range`` is the block's first valid page, so a block that
    begins with a hole is scanned from its first RAM page.
    """
    if mm.get_pfnblock_migratetype(pfn) == MIGRATE_ISOLATE:
        return -errno.EBUSY
    block = _pageblock_start(pfn)
    lo, hi = max(pfn, start), min(block + pageblock_nr_pages, end)
    if has_unmovable_pages(mm, lo, hi, mode) is None:
        if not move_freepages_block_isolate(mm, block, True):
            return -errno.EBUSY
        mm.page_zone(block).nr_isolate_pageblock += 1
        return 0
    return -errno.EBUSY


def unset_migratetype_isolate(mm: PageAlloc, pfn: int) -> None:
    """``unset_migratetype_isolate`` (MM I7): give the pageblock its type back, its free
    pages with it."""
    if mm.get_pfnblock_migratetype(pfn) != MIGRATE_ISOLATE:
        return
    zone = mm.page_zone(pfn)
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    isolated_order = -1
    if mem.flags[i] & PG_buddy:
        order = mem.order[i]
        if pageblock_order <= order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            if (mm._buddy_at(zone, buddy, order)
                    and mm.get_pfnblock_migratetype(buddy) != MIGRATE_ISOLATE):
                mm.del_page_from_free_list(pfn, zone, order, MIGRATE_ISOLATE)
                isolated_order = order
    if isolated_order < 0:
        move_freepages_block_isolate(mm, pfn, False)
    else:
        mm.set_pageblock_isolate(pfn, False)
        mm._free_one_page(pfn, zone, isolated_order, mm.get_pfnblock_migratetype(pfn),
                          FPI_TO_TAIL)
    zone.nr_isolate_pageblock -= 1


def isolate_single_pageblock(mm: PageAlloc, boundary: int, mode: int, before: bool,
                             skip_isolation: bool) -> int:
    """``isolate_single_pageblock`` (MM I4): isolate one edge block and refuse a compound
    page across its edge."""
    block = boundary - pageblock_nr_pages if before else boundary
    zone = mm.page_zone(block)
    start = max(block & ~(MAX_ORDER_NR_PAGES - 1), zone.zone_start_pfn)
    if not skip_isolation:
        ret = set_migratetype_isolate(mm, block, mode, block, block + pageblock_nr_pages)
        if ret:
            return ret
    if not _valid(mm, boundary if before else boundary - 1):
        return 0
    mem = mm.mem_map
    pfn = start
    while pfn < boundary:
        first = _first_valid_page(mm, pfn, boundary - pfn)
        if first is None:
            break
        pfn = first
        i = pfn - mem.base_pfn
        f = mem.flags[i]
        if f & PG_buddy:
            pfn += 1 << mem.order[i]
            continue
        if f & PG_head:
            nr = 1 << mem.order[i]
            if pfn + nr <= boundary:
                pfn += nr
                continue
            if not skip_isolation:
                unset_migratetype_isolate(mm, block)
            return -errno.EBUSY
        pfn += 1
    return 0


def start_isolate_page_range(mm: PageAlloc, start: int, end: int, mode: int) -> int:
    """``start_isolate_page_range`` (MM I1): isolate every pageblock touched by
    [start, end); 0 or -EBUSY."""
    istart = _pageblock_start(start)
    iend = -(-end // pageblock_nr_pages) * pageblock_nr_pages
    ret = isolate_single_pageblock(mm, istart, mode, False, False)
    if ret:
        return ret
    skip = istart == iend - pageblock_nr_pages
    ret = isolate_single_pageblock(mm, iend, mode, True, skip)
    if ret:
        unset_migratetype_isolate(mm, istart)
        return ret
    for pfn in range(istart + pageblock_nr_pages, iend - pageblock_nr_pages, pageblock_nr_pages):
        page = _first_valid_page(mm, pfn, pageblock_nr_pages)
        if page is not None and set_migratetype_isolate(mm, page, mode, start, end):
            undo_isolate_page_range(mm, istart, pfn)
            unset_migratetype_isolate(mm, iend - pageblock_nr_pages)
            return -errno.EBUSY
    return 0


def undo_isolate_page_range(mm: PageAlloc, start: int, end: int) -> None:
    """``undo_isolate_page_range`` (MM I8): unisolate each isolated pageblock of
    [start, end)."""
    istart = _pageblock_start(start)
    iend = -(-end // pageblock_nr_pages) * pageblock_nr_pages
    for pfn in range(istart, iend, pageblock_nr_pages):
        page = _first_valid_page(mm, pfn, pageblock_nr_pages)
        if page is not None and mm.get_pfnblock_migratetype(page) == MIGRATE_ISOLATE:
            unset_migratetype_isolate(mm, page)


def test_pages_isolated(mm: PageAlloc, start: int, end: int, mode: int) -> int:
    """``test_pages_isolated`` (MM I9): 0 when every page of [start, end) is free in
    isolated blocks.

    The block check steps from ``start`` itself, as the kernel's loop does.
    """
    pfn = start
    while pfn < end:
        page = _first_valid_page(mm, pfn, pageblock_nr_pages)
        if page is not None and mm.get_pfnblock_migratetype(page) != MIGRATE_ISOLATE:
            break
        pfn += pageblock_nr_pages
    if pfn < end or _first_valid_page(mm, start, end - start) is None:
        return -errno.EBUSY
    mem = mm.mem_map
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    pfn = start
    while pfn < end:
        i = pfn - base
        if flags[i] & PG_buddy:
            pfn += 1 << orders[i]
        else:
            break
    return -errno.EBUSY if pfn < end else 0
