"""What the next kernel learns when it starts (K16.13, MM Z0.3).

arm64 reads the device tree whose address x0 carries; x86_64 reads the boot
parameters whose address rsi carries.  Both are read back from RAM, so a
scribbled hand-over shows up in the next generation.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...constants import SZ_1M
from .core import KImage
from .uapi import KEXEC_TYPE_CRASH

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["next_kernel_info"]



def _segment_at(image: KImage, mem: int) -> tuple[int, int]:
    for seg in image.segments:
        if seg.mem == mem:
            return seg.mem, seg.mem + seg.memsz
    raise LookupError(f"no segment at {mem:#x}")


def _arm64_info(m: Machine, image: KImage) -> dict[str, Any]:
    from ...arch.arm64.dtb import parse_kexec_dtb
    from ...lib.fdt import FdtError
    dtb_mem = image.arch["dtb_mem"]
    dtb_seg = _segment_at(image, dtb_mem)
    size = next(s.bufsz for s in image.segments if s.mem == dtb_mem)
    dtb = m.physmem.read(dtb_mem, size)
    kernel = (image.segments[0].mem, image.segments[0].mem + image.segments[0].memsz)
    info: dict[str, Any] = {"kernel": kernel, "dtb": dtb, "memory": list(m.banks),
                            "cmdline": "", "initrd": None}
    try:
        parsed = parse_kexec_dtb(dtb)
    except FdtError as exc:
        m.kernel.log.err(f"pykern: the next kernel cannot parse its device tree: {exc}")
        parsed = {}
    if parsed.get("memory"):
        info["memory"] = parsed["memory"]
    info["cmdline"] = parsed.get("bootargs") or ""
    initrd = parsed.get("initrd")
    info["initrd"] = initrd
    reserve = [kernel, dtb_seg]
    for base, length in parsed.get("reservations", []):
        reserve.append((base, base + length))  # the initrd's among them, freed after boot
    if image.image_type == KEXEC_TYPE_CRASH:
        usable = parsed.get("usable_memory_range") or []
        if usable:
            info["memory"] = list(usable)
        elf = parsed.get("elfcorehdr")
        if elf:
            reserve.append((elf[0], elf[0] + elf[1]))
    info["reserve"] = reserve
    return info


def _x86_info(m: Machine, image: KImage) -> dict[str, Any]:
    bp = image.arch["boot_params"]
    zero = m.physmem.read(bp, 4096)
    ptr = struct.unpack_from("<I", zero, 0x228)[0] | (struct.unpack_from("<I", zero, 0xC8)[0]
                                                      << 32)
    cmdline = ""
    if m.physmem.is_ram(ptr, 1):
        n = min(4096, m.physmem.size)
        raw = m.physmem.read(ptr, n) if m.physmem.is_ram(ptr, n) else m.physmem.read(ptr, 1)
        cmdline = raw.split(b"\0", 1)[0].decode(errors="replace")
    count = min(zero[0x1E8], 128)
    memory = []
    for k in range(count):
        addr, size, kind = struct.unpack_from("<QQI", zero, 0x2D0 + 20 * k)
        if kind == 1 and size:
            memory.append((addr, size))
    rd = struct.unpack_from("<I", zero, 0x218)[0] | (struct.unpack_from("<I", zero, 0xC0)[0]
                                                     << 32)
    rd_size = struct.unpack_from("<I", zero, 0x21C)[0] | (
        struct.unpack_from("<I", zero, 0xC4)[0] << 32)
    kernel = _segment_at(image, image.arch["kernel_mem"])
    reserve = [kernel, (0, SZ_1M)]
    if rd_size:
        reserve.append((rd, rd + rd_size))  # freed after boot
    return {"kernel": kernel, "memory": memory or list(m.banks), "cmdline": cmdline,
            "initrd": (rd, rd_size) if rd_size else None, "reserve": reserve}


def next_kernel_info(m: Machine, image: KImage) -> dict[str, Any]:
    """Memory, reservations, command line and initrd of the next generation."""
    return _arm64_info(m, image) if m.arch == "arm64" else _x86_info(m, image)
