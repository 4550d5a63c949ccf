"""Boot, zones, watermarks and Machine argument checking against the MM C and Z rules
(C1.12, Z0, Z1, Z4–Z7) and the ``Machine`` API reference.

Every test names the rule it checks.  arm64 machines pass ``cma=0`` so that the default
32 MiB CMA area (MM C1.15) stays out of the zone arithmetic unless a test wants it.
"""

from __future__ import annotations

import errno
from math import isqrt
from typing import Any

import pytest

import pykern.mm.gfp as gfp
from pykern import Machine
from pykern.mm.mmzone import migratetype_names

G = 1 << 30
M = 1 << 20
BASE = 0x40000  #: arm64 RAM starts at 0x4000_0000
X86_Q35_5G = [(0, 2 * G), (4 * G, 3 * G)]  #: q35 with 5 GiB: 2 GiB low, 3 GiB high


def zone_table(m: Machine) -> dict[str, tuple[int, int, int, int]]:
    """name → (start pfn, spanned, present, managed) of the populated zones."""
    return {z.name: (z.zone_start_pfn, z.spanned_pages, z.present_pages, z.managed_pages)
            for z in m.mm.zones if z.populated_zone()}


def buddyinfo_zones(m: Machine) -> list[str]:
    return [line.split()[3] for line in m.read("/proc/buddyinfo").splitlines()]


def system_ram(m: Machine) -> list[str]:
    return [line for line in m.read("/proc/iomem").splitlines() if line.endswith("System RAM")]


def pages_free(m: Machine, lo: int, hi: int) -> list[bool]:
    return [m.mm.page_is_free(p) for p in range(lo, hi)]


# --------------------------------------------------------------------------- Z1


def test_mm_z1_arm64_1g_is_dma_only() -> None:
    """MM Z1: arm64 RAM below 4 GiB is all ZONE_DMA; DMA32 and Normal are empty."""
    m = Machine(ram="1G", cmdline="cma=0")
    assert zone_table(m) == {"DMA": (BASE, 262144, 262144, 262144 - 4096)}
    assert buddyinfo_zones(m) == ["DMA"]
    assert [z.spanned_pages for z in m.mm.zones] == [262144, 0, 0, 0]


def test_mm_z1_x86_64_1g_dma_and_dma32() -> None:
    """MM Z1 / Z0.2: x86_64 DMA = [0, 16 MiB), DMA32 = [16 MiB, 4 GiB)."""
    m = Machine(ram="1G", arch="x86_64")
    assert zone_table(m) == {
        "DMA": (0, 4096, 4096, 4096 - 256),
        "DMA32": (4096, 262144 - 4096, 262144 - 4096, 262144 - 4096 - 4096),
    }
    assert buddyinfo_zones(m) == ["DMA", "DMA32"]


def test_mm_z1_x86_64_banks_above_4g_make_normal() -> None:
    """MM Z1 / Z5: q35 5 GiB (2 GiB + 3 GiB above 4 GiB): DMA32 spans to 4 GiB with a
    hole, Normal starts at 4 GiB (the real 6.18 capture has the same spans)."""
    m = Machine(ram=X86_Q35_5G, arch="x86_64")
    assert zone_table(m) == {
        "DMA": (0, 4096, 4096, 3840),
        "DMA32": (4096, 1044480, 520192, 520192 - 4096),
        "Normal": (1048576, 786432, 786432, 786432),
    }
    assert buddyinfo_zones(m) == ["DMA", "DMA32", "Normal"]


def test_mm_z1_arm64_5g_dma_below_4g_normal_above() -> None:
    """MM Z1: arm64 RAM from 1 GiB to 6 GiB: DMA = [1 GiB, 4 GiB), Normal above."""
    m = Machine(ram="5G", cmdline="cma=0")
    assert zone_table(m) == {
        "DMA": (BASE, 786432, 786432, 786432 - 4096),
        "Normal": (1048576, 524288, 524288, 524288),
    }
    assert m.mm.zones[1].spanned_pages == 0
    assert buddyinfo_zones(m) == ["DMA", "Normal"]


