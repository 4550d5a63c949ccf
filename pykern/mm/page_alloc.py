"""The buddy allocator (``mm/page_alloc.c``), the MM G, A, F and W rules.

``PageAlloc`` is ``m.mm``: it owns the memmap, the zones and the tunables of
one boot.  Function names are the kernel's.  Kernel functions whose names start with
``__`` keep their name minus one underscore (``_rmqueue_smallest`` for
``__rmqueue_smallest``): Python mangles double-underscore names inside a
class.  The reference model of MM A0 holds: no per-CPU lists, no reclaim, no compaction, no OOM killer — a request
that would need them fails (``None``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from math import isqrt
from typing import TYPE_CHECKING

from . import gfp as G
from .internal import (
    ALLOC_CMA, ALLOC_CPUSET, ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS, ALLOC_NOFRAGMENT, ALLOC_NON_BLOCK, ALLOC_OOM, ALLOC_RESERVES,
    ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN, FPI_NONE, FPI_TO_TAIL,
)
from .mmzone import (
    MAX_NR_ZONES, MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_ISOLATE,
    MIGRATE_MOVABLE, MIGRATE_PCPTYPES, MIGRATE_RECLAIMABLE, MIGRATE_TYPES,
    MIGRATE_UNMOVABLE, NR_PAGE_ORDERS, WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO,
    ZONE_DMA, ZONE_DMA32, ZONE_MOVABLE, ZONE_NORMAL, Zone, fallbacks,
    migratetype_is_mergeable, migratetype_names, pageblock_nr_pages, pageblock_order,
    zone_names,
)
from .page import (
    NO_ALLOC, PB_migrate_isolate, PB_migrate_mask, PG_anon, PG_buddy, PG_head, PG_lru,
    PG_movable_ops, PG_reserved, PG_valid, MemMap, Page,
)

if TYPE_CHECKING:
    from ..kernel.printk import KernelLog
    from .fail_page_alloc import FailPageAlloc

__all__ = ["PageAlloc", "gfp_zone", "gfp_migratetype", "format_gfp"]

# Class bodies mangle names that start with two underscores, so the
# __GFP_* bits are used through these aliases.
_GFP_BITS_MASK = G.__GFP_BITS_MASK
_GFP_COMP = G.__GFP_COMP
_GFP_DIRECT_RECLAIM = G.__GFP_DIRECT_RECLAIM
_GFP_DMA = G.__GFP_DMA
_GFP_DMA32 = G.__GFP_DMA32
_GFP_HIGH = G.__GFP_HIGH
_GFP_HIGHMEM = G.__GFP_HIGHMEM
_GFP_KSWAPD_RECLAIM = G.__GFP_KSWAPD_RECLAIM
_GFP_MEMALLOC = G.__GFP_MEMALLOC
_GFP_MOVABLE = G.__GFP_MOVABLE
_GFP_NOFAIL = G.__GFP_NOFAIL
_GFP_NOMEMALLOC = G.__GFP_NOMEMALLOC
_GFP_NORETRY = G.__GFP_NORETRY
_GFP_NOWARN = G.__GFP_NOWARN
_GFP_RETRY_MAYFAIL = G.__GFP_RETRY_MAYFAIL
_GFP_ZERO = G.__GFP_ZERO

_VALID_PAGES = bytes([PG_valid]) * (1 << MAX_PAGE_ORDER)
_FREE_CHECK = PG_valid | PG_reserved | PG_buddy

_GFP_NAMES = (
    ("GFP_HIGHUSER_MOVABLE", G.GFP_HIGHUSER_MOVABLE), ("GFP_HIGHUSER", G.GFP_HIGHUSER),
    ("GFP_USER", G.GFP_USER), ("GFP_KERNEL", G.GFP_KERNEL), ("GFP_NOFS", G.GFP_NOFS),
    ("GFP_ATOMIC", G.GFP_ATOMIC), ("GFP_NOIO", G.GFP_NOIO), ("GFP_NOWAIT", G.GFP_NOWAIT),
)
_GFP_BITS = tuple((name, value) for name, value in vars(G).items()
                  if name.startswith("__GFP_") and name not in ("__GFP_BITS_MASK",
                                                                "__GFP_RECLAIM")
                  and isinstance(value, int) and value & (value - 1) == 0)


def format_gfp(gfp: int) -> str:
    """``%pGg``: the gfp mask as the kernel names it (composite first)."""
    parts: list[str] = []
    rest = gfp
    for name, value in _GFP_NAMES:
        if rest & value == value:
            parts.append(name)
            rest &= ~value
            break
    for name, value in _GFP_BITS:
        if rest & value:
            parts.append(name)
            rest &= ~value
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts) if parts else "0"


def gfp_zone(gfp: int) -> int:
    """``gfp_zone`` (MM G3): the highest zone index a request may use."""
    bits = gfp & (_GFP_DMA | _GFP_HIGHMEM | _GFP_DMA32)
    if bits & (bits - 1):
        raise ValueError(f"gfp {gfp:#x}: more than one zone modifier (GFP_ZONE_BAD)")
    if bits == _GFP_DMA:
        return ZONE_DMA
    if bits == _GFP_DMA32:
        return ZONE_DMA32
    if bits == _GFP_HIGHMEM and gfp & _GFP_MOVABLE:
        return ZONE_MOVABLE
    return ZONE_NORMAL


def gfp_migratetype(gfp: int) -> int:
    """``gfp_migratetype`` (MM G1), without the grouping switch: 0, 1 or 2."""
    mt = (gfp & G.GFP_MOVABLE_MASK) >> G.GFP_MOVABLE_SHIFT
    if mt == 3:
        raise ValueError(f"gfp {gfp:#x}: __GFP_MOVABLE and __GFP_RECLAIMABLE together")
    return mt


class PageAlloc:
    """``m.mm``: memmap, zones and the buddy allocator of one boot."""

    def __init__(self, mem_map: MemMap, zones: list[Zone], log: KernelLog,
                 clear_pages: Callable[[int, int], None], *, arch: str,
                 init_on_alloc: bool = False, init_on_free: bool = False) -> None:
        self.mem_map = mem_map
        self.zones = zones
        self.log = log
        self.arch = arch
        self._clear_pages = clear_pages
        self.init_on_alloc = init_on_alloc
        self.init_on_free = init_on_free
        # sysctls (MM C1.12)
        self.min_free_kbytes = 1024
        self.user_min_free_kbytes = -1
        self.watermark_scale_factor = 10
        self.watermark_boost_factor = 15000
        self.defrag_mode = 0
        self.percpu_pagelist_high_fraction = 0
        self.lowmem_reserve_ratio = [256, 256, 32, 0]
        self.page_group_by_mobility_disabled = False
        self.totalreserve_pages = 0
        self.totalcma_pages = 0
        #: Stripped from every request while set (PF_MEMALLOC_PIN, MM G2).
        self.memalloc_pin = False
        #: /proc/vmstat events other than pgalloc_<zone> (``Zone.pgalloc``) and ``pgfree``.
        self.vm_events: dict[str, int] = {}
        #: PGFREE: pages freed to the buddy allocator, counted per free_one_page call and
        #: per order-0 free (``__count_vm_events(PGFREE, 1 << order)``), boot release included.
        self.pgfree = 0
        self._zonelists: list[list[Zone]] = []
        self.build_all_zonelists()
        #: (start pfn, end pfn, zone) of every zone that spans pages (spans are fixed).
        self._zone_spans = [(z.zone_start_pfn, z.zone_end_pfn, z) for z in zones
                            if z.spanned_pages]
        #: gfp (after the G2 strip) → (highest zone, migratetype), MM G1/G3; valid gfps only.
        self._gfp_params: dict[int, tuple[int, int]] = {}
        #: mm/fail_page_alloc.c's state (set at boot, :mod:`pykern.mm.fail_page_alloc`).
        self.fail_page_alloc: FailPageAlloc | None = None

    # ------------------------------------------------------------------ lookup
    def pfn_to_page(self, pfn: int) -> Page:
        """``pfn_to_page``: a handle; raises ValueError for a pfn that is not RAM."""
        self.check_pfn(pfn)
        return Page(self, pfn)

    def check_pfn(self, pfn: int) -> None:
        if not isinstance(pfn, int) or not self.mem_map.pfn_valid(pfn):
            raise ValueError(f"pfn {pfn:#x} is not RAM (outside every bank or in a hole)"
                             if isinstance(pfn, int) else f"pfn {pfn!r} is not an int")

    def page_zone(self, pfn: int) -> Zone:
        for start, end, zone in self._zone_spans:
            if start <= pfn < end:
                return zone
        raise ValueError(f"pfn {pfn:#x} lies in no zone")

    def zone_by_name(self, name: str) -> Zone:
        for zone in self.zones:
            if zone.name == name:
                return zone
        raise ValueError(f"no zone named {name!r} (zones: {', '.join(zone_names)})")

    # ------------------------------------------------------- pageblock flags
    def get_pfnblock_migratetype(self, pfn: int) -> int:
        """``get_pfnblock_migratetype`` (MM P4): Isolate when the isolate bit is set, else
        the stored type."""
        bits = self.mem_map.pageblock_flags[(pfn - self.mem_map.base_pfn) >> pageblock_order]
        return MIGRATE_ISOLATE if bits & PB_migrate_isolate else bits & PB_migrate_mask

    def get_pageblock_migratetype_raw(self, pfn: int) -> int:
        """The stored 3-bit type, ignoring the isolate bit."""
        return (self.mem_map.pageblock_flags[(pfn - self.mem_map.base_pfn) >> pageblock_order]
                & PB_migrate_mask)

    def set_pageblock_migratetype(self, pfn: int, mt: int) -> None:
        """Store ``mt`` for the pageblock of ``pfn``; clears the isolate bit (MM P4)."""
        if mt >= MIGRATE_ISOLATE:
            raise AssertionError("set_pageblock_migratetype must not store Isolate")
        if self.page_group_by_mobility_disabled and mt < MIGRATE_PCPTYPES:
            mt = MIGRATE_UNMOVABLE
        i = (pfn - self.mem_map.base_pfn) >> pageblock_order
        flags = self.mem_map.pageblock_flags
        flags[i] = (flags[i] & ~(PB_migrate_mask | PB_migrate_isolate)) | mt

    def set_pageblock_isolate(self, pfn: int, on: bool) -> None:
        i = (pfn - self.mem_map.base_pfn) >> pageblock_order
        flags = self.mem_map.pageblock_flags
        flags[i] = flags[i] | PB_migrate_isolate if on else flags[i] & ~PB_migrate_isolate

    def change_pageblock_range(self, pfn: int, order: int, mt: int) -> None:
        for p in range(pfn, pfn + (1 << order), pageblock_nr_pages):
            self.set_pageblock_migratetype(p, mt)

    # ------------------------------------------------------------ free lists
    def account_freepages(self, zone: Zone, nr: int, mt: int) -> None:
        if mt == MIGRATE_ISOLATE:
            return
        zone.nr_free_pages += nr
        if mt == MIGRATE_CMA:
            zone.nr_free_cma += nr
        elif mt == MIGRATE_HIGHATOMIC:
            zone.nr_free_highatomic += nr

    def _add_to_free_list(self, pfn: int, zone: Zone, order: int, mt: int,
                           tail: bool) -> None:
        mm = self.mem_map
        i = pfn - mm.base_pfn
        mm.flags[i] |= PG_buddy
        mm.order[i] = order
        mm.freelist_mt[i] = mt
        fl = zone.free_list[order][mt]
        fl[pfn] = None
        if not tail:
            fl.move_to_end(pfn, last=False)
        zone.nr_free[order] += 1
        if order >= pageblock_order and mt != MIGRATE_ISOLATE:
            zone.nr_free_pages_blocks += 1 << order

    def _del_page_from_free_list(self, pfn: int, zone: Zone, order: int, mt: int) -> None:
        mm = self.mem_map
        i = pfn - mm.base_pfn
        del zone.free_list[order][mt][pfn]
        mm.flags[i] &= ~PG_buddy
        mm.order[i] = 0
        zone.nr_free[order] -= 1
        if order >= pageblock_order and mt != MIGRATE_ISOLATE:
            zone.nr_free_pages_blocks -= 1 << order

    def del_page_from_free_list(self, pfn: int, zone: Zone, order: int, mt: int) -> None:
        self._del_page_from_free_list(pfn, zone, order, mt)
        self.account_freepages(zone, -(1 << order), mt)

    def move_to_free_list(self, pfn: int, zone: Zone, order: int, old_mt: int,
                          new_mt: int) -> None:
        """Move a free block to the tail of another list (MM F5.1)."""
        mm = self.mem_map
        del zone.free_list[order][old_mt][pfn]
        zone.free_list[order][new_mt][pfn] = None
        mm.freelist_mt[pfn - mm.base_pfn] = new_mt
        nr = 1 << order
        self.account_freepages(zone, -nr, old_mt)
        self.account_freepages(zone, nr, new_mt)
        if order >= pageblock_order and ((old_mt == MIGRATE_ISOLATE)
                                          != (new_mt == MIGRATE_ISOLATE)):
            zone.nr_free_pages_blocks += -nr if new_mt == MIGRATE_ISOLATE else nr

    def expand(self, zone: Zone, pfn: int, low: int, high: int, mt: int) -> int:
        """``expand`` (MM A6.1): give back the upper halves, each at the head of its list."""
        mm = self.mem_map
        flags, orders, freelist_mt, base = mm.flags, mm.order, mm.freelist_mt, mm.base_pfn
        free_list, nr_free = zone.free_list, zone.nr_free
        nr_added = 0
        while high > low:                      # _add_to_free_list(…, tail=False), inline
            high -= 1
            size = 1 << high
            p = pfn + size
            i = p - base
            flags[i] |= PG_buddy
            orders[i] = high
            freelist_mt[i] = mt
            fl = free_list[high][mt]
            fl[p] = None
            fl.move_to_end(p, last=False)
            nr_free[high] += 1
            if high >= pageblock_order and mt != MIGRATE_ISOLATE:
                zone.nr_free_pages_blocks += size
            nr_added += size
        return nr_added

    def page_del_and_expand(self, zone: Zone, pfn: int, low: int, high: int,
                            mt: int) -> None:
        self._del_page_from_free_list(pfn, zone, high, mt)
        nr = (1 << high) - self.expand(zone, pfn, low, high, mt)
        self.account_freepages(zone, -nr, mt)

    def _buddy_at(self, zone: Zone, pfn: int, order: int) -> bool:
        """``find_buddy_page_pfn``: the block at ``pfn`` is a free block of ``order``."""
        mm = self.mem_map
        i = pfn - mm.base_pfn
        return (0 <= i < len(mm.flags) and mm.flags[i] & PG_buddy != 0
                and mm.order[i] == order and zone.zone_start_pfn <= pfn < zone.zone_start_pfn
                + zone.spanned_pages)

    # -------------------------------------------------------------- freeing
    def _free_one_page(self, pfn: int, zone: Zone, order: int, mt: int,
                        fpi: int) -> None:
        """``__free_one_page`` (MM F4): account, merge with free buddies, link head or tail
        (F5)."""
        mm = self.mem_map
        flags, orders, base = mm.flags, mm.order, mm.base_pfn
        start, end = zone.zone_start_pfn, zone.zone_start_pfn + zone.spanned_pages
        if mt != MIGRATE_ISOLATE:                  # account_freepages, inline
            zone.nr_free_pages += 1 << order
            if mt == MIGRATE_CMA:
                zone.nr_free_cma += 1 << order
            elif mt == MIGRATE_HIGHATOMIC:
                zone.nr_free_highatomic += 1 << order
        while order < MAX_PAGE_ORDER:
            buddy_pfn = pfn ^ (1 << order)
            j = buddy_pfn - base
            if not (start <= buddy_pfn < end and flags[j] & PG_buddy and orders[j] == order):
                break
            buddy_mt = mt
            if order >= pageblock_order:
                buddy_mt = self.get_pfnblock_migratetype(buddy_pfn)
                if buddy_mt != mt and not (migratetype_is_mergeable(mt)
                                           and migratetype_is_mergeable(buddy_mt)):
                    break
            list_mt = mm.freelist_mt[j]        # _del_page_from_free_list, inline
            del zone.free_list[order][list_mt][buddy_pfn]
            flags[j] &= ~PG_buddy
            orders[j] = 0
            zone.nr_free[order] -= 1
            if order >= pageblock_order and list_mt != MIGRATE_ISOLATE:
                zone.nr_free_pages_blocks -= 1 << order
            if buddy_mt != mt:
                self.set_pageblock_migratetype(buddy_pfn, mt)
            pfn &= buddy_pfn
            order += 1
        if fpi & FPI_TO_TAIL:
            to_tail = True
        elif order >= MAX_PAGE_ORDER - 1:
            to_tail = False
        else:                                      # buddy_merge_likely, inline (F5.2)
            uncle = (pfn & ~(1 << order)) ^ (1 << (order + 1))
            j = uncle - base
            to_tail = (start <= uncle < end and flags[j] & PG_buddy != 0
                       and orders[j] == order + 1)
        i = pfn - base                             # _add_to_free_list, inline
        flags[i] |= PG_buddy
        orders[i] = order
        mm.freelist_mt[i] = mt
        fl = zone.free_list[order][mt]
        fl[pfn] = None
        if not to_tail:
            fl.move_to_end(pfn, last=False)
        zone.nr_free[order] += 1
        if order >= pageblock_order and mt != MIGRATE_ISOLATE:
            zone.nr_free_pages_blocks += 1 << order

    def buddy_merge_likely(self, pfn: int, zone: Zone, order: int) -> bool:
        """``buddy_merge_likely`` (MM F5.2): tail when the block's order+1 neighbour is free
        at order+1."""
        if order >= MAX_PAGE_ORDER - 1:
            return False
        higher = pfn & ~(1 << order)
        return self._buddy_at(zone, higher ^ (1 << (order + 1)), order + 1)

    def split_large_buddy(self, zone: Zone, pfn: int, order: int, fpi: int) -> None:
        """``split_large_buddy`` (MM F3): free a large block one pageblock at a time, each
        with its type."""
        if order <= pageblock_order:
            self._free_one_page(pfn, zone, order, self.get_pfnblock_migratetype(pfn), fpi)
            return
        end = pfn + (1 << order)
        order = pageblock_order
        while True:
            self._free_one_page(pfn, zone, order, self.get_pfnblock_migratetype(pfn), fpi)
            pfn += 1 << order
            if pfn >= end:
                break

    def free_one_page(self, pfn: int, order: int, fpi: int = FPI_NONE) -> None:
        """``free_one_page``: merge the block in, then count it in /proc/vmstat pgfree."""
        self.split_large_buddy(self.page_zone(pfn), pfn, order, fpi)
        self.pgfree += 1 << order

    def _page_is_free(self, pfn: int) -> bool:
        """Is ``pfn`` inside some free block?"""
        mm = self.mem_map
        flags, orders, base = mm.flags, mm.order, mm.base_pfn
        for k in range(NR_PAGE_ORDERS):
            head = (pfn >> k) << k
            i = head - base
            if i < 0:
                break
            if flags[i] & PG_buddy and orders[i] >= k:
                return True
        return False

    def _bad_page(self, pfn: int, reason: str) -> ValueError:
        """The kernel's ``bad_page`` report, as an exception (MM V2)."""
        self.log.printk(1, f"BUG: Bad page state: pfn:{pfn:#x} {reason}")
        return ValueError(f"bad page: pfn {pfn:#x}: {reason}")

    def _check_free(self, pfn: int, order: int) -> None:
        if not isinstance(order, int) or not 0 <= order <= MAX_PAGE_ORDER:
            raise ValueError(f"pfn {pfn:#x}: order {order!r} out of range 0..{MAX_PAGE_ORDER}")
        self.check_pfn(pfn)
        mm = self.mem_map
        i = pfn - mm.base_pfn
        if mm.flags[i] & PG_reserved:
            raise self._bad_page(pfn, "freeing a reserved page")
        if self._page_is_free(pfn):
            raise self._bad_page(pfn, "freeing a page that is already free (double free)")
        alloc_order = mm.alloc_order[i]
        if alloc_order == NO_ALLOC:
            raise self._bad_page(pfn, "not the first page of an allocation")
        if alloc_order != order:
            raise self._bad_page(pfn, f"freed at order {order}, allocated at order "
                                      f"{alloc_order}")
        if mm.refcount[i] <= 0:
            raise self._bad_page(pfn, f"refcount {mm.refcount[i]} on free")

    def free_pages(self, page: Page | int, order: int = 0) -> None:
        """``__free_pages``: drop one reference; free the block on the last (MM F1)."""
        pfn = page.pfn if isinstance(page, Page) else page
        mm = self.mem_map
        i = pfn - mm.base_pfn if type(pfn) is int else -1
        # The usual case in one test: the valid, unreserved, non-buddy first page of a
        # live allocation of exactly this order (alloc_order is NO_ALLOC on every other
        # page, free ones included), with a reference.  Anything else: _check_free.
        if not (type(order) is int and order <= MAX_PAGE_ORDER and 0 <= i < len(mm.flags)
                and mm.flags[i] & _FREE_CHECK == PG_valid and mm.alloc_order[i] == order
                and mm.refcount[i] > 0):
            self._check_free(pfn, order)
            i = pfn - mm.base_pfn
        head = mm.flags[i] & PG_head
        mm.refcount[i] -= 1
        if mm.refcount[i] == 0:
            self.free_frozen_pages(pfn, order)
        elif not head:
            mm.alloc_order[i] = 0
            while order > 0:
                order -= 1
                self.free_frozen_pages(pfn + (1 << order), order)


    def get_page(self, page: Page | int) -> None:
        """Take an extra reference on an allocated page."""
        pfn = page.pfn if isinstance(page, Page) else page
        self.check_pfn(pfn)
        i = pfn - self.mem_map.base_pfn
        if self.mem_map.refcount[i] <= 0:
            raise self._bad_page(pfn, "get_page on a page with no reference")
        self.mem_map.refcount[i] += 1

    def put_page(self, page: Page | int) -> None:
        """Drop a reference taken by ``get_page`` (frees an order-0 page on the last)."""
        pfn = page.pfn if isinstance(page, Page) else page
        mm = self.mem_map
        order = mm.alloc_order[pfn - mm.base_pfn] if mm.pfn_valid(pfn) else 0
        self.free_pages(pfn, 0 if order == NO_ALLOC else order)

    def free_pages_prepare(self, pfn: int, order: int) -> None:
        mm = self.mem_map
        i = pfn - mm.base_pfn
        n = 1 << order
        mm.alloc_order[i] = NO_ALLOC
        # Every page of an allocation is valid RAM and not reserved.
        if n == 1:
            mm.flags[i] = PG_valid
        else:
            mm.flags[i:i + n] = _VALID_PAGES[:n]
        mm.order[i] = 0
        if self.init_on_free:
            self._clear_pages(pfn, n)

    def free_frozen_pages(self, pfn: int, order: int) -> None:
        """free_pages_prepare + free_one_page, with the order-0 case inline."""
        if order or self.init_on_free:
            self.free_pages_prepare(pfn, order)
            self.free_one_page(pfn, order, FPI_NONE)
            return
        mm = self.mem_map
        i = pfn - mm.base_pfn
        mm.alloc_order[i] = NO_ALLOC
        mm.flags[i] = PG_valid
        mm.order[i] = 0
        for start, end, zone in self._zone_spans:
            if start <= pfn < end:
                bits = mm.pageblock_flags[i >> pageblock_order]   # MM P4
                mt = MIGRATE_ISOLATE if bits & PB_migrate_isolate else bits & PB_migrate_mask
                self._free_one_page(pfn, zone, 0, mt, FPI_NONE)
                self.pgfree += 1
                return
        raise ValueError(f"pfn {pfn:#x} lies in no zone")

    def _free_pages_core(self, pfn: int, order: int, clear: bool) -> None:
        """Boot-time release of one chunk (``__free_pages_core``, MM Z4)."""
        mm = self.mem_map
        i = pfn - mm.base_pfn
        n = 1 << order
        mm.flags[i:i + n] = _VALID_PAGES[:n]
        self.page_zone(pfn).managed_pages += n
        if clear:
            self._clear_pages(pfn, n)
        self.free_one_page(pfn, order, FPI_TO_TAIL)

    def release_free_range(self, start: int, end: int, clear: bool = False) -> None:
        """``__free_pages_memory`` (MM Z4): hand [start, end) to the allocator in max-order
        chunks, to tail."""
        s = start
        while s < end:
            order = MAX_PAGE_ORDER if s == 0 else min(MAX_PAGE_ORDER,
                                                       (s & -s).bit_length() - 1)
            while s + (1 << order) > end:
                order -= 1
            # A chunk never spans two zones.
            zone = self.page_zone(s)
            while s + (1 << order) > zone.zone_end_pfn:
                order -= 1
            self._free_pages_core(s, order, clear)
            s += 1 << order

    # ---------------------------------------------------------- allocation
    def _rmqueue_smallest(self, zone: Zone, order: int, mt: int) -> int | None:
        """``__rmqueue_smallest`` (MM A6): the head block of the smallest non-empty
        list(k >= order, mt)."""
        free_list = zone.free_list
        for k in range(order, NR_PAGE_ORDERS):
            fl = free_list[k][mt]
            if fl:
                pfn = fl.popitem(last=False)[0]     # the head (page_del_and_expand)
                mm = self.mem_map
                i = pfn - mm.base_pfn
                mm.flags[i] &= ~PG_buddy
                mm.order[i] = 0
                zone.nr_free[k] -= 1
                nr = 1 << k
                if k >= pageblock_order and mt != MIGRATE_ISOLATE:
                    zone.nr_free_pages_blocks -= nr
                if k > order:
                    nr -= self.expand(zone, pfn, order, k, mt)
                if mt != MIGRATE_ISOLATE:
                    zone.nr_free_pages -= nr
                    if mt == MIGRATE_CMA:
                        zone.nr_free_cma -= nr
                    elif mt == MIGRATE_HIGHATOMIC:
                        zone.nr_free_highatomic -= nr
                return pfn
        return None

    def _rmqueue_cma_fallback(self, zone: Zone, order: int) -> int | None:
        """``__rmqueue_cma_fallback`` (MM A7): smallest-first on the CMA lists."""
        return self._rmqueue_smallest(zone, order, MIGRATE_CMA)

    def should_try_claim_block(self, order: int, start_mt: int) -> bool:
        return (order >= pageblock_order // 2 or start_mt in (MIGRATE_UNMOVABLE,
                                                              MIGRATE_RECLAIMABLE)
                or self.page_group_by_mobility_disabled)

    def find_suitable_fallback(self, zone: Zone, order: int, mt: int,
                               claimable: bool) -> int:
        if zone.nr_free[order] == 0:
            return -1
        if claimable and not self.should_try_claim_block(order, mt):
            return -2
        for fallback_mt in fallbacks[mt]:
            if zone.free_list[order][fallback_mt]:
                return fallback_mt
        return -1

    def boost_watermark(self, zone: Zone) -> bool:
        """``boost_watermark`` (MM A10): raise the zone's boost by a pageblock, up to the cap;
        whether it was raised."""
        if not self.watermark_boost_factor:
            return False
        if pageblock_nr_pages * 4 > zone.managed_pages:
            return False
        max_boost = zone._watermark[WMARK_HIGH] * self.watermark_boost_factor // 10000
        if not max_boost:
            return False
        max_boost = max(pageblock_nr_pages, max_boost)
        zone.watermark_boost = min(zone.watermark_boost + pageblock_nr_pages, max_boost)
        return True

    def prep_move_freepages_block(self, zone: Zone, pfn: int,
                                  count: bool) -> tuple[int, int, int] | None:
        """Pageblock of ``pfn`` inside one zone: ``(start, free, movable)``."""
        start = pfn & ~(pageblock_nr_pages - 1)
        end = start + pageblock_nr_pages
        if not (zone.zone_spans_pfn(start) and zone.zone_spans_pfn(end - 1)):
            return None
        free = movable = 0
        if count:
            mm = self.mem_map
            flags, orders, base = mm.flags, mm.order, mm.base_pfn
            p = start
            while p < end:
                f = flags[p - base]
                if f & PG_buddy:
                    n = 1 << orders[p - base]
                    free += n
                    p += n
                    continue
                if f & (PG_lru | PG_movable_ops):
                    movable += 1
                p += 1
        return start, free, movable

    def _move_freepages_block(self, zone: Zone, start: int, old_mt: int,
                               new_mt: int) -> int:
        mm = self.mem_map
        flags, orders, base = mm.flags, mm.order, mm.base_pfn
        p, end, moved = start, start + pageblock_nr_pages, 0
        while p < end:
            if flags[p - base] & PG_buddy:
                order = orders[p - base]
                self.move_to_free_list(p, zone, order, old_mt, new_mt)
                p += 1 << order
                moved += 1 << order
            else:
                p += 1
        return moved

    def move_freepages_block(self, zone: Zone, pfn: int, old_mt: int, new_mt: int) -> int:
        prep = self.prep_move_freepages_block(zone, pfn, False)
        if prep is None:
            return -1
        moved = self._move_freepages_block(zone, prep[0], old_mt, new_mt)
        self.set_pageblock_migratetype(prep[0], new_mt)
        return moved

    def try_to_claim_block(self, zone: Zone, pfn: int, current_order: int, order: int,
                           start_mt: int, block_mt: int, alloc_flags: int) -> int | None:
        """``try_to_claim_block`` (MM A8.4–A8.5): take a whole large block, or claim its
        pageblock when enough of it is free or alike; the block, or None."""
        if current_order >= pageblock_order:
            self.del_page_from_free_list(pfn, zone, current_order, block_mt)
            self.change_pageblock_range(pfn, current_order, start_mt)
            nr_added = self.expand(zone, pfn, order, current_order, start_mt)
            self.account_freepages(zone, nr_added, start_mt)
            return pfn
        if self.boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
            zone.kswapd_wake = True
        prep = self.prep_move_freepages_block(zone, pfn, True)
        if prep is None:
            return None
        start, free, movable = prep
        if start_mt == MIGRATE_MOVABLE:
            alike = movable
        elif block_mt == MIGRATE_MOVABLE:
            alike = pageblock_nr_pages - (free + movable)
        else:
            alike = 0
        if free + alike >= pageblock_nr_pages // 2 or self.page_group_by_mobility_disabled:
            self._move_freepages_block(zone, start, block_mt, start_mt)
            self.set_pageblock_migratetype(start, start_mt)
            return self._rmqueue_smallest(zone, order, start_mt)
        return None

    def _rmqueue_claim(self, zone: Zone, order: int, start_mt: int,
                        alloc_flags: int) -> int | None:
        """``__rmqueue_claim`` (MM A8): largest-first search for a block to claim."""
        min_order = order
        if order < pageblock_order and alloc_flags & ALLOC_NOFRAGMENT:
            min_order = pageblock_order
        for current_order in range(MAX_PAGE_ORDER, min_order - 1, -1):
            fallback_mt = self.find_suitable_fallback(zone, current_order, start_mt, True)
            if fallback_mt == -1:
                continue
            if fallback_mt == -2:
                break
            pfn = next(iter(zone.free_list[current_order][fallback_mt]))
            got = self.try_to_claim_block(zone, pfn, current_order, order, start_mt,
                                          fallback_mt, alloc_flags)
            if got is not None:
                return got
        return None

    def _rmqueue_steal(self, zone: Zone, order: int, start_mt: int) -> int | None:
        """``__rmqueue_steal`` (MM A9): smallest-first; the remainder stays with the fallback
        type."""
        for current_order in range(order, NR_PAGE_ORDERS):
            fallback_mt = self.find_suitable_fallback(zone, current_order, start_mt, False)
            if fallback_mt == -1:
                continue
            pfn = next(iter(zone.free_list[current_order][fallback_mt]))
            self.page_del_and_expand(zone, pfn, order, current_order, fallback_mt)
            return pfn
        return None

    def _rmqueue(self, zone: Zone, order: int, mt: int, alloc_flags: int) -> int | None:
        """``__rmqueue`` (MM A5): CMA balancing, own type, CMA, claim, steal, in that order."""
        if alloc_flags & ALLOC_CMA and zone.nr_free_cma > zone.nr_free_pages // 2:
            pfn = self._rmqueue_cma_fallback(zone, order)
            if pfn is not None:
                return pfn
        pfn = self._rmqueue_smallest(zone, order, mt)
        if pfn is not None:
            return pfn
        if alloc_flags & ALLOC_CMA:
            pfn = self._rmqueue_cma_fallback(zone, order)
            if pfn is not None:
                return pfn
        pfn = self._rmqueue_claim(zone, order, mt, alloc_flags)
        if pfn is not None:
            return pfn
        if not alloc_flags & ALLOC_NOFRAGMENT:
            return self._rmqueue_steal(zone, order, mt)
        return None

    def rmqueue(self, zone: Zone, order: int, alloc_flags: int, mt: int) -> int | None:
        """``rmqueue`` (MM A4): per-CPU path (one __rmqueue in the reference model), then
        buddy."""
        pfn: int | None = None
        if order <= 3 or order == pageblock_order:
            pfn = self._rmqueue(zone, order, mt, alloc_flags)
        if pfn is None:
            if order > 0 and alloc_flags & ALLOC_HIGHATOMIC:
                pfn = self._rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
            if pfn is None:
                pfn = self._rmqueue(zone, order, mt, alloc_flags)
                if pfn is None and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
                    pfn = self._rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
        if zone.kswapd_wake and alloc_flags & ALLOC_KSWAPD:
            # kswapd, run synchronously, balances the zone and drops the boost (MM A10).
            zone.kswapd_wake = False
            zone.watermark_boost = 0
        return pfn

    def _zone_watermark_ok(self, z: Zone, order: int, mark: int, highest_zoneidx: int,
                            alloc_flags: int, free_pages: int) -> bool:
        """``__zone_watermark_ok`` (MM W1.1–W1.5): whether ``free_pages`` clear ``mark`` for
        this request."""
        free_pages -= (1 << order) - 1
        if not alloc_flags & ALLOC_RESERVES:
            free_pages -= z.nr_free_highatomic
        if not alloc_flags & ALLOC_CMA:
            free_pages -= z.nr_free_cma
        min_ = mark
        if alloc_flags & ALLOC_RESERVES:
            if alloc_flags & ALLOC_MIN_RESERVE:
                min_ -= min_ // 2
                if alloc_flags & ALLOC_NON_BLOCK:
                    min_ -= min_ // 4
            if alloc_flags & ALLOC_OOM:
                min_ -= min_ // 2
        if free_pages <= min_ + z.lowmem_reserve[highest_zoneidx]:
            return False
        if not order:
            return True
        for o in range(order, NR_PAGE_ORDERS):
            if not z.nr_free[o]:
                continue
            lists = z.free_list[o]
            if lists[0] or lists[1] or lists[2]:
                return True
            if alloc_flags & ALLOC_CMA and lists[MIGRATE_CMA]:
                return True
            if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) and lists[MIGRATE_HIGHATOMIC]:
                return True
        return False

    def zone_watermark_ok(self, z: Zone, order: int, mark: int, highest_zoneidx: int,
                          alloc_flags: int) -> bool:
        return self._zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags,
                                        z.nr_free_pages)

    def zone_watermark_fast(self, z: Zone, order: int, mark: int, highest_zoneidx: int,
                            alloc_flags: int) -> bool:
        """``zone_watermark_fast`` (MM W1), with the W1.6 retry."""
        if self._zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags,
                                    z.nr_free_pages):
            return True
        if (not order and alloc_flags & ALLOC_MIN_RESERVE and z.watermark_boost
                and alloc_flags & ALLOC_WMARK_MASK == ALLOC_WMARK_MIN):
            return self._zone_watermark_ok(z, order, z._watermark[WMARK_MIN],
                                            highest_zoneidx, alloc_flags, z.nr_free_pages)
        return False

    def get_page_from_freelist(self, gfp: int, order: int, alloc_flags: int,
                               highest: int, mt: int) -> int | None:
        """``get_page_from_freelist`` (MM A2): the zonelist walk; NOFRAGMENT is dropped for a
        second walk."""
        while True:
            for zone in self._zonelists[highest]:
                if not alloc_flags & ALLOC_NO_WATERMARKS:
                    mark = zone._watermark[alloc_flags & ALLOC_WMARK_MASK] + \
                        zone.watermark_boost
                    # Order 0 without reserve flags: W1.1–W1.4 in one comparison.
                    if order or alloc_flags & ALLOC_RESERVES or (
                            zone.nr_free_pages - zone.nr_free_highatomic
                            - (0 if alloc_flags & ALLOC_CMA else zone.nr_free_cma)
                            <= mark + zone.lowmem_reserve[highest]):
                        if not self.zone_watermark_fast(zone, order, mark, highest,
                                                        alloc_flags):
                            continue
                pfn = self.rmqueue(zone, order, alloc_flags, mt)
                if pfn is not None:
                    zone.numa_hit += 1                  # zone_statistics
                    zone.pgalloc += 1 << order          # __count_zid_vm_events(PGALLOC)
                    self.prep_new_page(pfn, order, gfp)
                    if alloc_flags & ALLOC_HIGHATOMIC:
                        self.reserve_highatomic_pageblock(pfn, order, zone)
                    return pfn
            if alloc_flags & ALLOC_NOFRAGMENT and not self.defrag_mode:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                continue
            return None

    def prep_new_page(self, pfn: int, order: int, gfp: int) -> None:
        """``prep_new_page`` (MM A12): refcount 1, zeroing per P8, compound head for
        __GFP_COMP."""
        mm = self.mem_map
        i = pfn - mm.base_pfn
        mm.refcount[i] = 1
        mm.alloc_order[i] = order
        if not self.init_on_free and (self.init_on_alloc or gfp & _GFP_ZERO):
            self._clear_pages(pfn, 1 << order)
        if order and gfp & _GFP_COMP:
            mm.flags[i] |= PG_head
            mm.order[i] = order

    def alloc_flags_nofragment(self, zone: Zone | None, gfp: int) -> int:
        """``alloc_flags_nofragment`` (MM G9); both modelled arches configure ZONE_DMA32."""
        alloc_flags = gfp & _GFP_KSWAPD_RECLAIM
        if self.defrag_mode:
            return alloc_flags | ALLOC_NOFRAGMENT
        if zone is None or zone.idx != ZONE_NORMAL:
            return alloc_flags
        return alloc_flags | ALLOC_NOFRAGMENT

    def gfp_to_alloc_flags(self, gfp: int, order: int, mt: int) -> int:
        """``gfp_to_alloc_flags`` (MM G7): the slow path's flags."""
        alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
        alloc_flags |= gfp & (_GFP_HIGH | _GFP_KSWAPD_RECLAIM)
        if not gfp & _GFP_DIRECT_RECLAIM:
            if not gfp & _GFP_NOMEMALLOC:
                alloc_flags |= ALLOC_NON_BLOCK
                if order > 0 and alloc_flags & ALLOC_MIN_RESERVE:
                    alloc_flags |= ALLOC_HIGHATOMIC
            alloc_flags &= ~ALLOC_CPUSET
        if mt == MIGRATE_MOVABLE:
            alloc_flags |= ALLOC_CMA
        if self.defrag_mode:
            alloc_flags |= ALLOC_NOFRAGMENT
        return alloc_flags

    def alloc_pages(self, gfp: int, order: int = 0) -> Page | None:
        """``alloc_pages``: a block of 2^order pages, or None (MM A1–A3)."""
        pfn = self._alloc_pages_pfn(gfp, order)
        return None if pfn is None else Page(self, pfn)

    def _alloc_pages_pfn(self, gfp: int, order: int) -> int | None:
        """``__alloc_frozen_pages_noprof``: the order check, the task's gfp context,
        ``prepare_alloc_pages`` (with ``should_fail_alloc_page``), then the fast path and
        the slow path (MM A1-A3)."""
        if not isinstance(order, int) or order < 0:
            raise ValueError(f"order {order!r} is not a non-negative int")
        params = self._gfp_params
        if type(gfp) is not int or gfp not in params:
            if not isinstance(gfp, int) or gfp < 0 or gfp & ~_GFP_BITS_MASK:
                raise ValueError(f"gfp {gfp!r} has bits pykern does not know")
        if order > MAX_PAGE_ORDER:
            if not gfp & _GFP_NOWARN:
                self.log.warn(f"WARNING: mm/page_alloc.c: __alloc_pages_noprof: order {order}"
                              f" > MAX_PAGE_ORDER {MAX_PAGE_ORDER}")
            return None
        if self.memalloc_pin:
            gfp &= ~_GFP_MOVABLE
        cached = params.get(gfp)
        if cached is None:
            cached = params[gfp] = (gfp_zone(gfp), gfp_migratetype(gfp))
        fpa = self.fail_page_alloc          # prepare_alloc_pages: should_fail_alloc_page
        if fpa is not None and fpa.armed and fpa.should_fail_alloc_page(gfp, order):
            return None
        highest, mt = cached
        if self.page_group_by_mobility_disabled:
            mt = MIGRATE_UNMOVABLE
        zonelist = self._zonelists[highest]
        alloc_flags = ALLOC_WMARK_LOW | (gfp & _GFP_KSWAPD_RECLAIM)
        if mt == MIGRATE_MOVABLE:
            alloc_flags |= ALLOC_CMA
        # alloc_flags_nofragment (MM G9), inline
        if self.defrag_mode or (zonelist and zonelist[0].idx == ZONE_NORMAL):
            alloc_flags |= ALLOC_NOFRAGMENT
        pfn = self.get_page_from_freelist(gfp, order, alloc_flags, highest, mt)
        if pfn is None:
            pfn = self._alloc_pages_slowpath(gfp, order, highest, mt)
        return pfn

    def _alloc_pages_slowpath(self, gfp: int, order: int, highest: int,
                               mt: int) -> int | None:
        """``__alloc_pages_slowpath`` (MM A3): min watermark and reserves; no reclaim, so
        failure follows."""
        alloc_flags = self.gfp_to_alloc_flags(gfp, order, mt)
        pfn = self.get_page_from_freelist(gfp, order, alloc_flags & ~ALLOC_NO_WATERMARKS,
                                          highest, mt)
        if pfn is not None:
            return pfn
        while True:
            if gfp & _GFP_MEMALLOC and not gfp & _GFP_NOMEMALLOC:
                reserve = ALLOC_NO_WATERMARKS | (ALLOC_CMA if mt == MIGRATE_MOVABLE else 0)
                alloc_flags = reserve | (alloc_flags & ALLOC_KSWAPD)
                pfn = self.get_page_from_freelist(gfp, order, alloc_flags, highest, mt)
                if pfn is not None:
                    return pfn
            can_retry = (gfp & _GFP_DIRECT_RECLAIM and not gfp & _GFP_NORETRY
                         and (order <= 3 or gfp & _GFP_RETRY_MAYFAIL))
            while can_retry and self.unreserve_highatomic_pageblock(highest, mt, True):
                pfn = self.get_page_from_freelist(gfp, order, alloc_flags, highest, mt)
                if pfn is not None:
                    return pfn
            if not (self.defrag_mode and alloc_flags & ALLOC_NOFRAGMENT):
                break
            # MM G9: under defrag_mode the fallback comes only here, where the kernel's
            # slow path gives up on reclaim/compaction ("nopage"), and retries.
            alloc_flags &= ~ALLOC_NOFRAGMENT
            pfn = self.get_page_from_freelist(gfp, order, alloc_flags & ~ALLOC_NO_WATERMARKS,
                                              highest, mt)
            if pfn is not None:
                return pfn
        if gfp & _GFP_NOFAIL:
            self.log.warn(f"pykern: __GFP_NOFAIL allocation of order {order} fails: "
                          "no reclaim, compaction or OOM killer is modelled")
        if not gfp & _GFP_NOWARN:
            self.log.warn(f"pykern: page allocation failure: order:{order}, "
                          f"mode:{gfp:#x}({format_gfp(gfp)}), nodemask=(null)")
        return None

    # ------------------------------------------------------------ highatomic
    def reserve_highatomic_pageblock(self, pfn: int, order: int, zone: Zone) -> None:
        """``reserve_highatomic_pageblock`` (MM A11.1): make the block's pageblock a
        HighAtomic reserve, up to about 1% of the zone."""
        if zone.managed_pages // 100 < pageblock_nr_pages:
            return
        max_managed = -(-(zone.managed_pages // 100) // pageblock_nr_pages) * \
            pageblock_nr_pages
        if zone.nr_reserved_highatomic >= max_managed:
            return
        mt = self.get_pfnblock_migratetype(pfn)
        if not migratetype_is_mergeable(mt):
            return
        if order < pageblock_order:
            if self.move_freepages_block(zone, pfn, mt, MIGRATE_HIGHATOMIC) == -1:
                return
            zone.nr_reserved_highatomic += pageblock_nr_pages
        else:
            self.change_pageblock_range(pfn, order, MIGRATE_HIGHATOMIC)
            zone.nr_reserved_highatomic += 1 << order

    def unreserve_highatomic_pageblock(self, highest: int, mt: int, force: bool) -> bool:
        """``unreserve_highatomic_pageblock`` (MM A11.4): give one HighAtomic pageblock back to
        ``mt``."""
        for zone in self._zonelists[highest]:
            if not force and zone.nr_reserved_highatomic <= pageblock_nr_pages:
                continue
            for order in range(NR_PAGE_ORDERS):
                fl = zone.free_list[order][MIGRATE_HIGHATOMIC]
                if not fl:
                    continue
                pfn = next(iter(fl))
                size = min(max(pageblock_nr_pages, 1 << order), zone.nr_reserved_highatomic)
                zone.nr_reserved_highatomic -= size
                if order < pageblock_order:
                    ret = self.move_freepages_block(zone, pfn, MIGRATE_HIGHATOMIC, mt)
                else:
                    self.move_to_free_list(pfn, zone, order, MIGRATE_HIGHATOMIC, mt)
                    self.change_pageblock_range(pfn, order, mt)
                    ret = 1
                if ret > 0:
                    return True
        return False

    # ------------------------------------------------------------- zonelists
    def build_all_zonelists(self) -> None:
        """``build_all_zonelists`` (MM G4): populated zones at or below each index, highest
        first."""
        self._zonelists = [[z for z in reversed(self.zones[:h + 1]) if z.populated_zone()]
                           for h in range(MAX_NR_ZONES)]

    def nr_free_zone_pages(self, highest: int) -> int:
        return sum(max(0, z.managed_pages - z._watermark[WMARK_HIGH])
                   for z in self.zones[:highest + 1])

    def set_mobility_grouping(self) -> None:
        """``page_group_by_mobility_disabled`` as ``build_all_zonelists`` sets it (MM Z8)."""
        total = self.nr_free_zone_pages(gfp_zone(G.GFP_HIGHUSER_MOVABLE))
        self.page_group_by_mobility_disabled = total < pageblock_nr_pages * MIGRATE_TYPES

    # ------------------------------------------------------------ watermarks
    def calculate_min_free_kbytes(self) -> None:
        """``calculate_min_free_kbytes`` (MM Z6.1): sqrt(16 * lowmem KiB), clamped, unless the
        user set a larger value."""
        lowmem_kbytes = self.nr_free_zone_pages(gfp_zone(G.GFP_USER)) * 4
        new = isqrt(lowmem_kbytes * 16)
        if new > self.user_min_free_kbytes:
            self.min_free_kbytes = min(max(new, 128), 262144)
        else:
            self.log.warn(f"min_free_kbytes is not updated to {new} because user defined "
                          f"value {self.user_min_free_kbytes} is preferred")

    def setup_per_zone_wmarks(self) -> None:
        """``setup_per_zone_wmarks`` (MM Z6.2–Z6.4), then totalreserve_pages."""
        pages_min = self.min_free_kbytes >> 2
        lowmem = sum(z.managed_pages for z in self.zones if z.idx != ZONE_MOVABLE)
        for z in self.zones:
            tmp = pages_min * z.managed_pages // lowmem if lowmem else 0
            if z.idx == ZONE_MOVABLE:
                z._watermark[WMARK_MIN] = min(max(z.managed_pages // 1024, 32), 128)
            else:
                z._watermark[WMARK_MIN] = tmp
            tmp = max(tmp >> 2, z.managed_pages * self.watermark_scale_factor // 10000)
            z.watermark_boost = 0
            z._watermark[WMARK_LOW] = z._watermark[WMARK_MIN] + tmp
            z._watermark[WMARK_HIGH] = z._watermark[WMARK_LOW] + tmp
            z._watermark[WMARK_PROMO] = z._watermark[WMARK_HIGH] + tmp
        self.calculate_totalreserve_pages()

    def setup_per_zone_lowmem_reserve(self) -> None:
        """``setup_per_zone_lowmem_reserve`` (MM Z7), then totalreserve_pages."""
        for i in range(MAX_NR_ZONES - 1):
            zone = self.zones[i]
            ratio = self.lowmem_reserve_ratio[i]
            clear = not ratio or not zone.managed_pages
            managed = 0
            for j in range(i + 1, MAX_NR_ZONES):
                managed += self.zones[j].managed_pages
                zone.lowmem_reserve[j] = 0 if clear else managed // ratio
        self.calculate_totalreserve_pages()

    def calculate_totalreserve_pages(self) -> None:
        total = 0
        for i, zone in enumerate(self.zones):
            top = max([0] + zone.lowmem_reserve[i:]) + zone._watermark[WMARK_HIGH]
            total += min(top, zone.managed_pages)
        self.totalreserve_pages = total

    def init_per_zone_wmark_min(self) -> None:
        self.calculate_min_free_kbytes()
        self.setup_per_zone_wmarks()
        self.setup_per_zone_lowmem_reserve()

    # ------------------------------------------------------------ inspection
    def count_vm_events(self, item: str, delta: int) -> None:
        """``count_vm_events``: add ``delta`` to the /proc/vmstat event ``item``."""
        if delta:
            self.vm_events[item] = self.vm_events.get(item, 0) + delta

    def nr_free_pages(self) -> int:
        """NR_FREE_PAGES summed over zones (MM P6)."""
        return sum(z.nr_free_pages for z in self.zones)

    def free_list(self, zone: str, order: int, mt: str) -> list[int]:
        """First pfns of the free blocks on list(order, mt) of ``zone``, head first."""
        if mt not in migratetype_names:
            raise ValueError(f"no migratetype {mt!r} (types: {', '.join(migratetype_names)})")
        if not isinstance(order, int) or not 0 <= order <= MAX_PAGE_ORDER:
            raise ValueError(f"order {order!r} out of range 0..{MAX_PAGE_ORDER}")
        return list(self.zone_by_name(zone).free_list[order][migratetype_names.index(mt)])

    def pageblock_type(self, pfn: int) -> str:
        """Display name of the type of the pageblock holding ``pfn`` (MM P4), as
        ``migratetype_names`` spells it."""
        self.check_pfn(pfn)
        return migratetype_names[self.get_pfnblock_migratetype(pfn)]

    def page_is_free(self, pfn: int) -> bool:
        """True when ``pfn`` lies in a free buddy block."""
        self.check_pfn(pfn)
        return self._page_is_free(pfn)

    def iter_free_blocks(self) -> Iterable[tuple[Zone, int, int, int]]:
        """Every free block as ``(zone, order, mt, pfn)``, list order."""
        for zone in self.zones:
            for order in range(NR_PAGE_ORDERS):
                for mt in range(MIGRATE_TYPES):
                    for pfn in zone.free_list[order][mt]:
                        yield zone, order, mt, pfn

    def check_invariants(self) -> None:
        """Check rule MM V1 over the free lists (test helper: walks every free block).

        :raises AssertionError: naming the first broken invariant.
        """
        mm = self.mem_map
        seen: list[tuple[int, int]] = []
        for zone in self.zones:
            nr_free = [0] * NR_PAGE_ORDERS
            free = cma = highatomic = blocks = 0
            for order in range(NR_PAGE_ORDERS):
                for mt in range(MIGRATE_TYPES):
                    fl: OrderedDict[int, None] = zone.free_list[order][mt]
                    for pfn in fl:
                        i = pfn - mm.base_pfn
                        n = 1 << order
                        assert pfn % n == 0, f"free block {pfn:#x} not aligned to order {order}"
                        assert zone.zone_spans_pfn(pfn) and zone.zone_spans_pfn(pfn + n - 1), \
                            f"free block {pfn:#x} order {order} leaves zone {zone.name}"
                        assert mm.flags[i] & PG_buddy and mm.order[i] == order, \
                            f"free block {pfn:#x} lacks its buddy marker/order"
                        assert mm.freelist_mt[i] == mt
                        block_mt = self.get_pfnblock_migratetype(pfn)
                        assert block_mt == mt, (f"free block {pfn:#x} on {migratetype_names[mt]}"
                                                f" list in a {migratetype_names[block_mt]} block")
                        assert not mm.flags[i] & PG_reserved
                        nr_free[order] += 1
                        seen.append((pfn, pfn + n))
                        if mt != MIGRATE_ISOLATE:
                            free += n
                            if order >= pageblock_order:
                                blocks += n
                        if mt == MIGRATE_CMA:
                            cma += n
                        if mt == MIGRATE_HIGHATOMIC:
                            highatomic += n
            assert nr_free == zone.nr_free, f"{zone.name}: nr_free {zone.nr_free} != {nr_free}"
            assert free == zone.nr_free_pages, \
                f"{zone.name}: NR_FREE_PAGES {zone.nr_free_pages} != {free}"
            assert cma == zone.nr_free_cma, f"{zone.name}: NR_FREE_CMA {zone.nr_free_cma} != {cma}"
            assert highatomic == zone.nr_free_highatomic
            assert blocks == zone.nr_free_pages_blocks
        seen.sort()
        for (a0, a1), (b0, _) in zip(seen, seen[1:]):
            assert a1 <= b0, f"free blocks at {a0:#x} and {b0:#x} overlap"
        for a0, a1 in seen:
            heads = mm.flags[a0 - mm.base_pfn + 1:a1 - mm.base_pfn]
            assert not any(b & PG_buddy for b in heads), f"buddy marker inside block {a0:#x}"
        _ = PG_anon
