"""The buddy allocator against the MM rules G, A, F, W, P8 and V1/V2.

Every test names the rule it checks.  Machines are small and built per test; the
"fresh zone" of the worked examples is ``Machine(ram="64M", reserved=(), cmdline="cma=0")``:
one DMA zone of 16384 pages starting at pfn 262144.  States are set up with real
allocations only, except where a test says it uses an internal hook.
"""

from __future__ import annotations

from typing import Any

import pytest

import pykern.mm.gfp as gfp
from pykern import Machine, Page
from pykern.mm.mmzone import MIGRATE_HIGHATOMIC, migratetype_names

BASE = 262144  #: first pfn of the fresh zone (physical 0x4000_0000)
TYPES = migratetype_names
NOWARN = gfp.__GFP_NOWARN
#: Watermarks 0/1/2/3 and no boost: allocation limits out of the way (MM Z6.5, A10).
NO_WMARKS = ("sysctl.vm.min_free_kbytes=0 sysctl.vm.watermark_scale_factor=1 "
             "sysctl.vm.watermark_boost_factor=0")


def fresh(cmdline: str = "", **kw: Any) -> Machine:
    """The fresh zone of the worked examples."""
    return Machine(ram="64M", reserved=(), cmdline=f"cma=0 {cmdline}".strip(), **kw)


def off(page: Page | None) -> int:
    assert page is not None
    return page.pfn - BASE


def lists(m: Machine, zone: str = "DMA", mt: str = "Movable") -> dict[int, list[int]]:
    """Non-empty list(k, mt) of a zone, as offsets from BASE."""
    out = {}
    for k in range(11):
        fl = m.mm.free_list(zone, k, mt)
        if fl:
            out[k] = [p - BASE for p in fl]
    return out


def snapshot(m: Machine) -> tuple[Any, ...]:
    """Everything a misuse must leave unchanged (bad input loses no state)."""
    mm = m.mm
    free_lists = tuple(tuple(mm.free_list(z.name, k, mt))
                       for z in mm.zones if z.populated_zone()
                       for k in range(11) for mt in TYPES)
    mem = mm.mem_map
    return (m.read("/proc/buddyinfo"), free_lists, mm.nr_free_pages(),
            bytes(mem.pageblock_flags), bytes(mem.flags), bytes(mem.order),
            bytes(mem.alloc_order), mem.refcount.tobytes(),
            tuple(z.nr_free_pages for z in mm.zones))


def exhaust(m: Machine, flags: int, order: int = 0) -> list[Page]:
    """Allocate until the allocator says no."""
    got = []
    while True:
        p = m.mm.alloc_pages(flags | NOWARN, order)
        if p is None:
            return got
        got.append(p)


def zone_of(m: Machine, page: Page | None) -> str:
    assert page is not None
    return m.mm.page_zone(page.pfn).name


# --------------------------------------------------------------------------- A6


def test_mm_a6_2_worked_example() -> None:
    """MM A6.2 / A6.1: split keeps the lower half, upper halves go to the list heads."""
    m = fresh()
    assert off(m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0)) == 0
    expect = {k: [1 << k] for k in range(10)}
    expect[10] = [1024 * i for i in range(1, 16)]
    assert lists(m) == expect
    assert m.read("/proc/buddyinfo") == (
        "Node 0, zone      DMA      1      1      1      1      1      1      1      1"
        "      1      1     15 \n")
    assert [off(m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0)) for _ in range(3)] == [1, 2, 3]
    after = lists(m)
    assert 0 not in after and 1 not in after      # 1 taken, 2 split and 3 taken
    assert after[2] == [4]
    m.mm.check_invariants()


def test_mm_a6_head_block_of_smallest_order() -> None:
    """MM A6: the smallest non-empty order wins; within it the head block."""
    m = fresh()
    m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0)         # o0..o9 singles at 1, 2, 4 ...
    assert off(m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 5)) == 32
    assert off(m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 5)) == 64   # split o6 at 64
    assert lists(m)[5] == [96]
    assert off(m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 10)) == 1024
    m.mm.check_invariants()


# --------------------------------------------------------------------------- F5


def test_mm_f5_3_head_tail_example() -> None:
    """MM F5.3 / F5.2: free 3 goes to the head, free 4 to the tail; next order-0 gets 3."""
    m = fresh()
    pages = [m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0) for _ in range(6)]
    assert [off(p) for p in pages] == [0, 1, 2, 3, 4, 5]
    assert lists(m)[1] == [6]
    assert 0 not in lists(m)
    m.mm.free_pages(pages[3], 0)
    assert lists(m)[0] == [3]
    m.mm.free_pages(pages[4], 0)
    assert lists(m)[0] == [3, 4]           # 4 went to the tail: its o1 uncle at 6 is free
    m.mm.check_invariants()
    assert off(m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0)) == 3


def test_mm_f5_2_head_when_uncle_busy_and_merge_to_top() -> None:
    """MM F4 / F5.2: freeing everything merges back to one order-10 block at the head."""
    m = fresh()
    pages = [m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0) for _ in range(8)]
    for p in pages:
        m.mm.free_pages(p, 0)
        m.mm.check_invariants()
    assert lists(m) == {10: [1024 * i for i in range(16)]}