def test_mm_z1_arm64_ram_above_4g_is_all_dma() -> None:
    """MM Z1: arm64 RAM starting at or above 4 GiB → DMA = all RAM."""
    m = Machine(ram=[(8 * G, 64 * M), (12 * G, 64 * M)], cmdline="cma=0", reserved=())
    start = 8 * G >> 12
    assert zone_table(m) == {"DMA": (start, (4 * G + 64 * M) >> 12, 32768, 32768)}


def test_mm_z1_x86_64_ram_starting_above_16m_has_no_dma() -> None:
    """MM Z1: the DMA zone is empty when no RAM lies below 16 MiB."""
    m = Machine(ram=[(64 * M, 64 * M)], arch="x86_64", reserved=())
    assert zone_table(m) == {"DMA32": (16384, 16384, 16384, 16384)}
    assert buddyinfo_zones(m) == ["DMA32"]


# --------------------------------------------------------------------------- Z0


def test_mm_z0_2_arm64_reserves_first_16m() -> None:
    """MM Z0.2: arm64 generation 0 reserves [lowest bank, +16 MiB)."""
    m = Machine(ram="64M", cmdline="cma=0")
    mm = m.mm
    assert mm.zones[0].managed_pages == 16384 - 4096
    for pfn in (BASE, BASE + 1, BASE + 4095):
        assert mm.pfn_to_page(pfn).reserved and not mm.page_is_free(pfn)
    assert not mm.pfn_to_page(BASE + 4096).reserved and mm.page_is_free(BASE + 4096)
    assert mm.free_list("DMA", 10, "Movable")[0] == BASE + 4096
    iomem = m.read("/proc/iomem")
    assert iomem.startswith("40000000-43ffffff : System RAM\n  40000000-")
    assert "Kernel code" in iomem and "Kernel data" in iomem


def test_mm_z0_2_arm64_reservation_clipped_to_small_first_bank() -> None:
    """MM Z0.2: the image range is clipped to RAM; the second bank is untouched."""
    m = Machine(ram=[(0x4000_0000, "8M"), (0x8000_0000, "64M")], cmdline="cma=0")
    assert not any(pages_free(m, BASE, BASE + 2048))
    assert all(m.mm.pfn_to_page(p).reserved for p in (BASE, BASE + 2047))
    assert m.mm.zones[0].managed_pages == 16384
    assert m.mm.free_list("DMA", 10, "Movable")[0] == 0x80000


def test_mm_z0_2_x86_reserves_first_mib_and_16_to_32m() -> None:
    """MM Z0.2: x86_64 reserves [0, 1 MiB) and its load address [16 MiB, 32 MiB)."""
    m = Machine(ram="64M", arch="x86_64")
    mm = m.mm
    for pfn in (0, 255, 4096, 8191):
        assert mm.pfn_to_page(pfn).reserved, pfn
    for pfn in (256, 4095, 8192, 16383):
        assert not mm.pfn_to_page(pfn).reserved and mm.page_is_free(pfn), pfn
    assert [z.managed_pages for z in mm.zones[:2]] == [3840, 8192]
    assert "01000000-01501257 : Kernel code" in m.read("/proc/iomem")


