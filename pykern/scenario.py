"""Scenario files: a machine and a list of steps, in TOML (``pykern run``).

A scenario describes one :class:`~pykern.Machine` and what happens to it::

    name = "cma-basic"
    description = "..."

    [machine]
    ram = "512M"                 # or banks = [["0x40000000", "256M"], ...]
    arch = "arm64"
    cmdline = "cma=64M"
    seed = 0
    fixes = ["cma-stale-tail"]   # or "all"

    [[machine.devices]]
    type = "gic"                 # or "dma"; other keys go to the constructor
    honours_shutdown = false

    [[steps]]
    action = "load"
    kernel = "16M"               # a synthetic image of the machine's arch, or
                                 # { size = "16M", seed = 3, text_offset = 0 } or { file = "Image" }
    initrd = "32M"               # same forms; omitted = no initrd
    cmdline = "console=ttyAMA0"
    flags = ["NO_CMA", "DEBUG"]  # names with or without KEXEC_FILE_, or an int

Actions: ``load``, ``unload`` (``crash = true`` for the crash slot), ``exec``
(``kernel_kexec``), ``panic``, ``alloc`` (``order``, ``gfp``, ``count``), ``task``
(``npages``), ``cat`` (``path``) and ``write`` (``path``, ``text``).  Every step may carry
``note`` (free text) and ``expect`` (``"ok"`` or an errno name such as ``"EINVAL"``: the step
passes when it fails with exactly that errno).

Mistakes are :class:`ScenarioError` (a ``ValueError``) naming the file, the line and the key.
``tomllib`` gives no positions, so the line is found by searching the TOML text for the key
under the table it belongs to (:func:`find_key_line`).
"""

from __future__ import annotations

import errno as _errno
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .kernel.kexec import uapi
from .lib.cmdline import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

if TYPE_CHECKING:
    from .kernel.kexec.core import KImage
    from .kernel.kexec.reboot import KexecResult
    from .machine import Machine

__all__ = [
    "ACTIONS", "Blob", "FLAG_NAMES", "Runner", "Scenario", "ScenarioError", "Step",
    "StepResult", "bundled_scenarios", "demo_scenario", "find_key_line", "format_flags",
    "load_scenario", "parse_flags", "parse_gfp", "parse_scenario", "placement",
]

#: A position in the TOML document: table keys and array indices.
KeyPath = tuple[Union[str, int], ...]

PAGE_SIZE = 4096

#: ``kexec_file_load`` flags by their short names (include/uapi/linux/kexec.h).
FLAG_NAMES: dict[str, int] = {
    "UNLOAD": uapi.KEXEC_FILE_UNLOAD,
    "ON_CRASH": uapi.KEXEC_FILE_ON_CRASH,
    "NO_INITRAMFS": uapi.KEXEC_FILE_NO_INITRAMFS,
    "DEBUG": uapi.KEXEC_FILE_DEBUG,
    "NO_CMA": uapi.KEXEC_FILE_NO_CMA,
}

_TOP_KEYS = ("name", "description", "machine", "steps")
_MACHINE_KEYS = ("ram", "banks", "arch", "cmdline", "seed", "cpus", "fixes", "reserved",
                 "cma_areas", "copy_ns", "devices")
_COMMON_STEP_KEYS = ("action", "note", "expect")
#: Keys each action accepts besides ``action``, ``note`` and ``expect``.
ACTIONS: dict[str, tuple[str, ...]] = {
    "load": ("kernel", "initrd", "cmdline", "flags"),
    "unload": ("crash",),
    "exec": (),
    "panic": (),
    "alloc": ("order", "gfp", "count"),
    "task": ("npages",),
    "cat": ("path",),
    "write": ("path", "text"),
}
_DEVICE_TYPES = {"gic": ("pykern.drivers.gic", "GICv3"), "dma": ("pykern.drivers.dma", "DmaDevice")}
_MAX_TASK_PAGES = 1 << 24
_MAX_ALLOC_COUNT = 1 << 20


