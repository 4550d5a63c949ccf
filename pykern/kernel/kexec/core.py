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
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ...constants import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from ...mm import gfp as G
from ...mm.memory import ZERO_BLOCK
from ...mm.page import PG_reserved, Page
from .core_pages import (
    LOAD_DONE, LOAD_NOMEM, LOAD_STOP, copy_highpages, kimage_load_normal_pages,
    kimage_take_control_block,
)
from .uapi import (
    IND_DESTINATION, IND_DONE, IND_INDIRECTION, IND_SOURCE, KEXEC_TYPE_CRASH,
    KEXEC_TYPE_DEFAULT, KIMAGE_NO_DEST,
)
from ...errors import KexecError

if TYPE_CHECKING:
    from ...machine import Machine
    from ...mm.memory import PhysMem

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
_GFP_ZERO = G.__GFP_ZERO
_PAGE_WORDS = struct.Struct(f"<{_WORDS_PER_PAGE}Q")
#: Low byte of an entry word -> 1 when the word may stop or redirect the walk of K10.7.
_STOP_MARKS = bytes(1 if b == 0 or b & (IND_DONE | IND_INDIRECTION) else 0
                    for b in range(256))
_NOT_RESERVED = ~PG_reserved
_PAGE_LAST = PAGE_SIZE - 1


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
    #: ``image->dest_pages`` and ``image->unusable_pages`` (K11) in the order the pages were
    #: added, the list's tail first (a list_add puts each at the head): the dict removes any
    #: page in O(1), the list only ever grows at the end (:attr:`dest_pages` and
    #: :attr:`unusable_pages` read them head first).
    dest_pages_added: dict[int, None] = field(default_factory=dict)
    unusable_pages_added: list[int] = field(default_factory=list)
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
    #: The segments' :func:`_destination_index` lists, kept by sanity_check_segment_list.
    _dest_ranges: tuple[list[int], list[int]] | None = field(
        default=None, init=False, repr=False, compare=False)

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
        return list(reversed(self.dest_pages_added))

    @property
    def unusable_pages(self) -> list[int]:
        return self.unusable_pages_added[::-1]

    def reference(self, idx: int) -> bytes:
        """What segment ``idx`` must hold once the next kernel runs (K16.11)."""
        seg = self.segments[idx]
        tail = self.reference_tails[idx] if idx < len(self.reference_tails) else None
        body = seg.buf if len(seg.buf) == seg.bufsz else seg.buf[:seg.bufsz]
        return bytes(body) + (tail if tail is not None else bytes(seg.memsz - seg.bufsz))

    def entries(self) -> list[tuple[str, int]]:
        """The entry words in walk order from ``head`` (K10.9)."""
        assert self._m is not None
        out = [(_KINDS[word & 0xF], word & PAGE_MASK & _U64)
               for word in _entry_words(self._m, self)]
        out.append(("DONE", 0))
        return out


def _kind(word: int) -> str:
    """The kind ``entries()`` names an entry word by (its flag bits, strongest first)."""
    if word & IND_DESTINATION:
        return "DESTINATION"
    if word & IND_INDIRECTION:
        return "INDIRECTION"
    if word & IND_SOURCE:
        return "SOURCE"
    if word & IND_DONE:
        return "DONE"
    return "NONE"


_KINDS = tuple(_kind(flags) for flags in range(16))


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


