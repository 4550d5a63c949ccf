"""Rebooting into a loaded image: ``kernel_kexec``, ``machine_kexec`` and
``__crash_kexec`` (``kernel/kexec_core.c``, ``kernel/crash_core.c``), rules K16 and K17.

The hot phase walks the entry words the load wrote into RAM (K16.3) with the
compiled walk or its pure-Python twin, in chunks so device writes due at
emulated instants can land between them (K16.12).
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._fast import get_relocate
from ...drivers.base import RebootContext
from .clock import RebootClock
from .core import KImage
from .uapi import KEXEC_TYPE_CRASH
from ...errors import RelocationError

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["KexecResult", "kernel_kexec", "crash_kexec", "diff_runs"]


@dataclass
class KexecResult:
    """What a reboot did (K16.9–K16.13)."""

    hot_phase_pages: int = 0
    hot_phase_bytes: int = 0
    hot_phase_seconds: float = 0.0
    verified: bool = False
    corrupted: list[tuple[int, int, int]] = field(default_factory=list)
    scribbles: list[tuple[str, int, int]] = field(default_factory=list)
    booted: bool = False
    image_type: str = "default"
    #: emulated nanoseconds of the hot phase (copy_ns per SOURCE entry)
    hot_phase_ns: int = 0
    #: (mem, memsz, cma, first copy index) of each segment of the booted image; the index is
    #: the segment's first page in the copy order, -1 when nothing of it is copied
    segments: list[tuple[int, int, bool, int]] = field(default_factory=list)
    #: the reboot clock's marks (GIC-H1), ns from the start of the reboot
    t_kexec: int = 0
    t_jump: int = 0
    t_end: int = 0
    copy_ns: int = 0

    def final_content_ns(self, addr: int, idx: int) -> int:
        """When byte ``addr`` of segment ``idx`` got its final content: its page's copy in the
        hot phase, or 0 (the load) for CMA-backed and crash segments (GIC-I3)."""
        mem, _, _, first = self.segments[idx]
        if first < 0:
            return 0
        return self.t_kexec + (first + (addr - mem) // 4096 + 1) * self.copy_ns


def diff_runs(m: Machine, start: int, expected: bytes, idx: int) -> list[tuple[int, int, int]]:
    """Maximal runs where RAM at ``start`` differs from ``expected``."""
    memops = m.memops
    buf = m.ram
    off = m.physmem.offset(start, len(expected))
    n = len(expected)
    runs: list[tuple[int, int, int]] = []
    pos = 0
    while pos < n:
        d = memops.first_diff(buf, off + pos, expected, pos, n - pos)
        if d < 0:
            break
        first = pos + d
        e = memops.first_equal(buf, off + first + 1, expected, first + 1, n - first - 1)
        end = n if e < 0 else first + 1 + e
        runs.append((start + first, end - first, idx))
        pos = end
    return runs


def _corrupted(m: Machine, image: KImage) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    for idx, seg in enumerate(image.segments):
        if m.physmem.is_ram(seg.mem, seg.memsz):
            runs += diff_runs(m, seg.mem, image.reference(idx), idx)
    return sorted(runs)


def _verified(m: Machine, image: KImage) -> bool:
    """Whether the image is intact at the jump (K16.10): x86 purgatory's digest check;
    arm64 pykern's reference check."""
    if m.arch == "x86_64":
        from ...arch.x86.purgatory import purgatory_verify
        seg = image.segments[image.arch["purgatory_idx"]]
        return purgatory_verify(m, seg.mem)
    return not _corrupted(m, image)


def _planned_pages(image: KImage) -> int:
    """The SOURCE entries a well-formed list holds (K19.5; 0 for crash and all-CMA
    images).

    [model] The reboot clock is fixed before the walk (GIC-H1 needs ``t_takeover`` to draw
    the schedule); a list damaged in RAM may copy more or fewer pages than planned.
    """
    if image.image_type == KEXEC_TYPE_CRASH:
        return 0
    return sum(s.memsz // 4096 for i, s in enumerate(image.segments)
               if image.segment_cma[i] is None)


def _copy_order(image: KImage) -> list[tuple[int, int, bool, int]]:
    out, index = [], 0
    for i, s in enumerate(image.segments):
        copied = image.image_type != KEXEC_TYPE_CRASH and image.segment_cma[i] is None
        out.append((s.mem, s.memsz, s.cma, index if copied else -1))
        if copied:
            index += s.memsz // 4096
    return out


class _Walk:
    """The relocation walk, resumable between device events (K16.3, GIC-H7)."""

    def __init__(self, m: Machine, image: KImage, result: KexecResult) -> None:
        self.m = m
        self.image = image
        self.result = result
        self.walker = get_relocate(m.extensions)
        self.runs = [v for run in m.physmem._runs for v in run]
        self.loc, self.dest = -1, 0
        self.finished = False
        self.page_cap = m.physmem.size // 4096 + 1
        self.word_budget = m.physmem.size // 8 + 16

    def copy_until(self, pages: int | None) -> None:
        """Copy until ``pages`` SOURCE entries are done in total (None: to the end)."""
        result = self.result
        while not self.finished:
            # No device due: one call to the end (the cap catches a looping list).
            target = self.page_cap + 1 if pages is None else pages
            budget = target - result.hot_phase_pages
            if budget <= 0:
                return
            status, self.loc, self.dest, done, word = self.walker.relocate_walk(
                self.m.ram, self.runs, self.image.head, self.loc, self.dest, budget,
                self.word_budget)
            result.hot_phase_pages += done
            result.hot_phase_ns += done * self.m.copy_ns
            if status == 0:
                self.finished = True
            elif status == 5 or result.hot_phase_pages > self.page_cap:
                self._fail("the entry list loops: the walk would never reach DONE")
            elif status != 1:
                what = {2: "entry word", 3: "source page", 4: "destination page"}[status]
                self._fail(f"{what} of entry {word:#x} is outside RAM")

    def _fail(self, why: str) -> None:
        msg = f"relocation: {why} (at {self.loc:#x}, destination {self.dest:#x})"
        self.m.machine_halt(msg)
        raise RelocationError(msg)