# ------------------------------------------------------------------------------ errors
class ScenarioError(ValueError):
    """A mistake in a scenario: file, 1-based line (when found) and the key at fault."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = self.file or "<scenario>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


def _dotted(path: KeyPath) -> str:
    out = ""
    for comp in path:
        out += f"[{comp}]" if isinstance(comp, int) else (f".{comp}" if out else comp)
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_\-.\"' ]+?)\s*\]\]?\s*(?:#.*)?$")


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (quotes respected, roughly)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def find_key_line(text: str, path: KeyPath) -> int | None:
    """The 1-based line of ``path`` (e.g. ``("steps", 2, "kernel", "size")``) in TOML ``text``.

    Table headers (``[machine]``, the k-th ``[[steps]]``) narrow the search to their lines; the
    remaining keys are searched for as ``key =`` in order from there, so keys of inline tables
    are found on or after the line of their parent.  Best effort: the deepest part found wins,
    and None means nothing matched.
    """
    lines = text.splitlines()
    headers: list[tuple[int, str, bool]] = []
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
            headers.append((i, name, m.group(1) == "[["))

    def span(h: int) -> tuple[int, int]:
        end = headers[h + 1][0] if h + 1 < len(headers) else len(lines)
        return headers[h][0], end

    table = ""
    lo, hi = 0, (headers[0][0] if headers else len(lines))
    found: int | None = None
    in_headers = True
    i = 0
    while i < len(path):
        comp = path[i]
        if isinstance(comp, int):
            i += 1
            continue
        name = f"{table}.{comp}" if table else comp
        matches = [k for k, (_, n, _) in enumerate(headers) if n == name]
        if in_headers and matches:
            h = matches[0]
            if headers[h][2] and i + 1 < len(path) and isinstance(path[i + 1], int):
                occurrence = path[i + 1]
                assert isinstance(occurrence, int)
                h = matches[min(occurrence, len(matches) - 1)]
                i += 1
            lo, hi = span(h)
            found = lo
            table = name
            i += 1
            continue
        if in_headers and any(n.startswith(name + ".") for _, n, _ in headers):
            table = name  # only sub-tables are written out ([[machine.devices]] alone)
            i += 1
            continue
        in_headers = False
        pattern = re.compile(r"(?:^|[\s{,.])[\"']?" + re.escape(comp) + r"[\"']?\s*=")
        start = found if found is not None else lo
        for j in range(start, hi):
            if pattern.search(_strip_comment(lines[j])):
                found = j
                break
        else:
            if found is None:  # last resort: anywhere in the file
                for j, line in enumerate(lines):
                    if pattern.search(_strip_comment(line)):
                        found = j
                        break
            break
        i += 1
    return None if found is None else found + 1


# ----------------------------------------------------------------------------- values
def parse_flags(value: object, what: str = "flags") -> int:
    """``kexec_file_load`` flags from an int, a name or a list of names (``"NO_CMA"``,
    ``"KEXEC_FILE_DEBUG"``, case-insensitive).

    :raises ValueError: naming the unknown flag.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a flag list")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}: {value} is negative")
        return value
    items: Sequence[object]
    if isinstance(value, str):
        items = [p for p in re.split(r"[|,\s]+", value) if p]
    elif isinstance(value, list):
        items = value
    else:
        raise ValueError(f"{what}: {value!r} is neither an int nor a list of flag names")
    flags = 0
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            flags |= item
            continue
        if not isinstance(item, str):
            raise ValueError(f"{what}: {item!r} is not a flag name")
        name = item.strip().upper()
        name = name[len("KEXEC_FILE_"):] if name.startswith("KEXEC_FILE_") else name
        if name not in FLAG_NAMES:
            raise ValueError(f"{what}: unknown flag {item!r} (known: {', '.join(FLAG_NAMES)})")
        flags |= FLAG_NAMES[name]
    return flags


def format_flags(flags: int) -> str:
    """``NO_CMA|DEBUG`` for 0x18; leftover bits in hex; ``0`` for none."""
    names = [n for n, bit in FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(FLAG_NAMES.values())
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "0"


def parse_gfp(value: object, what: str = "gfp") -> int:
    """A GFP mask from an int or ``"GFP_KERNEL|__GFP_ZERO"`` (names of pykern.mm.gfp)."""
    from .mm import gfp as G
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what}: {value!r} is not a GFP mask")
    mask = 0
    for part in re.split(r"\s*\|\s*", value.strip()):
        name = part if part.startswith(("GFP_", "__GFP_")) else f"GFP_{part}"
        bits = getattr(G, name, None)
        if not isinstance(bits, int) or not name.lstrip("_").startswith("GFP_"):
            raise ValueError(f"{what}: unknown GFP flag {part!r}")
        mask |= bits
    return mask