def _entry_runs(m: Machine, image: KImage) -> tuple[int, list[tuple[int, tuple[int, ...]]]]:
    """The walk of ``for_each_kimage_entry`` (K10.7) as ``(head word or 0, runs)``: each
    run is ``(location of its first word, the words)``, consecutive words of one
    indirection page, in walk order.

    Each page is read in one go, and the words that can end or redirect the walk (zero,
    IND_DONE, IND_INDIRECTION) are found by their low byte (``bytes.find``), not word by
    word.  [model] A list damaged into a loop would make the kernel's walker spin; this
    one stops after as many words as RAM holds.
    """
    runs: list[tuple[int, tuple[int, ...]]] = []
    word = image.head
    if not word or word & IND_DONE:
        return 0, runs
    if not word & IND_INDIRECTION:
        return word, runs  # head holds only a link (or DONE)
    ram, offset = m.ram, m.physmem.offset
    loc = word & PAGE_MASK
    budget = m.physmem.size // 8 + 1
    while budget > 0:
        count = (PAGE_SIZE - (loc & ~PAGE_MASK)) // 8
        at = offset(loc, 8 * count)
        words = (_PAGE_WORDS if count == _WORDS_PER_PAGE
                 else struct.Struct(f"<{count}Q")).unpack_from(ram, at)
        # one byte per word: 1 where the low byte is 0 or carries DONE or INDIRECTION
        marks = ram[at:at + 8 * count:8].translate(_STOP_MARKS)
        budget -= count
        k0 = 0
        while True:
            k = marks.find(1, k0)
            if k < 0:
                runs.append((loc + 8 * k0, words[k0:]))
                loc += 8 * count
                break
            word = words[k]
            if not word or word & IND_DONE:
                if k > k0:
                    runs.append((loc + 8 * k0, words[k0:k]))
                return image.head, runs
            runs.append((loc + 8 * k0, words[k0:k + 1]))
            if word & IND_INDIRECTION:
                loc = word & PAGE_MASK
                break
            k0 = k + 1          # a non-zero word without flags: an ordinary entry
    return image.head, runs


def for_each_kimage_entry(m: Machine, image: KImage) -> list[tuple[int, int]]:
    """``for_each_kimage_entry`` (K10.7): ``(location, word)`` of each word before DONE or
    a zero word (see :func:`_entry_runs`)."""
    head, runs = _entry_runs(m, image)
    if not head:
        return []
    out = [(HEAD, head)]
    for loc, words in runs:
        out += zip(range(loc, loc + 8 * len(words), 8), words)
    return out


def _entry_words(m: Machine, image: KImage) -> list[int]:
    """The words of :func:`for_each_kimage_entry` without their locations."""
    head, runs = _entry_runs(m, image)
    if not head:
        return []
    out = [head]
    for _, words in runs:
        out += words
    return out


# ----------------------------------------------------------------- page helpers
def kimage_is_destination_range(image: KImage, start: int, end: int) -> bool:
    """``kimage_is_destination_range`` (K6.5): some recorded segment overlaps the inclusive
    range [start, end]."""
    for seg in image.segments:
        if end >= seg.mem and start <= seg.mem + seg.memsz - 1:
            return True
    return False


def _destination_index(image: KImage) -> tuple[list[int], list[int]]:
    """The segments' destinations as two lists that answer
    :func:`kimage_is_destination_range` with one bisection (:func:`_alloc_context`): the
    first bytes, ascending, and ``reach``, where ``reach[k]`` is the highest last byte
    among the segments with the ``k + 1`` lowest first bytes.

    The inclusive range [start, end] overlaps a segment exactly when some segment has
    ``first <= end`` and ``last >= start``: with ``k = bisect_right(firsts, end)`` those
    are the first ``k``, so the answer is ``k > 0 and reach[k - 1] >= start``."""
    pairs = sorted([(seg.mem, seg.mem + seg.memsz - 1) for seg in image.segments])
    firsts = [first for first, _ in pairs]
    reach: list[int] = []
    top = 0
    for k, (_, last) in enumerate(pairs):
        if k == 0 or last > top:
            top = last
        reach.append(top)
    return firsts, reach


#: What the page-taking loops of K9.2 and K11 look up once per call instead of once per
#: page, in this order: the segments' destinations as the two :func:`_destination_index`
#: lists ``firsts`` and ``reach`` (the segments are fixed once sanity_check_segment_list
#: ran, which keeps them in ``image._dest_ranges``), the allocator's ``alloc_pages``, the
#: memmap flags and first pfn, the source limit's pfn; and, while
#: kimage_load_normal_segment runs, the writes it still owes its source pages
#: (:class:`_OwedPages`), else None.  A plain tuple: the hot loops unpack it by position.
_AllocContext = tuple[list[int], list[int], Callable[[int, int], "Page | None"], bytearray,
                      int, int, "_OwedPages | None"]


