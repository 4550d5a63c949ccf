"""The reboot clock and the device hook of the hot phase (K16.1, K16.3, K16.8,
K16.11, K16.12; GIC-H1, GIC-H7, GIC-H8, GIC-O1, GIC-O2), with a scripted device."""

from __future__ import annotations

import struct
from typing import Any

import pytest

import pykern._fast

from pykern import Machine, images
from pykern.drivers.base import Device, Event, RebootContext
from pykern.kernel.kexec.clock import RebootClock
from pykern.kernel.kexec.reboot import RelocationError
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH

MiB = 1 << 20
US = 1000
MS = 1000 * US


class Scripted(Device):
    """Writes given bytes at given emulated times; records what the kernel told it."""

    def __init__(self, name: str, plan: list[tuple[str, int, int, bytes]] | None = None,
                 extra_ns: int = 0) -> None:
        super().__init__(name)
        self.plan = plan or []          # (mark, offset_ns, phys, data)
        self.extra_ns = extra_ns
        self.calls: list[tuple[str, int, bool]] = []
        self.probes: list[int] = []

    def probe(self, m: Machine) -> None:
        self.probes.append(m.generation)

    def shutdown_extra_ns(self, m: Machine) -> int:
        return self.extra_ns

    def shutdown(self, ctx: RebootContext, t: int) -> None:
        self.calls.append(("shutdown", t, ctx.m.kexec_in_progress))

    def reboot_events(self, ctx: RebootContext) -> list[Event]:
        out: list[Event] = []
        for k, (mark, offset, phys, data) in enumerate(self.plan):
            base = {"kexec": ctx.clock.t_kexec, "jump": ctx.clock.t_jump,
                    "takeover": ctx.clock.t_takeover, "zero": 0}[mark]
            t = base + offset

            def act(c: RebootContext, now: int, phys: int = phys, data: bytes = data) -> None:
                self.dma_write(now, phys, data, "test")
            out.append((t, (k,), act))
        return out


def _loaded(devices: list[Any], extensions: bool | None = None, flags: int = KEXEC_FILE_NO_CMA,
            cmdline: str = "cma=64M") -> Machine:
    m = Machine("512M", cmdline=cmdline, devices=devices, extensions=extensions)
    m.kexec_file_load(images.arm64_image(4 * MiB), images.payload_pattern(MiB), "", flags)
    return m


# ---------------------------------------------------------------- the clock
def test_gic_h1_marks_with_two_devices_and_four_cpus() -> None:
    """GIC-H1: slots back to back, syscore 50 µs later, CPUs 200 µs apart, t_kexec the later
    of slot end + 2 ms and last offline + 100 µs, pages at copy_ns, takeover +5 ms, end +10."""
    c = RebootClock(copy_ns=400, pages=1000, cpus=4, slots=[("b", 0), ("a", 7 * US)])
    assert c.t_slot_start == {"b": 0, "a": 50 * US}
    assert c.t_shut == {"b": 50 * US, "a": 107 * US}
    assert c.t_syscore == 157 * US
    assert c.t_offline == [357 * US, 557 * US, 757 * US]
    assert c.t_kexec == max(107 * US + 2 * MS, 757 * US + 100 * US) == 2107 * US
    assert c.page_done(0) == c.t_kexec + 400 and c.t_jump == c.t_kexec + 400_000
    assert c.t_takeover == c.t_jump + 5 * MS and c.t_end == c.t_takeover + 10 * MS
    assert c.pages_done_by(c.t_kexec + 399) == 0 and c.pages_done_by(c.t_kexec + 400) == 1
    assert c.pages_done_by(c.t_end) == 1000
    assert [c.phase(t) for t in (0, c.t_syscore, c.t_kexec, c.t_jump, c.t_takeover)] == \
        ["shutdown", "offline", "relocate", "jump", "next-kernel"]


def test_gic_h1_many_cpus_push_t_kexec_and_crash_has_no_slots() -> None:
    c = RebootClock(copy_ns=400, pages=0, cpus=16, slots=[("x", 0)])
    assert c.t_kexec == c.t_syscore + 15 * 200 * US + 100 * US
    crash = RebootClock(copy_ns=400, pages=0, cpus=16, crash=True, slots=[("x", 0)])
    assert crash.t_kexec == 100 * US == crash.t_jump and crash.t_shut == {}


# ---------------------------------------------------------------- the engine
def test_k16_1_shutdown_hooks_reverse_order_after_in_progress_flag() -> None:
    """K16.1: kexec_in_progress is set first; device_shutdown runs in reverse probe order,
    each hook at the end of its 50 µs slot; probes run again in the next generation."""
    a, b = Scripted("a"), Scripted("b")
    m = _loaded([a, b])
    assert a.probes == [0] and b.probes == [0]
    m.kernel_kexec()
    assert b.calls == [("shutdown", 50 * US, True)]
    assert a.calls == [("shutdown", 100 * US, True)]
    assert a.probes == [0, 1] and b.probes == [0, 1]


def test_devices_argument_checks() -> None:
    """Machine(devices=...): duplicate device names and non-devices are ValueErrors; a device belongs to
    one machine."""
    with pytest.raises(ValueError, match="two devices"):
        Machine("256M", devices=[Scripted("d"), Scripted("d")])
    with pytest.raises(ValueError, match="not a pykern device"):
        Machine("256M", devices=[object()])
    d = Scripted("d")
    m = Machine("256M", devices=[d])
    assert m.devices == {"d": d}
    with pytest.raises(ValueError, match="another machine"):
        Machine("256M", devices=[d])


