"""``kexec_file_load`` and segment placement (``kernel/kexec_file.c``), rules K1–K7.

The syscall raises ``OSError`` with the kernel's errno (K20.4).  Placement
tries the 6.17 CMA path (``kexec_alloc_contig``, K7) before walking memory.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ...constants import PAGE_SIZE
from ...mm.page import Page
from .core import (
    KexecError, KexecSegment, KImage, kimage_alloc_control_pages, kimage_free,
    kimage_is_destination_range, kimage_load_segment, kimage_terminate,
    sanity_check_segment_list,
)
from .uapi import (
    KEXEC_FILE_DEBUG, KEXEC_FILE_FLAGS_BY_VERSION, KEXEC_FILE_FORCE_DTB, KEXEC_FILE_NO_CMA,
    KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH, KEXEC_FILE_SIZE_MAX, KEXEC_FILE_UNLOAD,
    KEXEC_SEGMENT_MAX, KEXEC_TYPE_CRASH, KEXEC_TYPE_DEFAULT,
)

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["KexecBuf", "KexecArch", "kexec_file_load", "kexec_add_buffer",
           "kexec_locate_mem_hole", "kexec_alloc_contig", "kexec_dprintk"]

_U64 = (1 << 64) - 1


@dataclass
class KexecBuf:
    """``struct kexec_buf`` (K4.1)."""

    image: KImage
    buffer: bytes
    bufsz: int
    memsz: int
    buf_align: int = 0
    buf_min: int = 0
    buf_max: int = _U64
    top_down: bool = False
    mem: int = 0
    cma: Page | None = None


class KexecArch(Protocol):
    """What generic kexec needs from an architecture."""

    name: str
    destination_memory_limit: int
    source_memory_limit: int
    control_memory_limit: int
    has_purgatory: bool

    def probe(self, m: Machine, kernel: bytes) -> int: ...
    def load(self, m: Machine, image: KImage, kernel: bytes, initrd: bytes | None,
             cmdline: bytes) -> None: ...
    def walk_ranges(self, m: Machine, image: KImage, top_down: bool) -> list[tuple[int, int]]:
        ...
    def machine_kexec_prepare(self, m: Machine, image: KImage) -> None: ...
    def calculate_store_digests(self, m: Machine, image: KImage) -> None: ...
    def post_load(self, m: Machine, image: KImage) -> None: ...
    def crash_hotplug_support(self, m: Machine) -> bool: ...


def kexec_dprintk(m: Machine, fmt: str, *args: object) -> None:
    """``kexec_dprintk`` (include/linux/kexec.h): ``pr_info`` while the load runs with
    KEXEC_FILE_DEBUG (``kexec_file_dbg_print``), otherwise nothing at all: it is not a
    ``pr_debug``, so dynamic debug cannot switch it on either.

    Like the kernel's macro, the message is formatted (``fmt % args``, printf style) only
    when it is printed."""
    if m.kernel.kexec.kexec_file_dbg_print:
        m.kernel.log.printk(6, fmt % args if args else fmt)


# ------------------------------------------------------------------ placement
def kexec_alloc_contig(m: Machine, kbuf: KexecBuf) -> int:
    """``kexec_alloc_contig`` (K7): take the segment's final memory from the default CMA
    area; 0 or -errno.

    Its two messages are ``pr_debug`` sites (printed only where dynamic debug enables
    them, :mod:`pykern.kernel.dynamic_debug`), not ``kexec_dprintk``."""
    nr_pages = kbuf.memsz >> 12
    image = kbuf.image
    if image.no_cma:
        return -errno.EPERM
    if image.image_type == KEXEC_TYPE_CRASH:
        return -errno.EPERM
    align = max(0, (kbuf.buf_align - 1).bit_length() - 12)
    if m.fixes.on("cma-align-cap"):
        cma = m.kernel.dma_contiguous_default_area
        page = cma.alloc(nr_pages, align, True) if cma is not None else None
    else:
        page = m.dma_alloc_from_contiguous(None, nr_pages, align, True)
    if page is None:
        return -errno.ENOMEM
    ddebug = m.kernel.dynamic_debug        # pr_debug, even while KEXEC_FILE_DEBUG is on
    if ddebug.enabled("kexec_alloc_contig:allocated"):
        ddebug.pr_debug(m.kernel.log, "kexec_alloc_contig:allocated",
                        f"allocated {nr_pages} DMA pages at {page.pfn:#x}")
    mem = page.phys
    end = mem + kbuf.memsz - (1 if m.fixes.on("cma-inclusive-end-conflict") else 0)
    if kimage_is_destination_range(image, mem, end):
        if ddebug.enabled("kexec_alloc_contig:overlap"):
            ddebug.pr_debug(m.kernel.log, "kexec_alloc_contig:overlap",
                            f"CMA overlaps existing mem: {mem:#x}+{kbuf.memsz:#x}")
        m.dma_release_from_contiguous(None, page, nr_pages)
        return -errno.EBUSY
    if m.fixes.on("cma-ignores-limits") and (mem < kbuf.buf_min
                                            or mem + kbuf.memsz - 1 > kbuf.buf_max):
        m.dma_release_from_contiguous(None, page, nr_pages)
        return -errno.ERANGE
    kbuf.mem = mem
    kbuf.cma = page
    return 0


def _overlapped(image: KImage, start: int, end: int) -> KexecSegment | None:
    """``kimage_is_destination_range`` (K6.5) naming the segment: the first one that
    overlaps the inclusive range [start, end], or None."""
    for seg in image.segments:
        if end >= seg.mem and start <= seg.mem + seg.memsz - 1:
            return seg
    return None


def locate_mem_hole_top_down(kbuf: KexecBuf, start: int, end: int) -> int:
    """``locate_mem_hole_top_down`` (K6.6) inside [start, end] (inclusive end); 1 when
    placed.

    A candidate that overlaps a segment steps down a page and is aligned down again.  With a
    power-of-two alignment of at least a page each step is thus ``buf_align``, and the
    candidates that would still overlap the same segment are skipped in one go: the search
    meets the same first candidate that fits or falls out of range as the page steps do."""
    align = kbuf.buf_align
    stride = align if align >= PAGE_SIZE and align & (align - 1) == 0 else 0
    temp_end = min(end, kbuf.buf_max)
    temp_start = temp_end - kbuf.memsz + 1
    while True:
        temp_start &= ~(align - 1)
        if temp_start < start or temp_start < kbuf.buf_min:
            return 0
        temp_end = temp_start + kbuf.memsz - 1
        seg = _overlapped(kbuf.image, temp_start, temp_end)
        if seg is not None:
            if stride:      # to the highest candidate that ends below the segment
                temp_start -= stride * -(-(temp_start - (seg.mem - kbuf.memsz)) // stride)
            else:
                temp_start -= PAGE_SIZE
            continue
        kbuf.mem = temp_start
        return 1


def locate_mem_hole_bottom_up(kbuf: KexecBuf, start: int, end: int) -> int:
    """``locate_mem_hole_bottom_up`` (K6.7) inside [start, end].

    Overlapping candidates are skipped segment by segment as in
    :func:`locate_mem_hole_top_down`."""
    align = kbuf.buf_align
    stride = align if align >= PAGE_SIZE and align & (align - 1) == 0 else 0
    temp_start = max(start, kbuf.buf_min)
    while True:
        temp_start = (temp_start + align - 1) & ~(align - 1)
        temp_end = temp_start + kbuf.memsz - 1
        if temp_end > end or temp_end > kbuf.buf_max:
            return 0
        seg = _overlapped(kbuf.image, temp_start, temp_end)
        if seg is not None:
            if stride:      # to the lowest candidate that starts past the segment
                temp_start += stride * -(-(seg.mem + seg.memsz - temp_start) // stride)
            else:
                temp_start += PAGE_SIZE
            continue
        kbuf.mem = temp_start
        return 1


def locate_mem_hole_callback(kbuf: KexecBuf, start: int, end: int) -> int:
    """``locate_mem_hole_callback`` (K6.4): skip a range too small or outside
    buf_min/buf_max, else search it in the requested direction."""
    if end - start + 1 < kbuf.memsz:
        return 0
    if end < kbuf.buf_min or start > kbuf.buf_max:
        return 0
    if kbuf.top_down:
        return locate_mem_hole_top_down(kbuf, start, end)
    return locate_mem_hole_bottom_up(kbuf, start, end)


def kexec_locate_mem_hole(m: Machine, kbuf: KexecBuf) -> int:
    """``kexec_locate_mem_hole`` (K6.1): preset address, then CMA, then the memory walk;
    0 or -errno."""
    if kbuf.mem:
        return 0
    if kexec_alloc_contig(m, kbuf) == 0:
        return 0
    for start, end in m.kexec_arch.walk_ranges(m, kbuf.image, kbuf.top_down):
        if locate_mem_hole_callback(kbuf, start, end) == 1:
            return 0
    return -errno.EADDRNOTAVAIL


def kexec_add_buffer(m: Machine, kbuf: KexecBuf) -> None:
    """``kexec_add_buffer`` (K5): place one segment request and record it; raises
    KexecError."""
    image = kbuf.image
    if not image.file_mode:
        raise KexecError(errno.EINVAL, "kexec_add_buffer outside file mode")
    if image.nr_segments >= KEXEC_SEGMENT_MAX:
        raise KexecError(errno.EINVAL, "too many segments")
    if image.control_pages_list:
        m.kernel.log.warn("WARNING: kexec_add_buffer after control pages were allocated")
        raise KexecError(errno.EINVAL, "segment added after control pages")
    kbuf.memsz = (kbuf.memsz + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    kbuf.buf_align = max(kbuf.buf_align, PAGE_SIZE)
    kbuf.cma = None
    ret = kexec_locate_mem_hole(m, kbuf)
    if ret:
        raise KexecError(-ret, f"no hole for a segment of {kbuf.memsz:#x} bytes")
    image.segments.append(KexecSegment(kbuf.buffer, kbuf.bufsz, kbuf.mem, kbuf.memsz,
                                       kbuf.cma is not None))
    image.segment_cma.append(kbuf.cma)
    image.cma_nr_pages.append(kbuf.memsz >> 12 if kbuf.cma is not None else 0)


def kexec_drop_segment(m: Machine, image: KImage) -> None:
    """Forget the last segment as an arch retry loop does (``nr_segments--``).

    Its CMA block leaks (K7.12) unless ``arm64-retry-cma-leak`` is fixed.
    """
    image.segments.pop()
    block = image.segment_cma.pop()
    count = image.cma_nr_pages.pop()
    if block is not None and m.fixes.on("arm64-retry-cma-leak"):
        m.dma_release_from_contiguous(None, block, count)


# ----------------------------------------------------------------- the syscall
def _release_leaked_cma(m: Machine, image: KImage) -> None:
    """The ``cma-leak-on-failed-load`` fix: give each block back whole."""
    for i, block in enumerate(image.segment_cma):
        if block is not None:
            m.dma_release_from_contiguous(None, block, image.cma_nr_pages[i])
            image.segment_cma[i] = None


def kimage_file_prepare_segments(m: Machine, image: KImage, kernel: bytes,
                                 initrd: bytes | None, cmdline: bytes, flags: int) -> None:
    """``kimage_file_prepare_segments`` (K2.4): probe the kernel, note NO_CMA, copy the
    command line, call the arch loader."""
    if len(kernel) == 0:
        raise KexecError(errno.EINVAL, "empty kernel file")
    if len(kernel) > KEXEC_FILE_SIZE_MAX:
        raise KexecError(errno.EFBIG, "kernel file over 4 GiB")
    kexec_dprintk(m, "kexec_file: kernel: (____ptrval____) kernel_size: %#x", len(kernel))
    ret = m.kexec_arch.probe(m, kernel)
    if ret:
        raise KexecError(-ret, "no loader recognises the kernel image")
    if not flags & KEXEC_FILE_NO_INITRAMFS and initrd is not None:
        if len(initrd) == 0:
            raise KexecError(errno.EINVAL, "empty initrd file")
        if len(initrd) > KEXEC_FILE_SIZE_MAX:
            raise KexecError(errno.EFBIG, "initrd file over 4 GiB")
    else:
        initrd = None
    image.no_cma = bool(flags & KEXEC_FILE_NO_CMA)
    image.force_dtb = bool(flags & KEXEC_FILE_FORCE_DTB)
    if cmdline and cmdline[-1] != 0:
        raise KexecError(errno.EINVAL, "command line is not NUL terminated")
    m.kexec_arch.load(m, image, kernel, initrd, cmdline)


def kimage_file_alloc_init(m: Machine, kernel: bytes, initrd: bytes | None, cmdline: bytes,
                           flags: int) -> KImage:
    """``kimage_file_alloc_init`` (K2): build the image, place its segments, take its
    control pages."""
    crash = bool(flags & KEXEC_FILE_ON_CRASH)
    image = KImage(image_type=KEXEC_TYPE_CRASH if crash else KEXEC_TYPE_DEFAULT, _m=m)
    if crash:
        image.control_page = m.kernel.kexec.crashk_res[0] if m.kernel.kexec.crashk_res else 0
    m.kernel.kexec.kexec_file_dbg_print = bool(flags & KEXEC_FILE_DEBUG)
    try:
        kimage_file_prepare_segments(m, image, kernel, initrd, cmdline, flags)
        sanity_check_segment_list(m, image)
        image.control_code_page = kimage_alloc_control_pages(m, image, 0)
        if image.control_code_page is None:
            m.kernel.log.err("kexec_file: Could not allocate control_code_buffer")
            raise KexecError(errno.ENOMEM, "no control code page")
        if not crash:
            image.swap_page = kimage_alloc_control_pages(m, image, 0)
            if image.swap_page is None:
                m.kernel.log.err("kexec_file: Could not allocate swap buffer")
                raise KexecError(errno.ENOMEM, "no swap page")
    except KexecError:
        from .core import kimage_free_pages
        for addr, order in image.control_pages_list:
            kimage_free_pages(m, addr, order)
        image.control_pages_list.clear()
        if m.fixes.on("cma-leak-on-failed-load"):
            _release_leaked_cma(m, image)
        m.kernel.kexec.kexec_file_dbg_print = False
        raise
    return image


def _debug_segment(m: Machine, image: KImage, i: int) -> None:
    seg = image.segments[i]
    kexec_dprintk(m, "kexec_file: segment[%d]: buf=0x(____ptrval____) bufsz=%#x mem=%#x "
                  "memsz=%#x", i, seg.bufsz, seg.mem, seg.memsz)


def kexec_load_permitted(m: Machine, image_type: int) -> bool:
    """``kexec_load_permitted`` (K1.2): the sysctl and the per-type limit (a token is
    spent first)."""
    if m.kernel.kexec.kexec_load_disabled:
        return False
    attr = "kexec_load_limit_panic" if image_type == KEXEC_TYPE_CRASH else \
        "kexec_load_limit_reboot"
    limit = getattr(m.kernel.kexec, attr)
    if limit == 0:
        return False
    if limit != -1:
        setattr(m.kernel.kexec, attr, limit - 1)
    return True


def kexec_file_load(m: Machine, kernel: bytes | None, initrd: bytes | None, cmdline: str,
                    flags: int) -> None:
    """``kexec_file_load`` (K1): the syscall.  Raises ``OSError(errno)`` on failure."""
    if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0:
        raise OSError(errno.EINVAL, f"flags {flags!r} are not an unsigned int")
    if not isinstance(cmdline, str):
        raise OSError(errno.EFAULT, "cmdline must be a str")
    image_type = KEXEC_TYPE_CRASH if flags & KEXEC_FILE_ON_CRASH else KEXEC_TYPE_DEFAULT
    if not kexec_load_permitted(m, image_type):
        raise OSError(errno.EPERM, "kexec_file_load not permitted")
    legal = KEXEC_FILE_FLAGS_BY_VERSION[m.kernel_version]
    if flags & ~legal:
        raise OSError(errno.EINVAL, f"unknown flags {flags & ~legal:#x} for "
                                    f"{m.kernel_version}")
    if m.kernel.kexec.kexec_in_progress:     # K1.4: the try-lock a reboot in progress holds
        raise OSError(errno.EBUSY, "kexec_file_load: a kexec reboot is in progress")
    crash = image_type == KEXEC_TYPE_CRASH
    if flags & KEXEC_FILE_UNLOAD:
        old = m.kernel.kexec.kexec_crash_image if crash else m.kernel.kexec.kexec_image
        _install(m, crash, None)
        kimage_free(m, old)
        return
    if crash and m.kernel.kexec.kexec_crash_image is not None:
        old_crash = m.kernel.kexec.kexec_crash_image
        m.kernel.kexec.kexec_crash_image = None
        kimage_free(m, old_crash)
    for what, blob in (("kernel", kernel), ("initrd", initrd)):
        if blob is not None and not isinstance(blob, (bytes, bytearray, memoryview)):
            raise OSError(errno.EBADF, f"{what} is not a bytes-like file")
    if kernel is None:
        raise OSError(errno.EBADF, "no kernel file")
    kernel_b = bytes(kernel)
    initrd_b = None if initrd is None else bytes(initrd)
    cmd = cmdline.encode() + b"\0" if cmdline else b""
    try:
        image = kimage_file_alloc_init(m, kernel_b, initrd_b, cmd, flags)
    except KexecError as exc:
        raise OSError(exc.errno, exc.strerror) from None
    if crash and m.kexec_arch.crash_hotplug_support(m):
        image.hotplug_support = True
    try:
        m.kexec_arch.machine_kexec_prepare(m, image)
        if crash:
            vmcoreinfo = kimage_alloc_control_pages(m, image, 0)
            if vmcoreinfo is None:
                raise KexecError(errno.ENOMEM, "no page for vmcoreinfo")
            image.arch["vmcoreinfo"] = vmcoreinfo
        if m.kexec_arch.has_purgatory:
            m.kexec_arch.calculate_store_digests(m, image)
        kexec_dprintk(m, "kexec_file: nr_segments = %d", image.nr_segments)
        for i in range(image.nr_segments):
            _debug_segment(m, image, i)         # printed before the segment is loaded
            kimage_load_segment(m, image, i)
        kimage_terminate(m, image)
        m.kexec_arch.post_load(m, image)
    except KexecError as exc:
        kimage_free(m, image)
        m.kernel.kexec.kexec_file_dbg_print = False
        raise OSError(exc.errno, exc.strerror) from None
    kexec_dprintk(m, "kexec_file: kexec_file_load: type:%d, start:%#x head:%#x flags:%#x",
                  image.image_type, image.start, image.head, flags)
    image.reference_tails = [_reference_tail(m, image, i) for i in range(image.nr_segments)]
    m.kernel.kexec.kexec_file_dbg_print = False
    old = m.kernel.kexec.kexec_crash_image if crash else m.kernel.kexec.kexec_image
    _install(m, crash, image)
    kimage_free(m, old)


def _install(m: Machine, crash: bool, image: KImage | None) -> None:
    if crash:
        m.kernel.kexec.kexec_crash_image = image
    else:
        m.kernel.kexec.kexec_image = image


def _reference_tail(m: Machine, image: KImage, idx: int) -> bytes | None:
    """A CMA segment's tail as the load left it (K16.11); None means zeros (also when the
    tail RAM reads as zeros)."""
    seg = image.segments[idx]
    if image.segment_cma[idx] is None or seg.memsz == seg.bufsz:
        return None
    at, n = seg.mem + seg.bufsz, seg.memsz - seg.bufsz
    return None if m.physmem.is_zero(at, n) else m.physmem.read(at, n)
