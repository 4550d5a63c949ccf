"""Contiguous Memory Allocator areas (``mm/cma.c``), the MM CMA rules.

An area owns up to eight physical ranges, each with a bitmap whose bit n
stands for ``2^order_per_bit`` pages.  The bitmap is a ``bytearray`` with one
byte per bit so that searches run at C speed (``find``) and never loop over
bits in Python.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import gfp as G
from .mm_init import free_reserved_page, init_cma_reserved_pageblock
from .mmzone import PAGE_SHIFT, pageblock_nr_pages
from .page import Page

if TYPE_CHECKING:
    from ..machine import Machine

_GFP_NOWARN = G.__GFP_NOWARN  # class bodies would mangle the dunder name

__all__ = ["Cma", "CmaMemrange", "CMA_MAX_NAME", "MAX_CMA_AREAS", "CMA_MAX_RANGES",
           "CMA_MIN_ALIGNMENT_BYTES", "cma_declare_contiguous_nid", "cma_init_reserved_mem",
           "cma_activate_area"]

CMA_MAX_NAME = 64
CMA_MAX_RANGES = 8
MAX_CMA_AREAS = 20
CMA_MIN_ALIGNMENT_PAGES = pageblock_nr_pages
CMA_MIN_ALIGNMENT_BYTES = CMA_MIN_ALIGNMENT_PAGES << PAGE_SHIFT
_U64 = (1 << 64) - 1


@dataclass
class CmaMemrange:
    """``struct cma_memrange``."""

    base_pfn: int
    count: int
    early_pfn: int
    bitmap: bytearray = field(default_factory=bytearray)


class Cma:
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

    # ------------------------------------------------------------- geometry
    @property
    def base_pfn(self) -> int:
        return self.ranges[0].base_pfn if self.ranges else 0

    @property
    def nranges(self) -> int:
        return len(self.ranges)

    def cma_bitmap_maxno(self, cmr: CmaMemrange) -> int:
        return cmr.count >> self.order_per_bit

    def cma_bitmap_pages_to_bits(self, pages: int) -> int:
        step = 1 << self.order_per_bit
        return (pages + step - 1) // step

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

    def clear_runs(self, cmr: CmaMemrange) -> list[tuple[int, int]]:
        """Runs of clear bits as (first bit, length), lowest first."""
        runs, bm, i, n = [], cmr.bitmap, 0, len(cmr.bitmap)
        while i < n:
            start = bm.find(0, i)
            if start < 0:
                break
            end = bm.find(1, start)
            end = n if end < 0 else end
            runs.append((start, end - start))
            i = end
        return runs

    # ------------------------------------------------------------ allocation
    def alloc(self, count: int, align: int, no_warn: bool = False) -> Page | None:
        """``cma_alloc``: ``count`` pages aligned to 2^``align`` pages, or None."""
        gfp = G.GFP_KERNEL | (_GFP_NOWARN if no_warn else 0)
        pfn = self.__cma_alloc(count, align, gfp)
        return None if pfn is None else Page(self._m.mm, pfn)

    def __cma_alloc(self, count: int, align: int, gfp: int) -> int | None:
        """``__cma_alloc`` (MM CMA6): try each range in turn; the first pfn, or None."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError(f"cma_alloc: count {count!r} is not an int")
        if isinstance(align, bool) or not isinstance(align, int) or align < 0:
            raise ValueError(f"cma_alloc: align {align!r} is not an order")
        count &= _U64  # unsigned long, as the kernel sees a negative count
        if not self.count or not count:
            return None
        ret, pfn = -errno.EBUSY, None
        for cmr in self.ranges:
            ret, pfn = self.cma_range_alloc(cmr, count, align, gfp)
            if ret != -errno.EBUSY or pfn is not None:
                break
        log = self._m.log
        if ret and not gfp & _GFP_NOWARN:
            log.printk(3, f"cma: __cma_alloc: {self.name}: alloc failed, req-size: {count} "
                          f"pages, ret: {ret}")
            self.cma_debug_show_areas()
        mm = self._m.mm
        if pfn is not None:
            mm.count_vm_events("cma_alloc_success", 1)
            self.alloc_pages_success += count
        else:
            mm.count_vm_events("cma_alloc_fail", 1)
            self.alloc_pages_fail += count
        return pfn

    def cma_range_alloc(self, cmr: CmaMemrange, count: int, align: int,
                        gfp: int) -> tuple[int, int | None]:
        """``cma_range_alloc`` (MM CMA7): bitmap search from the bottom, then
        alloc_contig_range."""
        from .page_alloc_contig import ACR_FLAGS_CMA, alloc_contig_range
        opb = self.order_per_bit
        mask = 0 if align <= opb else (1 << (align - opb)) - 1
        offset = (cmr.base_pfn & ((1 << align) - 1)) >> opb
        maxno = self.cma_bitmap_maxno(cmr)
        nbits = self.cma_bitmap_pages_to_bits(count)
        ret = -errno.EBUSY
        if nbits > maxno:
            return ret, None
        bm = cmr.bitmap
        start = 0
        while True:
            if count > self.available_count:
                break
            i = _find_next_zero_area_off(bm, maxno, start, nbits, mask, offset)
            if i >= maxno:
                break
            bm[i:i + nbits] = b"\x01" * nbits
            self.available_count -= count
            pfn = cmr.base_pfn + (i << opb)
            ret = alloc_contig_range(self._m, pfn, pfn + count, ACR_FLAGS_CMA, gfp)
            if ret == 0:
                return 0, pfn
            bm[i:i + nbits] = bytes(nbits)
            self.available_count += count
            if ret != -errno.EBUSY:
                break
            start = i + mask + 1
        return ret, None

    def cma_debug_show_areas(self) -> None:
        """``cma_debug_show_areas`` (MM CMA6.3): the failure dump, as 6.17/6.18 print it.

        Each range is a ``pr_info("range %d: ")`` line continued with one item per run
        of clear bits (``for_each_clear_bitrange``), the item prefixed with ``+`` when
        its first bit is not 0, and closed by its own ``pr_info("\\n")``, which makes a
        line of just ``"cma: "`` after every range.  The total is a continuation after a
        finished line, so it stands alone at the default level 4.
        """
        log = self._m.log
        log.printk(6, "cma: number of available pages: ")
        for r, cmr in enumerate(self.ranges):
            items = "".join(f"{'+' if bit else ''}{n << self.order_per_bit}@{bit}"
                            for bit, n in self.clear_runs(cmr))
            log.printk(6, f"cma: range {r}: {items}")
            log.printk(6, "cma: ")
        log.printk(4, f"=> {self.available_count} free of {self.count} total pages")

    # --------------------------------------------------------------- release
    def cma_pages_valid(self, pfn: int, count: int) -> bool:
        """``cma_pages_valid`` (MM CMA9): the pages lie wholly inside one range of the area."""
        if count > self.count:
            return False
        for cmr in self.ranges:
            if cmr.base_pfn <= pfn < cmr.base_pfn + cmr.count:
                return pfn + count <= cmr.base_pfn + cmr.count
        return False

    def release(self, page: Page | int, count: int) -> bool:
        """``cma_release``: give back pages ``cma_alloc`` handed out (MM CMA8)."""
        if page is None:
            return False
        pfn = page.pfn if isinstance(page, Page) else page
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"cma_release: count {count!r} is not a page count")
        if not self.cma_pages_valid(pfn, count):
            return False
        cmr = next(c for c in self.ranges if c.base_pfn <= pfn < c.base_pfn + c.count)
        bit = (pfn - cmr.base_pfn) >> self.order_per_bit
        nbits = self.cma_bitmap_pages_to_bits(count)
        if cmr.bitmap.find(0, bit, bit + nbits) >= 0:
            raise ValueError(f"cma_release: {self.name}: pfn {pfn:#x}+{count} was not "
                             "handed out by this area (bitmap bits clear)")
        mem = self._m.mm.mem_map
        i = pfn - mem.base_pfn
        # Pages alloc_contig_range handed out are order-0 allocations with a reference
        # (MM R7); a free page or the tail of a free block has alloc_order NO_ALLOC.
        orders, refs = mem.alloc_order[i:i + count], mem.refcount[i:i + count]
        if count and (orders.count(0) != count or min(refs) <= 0):
            bad = next(k for k in range(count) if orders[k] != 0 or refs[k] <= 0)
            raise ValueError(f"cma_release: {self.name}: pfn {pfn + bad:#x} is not allocated")
        from .page_alloc_contig import free_contig_range
        free_contig_range(self._m, pfn, count)
        cmr.bitmap[bit:bit + nbits] = bytes(nbits)
        self.available_count += count
        self.release_pages_success += count
        return True

    def __repr__(self) -> str:
        return (f"<Cma {self.name!r} base_pfn={self.base_pfn:#x} count={self.count} "
                f"used={self.count - self.available_count}>")


