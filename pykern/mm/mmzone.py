"""Constants and the ``struct zone`` model (``include/linux/mmzone.h``).

Free lists are one insertion-ordered ``OrderedDict`` per (order, migratetype):
``move_to_end(pfn, False)`` gives O(1) head insertion, ``popitem(False)`` O(1)
head removal and ``del`` O(1) unlinking, as the kernel's doubly linked lists do.
The compiled build threads the same lists through per-page link arrays instead
(``pykern._fast._freelist_c``), with the same interface and the same order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, TypeVar

from .._fast import new_free_lists
from ..constants import PAGE_SHIFT, PAGE_SIZE

_T = TypeVar("_T")

__all__ = [
    "PAGE_SHIFT", "PAGE_SIZE", "MAX_PAGE_ORDER", "NR_PAGE_ORDERS", "MAX_ORDER_NR_PAGES",
    "pageblock_order", "pageblock_nr_pages", "PAGE_ALLOC_COSTLY_ORDER",
    "MIGRATE_UNMOVABLE", "MIGRATE_MOVABLE", "MIGRATE_RECLAIMABLE", "MIGRATE_HIGHATOMIC",
    "MIGRATE_PCPTYPES", "MIGRATE_CMA", "MIGRATE_ISOLATE", "MIGRATE_TYPES",
    "migratetype_names", "ZONE_DMA", "ZONE_DMA32", "ZONE_NORMAL", "ZONE_MOVABLE",
    "MAX_NR_ZONES", "zone_names", "WMARK_MIN", "WMARK_LOW", "WMARK_HIGH", "WMARK_PROMO",
    "migratetype_is_mergeable", "is_migrate_movable", "fallbacks", "Zone",
    "PFN_PHYS", "PHYS_PFN", "pageblock_start_pfn", "pageblock_align", "zone_end_pfn",
    "zone_spans_pfn", "populated_zone", "wmark_pages",
]

MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER
pageblock_order = 9
pageblock_nr_pages = 1 << pageblock_order
PAGE_ALLOC_COSTLY_ORDER = 3

MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES
MIGRATE_CMA = 4
MIGRATE_ISOLATE = 5
MIGRATE_TYPES = 6
migratetype_names = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE = 0, 1, 2, 3
MAX_NR_ZONES = 4
zone_names = ("DMA", "DMA32", "Normal", "Movable")

WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = 0, 1, 2, 3

#: MM C1.8: who may take pages from whom, in order of preference.
fallbacks: tuple[tuple[int, ...], ...] = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
)


def _rebuild(cls: type[_T], state: dict[str, Any]) -> _T:
    """Unpickle what a ``__reduce__`` of this package saved: a bare instance, then its fields.

    The compiled build makes Zone, MemMap, Page and PageAlloc extension types; saving them
    as (class, fields) keeps one snapshot format for both builds."""
    obj = cls.__new__(cls)
    for name, value in state.items():
        setattr(obj, name, value)
    return obj


def _rebuild_zone(cls: type[Zone], state: dict[str, Any]) -> Zone:
    """Unpickle a zone: its free lists are saved as pfn lists, head first, and rebuilt as the
    running build keeps them."""
    pfns = state.pop("free_list")
    zone = _rebuild(cls, state)
    zone.free_list = new_free_lists(zone.zone_start_pfn,
                                    zone.zone_start_pfn + zone.spanned_pages,
                                    NR_PAGE_ORDERS, MIGRATE_TYPES)
    for lists, saved in zip(zone.free_list, pfns):
        for fl, items in zip(lists, saved):
            for pfn in items:
                fl[pfn] = None
    return zone


def _slot_state(obj: Any) -> dict[str, Any]:
    """The fields ``_rebuild`` restores: every slot of ``obj`` that is set."""
    return {name: getattr(obj, name) for name in type(obj).__slots__ if hasattr(obj, name)}


def PFN_PHYS(pfn: int) -> int:
    """``PFN_PHYS``: the physical address of a pfn."""
    return pfn << PAGE_SHIFT


def PHYS_PFN(phys: int) -> int:
    """``PHYS_PFN``: the pfn holding a physical address."""
    return phys >> PAGE_SHIFT


def pageblock_start_pfn(pfn: int) -> int:
    """``pageblock_start_pfn``: the first pfn of the pageblock holding ``pfn``."""
    return pfn & ~(pageblock_nr_pages - 1)


def pageblock_align(pfn: int) -> int:
    """``pageblock_align``: ``pfn`` rounded up to a pageblock boundary."""
    return -(-pfn // pageblock_nr_pages) * pageblock_nr_pages


def migratetype_is_mergeable(mt: int) -> bool:
    """``migratetype_is_mergeable`` (MM C1.6): Unmovable, Movable and Reclaimable merge
    with each other."""
    return mt < MIGRATE_PCPTYPES


def is_migrate_movable(mt: int) -> bool:
    """``is_migrate_movable`` (MM C1.7): Movable and CMA."""
    return mt == MIGRATE_MOVABLE or mt == MIGRATE_CMA


def zone_end_pfn(zone: Zone) -> int:
    """``zone_end_pfn``: the pfn after the zone's span."""
    return zone.zone_start_pfn + zone.spanned_pages


