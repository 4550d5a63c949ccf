"""The allocator core against its own source (issue 19).

The compiled build compiles ``pykern/mm/page_alloc.py`` (and mmzone.py, page.py) as they are,
with C types from the ``.pxd`` files beside them.  These tests run random operation sequences
(MM A1-A12 allocations, F1-F5 frees, I5/I7 isolation, the V2 misuse errors) on the running
module with its free lists (per-page link arrays when compiled) and on a second copy executed
from ``page_alloc.py`` with OrderedDict free lists, as the pure build has them, each on its
own machine booted the same way, and require identical results and identical state after
every step: free lists in order, memmap arrays, zone counters, /proc/vmstat pgfree, the log.

In the pure build both sides run the source; the sequences still check MM V1 throughout.
"""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pykern._fast as fast
import pykern.mm.gfp as G
import pykern.mm.page_alloc as running
from pykern import Machine
from pykern.mm.mmzone import MAX_PAGE_ORDER, MIGRATE_ISOLATE, pageblock_nr_pages

SOURCE = fast.source_twin("pykern.mm.page_alloc")

GFPS = [G.GFP_KERNEL, G.GFP_HIGHUSER_MOVABLE, G.GFP_ATOMIC, G.GFP_KERNEL | G.__GFP_RECLAIMABLE,
        G.GFP_DMA32, G.GFP_KERNEL | G.__GFP_COMP, G.GFP_NOWAIT | G.__GFP_NOWARN,
        G.GFP_KERNEL | G.__GFP_ZERO, G.GFP_ATOMIC | G.__GFP_NOWARN]

OPS = st.one_of(
    st.tuples(st.just("alloc"), st.sampled_from(GFPS), st.integers(0, MAX_PAGE_ORDER + 1)),
    st.tuples(st.just("free"), st.integers(0, 10**6)),
    st.tuples(st.just("free_wrong_order"), st.integers(0, 10**6)),
    st.tuples(st.just("get_put"), st.integers(0, 10**6)),
    st.tuples(st.just("isolate"), st.integers(0, 10**6)),
    st.tuples(st.just("unisolate"), st.integers(0, 10**6)),
)


def _pair(ram: str, arch: str, cmdline: str) -> tuple[Any, Any]:
    """The running module's allocator of one machine, and a source-module allocator over the
    state of a second machine booted the same way."""
    a = Machine(ram, arch=arch, cmdline=cmdline)
    b = Machine(ram, arch=arch, cmdline=cmdline)
    twin = SOURCE.PageAlloc.__new__(SOURCE.PageAlloc)
    for name in SOURCE._PAGEALLOC_FIELDS:
        setattr(twin, name, getattr(b.mm, name))
    for zone in b.mm.zones:      # the source side keeps the pure build's OrderedDicts
        zone.free_list = [[OrderedDict.fromkeys(fl) for fl in lists]
                          for lists in zone.free_list]
    return a.mm, twin


def _state(mm: Any) -> tuple[Any, ...]:
    mem = mm.mem_map
    zones = tuple((z.name, tuple(z.nr_free), z.nr_free_pages, z.nr_free_cma,
                   z.nr_free_highatomic, z.nr_free_pages_blocks, z.nr_reserved_highatomic,
                   z.watermark_boost, z.pgalloc, z.numa_hit)
                  for z in mm.zones)
    blocks = tuple((z.name, order, mt, pfn) for z, order, mt, pfn in mm.iter_free_blocks())
    arrays = tuple(bytes(a) for a in (mem.flags, mem.order, mem.alloc_order, mem.freelist_mt,
                                      mem.refcount, mem.pageblock_flags))
    return zones, blocks, arrays, mm.pgfree, tuple(mm.log.lines())


def _apply(mod: Any, mm: Any, held: list[tuple[int, int]], op: tuple[Any, ...]) -> Any:
    """One operation through module ``mod``; its result, or the error it raised."""
    kind = op[0]
    try:
        if kind == "alloc":
            _, gfp, order = op
            pfn = mod.__dict__["__alloc_frozen_pages_noprof"](mm, gfp, order)
            if pfn is not None:
                held.append((pfn, order))
            return pfn
        if kind in ("isolate", "unisolate"):
            zone = next(z for z in mm.zones if z.spanned_pages)
            pfn = zone.zone_start_pfn + op[1] % zone.spanned_pages
            pfn -= pfn % pageblock_nr_pages
            fn = (mod.pageblock_isolate_and_move_free_pages if kind == "isolate"
                  else mod.pageblock_unisolate_and_move_free_pages)
            if kind == "isolate" and mod.get_pfnblock_migratetype(mm, pfn) == MIGRATE_ISOLATE:
                return "already"
            return fn(mm, zone, pfn)
        if not held:
            return "empty"
        pfn, order = held[op[1] % len(held)]
        if kind == "free":
            held.remove((pfn, order))
            return mod.__dict__["__free_pages"](mm, pfn, order)
        if kind == "free_wrong_order":
            return mod.__dict__["__free_pages"](mm, pfn, (order + 1) % (MAX_PAGE_ORDER + 1))
        mod.get_page(mm, pfn)
        return mod.put_page(mm, pfn)
    except ValueError as exc:
        return ("ValueError", str(exc))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=st.sampled_from([("64M", "arm64", "cma=8M"), ("160M", "x86_64", "cma=16M"),
                               ("48M", "arm64", "cma=0")]),
       ops=st.lists(OPS, min_size=1, max_size=60))