# --------------------------------------------------------------------------- G1/G3/G4


@pytest.mark.parametrize("flags, mt", [
    (gfp.GFP_KERNEL, "Unmovable"),
    (gfp.GFP_USER, "Unmovable"),
    (gfp.GFP_ATOMIC, "Unmovable"),
    (gfp.GFP_HIGHUSER_MOVABLE, "Movable"),
    (gfp.GFP_KERNEL | gfp.__GFP_MOVABLE, "Movable"),
    (gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, "Reclaimable"),
])
def test_mm_g1_request_migratetype(flags: int, mt: str) -> None:
    """MM G1 with A8.4: the request's type owns the pageblock it was served from."""
    m = fresh()
    p = m.mm.alloc_pages(flags, 0)
    assert off(p) == 0
    assert m.mm.pageblock_type(BASE) == mt
    assert m.mm.pageblock_type(BASE + 512) == mt      # an order-10 claim retypes both
    assert m.mm.free_list("DMA", 9, mt) == [BASE + 512]
    m.mm.check_invariants()


@pytest.mark.parametrize("flags", [
    gfp.GFP_KERNEL | gfp.__GFP_MOVABLE | gfp.__GFP_RECLAIMABLE,
    gfp.GFP_HIGHUSER_MOVABLE | gfp.__GFP_RECLAIMABLE,
    gfp.GFP_KERNEL | gfp.__GFP_DMA | gfp.__GFP_DMA32,     # two zone modifiers (GFP_ZONE_BAD)
    gfp.GFP_KERNEL | 0x200,                             # unused bit
    gfp.GFP_KERNEL | (1 << 24),                         # beyond the modelled bits
    -1,
])
def test_mm_a1_invalid_gfp_raises_and_changes_nothing(flags: int) -> None:
    """MM A1 / G1: an invalid gfp is a ValueError, not an allocation."""
    m = fresh()
    before = snapshot(m)
    with pytest.raises(ValueError, match="gfp"):
        m.mm.alloc_pages(flags, 0)
    assert snapshot(m) == before


@pytest.mark.parametrize("order", [-1, 1.0, "1", None])
def test_mm_a1_bad_order_raises(order: Any) -> None:
    """MM A1: order < 0 (or not an int) → ValueError."""
    m = fresh()
    before = snapshot(m)
    with pytest.raises(ValueError, match="order"):
        m.mm.alloc_pages(gfp.GFP_KERNEL, order)
    assert snapshot(m) == before


def test_mm_a1_order_above_max_fails_with_warning() -> None:
    """MM A1: order 11 → None and a warning in dmesg (none with __GFP_NOWARN)."""
    m = fresh()
    before = snapshot(m)
    n = len(m.dmesg())
    assert m.mm.alloc_pages(gfp.GFP_KERNEL, 11) is None
    new = m.dmesg()[n:]
    assert len(new) == 1 and new[0][0] == 4 and "order 11" in new[0][1]
    assert m.mm.alloc_pages(gfp.GFP_KERNEL | NOWARN, 11) is None
    assert len(m.dmesg()) == n + 1
    assert snapshot(m) == before


X86_SMALL_NORMAL = dict(arch="x86_64", ram=[(0, "64M"), (4 << 30, "64M")])


@pytest.mark.parametrize("flags, zone", [
    (gfp.GFP_KERNEL, "Normal"),
    (gfp.GFP_HIGHUSER_MOVABLE, "Normal"),          # no ZONE_MOVABLE: Movable maps to Normal
    (gfp.GFP_KERNEL | gfp.__GFP_MOVABLE, "Normal"),
    (gfp.GFP_USER | gfp.__GFP_HIGHMEM, "Normal"),
    (gfp.GFP_KERNEL | gfp.__GFP_DMA32, "DMA32"),
    (gfp.GFP_KERNEL | gfp.__GFP_DMA32 | gfp.__GFP_MOVABLE, "DMA32"),
    (gfp.GFP_KERNEL | gfp.__GFP_DMA, "DMA"),
    (gfp.GFP_KERNEL | gfp.__GFP_DMA | gfp.__GFP_MOVABLE, "DMA"),
])
def test_mm_g3_g4_highest_zone_is_preferred(flags: int, zone: str) -> None:
    """MM G3 / G4: the first zone of the zonelist is the highest one the gfp allows."""
    m = Machine(**X86_SMALL_NORMAL)  # type: ignore[arg-type]
    assert zone_of(m, m.mm.alloc_pages(flags, 0)) == zone


def test_mm_g3_movable_zone_needs_movable_and_highmem() -> None:
    """MM G3 / Z2: only MOVABLE|HIGHMEM requests reach ZONE_MOVABLE."""
    m = Machine(ram="1G", arch="x86_64", cmdline="movablecore=256M")
    assert zone_of(m, m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0)) == "Movable"
    assert zone_of(m, m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_MOVABLE, 0)) == "DMA32"
    assert zone_of(m, m.mm.alloc_pages(gfp.GFP_KERNEL, 0)) == "DMA32"


