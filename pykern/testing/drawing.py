"""The one generator of machine layouts and kexec loads, for the fuzz campaign, the soak and
the hypothesis strategies.

:func:`draw_layout` gives keyword arguments for :class:`pykern.Machine` (banks with holes
between them, ``cma=`` and ``crashkernel=`` on the command line, boot reservations, a seed,
optionally devices: MM Z0, D2) and :func:`draw_kexec_image` the kernel, initrd and command
line of a ``kexec_file_load`` (images from :mod:`pykern.images` with the header variants their
loader accepts).  Every choice is taken from a :class:`Source`:

* :class:`RandomSource` wraps a seeded :class:`random.Random`: the fuzz campaign and the soak,
  where case ``i`` of seed ``S`` is always the same (:func:`pykern.testing.fuzz.draw_case`);
* :mod:`pykern.testing.strategies` wraps hypothesis's ``draw``, which also shrinks: every
  choice shrinks toward its first option, the lower bound or ``False``.

The callers differ only in the source and in the bounds they pass.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .. import images
from ..constants import ARCHES, PAGE_SIZE, SZ_2M, SZ_16M

__all__ = ["ARCHES", "BANK0", "BANK_STEP", "CMA_SIZES", "CMDLINE_ALPHABET", "DrawnImage",
           "HEADER_BYTES", "RAM_STEP", "RandomSource", "Source", "choose", "draw_devices",
           "draw_kexec_image", "draw_layout", "layout_banks"]

MiB = 1 << 20
#: Total RAM is a multiple of this.
RAM_STEP = SZ_2M
#: Banks are cut at multiples of this (and each bank is at least this big).
BANK_STEP = SZ_16M
#: Where RAM starts on each arch: the first bank's base.
BANK0 = {"arm64": 0x4000_0000, "x86_64": 0}
#: ``cma=`` sizes in MiB to choose from (None: no ``cma=`` word).
CMA_SIZES: tuple[int | None, ...] = (None, 0, 4, 8, 16, 32)
#: The characters of a drawn kexec command line.
CMDLINE_ALPHABET = "abcxyz=._ 0123"
#: Bytes at the start of an image that hold its header (a corrupted image changes them).
HEADER_BYTES = {"arm64": 64, "x86_64": 0x270}

T = TypeVar("T")


class Source(Protocol):
    """Where a generator's choices come from."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""

    def coin(self, p: float) -> bool:
        """True with probability ``p`` (a hypothesis source decides freely)."""

    def magnitude(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``, mostly small: a size."""

    def distinct(self, lo: int, hi: int, k: int) -> list[int]:
        """``k`` different integers of ``[lo, hi]``."""

    def bits(self, n: int) -> int:
        """An ``n``-bit integer: a seed."""


class RandomSource:
    """A :class:`Source` over a :class:`random.Random`: the same seed, the same choices."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # what rng.randint(lo, hi) does for hi >= lo: lo + rng._randbelow(hi - lo + 1), the
        # same draws from the stream without randint's and randrange's argument checks
        self._below: Callable[[int], int] = getattr(rng, "_randbelow")

    def integer(self, lo: int, hi: int) -> int:
        if hi >= lo:
            return lo + self._below(hi - lo + 1)
        return self.rng.randint(lo, hi)       # randrange's error for an empty range

    def coin(self, p: float) -> bool:
        return self.rng.random() < p

    def magnitude(self, lo: int, hi: int) -> int:
        """Uniform in the logarithm: mostly small, sometimes the largest."""
        if hi <= lo:
            return lo
        drawn = int(math.exp(self.rng.uniform(math.log(lo), math.log(hi + 1))))
        return min(hi, max(lo, drawn))

    def distinct(self, lo: int, hi: int, k: int) -> list[int]:
        return self.rng.sample(range(lo, hi + 1), k)

    def bits(self, n: int) -> int:
        return self.rng.getrandbits(n)


def choose(src: Source, options: Sequence[T]) -> T:
    """One of ``options`` (the first one is where a hypothesis source shrinks to)."""
    return options[src.integer(0, len(options) - 1)]


def draw_layout(src: Source, *, min_ram: int, max_ram: int,
                arches: Sequence[str] = ARCHES, max_banks: int = 3,
                max_hole: int = 256 * MiB, max_reserved: int = 2,
                cma_sizes: Sequence[int | None] = CMA_SIZES,
                crash_sizes: Sequence[int | None] = (None, 16, 32),
                devices: bool = False, seeds: bool = True) -> dict[str, Any]:
    """Keyword arguments for :class:`pykern.Machine`: ``ram``, ``arch``, ``cmdline``, maybe
    ``reserved``, ``seed`` and, with ``devices``, ``devices`` (MM Z0, D2).

    The arch is drawn from both arches and replaced by ``arches[0]`` when it is not one of
    ``arches``, so a layout drawn for both arches is the same layout when drawn again for its
    own.  Total RAM is a multiple of 2 MiB in ``[min_ram, max_ram]``, cut into up to
    ``max_banks`` banks at 16 MiB boundaries, each bank followed, half the time, by a hole of
    up to ``max_hole``; one bank is spelled ``"64M"``, or on arm64 half the time as a bank
    list.  ``cma=`` and ``crashkernel=`` take a size of ``cma_sizes`` / ``crash_sizes`` (MiB;
    None for no word; a size over a quarter of RAM is left out).  A quarter of the time up
    to ``max_reserved`` reservations replace the running kernel's (``Machine(reserved=)``).
    """
    arch = choose(src, ARCHES)
    if arch not in arches:
        arch = arches[0]
    total = src.integer(-(-min_ram // RAM_STEP), max_ram // RAM_STEP) * RAM_STEP
    n = src.integer(1, max(1, min(max_banks, total // BANK_STEP)))
    cuts = sorted(src.distinct(1, total // BANK_STEP - 1, n - 1)) if n > 1 else []
    edges = [0] + [c * BANK_STEP for c in cuts] + [total]
    banks: list[tuple[int, int]] = []
    base = BANK0[arch]
    for b in range(n):
        size = edges[b + 1] - edges[b]
        banks.append((base, size))
        hole = src.integer(0, max_hole // RAM_STEP) * RAM_STEP if src.coin(0.5) else 0
        base += size + hole
    layout: dict[str, Any] = {"ram": banks if n > 1 else f"{total // MiB}M", "arch": arch}
    if n == 1 and arch == "arm64" and src.coin(0.5):
        layout["ram"] = banks            # the same machine, spelled as a bank list
    words = []
    if cma_sizes:
        cma = choose(src, cma_sizes)
        if cma is not None and cma * MiB * 4 <= total:
            words.append(f"cma={cma}M")
    if crash_sizes:
        crash = choose(src, crash_sizes)
        if crash is not None and crash * MiB * 4 <= total:
            words.append(f"crashkernel={crash}M")
    layout["cmdline"] = " ".join(words)
    if max_reserved and src.coin(0.25):
        reserved = set()
        for _ in range(src.integer(1, max_reserved)):
            b0, bsz = banks[src.integer(0, n - 1)]
            pages = bsz // PAGE_SIZE
            first = src.integer(0, pages - 1)
            length = src.integer(1, min(pages - first, 4096))
            reserved.add((b0 + first * PAGE_SIZE, length * PAGE_SIZE))
        layout["reserved"] = sorted(reserved)
    layout["seed"] = src.bits(32) if seeds else 0
    if devices:
        layout["devices"] = draw_devices(src, arch)
    return layout


def layout_banks(layout: dict[str, Any]) -> list[tuple[int, int]]:
    """``(base, size)`` of each bank of a layout :func:`draw_layout` gave."""
    ram = layout["ram"]
    if isinstance(ram, list):
        return [(int(base), int(size)) for base, size in ram]
    return [(BANK0[layout["arch"]], int(ram[:-1]) * MiB)]


def draw_devices(src: Source, arch: str) -> list[Any]:
    """Devices for ``Machine(devices=...)``: on arm64 maybe a
    :class:`~pykern.drivers.gic.GICv3`, then up to two :class:`~pykern.drivers.dma.DmaDevice`
    (``dma0``, ``dma1``), each honouring shutdown or not, at a drawn rate.  New objects at
    every call: a device is hardware attached to one machine (GIC-M1)."""
    from ..drivers.dma import DmaDevice
    out: list[Any] = []
    if arch == "arm64" and src.coin(0.5):
        from ..drivers.gic import GICv3
        out.append(GICv3(honours_shutdown=not src.coin(0.5),
                         msi_rate_hz=choose(src, (20000.0, 0.0, 1000.0, 200000.0)),
                         vpes=src.integer(0, 2)))
    for k in range(src.integer(0, 2)):
        out.append(DmaDevice(f"dma{k}", bus=choose(src, ("pci", "platform")),
                             honours_shutdown=not src.coin(0.5),
                             rate_hz=choose(src, (10000.0, 0.0, 1000.0, 100000.0))))
    return out


@dataclass
class DrawnImage:
    """What :func:`draw_kexec_image` drew: the arguments of a load but its flags."""

    kernel: bytes
    initrd: bytes | None
    cmdline: str
    #: The arm64 Image header's ``text_offset`` (0 on x86_64).
    text_offset: int = 0


def draw_kexec_image(src: Source, arch: str, *, min_kernel: int, max_kernel: int,
                     max_initrd: int, max_cmdline: int = 40, valid: bool = True
                     ) -> DrawnImage:
    """A kernel of ``arch`` its loader accepts, maybe an initrd, a short command line.

    The kernel is a whole number of pages of ``[min_kernel, max_kernel]``; arm64: an Image
    with ``text_offset`` 0 or 512 KiB and extra bss; x86_64: a bzImage with ``init_size``
    slack and 2 or 4 MiB ``kernel_alignment``.  ``valid=False`` then changes up to four
    header bytes, so the loader may refuse it.  Half the time there is an initrd of up to
    ``max_initrd`` bytes (never with ``max_initrd`` 0).
    """
    size = src.magnitude(min_kernel, max_kernel) // PAGE_SIZE * PAGE_SIZE
    seed = src.integer(0, 255)
    text_offset = 0
    if arch == "arm64":
        text_offset = choose(src, (0, 0x80000))
        kernel = images.arm64_image(size, text_offset=text_offset,
                                    bss=src.integer(0, 64) * PAGE_SIZE, seed=seed)
    else:
        slack = src.integer(0, 512) * PAGE_SIZE
        kernel = images.bzimage(size, init_size=size - 1024 + slack,
                                kernel_alignment=choose(src, (2 * MiB, 4 * MiB)), seed=seed)
    if not valid:
        data = bytearray(kernel)
        for _ in range(src.integer(1, 4)):
            data[src.integer(0, HEADER_BYTES[arch] - 1)] = src.integer(0, 255)
        kernel = bytes(data)
    initrd = None
    if max_initrd and src.coin(0.5):
        initrd = images.payload_pattern(src.magnitude(1, max_initrd), seed=seed + 1)
    integer, last = src.integer, len(CMDLINE_ALPHABET) - 1
    cmdline = "".join([CMDLINE_ALPHABET[integer(0, last)]      # choose(src, CMDLINE_ALPHABET)
                       for _ in range(integer(0, max_cmdline))]).strip()
    return DrawnImage(kernel, initrd, cmdline, text_offset)
