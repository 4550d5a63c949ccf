"""Page migration (``mm/migrate.c`` and the contiguous-allocation scanner of
``mm/compaction.c``), the MM M rules.

Only tasks' anonymous LRU pages move: a migration allocates a destination,
copies the 4096 bytes, re-points the owner's page table and frees the source.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from . import gfp as G
from .mmzone import ZONE_MOVABLE, pageblock_nr_pages
from .page import PG_anon, PG_buddy, PG_head, PG_lru, PG_movable_ops, PG_unevictable, PG_valid
from .page_alloc import __alloc_frozen_pages_noprof, __free_pages, page_zone
from .vmstat import count_vm_events

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["COMPACT_CLUSTER_MAX", "isolate_migratepages_range", "migrate_pages",
           "putback_movable_pages", "folio_isolate_lru", "migrate_folio_move"]

COMPACT_CLUSTER_MAX = 32
NR_MAX_MIGRATE_PAGES_RETRY = 10


def folio_isolate_lru(m: Machine, pfn: int) -> bool:
    """``folio_isolate_lru`` (``mm/vmscan.c``, MM M2.7): take a page off its LRU and hold
    the isolation reference; False, and nothing done, for a page on no LRU."""
    mem = m.kernel.mm.mem_map
    i = pfn - mem.base_pfn
    if not mem.flags[i] & PG_lru:
        return False
    mem.flags[i] &= ~PG_lru
    mem.refcount[i] += 1
    return True


def putback_movable_pages(m: Machine, pages: list[int]) -> None:
    """``putback_movable_pages``: return isolated pages to their LRU and drop the isolation
    reference."""
    mem = m.kernel.mm.mem_map
    for pfn in pages:
        i = pfn - mem.base_pfn
        mem.flags[i] |= PG_lru
        mem.refcount[i] -= 1
    pages.clear()


#: ``isolate_migratepages_block``'s per-page tests by flag byte: 1 for a page the scan must
#: look at (valid RAM that is a free block, a compound head or on an LRU); every other page
#: is stepped over one pfn at a time, so the scan may jump to the next 1.
_SCAN_STOPS = bytes(1 if b & PG_valid and b & (PG_buddy | PG_head | PG_lru) else 0
                    for b in range(256))


def isolate_migratepages_range(m: Machine, start: int, end: int,
                               pages: list[int]) -> int:
    """``isolate_migratepages_range`` (MM M2): add up to 32 movable in-use pages of
    [start, end) to ``pages``.

    Each taken page goes to the head of the list and counts in /proc/vmstat
    ``compact_isolated`` (``isolate_migratepages_block`` adds its count once per call).
    Returns where the scan stopped (``cc->migrate_pfn``).  Pages that are neither free,
    compound nor on an LRU (holes, kernel allocations) are passed over in one step per
    pageblock (``_SCAN_STOPS``) rather than one pfn at a time; the pages examined are the
    same.
    """
    mm = m.kernel.mm
    mem = mm.mem_map
    flags, refcount, mapcount, orders, base = (mem.flags, mem.refcount, mem.mapcount,
                                               mem.order, mem.base_pfn)
    zone = page_zone(mm, start)
    zstart, zend = zone.zone_start_pfn, zone.zone_start_pfn + zone.spanned_pages
    isolated = 0
    pfn = start
    while pfn < end:
        block_end = min((pfn & ~(pageblock_nr_pages - 1)) + pageblock_nr_pages, end)
        if not (zstart <= pfn < zend and zstart <= block_end - 1 < zend):
            pfn = block_end
            continue
        # stops[k] is pfn0 + k's entry of _SCAN_STOPS
        pfn0 = pfn
        stops = flags[pfn0 - base:block_end - base].translate(_SCAN_STOPS)
        while True:
            k = stops.find(1, pfn - pfn0)
            if k < 0:
                pfn = block_end
                break
            pfn = pfn0 + k
            i = pfn - base
            f = flags[i]
            if f & (PG_buddy | PG_head):
                pfn += 1 << orders[i]
                if pfn >= block_end:
                    break
                continue
            if f & PG_movable_ops or (f & PG_anon and refcount[i] > mapcount[i]):
                pfn += 1  # not an LRU page, or pinned or otherwise referenced (MM M2.4)
                if pfn >= block_end:
                    break
                continue
            # folio_isolate_lru: off the LRU, with the isolation reference
            flags[i] = f & ~PG_lru
            refcount[i] += 1
            pages.insert(0, pfn)
            isolated += 1
            pfn += 1
            if len(pages) >= COMPACT_CLUSTER_MAX:
                count_vm_events(mm, "compact_isolated", isolated)
                return pfn
            if pfn >= block_end:
                break
        if len(pages) >= COMPACT_CLUSTER_MAX:
            break
    count_vm_events(mm, "compact_isolated", isolated)
    return max(pfn, start)


def migrate_folio_move(m: Machine, src: int, dst: int) -> None:
    """``migrate_folio_move`` and ``remove_migration_ptes`` for one page (MM M5): contents,
    flags and the one mapping go from ``src`` to ``dst``."""
    kernel = m.kernel
    mm = kernel.mm
    mem = mm.mem_map
    base = mem.base_pfn
    si, di = src - base, dst - base
    ram = m.physmem
    buf = ram.buf
    so, do = ram.offset(src << 12, 4096), ram.offset(dst << 12, 4096)
    buf[do:do + 4096] = buf[so:so + 4096]
    flags = mem.flags
    f = flags[si]
    flags[di] |= (f & (PG_anon | PG_unevictable)) | PG_lru
    flags[si] = f & ~(PG_anon | PG_unevictable | PG_lru)
    mapcount = mem.mapcount
    mapcount[di] = mapcount[si]
    mapcount[si] = 0
    rmap = kernel.rmap
    owner, vpns = rmap.owner, rmap.vpn
    ri, rj = src - rmap.base_pfn, dst - rmap.base_pfn
    task_id, vpn = owner[ri], vpns[ri]
    owner[ri] = vpns[ri] = 0
    owner[rj], vpns[rj] = task_id, vpn
    task = kernel.tasks.get(task_id)
    if task is not None:
        task.remap(vpn, dst)
    if len(mm.zone_spans) > 1:   # one zone: nothing to move between zones' counters
        src_zone, dst_zone = page_zone(mm, src), page_zone(mm, dst)
        if src_zone is not dst_zone:
            src_zone.nr_inactive_anon -= 1
            dst_zone.nr_inactive_anon += 1
    # The source held its mapping and the isolation reference; both go now.
    mem.refcount[si] = 1
    __free_pages(mm, src, 0)


def migrate_pages(m: Machine, pages: list[int], gfp: int) -> int:
    """``migrate_pages`` (MM M3): move every page of ``pages`` to a new page from ``gfp``.

    Returns the number not migrated (they stay on ``pages``), or -ENOMEM when
    no destination could be had (the rest stay on ``pages``).  A page with an
    extra reference fails; the kernel retries it up to ten times, but nothing
    can drop that reference in between here, so one try decides.  /proc/vmstat
    ``pgmigrate_success`` counts the pages moved and ``pgmigrate_fail`` the pages that
    failed, the one whose destination could not be allocated included (pages the call
    never reached are not counted), once per call as the kernel's totals are.
    """
    mm = m.kernel.mm
    mem = mm.mem_map
    refcount, mapcount, base = mem.refcount, mem.mapcount, mem.base_pfn
    # A source in ZONE_MOVABLE gets its destination with __GFP_HIGHMEM (page_zone's idx)
    movable = [(lo, hi) for lo, hi, zone in mm.zone_spans if zone.idx == ZONE_MOVABLE]
    highmem_gfp = gfp | G.__GFP_HIGHMEM
    failed: list[int] = []
    moved = 0
    ret = 0
    while pages:
        src = pages[0]
        i = src - base
        # Success needs exactly the mapping and the isolation reference (MM M5).
        if refcount[i] != mapcount[i] + 1:
            failed.append(pages.pop(0))
            continue
        zone_gfp = gfp
        if movable and any(lo <= src < hi for lo, hi in movable):
            zone_gfp = highmem_gfp
        dst = __alloc_frozen_pages_noprof(mm, zone_gfp, 0)
        if dst is None:
            ret = -errno.ENOMEM
            break
        pages.pop(0)
        migrate_folio_move(m, src, dst)
        moved += 1
    count_vm_events(mm, "pgmigrate_success", moved)
    count_vm_events(mm, "pgmigrate_fail", len(failed) + (ret == -errno.ENOMEM))
    pages.extend(failed)
    return ret if ret else len(failed)