def test_mm_g3_unconfigured_dma32_on_arm64_falls_to_dma() -> None:
    """MM G3 / G4 / Z1: arm64 below 4 GiB has an empty DMA32; the zonelist holds DMA."""
    m = Machine(ram="64M", cmdline="cma=0")
    assert zone_of(m, m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_DMA32, 0)) == "DMA"
    assert zone_of(m, m.mm.alloc_pages(gfp.GFP_KERNEL, 0)) == "DMA"


def test_mm_g4_w1_zone_fallback_respects_lowmem_reserve() -> None:
    """MM G4 / W1.4 / Z7: exhausting GFP_KERNEL leaves each zone at min + protection."""
    m = Machine(**X86_SMALL_NORMAL)  # type: ignore[arg-type]
    dma, dma32, normal = m.mm.zones[:3]
    assert dma32.lowmem_reserve[2] == normal.managed_pages // 256 > 0
    first = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert zone_of(m, first) == "Normal"
    exhaust(m, gfp.GFP_KERNEL)
    assert normal.nr_free_pages == normal._watermark[0]
    assert dma32.nr_free_pages == dma32._watermark[0] + dma32.lowmem_reserve[2]
    assert dma.nr_free_pages == dma._watermark[0] + dma.lowmem_reserve[2]
    m.mm.check_invariants()


def _fragment_normal(m: Machine) -> list[Page]:
    """Fill ZONE_NORMAL with movable pages, then free every other one: Normal keeps only
    free blocks below pageblock order (returns the pages still held)."""
    held = []
    while True:
        p = m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0)
        assert p is not None
        if zone_of(m, p) != "Normal":
            m.mm.free_pages(p, 0)
            break
        held.append(p)
    kept = []
    for p in held:
        if p.pfn % 2:
            kept.append(p)
        else:
            m.mm.free_pages(p, 0)
    assert not any(m.mm.free_list("Normal", k, mt) for k in (9, 10) for mt in TYPES)
    assert m.mm.zones[2].nr_free_pages > 1000
    return kept


def test_mm_g9_unmovable_prefers_whole_pageblock_of_dma32() -> None:
    """MM G9 / A8.1 / A2: with a Normal zone, an unmovable request first claims a whole
    free pageblock of DMA32 instead of fragmenting Normal."""
    m = Machine(arch="x86_64", ram=[(0, "64M"), (4 << 30, "8M")])
    _fragment_normal(m)
    movable_normal = m.mm.free_list("Normal", 0, "Movable")
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert zone_of(m, p) == "DMA32"
    assert p is not None and m.mm.pageblock_type(p.pfn) == "Unmovable"
    assert m.mm.free_list("Normal", 0, "Movable") == movable_normal   # Normal untouched
    assert not any(m.mm.free_list("Normal", k, "Unmovable") for k in range(11))
    m.mm.check_invariants()


def test_mm_g9_second_walk_without_nofragment_fragments_normal() -> None:
    """MM G9 / A2: when no zone has a whole free pageblock the walk is repeated without
    NOFRAGMENT and the request claims a partial block of the preferred zone (A8.5)."""
    m = Machine(arch="x86_64", ram=[(0, "16M"), (4 << 30, "8M")], reserved=[(0, "1M")])
    assert [z.name for z in m.mm.zones if z.populated_zone()] == ["DMA", "Normal"]
    for order in (10, 9, 8):
        exhaust(m, gfp.GFP_KERNEL | gfp.__GFP_DMA, order)
    assert not any(m.mm.free_list("DMA", k, mt) for k in (9, 10) for mt in TYPES)
    _fragment_normal(m)
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert zone_of(m, p) == "Normal"
    assert p is not None and m.mm.pageblock_type(p.pfn) == "Unmovable"
    m.mm.check_invariants()


# --------------------------------------------------------------------------- A8/A9


def test_mm_a8_4_claim_of_order10_movable_block() -> None:
    """MM A8.4: an Unmovable request claims the head order-10 Movable block, retypes both
    of its pageblocks and splits it onto the Unmovable lists."""
    m = fresh()
    assert off(m.mm.alloc_pages(gfp.GFP_KERNEL, 0)) == 0
    assert m.mm.pageblock_type(BASE) == m.mm.pageblock_type(BASE + 511) == "Unmovable"
    assert m.mm.pageblock_type(BASE + 512) == "Unmovable"
    assert m.mm.pageblock_type(BASE + 1024) == "Movable"
    assert lists(m, mt="Unmovable") == {k: [1 << k] for k in range(10)}
    assert lists(m) == {10: [1024 * i for i in range(1, 16)]}
    m.mm.check_invariants()


