"""``pykern fuzz``: a boot / load / check / reboot campaign over random layouts (issue #8).

Case ``i`` of a campaign is fully determined by ``(seed, i)`` and the options that shape the
draws (``--ram-max``, ``--max-kernel``, ``--max-initrd``): a machine layout and a kexec load
of the same shape :func:`pykern.testing.strategies.layouts` and
:func:`~pykern.testing.strategies.kexec_loads` draw, but produced by a seeded
``random.Random`` instead of hypothesis's engine, so a case can be replayed alone with
``--layouts 1 --start I`` and the campaign can be split across processes.

For every selected mode (``cma``: flags without ``KEXEC_FILE_NO_CMA``; ``no-cma``: with it)
a case boots the layout, loads, checks the K19 invariants
(:func:`pykern.testing.invariants.check_kimage` and page accounting), reboots with
``m.kernel_kexec()`` (``m.panic()`` for an ON_CRASH load) and records the hot-phase bytes,
corrupted runs, scribbles and ``verified``.  CMA leaks (K2.9, K7.12) are measured in debugfs
``cma/reserved/used``: across a failed load on the machine itself, and across a load plus
unload on a second machine of the same layout.

A case fails when an invariant breaks, something raises other than ``OSError`` from the load,
or RAM is corrupted with no device to blame and no quirk that explains it; each failure is
printed as a one-line replay command.  Exit status: 0 clean, 1 failures (or a Dask
scheduler lost mid-campaign), 2 bad options (or a scheduler that cannot be used), 130
interrupted: Ctrl-C stops the workers at once and the report (``incomplete`` in JSON) covers
the cases that finished.  The progress line is drawn only on a terminal.

``--jobs J`` runs the cases on J local processes; ``--scheduler ADDRESS|local[:N]`` runs them
on a Dask cluster (:mod:`pykern.testing.fuzz_dask`), with the same cases and report.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TextIO

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["main", "Config", "Case", "draw_case", "run_case", "run_cycle", "build_parser",
           "MODES", "ARCHES"]

MiB = 1 << 20
PAGE = 4096
MODES = ("cma", "no-cma")
ARCHES = ("arm64", "x86_64")
_BANK0 = {"arm64": 0x4000_0000, "x86_64": 0}
_STEP = 2 * MiB
_MIN_RAM = 32 * MiB
_MIN_KERNEL = 64 * 1024
_MAX_HOLE = 256 * MiB
_CMA_USED = "/sys/kernel/debug/cma/reserved/used"
#: Default cap on kernel and initrd sizes (drawn log-uniformly below it).  Bigger images
#: exercise the same paths more slowly: cost grows with the pages a load copies and lists.
DEFAULT_MAX_IMAGE = 512 * 1024
# kexec uapi values (rule K0.4), spelled here so the module imports nothing heavy
_UNLOAD, _ON_CRASH, _DEBUG, _NO_CMA = 0x1, 0x2, 0x8, 0x10


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    """Everything that decides what a campaign runs (picklable, for worker processes)."""

    seed: int = 0
    start: int = 0
    layouts: int = 1
    modes: tuple[str, ...] = MODES
    arches: tuple[str, ...] = ARCHES
    ram_max: int = 64 * MiB
    max_kernel: int = DEFAULT_MAX_IMAGE
    max_initrd: int = DEFAULT_MAX_IMAGE
    fixes: tuple[str, ...] = ()
    #: The option spellings, for replay lines.
    ram_max_text: str = "64M"
    max_kernel_text: str = "512K"
    max_initrd_text: str = "512K"
    fixes_text: str = ""

    def replay(self, case: int, mode: str | None, arch: str | None) -> str:
        """The command line that runs exactly this case (in one mode and arch when given)."""
        words = ["pykern", "fuzz", "--layouts", "1", "--seed", str(self.seed),
                 "--start", str(case)]
        words += ["--mode", mode or _choice_text(self.modes, MODES)]
        words += ["--arch", arch or _choice_text(self.arches, ARCHES)]
        words += ["--ram-max", self.ram_max_text]
        if self.max_kernel != DEFAULT_MAX_IMAGE:
            words += ["--max-kernel", self.max_kernel_text]
        if self.max_initrd != DEFAULT_MAX_IMAGE:
            words += ["--max-initrd", self.max_initrd_text]
        if self.fixes:
            words += ["--fixes", self.fixes_text or ",".join(self.fixes)]
        return " ".join(words)


def _choice_text(chosen: tuple[str, ...], every: tuple[str, ...]) -> str:
    return "both" if len(chosen) > 1 else chosen[0] if chosen else every[0]


# --------------------------------------------------------------------------- case drawing
@dataclass
class Case:
    """One fuzz case: Machine keyword arguments and kexec_file_load arguments."""

    index: int
    layout: dict[str, Any]
    kernel: bytes
    initrd: bytes | None
    cmdline: str
    #: Flags other than NO_CMA (which the mode decides): DEBUG and ON_CRASH.
    flags: int
    text_offset: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return str(self.layout["arch"])


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    """An int in [lo, hi], uniform in its logarithm: mostly small, sometimes the largest."""
    if hi <= lo:
        return lo
    return min(hi, max(lo, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))))


def draw_case(config: Config, index: int) -> Case:
    """Case ``index`` of ``config``, from ``random.Random(f"{seed}:{index}")`` alone.

    The arch is always drawn from both arches (and then overridden by ``--arch``), so a case
    found with ``--arch both`` replays with ``--arch <its arch>``.
    """
    from .. import images

    rng = random.Random(f"{config.seed}:{index}")
    arch = rng.choice(ARCHES)
    if arch not in config.arches:
        arch = config.arches[0]

    # the layout: banks with holes, cma=, crashkernel=, maybe reservations (MM Z0, D2)
    lo, hi = _MIN_RAM // _STEP, max(_MIN_RAM, config.ram_max) // _STEP
    total = rng.randint(lo, hi) * _STEP
    n = rng.randint(1, max(1, min(3, total // (16 * MiB))))
    cuts = sorted(rng.sample(range(1, total // (16 * MiB)), n - 1)) if n > 1 else []
    edges = [0] + [c * 16 * MiB for c in cuts] + [total]
    banks: list[tuple[int, int]] = []
    base = _BANK0[arch]
    for b in range(n):
        size = edges[b + 1] - edges[b]
        banks.append((base, size))
        hole = rng.randint(0, _MAX_HOLE // _STEP) * _STEP if rng.random() < 0.5 else 0
        base += size + hole
    layout: dict[str, Any] = {"ram": banks if n > 1 else f"{total // MiB}M", "arch": arch}
    if n == 1 and arch == "arm64" and rng.random() < 0.5:
        layout["ram"] = banks
    words = []
    cma = rng.choice([None, 0, 4, 8, 16, 32])
    if cma is not None and cma * MiB * 4 <= total:
        words.append(f"cma={cma}M")
    crash = rng.choice([None, None, 8, 16, 32])
    if crash is not None and crash * MiB * 4 <= total:
        words.append(f"crashkernel={crash}M")
    layout["cmdline"] = " ".join(words)
    if rng.random() < 0.25:
        res = set()
        for _ in range(rng.randint(1, 2)):
            b0, bsz = banks[rng.randrange(n)]
            pages = bsz // PAGE
            first = rng.randrange(pages)
            length = rng.randint(1, min(pages - first, 4096))
            res.add((b0 + first * PAGE, length * PAGE))
        layout["reserved"] = sorted(res)
    layout["seed"] = rng.getrandbits(32)

    # the load: an image its loader accepts, maybe an initrd, a short command line
    size = _log_uniform(rng, _MIN_KERNEL, max(_MIN_KERNEL, config.max_kernel)) // PAGE * PAGE
    img_seed = rng.randrange(256)
    text_offset = 0
    if arch == "arm64":
        text_offset = rng.choice([0, 0x80000])
        kernel = images.arm64_image(size, text_offset=text_offset,
                                    bss=rng.randint(0, 64) * PAGE, seed=img_seed)
    else:
        slack = rng.randint(0, 512) * PAGE
        kernel = images.bzimage(size, init_size=size - 1024 + slack,
                                kernel_alignment=rng.choice([2 * MiB, 4 * MiB]), seed=img_seed)
    initrd = None
    if config.max_initrd and rng.random() < 0.5:
        initrd = images.payload_pattern(_log_uniform(rng, 1, config.max_initrd),
                                        seed=img_seed + 1)
    cmdline = "".join(rng.choice("abcxyz=._ 0123") for _ in range(rng.randint(0, 40))).strip()
    flags = (_DEBUG if rng.random() < 0.5 else 0) | (_ON_CRASH if rng.random() < 0.125 else 0)
    summary = {"ram": total, "banks": n, "cmdline": layout["cmdline"],
               "reserved": len(layout.get("reserved", ())), "kernel": len(kernel),
               "initrd": None if initrd is None else len(initrd), "flags": flags}
    return Case(index, layout, kernel, initrd, cmdline, flags, text_offset, summary)


# --------------------------------------------------------------------------- one cycle
class CaseFailure(Exception):
    """Raised by a cycle for a finding that fails the case (not a crash of the fuzzer)."""

    def __init__(self, kind: str, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.kind = kind
        self.rule = rule
        self.detail = detail


def _cma_used(m: Machine) -> int | None:
    """debugfs ``cma/reserved/used``; None without a default area or when it could not be
    activated (an area straddling a zone boundary has no debugfs directory, MM CMA5, CMA11)."""
    if m.dma_contiguous_default_area is None:
        return None
    try:
        return int(m.read(_CMA_USED))
    except FileNotFoundError:
        return None


def _new_stats() -> dict[str, Any]:
    return {"cycles": 0, "loads": 0, "all_cma": 0, "mixed": 0, "walk_only": 0,
            "crash_loads": 0, "failed": {}, "reboots": 0, "halted": 0,
            "hot_phase_bytes": 0, "corrupted_runs": 0, "corrupted_bytes": 0,
            "quirk_corrupted_runs": 0,
            "scribbles": 0, "unverified": 0, "violations": {}, "leaks": 0,
            "leaked_pages": 0, "errors": 0, "seconds": 0.0}


def run_cycle(config: Config, case: Case, mode: str, stats: dict[str, Any]) -> list[
        CaseFailure]:
    """Boot, load, check, measure leaks, reboot: one case in one mode.

    Adds to ``stats`` (see :func:`_new_stats`) and returns the findings that fail the case.
    An exception escaping from here is an unexpected error (the caller reports it).
    """
    from ..machine import Machine
    from .invariants import InvariantViolation, check_kimage, kimage_held_pages

    found: list[CaseFailure] = []
    fixes = set(config.fixes)
    flags = case.flags | (_NO_CMA if mode == "no-cma" else 0)
    crash = bool(flags & _ON_CRASH)
    m = Machine(**case.layout, fixes=config.fixes)
    used0 = _cma_used(m)
    free0 = m.mm.nr_free_pages()
    try:
        m.kexec_file_load(case.kernel, case.initrd, case.cmdline, flags)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        stats["failed"][name] = stats["failed"].get(name, 0) + 1
        leaked = 0 if used0 is None else (_cma_used(m) or 0) - used0
        if leaked:
            stats["leaks"] += 1
            stats["leaked_pages"] += leaked
        # K19.9 / K20.4: nothing installed, every page back but the CMA blocks K2.9 keeps
        if m.kexec_image is not None or m.kexec_crash_image is not None:
            found.append(CaseFailure("violation", "K19.9", "a failed load left an image"))
        lost = free0 - m.mm.nr_free_pages()
        if lost != leaked:
            found.append(CaseFailure("violation", "K20.4", f"a failed load ({name}) kept "
                                     f"{lost} pages, {leaked} of them CMA"))
        return found
    stats["loads"] += 1
    im = m.kexec_crash_image if crash else m.kexec_image
    if im is None:
        raise CaseFailure("violation", "K1.14", "load succeeded but the slot is empty")
    ncma = sum(1 for s in im.segments if s.cma)
    key = "crash_loads" if crash else "all_cma" if ncma == len(im.segments) else \
        "mixed" if ncma else "walk_only"
    stats[key] += 1
    try:
        check_kimage(m, im)
    except InvariantViolation as exc:
        found.append(CaseFailure("violation", exc.rule, str(exc)))
    # K19.7: pages the load took = pages the image holds, when no leak can interfere
    # (NO_CMA and crash loads never call cma_alloc; otherwise the K7.12 fix must be on)
    if crash or mode == "no-cma" or m.arch != "arm64" or "arm64-retry-cma-leak" in fixes:
        took = free0 - m.mm.nr_free_pages()
        held = kimage_held_pages(im, case.text_offset if m.arch == "arm64" else 0)
        if took != held:
            found.append(CaseFailure("violation", "K19.7", f"load took {took} pages, the "
                                     f"image holds {held}"))

    # leaks across load + unload, on a twin machine (the first one reboots below); a load
    # that took no CMA block has none to leak, so the twin is only built when one did
    if used0 is not None and not crash and _cma_used(m) != used0:
        twin = Machine(**case.layout, fixes=config.fixes)
        t0 = _cma_used(twin) or 0
        try:
            twin.kexec_file_load(case.kernel, case.initrd, case.cmdline, flags)
        except OSError as exc:       # same arguments, same machine and results
            raise CaseFailure("violation", "determinism", f"the same load on a twin machine "
                              f"failed: {exc}") from None
        twin.kexec_file_load(b"", None, "", _UNLOAD)
        leaked = (_cma_used(twin) or 0) - t0
        if leaked:
            stats["leaks"] += 1
            stats["leaked_pages"] += leaked

    r = m.panic() if crash else m.kernel_kexec()
    if r is None:
        raise CaseFailure("violation", "K17.2", "panic with a crash image loaded returned None")
    stats["reboots"] += 1
    stats["hot_phase_bytes"] += r.hot_phase_bytes
    stats["scribbles"] += len(r.scribbles)
    stats["corrupted_runs"] += len(r.corrupted)
    # arm64-text-offset-cma (K12.4): the kernel's bytes land text_offset early in its block,
    # which KexecResult reports as corruption of that CMA segment; anything else is a finding
    quirk = (m.arch == "arm64" and case.text_offset != 0 and not crash
             and "arm64-text-offset-cma" not in fixes)
    in_quirk = quirk and bool(im.segments[0].cma)
    explained = sum(1 for run in r.corrupted if run[2] == 0) if in_quirk else 0
    stats["quirk_corrupted_runs"] += explained
    stats["corrupted_bytes"] += sum(run[1] for run in r.corrupted)
    unexplained = len(r.corrupted) - explained
    if unexplained and not r.scribbles and not m.devices:
        phys, length, seg = next(run for run in r.corrupted if not (in_quirk and run[2] == 0))
        found.append(CaseFailure("corruption", "K19.8", f"{unexplained} corrupted runs, first "
                                 f"{length:#x} bytes at {phys:#x} in segment {seg}"))
    if not r.verified:
        stats["unverified"] += 1
        stale = m.arch == "x86_64" and ncma and "cma-stale-tail" not in fixes
        if not (stale or explained or r.scribbles or m.devices or unexplained):
            found.append(CaseFailure("violation", "K16.10", "not verified, nothing to blame"))
    if m.halted:
        stats["halted"] += 1
    elif m.generation != 1 or m.kexec_image is not None or m.kexec_crash_image is not None:
        found.append(CaseFailure("violation", "K16.13", f"after the reboot: generation "
                                 f"{m.generation}, slots {m.kexec_image}, {m.kexec_crash_image}"))
    return found


def run_case(config: Config, index: int) -> dict[str, Any]:
    """Every selected mode of case ``index``; never raises (errors become failures)."""
    result: dict[str, Any] = {"case": index, "arch": None, "modes": {}, "failures": []}
    try:
        case = draw_case(config, index)
    except Exception as exc:
        result["failures"].append(_failure(config, index, None, None, "error", type(exc).__name__,
                                           _short_tb(exc)))
        return result
    result["arch"] = case.arch
    for mode in config.modes:
        stats = _new_stats()
        t0 = time.perf_counter()
        try:
            found = run_cycle(config, case, mode, stats)
        except CaseFailure as exc:
            found = [exc]
        except Exception as exc:                 # the campaign goes on; the case is reported
            stats["errors"] += 1
            found = [CaseFailure("error", type(exc).__name__, _short_tb(exc))]
        stats["cycles"] = 1
        stats["seconds"] = time.perf_counter() - t0
        result["modes"][mode] = stats
        for f in found:
            if f.kind != "error":        # invariant breaks and unexplained corruption
                stats["violations"][f.rule] = stats["violations"].get(f.rule, 0) + 1
            result["failures"].append(_failure(config, index, mode, case.arch, f.kind, f.rule,
                                               f.detail))
    return result


def _short_tb(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{exc!s}{where}" or type(exc).__name__


def _failure(config: Config, index: int, mode: str | None, arch: str | None, kind: str,
             rule: str, detail: str) -> dict[str, Any]:
    return {"case": index, "mode": mode, "arch": arch, "kind": kind, "rule": rule,
            "detail": detail, "replay": config.replay(index, mode, arch)}


def _run_isolated(config: Config, index: int) -> dict[str, Any]:
    """Case ``index`` in a worker process of its own; a dead worker becomes a failure."""
    started: list[_Worker] = []
    try:
        worker = _start_worker(config, started)
        worker.give([index])
        while True:
            got = worker.collect(wait([worker.conn, worker.proc.sentinel]))
            if got is not None:
                return got[0]
            if worker.dead:
                return {"case": index, "arch": None, "modes": {}, "failures": [
                    _failure(config, index, None, None, "error", "WorkerDied",
                             f"the worker process died (exit code {worker.proc.exitcode})")]}
    finally:
        for w in started:
            w.stop()


def _start_worker(config: Config, workers: list[_Worker]) -> _Worker:
    """A new worker, already in ``workers`` when a Ctrl-C can next be raised: SIGINT is held
    back while the process is forked, so an interrupt never leaves an unlisted worker."""
    block = getattr(signal, "pthread_sigmask", None)
    old = block(signal.SIG_BLOCK, {signal.SIGINT}) if block is not None else None
    try:
        worker = _Worker(config)
        workers.append(worker)
    finally:
        if block is not None and old is not None:
            block(signal.SIG_SETMASK, old)
    return worker


def _worker_main(conn: Connection, config: Config) -> None:
    """A worker process: run the chunks of case indices it is given, send back the results.

    Ctrl-C is left to the parent: a terminal sends SIGINT to the whole process group, and
    the parent terminates the workers itself, so no worker prints a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):     # forked with SIGINT held back: release it
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        conn.send(run_chunk(config, chunk))


