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

The package is split along the file's life: :mod:`~pykern.scenario.positions` (where a key
sits in the text, and the :class:`ScenarioError` naming it), :mod:`~pykern.scenario.schema` (validation
into :class:`Scenario` and :class:`Step`), :mod:`~pykern.scenario.runner` (:class:`Runner`
and :class:`StepResult`) and :mod:`~pykern.scenario.bundled` (the shipped scenarios, loading
a file, the demo's scenario).
"""

from __future__ import annotations

from .bundled import bundled_scenarios, demo_scenario, load_scenario
from .positions import KeyPath, ScenarioError, dotted_key, error_at, find_key_line
from .runner import Runner, StepResult, kexec_result_json, placement
from .schema import (ACTIONS, COMMON_STEP_KEYS, DEVICE_TYPES, FLAG_NAMES, MACHINE_KEYS,
                     TOP_KEYS, Blob, Scenario, Step, format_flags, parse_flags, parse_gfp,
                     parse_scenario)

__all__ = [
    "ACTIONS", "Blob", "COMMON_STEP_KEYS", "DEVICE_TYPES", "FLAG_NAMES", "KeyPath",
    "MACHINE_KEYS", "Runner", "Scenario", "ScenarioError", "Step", "StepResult", "TOP_KEYS",
    "bundled_scenarios", "demo_scenario", "dotted_key", "error_at", "find_key_line",
    "format_flags", "kexec_result_json", "load_scenario", "parse_flags", "parse_gfp",
    "parse_scenario", "placement",
]
