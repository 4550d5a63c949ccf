"""hypothesis strategies for pykern machines and kexec loads (the testing guide).

``layouts()`` draws keyword arguments for :class:`pykern.Machine`; ``kexec_loads()`` draws
the arguments of ``m.kexec_file_load``.  Both produce valid inputs (a machine that boots, an
image its loader accepts) unless asked otherwise, and shrink toward one small bank, no
reservations, small images and flags 0.  Arguments are checked when the strategy is built and
raise :class:`hypothesis.errors.InvalidArgument`, as hypothesis's own strategies do.

The drawing itself is :mod:`pykern.testing.drawing`, the generator the fuzz campaign uses
too; here its choices come from hypothesis's ``draw``.
"""

from __future__ import annotations

from typing import Any, Sequence

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..kernel.kexec.uapi import KEXEC_FILE_DEBUG, KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH
from ..lib.cmdline import parse_size
from .drawing import ARCHES, CMA_SIZES, draw_kexec_image, draw_layout

__all__ = ["layouts", "kexec_loads", "kexec_flags", "ARCHES"]

MiB = 1 << 20
#: ``crashkernel=`` sizes in MiB a layout chooses from (None: no ``crashkernel=``).
CRASH_SIZES = (None, 16, 32)


class _HypothesisSource:
    """The choices of :mod:`pykern.testing.drawing` as hypothesis draws, each of which
    shrinks toward its lower bound, its first option or ``False``."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def coin(self, p: float) -> bool:
        return self.draw(st.booleans())

    def magnitude(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def distinct(self, lo: int, hi: int, k: int) -> list[int]:
        return self.draw(st.lists(st.integers(lo, hi), min_size=k, max_size=k, unique=True))

    def bits(self, n: int) -> int:
        return self.draw(st.integers(0, (1 << n) - 1))


def _size(name: str, value: int | str) -> int:
    try:
        return parse_size(value, name)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{name}={value!r}: {exc}") from None


def _arches(arch: str | Sequence[str] | None) -> tuple[str, ...]:
    arches = ARCHES if arch is None else (arch,) if isinstance(arch, str) else tuple(arch)
    bad = [a for a in arches if a not in ARCHES]
    if bad or not arches:
        raise InvalidArgument(f"arch={arch!r}: choose from {ARCHES}")
    return arches


class Blob(bytes):
    """Bytes that print as a short summary, so failing examples stay readable."""

    label = "blob"

    def __repr__(self) -> str:
        head = bytes(self[:8]).hex()
        return f"<{self.label} {len(self)} bytes {head}...>"


def _blob(data: bytes, label: str) -> Blob:
    b = Blob(data)
    b.label = label
    return b


def layouts(*, arch: str | Sequence[str] | None = None, min_ram: int | str = "64M",
            max_ram: int | str = "512M", max_banks: int = 3, max_hole: int | str = "256M",
            max_reserved: int = 2, cma: bool = True, crashkernel: bool = True,
            devices: bool = False, seeds: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Machine keyword arguments: banks with holes between them, optional boot reservations,
    a command line with ``cma=`` and ``crashkernel=`` and a seed (MM Z0, D2).

    ``min_ram``/``max_ram`` bound the total RAM (multiples of 2 MiB); ``max_banks`` the number
    of banks; ``max_hole`` each gap between banks; ``max_reserved`` the number of extra
    reservations (each replaces the default ones, as ``Machine(reserved=...)`` does).

    ``devices=True`` adds ``devices``, a list of new device objects for ``Machine(devices=)``:
    on arm64 maybe a :class:`~pykern.drivers.gic.GICv3` (honouring shutdown or not, with a
    drawn MSI rate and number of vPEs), and on either arch up to two
    :class:`~pykern.drivers.dma.DmaDevice` (``dma0``, ``dma1``: PCI or platform bus,
    honouring shutdown or not, a drawn write rate).  A device is hardware attached to one
    machine (GIC-M1), so each drawn dict boots one machine; draw again for another.  The list
    shrinks toward no devices.
    """
    arches = _arches(arch)
    lo, hi, gap = _size("min_ram", min_ram), _size("max_ram", max_ram), _size("max_hole", max_hole)
    if lo < 32 * MiB:
        raise InvalidArgument(f"min_ram={min_ram!r}: pykern machines need at least 32M")
    if hi < lo:
        raise InvalidArgument(f"max_ram={max_ram!r} is below min_ram={min_ram!r}")
    if not isinstance(max_banks, int) or max_banks < 1:
        raise InvalidArgument(f"max_banks={max_banks!r} must be at least 1")
    if not isinstance(max_reserved, int) or max_reserved < 0:
        raise InvalidArgument(f"max_reserved={max_reserved!r} must be >= 0")
    if not isinstance(devices, bool):
        raise InvalidArgument(f"devices={devices!r} must be True or False")

    @st.composite
    def layout(draw: st.DrawFn) -> dict[str, Any]:
        return draw_layout(_HypothesisSource(draw), arches=arches, min_ram=lo, max_ram=hi,
                           max_banks=max_banks, max_hole=gap, max_reserved=max_reserved,
                           cma_sizes=CMA_SIZES if cma else (),
                           crash_sizes=CRASH_SIZES if crashkernel else (), devices=devices,
                           seeds=seeds)

    return layout()


