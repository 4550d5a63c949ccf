"""Byte-exact procfs text views (MM T1 buddyinfo, T2 pagetypeinfo, T3 zoneinfo,
T4 meminfo, T5 vmstat), checked against hand-computed worked examples and against the shapes
of the real 6.18.15 captures in ``tests/data/real-kernel/`` (values differ, widths and line
sets must not)."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest

import pykern
from pykern.mm import gfp
from pykern.mm.mmzone import MIGRATE_MOVABLE, Zone
from pykern.mm.vmstat import FREECOUNT_CAP, pagetypeinfo_showfree_print, vmstat_names

#: Text captured from real 6.18.15 kernels (see ``tests/data/real-kernel/README.md``).
REAL = Path(__file__).resolve().parents[2] / "data" / "real-kernel"
X86_1G = REAL / "x86_64-6.18.15-1G-cma128M"
X86_5G = REAL / "x86_64-6.18.15-5G-cma256M"
ARM64_1G = REAL / "arm64-6.18.15-debian-1G-cma128M"

FRESH_BUDDYINFO = ("Node 0, zone      DMA      0      0      0      0      0      0      0"
                   "      0      0      0     16 \n")

FRESH_PAGETYPEINFO = """\
Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 
Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Movable      0      0      0      0      0      0      0      0      0      0     16 
Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type          CMA      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate 
Node 0, zone      DMA            0           32            0            0            0            0 
"""  # noqa: W291 (the kernel's lines end in a space)


# ------------------------------------------------------------------ helpers
def fresh() -> pykern.Machine:
    """The fresh zone: one arm64 DMA zone of 16384 pages, nothing reserved."""
    return pykern.Machine(ram="64M", reserved=(), cmdline="cma=0")


def capture(folder: Path, path: str) -> str:
    return (folder / path.strip("/").replace("/", "__")).read_text()


def right_aligned_shape(text: str) -> list[str]:
    """Each run of spaces + digits becomes '#' of the same width: equal shapes mean equal
    labels, columns and field widths (T1, T2, T4 print right-aligned numbers)."""
    return [re.sub(r" *\d+", lambda mo: "#" * len(mo.group()), line)
            for line in text.split("\n")]


def left_aligned_shape(text: str) -> list[str]:
    """Each number becomes 'N' (T3 prints ``%-12s %lu``: the number's width is free)."""
    return [re.sub(r"\d+", "N", line) for line in text.split("\n")]


def strip_unmodelled_zoneinfo(text: str) -> str:
    """Drop what MM T3/Z1 say the modelled config lacks: the Device zone, the
    ``nr_unaccepted`` line and the fifth protection value."""
    text = text.split("Node 0, zone   Device\n")[0]
    text = "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith("      nr_unaccepted "))
    return re.sub(r"protection: \((\d+, \d+, \d+, \d+), \d+\)", r"protection: (\1)", text)


def header_line(lines: list[str]) -> str:
    return next(ln for ln in lines if ln.startswith("Number of blocks type "))


def labels(meminfo_text: str) -> list[str]:
    return [line.split(":")[0] for line in meminfo_text.splitlines()]


def zone_block(zoneinfo_text: str, name: str) -> list[str]:
    """The lines of one zone's block in /proc/zoneinfo."""
    blocks = re.split(r"(?m)^(?=Node 0, zone )", zoneinfo_text)
    head = f"Node 0, zone {name:>8}\n"
    return next(b for b in blocks if b.startswith(head)).splitlines()


def field(lines: list[str], key: str) -> str:
    """Value of the first ``key value`` line (``key`` may have several words)."""
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and " ".join(parts[:-1]).rstrip(":") == key:
            return parts[-1]
    raise KeyError(key)


def meminfo_kb(m: pykern.Machine) -> dict[str, int]:
    return {line.split(":")[0]: int(line.split()[1])
            for line in m.read("/proc/meminfo").splitlines()}


def vmstat_values(m: pykern.Machine) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in m.read("/proc/vmstat").splitlines())}


# ----------------------------------------------------------------------- T1
def test_mm_t1_fresh_zone_buddyinfo() -> None:
    """MM T1: the fresh zone's example line, byte for byte."""
    assert fresh().read("/proc/buddyinfo") == FRESH_BUDDYINFO


