"""The buddy allocator (``mm/page_alloc.c``), the MM G, A, F and W rules.

Every kernel function modelled here is a module-level function with the kernel's name,
leading double underscores included (``__rmqueue_smallest``, ``__free_one_page``), that
takes the state it acts on first, the way drgn's helpers take ``prog``: the allocator of the
running boot (``mm``, a :class:`PageAlloc`), or the zone where the kernel function needs
nothing else (``__zone_watermark_ok``, ``account_freepages``).  A ``struct page *``
argument is a pfn.

:class:`PageAlloc` is ``m.mm``: the memmap, the zones and the tunables of one boot, and the
user-facing API (``alloc_pages``, ``free_pages``, ``free_list``, ``pageblock_type``, ...).
Python mangles ``__name`` identifiers written inside a class body, so the double-underscore
functions are called from module-level functions only.

The reference model of MM A0 holds: no per-CPU lists, no reclaim, no compaction, no OOM
killer — a request that would need them fails (``None``).  A few hot paths inline a small
kernel helper; each inline copy names the helper it stands for.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from math import isqrt
from typing import TYPE_CHECKING, Any

from . import gfp as G
from .fail_page_alloc import __should_fail_alloc_page
from .gfp import (
    __GFP_BITS_MASK, __GFP_COMP, __GFP_DIRECT_RECLAIM, __GFP_DMA, __GFP_DMA32, __GFP_HIGH,
    __GFP_HIGHMEM, __GFP_KSWAPD_RECLAIM, __GFP_MEMALLOC, __GFP_MOVABLE, __GFP_NOFAIL,
    __GFP_NOMEMALLOC, __GFP_NORETRY, __GFP_NOWARN, __GFP_RETRY_MAYFAIL, __GFP_ZERO,
)
from .internal import (
    ALLOC_CMA, ALLOC_CPUSET, ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS, ALLOC_NOFRAGMENT, ALLOC_NON_BLOCK, ALLOC_OOM, ALLOC_RESERVES,
    ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN, FPI_NONE, FPI_TO_TAIL,
)
from .mmzone import (
    _rebuild, MAX_NR_ZONES, MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_ISOLATE,
    MIGRATE_MOVABLE, MIGRATE_PCPTYPES, MIGRATE_RECLAIMABLE, MIGRATE_TYPES,
    MIGRATE_UNMOVABLE, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER, WMARK_HIGH, WMARK_LOW,
    WMARK_MIN, WMARK_PROMO, ZONE_DMA, ZONE_DMA32, ZONE_MOVABLE, ZONE_NORMAL, Zone, fallbacks,
    migratetype_is_mergeable, migratetype_names, pageblock_nr_pages, pageblock_order,
    zone_names,
)
from .page import (
    NO_ALLOC, PB_migrate_isolate, PB_migrate_mask, PG_buddy, PG_head, PG_lru,
    PG_movable_ops, PG_reserved, PG_valid, MemMap, Page,
)

if TYPE_CHECKING:
    from ..kernel.printk import KernelLog
    from .fail_page_alloc import FailPageAlloc

__all__ = [
    "PageAlloc", "gfp_zone", "gfp_migratetype", "format_gfp",
    # the kernel functions other modules call
    "page_zone", "get_pfnblock_migratetype", "set_pageblock_migratetype",
    "del_page_from_free_list", "find_buddy_page_pfn", "split_large_buddy", "free_one_page",
    "__putback_isolated_page", "__free_pages", "free_pages", "get_page", "put_page",
    "free_pages_prepare", "__free_pages_core", "post_alloc_hook", "alloc_pages",
    "__alloc_frozen_pages_noprof", "prep_move_freepages_block", "move_freepages_block",
    "find_large_buddy", "pageblock_isolate_and_move_free_pages",
    "pageblock_unisolate_and_move_free_pages", "build_all_zonelists", "set_mobility_grouping",
    "setup_per_zone_wmarks", "setup_per_zone_lowmem_reserve", "init_per_zone_wmark_min",
]

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


# ------------------------------------------------------------------------- gfp masks
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
    bits = gfp & (__GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32)
    if bits & (bits - 1):
        raise ValueError(f"gfp {gfp:#x}: more than one zone modifier (GFP_ZONE_BAD)")
    if bits == __GFP_DMA:
        return ZONE_DMA
    if bits == __GFP_DMA32:
        return ZONE_DMA32
    if bits == __GFP_HIGHMEM and gfp & __GFP_MOVABLE:
        return ZONE_MOVABLE
    return ZONE_NORMAL


def gfp_migratetype(gfp: int) -> int:
    """``gfp_migratetype`` (MM G1), without the grouping switch: 0, 1 or 2."""
    mt = (gfp & G.GFP_MOVABLE_MASK) >> G.GFP_MOVABLE_SHIFT
    if mt == 3:
        raise ValueError(f"gfp {gfp:#x}: __GFP_MOVABLE and __GFP_RECLAIMABLE together")
    return mt


# ----------------------------------------------------------------------------- lookup
def page_zone(mm: PageAlloc, pfn: int) -> Zone:
    """``page_zone``: the zone whose span holds ``pfn`` (ValueError for none)."""
    for start, end, zone in mm.zone_spans:
        if start <= pfn < end:
            return zone
    raise ValueError(f"pfn {pfn:#x} lies in no zone")


def _check_pfn(mm: PageAlloc, pfn: int) -> None:
    """ValueError unless ``pfn`` is an int naming RAM this kernel knows (MM V2)."""
    if not isinstance(pfn, int) or not mm.mem_map.pfn_valid(pfn):
        raise ValueError(f"pfn {pfn:#x} is not RAM (outside every bank or in a hole)"
                         if isinstance(pfn, int) else f"pfn {pfn!r} is not an int")


def _zone_by_name(mm: PageAlloc, name: str) -> Zone:
    for zone in mm.zones:
        if zone.name == name:
            return zone
    raise ValueError(f"no zone named {name!r} (zones: {', '.join(zone_names)})")


# -------------------------------------------------------------------- pageblock flags
def __get_pfnblock_flags_mask(mm: PageAlloc, pfn: int, mask: int) -> int:
    """``__get_pfnblock_flags_mask``: the bits of ``pfn``'s pageblock under ``mask``
    (``PB_migrate_mask``: the stored type, whatever the isolate bit says)."""
    mem = mm.mem_map
    return mem.pageblock_flags[(pfn - mem.base_pfn) >> pageblock_order] & mask


def get_pfnblock_migratetype(mm: PageAlloc, pfn: int) -> int:
    """``get_pfnblock_migratetype`` (MM P4): Isolate when the isolate bit is set, else the
    stored type."""
    mem = mm.mem_map
    bits = mem.pageblock_flags[(pfn - mem.base_pfn) >> pageblock_order]
    return MIGRATE_ISOLATE if bits & PB_migrate_isolate else bits & PB_migrate_mask


def set_pageblock_migratetype(mm: PageAlloc, pfn: int, mt: int) -> None:
    """``set_pageblock_migratetype`` (MM P4): store ``mt`` for the pageblock of ``pfn`` and
    clear its isolate bit; a mergeable type is stored as Unmovable while mobility grouping
    is off.  Isolate is a bit, not a type (``toggle_pageblock_isolate``).

    :raises AssertionError: for Isolate (the kernel's VM_WARN_ONCE).
    """
    if mt >= MIGRATE_ISOLATE:
        raise AssertionError("set_pageblock_migratetype must not store Isolate")
    if mm.page_group_by_mobility_disabled and mt < MIGRATE_PCPTYPES:
        mt = MIGRATE_UNMOVABLE
    mem = mm.mem_map
    i = (pfn - mem.base_pfn) >> pageblock_order
    flags = mem.pageblock_flags
    flags[i] = (flags[i] & ~(PB_migrate_mask | PB_migrate_isolate)) | mt


def toggle_pageblock_isolate(mm: PageAlloc, pfn: int, isolate: bool) -> None:
    """``toggle_pageblock_isolate`` (MM P4, I5): set or clear the isolate bit of ``pfn``'s
    pageblock; the stored type stays."""
    mem = mm.mem_map
    i = (pfn - mem.base_pfn) >> pageblock_order
    flags = mem.pageblock_flags
    flags[i] = flags[i] | PB_migrate_isolate if isolate else flags[i] & ~PB_migrate_isolate


def change_pageblock_range(mm: PageAlloc, pfn: int, order: int, mt: int) -> None:
    """``change_pageblock_range``: retype every pageblock of the order-``order`` block."""
    for p in range(pfn, pfn + (1 << order), pageblock_nr_pages):
        set_pageblock_migratetype(mm, p, mt)


# ------------------------------------------------------------------------ free lists
def account_freepages(zone: Zone, nr_pages: int, mt: int) -> None:
    """``account_freepages`` (MM P6): NR_FREE_PAGES and the CMA/HighAtomic counters;
    Isolate pages count nowhere."""
    if mt == MIGRATE_ISOLATE:
        return
    zone.nr_free_pages += nr_pages
    if mt == MIGRATE_CMA:
        zone.nr_free_cma += nr_pages
    elif mt == MIGRATE_HIGHATOMIC:
        zone.nr_free_highatomic += nr_pages


def __add_to_free_list(mm: PageAlloc, pfn: int, zone: Zone, order: int, mt: int,
                       tail: bool) -> None:
    """``__add_to_free_list`` (MM C1.5): mark the block free and link it at the head, or
    the tail, of list(order, mt); the free counters are the caller's."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    mem.flags[i] |= PG_buddy
    mem.order[i] = order
    mem.freelist_mt[i] = mt
    fl = zone.free_list[order][mt]
    fl[pfn] = None
    if not tail:
        fl.move_to_end(pfn, False)           # to the head
    zone.nr_free[order] += 1
    if order >= pageblock_order and mt != MIGRATE_ISOLATE:
        zone.nr_free_pages_blocks += 1 << order


def __del_page_from_free_list(mm: PageAlloc, pfn: int, zone: Zone, order: int,
                              mt: int) -> None:
    """``__del_page_from_free_list``: unlink a free block; the free counters are the
    caller's."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    del zone.free_list[order][mt][pfn]
    mem.flags[i] &= ~PG_buddy
    mem.order[i] = 0
    zone.nr_free[order] -= 1
    if order >= pageblock_order and mt != MIGRATE_ISOLATE:
        zone.nr_free_pages_blocks -= 1 << order


def del_page_from_free_list(mm: PageAlloc, pfn: int, zone: Zone, order: int,
                            mt: int) -> None:
    """``del_page_from_free_list``: unlink a free block and take it off the counters."""
    __del_page_from_free_list(mm, pfn, zone, order, mt)
    account_freepages(zone, -(1 << order), mt)


def move_to_free_list(mm: PageAlloc, pfn: int, zone: Zone, order: int, old_mt: int,
                      new_mt: int) -> None:
    """``move_to_free_list`` (MM F5.1): move a free block to the tail of another list."""
    mem = mm.mem_map
    del zone.free_list[order][old_mt][pfn]
    zone.free_list[order][new_mt][pfn] = None
    mem.freelist_mt[pfn - mem.base_pfn] = new_mt
    nr = 1 << order
    account_freepages(zone, -nr, old_mt)
    account_freepages(zone, nr, new_mt)
    if order >= pageblock_order and ((old_mt == MIGRATE_ISOLATE)
                                      != (new_mt == MIGRATE_ISOLATE)):
        zone.nr_free_pages_blocks += -nr if new_mt == MIGRATE_ISOLATE else nr


def expand(mm: PageAlloc, zone: Zone, pfn: int, low: int, high: int, mt: int) -> int:
    """``expand`` (MM A6.1): give back the upper halves, each at the head of its list; the
    pages given back."""
    mem = mm.mem_map
    flags, orders, freelist_mt, base = mem.flags, mem.order, mem.freelist_mt, mem.base_pfn
    free_list, nr_free = zone.free_list, zone.nr_free
    nr_added = 0
    while high > low:                      # __add_to_free_list(…, tail=False), inline
        high -= 1
        size = 1 << high
        p = pfn + size
        i = p - base
        flags[i] |= PG_buddy
        orders[i] = high
        freelist_mt[i] = mt
        fl = free_list[high][mt]
        fl[p] = None
        fl.move_to_end(p, False)       # to the head
        nr_free[high] += 1
        if high >= pageblock_order and mt != MIGRATE_ISOLATE:
            zone.nr_free_pages_blocks += size
        nr_added += size
    return nr_added


def page_del_and_expand(mm: PageAlloc, zone: Zone, pfn: int, low: int, high: int,
                        mt: int) -> None:
    """``page_del_and_expand``: unlink the order-``high`` block, give back what an
    order-``low`` request does not use, account the difference."""
    __del_page_from_free_list(mm, pfn, zone, high, mt)
    nr = (1 << high) - expand(mm, zone, pfn, low, high, mt)
    account_freepages(zone, -nr, mt)


def find_buddy_page_pfn(mm: PageAlloc, zone: Zone, pfn: int, order: int) -> int | None:
    """``find_buddy_page_pfn`` (``mm/internal.h``): the buddy of the order-``order`` block
    at ``pfn`` when it is a free block of the same order in ``zone`` (``page_is_buddy``),
    else None."""
    buddy = pfn ^ (1 << order)
    if not zone.zone_start_pfn <= buddy < zone.zone_start_pfn + zone.spanned_pages:
        return None
    mem = mm.mem_map                           # the memmap covers every zone's span
    i = buddy - mem.base_pfn
    return buddy if mem.flags[i] & PG_buddy and mem.order[i] == order else None


# ---------------------------------------------------------------------------- freeing
def __free_one_page(mm: PageAlloc, pfn: int, zone: Zone, order: int, mt: int,
                    fpi: int) -> None:
    """``__free_one_page`` (MM F4): account, merge with free buddies, link head or tail
    (F5)."""
    mem = mm.mem_map
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    start, end = zone.zone_start_pfn, zone.zone_start_pfn + zone.spanned_pages
    if mt != MIGRATE_ISOLATE:                  # account_freepages, inline
        zone.nr_free_pages += 1 << order
        if mt == MIGRATE_CMA:
            zone.nr_free_cma += 1 << order
        elif mt == MIGRATE_HIGHATOMIC:
            zone.nr_free_highatomic += 1 << order
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)         # find_buddy_page_pfn, inline
        j = buddy_pfn - base
        if not (start <= buddy_pfn < end and flags[j] & PG_buddy and orders[j] == order):
            break
        buddy_mt = mt
        if order >= pageblock_order:
            buddy_mt = get_pfnblock_migratetype(mm, buddy_pfn)
            if buddy_mt != mt and not (migratetype_is_mergeable(mt)
                                       and migratetype_is_mergeable(buddy_mt)):
                break
        list_mt = mem.freelist_mt[j]           # __del_page_from_free_list, inline
        del zone.free_list[order][list_mt][buddy_pfn]
        flags[j] &= ~PG_buddy
        orders[j] = 0
        zone.nr_free[order] -= 1
        if order >= pageblock_order and list_mt != MIGRATE_ISOLATE:
            zone.nr_free_pages_blocks -= 1 << order
        if buddy_mt != mt:
            set_pageblock_migratetype(mm, buddy_pfn, mt)
        pfn &= buddy_pfn
        order += 1
    to_tail = bool(fpi & FPI_TO_TAIL) or buddy_merge_likely(mm, zone, pfn, order)
    __add_to_free_list(mm, pfn, zone, order, mt, to_tail)


def buddy_merge_likely(mm: PageAlloc, zone: Zone, pfn: int, order: int) -> bool:
    """``buddy_merge_likely`` (MM F5.2): tail when the block's order+1 neighbour is free
    at order+1."""
    if order >= MAX_PAGE_ORDER - 1:
        return False
    return find_buddy_page_pfn(mm, zone, pfn & ~(1 << order), order + 1) is not None


def split_large_buddy(mm: PageAlloc, zone: Zone, pfn: int, order: int, fpi: int) -> None:
    """``split_large_buddy`` (MM F3): free a large block one pageblock at a time, each
    with its type."""
    if order <= pageblock_order:
        __free_one_page(mm, pfn, zone, order, get_pfnblock_migratetype(mm, pfn), fpi)
        return
    end = pfn + (1 << order)
    order = pageblock_order
    while True:
        __free_one_page(mm, pfn, zone, order, get_pfnblock_migratetype(mm, pfn), fpi)
        pfn += 1 << order
        if pfn >= end:
            break


def free_one_page(mm: PageAlloc, zone: Zone, pfn: int, order: int,
                  fpi: int = FPI_NONE) -> None:
    """``free_one_page``: merge the block in, then count it in /proc/vmstat pgfree."""
    split_large_buddy(mm, zone, pfn, order, fpi)
    mm.pgfree += 1 << order


def __putback_isolated_page(mm: PageAlloc, pfn: int, order: int, mt: int) -> None:
    """``__putback_isolated_page`` (MM I7): return a block taken off an Isolate list to
    the tail of list(order, ``mt``), merging as any free does."""
    __free_one_page(mm, pfn, page_zone(mm, pfn), order, mt, FPI_TO_TAIL)


def is_free_buddy_page(mm: PageAlloc, pfn: int) -> bool:
    """``is_free_buddy_page``: does ``pfn`` lie inside some free block?"""
    mem = mm.mem_map
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    for k in range(NR_PAGE_ORDERS):
        head = (pfn >> k) << k
        i = head - base
        if i < 0:
            break
        if flags[i] & PG_buddy and orders[i] >= k:
            return True
    return False


def bad_page(mm: PageAlloc, pfn: int, reason: str) -> ValueError:
    """``bad_page`` (MM V2): the kernel's report, and the exception the caller raises
    (pykern refuses the operation where the kernel would go on)."""
    mm.log.printk(1, f"BUG: Bad page state: pfn:{pfn:#x} {reason}")
    return ValueError(f"bad page: pfn {pfn:#x}: {reason}")


def _check_free(mm: PageAlloc, pfn: int, order: int) -> None:
    """The misuse checks of a free (MM V2): ValueError, nothing changed."""
    if not isinstance(order, int) or not 0 <= order <= MAX_PAGE_ORDER:
        raise ValueError(f"pfn {pfn:#x}: order {order!r} out of range 0..{MAX_PAGE_ORDER}")
    _check_pfn(mm, pfn)
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    if mem.flags[i] & PG_reserved:
        raise bad_page(mm, pfn, "freeing a reserved page")
    if is_free_buddy_page(mm, pfn):
        raise bad_page(mm, pfn, "freeing a page that is already free (double free)")
    alloc_order = mem.alloc_order[i]
    if alloc_order == NO_ALLOC:
        raise bad_page(mm, pfn, "not the first page of an allocation")
    if alloc_order != order:
        raise bad_page(mm, pfn, f"freed at order {order}, allocated at order {alloc_order}")
    if mem.refcount[i] <= 0:
        raise bad_page(mm, pfn, f"refcount {mem.refcount[i]} on free")


def __free_pages(mm: PageAlloc, page: Page | int, order: int = 0) -> None:
    """``__free_pages`` (MM F1): drop one reference; free the block on the last.  ``page``
    is a :class:`Page` or a pfn; misuse is a ValueError and changes nothing (MM V2)."""
    pfn = page.pfn if isinstance(page, Page) else page
    mem = mm.mem_map
    i = pfn - mem.base_pfn if type(pfn) is int else -1
    # The usual case in one test: the valid, unreserved, non-buddy first page of a
    # live allocation of exactly this order (alloc_order is NO_ALLOC on every other
    # page, free ones included), with a reference.  Anything else: _check_free.
    if not (type(order) is int and order <= MAX_PAGE_ORDER and 0 <= i < len(mem.flags)
            and mem.flags[i] & _FREE_CHECK == PG_valid and mem.alloc_order[i] == order
            and mem.refcount[i] > 0):
        _check_free(mm, pfn, order)
        i = pfn - mem.base_pfn
    head = mem.flags[i] & PG_head
    mem.refcount[i] -= 1
    if mem.refcount[i] == 0:
        free_frozen_pages(mm, pfn, order)
    elif not head:
        mem.alloc_order[i] = 0
        while order > 0:
            order -= 1
            free_frozen_pages(mm, pfn + (1 << order), order)


#: ``m.mm.free_pages(page, order)``: pykern's ``free_pages`` takes the page (or its pfn),
#: as ``__free_pages`` does, rather than the kernel's virtual address.
free_pages = __free_pages


def get_page(mm: PageAlloc, page: Page | int) -> None:
    """``get_page``: take an extra reference on an allocated page."""
    pfn = page.pfn if isinstance(page, Page) else page
    _check_pfn(mm, pfn)
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    if mem.refcount[i] <= 0:
        raise bad_page(mm, pfn, "get_page on a page with no reference")
    mem.refcount[i] += 1


def put_page(mm: PageAlloc, page: Page | int) -> None:
    """``put_page``: drop a reference taken by ``get_page`` (frees the block on the last)."""
    pfn = page.pfn if isinstance(page, Page) else page
    mem = mm.mem_map
    order = mem.alloc_order[pfn - mem.base_pfn] if mem.pfn_valid(pfn) else 0
    __free_pages(mm, pfn, 0 if order == NO_ALLOC else order)


def free_pages_prepare(mm: PageAlloc, pfn: int, order: int) -> None:
    """``free_pages_prepare`` (MM P8): the block's pages become plain valid pages;
    init_on_free clears them."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    n = 1 << order
    mem.alloc_order[i] = NO_ALLOC
    # Every page of an allocation is valid RAM and not reserved.
    if n == 1:
        mem.flags[i] = PG_valid
    else:
        mem.flags[i:i + n] = _VALID_PAGES[:n]
    mem.order[i] = 0
    if mm.init_on_free:
        mm.clear_pages(pfn, n)


def free_frozen_pages(mm: PageAlloc, pfn: int, order: int) -> None:
    """``free_frozen_pages``/``__free_frozen_pages``: ``free_pages_prepare`` and
    ``free_one_page``, with the order-0 case inline."""
    if order or mm.init_on_free:
        free_pages_prepare(mm, pfn, order)
        free_one_page(mm, page_zone(mm, pfn), pfn, order, FPI_NONE)
        return
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    mem.alloc_order[i] = NO_ALLOC
    mem.flags[i] = PG_valid
    mem.order[i] = 0
    for start, end, zone in mm.zone_spans:     # page_zone, inline
        if start <= pfn < end:
            bits = mem.pageblock_flags[i >> pageblock_order]   # MM P4
            mt = MIGRATE_ISOLATE if bits & PB_migrate_isolate else bits & PB_migrate_mask
            __free_one_page(mm, pfn, zone, 0, mt, FPI_NONE)
            mm.pgfree += 1
            return
    raise ValueError(f"pfn {pfn:#x} lies in no zone")


def __free_pages_core(mm: PageAlloc, pfn: int, order: int) -> None:
    """``__free_pages_core`` (MM Z4): a boot-time chunk of reserved pages becomes managed
    and free, at the tail of its list."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    n = 1 << order
    mem.flags[i:i + n] = _VALID_PAGES[:n]
    zone = page_zone(mm, pfn)
    zone.managed_pages += n
    free_one_page(mm, zone, pfn, order, FPI_TO_TAIL)


# ------------------------------------------------------------------------- allocation
def __rmqueue_smallest(mm: PageAlloc, zone: Zone, order: int, mt: int) -> int | None:
    """``__rmqueue_smallest`` (MM A6): the head block of the smallest non-empty
    list(k >= order, mt)."""
    free_list = zone.free_list
    for k in range(order, NR_PAGE_ORDERS):
        fl = free_list[k][mt]
        if fl:
            pfn = fl.popitem(False)[0]     # the head; page_del_and_expand, inline
            mem = mm.mem_map
            i = pfn - mem.base_pfn
            mem.flags[i] &= ~PG_buddy
            mem.order[i] = 0
            zone.nr_free[k] -= 1
            nr = 1 << k
            if k >= pageblock_order and mt != MIGRATE_ISOLATE:
                zone.nr_free_pages_blocks -= nr
            if k > order:
                nr -= expand(mm, zone, pfn, order, k, mt)
            if mt != MIGRATE_ISOLATE:
                zone.nr_free_pages -= nr
                if mt == MIGRATE_CMA:
                    zone.nr_free_cma -= nr
                elif mt == MIGRATE_HIGHATOMIC:
                    zone.nr_free_highatomic -= nr
            return pfn
    return None


def __rmqueue_cma_fallback(mm: PageAlloc, zone: Zone, order: int) -> int | None:
    """``__rmqueue_cma_fallback`` (MM A7): smallest-first on the CMA lists."""
    return __rmqueue_smallest(mm, zone, order, MIGRATE_CMA)


def should_try_claim_block(mm: PageAlloc, order: int, start_mt: int) -> bool:
    """``should_try_claim_block`` (MM A8.2): large requests, Unmovable and Reclaimable ones,
    and everything while mobility grouping is off may claim a whole pageblock."""
    return (order >= pageblock_order // 2 or start_mt in (MIGRATE_UNMOVABLE,
                                                          MIGRATE_RECLAIMABLE)
            or mm.page_group_by_mobility_disabled)


def find_suitable_fallback(mm: PageAlloc, zone: Zone, order: int, mt: int,
                           claimable: bool) -> int:
    """``find_suitable_fallback`` (MM C1.8, A8.3): the first fallback type of ``mt`` with a
    free block of ``order``; -1 for none, -2 when a claim may not be tried."""
    if zone.nr_free[order] == 0:
        return -1
    if claimable and not should_try_claim_block(mm, order, mt):
        return -2
    for fallback_mt in fallbacks[mt]:
        if zone.free_list[order][fallback_mt]:
            return fallback_mt
    return -1


def boost_watermark(mm: PageAlloc, zone: Zone) -> bool:
    """``boost_watermark`` (MM A10): raise the zone's boost by a pageblock, up to the cap;
    whether it was raised."""
    if not mm.watermark_boost_factor:
        return False
    if pageblock_nr_pages * 4 > zone.managed_pages:
        return False
    max_boost = zone._watermark[WMARK_HIGH] * mm.watermark_boost_factor // 10000
    if not max_boost:
        return False
    max_boost = max(pageblock_nr_pages, max_boost)
    zone.watermark_boost = min(zone.watermark_boost + pageblock_nr_pages, max_boost)
    return True


def prep_move_freepages_block(mm: PageAlloc, zone: Zone, pfn: int,
                              count: bool) -> tuple[int, int, int] | None:
    """``prep_move_freepages_block``: the pageblock of ``pfn`` when it lies inside
    ``zone``, as ``(start, free pages, movable pages)`` (counted only with ``count``)."""
    start = pfn & ~(pageblock_nr_pages - 1)
    end = start + pageblock_nr_pages
    if not (zone.zone_spans_pfn(start) and zone.zone_spans_pfn(end - 1)):
        return None
    free = movable = 0
    if count:
        mem = mm.mem_map
        flags, orders, base = mem.flags, mem.order, mem.base_pfn
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


def __move_freepages_block(mm: PageAlloc, zone: Zone, start: int, old_mt: int,
                           new_mt: int) -> int:
    """``__move_freepages_block``: move every free block of the pageblock at ``start``
    from list ``old_mt`` to list ``new_mt``; the pages moved (the caller retypes)."""
    mem = mm.mem_map
    flags, orders, base = mem.flags, mem.order, mem.base_pfn
    p, end, moved = start, start + pageblock_nr_pages, 0
    while p < end:
        if flags[p - base] & PG_buddy:
            order = orders[p - base]
            move_to_free_list(mm, p, zone, order, old_mt, new_mt)
            p += 1 << order
            moved += 1 << order
        else:
            p += 1
    return moved


def move_freepages_block(mm: PageAlloc, zone: Zone, pfn: int, old_mt: int,
                         new_mt: int) -> int:
    """``move_freepages_block``: move the pageblock's free pages and retype it; -1 when it
    crosses the zone's edge."""
    prep = prep_move_freepages_block(mm, zone, pfn, False)
    if prep is None:
        return -1
    moved = __move_freepages_block(mm, zone, prep[0], old_mt, new_mt)
    set_pageblock_migratetype(mm, prep[0], new_mt)
    return moved


def find_large_buddy(mm: PageAlloc, start_pfn: int) -> int:
    """``find_large_buddy`` (MM R5, I5.1): the head of a free block that covers
    ``start_pfn``, else ``start_pfn`` itself."""
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


def __move_freepages_block_isolate(mm: PageAlloc, zone: Zone, pfn: int,
                                   isolate: bool) -> bool:
    """``__move_freepages_block_isolate`` (MM I5): move the pageblock's free pages to the
    Isolate lists (``isolate``) or back and toggle its isolate bit; a free block larger
    than the pageblock is split first (I5.1).  Whether it could."""
    if isolate == (get_pfnblock_migratetype(mm, pfn) == MIGRATE_ISOLATE):
        return False
    prep = prep_move_freepages_block(mm, zone, pfn, False)
    if prep is None:
        return False
    start = prep[0]
    mem = mm.mem_map
    head = find_large_buddy(mm, start)
    si = start - mem.base_pfn
    if head != start or (mem.flags[si] & PG_buddy and mem.order[si] > pageblock_order):
        order = mem.order[head - mem.base_pfn]
        del_page_from_free_list(mm, head, zone, order, mem.freelist_mt[head - mem.base_pfn])
        toggle_pageblock_isolate(mm, start, isolate)
        split_large_buddy(mm, zone, head, order, FPI_NONE)
        return True
    real = __get_pfnblock_flags_mask(mm, start, PB_migrate_mask)
    old, new = (real, MIGRATE_ISOLATE) if isolate else (MIGRATE_ISOLATE, real)
    __move_freepages_block(mm, zone, start, old, new)
    toggle_pageblock_isolate(mm, start, isolate)
    return True


def pageblock_isolate_and_move_free_pages(mm: PageAlloc, zone: Zone, pfn: int) -> bool:
    """``pageblock_isolate_and_move_free_pages`` (MM I5): isolate the pageblock of
    ``pfn`` with its free pages."""
    return __move_freepages_block_isolate(mm, zone, pfn, True)


def pageblock_unisolate_and_move_free_pages(mm: PageAlloc, zone: Zone, pfn: int) -> bool:
    """``pageblock_unisolate_and_move_free_pages`` (MM I7): give the pageblock of
    ``pfn`` and its free pages their stored type back."""
    return __move_freepages_block_isolate(mm, zone, pfn, False)


def try_to_claim_block(mm: PageAlloc, zone: Zone, pfn: int, current_order: int,
                       order: int, start_mt: int, block_mt: int,
                       alloc_flags: int) -> int | None:
    """``try_to_claim_block`` (MM A8.4–A8.5): take a whole large block, or claim its
    pageblock when enough of it is free or alike; the block, or None."""
    if current_order >= pageblock_order:
        del_page_from_free_list(mm, pfn, zone, current_order, block_mt)
        change_pageblock_range(mm, pfn, current_order, start_mt)
        nr_added = expand(mm, zone, pfn, order, current_order, start_mt)
        account_freepages(zone, nr_added, start_mt)
        return pfn
    if boost_watermark(mm, zone) and alloc_flags & ALLOC_KSWAPD:
        zone.kswapd_wake = True
    prep = prep_move_freepages_block(mm, zone, pfn, True)
    if prep is None:
        return None
    start, free, movable = prep
    if start_mt == MIGRATE_MOVABLE:
        alike = movable
    elif block_mt == MIGRATE_MOVABLE:
        alike = pageblock_nr_pages - (free + movable)
    else:
        alike = 0
    if free + alike >= pageblock_nr_pages // 2 or mm.page_group_by_mobility_disabled:
        __move_freepages_block(mm, zone, start, block_mt, start_mt)
        set_pageblock_migratetype(mm, start, start_mt)
        return __rmqueue_smallest(mm, zone, order, start_mt)
    return None


def __rmqueue_claim(mm: PageAlloc, zone: Zone, order: int, start_mt: int,
                    alloc_flags: int) -> int | None:
    """``__rmqueue_claim`` (MM A8): largest-first search for a block to claim."""
    min_order = order
    if order < pageblock_order and alloc_flags & ALLOC_NOFRAGMENT:
        min_order = pageblock_order
    for current_order in range(MAX_PAGE_ORDER, min_order - 1, -1):
        fallback_mt = find_suitable_fallback(mm, zone, current_order, start_mt, True)
        if fallback_mt == -1:
            continue
        if fallback_mt == -2:
            break
        pfn = next(iter(zone.free_list[current_order][fallback_mt]))
        got = try_to_claim_block(mm, zone, pfn, current_order, order, start_mt,
                                 fallback_mt, alloc_flags)
        if got is not None:
            return got
    return None


def __rmqueue_steal(mm: PageAlloc, zone: Zone, order: int, start_mt: int) -> int | None:
    """``__rmqueue_steal`` (MM A9): smallest-first; the remainder stays with the fallback
    type."""
    for current_order in range(order, NR_PAGE_ORDERS):
        fallback_mt = find_suitable_fallback(mm, zone, current_order, start_mt, False)
        if fallback_mt == -1:
            continue
        pfn = next(iter(zone.free_list[current_order][fallback_mt]))
        page_del_and_expand(mm, zone, pfn, order, current_order, fallback_mt)
        return pfn
    return None


def __rmqueue(mm: PageAlloc, zone: Zone, order: int, mt: int,
              alloc_flags: int) -> int | None:
    """``__rmqueue`` (MM A5): CMA balancing, own type, CMA, claim, steal, in that order."""
    if alloc_flags & ALLOC_CMA and zone.nr_free_cma > zone.nr_free_pages // 2:
        pfn = __rmqueue_cma_fallback(mm, zone, order)
        if pfn is not None:
            return pfn
    pfn = __rmqueue_smallest(mm, zone, order, mt)
    if pfn is not None:
        return pfn
    if alloc_flags & ALLOC_CMA:
        pfn = __rmqueue_cma_fallback(mm, zone, order)
        if pfn is not None:
            return pfn
    pfn = __rmqueue_claim(mm, zone, order, mt, alloc_flags)
    if pfn is not None:
        return pfn
    if not alloc_flags & ALLOC_NOFRAGMENT:
        return __rmqueue_steal(mm, zone, order, mt)
    return None


def rmqueue_buddy(mm: PageAlloc, zone: Zone, order: int, alloc_flags: int,
                  mt: int) -> int | None:
    """``rmqueue_buddy`` (MM A4): the HighAtomic reserve first for a high-order
    ALLOC_HIGHATOMIC request, then ``__rmqueue``, then the reserve for an OOM or
    non-blocking one."""
    pfn: int | None = None
    if order > 0 and alloc_flags & ALLOC_HIGHATOMIC:
        pfn = __rmqueue_smallest(mm, zone, order, MIGRATE_HIGHATOMIC)
    if pfn is None:
        pfn = __rmqueue(mm, zone, order, mt, alloc_flags)
        if pfn is None and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
            pfn = __rmqueue_smallest(mm, zone, order, MIGRATE_HIGHATOMIC)
    return pfn


def rmqueue(mm: PageAlloc, zone: Zone, order: int, alloc_flags: int, mt: int) -> int | None:
    """``rmqueue`` (MM A4): the per-CPU path for the orders it serves (one ``__rmqueue``
    in the reference model), then ``rmqueue_buddy``; a boosted zone wakes kswapd."""
    pfn: int | None = None
    if order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order:  # pcp_allowed_order
        pfn = __rmqueue(mm, zone, order, mt, alloc_flags)
    if pfn is None:
        pfn = rmqueue_buddy(mm, zone, order, alloc_flags, mt)
    if zone.kswapd_wake and alloc_flags & ALLOC_KSWAPD:
        # kswapd, run synchronously, balances the zone and drops the boost (MM A10).
        zone.kswapd_wake = False
        zone.watermark_boost = 0
    return pfn


# ------------------------------------------------------------------------- watermarks
def __zone_watermark_ok(z: Zone, order: int, mark: int, highest_zoneidx: int,
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


def zone_watermark_ok(z: Zone, order: int, mark: int, highest_zoneidx: int,
                      alloc_flags: int) -> bool:
    """``zone_watermark_ok`` (MM W1): ``__zone_watermark_ok`` on the zone's free pages."""
    return __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags,
                               z.nr_free_pages)


def zone_watermark_fast(z: Zone, order: int, mark: int, highest_zoneidx: int,
                        alloc_flags: int) -> bool:
    """``zone_watermark_fast`` (MM W1), with the W1.6 retry."""
    if __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, z.nr_free_pages):
        return True
    if (not order and alloc_flags & ALLOC_MIN_RESERVE and z.watermark_boost
            and alloc_flags & ALLOC_WMARK_MASK == ALLOC_WMARK_MIN):
        return __zone_watermark_ok(z, order, z._watermark[WMARK_MIN], highest_zoneidx,
                                   alloc_flags, z.nr_free_pages)
    return False


