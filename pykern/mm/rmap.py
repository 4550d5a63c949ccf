"""Reverse mapping of task pages (``mm/rmap.c``), as two compact arrays.

pykern's anonymous pages are mapped exactly once (no fork), so each page
records its one owner: the task id (0 = none) and the virtual page number.
"""

from __future__ import annotations

from array import array

__all__ = ["Rmap"]


class Rmap:
    """``owner[i]`` is the task id mapping pfn ``base + i``; ``vpn[i]`` its page."""

    __slots__ = ("base_pfn", "owner", "vpn")

    def __init__(self, base_pfn: int, nr: int) -> None:
        self.base_pfn = base_pfn
        self.owner = array("i", (0,)) * nr
        self.vpn = array("q", (0,)) * nr

    def set(self, pfn: int, task_id: int, vpn: int) -> None:
        i = pfn - self.base_pfn
        self.owner[i] = task_id
        self.vpn[i] = vpn

    def clear(self, pfn: int) -> None:
        i = pfn - self.base_pfn
        self.owner[i] = 0
        self.vpn[i] = 0

    def get(self, pfn: int) -> tuple[int, int]:
        i = pfn - self.base_pfn
        return self.owner[i], self.vpn[i]