def _reclaimable_block_with_free(free: int) -> tuple[Machine, list[Page]]:
    """Fresh zone, watermarks 0, no boost: the only free memory is inside the Reclaimable
    pageblock [512, 1024), which holds ``free`` free pages (256 or 255)."""
    m = fresh(NO_WMARKS)
    held = [m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, 9)]   # claims 0..1023
    assert off(held[0]) == 0 and m.mm.pageblock_type(BASE + 512) == "Reclaimable"
    held += exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 10)
    assert len(held) == 16 and not any(lists(m).values())
    held.append(m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, 8))
    assert off(held[-1]) == 512
    if free == 255:
        held.append(m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, 0))
        assert off(held[-1]) == 768
    assert m.mm.nr_free_pages() == free
    assert not any(lists(m, mt="Unmovable").values())
    return m, [p for p in held if p is not None]


def test_mm_a8_5_partial_block_claimed_at_half_free() -> None:
    """MM A8.5: free + alike = 256 (half a block) → the Unmovable request claims the
    Reclaimable pageblock: its free blocks move to Unmovable and A6 serves the request."""
    m, _ = _reclaimable_block_with_free(256)
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert off(p) == 768
    assert m.mm.pageblock_type(BASE + 512) == "Unmovable"
    assert m.mm.pageblock_type(BASE) == "Reclaimable"       # only one pageblock moves
    assert not any(lists(m, mt="Reclaimable").values())
    assert lists(m, mt="Unmovable") == {k: [768 + (1 << k)] for k in range(8)}
    m.mm.check_invariants()


def test_mm_a8_5_below_half_no_claim_then_a9_steal() -> None:
    """MM A8.5 / A8.6 / A9: 255 free (alike 0 for Reclaimable) is below the threshold, so
    no claim; the request steals the smallest block and the pageblock keeps its type."""
    m, _ = _reclaimable_block_with_free(255)
    rec_before = lists(m, mt="Reclaimable")
    assert rec_before == {k: [768 + (1 << k)] for k in range(8)}
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert off(p) == 769                                  # smallest first: the o0 block
    assert m.mm.pageblock_type(BASE + 512) == "Reclaimable"
    assert not any(lists(m, mt="Unmovable").values())
    m.mm.check_invariants()
    # A9 remainder: the next steal splits the o1 block at 770 and 771 stays Reclaimable.
    assert off(m.mm.alloc_pages(gfp.GFP_KERNEL, 0)) == 770
    assert m.mm.free_list("DMA", 0, "Reclaimable") == [BASE + 771]
    assert m.mm.free_list("DMA", 0, "Unmovable") == []
    assert m.mm.pageblock_type(BASE + 771) == "Reclaimable"
    m.mm.check_invariants()


def test_mm_a8_2_movable_never_claims_below_order_4() -> None:
    """MM A8.2 / A9: with only order < 4 Unmovable blocks free, a Movable request does not
    claim (the search stops at order 3) and steals smallest-first instead."""
    m = fresh(NO_WMARKS)
    held = [m.mm.alloc_pages(gfp.GFP_KERNEL, 9)]                     # blocks 0, 512 Unmovable
    for order in (8, 7, 6, 5, 4, 0):
        held.append(m.mm.alloc_pages(gfp.GFP_KERNEL, order))
    assert [off(p) for p in held] == [0, 512, 768, 896, 960, 992, 1008]
    held += exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 10)
    assert not any(lists(m).values())
    assert lists(m, mt="Unmovable") == {0: [1009], 1: [1010], 2: [1012], 3: [1016]}
    p = m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 1)
    assert off(p) == 1010
    assert m.mm.pageblock_type(BASE + 1010) == "Unmovable"
    assert lists(m, mt="Unmovable") == {0: [1009], 2: [1012], 3: [1016]}
    m.mm.check_invariants()


def test_mm_a8_4_movable_claims_whole_unmovable_pageblock() -> None:
    """MM A8.2 / A8.4: at order ≥ 9 any request claims, retyping the pageblock."""
    m = fresh(NO_WMARKS)
    held = [m.mm.alloc_pages(gfp.GFP_KERNEL, 9)]                     # 512 left Unmovable
    held += exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 10)
    assert m.mm.free_list("DMA", 9, "Unmovable") == [BASE + 512]
    p = m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 3)
    assert off(p) == 512
    assert m.mm.pageblock_type(BASE + 512) == "Movable"
    assert m.mm.pageblock_type(BASE) == "Unmovable"
    assert lists(m) == {k: [512 + (1 << k)] for k in range(3, 9)}
    m.mm.check_invariants()


# --------------------------------------------------------------------------- F4


def _two_types_setup() -> tuple[Machine, Page, Page]:
    """Pageblock 0 allocated Unmovable, pageblock 512 allocated Reclaimable (order 9 each)."""
    m = fresh(NO_WMARKS)
    a = m.mm.alloc_pages(gfp.GFP_KERNEL, 9)
    assert off(a) == 0
    exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 10)
    b = m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, 9)   # claims 512
    assert off(b) == 512
    assert a is not None and b is not None
    assert m.mm.pageblock_type(BASE) == "Unmovable"
    assert m.mm.pageblock_type(BASE + 512) == "Reclaimable"
    return m, a, b


