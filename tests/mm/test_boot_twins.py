"""The boot path's faster spellings against the plain kernel loops they replace (issue 19).

``__free_pages_memory`` frees a run of whole MAX_PAGE_ORDER chunks in a tight loop (MM Z4);
the watermark, lowmem-reserve and zonelist setup (MM Z6, Z7, Z8, G4) use explicit loops
instead of ``sum``/``max`` over generators; the memmap's ``mapcount``/``pincount`` and the
reverse map are made on first use (MM P1); fault injection seeds its probability generator
on first use.  Each test compares with the plain formulation, or checks what the lazy parts show.
"""

from __future__ import annotations

import random
from array import array
from math import isqrt
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pykern.mm.memblock as memblock
from pykern import Machine
from pykern.mm import gfp
from pykern.mm.mmzone import (
    MAX_NR_ZONES, MAX_PAGE_ORDER, WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO, ZONE_MOVABLE,
)
from pykern.mm.page_alloc import (
    build_all_zonelists, init_per_zone_wmark_min, nr_free_zone_pages, set_mobility_grouping,
)

_SETTINGS = settings(max_examples=200, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


class _Span:
    """What ``__free_pages_memory`` reads of a zone."""

    def __init__(self, start: int, end: int) -> None:
        self.zone_start_pfn = start
        self.spanned_pages = end - start


def _kernel_chunks(start: int, end: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """mm/memblock.c ``__free_pages_memory`` as written there (``__ffs`` capped at
    MAX_PAGE_ORDER, then ``order--`` until the chunk fits), each chunk also kept inside the
    zone holding its first pfn, as pykern requires."""
    out = []
    s = start
    while s < end:
        order = MAX_PAGE_ORDER if s == 0 else min(MAX_PAGE_ORDER, (s & -s).bit_length() - 1)
        zone_end = next(e for b, e in spans if b <= s < e)
        while s + (1 << order) > min(end, zone_end):
            order -= 1
        out.append((s, order))
        s += 1 << order
    return out


@_SETTINGS
@given(base=st.integers(0, 1 << 16), cuts=st.lists(st.integers(1, 5000), min_size=1,
                                                   max_size=4),
       lo=st.integers(0, 20000), n=st.integers(0, 20000))
def test_mm_z4_free_pages_memory_chunks_are_the_kernel_loops(
        base: int, cuts: list[int], lo: int, n: int) -> None:
    """MM Z4 (``__free_pages_memory``): the chunks handed to ``__free_pages_core``, in
    order, are those of the kernel's loop, the runs of whole order-10 chunks included."""
    spans = []
    b = base
    for width in cuts:
        spans.append((b, b + width))
        b += width
    start = base + min(lo, b - base)
    end = min(b, start + n)
    zones = {span: _Span(*span) for span in spans}
    got: list[tuple[int, int]] = []
    saved = memblock.__dict__["__free_pages_core"], memblock.page_zone

    def page_zone(mm: Any, pfn: int) -> _Span:
        return next(z for (lo_, hi), z in zones.items() if lo_ <= pfn < hi)
    memblock.__dict__["__free_pages_core"] = lambda mm, pfn, order: got.append((pfn, order))
    memblock.page_zone = page_zone           # type: ignore[assignment]
    try:
        memblock.__dict__["__free_pages_memory"](None, start, end)
    finally:
        memblock.__dict__["__free_pages_core"], memblock.page_zone = saved
    assert got == _kernel_chunks(start, end, spans)


# ------------------------------------------------------------------- watermarks (Z6, Z7)
def _plain_watermarks(mm: Any) -> tuple[Any, ...]:
    """mm/page_alloc.c ``calculate_min_free_kbytes``, ``__setup_per_zone_wmarks``,
    ``setup_per_zone_lowmem_reserve`` and ``calculate_totalreserve_pages`` over pykern's
    zones, spelled with sum/max/min as the kernel's loops read; (min_free_kbytes,
    watermarks, lowmem reserves, totalreserve_pages)."""
    zones = mm.zones
    managed = [z.managed_pages for z in zones]
    lowmem_kbytes = sum(max(0, z.managed_pages - z._watermark[WMARK_HIGH])
                        for z in zones[:3]) * 4        # GFP_USER: up to ZONE_NORMAL
    new = isqrt(lowmem_kbytes * 16)
    min_free = min(max(new, 128), 262144) if new > mm.user_min_free_kbytes \
        else mm.min_free_kbytes
    pages_min = min_free >> 2
    lowmem = sum(m for z, m in zip(zones, managed) if z.idx != ZONE_MOVABLE)
    marks = []
    for z, m in zip(zones, managed):
        tmp = pages_min * m // lowmem if lowmem else 0
        wmin = min(max(m // 1024, 32), 128) if z.idx == ZONE_MOVABLE else tmp
        tmp = max(tmp >> 2, m * mm.watermark_scale_factor // 10000)
        marks.append([wmin, wmin + tmp, wmin + 2 * tmp, wmin + 3 * tmp])
    reserves = []
    for i in range(MAX_NR_ZONES):
        row = list(zones[i].lowmem_reserve)
        if i < MAX_NR_ZONES - 1:
            ratio = mm.lowmem_reserve_ratio[i]
            clear = not ratio or not managed[i]
            for j in range(i + 1, MAX_NR_ZONES):
                row[j] = 0 if clear else sum(managed[i + 1:j + 1]) // ratio
        reserves.append(row)
    total = sum(min(max([0] + reserves[i][i:]) + marks[i][WMARK_HIGH], managed[i])
                for i in range(len(zones)))
    return min_free, marks, reserves, total


@_SETTINGS
@given(managed=st.lists(st.integers(0, 1 << 22), min_size=4, max_size=4),
       present=st.lists(st.booleans(), min_size=4, max_size=4),
       scale=st.integers(1, 3000), ratios=st.lists(st.integers(0, 300), min_size=4,
                                                   max_size=4),
       user=st.sampled_from([-1, 0, 128, 5000, 1 << 20]))
def test_mm_z6_z7_z8_g4_watermark_setup_matches_the_plain_formulas(
        managed: list[int], present: list[bool], scale: int, ratios: list[int],
        user: int) -> None:
    """MM Z6/Z7 (``init_per_zone_wmark_min``): min_free_kbytes, every zone's watermarks,
    the lowmem reserves and totalreserve_pages are the kernel's formulas; MM G4
    (``build_all_zonelists``): populated zones up to each index, highest first; MM Z8
    (``set_mobility_grouping``) from ``nr_free_zone_pages``."""
    m = Machine("64M", arch="x86_64")
    mm = m.mm
    for z, pages, pop in zip(mm.zones, managed, present):
        z.managed_pages = pages
        z.present_pages = pages if pop else 0
    mm.watermark_scale_factor = scale
    mm.lowmem_reserve_ratio = ratios
    if user >= 0:
        mm.user_min_free_kbytes = mm.min_free_kbytes = user
    expected = _plain_watermarks(mm)
    init_per_zone_wmark_min(mm)
    assert (mm.min_free_kbytes, [list(z._watermark) for z in mm.zones],
            [list(z.lowmem_reserve) for z in mm.zones], mm.totalreserve_pages) == expected
    for z in mm.zones:
        assert z._watermark[WMARK_MIN] <= z._watermark[WMARK_LOW] \
            <= z._watermark[WMARK_HIGH] <= z._watermark[WMARK_PROMO]
    build_all_zonelists(mm)
    assert mm.zonelists == [[z for z in reversed(mm.zones[:h + 1]) if z.present_pages > 0]
                            for h in range(MAX_NR_ZONES)]
    lists = mm.zonelists
    assert len({id(zl) for zl in lists}) == MAX_NR_ZONES    # one list per index
    for h in range(MAX_NR_ZONES):
        assert nr_free_zone_pages(mm, h) == sum(
            max(0, z.managed_pages - z._watermark[WMARK_HIGH]) for z in mm.zones[:h + 1])
    set_mobility_grouping(mm)
    assert mm.page_group_by_mobility_disabled == (nr_free_zone_pages(mm, ZONE_MOVABLE)
                                                  < 512 * 6)


# ------------------------------------------------------------ what is made on first use
def test_mm_p1_mapcount_pincount_and_rmap_read_as_zeroed_per_page_arrays() -> None:
    """MM P1 (``struct page`` ``_mapcount``, ``_pincount``; mm/rmap.c): before anything
    maps or pins a page, the memmap's ``mapcount`` and ``pincount`` and the reverse map's
    ``owner``/``vpn`` read as zeroed arrays of one slot per memmap page; the first task
    mapping fills them in place."""
    m = Machine("64M")
    mem, rmap = m.mm.mem_map, m.kernel.rmap
    n = mem.nr_slots
    assert mem.mapcount == array("i", bytes(4 * n)) and mem.mapcount is mem.mapcount
    assert mem.pincount == array("i", bytes(4 * n))
    assert rmap.owner == array("i", bytes(4 * n)) and rmap.vpn == array("q", bytes(8 * n))
    assert mem.metadata_bytes() == 16 * n + len(mem.pageblock_flags)
    t = m.new_task()
    va = t.mmap_anon(3)
    t.write(va, b"x")
    mapped = [i for i, c in enumerate(mem.mapcount) if c]
    assert len(mapped) == 3
    owners = {rmap.get(mem.base_pfn + i) for i in mapped}
    assert {pid for pid, _ in owners} == {t.pid} and len(owners) == 3


def test_mm_p1_a_machine_saved_before_first_use_restores_with_the_same_arrays(
        tmp_path: Path) -> None:
    """A snapshot of a fresh machine (arrays not made yet) restores to one whose
    mapcount, pincount and reverse map read the same, and that maps pages as the
    original does."""
    m = Machine("64M", arch="x86_64")
    m.save(tmp_path / "m.pkm")
    r = Machine.restore(tmp_path / "m.pkm")
    for a, b in ((m, r), (r, m)):
        assert a.mm.mem_map.mapcount == b.mm.mem_map.mapcount
        assert a.mm.mem_map.pincount == b.mm.mem_map.pincount
        assert a.kernel.rmap.owner == b.kernel.rmap.owner
    for x in (m, r):
        x.new_task().mmap_anon(2)
    assert m.mm.mem_map.mapcount == r.mm.mem_map.mapcount
    assert m.kernel.rmap.vpn == r.kernel.rmap.vpn


def test_mm_z1_zones_that_span_nothing_hold_no_free_block() -> None:
    """MM Z1: a zone that spans no pages (arm64's DMA32 and Normal below 4 GiB, Movable
    without ``movablecore=``) has every free list empty, whatever other machines allocate
    and free; /proc/buddyinfo and pagetypeinfo list only the populated zones."""
    a = Machine("64M", cmdline="cma=16M")
    b = Machine("64M", arch="x86_64")
    rng = random.Random(5)
    held = []
    for _ in range(300):
        if held and rng.random() < 0.4:
            a.mm.free_pages(*held.pop(rng.randrange(len(held))))
        else:
            order = rng.randrange(4)
            page = a.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE | gfp.__GFP_NOWARN, order)
            if page is not None:
                held.append((page.pfn, order))
    for m in (a, b):
        empty = [z for z in m.mm.zones if not z.spanned_pages]
        assert empty
        for z in empty:
            assert all(len(fl) == 0 and not list(fl) for lists in z.free_list for fl in lists)
            assert z.name not in m.read("/proc/buddyinfo")
        assert all(z.spanned_pages for z, _, _, _ in m.mm.iter_free_blocks())


def test_fault_inject_probability_draws_come_from_the_seeded_generator() -> None:
    """lib/fault-inject.c ``should_fail_ex``'s probability draw: pykern's generator is
    seeded by (machine seed, generation), made when first drawn from."""
    m = Machine("64M", seed=7)
    fi = m.kernel.fault_inject
    assert fi.rng is fi.rng
    ref = random.Random("pykern-fault-inject-7-0")
    assert [fi.rng.getrandbits(32) for _ in range(5)] == [ref.getrandbits(32)
                                                           for _ in range(5)]