_BIT_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


def _find_next_zero_area_off(bm: bytearray, size: int, start: int, nr: int, mask: int,
                             offset: int) -> int:
    """``bitmap_find_next_zero_area_off`` over a byte-per-bit bitmap."""
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


def cma_init_reserved_mem(m: Machine, base: int, size: int, order_per_bit: int,
                          name: str | None) -> Cma | int:
    """``cma_init_reserved_mem`` (MM CMA3): an area over an already reserved range, or
    ``-errno``."""
    if len(m.cma_areas) >= MAX_CMA_AREAS:
        m.log.printk(3, "cma: Not enough slots for CMA reserved regions!")
        return -errno.ENOSPC
    if not size or not m.memblock.is_region_reserved(base, size):
        return -errno.EINVAL
    if (base | size) & (CMA_MIN_ALIGNMENT_BYTES - 1):
        return -errno.EINVAL
    number = len(m.cma_areas) + 1
    if name is None:
        name = f"cma{number}" + ("" if "cma-name-newline" in m.fixes else "\n")
    cma = Cma(m, name[:CMA_MAX_NAME - 1], size >> PAGE_SHIFT, order_per_bit)
    base_pfn = base >> PAGE_SHIFT
    cma.ranges.append(CmaMemrange(base_pfn, cma.count, base_pfn))
    m.cma_areas.append(cma)  # totalcma_pages is summed when the allocator is built
    return cma