def test_mm_f4_4_mergeable_types_merge_and_freed_type_wins() -> None:
    """MM F4.4 / F4.5: at order 9 an Unmovable page merges with its free Reclaimable
    buddy; the buddy's pageblock takes the freed page's type."""
    m, a, b = _two_types_setup()
    m.mm.free_pages(b, 9)
    assert m.mm.free_list("DMA", 9, "Reclaimable") == [BASE + 512]
    m.mm.free_pages(a, 9)
    assert m.mm.free_list("DMA", 10, "Unmovable") == [BASE]
    assert m.mm.free_list("DMA", 9, "Reclaimable") == []
    assert m.mm.pageblock_type(BASE + 512) == "Unmovable"
    m.mm.check_invariants()


def test_mm_f4_4_reverse_order_reclaimable_wins() -> None:
    """MM F4.5: the same pair freed the other way round ends Reclaimable."""
    m, a, b = _two_types_setup()
    m.mm.free_pages(a, 9)
    m.mm.free_pages(b, 9)
    assert m.mm.free_list("DMA", 10, "Reclaimable") == [BASE]
    assert m.mm.pageblock_type(BASE) == "Reclaimable"
    m.mm.check_invariants()


def test_mm_f4_4_non_mergeable_neighbour_stays_apart() -> None:
    """MM F4.4 / C1.6: a HighAtomic pageblock never merges with an Unmovable buddy.
    (Uses the internal retyping hook that the HighAtomic reserve (A11.1) uses on an
    allocated block.)"""
    m, a, b = _two_types_setup()
    m.mm.set_pageblock_migratetype(b.pfn, MIGRATE_HIGHATOMIC)
    m.mm.free_pages(b, 9)
    m.mm.free_pages(a, 9)
    assert m.mm.free_list("DMA", 9, "HighAtomic") == [BASE + 512]
    assert m.mm.free_list("DMA", 9, "Unmovable") == [BASE]
    assert m.mm.free_list("DMA", 10, "Unmovable") == []
    m.mm.check_invariants()


def test_mm_f3_order10_free_goes_per_pageblock() -> None:
    """MM F3: an order-10 block whose pageblocks differ is freed as two order-9 pieces,
    each with its own type; the second (upper) piece's type wins the merge (F4.5)."""
    m = fresh(NO_WMARKS)
    p = m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 10)
    assert off(p) == 0 and p is not None
    m.mm.set_pageblock_migratetype(BASE, 0)                # lower piece Unmovable (hook)
    m.mm.free_pages(p, 10)
    assert m.mm.free_list("DMA", 10, "Movable")[0] == BASE
    assert m.mm.pageblock_type(BASE) == "Movable"
    m.mm.check_invariants()


def test_mm_f1_free_with_extra_reference_frees_tail_first() -> None:
    """MM F1: freeing an order-2 page with an extra reference frees the tail (orders 1, 0,
    upper halves first) now and the first page with its last reference."""
    m = fresh()
    p = m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 2)
    assert p is not None and off(p) == 0
    m.mm.get_page(p)
    free0 = m.mm.nr_free_pages()
    m.mm.free_pages(p, 2)
    assert m.mm.nr_free_pages() == free0 + 3
    assert m.mm.page_is_free(BASE + 1) and m.mm.page_is_free(BASE + 3)
    assert not m.mm.page_is_free(BASE)
    m.mm.check_invariants()
    m.mm.free_pages(p, 0)
    assert m.mm.nr_free_pages() == 16384
    assert lists(m) == {10: [1024 * i for i in range(16)]}


# --------------------------------------------------------------------------- W1


def test_mm_w1_exhaustion_stops_at_min_watermark() -> None:
    """MM W1.3 / W1.4 / A3: GFP_KERNEL stops with exactly min free (≤ fails); __GFP_HIGH
    may go to 50 % of min, GFP_ATOMIC to 37.5 %, GFP_NOWAIT gets no discount."""
    m = fresh()
    zone = m.mm.zones[0]
    assert zone._watermark[:3] == [256, 320, 384]
    got = exhaust(m, gfp.GFP_KERNEL)
    assert len(got) == 16384 - 256
    assert m.mm.nr_free_pages() == 256
    assert exhaust(m, gfp.GFP_NOWAIT) == []
    assert len(exhaust(m, gfp.GFP_KERNEL | gfp.__GFP_HIGH)) == 128
    assert m.mm.nr_free_pages() == 128
    assert len(exhaust(m, gfp.GFP_ATOMIC)) == 128 - 96
    assert m.mm.nr_free_pages() == 96
    m.mm.check_invariants()
    n = len(m.dmesg())
    assert m.mm.alloc_pages(gfp.GFP_ATOMIC, 0) is None
    assert any("page allocation failure" in text for _, text in m.dmesg()[n:])
    # everything comes back
    for p in got:
        m.mm.free_pages(p, 0)
    assert m.mm.nr_free_pages() == 16384 - 256 + 96


