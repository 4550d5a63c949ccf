"""The ``pykern`` command (``python -m pykern``).

Verbs::

    pykern demo [--device gic|none]          CMA vs KEXEC_FILE_NO_CMA on one machine
    pykern run SCENARIO | --list             execute a scenario file, one row per step
    pykern load SCENARIO [-p] [--no-cma] [--initrd FILE|SIZE] [--command-line STR]
                [--append STR] [-d] KERNEL   kexec -s -l, on the scenario's machine
    pykern exec SCENARIO [load options] [KERNEL]   load (if KERNEL) and reboot (kexec -e)
    pykern unload SCENARIO [-p]              kexec -u
    pykern panic SCENARIO                    crash into the loaded crash kernel
    pykern cat SCENARIO PATH [--step N]      a procfs/sysfs/debugfs file after step N
    pykern map [SCENARIO] -o FILE.png|.svg   a picture of the physical memory map
    pykern fuzz ...                          pykern.testing.fuzz

A SCENARIO is a TOML file (see :mod:`pykern.scenario`) or the name of a bundled one
(``pykern run --list``).  Every verb takes the options of :func:`_common_options` (today
``--json``: one JSON document on stdout); a verb is one :class:`_Verb` entry in ``_VERBS``.

Exit codes describe the command that was run: 0 it did what was asked; 1 its own operation
failed, or the reboot it made found corruption (``run``: some step of the scenario did;
``demo``: its CMA run was damaged); 2 usage or bad input (a bad scenario, a size that can
never fit, a demo whose CMA area is missing or too small); 130 interrupted (Ctrl-C: a short
message, no traceback).  The verbs other than ``run`` report what earlier scenario steps
found (on stderr, or in their step table) without making it their exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "render_table"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _UsageError(Exception):
    """A user mistake on the command line: message to stderr, exit 2."""


# ------------------------------------------------------------------------------ output
def _rich_console() -> Any:
    """A rich Console on stdout when rich is installed and stdout is a terminal, else None.

    Plain text otherwise, so pipes, files and tests see stable, unwrapped columns.
    """
    if os.environ.get("PYKERN_PLAIN") or not sys.stdout.isatty():
        return None
    try:
        console_mod = importlib.import_module("rich.console")
    except ImportError:
        return None
    return console_mod.Console(file=sys.stdout)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *,
                 title: str | None = None, console: Any = None) -> str | None:
    """Print a table: with ``console`` (a rich Console) as a rich Table, else as plain text
    with aligned columns (cells may hold several lines).  Returns the plain text, or None
    when rich printed it."""
    cells = [[str(c) for c in row] for row in rows]
    if console is not None:
        table_mod = importlib.import_module("rich.table")
        text_mod = importlib.import_module("rich.text")
        table = table_mod.Table(title=title, show_lines=any("\n" in c for r in cells
                                                             for c in r))
        for h in headers:
            table.add_column(h, overflow="fold")
        for cell_row in cells:  # Text, not markup: kernel lines are full of [brackets]
            table.add_row(*(text_mod.Text(c) for c in cell_row))
        console.print(table)
        return None
    split: list[list[list[str]]] = [[c.split("\n") for c in row] for row in cells]
    widths = [len(h) for h in headers]
    for row in split:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(len(x) for x in cell))
    out: list[str] = []
    if title:
        out.append(title)
    out.append("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    for row in split:
        height = max(len(cell) for cell in row)
        for k in range(height):
            out.append("  ".join((cell[k] if k < len(cell) else "").ljust(w)
                                 for cell, w in zip(row, widths)).rstrip())
    text = "\n".join(out)
    print(text)
    return text


def _print_json(doc: object) -> None:
    print(json.dumps(doc, indent=2, default=str))


def _err(verb: str, message: str) -> None:
    print(f"pykern {verb}: {message}", file=sys.stderr)


# -------------------------------------------------------------------------------- demo
def _gic_available() -> bool:
    try:
        importlib.import_module("pykern.drivers.gic")
    except ImportError:
        return False
    return True


_MiB = 1 << 20
#: What a load needs in the CMA area besides the kernel and the initrd: the DTB (arm64) or
#: purgatory and boot parameters (x86_64), and the alignment gaps between the blocks.
_CMA_SLACK = 2 * _MiB


def _mib(n: int) -> str:
    return f"{n >> 20} MiB" if n % _MiB == 0 else f"{n / _MiB:.1f} MiB"


def _with_cma(cmdline: str, size: int) -> str:
    """``cmdline`` with its ``cma=`` word replaced by (or extended with) ``cma=<size>M``."""
    words = [w for w in cmdline.split() if not w.startswith("cma=")]
    return " ".join([f"cma={size >> 20}M", *words])


def _demo_devices(args: argparse.Namespace) -> list[Any]:
    if args.device != "gic":
        return []
    gic = importlib.import_module("pykern.drivers.gic")
    return [gic.GICv3(honours_shutdown=False)]


def _demo_machine(args: argparse.Namespace, *, ram: str | None = None,
                  cmdline: str | None = None) -> Any:
    from . import Machine
    devices = _demo_devices(args)
    return Machine(args.ram if ram is None else ram, arch=args.arch,
                   cmdline=args.cmdline if cmdline is None else cmdline, seed=args.seed,
                   devices=devices or None)


def _area_bytes(m: Any) -> int:
    area = m.dma_contiguous_default_area
    return 0 if area is None else int(area.count) << 12


def _suggest_cma(args: argparse.Namespace, need: int, ram: int) -> str:
    """A ``--cmdline``/``--ram`` change under which the default area is reserved and holds
    ``need`` bytes: a few trial boots (cheap: RAM is zeroed lazily), smallest size first."""
    size = 16 * _MiB
    while size < need:
        size <<= 1
    tried = size
    while size <= ram:
        cmdline = _with_cma(args.cmdline, size)
        if _area_bytes(_demo_machine(args, cmdline=cmdline)) >= need:
            return f"--cmdline {cmdline!r}"
        size <<= 1
    bigger = max(ram, 256 * _MiB) << 1
    cmdline = _with_cma(args.cmdline, tried)
    while bigger <= 64 << 30:
        text = f"{bigger >> 30}G" if bigger >= 1 << 30 else f"{bigger >> 20}M"
        if _area_bytes(_demo_machine(args, ram=text, cmdline=cmdline)) >= need:
            return f"--ram {text} --cmdline {cmdline!r}"
        bigger <<= 1
    return "a smaller --kernel-mib/--initrd-mib"


def _demo_cma_problem(args: argparse.Namespace, m: Any, need: int, ram: int
                      ) -> list[str] | None:
    """Why the CMA run could not be a CMA run, before any image is built: no default area
    (its reservation failed or ``cma=0``), or an area smaller than the image."""
    images = (f"the {args.kernel_mib} MiB kernel + {args.initrd_mib} MiB initrd")
    area = m.dma_contiguous_default_area
    if area is None:
        failed = [text for level, text in m.dmesg() if text.startswith("cma: ")
                  and level <= 4]
        param = m.boot_params.cma
        if param is None or param.size == 0:
            why = ("the command line asks for no area" if param is not None else
                   f"the {args.arch} default configuration reserves none without cma=")
        else:
            why = (f"the kernel logged {failed[0]!r}" if failed else
                   "the reservation failed") + (
                f": cma={_mib(param.size)} must fit in one free, aligned range of RAM "
                f"below the DMA limit, beside the kernel's own reservations, and this "
                f"machine has {_mib(ram)} of RAM in all")
        return [f"no CMA area \"reserved\" on this {_mib(ram)} {args.arch} machine "
                f"(--cmdline {args.cmdline!r}), so the CMA run would be placed by the walk "
                f"exactly like NO_CMA; nothing was run",
                f"  why: {why}",
                f"  try: {_suggest_cma(args, need, ram)}"]
    have = _area_bytes(m)
    if have < need:
        return [f"the CMA area \"{area.name.strip()}\" ({_mib(have)}) cannot hold {images} "
                f"(about {_mib(need)} with the small segments and alignment), so the CMA "
                f"run would fall back to the walk; nothing was run",
                "  why: kexec_file_load takes each segment from the default CMA area and "
                "places a segment the area cannot hold with the walk, as NO_CMA does",
                f"  try: {_suggest_cma(args, need, ram)}"]
    return None


def _demo_mode(args: argparse.Namespace, no_cma: bool, m: Any) -> dict[str, Any]:
    """One run of the demo on the freshly booted ``m``: load the same image, reboot, report.
    """
    from . import images
    from .kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_NO_INITRAMFS

    area = m.dma_contiguous_default_area
    cma_area = None if area is None else {
        "name": area.name.strip(), "base": int(area.base_pfn) << 12, "bytes": _area_bytes(m)}
    kernel = (images.arm64_image(args.kernel_mib << 20, seed=args.seed) if args.arch == "arm64"
              else images.bzimage(args.kernel_mib << 20, seed=args.seed))
    initrd = images.payload_pattern(args.initrd_mib << 20, seed=args.seed + 1) \
        if args.initrd_mib else None
    task = m.new_task()  # a user process whose pages borrow CMA until the load reclaims them
    va = task.mmap_anon(2048)
    task.write(va, b"user data " * 800)
    flags = (KEXEC_FILE_NO_CMA if no_cma else 0) | (
        0 if initrd is not None else KEXEC_FILE_NO_INITRAMFS)
    m.kexec_file_load(kernel, initrd, args.cmdline, flags)
    image = m.kexec_image
    assert image is not None
    segments = [(i, s.mem, s.memsz, "CMA" if s.cma else "walk")
                for i, s in enumerate(image.segments)]
    entries = len(image.entries())
    used = None if area is None else int(area.count - area.available_count)
    result = m.kernel_kexec()
    return {"mode": "NO_CMA" if no_cma else "CMA", "device": args.device,
            "cma_area": cma_area, "segments": segments, "entry_words": entries,
            "cma_used_pages": used, "hot_phase_pages": result.hot_phase_pages,
            "hot_phase_bytes": result.hot_phase_bytes,
            "hot_phase_ms": round(result.hot_phase_seconds * 1000, 3),
            "emulated_copy_ms": result.hot_phase_ns / 1e6,
            "verified": bool(result.verified),
            "corrupted": [list(c) for c in result.corrupted],
            "scribbles": [list(s) for s in result.scribbles],
            "generation": m.generation, "next_cmdline": m.cmdline if not m.halted else None}


def _demo_sizes(args: argparse.Namespace) -> int:
    """RAM in bytes; sizes that can never fit are refused here, before any work."""
    from .lib.cmdline import parse_size
    try:
        ram = parse_size(args.ram, "--ram")
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if ram == 0:
        raise _UsageError("--ram 0: a machine needs RAM")
    image = (args.kernel_mib + args.initrd_mib) << 20
    if image + _CMA_SLACK > ram:
        raise _UsageError(f"--kernel-mib {args.kernel_mib} + --initrd-mib {args.initrd_mib} "
                          f"({_mib(image)}) can never fit in --ram {args.ram} ({_mib(ram)}); "
                          f"nothing was run")
    return ram


def _demo(args: argparse.Namespace) -> int:
    """The same machine and kexec image, loaded with CMA and with KEXEC_FILE_NO_CMA.

    Exit 0 when the claim holds (the CMA run is intact), 1 when the CMA run was damaged or
    could not load, 2 for bad sizes and for a CMA run that could not be one (no default
    area, or an area too small for the image).
    """
    explicit = args.device is not None
    if args.device is None:
        args.device = "gic" if args.arch == "arm64" and _gic_available() else "none"
    if args.device == "gic":
        if args.arch != "arm64":
            raise _UsageError("--device gic needs --arch arm64 (a GICv3 is an arm64 device)")
        if not _gic_available():
            raise _UsageError("--device gic: pykern.drivers.gic is not available in this "
                              "pykern")
    ram = _demo_sizes(args)
    need = ((args.kernel_mib + args.initrd_mib) << 20) + _CMA_SLACK
    try:
        first = _demo_machine(args)
        problem = _demo_cma_problem(args, first, need, ram)
        if problem:
            _err("demo", problem[0])
            for line in problem[1:]:
                print(line, file=sys.stderr)
            return EXIT_USAGE
        area = first.dma_contiguous_default_area
        area_line = (f"CMA area \"{area.name.strip()}\": {_mib(_area_bytes(first))} at "
                     f"{area.base_pfn << 12:#x}")
        runs = []
        for classic in (False, True):
            label = "NO_CMA" if classic else "CMA"
            try:
                runs.append(_demo_mode(args, classic, _demo_machine(args) if classic else first))
            except OSError as exc:
                _err("demo", f"the {label} run's kexec_file_load failed: "
                             f"{os.strerror(exc.errno) if exc.errno else exc}"
                             + (f" ({exc.strerror})" if exc.strerror else ""))
                return EXIT_PROBLEM
            walked = [seg for seg in runs[0]["segments"] if seg[3] != "CMA"]
            if walked and not classic:
                idx = ", ".join(str(seg[0]) for seg in walked)
                _err("demo", f"the CMA area \"{area.name.strip()}\" ({_mib(_area_bytes(first))})"
                             f" could not hold every segment: segment {idx} was placed by the "
                             f"walk, so the CMA run is not a CMA run")
                print("  why: a segment the area has no free block for goes to the walk, as "
                      "with NO_CMA (its free space is split by alignment and other users)",
                      file=sys.stderr)
                print(f"  try: {_suggest_cma(args, need + _mib_round(need), ram)}",
                      file=sys.stderr)
                return EXIT_USAGE
    except ImportError as exc:
        if explicit:
            raise _UsageError(f"--device {args.device} cannot be used in this pykern: {exc}"
                              ) from None
        _err("demo", f"note: the GIC model cannot be used ({exc}); running without it")
        args.device = "none"
        return _demo(args)
    except (ValueError, RuntimeError) as exc:
        raise _UsageError(str(exc)) from None
    cma, no_cma = runs
    if args.json:
        _print_json(runs)
    else:
        print(f"pykern demo: {args.arch}, {args.ram} RAM, cmdline {args.cmdline!r}, "
              f"{args.kernel_mib} MiB kernel + {args.initrd_mib} MiB initrd, "
              f"device {args.device}")
        print(area_line + "\n")
        for run in runs:
            print(f"== {run['mode']} ==")
            for idx, mem, memsz, where in run["segments"]:
                print(f"  segment {idx}: {mem:#012x} +{memsz:#x}  ({where})")
            used = "-" if run["cma_used_pages"] is None else run["cma_used_pages"]
            print(f"  entry words: {run['entry_words']}, CMA pages used: {used}")
            print(f"  hot phase: {run['hot_phase_pages']} pages, {run['hot_phase_bytes']} bytes "
                  f"copied, {run['emulated_copy_ms']} ms at copy_ns (wall {run['hot_phase_ms']}"
                  f" ms)")
            print(f"  verified: {run['verified']}, corrupted runs: {len(run['corrupted'])}, "
                  f"scribbles: {len(run['scribbles'])}, now generation {run['generation']}\n")
        rows = [["hot-phase bytes", cma["hot_phase_bytes"], no_cma["hot_phase_bytes"]],
                ["emulated copy ms", cma["emulated_copy_ms"], no_cma["emulated_copy_ms"]],
                ["scribbles", len(cma["scribbles"]), len(no_cma["scribbles"])],
                ["corrupted runs", len(cma["corrupted"]), len(no_cma["corrupted"])],
                ["verified", cma["verified"], no_cma["verified"]]]
        render_table(["", "CMA", "NO_CMA"], rows, console=_rich_console())
    # The demo exists to show NO_CMA being damaged, so that is its expected outcome: it
    # fails (1) only when the CMA run, which the seed claims is safe, was damaged too.
    bad = bool(cma["corrupted"]) or not cma["verified"]
    return EXIT_PROBLEM if bad else EXIT_OK


def _mib_round(n: int) -> int:
    """Extra room for a second suggestion: a quarter more, at least 2 MiB."""
    return max(_CMA_SLACK, n // 4)


# --------------------------------------------------------------------------- scenarios
def _load(verb: str, ref: str) -> Any:
    """The scenario, or _UsageError with the ScenarioError's file:line: key: message."""
    from .scenario import ScenarioError, load_scenario
    try:
        return load_scenario(ref)
    except ScenarioError as exc:
        raise _UsageError(str(exc)) from None


