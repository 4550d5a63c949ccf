"""The pfn walks of the contiguous allocator against page-at-a-time reference twins.

``isolate_migratepages_range`` (MM M2), ``isolate_single_pageblock`` (MM I4) and
``__first_valid_page`` jump from one page they must look at to the next with
``bytes.translate``/``find`` instead of stepping over the others one pfn at a time.  Each
test runs the walk and a reference that steps pfn by pfn, as the kernel's loops do, on two
forks of the same random machine (holes between banks, task pages, short-term pins,
kernel allocations, compound pages, free blocks) and compares what they return and leave:
the isolated list, the memmap arrays, /proc/vmstat.
"""

from __future__ import annotations

import errno
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykern import Machine
from pykern.mm import gfp
from pykern.mm.migrate import COMPACT_CLUSTER_MAX, isolate_migratepages_range
from pykern.mm.mmzone import MAX_ORDER_NR_PAGES, pageblock_nr_pages
from pykern.mm.page import PG_anon, PG_buddy, PG_head, PG_lru, PG_movable_ops, PG_valid
from pykern.mm.page_alloc import page_zone
from pykern.mm.page_isolation import (
    PB_ISOLATE_MODE_OTHER, __first_valid_page, isolate_single_pageblock,
)
from pykern.mm.vmstat import count_vm_events

MiB = 1 << 20
BASE = 0x4000_0000
_NOWARN = gfp.__GFP_NOWARN
_COMP = gfp.__GFP_COMP


def _machine(seed: int) -> Machine:
    """64 MiB in two banks with a 1 MiB hole, populated at random."""
    m = Machine(ram=[(BASE, 32 * MiB), (BASE + 33 * MiB, 31 * MiB)], reserved=(),
                cmdline="cma=0")
    rng = random.Random(seed)
    held: list[tuple[int, int]] = []
    for _ in range(rng.randrange(0, 60)):
        r = rng.random()
        if r < 0.35:
            t = m.new_task()
            n = rng.randrange(1, 300)
            va = t.mmap_anon(n)
            if rng.random() < 0.3:
                k = rng.randrange(n)
                t.pin(va + k * 4096, rng.randrange(1, n - k + 1))
        elif r < 0.75:
            mask = rng.choice([gfp.GFP_KERNEL, gfp.GFP_KERNEL | _COMP,
                               gfp.GFP_HIGHUSER_MOVABLE | _COMP]) | _NOWARN
            order = rng.choice([0, 1, 3, 6, 9, 10])
            page = m.mm.alloc_pages(mask, order)
            if page is not None:
                held.append((page.pfn, order))
        elif held:
            pfn, order = held.pop(rng.randrange(len(held)))
            m.mm.free_pages(pfn, order)
    return m


def _state(m: Machine) -> tuple[object, ...]:
    mem = m.mm.mem_map
    return (bytes(mem.flags), bytes(mem.order), bytes(mem.alloc_order),
            mem.refcount.tobytes(), mem.mapcount.tobytes(), bytes(mem.pageblock_flags),
            m.read("/proc/vmstat"), m.read("/proc/pagetypeinfo"))


# ------------------------------------------------------------- reference twins
def _ref_isolate_migratepages_range(m: Machine, start: int, end: int,
                                    pages: list[int]) -> int:
    """isolate_migratepages_block's loop one pfn at a time, folio_isolate_lru and
    count_vm_events(COMPACTISOLATED) per taken page."""
    mm = m.mm
    mem = mm.mem_map
    zone = page_zone(mm, start)
    pfn = start
    while pfn < end:
        block_end = min((pfn & ~(pageblock_nr_pages - 1)) + pageblock_nr_pages, end)
        if not (zone.zone_spans_pfn(pfn) and zone.zone_spans_pfn(block_end - 1)):
            pfn = block_end
            continue
        while pfn < block_end:
            i = pfn - mem.base_pfn
            f = mem.flags[i]
            if not f & PG_valid:
                pfn += 1
            elif f & (PG_buddy | PG_head):
                pfn += 1 << mem.order[i]
            elif not f & PG_lru or f & PG_movable_ops:
                pfn += 1
            elif f & PG_anon and mem.refcount[i] > mem.mapcount[i]:
                pfn += 1
            else:
                mem.flags[i] &= ~PG_lru
                mem.refcount[i] += 1
                pages.insert(0, pfn)
                count_vm_events(mm, "compact_isolated", 1)
                pfn += 1
                if len(pages) >= COMPACT_CLUSTER_MAX:
                    return pfn
        if len(pages) >= COMPACT_CLUSTER_MAX:
            break
    return max(pfn, start)


def _ref_first_valid_page(m: Machine, pfn: int, nr_pages: int) -> int | None:
    mem = m.mm.mem_map
    for p in range(max(pfn, mem.base_pfn), min(pfn + nr_pages, mem.end_pfn)):
        if mem.flags[p - mem.base_pfn] & PG_valid:
            return p
    return None


