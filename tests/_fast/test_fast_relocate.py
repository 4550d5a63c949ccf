"""The relocation walk's twins give identical RAM and results (K16.3)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykern import _fast
from pykern._fast import _memops_py as memops_py
from pykern.mm.memory import PhysMem

IMPLS = [pytest.param(_fast.relocate_py, id="py")]
if _fast.relocate_c is not None:
    IMPLS.append(pytest.param(_fast.relocate_c, id="c"))

BASE = 0x4000_0000
NPAGES = 64


def _runs() -> list[int]:
    # two runs with a hole between them, buffer offsets back to back
    return [BASE, BASE + 32 * 4096, 0, BASE + 40 * 4096, BASE + 72 * 4096, 32 * 4096]


def _phys(page: int) -> int:
    return BASE + page * 4096 if page < 32 else BASE + (page + 8) * 4096


def _build(words: list[int], ind_pages: list[int], ram: bytearray) -> int:
    """Store ``words`` across the given indirection pages (511 + link per page)."""
    head = 0
    loc: int | None = None
    pos = 0
    for k, page in enumerate(ind_pages):
        chunk = words[pos:pos + 511]
        pos += len(chunk)
        off = page * 4096 if page < 32 else (page * 4096)
        link = _phys(page) | 0x2
        if loc is None:
            head = link
        else:
            struct.pack_into("<Q", ram, loc, link)
        for j, w in enumerate(chunk):
            struct.pack_into("<Q", ram, off + 8 * j, w)
        loc = off + 8 * len(chunk)
        if pos >= len(words):
            struct.pack_into("<Q", ram, loc, 0x4)
            break
    return head


def _walk(mod: object, ram: bytearray, head: int, chunk: int) -> list[tuple[int, ...]]:
    walk = getattr(mod, "relocate_walk")
    loc, dest, out = -1, 0, []
    for _ in range(10_000):
        res = walk(ram, _runs(), head, loc, dest, chunk)
        out.append(res)
        status, loc, dest = res[0], res[1], res[2]
        if status != 1:
            break
    return out


@st.composite
def _lists(draw: st.DrawFn) -> tuple[bytes, list[int], list[int], int]:
    seed = draw(st.integers(0, 2**32 - 1))
    ind = draw(st.lists(st.integers(0, NPAGES - 1), min_size=1, max_size=2, unique=True))
    n = draw(st.integers(0, 30))
    words = []
    for _ in range(n):
        kind = draw(st.sampled_from(["dest", "src", "src", "src", "junk", "bad"]))
        page = draw(st.integers(0, NPAGES - 1))
        if kind == "dest":
            words.append(_phys(page) | 0x1)
        elif kind == "src":
            words.append(_phys(page) | 0x8)
        elif kind == "junk":
            words.append(draw(st.integers(0, 2**64 - 1)) & ~0xF)
        else:
            words.append((BASE + 33 * 4096) | draw(st.sampled_from([0x1, 0x8])))
    chunk = draw(st.integers(1, 8))
    return random.Random(seed).randbytes(NPAGES * 4096), ind, words, chunk


@settings(max_examples=150, deadline=None)
@given(_lists())
def test_twins_identical_ram_and_results(case: tuple[bytes, list[int], list[int], int]) -> None:
    """K16.3: both walks leave byte-identical RAM and report the same states."""
    data, ind, words, chunk = case
    results = []
    for impl in [p.values[0] for p in IMPLS]:
        ram = bytearray(data)
        head = _build(words, ind, ram)
        results.append((_walk(impl, ram, head, chunk), bytes(ram)))
    assert all(r == results[0] for r in results)


@pytest.mark.parametrize("impl", IMPLS)
def test_walk_copies_sources_in_order(impl: object) -> None:
    """K16.3: DESTINATION sets the cursor, each SOURCE copies a page and advances it."""
    ram = bytearray(64 * 4096)
    for page in range(64):
        ram[page * 4096:(page + 1) * 4096] = bytes([page]) * 4096
    words = [_phys(10) | 0x1, _phys(3) | 0x8, _phys(4) | 0x8, 0xF0, _phys(20) | 0x1,
             _phys(5) | 0x8]
    head = _build(words, [0], ram)
    res = _walk(impl, ram, head, 100)
    assert res[-1][0] == 0 and res[-1][3] == 3
    assert ram[10 * 4096] == 3 and ram[11 * 4096] == 4 and ram[20 * 4096] == 5


@pytest.mark.parametrize("impl", IMPLS)
def test_walk_stops_at_a_source_outside_ram(impl: object) -> None:
    """A source in the hole stops the walk with WALK_BAD_SOURCE, RAM untouched after it."""
    ram = bytearray(64 * 4096)
    words = [_phys(10) | 0x1, (BASE + 33 * 4096) | 0x8, _phys(5) | 0x8]
    head = _build(words, [0], ram)
    before = bytes(ram)
    status, _, dest, done, word = _walk(impl, ram, head, 100)[-1]
    assert status == 3 and done == 0 and dest == _phys(10) and word == (BASE + 33 * 4096) | 0x8
    assert bytes(ram) == before


@pytest.mark.parametrize("impl", IMPLS)
def test_walk_loop_budget(impl: object) -> None:
    """K16.3: an INDIRECTION word naming its own page would loop forever; with a word
    budget both twins return WALK_LOOP (5) after exactly that many words, RAM untouched."""
    ram = bytearray(64 * 4096)
    struct.pack_into("<Q", ram, 0, _phys(0) | 0x2)
    before = bytes(ram)
    walk = getattr(impl, "relocate_walk")
    status, loc, dest, done, word = walk(ram, _runs(), _phys(0) | 0x2, -1, 0, 10, 1000)
    assert (status, loc, done) == (5, _phys(0), 0) and bytes(ram) == before
    assert getattr(impl, "WALK_LOOP") == 5
    # a budget large enough for a real list changes nothing
    assert walk(ram, _runs(), 0x4, -1, 0, 10, 1)[0] == 0


def _fresh_ram(pages: dict[int, bytes], words: list[int],
               ind: list[int]) -> tuple[PhysMem, int]:
    """A PhysMem laid out as :func:`_runs` in which only ``pages`` (and the list's
    indirection pages) were ever written."""
    physmem = PhysMem([(BASE, 32 * 4096), (BASE + 40 * 4096, 32 * 4096)], memops_py)
    for page, data in pages.items():
        physmem.buf[page * 4096:page * 4096 + len(data)] = data
    head = _build(words, ind, physmem.buf)   # type: ignore[arg-type]
    return physmem, head


def _mark_walk(impl: object, physmem: PhysMem, head: int, chunk: int, marks: bool,
               where: list[int] | None = None) -> list[tuple[int, ...]]:
    walk = getattr(impl, "relocate_walk")
    loc, dest, out = -1, 0, []
    for _ in range(10_000):
        zeros = physmem.walk_marks(where or [BASE, BASE + 80 * 4096]) if marks else None
        res = walk(physmem.buf, _runs(), head, loc, dest, chunk, -1, zeros)
        out.append(res)
        status, loc, dest = res[0], res[1], res[2]
        if status != 1:
            break
    return out


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_zero_marks_change_nothing(impl: object, data: st.DataObject) -> None:
    """K16.3: with the pagemap marks (``zeros``), a walk that leaves zero pages copied onto
    never-written RAM uncopied ends with the same RAM and the same states as the plain
    walk, whichever pages were written, with zeros among them."""
    _, ind, words, chunk = data.draw(_lists())
    lo = data.draw(st.integers(0, 72))
    where = [BASE + lo * 4096, BASE + data.draw(st.integers(lo, 80)) * 4096]
    written = data.draw(st.lists(st.integers(0, NPAGES - 1), unique=True, max_size=40))
    pages = {p: data.draw(st.sampled_from([b"\0" * 4096, bytes([p + 1]) * 4096,
                                           b"\0" * 4095 + b"\1"])) for p in written}
    plain, head = _fresh_ram(pages, words, ind)
    marked, head2 = _fresh_ram(pages, words, ind)
    if marked.walk_marks(where) is None:
        pytest.skip("no /proc/self/pagemap here")
    assert head == head2
    assert _mark_walk(impl, marked, head, chunk, True, where) == \
        _mark_walk(impl, plain, head, chunk, False)
    assert marked.buf[:] == plain.buf[:]


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_page_onto_unwritten_ram_is_not_copied(impl: object) -> None:
    """K16.3 [model]: a never-written source copied onto a never-written destination is
    skipped (the host page stays unpopulated, reading as zeros); a written source, even
    one of zeros, is copied."""
    words = [_phys(8) | 0x1] + [_phys(3) | 0x8] * 6 + [_phys(4) | 0x8, _phys(5) | 0x8]
    physmem, head = _fresh_ram({4: b"\0" * 4096, 5: b"\7" * 4096}, words, [0])
    if physmem.walk_marks([BASE, BASE + 80 * 4096]) is None:
        pytest.skip("no /proc/self/pagemap here")
    res = _mark_walk(impl, physmem, head, 100, True)
    assert res[-1][0] == 0 and res[-1][3] == 8          # every SOURCE counted as copied
    off = 8 * 4096
    assert physmem.written_runs(off, 8 * 4096) == [(off + 6 * 4096, 2 * 4096)]
    assert physmem.buf[off:off + 7 * 4096] == bytes(7 * 4096)
    assert physmem.buf[off + 7 * 4096:off + 8 * 4096] == b"\7" * 4096


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_page_outside_where_is_copied(impl: object) -> None:
    """K16.3 [model]: only destinations inside ``where`` are candidates: the same zero
    pages copied to a destination outside it are written as usual."""
    words = [_phys(8) | 0x1] + [_phys(3) | 0x8] * 4 + [_phys(5) | 0x8] * 4
    physmem, head = _fresh_ram({}, words, [0])
    if physmem.walk_marks([BASE, BASE + 4096]) is None:
        pytest.skip("no /proc/self/pagemap here")
    _mark_walk(impl, physmem, head, 100, True, [_phys(8) + 4 * 4096, _phys(8) + 8 * 4096])
    off = 8 * 4096
    assert physmem.written_runs(off, 8 * 4096) == [(off, 4 * 4096)]
    assert physmem.buf[off:off + 8 * 4096] == bytes(8 * 4096)
