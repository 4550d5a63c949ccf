"""The kimage and its page list (``kernel/kexec_core.c``), rules K8–K12 and K14.

Entry words (``kimage_entry_t``) are 64-bit little-endian words stored in real
indirection pages in emulated RAM; ``KImage.head`` is the first word, kept in
the kimage as the kernel keeps it.  Pages kexec takes from the buddy
allocator carry ``PG_reserved`` while kexec owns them (K9.3).
"""

from __future__ import annotations

import errno
import random
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...constants import PAGE_MASK, PAGE_SIZE
from ...mm import gfp as G
from ...mm.page import PG_reserved, Page
from .uapi import (
    IND_DESTINATION, IND_DONE, IND_INDIRECTION, IND_SOURCE, KEXEC_TYPE_CRASH,
    KEXEC_TYPE_DEFAULT, KIMAGE_NO_DEST,
)
from ...errors import KexecError

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["KexecSegment", "KImage", "KexecError", "kimage_alloc_page",
           "kimage_alloc_control_pages", "kimage_load_segment", "kimage_free",
           "kimage_terminate", "sanity_check_segment_list", "kimage_is_destination_range",
           "KexecState"]

_U64 = (1 << 64) - 1
KEXEC_CONTROL_MEMORY_GFP = G.GFP_KERNEL | G.__GFP_NORETRY
HEAD = -1  #: the location of ``image.head`` (not in RAM)
_WORDS_PER_PAGE = PAGE_SIZE // 8
_WORD = struct.Struct("<Q")
_TWO_WORDS = struct.Struct("<QQ")


@dataclass
class KexecSegment:
    """``struct kexec_segment`` plus the CMA marker of K20.3."""

    buf: bytes
    bufsz: int
    mem: int
    memsz: int
    cma: bool = False

    def __repr__(self) -> str:
        return (f"<KexecSegment mem={self.mem:#x} memsz={self.memsz:#x} bufsz={self.bufsz:#x}"
                f"{' cma' if self.cma else ''}>")


@dataclass
class KImage:
    """``struct kimage`` (K2.1)."""

    image_type: int = KEXEC_TYPE_DEFAULT
    head: int = 0
    start: int = 0
    control_page: int = _U64
    file_mode: bool = True
    no_cma: bool = False
    #: 6.18 KEXEC_FILE_FORCE_DTB (``image->force_dtb``).
    force_dtb: bool = False
    #: CONFIG_CRASH_HOTPLUG: the elfcorehdr segment's index (-1: none), and whether the
    #: crash image may be updated on hotplug (``arch_crash_hotplug_support``).
    elfcorehdr_index: int = -1
    hotplug_support: bool = False
    segments: list[KexecSegment] = field(default_factory=list)
    segment_cma: list[Page | None] = field(default_factory=list)
    #: Pages cma_alloc handed out for each segment's block (what the K2.9 fix releases).
    cma_nr_pages: list[int] = field(default_factory=list)
    #: (phys, order) of every control block, list head first.
    control_pages_list: list[tuple[int, int]] = field(default_factory=list)
    dest_pages_list: list[int] = field(default_factory=list)
    unusable_pages_list: list[int] = field(default_factory=list)
    entry: int = HEAD
    last_entry: int = HEAD
    control_code_page: int | None = None
    swap_page: int | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    #: K16.11: the tail past bufsz of each CMA-backed segment as the load left it (None for
    #: walk-placed and crash segments, whose tail must be zeros); fixed at load end.
    reference_tails: list[bytes | None] = field(default_factory=list)
    _m: Machine | None = None
    _dest_index: dict[int, int] = field(default_factory=dict)
    _dest_set: set[int] = field(default_factory=set)

    # -- views documented in the API reference -----------------------------
    @property
    def nr_segments(self) -> int:
        return len(self.segments)

    @property
    def type(self) -> str:
        """``"default"`` or ``"crash"``."""
        return "crash" if self.image_type == KEXEC_TYPE_CRASH else "default"

    @property
    def control_pages(self) -> list[tuple[int, int]]:
        return list(self.control_pages_list)

    @property
    def dest_pages(self) -> list[int]:
        return list(self.dest_pages_list)

    @property
    def unusable_pages(self) -> list[int]:
        return list(self.unusable_pages_list)

    def reference(self, idx: int) -> bytes:
        """What segment ``idx`` must hold once the next kernel runs (K16.11)."""
        seg = self.segments[idx]
        tail = self.reference_tails[idx] if idx < len(self.reference_tails) else None
        body = seg.buf if len(seg.buf) == seg.bufsz else seg.buf[:seg.bufsz]
        return bytes(body) + (tail if tail is not None else bytes(seg.memsz - seg.bufsz))

    def entries(self) -> list[tuple[str, int]]:
        """The entry words in walk order from ``head`` (K10.9)."""
        assert self._m is not None
        out: list[tuple[str, int]] = []
        for _, word in for_each_kimage_entry(self._m, self):
            out.append((_kind(word), word & PAGE_MASK & _U64))
        out.append(("DONE", 0))
        return out