def get_page_from_freelist(mm: PageAlloc, gfp: int, order: int, alloc_flags: int,
                           highest: int, mt: int) -> int | None:
    """``get_page_from_freelist`` (MM A2): the zonelist walk; NOFRAGMENT is dropped for a
    second walk."""
    while True:
        for zone in mm.zonelists[highest]:
            if not alloc_flags & ALLOC_NO_WATERMARKS:
                mark = zone._watermark[alloc_flags & ALLOC_WMARK_MASK] + \
                    zone.watermark_boost
                # Order 0 without reserve flags: W1.1–W1.4 in one comparison.
                if order or alloc_flags & ALLOC_RESERVES or (
                        zone.nr_free_pages - zone.nr_free_highatomic
                        - (0 if alloc_flags & ALLOC_CMA else zone.nr_free_cma)
                        <= mark + zone.lowmem_reserve[highest]):
                    if not zone_watermark_fast(zone, order, mark, highest, alloc_flags):
                        continue
            pfn = rmqueue(mm, zone, order, alloc_flags, mt)
            if pfn is not None:
                zone.numa_hit += 1                  # zone_statistics
                zone.pgalloc += 1 << order          # __count_zid_vm_events(PGALLOC)
                prep_new_page(mm, pfn, order, gfp)
                if alloc_flags & ALLOC_HIGHATOMIC:
                    reserve_highatomic_pageblock(mm, pfn, order, zone)
                return pfn
        if alloc_flags & ALLOC_NOFRAGMENT and not mm.defrag_mode:
            alloc_flags &= ~ALLOC_NOFRAGMENT
            continue
        return None