def _runner(scn: Any, upto: int | None = None, **kw: Any) -> Any:
    """Boot the scenario's machine and run its steps 1..upto."""
    from .scenario import Runner, ScenarioError
    if upto is not None and not 0 <= upto <= len(scn.steps):
        raise _UsageError(f"--step {upto}: {scn.name} has steps 1..{len(scn.steps)} "
                          f"(0 = right after boot)")
    try:
        runner = Runner(scn, **kw)
    except ScenarioError as exc:
        raise _UsageError(str(exc)) from None
    runner.run(upto)
    return runner


# ------------------------------------------------------------------ machine snapshots
def _restore(path: str) -> Any:
    """The machine saved in ``--state`` FILE; a file that is not one is a usage error."""
    from .machine import Machine
    try:
        return Machine.restore(path)
    except ValueError as exc:                   # SnapshotError included
        raise _UsageError(f"--state {path}: {exc}") from None
    except OSError as exc:
        raise _UsageError(f"--state {path}: {exc.strerror or exc}") from None


def _on_machine(scn: Any, m: Any, path: str) -> Any:
    """``scn`` (or an empty scenario) describing the restored machine ``m`` of ``path``."""
    from dataclasses import replace
    from .scenario import Scenario
    kwargs = {"ram": sum(size for _, size in m.banks), "arch": m.arch, "seed": m.seed,
              "cmdline": m.cmdline}
    if scn is None:
        return Scenario(name=Path(path).name, file=str(path), text="",
                        description=f"the machine saved in {path}", machine_kwargs=kwargs)
    return replace(scn, name=f"{scn.name} on {Path(path).name}", machine_kwargs=kwargs)


