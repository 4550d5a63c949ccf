"""Synthetic kernel images for tests (ARCH S1–S4): an arm64 ``Image`` and
an x86_64 ``bzImage``, plus parsers of their headers.

The builders do not validate their arguments beyond what is needed to lay
the bytes out, so the negative variants of S2/S4 (wrong magic, image_size 0,
big-endian flag, truncated files, ...) are built with the same calls. The
payload is a deterministic pattern (:func:`payload_pattern`) so corruption
checks have something to compare; building 128 MiB takes well under a second.
"""

from __future__ import annotations

import random
import struct
from typing import Any
from .constants import PAGE_SIZE, SZ_2M

__all__ = [
    "PAGE_SIZE", "ARM64_HEADER_SIZE", "ARM64_IMAGE_MAGIC", "ARM64_CODE0_BRANCH",
    "ARM64_CODE0_EFI", "BZIMAGE_MIN_SIZE", "BZIMAGE_HDRS", "SZ_2M",
    "payload_pattern", "arm64_image", "arm64_image_header", "bzimage", "bzimage_header",
]

ARM64_HEADER_SIZE = 64
ARM64_IMAGE_MAGIC = b"ARM\x64"
#: ``b #0x40`` — the branch a real Image starts with (skips the header)
ARM64_CODE0_BRANCH = 0x14000010
#: "MZ" followed by a harmless instruction half, as on EFI-stub Images
ARM64_CODE0_EFI = 0x91005A4D
BZIMAGE_MIN_SIZE = 1024
BZIMAGE_HDRS = b"HdrS"

_BLOCK = 64 << 10
_U64_MASK = (1 << 64) - 1
#: ``_XOR_TABLES[c]``: the :meth:`bytes.translate` table that XORs every byte with ``c``
_XOR_TABLES = tuple(bytes(b ^ c for b in range(256)) for c in range(256))
#: Block 0 of the pattern of an ``int`` seed and its bytes at word starts (``[0::8]``), by
#: seed.  Building one costs about 0.1 ms (``randbytes``); the fuzz campaign draws seeds
#: 0..256, which all fit.  When full the cache starts over.
_BLOCK0: dict[int, tuple[bytes, bytes]] = {}
_BLOCK0_MAX = 320


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _block0(seed: Any) -> tuple[bytes, bytes]:
    """``random.Random(seed).randbytes(64 KiB)`` and its word-start bytes (cached per int)."""
    hit = _BLOCK0.get(seed) if type(seed) is int else None
    if hit is None:
        base = random.Random(seed).randbytes(_BLOCK)
        hit = (base, base[0::8])
        if type(seed) is int:
            if len(_BLOCK0) >= _BLOCK0_MAX:
                _BLOCK0.clear()
            _BLOCK0[seed] = hit
    return hit


def _pattern(head: bytes | bytearray | memoryview, length: int, seed: Any) -> bytes:
    """``head`` followed by ``payload_pattern(length, seed)``, as one bytes object.

    Block ``i`` is block 0 with the counter ``i`` XOR-ed into each little-endian u64 word:
    byte ``k`` of every word XOR-ed with byte ``k`` of ``i``, which is one
    :meth:`bytes.translate` of the word-start bytes (``[k::8]``) per nonzero byte of ``i``,
    written back with an extended-slice assignment (tests/arch/test_images.py checks this
    against the plain big-integer XOR).
    """
    if length <= 0:
        return bytes(head)
    if length < _BLOCK:
        hit = _BLOCK0.get(seed) if type(seed) is int else None
        if hit is not None:
            first = hit[0]
        else:
            # the first length bytes of randbytes(64 KiB): randbytes fills whole 32-bit
            # words little-endian in stream order, so a shorter call of whole words is a prefix
            first = random.Random(seed).randbytes((length + 3) & ~3)
        return b"".join((head, memoryview(first)[:length]))
    base, col0 = _block0(seed)
    nblocks = (length + _BLOCK - 1) // _BLOCK
    parts: list[bytes | bytearray | memoryview] = [head, base]
    cols = [col0]
    tables = _XOR_TABLES
    for i in range(1, nblocks):
        block = bytearray(base)
        block[0::8] = col0.translate(tables[i & 0xFF])
        k, rest = 1, (i & _U64_MASK) >> 8
        while rest:                      # the counter's higher bytes, from block 256 on
            if len(cols) == k:
                cols.append(base[k::8])
            if rest & 0xFF:
                block[k::8] = cols[k].translate(tables[rest & 0xFF])
            k, rest = k + 1, rest >> 8
        parts.append(block)
    tail = length - (nblocks - 1) * _BLOCK
    if tail != _BLOCK:
        parts[-1] = memoryview(parts[-1])[:tail]
    return b"".join(parts)


def payload_pattern(length: int, seed: int = 0) -> bytes:
    """``length`` deterministic bytes: a 64 KiB block of
    ``random.Random(seed).randbytes`` whose 8-byte words are XOR-ed, in block
    ``i``, with the counter ``i`` (little-endian) — so no two 64 KiB blocks
    (and no two pages) are alike. Costs a few microseconds per 64 KiB."""
    return _pattern(b"", length, seed)


