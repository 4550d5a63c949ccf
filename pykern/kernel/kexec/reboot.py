"""Rebooting into a loaded image: ``kernel_kexec``, ``machine_kexec`` and
``__crash_kexec`` (``kernel/kexec_core.c``, ``kernel/crash_core.c``), rules K16 and K17.

The hot phase walks the entry words the load wrote into RAM (K16.3) with the
compiled walk or its pure-Python twin, in chunks so device writes due at
emulated instants can land between them (K16.12).

:class:`KexecReboot` splits a reboot into the stages ``prepare``, ``hot_phase``,
``verify``, ``boot_next`` and ``finish`` (:data:`KEXEC_STAGES`), so a benchmark can time one
of them alone; ``kernel_kexec`` and ``crash_kexec`` run them in order.
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
from ...mm.memory import ZERO_BLOCK

if TYPE_CHECKING:
    from ...machine import Machine
    from ..kernel import Kernel

__all__ = ["KexecResult", "KexecReboot", "KEXEC_STAGES", "kernel_kexec", "kernel_kexec_stages",
           "crash_kexec", "diff_runs"]


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


def diff_runs(m: Machine, start: int, expected: bytes | memoryview,
              idx: int) -> list[tuple[int, int, int]]:
    """Maximal runs where RAM at ``start`` differs from ``expected``."""
    off = m.physmem.offset(start, len(expected))
    return [(start + at, size, idx)
            for at, size in m.memops.diff_runs(m.ram, off, expected, 0, len(expected))]


def _join(runs: list[tuple[int, int, int]], more: list[tuple[int, int, int]]) -> None:
    """Append ``more`` (the runs of the range that follows) to ``runs``, joining the two
    runs that meet at the boundary into one maximal run."""
    if runs and more and runs[-1][0] + runs[-1][1] == more[0][0]:
        addr, size, idx = runs[-1]
        runs[-1] = (addr, size + more[0][1], idx)
        more = more[1:]
    runs += more


def _reference_parts(image: KImage, idx: int) -> tuple[memoryview, bytes | None] | None:
    """``image.reference(idx)`` as its two parts: the buffer's first ``bufsz`` bytes (a view,
    not a copy) and the tail (None: ``memsz - bufsz`` zeros); None where the parts would not
    add up to ``memsz``."""
    seg = image.segments[idx]
    body = memoryview(seg.buf)[:seg.bufsz]
    tail = image.reference_tails[idx] if idx < len(image.reference_tails) else None
    size = seg.memsz - seg.bufsz
    if len(body) != seg.bufsz or size < 0 or (tail is not None and len(tail) != size):
        body.release()
        return None
    return body, tail


def _segment_runs(m: Machine, image: KImage, idx: int) -> list[tuple[int, int, int]]:
    """``diff_runs`` of segment ``idx`` against ``image.reference(idx)``, compared part by
    part (the reference is never built); runs that meet at a boundary are joined."""
    seg = image.segments[idx]
    parts = _reference_parts(image, idx)
    if parts is None:
        return diff_runs(m, seg.mem, image.reference(idx), idx)
    body, tail = parts
    with body:
        runs = diff_runs(m, seg.mem, body, idx)
    at = seg.mem + seg.bufsz
    if tail is not None:
        _join(runs, diff_runs(m, at, tail, idx))
    else:
        # zeros expected: only the host pages ever written can differ
        n = seg.memsz - seg.bufsz
        off = m.physmem.offset(at, n)
        zeros = memoryview(ZERO_BLOCK)
        for o, step in m.physmem.written_chunks(off, n):
            _join(runs, diff_runs(m, at + o - off, zeros[:step], idx))
    return runs


def _corrupted(m: Machine, image: KImage) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    for idx, seg in enumerate(image.segments):
        if m.physmem.is_ram(seg.mem, seg.memsz):
            runs += _segment_runs(m, image, idx)
    return sorted(runs)


def _intact(m: Machine, image: KImage) -> bool:
    """``not _corrupted(m, image)``: every segment in RAM holds its reference, checked
    without collecting the runs."""
    memops, ram = m.memops, m.ram
    for idx, seg in enumerate(image.segments):
        if not m.physmem.is_ram(seg.mem, seg.memsz):
            continue
        parts = _reference_parts(image, idx)
        if parts is None:
            if diff_runs(m, seg.mem, image.reference(idx), idx):
                return False
            continue
        body, tail = parts
        at = m.physmem.offset(seg.mem, seg.memsz)
        with body:
            if not memops.range_equal(ram, at, body, 0, len(body)):
                return False
        at += seg.bufsz
        if tail is not None:
            if not memops.range_equal(ram, at, tail, 0, len(tail)):
                return False
        elif not m.physmem.is_zero(seg.mem + seg.bufsz, seg.memsz - seg.bufsz):
            return False
    return True


def _verified(m: Machine, image: KImage) -> bool:
    """Whether the image is intact at the jump (K16.10): x86 purgatory's digest check;
    arm64 pykern's reference check."""
    if m.arch == "x86_64":
        from ...arch.x86.purgatory import purgatory_verify
        seg = image.segments[image.arch["purgatory_idx"]]
        return purgatory_verify(m, seg.mem, image.arch.get("hashed"))
    return _intact(m, image)


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
        #: Each segment the walk copies, as (its first byte, the end of its buffer's pages,
        #: its end).
        self.copied: list[tuple[int, int, int]] = []
        if image.image_type != KEXEC_TYPE_CRASH:
            for seg, block in zip(image.segments, image.segment_cma):
                if block is None:
                    end = seg.mem + seg.memsz
                    body = min(end, seg.mem + -(-seg.bufsz // 4096) * 4096)
                    self.copied.append((seg.mem, body, end))
        #: The destinations where a copy may find zeros on both sides: each copied
        #: segment's pages past its buffer (``relocate_walk``'s ``zeros``).
        self.tails = [v for _, body, end in self.copied if end > body for v in (body, end)]

    def prefault(self) -> None:
        """Map the destination pages the walk is about to write, in one host call per
        segment (:meth:`~pykern.mm.memory.PhysMem.prefault`): the copies then write pages the
        host already holds.  Only the pages of each segment's buffer: the rest are zeros,
        which the walk does not copy onto never-written RAM (``walk_marks``, ``tails``)."""
        physmem = self.m.physmem
        for mem, body, _ in self.copied:
            if body > mem and physmem.is_ram(mem, body - mem):
                physmem.prefault(mem, body - mem)

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
                self.word_budget, self.m.physmem.walk_marks(self.tails))
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


#: The stages of a reboot, in the order they run (:class:`KexecReboot`).
KEXEC_STAGES = ("prepare", "hot_phase", "verify", "boot_next", "finish")


class KexecReboot:
    """``kernel_kexec`` (K16.1) or ``__crash_kexec`` (K17.2), one stage at a time.

    ``m.kernel_kexec()`` is ``m.kernel_kexec_stages().run()``: the five stages below, in
    this order.  Calling them one by one leaves exactly the same RAM, log, devices and
    :class:`KexecResult` (wall times apart), so a benchmark can time one stage alone:

    ``prepare``
        K16.1 steps 1–4 on the reboot clock (GIC-H1): ``kexec_in_progress``, the clock's
        marks, every device's schedule drawn (GIC-H4), "kexec_core: Starting new kernel",
        then everything due up to ``t_kexec``: ``device_shutdown`` (each device's hook at
        the end of its slot, in reverse probe order) and the secondary CPUs going offline.
    ``hot_phase``
        ``machine_kexec`` (K16.2–K16.7): the relocation walk of every SOURCE entry, with
        device writes due before ``t_jump`` applied between its chunks (GIC-H7); nothing to
        copy for an all-CMA or crash image.  ``hot_phase_seconds`` is its wall time.
    ``verify``
        At ``t_jump`` (K16.10): x86_64 purgatory's SHA-256 check (the kernel's own work;
        a mismatch means the CPU will spin instead of booting); arm64 pykern's check that
        every segment holds its reference bytes.
    ``boot_next``
        Device writes up to ``t_takeover``, the next generation's boot on the same RAM
        (K16.13, ``Machine.boot_next``), device writes up to ``t_end``.  Nothing when
        purgatory's digest failed.
    ``finish``
        At ``t_end`` (K16.11): the corruption scan against the references, the scribbles
        (GIC-O1), each device's end of reboot; after a digest mismatch (at ``t_jump``), the
        halt (K16.13).  Returns the :class:`KexecResult`.

    A stage called out of order, again, after the reboot stopped (a relocation error
    halts the machine), or after the machine was changed between stages (another reboot,
    the image unloaded or replaced) raises ``RuntimeError`` naming the stage that is due;
    nothing is changed by the refused call.

    ``checks=False`` leaves out what only the emulator checks, for benchmarks that time
    the reboot as the kernel does it: arm64's reference check in ``verify``
    (``result.verified`` stays False) and the corruption scan in ``finish``
    (``result.corrupted`` stays empty).  x86_64's purgatory digest is the kernel's and
    always runs.  RAM, the log, the devices and every other field are as with checks.

    [model] The stages exist for measurement only: the kernel runs nothing else while it
    reboots, so between two stages the machine must be left alone.
    """

    def __init__(self, m: Machine, image: KImage, *, crash: bool = False,
                 checks: bool = True) -> None:
        self.machine = m
        self.image = image
        self.crash = crash
        self.checks = checks
        self.result = KexecResult(image_type=image.type, segments=_copy_order(image))
        #: The last stage that completed (None before ``prepare``).
        self.stage: str | None = None
        self._stopped: str | None = None
        self._kernel = m.kernel
        self._next_kernel: Kernel | None = None
        self._spinning = False
        self._devices: list[Any] = []
        self._clock: RebootClock | None = None
        self._ctx: RebootContext | None = None
        self._events: list[tuple[Any, ...]] = []
        self._pos = 0

    @property
    def next_stage(self) -> str | None:
        """The stage due next, or None once ``finish`` ran."""
        done = 0 if self.stage is None else KEXEC_STAGES.index(self.stage) + 1
        return KEXEC_STAGES[done] if done < len(KEXEC_STAGES) else None

    def _enter(self, name: str) -> None:
        """The state checks of stage ``name``, before it changes anything."""
        what = f"kexec reboot: cannot run {name}"
        if self._stopped is not None:
            raise RuntimeError(f"{what}: the reboot stopped ({self._stopped})")
        due = self.next_stage
        if due is None:
            raise RuntimeError(f"{what}: the reboot is over (finish ran)")
        if name != due:
            when = "already ran" if KEXEC_STAGES.index(name) < KEXEC_STAGES.index(due) \
                else "is not due yet"
            raise RuntimeError(f"{what}: it {when}; the next stage is {due} (the stages run "
                               f"in the order {', '.join(KEXEC_STAGES)})")
        m = self.machine
        if m.halted:
            raise RuntimeError(f"{what}: the machine halted since the reboot started")
        running = self._next_kernel if self._next_kernel is not None else self._kernel
        if m.kernel is not running:
            raise RuntimeError(f"{what}: the machine booted another kernel since the "
                               f"reboot started")
        if self._next_kernel is None:
            kexec = m.kernel.kexec
            slot = kexec.kexec_crash_image if self.crash else kexec.kexec_image
            if slot is not self.image:
                raise RuntimeError(f"{what}: the image being booted was unloaded or "
                                   f"replaced since the reboot started")
        if name == "prepare" and not self.crash and m.kernel.kexec.kexec_in_progress:
            raise OSError(errno.EBUSY, "kernel_kexec: another reboot is in progress")

    def _started(self) -> tuple[RebootClock, RebootContext]:
        assert self._clock is not None and self._ctx is not None
        return self._clock, self._ctx

    def _stop(self, name: str, exc: BaseException) -> None:
        self._stopped = f"{name} failed: {type(exc).__name__}: {exc}"

    def prepare(self) -> None:
        """K16.1 steps 1–4 up to ``t_kexec`` (see the class)."""
        self._enter("prepare")
        m, image, crash = self.machine, self.image, self.crash
        try:
            if not crash:
                m.kernel.kexec.kexec_in_progress = True
            devices = list(m.devices.values())
            clock = RebootClock(
                copy_ns=m.copy_ns, pages=_planned_pages(image), cpus=m.cpus, crash=crash,
                slots=[(d.name, d.shutdown_extra_ns(m)) for d in reversed(devices)],
                syscore_wait_ns=max([d.syscore_wait_ns(m) for d in devices] or [0]))
            ctx = RebootContext(m, clock, crash)
            result = self.result
            result.t_kexec, result.t_jump, result.t_end = clock.t_kexec, clock.t_jump, clock.t_end
            result.copy_ns = clock.copy_ns
            self._devices, self._clock, self._ctx = devices, clock, ctx
            self._events = _collect_events(m, ctx, crash)
            if not crash:
                m.kernel.log.info("kexec_core: Starting new kernel")
            self._pos = _apply(ctx, self._events, 0, clock.t_kexec, inclusive=True)
        except BaseException as exc:
            self._stop("prepare", exc)
            raise
        self.stage = "prepare"

    def hot_phase(self) -> None:
        """``machine_kexec``: the relocation walk with the device writes due before
        ``t_jump`` (see the class); ``RelocationError`` halts the machine."""
        self._enter("hot_phase")
        clock, ctx = self._started()
        m, result, events = self.machine, self.result, self._events
        try:
            walk = _Walk(m, self.image, result)
            pos = self._pos
            t0 = time.perf_counter()
            walk.prefault()
            while pos < len(events) and events[pos][0] <= clock.t_jump:
                walk.copy_until(clock.pages_done_by(events[pos][0]))
                pos = _apply(ctx, events, pos, events[pos][0], inclusive=True)
            walk.copy_until(None)
            result.hot_phase_seconds = time.perf_counter() - t0
            result.hot_phase_bytes = 4096 * result.hot_phase_pages
            self._pos = pos
        except BaseException as exc:
            self._stop("hot_phase", exc)
            raise
        self.stage = "hot_phase"

    def verify(self) -> None:
        """The check at ``t_jump`` (K16.10): x86_64 purgatory's digest, arm64 pykern's
        reference check (left out with ``checks=False``)."""
        self._enter("verify")
        m = self.machine
        try:
            if self.checks or m.arch == "x86_64":
                self.result.verified = _verified(m, self.image)
            self._spinning = m.arch == "x86_64" and not self.result.verified
        except BaseException as exc:
            self._stop("verify", exc)
            raise
        self.stage = "verify"

    def boot_next(self) -> None:
        """The jump and the next generation's boot, with the device writes due until
        ``t_end`` (K16.13); nothing after a purgatory digest mismatch."""
        self._enter("boot_next")
        clock, ctx = self._started()
        if not self._spinning:
            m, events = self.machine, self._events
            try:
                pos = _apply(ctx, events, self._pos, clock.t_takeover, inclusive=False)
                ctx.now = clock.t_takeover
                self._next_kernel = m.boot_next({"image": self.image})
                self.result.booted = True
                self._pos = _apply(ctx, events, pos, clock.t_end, inclusive=False)
                ctx.now = clock.t_end
            except BaseException as exc:
                self._stop("boot_next", exc)
                raise
        self.stage = "boot_next"

    def finish(self) -> KexecResult:
        """The end of the observed run (K16.11, GIC-O1): the corruption scan (left out with
        ``checks=False``), the scribbles, the devices' end of reboot; the halt after a
        digest mismatch.  Returns the result."""
        self._enter("finish")
        _, ctx = self._started()
        m, result = self.machine, self.result
        try:
            if self.checks:
                result.corrupted = _corrupted(m, self.image)
            result.scribbles = ctx.scribbles()
            for dev in self._devices:
                dev.end_reboot(ctx)
            if self._spinning:
                m.machine_halt("purgatory: SHA-256 mismatch, spinning")
        except BaseException as exc:
            self._stop("finish", exc)
            raise
        self.stage = "finish"
        return result

    def run(self) -> KexecResult:
        """Every stage not run yet, in order; the result."""
        while (due := self.next_stage) is not None:
            getattr(self, due)()
        return self.result

    def __repr__(self) -> str:
        state = f"stopped: {self._stopped}" if self._stopped else \
            f"next {self.next_stage}" if self.next_stage else "finished"
        return f"<KexecReboot {self.image.type} gen {self.machine.generation} {state}>"


def kernel_kexec_stages(m: Machine, *, checks: bool = True) -> KexecReboot:
    """``kernel_kexec`` (K16.1) before its first stage: ``OSError(EBUSY)`` while another
    reboot is in progress (the kernel's ``kexec_trylock``), ``OSError(EINVAL)`` when no image
    is loaded; else a :class:`KexecReboot` whose stages do the rest."""
    kexec = m.kernel.kexec
    if kexec.kexec_in_progress:
        raise OSError(errno.EBUSY, "kernel_kexec: another reboot is in progress")
    image = kexec.kexec_image
    if image is None:
        raise OSError(errno.EINVAL, "kernel_kexec: no kexec image loaded")
    return KexecReboot(m, image, checks=checks)


def kernel_kexec(m: Machine) -> KexecResult:
    """``kernel_kexec`` (K16.1): reboot into ``m.kexec_image``; OSError(EINVAL) when none
    is loaded.

    The in-progress flag, then device_shutdown (each device's hook at the end of its slot,
    in reverse probe order), CPUs offline, machine_kexec: the copy, the check, the jump —
    the stages of :class:`KexecReboot`, run in order.
    """
    return kernel_kexec_stages(m).run()


def crash_kexec(m: Machine) -> KexecResult | None:
    """``__crash_kexec`` (K17.2): boot the crash image without device shutdown; halt if
    there is none."""
    image = m.kernel.kexec.kexec_crash_image
    if image is None:
        m.machine_halt("Kernel panic - not syncing: no crash kernel loaded")
        return None
    assert image.image_type == KEXEC_TYPE_CRASH
    m.kernel.log.printk(0, "Kernel panic - not syncing: pykern m.panic()")
    return KexecReboot(m, image, crash=True).run()
