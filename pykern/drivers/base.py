"""What every DMA-capable device model shares: attachment, the per-generation probe, the
reboot hooks, and the one recorded write path (GIC-W9, GIC-O1, GIC-O2, GIC-H3).

[model] A device object is *hardware*: it survives ``kernel_kexec()`` (GIC-M1).  The kexec
engine (``pykern.kernel.kexec.reboot``) asks each device for the events it will cause during
a reboot, drawn once when the reboot starts (GIC-H4), and applies them in time order between
chunks of the relocation copy (GIC-H7).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..kernel.kexec.clock import RebootClock
    from ..machine import Machine

__all__ = ["Device", "TraceRecord", "RebootContext", "Event", "device_rng"]

#: A reboot event: (t_ns, ordering key, action).  The engine sorts by (t_ns, device index,
#: key) (GIC-H7) and calls ``action(ctx, t_ns)``.
Event = tuple[int, tuple[int, ...], Callable[["RebootContext", int], None]]


@dataclass(frozen=True)
class TraceRecord:
    """One device write (GIC-O2)."""

    t_ns: int
    phase: str
    kind: str
    phys: int
    length: int
    cpu: int | None
    intid: int | None
    changed: bool


def device_rng(seed: int, generation: int, name: str) -> random.Random:
    """The one generator a device draws a reboot's randomness from (GIC-H3)."""
    digest = hashlib.sha256(f"pykern-dma:{seed}:{generation}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class RebootContext:
    """One reboot in progress: the machine, its clock, and the scribbles seen so far."""

    def __init__(self, m: Machine, clock: RebootClock, crash: bool) -> None:
        self.m = m
        self.clock = clock
        self.crash = crash
        self.now = 0
        self._scribbles: list[tuple[int, int, str, int, int]] = []
        self._seq = 0

    def scribble(self, t: int, name: str, phys: int, length: int) -> None:
        self._seq += 1
        self._scribbles.append((t, self._seq, name, phys, length))

    def scribbles(self) -> list[tuple[str, int, int]]:
        return [(n, p, ln) for _, _, n, p, ln in sorted(self._scribbles)]


class Device:
    """Base class of device models (GIC, DmaDevice)."""

    #: Architectures the device exists on.
    arches: tuple[str, ...] = ("arm64", "x86_64")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"device name {name!r} must be a non-empty str")
        self.name = name
        self.machine: Machine | None = None
        self.trace: list[TraceRecord] = []
        self.dropped_writes = 0
        self._ctx: RebootContext | None = None

    # -------------------------------------------------------------- life cycle
    def attach(self, m: Machine) -> None:
        """``Machine(devices=[...])``: bind the hardware to one machine (GIC-M3)."""
        if self.machine is not None and self.machine is not m:
            raise ValueError(f"device {self.name!r} already belongs to another machine")
        if m.arch not in self.arches:
            raise ValueError(f"device {self.name!r} ({type(self).__name__}) cannot be "
                             f"attached to an {m.arch} machine")
        self.machine = m

    def probe(self, m: Machine) -> None:
        """The driver's probe in the generation that is booting."""

    # -------------------------------------------------------------- reboot hooks
    def shutdown_extra_ns(self, m: Machine) -> int:
        """How much longer than 50 µs this device's shutdown slot lasts (GIC-K3)."""
        return 0

    def syscore_wait_ns(self, m: Machine) -> int:
        """Extra wait before ``t_syscore`` (GIC-K8)."""
        return 0

    def begin_reboot(self, ctx: RebootContext) -> None:
        """Called when the reboot starts, before any event; resets the trace."""
        self._ctx = ctx
        self.trace = []

    def shutdown(self, ctx: RebootContext, t: int) -> None:
        """The device_shutdown callback, at the end of this device's slot."""

    def reboot_events(self, ctx: RebootContext) -> list[Event]:
        """Everything this device will do during the reboot, drawn now (GIC-H4)."""
        return []

    def end_reboot(self, ctx: RebootContext) -> None:
        """Called at ``t_end`` (or at ``t_jump`` when x86 purgatory halts)."""
        self._ctx = None

    # -------------------------------------------------------------- the write path
    def dma_write(self, t: int, phys: int, data: bytes, kind: str, *, cpu: int | None = None,
                  intid: int | None = None, scribble: bool = True) -> bool:
        """A device write to RAM (GIC-W9): every device write goes through here.  Returns
        whether RAM changed.

        Outside RAM the write is dropped and counted.  ``scribble=False`` marks writes the
        CPU asked for (ITS command results, GIC-W7), which are traced but never scribbles.
        """
        m = self.machine
        assert m is not None
        if not m.physmem.is_ram(phys, len(data)):
            self.dropped_writes += 1
            return False
        changed = m.physmem.read(phys, len(data)) != data
        if changed:
            m.phys_write(phys, data)
        ctx = self._ctx
        if ctx is not None:             # only a reboot's writes are traced (GIC-O2)
            self.trace.append(TraceRecord(t, ctx.clock.phase(t), kind, phys, len(data), cpu,
                                          intid, changed))
            after_shutdown = t >= ctx.clock.t_shut.get(self.name, 0)
            if changed and scribble and after_shutdown and t < ctx.clock.t_end:
                ctx.scribble(t, self.name, phys, len(data))
        return changed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


