"""The x86_64 bzImage loader (``arch/x86/kernel/kexec-bzimage64.c``), the ARCH X rules."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ...constants import SZ_1M
from ...kernel.kexec.core import KexecError, KImage
from ...kernel.kexec.file import KexecBuf, kexec_add_buffer, kexec_dprintk
from ...kernel.kexec.uapi import KEXEC_TYPE_CRASH
from ..arm64.machine_kexec_file import prepare_elf_headers
from .purgatory import PURGATORY_ALIGN, PURGATORY_BUFSZ, PURGATORY_MEMSZ, Purgatory

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["bzImage64_probe", "bzImage64_load"]

_U64 = (1 << 64) - 1
SETUP_HDR = 0x1F1
MIN_PURGATORY_ADDR = 0x3000
MIN_BOOTPARAM_ADDR = 0x3000
MIN_KERNEL_LOAD_ADDR = 0x100000
MIN_INITRD_LOAD_ADDR = 0x1000000
MAX_ELFCOREHDR_STR_LEN = 30
RNG_SEED_LENGTH = 32
SETUP_RNG_SEED = 9
E820_MAX_ENTRIES_ZEROPAGE = 128
PN_XNUM = 0xFFFF
ELF64_EHDR_SIZE = 64
ELF64_PHDR_SIZE = 56
E820_TYPE_RAM = 1


def bzImage64_probe(kernel: bytes, m: Machine | None = None) -> int:
    """``bzImage64_probe`` (ARCH X1–X9): 0 or -ENOEXEC.

    Each refusal logs the kernel's ``pr_err`` (level 3) on ``m``; success is the
    ``pr_debug`` "It's a relocatable bzImage64" (dynamic debug).  The 32-bit EFI and
    5-level paging refusals cannot happen on pykern's machines (X8, X9)."""
    def refuse(why: str) -> int:
        if m is not None:
            m.kernel.log.err("kexec-bzImage64: " + why)
        return -errno.ENOEXEC
    if len(kernel) < 2 * 512:
        return refuse("File is too short to be a bzImage")
    if kernel[0x202:0x206] != b"HdrS":
        return refuse("Not a bzImage")
    boot_flag, = struct.unpack_from("<H", kernel, 0x1FE)
    version, = struct.unpack_from("<H", kernel, 0x206)
    if boot_flag != 0xAA55:
        return refuse("No x86 boot sector present")
    if version < 0x020C:
        return refuse("Must be at least protocol version 2.12")
    loadflags = kernel[0x211]
    xloadflags, = struct.unpack_from("<H", kernel, 0x236)
    if not loadflags & 1:
        return refuse("zImage not a bzImage")
    if not xloadflags & 1:
        return refuse("Not a bzImage64. XLF_KERNEL_64 is not set.")
    if not xloadflags & 2:
        return refuse("XLF_CAN_BE_LOADED_ABOVE_4G is not set.")
    if m is not None and m.kernel.dynamic_debug.enabled("bzImage64_probe"):
        m.kernel.dynamic_debug.pr_debug(m.kernel.log, "bzImage64_probe",
                                        "It's a relocatable bzImage64\n")
    return 0


def _crash_ram_ranges(m: Machine) -> list[tuple[int, int]]:
    """System RAM minus the crash region and the first MiB (ARCH X30)."""
    from ...mm.memblock import subtract
    ranges = list(m.kernel.memblock.memory)
    if m.kernel.kexec.crashk_res is not None:
        ranges = subtract(ranges, *m.kernel.kexec.crashk_res)
    return subtract(ranges, 0, SZ_1M)


def crash_load_segments(m: Machine, image: KImage) -> None:
    """``crash_load_segments`` (arch/x86/kernel/crash.c), ARCH X30/X31: the ELF core
    headers, bottom-up at the start of the crash region.

    With CONFIG_CRASH_HOTPLUG (``m.config``, on by default as in distribution kernels)
    the segment is sized for hotplug: ``2 + NR_CPUS_DEFAULT + CRASH_MAX_MEMORY_RANGES``
    program headers with MEMORY_HOTPLUG (else the present ranges instead of the maximum),
    56 bytes each plus the 64-byte ELF header; ``image.elfcorehdr_index`` records it (the
    digest leaves it out) and the crash e820 table excludes that whole, unrounded size.
    At PN_XNUM headers or more the kernel logs an error and keeps the plain size.
    Its message is crash.c's, so its prefix is "kexec: "."""
    ranges = _crash_ram_ranges(m)
    headers = prepare_elf_headers(m, ranges)
    kbuf = KexecBuf(image, headers, len(headers), len(headers), 4096, 0, _U64, False)
    elf_headers_sz = len(headers)
    cfg = m.config
    if cfg["CRASH_HOTPLUG"]:
        if cfg["MEMORY_HOTPLUG"]:
            pnum = 2 + cfg["NR_CPUS_DEFAULT"] + cfg["CRASH_MAX_MEMORY_RANGES"]
        else:
            pnum = len(ranges) + 2 + cfg["NR_CPUS_DEFAULT"]
        if pnum < PN_XNUM:
            kbuf.memsz = pnum * ELF64_PHDR_SIZE + ELF64_EHDR_SIZE
            image.elfcorehdr_index = image.nr_segments
            elf_headers_sz = kbuf.memsz
        else:
            m.kernel.log.err(f"kexec: number of Phdrs {pnum} exceeds max")
    kexec_add_buffer(m, kbuf)
    image.arch["elfcorehdr"] = (kbuf.mem, elf_headers_sz)
    kexec_dprintk(m, "kexec: Loaded ELF headers at %#x bufsz=%#x memsz=%#x",
                  kbuf.mem, kbuf.bufsz, kbuf.memsz)


