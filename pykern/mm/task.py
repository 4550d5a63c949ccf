"""User tasks with anonymous memory (``mm/mmap.c``, ``mm/memory.c``, ``mm/gup.c``).

A task maps anonymous pages (``GFP_HIGHUSER_MOVABLE``, zeroed, on the LRU),
reads and writes them through its page table, and pins them the way
``pin_user_pages`` does (MM M7, M8).  Page tables are one
``array('q')`` of pfns per mapping.
"""

from __future__ import annotations

import errno
from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING

from . import gfp as G
from .gfp import __GFP_NOWARN
from .migrate import folio_isolate_lru, migrate_pages, putback_movable_pages
from .mmzone import MIGRATE_CMA, MIGRATE_ISOLATE, PAGE_SHIFT, PAGE_SIZE, ZONE_MOVABLE
from .page import PG_anon, PG_lru, PG_valid
from .page_alloc import get_pfnblock_migratetype, page_zone

if TYPE_CHECKING:
    from ..machine import Machine
    from .page_alloc import PageAlloc

_GFP_ZERO = G.__GFP_ZERO  # class bodies would mangle the dunder name
_GFP_MOVABLE = G.__GFP_MOVABLE  # class bodies would mangle the dunder name

__all__ = ["Task", "GUP_PIN_COUNTING_BIAS", "TASK_UNMAPPED_BASE", "folio_is_longterm_pinnable",
           "check_and_migrate_movable_pages"]

GUP_PIN_COUNTING_BIAS = 1024
TASK_UNMAPPED_BASE = 0x7F00_0000_0000


def folio_is_longterm_pinnable(mm: PageAlloc, pfn: int) -> bool:
    """``folio_is_longterm_pinnable`` (MM M7.1): not in a CMA or isolated pageblock, nor
    in ZONE_MOVABLE."""
    mt = get_pfnblock_migratetype(mm, pfn)
    return not (mt in (MIGRATE_CMA, MIGRATE_ISOLATE) or page_zone(mm, pfn).idx
                == ZONE_MOVABLE)


def check_and_migrate_movable_pages(m: Machine, pfns: list[int]) -> None:
    """``check_and_migrate_movable_pages`` (``mm/gup.c``, MM M7.2): migrate the pages a
    long-term pin may not hold (CMA, ZONE_MOVABLE) with GFP_USER | __GFP_NOWARN and no
    __GFP_MOVABLE (PF_MEMALLOC_PIN).

    [model] The kernel returns -EAGAIN for the caller to pin again; pykern raises
    OSError(ENOMEM) when a page cannot move and returns otherwise.
    """
    mm = m.kernel.mm
    movable = [p for p in pfns if not folio_is_longterm_pinnable(mm, p)]
    if not movable:
        return
    pages: list[int] = []
    for pfn in movable:
        if folio_isolate_lru(m, pfn):
            pages.insert(0, pfn)
    mm.memalloc_pin = True
    try:
        ret = migrate_pages(m, pages, G.GFP_USER | __GFP_NOWARN)
    finally:
        mm.memalloc_pin = False
    if ret != 0:
        putback_movable_pages(m, pages)
        raise OSError(errno.ENOMEM, "pin(longterm): pages could not leave CMA/ZONE_MOVABLE")