def test_mm_z0_2_reserved_argument_replaces_defaults() -> None:
    """MM Z0.2: reserved=() reserves nothing; a list reserves exactly those ranges."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0")
    assert m.mm.zones[0].managed_pages == 16384
    assert "Kernel code" not in m.read("/proc/iomem")
    m = Machine(ram="64M", reserved=[(0x4010_0000, "2M")], cmdline="cma=0")
    assert m.mm.zones[0].managed_pages == 16384 - 512
    lo, hi = BASE + 256, BASE + 768
    assert [m.mm.pfn_to_page(p).reserved for p in (lo - 1, lo, hi - 1, hi)] == \
        [False, True, True, False]
    m = Machine(ram="64M", arch="x86_64", reserved=[(0, 4096)])
    assert [z.managed_pages for z in m.mm.zones[:2]] == [4095, 12288]
    m.mm.check_invariants()


def test_mm_z0_2_reserved_pages_never_reach_the_allocator() -> None:
    """MM Z4 / Z0.2: exhausting memory never hands out a reserved page."""
    m = Machine(ram="32M", cmdline="cma=0 sysctl.vm.min_free_kbytes=0")
    got = []
    while (p := m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_NOWARN, 0)) is not None:
        got.append(p.pfn)
    assert min(got) == BASE + 4096 and len(got) == 4096


# --------------------------------------------------------------------------- mem=


def test_mm_z0_1_arm64_mem_keeps_first_bytes_across_banks() -> None:
    """MM Z0.1: arm64 mem= keeps the first ``size`` bytes of RAM in address order."""
    m = Machine(ram=[(0x4000_0000, "32M"), (0x8000_0000, "32M")], reserved=(),
                cmdline="cma=0 mem=48M")
    assert system_ram(m) == ["40000000-41ffffff : System RAM", "80000000-80ffffff : System RAM"]
    assert m.mm.zones[0].present_pages == 8192 + 4096
    assert m.mm.zones[0].zone_end_pfn == 0x81000
    for pfn in (0x81000, 0x81fff):
        with pytest.raises(ValueError, match=f"{pfn:#x}"):
            m.mm.page_is_free(pfn)
    m.mm.check_invariants()


def test_mm_z0_1_x86_mem_keeps_below_address() -> None:
    """MM Z0.1: x86_64 mem= keeps what lies below physical address ``size``."""
    m = Machine(ram=[(0, "32M"), (64 * M, "32M")], arch="x86_64", reserved=(),
                cmdline="mem=80M")
    assert system_ram(m) == ["00000000-01ffffff : System RAM", "04000000-04ffffff : System RAM"]
    assert zone_table(m) == {"DMA": (0, 4096, 4096, 4096),
                             "DMA32": (4096, 16384, 8192, 8192)}
    m = Machine(ram="64M", arch="x86_64", reserved=(), cmdline="mem=0x1800000")
    assert system_ram(m) == ["00000000-017fffff : System RAM"]


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_mm_z0_1_mem_larger_than_ram_changes_nothing(arch: str) -> None:
    """MM Z0.1: a limit above the end of RAM removes nothing."""
    a = Machine(ram="64M", arch=arch, cmdline="cma=0")
    b = Machine(ram="64M", arch=arch, cmdline="cma=0 mem=8G")
    assert zone_table(a) == zone_table(b)
    assert a.read("/proc/buddyinfo") == b.read("/proc/buddyinfo")


def test_mm_z0_1_arm64_mem_in_the_middle_of_a_bank() -> None:
    """MM Z0.1: the cut may fall inside the lowest bank (page granular)."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0 mem=10M")
    assert zone_table(m) == {"DMA": (BASE, 2560, 2560, 2560)}
    assert m.read("/proc/buddyinfo").split()[4:] == ["0"] * 9 + ["1", "2"]


# --------------------------------------------------------------------------- holes / Z5


def test_mm_z5_holes_between_banks() -> None:
    """MM Z5 / Z0.1 / V1: a hole is spanned but not present; no free block covers it and
    its pfns are rejected."""
    m = Machine(ram=[(0x4000_0000, "32M"), (0x4400_0000, "32M")], reserved=(), cmdline="cma=0")
    assert zone_table(m) == {"DMA": (BASE, 24576, 16384, 16384)}
    hole = range(BASE + 8192, BASE + 16384)
    for zone, order, mt, pfn in m.mm.iter_free_blocks():
        assert pfn + (1 << order) <= hole.start or pfn >= hole.stop
    for pfn in (hole.start, hole.start + 1234, hole.stop - 1):
        with pytest.raises(ValueError, match=f"{pfn:#x}"):
            m.mm.free_pages(pfn, 0)
        with pytest.raises(ValueError, match=f"{pfn:#x}"):
            m.mm.pfn_to_page(pfn)
    assert m.read("/proc/buddyinfo").split()[-1] == "16"
    m.mm.check_invariants()


