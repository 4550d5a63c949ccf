"""The boot parameters pykern honours (api.md ``cmdline``), parsed once per boot.

Every honoured parameter that is malformed raises ``ValueError`` naming it;
everything else is kept as the kernel passes unknown parameters on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..lib.cmdline import memparse, parse_args

__all__ = ["BootParams", "CmaParam", "parse_boot_params", "VM_SYSCTLS", "KERNEL_SYSCTLS"]

#: ``sysctl.vm.<name>`` values pykern models (MM C1.12); others are logged.
VM_SYSCTLS = ("min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor",
              "defrag_mode", "lowmem_reserve_ratio", "percpu_pagelist_high_fraction")
KERNEL_SYSCTLS = ("kexec_load_disabled", "kexec_load_limit_reboot", "kexec_load_limit_panic")


@dataclass
class CmaParam:
    """``cma=<size>[@<base>[-<limit>]]`` (MM D2)."""

    size: int
    base: int = 0
    limit: int = 0
    fixed: bool = False


@dataclass
class BootParams:
    cmdline: str = ""
    cma: CmaParam | None = None
    crashkernel: tuple[int, int | None] | None = None  # (size, base)
    mem: int | None = None
    movablecore: tuple[str, int] | None = None  # ("bytes"|"percent", value)
    kernelcore: tuple[str, int] | None = None
    init_on_alloc: bool = False
    init_on_free: bool = False
    sysctl_vm: list[tuple[str, str]] = field(default_factory=list)
    sysctl_kernel: list[tuple[str, str]] = field(default_factory=list)
    ignored_sysctls: list[str] = field(default_factory=list)


def _size(param: str, value: str | None) -> int:
    if not value:
        raise ValueError(f"{param}= needs a size")
    try:
        size, rest = memparse(value)
    except ValueError:
        raise ValueError(f"{param}={value}: not a size") from None
    if rest:
        raise ValueError(f"{param}={value}: trailing {rest!r}")
    return size


def _bool(param: str, value: str | None) -> bool:
    text = (value or "").lower()
    if text in ("1", "y", "yes", "on", "true"):
        return True
    if text in ("0", "n", "no", "off", "false"):
        return False
    raise ValueError(f"{param}={value}: not a boolean")


def _parse_cma(value: str | None) -> CmaParam:
    """``early_cma``: size, then ``@base``, then ``-limit``."""
    if not value:
        raise ValueError("cma= needs a size")
    try:
        size, rest = memparse(value)
        base = limit = 0
        fixed = False
        if rest.startswith("@"):
            base, rest = memparse(rest[1:])
            if rest.startswith("-"):
                limit, rest = memparse(rest[1:])
                fixed = base + size == limit
            else:
                limit, fixed = base + size, True
    except ValueError:
        raise ValueError(f"cma={value}: malformed (expected size[@base[-limit]])") from None
    if rest:
        raise ValueError(f"cma={value}: trailing {rest!r}")
    return CmaParam(size, base, limit, fixed)


def _parse_crashkernel(value: str | None) -> tuple[int, int | None]:
    if not value:
        raise ValueError("crashkernel= needs a size")
    if "," in value or ":" in value:
        raise ValueError(f"crashkernel={value}: the ,high/,low/,cma and range forms are not "
                         "modelled (use size[@base])")
    try:
        size, rest = memparse(value)
        base = None
        if rest.startswith("@"):
            base, rest = memparse(rest[1:])
    except ValueError:
        raise ValueError(f"crashkernel={value}: malformed (expected size[@base])") from None
    if rest:
        raise ValueError(f"crashkernel={value}: trailing {rest!r}")
    if size == 0:
        raise ValueError(f"crashkernel={value}: size is 0")
    return size, base


def _parse_core(param: str, value: str | None) -> tuple[str, int]:
    if value and value.endswith("%"):
        try:
            pct = int(value[:-1], 10)
        except ValueError:
            raise ValueError(f"{param}={value}: not a percentage") from None
        if not 0 <= pct <= 100:
            raise ValueError(f"{param}={value}: percentage out of 0..100")
        return "percent", pct
    if value == "mirror":
        raise ValueError(f"{param}=mirror is not modelled")
    return "bytes", _size(param, value)


def parse_boot_params(cmdline: str) -> BootParams:
    """Parse ``cmdline``; raise ``ValueError`` naming a malformed honoured one."""
    if not isinstance(cmdline, str):
        raise ValueError(f"cmdline must be a str, not {type(cmdline).__name__}")
    bp = BootParams(cmdline=cmdline)
    for param, value in parse_args(cmdline):
        if param == "cma":
            bp.cma = _parse_cma(value)
        elif param == "crashkernel":
            bp.crashkernel = _parse_crashkernel(value)
        elif param == "mem":
            bp.mem = _size("mem", value)
        elif param == "movablecore":
            bp.movablecore = _parse_core("movablecore", value)
        elif param == "kernelcore":
            bp.kernelcore = _parse_core("kernelcore", value)
        elif param in ("init_on_alloc", "init_on_free"):
            setattr(bp, param, _bool(param, value))
        elif param.startswith("sysctl.vm.") or param.startswith("sysctl/vm/"):
            name = param[len("sysctl.vm."):]
            if value is None:
                raise ValueError(f"{param}: needs a value")
            if name in VM_SYSCTLS:
                bp.sysctl_vm.append((name, value))
            else:
                bp.ignored_sysctls.append(param)
        elif param.startswith("sysctl.kernel."):
            name = param[len("sysctl.kernel."):]
            if value is None:
                raise ValueError(f"{param}: needs a value")
            if name in KERNEL_SYSCTLS:
                bp.sysctl_kernel.append((name, value))
            else:
                bp.ignored_sysctls.append(param)
    return bp
