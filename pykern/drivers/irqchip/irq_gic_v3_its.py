"""The Linux side of the GIC: what ``drivers/irqchip/irq-gic-v3-its.c`` (and the LPI part of
``irq-gic-v3.c``) do against the hardware model, once per generation (the GIC-B, K and N rules).

One function per kernel function it models; the hardware is :class:`pykern.drivers.gic.GICv3`.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...constants import SZ_64K
from ...mm import gfp as G
from ..gic import (ADDR_12_51, ADDR_16_51, GICR_BASE, GICR_CTLR, GICR_PENDBASER,
                   GICR_PROPBASER, GICR_TYPER, GICR_TYPER_PLPIS, GICR_TYPER_RVPEID,
                   GICR_TYPER_VLPIS, GICR_VPENDBASER, GICR_VPROPBASER, GITS_BASER, GITS_CBASER,
                   GITS_CTLR, GITS_CWRITER, GITS_TYPER, GITS_TYPER_VMAPP, INDIRECT, INV, INVALL,
                   ITS_BASE, LPI_BASE, MAPC, MAPD, MAPTI, MOVI, VALID, VLPI_FRAME, VMAPP,
                   VPENDBASER_PENDINGLAST, GICv3, _Vpe)

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["gic_probe", "its_probe_one", "allocate_lpi_tables", "its_cpu_init",
           "its_cpu_init_lpis", "allocate_vpe_l1_table", "its_cpu_init_collections",
           "its_lpi_memreserve_init", "its_cpu_memreserve_lpi", "redist_disable_lpis",
           "gic_check_reserved_range", "gic_reserve_range", "its_mask_sources",
           "its_cpu_offline"]

ORDER_64K = 4
TAINT_CRAP = 1024
_ZERO = G.__GFP_ZERO
_ITS_C = "drivers/irqchip/irq-gic-v3-its.c"
# GICR_{PROP,PEND}BASER attributes the driver asks for: inner shareable, RaWaWb.
_SHARE_CACHE = (1 << 10) | (7 << 7)
# What this generation's driver learnt about an RD (the kernel's per-CPU rdist flags).
RD_LOCAL_LPI_ENABLED = 1 << 0
RD_LOCAL_PENDTABLE_PREALLOCATED = 1 << 1


def _pa(addr: int) -> str:
    """The kernel's ``%pa`` for a 64-bit phys_addr_t."""
    return f"0x{addr:016x}"


def _rd_base(gic: GICv3, cpu: int) -> int:
    return GICR_BASE + cpu * (0x4_0000 if gic.vpes else 0x2_0000)


def _alloc_table(m: Machine, gic: GICv3, kind: str, order: int, owner: object,
                 flags: int = G.GFP_KERNEL | _ZERO) -> int | None:
    page = m.kernel.mm.alloc_pages(flags, order)
    if page is None:
        m.kernel.log.err(f"GICv3: ITS: failed to allocate the {kind} table")
        return None
    gic.add_table(kind, page.phys, 4096 << order, owner, m.generation)
    m.kernel.log.info(f"GICv3: ITS: {kind} table{'' if owner is None else f' ({owner})'} at "
                      f"{page.phys:#x}, {4096 << order} bytes")
    return page.phys


def _free_table(m: Machine, gic: GICv3, phys: int, order: int) -> None:
    m.kernel.mm.free_pages(phys >> 12, order)
    gic.drop_table(phys)


def its_send(m: Machine, gic: GICv3, *dwords: int) -> None:
    """Queue one 32-byte command and kick CWRITER (the ITS runs it at once, GIC-R15)."""
    its = gic.its
    base = its.cbaser & ((1 << 52) - 1) & ~0xFFF
    size = ((its.cbaser & 0xFF) + 1) * 4096
    cmd = struct.pack("<4Q", *(list(dwords) + [0] * (4 - len(dwords))))
    m.phys_write(base + its.cwriter, cmd)
    gic.mmio_write(ITS_BASE + GITS_CWRITER, (its.cwriter + 32) % size)


