"""Rebooting into a loaded image: ``kernel_kexec``, ``machine_kexec`` and
``__crash_kexec`` (``kernel/kexec_core.c``, ``kernel/crash_core.c``), kexec.md §16–§17.

The hot phase walks the entry words the load wrote into RAM (K16.3) with the
compiled walk or its pure-Python twin, in chunks so device writes due at
emulated instants can land between them (K16.12).
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._fast import get_relocate
from .core import KImage
from .uapi import KEXEC_TYPE_CRASH

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["KexecResult", "kernel_kexec", "crash_kexec", "diff_runs"]

#: SOURCE entries copied between two looks at the device clock.
WALK_CHUNK = 256


@dataclass
class KexecResult:
    """What a reboot did (K16.9–K16.13)."""

    hot_phase_pages: int = 0
    hot_phase_bytes: int = 0
    hot_phase_seconds: float = 0.0
    verified: bool = False
    corrupted: list[tuple[int, int, int]] = field(default_factory=list)
    scribbles: list[tuple[str, int, int]] = field(default_factory=list)
    booted: bool = False
    image_type: str = "default"
    #: emulated nanoseconds of the hot phase (copy_ns per SOURCE entry)
    hot_phase_ns: int = 0


class RelocationError(RuntimeError):
    """The relocation walk met an entry that points outside RAM."""


def diff_runs(m: Machine, start: int, expected: bytes, idx: int) -> list[tuple[int, int, int]]:
    """Maximal runs where RAM at ``start`` differs from ``expected``."""
    memops = m.memops
    buf = m.ram
    off = m.physmem.offset(start, len(expected))
    n = len(expected)
    runs: list[tuple[int, int, int]] = []
    pos = 0
    while pos < n:
        d = memops.first_diff(buf, off + pos, expected, pos, n - pos)
        if d < 0:
            break
        first = pos + d
        end = first + 1
        while end < n and buf[off + end] != expected[end]:
            end += 1
        runs.append((start + first, end - first, idx))
        pos = end
    return runs


def _corrupted(m: Machine, image: KImage) -> list[tuple[int, int, int]]:
    runs: list[tuple[int, int, int]] = []
    for idx, seg in enumerate(image.segments):
        if m.physmem.is_ram(seg.mem, seg.memsz):
            runs += diff_runs(m, seg.mem, image.reference(idx), idx)
    return sorted(runs)


def _verified(m: Machine, image: KImage) -> bool:
    """K16.10: x86 purgatory's digest check; arm64 pykern's reference check."""
    if m.arch == "x86_64":
        from ...arch.x86.purgatory import purgatory_verify
        seg = image.segments[image.arch["purgatory_idx"]]
        return purgatory_verify(m, seg.mem)
    return not _corrupted(m, image)


def relocate_kernel(m: Machine, image: KImage, result: KexecResult) -> None:
    """K16.3: walk ``head`` and copy every SOURCE page, chunk by chunk."""
    walker = get_relocate(m.extensions)
    runs = [v for run in m.physmem._runs for v in run]
    loc, dest = -1, 0
    t0 = time.perf_counter()
    while True:
        status, loc, dest, done, word = walker.relocate_walk(m.ram, runs, image.head, loc,
                                                             dest, WALK_CHUNK)
        result.hot_phase_pages += done
        result.hot_phase_ns += done * m.copy_ns
        if status == 1:
            continue
        if status == 0:
            break
        what = {2: "entry word", 3: "source page", 4: "destination page"}[status]
        raise RelocationError(f"relocation: {what} of entry {word:#x} (at {loc:#x}, "
                              f"destination {dest:#x}) is outside RAM")
    result.hot_phase_seconds = time.perf_counter() - t0
    result.hot_phase_bytes = 4096 * result.hot_phase_pages


def machine_kexec(m: Machine, image: KImage, result: KexecResult) -> None:
    """K16.5/K16.7: copy (unless DONE-only), check, hand over to the next kernel."""
    relocate_kernel(m, image, result)
    result.verified = _verified(m, image)
    if m.arch == "x86_64" and not result.verified:
        result.corrupted = _corrupted(m, image)
        m._halt("purgatory: SHA-256 mismatch, spinning")
        return
    handover: dict[str, Any] = {"image": image}
    m._boot_next(handover)
    result.booted = True
    result.corrupted = _corrupted(m, image)


def kernel_kexec(m: Machine) -> KexecResult:
    """K16.1: reboot into ``m.kexec_image``; OSError(EINVAL) when none is loaded."""
    image = m.kexec_image
    if image is None:
        raise OSError(errno.EINVAL, "kernel_kexec: no kexec image loaded")
    m.kexec_in_progress = True
    for dev in reversed(list(m.devices.values())):
        shutdown = getattr(dev, "shutdown", None)
        if shutdown is not None:
            shutdown()
    m.log.info("kexec_core: Starting new kernel")
    result = KexecResult(image_type=image.type)
    machine_kexec(m, image, result)
    return result


def crash_kexec(m: Machine) -> KexecResult | None:
    """K17.2: boot the crash image without device shutdown; halt if there is none."""
    image = m.kexec_crash_image
    if image is None:
        m._halt("Kernel panic - not syncing: no crash kernel loaded")
        return None
    assert image.image_type == KEXEC_TYPE_CRASH
    m.log.printk(0, "Kernel panic - not syncing: pykern m.panic()")
    result = KexecResult(image_type=image.type)
    machine_kexec(m, image, result)
    return result
