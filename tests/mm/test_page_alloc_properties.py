"""Property tests (hypothesis) for boot and the buddy allocator: MM Z0, Z1, Z4, Z5, V1,
V2, F4, A1–A6 over random small machines (16–128 MiB, both arches, random banks with
holes, random reservations and ``mem=``) and random alloc/free sequences.

The boot layout is recomputed here independently from the rules (MM Z0.1 banks and ``mem=``,
Z0.2 reservations, Z1 zone bounds, Z4 chunking) and compared with the machine.
"""

from __future__ import annotations

import pytest

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pykern.mm.gfp as gfp
from pykern import Machine

pytestmark = pytest.mark.slow

M = 1 << 20
PAGE = 4096
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GFPS = [gfp.GFP_KERNEL, gfp.GFP_USER, gfp.GFP_HIGHUSER_MOVABLE, gfp.GFP_ATOMIC]


@dataclass
class Layout:
    arch: str
    banks: list[tuple[int, int]]           # bytes
    reserved: list[tuple[int, int]] | None  # bytes; None = default
    mem: int | None                         # bytes
    cmdline: str

    def kwargs(self) -> dict[str, Any]:
        return dict(arch=self.arch, ram=self.banks, reserved=self.reserved,
                    cmdline=self.cmdline)


@st.composite
def layouts(draw: Any) -> Layout:
    """Valid machines of 16–128 MiB: 1–3 page-aligned banks, holes, reservations, mem=."""
    arch = draw(st.sampled_from(["arm64", "x86_64"]))
    nbanks = draw(st.integers(1, 3))
    if arch == "arm64":
        pfn = 0x40000 + draw(st.sampled_from([0, 0, 1, 512, 1024, 4095]))
    else:
        pfn = draw(st.sampled_from([0, 0, 0, 1, 256, 3000, 4096, 8192]))
    total_target = draw(st.integers(4096, 32768))                     # 16–128 MiB
    sizes = [total_target // nbanks] * nbanks
    sizes[0] += total_target - sum(sizes)
    jitter = draw(st.lists(st.integers(-200, 200), min_size=nbanks, max_size=nbanks))
    sizes = [max(1, s + j) for s, j in zip(sizes, jitter)]
    sizes[-1] += max(0, 4096 - sum(sizes))                             # at least 16 MiB
    banks = []
    for k, size in enumerate(sizes):
        if k:
            hole = draw(st.sampled_from([0, 1, 7, 512, 1024, 3333, 8192, -1]))
            pfn = max(pfn, 1 << 20) if hole < 0 else pfn + hole   # -1: next bank at 4 GiB
        banks.append((pfn * PAGE, size * PAGE))
        pfn += size
    first, last = banks[0][0] // PAGE, pfn
    kind = draw(st.sampled_from(["default", "default", "none", "random"]))
    reserved: list[tuple[int, int]] | None
    if kind == "default":
        reserved = None
    elif kind == "none":
        reserved = []
    else:
        reserved = []
        for _ in range(draw(st.integers(1, 3))):
            b = draw(st.integers(first - 16, last))
            n = draw(st.integers(1, 3000))
            reserved.append((max(0, b) * PAGE, n * PAGE))
    mem = None
    if draw(st.booleans()) and draw(st.booleans()):
        if arch == "arm64":
            mem = draw(st.integers(1, total_target + 100)) * PAGE
        else:
            mem = draw(st.integers(first + 1, last + 100)) * PAGE
    words = []
    if arch == "arm64":
        words.append("cma=0")
    if mem is not None:
        words.append(f"mem={mem}")
    if draw(st.booleans()):
        words.append("sysctl.vm.min_free_kbytes=0")
    return Layout(arch, banks, reserved, mem, " ".join(words))


# ------------------------------------------------------------ independent model of Z0–Z4


def subtract(ranges: list[tuple[int, int]], b: int, e: int) -> list[tuple[int, int]]:
    out = []
    for s, t in ranges:
        if t <= b or s >= e:
            out.append((s, t))
        else:
            if s < b:
                out.append((s, b))
            if t > e:
                out.append((e, t))
    return out


def model_memory(lay: Layout) -> list[tuple[int, int]]:
    """MM Z0.1: RAM in bytes after mem=, adjacent banks merged."""
    mem: list[tuple[int, int]] = []
    for b, s in sorted(lay.banks):
        if mem and mem[-1][1] == b:
            mem[-1] = (mem[-1][0], b + s)
        else:
            mem.append((b, b + s))
    if lay.mem is not None:
        if lay.arch == "x86_64":
            cut = lay.mem
        else:
            left, cut = lay.mem, mem[-1][1]
            for b, e in mem:
                if e - b >= left:
                    cut = b + left
                    break
                left -= e - b
        mem = subtract(mem, cut, 1 << 62)
    return mem


def model_reserved(lay: Layout) -> list[tuple[int, int]]:
    """MM Z0.2 (bytes, not yet clipped)."""
    if lay.reserved is not None:
        return [(b, b + s) for b, s in lay.reserved]
    lowest = min(b for b, _ in lay.banks)
    if lay.arch == "arm64":
        return [(lowest, lowest + 16 * M)]
    return [(0, 1 * M), (16 * M, 32 * M)]


def model_zones(lay: Layout, mem: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """MM Z1: pfn bounds of DMA, DMA32, Normal."""
    start, end = mem[0][0] >> 12, mem[-1][1] >> 12
    if lay.arch == "x86_64":
        cuts = [4096, 1 << 20]
    else:
        dma = 1 << 20 if start < 1 << 20 else end       # 4 GiB, or all RAM above it
        cuts = [dma, dma]
    lo = [start, max(start, min(cuts[0], end)), max(start, min(cuts[1], end))]
    hi = [lo[1], lo[2], end]
    return list(zip(lo, hi))


def model_buddyinfo(lay: Layout) -> dict[int, Counter[int]]:
    """MM Z4: zone index → Counter(order) of the boot-time free blocks."""
    mem = model_memory(lay)
    free = list(mem)
    for b, e in model_reserved(lay):
        free = subtract(free, b, e)
    zones = model_zones(lay, mem)
    out: dict[int, Counter[int]] = {i: Counter() for i in range(3)}
    for b, e in free:
        s, t = -(-b // PAGE), e // PAGE
        for zi, (zs, ze) in enumerate(zones):
            a, z = max(s, zs), min(t, ze)
            while a < z:
                order = 10 if a == 0 else min(10, (a & -a).bit_length() - 1)
                while a + (1 << order) > z:
                    order -= 1
                out[zi][order] += 1
                a += 1 << order
    return out


def buddyinfo_counts(m: Machine) -> dict[str, list[int]]:
    out = {}
    for line in m.read("/proc/buddyinfo").splitlines():
        words = line.split()
        out[words[3]] = [int(w) for w in words[4:]]
    return out


# ------------------------------------------------------------------------ properties


@FAST
@given(layouts())
def test_mm_z4_v1_random_layouts_boot_like_the_model(lay: Layout) -> None:
    """MM Z0/Z1/Z4/Z5/V1: any valid layout boots; free blocks are exactly the Z4 chunks
    of memory minus reservations, inside RAM, and the counters agree."""
    m = Machine(**lay.kwargs())
    mm = m.mm
    mm.check_invariants()
    mem = model_memory(lay)
    zones = model_zones(lay, mem)
    expect = model_buddyinfo(lay)
    got = buddyinfo_counts(m)
    names = ("DMA", "DMA32", "Normal")
    for zi, name in enumerate(names):
        z = mm.zones[zi]
        present = sum(max(0, min(e >> 12, zones[zi][1]) - max(b >> 12, zones[zi][0]))
                      for b, e in mem)
        assert z.present_pages == present, name
        if present:
            assert (z.zone_start_pfn, z.zone_end_pfn) == zones[zi], name
            assert got[name] == [expect[zi][k] for k in range(11)], name
            assert z.managed_pages == sum(n << k for k, n in expect[zi].items()), name
        else:
            assert name not in got and not expect[zi]
    assert mm.nr_free_pages() == sum(z.managed_pages for z in mm.zones)
    ram = [(b >> 12, e >> 12) for b, e in mem]
    for zone, order, mt, pfn in mm.iter_free_blocks():
        assert mt == 1                                      # MM Z3: all Movable at boot
        assert any(b <= pfn and pfn + (1 << order) <= e for b, e in ram)
    assert m.read("/proc/iomem").count("System RAM") == len(mem)


@dataclass
class Live:
    pfn: int
    order: int


def _check_state(m: Machine, live: list[Live], owned: bytearray, base: int,
                 managed: int) -> None:
    mm = m.mm
    mm.check_invariants()
    held = sum(1 << a.order for a in live)
    assert mm.nr_free_pages() + held == managed
    for zone, order, mt, pfn in mm.iter_free_blocks():          # no live page is free
        assert owned.find(1, pfn - base, pfn - base + (1 << order)) == -1, hex(pfn)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.lists(st.tuples(st.integers(0, 99), st.sampled_from(GFPS),
                                     st.one_of(st.integers(0, 3), st.integers(0, 10))),
                           max_size=60))
def test_mm_v1_random_alloc_free_sequences(lay: Layout,
                                            ops: list[tuple[int, int, int]]) -> None:
    """MM V1 / F4 / A6 / V2: random allocations and frees keep every invariant, never
    hand out overlapping or reserved pages, and freeing everything restores the boot
    state of /proc/buddyinfo and NR_FREE_PAGES."""
    m = Machine(**lay.kwargs())
    mm = m.mm
    boot_info, boot_free = m.read("/proc/buddyinfo"), mm.nr_free_pages()
    managed = sum(z.managed_pages for z in mm.zones)
    base = mm.mem_map.base_pfn
    owned = bytearray(mm.mem_map.nr_slots)
    live: list[Live] = []
    for pick, flags, order in ops:
        if pick < 35 and live:
            a = live.pop(pick % len(live))
            mm.free_pages(a.pfn, a.order)
            owned[a.pfn - base:a.pfn - base + (1 << a.order)] = bytes(1 << a.order)
        else:
            page = mm.alloc_pages(flags | gfp.__GFP_NOWARN, order)
            if page is not None:
                pfn, n = page.pfn, 1 << order
                assert pfn % n == 0
                assert owned.find(1, pfn - base, pfn - base + n) == -1   # no overlap
                for p in (pfn, pfn + n - 1):
                    assert not mm.page_is_free(p)
                    assert not mm.pfn_to_page(p).reserved
                owned[pfn - base:pfn - base + n] = b"\x01" * n
                live.append(Live(pfn, order))
        _check_state(m, live, owned, base, managed)
    # misuse on the way out changes nothing (MM V2)
    if live:
        a = live[0]
        info = m.read("/proc/buddyinfo")
        for bad in ((a.pfn, a.order + 1), (a.pfn + 1, 0) if a.order else (a.pfn, 1)):
            try:
                mm.free_pages(*bad)
            except ValueError:
                pass
            else:
                raise AssertionError(f"bad free {bad} accepted")
        assert m.read("/proc/buddyinfo") == info
    for a in live:
        mm.free_pages(a.pfn, a.order)
    mm.check_invariants()
    assert m.read("/proc/buddyinfo") == boot_info
    assert mm.nr_free_pages() == boot_free


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.sampled_from(GFPS), st.integers(0, 10), st.integers(0, 2**32))
def test_mm_w1_exhaust_then_free_all(lay: Layout, flags: int, order: int, seed: int) -> None:
    """MM W1 / A3 / F4: allocating one order until failure leaves every zone at or below
    its limit, never below the 37.5 % GFP_ATOMIC floor; freeing in random order restores
    the boot state exactly."""
    m = Machine(**lay.kwargs())
    mm = m.mm
    boot_info, boot_free = m.read("/proc/buddyinfo"), mm.nr_free_pages()
    got = []
    while (p := mm.alloc_pages(flags | gfp.__GFP_NOWARN, order)) is not None:
        got.append(p)
        assert len(got) <= boot_free
    mm.check_invariants()
    for z in mm.zones:                 # W1.3: no success ever took a zone below its floor
        floor = z._watermark[0]
        if flags & gfp.__GFP_HIGH:
            floor -= floor // 2
            floor -= floor // 4        # GFP_ATOMIC is also NON_BLOCK
        assert z.nr_free_pages >= min(floor, z.managed_pages), z.name
    random.Random(seed).shuffle(got)
    for p in got:
        mm.free_pages(p, order)
    mm.check_invariants()
    assert m.read("/proc/buddyinfo") == boot_info
    assert mm.nr_free_pages() == boot_free