def _session(verb: str, args: argparse.Namespace, own: str | None = None) -> tuple[Any, Any]:
    """The scenario and, with an existing ``--state`` FILE, the machine restored from it.

    With a restored machine the scenario is optional (its steps, if one is given, run on
    that machine instead of a freshly booted one), so a single word on the command line is
    the verb's own argument ``own`` (KERNEL, PATH): ``pykern load --state s.pkm 16M``.
    """
    state: str | None = getattr(args, "state", None)
    restored = None
    lone_word = own is not None and getattr(args, own) is None and args.scenario is not None
    if state is not None and Path(state).exists():
        restored = _restore(state)
        if own is not None and lone_word:
            setattr(args, own, args.scenario)
            args.scenario = None
    elif state is not None and lone_word:
        raise _UsageError(f"--state {state}: no such file (pykern boot SCENARIO --state "
                          f"{state} makes one), and {args.scenario!r} alone is taken as the "
                          f"SCENARIO")
    if restored is None:
        if args.scenario is None:
            hint = "" if state is None else f", or an existing --state file ({state} is not one)"
            raise _UsageError(f"give a SCENARIO (a .toml file or a bundled name){hint}")
        return _load(verb, args.scenario), None
    assert state is not None
    scn = _load(verb, args.scenario) if args.scenario is not None else None
    return _on_machine(scn, restored, state), restored


