"""Running the fuzz campaign: a case's boot / load / check / reboot cycle in each mode, the
local worker pool that runs the cases, and the report (the ``--json`` object)."""

from __future__ import annotations

import ctypes
import errno
import gc
import multiprocessing
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Protocol

from ...kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD
from .cases import Case, Config, draw_case

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["CaseFailure", "Progress", "build_report", "campaign", "default_batch",
           "failure_record", "prepare_worker", "run_case", "run_chunk", "run_cycle"]

#: The default CMA area's pages in use (debugfs), where CMA leaks show (K2.9, K7.12).
CMA_USED = "/sys/kernel/debug/cma/reserved/used"


class Progress(Protocol):
    """What :func:`campaign` reports its progress to (the command's progress line)."""

    def update(self, done: int, cycles: int) -> None:
        """``done`` cases finished so far, ``cycles`` load-and-reboot cycles among them."""

    def close(self) -> None:
        """The campaign is over."""


class CaseFailure(Exception):
    """Raised by a cycle for a finding that fails the case (not a crash of the fuzzer)."""

    def __init__(self, kind: str, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.kind = kind
        self.rule = rule
        self.detail = detail


#: glibc's mallopt parameter M_TOP_PAD, and the padding a worker asks for (below).
_M_TOP_PAD = -2
_TOP_PAD = 64 << 20
#: The cyclic collector's first threshold in a worker (Python's default is 700).
_GC_THRESHOLD0 = 10_000


def prepare_worker() -> None:
    """Make this process a fuzz worker: the command's own process, each local worker, each
    process of a ``--scheduler local`` cluster.  Not done by :func:`campaign` for other
    callers: it changes process-wide settings.

    - The modules a cycle uses are imported now, so the first case's time is a cycle's.
    - glibc's allocator keeps 64 MiB of freed heap (``M_TOP_PAD``) instead of giving it back
      after every machine: each machine frees per-page arrays the next one makes again, and
      the host charges a page fault for every page of heap it hands out anew.
    - The cyclic garbage collector runs every 10,000 allocations instead of 700: a cycle
      makes tens of thousands of short-lived objects, few of them in reference cycles.
    """
    from ...machine import Machine  # noqa: F401  (imported for its import time)
    from ..invariants import check_kimage  # noqa: F401
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).mallopt(_M_TOP_PAD, _TOP_PAD)
        except (OSError, AttributeError):       # not glibc: nothing to tune
            pass
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], _GC_THRESHOLD0), *threshold[1:])


def _cma_used(m: Machine) -> int | None:
    """debugfs ``cma/reserved/used``; None without a default area or when it could not be
    activated (an area straddling a zone boundary has no debugfs directory, MM CMA5, CMA11)."""
    if m.dma_contiguous_default_area is None:
        return None
    try:
        return int(m.read(CMA_USED))
    except FileNotFoundError:
        return None


def _new_stats() -> dict[str, Any]:
    """The counters of one mode of one case (summed over the campaign by :func:`_merge`)."""
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
    from ...machine import Machine
    from ..invariants import InvariantViolation, check_kimage, kimage_held_pages

    found: list[CaseFailure] = []
    flags = case.flags | (KEXEC_FILE_NO_CMA if mode == "no-cma" else 0)
    crash = bool(flags & KEXEC_FILE_ON_CRASH)
    m = Machine(**case.layout, fixes=config.fixes)
    fixes = m.fixes               # the machine's checked set of quirk fixes
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
    if crash or mode == "no-cma" or m.arch != "arm64" or fixes.on("arm64-retry-cma-leak"):
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
        twin.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
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
             and not fixes.on("arm64-text-offset-cma"))
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
        stale = m.arch == "x86_64" and ncma and not fixes.on("cma-stale-tail")
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
        result["failures"].append(failure_record(config, index, None, None, "error",
                                                 type(exc).__name__, _short_tb(exc)))
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
            result["failures"].append(failure_record(config, index, mode, case.arch, f.kind,
                                                     f.rule, f.detail))
    return result


def _short_tb(exc: BaseException) -> str:
    """The exception's message and the file and line it was raised at."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{exc!s}{where}" or type(exc).__name__


def failure_record(config: Config, index: int, mode: str | None, arch: str | None,
                   kind: str, rule: str, detail: str) -> dict[str, Any]:
    """One entry of the report's ``failures``, with the line that replays the case."""
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
                    failure_record(config, index, None, None, "error", "WorkerDied",
                                   f"the worker process died (exit code "
                                   f"{worker.proc.exitcode})")]}
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
    prepare_worker()
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


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add the counters of ``part`` to ``total`` (dicts of counters key by key)."""
    for key, value in part.items():
        if isinstance(value, dict):
            bucket = total.setdefault(key, {})
            for k, v in value.items():
                bucket[k] = bucket.get(k, 0) + v
        else:
            total[key] = total.get(key, 0) + value


def campaign(config: Config, jobs: int = 1, progress: Progress | None = None,
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
            from .. import fuzz_dask
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
    report = build_report(config, int(info["jobs"]), results, wall,
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


def build_report(config: Config, jobs: int, results: list[dict[str, Any]],
                 wall: float, incomplete: bool = False) -> dict[str, Any]:
    """The report of a campaign (the ``--json`` object) from its :func:`run_case` results:
    counts per mode, the failures with their replay lines, the rates."""
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