def _alloc_context(m: Machine, image: KImage, owed: _OwedPages | None = None) -> _AllocContext:
    """The :data:`_AllocContext` of ``image`` on ``m``."""
    mm = m.kernel.mm
    mem = mm.mem_map
    firsts, reach = image._dest_ranges or _destination_index(image)
    return (firsts, reach, mm.alloc_pages, mem.flags, mem.base_pfn,
            m.kexec_arch.source_memory_limit >> PAGE_SHIFT, owed)


def _clear_unless_zero(physmem: PhysMem, at: int, n: int) -> None:
    """``zero_range`` of buffer bytes ``[at, at + n)``, skipping each chunk that already
    reads as zeros.

    [model] The RAM bytes end the same; a page of the host's lazily zeroed buffer that was
    never written is neither read nor written (:meth:`PhysMem.written_runs`) instead of
    being allocated and cleared."""
    ram, memops = physmem.buf, physmem.memops
    for at, step in physmem.written_chunks(at, n):
        if not memops.range_equal(ram, at, ZERO_BLOCK, 0, step):
            memops.zero_range(ram, at, step)


class _OwedPages:
    """[model] The page writes kimage_load_normal_segment owes for one segment, done run by
    run instead of page by page.

    Page ``j`` of the segment (destination ``seg.mem + j * PAGE_SIZE``) receives the
    segment's bytes ``[j * PAGE_SIZE, (j + 1) * PAGE_SIZE)`` cut at ``bufsz`` and padded
    with zeros (the kernel clears the page and copies its chunk in).  The load records each
    page's source in ``src``, and each K11.7 copy of a loaded page into its destination
    (``copy_highpage``) in ``copies``; :meth:`flush` does the copies, then the writes, in
    slices that each cover a run of adjacent pages.

    The order is safe: a K11.7 copy reads a page whose bytes were written by an earlier
    flush (a page still owed has its record moved instead) and writes a page that just came
    from the allocator; the page it reads becomes the source of the current destination,
    whose bytes the same flush writes after the copies.  The load flushes before anything
    can take a page for an indirection page, at the end of the segment and on failure, so
    whenever anything else can look, RAM holds what the kernel's page-by-page order leaves.
    """

    __slots__ = ("physmem", "ram", "offset", "memops", "buf", "bufsz", "mem", "first", "src",
                 "copies")

    def __init__(self, m: Machine, seg: KexecSegment) -> None:
        self.physmem = m.physmem
        self.ram = m.physmem.buf
        self.offset = m.physmem.offset
        self.memops = m.memops
        self.buf = memoryview(seg.buf)
        self.bufsz = seg.bufsz
        self.mem = seg.mem
        self.first = 0                              # the segment page src[0] is for
        self.src: list[int] = []                    # sources of pages first, first + 1, ...
        self.copies: list[tuple[int, int]] = []     # (destination page, page copied from)

    def copy_highpage(self, dest: int, old: int) -> None:
        """K11.7: the bytes of the source page ``old`` go into ``dest``, its destination."""
        j = ((dest - self.mem) >> PAGE_SHIFT) - self.first
        if 0 <= j < len(self.src) and self.src[j] == old:
            self.src[j] = dest      # still owed: the page will be written in place
        else:
            self.copies.append((dest, old))

    def flush(self) -> None:
        """Do the recorded copies, then write the recorded pages."""
        ram, offset = self.ram, self.offset
        if self.copies:
            copy_highpages(ram, self.copies, offset, self.memops.copy_range,
                           self.physmem.prefault_write)
            self.copies.clear()
        src, buf, bufsz = self.src, self.buf, self.bufsz
        n = len(src)
        k = 0
        while k < n:
            start = src[k]
            e = k + 1
            while e < n and src[e] == start + ((e - k) << PAGE_SHIFT):
                e += 1
            lo, hi = (self.first + k) << PAGE_SHIFT, (self.first + e) << PAGE_SHIFT
            at = offset(start, hi - lo)
            top = hi if hi < bufsz else (bufsz if bufsz > lo else lo)
            if top > lo:
                self.physmem.prefault_write(start, top - lo)
                ram[at:at + top - lo] = buf[lo:top]
            if hi > top:
                _clear_unless_zero(self.physmem, at + top - lo, hi - top)
            k = e
        self.first += n
        src.clear()


