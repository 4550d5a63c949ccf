"""Worked example: port one kernel function to Python and test it against pykern.

The function is the top-down hole search of ``kernel/kexec_file.c``
(``locate_mem_hole_top_down``): given a memory range ``[start, end]`` (inclusive end), find
the highest address ``mem`` aligned to ``buf_align`` such that ``[mem, mem + memsz - 1]``
stays inside the range and inside ``[buf_min, buf_max]`` and overlaps no segment the image
already has.  The port below is written from the rule text (K6.6 in the rule index), not from the C.

Three checks, from small to large:

1. the port against pykern's own ``locate_mem_hole_top_down`` on hypothesis inputs;
2. the port against a brute-force definition of "highest free aligned address";
3. on real machines — the ``machine`` fixture and machines drawn with
   ``pykern.testing.strategies.layouts()`` through ``machine_factory`` — a top-down request
   over every System RAM range of ``/proc/iomem``, next to the segments a real
   ``kexec_file_load`` placed.

Run with ``pytest examples`` (the ``machine`` fixtures come from pykern's pytest plugin, no
conftest needed).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pykern import KEXEC_FILE_NO_CMA, Machine, images
from pykern.kernel.kexec.core import KexecSegment, KImage
from pykern.kernel.kexec.file import KexecBuf, locate_mem_hole_top_down
from pykern.testing.strategies import layouts

PAGE = 4096
MiB = 1 << 20
U64_MAX = (1 << 64) - 1
Segments = Sequence[tuple[int, int]]        # (mem, memsz) of the segments placed so far


# ----------------------------------------------------------------------------- the port
def overlaps_segment(segments: Segments, first: int, last: int) -> bool:
    """K6.5: does the inclusive range [first, last] touch a placed segment?"""
    return any(first <= mem + memsz - 1 and last >= mem for mem, memsz in segments)


def top_down_hole(segments: Segments, start: int, end: int, memsz: int, align: int,
                  buf_min: int = 0, buf_max: int = U64_MAX) -> int | None:
    """The highest aligned start for ``memsz`` bytes in [start, end]; None when none fits.

    Start from the highest candidate the range and ``buf_max`` allow, round it down to the
    alignment, and step one page lower (then round down again) while it collides with a
    placed segment.  Give up once the candidate drops below ``start`` or ``buf_min``.
    """
    top = min(end, buf_max)
    candidate = top - memsz + 1
    while True:
        candidate -= candidate % align            # round down (a floor, also below zero)
        if candidate < start or candidate < buf_min:
            return None
        if not overlaps_segment(segments, candidate, candidate + memsz - 1):
            return candidate
        candidate -= PAGE


# ------------------------------------------------------------- pykern's function, wrapped
def pykern_top_down(segments: Segments, start: int, end: int, memsz: int, align: int,
                    buf_min: int = 0, buf_max: int = U64_MAX) -> int | None:
    """Ask pykern's ``locate_mem_hole_top_down`` the same question."""
    image = KImage()
    image.segments.extend(KexecSegment(b"", 0, mem, size) for mem, size in segments)
    kbuf = KexecBuf(image, b"", 0, memsz, buf_align=align, buf_min=buf_min,
                    buf_max=buf_max, top_down=True)
    return kbuf.mem if locate_mem_hole_top_down(kbuf, start, end) == 1 else None


# ------------------------------------------------------------------ hypothesis inputs
pages = st.integers(1, 64).map(lambda n: n * PAGE)
alignments = st.sampled_from([PAGE, 16 * 1024, 64 * 1024, 2 * MiB])


@st.composite
def hole_problems(draw: st.DrawFn) -> dict[str, Any]:
    """A range of up to 16 MiB somewhere in the first 4 GiB, some segments in and around
    it, a request and its limits."""
    start = draw(st.integers(0, 1 << 20)) * PAGE
    end = start + draw(st.integers(1, 4096)) * PAGE - 1
    segments = []
    for _ in range(draw(st.integers(0, 4))):
        mem = draw(st.integers(max(0, start - 64 * PAGE), end)) // PAGE * PAGE
        segments.append((mem, draw(pages)))
    buf_min = draw(st.one_of(st.just(0), st.integers(start, end)))
    buf_max = draw(st.one_of(st.just(U64_MAX), st.integers(start, end)))
    return {"segments": segments, "start": start, "end": end, "memsz": draw(pages),
            "align": draw(alignments), "buf_min": buf_min, "buf_max": buf_max}