def test_mm_t1_only_populated_zones() -> None:
    """MM T1, Z1: x86_64 1 GiB lists DMA and DMA32; arm64 1 GiB lists DMA only."""
    x86 = pykern.Machine(ram="1G", arch="x86_64").read("/proc/buddyinfo")
    assert [line[:21] for line in x86.splitlines()] == ["Node 0, zone      DMA",
                                                        "Node 0, zone    DMA32"]
    arm = pykern.Machine(ram="1G").read("/proc/buddyinfo")
    assert [line[:21] for line in arm.splitlines()] == ["Node 0, zone      DMA"]


@pytest.mark.parametrize("folder, arch", [(X86_1G, "x86_64"), (ARM64_1G, "arm64")])
def test_mm_t1_shape_matches_capture(folder: Path, arch: str) -> None:
    """MM T1: same zones, widths and trailing spaces as the captured 1 GiB kernels."""
    mine = pykern.Machine(ram="1G", arch=arch).read("/proc/buddyinfo")
    assert right_aligned_shape(mine) == right_aligned_shape(capture(folder, "/proc/buddyinfo"))


# ----------------------------------------------------------------------- T2
def test_mm_t2_fresh_zone_pagetypeinfo() -> None:
    """MM T2: 16 Movable order-10 blocks, 32 Movable pageblocks, exactly."""
    assert fresh().read("/proc/pagetypeinfo") == FRESH_PAGETYPEINFO


@pytest.mark.parametrize("folder", [X86_1G, X86_5G, ARM64_1G])
def test_mm_t2_header_lines_byte_exact(folder: Path) -> None:
    """MM T2.1, T2.2, T2.4: the first four lines and the block-count header."""
    real = capture(folder, "/proc/pagetypeinfo").splitlines(keepends=True)
    mine = fresh().read("/proc/pagetypeinfo").splitlines(keepends=True)
    assert mine[:4] == real[:4]
    header = "Number of blocks type "
    assert [ln for ln in mine if ln.startswith(header)] == \
        [ln for ln in real if ln.startswith(header)]
    assert mine[mine.index(header_line(mine)) - 1] == "\n"
    assert real[real.index(header_line(real)) - 1] == "\n"


@pytest.mark.parametrize("folder, arch", [(X86_1G, "x86_64"), (ARM64_1G, "arm64")])
def test_mm_t2_shape_matches_capture(folder: Path, arch: str) -> None:
    """MM T2: whole-file shape (rows, types, widths, trailing spaces) as captured."""
    mine = pykern.Machine(ram="1G", arch=arch).read("/proc/pagetypeinfo")
    real = capture(folder, "/proc/pagetypeinfo")
    assert right_aligned_shape(mine) == right_aligned_shape(real)


def test_mm_t2_free_counts_agree_with_buddyinfo() -> None:
    """MM T2.3 vs T1 (P5): summing a zone's six type rows gives its buddyinfo row."""
    m = pykern.Machine(ram="1G", arch="x86_64")
    for order in (0, 3, 5, 9):
        for _ in range(5):
            assert m.mm.alloc_pages(gfp.GFP_KERNEL, order) is not None
    rows: dict[str, list[int]] = {}
    for line in m.read("/proc/pagetypeinfo").splitlines():
        if ", type " in line:
            zone = line.split(",")[1].split()[1]
            counts = [int(v) for v in line.split()[-11:]]
            rows[zone] = [a + b for a, b in zip(rows.get(zone, [0] * 11), counts)]
    buddy = {line.split()[3]: [int(v) for v in line.split()[4:]]
             for line in m.read("/proc/buddyinfo").splitlines()}
    assert rows == buddy


def test_mm_t2_freecount_cap() -> None:
    """MM T2.3: a list of 100000 or more blocks prints as ``>100000``."""
    zone = Zone(0, 0, 1 << 20)
    zone.free_list[0][MIGRATE_MOVABLE] = OrderedDict.fromkeys(range(FREECOUNT_CAP))
    zone.free_list[1][MIGRATE_MOVABLE] = OrderedDict.fromkeys(range(FREECOUNT_CAP - 1))
    movable = pagetypeinfo_showfree_print(zone).splitlines()[MIGRATE_MOVABLE]
    assert movable.startswith("Node    0, zone      DMA, type      Movable >100000  99999 ")


