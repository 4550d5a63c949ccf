"""The Linux side of the GIC: what ``drivers/irqchip/irq-gic-v3-its.c`` (and the LPI part of
``irq-gic-v3.c``) do against the hardware model, once per generation (gic.md §5, §7, §10).

One function per kernel function it models; the hardware is :class:`pykern.drivers.gic.GICv3`.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...mm import gfp as G
from ..gic import (GICR_BASE, GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER, GITS_BASER,
                   GITS_CBASER, GITS_CTLR, GITS_CWRITER, INDIRECT, INV, INVALL, ITS_BASE,
                   LPI_BASE, MAPC, MAPD, MAPTI, MOVI, VALID, VMAPP, GICv3, _Vpe)

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["gic_probe", "its_probe_one", "allocate_lpi_tables", "its_cpu_init_lpis",
           "redist_disable_lpis", "gic_reserve_range", "its_mask_sources", "its_cpu_offline"]

SZ_64K = 0x1_0000
ORDER_64K = 4
TAINT_CRAP = 1024
_ZERO = G.__GFP_ZERO


def _rd_base(gic: GICv3, cpu: int) -> int:
    return GICR_BASE + cpu * (0x4_0000 if gic.vpes else 0x2_0000)


def _alloc_table(m: Machine, gic: GICv3, kind: str, order: int, owner: object,
                 flags: int = G.GFP_KERNEL | _ZERO) -> int | None:
    page = m.mm.alloc_pages(flags, order)
    if page is None:
        m.log.err(f"GICv3: ITS: failed to allocate the {kind} table")
        return None
    gic.add_table(kind, page.phys, 4096 << order, owner, m.generation)
    m.log.info(f"GICv3: ITS: {kind} table{'' if owner is None else f' ({owner})'} at "
               f"{page.phys:#x}, {4096 << order} bytes")
    return page.phys


def _free_table(m: Machine, gic: GICv3, phys: int, order: int) -> None:
    m.mm.free_pages(phys >> 12, order)
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
    """GIC-B2/N3: quiesce, allocate the ITS tables, program CBASER/BASERs, enable."""
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
    """The whole range inside one memblock reservation (a crash kernel skips the check).

    The kernel walks every reserved memblock range, not only the EFI memreserve list: a
    table that lies inside the new kernel's own image counts as reserved (GIC-N4).
    """
    if getattr(m, "crash_kernel", False):
        return True
    return any(b <= base and base + size <= e for b, e in m.memblock.reserved)


def allocate_lpi_tables(m: Machine, gic: GICv3) -> tuple[int, int, bool, list[int | None]]:
    """GIC-B4/N4: adopt the old property table or allocate one; a pending table per CPU.

    Returns (property table, lpi_bits, adopted, fresh pending tables by CPU).
    """
    rd0 = gic.redistributors[0]
    adopted = False
    if rd0.enable_lpis and gic_check_reserved_range(m, rd0.prop_addr,
                                                    _table_bytes(rd0.id_bits, 1)):
        adopted = True
        lpi_bits = rd0.id_bits
        prop = rd0.prop_addr
        m.log.info(f"GICv3: using preallocated LPI property table @{prop:#x}")
        m.phys_write(prop, b"\xa2" * _table_bytes(lpi_bits, 1))    # a kernel write (N4)
    else:
        lpi_bits = gic.lpi_bits
        size = _table_bytes(lpi_bits, 1)
        got = _alloc_table(m, gic, "prop", (size // 4096).bit_length() - 1, None, G.GFP_NOWAIT)
        if got is None:
            return 0, lpi_bits, False, []
        prop = got
        m.phys_write(prop, b"\xa2" * size)
    pend_order = (_table_bytes(lpi_bits, 8) // 4096).bit_length() - 1
    fresh = [_alloc_table(m, gic, "pending", pend_order, cpu, G.GFP_NOWAIT | _ZERO)
             for cpu in range(m.cpus)]
    return prop, lpi_bits, adopted, fresh


def redist_disable_lpis(m: Machine, gic: GICv3, cpu: int) -> bool:
    """GIC-N6: LPIs found enabled without usable tables: warn, taint, try to clear."""
    rd = gic.redistributors[cpu]
    m.log.warn(f"GICv3: CPU{cpu}: LPIs still enabled (probably kexec), trying to disable")
    m.tainted |= TAINT_CRAP
    gic.mmio_write(_rd_base(gic, cpu) + GICR_CTLR, 0)
    if rd.enable_lpis:
        m.log.err(f"GICv3: CPU{cpu}: Failed to disable LPIs")
        return False
    return True


def its_cpu_init_lpis(m: Machine, gic: GICv3, cpu: int, prop: int, lpi_bits: int,
                      adopted: bool, fresh: int | None) -> int | None:
    """GIC-B4/N5/N6 for one CPU; returns the pending table the RD now uses (or None)."""
    rd = gic.redistributors[cpu]
    pend_size = _table_bytes(lpi_bits, 8)
    pend_order = (pend_size // 4096).bit_length() - 1
    if rd.enable_lpis:
        if adopted:
            current = rd.pend_addr
            if not gic_check_reserved_range(m, current, pend_size):
                m.log.warn(f"GICv3: CPU{cpu}: pending table @{current:#x} is not reserved")
                m.tainted |= TAINT_CRAP
            else:
                m.log.info(f"GICv3: CPU{cpu}: using reserved LPI pending table "
                           f"@{current:#x}")
            if fresh is not None:
                _free_table(m, gic, fresh, pend_order)
            rd.lpis_working = True
            return current
        if not redist_disable_lpis(m, gic, cpu):
            rd.lpis_working = False
            return None
    if fresh is None:
        rd.lpis_working = False
        return None
    base = _rd_base(gic, cpu)
    gic.mmio_write(base + GICR_PROPBASER, prop | (lpi_bits - 1) | (1 << 10) | (7 << 7))
    gic.mmio_write(base + GICR_PENDBASER, fresh | (1 << 62) | (1 << 10) | (7 << 7))
    gic.mmio_write(base + GICR_CTLR, 1)
    rd.lpis_working = True
    m.log.info(f"GICv3: CPU{cpu}: using allocated LPI pending table @{fresh:#x}")
    return fresh


def gic_reserve_range(m: Machine, gic: GICv3, base: int, size: int) -> None:
    """GIC-T9: publish a table in the EFI memreserve list (EFI boots only)."""
    if not gic.efi_memreserve:
        return
    if (base, size) not in m.efi_memreserve:
        m.efi_memreserve.append((base, size))
    if gic.memreserve_to_memblock:
        m.memblock.memblock_reserve(base, size)


def _map_sources(m: Machine, gic: GICv3, prop: int, lpi_bits: int) -> None:
    """GIC-B3/B5: INTIDs, level-2 device pages, ITTs, MAPD and one MAPTI per vector."""
    next_intid = LPI_BASE
    dev_l1 = gic.its_state["dev_l1"]
    gic.vector_cpu = {}
    for src in gic.sources:
        dev = src.device_id
        assert dev is not None
        if next_intid + src.nvec > 1 << lpi_bits:
            m.log.err(f"GICv3: ITS: no LPIs left for {src.name}")
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
    """GIC-B7: one guest with ``vpes`` vPEs, each resident on CPU k mod cpus."""
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
        vpe = _Vpe(index=k, vpt=vpt, cpu=cpu, resident=True)
        gic._vpe_list.append(vpe)
        rd = gic.redistributors[cpu]
        rd.vpropbaser = vprop | 15
        rd.vpendbaser = VALID | vpt


def gic_probe(m: Machine, gic: GICv3) -> None:
    """GIC-B1..B8 (and N1..N6 in a later generation): the whole probe."""
    if not its_probe_one(m, gic):
        return
    prop, lpi_bits, adopted, fresh = allocate_lpi_tables(m, gic)
    if not prop:
        return
    used: list[int | None] = []
    for cpu in range(m.cpus):
        used.append(its_cpu_init_lpis(m, gic, cpu, prop, lpi_bits, adopted, fresh[cpu]
                                      if cpu < len(fresh) else None))
    gic.prop_table, gic.prop_lpi_bits = prop, lpi_bits
    for cpu in range(m.cpus):
        if gic.redistributors[cpu].lpis_working:
            its_send(m, gic, MAPC, 0, VALID | (cpu << 16) | cpu)
            its_send(m, gic, INVALL, 0, cpu)
    _map_sources(m, gic, prop, lpi_bits)
    if not adopted:
        gic_reserve_range(m, gic, prop, _table_bytes(lpi_bits, 1))
    for cpu, pend in enumerate(used):
        if pend is not None and pend == (fresh[cpu] if cpu < len(fresh) else None):
            gic_reserve_range(m, gic, pend, _table_bytes(lpi_bits, 8))
    _setup_vpes(m, gic)


def _lpi_disable(m: Machine, gic: GICv3, intid: int) -> None:
    """Clear an LPI's enable bit in the property table (a CPU write, not a device one)."""
    addr = gic.prop_table + intid - LPI_BASE
    if gic.prop_table and intid >= LPI_BASE and m.physmem.is_ram(addr, 1):
        m.phys_write(addr, bytes([m.phys_read(addr, 1)[0] & ~1]))


def its_mask_sources(m: Machine, gic: GICv3) -> None:
    """GIC-W4: shutdown masks every source vector in the property table (CPU writes)."""
    for src in gic.sources:
        if src.intid_base:
            for ev in range(src.nvec):
                _lpi_disable(m, gic, src.intid_base + ev)


def its_cpu_offline(m: Machine, gic: GICv3, cpu: int) -> None:
    """GIC-K4: unmanaged vectors on ``cpu`` move to the boot CPU (MOVI); managed ones are
    shut down (enable bit cleared, INV) but stay mapped."""
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
