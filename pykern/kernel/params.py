"""The boot parameters pykern honours (``Machine(cmdline=...)``), parsed once per boot.

Every honoured parameter that is malformed raises ``ValueError`` naming it.  The rest
is sorted as ``start_kernel`` sorts it (init/main.c): a parameter the kernel knows is
consumed; one with a dot is an unused module parameter and dropped silently; any other
is unknown (``unknown_bootoption``): with a value it goes to init's environment
(``envp_init``, replacing a variable of the same name), without one to init's argument
list (``argv_init``), and ``print_unknown_bootoptions`` logs them all.  Everything
after a bare ``--`` is not parsed by the kernel at all and goes to ``argv_init``
(``set_init_arg``).

[model] "Known" means the parameters in :data:`KNOWN_PARAMS` (those pykern honours,
the common ones of Documentation/admin-guide/kernel-parameters.txt and the sysctl
aliases); a real kernel knows every ``__setup``/``early_param``/``core_param`` of its
build.  Too many init arguments or variables (``CONFIG_INIT_ENV_ARG_LIMIT`` 32) make the
kernel panic when it starts init; pykern raises ``ValueError`` with the kernel's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..lib.cmdline import memparse, parse_args
from ..lib.fault_inject import fault_attr_scanf

__all__ = ["BootParams", "CmaParam", "parse_boot_params", "VM_SYSCTLS", "KERNEL_SYSCTLS",
           "KNOWN_PARAMS", "MAX_INIT_ARGS", "MAX_INIT_ENVS"]

#: ``sysctl.vm.<name>`` values pykern models (MM C1.12); others are logged.
VM_SYSCTLS = ("min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor",
              "defrag_mode", "lowmem_reserve_ratio", "percpu_pagelist_high_fraction")
KERNEL_SYSCTLS = ("kexec_load_disabled", "kexec_load_limit_reboot", "kexec_load_limit_panic")

#: CONFIG_INIT_ENV_ARG_LIMIT: slots of ``argv_init`` and ``envp_init``.
MAX_INIT_ARGS = MAX_INIT_ENVS = 32

#: Boot parameters the modelled kernel knows besides those pykern honours (see module doc).
KNOWN_PARAMS = frozenset("""
    acpi acpi_rsdp add_efi_memmap apic apparmor audit audit_backlog_limit cgroup_disable
    cgroup_enable cgroup_no_v1 clearcpuid clocksource cma_pernuma coherent_pool console
    consoleblank crash_kexec_post_notifiers crashkernel debug default_hugepagesz
    disable_ddw earlycon earlyprintk efi efi_fake_mem elfcorehdr fbcon hardlockup_all_cpu_backtrace
    hpet hugepages hugepagesz hugetlb_cma hung_task_panic idle ignore_loglevel init
    init_on_alloc init_on_free initcall_blacklist initcall_debug initrd intel_iommu
    iommu irqaffinity irqpoll isolcpus keep_bootcon kernelcore kfence.sample_interval
    lockdown log_buf_len loglevel lsm maxcpus mem memblock memmap memhp_default_state
    memtest mitigations mminit_loglevel movable_node movablecore nmi_watchdog no_console_suspend
    noapic noefi nohz nohz_full noinitrd nokaslr nolapic nomodeset nopti norandmaps
    noresume nosmp nosoftlockup nospectre_v2 nowatchdog nr_cpus numa numa_balancing
    numa_zonelist_order oops page_owner page_poison panic panic_on_warn pci possible_cpus
    preempt pti quiet rcu_nocbs rdinit reboot reset_devices resume ro root rootdelay
    rootflags rootfstype rootwait rw security selinux slab_nomerge slub_debug
    softlockup_all_cpu_backtrace softlockup_panic spectre_v2 swiotlb threadirqs
    transparent_hugepage tsc video vmalloc watchdog
