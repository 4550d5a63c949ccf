"""Who corrupted the new kernel? (GIC-O4, an option.)

``attribute(r, m)`` maps each corrupted run of a reboot to the device writes of that reboot
that overlap it, using the devices' traces (GIC-O2) — so a test can say which INTID on which
CPU, in which phase, hit which segment offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .kernel.kexec.reboot import KexecResult
    from .machine import Machine

__all__ = ["Attribution", "attribute"]


@dataclass(frozen=True)
class Attribution:
    """One device write overlapping one corrupted run."""

    run: tuple[int, int, int]       #: (phys_addr, length, segment_index) from r.corrupted
    device: str
    kind: str
    intid: int | None
    cpu: int | None
    phase: str
    t_ns: int
    phys: int
    length: int
    segment_offset: int             #: where the write starts, relative to the segment


def attribute(r: KexecResult, m: Machine) -> list[Attribution]:
    """Every (corrupted run, device write) pair where the write changed memory, overlaps
    the run, and came after that page got its final content (its hot-phase copy, or the
    load for CMA-backed and crash segments) — earlier writes were copied over (GIC-H8).
    In run order, then time order.  Runs nobody wrote (the next kernel's own writes, such
    as the GIC-N4 fill, or a quirk) get no entry."""
    out: list[Attribution] = []
    writes: list[tuple[str, Any]] = []
    for name, dev in m.devices.items():
        for rec in getattr(dev, "trace", []):
            if rec.changed:
                writes.append((name, rec))
    writes.sort(key=lambda w: w[1].t_ns)
    for run in r.corrupted:
        addr, length, idx = run
        base = r.segments[idx][0] if idx < len(r.segments) else addr
        for name, rec in writes:
            if rec.phys < addr + length and addr < rec.phys + rec.length and \
                    rec.t_ns >= r.final_content_ns(max(addr, rec.phys), idx):
                out.append(Attribution(run, name, rec.kind, rec.intid, rec.cpu, rec.phase,
                                       rec.t_ns, rec.phys, rec.length, rec.phys - base))
    return out
