"""hypothesis strategies for pykern machines and kexec loads (the testing guide).

``layouts()`` draws keyword arguments for :class:`pykern.Machine`; ``kexec_loads()`` draws
the arguments of ``m.kexec_file_load``.  Both produce valid inputs (a machine that boots, an
image its loader accepts) unless asked otherwise, and shrink toward one small bank, no
reservations, small images and flags 0.  Arguments are checked when the strategy is built and
raise :class:`hypothesis.errors.InvalidArgument`, as hypothesis's own strategies do.
"""

from __future__ import annotations

from typing import Any, Sequence

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .. import images
from ..kernel.kexec.uapi import KEXEC_FILE_DEBUG, KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH
from ..lib.cmdline import parse_size

__all__ = ["layouts", "kexec_loads", "kexec_flags", "ARCHES"]

MiB = 1 << 20
ARCHES = ("arm64", "x86_64")
_BANK0 = {"arm64": 0x4000_0000, "x86_64": 0}
_STEP = 2 * MiB


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
    nbanks_max = max(1, min(max_banks, lo // (16 * MiB)))
    if not isinstance(devices, bool):
        raise InvalidArgument(f"devices={devices!r} must be True or False")

    @st.composite
    def draw_layout(draw: st.DrawFn) -> dict[str, Any]:
        a = draw(st.sampled_from(arches))
        total = draw(st.integers(-(-lo // _STEP), hi // _STEP)) * _STEP
        n = draw(st.integers(1, nbanks_max))
        cuts = sorted(draw(st.lists(st.integers(1, total // (16 * MiB) - 1), min_size=n - 1,
                                    max_size=n - 1, unique=True))) if n > 1 else []
        edges = [0] + [c * 16 * MiB for c in cuts] + [total]
        banks, base = [], _BANK0[a]
        for i in range(n):
            size = edges[i + 1] - edges[i]
            banks.append((base, size))
            base += size + (draw(st.integers(0, gap // _STEP)) * _STEP if i < n - 1 else 0)
        kw: dict[str, Any] = {"ram": banks if n > 1 else f"{total // MiB}M", "arch": a}
        if n == 1 and a == "arm64" and draw(st.booleans()):
            kw["ram"] = banks            # the same machine, spelled as a bank list
        words = []
        if cma:
            c = draw(st.sampled_from([None, 0, 4, 8, 16, 32]))
            if c is not None and c * MiB * 4 <= total:
                words.append(f"cma={c}M")
        if crashkernel:
            c = draw(st.sampled_from([None, 16, 32]))
            if c is not None and c * MiB * 4 <= total:
                words.append(f"crashkernel={c}M")
        kw["cmdline"] = " ".join(words)
        if max_reserved and draw(st.booleans()):
            res = []
            for _ in range(draw(st.integers(1, max_reserved))):
                b0, bsz = banks[draw(st.integers(0, n - 1))]
                pages = bsz // 4096
                start = draw(st.integers(0, pages - 1))
                length = draw(st.integers(1, min(pages - start, 4096)))
                res.append((b0 + start * 4096, length * 4096))
            kw["reserved"] = sorted(set(res))
        kw["seed"] = draw(st.integers(0, 2**32 - 1)) if seeds else 0
        if devices:
            kw["devices"] = draw(_devices(a))
        return kw

    return draw_layout()


def _devices(arch: str) -> st.SearchStrategy[list[Any]]:
    """A device list for ``Machine(devices=...)`` on ``arch``: maybe a GICv3 (arm64 only),
    then up to two DMA devices; drawn as fresh objects every time."""
    from ..drivers.dma import DmaDevice

    @st.composite
    def draw_devices(draw: st.DrawFn) -> list[Any]:
        out: list[Any] = []
        if arch == "arm64" and draw(st.booleans()):
            from ..drivers.gic import GICv3
            out.append(GICv3(honours_shutdown=not draw(st.booleans()),
                             msi_rate_hz=draw(st.sampled_from([20000.0, 0.0, 1000.0,
                                                               200000.0])),
                             vpes=draw(st.integers(0, 2))))
        for k in range(draw(st.integers(0, 2))):
            out.append(DmaDevice(f"dma{k}", bus=draw(st.sampled_from(["pci", "platform"])),
                                 honours_shutdown=not draw(st.booleans()),
                                 rate_hz=draw(st.sampled_from([10000.0, 0.0, 1000.0,
                                                               100000.0]))))
        return out

    return draw_devices()


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
    def draw_load(draw: st.DrawFn) -> dict[str, Any]:
        size = draw(st.integers(kmin // 4096, kmax // 4096)) * 4096
        seed = draw(st.integers(0, 255))
        if arch == "arm64":
            kernel = images.arm64_image(size, text_offset=draw(st.sampled_from([0, 0x80000])),
                                        bss=draw(st.integers(0, 64)) * 4096, seed=seed)
            header = 64
        else:
            payload = size - 1024
            slack = draw(st.integers(0, 512)) * 4096
            kernel = images.bzimage(size, init_size=payload + slack,
                                    kernel_alignment=draw(st.sampled_from([2 * MiB, 4 * MiB])),
                                    seed=seed)
            header = 0x270
        if not valid:
            data = bytearray(kernel)
            for _ in range(draw(st.integers(1, 4))):
                data[draw(st.integers(0, header - 1))] = draw(st.integers(0, 255))
            kernel = bytes(data)
        initrd = None
        if imax and draw(st.booleans()):
            initrd = images.payload_pattern(draw(st.integers(1, imax)), seed=seed + 1)
        cmdline = draw(st.text("abcxyz=._ 0123", max_size=40)).strip()
        return {"kernel": _blob(kernel, f"{arch} kernel"),
                "initrd": None if initrd is None else _blob(initrd, "initrd"),
                "cmdline": cmdline,
                "flags": draw(flag_st)}

    return draw_load()