def _kind(word: int) -> str:
    if word & IND_DESTINATION:
        return "DESTINATION"
    if word & IND_INDIRECTION:
        return "INDIRECTION"
    if word & IND_SOURCE:
        return "SOURCE"
    if word & IND_DONE:
        return "DONE"
    return "NONE"


# ---------------------------------------------------------------- words in RAM
def _read_word(m: Machine, image: KImage, loc: int) -> int:
    if loc == HEAD:
        return image.head
    value: int = struct.unpack_from("<Q", m.ram, m.physmem.offset(loc, 8))[0]
    return value


def _write_word(m: Machine, image: KImage, loc: int, value: int) -> None:
    if loc == HEAD:
        image.head = value
    else:
        struct.pack_into("<Q", m.ram, m.physmem.offset(loc, 8), value & _U64)


def for_each_kimage_entry(m: Machine, image: KImage) -> list[tuple[int, int]]:
    """``for_each_kimage_entry`` (K10.7): ``(location, word)`` of each word before DONE or
    a zero word.

    Reads the rest of an indirection page in one go.  [model] A list damaged into a loop
    would make the kernel's walker spin; this one stops after as many words as RAM holds.
    """
    out: list[tuple[int, int]] = []
    word = image.head
    if not word or word & IND_DONE:
        return out
    out.append((HEAD, word))
    if not word & IND_INDIRECTION:
        return out  # head holds only a link (or DONE)
    loc = word & PAGE_MASK
    budget = m.physmem.size // 8 + 1
    while budget > 0:
        count = (PAGE_SIZE - (loc & ~PAGE_MASK)) // 8
        words = struct.unpack_from(f"<{count}Q", m.ram, m.physmem.offset(loc, 8 * count))
        budget -= count
        for k, word in enumerate(words):
            if not word or word & IND_DONE:
                return out
            out.append((loc + 8 * k, word))
            if word & IND_INDIRECTION:
                loc = word & PAGE_MASK
                break
        else:
            loc += 8 * count
    return out


# ----------------------------------------------------------------- page helpers
def kimage_is_destination_range(image: KImage, start: int, end: int) -> bool:
    """``kimage_is_destination_range`` (K6.5): some recorded segment overlaps the inclusive
    range [start, end]."""
    for seg in image.segments:
        if end >= seg.mem and start <= seg.mem + seg.memsz - 1:
            return True
    return False


def kimage_alloc_pages(m: Machine, gfp: int, order: int) -> int | None:
    """``kimage_alloc_pages``: allocate a block and mark it kexec's (K9.3); its phys or None.

    The mask is the caller's minus __GFP_ZERO and nothing more (no __GFP_NOWARN), so a load
    that runs out of memory leaves the allocator's page-allocation-failure warning."""
    page = m.kernel.mm.alloc_pages(gfp & ~G.__GFP_ZERO, order)
    if page is None:
        return None
    mem = m.kernel.mm.mem_map
    i = page.pfn - mem.base_pfn
    if order == 0:
        mem.flags[i] |= PG_reserved
    else:
        for j in range(i, i + (1 << order)):
            mem.flags[j] |= PG_reserved
    if gfp & G.__GFP_ZERO:
        m.physmem.clear_pages(page.pfn, 1 << order)
    return page.phys


def kimage_free_pages(m: Machine, phys: int, order: int) -> None:
    """``kimage_free_pages`` (K14.2): clear the reserved marker and give the block back."""
    pfn = phys >> 12
    mem = m.kernel.mm.mem_map
    i = pfn - mem.base_pfn
    for j in range(i, i + (1 << order)):
        mem.flags[j] &= ~PG_reserved
    m.kernel.mm.free_pages(pfn, order)


