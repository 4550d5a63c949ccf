"""The verbs that act on one scenario's machine: ``run``, ``boot``, the kexec-tools-like
``load``, ``exec``, ``unload`` and ``panic``, ``cat`` and ``map``; ``--state FILE`` sessions."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .demo import gic_available
from .render import (EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError, format_mib, machine_line,
                     print_error, print_json, print_refusal, print_verb_result, render_table,
                     rich_console, scenario_json, setup_notes, steps_table)

__all__ = ["save_state", "verb_boot", "verb_cat", "verb_exec", "verb_load", "verb_map",
           "verb_panic", "verb_run", "verb_unload"]


def _load(verb: str, ref: str) -> Any:
    """The scenario, or UsageError with the ScenarioError's file:line: key: message."""
    from ..scenario import ScenarioError, load_scenario
    try:
        return load_scenario(ref)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None


def _check_step(scn: Any, upto: int | None, zero: str) -> None:
    """``--step N`` must name a step of ``scn`` (0: the machine before any step)."""
    if upto is not None and not 0 <= upto <= len(scn.steps):
        raise UsageError(f"--step {upto}: {scn.name} has steps 1..{len(scn.steps)} "
                         f"(0 = {zero})")


def _runner(scn: Any, upto: int | None = None, **kw: Any) -> Any:
    """Boot the scenario's machine and run its steps 1..upto."""
    from ..scenario import Runner, ScenarioError
    _check_step(scn, upto, "right after boot")
    try:
        runner = Runner(scn, **kw)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    runner.run(upto)
    return runner


