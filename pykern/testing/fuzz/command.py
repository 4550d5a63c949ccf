"""``pykern fuzz`` (``python -m pykern.testing.fuzz``): the options, the progress line on a
terminal, the text report and the exit status."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from ...cli.parser import int_at_least
from ...cli.render import print_report
from .cases import ARCHES, MIN_KERNEL, MIN_RAM, MODES, Config
from .runner import campaign, prepare_worker

__all__ = ["build_parser", "main", "parse_config"]

MiB = 1 << 20


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
        """Redraw the line (at most ten times a second)."""
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
        """End the line, if one was drawn."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _print_text(report: dict[str, Any], out: TextIO) -> None:
    """The report as text: a block per mode, the totals, a replay line per failure."""
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


def _size(minimum: int) -> Callable[[str], int]:
    """An argparse type: a size (``512K``, ``64M``) of at least ``minimum`` bytes."""
    def parse(text: str) -> int:
        from ...lib.cmdline import parse_size
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
    """The argparse parser of ``pykern fuzz``."""
    p = argparse.ArgumentParser(
        prog="pykern fuzz",
        description="Boot, kexec_file_load, check the K19 invariants and reboot, "
                    "over random layouts; case I of seed S is always the same.")
    p.add_argument("--layouts", type=int_at_least(1), required=True, metavar="N",
                   help="number of cases (layouts) to run")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S", help="campaign seed")
    p.add_argument("--start", type=int_at_least(0), default=0, metavar="I",
                   help="first case index (replay one case with --layouts 1 --start I)")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both",
                   help="load with CMA allowed, with KEXEC_FILE_NO_CMA, or both")
    p.add_argument("--arch", choices=(*ARCHES, "both"), default="both",
                   help="machine architecture of the cases (default both: each case draws "
                        "one)")
    p.add_argument("--jobs", type=int_at_least(1), default=None, metavar="J",
                   help="local worker processes (default 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cases on a Dask cluster: the address of a running "
                        "scheduler (tcp://HOST:8786), or local[:N] for a local cluster of N "
                        "worker processes (default: one per CPU); needs "
                        "pip install 'pykern-emu[dask]'")
    p.add_argument("--batch", type=int_at_least(1), default=None, metavar="B",
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
    for name, minimum in (("ram_max", MIN_RAM), ("max_kernel", MIN_KERNEL),
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
        from ...quirks import QUIRKS, parse_fixes
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
        from .. import fuzz_dask
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
    prepare_worker()        # it runs the cases itself with one job; local workers fork from it
    report = campaign(config, args.jobs or 1, progress, args.scheduler, args.batch)
    if report["error"] is not None and not report["cases"]:
        print(f"pykern fuzz: {report['error']}", file=sys.stderr)   # nothing ran: bad setup
        return 2
    try:
        print_report(report, args.json, _print_text)
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