class _Worker:
    """One worker process and the pipe to it; ``chunk`` is what it is running (or None)."""

    def __init__(self, config: Config) -> None:
        ctx = multiprocessing.get_context()
        self.conn, child = ctx.Pipe()
        # daemonic: should the parent die without stopping it, the worker goes too
        self.proc = ctx.Process(target=_worker_main, args=(child, config), daemon=True)
        self.proc.start()
        child.close()
        self.chunk: list[int] | None = None
        self.dead = False

    def give(self, chunk: list[int]) -> None:
        self.chunk = chunk
        self.conn.send(chunk)

    def collect(self, ready: Sequence[object]) -> list[dict[str, Any]] | None:
        """The results, when they are ``ready``; sets ``dead`` when the process is gone."""
        if self.conn in ready or self.conn.poll():
            try:
                results: list[dict[str, Any]] = self.conn.recv()
            except (EOFError, OSError):
                self.dead = True
                return None
            self.chunk = None
            return results
        if self.proc.sentinel in ready:
            self.dead = True
        return None

    def stop(self) -> None:
        """Terminate the process now (it may be in the middle of a case) and reap it."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=2.0)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join(timeout=2.0)
        self.conn.close()


def run_chunk(config: Config, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Worker entry point: several cases in one call (fewer round trips to the parent)."""
    return [run_case(config, i) for i in indices]


