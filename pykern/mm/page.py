"""``struct page`` and the pageblock bitmap, as compact arrays.

Every field of MM P1 is one array indexed by ``pfn - mem_map.base_pfn``; the
span starts at a MAX_PAGE_ORDER-aligned pfn so buddy arithmetic stays simple.
Pfns in holes have array slots (like sparsemem's memmap for a partly present
section) but are never valid (``pfn_valid``).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from .mmzone import MAX_ORDER_NR_PAGES, PAGE_SHIFT, _rebuild, _slot_state, pageblock_order

if TYPE_CHECKING:
    from .page_alloc import PageAlloc

__all__ = [
    "PG_buddy", "PG_reserved", "PG_lru", "PG_movable_ops", "PG_head", "PG_anon",
    "PG_unevictable", "PG_valid", "NO_ALLOC", "PB_migrate_mask", "PB_migrate_skip",
    "PB_migrate_isolate", "MemMap", "Page", "pfn_valid",
]

# Bits of MemMap.flags (one byte per page).
PG_valid = 0x01        #: the pfn is RAM (not a hole, not beyond mem=)
PG_buddy = 0x02        #: first page of a free buddy block
PG_reserved = 0x04     #: never handed to the buddy allocator
PG_lru = 0x08          #: on an LRU list (a task's anonymous page)
PG_movable_ops = 0x10  #: non-LRU page with migration callbacks
PG_head = 0x20         #: head of a compound page
PG_anon = 0x40         #: anonymous mapping
PG_unevictable = 0x80

#: ``MemMap.alloc_order`` value of a page that is not the first page of an
#: allocation (pykern bookkeeping that lets misuse be caught, MM V2).
NO_ALLOC = 0xFF

# Pageblock bits (MM C1.9): three bits of type, the skip bit, the isolate bit.
PB_migrate_mask = 0x07
PB_migrate_skip = 0x08
PB_migrate_isolate = 0x10


def _zeros(typecode: str, n: int) -> array[int]:
    return array(typecode, (0,)) * n


def pfn_valid(mem: MemMap, pfn: int) -> bool:
    """``pfn_valid``: ``pfn`` is RAM that this kernel knows about (not a hole, not beyond
    ``mem=``)."""
    i = pfn - mem.base_pfn
    return 0 <= i < len(mem.flags) and bool(mem.flags[i] & PG_valid)


class MemMap:
    """The memmap: per-page arrays and per-pageblock flags for one machine.

    Cost: 16 bytes per page plus one per pageblock.  ``mapcount`` and ``pincount`` (8 of
    the 16) are made, all zero, the first time they are read: only user mappings and pins
    change them, and a boot that has none (most of the fuzzer's) never writes the pages
    they would take.
    """

    __slots__ = ("base_pfn", "end_pfn", "flags", "order", "alloc_order", "freelist_mt",
                 "refcount", "_mapcount", "_pincount", "pageblock_flags")

    def __init__(self, start_pfn: int, end_pfn: int) -> None:
        base = start_pfn & ~(MAX_ORDER_NR_PAGES - 1)
        end = (end_pfn + MAX_ORDER_NR_PAGES - 1) & ~(MAX_ORDER_NR_PAGES - 1)
        n = end - base
        self.base_pfn = base
        self.end_pfn = end
        self.flags = bytearray(n)
        self.order = bytearray(n)           # buddy order, or compound order of a head
        self.alloc_order = bytearray(b"\xff") * n
        self.freelist_mt = bytearray(n)     # list a free block head sits on
        self.refcount = _zeros("i", n)
        self._mapcount: array[int] | None = None
        self._pincount: array[int] | None = None
        self.pageblock_flags = bytearray(n >> pageblock_order)

    @property
    def mapcount(self) -> array[int]:
        """``page->_mapcount`` per slot (user mappings), made all zero on first use."""
        a = self._mapcount
        if a is None:
            a = self._mapcount = _zeros("i", self.end_pfn - self.base_pfn)
        return a

    @mapcount.setter
    def mapcount(self, value: array[int]) -> None:
        self._mapcount = value

    @property
    def pincount(self) -> array[int]:
        """``folio->_pincount`` per slot (FOLL_PIN pins), made all zero on first use."""
        a = self._pincount
        if a is None:
            a = self._pincount = _zeros("i", self.end_pfn - self.base_pfn)
        return a

    @pincount.setter
    def pincount(self, value: array[int]) -> None:
        self._pincount = value

    @property
    def nr_slots(self) -> int:
        return self.end_pfn - self.base_pfn

    pfn_valid = pfn_valid

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), _slot_state(self))

    def metadata_bytes(self) -> int:
        """Bytes of per-page and per-pageblock state (for the memory bench), the two
        arrays made on first use counted as if made."""
        byte_arrays = (self.flags, self.order, self.alloc_order, self.freelist_mt,
                       self.pageblock_flags)
        return (sum(len(a) for a in byte_arrays)
                + len(self.refcount) * self.refcount.itemsize * 3)


class Page:
    """A light handle on one ``struct page``: ``pfn``, ``phys`` and the fields.

    Handles compare equal when they name the same pfn of the same machine.
    """

    __slots__ = ("pfn", "_mm")

    def __init__(self, mm: PageAlloc, pfn: int) -> None:
        self.pfn = pfn
        self._mm = mm

    @property
    def phys(self) -> int:
        return self.pfn << PAGE_SHIFT

    def _i(self) -> int:
        return self.pfn - self._mm.mem_map.base_pfn

    @property
    def refcount(self) -> int:
        """``page_ref_count``."""
        return self._mm.mem_map.refcount[self._i()]

    @property
    def mapcount(self) -> int:
        return self._mm.mem_map.mapcount[self._i()]

    def _flag(self, bit: int) -> bool:
        return bool(self._mm.mem_map.flags[self._i()] & bit)

    @property
    def buddy(self) -> bool:
        """``PageBuddy``: the first page of a free block."""
        return self._flag(PG_buddy)

    @property
    def reserved(self) -> bool:
        """``PageReserved``."""
        return self._flag(PG_reserved)

    @property
    def lru(self) -> bool:
        """``PageLRU``."""
        return self._flag(PG_lru)

    @property
    def buddy_order(self) -> int:
        """Order of the free block this page heads (meaningful only if ``buddy``)."""
        return self._mm.mem_map.order[self._i()]

    @property
    def zone(self) -> str:
        """Name of the zone the page lies in (``page_zone``)."""
        return self._mm.page_zone(self.pfn).name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Page) and other.pfn == self.pfn and other._mm is self._mm

    def __hash__(self) -> int:
        return hash(self.pfn)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), _slot_state(self))

    def __repr__(self) -> str:
        return f"<Page pfn={self.pfn:#x} phys={self.phys:#x}>"