def post_alloc_hook(mm: PageAlloc, pfn: int, nr: int, gfp: int) -> None:
    """``post_alloc_hook`` (MM P8), its page-contents part: clear the pages when
    init_on_alloc=1 or the request has __GFP_ZERO, unless init_on_free=1 (the pages were
    cleared when they were freed).  [model] ``nr`` pages rather than an order, so that
    ``split_free_pages`` hands a whole range over in one call."""
    if not mm.init_on_free and (mm.init_on_alloc or gfp & __GFP_ZERO):
        mm.clear_pages(pfn, nr)


def prep_new_page(mm: PageAlloc, pfn: int, order: int, gfp: int) -> None:
    """``prep_new_page`` (MM A12): refcount 1, ``post_alloc_hook``, compound head for
    __GFP_COMP."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    mem.refcount[i] = 1
    mem.alloc_order[i] = order
    post_alloc_hook(mm, pfn, 1 << order, gfp)
    if order and gfp & __GFP_COMP:
        mem.flags[i] |= PG_head
        mem.order[i] = order


def alloc_flags_nofragment(mm: PageAlloc, zone: Zone | None, gfp: int) -> int:
    """``alloc_flags_nofragment`` (MM G9); both modelled arches configure ZONE_DMA32."""
    alloc_flags = gfp & __GFP_KSWAPD_RECLAIM
    if mm.defrag_mode:
        return alloc_flags | ALLOC_NOFRAGMENT
    if zone is None or zone.idx != ZONE_NORMAL:
        return alloc_flags
    return alloc_flags | ALLOC_NOFRAGMENT


def gfp_to_alloc_flags(mm: PageAlloc, gfp: int, order: int, mt: int) -> int:
    """``gfp_to_alloc_flags`` (MM G7): the slow path's flags."""
    alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    alloc_flags |= gfp & (__GFP_HIGH | __GFP_KSWAPD_RECLAIM)
    if not gfp & __GFP_DIRECT_RECLAIM:
        if not gfp & __GFP_NOMEMALLOC:
            alloc_flags |= ALLOC_NON_BLOCK
            if order > 0 and alloc_flags & ALLOC_MIN_RESERVE:
                alloc_flags |= ALLOC_HIGHATOMIC
        alloc_flags &= ~ALLOC_CPUSET
    if mt == MIGRATE_MOVABLE:
        alloc_flags |= ALLOC_CMA
    if mm.defrag_mode:
        alloc_flags |= ALLOC_NOFRAGMENT
    return alloc_flags