def test_mm_t2_blockcount_skips_holes() -> None:
    """MM T2.5: pfns in a bank gap are not valid and count for no type."""
    m = pykern.Machine(ram=[(0x4000_0000, 64 << 20), (0x4800_0000, 64 << 20)],
                       reserved=(), cmdline="cma=0")
    dma = m.mm.zones[0]
    assert dma.spanned_pages == 49152 and dma.present_pages == 32768
    last = m.read("/proc/pagetypeinfo").splitlines()[-1]
    assert last == "Node 0, zone      DMA " + "".join(f"{n:12d} " for n in (0, 64, 0, 0, 0, 0))


def test_mm_t2_blockcount_steps_from_zone_start() -> None:
    """MM T2.5: the count steps a pageblock at a time from zone_start_pfn itself, as
    pagetypeinfo_showblockcount_print does, even when the zone starts mid-block."""
    m = pykern.Machine(ram=[(0x4010_0000, 63 << 20)], reserved=(), cmdline="cma=0")
    dma = m.mm.zones[0]
    assert dma.zone_start_pfn % 512 == 256
    expected = len(range(dma.zone_start_pfn, dma.zone_end_pfn, 512))
    last = m.read("/proc/pagetypeinfo").splitlines()[-1]
    assert [int(v) for v in last.split()[4:]] == [0, expected, 0, 0, 0, 0]


def test_mm_t2_isolated_block_counts_as_isolate() -> None:
    """MM T2.3, T2.5, P4, P6: an isolated pageblock's free block moves to the Isolate
    row, the block counts as Isolate, buddyinfo still counts it, MemFree does not."""
    from pykern.mm.page_isolation import (
        PB_ISOLATE_MODE_OTHER, start_isolate_page_range, undo_isolate_page_range,
    )
    m = fresh()
    before = m.read("/proc/pagetypeinfo")
    start = m.mm.zones[0].zone_start_pfn
    assert start_isolate_page_range(m.mm, start, start + 512, PB_ISOLATE_MODE_OTHER) == 0
    text = m.read("/proc/pagetypeinfo").splitlines()
    rows = {line.split()[5]: [int(v) for v in line.split()[6:]]
            for line in text if ", type " in line}
    assert rows["Isolate"][9] == 1 and rows["Movable"][9] == 1 and rows["Movable"][10] == 15
    assert [int(v) for v in text[-1].split()[4:]] == [0, 31, 0, 0, 0, 1]
    assert m.read("/proc/buddyinfo").split()[-2:] == ["2", "15"]
    assert meminfo_kb(m)["MemFree"] == 4 * (16384 - 512)
    undo_isolate_page_range(m.mm, start, start + 512)
    assert m.read("/proc/pagetypeinfo") == before


# ----------------------------------------------------------------------- T3
@pytest.mark.parametrize("folder, arch, ram", [
    (X86_1G, "x86_64", "1G"),
    (ARM64_1G, "arm64", "1G"),
    (X86_5G, "x86_64", [(0, 2 << 30), (4 << 30, 3 << 30)]),
])
def test_mm_t3_line_set_matches_capture(folder: Path, arch: str, ram: object) -> None:
    """MM T3: every line and its order as captured (one CPU), minus the Device zone,
    ``nr_unaccepted`` and the fifth protection value."""
    mine = pykern.Machine(ram=ram, arch=arch, cpus=1).read("/proc/zoneinfo")
    real = strip_unmodelled_zoneinfo(capture(folder, "/proc/zoneinfo"))
    assert left_aligned_shape(mine) == left_aligned_shape(real)


def test_mm_t3_no_trailing_spaces() -> None:
    """MM T3: no zoneinfo line ends in a space; the file ends with a newline."""
    text = pykern.Machine(ram="1G", arch="x86_64").read("/proc/zoneinfo")
    assert text.endswith("\n") and not any(line.endswith(" ") for line in text.split("\n"))


def test_mm_t3_z6_worked_example() -> None:
    """MM Z6.5, T3.3: the fresh zone has min 256, low 320, high 384, promo 448."""
    lines = zone_block(fresh().read("/proc/zoneinfo"), "DMA")
    assert lines[53:64] == [
        "  pages free     16384", "        boost    0", "        min      256",
        "        low      320", "        high     384", "        promo    448",
        "        spanned  16384", "        present  16384", "        managed  16384",
        "        cma      0", "        protection: (0, 0, 0, 0)",
    ]
    assert lines[64] == "      nr_free_pages 16384"
    assert lines[-2:] == ["  node_unreclaimable:  0", "  start_pfn:           262144"]


