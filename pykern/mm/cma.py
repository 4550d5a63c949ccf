"""Contiguous Memory Allocator areas (``mm/cma.c``), the MM CMA rules.

An area owns up to eight physical ranges, each with a bitmap whose bit n
stands for ``2^order_per_bit`` pages.  The bitmap is a ``bytearray`` with one
byte per bit so that searches run at C speed (``find``) and never loop over
bits in Python.

The kernel functions are module-level functions with the kernel's names
(``__cma_alloc``, ``cma_range_alloc``, ``cma_release``, ...) taking the area first;
:class:`Cma` is ``struct cma`` with the user-facing API (``alloc``, ``release``,
``bitmap``, ...).
"""

from __future__ import annotations

import errno
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .gfp import GFP_KERNEL, __GFP_NOWARN
from .memblock import (
    memblock_end_of_DRAM, memblock_find_in_range, memblock_is_region_memory,
    memblock_is_region_reserved, memblock_phys_free, memblock_reserve,
)
from .mm_init import free_reserved_page, init_cma_reserved_pageblock
from .mmzone import PAGE_SHIFT, pageblock_nr_pages
from .page import Page
from .page_alloc import page_zone
from .page_alloc_contig import ACR_FLAGS_CMA, alloc_contig_range, free_contig_range
from .vmstat import count_vm_events

from ..lib.machine_ref import MachineRef

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["Cma", "CmaMemrange", "CMA_MAX_NAME", "MAX_CMA_AREAS", "CMA_MAX_RANGES",
           "CMA_MIN_ALIGNMENT_BYTES", "cma_declare_contiguous_nid", "cma_init_reserved_mem",
           "cma_activate_area", "cma_init_reserved_areas", "cma_alloc", "__cma_alloc",
           "cma_range_alloc", "cma_release", "cma_pages_valid", "cma_debug_show_areas",
           "for_each_clear_bitrange", "for_each_set_bitrange"]

CMA_MAX_NAME = 64
CMA_MAX_RANGES = 8
MAX_CMA_AREAS = 20
CMA_MIN_ALIGNMENT_PAGES = pageblock_nr_pages
CMA_MIN_ALIGNMENT_BYTES = CMA_MIN_ALIGNMENT_PAGES << PAGE_SHIFT
_U64 = (1 << 64) - 1
_BIT_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


@dataclass
class CmaMemrange:
    """``struct cma_memrange``."""

    base_pfn: int
    count: int
    early_pfn: int
    bitmap: bytearray = field(default_factory=bytearray)


# ---------------------------------------------------------------------------- bitmaps
def cma_bitmap_maxno(cma: Cma, cmr: CmaMemrange) -> int:
    """``cma_bitmap_maxno`` (``mm/cma.h``): the bits of the range's bitmap."""
    return cmr.count >> cma.order_per_bit


def cma_bitmap_aligned_mask(cma: Cma, align_order: int) -> int:
    """``cma_bitmap_aligned_mask``: an ``align_order`` alignment as a bitmap-index mask."""
    if align_order <= cma.order_per_bit:
        return 0
    return (1 << (align_order - cma.order_per_bit)) - 1


def cma_bitmap_aligned_offset(cma: Cma, cmr: CmaMemrange, align_order: int) -> int:
    """``cma_bitmap_aligned_offset``: how far, in bits, the range's base lies past an
    ``align_order`` boundary."""
    return (cmr.base_pfn & ((1 << align_order) - 1)) >> cma.order_per_bit


def cma_bitmap_pages_to_bits(cma: Cma, pages: int) -> int:
    """``cma_bitmap_pages_to_bits``: the bits that cover ``pages`` pages (rounded up)."""
    step = 1 << cma.order_per_bit
    return (pages + step - 1) // step


def cma_clear_bitmap(cma: Cma, cmr: CmaMemrange, pfn: int, count: int) -> None:
    """``cma_clear_bitmap``: give ``count`` pages from ``pfn`` back to the area's
    bookkeeping."""
    bit = (pfn - cmr.base_pfn) >> cma.order_per_bit
    nbits = cma_bitmap_pages_to_bits(cma, count)
    cmr.bitmap[bit:bit + nbits] = bytes(nbits)
    cma.available_count += count


