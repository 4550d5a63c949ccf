"""The fake GICv3/ITS (the GIC rules): constructor, tables in RAM, registers, the write paths, the
reboot time line, observability, the next kernel's adoption, and the seed's claim."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pykern._fast
from pykern import Machine, images
from pykern.drivers.gic import (GICR_BASE, GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER,
                                ITS_BASE, GICv3, MsiSource)
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH

MiB = 1 << 20
K64 = 0x10000


def boot(gic: GICv3 | None = None, ram: Any = "1G", cmdline: str = "cma=256M",
         **kw: Any) -> tuple[Machine, GICv3]:
    gic = gic or GICv3()
    return Machine(ram, cmdline=cmdline, devices=[gic], **kw), gic


def load(m: Machine, flags: int, kernel: int = 16 * MiB, initrd: int = 16 * MiB) -> None:
    m.kexec_file_load(images.arm64_image(kernel), images.payload_pattern(initrd), "x=1", flags)


def pending_of(gic: GICv3, cpu: int) -> int:
    return next(p for k, p, _, o, _ in gic.tables() if k == "pending" and o == cpu)


# ---------------------------------------------------------- GIC-M, GIC-C shape, constructor
@pytest.mark.parametrize("kw", [
    {"id_bits": 13}, {"id_bits": 25}, {"msi_rate_hz": -1.0}, {"quiesce": "some"},
    {"writeback_delay_ms": (5.0, 1.0)}, {"vpes": -1},
    {"sources": [MsiSource("a", device_id=3), MsiSource("b", device_id=3)]},
])
def test_gic_c1_constructor_checks(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GICv3(**kw)


@pytest.mark.parametrize("kw", [{"nvec": 0}, {"nvec": 2049}, {"rate_hz": -5.0}])
def test_gic_c1_msisource_checks(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MsiSource("x", **kw)


def test_gic_c2_nvec_rounded_and_default_source() -> None:
    assert MsiSource("x", nvec=5).nvec == 8 and MsiSource("y", nvec=1).itt_entries == 2
    gic = GICv3()
    assert [(s.name, s.nvec, s.device_id) for s in gic.sources] == [("eth0", 32, 0)]


def test_gic_m3_m4_arm64_only_one_machine_default_name() -> None:
    gic = GICv3()
    with pytest.raises(ValueError, match="x86_64"):
        Machine("256M", arch="x86_64", devices=[gic])
    m = Machine("256M", devices=[gic])
    assert m.devices["gic"] is gic and gic.machine is m
    with pytest.raises(ValueError, match="another machine"):
        Machine("256M", devices=[gic])


# ---------------------------------------------------------------- GIC-T tables
def test_gic_t1_t2_t3_t6_tables_order_size_and_placement() -> None:
    """T1 unmovable, never CMA; T2 64 KiB each; T3 allocation order, 64 KiB apart; T6."""
    m, gic = boot(cpus=4)
    tabs = gic.tables()
    assert [k for k, *_ in tabs] == ["cmdq", "device-l1", "collection", "prop"] + \
        ["pending"] * 4 + ["device-l2", "itt"]
    assert [o for k, _, _, o, _ in tabs if k == "pending"] == [0, 1, 2, 3]
    assert all(size == K64 for k, _, size, *_ in tabs if k != "itt")
    addrs = [p for _, p, *_ in tabs]
    assert addrs[:9] == [addrs[0] + i * K64 for i in range(9)]
    area = m.dma_contiguous_default_area
    assert area is not None
    for kind, phys, size, owner, gen in tabs:
        assert gen == 0
        for pfn in range(phys >> 12, (phys + size) >> 12):
            assert m.mm.pageblock_type(pfn) == "Unmovable"
            assert not area.base_pfn <= pfn < area.base_pfn + area.count


def test_gic_t2_id_bits_cap_and_b3_intids() -> None:
    """T2/B3: lpi_bits = min(id_bits, 16); sources get INTIDs 8192.. in order."""
    gic = GICv3(id_bits=20, sources=[MsiSource("a", nvec=4), MsiSource("b", nvec=16)])
    m, _ = boot(gic)
    assert gic.lpi_bits == 16
    assert [s.intid_base for s in gic.sources] == [8192, 8196]
    prop = next(p for k, p, *_ in gic.tables() if k == "prop")
    assert m.phys_read(prop, 4) == b"\xa3" * 4          # mapped vectors enabled
    assert m.phys_read(prop + 100, 1) == b"\xa2"        # the 0xA2 fill elsewhere


def test_gic_b8_probe_logs_every_table() -> None:
    m, gic = boot()
    lines = [t for _, t in m.dmesg() if t.startswith("GICv3")]
    for kind, phys, *_ in gic.tables():
        assert any(f"{phys:#x}" in t and kind in t for t in lines)


# ---------------------------------------------------------------- GIC-R registers
def test_gic_r5_r6_r7_enable_latches_ignores_and_ces() -> None:
    m, gic = boot()
    rd = gic.redistributors[1]
    base = GICR_BASE + 1 * 0x20000
    assert gic.mmio_read(base + GICR_CTLR) & 1 == 1 and rd.enable_lpis
    before = rd.latched_pend
    gic.mmio_write(base + GICR_PENDBASER, 0x5000_0000)
    gic.mmio_write(base + GICR_CTLR, 0)                       # CES = 0: stays enabled
    assert rd.ignored_writes == 2 and rd.enable_lpis and rd.latched_pend == before
    gic2 = GICv3(clear_enable_supported=True)
    m2, _ = boot(gic2)
    base2 = GICR_BASE
    assert gic2.mmio_read(base2 + GICR_CTLR) == 0b11
    gic2.mmio_write(base2 + GICR_CTLR, 0)
    assert not gic2.redistributors[0].enable_lpis


def test_gic_r9_r13_its_registers() -> None:
    m, gic = boot()
    its = gic.its
    assert gic.mmio_read(ITS_BASE) == 1 and its.enabled and not its.quiescent
    cbaser = its.cbaser
    gic.mmio_write(ITS_BASE + 0x80, 0)                        # CBASER while enabled
    assert its.ignored_writes == 1 and its.cbaser == cbaser
    gic.mmio_write(ITS_BASE, 0)
    assert gic.mmio_read(ITS_BASE) == 1 << 31 and its.quiescent
    assert gic.mmio_read(ITS_BASE + 0x100) >> 56 & 7 == 1     # BASER0: devices
    assert gic.mmio_read(ITS_BASE + 0x108) >> 56 & 7 == 4     # BASER1: collections


def test_gic_r15_bad_command_counted() -> None:
    from pykern.drivers.irqchip.irq_gic_v3_its import its_send
    m, gic = boot()
    its_send(m, gic, 0x77)
    assert gic.its.bad_commands == 1


# ---------------------------------------------------------------- GIC-W write paths
def test_gic_w1_w2_w3_msi_sets_one_pending_bit_once() -> None:
    """W2: one byte RMW at PENDBASER + INTID/8; W3: masked LPIs still go pending."""
    m, gic = boot()
    from pykern.drivers.irqchip.irq_gic_v3_its import its_mask_sources
    its_mask_sources(m, gic)
    gic.msi(0, 5)                                   # INTID 8197, vector 5 → CPU 1
    pend = pending_of(gic, 1)
    assert m.phys_read(pend + 8197 // 8, 1)[0] == 1 << (8197 % 8)
    gic.msi(0, 5)
    gic.msi(7, 0)                                   # unmapped device: dropped
    assert m.phys_read(pend, K64).count(0) == K64 - 1


def test_gic_w9_out_of_ram_write_is_dropped_and_counted() -> None:
    gic = GICv3(clear_enable_supported=True)
    m, _ = boot(gic)
    base = GICR_BASE + 1 * 0x20000
    gic.mmio_write(base + GICR_CTLR, 0)
    gic.mmio_write(base + GICR_PENDBASER, 0x10_0000)           # below RAM
    gic.mmio_write(base + GICR_CTLR, 1)
    gic.msi(0, 1)
    assert gic.dropped_writes == 1


# ---------------------------------------------------------------- GIC-K, H, O reboot
def test_gic_k3_honours_shutdown_no_scribbles_cma_clean() -> None:
    """K3/I4: a GIC honouring shutdown writes nothing after its slot."""
    for flags in (0, KEXEC_FILE_NO_CMA):
        m, gic = boot(GICv3(honours_shutdown=True))
        load(m, flags)
        r = m.kernel_kexec()
        assert r.scribbles == []
        assert not [t for t in gic.trace if t.kind == "lpi-pending" and t.changed and
                    t.phase != "offline"]
        if flags == 0:
            assert r.corrupted == []


def test_gic_seed_claim_example_no_cma_corrupts_cma_does_not() -> None:
    """The seed's claim on one regression layout: 1 GiB, cma=256M, seed 3, a GIC that
    ignores shutdown. NO_CMA puts the kernel segment over the live pending tables and the
    new kernel's bytes change; with CMA placement nothing lands in the image."""
    m, gic = boot(GICv3(honours_shutdown=False), seed=3)
    load(m, KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    kern = im.segments[0]
    pend = [p for k, p, _, _, _ in gic.tables() if k == "pending"]
    assert any(kern.mem <= p < kern.mem + kern.memsz for p in pend)
    r = m.kernel_kexec()
    assert r.scribbles and r.corrupted
    in_pending = [(a, n) for _, a, n in r.scribbles if any(p <= a < p + K64 for p in pend)]
    assert in_pending
    # GIC-O5: an LPI scribble only sets bits of the loaded byte
    for a, n in in_pending:
        off = a - kern.mem
        if 0 <= off < kern.bufsz:
            got = m.phys_read(a, 1)[0]
            assert got & kern.buf[off] == kern.buf[off]
    m2, gic2 = boot(GICv3(honours_shutdown=False), seed=3)
    load(m2, 0)
    assert all(s.cma for s in m2.kexec_image.segments)  # type: ignore[union-attr]
    r2 = m2.kernel_kexec()
    assert r2.scribbles and r2.corrupted == []


@pytest.mark.slow
def test_gic_h3_h9_same_seed_same_scribbles_other_seed_differs() -> None:
    outs = []
    for seed in (11, 11, 12):
        m, gic = boot(GICv3(honours_shutdown=False), seed=seed)
        load(m, KEXEC_FILE_NO_CMA, kernel=4 * MiB, initrd=MiB)
        r = m.kernel_kexec()
        outs.append((r.scribbles, r.corrupted, [(t.t_ns, t.phys) for t in gic.trace],
                     bytes(m.ram)))
    assert outs[0] == outs[1]
    assert outs[0][2] != outs[2][2]


def test_gic_h6_ignoring_gic_always_writes() -> None:
    m, gic = boot(GICv3(honours_shutdown=False, msi_rate_hz=1e-3))
    load(m, 0, kernel=MiB, initrd=MiB)
    r = m.kernel_kexec()
    assert len(r.scribbles) == 1


def test_gic_o2_trace_records_and_phases() -> None:
    m, gic = boot(GICv3(honours_shutdown=False))
    load(m, KEXEC_FILE_NO_CMA, kernel=4 * MiB, initrd=MiB)
    m.kernel_kexec()
    phases = {t.phase for t in gic.trace}
    assert {"shutdown", "relocate", "jump"} <= phases
    assert all(t.t_ns >= 0 and t.length >= 1 for t in gic.trace)
    times = [t.t_ns for t in gic.trace]
    assert times == sorted(times)
    pend = [t for t in gic.trace if t.kind == "lpi-pending"]
    assert all(t.intid is not None and t.intid >= 8192 and t.cpu is not None for t in pend)


def test_gic_k4_offline_cpus_move_vectors_to_cpu0() -> None:
    """K4: at machine_shutdown unmanaged vectors move to CPU 0 (MOVI): after that, arrivals
    only set bits in CPU 0's pending table."""
    m, gic = boot(GICv3(honours_shutdown=False))
    load(m, 0, kernel=MiB, initrd=MiB)
    r = m.kernel_kexec()
    clock_kexec = max(t.t_ns for t in gic.trace if t.phase == "offline") if any(
        t.phase == "offline" for t in gic.trace) else 0
    late = [t for t in gic.trace if t.kind == "lpi-pending" and t.t_ns > clock_kexec
            and t.phase in ("relocate", "jump")]
    assert late and all(t.cpu == 0 for t in late)
    assert r.scribbles


def test_gic_k6_crash_path_keeps_signalling_even_if_honouring() -> None:
    m, gic = boot(GICv3(honours_shutdown=True), cmdline="cma=256M crashkernel=128M")
    m.kexec_file_load(images.arm64_image(4 * MiB), None, "", KEXEC_FILE_ON_CRASH)
    r = m.panic()
    assert r is not None and r.scribbles
    assert all(t.t_ns >= 0 for t in gic.trace)


def test_gic_k7_quiesce_its_stops_lpis_at_syscore() -> None:
    m, gic = boot(GICv3(honours_shutdown=False, quiesce="its"))
    load(m, KEXEC_FILE_NO_CMA, kernel=4 * MiB, initrd=MiB)
    r = m.kernel_kexec()
    assert all(t.phase == "shutdown" for t in gic.trace if t.kind == "lpi-pending"
               and t.changed and t.intid is not None and t.phase != "offline")
    assert r.scribbles


# ---------------------------------------------------------------- GIC-N next kernel
def test_gic_n1_n3_hardware_survives_its_quiesced_then_reprogrammed() -> None:
    m, gic = boot(GICv3(honours_shutdown=True))
    old = gic.tables()
    load(m, 0, kernel=MiB, initrd=MiB)
    m.kernel_kexec()
    assert gic.redistributors[0].enable_lpis                       # N1
    assert gic.its.enabled                                         # re-enabled by probe
    gens = {g for *_, g in gic.tables()}
    assert gens == {0, 1}
    assert [t for t in gic.tables() if t[4] == 0][:3] == old[:3]   # old ITS tables listed


def test_gic_n4_n5_t9_adoption_with_efi_memreserve() -> None:
    """T9/N2/N4/N5/I6: published tables are reserved in the next generation, the driver
    adopts them, frees its fresh pending tables again, and leaks nothing."""
    gic = GICv3(honours_shutdown=True, efi_memreserve=True)
    m, _ = boot(gic, ram="512M", cmdline="cma=64M")
    published = list(m.efi_memreserve)
    assert len(published) == 1 + m.cpus
    iomem = m.read("/proc/iomem")
    prop = next(p for k, p, *_ in gic.tables() if k == "prop")
    assert f"{prop:08x}-" in iomem
    load(m, 0, kernel=MiB, initrd=MiB)
    m.kernel_kexec()
    assert m.efi_memreserve == published
    assert gic.redistributors[0].prop_addr == prop and m.tainted & 1024 == 0
    assert m.phys_read(prop + 5000, 1) == b"\xa2"
    gen1 = [t for t in gic.tables() if t[4] == 1]
    assert [k for k, *_ in gen1] == ["cmdq", "device-l1", "collection", "device-l2", "itt"]
    baseline = Machine("512M", cmdline="cma=64M")
    baseline.kexec_file_load(images.arm64_image(MiB), images.payload_pattern(MiB), "x=1", 0)
    baseline.kernel_kexec()
    held = sum(size // 4096 for _, _, size, _, g in gen1)
    reserved = sum(size // 4096 for _, size in published)
    assert m.mm.nr_free_pages() == baseline.mm.nr_free_pages() - held - reserved


def test_gic_t9_memreserve_to_memblock_keeps_the_walk_off_the_tables() -> None:
    """T9: with the reservation in memblock the arm64 walk avoids the tables; without it
    (the older behaviour) the kernel segment lands on them."""
    for to_memblock in (True, False):
        gic = GICv3(efi_memreserve=True, memreserve_to_memblock=to_memblock)
        m, _ = boot(gic, ram="512M", cmdline="cma=64M")
        load(m, KEXEC_FILE_NO_CMA, kernel=4 * MiB, initrd=MiB)
        im = m.kexec_image
        assert im is not None
        tables = [(p, s) for k, p, s, *_ in gic.tables() if k in ("prop", "pending")]
        over = any(seg.mem < p + s and p < seg.mem + seg.memsz
                   for seg in im.segments for p, s in tables)
        assert over is (not to_memblock)


def test_gic_n6_o7_no_reservation_ces_zero_leaves_cpu_without_lpis() -> None:
    """N6/O7: LPIs enabled, no usable reservation (CMA image, no EFI): warn, taint 1024;
    with CES=0 the CPUs stay latched on old tables and lose LPIs; with CES=1 they get
    fresh tables."""
    for ces in (False, True):
        gic = GICv3(honours_shutdown=True, clear_enable_supported=ces)
        m, _ = boot(gic, ram="512M", cmdline="cma=64M")
        old_pend = gic.redistributors[1].pend_addr
        load(m, 0, kernel=MiB, initrd=MiB)
        m.kernel_kexec()
        assert m.tainted & 1024
        rd = gic.redistributors[1]
        assert rd.lpis_working is ces
        assert (rd.pend_addr == old_pend) is (not ces)


def test_gic_w5_vpe_writeback_signature() -> None:
    """W5/K4: a vPE on a secondary CPU goes non-resident at its offline time; its VPT's
    bytes 32..63 get a copy of 0..31, then 0, 1, 32..35 are zeroed (one 64-byte write)."""
    gic = GICv3(honours_shutdown=False, vpes=2, writeback_delay_ms=(1.0, 1.0))
    m, _ = boot(gic, ram="512M", cmdline="cma=64M")
    vpt1 = next(p for k, p, _, o, _ in gic.tables() if k == "vpt" and o == 1)
    m.phys_write(vpt1, bytes(range(1, 33)))
    load(m, 0, kernel=MiB, initrd=MiB)
    r = m.kernel_kexec()
    wb = [t for t in gic.trace if t.kind == "vpt-writeback"]
    assert len(wb) == 1 and wb[0].phys == vpt1 and wb[0].length == 64
    got = m.phys_read(vpt1, 64)
    want = bytearray(range(1, 33)) * 2
    for k in (0, 1, 32, 33, 34, 35):
        want[k] = 0
    assert got == bytes(want)
    assert ("gic", vpt1, 64) in r.scribbles


# ---------------------------------------------------------------- the claim, as a property
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ram=st.sampled_from(["256M", "384M", "512M"]), cma=st.sampled_from([64, 96, 128]),
       seed=st.integers(0, 2**32 - 1), kernel=st.integers(1, 8), initrd=st.integers(0, 8),
       rate=st.sampled_from([5000.0, 20000.0, 80000.0]), cpus=st.integers(1, 4))
@pytest.mark.slow
def test_seed_claim_property(ram: str, cma: int, seed: int, kernel: int, initrd: int,
                             rate: float, cpus: int) -> None:
    """Issue #7's property: a GIC ignoring shutdown. All-CMA images are never corrupted;
    with honours_shutdown=True nothing scribbles; the same seed gives the same scribbles."""
    results = {}
    for honours in (False, True):
        for flags in (0, KEXEC_FILE_NO_CMA):
            m = Machine(ram, cmdline=f"cma={cma}M", cpus=cpus, seed=seed,
                        devices=[GICv3(honours_shutdown=honours, msi_rate_hz=rate)])
            m.kexec_file_load(images.arm64_image(kernel * MiB),
                              images.payload_pattern(initrd * MiB) if initrd else None, "",
                              flags)
            im = m.kexec_image
            assert im is not None
            all_cma = all(s.cma for s in im.segments)
            r = m.kernel_kexec()
            if flags == 0 and all_cma:
                assert r.corrupted == []
                for _, a, n in r.scribbles:                               # GIC-I2
                    assert not any(sg.mem < a + n and a < sg.mem + sg.memsz
                                   for sg in im.segments)
            gic = m.devices["gic"]
            pend = [(p, sz) for k, p, sz, _, _ in gic.tables() if k == "pending"]
            for t in gic.trace:                                           # GIC-I5
                if t.kind == "lpi-pending":
                    base = next((p for p, sz in pend if p <= t.phys < p + sz), None)
                    if base is not None:
                        assert 1024 <= t.phys - base < 8192
            if honours:
                assert r.scribbles == []
            else:
                assert r.scribbles
            results[(honours, flags)] = (r.scribbles, r.corrupted)
            event(f"honours={honours} flags={flags:#x} all_cma={all_cma} "
                  f"corrupted={bool(r.corrupted)}")
    m = Machine(ram, cmdline=f"cma={cma}M", cpus=cpus, seed=seed,
                devices=[GICv3(honours_shutdown=False, msi_rate_hz=rate)])
    m.kexec_file_load(images.arm64_image(kernel * MiB),
                      images.payload_pattern(initrd * MiB) if initrd else None, "",
                      KEXEC_FILE_NO_CMA)
    r = m.kernel_kexec()
    assert (r.scribbles, r.corrupted) == results[(False, KEXEC_FILE_NO_CMA)]


def test_gic_r4_pendbaser_ptz_reads_zero() -> None:
    m, gic = boot()
    assert gic.mmio_read(GICR_BASE + GICR_PENDBASER) & (1 << 62) == 0
    assert gic.mmio_read(GICR_BASE + GICR_PROPBASER) & 0x1F == 15


@pytest.mark.skipif(not pykern._fast.COMPILED, reason="the compiled walk is not built")
def test_gic_i7_twins_identical_ram_with_a_gic() -> None:
    """GIC-I7: the compiled walk and the pure twin give the same RAM and scribbles."""
    outs = []
    for ext in (True, False):
        m, gic = boot(GICv3(honours_shutdown=False), ram="512M", cmdline="cma=64M", seed=5,
                      extensions=ext)
        load(m, KEXEC_FILE_NO_CMA, kernel=4 * MiB, initrd=2 * MiB)
        r = m.kernel_kexec()
        outs.append((bytes(m.ram), r.scribbles, r.corrupted))
    assert outs[0] == outs[1] and outs[0][1]


def test_gic_w8_uncached_translations_read_ram() -> None:
    """W8: with its_cache=False an MSI re-reads the ITT from RAM, so zeroing the ITT entry
    in RAM drops the MSI; with the cache the old translation keeps working."""
    for cache in (True, False):
        m, gic = boot(GICv3(its_cache=cache), ram="512M", cmdline="cma=64M")
        itt = next(p for k, p, *_ in gic.tables() if k == "itt")
        m.phys_write(itt + 3 * 12, bytes(12))                # event 3's entry
        pend = pending_of(gic, 3)
        gic.msi(0, 3)
        set_ = m.phys_read(pend + (8192 + 3) // 8, 1)[0] != 0
        assert set_ is cache


def test_gic_k3_k8_vpe_writebacks_land_before_the_hot_phase() -> None:
    """K3: honouring shutdown retires vPEs inside the (longer) shutdown slot, so their
    write-backs land before t_shut and are no scribbles; K8: quiesce="full" retires them
    during syscore and waits the delay out, so they land before machine_kexec."""
    for kw in ({"honours_shutdown": True}, {"honours_shutdown": False, "quiesce": "full"}):
        gic = GICv3(vpes=2, writeback_delay_ms=(1.0, 3.0), **kw)
        m, _ = boot(gic, ram="512M", cmdline="cma=64M")
        for _, vpt, *_ in [t for t in gic.tables() if t[0] == "vpt"]:
            m.phys_write(vpt, bytes(range(1, 33)))            # state worth writing back
        load(m, 0, kernel=MiB, initrd=MiB)
        r = m.kernel_kexec()
        wb = [t for t in gic.trace if t.kind == "vpt-writeback"]
        assert len(wb) == 2 and all(t.phase == "shutdown" and t.changed for t in wb)
        if kw["honours_shutdown"]:
            assert not [s for s in r.scribbles if s[2] == 64]    # before t_shut


def test_gic_o4_forensics_attribute() -> None:
    """O4 (option): each corrupted run maps to the LPI writes that overlap it; every
    attributed write really overlaps its run and names an INTID, a CPU and a phase."""
    from pykern.forensics import attribute
    m, gic = boot(GICv3(honours_shutdown=False), seed=3)
    load(m, KEXEC_FILE_NO_CMA)
    r = m.kernel_kexec()
    found = attribute(r, m)
    assert found
    for a in found:
        addr, length, idx = a.run
        assert a.phys < addr + length and addr < a.phys + a.length
        assert a.device == "gic" and a.kind == "lpi-pending" and a.intid is not None
        assert a.phase in ("relocate", "jump") and a.segment_offset == a.phys - r.segments[idx][0]
    # runs nobody wrote exist too: the next kernel's 0xA2 fill of the adopted table (N4)
    assert len({a.run for a in found}) < len(r.corrupted)


def test_gic_i3_corruption_never_from_nowhere() -> None:
    """I3: every corrupted byte lies in a device write made after that page got its final
    content — or in the old property table, which the next kernel adopted and refilled
    with 0xA2 (N4, the kernel's own write; see the closing note on I3 against N4)."""
    from pykern.forensics import attribute
    for seed in (3, 4, 5):
        m, gic = boot(GICv3(honours_shutdown=False), seed=seed)
        old_prop = next(p for k, p, _, _, g in gic.tables() if k == "prop" and g == 0)
        load(m, KEXEC_FILE_NO_CMA, kernel=8 * MiB, initrd=4 * MiB)
        r = m.kernel_kexec()
        found = attribute(r, m)
        for addr, length, idx in r.corrupted:
            for b in range(addr, addr + length):
                by_device = any(a.phys <= b < a.phys + a.length for a in found
                                if a.run == (addr, length, idx))
                assert by_device or old_prop <= b < old_prop + K64, hex(b)