def kexec_flags(*, crash: bool = False, debug: bool = True) -> st.SearchStrategy[int]:
    """Legal kexec_file_load flags for a load: 0 or NO_CMA, maybe DEBUG, ON_CRASH if asked."""
    base = [0, KEXEC_FILE_NO_CMA]
    extra = [0, KEXEC_FILE_DEBUG] if debug else [0]
    crash_bit = [0, KEXEC_FILE_ON_CRASH] if crash else [0]
    return st.builds(lambda a, b, c: a | b | c, st.sampled_from(base), st.sampled_from(extra),
                     st.sampled_from(crash_bit))


def kexec_loads(*, arch: str = "arm64", min_kernel: int | str = "64K",
                max_kernel: int | str = "8M", max_initrd: int | str = "8M",
                flags: st.SearchStrategy[int] | None = None,
                valid: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for ``m.kexec_file_load``: ``kernel``, ``initrd``, ``cmdline``, ``flags``.

    Kernels come from :mod:`pykern.images` with the header variants a loader accepts (arm64:
    text_offset 0 or 512 KiB, extra bss; x86_64: init_size slack, 2 or 4 MiB alignment).
    ``valid=False`` additionally corrupts up to four header bytes, so the loader may refuse.
    """
    if arch not in ARCHES:
        raise InvalidArgument(f"arch={arch!r}: choose from {ARCHES}")
    kmin, kmax = _size("min_kernel", min_kernel), _size("max_kernel", max_kernel)
    imax = _size("max_initrd", max_initrd)
    floor = 4096 if arch == "arm64" else 8192
    if kmin < floor:
        raise InvalidArgument(f"min_kernel={min_kernel!r}: a {arch} image needs {floor} bytes")
    if kmax < kmin:
        raise InvalidArgument(f"max_kernel={max_kernel!r} is below min_kernel={min_kernel!r}")
    flag_st = kexec_flags() if flags is None else flags

    @st.composite
    def load(draw: st.DrawFn) -> dict[str, Any]:
        drawn = draw_kexec_image(_HypothesisSource(draw), arch, min_kernel=kmin,
                                 max_kernel=kmax, max_initrd=imax, valid=valid)
        return {"kernel": _blob(drawn.kernel, f"{arch} kernel"),
                "initrd": None if drawn.initrd is None else _blob(drawn.initrd, "initrd"),
                "cmdline": drawn.cmdline,
                "flags": draw(flag_st)}

    return load()
