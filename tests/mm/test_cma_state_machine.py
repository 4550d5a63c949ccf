"""Random tasks, pins, CMA and plain allocations, without kexec; the invariants hold after
every step (the MM I, M, R, CMA and D rules, and MM V1).

The machine is :class:`pykern.testing.KexecStateMachine` itself, on CMA-heavy layouts, with
its kexec rules switched off and the CMA invariants added: one set of rules for both.
"""

from __future__ import annotations

import pytest

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant

from pykern import Machine
from pykern.testing import KexecStateMachine


class CmaMachine(KexecStateMachine):
    """Tasks write data, pin, exit; CMA and the buddy allocator are exercised around them."""

    # The kexec rules are switched off: a name that no longer holds a rule is no rule.
    load = load_crash = unload = reboot = panic = None  # type: ignore[assignment]

    @initialize(ram=st.sampled_from(["64M", "96M"]), cma=st.sampled_from(["32M", "40M"]))
    def boot(self, ram: str, cma: str) -> None:  # type: ignore[override]
        self.layout = {"ram": ram, "cmdline": f"cma={cma}"}
        self.m = Machine(**self.layout, fixes=self.fixes)
        self._reset_tracking()

    @invariant()
    def bitmap_matches_live_allocations(self) -> None:
        """MM CMA7: the bitmap is exactly the live blocks; available_count agrees."""
        cma = self.m.dma_contiguous_default_area
        assert cma is not None
        expected = 0
        for page, count in self.cma_blocks:
            expected |= ((1 << count) - 1) << (page.pfn - cma.base_pfn)
        assert cma.bitmap() == expected
        assert cma.available_count == cma.count - sum(c for _, c in self.cma_blocks)

    @invariant()
    def nothing_both_free_and_used(self) -> None:
        mm = self.m.mm
        for page, count in self.cma_blocks:
            assert not mm.page_is_free(page.pfn) and not mm.page_is_free(page.pfn + count - 1)
        for pfn, _ in self.pages:
            assert not mm.page_is_free(pfn)
        for task in self.tasks:
            for k in range(0, task["n"], 37):
                assert not mm.page_is_free(task["t"].pfn_of(task["va"] + k * 4096))

    @invariant()
    def buddyinfo_matches_the_free_lists(self) -> None:
        """MM V1 and T1: the allocator's own checks, and /proc/buddyinfo sums to nr_free."""
        self.m.mm.check_invariants()
        zone_free = [sum(z.nr_free) for z in self.m.mm.zones if z.populated_zone()]
        lines = self.m.read("/proc/buddyinfo").splitlines()
        assert [sum(int(x) for x in line.split()[4:]) for line in lines] == zone_free


CmaMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=25,
                                        deadline=None)
TestCmaMachine = pytest.mark.slow(CmaMachine.TestCase)


def test_the_kexec_rules_are_off_and_the_memory_rules_on() -> None:
    names = {r.function.__name__ for r in CmaMachine().rules}
    assert not names & {"load", "load_crash", "unload", "reboot", "panic"}
    assert {"task_map", "pin", "unpin", "cma_alloc", "cma_release", "alloc_pages",
            "free_pages"} <= names