def test_mm_z5_unaligned_bank_edges() -> None:
    """MM Z4 / Z5: banks that are page- but not block-aligned release correct chunks."""
    m = Machine(ram=[(0x4000_3000, 0x5000), (0x4010_0000, 0x100_0000 - 0x1000)], reserved=(),
                cmdline="cma=0")
    z = m.mm.zones[0]
    assert z.zone_start_pfn == BASE + 3
    assert z.present_pages == z.managed_pages == 5 + 4095
    assert m.mm.nr_free_pages() == 5 + 4095
    assert m.mm.free_list("DMA", 0, "Movable")[0] == BASE + 3
    assert m.mm.free_list("DMA", 2, "Movable")[0] == BASE + 4
    m.mm.check_invariants()


# --------------------------------------------------------------------------- Z3/Z4


def test_mm_z4_fresh_zone_blocks_ascending_at_order_10() -> None:
    """MM Z4 / Z3: the fresh zone has 16 order-10 Movable blocks, lowest at the head."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0")
    assert m.mm.free_list("DMA", 10, "Movable") == [BASE + 1024 * i for i in range(16)]
    for k in range(11):
        for mt in migratetype_names:
            if (k, mt) != (10, "Movable"):
                assert m.mm.free_list("DMA", k, mt) == []
    assert m.read("/proc/buddyinfo") == (
        "Node 0, zone      DMA      0      0      0      0      0      0      0      0"
        "      0      0     16 \n")
    assert {m.mm.pageblock_type(BASE + 512 * i) for i in range(32)} == {"Movable"}


def test_mm_z4_chunks_follow_alignment_around_a_reserved_page() -> None:
    """MM Z4: chunk order = lowest set bit of the start, lowered to fit; to tail."""
    m = Machine(ram="64M", reserved=[(0x4000_5000, 4096)], cmdline="cma=0")
    mm = m.mm
    got = {k: [p - BASE for p in mm.free_list("DMA", k, "Movable")] for k in range(11)}
    assert got == {0: [4], 1: [6], 2: [0], 3: [8], 4: [16], 5: [32], 6: [64], 7: [128],
                   8: [256], 9: [512], 10: [1024 * i for i in range(1, 16)]}
    assert mm.pfn_to_page(BASE + 5).reserved
    mm.check_invariants()


def test_mm_z4_x86_dma_chunks_and_dma32_order() -> None:
    """MM Z4: x86_64 DMA after the first MiB: 256 (o8), 512 (o9), then order-10 chunks;
    DMA32 starts after the kernel image at 32 MiB."""
    m = Machine(ram="1G", arch="x86_64")
    mm = m.mm
    assert mm.free_list("DMA", 8, "Movable") == [256]
    assert mm.free_list("DMA", 9, "Movable") == [512]
    assert mm.free_list("DMA", 10, "Movable") == [1024, 2048, 3072]
    assert mm.free_list("DMA32", 10, "Movable") == list(range(8192, 262144, 1024))


# --------------------------------------------------------------------------- Z6


def test_mm_z6_5_fresh_zone_watermarks() -> None:
    """MM Z6.5: 16384 managed pages → min_free_kbytes 1024, min 256 low 320 high 384
    promo 448."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0")
    assert m.mm.min_free_kbytes == 1024
    assert m.read("/proc/sys/vm/min_free_kbytes") == "1024\n"
    assert m.mm.zones[0]._watermark == [256, 320, 384, 448]
    assert m.mm.zones[0].watermark_boost == 0


def test_mm_z6_5_watermarks_from_cmdline_sysctls() -> None:
    """MM Z6.5 / C1.12: sysctl.vm.* on the command line applies after boot's computation."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0 sysctl.vm.min_free_kbytes=0 "
                "sysctl.vm.watermark_scale_factor=1")
    assert m.mm.zones[0]._watermark == [0, 1, 2, 3]
    assert m.read("/proc/sys/vm/min_free_kbytes") == "0\n"
    assert m.read("/proc/sys/vm/watermark_scale_factor") == "1\n"


def test_mm_z6_5_watermarks_via_sysctl_write() -> None:
    """MM Z6.5 / C1.12: writing /proc/sys/vm recomputes the watermarks at run time."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0")
    m.write("/proc/sys/vm/min_free_kbytes", "0")
    assert m.mm.zones[0]._watermark == [0, 16, 32, 48]  # d = ⌊16384 × 10 / 10000⌋ = 16
    m.write("/proc/sys/vm/watermark_scale_factor", "1\n")
    assert m.mm.zones[0]._watermark == [0, 1, 2, 3]
    m.write("/proc/sys/vm/min_free_kbytes", "1024")
    m.write("/proc/sys/vm/watermark_scale_factor", "10")
    assert m.mm.zones[0]._watermark == [256, 320, 384, 448]
    m.write("/proc/sys/vm/watermark_scale_factor", "1000")
    assert m.mm.zones[0]._watermark == [256, 256 + 1638, 256 + 2 * 1638, 256 + 3 * 1638]


