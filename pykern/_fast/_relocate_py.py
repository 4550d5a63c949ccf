"""Pure-Python twin of ``_relocate_c``: the kexec relocation walk (rule K16.3).

``relocate_walk`` reads 64-bit little-endian entry words from RAM and copies
each SOURCE page to the destination cursor, exactly as ``relocate_kernel``
does on arm64 and x86_64.  RAM is described by ``runs``: a flat sequence of
``(phys_base, phys_end, buffer_offset)`` triples, ascending.  The walk stops
after ``max_sources`` SOURCE entries so a caller can apply device writes in
between, and resumes from the returned state.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["relocate_walk", "WALK_DONE", "WALK_MORE", "WALK_BAD_WORD", "WALK_BAD_SOURCE",
           "WALK_BAD_DEST", "WALK_LOOP"]

IND_DESTINATION = 0x1
IND_INDIRECTION = 0x2
IND_DONE = 0x4
IND_SOURCE = 0x8
_U64 = (1 << 64) - 1
PAGE_MASK = ~0xFFF & _U64

WALK_DONE = 0         #: a DONE word ended the walk
WALK_MORE = 1         #: max_sources reached; call again with the returned state
WALK_BAD_WORD = 2     #: the next entry word itself is not in RAM
WALK_BAD_SOURCE = 3   #: a SOURCE page is not (wholly) RAM
WALK_BAD_DEST = 4     #: the destination page is not (wholly) RAM
WALK_LOOP = 5         #: more than max_words words read in this call: a looping list

_WORD = struct.Struct("<Q")

#: Marks of the ``zeros`` argument, one per 4 KiB of ``ram``.
MARK_ZERO = 0          #: a host page never written: it reads as zeros
MARK_WRITTEN = 1       #: a host page that may hold anything
MARK_UNKNOWN = 2       #: not asked yet
_WINDOW = 64           #: pagemap entries read at a time


Zeros = tuple[int, int, bytearray, Sequence[int]]


def _mark(zeros: Zeros, page: int) -> int:
    fd, first, marks, _ = zeros
    if page >= len(marks):
        return MARK_WRITTEN
    if marks[page] == MARK_UNKNOWN:
        lo = page - page % _WINDOW
        hi = min(lo + _WINDOW, len(marks))
        try:
            data = os.pread(fd, 8 * (hi - lo), 8 * (first + lo))
        except OSError:
            data = b""
        whole = len(data) == 8 * (hi - lo)
        for k in range(lo, hi):
            if marks[k] == MARK_UNKNOWN:
                present_or_swapped = not whole or data[8 * (k - lo) + 7] & 0xC0
                marks[k] = MARK_WRITTEN if present_or_swapped else MARK_ZERO
    return marks[page]


def _in(where: Sequence[int], addr: int) -> bool:
    return any(where[k] <= addr < where[k + 1] for k in range(0, len(where) - 1, 2))


def _unwritten(zeros: Zeros, off: int) -> bool:
    return (_mark(zeros, off >> 12) == MARK_ZERO and
            _mark(zeros, (off + 4095) >> 12) == MARK_ZERO)


def _offset(runs: Sequence[int], addr: int, n: int) -> int:
    for k in range(0, len(runs), 3):
        base, end, off = runs[k], runs[k + 1], runs[k + 2]
        if base <= addr and addr + n <= end:
            return off + addr - base
    return -1


def relocate_walk(ram: Any, runs: Sequence[int], head: int, loc: int, dest: int,
                  max_sources: int, max_words: int = -1,
                  zeros: Zeros | None = None,
                  ) -> tuple[int, int, int, int, int]:
    """Walk from ``loc`` (-1: the head word) with destination cursor ``dest``.

    Returns ``(status, loc, dest, sources_done, word)``: where to resume, how
    many SOURCE pages were copied, and the word being processed when the walk
    stopped (the offending word for the WALK_BAD_* statuses).  ``max_words``
    (negative: no limit) bounds the words read in this call; a damaged list
    that links back into itself would otherwise never end (WALK_LOOP).

    [model] ``zeros``, when given, is ``(pagemap_fd, first, marks, where)``: ``ram``
    is an anonymous mapping whose first byte is host page ``first`` (4 KiB host
    pages), ``/proc/self/pagemap`` is open on ``pagemap_fd``, ``marks`` holds one
    ``MARK_*`` byte per 4 KiB of ``ram``, ``MARK_UNKNOWN`` where nothing is known,
    and ``where`` is a flat sequence of ``[lo, hi)`` destination address pairs.
    A SOURCE whose destination cursor is inside ``where`` and whose page and
    destination both lie in host pages never written (neither present nor
    swapped: both read as zeros) is then not copied: the
    destination already holds what the copy would write, and the host is spared
    mapping both pages.  RAM ends the same; ``marks`` is updated as pages are
    asked about and written, so it is good for one call only (a device writing
    RAM between calls would make it stale).
    """
    done = 0
    words = 0
    while True:
        if words == max_words:
            return WALK_LOOP, loc, dest, done, 0
        words += 1
        if loc == -2:
            return WALK_DONE, loc, dest, done, 0
        if loc == -1:
            word = head
        else:
            off = _offset(runs, loc, 8)
            if off < 0:
                return WALK_BAD_WORD, loc, dest, done, 0
            word = _WORD.unpack_from(ram, off)[0]
        if word & IND_DESTINATION:
            dest = word & PAGE_MASK
        elif word & IND_INDIRECTION:
            loc = word & PAGE_MASK
            continue
        elif word & IND_DONE:
            return WALK_DONE, loc, dest, done, word
        elif word & IND_SOURCE:
            if done >= max_sources:
                return WALK_MORE, loc, dest, done, word
            src = _offset(runs, word & PAGE_MASK, 4096)
            if src < 0:
                return WALK_BAD_SOURCE, loc, dest, done, word
            dst = _offset(runs, dest, 4096)
            if dst < 0:
                return WALK_BAD_DEST, loc, dest, done, word
            if zeros is None or not (_in(zeros[3], dest) and _unwritten(zeros, dst)
                                     and _unwritten(zeros, src)):
                ram[dst:dst + 4096] = ram[src:src + 4096]
                if zeros is not None:
                    for page in (dst >> 12, (dst + 4095) >> 12):
                        if page < len(zeros[2]):
                            zeros[2][page] = MARK_WRITTEN
            dest = (dest + 4096) & _U64
            done += 1
        # a word with none of the bits is skipped, like any non-link word
        if loc == -1:
            return WALK_DONE, -2, dest, done, word
        loc = (loc + 8) & _U64
