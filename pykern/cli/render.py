"""What the ``pykern`` verbs print: tables (rich on a terminal, plain text otherwise), JSON,
error lines on stderr, the step tables of a scenario, and the exit codes."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "UsageError",
           "format_mib", "machine_line", "print_error", "print_json", "print_refusal",
           "print_report", "print_verb_result", "render_table", "rich_console", "scenario_json",
           "setup_notes", "steps_table"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A user mistake on the command line: message to stderr, exit 2."""


def rich_console() -> Any:
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


def print_json(doc: object) -> None:
    """``--json``: one document on stdout (numbers stay JSON numbers)."""
    print(json.dumps(doc, indent=2, default=str))


def print_report(report: dict[str, Any], as_json: bool,
                 print_text: Callable[[dict[str, Any], TextIO], None]) -> None:
    """A campaign's report on stdout (``pykern fuzz``, ``pykern soak``): with ``as_json``
    one JSON object on one line, keys sorted, else ``print_text(report, sys.stdout)``."""
    if as_json:
        json.dump(report, sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print_text(report, sys.stdout)
    sys.stdout.flush()


def print_error(verb: str, message: str) -> None:
    """``pykern VERB: message`` on stderr."""
    print(f"pykern {verb}: {message}", file=sys.stderr)


_MiB = 1 << 20


def format_mib(n: int) -> str:
    """``16 MiB``, or ``1.5 MiB`` for a size that is not a whole number of MiB."""
    return f"{n >> 20} MiB" if n % _MiB == 0 else f"{n / _MiB:.1f} MiB"


def machine_line(scn: Any, m: Any) -> str:
    """The one-line description of a scenario's machine that heads a verb's text output."""
    banks = m.banks
    total = sum(size for _, size in banks)
    devs = ", ".join(m.devices) or "none"
    now = "halted" if m.halted else f"now generation {m.generation}"
    return (f"scenario {scn.name} ({scn.file}): {m.arch}, {total >> 20} MiB RAM in "
            f"{len(banks)} bank{'s' if len(banks) != 1 else ''}, boot cmdline "
            f"{scn.machine_kwargs.get('cmdline', '')!r}, devices {devs}; {now}")


def _step_cell(res: Any) -> str:
    """The details cell of a step's row: summary, lines, note, reasons and any output."""
    parts = [res.summary, *res.lines]
    if res.note:
        parts.append(f"note: {res.note}")
    parts += [f"reason: {r}" for r in res.reasons]
    if res.output is not None:
        parts += res.output.rstrip("\n").split("\n")
    return "\n".join(p for p in parts if p)


def steps_table(results: Sequence[Any], title: str | None = None) -> None:
    """One row per :class:`~pykern.scenario.StepResult`."""
    rows = [[r.index, r.action, r.status, _step_cell(r)] for r in results]
    render_table(["step", "action", "result", "details"], rows, title=title,
                 console=rich_console())


def scenario_json(scn: Any, runner: Any) -> dict[str, Any]:
    """The ``--json`` document of a scenario run: the machine now and every step."""
    m = runner.machine
    return {"scenario": scn.name, "file": scn.file, "description": scn.description,
            "machine": {"arch": m.arch, "banks": [list(b) for b in m.banks],
                        "cmdline": m.cmdline, "devices": list(m.devices),
                        "generation": m.generation, "halted": bool(m.halted)},
            "steps": [r.to_json() for r in runner.results], "ok": not runner.failed}


def setup_notes(verb: str, scn: Any, setup: Sequence[Any], label: str = "") -> None:
    """Earlier scenario steps that failed or found corruption, on stderr: reported, but they
    are not the exit code of ``verb``, which describes what ``verb`` itself did."""
    run = f" ({label} run)" if label else ""
    for r in setup:
        if not r.ok:
            print_error(verb, f"note: {scn.name}{run} step {r.index} ({r.action}) {r.status}: "
                              f"{r.summary} (an earlier scenario step: not this command's "
                              f"result)")


def print_refusal(syscall: str, res: Any) -> None:
    """kexec-tools style: ``kexec_file_load failed: Invalid argument`` and the reasons."""
    print(f"{syscall} failed: {res.error}", file=sys.stderr)
    for reason in res.reasons:
        print(f"  {reason}", file=sys.stderr)


def print_verb_result(verb: str, res: Any) -> None:
    """The text report of one of the verb's own steps: a load's segments and entry list, a
    reboot's hot phase and check, or the step's summary."""
    d = res.details
    console = rich_console()
    if res.action == "load" and res.status == "ok":
        print(f"{verb}: {res.summary}")
        if res.lines:
            print(f"  {res.lines[0]}")
        if d.get("cmdline"):
            print(f"  command line: {d['cmdline']!r}")
        from ..scenario import placement
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
