"""Boot-time memory initialisation (``mm/mm_init.c``): the zones and the memmap
(``free_area_init``), the release of boot memory to the buddy allocator
(``memblock_free_all``) and the helpers that turn reserved pages into free ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .mmzone import (
    MAX_ORDER_NR_PAGES, MIGRATE_CMA, MIGRATE_MOVABLE, PAGE_SHIFT, PAGE_SIZE, ZONE_MOVABLE, Zone,
    pageblock_nr_pages, pageblock_order, zone_names,
)
from .memblock import (
    __free_pages_memory, for_each_free_mem_range, memblock_end_of_DRAM, memblock_start_of_DRAM,
)
from .page import PG_reserved, PG_valid, MemMap
from .page_alloc import PageAlloc, __free_pages, page_zone, set_pageblock_migratetype

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["init_cma_reserved_pageblock", "free_reserved_page",
           "find_zone_movable_pfns_for_nodes", "free_area_init", "memblock_free_all",
           "mem_debugging_and_hardening_init", "mem_init_print_info"]


#: Page flags of a page of memory as ``free_area_init`` leaves it (reserved), and of a
#: pageblock handed back.
_RESERVED_PAGE = bytes([PG_valid | PG_reserved])
_VALID_RUN = bytes([PG_valid]) * pageblock_nr_pages
#: A pageblock's flags byte as ``free_area_init`` leaves it: MIGRATE_MOVABLE (MM Z3).
_MOVABLE_BLOCK = bytes([MIGRATE_MOVABLE])
#: ``free_area_init``'s "Zone ranges:" line of a zone that spans nothing, per zone index.
_EMPTY_ZONE_LINE = tuple(f"  {name:<8} empty" for name in zone_names)


def init_cma_reserved_pageblock(mm: PageAlloc, pfn: int) -> None:
    """``init_cma_reserved_pageblock`` (MM CMA5.3): one reserved pageblock becomes a free
    CMA pageblock."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    # the reserved pages become one allocated pageblock, ready to free
    mem.flags[i:i + pageblock_nr_pages] = _VALID_RUN
    mem.refcount[i] = 1
    mem.alloc_order[i] = pageblock_order
    set_pageblock_migratetype(mm, pfn, MIGRATE_CMA)
    __free_pages(mm, pfn, pageblock_order)
    zone = page_zone(mm, pfn)
    zone.managed_pages += pageblock_nr_pages
    zone.cma_pages += pageblock_nr_pages


def free_reserved_page(mm: PageAlloc, pfn: int) -> None:
    """``free_reserved_page``: hand one reserved page to the buddy allocator."""
    mem = mm.mem_map
    i = pfn - mem.base_pfn
    mem.flags[i] = PG_valid             # the reserved page becomes an allocated one
    mem.refcount[i] = 1
    mem.alloc_order[i] = 0
    __free_pages(mm, pfn, 0)
    page_zone(mm, pfn).managed_pages += 1