def _fmt_size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B" if n < 1024 else f"{n:#x}"


@dataclass
class Blob:
    """A kernel or initrd: ``size`` bytes of a synthetic image, or a file read from disk."""

    kind: str  # "kernel" or "initrd"
    size: int | None = None
    file: Path | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def data(self, arch: str) -> bytes:
        """The bytes to hand to ``kexec_file_load`` on a machine of ``arch``."""
        from . import images
        if self.file is not None:
            return self.file.read_bytes()
        assert self.size is not None
        if self.kind == "initrd":
            return images.payload_pattern(self.size, seed=self.seed)
        builder = images.arm64_image if arch == "arm64" else images.bzimage
        return builder(self.size, seed=self.seed, **self.options)

    def describe(self, arch: str) -> str:
        """A few words for reports: ``16M synthetic arm64 Image`` or the file name."""
        if self.file is not None:
            return f"{self.file} ({_fmt_size(self.file.stat().st_size)})" \
                if self.file.exists() else str(self.file)
        assert self.size is not None
        what = "initrd" if self.kind == "initrd" else (
            "arm64 Image" if arch == "arm64" else "bzImage")
        extra = "".join(f", {k}={v}" for k, v in self.options.items())
        return f"{_fmt_size(self.size)} synthetic {what}{extra}"

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        if self.file is not None:
            return {"file": str(self.file)}
        return {"size": self.size, "seed": self.seed, **self.options}


@dataclass
class Step:
    """One validated step; ``index`` counts from 1, ``params`` are Python values."""

    index: int
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    expect: str | None = None
    line: int | None = None


@dataclass
class Scenario:
    """A validated scenario: ``Machine`` keyword arguments, device specs and steps."""

    name: str
    file: str
    text: str
    description: str = ""
    machine_kwargs: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    copy_ns: int | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def arch(self) -> str:
        arch = self.machine_kwargs.get("arch", "arm64")
        assert isinstance(arch, str)
        return arch

    def error(self, message: str, path: KeyPath) -> ScenarioError:
        """A :class:`ScenarioError` located at ``path`` in this scenario's text."""
        return ScenarioError(message, file=self.file, line=find_key_line(self.text, path),
                             key=_dotted(path))

    def build_devices(self) -> list[Any]:
        """Construct the ``[[machine.devices]]`` (imported lazily: drivers are optional)."""
        import importlib
        out: list[Any] = []
        for k, spec in enumerate(self.devices):
            kind = spec["type"]
            modname, clsname = _DEVICE_TYPES[kind]
            try:
                module = importlib.import_module(modname)
            except ImportError:
                raise self.error(f"device type {kind!r} needs {modname}, which is not "
                                 f"available in this pykern", ("machine", "devices", k, "type")
                                 ) from None
            cls = getattr(module, clsname)
            kwargs = {key: value for key, value in spec.items() if key != "type"}
            params: dict[str, inspect.Parameter]
            try:
                params = dict(inspect.signature(cls).parameters)
            except (TypeError, ValueError):
                params = {}
            if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
                for key in kwargs:
                    if key not in params:
                        raise self.error(f"{clsname} has no argument {key!r} (it takes: "
                                         f"{', '.join(params)})",
                                         ("machine", "devices", k, key))
            if kind == "dma":
                kwargs.setdefault("name", f"dma{k}")
            if kind == "gic" and isinstance(kwargs.get("sources"), list):
                msi = getattr(module, "MsiSource")
                try:
                    kwargs["sources"] = [msi(**s) if isinstance(s, dict) else s
                                         for s in kwargs["sources"]]
                except (TypeError, ValueError) as exc:
                    raise self.error(str(exc), ("machine", "devices", k, "sources")) from None
            try:
                out.append(cls(**kwargs))
            except (TypeError, ValueError) as exc:
                bad = next((key for key in kwargs if key in str(exc)), None)
                path: KeyPath = ("machine", "devices", k) + ((bad,) if bad else ())
                raise self.error(f"{clsname}: {exc}", path) from None
        return out

    def build_machine(self) -> Machine:
        """Boot the scenario's machine (generation 0); bad arguments → ScenarioError."""
        from .machine import Machine
        devices = self.build_devices()
        kwargs = dict(self.machine_kwargs)
        if devices:
            kwargs["devices"] = devices
        try:
            m = Machine(**kwargs)
        except ValueError as exc:
            raise self.error(str(exc), self._machine_key_for(str(exc))) from None
        except ImportError as exc:  # a device whose driver model is not (fully) there
            raise self.error(f"a device cannot be used in this pykern: {exc}",
                             ("machine", "devices", 0) if self.devices else ("machine",)
                             ) from None
        if self.copy_ns is not None:
            m.copy_ns = self.copy_ns
        return m

    def _machine_key_for(self, message: str) -> KeyPath:
        """Which ``[machine]`` key a Machine() ValueError is about (a guess from its text)."""
        text = message.lower()
        order = ("cma_areas", "reserved", "cpu_features", "fixes", "arch", "cpus", "seed",
                 "devices", "banks")
        for key in order:
            if key in text and (key in self.machine_kwargs or key == "devices"):
                if key == "devices" and self.devices:
                    return ("machine", "devices", 0)
                return ("machine", key)
        if "fix" in text and "fixes" in self.machine_kwargs:
            return ("machine", "fixes")
        if "gic" in text and self.devices:
            return ("machine", "devices", 0)
        if "ram" in text or "bank" in text:
            return ("machine", "banks" if "banks" in self._raw_machine_keys else "ram")
        if "cmdline" in self.machine_kwargs:
            return ("machine", "cmdline")
        return ("machine",)

    _raw_machine_keys: tuple[str, ...] = ()


# -------------------------------------------------------------------------- validation
class _Checker:
    """Walks the parsed TOML, raising ScenarioError at the first mistake."""

    def __init__(self, file: str, text: str, base: Path | None) -> None:
        self.file = file
        self.text = text
        self.base = base

    def fail(self, message: str, path: KeyPath) -> ScenarioError:
        return ScenarioError(message, file=self.file, line=find_key_line(self.text, path),
                             key=_dotted(path))

    def table(self, value: object, path: KeyPath, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"expected a table, got {_type_name(value)}", path)
        for key in value:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} (allowed here: {', '.join(allowed)})",
                                path + (key,))
        return value

    def str_(self, value: object, path: KeyPath) -> str:
        if not isinstance(value, str):
            raise self.fail(f"expected a string, got {_type_name(value)}", path)
        return value

    def int_(self, value: object, path: KeyPath, lo: int | None = None,
             hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"expected an integer, got {_type_name(value)}", path)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(f"{value} is out of range {lo}..{hi}", path)
        return value

    def bool_(self, value: object, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"expected true or false, got {_type_name(value)}", path)
        return value

    def size(self, value: object, path: KeyPath) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.fail(f"expected a size (\"16M\" or an integer), got "
                            f"{_type_name(value)}", path)
        try:
            return parse_size(value, _dotted(path))
        except ValueError as exc:
            raise self.fail(str(exc), path) from None

    def pairs(self, value: object, path: KeyPath) -> list[tuple[int, int]]:
        if not isinstance(value, list):
            raise self.fail(f"expected a list of [base, size] pairs, got {_type_name(value)}",
                            path)
        out = []
        for k, item in enumerate(value):
            if not isinstance(item, list) or len(item) != 2:
                raise self.fail(f"entry {k}: {item!r} is not a [base, size] pair", path)
            out.append((self.size(item[0], path + (k, 0)), self.size(item[1], path + (k, 1))))
        return out


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def parse_scenario(data: dict[str, Any], *, file: str = "<scenario>", text: str = "",
                   base: Path | None = None, name: str | None = None) -> Scenario:
    """Validate parsed TOML ``data`` (``text`` is the source, for line numbers; ``base`` the
    directory that relative ``file =`` paths start from).

    :raises ScenarioError: for unknown keys, wrong types, impossible sizes, bad names.
    """
    ck = _Checker(file, text, base)
    ck.table(data, (), _TOP_KEYS)
    scn = Scenario(name=name or Path(file).stem, file=file, text=text)
    if "name" in data:
        scn.name = ck.str_(data["name"], ("name",))
    if "description" in data:
        scn.description = ck.str_(data["description"], ("description",))
    mach = ck.table(data.get("machine", {}), ("machine",), _MACHINE_KEYS)
    kw: dict[str, Any] = {}
    scn._raw_machine_keys = tuple(mach)
    if "ram" in mach and "banks" in mach:
        raise ck.fail("give either ram or banks, not both", ("machine", "banks"))
    if "banks" in mach:
        banks = ck.pairs(mach["banks"], ("machine", "banks"))
        if not banks:
            raise ck.fail("needs at least one bank", ("machine", "banks"))
        kw["ram"] = banks
    else:
        kw["ram"] = ck.size(mach.get("ram", "1G"), ("machine", "ram"))
        if kw["ram"] == 0:
            raise ck.fail("RAM size 0 is impossible", ("machine", "ram"))
    total_ram = sum(s for _, s in kw["ram"]) if isinstance(kw["ram"], list) else kw["ram"]
    if "arch" in mach:
        arch = ck.str_(mach["arch"], ("machine", "arch"))
        if arch not in ("arm64", "x86_64"):
            raise ck.fail(f"arch {arch!r} is not arm64 or x86_64", ("machine", "arch"))
        kw["arch"] = arch
    arch = kw.get("arch", "arm64")
    if "cmdline" in mach:
        kw["cmdline"] = ck.str_(mach["cmdline"], ("machine", "cmdline"))
    if "seed" in mach:
        kw["seed"] = ck.int_(mach["seed"], ("machine", "seed"))
    if "cpus" in mach:
        kw["cpus"] = ck.int_(mach["cpus"], ("machine", "cpus"), 1, 512)
    if "fixes" in mach:
        fixes = mach["fixes"]
        if isinstance(fixes, str):
            fixes = fixes if fixes == "all" else [fixes]
        if fixes != "all":
            if not isinstance(fixes, list):
                raise ck.fail(f"expected \"all\" or a list of fix names, got "
                              f"{_type_name(fixes)}", ("machine", "fixes"))
            from .quirks import QUIRKS
            for k, fix in enumerate(fixes):
                ck.str_(fix, ("machine", "fixes", k))
                if fix not in QUIRKS:
                    raise ck.fail(f"unknown fix {fix!r} (known: {', '.join(QUIRKS)})",
                                  ("machine", "fixes"))
        kw["fixes"] = fixes
    if "reserved" in mach:
        kw["reserved"] = ck.pairs(mach["reserved"], ("machine", "reserved"))
    if "cma_areas" in mach:
        areas = mach["cma_areas"]
        if not isinstance(areas, list):
            raise ck.fail(f"expected an array of tables, got {_type_name(areas)}",
                          ("machine", "cma_areas"))
        keys = ("name", "size", "base", "limit", "alignment", "order_per_bit", "fixed")
        kw["cma_areas"] = [ck.table(a, ("machine", "cma_areas", k), keys)
                           for k, a in enumerate(areas)]
    if "copy_ns" in mach:
        scn.copy_ns = ck.int_(mach["copy_ns"], ("machine", "copy_ns"), 0)
    devices = mach.get("devices", [])
    if not isinstance(devices, list):
        raise ck.fail(f"expected [[machine.devices]] tables, got {_type_name(devices)}",
                      ("machine", "devices"))
    for k, dev in enumerate(devices):
        path: KeyPath = ("machine", "devices", k)
        if not isinstance(dev, dict):
            raise ck.fail(f"expected a table, got {_type_name(dev)}", path)
        if "type" not in dev:
            raise ck.fail("a device needs type = \"gic\" or \"dma\"", path)
        kind = ck.str_(dev["type"], path + ("type",))
        if kind not in _DEVICE_TYPES:
            raise ck.fail(f"unknown device type {kind!r} (known: {', '.join(_DEVICE_TYPES)})",
                          path + ("type",))
        if kind == "gic" and arch != "arm64":
            raise ck.fail("a GIC can only be attached to an arm64 machine", path + ("type",))
        scn.devices.append(dict(dev))
    scn.machine_kwargs = kw

    steps = data.get("steps", [])
    if not isinstance(steps, list):
        raise ck.fail(f"expected [[steps]] tables, got {_type_name(steps)}", ("steps",))
    seed = kw.get("seed", 0)
    for k, raw in enumerate(steps):
        scn.steps.append(_parse_step(ck, raw, k, arch, total_ram, seed))
    return scn


