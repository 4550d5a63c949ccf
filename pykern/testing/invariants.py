"""The K19 invariants as plain functions, for tests, the state machine and the fuzz
campaign.  Each raises :class:`InvariantViolation` naming the rule it found broken."""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from ..kernel.kexec.core import (
    _KINDS, KImage, _destination_index, _entry_words, kimage_is_destination_range,
)
from ..kernel.kexec.uapi import IND_DESTINATION, IND_INDIRECTION, IND_SOURCE
from ..errors import InvariantViolation

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["InvariantViolation", "check_kimage", "kimage_held_pages"]

PAGE = 4096
PAGE_MASK = ~(PAGE - 1)
#: Flag bits of an entry word -> whether entries() calls it SOURCE or INDIRECTION.
_HELD = tuple(kind in ("SOURCE", "INDIRECTION") for kind in _KINDS)


def _require(ok: bool, rule: str, what: str) -> None:
    if not ok:
        raise InvariantViolation(rule, what)


def check_kimage(m: Machine, im: KImage) -> None:
    """Check the K19.1–K19.6 invariants on one loaded image (normal or crash)."""
    segs = im.segments
    _require(1 <= len(segs) <= 16, "K19.1", f"{len(segs)} segments")
    for i, s in enumerate(segs):
        _require(s.mem % PAGE == 0 and (s.mem + s.memsz) % PAGE == 0, "K19.1",
                 f"segment {i} at {s.mem:#x}+{s.memsz:#x} is not page aligned")
        _require(s.bufsz <= s.memsz, "K19.1", f"segment {i}: bufsz > memsz")
        for j, t in enumerate(segs[:i]):
            _require(s.mem + s.memsz <= t.mem or t.mem + t.memsz <= s.mem, "K19.1",
                     f"segments {j} and {i} overlap")
    areas = [(a.base_pfn * PAGE, (a.base_pfn + a.count) * PAGE) for a in m.cma_areas]

    def outside(addr: int, size: int, what: str) -> None:
        _require(not kimage_is_destination_range(im, addr, addr + size - 1), "K19.3",
                 f"{what} page {addr:#x} lies in a destination")
        _require(not any(lo < addr + size and addr < hi for lo, hi in areas), "K19.4",
                 f"{what} page {addr:#x} lies in a CMA area")

    if im.type == "crash":
        _require(im.entries() == [("DONE", 0)], "K17.1", "a crash image with entries")
        c0, c1 = m.crashk_res or (0, 0)
        _require(all(c0 <= s.mem and s.mem + s.memsz <= c1 for s in segs), "K8.6",
                 "a crash segment outside the crash reservation")
        return
    assert im._m is not None
    firsts, reach = _destination_index(im)
    dest, sources, dests, inds = 0, 0, [], 0
    # The words of im.entries(), kinds by the same flag precedence, without the tuples.
    for word in _entry_words(im._m, im):
        addr = word & PAGE_MASK
        if word & IND_DESTINATION:
            dest = addr
            dests.append(addr)
        elif word & IND_INDIRECTION:
            inds += 1
            outside(addr, PAGE, "indirection")
        elif word & IND_SOURCE:
            sources += 1
            if addr != dest:
                # kimage_is_destination_range(im, addr, addr + PAGE - 1), by bisection
                k = bisect_right(firsts, addr + PAGE - 1)
                if k and addr <= reach[k - 1]:
                    _require(False, "K19.2", f"source {addr:#x} for {dest:#x} lies in "
                                             "another destination")
            for lo, hi in areas:
                if lo <= addr < hi:
                    _require(False, "K19.4", f"source {addr:#x} lies in a CMA area")
            dest += PAGE
    for addr, order in im.control_pages:
        outside(addr, PAGE << order, "control")
    walk = [s for s in segs if not s.cma]
    _require(sources == sum(s.memsz // PAGE for s in walk), "K19.5",
             f"{sources} SOURCE entries for {sum(s.memsz // PAGE for s in walk)} pages")
    _require(dests == [s.mem for s in walk], "K19.5", "DESTINATION entries out of order")
    _require(inds == -(-(sources + len(dests)) // 511), "K19.5",
             f"{inds} indirection pages for {sources + len(dests)} entries")
    if not walk:
        _require(im.head == 0x4, "K19.6", f"head {im.head:#x} with every segment in CMA")


def kimage_held_pages(im: KImage, text_offset: int = 0) -> int:
    """The pages an image holds, buddy pages plus CMA blocks (K19.7).  ``text_offset`` is
    the arm64 kernel's, whose CMA block is that much larger than the segment (K14.1)."""
    assert im._m is not None
    held = sum([_HELD[word & 0xF] for word in _entry_words(im._m, im)])
    held += len(im.dest_pages) + len(im.unusable_pages)
    held += sum(1 << o for _, o in im.control_pages)
    held += sum(s.memsz // PAGE for s in im.segments if s.cma)
    if im.segments and im.segments[0].cma:
        held += text_offset // PAGE
    return held