def find_zone_movable_pfns_for_nodes(m: Machine, spans: list[tuple[int, int]]) -> int | None:
    """``find_zone_movable_pfns_for_nodes`` (MM Z2): the pfn where ZONE_MOVABLE starts in
    the highest populated zone (``spans``: [start, end) pfns of DMA, DMA32, Normal), from
    ``movablecore=`` or else ``kernelcore=``; None without either or when nothing is
    left for it."""
    bp = m.kernel.boot_params
    if bp.movablecore is None and bp.kernelcore is None:
        return None
    top_lo, top_hi = next(z for z in reversed(spans) if z[1] > z[0])
    top_lo, top_hi = top_lo << PAGE_SHIFT, top_hi << PAGE_SHIFT
    present = sum(e - b for b, e in m.kernel.memblock.memory)
    if bp.movablecore is not None:
        kind, v = bp.movablecore
        movable = present * v // 100 if kind == "percent" else v
    else:
        assert bp.kernelcore is not None
        kind, v = bp.kernelcore
        movable = present - (present * v // 100 if kind == "percent" else v)
    align = MAX_ORDER_NR_PAGES * PAGE_SIZE
    start = (top_hi - max(0, movable) + align - 1) // align * align
    if start >= top_hi:
        return None
    return max(start, top_lo) >> PAGE_SHIFT


def mem_debugging_and_hardening_init(m: Machine) -> tuple[bool, bool]:
    """``mem_debugging_and_hardening_init`` (MM P8): the ``init_on_alloc`` and
    ``init_on_free`` static keys, each from its boot parameter if given, else from
    CONFIG_INIT_ON_ALLOC_DEFAULT_ON / CONFIG_INIT_ON_FREE_DEFAULT_ON."""
    bp = m.kernel.boot_params
    alloc, free = bp.init_on_alloc, bp.init_on_free
    if alloc is None:
        alloc = bool(m.config["INIT_ON_ALLOC_DEFAULT_ON"])
    if free is None:
        free = bool(m.config["INIT_ON_FREE_DEFAULT_ON"])
    return alloc, free


def free_area_init(m: Machine, max_zone_pfn: list[int]) -> None:
    """``free_area_init`` (MM Z1, Z2, Z5): the zones from the arch's top pfn of ZONE_DMA,
    ZONE_DMA32 and ZONE_NORMAL (each zone starts where the one below ends), ZONE_MOVABLE
    carved from the top of the highest one, the memmap with every page of memory reserved
    and every pageblock Movable (MM Z3), present pages per zone, and the page allocator
    over them (``m.kernel.mm``); logs the zone ranges as the kernel does.

    [model] The page allocator is made here rather than by ``build_all_zonelists`` and the
    slab setup of ``mm_core_init``; the per-zone watermarks come later (MM Z6).
    """
    k = m.kernel
    mb = k.memblock
    log = k.log
    first = memblock_start_of_DRAM(mb) >> PAGE_SHIFT
    last = memblock_end_of_DRAM(mb) >> PAGE_SHIFT
    spans: list[tuple[int, int]] = []
    prev = first
    for limit in max_zone_pfn:
        hi = max(prev, min(limit, last))
        spans.append((prev, hi))
        prev = hi
    movable = find_zone_movable_pfns_for_nodes(m, spans)
    if movable is not None:
        top = max(i for i, (b, e) in enumerate(spans) if e > b)
        spans.append((movable, spans[top][1]))
        spans[top] = (spans[top][0], movable)
    else:
        spans.append((0, 0))
    zones = [Zone(idx, s, e) if e > s else Zone(idx, 0, 0) for idx, (s, e) in enumerate(spans)]
    mem_map = MemMap(first, last)
    flags, base = mem_map.flags, mem_map.base_pfn
    for b, e in mb.memory:
        b >>= PAGE_SHIFT
        e >>= PAGE_SHIFT
        flags[b - base:e - base] = _RESERVED_PAGE * (e - b)
        for zone in zones:
            lo = zone.zone_start_pfn
            hi = lo + zone.spanned_pages
            if b > lo:
                lo = b
            if e < hi:
                hi = e
            if hi > lo:
                zone.present_pages += hi - lo
    mem_map.pageblock_flags[:] = _MOVABLE_BLOCK * len(mem_map.pageblock_flags)
    k.zones = zones
    init_on_alloc, init_on_free = mem_debugging_and_hardening_init(m)
    k.mm = PageAlloc(mem_map, zones, log, m.physmem.clear_pages, arch=m.arch,
                     init_on_alloc=init_on_alloc, init_on_free=init_on_free)
    k.mm.totalcma_pages = sum(cma.count for cma in k.cma_areas)
    info = log.info
    info("Zone ranges:")
    for zone in zones[:ZONE_MOVABLE]:
        start, spanned = zone.zone_start_pfn, zone.spanned_pages
        if spanned:
            info(f"  {zone.name:<8} [mem 0x{start << PAGE_SHIFT:016x}"
                 f"-0x{((start + spanned) << PAGE_SHIFT) - 1:016x}]")
        else:
            info(_EMPTY_ZONE_LINE[zone.idx])
    info("Movable zone start for each node")
    if zones[ZONE_MOVABLE].spanned_pages:
        info(f"  Node 0: 0x{zones[ZONE_MOVABLE].zone_start_pfn << PAGE_SHIFT:016x}")
    info("Early memory node ranges")
    for b, e in mb.memory:
        info(f"  node   0: [mem 0x{b:016x}-0x{e - 1:016x}]")
    info(f"Initmem setup node 0 [mem 0x{memblock_start_of_DRAM(mb):016x}-"
         f"0x{memblock_end_of_DRAM(mb) - 1:016x}]")


def memblock_free_all(m: Machine) -> None:
    """``memblock_free_all`` (MM Z4): every free memblock range, ascending, to the buddy
    allocator; reserved pages keep PG_reserved and never enter it."""
    mm = m.kernel.mm
    for b, e in for_each_free_mem_range(m.kernel.memblock):
        s = (b + PAGE_SIZE - 1) >> PAGE_SHIFT
        t = e >> PAGE_SHIFT
        if t > s:
            __free_pages_memory(mm, s, t)


def mem_init_print_info(m: Machine) -> None:
    """``mem_init_print_info`` (MM Z5): the boot's ``Memory: ...K/...K available`` line.

    [model] Only the available/total, reserved and cma-reserved figures; the kernel's
    code/rwdata/rodata/init/bss sizes are not modelled and left out.
    """
    k = m.kernel
    present = free = managed = 0
    for z in k.zones:
        present += z.present_pages
        free += z.nr_free_pages - z.nr_free_cma   # NR_FREE_PAGES (nr_free_pages()) less CMA
        managed += z.managed_pages
    cma = k.mm.totalcma_pages
    managed -= cma
    reserved = present - managed - cma
    k.log.info(f"Memory: {free * 4}K/{present * 4}K available ("
               f"{reserved * 4}K reserved, {cma * 4}K cma-reserved)")