def arm64_image(size: int, *, text_offset: int = 0, image_size: int | None = None,
                bss: int = 0, flags: int = 0x0A, magic: bytes = ARM64_IMAGE_MAGIC,
                code0: int = ARM64_CODE0_BRANCH, res5: int = 0, seed: int = 0) -> bytes:
    """An arm64 ``Image`` of exactly ``size`` bytes (ARCH S1, A1–A3).

    Header (little-endian): code0, code1 = 0, text_offset (u64 at 0x08),
    image_size (u64 at 0x10; default ``align_up(size, PAGE) + bss``), flags
    (u64 at 0x18; bit 0 big-endian, bits 1–2 page size, bit 3 placement),
    res2–res4 = 0, ``magic`` (4 bytes at 0x38), res5 (u32 at 0x3C, 0x40 on
    EFI-stub images). Bytes from 64 on: ``payload_pattern(size - 64, seed)``.
    ``size < 64`` returns the first ``size`` header bytes (the short-file
    variant of S2). Values are masked to their field widths.
    """
    if size < 0:
        raise ValueError(f"size {size} is negative")
    if len(magic) != 4:
        raise ValueError(f"magic must be 4 bytes, not {len(magic)}")
    if image_size is None:
        image_size = _align_up(size, PAGE_SIZE) + bss
    header = struct.pack("<IIQQQQQQ4sI", code0 & 0xFFFFFFFF, 0, text_offset & _U64_MASK,
                         image_size & _U64_MASK, flags & _U64_MASK, 0, 0, 0, bytes(magic),
                         res5 & 0xFFFFFFFF)
    if size <= ARM64_HEADER_SIZE:
        return header[:size]
    return _pattern(header, size - ARM64_HEADER_SIZE, seed)


def arm64_image_header(data: bytes) -> dict[str, Any]:
    """The fields of an arm64 Image header (ARCH A1–A3).

    Keys: ``code0``, ``code1``, ``text_offset``, ``image_size``, ``flags``,
    ``res2``, ``res3``, ``res4``, ``magic`` (bytes), ``res5``, and decoded
    ``magic_ok``, ``big_endian`` (flags bit 0), ``page_size_code`` (bits
    1–2), ``page_size`` (bytes or 0 for unspecified), ``phys_placement``
    (bit 3). ValueError for fewer than 64 bytes.
    """
    if len(data) < ARM64_HEADER_SIZE:
        raise ValueError(f"an arm64 Image header is 64 bytes, got {len(data)}")
    (code0, code1, text_offset, image_size, flags, res2, res3, res4, magic,
     res5) = struct.unpack_from("<IIQQQQQQ4sI", data, 0)
    code = (flags >> 1) & 3
    return {
        "code0": code0, "code1": code1, "text_offset": text_offset,
        "image_size": image_size, "flags": flags, "res2": res2, "res3": res3,
        "res4": res4, "magic": magic, "res5": res5,
        "magic_ok": magic == ARM64_IMAGE_MAGIC,
        "big_endian": bool(flags & 1),
        "page_size_code": code,
        "page_size": {0: 0, 1: 4 << 10, 2: 16 << 10, 3: 64 << 10}[code],
        "phys_placement": (flags >> 3) & 1,
    }


# (offset, struct format) of the bzImage setup-header fields (Documentation/arch/x86/boot.rst)
_BZ_FIELDS: dict[str, tuple[int, str]] = {
    "setup_sects": (0x1F1, "B"),
    "root_flags": (0x1F2, "H"),
    "syssize": (0x1F4, "I"),
    "ram_size": (0x1F8, "H"),
    "vid_mode": (0x1FA, "H"),
    "root_dev": (0x1FC, "H"),
    "boot_flag": (0x1FE, "H"),
    "jump": (0x200, "H"),
    "header": (0x202, "4s"),
    "version": (0x206, "H"),
    "realmode_swtch": (0x208, "I"),
    "start_sys_seg": (0x20C, "H"),
    "kernel_version": (0x20E, "H"),
    "type_of_loader": (0x210, "B"),
    "loadflags": (0x211, "B"),
    "setup_move_size": (0x212, "H"),
    "code32_start": (0x214, "I"),
    "ramdisk_image": (0x218, "I"),
    "ramdisk_size": (0x21C, "I"),
    "bootsect_kludge": (0x220, "I"),
    "heap_end_ptr": (0x224, "H"),
    "ext_loader_ver": (0x226, "B"),
    "ext_loader_type": (0x227, "B"),
    "cmd_line_ptr": (0x228, "I"),
    "initrd_addr_max": (0x22C, "I"),
    "kernel_alignment": (0x230, "I"),
    "relocatable_kernel": (0x234, "B"),
    "min_alignment": (0x235, "B"),
    "xloadflags": (0x236, "H"),
    "cmdline_size": (0x238, "I"),
    "hardware_subarch": (0x23C, "I"),
    "hardware_subarch_data": (0x240, "Q"),
    "payload_offset": (0x248, "I"),
    "payload_length": (0x24C, "I"),
    "setup_data": (0x250, "Q"),
    "pref_address": (0x258, "Q"),
    "init_size": (0x260, "I"),
    "handover_offset": (0x264, "I"),
    "kernel_info_offset": (0x268, "I"),
}
_BZ_HEADER_END = 0x26C
#: (offset, packer, mask of the field's width) of each field, for :func:`bzimage`
_BZ_PACKERS: dict[str, tuple[int, struct.Struct, int]] = {
    name: (off, struct.Struct("<" + fmt), (1 << (8 * struct.calcsize(fmt))) - 1)
    for name, (off, fmt) in _BZ_FIELDS.items()}


