"""arm64 kexec_file helpers (``arch/arm64/kernel/machine_kexec_file.c``), ARCH A13–A22,
A29–A36."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ...constants import PAGE_SIZE, SZ_1G, SZ_2M, SZ_64K
from ...kernel.kexec.core import KexecError, KImage
from ...kernel.kexec.file import KexecBuf, kexec_add_buffer, kexec_dprintk, kexec_drop_segment
from ...kernel.kexec.uapi import KEXEC_TYPE_CRASH

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["load_other_segments", "prepare_elf_headers", "elf_headers_size"]

_U64 = (1 << 64) - 1


def _ram_ranges_without_crash(m: Machine) -> list[tuple[int, int]]:
    ranges = list(m.kernel.memblock.memory)
    if m.kernel.kexec.crashk_res is not None:
        from ...mm.memblock import subtract
        ranges = subtract(ranges, *m.kernel.kexec.crashk_res)
    return ranges


def elf_headers_size(m: Machine, ranges: list[tuple[int, int]]) -> int:
    """The size ``crash_prepare_elf64_headers`` gives the ELF core header (ARCH A22): ELF64
    header + one program header per CPU, vmcoreinfo, range, kernel."""
    nr_phdr = m.cpus + 1 + len(ranges) + 1
    return (64 + 56 * nr_phdr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def prepare_elf_headers(m: Machine, ranges: list[tuple[int, int]]) -> bytes:
    """The crash kernel's ELF core headers (``crash_prepare_elf64_headers``)."""
    size = elf_headers_size(m, ranges)
    nr_phdr = m.cpus + 2 + len(ranges)
    machine = 183 if m.arch == "arm64" else 62  # EM_AARCH64 / EM_X86_64
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
            + struct.pack("<HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, nr_phdr,
                          0, 0, 0))
    phdrs = []
    for cpu in range(m.cpus):
        phdrs.append(struct.pack("<IIQQQQQQ", 4, 0, 0, 0, 0, 0, 0, 0))
    phdrs.append(struct.pack("<IIQQQQQQ", 4, 0, 0, 0, 0, 0, 0, 0))  # vmcoreinfo note
    text = m.kernel.kernel_image or (0, 0)
    phdrs.append(struct.pack("<IIQQQQQQ", 1, 7, 0, 0, text[0], text[1] - text[0],
                             text[1] - text[0], 0))
    for start, end in ranges:
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 7, start, 0, start, end - start,
                                 end - start, 0))
    blob = ehdr + b"".join(phdrs)
    return blob + bytes(size - len(blob))


def _kexec_dtb(m: Machine, image: KImage, initrd: tuple[int, int] | None,
               cmdline: bytes) -> bytes:
    from .dtb import FdtError, create_dtb
    rng = m.kernel.kexec.kexec_rng
    seed = rng.randbytes(8 + 128)
    crash = image.image_type == KEXEC_TYPE_CRASH
    elfcorehdr = image.arch.get("elfcorehdr") if crash else None
    usable = []
    crashk_res = m.kernel.kexec.crashk_res
    if crash and crashk_res is not None:
        usable = [(crashk_res[0], crashk_res[1] - crashk_res[0])]
    text = cmdline[:-1].decode("utf-8", "surrogateescape") if cmdline else None
    try:
        return create_dtb(m.boot_dtb, cmdline=text, initrd=initrd, elfcorehdr=elfcorehdr,
                          usable_ranges=usable, rng_seed=seed, boot_dtb_addr=None)
    except FdtError as exc:
        m.kernel.log.err("kexec_file: Preparing for new dtb failed")
        raise KexecError(errno.EINVAL, f"dtb: {exc}") from None


def load_other_segments(m: Machine, image: KImage, kernel_load_addr: int, kernel_size: int,
                        initrd: bytes | None, cmdline: bytes) -> None:
    """``load_other_segments`` (ARCH A13–A18): [elfcorehdr], [initrd], dtb, all above the
    kernel.

    On failure every segment added here is dropped again (A19) and KexecError
    propagates to the retry loop.
    """
    orig = image.nr_segments
    try:
        _load_other_segments(m, image, kernel_load_addr, kernel_size, initrd, cmdline)
    except KexecError:
        while image.nr_segments > orig:
            kexec_drop_segment(m, image)
        raise


def _load_other_segments(m: Machine, image: KImage, kernel_load_addr: int, kernel_size: int,
                         initrd: bytes | None, cmdline: bytes) -> None:
    buf_min = kernel_load_addr + kernel_size
    if image.image_type == KEXEC_TYPE_CRASH:
        headers = prepare_elf_headers(m, _ram_ranges_without_crash(m))
        kbuf = KexecBuf(image, headers, len(headers), len(headers), SZ_64K, buf_min, _U64, True)
        kexec_add_buffer(m, kbuf)
        image.arch["elfcorehdr"] = (kbuf.mem, len(headers))
        kexec_dprintk(m, "kexec_file: Loaded elf core header at %#x bufsz=%#x memsz=%#x",
                      kbuf.mem, kbuf.bufsz, kbuf.memsz)
    initrd_range = None
    if initrd is not None:
        kbuf = KexecBuf(image, initrd, len(initrd), len(initrd), 0, buf_min,
                        (kernel_load_addr & ~(SZ_1G - 1)) + 32 * SZ_1G, False)
        kexec_add_buffer(m, kbuf)
        initrd_range = (kbuf.mem, len(initrd))
        kexec_dprintk(m, "kexec_file: Loaded initrd at %#x bufsz=%#x memsz=%#x",
                      kbuf.mem, kbuf.bufsz, kbuf.memsz)
    dtb = _kexec_dtb(m, image, initrd_range, cmdline)
    kbuf = KexecBuf(image, dtb, len(dtb), len(dtb), SZ_2M, buf_min, _U64, True)
    kexec_add_buffer(m, kbuf)
    image.arch["dtb_mem"] = kbuf.mem
    image.arch["initrd"] = initrd_range
    kexec_dprintk(m, "kexec_file: Loaded dtb at %#x bufsz=%#x memsz=%#x",
                  kbuf.mem, kbuf.bufsz, kbuf.memsz)