def _blob(ck: _Checker, value: object, path: KeyPath, kind: str, arch: str, total_ram: int,
          seed: int) -> Blob:
    if isinstance(value, dict):
        allowed = ["size", "file", "seed"]
        if kind == "kernel":
            from . import images
            builder = images.arm64_image if arch == "arm64" else images.bzimage
            allowed += [p for p in inspect.signature(builder).parameters
                        if p not in ("size", "seed")]
        ck.table(value, path, allowed)
        if ("size" in value) == ("file" in value):
            raise ck.fail(f"{kind} needs exactly one of size or file", path)
        if "file" in value:
            return _blob_file(ck, value["file"], path + ("file",), kind)
        blob = Blob(kind, size=ck.size(value["size"], path + ("size",)), seed=seed)
        if "seed" in value:
            blob.seed = ck.int_(value["seed"], path + ("seed",))
        for key, opt in value.items():
            if key in ("size", "seed"):
                continue
            if key == "magic":
                blob.options[key] = ck.str_(opt, path + (key,)).encode("latin-1")
            else:
                blob.options[key] = ck.int_(opt, path + (key,))
        where: KeyPath = path + ("size",)
    else:
        blob = Blob(kind, size=ck.size(value, path), seed=seed)
        where = path
    assert blob.size is not None
    if blob.size > total_ram:
        raise ck.fail(f"{kind} size {_fmt_size(blob.size)} is larger than the machine's "
                      f"{_fmt_size(total_ram)} of RAM", where)
    return blob


