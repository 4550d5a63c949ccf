"""Physical RAM: the banks and the buffer that holds their bytes.

The buffer is an anonymous ``mmap``: writable, usable through the buffer
protocol, and zero-filled lazily by the host kernel, so an untouched GiB costs
nothing.  Banks sit back to back in address order; ``m.ram`` is the buffer.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import sys
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._fast import MemOps

from .mmzone import PAGE_SHIFT, PAGE_SIZE

__all__ = ["PhysMem", "ZERO_BLOCK", "host_address", "written_runs"]

#: MAP_NORESERVE (Linux's value where the mmap module lacks the name): emulated RAM is
#: committed page by page as it is touched, so a machine of many GiB, still mapped until the
#: garbage collector frees it, does not make the host refuse a fork() for lack of memory.
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)
_RAM_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE

#: Zeros to compare RAM with, a block at a time.
ZERO_BLOCK = bytes(1 << 18)
#: A page of the host (the unit /proc/self/pagemap reports on).
_HOST_PAGE = mmap.PAGESIZE
#: Top byte of a pagemap entry -> 1 when the page is present (bit 63) or swapped (bit 62).
_POPULATED = bytes(1 if b & 0xC0 else 0 for b in range(256))
_POPULATED_RUN = re.compile(rb"\x01+")
#: madvise(MADV_POPULATE_WRITE) (Linux 5.14): map a range's pages for writing in one call.
#: Set to None once the host refuses it.
_POPULATE: list[int | None] = [getattr(mmap, "MADV_POPULATE_WRITE",
                                       23 if sys.platform.startswith("linux") else None)]
#: Writes of at least this many bytes map their pages first (:meth:`PhysMem.prefault`),
#: when the first of them (``_PREFAULT_SAMPLE`` bytes) are not mapped yet.
_PREFAULT_MIN = 16 * _HOST_PAGE
_PREFAULT_SAMPLE = 8 * _HOST_PAGE
#: Ranges up to this size are scanned without asking the pagemap.
_SMALL_RANGE = 4 * _HOST_PAGE
#: This process's /proc/self/pagemap: [pid that opened it, fd or -1 when unreadable].  A
#: forked child inherits the parent's descriptor, which describes the parent: it reopens.
_PAGEMAP = [-1, -1]


def _pagemap_fd() -> int:
    pid = os.getpid()
    if _PAGEMAP[0] != pid:
        if _PAGEMAP[1] >= 0:
            try:
                os.close(_PAGEMAP[1])
            except OSError:
                pass
        try:
            fd = os.open("/proc/self/pagemap", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            fd = -1
        _PAGEMAP[:] = [pid, fd]
    return _PAGEMAP[1]


def host_address(buf: mmap.mmap) -> int | None:
    """The host address of a RAM buffer, or None where it cannot be had (the ctypes view
    is dropped at once: it would pin the mapping)."""
    try:
        view = ctypes.c_char.from_buffer(buf)
    except (TypeError, ValueError, BufferError):
        return None
    addr = ctypes.addressof(view)
    del view
    return addr if addr % _HOST_PAGE == 0 else None


def written_runs(vaddr: int | None, off: int, n: int) -> list[tuple[int, int]]:
    """[model] The parts ``(offset, length)`` of bytes ``[off, off + n)`` of the anonymous
    private mapping at host address ``vaddr`` that may hold something other than zeros: all
    of it, less the host pages never populated.

    A page of such a mapping that is neither present nor swapped out
    (``/proc/self/pagemap``) was never written and reads as zeros, so a scan for non-zero
    bytes can skip it without reading it (which would fault it in).  Where the pagemap
    cannot be read, and for a range of a few pages, the whole range is returned."""
    if n <= 0:
        return []
    if n <= _SMALL_RANGE:           # reading a few pages costs less than asking
        return [(off, n)]
    marks = _populated_marks(vaddr, off, n)
    if marks is None:
        return [(off, n)]
    if 1 not in marks:
        return []
    assert vaddr is not None
    base = (vaddr + off) // _HOST_PAGE * _HOST_PAGE - vaddr     # offset of the first page
    end = off + n
    return [(lo, hi - lo) for lo, hi in
            ((max(off, base + r.start() * _HOST_PAGE), min(end, base + r.end() * _HOST_PAGE))
             for r in _POPULATED_RUN.finditer(marks))]


def _populated_marks(vaddr: int | None, off: int, n: int) -> bytes | None:
    """One byte per host page behind bytes ``[off, off + n)`` of the mapping at ``vaddr``:
    1 when the page is populated (present or swapped), else 0; None when the pagemap cannot
    be read."""
    fd = _pagemap_fd() if vaddr is not None else -1
    if fd < 0 or vaddr is None:
        return None
    first = (vaddr + off) // _HOST_PAGE
    count = (vaddr + off + n - 1) // _HOST_PAGE - first + 1
    try:
        data = os.pread(fd, 8 * count, 8 * first)
    except OSError:
        return None
    if len(data) != 8 * count:
        return None
    return data[7::8].translate(_POPULATED)


class PhysMem:
    """RAM banks ``[(base, size), …]`` over one lazily zeroed buffer."""

    __slots__ = ("banks", "buf", "_bases", "_runs", "_memops", "_base0", "_end0", "_vaddr")

    def __init__(self, banks: list[tuple[int, int]], memops: MemOps) -> None:
        self.banks = sorted(banks)
        total = sum(size for _, size in self.banks)
        try:
            self.buf = mmap.mmap(-1, total, flags=_RAM_FLAGS)
        except (OSError, OverflowError) as exc:
            raise ValueError(f"ram: cannot map {total} bytes of emulated RAM ({exc})") from None
        self._memops = memops
        self._vaddr = host_address(self.buf)        # for /proc/self/pagemap
        # Runs of physically adjacent banks: (base, end, buffer offset).
        runs: list[tuple[int, int, int]] = []
        off = 0
        for base, size in self.banks:
            if runs and runs[-1][1] == base:
                b, _, o = runs[-1]
                runs[-1] = (b, base + size, o)
            else:
                runs.append((base, base + size, off))
            off += size
        self._runs = runs
        self._bases = [r[0] for r in runs]
        self._base0, self._end0 = runs[0][0], runs[0][1]

    def __getstate__(self) -> dict[str, Any]:
        """The fields but the host address, which belongs to this process's mapping."""
        return {name: getattr(self, name) for name in self.__slots__ if name != "_vaddr"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._vaddr = host_address(self.buf)

    @property
    def memops(self) -> MemOps:
        """The memory operations (compiled or pure) the buffer is worked with."""
        return self._memops

    @property
    def size(self) -> int:
        return len(self.buf)

    def offset(self, addr: int, n: int) -> int:
        """Buffer offset of ``[addr, addr + n)``; ValueError unless it is all RAM."""
        if type(addr) is int and type(n) is int and n >= 0 and \
                self._base0 <= addr and addr + n <= self._end0:
            return addr - self._base0  # the first run: no search needed
        if isinstance(addr, bool) or not isinstance(addr, int) or not isinstance(n, int):
            raise ValueError(f"address {addr!r} / length {n!r} must be ints")
        if n < 0:
            raise ValueError(f"negative length {n}")
        k = bisect_right(self._bases, addr) - 1
        if k >= 0:
            base, end, off = self._runs[k]
            if addr + n <= end:
                return off + addr - base
        raise ValueError(f"[{addr:#x}, {addr + n:#x}) is not RAM")

    def is_ram(self, addr: int, n: int = 1) -> bool:
        try:
            self.offset(addr, n)
        except ValueError:
            return False
        return True

    def written_runs(self, off: int, n: int) -> list[tuple[int, int]]:
        """The parts ``(offset, length)`` of buffer bytes ``[off, off + n)`` that may hold
        something other than zeros (:func:`written_runs`: never-written host pages are
        left out)."""
        return written_runs(self._vaddr, off, n)

    def prefault(self, addr: int, n: int) -> None:
        """[model] Have the host map the pages behind RAM ``[addr, addr + n)`` for writing
        in one call (``MADV_POPULATE_WRITE``) instead of one page fault each as they are
        first written: a caller about to write all of them saves the faults' entry and exit.
        RAM reads the same; where the host cannot, nothing happens."""
        advice = _POPULATE[0]
        if n <= 0 or advice is None:
            return
        off = self.offset(addr, n)
        # The advice walks every page it is given, mapped or not (about 30 ns a page, as
        # much as reading the pagemap for it): give it only a range whose first pages are
        # not mapped yet, a fresh machine's, not a warm one's.
        sample = _populated_marks(self._vaddr, off, min(n, _PREFAULT_SAMPLE))
        if sample is not None and 0 not in sample:
            return
        lo = off - off % _HOST_PAGE
        hi = min(len(self.buf), off + n + (-(off + n)) % _HOST_PAGE)
        try:
            self.buf.madvise(advice, lo, hi - lo)
        except OSError:
            _POPULATE[0] = None          # an older kernel: fault page by page from now on

    def walk_marks(self, where: Sequence[int]) -> tuple[int, int, bytearray,
                                                         Sequence[int]] | None:
        """[model] The ``zeros`` argument of the relocation walk
        (:func:`pykern._fast._relocate_py.relocate_walk`) for destinations in ``where``
        (flat ``[lo, hi)`` address pairs): the pagemap descriptor, the host page of the
        buffer's first byte, one unknown mark per 4 KiB of RAM and ``where``; None when
        ``where`` is empty, the pagemap cannot be read or host pages are not 4 KiB."""
        if len(where) < 2 or self._vaddr is None or _HOST_PAGE != 4096:
            return None
        fd = _pagemap_fd()
        if fd < 0:
            return None
        return (fd, self._vaddr // 4096, bytearray(b"\x02") * (len(self.buf) // 4096 + 1),
                where)

    def written_chunks(self, off: int, n: int) -> Iterator[tuple[int, int]]:
        """:meth:`written_runs` cut into pieces ``(offset, length)`` no longer than
        :data:`ZERO_BLOCK`, to compare with it or clear one at a time."""
        for at, k in self.written_runs(off, n):
            end = at + k
            while at < end:
                step = min(end - at, len(ZERO_BLOCK))
                yield at, step
                at += step

    def is_zero(self, addr: int, n: int) -> bool:
        """Whether the ``n`` bytes of RAM at ``addr`` are all zero (never-written host pages
        are not read: :meth:`written_runs`)."""
        buf, equal = self.buf, self._memops.range_equal
        return all(equal(buf, at, ZERO_BLOCK, 0, step)
                   for at, step in self.written_chunks(self.offset(addr, n), n))

    def read(self, addr: int, n: int) -> bytes:
        off = self.offset(addr, n)
        return self.buf[off:off + n]

    def prefault_write(self, addr: int, n: int) -> None:
        """:meth:`prefault` before a write of ``n`` bytes at ``addr`` that is large enough
        (64 KiB or more) for one host call to cost less than the page faults it saves."""
        if n >= _PREFAULT_MIN:
            self.prefault(addr, n)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        off = self.offset(addr, n)
        self.prefault_write(addr, n)
        self.buf[off:off + n] = data

    def clear(self, addr: int, n: int) -> None:
        self._memops.zero_range(self.buf, self.offset(addr, n), n)

    def clear_pages(self, pfn: int, nr: int) -> None:
        """Zero ``nr`` pages from ``pfn`` (``__GFP_ZERO``, init_on_alloc/free)."""
        self.clear(pfn << PAGE_SHIFT, nr * PAGE_SIZE)

    def copy(self, dst: int, src: int, n: int) -> None:
        """memmove inside RAM."""
        self._memops.copy_range(self.buf, self.offset(dst, n), self.buf,
                                self.offset(src, n), n)
