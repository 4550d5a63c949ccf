"""Task page faults (mm/memory.c do_anonymous_page -> alloc_anon_folio ->
vma_alloc_zeroed_movable_folio): the fault's gfp mask carries no __GFP_NOWARN, so a fault
that finds no page prints the allocator's failure warning (warn_alloc), and one failed by
fault injection prints fail_dump's report; the long-term pin's migration
(migrate_longterm_unpinnable_folios, GFP_USER | __GFP_NOWARN) stays silent."""

from __future__ import annotations

import errno

import pytest

from pykern import Machine
from pykern.testing.faults import configure_fail_page_alloc

FAULT_MODE = "mode:0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)"


def _every_alloc_a_point(m: Machine) -> None:
    configure_fail_page_alloc(m, min_order="0", ignore_gfp_wait="N", ignore_gfp_highmem="N")


def _since(m: Machine, n: int) -> list[tuple[int, str]]:
    return m.dmesg()[n:]


def test_do_anonymous_page_failure_prints_warn_alloc() -> None:
    """vma_alloc_zeroed_movable_folio asks for GFP_HIGHUSER_MOVABLE | __GFP_ZERO: when the
    slow path gives up, warn_alloc prints the page allocation failure line with that mode
    (at KERN_WARNING); the call fails with ENOMEM and gives every page back."""
    m = Machine("64M")
    t = m.new_task()
    free, buddy = m.mm.nr_free_pages(), m.read("/proc/buddyinfo")
    n = len(m.dmesg())
    with pytest.raises(OSError) as exc:
        t.mmap_anon(free + 1)
    assert exc.value.errno == errno.ENOMEM and t.mappings() == []
    warnings = [(lvl, text) for lvl, text in _since(m, n) if "page allocation failure" in text]
    assert warnings == [(4, f"pykern: page allocation failure: order:0, {FAULT_MODE}, "
                            "nodemask=(null)")]
    assert m.mm.nr_free_pages() == free and m.read("/proc/buddyinfo") == buddy


def test_do_anonymous_page_fail_nth_prints_fail_dump_for_the_task() -> None:
    """should_fail_ex through __should_fail_alloc_page: the fault carries no __GFP_NOWARN,
    so the injected failure is not FAULT_NOWARN and fail_dump prints its KERN_NOTICE report
    and dump_stack for the faulting task (its PID, the fault's caller in the trace); the
    forced NULL comes before any zone is tried, so there is no warn_alloc line."""
    m = Machine("64M")
    _every_alloc_a_point(m)
    t = m.new_task()
    buddy = m.read("/proc/buddyinfo")
    m.write(f"/proc/{t.pid}/fail-nth", "3")
    n = len(m.dmesg())
    with pytest.raises(OSError) as exc:
        t.mmap_anon(5)
    assert exc.value.errno == errno.ENOMEM and t.mappings() == []
    assert m.read(f"/proc/{t.pid}/fail-nth") == "0\n"
    lines = _since(m, n)
    text = [line for _, line in lines]
    assert lines[:2] == [(5, "FAULT_INJECTION: forcing a failure."),
                         (5, "name fail_page_alloc, interval 1, probability 0, space 0, "
                             "times 1")]
    assert text[2].startswith(f"CPU: 0 UID: 0 PID: {t.pid} Comm: pykern ")
    assert " __alloc_pages_noprof" in text and " mmap_anon" in text
    assert not any("page allocation failure" in line for line in text)
    assert m.read("/proc/buddyinfo") == buddy


def test_do_anonymous_page_fault_injection_with_verbose_0_is_silent_but_fails() -> None:
    """fail_dump prints nothing with verbose 0: the fault still fails (the report, not the
    failure, is what __GFP_NOWARN used to suppress)."""
    m = Machine("64M")
    _every_alloc_a_point(m)
    configure_fail_page_alloc(m, verbose="0")
    t = m.new_task()
    m.write(f"/proc/{t.pid}/fail-nth", "1")
    n = len(m.dmesg())
    with pytest.raises(OSError):
        t.mmap_anon(2)
    assert _since(m, n) == []


def test_longterm_pin_migration_stays_nowarn() -> None:
    """migrate_longterm_unpinnable_folios allocates its targets with GFP_USER |
    __GFP_NOWARN: an injected failure there is FAULT_NOWARN (no report), the pin fails with
    ENOMEM and nothing is pinned (MM M7.2)."""
    m = Machine("32M", cmdline="cma=4M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    t = m.new_task()
    va = t.mmap_anon(3000)
    inside = [k for k in range(3000)
              if cma.base_pfn <= t.pfn_of(va + 4096 * k) < cma.base_pfn + cma.count]
    assert inside
    _every_alloc_a_point(m)
    at = va + 4096 * inside[0]
    m.write(f"/proc/{t.pid}/fail-nth", "1")
    n = len(m.dmesg())
    with pytest.raises(OSError) as exc:
        t.pin(at, 1, longterm=True)
    assert exc.value.errno == errno.ENOMEM
    assert m.read(f"/proc/{t.pid}/fail-nth") == "0\n"
    assert not any(line.startswith("FAULT_INJECTION") for _, line in _since(m, n))
    assert m.mm.mem_map.pincount[t.pfn_of(at) - m.mm.mem_map.base_pfn] == 0