def _session_runner(args: argparse.Namespace, scn: Any, restored: Any,
                    upto: int | None = None, **kw: Any) -> Any:
    """Run the scenario's steps 1..upto, on the restored machine when there is one; the
    runner is kept on ``args`` so that :func:`_main` saves its machine to ``--state``."""
    if restored is None:
        runner = _runner(scn, upto, **kw)
    else:
        from .scenario import Runner
        if upto is not None and not 0 <= upto <= len(scn.steps):
            raise _UsageError(f"--step {upto}: {scn.name} has steps 1..{len(scn.steps)} "
                              f"(0 = the machine as restored)")
        runner = Runner(scn, machine=restored, **kw)
        runner.run(upto)
    args.session_runner = runner
    return runner


def _save_state(verb: str, args: argparse.Namespace) -> int:
    """After the verb: write its machine back to ``--state`` FILE (exit 2 if that fails)."""
    runner = getattr(args, "session_runner", None)
    state = getattr(args, "state", None)
    if runner is None or state is None:
        return EXIT_OK
    try:
        runner.machine.save(state)
    except OSError as exc:
        _err(verb, f"--state {state}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


def _machine_line(scn: Any, m: Any) -> str:
    banks = m.banks
    total = sum(size for _, size in banks)
    devs = ", ".join(m.devices) or "none"
    now = "halted" if m.halted else f"now generation {m.generation}"
    return (f"scenario {scn.name} ({scn.file}): {m.arch}, {total >> 20} MiB RAM in "
            f"{len(banks)} bank{'s' if len(banks) != 1 else ''}, boot cmdline "
            f"{scn.machine_kwargs.get('cmdline', '')!r}, devices {devs}; {now}")


def _step_cell(res: Any) -> str:
    parts = [res.summary, *res.lines]
    if res.note:
        parts.append(f"note: {res.note}")
    parts += [f"reason: {r}" for r in res.reasons]
    if res.output is not None:
        parts += res.output.rstrip("\n").split("\n")
    return "\n".join(p for p in parts if p)


def _steps_table(results: Sequence[Any], title: str | None = None) -> None:
    rows = [[r.index, r.action, r.status, _step_cell(r)] for r in results]
    render_table(["step", "action", "result", "details"], rows, title=title,
                 console=_rich_console())


def _scenario_json(scn: Any, runner: Any) -> dict[str, Any]:
    m = runner.machine
    return {"scenario": scn.name, "file": scn.file, "description": scn.description,
            "machine": {"arch": m.arch, "banks": [list(b) for b in m.banks],
                        "cmdline": m.cmdline, "devices": list(m.devices),
                        "generation": m.generation, "halted": bool(m.halted)},
            "steps": [r.to_json() for r in runner.results], "ok": not runner.failed}


def _setup_notes(verb: str, scn: Any, setup: Sequence[Any], label: str = "") -> None:
    """Earlier scenario steps that failed or found corruption, on stderr: reported, but they
    are not the exit code of ``verb``, which describes what ``verb`` itself did."""
    run = f" ({label} run)" if label else ""
    for r in setup:
        if not r.ok:
            _err(verb, f"note: {scn.name}{run} step {r.index} ({r.action}) {r.status}: "
                       f"{r.summary} (an earlier scenario step: not this command's result)")


def _run(args: argparse.Namespace) -> int:
    """``pykern run``: list the bundled scenarios or execute one; the exit code is the
    scenario's outcome (1 when a step failed or found corruption)."""
    from .scenario import bundled_scenarios
    if args.list:
        found = bundled_scenarios()
        if args.json:
            _print_json([{"name": n, "description": d} for n, d in found])
        else:
            render_table(["scenario", "description"], found, console=_rich_console())
        return EXIT_OK
    if args.scenario is None and args.state is None:
        raise _UsageError("give a SCENARIO (a .toml file or a bundled name) or --list")
    scn, restored = _session("run", args)
    runner = _session_runner(args, scn, restored, args.step)
    if args.json:
        _print_json(_scenario_json(scn, runner))
    else:
        print(_machine_line(scn, runner.machine))
        if scn.description:
            print(scn.description)
        print()
        _steps_table(runner.results)
        bad = [r for r in runner.results if not r.ok]
        print(f"\n{len(runner.results)} steps, " + (
            f"{len(bad)} not ok: " + ", ".join(f"step {r.index} ({r.status})" for r in bad)
            if bad else "all ok"))
    return EXIT_PROBLEM if runner.failed else EXIT_OK


def _boot(args: argparse.Namespace) -> int:
    """``pykern boot``: power on the scenario's machine and run its steps; with ``--state``
    FILE the machine is saved there for the verbs that follow (an existing FILE is replaced:
    booting starts a new machine).  The exit code is the scenario's outcome, as for run."""
    scn = _load("boot", args.scenario)
    runner = _runner(scn, args.step)
    args.session_runner = runner
    if args.json:
        doc = _scenario_json(scn, runner)
        doc["state"] = args.state
        _print_json(doc)
    else:
        print(_machine_line(scn, runner.machine))
        if runner.results:
            _steps_table(runner.results)
        print(f"saved to {args.state}" if args.state else
              "not saved (give --state FILE to keep this machine for later verbs)")
    return EXIT_PROBLEM if runner.failed else EXIT_OK


# --------------------------------------------------------------- kexec-tools-like verbs
def _cli_blob(value: str, kind: str, scn: Any) -> Any:
    """KERNEL / --initrd: an existing file, else a size meaning a synthetic image."""
    from .lib.cmdline import parse_size
    from .scenario import Blob
    path = Path(os.path.expanduser(value))
    if path.is_file():
        return Blob(kind, file=path)
    try:
        size = parse_size(value, kind)
    except ValueError:
        raise _UsageError(f"{kind} {value!r}: no such file, and not a size such as 16M"
                          ) from None
    ram = _scenario_ram(scn)
    if size > ram:
        raise _UsageError(f"{kind} {value}: larger than the machine's {ram >> 20} MiB of RAM")
    seed = scn.machine_kwargs.get("seed", 0) + len(scn.steps) + (1000 if kind == "initrd" else 0)
    return Blob(kind, size=size, seed=seed)


def _scenario_ram(scn: Any) -> int:
    ram = scn.machine_kwargs["ram"]
    return sum(s for _, s in ram) if isinstance(ram, list) else int(ram)


def _blob_size(blob: Any) -> int:
    if blob.size is not None:
        return int(blob.size)
    try:
        return int(blob.file.stat().st_size)
    except OSError:
        return 0


def _load_blobs(args: argparse.Namespace, scn: Any) -> tuple[Any, Any]:
    """KERNEL and --initrd as Blobs; sizes that can never fit the machine are refused here,
    before the scenario's machine is booted or any image is built."""
    initrd = _cli_blob(args.initrd, "initrd", scn) if args.initrd else None
    kernel = _cli_blob(args.kernel, "kernel", scn)
    both = _blob_size(kernel) + (_blob_size(initrd) if initrd is not None else 0)
    ram = _scenario_ram(scn)
    if both > ram:
        what = f"kernel {args.kernel}" + (f" + initrd {args.initrd}" if initrd else "")
        raise _UsageError(f"{what} ({_mib(both)}) can never fit in the machine's "
                          f"{_mib(ram)} of RAM")
    return kernel, initrd


def _load_step(args: argparse.Namespace, blobs: tuple[Any, Any], runner: Any) -> Any:
    """The load step the verb adds after the scenario's steps (kexec-tools' options)."""
    from .kernel.kexec import uapi
    from .scenario import Step
    kernel, initrd = blobs
    flags = 0
    if args.p:
        flags |= uapi.KEXEC_FILE_ON_CRASH
    if args.no_cma:
        flags |= uapi.KEXEC_FILE_NO_CMA
    if args.d:
        flags |= uapi.KEXEC_FILE_DEBUG
    if initrd is None:
        flags |= uapi.KEXEC_FILE_NO_INITRAMFS  # as kexec-tools does without --initrd
    cmdline = args.command_line or ""
    if args.reuse_cmdline and not runner.machine.halted:
        cmdline = runner.machine.cmdline
    if args.append:
        cmdline = f"{cmdline} {args.append}".strip()
    return Step(len(runner.results) + 1, "load", {"kernel": kernel, "initrd": initrd,
                                                   "cmdline": cmdline, "flags": flags})


def _refusal(syscall: str, res: Any) -> None:
    """kexec-tools style: ``kexec_file_load failed: Invalid argument`` and the reasons."""
    print(f"{syscall} failed: {res.error}", file=sys.stderr)
    for reason in res.reasons:
        print(f"  {reason}", file=sys.stderr)


def _verb_report(verb: str, scn: Any, runner: Any, results: Sequence[Any],
                 args: argparse.Namespace) -> int:
    """Report the scenario's steps in one line and the verb's own steps in full.

    The exit code describes the verb's own steps only: 1 when one of them failed or its
    reboot found corruption.  Earlier scenario steps that went wrong are reported.
    """
    setup = list(runner.results)
    runner.results.extend(results)
    bad = [r for r in results if not r.ok]
    if args.json:
        doc = _scenario_json(scn, runner)
        doc["verb"] = verb
        doc["result"] = [r.to_json() for r in results]
        doc["scenario_ok"] = all(r.ok for r in setup)
        doc["ok"] = not bad
        _print_json(doc)
        _setup_notes(verb, scn, setup)
    else:
        print(_machine_line(scn, runner.machine))
        not_ok = [r for r in setup if not r.ok]
        if not_ok:
            print(f"scenario steps: {len(setup)}, {len(not_ok)} not ok (reported here; "
                  f"the exit code is {verb}'s own):")
            _steps_table(not_ok)
        else:
            print(f"scenario steps: {len(setup)}, all ok")
        print()
        for res in results:
            _verb_text(verb, res, args)
    for res in bad:
        if res.errno is not None:
            _refusal("kexec_file_load" if res.action in ("load", "unload")
                     else "reboot(LINUX_REBOOT_CMD_KEXEC)", res)
        else:
            _err(verb, res.error or res.summary)
    return EXIT_PROBLEM if bad else EXIT_OK


def _verb_text(verb: str, res: Any, args: argparse.Namespace) -> None:
    d = res.details
    console = _rich_console()
    if res.action == "load" and res.status == "ok":
        print(f"{verb}: {res.summary}")
        if res.lines:
            print(f"  {res.lines[0]}")
        if d.get("cmdline"):
            print(f"  command line: {d['cmdline']!r}")
        from .scenario import placement
        crash = d.get("image") == "crash"
        rows = [[s["index"], f"{s['mem']:#x}", f"{s['memsz']:#x}", f"{s['bufsz']:#x}",
                 placement(s["cma"], crash)] for s in d.get("segments", [])]
        render_table(["segment", "mem", "memsz", "bufsz", "placement"], rows, console=console)
        kinds = ", ".join(f"{n} {k}" for k, n in d.get("entries", {}).items())
        used = d.get("cma_used_pages")
        print(f"entry list: {d.get('entry_words')} words ({kinds}); CMA pages in use: "
              f"{'-' if used is None else used}")
        for line in d.get("debug", []):
            print(f"  kexec debug: {line}")
    elif res.action in ("exec", "panic") and "hot_phase_bytes" in d:
        rows = [["image", d["image"]], ["hot-phase pages", d["hot_phase_pages"]],
                ["hot-phase bytes", d["hot_phase_bytes"]],
                ["emulated copy ms", d["emulated_copy_ms"]],
                ["wall ms", d["hot_phase_ms"]], ["verified", d["verified"]],
                ["corrupted runs", len(d["corrupted"])], ["scribbles", len(d["scribbles"])],
                ["generation", d["generation"]], ["halted", d["halted"]],
                ["next cmdline", d["next_cmdline"]]]
        render_table([res.action, ""], rows, console=console)
        for line in res.lines:
            print(f"  {line}")
    else:
        print(f"{res.action}: {res.summary}")


def _verb_load(args: argparse.Namespace) -> int:
    """``pykern load``: kexec -s -l KERNEL on the scenario's machine."""
    scn, restored = _session("load", args, own="kernel")
    if args.kernel is None:
        raise _UsageError("give the KERNEL to load (a file or a size such as 16M)")
    blobs = _load_blobs(args, scn)
    runner = _session_runner(args, scn, restored)
    step = _load_step(args, blobs, runner)
    return _verb_report("load", scn, runner, [runner.execute(step)], args)


def _verb_exec(args: argparse.Namespace) -> int:
    """``pykern exec``: load KERNEL (if given) then reboot into it (kexec -e)."""
    from .scenario import Step
    if args.p:
        raise _UsageError("-p loads a crash kernel, which only a panic boots: use "
                          "`pykern load -p` then `pykern panic`")
    scn, restored = _session("exec", args, own="kernel")
    blobs = _load_blobs(args, scn) if args.kernel is not None else None
    runner = _session_runner(args, scn, restored)
    step = _load_step(args, blobs, runner) if blobs is not None else None
    results = []
    if step is not None:
        load = runner.execute(step)
        results.append(load)
        if not load.ok:
            return _verb_report("exec", scn, runner, results, args)
    index = len(runner.results) + len(results) + 1
    results.append(runner.execute(Step(index, "exec")))
    return _verb_report("exec", scn, runner, results, args)


def _verb_unload(args: argparse.Namespace) -> int:
    """``pykern unload``: kexec -u (with -p: the crash image)."""
    from .scenario import Step
    scn, restored = _session("unload", args)
    runner = _session_runner(args, scn, restored)
    step = Step(len(runner.results) + 1, "unload", {"crash": bool(args.p)})
    return _verb_report("unload", scn, runner, [runner.execute(step)], args)


def _verb_panic(args: argparse.Namespace) -> int:
    """``pykern panic``: a kernel panic on the scenario's machine."""
    from .scenario import Step
    scn, restored = _session("panic", args)
    runner = _session_runner(args, scn, restored)
    step = Step(len(runner.results) + 1, "panic")
    return _verb_report("panic", scn, runner, [runner.execute(step)], args)


def _cat(args: argparse.Namespace) -> int:
    """``pykern cat``: print one procfs/sysfs/debugfs file after step N (exit 1 only when
    the file cannot be read)."""
    scn, restored = _session("cat", args, own="path")
    if args.path is None:
        raise _UsageError("give the PATH to read, e.g. /proc/iomem")
    runner = _session_runner(args, scn, restored, args.step)
    m = runner.machine
    step = len(runner.results)
    if m.halted:
        _setup_notes("cat", scn, runner.results)
        _err("cat", f"after step {step} the machine is halted: no files to read")
        return EXIT_PROBLEM
    try:
        text = m.read(args.path)
    except FileNotFoundError:
        _err("cat", f"{args.path}: No such file or directory")
        return EXIT_PROBLEM
    except (OSError, ValueError, RuntimeError) as exc:
        _err("cat", f"{args.path}: {exc}")
        return EXIT_PROBLEM
    if args.json:
        doc = _scenario_json(scn, runner)
        doc.update(path=args.path, after_step=step, text=text, scenario_ok=doc["ok"], ok=True)
        _print_json(doc)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    _setup_notes("cat", scn, runner.results)
    return EXIT_OK


def _map(args: argparse.Namespace) -> int:
    """``pykern map``: draw the physical memory map into a PNG or SVG (exit 0 once the
    picture is written; what the scenario's steps found is in the picture and on stderr)."""
    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise _UsageError(f"-o {args.output}: the picture's format comes from its suffix, "
                          f".png or .svg")
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        _err("map", "matplotlib is not installed: pip install 'pykern-emu[plot]'")
        return EXIT_USAGE
    from . import cli_map
    from .kernel.kexec import uapi
    from .scenario import demo_scenario
    modes = args.modes
    restored = None
    if args.state is not None and Path(args.state).exists():
        if modes:
            raise _UsageError("--modes runs the scenario twice from its boot: it cannot "
                              "start from a --state machine")
        scn, restored = _session("map", args)
    elif args.scenario is None:
        device = "gic" if _gic_available() else "none"
        scn = demo_scenario("arm64", device)
        modes = True                     # the demo is the comparison of the two modes
    else:
        scn = _load("map", args.scenario)
    if restored is not None or (args.state is not None and not modes):
        runners = [("", _session_runner(args, scn, restored, args.step))]
    elif modes:
        runners = [(f"{label}", _runner(scn, args.step, flag_override=fn)) for label, fn in (
            ("CMA", lambda f: f & ~uapi.KEXEC_FILE_NO_CMA),
            ("NO_CMA", lambda f: f | uapi.KEXEC_FILE_NO_CMA))]
    else:
        runners = [("", _runner(scn, args.step))]
    panels = [cli_map.snapshot(r, label) for label, r in runners]
    step = len(runners[0][1].results)
    title = f"{scn.name}: physical memory after step {step}"
    try:
        cli_map.render(panels, out, title=title)
    except OSError as exc:
        _err("map", f"{args.output}: {exc.strerror or exc}")
        return EXIT_USAGE
    scenario_ok = not any(r.failed for _, r in runners)
    if args.json:
        _print_json({"output": str(out), "format": fmt, "scenario": scn.name,
                     "after_step": step, "panels": [p.to_json() for p in panels],
                     "scenario_ok": scenario_ok, "ok": True})
    else:
        print(f"wrote {out} ({fmt}): {len(panels)} panel{'s' if len(panels) > 1 else ''}, "
              f"{title}")
    for label, r in runners:
        _setup_notes("map", scn, r.results, label)
    return EXIT_OK


#: Verbs with a parser of their own in pykern.testing (they need the test extra).
_DELEGATED = {"fuzz": "pykern.testing.fuzz", "soak": "pykern.testing.soak"}


def _delegate(verb: str, argv: Sequence[str]) -> int:
    """``pykern fuzz`` / ``pykern soak``: hand everything to that module's ``main``."""
    modname = _DELEGATED[verb]
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        what = f"{modname} is not available in this pykern" \
            if exc.name in (modname, "pykern.testing") else \
            f"pykern {verb} needs {exc.name or exc}: pip install 'pykern-emu[test]'"
        _err(verb, what)
        return EXIT_USAGE
    rc = module.main(list(argv))
    return int(rc or 0)


# -------------------------------------------------------------------------------- parser
def _positive(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""
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


def _scenario_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="a scenario .toml file or a bundled name (pykern run --list); "
                        "optional with an existing --state FILE, whose machine its steps "
                        "then run on")


def _load_options(p: argparse.ArgumentParser, *, kernel_optional: bool) -> None:
    p.add_argument("-s", action="store_true",
                   help="use kexec_file_load (always: the only syscall pykern models)")
    p.add_argument("-p", "--load-panic", dest="p", action="store_true",
                   help="load a crash kernel (KEXEC_FILE_ON_CRASH)")
    p.add_argument("--no-cma", action="store_true",
                   help="KEXEC_FILE_NO_CMA: place every segment with the walk, never in CMA")
    p.add_argument("--initrd", "--ramdisk", metavar="FILE|SIZE",
                   help="an initrd file, or a size such as 32M for a synthetic one "
                        "(default: none, KEXEC_FILE_NO_INITRAMFS)")
    p.add_argument("--command-line", metavar="STR", help="the new kernel's command line")
    p.add_argument("--append", metavar="STR", help="appended to the command line")
    p.add_argument("--reuse-cmdline", action="store_true",
                   help="start from the running kernel's command line")
    p.add_argument("-d", "--debug", dest="d", action="store_true",
                   help="KEXEC_FILE_DEBUG: print the kernel's placement messages")
    p.add_argument("kernel", metavar="KERNEL", nargs="?",
                   help="an image file, or a size such as 16M for a synthetic image of the "
                        "machine's arch" + (" (omitted: reboot into the image the scenario "
                                            "loaded)" if kernel_optional else ""))


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ram", default="1G", metavar="SIZE",
                   help="RAM of the machine, one bank (default 1G)")
    p.add_argument("--arch", default="arm64", choices=("arm64", "x86_64"),
                   help="machine architecture and image format (default arm64: an Image; "
                        "x86_64: a bzImage)")
    p.add_argument("--cmdline", default="cma=256M console=ttyAMA0", metavar="STR",
                   help="boot command line of the machine and of the loaded kernel; its "
                        "cma= sizes the CMA area the CMA run loads into (default "
                        "'cma=256M console=ttyAMA0')")
    p.add_argument("--kernel-mib", type=_positive(1), default=16, metavar="MIB",
                   help="size of the synthetic kernel image in MiB (default 16)")
    p.add_argument("--initrd-mib", type=_positive(0), default=32, metavar="MIB",
                   help="size of the synthetic initrd in MiB, 0 for none (default 32)")
    p.add_argument("--seed", type=_positive(0), default=0, metavar="S",
                   help="machine seed: device timing and image contents (default 0)")
    p.add_argument("--device", choices=("gic", "none"), default=None,
                   help="gic: a GICv3 that ignores shutdown and keeps writing during the "
                        "reboot; none: no device (default: gic on arm64 when "
                        "pykern.drivers.gic exists)")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="a scenario .toml file or a bundled name")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios")
    p.add_argument("--step", type=_positive(0), metavar="N",
                   help="stop after step N (0 = right after boot; default: all steps)")


