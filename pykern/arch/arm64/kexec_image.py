"""The arm64 ``Image`` loader (``arch/arm64/kernel/kexec_image.c``), ARCH A1–A22."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ...kernel.kexec.core import KexecError, KImage
from ...kernel.kexec.file import KexecBuf, kexec_add_buffer, kexec_dprintk, kexec_drop_segment
from .machine_kexec_file import load_other_segments

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["ARM64_IMAGE_MAGIC", "image_probe", "image_load", "MIN_KIMG_ALIGN"]

ARM64_IMAGE_MAGIC = b"ARM\x64"
MIN_KIMG_ALIGN = 2 << 20
_U64 = (1 << 64) - 1
_GRANULES = {1: "granule_4k", 2: "granule_16k", 3: "granule_64k"}


def image_probe(kernel: bytes) -> int:
    """``image_probe`` (ARCH A4–A6): 0 or -EINVAL."""
    if len(kernel) < 64 or kernel[0x38:0x3C] != ARM64_IMAGE_MAGIC:
        return -errno.EINVAL
    return 0


def _check_cpu_features(m: Machine, flags: int) -> None:
    """The CPU feature checks of ``image_load`` (ARCH A8, A9): endianness and page size."""
    features = m.arm64_cpu_features
    big_endian = flags & 1
    if big_endian and "mixed_endian" not in features:
        raise KexecError(errno.EINVAL, "big-endian Image on a CPU without mixed endianness")
    code = (flags >> 1) & 3
    if code and _GRANULES[code] not in features:
        raise KexecError(errno.EINVAL, f"Image needs the {_GRANULES[code]} the CPU lacks")


def image_load(m: Machine, image: KImage, kernel: bytes, initrd: bytes | None,
               cmdline: bytes) -> None:
    """``image_load`` (ARCH A7–A19): the kernel segment, then initrd and dtb, retrying
    higher."""
    text_offset, image_size, flags = struct.unpack_from("<QQQ", kernel, 8)
    if not image_size:
        raise KexecError(errno.EINVAL, "Image header has image_size 0")
    _check_cpu_features(m, flags)
    kbuf = KexecBuf(image, kernel, len(kernel), (image_size + text_offset) & _U64,
                    MIN_KIMG_ALIGN, 0, _U64, False)
    kernel_segment_number = image.nr_segments
    while True:
        try:
            kexec_add_buffer(m, kbuf)
        except KexecError as exc:
            m.kernel.log.err("kexec_file(Image): Could not find any suitable kernel location!")
            raise exc
        seg = image.segments[kernel_segment_number]
        try:
            load_other_segments(m, image, seg.mem, seg.memsz, initrd, cmdline)
            break
        except KexecError:
            kexec_drop_segment(m, image)
            kbuf.buf_min = seg.mem + seg.memsz
            kbuf.mem = 0
    seg = image.segments[kernel_segment_number]
    seg.mem += text_offset
    seg.memsz -= text_offset
    image.start = seg.mem
    image.arch["text_offset"] = text_offset
    kexec_dprintk(m, "kexec_file(Image): Loaded kernel at %#x bufsz=%#x memsz=%#x",
                  seg.mem, kbuf.bufsz, seg.memsz)
