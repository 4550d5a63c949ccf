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
(``pykern run --list``).  Every verb takes ``--json`` and then prints one JSON document.

Exit codes: 0 ok, 1 a step failed or corruption was found, 2 usage or a bad scenario.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "render_table"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


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


def _demo_mode(args: argparse.Namespace, no_cma: bool) -> dict[str, Any]:
    """One run of the demo: boot, load the same image, reboot, report."""
    from . import Machine, images
    from .kernel.kexec.uapi import KEXEC_FILE_NO_CMA

    devices: list[Any] = []
    if args.device == "gic":
        gic = importlib.import_module("pykern.drivers.gic")
        devices.append(gic.GICv3(honours_shutdown=False))
    m = Machine(args.ram, arch=args.arch, cmdline=args.cmdline, seed=args.seed,
                devices=devices or None)
    kernel = (images.arm64_image(args.kernel_mib << 20, seed=args.seed) if args.arch == "arm64"
              else images.bzimage(args.kernel_mib << 20, seed=args.seed))
    initrd = images.payload_pattern(args.initrd_mib << 20, seed=args.seed + 1)
    task = m.new_task()  # a user process whose pages borrow CMA until the load reclaims them
    va = task.mmap_anon(2048)
    task.write(va, b"user data " * 800)
    m.kexec_file_load(kernel, initrd, args.cmdline, KEXEC_FILE_NO_CMA if no_cma else 0)
    image = m.kexec_image
    assert image is not None
    segments = [(i, s.mem, s.memsz, "CMA" if s.cma else "walk")
                for i, s in enumerate(image.segments)]
    entries = len(image.entries())
    used = m.read("/sys/kernel/debug/cma/reserved/used").strip() \
        if m.dma_contiguous_default_area is not None else "-"
    result = m.kernel_kexec()
    return {"mode": "NO_CMA" if no_cma else "CMA", "device": args.device,
            "segments": segments, "entry_words": entries,
            "cma_used_pages": used, "hot_phase_pages": result.hot_phase_pages,
            "hot_phase_bytes": result.hot_phase_bytes,
            "hot_phase_ms": round(result.hot_phase_seconds * 1000, 3),
            "emulated_copy_ms": result.hot_phase_ns / 1e6,
            "verified": result.verified, "corrupted": result.corrupted,
            "scribbles": result.scribbles,
            "generation": m.generation, "next_cmdline": m.cmdline if not m.halted else None}


def _demo(args: argparse.Namespace) -> int:
    """The same machine and kexec image, loaded with CMA and with KEXEC_FILE_NO_CMA."""
    explicit = args.device is not None
    if args.device is None:
        args.device = "gic" if args.arch == "arm64" and _gic_available() else "none"
    if args.device == "gic":
        if args.arch != "arm64":
            _err("demo", "--device gic needs --arch arm64 (a GICv3 is an arm64 device)")
            return EXIT_USAGE
        if not _gic_available():
            _err("demo", "--device gic: pykern.drivers.gic is not available in this pykern")
            return EXIT_USAGE
    try:
        runs = [_demo_mode(args, no_cma) for no_cma in (False, True)]
    except ImportError as exc:
        if explicit:
            _err("demo", f"--device {args.device} cannot be used in this pykern: {exc}")
            return EXIT_USAGE
        _err("demo", f"note: the GIC model cannot be used ({exc}); running without it")
        args.device = "none"
        return _demo(args)
    except (ValueError, OSError, RuntimeError) as exc:
        _err("demo", str(exc))
        return EXIT_USAGE
    if args.json:
        _print_json(runs)
    else:
        print(f"pykern demo: {args.arch}, {args.ram} RAM, cmdline {args.cmdline!r}, "
              f"{args.kernel_mib} MiB kernel + {args.initrd_mib} MiB initrd, "
              f"device {args.device}\n")
        for run in runs:
            print(f"== {run['mode']} ==")
            for idx, mem, memsz, where in run["segments"]:
                print(f"  segment {idx}: {mem:#012x} +{memsz:#x}  ({where})")
            print(f"  entry words: {run['entry_words']}, CMA pages used: {run['cma_used_pages']}")
            print(f"  hot phase: {run['hot_phase_pages']} pages, {run['hot_phase_bytes']} bytes "
                  f"copied, {run['emulated_copy_ms']} ms at copy_ns (wall {run['hot_phase_ms']}"
                  f" ms)")
            print(f"  verified: {run['verified']}, corrupted runs: {len(run['corrupted'])}, "
                  f"scribbles: {len(run['scribbles'])}, now generation {run['generation']}\n")
        cma, no_cma = runs
        rows = [["hot-phase bytes", cma["hot_phase_bytes"], no_cma["hot_phase_bytes"]],
                ["emulated copy ms", cma["emulated_copy_ms"], no_cma["emulated_copy_ms"]],
                ["scribbles", len(cma["scribbles"]), len(no_cma["scribbles"])],
                ["corrupted runs", len(cma["corrupted"]), len(no_cma["corrupted"])],
                ["verified", cma["verified"], no_cma["verified"]]]
        render_table(["", "CMA", "NO_CMA"], rows, console=_rich_console())
    # The demo exists to show NO_CMA being damaged, so that is its expected outcome: it
    # fails (1) only when the CMA run, which the seed claims is safe, was damaged too.
    cma_run = runs[0]
    bad = bool(cma_run["corrupted"]) or not cma_run["verified"]
    return EXIT_PROBLEM if bad else EXIT_OK


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


