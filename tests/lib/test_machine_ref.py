"""Per-boot objects hold their machine weakly (pykern.lib.machine_ref): a dropped machine is
freed at once, RAM mapping included, not when the cyclic garbage collector next runs."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import pytest

from pykern import Machine
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA
from pykern.testing.fuzz.cases import Config, draw_case


def _freed_without_gc(make: Callable[[], Machine]) -> bool:
    gc.collect()
    gc.disable()
    try:
        ref = weakref.ref(make())
        return ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_a_dropped_machine_is_freed_by_reference_counting(arch: str) -> None:
    """Machine, CMA areas (cma=) and fault injection (fail_page_alloc=) build no cycle."""
    assert _freed_without_gc(lambda: Machine("64M", arch=arch, cmdline="cma=8M"))
    assert _freed_without_gc(lambda: Machine("64M", arch=arch,
                                             cmdline="fail_page_alloc=1,0,0,1"))


def test_a_machine_is_freed_after_a_load_and_a_reboot() -> None:
    case = draw_case(Config(seed=1), 0)

    def cycle() -> Machine:
        m = Machine(**case.layout)
        m.kexec_file_load(case.kernel, case.initrd, case.cmdline,
                          case.flags | KEXEC_FILE_NO_CMA)
        assert m.kernel_kexec().verified
        return m
    assert _freed_without_gc(cycle)


def test_a_cma_area_outliving_its_machine_says_so() -> None:
    m = Machine("64M", cmdline="cma=8M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    del m
    with pytest.raises(ReferenceError, match="Cma: the machine it belonged to no longer"):
        cma.alloc(1, 0)


def test_snapshots_keep_the_back_reference() -> None:
    """fork() pickles the machine: the copy's CMA area allocates from the copy."""
    m = Machine("64M", cmdline="cma=8M")
    twin = m.fork()
    cma = twin.dma_contiguous_default_area
    assert cma is not None and cma._m is twin
    before = [bytes(r.bitmap) for r in m.dma_contiguous_default_area.ranges]  # type: ignore[union-attr]
    assert cma.alloc(4, 0) is not None
    assert [bytes(r.bitmap) for r in cma.ranges] != before
    assert [bytes(r.bitmap) for r in m.dma_contiguous_default_area.ranges] == before  # type: ignore[union-attr]
