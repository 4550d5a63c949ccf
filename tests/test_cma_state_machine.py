"""Random tasks, pins, CMA and plain allocations; the invariants hold after every step
(the MM I, M, R, CMA and D rules, and MM V1)."""

from __future__ import annotations

import errno
import random
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pykern import Machine
from pykern.mm import gfp

_NOWARN = gfp.__GFP_NOWARN  # a class body would mangle the dunder name


class CmaMachine(RuleBasedStateMachine):
    """Tasks write data, pin, exit; CMA and the buddy allocator are exercised around them."""

    def __init__(self) -> None:
        super().__init__()
        self.m: Machine = Machine("64M", cmdline="cma=40M")
        self.tasks: list[dict[str, Any]] = []
        self.cma_live: list[tuple[int, int]] = []
        self.pages: list[tuple[int, int]] = []

    @initialize(ram=st.sampled_from(["64M", "96M"]), cma=st.sampled_from(["32M", "40M"]))
    def boot(self, ram: str, cma: str) -> None:
        self.m = Machine(ram, cmdline=f"cma={cma}")

    @rule(npages=st.integers(1, 300), seed=st.integers(0, 255))
    def task_map(self, npages: int, seed: int) -> None:
        t = self.m.new_task()
        try:
            va = t.mmap_anon(npages)
        except OSError as exc:
            assert exc.errno == errno.ENOMEM
            t.exit()
            return
        data = random.Random(seed).randbytes(npages * 4096)
        t.write(va, data)
        self.tasks.append({"t": t, "va": va, "n": npages, "data": data, "pins": []})

    @precondition(lambda self: self.tasks)
    @rule(k=st.integers(0, 100), first=st.integers(0, 299), longterm=st.booleans())
    def pin(self, k: int, first: int, longterm: bool) -> None:
        task = self.tasks[k % len(self.tasks)]
        page = first % task["n"]
        try:
            task["t"].pin(task["va"] + page * 4096, 1, longterm=longterm)
        except OSError as exc:
            assert longterm and exc.errno == errno.ENOMEM
            return
        task["pins"].append(page)

    @precondition(lambda self: any(t["pins"] for t in self.tasks))
    @rule(k=st.integers(0, 100))
    def unpin(self, k: int) -> None:
        pinned = [t for t in self.tasks if t["pins"]]
        task = pinned[k % len(pinned)]
        page = task["pins"].pop()
        task["t"].unpin(task["va"] + page * 4096, 1)

    @precondition(lambda self: self.tasks)
    @rule(k=st.integers(0, 100))
    def task_exit(self, k: int) -> None:
        task = self.tasks.pop(k % len(self.tasks))
        task["t"].exit()

    @rule(count=st.integers(1, 6000), align=st.integers(0, 9))
    def cma_alloc(self, count: int, align: int) -> None:
        cma = self.m.dma_contiguous_default_area
        assert cma is not None
        page = cma.alloc(count, align, no_warn=True)
        if page is not None:
            assert page.pfn % (1 << align) == 0  # MM CMA7.1-7.2
            self.cma_live.append((page.pfn, count))

    @precondition(lambda self: self.cma_live)
    @rule(k=st.integers(0, 100))
    def cma_release(self, k: int) -> None:
        pfn, count = self.cma_live.pop(k % len(self.cma_live))
        cma = self.m.dma_contiguous_default_area
        assert cma is not None and cma.release(pfn, count)

    @rule(order=st.integers(0, 10), kind=st.sampled_from(["kernel", "movable"]))
    def alloc_pages(self, order: int, kind: str) -> None:
        mask = gfp.GFP_KERNEL if kind == "kernel" else gfp.GFP_HIGHUSER_MOVABLE
        page = self.m.mm.alloc_pages(mask | _NOWARN, order)
        if page is not None:
            self.pages.append((page.pfn, order))

    @precondition(lambda self: self.pages)
    @rule(k=st.integers(0, 100))
    def free_pages(self, k: int) -> None:
        pfn, order = self.pages.pop(k % len(self.pages))
        self.m.mm.free_pages(pfn, order)

    @invariant()
    def tasks_read_back(self) -> None:
        for task in self.tasks:
            assert task["t"].read(task["va"], task["n"] * 4096) == task["data"]

    @invariant()
    def bitmap_matches_live_allocations(self) -> None:
        cma = self.m.dma_contiguous_default_area
        assert cma is not None
        expected = 0
        for pfn, count in self.cma_live:
            first = pfn - cma.base_pfn
            expected |= ((1 << count) - 1) << first
        assert cma.bitmap() == expected
        assert cma.available_count == cma.count - sum(c for _, c in self.cma_live)

    @invariant()
    def nothing_both_free_and_used(self) -> None:
        mm = self.m.mm
        for pfn, count in self.cma_live:
            assert not mm.page_is_free(pfn) and not mm.page_is_free(pfn + count - 1)
        for pfn, order in self.pages:
            assert not mm.page_is_free(pfn)
        for task in self.tasks:
            for k in range(0, task["n"], 37):
                assert not mm.page_is_free(task["t"].pfn_of(task["va"] + k * 4096))

    @invariant()
    def allocator_consistent(self) -> None:
        self.m.mm.check_invariants()
        zone_free = [sum(z.nr_free) for z in self.m.mm.zones if z.populated_zone()]
        lines = self.m.read("/proc/buddyinfo").splitlines()
        assert [sum(int(x) for x in line.split()[4:]) for line in lines] == zone_free


CmaMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=25,
                                        deadline=None)
TestCmaMachine = CmaMachine.TestCase