def _e820_entries(m: Machine, image: KImage) -> list[tuple[int, int, int]]:
    """The e820 table handed to the next kernel, as ``setup_e820_entries`` (or
    ``crash_setup_memmap_entries``) builds it (ARCH X25/X32)."""
    if image.image_type != KEXEC_TYPE_CRASH:
        return [(b, s, 1) for b, s in m.banks][:E820_MAX_ENTRIES_ZEROPAGE]
    from ...mm.memblock import subtract
    out = [(b, min(e, SZ_1M) - b, 1) for b, e in m.kernel.memblock.memory if b < SZ_1M]
    if m.kernel.kexec.crashk_res is not None:
        pieces = [m.kernel.kexec.crashk_res]
        elf = image.arch.get("elfcorehdr")
        if elf:
            pieces = subtract(pieces, elf[0], elf[0] + elf[1])
        out += [(b, e - b, 1) for b, e in pieces if e - b >= 4096]
    return out


def setup_boot_parameters(m: Machine, image: KImage, params: bytearray,
                          params_load_addr: int, rng_offset: int) -> None:
    """``setup_boot_parameters`` (ARCH X24–X26): loader fields, the e820 table and the
    setup_data records."""
    params[0x210] = 0xD0                       # type_of_loader
    params[0x211] = 0                          # loadflags
    struct.pack_into("<I", params, 0x23C, 0)   # hardware_subarch of a PC
    entries = _e820_entries(m, image)
    params[0x1E8] = len(entries)
    for k, (addr, size, kind) in enumerate(entries):
        struct.pack_into("<QQI", params, 0x2D0 + 20 * k, addr, size, kind)
    kexec_dprintk(m, "kexec-bzImage64: E820 memmap:")
    for addr, size, kind in entries:
        kexec_dprintk(m, "kexec-bzImage64: %016x-%016x (%d)", addr, addr + size - 1, kind)
    for addr, size, kind in entries:
        if kind == 1 and addr <= SZ_1M < addr + size:
            k_mem = ((addr + size - 1) >> 10) - 1024
            struct.pack_into("<H", params, 0x002, min(k_mem, 0xFC00))
            struct.pack_into("<I", params, 0x1E0, min(k_mem, 0xFFFFFFFF))
            break
    seed = m.kernel.kexec.kexec_rng.randbytes(RNG_SEED_LENGTH)
    head, = struct.unpack_from("<Q", params, 0x250)
    struct.pack_into("<QII", params, rng_offset, head, SETUP_RNG_SEED, RNG_SEED_LENGTH)
    params[rng_offset + 16:rng_offset + 16 + RNG_SEED_LENGTH] = seed
    struct.pack_into("<Q", params, 0x250, params_load_addr + rng_offset)


def setup_cmdline(m: Machine, image: KImage, params: bytearray, params_load_addr: int,
                  cmdline: bytes) -> None:
    """``setup_cmdline`` (ARCH X22): the command line 4096 bytes into the parameters, with
    an elfcorehdr= prefix for crash images."""
    prefix = b""
    if image.image_type == KEXEC_TYPE_CRASH:
        prefix = f"elfcorehdr={image.arch['elfcorehdr'][0]:#x} ".encode()
    text = prefix + cmdline
    params[4096:4096 + len(text)] = text
    params[4096 + len(text) - 1] = 0
    if m.kernel.kexec.kexec_file_dbg_print:     # the decode only when it is printed
        kexec_dprintk(m, "kexec-bzImage64: Final command line is: %s",
                      text[:-1].decode(errors="replace"))
    phys = params_load_addr + 4096
    struct.pack_into("<I", params, 0x228, phys & 0xFFFFFFFF)
    if phys >> 32:
        struct.pack_into("<I", params, 0x0C8, phys >> 32)


