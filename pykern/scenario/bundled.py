"""Scenario files: the ones shipped in ``pykern/scenarios``, reading one from a path or by
its bundled name, and the demo's machine as a scenario."""

from __future__ import annotations

import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .positions import ScenarioError
from .schema import Scenario, parse_scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["bundled_scenarios", "demo_scenario", "load_scenario"]


def _scenario_dir() -> Any:
    """The directory of the bundled scenarios (inside the installed package)."""
    return resources.files("pykern") / "scenarios"


def bundled_scenarios() -> list[tuple[str, str]]:
    """``(name, description)`` of each scenario shipped in ``pykern/scenarios``."""
    out = []
    for entry in sorted(_scenario_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            name = entry.name[:-len(".toml")]
            try:
                data = tomllib.loads(entry.read_text(encoding="utf-8"))
                desc = str(data.get("description", "")).strip().splitlines()
            except (tomllib.TOMLDecodeError, OSError):
                desc = ["(unreadable)"]
            out.append((name, desc[0] if desc else ""))
    return out


def load_scenario(ref: str) -> Scenario:
    """A scenario from a path, or by the name of a bundled one (``gic-vs-cma``).

    :raises ScenarioError: missing file, TOML syntax error (tomllib's message, with line and
        column), or any validation error of :func:`parse_scenario`.
    """
    path = Path(ref)
    base: Path | None
    if path.is_file():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ScenarioError(f"cannot read: {exc.strerror}", file=ref) from None
        file, base = ref, path.resolve().parent
    else:
        name = ref[:-len(".toml")] if ref.endswith(".toml") else ref
        entry = _scenario_dir() / f"{name}.toml"
        if "/" in ref or os.sep in ref or not entry.is_file():
            known = ", ".join(n for n, _ in bundled_scenarios())
            raise ScenarioError(f"no such file, nor a bundled scenario of that name "
                                f"(bundled: {known})", file=ref)
        raw = entry.read_bytes()
        file, base = f"{name}.toml", None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                            file=file) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ScenarioError(f"TOML syntax error: {exc}", file=file,
                            line=int(m.group(1)) if m else None) from None
    return parse_scenario(data, file=file, text=text, base=base, name=Path(file).stem)


def demo_scenario(arch: str = "arm64", device: str = "none") -> Scenario:
    """The demo's machine as a scenario: 1G with ``cma=256M``, a user task, a 16 MiB kernel
    and a 32 MiB initrd loaded, then the reboot (``pykern map`` without a scenario draws
    this one, after the reboot, so its scribbles and corrupted runs are in the picture)."""
    machine: dict[str, Any] = {"ram": "1G", "arch": arch, "cmdline": "cma=256M console=ttyAMA0"}
    if device == "gic":
        machine["devices"] = [{"type": "gic", "honours_shutdown": False}]
    data: dict[str, Any] = {
        "name": "demo", "description": "the pykern demo machine", "machine": machine,
        "steps": [{"action": "task", "npages": 2048},
                  {"action": "load", "kernel": "16M", "initrd": "32M",
                   "cmdline": "cma=256M console=ttyAMA0"},
                  {"action": "exec"}],
    }
    return parse_scenario(data, file="<demo>", name="demo")