def _collect_events(m: Machine, ctx: RebootContext, crash: bool) -> list[tuple[Any, ...]]:
    """Every device's reboot events, drawn now, in application order (GIC-H4/H7)."""
    events: list[tuple[Any, ...]] = []
    for idx, dev in enumerate(m.devices.values()):
        dev.begin_reboot(ctx)
        if not crash:
            events.append((ctx.clock.t_shut[dev.name], idx, (-1,), dev.shutdown))
        for t, key, action in dev.reboot_events(ctx):
            events.append((t, idx, key, action))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return events


def _apply(ctx: RebootContext, events: list[tuple[Any, ...]], pos: int,
           until: int, inclusive: bool) -> int:
    """Apply events from ``pos`` while their time is before (or at) ``until``."""
    while pos < len(events) and (events[pos][0] < until or
                                 (inclusive and events[pos][0] == until)):
        t, _, _, action = events[pos]
        ctx.now = t
        action(ctx, t)
        pos += 1
    return pos


def _reboot(m: Machine, image: KImage, crash: bool) -> KexecResult:
    """``machine_kexec`` and the reboot around it (K16/K17) on the GIC-H1 clock: devices
    act between chunks of the copy."""
    devices = list(m.devices.values())
    clock = RebootClock(copy_ns=m.copy_ns, pages=_planned_pages(image), cpus=m.cpus,
                        crash=crash,
                        slots=[(d.name, d.shutdown_extra_ns(m)) for d in reversed(devices)],
                        syscore_wait_ns=max([d.syscore_wait_ns(m) for d in devices] or [0]))
    ctx = RebootContext(m, clock, crash)
    result = KexecResult(image_type=image.type, segments=_copy_order(image),
                         t_kexec=clock.t_kexec, t_jump=clock.t_jump, t_end=clock.t_end,
                         copy_ns=clock.copy_ns)
    events = _collect_events(m, ctx, crash)
    if not crash:
        m.kernel.log.info("kexec_core: Starting new kernel")
    pos = _apply(ctx, events, 0, clock.t_kexec, inclusive=True)
    walk = _Walk(m, image, result)
    t0 = time.perf_counter()
    while pos < len(events) and events[pos][0] <= clock.t_jump:
        walk.copy_until(clock.pages_done_by(events[pos][0]))
        pos = _apply(ctx, events, pos, events[pos][0], inclusive=True)
    walk.copy_until(None)
    result.hot_phase_seconds = time.perf_counter() - t0
    result.hot_phase_bytes = 4096 * result.hot_phase_pages
    result.verified = _verified(m, image)
    if m.arch == "x86_64" and not result.verified:
        result.corrupted = _corrupted(m, image)
        result.scribbles = ctx.scribbles()
        for dev in devices:
            dev.end_reboot(ctx)
        m.machine_halt("purgatory: SHA-256 mismatch, spinning")
        return result
    pos = _apply(ctx, events, pos, clock.t_takeover, inclusive=False)
    ctx.now = clock.t_takeover
    m.boot_next({"image": image})
    result.booted = True
    _apply(ctx, events, pos, clock.t_end, inclusive=False)
    ctx.now = clock.t_end
    result.corrupted = _corrupted(m, image)
    result.scribbles = ctx.scribbles()
    for dev in devices:
        dev.end_reboot(ctx)
    return result


def kernel_kexec(m: Machine) -> KexecResult:
    """``kernel_kexec`` (K16.1): reboot into ``m.kexec_image``; OSError(EINVAL) when none
    is loaded.

    The in-progress flag, then device_shutdown (each device's hook at the end of its slot,
    in reverse probe order), CPUs offline, machine_kexec: the copy, the check, the jump.
    """
    image = m.kernel.kexec.kexec_image
    if image is None:
        raise OSError(errno.EINVAL, "kernel_kexec: no kexec image loaded")
    m.kernel.kexec.kexec_in_progress = True
    return _reboot(m, image, crash=False)


def crash_kexec(m: Machine) -> KexecResult | None:
    """``__crash_kexec`` (K17.2): boot the crash image without device shutdown; halt if
    there is none."""
    image = m.kernel.kexec.kexec_crash_image
    if image is None:
        m.machine_halt("Kernel panic - not syncing: no crash kernel loaded")
        return None
    assert image.image_type == KEXEC_TYPE_CRASH
    m.kernel.log.printk(0, "Kernel panic - not syncing: pykern m.panic()")
    return _reboot(m, image, crash=True)