def test_compiled_core_and_its_source_leave_identical_state(layout: tuple[str, str, str],
                                                            ops: list[tuple[Any, ...]]) -> None:
    """MM A1-A12, F1-F5, I5/I7 and V2 through both modules: same results, same state
    (free lists head to tail, memmap, counters, log) after every operation, MM V1 at the end."""
    ram, arch, cmdline = layout
    mm_run, mm_src = _pair(ram, arch, cmdline)
    held_run: list[tuple[int, int]] = []
    held_src: list[tuple[int, int]] = []
    assert _state(mm_run) == _state(mm_src)
    for op in ops:
        got_run = _apply(running, mm_run, held_run, op)
        got_src = _apply(SOURCE, mm_src, held_src, op)
        assert got_run == got_src, op
        assert _state(mm_run) == _state(mm_src), op
    mm_run.check_invariants()
    mm_src.check_invariants()


def test_split_merge_churn_matches_the_source() -> None:
    """A long deterministic churn (every order, split down and merged back, MM A6/F4) ends
    in the same free lists in both modules, in the same order."""
    mm_run, mm_src = _pair("64M", "arm64", "cma=8M")
    for mod, mm in ((running, mm_run), (SOURCE, mm_src)):
        held: list[tuple[int, int]] = []
        for i in range(400):
            op: tuple[Any, ...] = ("alloc", GFPS[i % len(GFPS)], (i * 7) % 6)
            if i % 3 == 2:
                op = ("free", i * 31)
            _apply(mod, mm, held, op)
    assert _state(mm_run) == _state(mm_src)
    assert any(order >= 9 for _, order, _, _ in mm_run.iter_free_blocks())


def test_source_twin_runs_the_source() -> None:
    """``source_twin`` is the .py file executed: its kernel functions are Python functions
    defined in page_alloc.py, whatever build is running."""
    fn = SOURCE.__dict__["__rmqueue_smallest"]
    assert inspect.isfunction(fn)
    assert Path(inspect.getsourcefile(fn) or "").name == "page_alloc.py"
    assert SOURCE.PageAlloc is not running.PageAlloc


def test_compiled_module_list_matches_setup_py() -> None:
    """setup.py compiles exactly ``pykern._fast.PURE_MODULES``, each with its .pxd."""
    root = Path(__file__).resolve().parents[2]
    setup = (root / "setup.py").read_text()
    listed = re.search(r"PURE_MODULES = \[(.*?)\]", setup, re.S)
    assert listed is not None
    paths = re.findall(r'"([^"]+)"', listed.group(1))
    assert tuple(p[:-3].replace("/", ".") for p in paths) == fast.PURE_MODULES
    for p in paths:
        assert (root / p).with_suffix(".pxd").exists(), p


@pytest.mark.skipif(fast.NO_EXTENSIONS or not fast.COMPILED,
                    reason="the pure build: nothing is compiled")
def test_compiled_build_runs_the_compiled_core() -> None:
    """In the compiled build the allocator core, and every other module of PURE_MODULES
    (the load's page loop), is the compiled module."""
    assert fast.CORE_COMPILED
    assert not inspect.isfunction(running.__dict__["__rmqueue_smallest"])
    import pykern.kernel.kexec.core_pages as core_pages
    assert not str(core_pages.__file__).endswith(".py")
    assert not inspect.isfunction(core_pages.kimage_load_normal_pages)


def test_snapshot_saved_by_one_build_restores_in_the_other(tmp_path: Path) -> None:
    """Zone, MemMap, Page and PageAlloc pickle as (class, fields) in both builds, so a
    snapshot saved by the running build restores in a process that runs the sources."""
    import os
    import subprocess
    import sys

    m = Machine("64M", cmdline="cma=8M")
    page = m.mm.alloc_pages(G.GFP_KERNEL, 3)
    assert page is not None
    m.save(tmp_path / "m.snap")
    code = ("import sys, pykern._fast as f\n"
            "from pykern import Machine\n"
            "m = Machine.restore(sys.argv[1])\n"
            "m.mm.check_invariants()\n"
            "print(f.CORE_COMPILED, m.mm.nr_free_pages(), m.read('/proc/buddyinfo'))\n")
    env = dict(os.environ, PYKERN_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.snap")], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == f"False {m.mm.nr_free_pages()} {m.read('/proc/buddyinfo')}\n"
