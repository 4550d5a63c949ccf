"""Pure-Python twin of ``_relocate_c``: the kexec relocation walk (rule K16.3).

``relocate_walk`` reads 64-bit little-endian entry words from RAM and copies
each SOURCE page to the destination cursor, exactly as ``relocate_kernel``
does on arm64 and x86_64.  RAM is described by ``runs``: a flat sequence of
``(phys_base, phys_end, buffer_offset)`` triples, ascending.  The walk stops
after ``max_sources`` SOURCE entries so a caller can apply device writes in
between, and resumes from the returned state.
"""

from __future__ import annotations

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


def _offset(runs: Sequence[int], addr: int, n: int) -> int:
    for k in range(0, len(runs), 3):
        base, end, off = runs[k], runs[k + 1], runs[k + 2]
        if base <= addr and addr + n <= end:
            return off + addr - base
    return -1


def relocate_walk(ram: Any, runs: Sequence[int], head: int, loc: int, dest: int,
                  max_sources: int, max_words: int = -1) -> tuple[int, int, int, int, int]:
    """Walk from ``loc`` (-1: the head word) with destination cursor ``dest``.

    Returns ``(status, loc, dest, sources_done, word)``: where to resume, how
    many SOURCE pages were copied, and the word being processed when the walk
    stopped (the offending word for the WALK_BAD_* statuses).  ``max_words``
    (negative: no limit) bounds the words read in this call; a damaged list
    that links back into itself would otherwise never end (WALK_LOOP).
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
            ram[dst:dst + 4096] = ram[src:src + 4096]
            dest = (dest + 4096) & _U64
            done += 1
        # a word with none of the bits is skipped, like any non-link word
        if loc == -1:
            return WALK_DONE, -2, dest, done, word
        loc = (loc + 8) & _U64