def bitmap_find_next_zero_area_off(bm: bytearray, size: int, start: int, nr: int,
                                   mask: int, offset: int) -> int:
    """``bitmap_find_next_zero_area_off`` (``lib/bitmap.c``) over a byte-per-bit bitmap:
    the first index from ``start`` of ``nr`` clear bits aligned by ``mask`` after
    ``offset``; ``size`` or more when there is none."""
    while True:
        index = bm.find(0, start, size)
        if index < 0:
            index = size
        index = ((index + offset + mask) & ~mask) - offset
        end = index + nr
        if end > size:
            return end
        busy = bm.find(1, index, end)
        if busy < 0:
            return index
        start = busy + 1


def _bitranges(bm: bytes | bytearray, bit: int) -> Iterator[tuple[int, int]]:
    i, n = 0, len(bm)
    while i < n:
        start = bm.find(bit, i)
        if start < 0:
            return
        end = bm.find(bit ^ 1, start)
        end = n if end < 0 else end
        yield start, end
        i = end


def for_each_clear_bitrange(bm: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """``for_each_clear_bitrange`` over a byte-per-bit bitmap: each run of clear bits as
    ``[start, end)``, lowest first."""
    return _bitranges(bm, 0)


def for_each_set_bitrange(bm: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """``for_each_set_bitrange`` over a byte-per-bit bitmap: each run of set bits as
    ``[start, end)``, lowest first."""
    return _bitranges(bm, 1)


# ------------------------------------------------------------------------- allocation
def cma_debug_show_areas(cma: Cma) -> None:
    """``cma_debug_show_areas`` (MM CMA6.3): the failure dump, as 6.17/6.18 print it.

    Each range is a ``pr_info("range %d: ")`` line continued with one item per run
    of clear bits (``for_each_clear_bitrange``), the item prefixed with ``+`` when
    its first bit is not 0, and closed by its own ``pr_info("\\n")``, which makes a
    line of just ``"cma: "`` after every range.  The total is a continuation after a
    finished line, so it stands alone at the default level 4.
    """
    log = cma._m.kernel.log
    log.printk(6, "cma: number of available pages: ")
    for r, cmr in enumerate(cma.ranges):
        items = "".join(f"{'+' if start else ''}{(end - start) << cma.order_per_bit}@{start}"
                        for start, end in for_each_clear_bitrange(cmr.bitmap))
        log.printk(6, f"cma: range {r}: {items}")
        log.printk(6, "cma: ")
    log.printk(4, f"=> {cma.available_count} free of {cma.count} total pages")


def cma_range_alloc(cma: Cma, cmr: CmaMemrange, count: int, align: int,
                    gfp: int) -> tuple[int, int | None]:
    """``cma_range_alloc`` (MM CMA7): bitmap search from the bottom, then
    ``alloc_contig_range``; ``(0, first pfn)`` or ``(-errno, None)``."""
    mask = cma_bitmap_aligned_mask(cma, align)
    offset = cma_bitmap_aligned_offset(cma, cmr, align)
    maxno = cma_bitmap_maxno(cma, cmr)
    nbits = cma_bitmap_pages_to_bits(cma, count)
    ret = -errno.EBUSY
    if nbits > maxno:
        return ret, None
    bm = cmr.bitmap
    start = 0
    while True:
        if count > cma.available_count:
            break
        i = bitmap_find_next_zero_area_off(bm, maxno, start, nbits, mask, offset)
        if i >= maxno:
            break
        bm[i:i + nbits] = b"\x01" * nbits
        cma.available_count -= count
        pfn = cmr.base_pfn + (i << cma.order_per_bit)
        ret = alloc_contig_range(cma._m, pfn, pfn + count, ACR_FLAGS_CMA, gfp)
        if ret == 0:
            return 0, pfn
        cma_clear_bitmap(cma, cmr, pfn, count)
        if ret != -errno.EBUSY:
            break
        start = i + mask + 1
    return ret, None


def __cma_alloc(cma: Cma, count: int, align: int, gfp: int) -> int | None:
    """``__cma_alloc`` (MM CMA6): try each range in turn; the first pfn, or None.

    :raises ValueError: for a count or align that is not an int (an align below 0).
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError(f"cma_alloc: count {count!r} is not an int")
    if isinstance(align, bool) or not isinstance(align, int) or align < 0:
        raise ValueError(f"cma_alloc: align {align!r} is not an order")
    count &= _U64  # unsigned long, as the kernel sees a negative count
    if not cma.count or not count:
        return None
    ret, pfn = -errno.EBUSY, None
    for cmr in cma.ranges:
        ret, pfn = cma_range_alloc(cma, cmr, count, align, gfp)
        if ret != -errno.EBUSY or pfn is not None:
            break
    kernel = cma._m.kernel
    if ret and not gfp & __GFP_NOWARN:
        kernel.log.printk(3, f"cma: __cma_alloc: {cma.name}: alloc failed, req-size: {count} "
                             f"pages, ret: {ret}")
        cma_debug_show_areas(cma)
    if pfn is not None:
        count_vm_events(kernel.mm, "cma_alloc_success", 1)
        cma.alloc_pages_success += count
    else:
        count_vm_events(kernel.mm, "cma_alloc_fail", 1)
        cma.alloc_pages_fail += count
    return pfn


def cma_alloc(cma: Cma, count: int, align: int, no_warn: bool = False) -> Page | None:
    """``cma_alloc``: ``count`` pages aligned to 2^``align`` pages, or None."""
    pfn = __cma_alloc(cma, count, align, GFP_KERNEL | (__GFP_NOWARN if no_warn else 0))
    return None if pfn is None else Page(cma._m.kernel.mm, pfn)


# ---------------------------------------------------------------------------- release
def cma_pages_valid(cma: Cma, pfn: int, count: int) -> bool:
    """``cma_pages_valid`` (MM CMA9): the pages lie wholly inside one range of the area."""
    if count > cma.count:
        return False
    for cmr in cma.ranges:
        if cmr.base_pfn <= pfn < cmr.base_pfn + cmr.count:
            return pfn + count <= cmr.base_pfn + cmr.count
    return False


def cma_release(cma: Cma, page: Page | int | None, count: int) -> bool:
    """``cma_release`` (MM CMA8): give back pages ``cma_alloc`` handed out; False for
    pages outside the area.

    :raises ValueError: for a bad count, or pages the area did not hand out (CMA8.3);
        nothing changes.
    """
    if page is None:
        return False
    pfn = page.pfn if isinstance(page, Page) else page
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"cma_release: count {count!r} is not a page count")
    if not cma_pages_valid(cma, pfn, count):
        return False
    cmr = next(c for c in cma.ranges if c.base_pfn <= pfn < c.base_pfn + c.count)
    bit = (pfn - cmr.base_pfn) >> cma.order_per_bit
    nbits = cma_bitmap_pages_to_bits(cma, count)
    if cmr.bitmap.find(0, bit, bit + nbits) >= 0:
        raise ValueError(f"cma_release: {cma.name}: pfn {pfn:#x}+{count} was not "
                         "handed out by this area (bitmap bits clear)")
    mem = cma._m.kernel.mm.mem_map
    i = pfn - mem.base_pfn
    # Pages alloc_contig_range handed out are order-0 allocations with a reference
    # (MM R7); a free page or the tail of a free block has alloc_order NO_ALLOC.
    orders, refs = mem.alloc_order[i:i + count], mem.refcount[i:i + count]
    # min() only when some page holds other than the one reference it was handed out with
    if count and (orders.count(0) != count or (refs != array(refs.typecode, (1,)) * count
                                               and min(refs) <= 0)):
        bad = next(k for k in range(count) if orders[k] != 0 or refs[k] <= 0)
        raise ValueError(f"cma_release: {cma.name}: pfn {pfn + bad:#x} is not allocated")
    free_contig_range(cma._m, pfn, count)
    cma_clear_bitmap(cma, cmr, pfn, count)
    cma.release_pages_success += count
    return True


class Cma(MachineRef):
    """``struct cma``: one CMA area (``m.cma_areas``, ``m.dma_contiguous_default_area``)."""

    def __init__(self, m: Machine, name: str, count: int, order_per_bit: int) -> None:
        self._m = m
        self.name = name
        self.count = count
        self.available_count = count
        self.order_per_bit = order_per_bit
        self.ranges: list[CmaMemrange] = []
        self.activated = False
        self.reserve_pages_on_error = False
        self.nid = 0
        # CMA12 statistics
        self.alloc_pages_success = 0
        self.alloc_pages_fail = 0
        self.release_pages_success = 0
        #: debugfs ``alloc`` blocks, most recent last (CMA11).
        self.mem_head: list[tuple[int, int]] = []

    @property
    def base_pfn(self) -> int:
        return self.ranges[0].base_pfn if self.ranges else 0

    @property
    def nranges(self) -> int:
        return len(self.ranges)

    def bitmap(self, r: int = 0) -> int:
        """Bitmap of range ``r`` as an int: bit n is bitmap bit n."""
        bm = self.ranges[r].bitmap
        return int(bytes(bm[::-1]).translate(_BIT_DIGITS), 2) if bm else 0

    def bitmap_words(self, r: int = 0) -> list[int]:
        """The range's bitmap as consecutive 32-bit words (CMA11)."""
        bits = self.bitmap(r)
        n = len(self.ranges[r].bitmap)
        return [(bits >> (32 * w)) & 0xFFFFFFFF for w in range((n + 31) // 32)]

    def maxchunk(self) -> int:
        """Longest run of clear bits in any one range, in pages (CMA11)."""
        best = 0
        for cmr in self.ranges:
            for run in bytes(cmr.bitmap).split(b"\x01"):
                best = max(best, len(run))
        return best << self.order_per_bit

    # The kernel functions that are also the user-facing API.
    alloc = cma_alloc
    release = cma_release
    cma_debug_show_areas = cma_debug_show_areas

    def __repr__(self) -> str:
        return (f"<Cma {self.name!r} base_pfn={self.base_pfn:#x} count={self.count} "
                f"used={self.count - self.available_count}>")


# ------------------------------------------------------------------------------- boot
def cma_init_reserved_mem(m: Machine, base: int, size: int, order_per_bit: int,
                          name: str | None) -> Cma | int:
    """``cma_init_reserved_mem`` (MM CMA3): an area over an already reserved range, or
    ``-errno``: the range checks first, then a free slot (``cma_new_area``)."""
    if not size or not memblock_is_region_reserved(m.kernel.memblock, base, size):
        return -errno.EINVAL
    if (base | size) & (CMA_MIN_ALIGNMENT_BYTES - 1):
        return -errno.EINVAL
    if len(m.kernel.cma_areas) >= MAX_CMA_AREAS:
        m.kernel.log.printk(3, "cma: Not enough slots for CMA reserved regions!")
        return -errno.ENOSPC
    number = len(m.kernel.cma_areas) + 1
    if name is None:
        name = f"cma{number}" + ("" if m.fixes.on("cma-name-newline") else "\n")
    cma = Cma(m, name[:CMA_MAX_NAME - 1], size >> PAGE_SHIFT, order_per_bit)
    base_pfn = base >> PAGE_SHIFT
    cma.ranges.append(CmaMemrange(base_pfn, cma.count, base_pfn))
    m.kernel.cma_areas.append(cma)  # totalcma_pages is summed when the allocator is built
    return cma


def cma_declare_contiguous_nid(m: Machine, base: int, size: int, limit: int, alignment: int,
                               order_per_bit: int, fixed: bool,
                               name: str | None) -> Cma | int:
    """``cma_declare_contiguous_nid`` (MM CMA2): reserve memory for an area at boot; the
    area or ``-errno``."""
    ret = __cma_declare_contiguous_nid(m, base, size, limit, alignment, order_per_bit, fixed,
                                       name)
    if isinstance(ret, int):
        m.kernel.log.printk(3, f"cma: Failed to reserve {size >> 20} MiB")
    else:
        m.kernel.log.info(f"cma: Reserved {size >> 20} MiB at 0x{ret.base_pfn << PAGE_SHIFT:016x}")
    return ret


def __cma_declare_contiguous_nid(m: Machine, base: int, size: int, limit: int,
                                 alignment: int, order_per_bit: int, fixed: bool,
                                 name: str | None) -> Cma | int:
    """``__cma_declare_contiguous_nid`` (MM CMA2.1–CMA2.7): check and round the request,
    reserve the range (fixed, or found bottom-up above 4 GiB, else top-down), then
    ``cma_init_reserved_mem``; the area or ``-errno``."""
    mb = m.kernel.memblock
    if len(m.kernel.cma_areas) >= MAX_CMA_AREAS:
        m.kernel.log.printk(3, "cma: Not enough slots for CMA reserved regions!")
        return -errno.ENOSPC
    if not size:
        return -errno.EINVAL
    if alignment and alignment & (alignment - 1):
        return -errno.EINVAL
    alignment = max(alignment, CMA_MIN_ALIGNMENT_BYTES)
    if fixed and base & (alignment - 1):
        m.kernel.log.printk(3, f"cma: Region at 0x{base:016x} must be aligned to "
                               f"0x{alignment:016x} bytes")
        return -errno.EINVAL
    base = (base + alignment - 1) & ~(alignment - 1)
    size = (size + alignment - 1) & ~(alignment - 1)
    limit &= ~(alignment - 1)
    if not base:
        fixed = False
    if (size >> PAGE_SHIFT) & ((1 << order_per_bit) - 1):
        return -errno.EINVAL
    end_of_dram = memblock_end_of_DRAM(mb)
    if limit == 0 or limit > end_of_dram:
        limit = end_of_dram
    if base + size > limit:
        m.kernel.log.printk(3, f"cma: Size (0x{size:016x}) of region at 0x{base:016x} "
                               f"exceeds limit (0x{limit:016x})")
        return -errno.EINVAL
    if fixed:
        if (memblock_is_region_reserved(mb, base, size)
                or not memblock_is_region_memory(mb, base, size)):
            return -errno.EBUSY
        memblock_reserve(mb, base, size)
    else:
        addr = None
        if limit >= (4 << 30) + size:
            addr = memblock_find_in_range(mb, size, alignment, 4 << 30, limit, top_down=False)
        if addr is None:
            addr = memblock_find_in_range(mb, size, alignment, base, limit, top_down=True)
        if addr is None:
            return -errno.ENOMEM
        base = addr
        memblock_reserve(mb, base, size)
    cma = cma_init_reserved_mem(m, base, size, order_per_bit, name)
    if isinstance(cma, int):
        memblock_phys_free(mb, base, size)
    return cma


def cma_validate_zones(cma: Cma) -> bool:
    """``cma_validate_zones`` (MM CMA5.2): every range of the area lies within one zone."""
    mm = cma._m.kernel.mm
    valid = True
    for cmr in cma.ranges:
        zone = page_zone(mm, cmr.base_pfn)
        if not zone.zone_spans_pfn(cmr.base_pfn + cmr.count - 1):
            valid = False
    return valid


def cma_activate_area(m: Machine, cma: Cma) -> None:
    """``cma_activate_area`` (MM CMA5): bitmaps, zone check, pageblocks retyped CMA and
    freed."""
    mm = m.kernel.mm
    for cmr in cma.ranges:
        cmr.bitmap = bytearray(cma_bitmap_maxno(cma, cmr))
    if not cma_validate_zones(cma):
        for cmr in cma.ranges:
            cmr.bitmap = bytearray()
            if not cma.reserve_pages_on_error:
                for pfn in range(cmr.early_pfn, cmr.base_pfn + cmr.count):
                    free_reserved_page(mm, pfn)
        mm.totalcma_pages -= cma.count
        cma.count = cma.available_count = 0
        m.kernel.log.printk(3, f"cma: CMA area {cma.name} could not be activated")
        return
    for cmr in cma.ranges:
        if cmr.early_pfn != cmr.base_pfn:
            nbits = cma_bitmap_pages_to_bits(cma, cmr.early_pfn - cmr.base_pfn)
            cmr.bitmap[:nbits] = b"\x01" * nbits
        for pfn in range(cmr.early_pfn, cmr.base_pfn + cmr.count, pageblock_nr_pages):
            init_cma_reserved_pageblock(mm, pfn)
    cma.activated = True


def cma_init_reserved_areas(m: Machine) -> None:
    """``cma_init_reserved_areas`` (MM CMA5), a core_initcall: activate every area declared
    at boot, in declaration order."""
    for cma in m.kernel.cma_areas:
        cma_activate_area(m, cma)