def default_batch(cases: int, workers: int) -> int:
    """Cases per chunk (local pool) or per task (Dask): up to 16, and at least four chunks
    per worker so the last ones do not leave workers idle."""
    return max(1, min(16, cases // (max(1, workers) * 4)))


# --------------------------------------------------------------------------- the campaign
class _Progress:
    """A ``\\r`` progress line on stderr, shown only once the run has lasted a second.

    ``enabled`` is decided by the caller: :func:`main` turns it on only when stderr is a
    terminal, so logs and pipes never get carriage returns."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self.t0 = time.perf_counter()
        self.shown = False
        self.last = 0.0

    def update(self, done: int, cycles: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.t0 < 1.0 or (now - self.last < 0.1 and done < self.total):
            return
        self.last, self.shown = now, True
        rate = cycles / (now - self.t0)
        width = 30
        fill = width * done // max(1, self.total)
        self.stream.write(f"\rfuzz [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
                          f"cases, {rate:.0f} cycles/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict):
            bucket = total.setdefault(key, {})
            for k, v in value.items():
                bucket[k] = bucket.get(k, 0) + v
        else:
            total[key] = total.get(key, 0) + value


def campaign(config: Config, jobs: int = 1, progress: _Progress | None = None,
             scheduler: str | None = None, batch: int | None = None) -> dict[str, Any]:
    """Run every case of ``config`` and return the report (the ``--json`` object).

    ``jobs`` local worker processes, or, with ``scheduler`` (``local[:N]`` or a scheduler
    address), the Dask cluster of :mod:`pykern.testing.fuzz_dask`; ``batch`` cases per
    chunk or task (default :func:`default_batch`).  Ctrl-C (KeyboardInterrupt) stops the
    campaign at once: worker processes are terminated (Dask futures cancelled), and the
    report covers the cases that finished, with ``incomplete`` true.  A scheduler that
    cannot be used ends the campaign the same way, with its message in ``error``.
    """
    indices = list(range(config.start, config.start + config.layouts))
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    cycles = 0
    interrupted = False
    error: str | None = None
    info: dict[str, Any] = {"jobs": 0 if scheduler is not None else jobs,
                            "scheduler": scheduler,
                            "batch": 1 if jobs <= 1 or len(indices) <= 1 else
                            batch or default_batch(len(indices), jobs)}

    def take(batch: Iterable[dict[str, Any]]) -> None:
        nonlocal cycles
        for res in batch:
            results.append(res)
            cycles += sum(s["cycles"] for s in res["modes"].values())
        if progress is not None:
            progress.update(len(results), cycles)

    try:
        if scheduler is not None:
            from . import fuzz_dask
            try:
                fuzz_dask.run_on_dask(config, fuzz_dask.parse_scheduler(scheduler), indices,
                                      take, info, batch)
            except fuzz_dask.SchedulerError as exc:
                error = str(exc)
        elif jobs <= 1 or len(indices) <= 1:
            for i in indices:
                take([run_case(config, i)])
        else:
            _campaign_pool(config, jobs, indices, take, info["batch"])
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - t0
    if progress is not None:
        progress.close()
    results.sort(key=lambda r: int(r["case"]))
    report = _report(config, int(info["jobs"]), results, wall,
                     incomplete=interrupted or error is not None)
    report.update(scheduler=info["scheduler"], batch=info["batch"], error=error)
    return report


def _campaign_pool(config: Config, jobs: int, indices: list[int],
                   take: Callable[[Iterable[dict[str, Any]]], None], size: int) -> None:
    """The cases on ``jobs`` worker processes, a chunk of ``size`` cases at a time each.  A
    worker that dies loses its chunk; each case of it gets one more try in a process of its
    own, so only the case that kills its worker is reported.  Any exception here,
    KeyboardInterrupt included, terminates every worker before it propagates."""
    todo = [indices[k:k + size] for k in range(0, len(indices), size)]
    todo.reverse()
    lost: list[int] = []
    workers: list[_Worker] = []
    try:
        for _ in range(min(jobs, len(todo))):
            _start_worker(config, workers).give(todo.pop())
        while True:
            busy = [w for w in workers if w.chunk is not None]
            if not busy:
                break
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for w in busy:
                got = w.collect(ready)
                if got is not None:
                    take(got)
                    if todo:
                        w.give(todo.pop())
                elif w.dead:
                    lost += w.chunk or []
                    w.stop()
                    workers.remove(w)
                    if todo:
                        _start_worker(config, workers).give(todo.pop())
    finally:
        for w in workers:
            w.stop()
    for i in sorted(lost):
        take([_run_isolated(config, i)])


def _report(config: Config, jobs: int, results: list[dict[str, Any]],
            wall: float, incomplete: bool = False) -> dict[str, Any]:
    per_mode: dict[str, dict[str, Any]] = {}
    for mode in config.modes:
        total = _new_stats()
        for res in results:
            if mode in res["modes"]:
                _merge(total, res["modes"][mode])
        secs = total["seconds"]
        total["seconds"] = round(secs, 6)
        total["cycles_per_second"] = round(total["cycles"] / secs, 1) if secs > 0 else 0.0
        total["failed_loads"] = sum(total["failed"].values())
        total["failed"] = dict(sorted(total["failed"].items()))
        total["violations"] = dict(sorted(total["violations"].items()))
        per_mode[mode] = total
    failures = [f for res in results for f in res["failures"]]
    cycles = sum(s["cycles"] for s in per_mode.values())
    busy = sum(s["seconds"] for s in per_mode.values())
    arches = Counter(str(r["arch"]) for r in results if r["arch"] is not None)
    return {
        "seed": config.seed, "start": config.start, "layouts": config.layouts,
        "modes": list(config.modes), "arches": list(config.arches),
        "ram_max": config.ram_max, "max_kernel": config.max_kernel,
        "max_initrd": config.max_initrd, "fixes": list(config.fixes),
        "fixes_option": config.fixes_text or ",".join(config.fixes), "jobs": jobs,
        "cases": len(results), "cases_by_arch": dict(sorted(arches.items())),
        "cycles": cycles, "seconds": round(wall, 6),
        "cycles_per_second": round(cycles / wall, 1) if wall > 0 else 0.0,
        "cycles_per_second_per_core": round(cycles / busy, 1) if busy > 0 else 0.0,
        "per_mode": per_mode,
        "failures": failures,
        "incomplete": incomplete,
        "ok": not failures and not incomplete,
    }


def _print_text(report: dict[str, Any], out: TextIO) -> None:
    if report["incomplete"]:
        why = "stopped" if report.get("error") else "interrupted"
        print(f"pykern fuzz: {why}: {report['cases']} of {report['layouts']} cases "
              f"finished; the summary below covers those", file=out)
    print(f"pykern fuzz: {report['cases']} layouts from seed {report['seed']} (cases "
          f"{report['start']}..{report['start'] + report['layouts'] - 1}), arches "
          f"{report['cases_by_arch']}, RAM <= {report['ram_max'] // MiB} MiB, fixes "
          f"{report['fixes_option'] or 'none'}", file=out)
    for mode, s in report["per_mode"].items():
        failed = ", ".join(f"{k} {v}" for k, v in s["failed"].items()) or "none"
        viol = ", ".join(f"{k} {v}" for k, v in s["violations"].items()) or "none"
        print(f"== {mode} ==", file=out)
        print(f"  loads: {s['loads']} placed (all in CMA {s['all_cma']}, mixed {s['mixed']}, "
              f"walk only {s['walk_only']}, crash {s['crash_loads']}); failed "
              f"{s['failed_loads']} ({failed})", file=out)
        print(f"  reboots: {s['reboots']} ({s['halted']} halted), hot phase "
              f"{s['hot_phase_bytes']} bytes, corrupted runs {s['corrupted_runs']} "
              f"({s['corrupted_bytes']} bytes, "
              f"{s['quirk_corrupted_runs']} runs from quirks), scribbles {s['scribbles']}, "
              f"unverified {s['unverified']}", file=out)
        print(f"  invariant violations: {viol}; CMA leaks: {s['leaks']} loads, "
              f"{s['leaked_pages']} pages; errors: {s['errors']}", file=out)
        print(f"  {s['cycles']} cycles in {s['seconds']:.2f} s: {s['cycles_per_second']} "
              f"cycles/s", file=out)
    where = f"{report['jobs']} jobs" if not report.get("scheduler") else \
        f"{report['jobs']} Dask worker threads on {report['scheduler']}"
    print(f"total: {report['cycles']} cycles in {report['seconds']:.2f} s, "
          f"{report['cycles_per_second']} cycles/s ({report['cycles_per_second_per_core']} "
          f"per core, {where})", file=out)
    if report["failures"]:
        print(f"{len(report['failures'])} failing cases; replay with:", file=out)
    for f in report["failures"]:
        print(f"  {f['replay']}    # {f['kind']} {f['rule']}: {f['detail']}", file=out)


# --------------------------------------------------------------------------- command line
def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _size(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        from ..lib.cmdline import parse_size
        try:
            value = parse_size(text, "size")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum // 1024}K")
        return value
    parse.__name__ = "size"
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pykern fuzz",
        description="Boot, kexec_file_load, check the K19 invariants and reboot, "
                    "over random layouts; case I of seed S is always the same.")
    p.add_argument("--layouts", type=_count(1), required=True, metavar="N",
                   help="number of cases (layouts) to run")
    p.add_argument("--seed", type=_count(0), default=0, metavar="S", help="campaign seed")
    p.add_argument("--start", type=_count(0), default=0, metavar="I",
                   help="first case index (replay one case with --layouts 1 --start I)")
    p.add_argument("--mode", choices=("cma", "no-cma", "both"), default="both",
                   help="load with CMA allowed, with KEXEC_FILE_NO_CMA, or both")
    p.add_argument("--arch", choices=("arm64", "x86_64", "both"), default="both",
                   help="machine architecture of the cases (default both: each case draws "
                        "one)")
    p.add_argument("--jobs", type=_count(1), default=None, metavar="J",
                   help="local worker processes (default 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cases on a Dask cluster: the address of a running "
                        "scheduler (tcp://HOST:8786), or local[:N] for a local cluster of N "
                        "worker processes (default: one per CPU); needs "
                        "pip install 'pykern-emu[dask]'")
    p.add_argument("--batch", type=_count(1), default=None, metavar="B",
                   help="cases per task sent to a worker (default: up to 16, at least four "
                        "tasks per worker)")
    p.add_argument("--ram-max", type=str, default="64M", metavar="SIZE",
                   help="largest machine (default 64M; at least 32M)")
    p.add_argument("--max-kernel", type=str, default="512K", metavar="SIZE",
                   help="largest kernel image (default 512K, at least 64K; sizes are drawn "
                        "log-uniformly from 64K up)")
    p.add_argument("--max-initrd", type=str, default="512K", metavar="SIZE",
                   help="largest initrd (default 512K; 0 for none)")
    p.add_argument("--fixes", default="", metavar="NAMES",
                   help="comma-separated quirk fixes, or 'all' (default: none, the 6.17 "
                        "behaviour)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true",
                   help="no progress line (it is drawn only when stderr is a terminal)")
    return p


def parse_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    """Check the options argparse cannot (sizes, fix names); errors exit 2."""
    sizes = {}
    for name, minimum in (("ram_max", _MIN_RAM), ("max_kernel", _MIN_KERNEL),
                          ("max_initrd", 0)):
        text = getattr(args, name)
        try:
            sizes[name] = _size(minimum)(text)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --{name.replace('_', '-')}: {exc}")
    for name in ("max_kernel", "max_initrd"):
        if sizes[name] > sizes["ram_max"]:     # no drawn machine could ever hold it
            parser.error(f"argument --{name.replace('_', '-')}: {getattr(args, name)} is "
                         f"larger than --ram-max {args.ram_max}")
    fixes: tuple[str, ...] = ()
    if args.fixes:
        from ..quirks import QUIRKS, parse_fixes
        spec: Any = "all" if args.fixes == "all" else [f for f in args.fixes.split(",") if f]
        try:
            parse_fixes(spec)
        except ValueError as exc:
            parser.error(f"argument --fixes: {exc}")
        fixes = tuple(sorted(QUIRKS)) if spec == "all" else tuple(spec)
    return Config(seed=args.seed, start=args.start, layouts=args.layouts,
                  modes=MODES if args.mode == "both" else (args.mode,),
                  arches=ARCHES if args.arch == "both" else (args.arch,),
                  ram_max=sizes["ram_max"], max_kernel=sizes["max_kernel"],
                  max_initrd=sizes["max_initrd"], fixes=fixes,
                  ram_max_text=args.ram_max, max_kernel_text=args.max_kernel,
                  max_initrd_text=args.max_initrd, fixes_text=args.fixes)


def main(argv: Sequence[str] | None = None) -> int:
    """``pykern fuzz``: 0 when no case failed, 1 otherwise, 2 for bad options, 130 when
    interrupted (Ctrl-C), after printing the report of the cases that finished."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = parse_config(parser, args)
    if args.scheduler is not None:
        from . import fuzz_dask
        if args.jobs is not None:
            parser.error("argument --jobs: not with --scheduler (the workers of a scheduler "
                         "are its own; use --scheduler local:N for N local ones)")
        try:
            fuzz_dask.parse_scheduler(args.scheduler)
        except ValueError as exc:
            parser.error(f"argument --scheduler: {exc}")
        try:
            fuzz_dask.require_dask()
        except fuzz_dask.DaskMissing as exc:
            print(f"pykern fuzz: {exc}", file=sys.stderr)
            return 2
    progress = _Progress(config.layouts, not args.quiet and sys.stderr.isatty(), sys.stderr)
    report = campaign(config, args.jobs or 1, progress, args.scheduler, args.batch)
    if report["error"] is not None and not report["cases"]:
        print(f"pykern fuzz: {report['error']}", file=sys.stderr)   # nothing ran: bad setup
        return 2
    try:
        if args.json:
            json.dump(report, sys.stdout, sort_keys=True)
            sys.stdout.write("\n")
        else:
            _print_text(report, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:       # `pykern fuzz ... | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:     # a second Ctrl-C while printing
        return 130
    if report["error"] is not None:
        print(f"pykern fuzz: {report['error']}", file=sys.stderr)
        return 1
    if report["incomplete"]:
        print("pykern fuzz: interrupted", file=sys.stderr)
        return 130
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
