"""The boot-time memory map (``mm/memblock.c``): memory and reserved regions.

Regions are kept sorted and merged: adjacent or overlapping reservations
become one region, as ``memblock_reserve`` merges them (MM T6.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .mmzone import MAX_ORDER_NR_PAGES, MAX_PAGE_ORDER, PAGE_SIZE
from .page_alloc import __free_pages_core, page_zone

if TYPE_CHECKING:
    from .page_alloc import PageAlloc

__all__ = ["Memblock", "merge_add", "subtract", "memblock_add", "memblock_remove",
           "memblock_reserve", "memblock_phys_free", "memblock_start_of_DRAM",
           "memblock_end_of_DRAM", "memblock_is_region_memory", "memblock_is_region_reserved",
           "for_each_free_mem_range", "memblock_find_in_range", "__free_pages_memory",
           "memblock_mem_limit_remove_map", "clip_to_memory"]

Range = tuple[int, int]  # [base, end)


def merge_add(regions: list[Range], base: int, end: int) -> None:
    """Insert ``[base, end)`` into a sorted, merged list, merging neighbours."""
    if end <= base:
        return
    out: list[Range] = []
    placed = False
    for b, e in regions:
        if e < base:
            out.append((b, e))
        elif end < b:
            if not placed:
                out.append((base, end))
                placed = True
            out.append((b, e))
        else:
            base, end = min(base, b), max(end, e)
    if not placed:
        out.append((base, end))
    regions[:] = out


def subtract(regions: list[Range], base: int, end: int) -> list[Range]:
    """``regions`` minus ``[base, end)``, still sorted."""
    out: list[Range] = []
    for b, e in regions:
        if e <= base or b >= end:
            out.append((b, e))
            continue
        if b < base:
            out.append((b, base))
        if e > end:
            out.append((end, e))
    return out


def memblock_add(mb: Memblock, base: int, size: int) -> None:
    """``memblock_add``: ``[base, base + size)`` becomes memory."""
    merge_add(mb.memory, base, base + size)


def memblock_remove(mb: Memblock, base: int, size: int) -> None:
    """``memblock_remove``: the range is neither memory nor reserved any more."""
    mb.memory = subtract(mb.memory, base, base + size)
    mb.reserved = subtract(mb.reserved, base, base + size)


def memblock_reserve(mb: Memblock, base: int, size: int) -> None:
    """``memblock_reserve`` (MM T6.3): reserve the range, merged with its neighbours."""
    merge_add(mb.reserved, base, base + size)


def memblock_phys_free(mb: Memblock, base: int, size: int) -> None:
    """``memblock_phys_free``: give a reservation back."""
    mb.reserved = subtract(mb.reserved, base, base + size)


def memblock_start_of_DRAM(mb: Memblock) -> int:
    """``memblock_start_of_DRAM``: the lowest address of memory."""
    return mb.memory[0][0]


def memblock_end_of_DRAM(mb: Memblock) -> int:
    """``memblock_end_of_DRAM``: the end of the highest region of memory."""
    return mb.memory[-1][1]


def memblock_is_region_memory(mb: Memblock, base: int, size: int) -> bool:
    """``memblock_is_region_memory``: the whole range is memory."""
    return any(b <= base and base + size <= e for b, e in mb.memory)


def memblock_is_region_reserved(mb: Memblock, base: int, size: int) -> bool:
    """``memblock_is_region_reserved``: some byte of the range is reserved."""
    end = base + size
    return any(b < end and base < e for b, e in mb.reserved)


def for_each_free_mem_range(mb: Memblock) -> Iterator[Range]:
    """``for_each_free_mem_range``: memory minus reservations, ascending."""
    for b, e in mb.memory:
        pieces = [(b, e)]
        for rb, re_ in mb.reserved:
            if rb >= e:
                break
            if re_ > b:
                pieces = subtract(pieces, rb, re_)
        yield from pieces


def memblock_find_in_range(mb: Memblock, size: int, align: int, start: int, end: int,
                           top_down: bool = True) -> int | None:
    """``memblock_find_in_range``: an aligned free range inside [start, end).

    Top-down returns the highest fit, bottom-up the lowest.
    """
    free = [(max(b, start), min(e, end)) for b, e in for_each_free_mem_range(mb)
            if min(e, end) > max(b, start)]
    if top_down:
        for b, e in reversed(free):
            cand = (e - size) & ~(align - 1)
            if e - size >= 0 and cand >= b:
                return cand
    else:
        for b, e in free:
            cand = (b + align - 1) & ~(align - 1)
            if cand + size <= e:
                return cand
    return None


class Memblock:
    """``memblock.memory`` and ``memblock.reserved`` of one boot.

    The methods are this module's kernel functions bound to the memblock (``mb.memblock_add
    (base, size)`` is ``memblock_add(mb, base, size)``); ``is_region_memory``,
    ``is_region_reserved`` and ``find_in_range`` are ``memblock_is_region_memory``,
    ``memblock_is_region_reserved`` and ``memblock_find_in_range``.
    """

    __slots__ = ("memory", "reserved")

    def __init__(self) -> None:
        self.memory: list[Range] = []
        self.reserved: list[Range] = []

    memblock_add = memblock_add
    memblock_remove = memblock_remove
    memblock_reserve = memblock_reserve
    memblock_phys_free = memblock_phys_free
    memblock_start_of_DRAM = memblock_start_of_DRAM
    memblock_end_of_DRAM = memblock_end_of_DRAM
    memblock_is_region_memory = memblock_is_region_memory
    memblock_is_region_reserved = memblock_is_region_reserved
    for_each_free_mem_range = for_each_free_mem_range
    memblock_find_in_range = memblock_find_in_range
    is_region_memory = memblock_is_region_memory
    is_region_reserved = memblock_is_region_reserved
    find_in_range = memblock_find_in_range


def __free_pages_memory(mm: PageAlloc, start: int, end: int) -> None:
    """``__free_pages_memory`` (MM Z4): hand the pfns [start, end) to the buddy allocator
    in the largest aligned chunks (``__free_pages_core``, to the tail of their lists); a
    chunk never spans two zones."""
    s = start
    zone_end = 0                # end of the zone holding s, looked up when s reaches it
    while s < end:
        if s >= zone_end:
            zone = page_zone(mm, s)
            zone_end = zone.zone_start_pfn + zone.spanned_pages
        stop = end if end < zone_end else zone_end
        if not s & (MAX_ORDER_NR_PAGES - 1) and s + MAX_ORDER_NR_PAGES <= stop:
            # from a MAX_PAGE_ORDER-aligned s every chunk is a whole MAX_PAGE_ORDER block
            # until less than one is left: the general step below, repeated
            top = stop & ~(MAX_ORDER_NR_PAGES - 1)
            for p in range(s, top, MAX_ORDER_NR_PAGES):
                __free_pages_core(mm, p, MAX_PAGE_ORDER)
            s = top
            continue
        order = MAX_PAGE_ORDER if s == 0 else min(MAX_PAGE_ORDER, (s & -s).bit_length() - 1)
        # the largest order left that still ends by `end` and by the zone's end
        room = stop - s
        if room >> order == 0:
            order = room.bit_length() - 1
        __free_pages_core(mm, s, order)
        s += 1 << order


def memblock_mem_limit_remove_map(mb: Memblock, limit: int) -> None:
    """``memblock_mem_limit_remove_map`` (MM Z0.1), arm64's ``mem=``: keep the first
    ``limit`` bytes of memory counted across the regions in address order (cut at a page
    boundary) and remove the rest."""
    left, cut = limit, memblock_end_of_DRAM(mb)
    for b, e in mb.memory:
        if e - b >= left:
            cut = b + left
            break
        left -= e - b
    cut &= ~(PAGE_SIZE - 1)
    end = memblock_end_of_DRAM(mb)
    if cut < end:
        memblock_remove(mb, cut, end - cut)


def clip_to_memory(mb: Memblock, base: int, end: int) -> list[Range]:
    """The pieces of ``[base, end)`` that are memory.  [model] pykern reserves only what is
    memory, so a default boot reservation over a hole or beyond ``mem=`` is dropped there."""
    return [(max(b, base), min(e, end)) for b, e in mb.memory if min(e, end) > max(b, base)]