def _run(args: argparse.Namespace) -> int:
    """``pykern run``: list the bundled scenarios or execute one."""
    from .scenario import bundled_scenarios
    if args.list:
        found = bundled_scenarios()
        if args.json:
            _print_json([{"name": n, "description": d} for n, d in found])
        else:
            render_table(["scenario", "description"], found, console=_rich_console())
        return EXIT_OK
    if args.scenario is None:
        raise _UsageError("give a SCENARIO (a .toml file or a bundled name) or --list")
    scn = _load("run", args.scenario)
    runner = _runner(scn, args.step)
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
    ram = sum(s for _, s in scn.machine_kwargs["ram"]) \
        if isinstance(scn.machine_kwargs["ram"], list) else scn.machine_kwargs["ram"]
    if size > ram:
        raise _UsageError(f"{kind} {value}: larger than the machine's {ram >> 20} MiB of RAM")
    seed = scn.machine_kwargs.get("seed", 0) + len(scn.steps) + (1000 if kind == "initrd" else 0)
    return Blob(kind, size=size, seed=seed)


def _load_step(args: argparse.Namespace, scn: Any, runner: Any) -> Any:
    from .kernel.kexec import uapi
    from .scenario import Step
    flags = 0
    if args.p:
        flags |= uapi.KEXEC_FILE_ON_CRASH
    if args.no_cma:
        flags |= uapi.KEXEC_FILE_NO_CMA
    if args.d:
        flags |= uapi.KEXEC_FILE_DEBUG
    initrd = _cli_blob(args.initrd, "initrd", scn) if args.initrd else None
    if initrd is None:
        flags |= uapi.KEXEC_FILE_NO_INITRAMFS  # as kexec-tools does without --initrd
    kernel = _cli_blob(args.kernel, "kernel", scn)
    cmdline = args.command_line or ""
    if args.reuse_cmdline and not runner.machine.halted:
        cmdline = runner.machine.cmdline
    if args.append:
        cmdline = f"{cmdline} {args.append}".strip()
    return Step(len(scn.steps) + 1, "load", {"kernel": kernel, "initrd": initrd,
                                              "cmdline": cmdline, "flags": flags})


def _refusal(syscall: str, res: Any) -> None:
    """kexec-tools style: ``kexec_file_load failed: Invalid argument`` and the reasons."""
    print(f"{syscall} failed: {res.error}", file=sys.stderr)
    for reason in res.reasons:
        print(f"  {reason}", file=sys.stderr)


def _verb_report(verb: str, scn: Any, runner: Any, results: Sequence[Any],
                 args: argparse.Namespace) -> int:
    """Report the scenario's steps in one line and the verb's own steps in full."""
    failed_setup = runner.failed
    runner.results.extend(results)
    bad = [r for r in results if not r.ok]
    if args.json:
        doc = _scenario_json(scn, runner)
        doc["verb"] = verb
        doc["result"] = [r.to_json() for r in results]
        _print_json(doc)
    else:
        print(_machine_line(scn, runner.machine))
        setup = runner.results[:len(runner.results) - len(results)]
        if failed_setup:
            print(f"scenario steps: {len(setup)}, some not ok:")
            _steps_table([r for r in setup if not r.ok])
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
    return EXIT_PROBLEM if bad or failed_setup else EXIT_OK


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
    scn = _load("load", args.scenario)
    runner = _runner(scn)
    step = _load_step(args, scn, runner)
    return _verb_report("load", scn, runner, [runner.execute(step)], args)