def its_probe_one(m: Machine, gic: GICv3) -> bool:
    """``its_probe_one`` (GIC-B2/N3): quiesce, allocate the ITS tables, program
    CBASER/BASERs, enable."""
    gic.mmio_write(ITS_BASE + GITS_CTLR, 0)
    cmdq = _alloc_table(m, gic, "cmdq", ORDER_64K, None)
    dev_l1 = _alloc_table(m, gic, "device-l1", ORDER_64K, None)
    coll = _alloc_table(m, gic, "collection", ORDER_64K, None)
    vpe_table = _alloc_table(m, gic, "vpe-table", ORDER_64K, None) if gic.vpes else None
    if cmdq is None or dev_l1 is None or coll is None or (gic.vpes and vpe_table is None):
        return False
    page64k = 2 << 8
    gic.mmio_write(ITS_BASE + GITS_CBASER, VALID | cmdq | 15)
    gic.mmio_write(ITS_BASE + GITS_BASER, VALID | INDIRECT | dev_l1 | page64k)
    gic.mmio_write(ITS_BASE + GITS_BASER + 8, VALID | coll | page64k)
    if vpe_table is not None:
        gic.mmio_write(ITS_BASE + GITS_BASER + 16, VALID | vpe_table | page64k)
    gic.its.cwriter = 0
    gic.its.creadr = 0
    gic.mmio_write(ITS_BASE + GITS_CTLR, 1)
    gic.its_state = {"dev_l1": dev_l1}
    return True