def kimage_alloc_pages(m: Machine, gfp: int, order: int,
                       ctx: _AllocContext | None = None) -> int | None:
    """``kimage_alloc_pages``: allocate a block and mark it kexec's (K9.3); its phys or None.

    The mask is the caller's minus __GFP_ZERO and nothing more (no __GFP_NOWARN), so a load
    that runs out of memory leaves the allocator's page-allocation-failure warning.  A
    caller that allocates page after page passes its :func:`_alloc_context` (this stays a
    call of its own: fault injection's call trace names it)."""
    alloc: Callable[[int, int], Page | None]
    if ctx is None:
        mm = m.kernel.mm
        alloc, mem = mm.alloc_pages, mm.mem_map
        flags, base = mem.flags, mem.base_pfn
    else:
        _, _, alloc, flags, base, _, _ = ctx
    page = alloc(gfp & ~_GFP_ZERO, order)
    if page is None:
        return None
    pfn = page.pfn
    if order == 0:
        flags[pfn - base] |= PG_reserved
    else:
        for j in range(pfn - base, pfn - base + (1 << order)):
            flags[j] |= PG_reserved
    if gfp & _GFP_ZERO:
        m.physmem.clear_pages(pfn, 1 << order)
    return pfn << PAGE_SHIFT


def kimage_free_pages(m: Machine, phys: int, order: int) -> None:
    """``kimage_free_pages`` (K14.2): clear the reserved marker and give the block back."""
    pfn = phys >> PAGE_SHIFT
    mm = m.kernel.mm
    mem = mm.mem_map
    flags = mem.flags
    i = pfn - mem.base_pfn
    if order == 0:
        flags[i] &= _NOT_RESERVED
    else:
        for j in range(i, i + (1 << order)):
            flags[j] &= _NOT_RESERVED
    mm.free_pages(pfn, order)


def kimage_alloc_normal_control_pages(m: Machine, image: KImage, order: int,
                                      ctx: _AllocContext | None = None) -> int | None:
    """``kimage_alloc_normal_control_pages`` (K9.2): buddy pages that are no segment's
    destination; the ones that are get set aside, and freed (last set aside first) before
    returning.

    The limit test is the kernel's: the block's end pfn (exclusive) at or above
    ``KEXEC_CONTROL_MEMORY_LIMIT >> PAGE_SHIFT``.  ``ctx``: the image's
    :func:`_alloc_context`, from a caller that takes control page after control page."""
    count = 1 << order
    size = PAGE_SIZE << order
    extra: list[int] = []
    got = None
    limit_pfn = m.kexec_arch.control_memory_limit >> PAGE_SHIFT
    if ctx is None:
        ctx = _alloc_context(m, image)
    firsts, reach, _, flags, base, _, _ = ctx
    mm = m.kernel.mm
    fpa = mm.fail_page_alloc
    if fpa is None or not fpa.armed:
        # While no allocation can be made to fail (fault injection's call trace names
        # kimage_alloc_pages), the loop below is kimage_take_control_block (compiled in
        # the compiled build).
        got = kimage_take_control_block(mm, KEXEC_CONTROL_MEMORY_GFP, order, limit_pfn,
                                        flags, base, firsts, reach)
        if got is not None:
            image.control_pages_list.insert(0, (got, order))
        return got
    while True:
        addr = kimage_alloc_pages(m, KEXEC_CONTROL_MEMORY_GFP, order, ctx)
        if addr is None:
            break
        if (addr >> PAGE_SHIFT) + count >= limit_pfn:
            extra.append(addr)
            continue
        # kimage_is_destination_range(image, addr, addr + size - 1), inline (a bisection
        # of the _destination_index lists)
        k = bisect_right(firsts, addr + size - 1)
        if k and addr <= reach[k - 1]:
            extra.append(addr)
            continue
        got = addr
        image.control_pages_list.insert(0, (addr, order))
        break
    for addr in reversed(extra):    # kimage_free_page_list: the last set aside goes first
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


