"""The next kernel's RD setup retires a vPE the old kernel left resident (GIC-N7,
GIC-R8, GIC-W5; issue 17, GIC item).

Since Linux 6.8 (ec4308ecfc88, "irqchip/gic-v3-its: Do not assume vPE tables are
preallocated") its_cpu_init_lpis() reaches allocate_vpe_l1_table() on the adopted-tables
path too; that function clears ``GICR_VPENDBASER.Valid`` with PendingLast, and the RD writes
the vPE's state back to its VPT, which the new kernel treats as free memory or as its image.
"""

from __future__ import annotations

from typing import Any

import pytest

import pykern._fast

from pykern import Machine, images
from pykern.drivers.gic import (GICR_BASE, GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER,
                                GICR_TYPER, GICR_VPENDBASER, GITS_CWRITER, GITS_TYPER,
                                ITS_BASE, VLPI_FRAME, GICv3)
from pykern.kernel.kexec.clock import END_NS, MS
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH

MiB = 1 << 20
RD_STRIDE = 0x4_0000                   # RD_base + VLPI frames when vPEs exist (GIC-R8)
VALID, PENDINGLAST, DIRTY = 1 << 63, 1 << 61, 1 << 60     # GICR_VPENDBASER bits


def boot(seed: int = 1, **gic_kw: Any) -> tuple[Machine, GICv3]:
    kw: dict[str, Any] = {"honours_shutdown": False, "vpes": 2,
                          "writeback_delay_ms": (1.0, 1.0)}
    kw.update(gic_kw)
    gic = GICv3(**kw)
    return Machine("512M", cmdline="cma=64M crashkernel=64M", devices=[gic], seed=seed), gic


def vpt_of(gic: GICv3, k: int, gen: int = 0) -> int:
    return next(p for kind, p, _, o, g in gic.tables() if kind == "vpt" and o == k and g == gen)


def w5(before: bytes) -> bytes:
    """GIC-W5: 32..63 get a copy of 0..31, then bytes 0, 1, 32..35 are zeroed."""
    page = bytearray(before[:64])
    page[32:64] = page[0:32]
    for k in (0, 1, 32, 33, 34, 35):
        page[k] = 0
    return bytes(page)


def load(m: Machine, flags: int) -> None:
    m.kexec_file_load(images.arm64_image(16 * MiB), images.payload_pattern(MiB), "x=1", flags)


def t_takeover(r: Any) -> int:
    return int(r.t_end - END_NS)


