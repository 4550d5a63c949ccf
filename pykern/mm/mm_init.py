"""Boot-time page initialisation helpers (``mm/mm_init.c``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .mmzone import MIGRATE_CMA, pageblock_nr_pages, pageblock_order
from .page import PG_valid

if TYPE_CHECKING:
    from .page_alloc import PageAlloc

__all__ = ["init_cma_reserved_pageblock", "free_reserved_page"]


def _unreserve_as_allocation(mm: PageAlloc, pfn: int, order: int) -> None:
    """Turn reserved pages into one allocated block of ``order``, ready to free."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    n = 1 << order
    mem.flags[i:i + n] = bytes([PG_valid]) * n
    mem.refcount[i] = 1
    mem.alloc_order[i] = order


def init_cma_reserved_pageblock(mm: PageAlloc, pfn: int) -> None:
    """``init_cma_reserved_pageblock`` (MM CMA5.3): one reserved pageblock becomes a free
    CMA pageblock."""
    _unreserve_as_allocation(mm, pfn, pageblock_order)
    mm.set_pageblock_migratetype(pfn, MIGRATE_CMA)
    mm.free_pages(pfn, pageblock_order)
    zone = mm.page_zone(pfn)
    zone.managed_pages += pageblock_nr_pages
    zone.cma_pages += pageblock_nr_pages


def free_reserved_page(mm: PageAlloc, pfn: int) -> None:
    """Hand one reserved page to the buddy allocator (``free_reserved_page``)."""
    _unreserve_as_allocation(mm, pfn, 0)
    mm.free_pages(pfn, 0)
    mm.page_zone(pfn).managed_pages += 1