def test_mm_t3_z6_sysctl_example() -> None:
    """MM Z6.5: ``vm.min_free_kbytes=0`` and ``vm.watermark_scale_factor=1`` give
    min 0, low 1, high 2, promo 3."""
    m = pykern.Machine(ram="64M", reserved=(), cmdline="cma=0 sysctl.vm.min_free_kbytes=0 "
                       "sysctl.vm.watermark_scale_factor=1")
    lines = zone_block(m.read("/proc/zoneinfo"), "DMA")
    assert [field(lines, k) for k in ("min", "low", "high", "promo")] == ["0", "1", "2", "3"]


def test_mm_t3_empty_zones() -> None:
    """MM Z6.6, T3.3: empty DMA32/Normal print 0 watermarks, empty Movable 32/32/32/32;
    an unpopulated zone's block ends with its protection line."""
    text = fresh().read("/proc/zoneinfo")
    for name, mark in (("DMA32", "0"), ("Normal", "0"), ("Movable", "32")):
        lines = zone_block(text, name)
        assert len(lines) == 12 and lines[-1] == "        protection: (0, 0, 0, 0)"
        assert [field(lines, k) for k in ("min", "low", "high", "promo")] == [mark] * 4
        assert [field(lines, k) for k in ("pages free", "spanned", "present", "managed")] == ["0"] * 4


def test_mm_t3_protection_tuple() -> None:
    """MM Z7, T3.3: x86_64 1 GiB: DMA protects DMA32's 253952 managed pages / 256."""
    m = pykern.Machine(ram="1G", arch="x86_64")
    text = m.read("/proc/zoneinfo")
    assert field(zone_block(text, "DMA32"), "managed") == "253952"
    assert zone_block(text, "DMA")[63] == "        protection: (0, 992, 992, 992)"
    assert "        protection: (0, 0, 0, 0)" in zone_block(text, "DMA32")


def test_mm_t3_per_node_stats_once() -> None:
    """MM T3.2: 51 per-node counters, printed only in the first populated zone."""
    text = pykern.Machine(ram="1G", arch="x86_64").read("/proc/zoneinfo")
    assert text.count("  per-node stats\n") == 1
    dma = zone_block(text, "DMA")
    assert dma[1] == "  per-node stats" and dma[53] == "  pages free     3840"
    assert dma[2] == "      nr_inactive_anon 0" and dma[20] == "      nr_mapped    0"
    assert dma[52] == "      nr_kernel_file_pages 0"


def test_mm_t3_pagesets_and_threshold() -> None:
    """MM T3.5: one pageset block per CPU, the threshold line after each; the fresh zone
    on 4 CPUs: min(125, 2 * fls(4) * (1 + fls(16384 // 32768))) = 6."""
    lines = zone_block(fresh().read("/proc/zoneinfo"), "DMA")
    start = lines.index("  pagesets")
    per_cpu = ["              count:    0", "              high:     0",
               "              batch:    1", "              high_min: 0",
               "              high_max: 0", "  vm stats threshold: 6"]
    expected = [line for cpu in range(4) for line in [f"    cpu: {cpu}"] + per_cpu]
    assert lines[start + 1:start + 1 + 28] == expected


def _fls(x: int) -> int:
    return x.bit_length()