@settings(max_examples=300, deadline=None)
@given(hole_problems())
def test_port_matches_pykern(problem: dict[str, Any]) -> None:
    assert top_down_hole(**problem) == pykern_top_down(**problem)


def brute_force(segments: Segments, start: int, end: int, memsz: int, align: int,
                buf_min: int = 0, buf_max: int = U64_MAX) -> int | None:
    """The definition, by exhaustion: every aligned address, highest first."""
    lo, hi = max(start, buf_min), min(end, buf_max) - memsz + 1
    for mem in range(hi - hi % align, lo - 1, -align):
        if mem >= lo and not overlaps_segment(segments, mem, mem + memsz - 1):
            return mem
    return None


@settings(max_examples=200, deadline=None)
@given(hole_problems())
def test_port_is_the_highest_free_aligned_address(problem: dict[str, Any]) -> None:
    assume(problem["end"] - problem["start"] < 4 * MiB)     # keep the exhaustive scan short
    got = top_down_hole(**problem)
    assert got == brute_force(**problem)
    if got is not None:
        assert got % problem["align"] == 0
        assert not overlaps_segment(problem["segments"], got, got + problem["memsz"] - 1)


# --------------------------------------------------------------------- on real machines
def system_ram(m: Machine) -> list[tuple[int, int]]:
    """Top-level "System RAM" ranges of /proc/iomem, inclusive ends, highest first (the
    order a top-down walk visits them in)."""
    ranges = []
    for line in m.read("/proc/iomem").splitlines():
        if not line.startswith(" ") and line.endswith(": System RAM"):
            first, last = line.split(" : ")[0].split("-")
            ranges.append((int(first, 16), int(last, 16)))
    return sorted(ranges, reverse=True)


def first_fit(search: Callable[..., int | None], m: Machine, segments: Segments, memsz: int,
              align: int) -> int | None:
    for start, end in system_ram(m):
        if end - start + 1 < memsz:                 # the walk skips ranges that are too small
            continue
        found = search(segments, start, end, memsz, align)
        if found is not None:
            return found
    return None


def loaded_segments(m: Machine) -> list[tuple[int, int]]:
    """Load a small kernel and initrd through the page list; their (mem, memsz)."""
    kernel = images.arm64_image(256 * 1024) if m.arch == "arm64" else images.bzimage(256 * 1024)
    m.kexec_file_load(kernel, images.payload_pattern(300_000), "console=ttyS0",
                      KEXEC_FILE_NO_CMA)
    assert m.kexec_image is not None
    return [(s.mem, s.memsz) for s in m.kexec_image.segments]


def test_on_the_default_machine(machine: Machine) -> None:
    segments = loaded_segments(machine)
    (top_start, top_end), *_ = system_ram(machine)
    got = first_fit(top_down_hole, machine, segments, 1 * MiB, 2 * MiB)
    assert got == first_fit(pykern_top_down, machine, segments, 1 * MiB, 2 * MiB)
    assert got is not None and top_start <= got <= top_end - MiB + 1
    # the loader placed nothing in the top 2 MiB here, so the hole is right at the top
    if not overlaps_segment(segments, top_end - 2 * MiB + 1, top_end):
        assert got == (top_end + 1) - 2 * MiB


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layout=layouts(max_ram="128M", max_hole="64M"),
       memsz=st.integers(1, 1024).map(lambda n: n * PAGE), align=alignments)
def test_on_random_layouts(machine_factory: Any, layout: dict[str, Any], memsz: int,
                           align: int) -> None:
    m = machine_factory(**layout)
    try:
        segments = loaded_segments(m)
    except OSError:
        assume(False)                        # a layout with no room for the load
        return
    got = first_fit(top_down_hole, m, segments, memsz, align)
    assert got == first_fit(pykern_top_down, m, segments, memsz, align)
    if got is not None:
        assert any(s <= got and got + memsz - 1 <= e for s, e in system_ram(m))
        assert not overlaps_segment(segments, got, got + memsz - 1)
