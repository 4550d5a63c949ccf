"""The boot-time memory map (``mm/memblock.c``): memory and reserved regions.

Regions are kept sorted and merged: adjacent or overlapping reservations
become one region, as ``memblock_reserve`` merges them (MM T6.3).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["Memblock", "merge_add", "subtract"]

Range = tuple[int, int]  # [base, end)


def merge_add(regions: list[Range], base: int, end: int) -> None:
    """Insert ``[base, end)`` into a sorted, merged list, merging neighbours."""
    if end <= base:
        return
    out: list[Range] = []
    placed = False
    for b, e in regions:
        if e < base:
            out.append((b, e))
        elif end < b:
            if not placed:
                out.append((base, end))
                placed = True
            out.append((b, e))
        else:
            base, end = min(base, b), max(end, e)
    if not placed:
        out.append((base, end))
    regions[:] = out


def subtract(regions: list[Range], base: int, end: int) -> list[Range]:
    """``regions`` minus ``[base, end)``, still sorted."""
    out: list[Range] = []
    for b, e in regions:
        if e <= base or b >= end:
            out.append((b, e))
            continue
        if b < base:
            out.append((b, base))
        if e > end:
            out.append((end, e))
    return out


class Memblock:
    """``memblock.memory`` and ``memblock.reserved`` of one boot."""

    __slots__ = ("memory", "reserved")

    def __init__(self) -> None:
        self.memory: list[Range] = []
        self.reserved: list[Range] = []

    def memblock_add(self, base: int, size: int) -> None:
        merge_add(self.memory, base, base + size)

    def memblock_remove(self, base: int, size: int) -> None:
        self.memory = subtract(self.memory, base, base + size)
        self.reserved = subtract(self.reserved, base, base + size)

    def memblock_reserve(self, base: int, size: int) -> None:
        merge_add(self.reserved, base, base + size)

    def memblock_phys_free(self, base: int, size: int) -> None:
        """Give a reservation back (``memblock_phys_free``)."""
        self.reserved = subtract(self.reserved, base, base + size)

    def memblock_start_of_DRAM(self) -> int:
        return self.memory[0][0]

    def memblock_end_of_DRAM(self) -> int:
        return self.memory[-1][1]

    def is_region_memory(self, base: int, size: int) -> bool:
        """The whole range is memory."""
        return any(b <= base and base + size <= e for b, e in self.memory)

    def is_region_reserved(self, base: int, size: int) -> bool:
        """Some byte of the range is reserved (``memblock_is_region_reserved``)."""
        end = base + size
        return any(b < end and base < e for b, e in self.reserved)

    def for_each_free_mem_range(self) -> Iterator[Range]:
        """Memory minus reservations, ascending."""
        for b, e in self.memory:
            pieces = [(b, e)]
            for rb, re_ in self.reserved:
                if rb >= e:
                    break
                if re_ > b:
                    pieces = subtract(pieces, rb, re_)
            yield from pieces

    def find_in_range(self, size: int, align: int, start: int, end: int,
                      top_down: bool = True) -> int | None:
        """``memblock_find_in_range``: an aligned free range inside [start, end).

        Top-down returns the highest fit, bottom-up the lowest.
        """
        free = [(max(b, start), min(e, end)) for b, e in self.for_each_free_mem_range()
                if min(e, end) > max(b, start)]
        if top_down:
            for b, e in reversed(free):
                cand = (e - size) & ~(align - 1)
                if e - size >= 0 and cand >= b:
                    return cand
        else:
            for b, e in free:
                cand = (b + align - 1) & ~(align - 1)
                if cand + size <= e:
                    return cand
        return None