def kimage_alloc_normal_control_pages(m: Machine, image: KImage, order: int) -> int | None:
    """``kimage_alloc_normal_control_pages`` (K9.2): buddy pages that are no segment's
    destination; the ones that are get set aside."""
    size = PAGE_SIZE << order
    extra: list[int] = []
    got = None
    limit = m.kexec_arch.control_memory_limit
    while True:
        addr = kimage_alloc_pages(m, KEXEC_CONTROL_MEMORY_GFP, order)
        if addr is None:
            break
        if (addr + size - 1 >= limit
                or kimage_is_destination_range(image, addr, addr + size - 1)):
            extra.append(addr)
            continue
        got = addr
        image.control_pages_list.insert(0, (addr, order))
        break
    for addr in reversed(extra):    # the kernel frees its set-aside list head first
        kimage_free_pages(m, addr, order)
    return got


def kimage_alloc_crash_control_pages(m: Machine, image: KImage, order: int) -> int | None:
    """``kimage_alloc_crash_control_pages`` (K9.4): bump allocation inside the crash
    region."""
    if m.kernel.kexec.crashk_res is None:
        return None
    crash_end = m.kernel.kexec.crashk_res[1] - 1
    size = PAGE_SIZE << order
    hole = (image.control_page + size - 1) & ~(size - 1) & _U64
    while hole + size - 1 <= crash_end:
        hole_end = hole + size - 1
        if hole_end > m.kexec_arch.control_memory_limit:
            return None
        for seg in image.segments:
            mstart, mend = seg.mem, seg.mem + seg.memsz - 1
            if hole_end >= mstart and hole <= mend:
                hole = (mend + size) & ~(size - 1)
                break
        else:
            image.control_page = hole + size
            return hole
    return None


def kimage_alloc_control_pages(m: Machine, image: KImage, order: int) -> int | None:
    """``kimage_alloc_control_pages`` (K9.1): from the buddy allocator for a normal image,
    from the crash region for a crash image."""
    if image.image_type == KEXEC_TYPE_CRASH:
        return kimage_alloc_crash_control_pages(m, image, order)
    return kimage_alloc_normal_control_pages(m, image, order)


def kimage_alloc_page(m: Machine, image: KImage, gfp: int, destination: int) -> int | None:
    """``kimage_alloc_page`` (K11): a source or indirection page that is safe to copy
    from."""
    if destination in image._dest_set:
        image._dest_set.discard(destination)
        image.dest_pages_list.remove(destination)
        return destination
    source_limit = m.kexec_arch.source_memory_limit
    while True:
        addr = kimage_alloc_pages(m, gfp, 0)
        if addr is None:
            return None
        if addr >> 12 > source_limit >> 12:
            image.unusable_pages_list.insert(0, addr)
            continue
        if addr == destination:
            return addr
        if not kimage_is_destination_range(image, addr, addr + PAGE_SIZE - 1):
            return addr
        loc = image._dest_index.get(addr)
        if loc is not None:
            word = _read_word(m, image, loc)
            old = word & PAGE_MASK
            m.physmem.copy(addr, old, PAGE_SIZE)
            _write_word(m, image, loc, addr | (word & ~PAGE_MASK & 0xFFF))
            return old
        image.dest_pages_list.insert(0, addr)
        image._dest_set.add(addr)


# -------------------------------------------------------------------- entries
def kimage_add_entry(m: Machine, image: KImage, word: int) -> None:
    """``kimage_add_entry`` (K10.2): append ``word``, chaining a new indirection page when
    the current one is full."""
    entry = image.entry
    if entry != HEAD:
        # Fast path: the word and its zero terminator both fit in this page.
        buf = m.ram
        off = m.physmem.offset(entry, 8)
        if _WORD.unpack_from(buf, off)[0] != 0:
            entry += 8
            off += 8
        if entry != image.last_entry:
            _TWO_WORDS.pack_into(buf, off, word & _U64, 0)
            image.entry = entry + 8
            return
        image.entry = entry
    if _read_word(m, image, image.entry) != 0:
        image.entry = _next_loc(image.entry)
    if image.entry == image.last_entry:
        page = kimage_alloc_page(m, image, G.GFP_KERNEL, KIMAGE_NO_DEST)
        if page is None:
            raise KexecError(errno.ENOMEM, "no memory for an indirection page")
        _write_word(m, image, image.entry, page | IND_INDIRECTION)
        image.entry = page
        image.last_entry = page + (_WORDS_PER_PAGE - 1) * 8
    _write_word(m, image, image.entry, word)
    image.entry = _next_loc(image.entry)
    _write_word(m, image, image.entry, 0)