@pytest.mark.parametrize("name, value", [
    ("min_free_kbytes", "-1"), ("min_free_kbytes", "abc"), ("min_free_kbytes", "12abc"),
    ("watermark_scale_factor", "0"), ("watermark_scale_factor", "3001"),
    ("watermark_boost_factor", "-5"), ("defrag_mode", "2"),
])
def test_mm_c1_12_out_of_range_sysctl(name: str, value: str) -> None:
    """MM C1.12: out of range → OSError(EINVAL) from m.write (unchanged), ValueError on
    the command line."""
    m = Machine(ram="64M", reserved=(), cmdline="cma=0")
    before = (m.read(f"/proc/sys/vm/{name}"), list(m.mm.zones[0]._watermark))
    with pytest.raises(OSError) as info:
        m.write(f"/proc/sys/vm/{name}", value)
    assert info.value.errno == errno.EINVAL
    assert (m.read(f"/proc/sys/vm/{name}"), list(m.mm.zones[0]._watermark)) == before
    with pytest.raises(ValueError, match=name):
        Machine(ram="64M", reserved=(), cmdline=f"cma=0 sysctl.vm.{name}={value}")


@pytest.mark.parametrize("ram, arch, reserved, expect", [
    ("512K", "arm64", (), 128),            # isqrt(16 · 512) = 90 → clamped to 128
    ("1M", "arm64", (), 128),
    ("8M", "arm64", (), 362),
    ("16M", "arm64", (), 512),
    ("64M", "arm64", (), 1024),
    ("1G", "arm64", None, 4063),
    ("1G", "x86_64", None, 4061),
])
def test_mm_z6_1_min_free_kbytes(ram: str, arch: str, reserved: Any, expect: int) -> None:
    """MM Z6.1: ⌊√(16 · 4 · managed)⌋ clamped to [128, 262144]."""
    m = Machine(ram=ram, arch=arch, reserved=reserved, cmdline="cma=0")
    managed = sum(z.managed_pages for z in m.mm.zones[:3])
    assert m.mm.min_free_kbytes == min(max(isqrt(16 * 4 * managed), 128), 262144) == expect