def cma_declare_contiguous_nid(m: Machine, base: int, size: int, limit: int, alignment: int,
                               order_per_bit: int, fixed: bool,
                               name: str | None) -> Cma | int:
    """``cma_declare_contiguous_nid`` (MM CMA2): reserve memory for an area at boot; the
    area or ``-errno``."""
    if len(m.cma_areas) >= MAX_CMA_AREAS:
        m.log.printk(3, "cma: Not enough slots for CMA reserved regions!")
        ret: Cma | int = -errno.ENOSPC
    else:
        ret = _declare(m, base, size, limit, alignment, order_per_bit, fixed, name)
    if isinstance(ret, int):
        m.log.printk(3, f"cma: Failed to reserve {size >> 20} MiB")
    else:
        m.log.info(f"cma: Reserved {size >> 20} MiB at 0x{ret.base_pfn << PAGE_SHIFT:016x}")
    return ret


def _declare(m: Machine, base: int, size: int, limit: int, alignment: int,
             order_per_bit: int, fixed: bool, name: str | None) -> Cma | int:
    mb = m.memblock
    if not size:
        return -errno.EINVAL
    if alignment and alignment & (alignment - 1):
        return -errno.EINVAL
    alignment = max(alignment, CMA_MIN_ALIGNMENT_BYTES)
    if fixed and base & (alignment - 1):
        m.log.printk(3, f"cma: Region at 0x{base:016x} must be aligned to "
                        f"0x{alignment:016x} bytes")
        return -errno.EINVAL
    base = (base + alignment - 1) & ~(alignment - 1)
    size = (size + alignment - 1) & ~(alignment - 1)
    limit &= ~(alignment - 1)
    if not base:
        fixed = False
    if (size >> PAGE_SHIFT) & ((1 << order_per_bit) - 1):
        return -errno.EINVAL
    end_of_dram = mb.memblock_end_of_DRAM()
    if limit == 0 or limit > end_of_dram:
        limit = end_of_dram
    if base + size > limit:
        m.log.printk(3, f"cma: Size (0x{size:016x}) of region at 0x{base:016x} exceeds limit "
                        f"(0x{limit:016x})")
        return -errno.EINVAL
    if fixed:
        if mb.is_region_reserved(base, size) or not mb.is_region_memory(base, size):
            return -errno.EBUSY
        mb.memblock_reserve(base, size)
    else:
        addr = None
        if limit >= (4 << 30) + size:
            addr = mb.find_in_range(size, alignment, 4 << 30, limit, top_down=False)
        if addr is None:
            addr = mb.find_in_range(size, alignment, base, limit, top_down=True)
        if addr is None:
            return -errno.ENOMEM
        base = addr
        mb.memblock_reserve(base, size)
    cma = cma_init_reserved_mem(m, base, size, order_per_bit, name)
    if isinstance(cma, int):
        mb.memblock_phys_free(base, size)
    return cma


def cma_activate_area(m: Machine, cma: Cma) -> None:
    """``cma_activate_area`` (MM CMA5): bitmaps, zone check, pageblocks retyped CMA and
    freed."""
    mm = m.mm
    for cmr in cma.ranges:
        cmr.bitmap = bytearray(cma.cma_bitmap_maxno(cmr))
    valid = True
    for cmr in cma.ranges:
        zone = mm.page_zone(cmr.base_pfn)
        if not (zone.zone_spans_pfn(cmr.base_pfn + cmr.count - 1)):
            valid = False
    if not valid:
        for cmr in cma.ranges:
            cmr.bitmap = bytearray()
            if not cma.reserve_pages_on_error:
                for pfn in range(cmr.early_pfn, cmr.base_pfn + cmr.count):
                    free_reserved_page(mm, pfn)
        mm.totalcma_pages -= cma.count
        cma.count = cma.available_count = 0
        m.log.printk(3, f"cma: CMA area {cma.name} could not be activated")
        return
    for cmr in cma.ranges:
        if cmr.early_pfn != cmr.base_pfn:
            nbits = cma.cma_bitmap_pages_to_bits(cmr.early_pfn - cmr.base_pfn)
            cmr.bitmap[:nbits] = b"\x01" * nbits
        for pfn in range(cmr.early_pfn, cmr.base_pfn + cmr.count, pageblock_nr_pages):
            init_cma_reserved_pageblock(mm, pfn)
    cma.activated = True