def _next_loc(loc: int) -> int:
    if loc == HEAD:
        return HEAD  # head has no successor; only reached when head == last_entry
    return loc + 8


def kimage_terminate(m: Machine, image: KImage) -> None:
    """``kimage_terminate`` (K10.6): write DONE; an empty list makes head itself DONE."""
    if _read_word(m, image, image.entry) != 0:
        image.entry = _next_loc(image.entry)
    _write_word(m, image, image.entry, IND_DONE)


# ---------------------------------------------------------------- loading data
def kimage_load_normal_segment(m: Machine, image: KImage, idx: int) -> None:
    """``kimage_load_normal_segment`` (K12.2): one DESTINATION word, then a SOURCE page
    per destination page.

    [quirk] ``kexec-source-page-leak``: when the SOURCE entry cannot be added (K10.2 finds
    no indirection page) the page just taken is on no list and stays allocated, reserved,
    after kimage_free; the fix frees it."""
    seg = image.segments[idx]
    buf = memoryview(seg.buf)
    kimage_add_entry(m, image, (seg.mem & PAGE_MASK) | IND_DESTINATION)
    ram = m.physmem
    rbuf = ram.buf
    zero = bytes(PAGE_SIZE)
    ubytes, maddr, mbytes, off = seg.bufsz, seg.mem, seg.memsz, 0
    while mbytes:
        page = kimage_alloc_page(m, image, G.GFP_HIGHUSER, maddr)
        if page is None:
            raise KexecError(errno.ENOMEM, f"no source page for {maddr:#x}")
        try:
            kimage_add_entry(m, image, page | IND_SOURCE)
        except KexecError:
            # [quirk] kexec-source-page-leak: the kernel returns with the page on no list
            if m.fixes.on("kexec-source-page-leak"):
                kimage_free_pages(m, page, 0)
            raise
        image._dest_index[maddr] = image.entry - 8
        mchunk = min(mbytes, PAGE_SIZE)
        uchunk = min(ubytes, mchunk)
        dst = ram.offset(page, PAGE_SIZE)
        if uchunk == PAGE_SIZE:
            rbuf[dst:dst + PAGE_SIZE] = buf[off:off + PAGE_SIZE]
        else:
            rbuf[dst:dst + PAGE_SIZE] = bytes(buf[off:off + uchunk]) + zero[uchunk:]
        ubytes -= uchunk
        off += uchunk
        maddr += mchunk
        mbytes -= mchunk


def kimage_load_cma_segment(m: Machine, image: KImage, idx: int) -> None:
    """``kimage_load_cma_segment`` (K12.4): write the buffer straight into the CMA block;
    no entries."""
    seg = image.segments[idx]
    block = image.segment_cma[idx]
    assert block is not None
    at = seg.mem if m.fixes.on("arm64-text-offset-cma") else block.phys
    m.physmem.write(at, memoryview(seg.buf)[:seg.bufsz])
    if m.fixes.on("cma-stale-tail") and seg.memsz > seg.bufsz:
        m.physmem.clear(at + seg.bufsz, seg.memsz - seg.bufsz)


def kimage_load_crash_segment(m: Machine, image: KImage, idx: int) -> None:
    """``kimage_load_crash_segment`` (K12.5): the crash region is written at load time,
    tail zeroed."""
    seg = image.segments[idx]
    m.physmem.write(seg.mem, seg.buf[:seg.bufsz])
    if seg.memsz > seg.bufsz:
        m.physmem.clear(seg.mem + seg.bufsz, seg.memsz - seg.bufsz)


def kimage_load_segment(m: Machine, image: KImage, idx: int) -> None:
    """``kimage_load_segment`` (K12.1): dispatch segment ``idx`` on the image type and
    its CMA block."""
    if image.image_type == KEXEC_TYPE_CRASH:
        kimage_load_crash_segment(m, image, idx)
    elif image.segment_cma[idx] is not None:
        kimage_load_cma_segment(m, image, idx)
    else:
        kimage_load_normal_segment(m, image, idx)


