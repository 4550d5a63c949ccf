"""What a scenario is, and the validation of a parsed TOML document into one.

:func:`parse_scenario` walks the document and builds a :class:`Scenario` (``Machine`` keyword
arguments, device specs) of :class:`Step` s, raising :class:`ScenarioError` at the first
mistake with its file, line and key.  The key lists here (:data:`TOP_KEYS`,
:data:`MACHINE_KEYS`, :data:`COMMON_STEP_KEYS`, :data:`ACTIONS`, :data:`DEVICE_TYPES`) are what
the scenario reference documents.
"""

from __future__ import annotations

import errno as _errno
import inspect
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import ARCHES, PAGE_SIZE
from ..kernel.kexec import uapi
from ..lib.cmdline import parse_size
from .positions import KeyPath, ScenarioError, dotted_key, error_at, find_key_line

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = [
    "ACTIONS", "Blob", "COMMON_STEP_KEYS", "DEVICE_TYPES", "FLAG_NAMES", "MACHINE_KEYS",
    "Scenario", "Step", "TOP_KEYS", "format_flags", "parse_flags", "parse_gfp",
    "parse_scenario",
]

#: ``kexec_file_load`` flags by their short names (include/uapi/linux/kexec.h).
FLAG_NAMES: dict[str, int] = {
    "UNLOAD": uapi.KEXEC_FILE_UNLOAD,
    "ON_CRASH": uapi.KEXEC_FILE_ON_CRASH,
    "NO_INITRAMFS": uapi.KEXEC_FILE_NO_INITRAMFS,
    "DEBUG": uapi.KEXEC_FILE_DEBUG,
    "NO_CMA": uapi.KEXEC_FILE_NO_CMA,
}

#: Keys of the document's top level.
TOP_KEYS = ("name", "description", "machine", "steps")
#: Keys of ``[machine]``.
MACHINE_KEYS = ("ram", "banks", "arch", "cmdline", "seed", "cpus", "fixes", "reserved",
                "cma_areas", "copy_ns", "devices")
#: Keys every ``[[steps]]`` table may have.
COMMON_STEP_KEYS = ("action", "note", "expect")
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
#: ``[[machine.devices]]`` types: the module and class each one builds.
DEVICE_TYPES = {"gic": ("pykern.drivers.gic", "GICv3"),
                "dma": ("pykern.drivers.dma", "DmaDevice")}
_MAX_TASK_PAGES = 1 << 24
_MAX_ALLOC_COUNT = 1 << 20


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
    from ..mm import gfp as G
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
        from .. import images
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

    def nbytes(self) -> int:
        """How many bytes the blob hands to the load (a file's size, 0 if it cannot be
        read): what sizes are checked against before any image is built."""
        if self.size is not None:
            return self.size
        try:
            return self.file.stat().st_size if self.file is not None else 0
        except OSError:
            return 0

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

    @property
    def ram_bytes(self) -> int:
        """The machine's RAM in bytes, all banks together."""
        ram = self.machine_kwargs["ram"]
        return sum(size for _, size in ram) if isinstance(ram, list) else int(ram)

    def error(self, message: str, path: KeyPath) -> ScenarioError:
        """A :class:`ScenarioError` located at ``path`` in this scenario's text."""
        return error_at(message, self.file, self.text, path)

    def build_devices(self) -> list[Any]:
        """Construct the ``[[machine.devices]]`` (imported lazily: drivers are optional)."""
        import importlib
        out: list[Any] = []
        for k, spec in enumerate(self.devices):
            kind = spec["type"]
            modname, clsname = DEVICE_TYPES[kind]
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
        from ..machine import Machine
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
        return error_at(message, self.file, self.text, path)

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
            return parse_size(value, dotted_key(path))
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
    ck.table(data, (), TOP_KEYS)
    scn = Scenario(name=name or Path(file).stem, file=file, text=text)
    if "name" in data:
        scn.name = ck.str_(data["name"], ("name",))
    if "description" in data:
        scn.description = ck.str_(data["description"], ("description",))
    mach = ck.table(data.get("machine", {}), ("machine",), MACHINE_KEYS)
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
    if "arch" in mach:
        arch = ck.str_(mach["arch"], ("machine", "arch"))
        if arch not in ARCHES:
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
            from ..quirks import QUIRKS
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
        if kind not in DEVICE_TYPES:
            raise ck.fail(f"unknown device type {kind!r} (known: {', '.join(DEVICE_TYPES)})",
                          path + ("type",))
        if kind == "gic" and arch != "arm64":
            raise ck.fail("a GIC can only be attached to an arm64 machine", path + ("type",))
        scn.devices.append(dict(dev))
    scn.machine_kwargs = kw
    total_ram = scn.ram_bytes

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
            from .. import images
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
    ck.table(raw, path, COMMON_STEP_KEYS + ACTIONS[action])
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
            both = p["kernel"].nbytes() + p["initrd"].nbytes()
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