def bzImage64_load(m: Machine, image: KImage, kernel: bytes, initrd: bytes | None,
                   cmdline: bytes) -> None:
    """``bzImage64_load`` (ARCH X11–X27): the whole x86_64 bzImage load."""
    setup_sects = kernel[0x1F1] or 4
    kern16_size = (setup_sects + 1) * 512
    if len(kernel) < kern16_size:
        m.kernel.log.err("kexec-bzImage64: bzImage truncated")
        raise KexecError(errno.ENOEXEC, "bzImage truncated")
    cmdline_size, = struct.unpack_from("<I", kernel, 0x238)
    if len(cmdline) > cmdline_size:
        m.kernel.log.err("kexec-bzImage64: Kernel command line too long")
        raise KexecError(errno.EINVAL, "command line too long")
    if len(cmdline) + MAX_ELFCOREHDR_STR_LEN > cmdline_size:
        m.kernel.log.err("kexec-bzImage64: Appending elfcorehdr=<addr> to command line exceeds "
                         "maximum allowed length")
        raise KexecError(errno.EINVAL, "command line too long for the elfcorehdr prefix")
    jump = struct.unpack_from("<b", kernel, 0x201)[0]
    if jump < 0:
        raise KexecError(errno.ENOEXEC, "negative setup header length (pykern refuses it)")
    if image.image_type == KEXEC_TYPE_CRASH:
        crash_load_segments(m, image)
    purgatory = Purgatory()
    pbuf = KexecBuf(image, purgatory.blob(), PURGATORY_BUFSZ, PURGATORY_MEMSZ,
                    PURGATORY_ALIGN, MIN_PURGATORY_ADDR, _U64, True)
    try:
        kexec_add_buffer(m, pbuf)
    except KexecError:
        m.kernel.log.err("kexec-bzImage64: Loading purgatory failed")
        raise
    image.arch["purgatory_idx"] = image.nr_segments - 1
    image.arch["purgatory"] = purgatory
    image.start = pbuf.mem + purgatory.entry_offset
    kexec_dprintk(m, "kexec-bzImage64: Loaded purgatory at %#x", pbuf.mem)
    params_cmdline_sz = (4096 + len(cmdline) + MAX_ELFCOREHDR_STR_LEN + 15) & ~15
    rng_offset = params_cmdline_sz + 16 + 96
    bufsz = params_cmdline_sz + 16 + 96 + 16 + RNG_SEED_LENGTH
    params = bytearray(bufsz)
    header_size = 0x202 + jump - SETUP_HDR
    params[SETUP_HDR:SETUP_HDR + header_size] = kernel[SETUP_HDR:SETUP_HDR + header_size]
    kbuf = KexecBuf(image, b"", bufsz, bufsz, 16, MIN_BOOTPARAM_ADDR, _U64, True)
    kexec_add_buffer(m, kbuf)
    params_idx = image.nr_segments - 1
    bootparam_load_addr = kbuf.mem
    kexec_dprintk(m, "kexec-bzImage64: Loaded boot_param, command line and misc at %#x "
                  "bufsz=%#x memsz=%#x", kbuf.mem, kbuf.bufsz, kbuf.memsz)
    init_size, = struct.unpack_from("<I", kernel, 0x260)
    kernel_alignment, = struct.unpack_from("<I", kernel, 0x230)
    pref_address, = struct.unpack_from("<Q", kernel, 0x258)
    kbuf.buffer = kernel[kern16_size:]
    kbuf.bufsz = len(kernel) - kern16_size
    kbuf.memsz = (init_size + 4095) & ~4095
    kbuf.buf_align = kernel_alignment
    kbuf.buf_min = max(MIN_KERNEL_LOAD_ADDR, pref_address)
    kbuf.mem = 0
    kexec_add_buffer(m, kbuf)
    kernel_load_addr = kbuf.mem
    kexec_dprintk(m, "kexec-bzImage64: Loaded 64bit kernel at %#x bufsz=%#x memsz=%#x",
                  kbuf.mem, kbuf.bufsz, kbuf.memsz)
    if initrd is not None:
        kbuf.buffer, kbuf.bufsz, kbuf.memsz = initrd, len(initrd), len(initrd)
        kbuf.buf_align, kbuf.buf_min, kbuf.mem = 4096, MIN_INITRD_LOAD_ADDR, 0
        kexec_add_buffer(m, kbuf)
        # The kernel prints the initrd's length twice, not the page-rounded memsz.
        kexec_dprintk(m, "kexec-bzImage64: Loaded initrd at %#x bufsz=%#x memsz=%#x",
                      kbuf.mem, len(initrd), len(initrd))
        struct.pack_into("<II", params, 0x218, kbuf.mem & 0xFFFFFFFF, len(initrd) & 0xFFFFFFFF)
        struct.pack_into("<II", params, 0x0C0, kbuf.mem >> 32, len(initrd) >> 32)
        image.arch["initrd"] = (kbuf.mem, len(initrd))
    setup_cmdline(m, image, params, bootparam_load_addr, cmdline)
    purgatory.set_entry64_regs(rsi=bootparam_load_addr, rip=kernel_load_addr + 0x200,
                               rsp=pbuf.mem + purgatory.stack_end_offset)
    setup_boot_parameters(m, image, params, bootparam_load_addr, rng_offset)
    image.segments[params_idx].buf = bytes(params)
    image.segments[image.arch["purgatory_idx"]].buf = purgatory.blob()
    image.arch["boot_params"] = bootparam_load_addr
    image.arch["kernel_mem"] = kernel_load_addr