def _ref_isolate_single_pageblock(m: Machine, boundary: int, before: bool) -> int:
    """isolate_single_pageblock's walk (skip_isolation) one valid pfn at a time."""
    mm = m.mm
    mem = mm.mem_map
    block = boundary - pageblock_nr_pages if before else boundary
    start = max(block & ~(MAX_ORDER_NR_PAGES - 1), page_zone(mm, block).zone_start_pfn)
    if not mem.pfn_valid(boundary if before else boundary - 1):
        return 0
    pfn = start
    while pfn < boundary:
        first = _ref_first_valid_page(m, pfn, boundary - pfn)
        if first is None:
            break
        pfn = first
        i = pfn - mem.base_pfn
        f = mem.flags[i]
        if f & PG_buddy:
            pfn += 1 << mem.order[i]
        elif f & PG_head:
            if pfn + (1 << mem.order[i]) > boundary:
                return -errno.EBUSY
            pfn += 1 << mem.order[i]
        else:
            pfn += 1
    return 0


def _zone_range(m: Machine) -> tuple[int, int]:
    zone = m.mm.zones[0]
    return zone.zone_start_pfn, zone.zone_start_pfn + zone.spanned_pages


_SETTINGS = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------ tests
@_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_isolate_migratepages_range_matches_pfn_by_pfn(seed: int, data: st.DataObject) -> None:
    """isolate_migratepages_range (MM M2, isolate_migratepages_block): the same pages in
    the same list order, the same stopping pfn, flags, references and compact_isolated
    as a scan that looks at every pfn; called again from where it stopped, as
    __alloc_contig_migrate_range does, until the range is done."""
    fast = _machine(seed)
    slow = fast.fork()
    lo, hi = _zone_range(fast)
    start = data.draw(st.integers(lo, hi - 1), label="start")
    end = data.draw(st.integers(start + 1, hi), label="end")
    pfn_f = pfn_s = start
    while pfn_f < end:
        got: list[int] = []
        want: list[int] = []
        pfn_f = isolate_migratepages_range(fast, pfn_f, end, got)
        pfn_s = _ref_isolate_migratepages_range(slow, pfn_s, end, want)
        assert (pfn_f, got) == (pfn_s, want)
        assert _state(fast) == _state(slow)
        if not got:
            break


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_isolate_single_pageblock_matches_pfn_by_pfn(seed: int) -> None:
    """isolate_single_pageblock (MM I4) at every pageblock boundary of the zone, from
    either side: the walk from the MAX_ORDER-aligned start refuses (EBUSY) exactly when a
    compound page crosses the boundary, as a walk that takes __first_valid_page at every
    pfn does; where it refuses after isolating the edge block, that block gets its type
    back and nothing else changes."""
    m = _machine(seed)
    lo, hi = _zone_range(m)
    state = _state(m)
    refused = []
    for boundary in range(lo + pageblock_nr_pages, hi + 1, pageblock_nr_pages):
        for before in (True, False) if boundary < hi else (True,):
            want = _ref_isolate_single_pageblock(m, boundary, before)
            assert isolate_single_pageblock(m.mm, boundary, PB_ISOLATE_MODE_OTHER, before,
                                            True) == want
            if want:
                refused.append((boundary, before))
    assert _state(m) == state
    for boundary, before in refused:
        assert isolate_single_pageblock(m.mm, boundary, PB_ISOLATE_MODE_OTHER, before,
                                        False) == -errno.EBUSY
        assert _state(m) == state


def test_isolate_single_pageblock_refuses_compound_page_across_boundary() -> None:
    """isolate_single_pageblock (MM I4): an order-10 compound page spans two pageblocks;
    isolating from the boundary in its middle is refused with EBUSY and the edge block
    gets its type back, a boundary at its end is accepted."""
    m = Machine(ram=[(BASE, 32 * MiB), (BASE + 33 * MiB, 31 * MiB)], reserved=(),
                cmdline="cma=0")
    page = m.mm.alloc_pages(gfp.GFP_KERNEL | _COMP, 10)
    assert page is not None
    middle = page.pfn + pageblock_nr_pages
    assert isolate_single_pageblock(m.mm, middle, PB_ISOLATE_MODE_OTHER, False, False) \
        == -errno.EBUSY
    assert m.mm.pageblock_type(middle) != "Isolate"
    end = page.pfn + 2 * pageblock_nr_pages
    assert isolate_single_pageblock(m.mm, end, PB_ISOLATE_MODE_OTHER, True, True) == 0


@_SETTINGS
@given(seed=st.integers(0, 2**16), data=st.data())
def test_first_valid_page_skips_holes(seed: int, data: st.DataObject) -> None:
    """__first_valid_page: the first RAM pfn of a range that may start in, end in or lie
    wholly inside the 1 MiB hole between the banks, or lie outside the memmap."""
    m = Machine(ram=[(BASE, 32 * MiB), (BASE + 33 * MiB, 31 * MiB)], reserved=(),
                cmdline="cma=0")
    hole = (BASE + 32 * MiB) >> 12
    pfn = data.draw(st.integers(hole - 600, hole + 600) | st.integers(0, 1 << 20))
    n = data.draw(st.integers(0, 2048))
    assert __first_valid_page(m.mm, pfn, n) == _ref_first_valid_page(m, pfn, n)
    assert __first_valid_page(m.mm, hole, 256) is None
    assert __first_valid_page(m.mm, hole + 10, 300) == hole + 256