def alloc_pages(mm: PageAlloc, gfp: int, order: int = 0) -> Page | None:
    """``alloc_pages``: a block of 2^order pages, or None (MM A1–A3)."""
    pfn = __alloc_frozen_pages_noprof(mm, gfp, order)
    return None if pfn is None else Page(mm, pfn)


def __alloc_frozen_pages_noprof(mm: PageAlloc, gfp: int, order: int) -> int | None:
    """``__alloc_frozen_pages_noprof`` (MM A1-A3): the order check, the task's gfp context,
    ``prepare_alloc_pages`` (with ``should_fail_alloc_page``), then the fast path and the
    slow path; the first pfn, or None.

    :raises ValueError: for an order or gfp bits pykern does not know.
    """
    if not isinstance(order, int) or order < 0:
        raise ValueError(f"order {order!r} is not a non-negative int")
    params = mm.gfp_params
    # A gfp seen before (and not to be stripped) is valid: one dict lookup decides.
    cached = params.get(gfp) if type(gfp) is int and not mm.memalloc_pin else None
    if cached is None and (not isinstance(gfp, int) or gfp < 0
                           or gfp & ~__GFP_BITS_MASK):
        raise ValueError(f"gfp {gfp!r} has bits pykern does not know")
    if order > MAX_PAGE_ORDER:
        if not gfp & __GFP_NOWARN:
            mm.log.warn(f"WARNING: mm/page_alloc.c: __alloc_pages_noprof: order {order}"
                        f" > MAX_PAGE_ORDER {MAX_PAGE_ORDER}")
        return None
    if cached is None:
        if mm.memalloc_pin:
            gfp &= ~__GFP_MOVABLE
        cached = params.get(gfp)
        if cached is None:
            cached = params[gfp] = (gfp_zone(gfp), gfp_migratetype(gfp))
    fpa = mm.fail_page_alloc            # prepare_alloc_pages: should_fail_alloc_page
    # fpa.armed, inline: the fast path of every allocation
    if (fpa is not None and (fpa.attr.probability or fpa.fi.nth_pending)
            and __should_fail_alloc_page(fpa, gfp, order)):
        return None
    highest, mt = cached
    if mm.page_group_by_mobility_disabled:
        mt = MIGRATE_UNMOVABLE
    zonelist = mm.zonelists[highest]
    alloc_flags = ALLOC_WMARK_LOW | (gfp & __GFP_KSWAPD_RECLAIM)
    if mt == MIGRATE_MOVABLE:
        alloc_flags |= ALLOC_CMA
    # alloc_flags_nofragment (MM G9), inline
    if mm.defrag_mode or (zonelist and zonelist[0].idx == ZONE_NORMAL):
        alloc_flags |= ALLOC_NOFRAGMENT
    pfn = get_page_from_freelist(mm, gfp, order, alloc_flags, highest, mt)
    if pfn is None:
        pfn = __alloc_pages_slowpath(mm, gfp, order, highest, mt)
    return pfn


