"""``PhysMem.written_runs`` and ``PhysMem.is_zero``: the scans for non-zero RAM skip host
pages that were never written, and must answer exactly as reading every byte does."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykern import Machine
from pykern.mm import memory

MiB = 1 << 20
_PAGE = 4096


@pytest.fixture(scope="module")
def machine() -> Machine:
    return Machine("32M", arch="arm64")


def _scrub(m: Machine, lo: int, hi: int) -> None:
    """Zero [lo, hi) of the test window (pages stay populated: zeros that were written)."""
    m.physmem.clear(lo, hi - lo)


@settings(max_examples=60, deadline=None)
@given(writes=st.lists(st.tuples(st.integers(0, 4 * MiB - 1), st.binary(min_size=1,
                                                                         max_size=9)),
                       max_size=6),
       start=st.integers(0, 4 * MiB - 1), length=st.integers(0, 4 * MiB))
def test_is_zero_matches_reading_every_byte(machine: Machine, writes: list[tuple[int, bytes]],
                                            start: int, length: int) -> None:
    """is_zero answers as ``not any(bytes)`` over random writes (zero bytes among them) and
    random ranges, page-aligned or not."""
    pm = machine.physmem
    base = pm.banks[0][0] + 16 * MiB             # a window nothing else writes
    length = min(length, 4 * MiB - start)
    for at, data in writes:
        pm.write(base + at, data[:4 * MiB - at])
    try:
        expected = not any(pm.read(base + start, length))
        assert pm.is_zero(base + start, length) == expected
    finally:
        _scrub(machine, base, base + 4 * MiB)


def test_written_runs_cover_every_written_byte(machine: Machine) -> None:
    """A written byte's host page is inside a run; a range never touched has no run; runs
    stay inside the asked range."""
    pm = machine.physmem
    base = pm.banks[0][0] + 24 * MiB
    off = pm.offset(base, 4 * MiB)
    if memory._pagemap_fd() < 0:
        pytest.skip("/proc/self/pagemap cannot be read here")
    assert pm.written_runs(off, 4 * MiB) == []
    assert pm.written_runs(off, 2 * _PAGE) == [(off, 2 * _PAGE)]    # a few pages: just read
    pm.write(base + 3 * _PAGE + 17, b"\x01")
    pm.write(base + MiB + 5, b"\x02")
    runs = pm.written_runs(off + 100, 4 * MiB - 200)
    assert all(off + 100 <= o and o + k <= off + 4 * MiB - 100 for o, k in runs)
    for hit in (off + 3 * _PAGE + 17, off + MiB + 5):
        assert any(o <= hit < o + k for o, k in runs)
    assert sum(k for _, k in runs) <= 2 * _PAGE
    _scrub(machine, base, base + 4 * MiB)


def test_without_pagemap_the_whole_range_is_scanned(machine: Machine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/self/pagemap cannot be read the whole range is returned, and is_zero
    still gives the exact answer by reading."""
    pm = machine.physmem
    monkeypatch.setattr(memory, "_PAGEMAP", [os.getpid(), -1])
    off = pm.offset(pm.banks[0][0] + 8 * MiB, MiB)
    assert pm.written_runs(off, MiB) == [(off, MiB)]
    assert pm.written_runs(off, 0) == []
    pm.write(pm.banks[0][0] + 8 * MiB + 77, b"\x09")
    assert not pm.is_zero(pm.banks[0][0] + 8 * MiB, MiB)
    _scrub(machine, pm.banks[0][0] + 8 * MiB, pm.banks[0][0] + 9 * MiB)
    assert pm.is_zero(pm.banks[0][0] + 8 * MiB, MiB)


def test_a_forked_process_reopens_the_pagemap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The descriptor belongs to the process that opened it: another pid opens its own."""
    fd = memory._pagemap_fd()
    if fd < 0:
        pytest.skip("/proc/self/pagemap cannot be read here")
    monkeypatch.setattr(memory, "_PAGEMAP", [os.getpid() + 1, os.dup(fd)])
    new = memory._pagemap_fd()
    assert memory._PAGEMAP[0] == os.getpid() and new >= 0
    os.close(new)


def test_is_zero_rejects_what_is_not_ram(machine: Machine) -> None:
    with pytest.raises(ValueError):
        machine.physmem.is_zero(0, _PAGE)


def test_a_restored_snapshot_scans_its_own_buffer(tmp_path: object) -> None:
    """The host address is not saved: a machine loaded from a snapshot scans the buffer it
    was restored into (a stale address would answer about memory of the saved machine)."""
    import pathlib
    m = Machine("32M", arch="arm64")
    at = m.physmem.banks[0][0] + 20 * MiB
    m.phys_write(at + 5, b"\x07")
    path = pathlib.Path(str(tmp_path)) / "m.pkm"
    m.save(path)
    back = Machine.restore(path)
    assert back.physmem._vaddr == memory.host_address(back.ram) != m.physmem._vaddr
    assert not back.physmem.is_zero(at, _PAGE)
    assert back.physmem.is_zero(at + _PAGE, MiB)


def test_prefault_maps_the_pages_and_changes_no_byte(machine: Machine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """PhysMem.prefault: RAM reads the same afterwards (zeros stay zeros, data stays data),
    the pages count as populated and are not advised again; a host that refuses the advice
    is asked no more, and a range that is not RAM is refused like a write."""
    pm = machine.physmem
    base = pm.banks[0][0] + 28 * MiB
    pm.write(base + 5 * _PAGE + 3, b"keep")
    before = pm.read(base, 16 * _PAGE)
    pm.prefault(base + 100, 16 * _PAGE - 200)
    assert pm.read(base, 16 * _PAGE) == before
    if memory._pagemap_fd() >= 0 and memory._POPULATE[0] is not None:
        off = pm.offset(base, 16 * _PAGE)
        assert pm.written_runs(off, 16 * _PAGE) == [(off, 16 * _PAGE)]
    with pytest.raises(ValueError):
        pm.prefault(0, _PAGE)
    if memory._pagemap_fd() >= 0:
        asked: list[tuple[int, ...]] = []

        class Counting:
            def madvise(self, *args: int) -> None:
                asked.append(args)

            def __len__(self) -> int:
                return len(real)

        real = pm.buf
        try:
            pm.buf = Counting()  # type: ignore[assignment]
            pm.prefault(base, 16 * _PAGE)               # all mapped by now: nothing asked
        finally:
            pm.buf = real
        assert asked == []

    class Refusing:
        def __init__(self, buf: object) -> None:
            self.buf = buf

        def madvise(self, *args: int) -> None:
            raise OSError(22, "Invalid argument")

        def __len__(self) -> int:
            return len(real)

    monkeypatch.setattr(memory, "_POPULATE", [23])
    real = pm.buf
    try:
        pm.buf = Refusing(real)  # type: ignore[assignment]
        pm.prefault(base + 64 * _PAGE, 4 * _PAGE)      # pages never mapped: advice asked
    finally:
        pm.buf = real
    assert memory._POPULATE == [None]
    pm.prefault(base, 4 * _PAGE)                 # no advice asked: nothing happens
    _scrub(machine, base, base + 16 * _PAGE)