def _verb_exec(args: argparse.Namespace) -> int:
    """``pykern exec``: load KERNEL (if given) then reboot into it (kexec -e)."""
    from .scenario import Step
    if args.p:
        raise _UsageError("-p loads a crash kernel, which only a panic boots: use "
                          "`pykern load -p` then `pykern panic`")
    scn = _load("exec", args.scenario)
    runner = _runner(scn)
    results = []
    if args.kernel is not None:
        load = runner.execute(_load_step(args, scn, runner))
        results.append(load)
        if not load.ok:
            return _verb_report("exec", scn, runner, results, args)
    results.append(runner.execute(Step(len(scn.steps) + len(results) + 1, "exec")))
    return _verb_report("exec", scn, runner, results, args)


def _verb_unload(args: argparse.Namespace) -> int:
    """``pykern unload``: kexec -u (with -p: the crash image)."""
    from .scenario import Step
    scn = _load("unload", args.scenario)
    runner = _runner(scn)
    step = Step(len(scn.steps) + 1, "unload", {"crash": bool(args.p)})
    return _verb_report("unload", scn, runner, [runner.execute(step)], args)


def _verb_panic(args: argparse.Namespace) -> int:
    """``pykern panic``: a kernel panic on the scenario's machine."""
    from .scenario import Step
    scn = _load("panic", args.scenario)
    runner = _runner(scn)
    step = Step(len(scn.steps) + 1, "panic")
    return _verb_report("panic", scn, runner, [runner.execute(step)], args)


def _cat(args: argparse.Namespace) -> int:
    """``pykern cat``: print one procfs/sysfs/debugfs file after step N."""
    scn = _load("cat", args.scenario)
    runner = _runner(scn, args.step)
    m = runner.machine
    step = len(runner.results)
    if m.halted:
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
        doc.update(path=args.path, after_step=step, text=text)
        _print_json(doc)
    else:
        sys.stdout.write(text)
    return EXIT_PROBLEM if runner.failed else EXIT_OK


def _map(args: argparse.Namespace) -> int:
    """``pykern map``: draw the physical memory map into a PNG or SVG."""
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
    if args.scenario is None:
        device = "gic" if _gic_available() else "none"
        scn = demo_scenario("arm64", device)
    else:
        scn = _load("map", args.scenario)
    if args.modes:
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
    failed = any(r.failed for _, r in runners)
    if args.json:
        _print_json({"output": str(out), "format": fmt, "scenario": scn.name,
                     "after_step": step, "panels": [p.to_json() for p in panels],
                     "ok": not failed})
    else:
        print(f"wrote {out} ({fmt}): {len(panels)} panel{'s' if len(panels) > 1 else ''}, "
              f"{title}")
    return EXIT_PROBLEM if failed else EXIT_OK


def _fuzz(argv: Sequence[str]) -> int:
    """``pykern fuzz``: hand everything to pykern.testing.fuzz.main."""
    try:
        fuzz = importlib.import_module("pykern.testing.fuzz")
    except ImportError as exc:
        what = "pykern.testing.fuzz is not available in this pykern" \
            if exc.name in ("pykern.testing.fuzz", "pykern.testing") else \
            f"pykern fuzz needs {exc.name or exc}: pip install 'pykern-emu[test]'"
        _err("fuzz", what)
        return EXIT_USAGE
    rc = fuzz.main(list(argv))
    return int(rc or 0)


# -------------------------------------------------------------------------------- parser
def _scenario_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a scenario .toml file or a bundled name (pykern run --list)")


