"""Benchmarks of the foundation (pytest-benchmark): the order-0 alloc+free pair, boot of
a 16 GiB machine (with per-page metadata cost) and creation of a 64 MiB machine.

Run with timing: ``python -m pytest benches -q``; quick smoke: ``--benchmark-disable``.
Targets: pair ≤ 2 µs in the pure build, ≤ 0.5 µs compiled (issue 19); split+merge ≤ 1.5 µs
compiled; 16 GiB boot ≤ 1 s, 64 MiB machine ≤ 5 ms, metadata ≤ 64 bytes per page (the
memmap, plus the compiled build's free-list link arrays).
"""

from __future__ import annotations

from typing import Any

import pytest

import pykern.mm.gfp as gfp
from pykern import Machine
from pykern._fast import COMPILED, free_list_links_nbytes

PAIR_SIZES = ["256M", "16G"]


@pytest.fixture(scope="module", params=PAIR_SIZES)
def warm_machine(request: pytest.FixtureRequest) -> Machine:
    return Machine(ram=request.param, cmdline="cma=0")


def _info(benchmark: Any, m: Machine, **extra: Any) -> None:
    mm = m.mm
    benchmark.extra_info.update(
        ram=f"{sum(s for _, s in m.banks) >> 20} MiB", arch=m.arch,
        managed_pages=sum(z.managed_pages for z in mm.zones),
        memops="compiled" if COMPILED and m.extensions is not False else "python", **extra)


def test_bench_alloc_free_pair_order0_warm(benchmark: Any, warm_machine: Machine) -> None:
    """Order-0 GFP_KERNEL alloc + free in the steady state: a page is held so its buddy
    sits on list(0, Unmovable); each pair takes it and gives it back (no split/merge)."""
    m = warm_machine
    mm = m.mm
    alloc, free = mm.alloc_pages, mm.free_pages
    held = alloc(gfp.GFP_KERNEL, 0)
    assert held is not None
    for _ in range(1000):
        free(alloc(gfp.GFP_KERNEL, 0), 0)  # type: ignore[arg-type]
    free_before = mm.nr_free_pages()

    def pair() -> None:
        free(alloc(gfp.GFP_KERNEL, 0), 0)  # type: ignore[arg-type]

    benchmark(pair)
    assert mm.nr_free_pages() == free_before
    mm.check_invariants()
    free(held, 0)
    _info(benchmark, m, state="buddy of a held page on list(0)")


def test_bench_alloc_free_pair_order0_split_merge(benchmark: Any) -> None:
    """Order-0 alloc + free on a fresh 256 MiB zone: every pair splits an order-10 block
    down to order 0 (10 halves) and merges it back (worst case of the buddy allocator)."""
    m = Machine(ram="256M", cmdline="cma=0")
    mm = m.mm
    alloc, free = mm.alloc_pages, mm.free_pages

    def pair() -> None:
        free(alloc(gfp.GFP_HIGHUSER_MOVABLE, 0), 0)  # type: ignore[arg-type]

    benchmark(pair)
    mm.check_invariants()
    _info(benchmark, m, state="fresh zone: split order 10, merge back")


def test_bench_boot_16g(benchmark: Any) -> None:
    """Boot of a 16 GiB arm64 machine (default command line: 32 MiB CMA area)."""
    m = benchmark.pedantic(Machine, kwargs=dict(ram="16G"), rounds=3, iterations=1)
    mem = m.mm.mem_map
    pages = sum(z.present_pages for z in m.mm.zones)
    # the memmap, plus the free lists' per-page link arrays of the compiled build
    metadata = mem.metadata_bytes() + sum(free_list_links_nbytes(z.free_list)
                                          for z in m.mm.zones)
    per_page = metadata / pages
    _info(benchmark, m, metadata_bytes=metadata,
          metadata_bytes_per_page=round(per_page, 3))
    assert per_page <= 64


def test_bench_create_64m(benchmark: Any) -> None:
    """Machine(ram="64M"): RAM buffer, memblock, zones, buddy release, CMA, watermarks."""
    m = benchmark(Machine, ram="64M")
    _info(benchmark, m)
