"""Reverse mapping of task pages (``mm/rmap.c``), as two compact arrays.

pykern's anonymous pages are mapped exactly once (no fork), so each page
records its one owner: the task id (0 = none) and the virtual page number.

The arrays are made, all zero, the first time anything reads them: a boot whose
kernel never maps a task page (most of the fuzzer's) does not pay for 12 bytes
per memmap slot it never looks at.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

__all__ = ["Rmap"]


class Rmap:
    """``owner[i]`` is the task id mapping pfn ``base + i``; ``vpn[i]`` its page."""

    __slots__ = ("base_pfn", "nr", "owner", "vpn")

    owner: array[int]
    vpn: array[int]

    def __init__(self, base_pfn: int, nr: int) -> None:
        self.base_pfn = base_pfn
        self.nr = nr

    if not TYPE_CHECKING:      # hidden from mypy, which would type every unknown name by it
        def __getattr__(self, name):
            # Reached only while a slot is unset: ``owner`` and ``vpn`` before first use.
            if name != "owner" and name != "vpn":
                raise AttributeError(f"'Rmap' object has no attribute {name!r}")
            nr = self.nr
            self.owner = array("i", (0,)) * nr
            self.vpn = array("q", (0,)) * nr
            return self.owner if name == "owner" else self.vpn

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