def _load_options(p: argparse.ArgumentParser, *, kernel_optional: bool) -> None:
    p.add_argument("-s", action="store_true",
                   help="use kexec_file_load (always: the only syscall pykern models)")
    p.add_argument("-p", "--load-panic", dest="p", action="store_true",
                   help="load a crash kernel (KEXEC_FILE_ON_CRASH)")
    p.add_argument("--no-cma", action="store_true", help="KEXEC_FILE_NO_CMA")
    p.add_argument("--initrd", "--ramdisk", metavar="FILE|SIZE",
                   help="an initrd file, or a size such as 32M for a synthetic one")
    p.add_argument("--command-line", metavar="STR", help="the new kernel's command line")
    p.add_argument("--append", metavar="STR", help="appended to the command line")
    p.add_argument("--reuse-cmdline", action="store_true",
                   help="start from the running kernel's command line")
    p.add_argument("-d", "--debug", dest="d", action="store_true",
                   help="KEXEC_FILE_DEBUG: print the kernel's placement messages")
    p.add_argument("kernel", metavar="KERNEL", nargs="?" if kernel_optional else None,
                   help="an image file, or a size such as 16M for a synthetic image")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``pykern`` command."""
    parser = argparse.ArgumentParser(prog="pykern", description="Linux memory and kexec, "
                                     "emulated in Python.")
    from . import DIST_NAME, __version__
    parser.add_argument("--version", action="version",
                        version=f"{DIST_NAME} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")

    demo = sub.add_parser("demo", parents=[common],
                          help="one image loaded with CMA and with KEXEC_FILE_NO_CMA, "
                               "rebooted under a GIC that ignores shutdown, side by side "
                               "(exit 1 only if the CMA run is damaged)")
    demo.add_argument("--ram", default="1G")
    demo.add_argument("--arch", default="arm64", choices=("arm64", "x86_64"))
    demo.add_argument("--cmdline", default="cma=256M console=ttyAMA0")
    demo.add_argument("--kernel-mib", type=int, default=16)
    demo.add_argument("--initrd-mib", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", choices=("gic", "none"), default=None,
                      help="a GICv3 that ignores shutdown (default: gic on arm64 when "
                           "pykern.drivers.gic exists)")
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", parents=[common], help="execute a scenario file")
    run.add_argument("scenario", metavar="SCENARIO", nargs="?",
                     help="a scenario .toml file or a bundled name")
    run.add_argument("--list", action="store_true", help="list the bundled scenarios")
    run.add_argument("--step", type=int, metavar="N", help="stop after step N")
    run.set_defaults(func=_run)

    load = sub.add_parser("load", parents=[common],
                          help="kexec -s -l: load a kernel on a scenario's machine")
    _scenario_arg(load)
    _load_options(load, kernel_optional=False)
    load.set_defaults(func=_verb_load)

    exe = sub.add_parser("exec", parents=[common],
                         help="load KERNEL (if given) and reboot into it (kexec -e)")
    _scenario_arg(exe)
    _load_options(exe, kernel_optional=True)
    exe.set_defaults(func=_verb_exec)

    unload = sub.add_parser("unload", parents=[common], help="kexec -u")
    _scenario_arg(unload)
    unload.add_argument("-p", "--load-panic", dest="p", action="store_true",
                        help="unload the crash kernel")
    unload.set_defaults(func=_verb_unload)

    panic = sub.add_parser("panic", parents=[common],
                           help="panic: boot the crash kernel, or halt")
    _scenario_arg(panic)
    panic.set_defaults(func=_verb_panic)

    cat = sub.add_parser("cat", parents=[common],
                         help="print a procfs/sysfs/debugfs file of a scenario's machine")
    _scenario_arg(cat)
    cat.add_argument("path", metavar="PATH", help="e.g. /proc/iomem")
    cat.add_argument("--step", type=int, metavar="N",
                     help="after step N (0 = at boot; default: after all steps)")
    cat.set_defaults(func=_cat)

    mp = sub.add_parser("map", parents=[common],
                        help="draw the physical memory map (needs pykern-emu[plot])")
    mp.add_argument("scenario", metavar="SCENARIO", nargs="?",
                    help="a scenario (default: the demo's machine)")
    mp.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="FILE.png or FILE.svg")
    mp.add_argument("--step", type=int, metavar="N", help="after step N (default: all)")
    mp.add_argument("--modes", action="store_true",
                    help="draw the CMA and the NO_CMA run one above the other")
    mp.set_defaults(func=_map)

    sub.add_parser("fuzz", add_help=False, help="property-based fuzzing (pykern.testing.fuzz)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pykern`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fuzz":
        return _fuzz(argv[1:])
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        # argparse cannot give an optional positional after options (`exec S --no-cma 4M`,
        # bpo-14191): an exec's KERNEL may come back as the one leftover word.
        if (extras and args.command == "exec" and args.kernel is None and len(extras) == 1
                and not extras[0].startswith("-")):
            args.kernel, extras = extras[0], []
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        rc: int = args.func(args)
    except _UsageError as exc:
        _err(args.command, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `pykern demo | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return rc



if __name__ == "__main__":
    sys.exit(main())