def __alloc_pages_slowpath(mm: PageAlloc, gfp: int, order: int, highest: int,
                           mt: int) -> int | None:
    """``__alloc_pages_slowpath`` (MM A3): min watermark and reserves; no reclaim, so
    failure follows."""
    alloc_flags = gfp_to_alloc_flags(mm, gfp, order, mt)
    pfn = get_page_from_freelist(mm, gfp, order, alloc_flags & ~ALLOC_NO_WATERMARKS,
                                 highest, mt)
    if pfn is not None:
        return pfn
    while True:
        if gfp & __GFP_MEMALLOC and not gfp & __GFP_NOMEMALLOC:
            reserve = ALLOC_NO_WATERMARKS | (ALLOC_CMA if mt == MIGRATE_MOVABLE else 0)
            alloc_flags = reserve | (alloc_flags & ALLOC_KSWAPD)
            pfn = get_page_from_freelist(mm, gfp, order, alloc_flags, highest, mt)
            if pfn is not None:
                return pfn
        can_retry = (gfp & __GFP_DIRECT_RECLAIM and not gfp & __GFP_NORETRY
                     and (order <= PAGE_ALLOC_COSTLY_ORDER or gfp & __GFP_RETRY_MAYFAIL))
        while can_retry and unreserve_highatomic_pageblock(mm, highest, mt, True):
            pfn = get_page_from_freelist(mm, gfp, order, alloc_flags, highest, mt)
            if pfn is not None:
                return pfn
        if not (mm.defrag_mode and alloc_flags & ALLOC_NOFRAGMENT):
            break
        # MM G9: under defrag_mode the fallback comes only here, where the kernel's
        # slow path gives up on reclaim/compaction ("nopage"), and retries.
        alloc_flags &= ~ALLOC_NOFRAGMENT
        pfn = get_page_from_freelist(mm, gfp, order, alloc_flags & ~ALLOC_NO_WATERMARKS,
                                     highest, mt)
        if pfn is not None:
            return pfn
    if gfp & __GFP_NOFAIL:
        mm.log.warn(f"pykern: __GFP_NOFAIL allocation of order {order} fails: "
                    "no reclaim, compaction or OOM killer is modelled")
    if not gfp & __GFP_NOWARN:
        mm.log.warn(f"pykern: page allocation failure: order:{order}, "
                    f"mode:{gfp:#x}({format_gfp(gfp)}), nodemask=(null)")
    return None


