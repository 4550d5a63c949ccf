"""``/proc/sys``: the vm and kexec sysctls pykern honours (MM C1.12, K20.5)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ...mm.page_alloc import setup_per_zone_lowmem_reserve, setup_per_zone_wmarks

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["sysctl_read", "sysctl_write", "do_sysctl_args"]

INT_MAX = 2**31 - 1


def _einval(name: str, text: str) -> OSError:
    return OSError(errno.EINVAL, f"Invalid argument: {name} = {text.strip()!r}")


def _ints(name: str, text: str) -> list[int]:
    try:
        return [int(w, 10) for w in text.split()]
    except ValueError:
        raise _einval(name, text) from None


def _one(name: str, text: str, lo: int, hi: int) -> int:
    vals = _ints(name, text)
    if len(vals) != 1 or not lo <= vals[0] <= hi:
        raise _einval(name, text)
    return vals[0]


def sysctl_read(m: Machine, name: str) -> str | None:
    k = m.kernel
    mm = k.mm
    kexec = k.kexec
    vm = {
        "vm/min_free_kbytes": str(mm.min_free_kbytes),
        "vm/watermark_scale_factor": str(mm.watermark_scale_factor),
        "vm/watermark_boost_factor": str(mm.watermark_boost_factor),
        "vm/defrag_mode": str(mm.defrag_mode),
        "vm/percpu_pagelist_high_fraction": str(mm.percpu_pagelist_high_fraction),
        "vm/lowmem_reserve_ratio": "\t".join(str(v) for v in mm.lowmem_reserve_ratio),
        "vm/numa_zonelist_order": "Node",
        "kernel/tainted": str(k.tainted),
        "kernel/kexec_load_disabled": str(kexec.kexec_load_disabled),
        "kernel/kexec_load_limit_reboot": str(kexec.kexec_load_limit_reboot),
        "kernel/kexec_load_limit_panic": str(kexec.kexec_load_limit_panic),
    }
    text = vm.get(name)
    return None if text is None else text + "\n"


def sysctl_write(m: Machine, name: str, text: str) -> None:
    """Apply a sysctl write the way its kernel handler does."""
    mm = m.kernel.mm
    kexec = m.kernel.kexec
    if name == "vm/min_free_kbytes":
        mm.min_free_kbytes = _one(name, text, 0, INT_MAX)
        mm.user_min_free_kbytes = mm.min_free_kbytes
        setup_per_zone_wmarks(mm)
    elif name == "vm/watermark_scale_factor":
        mm.watermark_scale_factor = _one(name, text, 1, 3000)
        setup_per_zone_wmarks(mm)
    elif name == "vm/watermark_boost_factor":
        mm.watermark_boost_factor = _one(name, text, 0, INT_MAX)
    elif name == "vm/defrag_mode":
        mm.defrag_mode = _one(name, text, 0, 1)
    elif name == "vm/percpu_pagelist_high_fraction":
        value = _one(name, text, 0, INT_MAX)
        if value and value < 8:
            raise _einval(name, text)
        mm.percpu_pagelist_high_fraction = value
        m.kernel.log.warn(f"pykern: vm.percpu_pagelist_high_fraction={value} is not modelled")
    elif name == "vm/lowmem_reserve_ratio":
        vals = _ints(name.replace(",", " "), text.replace(",", " "))
        if not vals or any(v < 0 for v in vals) or len(vals) > len(mm.lowmem_reserve_ratio):
            raise _einval(name, text)
        mm.lowmem_reserve_ratio[:len(vals)] = vals
        setup_per_zone_lowmem_reserve(mm)
    elif name == "kernel/kexec_load_disabled":
        kexec.kexec_load_disabled = _one(name, text, kexec.kexec_load_disabled, 1)
    elif name in ("kernel/kexec_load_limit_reboot", "kernel/kexec_load_limit_panic"):
        attr = name.split("/")[1]
        value = _one(name, text, 0, INT_MAX)
        current = getattr(kexec, attr)
        if current != -1 and value >= current:
            raise _einval(name, text)
        setattr(kexec, attr, value)
    elif sysctl_read(m, name) is not None:
        raise PermissionError(errno.EACCES, "Permission denied", "/proc/sys/" + name)
    else:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/sys/" + name)


def do_sysctl_args(m: Machine) -> None:
    """``do_sysctl_args``: the ``sysctl.vm.*`` and ``sysctl.kernel.*`` boot parameters, each
    written as its ``/proc/sys`` file would be (MM C1.12, K20.5).

    [model] A value the handler refuses is a ``ValueError`` naming the parameter (the
    kernel logs and goes on); the sysctls pykern does not model are logged and ignored.
    """
    k = m.kernel
    for name, value in k.boot_params.sysctl_vm:
        try:
            sysctl_write(m, f"vm/{name}", value)
        except OSError:
            raise ValueError(f"sysctl.vm.{name}={value}: invalid value") from None
    for name, value in k.boot_params.sysctl_kernel:
        try:
            sysctl_write(m, f"kernel/{name}", value)
        except OSError:
            raise ValueError(f"sysctl.kernel.{name}={value}: invalid value") from None
    for param in k.boot_params.ignored_sysctls:
        k.log.warn(f"pykern: {param} is not modelled; ignored")