def _table_bytes(bits: int, per: int) -> int:
    return max(SZ_64K, -(-((1 << bits) // per) // SZ_64K) * SZ_64K)


def gic_check_reserved_range(m: Machine, base: int, size: int) -> bool:
    """gic_check_reserved_range(): the whole range inside one memblock reservation (a crash
    kernel skips the check); otherwise a warning and the "crap" taint (GIC-O7).

    The kernel walks every reserved memblock range, not only the EFI memreserve list: a
    table that lies inside the new kernel's own image counts as reserved (GIC-N4).
    """
    if m.kernel.crash_kernel:
        return True
    if any(b <= base and base + size <= e for b, e in m.kernel.memblock.reserved):
        return True
    m.kernel.log.warn(f"GICv3: Expected reserved range [{_pa(base)}:{_pa(base + size - 1)}], "
                      "not found")
    m.kernel.tainted |= TAINT_CRAP
    return False


class _LpiTables:
    """What allocate_lpi_tables() leaves for the per-CPU setup of this generation: the
    kernel's ``gic_rdists`` (property table, ``lpi_id_bits``, RDIST_FLAGS_RD_TABLES_
    PREALLOCATED) and the per-CPU ``pend_page`` and RD_LOCAL_* flags."""

    def __init__(self, prop: int, lpi_bits: int, preallocated: bool,
                 fresh: list[int | None], has_rvpeid: bool) -> None:
        self.prop = prop
        self.lpi_bits = lpi_bits
        self.preallocated = preallocated
        self.fresh = fresh
        self.has_rvpeid = has_rvpeid
        self.flags = [0] * len(fresh)
        self.used: list[int | None] = [None] * len(fresh)

    @property
    def pend_size(self) -> int:
        return _table_bytes(self.lpi_bits, 8)


def gic_has_rvpeid(m: Machine, gic: GICv3) -> bool:
    """Whether direct injection runs in GICv4.1 mode: every RD's ``GICR_TYPER`` has VLPIS
    and RVPEID (gic_update_rdist_properties()) and the ITS is a v4.1 one (``GITS_TYPER``
    VMAPP; its_init() drops RVPEID otherwise).

    [model] The model's vPEs (``vpes>0``) are GICv4.1 ones; the GICv4.0 path of
    its_cpu_init_lpis() (its_clear_vpend_valid()) therefore never runs.
    """
    want = GICR_TYPER_VLPIS | GICR_TYPER_RVPEID
    rds = all(gic.mmio_read(_rd_base(gic, c) + GICR_TYPER) & want == want
              for c in range(m.cpus))
    return rds and bool(gic.mmio_read(ITS_BASE + GITS_TYPER) & GITS_TYPER_VMAPP)


def allocate_lpi_tables(m: Machine, gic: GICv3) -> _LpiTables | None:
    """allocate_lpi_tables() with its_setup_lpi_prop_table() (GIC-B4/N4): adopt the old
    property table or allocate and publish one, then a pending table per possible CPU.

    The check (enabled_lpis_allowed()) reads the boot CPU's ``GICR_PROPBASER`` and looks
    for ``LPI_PROPBASE_SZ`` bytes there, which is 64 KiB whatever the old size, because
    ``lpi_id_bits`` is still 0 when it runs.
    """
    rd0 = _rd_base(gic, 0)
    preallocated = False
    if gic.mmio_read(rd0 + GICR_CTLR) & 1 and gic_check_reserved_range(
            m, gic.mmio_read(rd0 + GICR_PROPBASER) & ADDR_12_51, SZ_64K):
        preallocated = True
        m.kernel.log.info("GICv3: Using preallocated redistributor tables")
    if preallocated:
        val = gic.mmio_read(rd0 + GICR_PROPBASER)
        lpi_bits = (val & 0x1F) + 1
        prop = val & ADDR_12_51
        m.phys_write(prop, b"\xa2" * _table_bytes(lpi_bits, 1))    # a kernel write (N4)
    else:
        lpi_bits = gic.lpi_bits
        size = _table_bytes(lpi_bits, 1)
        got = _alloc_table(m, gic, "prop", (size // 4096).bit_length() - 1, None, G.GFP_NOWAIT)
        if got is None:
            m.kernel.log.err("Failed to allocate PROPBASE")
            return None
        prop = got
        m.phys_write(prop, b"\xa2" * size)
        gic_reserve_range(m, gic, prop, size)
    m.kernel.log.info(f"GICv3: using LPI property table @{_pa(prop)}")
    pend_order = (_table_bytes(lpi_bits, 8) // 4096).bit_length() - 1
    fresh: list[int | None] = []
    for cpu in range(m.cpus):
        fresh.append(_alloc_table(m, gic, "pending", pend_order, cpu, G.GFP_NOWAIT | _ZERO))
        if fresh[-1] is None:
            m.kernel.log.err(f"Failed to allocate PENDBASE for CPU{cpu}")
    return _LpiTables(prop, lpi_bits, preallocated, fresh, gic_has_rvpeid(m, gic))


def redist_disable_lpis(m: Machine, gic: GICv3, cpu: int, st: _LpiTables) -> bool:
    """redist_disable_lpis() (GIC-N6): nothing to do when LPIs are off or the tables were
    adopted; otherwise warn, taint, clear ``EnableLPIs`` and check that it stuck.
    Returns False where the kernel returns an error (the CPU then gets no LPIs)."""
    base = _rd_base(gic, cpu)
    if not gic.mmio_read(base + GICR_TYPER) & GICR_TYPER_PLPIS:
        m.kernel.log.info(f"CPU{cpu}: LPIs not supported")
        return False
    val = gic.mmio_read(base + GICR_CTLR)
    if not val & 1:
        return True
    if st.flags[cpu] & RD_LOCAL_LPI_ENABLED or st.preallocated:
        return True
    m.kernel.log.warn(f"GICv3: CPU{cpu}: Booted with LPIs enabled, memory probably corrupted")
    m.kernel.tainted |= TAINT_CRAP
    gic.mmio_write(base + GICR_CTLR, val & ~1)
    if gic.mmio_read(base + GICR_CTLR) & 1:                 # RWP reads 0 in the model
        m.kernel.log.err(f"CPU{cpu}: Failed to disable LPIs")
        return False
    return True


def allocate_vpe_l1_table(m: Machine, gic: GICv3, cpu: int, st: _LpiTables) -> int:
    """allocate_vpe_l1_table(), as far as the model goes (GIC-N7).

    On a GICv4.1 RD whose ``GICR_VPENDBASER.Valid`` is still set (a vPE an earlier kernel
    left resident), write PendingLast with Valid clear: the RD makes that vPE non-resident
    and writes its state back to its VPT (GIC-W5).  Since Linux 6.8 (ec4308ecfc88) this
    runs on every RD that gets through redist_disable_lpis(), adopted tables included.

    [model] Divergence: the rest of the function, the per-RD vPE configuration table
    (``GICR_VPROPBASER`` in its v4.1 layout: inherited from an RD or ITS, or allocated
    ``GFP_ATOMIC | __GFP_ZERO`` on the first CPU), is not modelled; pykern keeps the v4.0
    use of VPROPBASER for the guest's vLPI property table (GIC-B7).
    """
    if not st.has_rvpeid:
        return 0
    vlpi = _rd_base(gic, cpu) + VLPI_FRAME
    if gic.mmio_read(vlpi + GICR_VPENDBASER) & VALID:
        gic.mmio_write(vlpi + GICR_VPENDBASER, VPENDBASER_PENDINGLAST)
    return 0


def its_cpu_init_lpis(m: Machine, gic: GICv3, cpu: int, st: _LpiTables) -> int | None:
    """its_cpu_init_lpis() (GIC-B4/N5/N7) for one CPU; returns the pending table the RD
    now uses.

    Adopted tables (RD tables preallocated and ``EnableLPIs`` set): check that PROPBASER
    names the adopted property table (a WARN and the taint otherwise), check that the
    current PENDBASER lies in a reservation (warning, WARN and taint otherwise, but it is
    used anyway), and program nothing.  Otherwise program PROPBASER, PENDBASER (no PTZ:
    the table was zeroed at allocation) and set ``EnableLPIs``.  Both paths then reach
    allocate_vpe_l1_table().
    """
    rd = gic.redistributors[cpu]
    base = _rd_base(gic, cpu)
    val = gic.mmio_read(base + GICR_CTLR)
    if st.preallocated and val & 1:
        paddr = gic.mmio_read(base + GICR_PROPBASER) & ADDR_12_51
        if paddr != st.prop:
            m.kernel.log.warn(f"WARNING: {_ITS_C}: its_cpu_init_lpis")
            m.kernel.tainted |= TAINT_CRAP
        paddr = gic.mmio_read(base + GICR_PENDBASER) & ADDR_16_51
        if not gic_check_reserved_range(m, paddr, st.pend_size):
            m.kernel.log.warn(f"WARNING: {_ITS_C}: its_cpu_init_lpis")
        st.flags[cpu] |= RD_LOCAL_PENDTABLE_PREALLOCATED
    else:
        fresh = st.fresh[cpu]
        if fresh is None:
            rd.lpis_working = False
            return None
        paddr = fresh
        gic.mmio_write(base + GICR_PROPBASER, st.prop | _SHARE_CACHE | (st.lpi_bits - 1))
        gic.mmio_read(base + GICR_PROPBASER)          # shareability sticks in the model
        gic.mmio_write(base + GICR_PENDBASER, fresh | _SHARE_CACHE)
        gic.mmio_read(base + GICR_PENDBASER)
        gic.mmio_write(base + GICR_CTLR, gic.mmio_read(base + GICR_CTLR) | 1)
    allocate_vpe_l1_table(m, gic, cpu, st)
    st.flags[cpu] |= RD_LOCAL_LPI_ENABLED
    rd.lpis_working = True
    how = "reserved" if st.flags[cpu] & RD_LOCAL_PENDTABLE_PREALLOCATED else "allocated"
    m.kernel.log.info(f"GICv3: CPU{cpu}: using {how} LPI pending table @{_pa(paddr)}")
    st.used[cpu] = paddr
    return paddr


def its_cpu_init_collections(m: Machine, gic: GICv3, cpu: int) -> None:
    """its_cpu_init_collection(): map collection ``cpu`` to this CPU (``GITS_TYPER.PTA`` is
    0, so the target is the RD's processor number), then INVALL."""
    target = (gic.mmio_read(_rd_base(gic, cpu) + GICR_TYPER) >> 8) & 0xFFFF
    its_send(m, gic, MAPC, 0, VALID | (target << 16) | cpu)
    its_send(m, gic, INVALL, 0, cpu)


def its_cpu_init(m: Machine, gic: GICv3, cpu: int, st: _LpiTables) -> bool:
    """its_cpu_init() for one CPU, in the kernel's order: redist_disable_lpis(), then
    its_cpu_init_lpis() and its_cpu_init_collections(); an error from the first leaves
    the CPU without LPIs and without a collection (GIC-N6), and its vPE resident (N7)."""
    if not redist_disable_lpis(m, gic, cpu, st):
        gic.redistributors[cpu].lpis_working = False
        return False
    its_cpu_init_lpis(m, gic, cpu, st)
    if gic.redistributors[cpu].lpis_working:
        its_cpu_init_collections(m, gic, cpu)
    return True


def its_lpi_memreserve_init(m: Machine, gic: GICv3) -> bool:
    """its_lpi_memreserve_init(): whether its_cpu_memreserve_lpi() is registered as the
    CPU-online callback, so that it runs for the boot CPU and then for each secondary.

    The kernel registers it only when the machine booted through EFI
    (``efi_enabled(EFI_CONFIG_TABLES)``, ``efi_memreserve=True`` here) and an ITS probed.
    Without EFI the callback never runs, so the pending table pre-allocated for a CPU whose
    RD kept its old one is never freed: 64 KiB per adopting CPU stay allocated for the life
    of the boot (quirk ``gic-pending-table-leak-no-efi``, GIC-N5, since d23bc2bc1d63,
    Linux 5.17).  With that fix the callback runs in every boot and frees them, as GIC-N5
    and GIC-I6 describe.
    """
    return gic.efi_memreserve or m.fixes.on("gic-pending-table-leak-no-efi")


def its_cpu_memreserve_lpi(m: Machine, gic: GICv3, cpu: int, st: _LpiTables) -> None:
    """its_cpu_memreserve_lpi() (GIC-N5, T9): free the pending table allocated for a CPU
    whose RD kept its old one; publish the one it uses otherwise.  It runs only where
    its_lpi_memreserve_init() registered it.
    """
    fresh = st.fresh[cpu]
    if fresh is None:
        return
    if st.flags[cpu] & RD_LOCAL_PENDTABLE_PREALLOCATED:
        _free_table(m, gic, fresh, (st.pend_size // 4096).bit_length() - 1)
        st.fresh[cpu] = None
    else:                       # also for a CPU left without LPIs (GIC-N6), as the kernel
        gic_reserve_range(m, gic, fresh, st.pend_size)


def gic_reserve_range(m: Machine, gic: GICv3, base: int, size: int) -> None:
    """gic_reserve_range() (GIC-T9): publish a table in the EFI memreserve list (EFI boots
    only; ``efi_mem_reserve_persistent()``)."""
    if not gic.efi_memreserve:
        return
    if (base, size) not in m.efi_memreserve:
        m.efi_memreserve.append((base, size))
    if gic.memreserve_to_memblock:
        m.kernel.memblock.memblock_reserve(base, size)


def _map_sources(m: Machine, gic: GICv3, prop: int, lpi_bits: int) -> None:
    """``its_create_device`` and ``its_irq_domain_alloc`` for each source (GIC-B3/B5):
    INTIDs, level-2 device pages, ITTs, MAPD and one MAPTI per vector."""
    next_intid = LPI_BASE
    dev_l1 = gic.its_state["dev_l1"]
    gic.vector_cpu = {}
    for src in gic.sources:
        dev = src.device_id
        assert dev is not None
        if next_intid + src.nvec > 1 << lpi_bits:
            m.kernel.log.err(f"GICv3: ITS: no LPIs left for {src.name}")
            continue
        src.intid_base = next_intid
        next_intid += src.nvec
        l1_addr = dev_l1 + (dev // (SZ_64K // 8)) * 8
        if not struct.unpack("<Q", m.phys_read(l1_addr, 8))[0] & VALID:
            l2 = _alloc_table(m, gic, "device-l2", ORDER_64K, src.name)
            if l2 is None:
                continue
            m.phys_write(l1_addr, struct.pack("<Q", VALID | l2))
        itt = _alloc_table(m, gic, "itt", 0, src.name)
        if itt is None:
            continue
        its_send(m, gic, MAPD | (dev << 32), src.itt_entries.bit_length() - 2,
                 VALID | itt)
        for ev in range(src.nvec):
            intid = src.intid_base + ev
            cpu = ev % m.cpus
            its_send(m, gic, MAPTI | (dev << 32), ev | (intid << 32), cpu)
            gic.vector_cpu[(dev, ev)] = cpu
            m.phys_write(prop + intid - LPI_BASE, b"\xa3")     # priority 0xA0, enabled


def _setup_vpes(m: Machine, gic: GICv3) -> None:
    """``its_vpe_init`` and ``its_vpe_schedule`` for one guest (GIC-B7): ``vpes`` vPEs,
    each made resident on CPU k mod cpus through that RD's VPROPBASER/VPENDBASER.

    [model] The hardware's list of vPEs starts again with this guest; a vPE of an earlier
    generation whose write-back is still outstanding keeps it (GIC-N7).
    """
    gic._vpe_list = []
    if not gic.vpes:
        return
    vprop = _alloc_table(m, gic, "vprop", ORDER_64K, None, G.GFP_KERNEL)
    if vprop is None:
        return
    m.phys_write(vprop, b"\xa2" * SZ_64K)
    for k in range(gic.vpes):
        vpt = _alloc_table(m, gic, "vpt", ORDER_64K, k)
        if vpt is None:
            return
        cpu = k % m.cpus
        its_send(m, gic, VMAPP, k << 32, VALID | (cpu << 16), vpt | 15)
        gic._vpe_list.append(_Vpe(index=k, vpt=vpt, cpu=cpu))
        vlpi = _rd_base(gic, cpu) + VLPI_FRAME
        gic.mmio_write(vlpi + GICR_VPROPBASER, vprop | 15)
        gic.mmio_write(vlpi + GICR_VPENDBASER, VALID | vpt)


def gic_probe(m: Machine, gic: GICv3) -> None:
    """``gic_init_bases`` (GIC-B1..B8, and N1..N7 in a later generation): the whole probe,
    in its order: its_init() (ITS probe, allocate_lpi_tables()), then for each CPU in
    turn, as the boot CPU and then each secondary comes up, its_cpu_init() followed by the
    memreserve step where its_lpi_memreserve_init() registered it; then the sources' drivers
    and the guest."""
    if not its_probe_one(m, gic):
        return
    st = allocate_lpi_tables(m, gic)
    if st is None:
        return
    gic.prop_table, gic.prop_lpi_bits = st.prop, st.lpi_bits
    memreserve = its_lpi_memreserve_init(m, gic)
    for cpu in range(m.cpus):
        its_cpu_init(m, gic, cpu, st)
        if memreserve:
            its_cpu_memreserve_lpi(m, gic, cpu, st)
    _map_sources(m, gic, st.prop, st.lpi_bits)
    _setup_vpes(m, gic)


def _lpi_disable(m: Machine, gic: GICv3, intid: int) -> None:
    """Clear an LPI's enable bit in the property table (a CPU write, not a device one)."""
    addr = gic.prop_table + intid - LPI_BASE
    if gic.prop_table and intid >= LPI_BASE and m.physmem.is_ram(addr, 1):
        m.phys_write(addr, bytes([m.phys_read(addr, 1)[0] & ~1]))


def its_mask_sources(m: Machine, gic: GICv3) -> None:
    """``its_mask_irq`` on every source vector at shutdown (GIC-W4): enable bits cleared in
    the property table (CPU writes)."""
    for src in gic.sources:
        if src.intid_base:
            for ev in range(src.nvec):
                _lpi_disable(m, gic, src.intid_base + ev)


def its_cpu_offline(m: Machine, gic: GICv3, cpu: int) -> None:
    """``irq_migrate_all_off_this_cpu`` for ``cpu`` (GIC-K4): unmanaged vectors move to the
    boot CPU (MOVI, ``its_set_affinity``); managed ones are shut down (enable bit cleared,
    INV) but stay mapped."""
    for src in gic.sources:
        dev = src.device_id
        assert dev is not None
        for ev in range(src.nvec):
            if gic.vector_cpu.get((dev, ev)) != cpu:
                continue
            if src.managed:
                _lpi_disable(m, gic, src.intid_base + ev)
                its_send(m, gic, INV | (dev << 32), ev)
            else:
                its_send(m, gic, MOVI | (dev << 32), ev, 0)
                gic.vector_cpu[(dev, ev)] = 0