def _dest_page(m: Machine, seg: int, page: int, foreign: bool = True) -> tuple[int, int]:
    """(destination, index in the copy order) of the first page of segment ``seg`` at or
    after ``page`` whose source is another page (a page that is its own source, K11.5, is
    not rewritten by the copy, so a write into it before the copy stays)."""
    im = m.kexec_image
    assert im is not None
    lo = im.segments[seg].mem + page * 4096
    dest, index = 0, 0
    for kind, addr in im.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            if dest >= lo and (addr != dest or not foreign) and \
                    dest < im.segments[seg].mem + im.segments[seg].memsz:
                return dest, index
            dest += 4096
            index += 1
    raise AssertionError("no such page")


@pytest.mark.parametrize("extensions", [
    pytest.param(True, marks=pytest.mark.skipif(not pykern._fast.COMPILED,
                                                reason="the compiled walk is not built")),
    False])
def test_gic_h8_write_before_copy_is_overwritten_after_copy_stays(extensions: bool) -> None:
    """GIC-H8/K16.8: a write into a destination page before its copy vanishes; one after it
    (or after the jump) stays and shows in corrupted and scribbles, in time order."""
    probe = _loaded([])
    early, k_early = _dest_page(probe, 0, 100)
    late, k_late = _dest_page(probe, 1, 10, foreign=False)
    assert early + 64 < late
    plan = [("kexec", (k_early + 1) * 400 - 1, early, b"\xff" * 8),     # just before its copy
            ("kexec", (k_late + 1) * 400, late, b"\xee" * 4),           # right after its copy
            ("jump", 1000, early + 64, b"\xdd")]
    dev = Scripted("dma0", plan)
    m = _loaded([dev], extensions=extensions)
    r = m.kernel_kexec()
    assert r.corrupted == sorted([(late, 4, 1), (early + 64, 1, 0)])
    assert r.scribbles == [("dma0", early, 8), ("dma0", late, 4), ("dma0", early + 64, 1)]
    assert [rec.phase for rec in dev.trace] == ["relocate", "relocate", "jump"]
    assert r.verified is False            # arm64's check runs on RAM at t_jump


@pytest.mark.skipif(not pykern._fast.COMPILED, reason="the compiled walk is not built")
def test_gic_h7_twins_identical_ram_with_device_writes() -> None:
    """GIC-H7/I7: the compiled walk and the pure twin, interrupted at the same boundaries,
    leave byte-identical RAM."""
    rams = []
    for ext in (True, False):
        probe = _loaded([])
        plan = []
        for j in range(40):
            addr, k = _dest_page(probe, 0, j * 20)
            plan.append(("kexec", (k + 1) * 400 + (j % 3) - 1, addr + j, bytes([j + 1])))
        m = _loaded([Scripted("d", plan)], extensions=ext)
        r = m.kernel_kexec()
        assert r.hot_phase_pages == 1024 + 256 + 1
        rams.append(bytes(m.ram))
    assert rams[0] == rams[1]


def test_k16_11_unchanged_writes_are_no_scribbles_and_out_of_ram_is_dropped() -> None:
    """GIC-O1/W9: a write that changes nothing is traced, not a scribble; one outside RAM is
    dropped and counted, never an exception."""
    probe = _loaded([])
    addr, k = _dest_page(probe, 0, 5, foreign=False)
    seg0 = probe.kexec_image.segments[0]  # type: ignore[union-attr]
    original = seg0.buf[addr - seg0.mem:addr - seg0.mem + 4]
    dev = Scripted("d", [("jump", 0, addr, bytes(original)), ("jump", 1, 0x10, b"\x01")])
    m = _loaded([dev])
    r = m.kernel_kexec()
    assert r.scribbles == [] and r.corrupted == [] and r.verified
    assert [rec.changed for rec in dev.trace] == [False] and dev.dropped_writes == 1


def test_k17_2_crash_path_no_shutdown_writes_from_zero() -> None:
    """K17.2/GIC-K6: panic runs no shutdown hook; writes from t=0 on are scribbles."""
    m = Machine("512M", cmdline="crashkernel=64M", devices=[])
    dev = Scripted("d")
    m = Machine("512M", cmdline="crashkernel=64M", devices=[dev])
    m.kexec_file_load(images.arm64_image(MiB), None, "", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None
    dev.plan = [("zero", 10, im.segments[0].mem, b"\xab")]
    r = m.panic()
    assert r is not None and dev.calls == []
    assert r.scribbles == [("d", im.segments[0].mem, 1)]
    assert r.corrupted == [(im.segments[0].mem, 1, 0)]


def test_k16_3_looping_list_is_an_error_not_a_hang() -> None:
    """K16.3: an INDIRECTION word pointing at its own page would loop forever on hardware;
    pykern stops, names it, and the machine is dead (halted)."""
    m = _loaded([])
    im = m.kexec_image
    assert im is not None
    page = im.head & ~0xFFF
    m.phys_write(page + 8, struct.pack("<Q", page | 0x2))
    with pytest.raises(RelocationError, match="loops"):
        m.kernel_kexec()
    assert m.halted


def test_k16_12_hot_phase_ns_and_all_cma_jump_at_t_kexec() -> None:
    """K16.12/GIC-H2: copy_ns per SOURCE; with every segment in CMA nothing is copied."""
    m = _loaded([], flags=0)
    r = m.kernel_kexec()
    assert r.hot_phase_pages == 0 and r.hot_phase_ns == 0
    m = _loaded([])
    m.copy_ns = 1000
    r = m.kernel_kexec()
    assert r.hot_phase_ns == 1000 * r.hot_phase_pages == 1000 * (1024 + 256 + 1)