def bzimage(size: int, *, setup_sects: int = 1, boot_flag: int = 0xAA55,
            jump_len: int = 0x6A, magic: bytes = BZIMAGE_HDRS, version: int = 0x020F,
            loadflags: int = 0x01, kernel_alignment: int = 0x200000,
            relocatable_kernel: int = 1, min_alignment: int = 0x15,
            xloadflags: int = 0x0003, cmdline_size: int = 0x7FF,
            pref_address: int = 0x1000000, init_size: int | None = None,
            seed: int = 0) -> bytes:
    """An x86_64 ``bzImage`` of exactly ``size`` bytes (ARCH S3).

    setup_sects at 0x1F1, boot_flag at 0x1FE, the jump ``EB <jump_len>`` at
    0x200 (``jump_len`` may be negative: it is stored as a signed byte),
    ``magic`` at 0x202, version 0x206, loadflags 0x211, kernel_alignment
    0x230, relocatable_kernel 0x234, min_alignment 0x235, xloadflags 0x236,
    cmdline_size 0x238, pref_address 0x258, init_size 0x260 (default: the
    payload length rounded up to 2 MiB, at least 2 MiB). All other bytes
    below kern16 = ``((setup_sects or 4) + 1) * 512`` are 0; from kern16 on
    the payload is ``payload_pattern(size - kern16, seed)``. ``size < 1024``
    or a setup area longer than the file simply truncates (S4 variants).
    """
    if size < 0:
        raise ValueError(f"size {size} is negative")
    if len(magic) != 4:
        raise ValueError(f"magic must be 4 bytes, not {len(magic)}")
    kern16 = ((setup_sects & 0xFF or 4) + 1) * 512
    payload_len = max(0, size - kern16)
    if init_size is None:
        init_size = _align_up(max(payload_len, 1), SZ_2M)
    head = bytearray(max(kern16, _BZ_HEADER_END))

    def put(name: str, value: int | bytes) -> None:
        off, packer, mask = _BZ_PACKERS[name]
        if isinstance(value, int):
            value &= mask
        packer.pack_into(head, off, value)

    put("setup_sects", setup_sects)
    put("boot_flag", boot_flag)
    head[0x200] = 0xEB
    head[0x201] = jump_len & 0xFF
    put("header", bytes(magic))
    put("version", version)
    put("loadflags", loadflags)
    put("kernel_alignment", kernel_alignment)
    put("relocatable_kernel", relocatable_kernel)
    put("min_alignment", min_alignment)
    put("xloadflags", xloadflags)
    put("cmdline_size", cmdline_size)
    put("pref_address", pref_address)
    put("init_size", init_size)
    if size <= kern16:
        return bytes(head[:size])
    return _pattern(memoryview(head)[:kern16], payload_len, seed)


def bzimage_header(data: bytes) -> dict[str, Any]:
    """The setup-header fields of a bzImage (``Documentation/arch/x86/boot.rst``), by name
    (``setup_sects``, ``boot_flag``, ``jump``, ``header`` (bytes),
    ``version``, ``loadflags``, ``kernel_alignment``, ``relocatable_kernel``,
    ``min_alignment``, ``xloadflags``, ``cmdline_size``, ``pref_address``,
    ``init_size``, ... every field up to 0x26C), plus ``jump_len`` (the
    signed byte at 0x201), ``header_end`` (``0x202 + jump_len``, where the
    header the loader copies ends), ``kern16`` (file offset of the
    protected-mode payload) and ``magic_ok``. ValueError when the file is
    too short to hold the header (0x26C bytes).
    """
    if len(data) < _BZ_HEADER_END:
        raise ValueError(f"a bzImage setup header needs {_BZ_HEADER_END:#x} bytes, "
                         f"got {len(data)}")
    out: dict[str, Any] = {}
    for name, (off, fmt) in _BZ_FIELDS.items():
        out[name] = struct.unpack_from("<" + fmt, data, off)[0]
    jump_len = struct.unpack_from("<b", data, 0x201)[0]
    out["jump_len"] = jump_len
    out["header_end"] = 0x202 + jump_len
    out["kern16"] = ((out["setup_sects"] or 4) + 1) * 512
    out["magic_ok"] = out["header"] == BZIMAGE_HDRS
    return out