def _load_verb_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    _load_options(p, kernel_optional=False)


def _exec_verb_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    _load_options(p, kernel_optional=True)


def _unload_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    p.add_argument("-p", "--load-panic", dest="p", action="store_true",
                   help="unload the crash kernel instead of the default one")


def _cat_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    p.add_argument("path", metavar="PATH", nargs="?",
                   help="a procfs, sysfs or debugfs file, e.g. /proc/iomem")
    p.add_argument("--step", type=_positive(0), metavar="N",
                   help="after step N (0 = at boot; default: after all steps)")


def _map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="a scenario .toml file or a bundled name (default: the demo's "
                        "machine, loaded and rebooted in both modes)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the picture to write: FILE.png or FILE.svg")
    p.add_argument("--step", type=_positive(0), metavar="N",
                   help="draw the machine after step N (default: after all steps)")
    p.add_argument("--modes", action="store_true",
                   help="run the scenario twice, its loads with CMA allowed and with "
                        "KEXEC_FILE_NO_CMA, and draw the two one above the other")


def _common_options(p: argparse.ArgumentParser) -> None:
    """Options every verb takes (the one place to add another)."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout instead of text")


def _state_option(p: argparse.ArgumentParser) -> None:
    """``--state FILE``: the verbs that act on one machine keep it in a snapshot file."""
    p.add_argument("--state", metavar="FILE",
                   help="a machine snapshot: when FILE exists the machine is restored from it "
                        "instead of booting the scenario, and after the command it is saved "
                        "back (pykern boot SCENARIO --state FILE makes one)")


def _boot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a scenario .toml file or a bundled name (pykern run --list)")
    p.add_argument("--step", type=_positive(0), metavar="N",
                   help="stop after step N (0 = right after boot; default: all steps)")


@dataclass(frozen=True)
class _Verb:
    """A verb of the ``pykern`` command: its handler, its options and its help."""

    name: str
    func: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None]
    help: str
    #: takes ``--state FILE`` (every verb that acts on one machine)
    state: bool = True


_VERBS: tuple[_Verb, ...] = (
    _Verb("demo", _demo, _demo_options,
          "one image loaded with CMA and with KEXEC_FILE_NO_CMA, rebooted under a GIC that "
          "ignores shutdown, side by side (exit 1 if the CMA run is damaged, 2 if the CMA "
          "area is missing or too small)", state=False),
    _Verb("boot", _boot, _boot_options,
          "power on a scenario's machine and run its steps; with --state FILE, save it for "
          "the verbs that follow (kexec -l / -e on one machine)"),
    _Verb("run", _run, _run_options,
          "execute a scenario file and report each step (exit 1 if a step failed or found "
          "corruption)"),
    _Verb("load", _verb_load, _load_verb_options,
          "kexec -s -l: load a kernel on a scenario's machine"),
    _Verb("exec", _verb_exec, _exec_verb_options,
          "load KERNEL (if given) and reboot into it (kexec -e)"),
    _Verb("unload", _verb_unload, _unload_options, "kexec -u: unload the loaded kernel"),
    _Verb("panic", _verb_panic, _scenario_arg,
          "panic: boot the loaded crash kernel, or halt"),
    _Verb("cat", _cat, _cat_options,
          "print a procfs/sysfs/debugfs file of a scenario's machine"),
    _Verb("map", _map, _map_options,
          "draw the physical memory map into a PNG or SVG (needs pykern-emu[plot])"),
)


#: The optional positional each verb takes after SCENARIO.
_OWN_POSITIONAL = {"load": "kernel", "exec": "kernel", "cat": "path"}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``pykern`` command."""
    parser = argparse.ArgumentParser(
        prog="pykern", description="Linux memory and kexec, emulated in Python.",
        epilog="Exit codes: 0 the command did what was asked; 1 its own operation failed or "
               "its own reboot found corruption; 2 usage or bad input; 130 interrupted.")
    from . import DIST_NAME, __version__
    parser.add_argument("--version", action="version", version=f"{DIST_NAME} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for verb in _VERBS:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help)
        verb.options(p)
        _common_options(p)
        if verb.state:
            _state_option(p)
        p.set_defaults(func=verb.func)
    sub.add_parser("fuzz", add_help=False,
                   help="the fuzz campaign (pykern fuzz --help for its options)")
    sub.add_parser("soak", add_help=False,
                   help="long random operation sequences with every invariant checked "
                        "(pykern soak --help for its options)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pykern`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _DELEGATED:
            return _delegate(argv[0], argv[1:])
        return _main(argv)
    except KeyboardInterrupt:          # Ctrl-C: a short message, no traceback
        verb = f" {argv[0]}" if argv and argv[0] in {v.name for v in _VERBS} else ""
        print(f"pykern{verb}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `pykern demo | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        # argparse cannot give an optional positional after options (`exec S --no-cma 4M`,
        # bpo-14191): a verb's own KERNEL or PATH may come back as the one leftover word.
        own = _OWN_POSITIONAL.get(args.command)
        if (own is not None and len(extras) == 1 and getattr(args, own) is None
                and not extras[0].startswith("-")):
            setattr(args, own, extras[0])
            extras = []
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        rc: int = args.func(args)
    except _UsageError as exc:
        _err(args.command, str(exc))
        return EXIT_USAGE
    return _save_state(args.command, args) or rc


if __name__ == "__main__":
    sys.exit(main())