def zone_spans_pfn(zone: Zone, pfn: int) -> bool:
    """``zone_spans_pfn``: ``pfn`` lies in the zone's span."""
    return zone.zone_start_pfn <= pfn < zone.zone_start_pfn + zone.spanned_pages


def populated_zone(zone: Zone) -> bool:
    """``populated_zone``: the zone has present pages."""
    return zone.present_pages > 0


def wmark_pages(zone: Zone, which: int) -> int:
    """``wmark_pages``: the stored watermark plus the boost (MM A10)."""
    return zone._watermark[which] + zone.watermark_boost


class Zone:
    """One ``struct zone``: span, page counts, free areas, counters, watermarks.

    ``free_list[order][mt]`` holds the first pfns of free blocks, head first.
    """

    __slots__ = (
        "idx", "name", "zone_start_pfn", "spanned_pages", "present_pages",
        "managed_pages", "cma_pages", "free_list", "nr_free", "nr_free_pages",
        "nr_free_cma", "nr_free_highatomic", "nr_free_pages_blocks", "_watermark",
        "watermark_boost", "lowmem_reserve", "nr_reserved_highatomic",
        "nr_isolate_pageblock", "numa_hit", "pgalloc", "nr_inactive_anon", "kswapd_wake",
    )

    def __init__(self, idx: int, start_pfn: int, end_pfn: int) -> None:
        self.idx = idx
        self.name = zone_names[idx]
        self.zone_start_pfn = start_pfn
        self.spanned_pages = end_pfn - start_pfn
        self.present_pages = 0
        self.managed_pages = 0
        self.cma_pages = 0
        self.free_list: list[list[OrderedDict[int, None]]] = new_free_lists(
            start_pfn, end_pfn, NR_PAGE_ORDERS, MIGRATE_TYPES)
        self.nr_free = [0] * NR_PAGE_ORDERS
        self.nr_free_pages = 0
        self.nr_free_cma = 0
        self.nr_free_highatomic = 0
        self.nr_free_pages_blocks = 0
        self._watermark = [0, 0, 0, 0]
        self.watermark_boost = 0
        self.lowmem_reserve = [0] * MAX_NR_ZONES
        self.nr_reserved_highatomic = 0
        self.nr_isolate_pageblock = 0
        self.numa_hit = 0
        #: /proc/vmstat ``pgalloc_<zone>``: pages the buddy allocator handed out here.
        self.pgalloc = 0
        self.nr_inactive_anon = 0
        self.kswapd_wake = False

    # The mmzone.h helpers, bound to the zone (``zone.zone_end_pfn`` reads as a field).
    zone_end_pfn = property(zone_end_pfn)
    zone_spans_pfn = zone_spans_pfn
    populated_zone = populated_zone
    wmark_pages = wmark_pages

    def __reduce__(self) -> tuple[Any, ...]:
        state = _slot_state(self)
        state["free_list"] = [[list(fl) for fl in lists] for lists in self.free_list]
        return _rebuild_zone, (type(self), state)

    def __repr__(self) -> str:
        return (f"<Zone {self.name} pfn {self.zone_start_pfn:#x}+{self.spanned_pages:#x}"
                f" managed={self.managed_pages} free={self.nr_free_pages}>")