# ------------------------------------------------------------------ machine snapshots
def _restore(path: str) -> Any:
    """The machine saved in ``--state`` FILE; a file that is not one is a usage error."""
    from ..machine import Machine
    try:
        return Machine.restore(path)
    except ValueError as exc:                   # SnapshotError included
        raise UsageError(f"--state {path}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"--state {path}: {exc.strerror or exc}") from None


def _on_machine(scn: Any, m: Any, path: str) -> Any:
    """``scn`` (or an empty scenario) describing the restored machine ``m`` of ``path``."""
    from dataclasses import replace
    from ..scenario import Scenario
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
        raise UsageError(f"--state {state}: no such file (pykern boot SCENARIO --state "
                         f"{state} makes one), and {args.scenario!r} alone is taken as the "
                         f"SCENARIO")
    if restored is None:
        if args.scenario is None:
            hint = "" if state is None else f", or an existing --state file ({state} is not one)"
            raise UsageError(f"give a SCENARIO (a .toml file or a bundled name){hint}")
        return _load(verb, args.scenario), None
    assert state is not None
    scn = _load(verb, args.scenario) if args.scenario is not None else None
    return _on_machine(scn, restored, state), restored


def _session_runner(args: argparse.Namespace, scn: Any, restored: Any,
                    upto: int | None = None, **kw: Any) -> Any:
    """Run the scenario's steps 1..upto, on the restored machine when there is one; the
    runner is kept on ``args`` so that :func:`save_state` saves its machine to ``--state``
    after the verb."""
    if restored is None:
        runner = _runner(scn, upto, **kw)
    else:
        from ..scenario import Runner
        _check_step(scn, upto, "the machine as restored")
        runner = Runner(scn, machine=restored, **kw)
        runner.run(upto)
    args.session_runner = runner
    return runner


def save_state(verb: str, args: argparse.Namespace) -> int:
    """After the verb: write its machine back to ``--state`` FILE (exit 2 if that fails)."""
    runner = getattr(args, "session_runner", None)
    state = getattr(args, "state", None)
    if runner is None or state is None:
        return EXIT_OK
    try:
        runner.machine.save(state)
    except OSError as exc:
        print_error(verb, f"--state {state}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


def verb_run(args: argparse.Namespace) -> int:
    """``pykern run``: list the bundled scenarios or execute one; the exit code is the
    scenario's outcome (1 when a step failed or found corruption)."""
    from ..scenario import bundled_scenarios
    if args.list:
        found = bundled_scenarios()
        if args.json:
            print_json([{"name": n, "description": d} for n, d in found])
        else:
            render_table(["scenario", "description"], found, console=rich_console())
        return EXIT_OK
    if args.scenario is None and args.state is None:
        raise UsageError("give a SCENARIO (a .toml file or a bundled name) or --list")
    scn, restored = _session("run", args)
    runner = _session_runner(args, scn, restored, args.step)
    if args.json:
        print_json(scenario_json(scn, runner))
    else:
        print(machine_line(scn, runner.machine))
        if scn.description:
            print(scn.description)
        print()
        steps_table(runner.results)
        bad = [r for r in runner.results if not r.ok]
        print(f"\n{len(runner.results)} steps, " + (
            f"{len(bad)} not ok: " + ", ".join(f"step {r.index} ({r.status})" for r in bad)
            if bad else "all ok"))
    return EXIT_PROBLEM if runner.failed else EXIT_OK


def verb_boot(args: argparse.Namespace) -> int:
    """``pykern boot``: power on the scenario's machine and run its steps; with ``--state``
    FILE the machine is saved there for the verbs that follow (an existing FILE is replaced:
    booting starts a new machine).  The exit code is the scenario's outcome, as for run."""
    scn = _load("boot", args.scenario)
    runner = _runner(scn, args.step)
    args.session_runner = runner
    if args.json:
        doc = scenario_json(scn, runner)
        doc["state"] = args.state
        print_json(doc)
    else:
        print(machine_line(scn, runner.machine))
        if runner.results:
            steps_table(runner.results)
        print(f"saved to {args.state}" if args.state else
              "not saved (give --state FILE to keep this machine for later verbs)")
    return EXIT_PROBLEM if runner.failed else EXIT_OK


# --------------------------------------------------------------- kexec-tools-like verbs
def _cli_blob(value: str, kind: str, scn: Any) -> Any:
    """KERNEL / --initrd: an existing file, else a size meaning a synthetic image."""
    from ..lib.cmdline import parse_size
    from ..scenario import Blob
    path = Path(os.path.expanduser(value))
    if path.is_file():
        return Blob(kind, file=path)
    try:
        size = parse_size(value, kind)
    except ValueError:
        raise UsageError(f"{kind} {value!r}: no such file, and not a size such as 16M"
                         ) from None
    ram = scn.ram_bytes
    if size > ram:
        raise UsageError(f"{kind} {value}: larger than the machine's {ram >> 20} MiB of RAM")
    seed = scn.machine_kwargs.get("seed", 0) + len(scn.steps) + (1000 if kind == "initrd" else 0)
    return Blob(kind, size=size, seed=seed)


def _load_blobs(args: argparse.Namespace, scn: Any) -> tuple[Any, Any]:
    """KERNEL and --initrd as Blobs; sizes that can never fit the machine are refused here,
    before the scenario's machine is booted or any image is built."""
    initrd = _cli_blob(args.initrd, "initrd", scn) if args.initrd else None
    kernel = _cli_blob(args.kernel, "kernel", scn)
    both = kernel.nbytes() + (initrd.nbytes() if initrd is not None else 0)
    ram = scn.ram_bytes
    if both > ram:
        what = f"kernel {args.kernel}" + (f" + initrd {args.initrd}" if initrd else "")
        raise UsageError(f"{what} ({format_mib(both)}) can never fit in the machine's "
                         f"{format_mib(ram)} of RAM")
    return kernel, initrd


def _load_step(args: argparse.Namespace, blobs: tuple[Any, Any], runner: Any) -> Any:
    """The load step the verb adds after the scenario's steps (kexec-tools' options)."""
    from ..kernel.kexec import uapi
    from ..scenario import Step
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
        doc = scenario_json(scn, runner)
        doc["verb"] = verb
        doc["result"] = [r.to_json() for r in results]
        doc["scenario_ok"] = all(r.ok for r in setup)
        doc["ok"] = not bad
        print_json(doc)
        setup_notes(verb, scn, setup)
    else:
        print(machine_line(scn, runner.machine))
        not_ok = [r for r in setup if not r.ok]
        if not_ok:
            print(f"scenario steps: {len(setup)}, {len(not_ok)} not ok (reported here; "
                  f"the exit code is {verb}'s own):")
            steps_table(not_ok)
        else:
            print(f"scenario steps: {len(setup)}, all ok")
        print()
        for res in results:
            print_verb_result(verb, res)
    for res in bad:
        if res.errno is not None:
            print_refusal("kexec_file_load" if res.action in ("load", "unload")
                          else "reboot(LINUX_REBOOT_CMD_KEXEC)", res)
        else:
            print_error(verb, res.error or res.summary)
    return EXIT_PROBLEM if bad else EXIT_OK


def verb_load(args: argparse.Namespace) -> int:
    """``pykern load``: kexec -s -l KERNEL on the scenario's machine."""
    scn, restored = _session("load", args, own="kernel")
    if args.kernel is None:
        raise UsageError("give the KERNEL to load (a file or a size such as 16M)")
    blobs = _load_blobs(args, scn)
    runner = _session_runner(args, scn, restored)
    step = _load_step(args, blobs, runner)
    return _verb_report("load", scn, runner, [runner.execute(step)], args)


def verb_exec(args: argparse.Namespace) -> int:
    """``pykern exec``: load KERNEL (if given) then reboot into it (kexec -e)."""
    from ..scenario import Step
    if args.p:
        raise UsageError("-p loads a crash kernel, which only a panic boots: use "
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


def verb_unload(args: argparse.Namespace) -> int:
    """``pykern unload``: kexec -u (with -p: the crash image)."""
    from ..scenario import Step
    scn, restored = _session("unload", args)
    runner = _session_runner(args, scn, restored)
    step = Step(len(runner.results) + 1, "unload", {"crash": bool(args.p)})
    return _verb_report("unload", scn, runner, [runner.execute(step)], args)


def verb_panic(args: argparse.Namespace) -> int:
    """``pykern panic``: a kernel panic on the scenario's machine."""
    from ..scenario import Step
    scn, restored = _session("panic", args)
    runner = _session_runner(args, scn, restored)
    step = Step(len(runner.results) + 1, "panic")
    return _verb_report("panic", scn, runner, [runner.execute(step)], args)


def verb_cat(args: argparse.Namespace) -> int:
    """``pykern cat``: print one procfs/sysfs/debugfs file after step N (exit 1 only when
    the file cannot be read)."""
    scn, restored = _session("cat", args, own="path")
    if args.path is None:
        raise UsageError("give the PATH to read, e.g. /proc/iomem")
    runner = _session_runner(args, scn, restored, args.step)
    m = runner.machine
    step = len(runner.results)
    if m.halted:
        setup_notes("cat", scn, runner.results)
        print_error("cat", f"after step {step} the machine is halted: no files to read")
        return EXIT_PROBLEM
    try:
        text = m.read(args.path)
    except FileNotFoundError:
        print_error("cat", f"{args.path}: No such file or directory")
        return EXIT_PROBLEM
    except (OSError, ValueError, RuntimeError) as exc:
        print_error("cat", f"{args.path}: {exc}")
        return EXIT_PROBLEM
    if args.json:
        doc = scenario_json(scn, runner)
        doc.update(path=args.path, after_step=step, text=text, scenario_ok=doc["ok"], ok=True)
        print_json(doc)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    setup_notes("cat", scn, runner.results)
    return EXIT_OK


def verb_map(args: argparse.Namespace) -> int:
    """``pykern map``: draw the physical memory map into a PNG or SVG (exit 0 once the
    picture is written; what the scenario's steps found is in the picture and on stderr)."""
    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise UsageError(f"-o {args.output}: the picture's format comes from its suffix, "
                         f".png or .svg")
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        print_error("map", "matplotlib is not installed: pip install 'pykern-emu[plot]'")
        return EXIT_USAGE
    from . import map as cli_map
    from ..kernel.kexec import uapi
    from ..scenario import demo_scenario
    modes = args.modes
    restored = None
    if args.state is not None and Path(args.state).exists():
        if modes:
            raise UsageError("--modes runs the scenario twice from its boot: it cannot "
                             "start from a --state machine")
        scn, restored = _session("map", args)
    elif args.scenario is None:
        device = "gic" if gic_available() else "none"
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
        print_error("map", f"{args.output}: {exc.strerror or exc}")
        return EXIT_USAGE
    scenario_ok = not any(r.failed for _, r in runners)
    if args.json:
        print_json({"output": str(out), "format": fmt, "scenario": scn.name,
                     "after_step": step, "panels": [p.to_json() for p in panels],
                     "scenario_ok": scenario_ok, "ok": True})
    else:
        print(f"wrote {out} ({fmt}): {len(panels)} panel{'s' if len(panels) > 1 else ''}, "
              f"{title}")
    for label, r in runners:
        setup_notes("map", scn, r.results, label)
    return EXIT_OK