class Task:
    """One user process: ``m.new_task()``."""

    def __init__(self, m: Machine, pid: int) -> None:
        self._m = m
        self.pid = pid
        self._starts: list[int] = []          # first vpn of each mapping, sorted
        self._maps: dict[int, array[int]] = {}  # first vpn -> pfn per page
        self._next_vpn = TASK_UNMAPPED_BASE >> PAGE_SHIFT
        self.alive = True
        #: (first vpn, page table) of the mapping ``remap`` last updated: migration moves a
        #: mapping's pages one after another, so the next one is usually in it too.
        self._remap_hint: tuple[int, array[int]] = (0, array("q"))

    # -------------------------------------------------------------- mapping
    def _check_alive(self) -> None:
        if not self.alive:
            raise ValueError(f"task {self.pid} has exited")

    def mmap_anon(self, npages: int) -> int:
        """Map ``npages`` anonymous pages, fault them all in, return the address.

        Each page is one ``do_anonymous_page()`` fault: ``alloc_anon_folio()`` falls back to
        ``vma_alloc_zeroed_movable_folio()``, which asks for ``GFP_HIGHUSER_MOVABLE |
        __GFP_ZERO`` and nothing else (no ``__GFP_NOWARN``), so a failed fault prints the
        allocator's page allocation failure warning, and a fault-injected one its
        ``FAULT_INJECTION`` report.

        [model] The kernel would turn the failure into VM_FAULT_OOM and the OOM killer;
        pykern has neither, so the whole call fails instead.

        :raises OSError: ENOMEM when memory runs out (nothing stays mapped).
        """
        self._check_alive()
        if isinstance(npages, bool) or not isinstance(npages, int) or npages <= 0:
            raise ValueError(f"mmap_anon: npages {npages!r} must be a positive int")
        m = self._m
        mm = m.kernel.mm
        gfp = G.GFP_HIGHUSER_MOVABLE | _GFP_ZERO
        if mm.memalloc_pin:
            gfp &= ~_GFP_MOVABLE
        pfns = array("q")
        for _ in range(npages):
            page = mm.alloc_pages(gfp, 0)
            if page is None:
                for pfn in pfns:
                    mm.free_pages(pfn, 0)
                raise OSError(errno.ENOMEM, f"mmap_anon({npages}): out of memory")
            pfns.append(page.pfn)
        start = self._next_vpn
        self._next_vpn += npages + 1  # one guard page between mappings
        mem = mm.mem_map
        for k, pfn in enumerate(pfns):
            i = pfn - mem.base_pfn
            mem.flags[i] |= PG_lru | PG_anon
            mem.mapcount[i] = 1
            m.kernel.rmap.set(pfn, self.pid, start + k)
            page_zone(mm, pfn).nr_inactive_anon += 1
        self._starts.insert(bisect_right(self._starts, start), start)
        self._maps[start] = pfns
        return start << PAGE_SHIFT

    def _lookup(self, vpn: int) -> tuple[array[int], int]:
        k = bisect_right(self._starts, vpn) - 1
        if k >= 0:
            start = self._starts[k]
            table = self._maps[start]
            if vpn - start < len(table):
                return table, vpn - start
        raise ValueError(f"task {self.pid}: address {vpn << PAGE_SHIFT:#x} is not mapped")

    def remap(self, vpn: int, pfn: int) -> None:
        """Point ``vpn`` at ``pfn`` (migration's page-table update)."""
        start, table = self._remap_hint
        k = vpn - start
        if not 0 <= k < len(table):
            table, k = self._lookup(vpn)
            self._remap_hint = (vpn - k, table)
        table[k] = pfn

    def pfn_of(self, va: int) -> int:
        """The pfn behind ``va`` (what /proc/<pid>/pagemap reports)."""
        self._check_alive()
        table, k = self._lookup(va >> PAGE_SHIFT)
        return table[k]

    def _chunks(self, va: int, n: int) -> list[tuple[int, int, int]]:
        """(physical address, offset in data, length) pieces of [va, va + n)."""
        if not isinstance(va, int) or not isinstance(n, int) or va < 0 or n < 0:
            raise ValueError(f"task {self.pid}: bad range {va!r}+{n!r}")
        out, done = [], 0
        while done < n:
            addr = va + done
            table, k = self._lookup(addr >> PAGE_SHIFT)
            off = addr & (PAGE_SIZE - 1)
            length = min(PAGE_SIZE - off, n - done)
            out.append(((table[k] << PAGE_SHIFT) + off, done, length))
            done += length
        return out

    def write(self, va: int, data: bytes) -> None:
        """Store ``data`` at ``va`` (all of it must be mapped)."""
        self._check_alive()
        view = memoryview(bytes(data))
        chunks = self._chunks(va, len(view))
        for phys, off, length in chunks:
            self._m.physmem.write(phys, view[off:off + length])

    def read(self, va: int, n: int) -> bytes:
        """``n`` bytes from ``va``."""
        self._check_alive()
        return b"".join(self._m.physmem.read(phys, length) for phys, _, length in
                        self._chunks(va, n))

    # ----------------------------------------------------------------- pins
    def _range_pfns(self, va: int, npages: int) -> list[int]:
        if isinstance(npages, bool) or not isinstance(npages, int) or npages <= 0:
            raise ValueError(f"pin: npages {npages!r} must be a positive int")
        if va & (PAGE_SIZE - 1):
            raise ValueError(f"pin: address {va:#x} is not page aligned")
        vpn = va >> PAGE_SHIFT
        out = []
        for k in range(npages):
            table, j = self._lookup(vpn + k)
            out.append(table[j])
        return out

    def pin(self, va: int, npages: int, longterm: bool = False) -> None:
        """``pin_user_pages``: FOLL_PIN, with FOLL_LONGTERM when ``longterm``.

        A long-term pin first migrates pages out of CMA and ZONE_MOVABLE
        (GFP_USER | __GFP_NOWARN); if that fails nothing is pinned and
        OSError(ENOMEM) is raised (MM M7.2).
        """
        self._check_alive()
        pfns = self._range_pfns(va, npages)
        if longterm:
            check_and_migrate_movable_pages(self._m, pfns)
            pfns = self._range_pfns(va, npages)
            mm = self._m.kernel.mm
            if not all(folio_is_longterm_pinnable(mm, p) for p in pfns):
                raise OSError(errno.ENOMEM, "pin(longterm): a page is still in CMA")
        mem = self._m.kernel.mm.mem_map
        for pfn in pfns:
            i = pfn - mem.base_pfn
            mem.refcount[i] += GUP_PIN_COUNTING_BIAS
            mem.pincount[i] += 1


    def unpin(self, va: int, npages: int) -> None:
        """``unpin_user_pages``: drop one pin of either kind from each page."""
        self._check_alive()
        pfns = self._range_pfns(va, npages)
        mem = self._m.kernel.mm.mem_map
        for pfn in pfns:
            if mem.pincount[pfn - mem.base_pfn] <= 0:
                raise ValueError(f"unpin: task {self.pid}: page at pfn {pfn:#x} is not pinned")
        for pfn in pfns:
            i = pfn - mem.base_pfn
            mem.refcount[i] -= GUP_PIN_COUNTING_BIAS
            mem.pincount[i] -= 1

    # ----------------------------------------------------------------- exit
    def exit(self) -> None:
        """Unmap and free everything (pins are dropped with the process)."""
        if not self.alive:
            return
        m = self._m
        mm = m.kernel.mm
        mem = mm.mem_map
        for start in self._starts:
            for pfn in self._maps[start]:
                i = pfn - mem.base_pfn
                mem.refcount[i] -= GUP_PIN_COUNTING_BIAS * mem.pincount[i]
                mem.pincount[i] = 0
                mem.flags[i] &= PG_valid
                mem.mapcount[i] = 0
                m.kernel.rmap.clear(pfn)
                page_zone(mm, pfn).nr_inactive_anon -= 1
                mm.free_pages(pfn, 0)
        self._starts.clear()
        self._maps.clear()
        self._remap_hint = (0, array("q"))
        self.alive = False
        m.kernel.tasks.pop(self.pid, None)

    def mappings(self) -> list[tuple[int, int]]:
        """(address, npages) of every mapping, ascending."""
        return [(s << PAGE_SHIFT, len(self._maps[s])) for s in self._starts]

    def __repr__(self) -> str:
        pages = sum(len(t) for t in self._maps.values())
        return f"<Task pid={self.pid} pages={pages}>"
