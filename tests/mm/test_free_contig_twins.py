"""free_contig_range's batched path against the kernel's page-by-page loop (MM R10): the
same free lists, counters and procfs text after every random scenario."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykern import Machine
from pykern.mm import gfp
from pykern.mm.mmzone import migratetype_names
from pykern.mm.page_alloc_contig import free_contig_range, free_contig_range_pages

_NOWARN = gfp.__GFP_NOWARN


def _state(m: Machine) -> tuple[object, ...]:
    lists = tuple((z.name, order, mt, tuple(m.mm.free_list(z.name, order, mt)))
                  for z in m.mm.zones if z.managed_pages
                  for order in range(11) for mt in migratetype_names)
    return (lists, m.mm.nr_free_pages(), m.read("/proc/buddyinfo"),
            m.read("/proc/pagetypeinfo"), m.read("/proc/vmstat"))


def _scenario(seed: int, ops: int) -> tuple[Machine, int, int]:
    m = Machine("64M", cmdline="cma=32M")
    rng = random.Random(seed)
    held = []
    for _ in range(ops):
        if held and rng.random() < 0.4:
            pfn, order = held.pop(rng.randrange(len(held)))
            m.mm.free_pages(pfn, order)
        else:
            mask = rng.choice([gfp.GFP_KERNEL, gfp.GFP_HIGHUSER_MOVABLE]) | _NOWARN
            order = rng.randrange(0, 4)
            page = m.mm.alloc_pages(mask, order)
            if page is not None:
                held.append((page.pfn, order))
    cma = m.dma_contiguous_default_area
    assert cma is not None
    count = rng.randrange(1, 3000)
    page = cma.alloc(count, rng.randrange(0, 9), no_warn=True)
    assert page is not None
    return m, page.pfn, count


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), ops=st.integers(0, 300),
       cut=st.floats(0.0, 1.0))
def test_batched_free_matches_page_by_page(seed: int, ops: int, cut: float) -> None:
    import pykern.mm.page_alloc_contig as pac
    fallbacks = []
    original = pac.free_contig_range_pages

    def counting(m: Machine, pfn: int, n: int) -> None:
        fallbacks.append(n)
        original(m, pfn, n)
    fast, pfn, count = _scenario(seed, ops)
    slow, pfn2, count2 = _scenario(seed, ops)
    assert (pfn, count) == (pfn2, count2) and _state(fast) == _state(slow)
    head = int(count * cut)                  # free a prefix and the rest separately
    for start, n in ((pfn, head), (pfn + head, count - head)):
        if n:
            pac.free_contig_range_pages = counting
            try:
                free_contig_range(fast, start, n)
            finally:
                pac.free_contig_range_pages = original
            free_contig_range_pages(slow, start, n)
        assert _state(fast) == _state(slow)
    assert all(n < 2 for n in fallbacks)        # the batched path really ran