def _expected_wmarks(m: Machine) -> list[list[int]]:
    """MM Z6.2–Z6.4 written out independently."""
    mm = m.mm
    pages_min = mm.min_free_kbytes // 4
    lowmem = sum(z.managed_pages for z in mm.zones[:3])
    out = []
    for z in mm.zones:
        t = pages_min * z.managed_pages // lowmem
        lo = min(max(z.managed_pages // 1024, 32), 128) if z.name == "Movable" else t
        d = max(t // 4, z.managed_pages * mm.watermark_scale_factor // 10000)
        out.append([lo, lo + d, lo + 2 * d, lo + 3 * d])
    return out


@pytest.mark.parametrize("kw", [
    dict(ram="1G", arch="x86_64"),
    dict(ram=X86_Q35_5G, arch="x86_64"),
    dict(ram="5G", cmdline="cma=0"),
    dict(ram="1G", arch="x86_64", cmdline="movablecore=256M"),
    dict(ram="2G", cmdline="cma=0 kernelcore=1G"),
])
def test_mm_z6_3_watermarks_split_by_managed_share(kw: dict[str, Any]) -> None:
    """MM Z6.2–Z6.4 / Z6.6: each zone gets its share of pages_min; Movable is clamped;
    empty zones get 0 (Movable 32)."""
    m = Machine(**kw)
    assert [list(z._watermark) for z in m.mm.zones] == _expected_wmarks(m)
    for z in m.mm.zones:
        if not z.managed_pages:
            assert z._watermark == ([32] * 4 if z.name == "Movable" else [0] * 4)


def test_mm_z6_x86_1g_values() -> None:
    """MM Z6.3 worked through for x86_64 1 GiB (DMA 3840, DMA32 253952 managed)."""
    m = Machine(ram="1G", arch="x86_64")
    assert m.mm.min_free_kbytes == 4061
    assert m.mm.zones[0]._watermark == [15, 18, 21, 24]
    assert m.mm.zones[1]._watermark == [999, 1252, 1505, 1758]
    assert m.mm.zones[3]._watermark == [32, 32, 32, 32]


# --------------------------------------------------------------------------- Z7


def test_mm_z7_x86_1g_protection() -> None:
    """MM Z7: DMA protection[j] = Σ managed of zones above up to j // 256."""
    m = Machine(ram="1G", arch="x86_64")
    dma, dma32 = m.mm.zones[:2]
    assert dma32.managed_pages == 253952
    assert dma.lowmem_reserve == [0, 253952 // 256, 253952 // 256, 253952 // 256] == \
        [0, 992, 992, 992]
    assert dma32.lowmem_reserve == [0, 0, 0, 0]


def test_mm_z7_q35_5g_protection_and_ratio_write() -> None:
    """MM Z7 / C1.12: three zones; writing lowmem_reserve_ratio recomputes; ratio 0 → 0."""
    m = Machine(ram=X86_Q35_5G, arch="x86_64")
    dma, dma32, normal, movable = m.mm.zones
    d32, n = dma32.managed_pages, normal.managed_pages
    assert dma.lowmem_reserve == [0, d32 // 256, (d32 + n) // 256, (d32 + n) // 256]
    assert dma32.lowmem_reserve == [0, 0, n // 256, n // 256]
    assert normal.lowmem_reserve == [0, 0, 0, 0]      # Movable is empty
    assert m.read("/proc/sys/vm/lowmem_reserve_ratio") == "256\t256\t32\t0\n"
    m.write("/proc/sys/vm/lowmem_reserve_ratio", "128 0 32 0")
    assert dma.lowmem_reserve == [0, d32 // 128, (d32 + n) // 128, (d32 + n) // 128]
    assert dma32.lowmem_reserve == [0, 0, 0, 0]
    m2 = Machine(ram=X86_Q35_5G, arch="x86_64", cmdline="sysctl.vm.lowmem_reserve_ratio=128,0,32,0")
    assert [z.lowmem_reserve for z in m2.mm.zones] == [z.lowmem_reserve for z in m.mm.zones]


def test_mm_z7_normal_protects_against_movable_zone() -> None:
    """MM Z7 / C1.11: Normal's ratio 32 applies to a populated ZONE_MOVABLE."""
    m = Machine(ram=X86_Q35_5G, arch="x86_64", cmdline="movablecore=1G")
    normal, movable = m.mm.zones[2:]
    assert movable.managed_pages == 262144
    assert normal.lowmem_reserve == [0, 0, 0, 262144 // 32]
    assert movable.lowmem_reserve == [0, 0, 0, 0]


# -------------------------------------------------------------------- Machine API


@pytest.mark.parametrize("kw, part", [
    (dict(ram="12Q"), "ram"),
    (dict(ram=""), "ram"),
    (dict(ram=-4096), "ram"),
    (dict(ram=0), "size 0"),
    (dict(ram=None), "ram"),
    (dict(ram=True), "ram"),
    (dict(ram=1.5), "ram"),
    (dict(ram=[]), "no banks"),
    (dict(ram=[(0x4000_0000,)]), "bank 0"),
    (dict(ram=[("abc", "64M")]), "bank 0 base"),
    (dict(ram=[(0x4000_0000, "xyz")]), "bank 0 size"),
    (dict(ram=[(0x4000_0000, "64M"), (0x4200_0000, "64M")]), "overlap"),
    (dict(ram=[(0x4000_0000, "64M"), (0x4000_0000, "64M")]), "overlap"),
    (dict(ram=[(0x4000_0800, "64M")]), "aligned"),
    (dict(ram=[(0x4000_0000, 0x1001)]), "aligned"),
    (dict(ram="1K"), "aligned"),
    (dict(ram=1 << 70), "ram"),
    (dict(ram=[(1 << 60, "64M")]), "ram bank"),
    (dict(ram=[(1 << 48, "64M")]), "ram bank"),                 # arm64: 48-bit PA
    (dict(ram=[(1 << 52, "64M")], arch="x86_64"), "ram bank"),  # x86_64: 52-bit PA
    (dict(ram="64M", arch="riscv"), "arch"),
    (dict(ram="64M", arch=None), "arch"),
    (dict(ram="64M", cpus=0), "cpus"),
    (dict(ram="64M", fixes=["no-such-fix"]), "no-such-fix"),
    (dict(ram="64M", reserved=[(1,)]), "reserved"),
    (dict(ram="64M", reserved=[(0x4000_0000, "abc")]), "reserved"),
    (dict(ram="64M", cmdline=None), "cmdline"),
    (dict(ram="64M", cmdline="cma=xyz"), "cma=xyz"),
    (dict(ram="64M", cmdline="cma=16M@xyz"), "cma="),
    (dict(ram="64M", cmdline="cma"), "cma"),
    (dict(ram="64M", cmdline="mem=abc"), "mem=abc"),
    (dict(ram="64M", cmdline="mem="), "mem"),
    (dict(ram="64M", cmdline="mem=0"), "mem"),
    (dict(ram="64M", cmdline="crashkernel=1G,high"), "crashkernel"),
    (dict(ram="64M", cmdline="crashkernel=256M,low"), "crashkernel"),
    (dict(ram="64M", cmdline="crashkernel=1G-4G:128M"), "crashkernel"),
    (dict(ram="64M", cmdline="crashkernel=abc"), "crashkernel"),
    (dict(ram="64M", cmdline="crashkernel=16M@abc"), "crashkernel"),
    (dict(ram="64M", cmdline="init_on_free=maybe"), "init_on_free"),
    (dict(ram="64M", cmdline="init_on_alloc=2"), "init_on_alloc"),
    (dict(ram="64M", cmdline="movablecore=abc"), "movablecore"),
    (dict(ram="64M", cmdline="sysctl.vm.min_free_kbytes"), "min_free_kbytes"),
    (dict(ram="64M", cmdline="sysctl.vm.lowmem_reserve_ratio=1,2,3,4,5"), "lowmem_reserve"),
])
def test_api_machine_bad_arguments_raise_valueerror(kw: dict[str, Any], part: str) -> None:
    """Machine: bad arguments → ValueError naming the bad part."""
    with pytest.raises(ValueError, match=part):
        Machine(**kw)


def test_api_machine_same_arguments_same_machine() -> None:
    """Machine: same arguments, same machine (allocation by allocation)."""
    kw = dict(ram=[(0x4000_0000, "24M"), (0x4400_0000, "8M")], cmdline="cma=0 mem=30M")

    def trace() -> list[Any]:
        m = Machine(**kw)  # type: ignore[arg-type]
        out: list[Any] = [m.read("/proc/buddyinfo"), m.read("/proc/iomem")]
        for order in (0, 3, 9, 1, 10):
            p = m.mm.alloc_pages(gfp.GFP_KERNEL | gfp.__GFP_NOWARN, order)
            out.append(None if p is None else p.pfn)
        return out

    assert trace() == trace()


def test_api_ignored_parameters_and_unmodelled_sysctls() -> None:
    """cmdline / C1.12: unknown parameters pass; other vm sysctls are logged."""
    m = Machine(ram="64M", cmdline="cma=0 quiet foo=bar sysctl.vm.swappiness=10")
    assert any("swappiness" in text for _, text in m.dmesg())
    assert m.read("/proc/cmdline") == "cma=0 quiet foo=bar sysctl.vm.swappiness=10\n"
