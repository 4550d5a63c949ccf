"""The kernel log: ``printk`` and what ``dmesg`` reads back.

Log levels are the kernel's: 0 KERN_EMERG .. 7 KERN_DEBUG; 4 (KERN_WARNING)
is the default level of a message printed without one.
"""

from __future__ import annotations

__all__ = ["KERN_EMERG", "KERN_ALERT", "KERN_CRIT", "KERN_ERR", "KERN_WARNING",
           "KERN_NOTICE", "KERN_INFO", "KERN_DEBUG", "KernelLog"]

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR = 0, 1, 2, 3
KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = 4, 5, 6, 7


class KernelLog:
    """The ring buffer of one machine (never wraps; every line is kept)."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: list[tuple[int, str]] = []

    def printk(self, level: int, text: str) -> None:
        """Append one line at ``level`` (one ``m.dmesg()`` entry per call)."""
        self._lines.append((level, text))

    # pr_info, pr_warn, pr_err: printk at their level (the append is printk's)
    def info(self, text: str) -> None:
        self._lines.append((KERN_INFO, text))

    def warn(self, text: str) -> None:
        self._lines.append((KERN_WARNING, text))

    def err(self, text: str) -> None:
        self._lines.append((KERN_ERR, text))

    def lines(self) -> list[tuple[int, str]]:
        """A copy of every line so far, oldest first."""
        return list(self._lines)

    def __len__(self) -> int:
        return len(self._lines)
