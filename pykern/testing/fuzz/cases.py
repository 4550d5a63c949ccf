"""The fuzz campaign's cases: :class:`Config`, what decides a campaign, and
:func:`draw_case`, case ``i`` of a seed (a machine layout and a kexec load drawn by
:mod:`pykern.testing.drawing` from a :class:`random.Random` seeded with the seed and ``i``)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ...kernel.kexec.uapi import KEXEC_FILE_DEBUG, KEXEC_FILE_ON_CRASH
from ..drawing import ARCHES, RandomSource, draw_kexec_image, draw_layout, layout_banks

__all__ = ["ARCHES", "Case", "Config", "DEFAULT_MAX_IMAGE", "MIN_KERNEL", "MIN_RAM", "MODES",
           "draw_case"]

MiB = 1 << 20
MODES = ("cma", "no-cma")
#: The smallest machine a case draws, and the smallest kernel.
MIN_RAM = 32 * MiB
MIN_KERNEL = 64 * 1024
#: Default cap on kernel and initrd sizes (drawn log-uniformly below it).  Bigger images
#: exercise the same paths more slowly: cost grows with the pages a load copies and lists.
DEFAULT_MAX_IMAGE = 512 * 1024
#: ``crashkernel=`` sizes in MiB a case chooses from (None twice: half the cases have none).
CRASH_SIZES = (None, None, 8, 16, 32)


@dataclass(frozen=True)
class Config:
    """Everything that decides what a campaign runs (picklable, for worker processes)."""

    seed: int = 0
    start: int = 0
    layouts: int = 1
    modes: tuple[str, ...] = MODES
    arches: tuple[str, ...] = ARCHES
    ram_max: int = 64 * MiB
    max_kernel: int = DEFAULT_MAX_IMAGE
    max_initrd: int = DEFAULT_MAX_IMAGE
    fixes: tuple[str, ...] = ()
    #: The option spellings, for replay lines.
    ram_max_text: str = "64M"
    max_kernel_text: str = "512K"
    max_initrd_text: str = "512K"
    fixes_text: str = ""

    def replay(self, case: int, mode: str | None, arch: str | None) -> str:
        """The command line that runs exactly this case (in one mode and arch when given)."""
        words = ["pykern", "fuzz", "--layouts", "1", "--seed", str(self.seed),
                 "--start", str(case)]
        words += ["--mode", mode or _choice_text(self.modes, MODES)]
        words += ["--arch", arch or _choice_text(self.arches, ARCHES)]
        words += ["--ram-max", self.ram_max_text]
        if self.max_kernel != DEFAULT_MAX_IMAGE:
            words += ["--max-kernel", self.max_kernel_text]
        if self.max_initrd != DEFAULT_MAX_IMAGE:
            words += ["--max-initrd", self.max_initrd_text]
        if self.fixes:
            words += ["--fixes", self.fixes_text or ",".join(self.fixes)]
        return " ".join(words)


def _choice_text(chosen: tuple[str, ...], every: tuple[str, ...]) -> str:
    return "both" if len(chosen) > 1 else chosen[0] if chosen else every[0]


# --------------------------------------------------------------------------- case drawing
@dataclass
class Case:
    """One fuzz case: Machine keyword arguments and kexec_file_load arguments."""

    index: int
    layout: dict[str, Any]
    kernel: bytes
    initrd: bytes | None
    cmdline: str
    #: Flags other than NO_CMA (which the mode decides): DEBUG and ON_CRASH.
    flags: int
    text_offset: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return str(self.layout["arch"])


def draw_case(config: Config, index: int) -> Case:
    """Case ``index`` of ``config``, from ``random.Random(f"{seed}:{index}")`` alone.

    The arch is always drawn from both arches (and then overridden by ``--arch``), so a case
    found with ``--arch both`` replays with ``--arch <its arch>``.
    """
    src = RandomSource(random.Random(f"{config.seed}:{index}"))
    # the layout: banks with holes, cma=, crashkernel=, maybe reservations (MM Z0, D2)
    layout = draw_layout(src, arches=config.arches, min_ram=MIN_RAM,
                         max_ram=max(MIN_RAM, config.ram_max), crash_sizes=CRASH_SIZES)
    # the load: an image its loader accepts, maybe an initrd, a short command line
    load = draw_kexec_image(src, layout["arch"], min_kernel=MIN_KERNEL,
                            max_kernel=max(MIN_KERNEL, config.max_kernel),
                            max_initrd=config.max_initrd)
    flags = (KEXEC_FILE_DEBUG if src.coin(0.5) else 0) | (
        KEXEC_FILE_ON_CRASH if src.coin(0.125) else 0)
    banks = layout_banks(layout)
    summary = {"ram": sum(size for _, size in banks), "banks": len(banks),
               "cmdline": layout["cmdline"], "reserved": len(layout.get("reserved", ())),
               "kernel": len(load.kernel),
               "initrd": None if load.initrd is None else len(load.initrd), "flags": flags}
    return Case(index, layout, load.kernel, load.initrd, load.cmdline, flags, load.text_offset,
                summary)