# ------------------------------------------------------------------------- highatomic
def reserve_highatomic_pageblock(mm: PageAlloc, pfn: int, order: int, zone: Zone) -> None:
    """``reserve_highatomic_pageblock`` (MM A11.1): make the block's pageblock a
    HighAtomic reserve, up to about 1% of the zone."""
    if zone.managed_pages // 100 < pageblock_nr_pages:
        return
    max_managed = -(-(zone.managed_pages // 100) // pageblock_nr_pages) * \
        pageblock_nr_pages
    if zone.nr_reserved_highatomic >= max_managed:
        return
    mt = get_pfnblock_migratetype(mm, pfn)
    if not migratetype_is_mergeable(mt):
        return
    if order < pageblock_order:
        if move_freepages_block(mm, zone, pfn, mt, MIGRATE_HIGHATOMIC) == -1:
            return
        zone.nr_reserved_highatomic += pageblock_nr_pages
    else:
        change_pageblock_range(mm, pfn, order, MIGRATE_HIGHATOMIC)
        zone.nr_reserved_highatomic += 1 << order


def unreserve_highatomic_pageblock(mm: PageAlloc, highest: int, mt: int,
                                   force: bool) -> bool:
    """``unreserve_highatomic_pageblock`` (MM A11.4): give one HighAtomic pageblock back to
    ``mt``."""
    for zone in mm.zonelists[highest]:
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
                ret = move_freepages_block(mm, zone, pfn, MIGRATE_HIGHATOMIC, mt)
            else:
                move_to_free_list(mm, pfn, zone, order, MIGRATE_HIGHATOMIC, mt)
                change_pageblock_range(mm, pfn, order, mt)
                ret = 1
            if ret > 0:
                return True
    return False


# -------------------------------------------------------------------------- zonelists
def build_all_zonelists(mm: PageAlloc) -> None:
    """``build_all_zonelists`` (MM G4): populated zones at or below each index, highest
    first."""
    zones = mm.zones
    zonelists = []
    highest_first: list[Zone] = []
    for h in range(MAX_NR_ZONES):
        if h < len(zones) and zones[h].populated_zone():
            highest_first = [zones[h]] + highest_first
        else:
            highest_first = highest_first[:]
        zonelists.append(highest_first)
    mm.zonelists = zonelists


def nr_free_zone_pages(mm: PageAlloc, highest: int) -> int:
    """``nr_free_zone_pages``: managed pages above the high watermark in the zones up to
    ``highest``."""
    total = 0
    for z in mm.zones[:highest + 1]:
        free = z.managed_pages - z._watermark[WMARK_HIGH]
        if free > 0:
            total += free
    return total


def set_mobility_grouping(mm: PageAlloc) -> None:
    """``page_group_by_mobility_disabled`` as ``build_all_zonelists`` sets it (MM Z8)."""
    total = nr_free_zone_pages(mm, gfp_zone(G.GFP_HIGHUSER_MOVABLE))
    mm.page_group_by_mobility_disabled = total < pageblock_nr_pages * MIGRATE_TYPES


def calculate_min_free_kbytes(mm: PageAlloc) -> None:
    """``calculate_min_free_kbytes`` (MM Z6.1): sqrt(16 * lowmem KiB), clamped, unless the
    user set a larger value."""
    lowmem_kbytes = nr_free_zone_pages(mm, gfp_zone(G.GFP_USER)) * 4
    new = isqrt(lowmem_kbytes * 16)
    if new > mm.user_min_free_kbytes:
        mm.min_free_kbytes = min(max(new, 128), 262144)
    else:
        mm.log.warn(f"min_free_kbytes is not updated to {new} because user defined "
                    f"value {mm.user_min_free_kbytes} is preferred")


def setup_per_zone_wmarks(mm: PageAlloc) -> None:
    """``setup_per_zone_wmarks`` (MM Z6.2–Z6.4), then totalreserve_pages."""
    pages_min = mm.min_free_kbytes >> 2
    zones = mm.zones
    lowmem = 0
    for z in zones:
        if z.idx != ZONE_MOVABLE:
            lowmem += z.managed_pages
    scale = mm.watermark_scale_factor
    for z in zones:
        managed = z.managed_pages
        tmp = pages_min * managed // lowmem if lowmem else 0
        if z.idx == ZONE_MOVABLE:
            wmin = managed // 1024              # clamped to 32..128
            wmin = 32 if wmin < 32 else 128 if wmin > 128 else wmin
        else:
            wmin = tmp
        tmp >>= 2
        step = managed * scale // 10000
        if step > tmp:
            tmp = step
        z.watermark_boost = 0
        wmark = z._watermark
        wmark[WMARK_MIN] = wmin
        wmark[WMARK_LOW] = wmin + tmp
        wmark[WMARK_HIGH] = wmin + tmp + tmp
        wmark[WMARK_PROMO] = wmin + tmp + tmp + tmp
    calculate_totalreserve_pages(mm)


def setup_per_zone_lowmem_reserve(mm: PageAlloc) -> None:
    """``setup_per_zone_lowmem_reserve`` (MM Z7), then totalreserve_pages."""
    zones = mm.zones
    ratios = mm.lowmem_reserve_ratio
    for i in range(MAX_NR_ZONES - 1):
        zone = zones[i]
        ratio = ratios[i]
        clear = not ratio or not zone.managed_pages
        reserve = zone.lowmem_reserve
        managed = 0
        for j in range(i + 1, MAX_NR_ZONES):
            managed += zones[j].managed_pages
            reserve[j] = 0 if clear else managed // ratio
    calculate_totalreserve_pages(mm)


def calculate_totalreserve_pages(mm: PageAlloc) -> None:
    """``calculate_totalreserve_pages``: per zone the largest lowmem reserve plus the high
    watermark, capped at the managed pages."""
    total = 0
    i = 0
    for zone in mm.zones:
        top = 0                                 # the largest of 0 and lowmem_reserve[i:]
        for reserve in zone.lowmem_reserve[i:]:
            if reserve > top:
                top = reserve
        top += zone._watermark[WMARK_HIGH]
        managed = zone.managed_pages
        total += top if top < managed else managed
        i += 1
    mm.totalreserve_pages = total


def init_per_zone_wmark_min(mm: PageAlloc) -> None:
    """``init_per_zone_wmark_min`` (MM Z6, Z7): min_free_kbytes, the watermarks, the lowmem
    reserves."""
    calculate_min_free_kbytes(mm)
    setup_per_zone_wmarks(mm)
    setup_per_zone_lowmem_reserve(mm)


# ------------------------------------------------------------------------------- m.mm
#: The fields PageAlloc.__init__ sets (the compiled build declares them in page_alloc.pxd).
_PAGEALLOC_FIELDS = (
    "mem_map", "zones", "log", "arch", "clear_pages", "init_on_alloc", "init_on_free",
    "min_free_kbytes", "user_min_free_kbytes", "watermark_scale_factor",
    "watermark_boost_factor", "defrag_mode", "percpu_pagelist_high_fraction",
    "lowmem_reserve_ratio", "page_group_by_mobility_disabled", "totalreserve_pages",
    "totalcma_pages", "memalloc_pin", "vm_events", "pgfree", "zonelists", "zone_spans",
    "gfp_params", "fail_page_alloc",
)


class PageAlloc:
    """``m.mm``: the memmap, zones and buddy allocator of one boot.

    The kernel functions of this module take it first; its methods are the user-facing
    API: ``alloc_pages``, ``free_pages`` (``__free_pages``), ``get_page``, ``put_page``,
    ``page_zone`` and ``set_pageblock_migratetype`` are those functions themselves, the
    rest look the allocator over.
    """

    def __init__(self, mem_map: MemMap, zones: list[Zone], log: KernelLog,
                 clear_pages: Callable[[int, int], None], *, arch: str,
                 init_on_alloc: bool = False, init_on_free: bool = False) -> None:
        self.mem_map = mem_map
        self.zones = zones
        self.log = log
        self.arch = arch
        #: Zeroes ``nr`` pages from a pfn (the machine's RAM).
        self.clear_pages = clear_pages
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
        #: Per highest zone index, the populated zones to try, highest first (MM G4).
        self.zonelists: list[list[Zone]] = []
        build_all_zonelists(self)
        #: (start pfn, end pfn, zone) of every zone that spans pages (spans are fixed).
        self.zone_spans = [(z.zone_start_pfn, z.zone_end_pfn, z) for z in zones
                           if z.spanned_pages]
        #: gfp (after the G2 strip) → (highest zone, migratetype), MM G1/G3; valid gfps only.
        self.gfp_params: dict[int, tuple[int, int]] = {}
        #: mm/fail_page_alloc.c's state (set at boot, :mod:`pykern.mm.fail_page_alloc`).
        self.fail_page_alloc: FailPageAlloc | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Both builds save the same (class, fields) pair (see mmzone._rebuild); the compiled
        # build keeps the declared fields outside __dict__, hence the merge.
        state = dict(vars(self))
        state.update((name, getattr(self, name)) for name in _PAGEALLOC_FIELDS)
        return _rebuild, (type(self), state)

    # The kernel functions that are also the user-facing API.
    alloc_pages = alloc_pages
    free_pages = free_pages
    get_page = get_page
    put_page = put_page
    page_zone = page_zone
    set_pageblock_migratetype = set_pageblock_migratetype

    def pfn_to_page(self, pfn: int) -> Page:
        """``pfn_to_page``: a handle; raises ValueError for a pfn that is not RAM."""
        _check_pfn(self, pfn)
        return Page(self, pfn)

    def nr_free_pages(self) -> int:
        """NR_FREE_PAGES summed over zones (MM P6)."""
        return sum(z.nr_free_pages for z in self.zones)

    def free_list(self, zone: str, order: int, mt: str) -> list[int]:
        """First pfns of the free blocks on list(order, mt) of ``zone``, head first."""
        if mt not in migratetype_names:
            raise ValueError(f"no migratetype {mt!r} (types: {', '.join(migratetype_names)})")
        if not isinstance(order, int) or not 0 <= order <= MAX_PAGE_ORDER:
            raise ValueError(f"order {order!r} out of range 0..{MAX_PAGE_ORDER}")
        return list(_zone_by_name(self, zone).free_list[order][migratetype_names.index(mt)])

    def pageblock_type(self, pfn: int) -> str:
        """Display name of the type of the pageblock holding ``pfn`` (MM P4), as
        ``migratetype_names`` spells it."""
        _check_pfn(self, pfn)
        return migratetype_names[get_pfnblock_migratetype(self, pfn)]

    def page_is_free(self, pfn: int) -> bool:
        """True when ``pfn`` lies in a free buddy block (``is_free_buddy_page``)."""
        _check_pfn(self, pfn)
        return is_free_buddy_page(self, pfn)

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
        mem = self.mem_map
        seen: list[tuple[int, int]] = []
        for zone in self.zones:
            nr_free = [0] * NR_PAGE_ORDERS
            free = cma = highatomic = blocks = 0
            for order in range(NR_PAGE_ORDERS):
                for mt in range(MIGRATE_TYPES):
                    fl: OrderedDict[int, None] = zone.free_list[order][mt]
                    for pfn in fl:
                        i = pfn - mem.base_pfn
                        n = 1 << order
                        assert pfn % n == 0, f"free block {pfn:#x} not aligned to order {order}"
                        assert zone.zone_spans_pfn(pfn) and zone.zone_spans_pfn(pfn + n - 1), \
                            f"free block {pfn:#x} order {order} leaves zone {zone.name}"
                        assert mem.flags[i] & PG_buddy and mem.order[i] == order, \
                            f"free block {pfn:#x} lacks its buddy marker/order"
                        assert mem.freelist_mt[i] == mt
                        block_mt = get_pfnblock_migratetype(self, pfn)
                        assert block_mt == mt, (f"free block {pfn:#x} on {migratetype_names[mt]}"
                                                f" list in a {migratetype_names[block_mt]} block")
                        assert not mem.flags[i] & PG_reserved
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
            heads = mem.flags[a0 - mem.base_pfn + 1:a1 - mem.base_pfn]
            assert not any(b & PG_buddy for b in heads), f"buddy marker inside block {a0:#x}"
