"""The kernel configuration a machine was "built" with: ``Machine(config={...})``.

pykern models one Kconfig per architecture, that of a distribution kernel (the
Debian/upstream 6.17–6.18 builds the project compared against); ``config`` overrides
single symbols.  ``m.config`` is a read-only mapping from symbol name (without the
``CONFIG_`` prefix) to value.  Only the symbols pykern's behaviour depends on are
modelled; every one of them can be switched:

============================  ===========  ==========  ===========================================
symbol                        arm64        x86_64      what depends on it
============================  ===========  ==========  ===========================================
``CMA_ALIGNMENT``             8            8           cap of the order ``dma_alloc_from_contiguous``
                                                       passes to ``cma_alloc`` (MM D4, K7.5); 2..12
``CMA_SIZE_MBYTES``           32           0           size of the default area without ``cma=``
                                                       (``dma_contiguous_reserve``, MM D3)
``CRASH_HOTPLUG``             False        True        x86 ``crash_load_segments`` sizes the
                                                       elfcorehdr for hotplug, records
                                                       ``elfcorehdr_index`` and the digest skips it
                                                       (arm64 cannot select it in 6.17/6.18)
``MEMORY_HOTPLUG``            True         True        with CRASH_HOTPLUG: room for
                                                       ``CRASH_MAX_MEMORY_RANGES`` program headers
                                                       instead of the present memory ranges
``CRASH_MAX_MEMORY_RANGES``   8192         8192        see MEMORY_HOTPLUG; 1..1048576
``NR_CPUS_DEFAULT``           64           64          CPU program headers the hotplug elfcorehdr
                                                       reserves (x86's Kconfig default without
                                                       MAXSMP)
``NR_CPUS``                   512          512         upper bound of ``Machine(cpus=...)``
``DYNAMIC_DEBUG``             True         True        ``pr_debug`` sites and the dynamic debug
                                                       control file (``dyndbg=`` is then a known
                                                       boot parameter)
``INIT_ON_ALLOC_DEFAULT_ON``  False        False       ``init_on_alloc`` when the command line
                                                       does not say (MM P8)
``INIT_ON_FREE_DEFAULT_ON``   False        False       likewise ``init_on_free``
============================  ===========  ==========  ===========================================

Divergence: pykern's ``NR_CPUS`` (512) is below a distribution x86_64 kernel's 8192; it
only bounds ``cpus=``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["KernelConfig", "KCONFIG_DEFAULTS", "kernel_config"]

#: Per-arch defaults (see the module docstring).
KCONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "arm64": {
        "CMA_ALIGNMENT": 8, "CMA_SIZE_MBYTES": 32, "CRASH_HOTPLUG": False,
        "MEMORY_HOTPLUG": True, "CRASH_MAX_MEMORY_RANGES": 8192, "NR_CPUS_DEFAULT": 64,
        "NR_CPUS": 512, "DYNAMIC_DEBUG": True, "INIT_ON_ALLOC_DEFAULT_ON": False,
        "INIT_ON_FREE_DEFAULT_ON": False,
    },
    "x86_64": {
        "CMA_ALIGNMENT": 8, "CMA_SIZE_MBYTES": 0, "CRASH_HOTPLUG": True,
        "MEMORY_HOTPLUG": True, "CRASH_MAX_MEMORY_RANGES": 8192, "NR_CPUS_DEFAULT": 64,
        "NR_CPUS": 512, "DYNAMIC_DEBUG": True, "INIT_ON_ALLOC_DEFAULT_ON": False,
        "INIT_ON_FREE_DEFAULT_ON": False,
    },
}

#: Integer symbols and their Kconfig ranges (inclusive).
_RANGES = {"CMA_ALIGNMENT": (2, 12), "CMA_SIZE_MBYTES": (0, 1 << 20),
           "CRASH_MAX_MEMORY_RANGES": (1, 1 << 20), "NR_CPUS_DEFAULT": (1, 8192),
           "NR_CPUS": (1, 8192)}


class KernelConfig(Mapping[str, Any]):
    """A read-only mapping of Kconfig symbols (``m.config["CRASH_HOTPLUG"]``).

    Plain data inside, so a machine holding it pickles (snapshots)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self._values)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._values = dict(state)

    def __repr__(self) -> str:
        return f"KernelConfig({self._values!r})"


def kernel_config(arch: str, overrides: Any = None) -> KernelConfig:
    """Validate ``Machine(config=...)``: the arch defaults with ``overrides`` applied.

    Keys may carry the ``CONFIG_`` prefix.  Unknown keys, wrong types, values out of
    the Kconfig range and symbols the architecture cannot select raise ``ValueError``.
    """
    values = dict(KCONFIG_DEFAULTS[arch])
    if overrides is None:
        return KernelConfig(values)
    if not isinstance(overrides, Mapping):
        raise ValueError(f"config: {overrides!r} is not a mapping of Kconfig symbols")
    for raw, value in overrides.items():
        key = raw[len("CONFIG_"):] if isinstance(raw, str) and raw.startswith("CONFIG_") \
            else raw
        if key not in values:
            raise ValueError(f"config: unknown symbol {raw!r} (known: {', '.join(values)})")
        if key in _RANGES:
            lo, hi = _RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"config: {key}={value!r} must be an int in {lo}..{hi}")
        elif not isinstance(value, bool):
            raise ValueError(f"config: {key}={value!r} must be True or False")
        values[key] = value
    if values["CRASH_HOTPLUG"] and arch == "arm64":
        raise ValueError("config: CRASH_HOTPLUG cannot be selected on arm64 (no "
                         "ARCH_SUPPORTS_CRASH_HOTPLUG in 6.17/6.18)")
    return KernelConfig(values)
