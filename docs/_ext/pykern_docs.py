"""Sphinx extension that generates the parts of the pykern docs that come from the code.

At ``builder-inited`` (before any source is read) it writes into ``docs/_generated/``:

* ``cli.md`` - every verb and option of ``pykern``, from :func:`pykern.cli.build_parser`
  and :func:`pykern.testing.fuzz.build_parser`;
* ``scenario-keys.md`` - the scenario file format, from ``reference/scenario_keys.toml``,
  after checking that it documents exactly the keys :mod:`pykern.scenario` accepts;
* ``rules.md`` - the rule index (``tools/rule_index.py``), after checking that every rule ID
  cited in the code has an entry;
* ``findings/<scenario>.md`` - what each finding's shipped scenario does when run now;
* ``img/*.svg`` - ``pykern map`` pictures.

Every mismatch is a Sphinx warning, so ``sphinx -W`` fails the build.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import re
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOG = logging.getLogger(__name__)

#: ``pykern map`` pictures: file name -> arguments after ``map``
MAPS: dict[str, list[str]] = {
    "demo": [],
    "finding-gic-modes": ["finding-gic-cma-clean", "--modes"],
    "finding-adopted-prop-fill": ["finding-adopted-prop-fill"],
    "finding-cma-over-old-tables-gen1": ["finding-cma-over-old-tables", "--step", "4"],
    "finding-cma-over-old-tables": ["finding-cma-over-old-tables"],
}

#: the scenarios whose results the findings page shows
FINDINGS = ("finding-cma-copies-nothing", "finding-gic-walk-corrupted", "finding-gic-cma-clean",
            "finding-gic-walk-efi", "finding-adopted-prop-fill", "finding-cma-over-old-tables",
            "finding-cma-over-old-tables-efi")


def _write(path: Path, text: str) -> None:
    """Write only when the content changed, so Sphinx does not rebuild needlessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------- the CLI
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    out: dict[str, tuple[argparse.ArgumentParser, str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out[name] = (sub, helps.get(name, ""))
    return out


def _option_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            name = ", ".join(f"`{s}`" for s in a.option_strings)
            if a.nargs != 0:
                meta = a.metavar or (("{" + ",".join(map(str, a.choices)) + "}")
                                     if a.choices else a.dest.upper())
                name += f" `{meta}`"
        else:
            name = f"`{a.metavar or a.dest}`" + (" (optional)" if a.nargs == "?" else "")
        if isinstance(a, argparse._VersionAction):
            default = ""
        elif a.nargs == 0:
            default = "off"
        elif a.default is None or a.default == argparse.SUPPRESS:
            default = "required" if a.required else "—"
        else:
            default = f"`{a.default}`"
        choices = ", ".join(f"`{c}`" for c in a.choices) if a.choices else ""
        rows.append([name, choices, default, a.help or ""])
    return rows


def cli_reference() -> str:
    """The ``pykern`` command line reference, generated from the argparse parsers."""
    from pykern import cli
    parser = cli.build_parser()
    out = ["<!-- generated from pykern.cli.build_parser() at build time -->", ""]
    out += ["## `pykern`", "", "```text", parser.format_usage().strip(), "```", ""]
    out += [parser.description or "", ""]
    rows = _option_rows(parser)
    if rows:
        out += ["| option | choices | default | meaning |", "|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
        out.append("")
    subs = _subparsers(parser)
    for name, (sub, help_text) in subs.items():
        if name == "fuzz":
            try:
                from pykern.testing import fuzz
                sub = fuzz.build_parser()
            except ImportError as exc:  # the test extra is missing
                LOG.warning("pykern docs: cannot document `pykern fuzz`: %s", exc)
                continue
        out += [f"## `pykern {name}`", "", _cell(help_text), "", "```text",
                sub.format_usage().replace("usage: ", "").strip(), "```", ""]
        if sub.description and sub.description.strip() != help_text.strip():
            out += [sub.description.strip(), ""]
        rows = _option_rows(sub)
        if rows:
            out += ["| argument | choices | default | meaning |", "|---|---|---|---|"]
            out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
            out.append("")
        if not (help_text or "").strip():
            LOG.warning("pykern docs: `pykern %s` has no help text in pykern/cli/parser.py",
                        name)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------ scenario keys
def _sig_rows(func: Any, skip: tuple[str, ...] = ()) -> list[list[str]]:
    rows = []
    for p in inspect.signature(func).parameters.values():
        if p.name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = "required" if p.default is p.empty else f"`{p.default!r}`"
        rows.append([f"`{p.name}`", default])
    return rows


def scenario_reference(data_file: Path) -> str:
    """Tables of every scenario key, checked against what :mod:`pykern.scenario` accepts."""
    from pykern import images, scenario
    data = tomllib.loads(data_file.read_text(encoding="utf-8"))

    def check(section: str, documented: list[str], accepted: object) -> None:
        if not isinstance(accepted, (tuple, list, dict)):
            LOG.warning("pykern docs: cannot read the %s keys from pykern.scenario", section)
            return
        accepted = list(accepted)
        for key in accepted:
            if key not in documented:
                LOG.warning("pykern docs: scenario key %s.%s is accepted by pykern.scenario "
                            "but not documented in %s", section, key, data_file.name)
        for key in documented:
            if key not in accepted:
                LOG.warning("pykern docs: scenario key %s.%s is documented in %s but "
                            "pykern.scenario does not accept it", section, key, data_file.name)

    check("top", list(data["top"]), scenario.TOP_KEYS)
    check("machine", list(data["machine"]), scenario.MACHINE_KEYS)
    check("step", list(data["step"]), scenario.COMMON_STEP_KEYS)
    actions = scenario.ACTIONS
    check("action", list(data["action"]), actions)
    for action, keys in actions.items():
        documented = [k for k in data.get("action_keys", {}) if
                      action in data["action_keys"][k].get("actions", [])]
        check(f"steps[{action}]", documented, keys)
    devices = scenario.DEVICE_TYPES
    check("device type", list(data["device"]), devices)

    def table(section: str, rows: dict[str, Any]) -> list[str]:
        out = ["| key | type | default | example | meaning |", "|---|---|---|---|---|"]
        for key, f in rows.items():
            default = str(f.get("default", ""))
            if re.fullmatch(r'"[^"]*"|\d+|\[\]|true|false', default):
                default = f"`{default}`"          # a TOML literal, not prose
            out.append("| " + " | ".join(_cell(x) for x in (
                f"`{key}`", f.get("type", ""), default,
                f"`{f['example']}`" if f.get("example") else "", f.get("doc", ""))) + " |")
        return out + [""]

    out = ["<!-- generated from docs/reference/scenario_keys.toml, checked against "
           "pykern.scenario at build time -->", ""]
    out += ["### Top level", ""] + table("top", data["top"])
    out += ["### `[machine]`", ""] + table("machine", data["machine"])
    out += ["### `[[machine.cma_areas]]`", ""] + table("cma_areas", data["cma_areas"])
    out += ["### `[[machine.devices]]`", "",
            "`type` picks the device; every other key is a keyword argument of its "
            "constructor (defaults below, meanings in the API reference).", ""]
    for kind, f in data["device"].items():
        modname, clsname = devices.get(kind, ("?", "?")) if isinstance(devices, dict) \
            else ("?", "?")
        out += [f"#### `type = \"{kind}\"`: {f['doc']}", ""]
        try:
            mod = __import__(modname, fromlist=[clsname])
            cls = getattr(mod, clsname)
            out += [f"Keys: the arguments of {{class}}`{modname}.{clsname}`.", "",
                    "| key | default |", "|---|---|"]
            out += ["| " + " | ".join(r) + " |" for r in _sig_rows(cls, ("self",))] + [""]
        except (ImportError, AttributeError) as exc:
            LOG.warning("pykern docs: device type %s: %s", kind, exc)
        if f.get("example"):
            out += ["```toml", f["example"].strip(), "```", ""]
    out += ["### `[[steps]]`: keys every step takes", ""] + table("step", data["step"])
    out += ["### Actions", "", "| action | keys | what it does |", "|---|---|---|"]
    for action, f in data["action"].items():
        keys = ", ".join(f"`{k}`" for k in (actions.get(action, ()) if isinstance(actions, dict)
                                            else ()))
        out.append(f"| `{action}` | {keys or '—'} | {_cell(f['doc'])} |")
    out += ["", "### Keys of the actions", ""]
    rows = {k: dict(v, doc=v.get("doc", "") + " (" + ", ".join(v.get("actions", [])) + ")")
            for k, v in data["action_keys"].items()}
    out += table("action_keys", rows)
    out += ["### Kernel and initrd tables", "",
            "`kernel` and `initrd` take a size (`\"16M\"`: a synthetic image of the machine's "
            "architecture, or a synthetic initrd), or a table:", ""]
    out += table("blob", data["blob"])
    for title, func in (("arm64 `Image`", images.arm64_image), ("x86_64 `bzImage`",
                                                                 images.bzimage)):
        out += [f"Header options of a synthetic {title} "
                f"({{func}}`pykern.images.{func.__name__}`), allowed in a `kernel` table:", "",
                "| key | default |", "|---|---|"]
        out += ["| " + " | ".join(r) + " |" for r in _sig_rows(func, ("size", "seed"))] + [""]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- rule index
def rule_index(root: Path) -> str:
    """The rule index page; every cited ID without an entry is a warning."""
    import rule_index as ri
    entries = ri.load_entries(root / "docs" / "rules")
    missing = ri.resolve(ri.scan(root), entries)
    for key in sorted(missing):
        places = sorted({f"{c.path}:{c.line}" for c in missing[key]})
        LOG.warning("rule index: %s is cited (%s) but has no entry in docs/rules/*.toml",
                    key, ", ".join(places[:3]))
    return ri.render_page(entries)


def quirks_table(root: Path) -> str:
    """``pykern.quirks.QUIRKS`` with each rule's upstream commit from the rule index."""
    import rule_index as ri
    from pykern.quirks import QUIRKS
    entries = ri.load_entries(root / "docs" / "rules")
    out = ["<!-- generated from pykern.quirks.QUIRKS at build time -->", "",
           "| fix name | rule | the quirk, and the fix | upstream |", "|---|---|---|---|"]
    for name, (rule, text) in QUIRKS.items():
        ns, local = ("MM", rule[3:]) if rule.startswith("MM ") else \
            ("GIC", rule[4:]) if rule.startswith("GIC-") else ("K", rule)
        entry = entries.get((ns, local))
        if entry is None:
            LOG.warning("pykern docs: quirk %s cites %s, which has no rule index entry",
                        name, rule)
            link, commit = rule, ""
        else:
            link = f"{{ref}}`{rule} <{ri._anchor(ns, local)}>`"
            commit = entry.commit
            if name not in entry.quirk:
                LOG.warning("pykern docs: rule %s does not name quirk %s in docs/rules",
                            rule, name)
        out.append(f"| `{name}` | {link} | {_cell(text)} | {_cell(commit)} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ findings
def finding_results(name: str) -> str:
    """What the shipped scenario ``name`` does today, step by step."""
    from pykern.scenario import Runner, load_scenario
    scn = load_scenario(name)
    runner = Runner(scn)
    runner.run()
    out = [f"<!-- generated by running the bundled scenario {name} at build time -->", "",
           "| step | action | result | hot-phase bytes | verified | corrupted runs "
           "| scribbles | where |", "|---|---|---|---|---|---|---|---|"]
    for r in runner.results:
        d = r.details
        where = ""
        if r.action == "load" and "segments" in d:
            where = ", ".join(f"{s['mem']:#x} ({'CMA' if s['cma'] else 'walk'})"
                              for s in d["segments"])
        elif r.action in ("exec", "panic") and d.get("corrupted"):
            lo = min(c[0] for c in d["corrupted"])
            hi = max(c[0] + c[1] for c in d["corrupted"])
            segs = sorted({c[2] for c in d["corrupted"]})
            where = (f"corrupted bytes within [{lo:#x}, {hi:#x}), segment"
                     f"{'s' if len(segs) > 1 else ''} {', '.join(map(str, segs))}")
        elif r.action == "cat" and r.output is not None:
            lines = [ln.strip() for ln in r.output.strip().splitlines()]
            where = "; ".join(f"`{ln}`" for ln in lines[:6])
            if len(lines) > 6:
                where += f"; ... ({len(lines) - 6} more lines)"
        reboot = r.action in ("exec", "panic") and "hot_phase_bytes" in d
        out.append("| " + " | ".join(_cell(x) for x in (
            r.index, r.action, r.status,
            d["hot_phase_bytes"] if reboot else "",
            d["verified"] if reboot else "",
            len(d["corrupted"]) if reboot else "",
            len(d["scribbles"]) if reboot else "", where)) + " |")
    ok = "every step ok" if not runner.failed else "exit status 1 (a step is not ok)"
    out += ["", f"`pykern run {name}`: {ok}.", ""]
    return "\n".join(out) + "\n"


def draw_map(args: list[str], path: Path) -> None:
    """``pykern map ARGS -o PATH`` (quietly); a failure is a warning."""
    from pykern import cli
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        rc = cli.main(["map", *args, "-o", str(path)])
    if not path.exists() or rc not in (0, 1):
        LOG.warning("pykern docs: `pykern map %s` failed (exit %s): %s", " ".join(args), rc,
                    sink.getvalue().strip()[-300:])


# --------------------------------------------------------------------------------- hook
def generate(app: Sphinx) -> None:
    src = Path(app.srcdir)
    root = src.parent
    gen = src / "_generated"
    _write(gen / "cli.md", cli_reference())
    _write(gen / "scenario-keys.md", scenario_reference(src / "reference" / "scenario_keys.toml"))
    _write(gen / "rules.md", rule_index(root))
    _write(gen / "quirks.md", quirks_table(root))
    for name in FINDINGS:
        try:
            _write(gen / "findings" / f"{name}.md", finding_results(name))
        except Exception as exc:  # a broken scenario must fail the build, not crash it
            LOG.warning("pykern docs: running scenario %s failed: %s: %s", name,
                        type(exc).__name__, exc)
    for name, args in MAPS.items():
        draw_map(args, gen / "img" / f"{name}.svg")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