# -------------------------------------------------------------------- checks
def sanity_check_segment_list(m: Machine, image: KImage) -> None:
    """``sanity_check_segment_list`` (K8): each check over all segments before the next."""
    limit = m.kexec_arch.destination_memory_limit
    for seg in image.segments:
        mstart, mend = seg.mem, (seg.mem + seg.memsz) & _U64
        if mstart > mend:
            raise KexecError(errno.EADDRNOTAVAIL, f"segment at {mstart:#x} wraps")
        if mstart & ~PAGE_MASK or mend & ~PAGE_MASK:
            raise KexecError(errno.EADDRNOTAVAIL, f"segment at {mstart:#x} not page aligned")
        if mend >= limit:
            raise KexecError(errno.EADDRNOTAVAIL, f"segment at {mstart:#x} beyond the limit")
    for i, a in enumerate(image.segments):
        for b in image.segments[:i]:
            if a.mem + a.memsz > b.mem and a.mem < b.mem + b.memsz:
                raise KexecError(errno.EINVAL, f"segments at {a.mem:#x} and {b.mem:#x} "
                                               "overlap")
    for seg in image.segments:
        if seg.bufsz > seg.memsz:
            raise KexecError(errno.EINVAL, f"segment at {seg.mem:#x}: bufsz > memsz")
    nr_pages = sum(z.managed_pages for z in m.kernel.mm.zones)
    total = 0
    for seg in image.segments:
        pages = -(-seg.memsz // PAGE_SIZE)
        if pages > nr_pages // 2:
            raise KexecError(errno.EINVAL, f"segment at {seg.mem:#x} is over half of RAM")
        total += pages
    if total > nr_pages // 2:
        raise KexecError(errno.EINVAL, "segments are over half of RAM")
    if image.image_type == KEXEC_TYPE_CRASH:
        crash = m.kernel.kexec.crashk_res
        for seg in image.segments:
            if crash is None or seg.mem < crash[0] or seg.mem + seg.memsz - 1 > crash[1] - 1:
                raise KexecError(errno.EADDRNOTAVAIL, f"crash segment at {seg.mem:#x} "
                                                      "outside the crash region")


# -------------------------------------------------------------------- freeing
def kimage_free_cma(m: Machine, image: KImage) -> None:
    """``kimage_free_cma`` (K14.1, its last step): give each segment's CMA block back."""
    for i, seg in enumerate(image.segments):
        block = image.segment_cma[i]
        if block is None:
            continue
        count = seg.memsz >> 12
        if m.fixes.on("arm64-text-offset-cma"):
            count = image.cma_nr_pages[i]
        m.dma_release_from_contiguous(None, block, count)
        image.segment_cma[i] = None
        seg.cma = False


def kimage_free(m: Machine, image: KImage | None) -> None:
    """``kimage_free`` (K14.1): give back every page the image holds."""
    if image is None:
        return
    for addr in image.dest_pages_list:
        kimage_free_pages(m, addr, 0)
    image.dest_pages_list.clear()
    image._dest_set.clear()
    for addr in image.unusable_pages_list:
        kimage_free_pages(m, addr, 0)
    image.unusable_pages_list.clear()
    ind = 0
    for _, word in for_each_kimage_entry(m, image):
        if word & IND_INDIRECTION:
            if ind & IND_INDIRECTION:
                kimage_free_pages(m, ind & PAGE_MASK, 0)
            ind = word
        elif word & IND_SOURCE:
            kimage_free_pages(m, word & PAGE_MASK, 0)
    if ind & IND_INDIRECTION:
        kimage_free_pages(m, ind & PAGE_MASK, 0)
    for addr, order in image.control_pages_list:
        kimage_free_pages(m, addr, order)
    image.control_pages_list.clear()
    kimage_free_cma(m, image)
    image._dest_index.clear()


class KexecState:
    """The kexec state of one boot (``m.kernel.kexec``): the globals of
    ``kernel/kexec_core.c`` (``kexec_image``, ``kexec_crash_image``, ``kexec_in_progress``,
    ``kexec_file_dbg_print``, the ``kexec_load_disabled`` and ``kexec_load_limit_*``
    sysctls, K20.5) and ``crashk_res`` of ``kernel/crash_reserve.c`` as ``[start, end)``.

    ``kexec_rng`` is pykern's: the generator the loaders draw the next kernel's kaslr and
    RNG seeds from, seeded by (machine seed, generation).  A kexec'd kernel starts with
    nothing loaded and the sysctls at their defaults.
    """

    def __init__(self, rng: random.Random) -> None:
        self.kexec_image: KImage | None = None
        self.kexec_crash_image: KImage | None = None
        self.kexec_in_progress = False
        self.kexec_file_dbg_print = False
        self.kexec_load_disabled = 0
        self.kexec_load_limit_reboot = -1
        self.kexec_load_limit_panic = -1
        self.crashk_res: tuple[int, int] | None = None
        self.kexec_rng = rng