def test_mm_w1_fast_path_uses_low_then_slow_path_min() -> None:
    """MM A2 / A3 / W2: GFP_NOWAIT (no direct reclaim, no __GFP_HIGH) stops at min too,
    after passing the low mark on the fast path."""
    m = fresh()
    got = exhaust(m, gfp.GFP_NOWAIT)
    assert m.mm.nr_free_pages() == 256 and len(got) == 16384 - 256


def test_mm_w1_5_high_order_needs_a_free_block() -> None:
    """MM W1.5: plenty of free order-0 pages do not satisfy an order-1 request."""
    m = fresh(NO_WMARKS)
    pages = exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 0)
    assert m.mm.nr_free_pages() == 0                       # slow path: min 0
    for p in pages:
        if p.pfn % 2 == 0:
            m.mm.free_pages(p, 0)
    assert m.mm.nr_free_pages() > 8000
    before = snapshot(m)
    assert m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE | NOWARN, 1) is None
    assert snapshot(m) == before
    assert m.mm.alloc_pages(gfp.GFP_HIGHUSER_MOVABLE, 0) is not None


def test_mm_w1_higher_order_subtracts_its_size() -> None:
    """MM W1.1: free −= 2^order − 1 before the comparison (fresh zone, min 256)."""
    m = fresh()
    got = exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 10)
    # the 16th block: 1024 − 1023 = 1 ≤ 256 fails although 1024 pages are free
    assert len(got) == 15 and m.mm.nr_free_pages() == 1024
    assert len(exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 9)) == 1      # 1024 − 511 > 256
    assert m.mm.nr_free_pages() == 512
    assert exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 9) == []          # 512 − 511 ≤ 256
    assert len(exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 0)) == 256


# --------------------------------------------------------------------------- P8


JUNK = (bytes(range(1, 256)) * 17)[:4096]  # one page, no zero byte


def test_mm_p8_gfp_zero_clears_and_plain_alloc_keeps_junk() -> None:
    """MM P8 / A12: only __GFP_ZERO clears; without it old bytes stay."""
    m = fresh()
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 2)
    assert p is not None
    for k in range(4):
        m.phys_write(p.phys + k * 4096, JUNK)
    m.mm.free_pages(p, 2)
    assert m.phys_read(p.phys, 4096) == JUNK               # init_on_free=0
    q = m.mm.alloc_pages(gfp.GFP_KERNEL, 2)
    assert q is not None and q.pfn == p.pfn
    assert m.phys_read(q.phys + 3 * 4096, 4096) == JUNK
    m.mm.free_pages(q, 2)
    z = m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_ZERO, 2)
    assert z is not None and z.pfn == p.pfn
    assert m.phys_read(z.phys, 4 * 4096) == bytes(4 * 4096)
    # the neighbours were not cleared
    m.phys_write(z.phys + 4 * 4096, JUNK)
    m.mm.free_pages(z, 2)
    zz = m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_ZERO, 2)
    assert zz is not None and zz.pfn == z.pfn
    assert m.phys_read(z.phys + 4 * 4096, 4096) == JUNK


def test_mm_p8_init_on_free_clears_at_free() -> None:
    """MM P8: init_on_free=1 clears every freed page."""
    m = fresh("init_on_free=1")
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 1)
    assert p is not None
    m.phys_write(p.phys, JUNK)
    m.phys_write(p.phys + 4096, JUNK)
    m.mm.free_pages(p, 1)
    assert m.phys_read(p.phys, 8192) == bytes(8192)


def test_mm_p8_init_on_alloc_clears_every_allocation() -> None:
    """MM P8: init_on_alloc=1 clears without __GFP_ZERO."""
    m = fresh("init_on_alloc=1")
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert p is not None
    m.phys_write(p.phys, JUNK)
    m.mm.free_pages(p, 0)
    assert m.phys_read(p.phys, 4096) == JUNK
    q = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert q is not None and q.pfn == p.pfn
    assert m.phys_read(q.phys, 4096) == bytes(4096)


@pytest.mark.parametrize("value, on", [("0", False), ("1", True), ("y", True), ("off", False)])
def test_mm_p8_boot_switches_parse(value: str, on: bool) -> None:
    """MM P8: init_on_alloc= / init_on_free= take kstrtobool values."""
    m = fresh(f"init_on_alloc={value} init_on_free={value}")
    assert m.mm.init_on_alloc is on and m.mm.init_on_free is on


# --------------------------------------------------------------------------- V2


def _misuse_machine() -> tuple[Machine, Page]:
    """arm64, two banks with a hole, default reservations (first 16 MiB), one order-2 page."""
    m = Machine(ram=[(0x4000_0000, "32M"), (0x5000_0000, "32M")], cmdline="cma=0")
    p = m.mm.alloc_pages(gfp.GFP_KERNEL, 2)
    assert p is not None
    return m, p


