"""Physical RAM: the banks and the buffer that holds their bytes.

The buffer is an anonymous ``mmap``: writable, usable through the buffer
protocol, and zero-filled lazily by the host kernel, so an untouched GiB costs
nothing.  Banks sit back to back in address order; ``m.ram`` is the buffer.
"""

from __future__ import annotations

import mmap
import sys
from bisect import bisect_right
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._fast import MemOps

from .mmzone import PAGE_SHIFT, PAGE_SIZE

__all__ = ["PhysMem"]

#: MAP_NORESERVE (Linux's value where the mmap module lacks the name): emulated RAM is
#: committed page by page as it is touched, so a machine of many GiB, still mapped until the
#: garbage collector frees it, does not make the host refuse a fork() for lack of memory.
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)
_RAM_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE


class PhysMem:
    """RAM banks ``[(base, size), …]`` over one lazily zeroed buffer."""

    __slots__ = ("banks", "buf", "_bases", "_runs", "_memops", "_base0", "_end0")

    def __init__(self, banks: list[tuple[int, int]], memops: MemOps) -> None:
        self.banks = sorted(banks)
        total = sum(size for _, size in self.banks)
        try:
            self.buf = mmap.mmap(-1, total, flags=_RAM_FLAGS)
        except (OSError, OverflowError) as exc:
            raise ValueError(f"ram: cannot map {total} bytes of emulated RAM ({exc})") from None
        self._memops = memops
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

    def read(self, addr: int, n: int) -> bytes:
        off = self.offset(addr, n)
        return self.buf[off:off + n]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        off = self.offset(addr, n)
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
