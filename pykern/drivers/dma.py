"""A generic DMA bus master: a descriptor ring plus receive buffers that a device keeps
filling, and that may or may not stop when the kernel shuts it down (GIC-D1..D5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mm import gfp as G
from .base import Device, Event, RebootContext, device_rng

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["DmaDevice"]

PCI_STATES = ("D0", "D3hot", "D3cold", "unknown")
COMPLETION = 16
_ZERO = G.__GFP_ZERO


class DmaDevice(Device):
    """A NIC-like bus master (GIC-D1..D5)."""

    def __init__(self, name: str, *, bus: str = "pci", honours_shutdown: bool = True,
                 has_shutdown: bool = True, pci_state: str = "D0", ring_bytes: int = 65536,
                 rx_buffers: int = 16, rx_bytes: int = 2048, rate_hz: float = 10000.0,
                 coherent_from_cma: bool | str = "auto", uaf_before_load: bool = False) -> None:
        super().__init__(name)
        if bus not in ("pci", "platform"):
            raise ValueError(f"DmaDevice {name!r}: bus {bus!r} is not 'pci' or 'platform'")
        if pci_state not in PCI_STATES:
            raise ValueError(f"DmaDevice {name!r}: pci_state {pci_state!r} not in {PCI_STATES}")
        for what, value, lo in (("ring_bytes", ring_bytes, COMPLETION),
                                ("rx_buffers", rx_buffers, 1), ("rx_bytes", rx_bytes, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"DmaDevice {name!r}: {what} {value!r} must be an int >= {lo}")
        if rx_bytes > 4096:
            raise ValueError(f"DmaDevice {name!r}: rx_bytes {rx_bytes} exceeds a page")
        if not isinstance(rate_hz, (int, float)) or rate_hz < 0:
            raise ValueError(f"DmaDevice {name!r}: rate_hz {rate_hz!r} must be >= 0")
        if coherent_from_cma not in ("auto", True, False):
            raise ValueError(f"DmaDevice {name!r}: coherent_from_cma {coherent_from_cma!r}")
        self.bus = bus
        self.honours_shutdown = honours_shutdown
        self.has_shutdown = has_shutdown
        self.pci_state = pci_state
        self.ring_bytes = ring_bytes
        self.rx_buffers = rx_buffers
        self.rx_bytes = rx_bytes
        self.rate_hz = float(rate_hz)
        self.coherent_from_cma = coherent_from_cma
        self.uaf_before_load = uaf_before_load
        #: None means the default CMA area serves this device (MM D1).
        self.cma_area = None
        self._buffers: list[tuple[str, int, int]] = []
        self._ring_src = "buddy"            # where probe took the ring from: "cma" or "buddy"
        self.active = True
        self.bus_master = True
        self._next_rx = 0
        self._next_slot = 0

    # ------------------------------------------------------------------ probe
    def _ring_order(self) -> int:
        return max(0, (-(-self.ring_bytes // 4096) - 1).bit_length())

    def probe(self, m: Machine) -> None:
        """The driver's probe (GIC-D1): the ring through ``dma_alloc_coherent``, then the
        receive pages."""
        self._buffers = []
        self.active, self.bus_master = True, True
        self._next_rx = self._next_slot = 0
        order = self._ring_order()
        ring = None
        pages = 1 << order
        if pages > 1 and m.kernel.dma_contiguous_default_area is not None and \
                self.coherent_from_cma in ("auto", True):
            page = m.dma_alloc_from_contiguous(self, pages, order, True)
            if page is not None:
                ring = ("cma", page.phys)
                m.physmem.clear(page.phys, pages * 4096)
        if ring is None:
            got = m.kernel.mm.alloc_pages(G.GFP_KERNEL | _ZERO, order)
            if got is None:
                m.kernel.log.err(f"{self.name}: no memory for the descriptor ring")
                return
            ring = ("buddy", got.phys)
        self._ring_src = ring[0]
        self._buffers.append(("ring", ring[1], self.ring_bytes))
        for _ in range(self.rx_buffers):
            got = m.kernel.mm.alloc_pages(G.GFP_KERNEL | _ZERO, 0)
            if got is None:
                break
            self._buffers.append(("rx", got.phys, self.rx_bytes))
        m.kernel.log.info(f"{self.name}: ring at {ring[1]:#x} ({ring[0]}), "
                          f"{len(self._buffers) - 1} receive buffers")
        if self.uaf_before_load:
            self._free_buffers(m)

    def _free_buffers(self, m: Machine) -> None:
        """The driver bug (GIC-D5): memory given back while the device keeps using it."""
        order = self._ring_order()
        for kind, phys, _ in self._buffers:
            if kind == "ring" and self._ring_src == "cma":
                m.dma_release_from_contiguous(self, phys >> 12, 1 << order)
            elif kind == "ring":
                m.kernel.mm.free_pages(phys >> 12, order)
            else:
                m.kernel.mm.free_pages(phys >> 12, 0)
        m.kernel.log.warn(f"{self.name}: buffers freed while DMA is still enabled (use after free)")

    def buffers(self) -> list[tuple[str, int, int]]:
        """``(kind, phys, size)`` for every ring and receive buffer (GIC-D1)."""
        return list(self._buffers)

    # ------------------------------------------------------------------ reboot
    def _stops_at_shutdown(self) -> bool:
        """Whether ``pci_device_shutdown`` (or a platform driver's hook) stops the device
        (GIC-D3): its own shutdown callback, or bus mastering cleared on PCI."""
        if self.bus == "platform":
            return self.has_shutdown and self.honours_shutdown
        if self.has_shutdown and self.honours_shutdown:
            return True
        return self.pci_state not in ("D3cold", "unknown")     # bus mastering cleared

    def shutdown(self, ctx: RebootContext, t: int) -> None:
        if self._stops_at_shutdown():
            self.active = False
            if self.bus == "pci" and self.pci_state not in ("D3cold", "unknown"):
                self.bus_master = False

    def reboot_events(self, ctx: RebootContext) -> list[Event]:
        """The device's writes during the reboot (GIC-D2/D4): Poisson arrivals from the
        shutdown point (0 on the crash path) until the next kernel takes the device over
        (``t_takeover``, [model])."""
        m, clock = ctx.m, ctx.clock
        rng = device_rng(m.seed, m.generation, self.name)
        start = 0 if ctx.crash else clock.t_shut[self.name]
        stop = start if (not ctx.crash and self._stops_at_shutdown()) else clock.t_takeover
        times: list[int] = []
        t = start
        while self.rate_hz > 0 and stop > start:
            t += max(1, int(rng.expovariate(self.rate_hz) * 1e9))
            if t >= stop:
                break
            times.append(t)
        payloads = [rng.randbytes(self.rx_bytes) for _ in times]
        events: list[Event] = []
        for k, (when, data) in enumerate(zip(times, payloads)):
            def receive(c: RebootContext, now: int, data: bytes = data, k: int = k) -> None:
                self._receive(now, data, k)
            events.append((when, (k,), receive))
        return events

    def _receive(self, t: int, data: bytes, seq: int) -> None:
        rx = [b for b in self._buffers if b[0] == "rx"]
        ring = next((b for b in self._buffers if b[0] == "ring"), None)
        if not rx or ring is None:
            return
        _, buf, _ = rx[self._next_rx % len(rx)]
        self._next_rx += 1
        self.dma_write(t, buf, data, "rx-payload")
        slots = ring[2] // COMPLETION
        slot = ring[1] + (self._next_slot % slots) * COMPLETION
        self._next_slot += 1
        desc = buf.to_bytes(8, "little") + len(data).to_bytes(4, "little") + \
            (0x8000_0000 | (seq & 0x7FFF_FFFF)).to_bytes(4, "little")
        self.dma_write(t, slot, desc, "rx-completion")