@pytest.mark.parametrize("what, pfn_of, order", [
    ("wrong order (smaller)", lambda p: p.pfn, 1),
    ("wrong order (larger)", lambda p: p.pfn, 3),
    ("tail page", lambda p: p.pfn + 1, 0),
    ("free page", lambda p: p.pfn + 4, 0),
    ("free page inside a larger free block", lambda p: p.pfn + 2048 + 7, 0),
    ("hole between banks", lambda p: 0x48000, 0),
    ("below RAM", lambda p: 0x10, 0),
    ("above RAM", lambda p: 0x60000, 0),
    ("far outside", lambda p: 1 << 40, 0),
    ("negative pfn", lambda p: -1, 0),
    ("reserved page (kernel image)", lambda p: 0x40000, 0),
    ("reserved page, last of the image", lambda p: 0x40000 + 4095, 0),
    ("order 11", lambda p: p.pfn, 11),
    ("order 255 (the memmap's 'no allocation' mark) on a tail page", lambda p: p.pfn + 1, 255),
    ("order 255 on a free page", lambda p: p.pfn + 4, 255),
    ("order -1", lambda p: p.pfn, -1),
])
def test_mm_v2_bad_free_raises_naming_pfn(what: str, pfn_of: Any, order: int) -> None:
    """MM V2 / F1: misuse raises ValueError naming the pfn; nothing changes."""
    m, p = _misuse_machine()
    pfn = pfn_of(p)
    before = snapshot(m)
    with pytest.raises(ValueError) as info:
        m.mm.free_pages(pfn, order)
    assert f"{pfn:#x}" in str(info.value), what
    assert snapshot(m) == before, what
    m.mm.check_invariants()


def test_mm_v2_double_free_raises_and_changes_nothing() -> None:
    """MM V2 / F1: the second free of the same block raises; state unchanged."""
    m, p = _misuse_machine()
    m.mm.free_pages(p, 2)
    before = snapshot(m)
    for order in (2, 0):
        with pytest.raises(ValueError, match=f"{p.pfn:#x}"):
            m.mm.free_pages(p, order)
        assert snapshot(m) == before
    # a page handle works like a pfn, and after reallocation the free is legal again
    q = m.mm.alloc_pages(gfp.GFP_KERNEL, 2)
    assert q == p
    m.mm.free_pages(q, 2)
    assert snapshot(m) == before


@pytest.mark.parametrize("bad", ["0x40000", None, 1.5])
def test_mm_v2_free_of_non_int_pfn_raises(bad: Any) -> None:
    """A pfn that is not an int is a ValueError."""
    m, _ = _misuse_machine()
    before = snapshot(m)
    with pytest.raises(ValueError):
        m.mm.free_pages(bad, 0)
    assert snapshot(m) == before


def test_mm_v2_lookups_in_holes_raise() -> None:
    """Pfns in a hole or outside RAM are not pages."""
    m, _ = _misuse_machine()
    for pfn in (0x48000, 0x4FFFF, 0x52000, 0x3FFFF):
        with pytest.raises(ValueError, match=f"{pfn:#x}"):
            m.mm.pfn_to_page(pfn)
        with pytest.raises(ValueError, match=f"{pfn:#x}"):
            m.mm.page_is_free(pfn)
        with pytest.raises(ValueError, match=f"{pfn:#x}"):
            m.mm.pageblock_type(pfn)


def test_mm_free_list_argument_checks() -> None:
    """``free_list`` takes display names (MM C1.5 / C1.10) and orders 0..10."""
    m = fresh()
    assert m.mm.free_list("DMA32", 0, "Movable") == []
    for args in (("Highmem", 0, "Movable"), ("DMA", 11, "Movable"), ("DMA", 0, "movable")):
        with pytest.raises(ValueError):
            m.mm.free_list(*args)


# --------------------------------------------------------------------------- V1


def test_mm_v1_invariants_hold_through_mixed_traffic() -> None:
    """MM V1: after every public operation the free lists are consistent."""
    m = Machine(ram=[(0x4000_0000, "24M"), (0x4200_0000, "8M")], cmdline="cma=0",
                reserved=[(0x4010_0000, "1M")])
    flags = [gfp.GFP_KERNEL, gfp.GFP_HIGHUSER_MOVABLE, gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE,
             gfp.GFP_ATOMIC]
    live: list[tuple[Page, int]] = []
    for i in range(400):
        if i % 3 == 2 and live:
            p, order = live.pop((i * 7) % len(live))
            m.mm.free_pages(p, order)
        else:
            order = (i * 5) % 6
            p2 = m.mm.alloc_pages(flags[i % 4] | NOWARN, order)
            if p2 is not None:
                live.append((p2, order))
        m.mm.check_invariants()
    for p, order in live:
        m.mm.free_pages(p, order)
    m.mm.check_invariants()
    assert m.mm.nr_free_pages() == sum(z.managed_pages for z in m.mm.zones)


# --------------------------------------------------------------------------- A10/A11


def _half_free_reclaimable_block(cmdline: str) -> Machine:
    """Like _reclaimable_block_with_free(256) but with the given tunables."""
    m = fresh(cmdline)
    assert m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, 9) is not None
    exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 10)
    assert off(m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_RECLAIMABLE, 8)) == 512
    assert m.mm.nr_free_pages() == 256
    return m


WMARK_0 = "sysctl.vm.min_free_kbytes=0 sysctl.vm.watermark_scale_factor=1"


