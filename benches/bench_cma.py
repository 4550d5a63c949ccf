"""cma_alloc of 64 MiB from an idle area and from one half borrowed by a task (issue 3)."""

from __future__ import annotations

from typing import Any

import pytest

from pykern import Machine

PAGES = 16384  # 64 MiB


def _setup(borrowed: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    m = Machine("128M", cmdline="cma=64M")
    if borrowed:
        # CMA holds more than half the free pages, so the task's pages land there (MM A5.1)
        m.new_task().mmap_anon(PAGES // 2)
    return (m,), {}


@pytest.mark.parametrize("borrowed", [False, True], ids=["idle", "half-borrowed"])
def test_bench_cma_alloc_64m(benchmark: Any, borrowed: bool) -> None:
    def run(m: Machine) -> None:
        cma = m.dma_contiguous_default_area
        assert cma is not None
        assert cma.alloc(PAGES, 0) is not None  # the whole area: every borrowed page moves

    benchmark.group = "cma_alloc 64 MiB"
    benchmark.extra_info.update(pages=PAGES, borrowed_pages=PAGES // 2 if borrowed else 0)
    benchmark.pedantic(run, setup=lambda: _setup(borrowed), rounds=5, iterations=1)
    # the pages cma_alloc migrated (the ones the task had in the area), untimed: µs per
    # migrated page = (mean - the idle mean) / migrated_pages
    (m,), _ = _setup(borrowed)
    run(m)
    vmstat = m.read("/proc/vmstat")
    migrated = int(vmstat.split("pgmigrate_success ")[1].split()[0])
    assert (migrated > 0) == borrowed
    benchmark.extra_info["migrated_pages"] = migrated