def test_mm_t3_threshold_per_zone() -> None:
    """MM T3.5: the threshold follows each zone's managed pages (captured: DMA 3840 pages
    -> 2, DMA32 251163 pages -> 8 on one CPU)."""
    m = pykern.Machine(ram="1G", arch="x86_64", cpus=1)
    text = m.read("/proc/zoneinfo")
    for zone in m.mm.zones[:2]:
        want = min(125, 2 * _fls(1) * (1 + _fls(zone.managed_pages // 32768)))
        line = next(ln for ln in zone_block(text, zone.name) if "threshold" in ln)
        assert line == f"  vm stats threshold: {want}"


# ----------------------------------------------------------------------- T4
def test_mm_t4_labels_arm64() -> None:
    """MM T4: 54 arm64 lines, the captured arm64 set and order exactly."""
    mine = labels(pykern.Machine(ram="1G").read("/proc/meminfo"))
    assert len(mine) == 54 and mine == labels(capture(ARM64_1G, "/proc/meminfo"))


def test_mm_t4_labels_x86_64() -> None:
    """MM T4: 56 x86_64 lines: the captured set and order without ``Unaccepted``."""
    mine = labels(pykern.Machine(ram="1G", arch="x86_64").read("/proc/meminfo"))
    real = [lb for lb in labels(capture(X86_1G, "/proc/meminfo")) if lb != "Unaccepted"]
    assert len(mine) == 56 and mine == real


@pytest.mark.parametrize("folder, arch", [(X86_1G, "x86_64"), (ARM64_1G, "arm64")])
def test_mm_t4_shape_matches_capture(folder: Path, arch: str) -> None:
    """MM T4.1–T4.3: every line's label column, value width and unit as captured."""
    mine = pykern.Machine(ram="1G", arch=arch).read("/proc/meminfo")
    real = "".join(ln for ln in capture(folder, "/proc/meminfo").splitlines(keepends=True)
                   if not ln.startswith("Unaccepted:"))
    assert right_aligned_shape(mine) == right_aligned_shape(real)


@pytest.mark.parametrize("arch, vmalloc", [("x86_64", "VmallocTotal:   34359738367 kB"),
                                           ("arm64", "VmallocTotal:   135288315904 kB")])
def test_mm_t4_line_formats(arch: str, vmalloc: str) -> None:
    """MM T4.1–T4.3: the three line formats; wide values push `` kB`` right."""
    lines = pykern.Machine(ram="1G", arch=arch).read("/proc/meminfo").splitlines()
    assert vmalloc in lines
    for line in ("HardwareCorrupted:     0 kB", "HugePages_Total:       0",
                 "HugePages_Free:        0", "HugePages_Rsvd:        0",
                 "HugePages_Surp:        0", "Hugepagesize:       2048 kB",
                 "Buffers:               0 kB", "Hugetlb:               0 kB"):
        assert line in lines
    assert all(len(ln) == 27 or ln.startswith(("HugePages_", "VmallocTotal"))
               for ln in lines)


def test_mm_t4_values_fresh_zone() -> None:
    """MM T4: MemTotal = 4 x managed, MemFree = 4 x NR_FREE_PAGES, MemAvailable = 4 x
    (free - totalreserve_pages), CommitLimit = 4 x managed / 2, CMA13 lines."""
    m = fresh()
    kb = meminfo_kb(m)
    assert kb["MemTotal"] == 65536 and kb["MemFree"] == 65536
    assert m.mm.totalreserve_pages == 384
    assert kb["MemAvailable"] == 4 * (16384 - 384)
    assert kb["CommitLimit"] == 32768
    assert kb["CmaTotal"] == 4 * m.mm.totalcma_pages
    assert kb["CmaFree"] == 4 * sum(z.nr_free_cma for z in m.mm.zones)
    assert "DirectMap4k" not in kb


def test_mm_t4_values_x86_64_1g() -> None:
    """MM T4: x86_64 ``ram="1G"``: DirectMap4k 2048, DirectMap2M 1046528; totals from
    the zones."""
    m = pykern.Machine(ram="1G", arch="x86_64")
    kb = meminfo_kb(m)
    managed = sum(z.managed_pages for z in m.mm.zones)
    assert kb["MemTotal"] == 4 * managed
    assert kb["MemFree"] == 4 * m.mm.nr_free_pages()
    assert kb["MemAvailable"] == 4 * max(0, m.mm.nr_free_pages() - m.mm.totalreserve_pages)
    assert kb["CommitLimit"] == 4 * (managed * 50 // 100)
    assert (kb["DirectMap4k"], kb["DirectMap2M"]) == (2048, 1046528)
    lines = m.read("/proc/meminfo").splitlines()
    assert lines[-2:] == ["DirectMap4k:        2048 kB", "DirectMap2M:     1046528 kB"]


def test_mm_t4_directmap_partial_blocks() -> None:
    """MM T4 [model]: RAM in a 2 MiB block that is not wholly RAM maps with 4 KiB pages
    (``mem=513M`` cuts a block in half; a 1 MiB bank above 1 GiB is half a block)."""
    kb = meminfo_kb(pykern.Machine(ram="1G", arch="x86_64", cmdline="mem=513M"))
    assert (kb["DirectMap4k"], kb["DirectMap2M"]) == (2048 + 1024, 512 * 1024 - 2048)
    kb = meminfo_kb(pykern.Machine(ram=[(0, 1 << 30), ((1 << 30) + (1 << 20), 1 << 20)],
                                   arch="x86_64"))
    assert (kb["DirectMap4k"], kb["DirectMap2M"]) == (2048 + 1024, 1046528)


# ----------------------------------------------------------------------- T5
@pytest.mark.parametrize("folder, arch", [(X86_1G, "x86_64"), (ARM64_1G, "arm64")])
def test_mm_t5_vmstat_names_match_capture(folder: Path, arch: str) -> None:
    """MM T5: one ``name value`` line per counter, the captured 6.18.15 names in order."""
    real = [line.split()[0] for line in capture(folder, "/proc/vmstat").splitlines()]
    text = pykern.Machine(ram="1G", arch=arch).read("/proc/vmstat")
    assert [line.split()[0] for line in text.splitlines()] == real == list(vmstat_names(arch))
    assert all(re.fullmatch(r"[a-z0-9_]+ \d+", line) for line in text.splitlines())


def test_mm_t5_vmstat_values() -> None:
    """MM T5, P6, CMA12: free-page counters sum the zones; events come from vm_events."""
    m = pykern.Machine(ram="1G", arch="x86_64")
    v = vmstat_values(m)
    assert v["nr_free_pages"] == m.mm.nr_free_pages()
    assert v["nr_free_pages_blocks"] == sum(z.nr_free_pages_blocks for z in m.mm.zones)
    assert v["nr_free_cma"] == sum(z.nr_free_cma for z in m.mm.zones)
    assert v["cma_alloc_success"] == 0 and v["cma_alloc_fail"] == 0 and v["numa_hit"] == 0
    m.mm.vm_events["cma_alloc_success"] = 2
    m.mm.vm_events["pgmigrate_success"] = 7
    v = vmstat_values(m)
    assert v["cma_alloc_success"] == 2 and v["pgmigrate_success"] == 7


# ------------------------------------------------------- views stay consistent
def test_mm_t1_t3_t4_t5_allocation_consistency() -> None:
    """MM P5, P6, T1, T3, T4, T5: an order-3 GFP_KERNEL allocation takes 8 pages from
    every view at once, and freeing it gives the boot-time text back."""
    m = fresh()
    before = {p: m.read(p) for p in ("/proc/buddyinfo", "/proc/meminfo", "/proc/zoneinfo")}
    page = m.mm.alloc_pages(gfp.GFP_KERNEL, 3)
    assert page is not None
    m.mm.check_invariants()
    kb = meminfo_kb(m)
    assert kb["MemFree"] == 65536 - 32
    assert kb["MemAvailable"] == 4 * (16384 - 8 - 384)
    assert m.read("/proc/buddyinfo") == ("Node 0, zone      DMA      0      0      0      1"
                                         "      1      1      1      1      1      1     15 \n")
    dma = zone_block(m.read("/proc/zoneinfo"), "DMA")
    assert field(dma, "pages free") == field(dma, "nr_free_pages") == "16376"
    assert field(dma, "nr_free_pages_blocks") == str(16384 - 1024 + 512)
    assert field(dma, "numa_hit") == field(dma, "numa_local") == "1"
    v = vmstat_values(m)
    assert v["nr_free_pages"] == 16376 and v["numa_hit"] == v["numa_local"] == 1
    m.mm.free_pages(page, 3)
    assert m.read("/proc/buddyinfo") == before["/proc/buddyinfo"]
    assert m.read("/proc/meminfo") == before["/proc/meminfo"]
    after = m.read("/proc/zoneinfo")
    assert after == before["/proc/zoneinfo"].replace(
        "      numa_hit     0\n", "      numa_hit     1\n").replace(
        "      numa_local   0\n", "      numa_local   1\n")


def test_mm_t3_t4_task_pages() -> None:
    """MM T3.2, T3.4, T4: pages mapped by a task show as inactive anon and AnonPages."""
    m = fresh()
    task = m.new_task()
    task.mmap_anon(10)
    kb = meminfo_kb(m)
    assert kb["Inactive"] == kb["Inactive(anon)"] == kb["AnonPages"] == 40
    assert kb["MemFree"] == 4 * (16384 - 10)
    dma = zone_block(m.read("/proc/zoneinfo"), "DMA")
    assert field(dma, "nr_inactive_anon") == field(dma, "nr_anon_pages") == "10"
    assert field(dma, "nr_zone_inactive_anon") == "10"
    v = vmstat_values(m)
    assert v["nr_inactive_anon"] == v["nr_anon_pages"] == v["nr_zone_inactive_anon"] == 10
    task.exit()
    assert meminfo_kb(m)["AnonPages"] == 0