def test_mm_a10_claim_below_pageblock_order_boosts_and_kswapd_resets() -> None:
    """MM A10: a claim at order < 9 boosts the watermark by one pageblock (cap
    max(512, high × factor / 10000)); a request with KSWAPD wakes kswapd, which (modelled
    synchronously) drops the boost again."""
    m = _half_free_reclaimable_block(WMARK_0)
    zone = m.mm.zones[0]
    assert off(m.mm.alloc_pages(gfp.GFP_KERNEL, 0)) == 768
    assert zone.watermark_boost == 0
    m = _half_free_reclaimable_block(WMARK_0)
    zone = m.mm.zones[0]
    no_kswapd = gfp.GFP_KERNEL & ~gfp.__GFP_KSWAPD_RECLAIM
    assert off(m.mm.alloc_pages(no_kswapd, 0)) == 768
    assert zone.watermark_boost == 512
    # the boosted marks now stop further requests of that kind (255 free ≤ 0 + 512)
    assert m.mm.alloc_pages(no_kswapd | NOWARN, 0) is None
    m.mm.check_invariants()


def test_mm_a10_no_boost_when_factor_zero() -> None:
    """MM A10: watermark_boost_factor 0 disables boosting."""
    m = _half_free_reclaimable_block(WMARK_0 + " sysctl.vm.watermark_boost_factor=0")
    assert off(m.mm.alloc_pages(gfp.GFP_KERNEL & ~gfp.__GFP_KSWAPD_RECLAIM, 0)) == 768
    assert m.mm.zones[0].watermark_boost == 0


def test_mm_a11_1_slow_path_atomic_high_order_reserves_pageblock() -> None:
    """MM A11.1 / G7 / G8: an order-1 GFP_ATOMIC served on the slow path of a zone of
    ≥ 200 MiB turns its pageblock into HighAtomic; small zones never reserve."""
    m = Machine(ram="256M", reserved=(), cmdline="cma=0")
    zone = m.mm.zones[0]
    exhaust(m, gfp.GFP_KERNEL, 9)
    exhaust(m, gfp.GFP_KERNEL, 0)              # below low: the fast path fails from now on
    assert zone.nr_free_pages <= zone._watermark[1]
    freed = [m.mm.alloc_pages(gfp.GFP_ATOMIC, 1) for _ in range(1)]
    p = freed[0]
    assert p is not None
    assert m.mm.pageblock_type(p.pfn) == "HighAtomic"
    assert zone.nr_reserved_highatomic == 512
    m.mm.check_invariants()
    small = fresh()
    exhaust(small, gfp.GFP_KERNEL, 0)
    q = small.mm.alloc_pages(gfp.GFP_ATOMIC, 1)
    assert q is not None and small.mm.pageblock_type(q.pfn) != "HighAtomic"


# --------------------------------------------------------------------------- G9 defrag


def _pageblocks_511_free(cmdline: str) -> Machine:
    """256 MiB arm64: every pageblock allocated as order 9, then all but its first page
    given back (MM F1 with an extra reference): 511 free pages per block, nothing ≥ o9."""
    m = Machine(ram="256M", reserved=(), cmdline=f"cma=0 {WMARK_0} {cmdline}")
    for p in exhaust(m, gfp.GFP_HIGHUSER_MOVABLE, 9):
        m.mm.get_page(p)
        m.mm.free_pages(p, 9)
    assert not any(m.mm.free_list("DMA", k, mt) for k in (9, 10) for mt in TYPES)
    assert not any(m.mm.free_list("DMA", k, "Unmovable") for k in range(11))
    return m


def test_mm_g9_without_defrag_mode_fast_path_claims() -> None:
    """MM G9: a DMA-only arm64 machine has no NOFRAGMENT on the fast path, so an order-1
    GFP_ATOMIC claims a Movable pageblock there (no HighAtomic reserve, A11.2)."""
    m = _pageblocks_511_free("sysctl.vm.watermark_boost_factor=0")
    p = m.mm.alloc_pages(gfp.GFP_ATOMIC, 1)
    assert p is not None and m.mm.pageblock_type(p.pfn) == "Unmovable"
    assert m.mm.zones[0].nr_reserved_highatomic == 0


def test_mm_g9_defrag_mode_keeps_nofragment_until_the_slow_path_gives_up() -> None:
    """MM G9 / G7 / A11.1: with vm.defrag_mode=1 the zonelist walk is *not* repeated
    without NOFRAGMENT; the request falls back only at the end of the slow path (the
    kernel's ``nopage`` retry), with the slow path's flags — so an order-1 GFP_ATOMIC
    carries HIGHATOMIC and reserves the pageblock it claimed."""
    m = _pageblocks_511_free("sysctl.vm.defrag_mode=1 sysctl.vm.watermark_boost_factor=0")
    p = m.mm.alloc_pages(gfp.GFP_ATOMIC, 1)
    assert p is not None and m.mm.pageblock_type(p.pfn) == "HighAtomic"
    assert m.mm.zones[0].nr_reserved_highatomic == 512
    m.mm.check_invariants()