def _blob_bytes(blob: Blob) -> int:
    """How many bytes ``blob`` hands to the load (a file's size, 0 if it cannot be read)."""
    if blob.size is not None:
        return blob.size
    try:
        return blob.file.stat().st_size if blob.file is not None else 0
    except OSError:
        return 0


def _blob_file(ck: _Checker, value: object, path: KeyPath, kind: str) -> Blob:
    name = ck.str_(value, path)
    p = Path(os.path.expanduser(name))
    if not p.is_absolute() and ck.base is not None:
        p = ck.base / p
    if not p.is_file():
        raise ck.fail(f"{kind} file {name!r} not found (looked at {p})", path)
    return Blob(kind, file=p)


def _parse_step(ck: _Checker, raw: object, k: int, arch: str, total_ram: int,
                seed: int) -> Step:
    path: KeyPath = ("steps", k)
    if not isinstance(raw, dict):
        raise ck.fail(f"expected a table, got {_type_name(raw)}", path)
    if "action" not in raw:
        raise ck.fail(f"a step needs an action (one of {', '.join(ACTIONS)})", path)
    action = ck.str_(raw["action"], path + ("action",))
    if action not in ACTIONS:
        raise ck.fail(f"unknown action {action!r} (known: {', '.join(ACTIONS)})",
                      path + ("action",))
    ck.table(raw, path, _COMMON_STEP_KEYS + ACTIONS[action])
    step = Step(k + 1, action, line=find_key_line(ck.text, path))
    if "note" in raw:
        step.note = ck.str_(raw["note"], path + ("note",))
    if "expect" in raw:
        expect = ck.str_(raw["expect"], path + ("expect",)).upper()
        if expect != "OK" and not isinstance(getattr(_errno, expect, None), int):
            raise ck.fail(f"expect {raw['expect']!r} is neither \"ok\" nor an errno name "
                          f"such as \"EINVAL\"", path + ("expect",))
        step.expect = None if expect == "OK" else expect
    p = step.params
    if action == "load":
        if "kernel" not in raw:
            raise ck.fail("a load needs a kernel (a size such as \"16M\" or { file = ... })",
                          path)
        p["kernel"] = _blob(ck, raw["kernel"], path + ("kernel",), "kernel", arch,
                            total_ram, seed + k)
        initrd = raw.get("initrd")
        p["initrd"] = None if initrd is None or initrd is False else _blob(
            ck, initrd, path + ("initrd",), "initrd", arch, total_ram, seed + k + 1000)
        if p["initrd"] is not None:
            both = _blob_bytes(p["kernel"]) + _blob_bytes(p["initrd"])
            if both > total_ram:      # could never fit: refused before any image is built
                raise ck.fail(f"kernel and initrd together ({_fmt_size(both)}) are larger "
                              f"than the machine's {_fmt_size(total_ram)} of RAM",
                              path + ("initrd",))
        p["cmdline"] = ck.str_(raw.get("cmdline", ""), path + ("cmdline",))
        try:
            p["flags"] = parse_flags(raw.get("flags", 0))
        except ValueError as exc:
            raise ck.fail(str(exc), path + ("flags",)) from None
    elif action == "unload":
        p["crash"] = ck.bool_(raw.get("crash", False), path + ("crash",))
    elif action == "alloc":
        p["order"] = ck.int_(raw.get("order", 0), path + ("order",), 0, 10)
        p["count"] = ck.int_(raw.get("count", 1), path + ("count",), 1, _MAX_ALLOC_COUNT)
        try:
            p["gfp"] = parse_gfp(raw.get("gfp", "GFP_KERNEL"))
        except ValueError as exc:
            raise ck.fail(str(exc), path + ("gfp",)) from None
        p["gfp_name"] = raw.get("gfp", "GFP_KERNEL")
    elif action == "task":
        if "npages" not in raw:
            raise ck.fail("a task needs npages", path)
        p["npages"] = ck.int_(raw["npages"], path + ("npages",), 1, _MAX_TASK_PAGES)
        if p["npages"] * PAGE_SIZE > total_ram:
            raise ck.fail(f"{p['npages']} pages is more than the machine's "
                          f"{_fmt_size(total_ram)} of RAM", path + ("npages",))
    elif action in ("cat", "write"):
        if "path" not in raw:
            raise ck.fail(f"{action} needs a path such as \"/proc/iomem\"", path)
        p["path"] = ck.str_(raw["path"], path + ("path",))
        if action == "write":
            if "text" not in raw:
                raise ck.fail("write needs text", path)
            p["text"] = ck.str_(raw["text"], path + ("text",))
    return step