def test_n7_adopted_tables_next_kernel_writes_back_boot_cpu_vpe_into_its_image() -> None:
    """N7/W5, allocate_vpe_l1_table(): a NO_CMA kernel placed over the boot-time tables
    makes the next kernel adopt them (N4); its RD setup on CPU 0 clears VPENDBASER.Valid
    and the still-resident vPE 0 is written back into the new kernel's image, one delay
    after t_takeover: a next-kernel scribble and a corrupted run that forensics can
    attribute.  Before the fix the next kernel overwrote VPENDBASER and nothing landed."""
    from pykern.forensics import attribute
    m, gic = boot()
    vpt0 = vpt_of(gic, 0)
    load(m, KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    seg = next(s for s in im.segments if s.mem <= vpt0 < s.mem + s.memsz)
    image_bytes = bytes(seg.buf[vpt0 - seg.mem:vpt0 - seg.mem + 64])
    r = m.kernel_kexec()
    assert m.tainted & 1024 == 0 and m.generation == 1          # adopted, no taint
    got = m.phys_read(vpt0, 64)
    assert got == w5(image_bytes) != image_bytes
    wb = [t for t in gic.trace if t.kind == "vpt-writeback" and t.phys == vpt0]
    assert len(wb) == 1
    assert (wb[0].phase, wb[0].t_ns, wb[0].length, wb[0].cpu, wb[0].changed) == \
        ("next-kernel", t_takeover(r) + 1 * MS, 64, 0, True)
    assert ("gic", vpt0, 64) in r.scribbles
    assert any(a < vpt0 + 64 and vpt0 < a + n for a, n, _ in r.corrupted)
    hits = [a for a in attribute(r, m) if a.kind == "vpt-writeback"]
    assert hits and all(a.phase == "next-kernel" and a.phys == vpt0 for a in hits)


@pytest.mark.parametrize("delay_ms", [0.0, 1.0])
def test_n7_register_order_of_its_cpu_init_and_dirty_window(delay_ms: float) -> None:
    """N7/R8 in the kernel's order, its_cpu_init() per CPU: redist_disable_lpis() and
    its_cpu_init_lpis() read CTLR, PROPBASER and PENDBASER of an adopted RD, then
    allocate_vpe_l1_table() reads VPENDBASER and, only where Valid is set, writes exactly
    PendingLast; then its_cpu_init_collections() (MAPC, INVALL: two CWRITER writes)
    before the next CPU is touched.  Right after the write Dirty reads 1 until the
    write-back lands (also with a zero delay: it lands after the probe's accesses); in
    gic.trace that write-back follows every write of the probe."""
    m, gic = boot(writeback_delay_ms=(delay_ms, delay_ms))
    load(m, KEXEC_FILE_NO_CMA)
    log: list[tuple[str, int, int, int]] = []
    read, write = gic.mmio_read, gic.mmio_write

    def spy_read(addr: int, size: int = 8) -> int:
        v = read(addr, size)
        log.append(("r", addr, v, gic._now()))
        return v

    def spy_write(addr: int, value: int, size: int = 8) -> None:
        write(addr, value, size)
        log.append(("w", addr, value, gic._now()))
        if addr >= GICR_BASE and (addr - GICR_BASE) % RD_STRIDE == VLPI_FRAME + \
                GICR_VPENDBASER:
            log.append(("dirty", addr, read(addr) & DIRTY, gic._now()))
    gic.mmio_read = spy_read            # type: ignore[method-assign]
    gic.mmio_write = spy_write          # type: ignore[method-assign]
    r = m.kernel_kexec()
    nxt = [e for e in log if e[3] == t_takeover(r)]

    def at(op: str, addr: int) -> list[int]:
        return [i for i, e in enumerate(nxt) if e[0] == op and e[1] == addr]
    cwriter = at("w", ITS_BASE + GITS_CWRITER)
    last_of_cpu = -1
    for cpu in range(m.cpus):
        rd = GICR_BASE + cpu * RD_STRIDE
        vpend = rd + VLPI_FRAME + GICR_VPENDBASER
        mine = [i for i, e in enumerate(nxt) if rd <= e[1] < rd + RD_STRIDE and
                e[1] != rd + GICR_TYPER and e[0] != "dirty"]
        assert mine[0] > last_of_cpu                       # CPUs one after the other
        ctl, prop, pend = at("r", rd + GICR_CTLR), at("r", rd + GICR_PROPBASER), \
            at("r", rd + GICR_PENDBASER)
        vread = at("r", vpend)[0]
        assert max(ctl + prop + pend) < vread
        mapc, invall = [i for i in cwriter if i > vread][:2]
        writes = [i for i in at("w", vpend) if i < mapc]
        if cpu == 0:                                       # vPE 0 still resident here
            assert nxt[vread][2] & VALID
            assert [nxt[i][2] for i in writes] == [PENDINGLAST]
            assert nxt[writes[0] + 1][2] == DIRTY
        else:                                              # vPE 1 retired at offline
            assert not nxt[vread][2] & VALID and writes == []
        assert [i for i in mine if i > vread and i < mapc] == writes
        last_of_cpu = invall
    assert gic.redistributors[1].vpendbaser & VALID       # the new guest's vPE 1 (B7)
    probe = [k for k, t in enumerate(gic.trace) if t.phase == "next-kernel" and
             t.kind == "its-table"]
    wb = [k for k, t in enumerate(gic.trace) if t.phase == "next-kernel" and
          t.kind == "vpt-writeback"]
    assert len(wb) == 1 and probe and max(probe) < wb[0]
    assert gic.trace[wb[0]].t_ns == t_takeover(r) + int(delay_ms * MS)


def test_n7_crash_kernel_writes_back_every_resident_vpe() -> None:
    """N7/K6: the crash path retires no vPE; the kdump kernel skips the reservation check
    (gic_check_reserved_range()), adopts every RD, and allocate_vpe_l1_table() clears
    Valid on each: both VPTs get the W5 write-back, in the next-kernel phase."""
    m, gic = boot()
    vpts = [vpt_of(gic, k) for k in (0, 1)]
    for k, vpt in enumerate(vpts):
        m.phys_write(vpt, bytes(range(1 + k, 33 + k)))
    m.kexec_file_load(images.arm64_image(4 * MiB), None, "", KEXEC_FILE_ON_CRASH)
    r = m.panic()
    assert r is not None and m.generation == 1
    for k, vpt in enumerate(vpts):
        assert m.phys_read(vpt, 64) == w5(bytes(range(1 + k, 33 + k)) + bytes(32))
    wb = [t for t in gic.trace if t.kind == "vpt-writeback"]
    assert sorted(t.phys for t in wb) == sorted(vpts)
    assert all(t.phase == "next-kernel" and t.t_ns == t_takeover(r) + MS for t in wb)


@pytest.mark.parametrize("ces", [False, True])
def test_n6_n7_fresh_tables_path_ces(ces: bool) -> None:
    """N6/N7, its_cpu_init(): tables not adoptable (CMA load, no EFI).  With CES=0
    redist_disable_lpis() fails, its_cpu_init() stops before its_cpu_init_lpis(), and
    vPE 0 stays resident: its VPT keeps its bytes.  With CES=1 the clear works, the CPU
    gets fresh tables and allocate_vpe_l1_table() retires vPE 0 all the same."""
    m, gic = boot(clear_enable_supported=ces)
    vpt0 = vpt_of(gic, 0)
    state = bytes(range(1, 33))
    m.phys_write(vpt0, state)
    load(m, 0)
    r = m.kernel_kexec()
    assert m.tainted & 1024 and gic.redistributors[0].lpis_working is ces
    wb = [t for t in gic.trace if t.kind == "vpt-writeback" and t.phys == vpt0]
    if ces:
        assert m.phys_read(vpt0, 64) == w5(state + bytes(32))
        assert [(t.phase, t.t_ns) for t in wb] == [("next-kernel", t_takeover(r) + MS)]
        assert ("gic", vpt0, 64) in r.scribbles
    else:
        assert m.phys_read(vpt0, 64) == state + bytes(32) and wb == []


@pytest.mark.skipif(not pykern._fast.COMPILED, reason="the compiled walk is not built")
def test_n7_twins_identical_ram_with_the_takeover_writeback() -> None:
    """GIC-I7/H7: with the vPE write-back of the next kernel in the run, the compiled walk
    and the pure-Python twin leave identical RAM, scribbles, corruption and trace."""
    outs = []
    for ext in (True, False):
        gic = GICv3(honours_shutdown=False, vpes=2, writeback_delay_ms=(0.5, 4.0))
        m = Machine("512M", cmdline="cma=64M", devices=[gic], seed=5, extensions=ext)
        load(m, KEXEC_FILE_NO_CMA)
        r = m.kernel_kexec()
        assert any(t.kind == "vpt-writeback" and t.phase == "next-kernel" for t in gic.trace)
        outs.append((bytes(m.ram), r.scribbles, r.corrupted, gic.trace))
    assert outs[0] == outs[1]


def test_n4_n5_adoption_log_lines_are_the_kernels() -> None:
    """allocate_lpi_tables(), its_setup_lpi_prop_table(), its_cpu_init_lpis(): the kernel's
    text and order on the adopted path ("Using preallocated redistributor tables", the
    property table and each CPU's reserved pending table, %pa-formatted); and on the
    refused path gic_check_reserved_range()'s warning and redist_disable_lpis()'s."""
    m, gic = boot(vpes=0)
    load(m, KEXEC_FILE_NO_CMA)
    old_prop = next(p for k, p, *_ in gic.tables() if k == "prop")
    old_pend = [gic.redistributors[c].pend_addr for c in range(m.cpus)]
    m.kernel_kexec()
    text = [t for _, t in m.dmesg()]
    want = ["GICv3: Using preallocated redistributor tables",
            f"GICv3: using LPI property table @0x{old_prop:016x}"] + \
        [f"GICv3: CPU{c}: using reserved LPI pending table @0x{p:016x}"
         for c, p in enumerate(old_pend)]
    assert [t for t in text if t in want] == want
    m2, gic2 = boot(vpes=0)
    prop2 = next(p for k, p, *_ in gic2.tables() if k == "prop")
    load(m2, 0)
    m2.kernel_kexec()
    lines = m2.dmesg()
    assert (4, f"GICv3: Expected reserved range [0x{prop2:016x}:0x{prop2 + 0xFFFF:016x}], "
               "not found") in lines
    assert (4, "GICv3: CPU0: Booted with LPIs enabled, memory probably corrupted") in lines
    assert (3, "CPU0: Failed to disable LPIs") in lines


def test_r2_r10_gicv4_1_id_bits_only_with_vpes() -> None:
    """GIC-R2/R10: a GIC with vPEs advertises GICv4.1 (GICR_TYPER VLPIS and RVPEID,
    GITS_TYPER VMAPP), which is what lets the driver (gic_update_rdist_properties(),
    its_init()) reach the VPENDBASER write; without vPEs none of them."""
    m, gic = boot()
    assert gic.mmio_read(GICR_BASE + GICR_TYPER) & 0b1000_0011 == 0b1000_0011
    assert gic.mmio_read(ITS_BASE + GITS_TYPER) >> 40 & 1 == 1
    m0 = Machine("256M", devices=[GICv3(vpes=0)])
    gic0 = m0.devices["gic"]
    assert gic0.mmio_read(GICR_BASE + GICR_TYPER) & 0b1000_0010 == 0
    assert gic0.mmio_read(ITS_BASE + GITS_TYPER) >> 40 & 1 == 0