""".split())


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
    #: None: the command line does not say (the Kconfig default decides, MM P8).
    init_on_alloc: bool | None = None
    init_on_free: bool | None = None
    sysctl_vm: list[tuple[str, str]] = field(default_factory=list)
    sysctl_kernel: list[tuple[str, str]] = field(default_factory=list)
    ignored_sysctls: list[str] = field(default_factory=list)
    #: ``(module or None, query)`` of each ``dyndbg``/``<module>.dyndbg`` parameter.
    dyndbg: list[tuple[str | None, str]] = field(default_factory=list)
    #: ``argv_init`` and ``envp_init`` as init receives them.
    init_argv: list[str] = field(default_factory=lambda: ["init"])
    init_envp: list[str] = field(default_factory=lambda: ["HOME=/", "TERM=linux"])
    #: What ``print_unknown_bootoptions`` lists (argv part, then envp part); "" if none.
    unknown: str = ""
    #: The value of the last ``fail_page_alloc=`` that ``setup_fault_attr`` accepts
    #: (mm/fail_page_alloc.c), or None.
    fail_page_alloc: str | None = None
    #: What ``__setup`` handlers print while the command line is parsed, in order
    #: (KERN_WARNING, right after the ``Kernel command line:`` line).
    setup_warnings: list[str] = field(default_factory=list)


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


def _word(param: str, value: str | None) -> str:
    """``repair_env_string``: the parameter as one ``name=value`` string again."""
    return param if value is None else f"{param}={value}"


def _unknown_bootoption(bp: BootParams, param: str, value: str | None) -> None:
    """``unknown_bootoption`` for a parameter nobody claimed."""
    if "." in param:
        return                          # an unused module parameter
    word = _word(param, value)
    if value is not None:
        for i, env in enumerate(bp.init_envp):
            if env.startswith(param + "="):
                bp.init_envp[i] = word
                return
        if len(bp.init_envp) >= MAX_INIT_ENVS:
            raise ValueError(f"Too many boot env vars at `{param}'")
        bp.init_envp.append(word)
    else:
        if len(bp.init_argv) >= MAX_INIT_ARGS:
            raise ValueError(f"Too many boot init vars at `{param}'")
        bp.init_argv.append(word)


def parse_boot_params(cmdline: str, dynamic_debug: bool = True) -> BootParams:
    """Parse ``cmdline``; raise ``ValueError`` naming a malformed honoured one.

    Models ``parse_args("Booting kernel", ...)`` with ``unknown_bootoption``, then
    ``print_unknown_bootoptions`` (``bp.unknown``) and ``set_init_arg`` for the words
    after ``--``.  ``dynamic_debug`` is CONFIG_DYNAMIC_DEBUG: it makes ``dyndbg`` known.
    """
    if not isinstance(cmdline, str):
        raise ValueError(f"cmdline must be a str, not {type(cmdline).__name__}")
    bp = BootParams(cmdline=cmdline)
    words = parse_args(cmdline)
    after: list[tuple[str, str | None]] = []
    if ("--", None) in words:
        cut = words.index(("--", None))
        words, after = words[:cut], words[cut + 1:]
    for param, value in words:
        if dynamic_debug and (param == "dyndbg" or param.endswith(".dyndbg")):
            module = param[:-len(".dyndbg")] if param != "dyndbg" else None
            bp.dyndbg.append((module, "+p" if value is None else value))
            continue
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
        elif param.replace("-", "_") == "fail_page_alloc" and value is not None:
            # __setup("fail_page_alloc=", ...): a value setup_fault_attr cannot parse is
            # refused with a warning, and the parameter is then an unknown one.
            if fault_attr_scanf(value) is None:
                bp.setup_warnings.append("FAULT_INJECTION: failed to parse arguments")
                _unknown_bootoption(bp, param, value)
            else:
                bp.fail_page_alloc = value
        elif param not in KNOWN_PARAMS:
            _unknown_bootoption(bp, param, value)
    bp.unknown = " ".join(bp.init_argv[1:] + bp.init_envp[2:])
    for param, value in after:
        if len(bp.init_argv) >= MAX_INIT_ARGS:
            raise ValueError(f"Too many boot init vars at `{param}'")
        bp.init_argv.append(_word(param, value))
    return bp
