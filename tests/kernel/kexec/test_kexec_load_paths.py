"""Differential tests of the load's shortcuts against the plain forms they stand for:
the bisection that answers ``kimage_is_destination_range`` in the page-taking loops
(K6.5, K9.2, K11), and the tail clearing that skips chunks already reading as zeros
(``kimage_load_normal_segment`` K12.2, ``kimage_load_crash_segment`` K12.5)."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykern import Machine, images
from pykern._fast import memops_c, memops_py
from pykern.kernel.kexec.core import (
    KexecSegment, KImage, _clear_unless_zero, _destination_index, kimage_is_destination_range,
)
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD
from pykern.mm.memory import PhysMem
from pykern.testing.faults import machine_state
from pykern.testing.fuzz.cases import Config, draw_case

PAGE = 4096
MiB = 1 << 20
IMPLS = [
    pytest.param(memops_py, id="py"),
    pytest.param(memops_c, id="c",
                 marks=pytest.mark.skipif(memops_c is None, reason="_memops_c not built")),
]

_segments = st.lists(st.tuples(st.integers(0, 1 << 26),
                               st.one_of(st.just(0), st.integers(1, 1 << 22),
                                         st.integers(1, 64).map(lambda n: n * PAGE))),
                     max_size=7)


@settings(max_examples=400, deadline=None)
@given(_segments, st.lists(st.tuples(st.integers(0, 1 << 27), st.integers(0, 1 << 23)),
                           min_size=1, max_size=20))
def test_k6_5_bisection_answers_as_kimage_is_destination_range(
        segs: list[tuple[int, int]], probes: list[tuple[int, int]]) -> None:
    """K6.5, kimage_is_destination_range: for any segment list (overlapping, empty and
    zero-sized segments included, as a hand-built image may hold) the two lists of
    _destination_index answer every inclusive range [start, end] exactly as the walk over
    the segments does."""
    im = KImage()
    for mem, memsz in segs:
        im.segments.append(KexecSegment(b"", 0, mem, memsz))
    firsts, reach = _destination_index(im)
    for start, length in probes:
        end = start + length
        k = bisect_right(firsts, end)
        assert (k > 0 and start <= reach[k - 1]) == kimage_is_destination_range(im, start, end)


@pytest.mark.parametrize("memops", IMPLS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_k12_2_tail_clearing_leaves_what_zero_range_leaves(memops: Any, data: Any) -> None:
    """K12.2 (clear_highpage of each source page past bufsz): _clear_unless_zero leaves the
    buffer byte for byte as memops.zero_range does, whether the range already reads as
    zeros, holds a few stray bytes, or spans several of its chunks, in both builds."""
    size = 3 * 256 * 1024 + 5 * PAGE
    physmem = PhysMem([(0, size)], memops)
    buf = physmem.buf
    for pos in data.draw(st.lists(st.integers(0, size - 1), max_size=8)):
        buf[pos] = data.draw(st.integers(1, 255))
    at = data.draw(st.integers(0, size))
    n = data.draw(st.integers(0, size - at))
    want = bytearray(buf)
    memops_py.zero_range(want, at, n)
    _clear_unless_zero(physmem, at, n)
    assert buf[:] == bytes(want)


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k12_2_source_tails_are_zeroed_over_stale_bytes(arch: str) -> None:
    """K12.2: with every byte of RAM stale (0xA5), each SOURCE page past the segment's
    bufsz holds zeros after a walk-placed load, and the pages before it hold the buffer."""
    m = Machine("256M", arch=arch)
    m.ram[:] = b"\xA5" * len(m.ram)
    kernel = (images.arm64_image(3 * MiB, image_size=5 * MiB) if arch == "arm64"
              else images.bzimage(3 * MiB))
    initrd = images.payload_pattern(MiB + 123, seed=4)
    m.kexec_file_load(kernel, initrd, "x", KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    tails = 0
    dest = 0
    for kind, addr in im.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            idx, seg = next((i, s) for i, s in enumerate(im.segments)
                            if s.mem <= dest < s.mem + s.memsz)
            ref = im.reference(idx)
            got = m.phys_read(addr, PAGE)
            assert got == ref[dest - seg.mem:dest - seg.mem + PAGE], hex(dest)
            tails += dest - seg.mem >= seg.bufsz
            dest += PAGE
    assert tails > 100


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k12_5_crash_segment_tail_is_zeroed_over_stale_bytes(arch: str) -> None:
    """K12.5, kimage_load_crash_segment: the crash region filled with stale bytes (0x5A)
    before the load; every crash segment then holds its buffer and zeros up to memsz."""
    m = Machine("512M", arch=arch, cmdline="crashkernel=64M")
    assert m.crashk_res is not None
    c0, c1 = m.crashk_res
    m.phys_write(c0, b"\x5A" * (c1 - c0))
    kernel = images.arm64_image(MiB) if arch == "arm64" else images.bzimage(MiB)
    initrd = images.payload_pattern(MiB + 5, seed=9)
    m.kexec_file_load(kernel, initrd, "crash=1", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None
    padded = 0
    for seg in im.segments:
        want = bytes(memoryview(seg.buf)[:seg.bufsz]) + bytes(seg.memsz - seg.bufsz)
        assert m.phys_read(seg.mem, seg.memsz) == want, hex(seg.mem)
        padded += seg.memsz > seg.bufsz
    assert padded


@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 100_000), no_cma=st.booleans(), reload=st.booleans())
def test_k11_inline_page_taking_leaves_what_kimage_alloc_page_leaves(index: int,
                                                                      no_cma: bool,
                                                                      reload: bool) -> None:
    """K9.2, K11, K12.2: while no allocation can be made to fail, kimage_load_normal_segment
    takes its source pages with kimage_load_normal_pages (kimage_alloc_page's loop: pages
    set aside, above the limit, swapped with a loaded destination), and
    kimage_alloc_normal_control_pages its blocks with kimage_take_control_block (both
    compiled in the compiled build, from core_pages.py).  A twin
    machine with a fail-nth pending too far off to fire takes them through
    kimage_alloc_page and kimage_alloc_pages, call by call; over fuzz cases (collisions with destinations,
    pages above the limit, both modes) both end with the same result, memmap, free lists,
    counters, procfs and debugfs text, image lists and entries, and RAM.  ``reload``: the
    same load and an unload first, which leaves the free lists in another order, so that
    many pages land in destinations not loaded yet and are set aside (K11)."""
    case = draw_case(Config(seed=7), index)
    flags = case.flags | (KEXEC_FILE_NO_CMA if no_cma else 0)
    inline, called = Machine(**case.layout), Machine(**case.layout)
    called.write("/proc/self/fail-nth", str(10 ** 9))
    outcomes = []
    for m in (inline, called):
        if reload:
            try:
                m.kexec_file_load(case.kernel, case.initrd, case.cmdline, flags)
            except OSError:
                pass
            m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD | (flags & KEXEC_FILE_ON_CRASH))
        try:
            m.kexec_file_load(case.kernel, case.initrd, case.cmdline, flags)
            outcomes.append(0)
        except OSError as exc:
            outcomes.append(exc.errno)
    assert outcomes[0] == outcomes[1]
    assert called.read("/proc/self/fail-nth") != "0\n"          # it never fired
    want, got = machine_state(called), machine_state(inline)
    del want["tasks"], got["tasks"]
    assert got == want
    assert inline.ram[:] == called.ram[:]
