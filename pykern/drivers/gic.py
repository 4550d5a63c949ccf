"""A fake GICv3 with an ITS whose LPI tables live in emulated RAM (the devices guide).

This module is the *hardware* (GIC-M1): redistributors, the ITS with its command queue and
in-memory tables, the translation path that sets pending bits in RAM, and what the GIC does
on the reboot clock.  The Linux driver logic that programs it each generation is in
:mod:`pykern.drivers.irqchip.irq_gic_v3_its` (GIC-M2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .base import Device, Event, RebootContext, device_rng

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["GICv3", "MsiSource", "Redistributor", "ITS", "QUIESCE_MODES"]

QUIESCE_MODES = ("linux", "its", "full")
LPI_BASE = 8192
MS = 1_000_000

# MMIO layout of QEMU's "virt" board.
GICD_BASE = 0x0800_0000
ITS_BASE = 0x0808_0000
ITS_TRANSLATER = ITS_BASE + 0x1_0000 + 0x40
GICR_BASE = 0x080A_0000

GITS_CTLR, GITS_TYPER, GITS_CBASER, GITS_CWRITER, GITS_CREADR = 0x0, 0x8, 0x80, 0x88, 0x90
GITS_BASER = 0x100
GICR_CTLR, GICR_TYPER, GICR_PROPBASER, GICR_PENDBASER = 0x0, 0x8, 0x70, 0x78
VLPI_FRAME = 0x2_0000
GICR_VPROPBASER, GICR_VPENDBASER = 0x70, 0x78

# ITS command opcodes (GIC-R15).
MOVI, INT, CLEAR, SYNC, MAPD, MAPC, MAPTI, MAPI, INV, INVALL, MOVALL, DISCARD = \
    0x01, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F
VSYNC, VMAPP, VMAPTI = 0x25, 0x29, 0x2A

ADDR_12_51 = ((1 << 52) - 1) & ~0xFFF
ADDR_16_51 = ((1 << 52) - 1) & ~0xFFFF
ADDR_8_51 = ((1 << 52) - 1) & ~0xFF
ADDR_12_47 = ((1 << 48) - 1) & ~0xFFF
VALID = 1 << 63
INDIRECT = 1 << 62
VPENDBASER_PENDINGLAST = 1 << 61
VPENDBASER_DIRTY = 1 << 60
GICR_TYPER_PLPIS, GICR_TYPER_VLPIS, GICR_TYPER_RVPEID = 1 << 0, 1 << 1, 1 << 7
GITS_TYPER_VMAPP = 1 << 40


class MsiSource:
    """One interrupting function behind the ITS (an entry of ``GICv3(sources=...)``)."""

    def __init__(self, name: str, *, nvec: int = 32, rate_hz: float | None = None,
                 device_id: int | None = None, managed: bool = False,
                 honours_shutdown: bool | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"MsiSource name {name!r} must be a non-empty str")
        if isinstance(nvec, bool) or not isinstance(nvec, int) or not 1 <= nvec <= 2048:
            raise ValueError(f"MsiSource {name!r}: nvec {nvec!r} not in 1..2048")
        if rate_hz is not None and (not isinstance(rate_hz, (int, float)) or rate_hz < 0):
            raise ValueError(f"MsiSource {name!r}: rate_hz {rate_hz!r} must be >= 0")
        if device_id is not None and (isinstance(device_id, bool) or
                                      not isinstance(device_id, int) or
                                      not 0 <= device_id < 1 << 16):
            raise ValueError(f"MsiSource {name!r}: device_id {device_id!r} not in 0..65535")
        self.name = name
        self.nvec = 1 << (nvec - 1).bit_length()          # GIC-C2
        self.rate_hz = rate_hz
        self.device_id = device_id
        self.managed = managed
        self.honours_shutdown = honours_shutdown
        self.intid_base = 0

    @property
    def itt_entries(self) -> int:
        return max(2, self.nvec)

    def __repr__(self) -> str:
        return f"<MsiSource {self.name!r} dev={self.device_id} nvec={self.nvec}>"


@dataclass
class Redistributor:
    """One RD (GIC-R1..R8, GIC-O6)."""

    cpu: int
    ces: bool
    last: bool
    enable_lpis: bool = False
    propbaser: int = 0
    pendbaser: int = 0
    latched_prop: int = 0
    latched_pend: int = 0
    ignored_writes: int = 0
    lpis_working: bool = True
    vpropbaser: int = 0
    vpendbaser: int = 0

    @property
    def prop_addr(self) -> int:
        return self.latched_prop & ADDR_12_51

    @property
    def pend_addr(self) -> int:
        return self.latched_pend & ADDR_16_51

    @property
    def id_bits(self) -> int:
        return (self.latched_prop & 0x1F) + 1


@dataclass
class ITS:
    """The ITS registers (GIC-R9..R15, GIC-O6)."""

    enabled: bool = False
    cbaser: int = 0
    creadr: int = 0
    cwriter: int = 0
    baser: list[int] = field(default_factory=lambda: [0] * 8)
    ignored_writes: int = 0
    bad_commands: int = 0

    @property
    def quiescent(self) -> bool:
        return not self.enabled


@dataclass
class _Vpe:
    """One vPE as the hardware knows it: its VPT, the RD it targets, whether it is resident
    there, and, once made non-resident during a reboot, when its write-back lands (GIC-W5)."""

    index: int
    vpt: int
    cpu: int
    resident: bool = False
    delay_ns: int = 0                   # this reboot's write-back delay (GIC-H4)
    writeback_due: int | None = None    # set while the write-back is outstanding (Dirty)


class GICv3(Device):
    """The GICv3/ITS hardware model (the devices guide and the GIC rules of the rule index)."""

    arches = ("arm64",)

    def __init__(self, *, honours_shutdown: bool = True, msi_rate_hz: float = 20000.0,
                 sources: list[MsiSource] | None = None, id_bits: int = 16, vpes: int = 0,
                 efi_memreserve: bool = False, memreserve_to_memblock: bool = True,
                 clear_enable_supported: bool = False, quiesce: str = "linux",
                 writeback_delay_ms: tuple[float, float] = (0.0, 5.0), its_cache: bool = True,
                 name: str = "gic") -> None:
        super().__init__(name)
        if not isinstance(msi_rate_hz, (int, float)) or msi_rate_hz < 0:
            raise ValueError(f"GICv3: msi_rate_hz {msi_rate_hz!r} must be >= 0")
        if isinstance(id_bits, bool) or not isinstance(id_bits, int) or not 14 <= id_bits <= 24:
            raise ValueError(f"GICv3: id_bits {id_bits!r} not in 14..24")
        if isinstance(vpes, bool) or not isinstance(vpes, int) or vpes < 0:
            raise ValueError(f"GICv3: vpes {vpes!r} must be an int >= 0")
        if quiesce not in QUIESCE_MODES:
            raise ValueError(f"GICv3: quiesce {quiesce!r} not one of {QUIESCE_MODES}")
        try:
            lo, hi = (float(v) for v in writeback_delay_ms)
        except (TypeError, ValueError):
            raise ValueError(f"GICv3: writeback_delay_ms {writeback_delay_ms!r} must be a "
                             "(min, max) pair") from None
        if lo < 0 or lo > hi:
            raise ValueError(f"GICv3: writeback_delay_ms {writeback_delay_ms!r}: need "
                             "0 <= min <= max")
        self.sources = list(sources) if sources is not None else [MsiSource("eth0", nvec=32)]
        ids: set[int] = set()
        for k, src in enumerate(self.sources):
            if not isinstance(src, MsiSource):
                raise ValueError(f"GICv3: sources[{k}] is not an MsiSource")
            if src.device_id is None:
                src.device_id = k
            if src.device_id in ids:
                raise ValueError(f"GICv3: duplicate device_id {src.device_id}")
            ids.add(src.device_id)
        self.honours_shutdown = honours_shutdown
        self.msi_rate_hz = float(msi_rate_hz)
        self.id_bits = id_bits
        self.lpi_bits = min(id_bits, 16)
        self.vpes = vpes
        self.efi_memreserve = efi_memreserve
        self.memreserve_to_memblock = memreserve_to_memblock
        self.clear_enable_supported = clear_enable_supported
        self.quiesce = quiesce
        self.writeback_delay_ms = (lo, hi)
        self.its_cache = its_cache
        self.its = ITS()
        self.redistributors: list[Redistributor] = []
        self._tables: list[list[Any]] = []       # [kind, phys, size, owner, generation, live]
        self._cache: dict[tuple[int, int], tuple[int, int]] = {}   # (dev, ev) -> (intid, coll)
        self._coll_cache: dict[int, int] = {}                        # collection -> cpu
        self._vpe_list: list[_Vpe] = []
        self._wb_pending: list[_Vpe] = []         # non-resident, write-back not landed yet
        # Driver-side state of the current generation (irq_gic_v3_its).
        self.its_state: dict[str, int] = {}
        self.vector_cpu: dict[tuple[int, int], int] = {}
        self.prop_table = 0
        self.prop_lpi_bits = 0

    # ------------------------------------------------------------------ attach
    def attach(self, m: Machine) -> None:
        super().attach(m)
        if not self.redistributors:
            self.redistributors = [Redistributor(c, self.clear_enable_supported, c == m.cpus - 1)
                                   for c in range(m.cpus)]

    def probe(self, m: Machine) -> None:
        from .irqchip.irq_gic_v3_its import gic_probe
        gic_probe(m, self)

    # ------------------------------------------------------------------ tables
    def add_table(self, kind: str, phys: int, size: int, owner: Any, generation: int) -> None:
        self._tables.append([kind, phys, size, owner, generation, True])

    def drop_table(self, phys: int) -> None:
        for t in self._tables:
            if t[1] == phys and t[5]:
                t[5] = False

    def tables(self) -> list[tuple[str, int, int, Any, int]]:
        """Live tables in allocation order (GIC-T6): ``(kind, phys, size, owner, generation)``."""
        return [(k, p, s, o, g) for k, p, s, o, g, live in self._tables if live]

    def source_of(self, device_id: int) -> MsiSource | None:
        return next((s for s in self.sources if s.device_id == device_id), None)

    # ------------------------------------------------------------------ MMIO
    def _rd_frame(self, addr: int) -> tuple[Redistributor, int, bool]:
        """(RD, offset in its frame, VLPI frame?) of a redistributor register address."""
        stride = 0x4_0000 if self.vpes else 0x2_0000
        k, off = divmod(addr - GICR_BASE, stride)
        if addr < GICR_BASE or k >= len(self.redistributors):
            raise ValueError(f"GIC: no register at {addr:#x}")
        vlpi = bool(self.vpes) and off >= VLPI_FRAME
        return self.redistributors[k], off - (VLPI_FRAME if vlpi else 0), vlpi

    def mmio_read(self, addr: int, size: int = 8) -> int:
        """Register reads by physical MMIO address (the GIC-R rules)."""
        its = self.its
        if ITS_BASE <= addr < ITS_BASE + 0x1_0000:
            off = addr - ITS_BASE
            if off == GITS_CTLR:
                return int(its.enabled) | (int(its.quiescent) << 31)
            if off == GITS_TYPER:
                v4 = bool(self.vpes)
                return 1 | (int(v4) << 1) | (11 << 4) | (15 << 13) | \
                    (GITS_TYPER_VMAPP if v4 else 0)
            if off == GITS_CBASER:
                return its.cbaser
            if off == GITS_CWRITER:
                return its.cwriter
            if off == GITS_CREADR:
                return its.creadr
            if GITS_BASER <= off < GITS_BASER + 64:
                n = (off - GITS_BASER) // 8
                return its.baser[n] | (self._baser_type(n) << 56) | (7 << 48)
            return 0
        if GICD_BASE <= addr < GICD_BASE + 0x1_0000:
            if addr - GICD_BASE == 0x4:                 # GICD_TYPER: IDbits, LPIS
                return ((self.id_bits - 1) << 19) | (1 << 17)
            return 0
        rd, off, vlpi = self._rd_frame(addr)
        if vlpi:
            if off == GICR_VPROPBASER:
                return rd.vpropbaser
            if off == GICR_VPENDBASER:
                # GIC-R8: Dirty reads 1 while a write-back of a vPE this RD made
                # non-resident has not landed yet.
                dirty = any(v.cpu == rd.cpu for v in self._wb_pending)
                return rd.vpendbaser | (VPENDBASER_DIRTY if dirty else 0)
            return 0
        if off == GICR_CTLR:
            return int(rd.enable_lpis) | (int(rd.ces) << 1)
        if off == GICR_TYPER:
            v_bits = (GICR_TYPER_VLPIS | GICR_TYPER_RVPEID) if self.vpes else 0
            return GICR_TYPER_PLPIS | v_bits | (int(rd.last) << 4) | (rd.cpu << 8) | \
                (rd.cpu << 32)
        if off == GICR_PROPBASER:
            return rd.propbaser
        if off == GICR_PENDBASER:
            return rd.pendbaser & ~(1 << 62)
        return 0

    def _baser_type(self, n: int) -> int:
        return {0: 1, 1: 4, 2: 2 if self.vpes else 0}.get(n, 0)

    def mmio_write(self, addr: int, value: int, size: int = 8) -> None:
        """Register writes by physical MMIO address, with the architecture's ignore rules (the
        GIC-R rules)."""
        its = self.its
        if ITS_BASE <= addr < ITS_BASE + 0x1_0000:
            off = addr - ITS_BASE
            if off == GITS_CTLR:
                its.enabled = bool(value & 1)
            elif off == GITS_CBASER or GITS_BASER <= off < GITS_BASER + 64:
                if its.enabled:
                    its.ignored_writes += 1                     # GIC-R13
                    return
                self._cache.clear()
                self._coll_cache.clear()
                if off == GITS_CBASER:
                    its.cbaser = value
                    its.creadr = 0
                else:
                    its.baser[(off - GITS_BASER) // 8] = value & ~(0x7 << 56) & ~(0x1F << 48)
            elif off == GITS_CWRITER:
                its.cwriter = value & (0x7FFF << 5)
                self._process_commands()
            return
        if addr == ITS_TRANSLATER:
            raise ValueError("GIC: use gic.msi(device_id, event_id) to signal")
        rd, off, vlpi = self._rd_frame(addr)
        if vlpi:
            if off == GICR_VPROPBASER:
                rd.vpropbaser = value
            elif off == GICR_VPENDBASER:
                self._write_vpendbaser(rd, value)
            return
        if off == GICR_CTLR:
            if value & 1 and not rd.enable_lpis:
                rd.enable_lpis = True                            # GIC-R5: latch
                rd.latched_prop, rd.latched_pend = rd.propbaser, rd.pendbaser & ~(1 << 62)
            elif not value & 1 and rd.enable_lpis:
                if rd.ces:
                    rd.enable_lpis = False
                else:
                    rd.ignored_writes += 1                       # GIC-R7
        elif off in (GICR_PROPBASER, GICR_PENDBASER):
            if rd.enable_lpis:
                rd.ignored_writes += 1                           # GIC-R6
            elif off == GICR_PROPBASER:
                rd.propbaser = value
            else:
                rd.pendbaser = value

    # ------------------------------------------------------------------ ITS tables
    def _m(self) -> Machine:
        assert self.machine is not None
        return self.machine

    def _now(self) -> int:
        return self._ctx.now if self._ctx is not None else 0

    def _read_u64(self, phys: int) -> int:
        m = self._m()
        if not m.physmem.is_ram(phys, 8):
            return 0
        value: int = struct.unpack("<Q", m.phys_read(phys, 8))[0]
        return value

    def _table_write(self, phys: int, data: bytes) -> None:
        self.dma_write(self._now(), phys, data, "its-table", scribble=False)   # GIC-W7

    def _device_entry_addr(self, device_id: int) -> int | None:
        baser = self.its.baser[0]
        if not baser & VALID:
            return None
        base = baser & ADDR_12_47
        if baser & INDIRECT:
            per_page = 0x1_0000 // 8
            l1 = self._read_u64(base + (device_id // per_page) * 8)
            if not l1 & VALID:
                return None
            return (l1 & ADDR_12_51) + (device_id % per_page) * 8
        return base + device_id * 8

    def _collection_entry_addr(self, coll: int) -> int | None:
        baser = self.its.baser[1]
        if not baser & VALID:
            return None
        return (baser & ADDR_12_47) + coll * 8

    def _itt_of(self, device_id: int) -> tuple[int, int] | None:
        addr = self._device_entry_addr(device_id)
        if addr is None:
            return None
        entry = self._read_u64(addr)
        if not entry & 1:
            return None
        return ((entry >> 6) & ((1 << 44) - 1)) << 8, ((entry >> 1) & 0x1F) + 1

    def _read_itte(self, device_id: int, event: int) -> tuple[int, int] | None:
        itt = self._itt_of(device_id)
        if itt is None or event >= 1 << itt[1]:
            return None
        raw = self._m().phys_read(itt[0] + event * 12, 12) \
            if self._m().physmem.is_ram(itt[0] + event * 12, 12) else bytes(12)
        word = int.from_bytes(raw[:8], "little")
        if not word & 1 or not word & 2:
            return None
        return (word >> 2) & ((1 << 24) - 1), (word >> 32) & 0xFFFF

    def _write_itte(self, device_id: int, event: int, intid: int, coll: int,
                    valid: bool = True, vpe: int = 0, physical: bool = True) -> None:
        itt = self._itt_of(device_id)
        if itt is None:
            return
        word = int(valid) | (int(physical) << 1) | ((intid & 0xFFFFFF) << 2) | \
            ((coll & 0xFFFF) << 32) | ((vpe & 0xFFFF) << 48)
        self._table_write(itt[0] + event * 12, word.to_bytes(8, "little") + bytes(4))

    def _collection_cpu(self, coll: int) -> int | None:
        if self.its_cache:
            return self._coll_cache.get(coll)
        addr = self._collection_entry_addr(coll)
        if addr is None:
            return None
        entry = self._read_u64(addr)
        return (entry >> 1) & 0xFFFF if entry & 1 else None

    def _translate(self, device_id: int, event: int) -> tuple[int, int] | None:
        """The ITS translation of an MSI (GIC-W1): (INTID, CPU) or None."""
        if self.its_cache:
            hit = self._cache.get((device_id, event))
            if hit is None:
                return None
            intid, coll = hit
        else:
            found = self._read_itte(device_id, event)
            if found is None:
                return None
            intid, coll = found
        cpu = self._collection_cpu(coll)
        if cpu is None or cpu >= len(self.redistributors):
            return None
        return intid, cpu

    # ------------------------------------------------------------------ commands
    def _process_commands(self) -> None:
        """The ITS command queue (GIC-R15): execute every command between ``GITS_CREADR`` and
        ``GITS_CWRITER``."""
        its = self.its
        if not its.cbaser & VALID:
            return
        base = its.cbaser & ADDR_12_51
        size = ((its.cbaser & 0xFF) + 1) * 4096
        m = self._m()
        while its.creadr != its.cwriter:
            raw = m.phys_read(base + its.creadr, 32) if m.physmem.is_ram(base + its.creadr,
                                                                           32) else bytes(32)
            its.creadr = (its.creadr + 32) % size
            self._command(struct.unpack("<4Q", raw))

    def _command(self, dw: tuple[int, ...]) -> None:
        op = dw[0] & 0xFF
        dev, ev = dw[0] >> 32, dw[1] & 0xFFFFFFFF
        if op == MAPD:
            addr = self._device_entry_addr(dev)
            if addr is not None:
                mapd_valid = bool(dw[2] >> 63)
                entry = (int(mapd_valid) | ((dw[1] & 0x1F) << 1) |
                         (((dw[2] & ADDR_8_51) >> 8) << 6)) if mapd_valid else 0
                self._table_write(addr, entry.to_bytes(8, "little"))
            if not dw[2] >> 63:
                self._cache = {k: v for k, v in self._cache.items() if k[0] != dev}
        elif op == MAPC:
            coll, target, valid = dw[2] & 0xFFFF, (dw[2] >> 16) & 0xFFFFFFFFF, bool(dw[2] >> 63)
            addr = self._collection_entry_addr(coll)
            entry = (1 | ((target & 0xFFFF) << 1)) if valid else 0
            if addr is not None:
                self._table_write(addr, entry.to_bytes(8, "little"))
            if valid:
                self._coll_cache[coll] = target
            else:
                self._coll_cache.pop(coll, None)
        elif op in (MAPTI, MAPI):
            intid = dw[1] >> 32 if op == MAPTI else ev
            coll = dw[2] & 0xFFFF
            self._write_itte(dev, ev, intid, coll)
            if self._itt_of(dev) is not None:
                self._cache[(dev, ev)] = (intid, coll)
        elif op == MOVI:
            self._movi(dev, ev, dw[2] & 0xFFFF)
        elif op == DISCARD:
            hit = self._translate(dev, ev)
            if hit is not None:
                self._write_itte(dev, ev, 0, 0, valid=False)
                self._clear_pending(hit[0], hit[1])
            self._cache.pop((dev, ev), None)
        elif op == INT:
            self._signal(dev, ev, self._now(), command=True)
        elif op == CLEAR:
            hit = self._translate(dev, ev)
            if hit is not None:
                self._clear_pending(hit[0], hit[1])
        elif op == VMAPP:
            vpe_id, target = dw[1] >> 32, (dw[2] >> 16) & 0xFFFFFFFFF
            vpt, valid = dw[3] & ADDR_16_51, bool(dw[2] >> 63)
            baser = self.its.baser[2]
            if baser & VALID:
                entry = (1 | (15 << 1) | ((vpt >> 16) << 6) | ((target & 0xFFFF) << 42)) \
                    if valid else 0
                self._table_write((baser & ADDR_12_47) + vpe_id * 8,
                                  entry.to_bytes(8, "little"))
        elif op in (SYNC, INV, INVALL, MOVALL, VSYNC, VMAPTI):
            pass
        else:
            self.its.bad_commands += 1

    def _movi(self, dev: int, ev: int, new_coll: int) -> None:
        """MOVI: retarget a vector; its pending bit moves with it (GIC-K4, command-driven)."""
        old = self._translate(dev, ev)
        if old is None:
            return
        intid, old_cpu = old
        self._write_itte(dev, ev, intid, new_coll)
        if (dev, ev) in self._cache:
            self._cache[(dev, ev)] = (intid, new_coll)
        new_cpu = self._collection_cpu(new_coll)
        if new_cpu is None or new_cpu == old_cpu:
            return
        if self._clear_pending(intid, old_cpu):
            self._set_pending(intid, new_cpu, self._now(), scribble=False)

    # ------------------------------------------------------------------ pending bits
    def _pending_byte(self, intid: int, cpu: int) -> int | None:
        rd = self.redistributors[cpu]
        if not rd.enable_lpis or not LPI_BASE <= intid < 1 << rd.id_bits:
            return None
        return rd.pend_addr + intid // 8

    def _clear_pending(self, intid: int, cpu: int) -> bool:
        addr = self._pending_byte(intid, cpu)
        m = self._m()
        if addr is None or not m.physmem.is_ram(addr, 1):
            return False
        byte = m.phys_read(addr, 1)[0]
        if not byte & (1 << (intid % 8)):
            return False
        self.dma_write(self._now(), addr, bytes([byte & ~(1 << (intid % 8))]), "lpi-pending",
                       cpu=cpu, intid=intid, scribble=False)
        return True

    def _set_pending(self, intid: int, cpu: int, t: int, scribble: bool = True) -> None:
        """A redistributor setting an LPI pending (GIC-W2): a one-byte read-modify-write of the
        pending table; nothing if the bit is already set."""
        addr = self._pending_byte(intid, cpu)
        if addr is None:
            return
        m = self._m()
        if not m.physmem.is_ram(addr, 1):
            self.dropped_writes += 1
            return
        byte = m.phys_read(addr, 1)[0]
        bit = 1 << (intid % 8)
        if byte & bit:
            return
        self.dma_write(t, addr, bytes([byte | bit]), "lpi-pending", cpu=cpu, intid=intid,
                       scribble=scribble)

    def _signal(self, dev: int, ev: int, t: int, command: bool = False) -> None:
        if not self.its.enabled:
            return
        hit = self._translate(dev, ev)
        if hit is None:
            return
        self._set_pending(hit[0], hit[1], t, scribble=not command)

    def msi(self, device_id: int, event_id: int) -> None:
        """``GITS_TRANSLATER`` (GIC-R14): a write of ``event_id`` from ``device_id``."""
        self._signal(device_id, event_id, self._now())

    # ------------------------------------------------------------------ vPEs
    def _write_vpendbaser(self, rd: Redistributor, value: int) -> None:
        """``GICR_VPENDBASER`` (GIC-R8): a write of the register.

        Valid 1 -> 0 makes every vPE resident on this RD non-resident and starts its
        write-back (GIC-W5).  Valid = 1 makes the vPE whose VPT the address names resident
        here.  [model] The vPE model keeps GICv4.0's address field in VPENDBASER; writing
        Valid = 1 over a resident vPE (architecturally UNPREDICTABLE) leaves the earlier
        one resident too.
        """
        was_valid = bool(rd.vpendbaser & VALID)
        rd.vpendbaser = value & ~VPENDBASER_DIRTY
        if was_valid and not value & VALID:
            for v in self._vpe_list:
                if v.cpu == rd.cpu and v.resident:
                    self._vpe_make_nonresident(v)
        elif value & VALID:
            for v in self._vpe_list:
                if v.vpt == value & ADDR_16_51:
                    v.cpu, v.resident = rd.cpu, True

    def _vpe_make_nonresident(self, vpe: _Vpe) -> None:
        """The RD stops running ``vpe``; its cached state is written back after the delay
        drawn for it when the reboot started (GIC-W5, GIC-H4).

        [model] Outside a reboot there is no clock: the write-back lands at once.
        """
        vpe.resident = False
        if self._ctx is None:
            self.vpe_writeback(vpe, 0)
            return
        vpe.writeback_due = self._now() + vpe.delay_ns
        self._wb_pending.append(vpe)

    def _vpe_land(self, vpe: _Vpe, t: int) -> None:
        """The reboot event at which ``vpe``'s write-back is due; a no-op unless something
        (a shutdown path, or the next kernel's RD setup) made it non-resident in time."""
        if vpe.writeback_due is None or vpe.writeback_due > t:
            return
        vpe.writeback_due = None
        self._wb_pending.remove(vpe)
        self.vpe_writeback(vpe, t)

    def vpe_writeback(self, vpe: _Vpe, t: int) -> None:
        """A vPE write-back (GIC-W5): the cached vPE state lands in the first page of its VPT."""
        m = self._m()
        if not m.physmem.is_ram(vpe.vpt, 64):
            self.dropped_writes += 1
            return
        page = bytearray(m.phys_read(vpe.vpt, 64))
        page[32:64] = page[0:32]
        for k in (0, 1, 32, 33, 34, 35):
            page[k] = 0
        self.dma_write(t, vpe.vpt, bytes(page), "vpt-writeback", cpu=vpe.cpu)

    # ------------------------------------------------------------------ reboot
    def _effective_honours(self, src: MsiSource) -> bool:
        return self.honours_shutdown if src.honours_shutdown is None else src.honours_shutdown

    def _max_delay_ns(self) -> int:
        return int(self.writeback_delay_ms[1] * MS)

    def shutdown_extra_ns(self, m: Machine) -> int:
        return self._max_delay_ns() if self.honours_shutdown and self._vpe_list else 0

    def syscore_wait_ns(self, m: Machine) -> int:
        return self._max_delay_ns() if self.quiesce == "full" and self._vpe_list else 0

    def shutdown(self, ctx: RebootContext, t: int) -> None:
        """The GIC's ``device_shutdown`` slot (GIC-W4): mask every source vector in the
        property table (``its_mask_sources``)."""
        from .irqchip.irq_gic_v3_its import its_mask_sources
        its_mask_sources(ctx.m, self)

    def reboot_events(self, ctx: RebootContext) -> list[Event]:
        """The whole reboot's schedule, drawn now (GIC-H4..H6, K3..K8)."""
        m, clock = ctx.m, ctx.clock
        rng = device_rng(m.seed, m.generation, self.name)
        crash = ctx.crash
        start = 0 if crash else clock.t_shut[self.name]
        events: list[Event] = []
        windows: list[tuple[int, int, MsiSource]] = []
        for k, src in enumerate(self.sources):
            rate = self.msi_rate_hz if src.rate_hz is None else src.rate_hz
            if crash:
                stop = clock.t_takeover
            elif self._effective_honours(src):
                stop = start
            elif self.quiesce in ("its", "full"):
                stop = clock.t_syscore
            else:
                stop = clock.t_takeover
            times: list[int] = []
            if rate > 0 and stop > start:
                t = start
                while True:
                    t += max(1, int(rng.expovariate(rate) * 1e9))
                    if t >= stop:
                        break
                    times.append(t)
                windows.append((start, stop, src))
            vectors = [rng.randrange(src.nvec) for _ in times]
            for t, vec in zip(times, vectors):
                events.append(self._arrival(t, k, src, vec))
        if not self.honours_shutdown and windows and not events:       # GIC-H6
            lo, hi, src = windows[0]
            t = rng.randrange(lo, hi)
            vec = rng.randrange(src.nvec)
            events.append(self._arrival(t, self.sources.index(src), src, vec))
        delays = [int(rng.uniform(*self.writeback_delay_ms) * MS) for _ in self._vpe_list]
        events += self._vpe_events(ctx, delays)
        if not crash:
            events += self._offline_events(ctx)
            if self.quiesce in ("its", "full"):
                events.append((clock.t_syscore, (-2,), self._syscore))
        return events

    def _arrival(self, t: int, k: int, src: MsiSource, vec: int) -> Event:
        dev = src.device_id
        assert dev is not None

        def fire(ctx: RebootContext, now: int) -> None:
            self._signal(dev, vec, now)
        return (t, (k, vec, 0), fire)

    def _syscore(self, ctx: RebootContext, t: int) -> None:
        """The ITS disabled during ``syscore_shutdown`` (GIC-K7/K8)."""
        self.its.enabled = False

    def _vpe_events(self, ctx: RebootContext, delays: list[int]) -> list[Event]:
        """When each vPE goes non-resident and its write-back lands (GIC-K3/K4/K8, N7, W5).

        A vPE retired by the old kernel (K3, K8) or with its CPU (K4) is descheduled through
        its RD's ``GICR_VPENDBASER`` (Valid cleared, PendingLast set) and written back
        ``delay`` later.  A vPE left resident (on the boot CPU, or every vPE in the crash
        path) can only be retired by the next kernel's RD setup at ``t_takeover``
        (``allocate_vpe_l1_table()``, GIC-N7): its write-back event is due at
        ``t_takeover + delay`` and does nothing if that kernel never cleared Valid.
        """
        clock = ctx.clock
        out: list[Event] = []
        for vpe, delay in zip(self._vpe_list, delays):
            vpe.delay_ns = delay
            if not vpe.resident:
                continue
            when: int | None = None
            if ctx.crash:
                pass
            elif self.honours_shutdown:
                when = clock.t_slot_start[self.name]
            elif self.quiesce == "full":
                when = clock.t_syscore - self.syscore_wait_ns(ctx.m)
            elif vpe.cpu != 0:
                when = clock.t_offline[vpe.cpu - 1]
            if when is None:
                land = clock.t_takeover + delay          # stays resident into the next kernel
            else:
                land = when + delay

                def deschedule(c: RebootContext, now: int, vpe: _Vpe = vpe) -> None:
                    if vpe.resident:
                        rd = self.redistributors[vpe.cpu]
                        self._write_vpendbaser(
                            rd, (rd.vpendbaser & ~VALID) | VPENDBASER_PENDINGLAST)
                out.append((when, (len(self.sources), -1, vpe.index), deschedule))

            def writeback(c: RebootContext, now: int, vpe: _Vpe = vpe) -> None:
                self._vpe_land(vpe, now)
            out.append((land, (len(self.sources), 0, vpe.index), writeback))
        return out

    def end_reboot(self, ctx: RebootContext) -> None:
        """Write-backs still outstanding at ``t_end`` land after the observed run: in RAM,
        untraced (GIC-O2 covers the reboot only)."""
        super().end_reboot(ctx)
        for vpe in list(self._wb_pending):
            vpe.writeback_due = None
            self._wb_pending.remove(vpe)
            self.vpe_writeback(vpe, ctx.clock.t_end)

    def _offline_events(self, ctx: RebootContext) -> list[Event]:
        """Secondary CPUs going offline (GIC-K4): each moves or shuts down its vectors
        (``its_cpu_offline``)."""
        from .irqchip.irq_gic_v3_its import its_cpu_offline
        out: list[Event] = []
        for k, t in enumerate(ctx.clock.t_offline):
            cpu = k + 1

            def offline(c: RebootContext, now: int, cpu: int = cpu) -> None:
                its_cpu_offline(c.m, self, cpu)
            out.append((t, (-1, cpu), offline))
        return out