def kimage_alloc_control_pages(m: Machine, image: KImage, order: int,
                               ctx: _AllocContext | None = None) -> int | None:
    """``kimage_alloc_control_pages`` (K9.1): from the buddy allocator for a normal image,
    from the crash region for a crash image.

    A caller that takes many control pages in a row may pass the image's
    :func:`_alloc_context` (a normal image's allocation uses it)."""
    if image.image_type == KEXEC_TYPE_CRASH:
        return kimage_alloc_crash_control_pages(m, image, order)
    return kimage_alloc_normal_control_pages(m, image, order, ctx)


def kimage_alloc_page(m: Machine, image: KImage, gfp: int, destination: int,
                      ctx: _AllocContext | None = None) -> int | None:
    """``kimage_alloc_page`` (K11): a source or indirection page that is safe to copy
    from.

    ``ctx`` is the image's :func:`_alloc_context`, passed by a caller that asks for many
    pages (taken here when omitted).  [model] ``kimage_dst_used`` is a dict lookup
    (``image._dest_index``, K11.10) instead of a walk of the entry list."""
    if destination in image.dest_pages_added:
        del image.dest_pages_added[destination]
        return destination
    if ctx is None:
        ctx = _alloc_context(m, image)
    firsts, reach, _, _, _, limit_pfn, owed = ctx
    while True:
        addr = kimage_alloc_pages(m, gfp, 0, ctx)
        if addr is None:
            return None
        if addr >> PAGE_SHIFT > limit_pfn:
            image.unusable_pages_added.append(addr)
            continue
        if addr == destination:
            return addr
        # kimage_is_destination_range(image, addr, addr + PAGE_SIZE - 1), inline (a
        # bisection of the _destination_index lists)
        k = bisect_right(firsts, addr + _PAGE_LAST)
        if not k or addr > reach[k - 1]:
            return addr
        loc = image._dest_index.get(addr)
        if loc is not None:
            # Its destination is loaded: the page takes over that SOURCE page's bytes and
            # entry, and the old source page is handed out instead.
            physmem = m.physmem
            ram = physmem.buf
            off = physmem.offset(loc, 8)
            word: int = _WORD.unpack_from(ram, off)[0]
            old = word & PAGE_MASK
            if owed is not None:
                owed.copy_highpage(addr, old)       # done with the load's next flush
            else:
                physmem.copy(addr, old, PAGE_SIZE)   # copy_highpage
            _WORD.pack_into(ram, off, addr | (word & ~PAGE_MASK))
            return old
        image.dest_pages_added[addr] = None


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

    [model] The bytes go into the source pages run by run (:class:`_OwedPages`); RAM ends
    as the kernel's page-by-page copy leaves it, on failure too.

    [quirk] ``kexec-source-page-leak``: when the SOURCE entry cannot be added (K10.2 finds
    no indirection page) the page just taken is on no list and stays allocated, reserved,
    after kimage_free; the fix frees it."""
    seg = image.segments[idx]
    kimage_add_entry(m, image, (seg.mem & PAGE_MASK) | IND_DESTINATION)
    owed = _OwedPages(m, seg)
    ctx = _alloc_context(m, image, owed)
    src = owed.src
    physmem = m.physmem
    ram = physmem.buf
    pack_two = _TWO_WORDS.pack_into
    dest_index = image._dest_index
    gfp = G.GFP_HIGHUSER
    # kimage_add_entry always leaves image.entry on the zero word it wrote last, and nothing
    # else in this loop writes the current indirection page, so the inline add below never
    # needs K10.2's step past a non-zero word.  ``delta``: buffer offset minus address
    # inside the current indirection page.
    entry, last = image.entry, image.last_entry
    delta = physmem.offset(entry & PAGE_MASK, PAGE_SIZE) - (entry & PAGE_MASK) \
        if entry != HEAD else 0
    # While no allocation can be made to fail (fault injection's call trace names
    # kimage_alloc_page and kimage_alloc_pages), the pages whose entries fit the current
    # indirection page are taken by kimage_load_normal_pages (compiled in the compiled
    # build); the rest here.
    mm = m.kernel.mm
    fpa = mm.fail_page_alloc
    inline = fpa is None or not fpa.armed
    firsts, reach, _, flags, base, limit_pfn, _ = ctx
    maddr, end = seg.mem, seg.mem + seg.memsz
    try:
        while maddr < end:
            status = LOAD_STOP
            if inline:
                status, maddr, entry = kimage_load_normal_pages(
                    mm, gfp, maddr, end, entry, last, delta, ram, pack_two, flags, base,
                    limit_pfn, firsts, reach, image.dest_pages_added, dest_index, src,
                    image.unusable_pages_added, owed, physmem.offset)
                if status == LOAD_DONE:
                    break
            page = None if status == LOAD_NOMEM else \
                kimage_alloc_page(m, image, gfp, maddr, ctx)
            if page is None:
                raise KexecError(errno.ENOMEM, f"no source page for {maddr:#x}")
            if entry + 8 < last and entry != HEAD:
                # kimage_add_entry(page | IND_SOURCE), inline while the word and the zero
                # after it fit the current indirection page
                pack_two(ram, entry + delta, page | IND_SOURCE, 0)
                dest_index[maddr] = entry
                entry += 8
            else:
                owed.flush()            # kimage_add_entry may take an indirection page
                image.entry = entry
                try:
                    kimage_add_entry(m, image, page | IND_SOURCE)
                except KexecError:
                    # [quirk] kexec-source-page-leak: the kernel returns with the page on
                    # no list
                    if m.fixes.on("kexec-source-page-leak"):
                        kimage_free_pages(m, page, 0)
                    entry = image.entry
                    raise
                entry, last = image.entry, image.last_entry
                dest_index[maddr] = entry - 8
                delta = physmem.offset(entry & PAGE_MASK, PAGE_SIZE) - (entry & PAGE_MASK)
            src.append(page)
            maddr += PAGE_SIZE
    finally:
        image.entry = entry
        owed.flush()


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
    physmem = m.physmem
    physmem.write(seg.mem, memoryview(seg.buf)[:seg.bufsz])
    if seg.memsz > seg.bufsz:
        n = seg.memsz - seg.bufsz
        _clear_unless_zero(physmem, physmem.offset(seg.mem + seg.bufsz, n), n)


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
    """``sanity_check_segment_list`` (K8): each check over all segments before the next.

    [model] A list that passes is fixed from here on: its :func:`_destination_index` lists
    are kept in ``image._dest_ranges`` for the page-taking loops."""
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
    image._dest_ranges = _destination_index(image)


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
    for addr in reversed(image.dest_pages_added):           # the list, head first
        kimage_free_pages(m, addr, 0)
    image.dest_pages_added.clear()
    for addr in reversed(image.unusable_pages_added):
        kimage_free_pages(m, addr, 0)
    image.unusable_pages_added.clear()
    mm = m.kernel.mm
    free, flags, base = mm.free_pages, mm.mem_map.flags, mm.mem_map.base_pfn
    ind = 0
    for word in _entry_words(m, image):
        if word & IND_INDIRECTION:
            if ind & IND_INDIRECTION:
                kimage_free_pages(m, ind & PAGE_MASK, 0)
            ind = word
        elif word & IND_SOURCE:
            # kimage_free_pages(page, 0), inline
            pfn = (word & PAGE_MASK) >> PAGE_SHIFT
            flags[pfn - base] &= _NOT_RESERVED
            free(pfn, 0)
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

    def __init__(self, rng: random.Random | str) -> None:
        self.kexec_image: KImage | None = None
        self.kexec_crash_image: KImage | None = None
        self.kexec_in_progress = False
        self.kexec_file_dbg_print = False
        self.kexec_load_disabled = 0
        self.kexec_load_limit_reboot = -1
        self.kexec_load_limit_panic = -1
        self.crashk_res: tuple[int, int] | None = None
        # A str is the seed of a generator made on first use: a boot that loads nothing
        # (most next kernels) never pays for seeding one.
        self._rng: random.Random | None = rng if isinstance(rng, random.Random) else None
        self._rng_seed = rng if isinstance(rng, str) else None

    @property
    def kexec_rng(self) -> random.Random:
        """The generator the loaders draw from (made on first use from its seed)."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self._rng_seed)
        return rng

    @kexec_rng.setter
    def kexec_rng(self, rng: random.Random) -> None:
        self._rng = rng