# ------------------------------------------------------------------------ loading files
def _scenario_dir() -> Any:
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


# ----------------------------------------------------------------------------- running
@dataclass
class StepResult:
    """What one step did.

    ``status`` is ``ok``, ``failed``, ``expected-failure`` (failed with the errno its
    ``expect`` named), ``unexpected-success`` or ``corrupted`` (a reboot whose check failed or
    whose image was damaged).  ``ok`` is False for failed, unexpected-success and corrupted.
    """

    index: int
    action: str
    status: str = "ok"
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    errno: int | None = None
    reasons: list[str] = field(default_factory=list)
    output: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when the step did what the scenario expected."""
        return self.status in ("ok", "expected-failure")

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out: dict[str, Any] = {"step": self.index, "action": self.action,
                               "status": self.status, "ok": self.ok, "summary": self.summary}
        if self.note:
            out["note"] = self.note
        if self.error is not None:
            out["error"] = self.error
            out["errno"] = self.errno
            out["errno_name"] = _errno.errorcode.get(self.errno or 0)
            out["reasons"] = self.reasons
        if self.output is not None:
            out["output"] = self.output
        out.update(self.details)
        return out


def placement(cma: bool, crash: bool) -> str:
    """How a segment was placed: ``CMA``, ``walk`` (kexec_locate_mem_hole) or ``crash``."""
    return "crash" if crash else ("CMA" if cma else "walk")


class Runner:
    """Boots a scenario's machine and executes steps on it, one :class:`StepResult` each.

    The runner keeps what the map and the reports need after the fact: the image last loaded
    or executed (``last_image``), the last reboot's ``KexecResult`` (``last_result``), the
    pages ``alloc`` steps hold and the tasks they created.
    """

    def __init__(self, scenario: Scenario, *,
                 flag_override: Callable[[int], int] | None = None,
                 machine: Machine | None = None) -> None:
        self.scenario = scenario
        #: ``machine``: run the steps on this machine (e.g. a restored snapshot) instead of
        #: booting the scenario's.
        self.machine: Machine = scenario.build_machine() if machine is None else machine
        self.results: list[StepResult] = []
        self.last_image: KImage | None = None
        self.last_result: KexecResult | None = None
        self.held_pages: list[tuple[Any, int]] = []
        self.tasks: list[Any] = []
        self.flag_override = flag_override

    def run(self, upto: int | None = None) -> list[StepResult]:
        """Execute the scenario's steps 1..``upto`` (all when None)."""
        steps = self.scenario.steps if upto is None else self.scenario.steps[:upto]
        for step in steps:
            self.results.append(self.execute(step))
        return self.results

    @property
    def failed(self) -> bool:
        """True when some step failed or found corruption."""
        return any(not r.ok for r in self.results)

    # --------------------------------------------------------------------- dispatch
    def execute(self, step: Step) -> StepResult:
        """Run one step; user-level failures become a failed result, never an exception."""
        res = StepResult(step.index, step.action, note=step.note)
        m = self.machine
        mark = self._dmesg_len()
        try:
            if m.halted and step.action not in ("cat",):
                raise RuntimeError("the machine is halted")
            getattr(self, f"_do_{step.action}")(step, res)
        except OSError as exc:
            code = exc.errno if exc.errno is not None else _errno.EIO
            res.status = "failed"
            res.errno = code
            res.error = os.strerror(code)
            if exc.strerror and exc.strerror != res.error:
                res.reasons.append(exc.strerror)
            elif exc.filename is None and exc.args and not exc.strerror:
                res.reasons.append(str(exc))
            res.reasons += [text for level, text in self._dmesg_since(mark) if level <= 4]
            res.summary = f"failed: {res.error}"
        except (ValueError, RuntimeError, KeyError) as exc:
            res.status = "failed"
            res.error = str(exc) or type(exc).__name__
            res.summary = f"failed: {res.error}"
        if step.expect is not None:
            want = getattr(_errno, step.expect)
            if res.status == "failed" and res.errno == want:
                res.status = "expected-failure"
                res.summary += f" (expected {step.expect})"
            elif res.status == "failed":
                res.summary += f" (expected {step.expect})"
            else:
                res.status = "unexpected-success"
                res.summary += f" (expected {step.expect})"
        return res

    def _dmesg_len(self) -> int:
        try:
            return len(self.machine.dmesg())
        except RuntimeError:
            return 0

    def _dmesg_since(self, mark: int) -> list[tuple[int, str]]:
        try:
            return self.machine.dmesg()[mark:]
        except RuntimeError:
            return []

    # --------------------------------------------------------------------- actions
    def _do_load(self, step: Step, res: StepResult) -> None:
        m = self.machine
        p = step.params
        kernel: Blob = p["kernel"]
        initrd: Blob | None = p["initrd"]
        flags: int = p["flags"]
        if self.flag_override is not None:
            flags = self.flag_override(flags)
        res.details.update(kernel=kernel.to_json(), initrd=initrd.to_json() if initrd else None,
                           cmdline=p["cmdline"], flags=flags, flag_names=format_flags(flags))
        try:
            kbytes = kernel.data(m.arch)
            ibytes = initrd.data(m.arch) if initrd is not None else None
        except OSError as exc:  # the file vanished or is unreadable: not a kernel refusal
            raise ValueError(f"cannot read {exc.filename}: {exc.strerror}") from None
        mark = self._dmesg_len()
        m.kexec_file_load(kbytes, ibytes, p["cmdline"], flags)
        if flags & uapi.KEXEC_FILE_DEBUG:
            res.details["debug"] = [t for _, t in self._dmesg_since(mark)]
        crash = bool(flags & uapi.KEXEC_FILE_ON_CRASH)
        image = m.kexec_crash_image if crash else m.kexec_image
        if image is None:  # not expected after a successful load
            res.summary = "loaded (no image?)"
            return
        self.last_image = image
        segs: list[dict[str, Any]] = [{"index": i, "mem": s.mem, "memsz": s.memsz, "bufsz": s.bufsz,
                 "cma": bool(s.cma)} for i, s in enumerate(image.segments)]
        entries = image.entries()
        kinds: dict[str, int] = {}
        for kind, _ in entries:
            kinds[kind] = kinds.get(kind, 0) + 1
        ncma = sum(1 for s in segs if s["cma"])
        res.details.update(image=image.type, segments=segs, entries=kinds,
                           entry_words=len(entries), cma_used_pages=self._cma_used())
        what = f"{kernel.describe(m.arch)}" + (
            f" + initrd {initrd.describe(m.arch)}" if initrd else "")
        res.summary = (f"{image.type} image: {len(segs)} segments ({ncma} CMA, "
                       f"{len(segs) - ncma} walk), {len(entries)} entry "
                       f"word{'s' if len(entries) != 1 else ''}")
        res.lines = [what + f"; flags {format_flags(flags)}"]
        res.lines += [f"segment {s['index']}: {s['mem']:#x} +{s['memsz']:#x} "
                      f"({placement(bool(s['cma']), crash)})" for s in segs]

    def _cma_used(self) -> int | None:
        area = self.machine.dma_contiguous_default_area
        if area is None:
            return None
        return int(area.count - area.available_count)

    def _do_unload(self, step: Step, res: StepResult) -> None:
        m = self.machine
        crash = bool(step.params.get("crash"))
        flags = uapi.KEXEC_FILE_UNLOAD | (uapi.KEXEC_FILE_ON_CRASH if crash else 0)
        had = (m.kexec_crash_image if crash else m.kexec_image) is not None
        m.kexec_file_load(None, None, "", flags)
        res.details.update(flags=flags, flag_names=format_flags(flags), had_image=had,
                           cma_used_pages=self._cma_used())
        res.summary = ("unloaded the " + ("crash" if crash else "default") + " image"
                       if had else "nothing was loaded")

    def _reboot_report(self, res: StepResult, r: KexecResult | None, image: Any) -> None:
        m = self.machine
        if r is None:
            res.details.update(halted=True, generation=m.generation)
            res.summary = "no crash kernel loaded: the machine halted"
            return
        self.last_result = r
        if image is not None:
            self.last_image = image
        res.details.update(
            image=r.image_type, hot_phase_pages=r.hot_phase_pages,
            hot_phase_bytes=r.hot_phase_bytes,
            hot_phase_ms=round(r.hot_phase_seconds * 1000, 3),
            emulated_copy_ms=r.hot_phase_ns / 1e6, verified=bool(r.verified),
            corrupted=[list(c) for c in r.corrupted],
            scribbles=[list(s) for s in r.scribbles],
            booted=bool(r.booted), halted=bool(m.halted), generation=m.generation,
            next_cmdline=None if m.halted else m.cmdline)
        bad = bool(r.corrupted) or not r.verified
        res.status = "corrupted" if bad else "ok"
        state = "halted" if m.halted else f"generation {m.generation}"
        res.summary = (f"{r.hot_phase_bytes} bytes copied in the hot phase, "
                       f"{'verified' if r.verified else 'NOT verified'}, "
                       f"{len(r.corrupted)} corrupted runs, {len(r.scribbles)} scribbles; "
                       f"now {state}")
        res.lines = [f"corrupted {phys:#x} +{length:#x} in segment {idx}"
                     for phys, length, idx in r.corrupted[:8]]
        if len(r.corrupted) > 8:
            res.lines.append(f"... {len(r.corrupted) - 8} more corrupted runs")
        res.lines += [f"scribble by {dev} at {phys:#x} +{length}"
                      for dev, phys, length in r.scribbles[:8]]
        if len(r.scribbles) > 8:
            res.lines.append(f"... {len(r.scribbles) - 8} more scribbles")

    def _do_exec(self, step: Step, res: StepResult) -> None:
        image = self.machine.kexec_image
        r = self.machine.kernel_kexec()
        self._reboot_report(res, r, image)

    def _do_panic(self, step: Step, res: StepResult) -> None:
        image = self.machine.kexec_crash_image
        r = self.machine.panic()
        self._reboot_report(res, r, image)

    def _do_alloc(self, step: Step, res: StepResult) -> None:
        p = step.params
        got: list[int] = []
        for _ in range(p["count"]):
            page = self.machine.mm.alloc_pages(p["gfp"], p["order"])
            if page is None:
                break
            self.held_pages.append((page, p["order"]))
            got.append(int(page.pfn))
        res.details.update(order=p["order"], gfp=p["gfp"], requested=p["count"],
                           allocated=len(got), pfns=got)
        res.summary = (f"{len(got)} of {p['count']} order-{p['order']} {p['gfp_name']} "
                       f"allocations")
        if got:
            res.summary += f", first pfn {got[0]:#x}"
        if len(got) < p["count"]:
            raise OSError(_errno.ENOMEM, f"allocation {len(got) + 1} of {p['count']} failed "
                          f"(no reclaim or compaction in pykern)")

    def _do_task(self, step: Step, res: StepResult) -> None:
        m = self.machine
        npages = step.params["npages"]
        task = m.new_task()
        va = task.mmap_anon(npages)
        self.tasks.append(task)
        in_cma = 0
        spans = [(c.base_pfn, c.base_pfn + c.count) for c in m.cma_areas]
        if spans:
            for i in range(npages):
                pfn = task.pfn_of(va + i * PAGE_SIZE)
                in_cma += any(lo <= pfn < hi for lo, hi in spans)
        res.details.update(pid=task.pid, va=va, npages=npages, pages_in_cma=in_cma)
        res.summary = f"pid {task.pid}: {npages} anonymous pages at {va:#x}, {in_cma} in CMA"

    def _do_cat(self, step: Step, res: StepResult) -> None:
        path = step.params["path"]
        if self.machine.halted:
            raise RuntimeError("the machine is halted: nothing can be read")
        text = self.machine.read(path)
        res.output = text
        nlines = text.count("\n")
        res.summary = f"{path}: {nlines} line{'s' if nlines != 1 else ''}"

    def _do_write(self, step: Step, res: StepResult) -> None:
        path, text = step.params["path"], step.params["text"]
        self.machine.write(path, text)
        res.summary = f"wrote {text!r} to {path}"


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
