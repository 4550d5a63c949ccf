"""``pykern soak``: long random runs of the state machine's rules, every invariant checked.

The soak drives :class:`pykern.testing.stateful.KexecStateMachine` without hypothesis:
sequence ``i`` of seed ``S`` boots a machine drawn like a fuzz case's layout
(:func:`pykern.testing.fuzz.draw_case`), then applies ``--steps`` rules (allocations and
frees, tasks mapping, pinning and exiting, CMA allocations and releases, kexec loads with and
without ``KEXEC_FILE_NO_CMA``, crash loads, unloads, reboots, panics), each drawn with its
arguments from ``random.Random(f"soak:{S}:{i}")`` alone.  After every rule all the
invariants run: the state machine's three (the K19 invariants on each loaded image, the page
accounting, task data across migration) and the allocator's MM V1
(``m.mm.check_invariants``).  The machine has every quirk fixed (the state machine's
``fixes = "all"``), so the page accounting is exact: any page a failed call keeps is a
violation.

With ``--faults`` every boot of a sequence (the first, and each one after a reboot, a panic
or a power cycle) gets random fault injection through debugfs
(``/sys/kernel/debug/fail_page_alloc/``: every allocation a fault point, a probability of
1–10 %, unlimited times) and a ``fail_nth`` rule writes a random N to the fail-nth file of
the machine context or of a task; the rules then meet failed allocations everywhere, and
their own checks (errnos, slots) and the invariants must still hold.

A violation (a failed check, an invariant broken, an unexpected exception) ends its
sequence; the report prints a one-line replay command that runs exactly that sequence.
Exit status: 0 no violation, 1 violations, 2 bad options, 130 interrupted (Ctrl-C: the
summary so far is printed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from random import Random
from typing import Any, TextIO

from ..cli.parser import int_at_least
from ..cli.render import print_report
from .drawing import RandomSource, draw_kexec_image
from .fuzz import Config as FuzzConfig
from .fuzz import draw_case
from .stateful import KexecStateMachine      # needs hypothesis (pykern-emu[test])

__all__ = ["SoakConfig", "run_sequence", "soak", "main", "build_parser", "RULES"]

KiB, MiB = 1 << 10, 1 << 20
# kexec uapi values (rule K0.4)
_UNLOAD, _ON_CRASH, _DEBUG, _NO_CMA = 0x1, 0x2, 0x8, 0x10
_FAIL = "/sys/kernel/debug/fail_page_alloc/"

#: Rules and their weights (``fail_nth`` only with ``--faults``).
RULES: dict[str, int] = {
    "alloc_pages": 10, "free_pages": 8, "task_map": 6, "pin": 4, "unpin": 3,
    "task_exit": 3, "cma_alloc": 5, "cma_release": 4, "load": 6, "load_crash": 2,
    "unload": 2, "reboot": 1, "panic": 1, "fail_nth": 3,
}
#: The state machine's invariants, plus MM V1.
INVARIANTS = ("images_keep_section_19", "every_page_accounted_for",
              "task_data_survives_migration", "check_invariants")


@dataclass(frozen=True)
class SoakConfig:
    """Everything that decides what a soak runs (picklable, for worker processes)."""

    ops: int
    seed: int = 0
    start: int = 0
    steps: int = 50
    faults: bool = False
    ram_max: int = 64 * MiB
    max_image: int = 256 * KiB
    ram_max_text: str = "64M"
    max_image_text: str = "256K"

    @property
    def sequences(self) -> int:
        return max(1, -(-self.ops // self.steps))

    def ops_of(self, index: int) -> int:
        """Steps of sequence ``index`` (the last one may be shorter)."""
        done = (index - self.start) * self.steps
        return max(0, min(self.steps, self.ops - done))

    def replay(self, index: int, steps: int) -> str:
        words = ["pykern", "soak", "--ops", str(steps), "--seed", str(self.seed),
                 "--start", str(index), "--steps", str(self.steps)]
        if self.faults:
            words.append("--faults")
        if self.ram_max != 64 * MiB:
            words += ["--ram-max", self.ram_max_text]
        if self.max_image != 256 * KiB:
            words += ["--max-image", self.max_image_text]
        return " ".join(words)


# ------------------------------------------------------------------------------ drawing
def _draw_load(rng: Random, arch: str, max_image: int) -> dict[str, Any]:
    """A load drawn by :func:`pykern.testing.drawing.draw_kexec_image`, the generator of the
    fuzz campaign and of :func:`~pykern.testing.strategies.kexec_loads`."""
    image = draw_kexec_image(RandomSource(rng), arch, min_kernel=64 * KiB,
                             max_kernel=max(64 * KiB, max_image), max_initrd=max_image,
                             max_cmdline=30)
    return {"kernel": image.kernel, "initrd": image.initrd, "cmdline": image.cmdline,
            "flags": _DEBUG if rng.random() < 0.25 else 0}


def _configure_faults(m: Any, rng: Random) -> None:
    """Random fault injection for one boot (module doc)."""
    for name, value in (("min-order", "0"), ("ignore-gfp-wait", "N"),
                        ("ignore-gfp-highmem", "N"), ("verbose", str(rng.choice([0, 0, 1]))),
                        ("times", "-1"), ("interval", "1"),
                        ("probability", str(rng.choice([1, 2, 5, 10])))):
        m.write(_FAIL + name, value)


def _step(sm: Any, rule: str, rng: Random, config: SoakConfig) -> None:
    """Apply ``rule`` with arguments drawn from ``rng``."""
    k = rng.randint(0, 1000)
    if rule == "alloc_pages":
        sm.alloc_pages(order=rng.randint(0, 6), movable=rng.random() < 0.5)
    elif rule == "free_pages":
        sm.free_pages(k=k)
    elif rule == "task_map":
        sm.task_map(npages=rng.randint(1, 512), seed=rng.randint(0, 255))
    elif rule == "pin":
        sm.pin(k=k, page=rng.randint(0, 511), longterm=rng.random() < 0.5)
    elif rule == "unpin":
        sm.unpin(k=k)
    elif rule == "task_exit":
        sm.task_exit(k=k)
    elif rule == "cma_alloc":
        sm.cma_alloc(count=rng.randint(1, 2048), align=rng.randint(0, 9))
    elif rule == "cma_release":
        sm.cma_release(k=k)
    elif rule == "load":
        sm.load_image(_draw_load(rng, sm.m.arch, config.max_image), 0, rng.random() < 0.5)
    elif rule == "load_crash":
        sm.load_image(_draw_load(rng, sm.m.arch, config.max_image), _ON_CRASH, False)
    elif rule == "unload":
        sm.unload(crash=rng.random() < 0.5)
    elif rule == "reboot":
        sm.reboot()
    elif rule == "panic":
        sm.panic()
    elif rule == "fail_nth":
        n = rng.randint(1, 64)
        pids = [t["t"].pid for t in sm.tasks]
        if pids and rng.random() < 0.5:
            pid = rng.choice(pids)
            sm.m.write(f"/proc/{pid}/task/{pid}/fail-nth", str(n))
        else:
            sm.m.write("/proc/thread-self/fail-nth", str(n))
    else:
        raise ValueError(f"unknown rule {rule!r}")


# ----------------------------------------------------------------------------- a sequence
def run_sequence(config: SoakConfig, index: int) -> dict[str, Any]:
    """Sequence ``index``: boot, then its steps, the invariants after each one."""
    steps = config.ops_of(index)
    rng = Random(f"soak:{config.seed}:{index}")
    layout = draw_case(FuzzConfig(seed=config.seed, ram_max=config.ram_max,
                                  max_kernel=64 * KiB, max_initrd=0), index).layout
    names = [r for r in RULES if config.faults or r != "fail_nth"]
    weights = [RULES[r] for r in names]
    out: dict[str, Any] = {"index": index, "ops": 0, "checks": 0, "injected": 0,
                           "rules": Counter(), "violations": [], "seconds": 0.0}
    t0 = time.perf_counter()
    sm = KexecStateMachine()
    step, rule = -1, "boot"
    try:
        sm.boot(layout)
        booted = None
        for step in range(steps):
            if config.faults and not sm.m.halted and booted != (id(sm.m), sm.m.generation):
                booted = (id(sm.m), sm.m.generation)
                _configure_faults(sm.m, rng)
            rule = rng.choices(names, weights)[0]
            before = sm.m
            fi = None if before.halted else before.kernel.fault_inject
            got = fi.injected if fi is not None else 0
            _step(sm, rule, rng, config)
            if fi is not None:
                out["injected"] += fi.injected - got
            out["ops"] += 1
            out["rules"][rule] += 1
            sm.images_keep_section_19()
            sm.every_page_accounted_for()
            sm.task_data_survives_migration()
            if not sm.m.halted:
                sm.m.mm.check_invariants()
            out["checks"] += len(INVARIANTS)
    except Exception as exc:  # noqa: BLE001 - a violation of any kind ends the sequence
        kind = "violation" if isinstance(exc, AssertionError) else "error"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        out["violations"].append({
            "index": index, "step": step, "rule": rule, "kind": kind,
            "detail": f"{type(exc).__name__}: {exc}"[:400],
            "at": f"{where.filename.rsplit('/', 1)[-1]}:{where.lineno} in {where.name}",
            "replay": config.replay(index, step + 1)})
    out["seconds"] = time.perf_counter() - t0
    out["rules"] = dict(out["rules"])
    return out


# ------------------------------------------------------------------------------ the soak
def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C


def _run_one(args: tuple[SoakConfig, int]) -> dict[str, Any]:
    return run_sequence(*args)


def _results(config: SoakConfig, jobs: int) -> Iterator[dict[str, Any]]:
    indices = range(config.start, config.start + config.sequences)
    if jobs <= 1 or config.sequences <= 1:
        for i in indices:
            yield run_sequence(config, i)
        return
    ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else None)
    pool = ctx.Pool(jobs, initializer=_worker_init)
    try:
        yield from pool.imap_unordered(_run_one, [(config, i) for i in indices])
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


class _Progress:
    """A ``\\r`` progress line on stderr (only on a terminal, after a second)."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self.t0 = self.last = time.perf_counter()
        self.shown = False

    def update(self, ops: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.t0 < 1.0 or now - self.last < 0.2:
            return
        self.last, self.shown = now, True
        self.stream.write(f"\rsoak {ops}/{self.total} ops, {ops / (now - self.t0):.0f} ops/s ")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def soak(config: SoakConfig, jobs: int = 1, progress: _Progress | None = None
         ) -> dict[str, Any]:
    """Run every sequence of ``config``; the report (``--json``).  Ctrl-C ends the run and
    the report covers the sequences that finished (``incomplete``)."""
    t0 = time.perf_counter()
    total: dict[str, Any] = {"ops": 0, "checks": 0, "injected": 0, "sequences": 0,
                             "rules": Counter(), "violations": [], "busy": 0.0}
    interrupted = False
    try:
        for res in _results(config, jobs):
            total["sequences"] += 1
            for key in ("ops", "checks", "injected"):
                total[key] += res[key]
            total["busy"] += res["seconds"]
            total["rules"].update(res["rules"])
            total["violations"] += res["violations"]
            if progress is not None:
                progress.update(total["ops"])
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - t0
    if progress is not None:
        progress.close()
    total["violations"].sort(key=lambda v: (v["index"], v["step"]))
    return {"config": asdict(config), "jobs": jobs, "ops": total["ops"],
            "sequences": total["sequences"], "invariant_checks": total["checks"],
            "injected_failures": total["injected"],
            "rules": dict(sorted(total["rules"].items())),
            "violations": total["violations"], "seconds": round(wall, 3),
            "ops_per_second": round(total["ops"] / wall, 1) if wall > 0 else 0.0,
            "ops_per_second_per_job": round(total["ops"] / total["busy"], 1)
            if total["busy"] > 0 else 0.0,
            "incomplete": interrupted, "ok": not total["violations"] and not interrupted}


def _print_text(report: dict[str, Any], out: TextIO) -> None:
    c = report["config"]
    if report["incomplete"]:
        print(f"pykern soak: interrupted after {report['ops']} of {c['ops']} ops; the "
              f"summary covers those", file=out)
    print(f"pykern soak: seed {c['seed']}, {report['sequences']} sequences of up to "
          f"{c['steps']} steps from {c['start']}, RAM <= {c['ram_max'] // MiB} MiB, faults "
          f"{'on' if c['faults'] else 'off'}", file=out)
    print("  rules: " + ", ".join(f"{k} {v}" for k, v in report["rules"].items()), file=out)
    if c["faults"]:
        print(f"  injected allocation failures: {report['injected_failures']}", file=out)
    print(f"  {report['ops']} ops in {report['seconds']:.2f} s: {report['ops_per_second']} "
          f"ops/s ({report['ops_per_second_per_job']} per job, {report['jobs']} jobs)",
          file=out)
    print(f"  invariant checks: {report['invariant_checks']}, violations: "
          f"{len(report['violations'])}", file=out)
    for v in report["violations"]:
        print(f"  {v['replay']}    # {v['kind']} at step {v['step']} ({v['rule']}, "
              f"{v['at']}): {v['detail']}", file=out)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pykern soak",
        description="Random sequences of allocations, tasks, pins, CMA, kexec loads, "
                    "unloads, reboots and panics with every invariant checked after each "
                    "step; sequence I of seed S is always the same.")
    p.add_argument("--ops", type=int_at_least(1), required=True, metavar="N",
                   help="operations in total (split into sequences of --steps)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S", help="soak seed")
    p.add_argument("--start", type=int_at_least(0), default=0, metavar="I",
                   help="first sequence index (replay one with --ops K --start I)")
    p.add_argument("--steps", type=int_at_least(1), default=50, metavar="K",
                   help="operations per sequence, on one freshly booted machine (default 50)")
    p.add_argument("--jobs", type=int_at_least(1), default=1, metavar="J",
                   help="worker processes (default 1)")
    p.add_argument("--faults", action="store_true",
                   help="random page-allocation fault injection (fail_page_alloc, fail-nth)")
    p.add_argument("--ram-max", default="64M", metavar="SIZE",
                   help="largest machine (default 64M; at least 32M)")
    p.add_argument("--max-image", default="256K", metavar="SIZE",
                   help="largest kernel and initrd a load draws (default 256K, at least 64K)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SoakConfig:
    from ..lib.cmdline import parse_size
    sizes = {}
    for name, minimum in (("ram_max", 32 * MiB), ("max_image", 64 * KiB)):
        text = getattr(args, name)
        try:
            value = parse_size(text, f"--{name.replace('_', '-')}")
        except ValueError as exc:
            parser.error(str(exc))
        if value < minimum:
            parser.error(f"argument --{name.replace('_', '-')}: {text} is below "
                         f"{minimum // KiB}K")
        sizes[name] = value
    return SoakConfig(ops=args.ops, seed=args.seed, start=args.start, steps=args.steps,
                      faults=args.faults, ram_max=sizes["ram_max"],
                      max_image=sizes["max_image"], ram_max_text=args.ram_max,
                      max_image_text=args.max_image)


def main(argv: Sequence[str] | None = None) -> int:
    """``pykern soak``: 0 when no invariant broke, 1 otherwise, 2 for bad options, 130 when
    interrupted (after printing the summary so far)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = _config(parser, args)
    except SystemExit as exc:                 # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    progress = _Progress(config.ops, not args.quiet and sys.stderr.isatty(), sys.stderr)
    report = soak(config, args.jobs, progress)
    try:
        print_report(report, args.json, _print_text)
    except KeyboardInterrupt:
        return 130
    if report["incomplete"]:
        print("pykern soak: interrupted", file=sys.stderr)
        return 130
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
