"""The machine and the kernel running on it: ``m.kernel`` is built afresh at every boot
(MM Z0, K16.13), the machine keeps only what survives a kexec, its views of the kernel are
read-only, and a halted machine (K16.13, K17.4) refuses every way into the kernel's state.
"""

from __future__ import annotations

import pytest

import pykern.mm.gfp as gfp
from pykern import KEXEC_FILE_NO_CMA, Machine, images
from pykern.drivers.gic import GICv3
from pykern.kernel.kernel import Kernel

#: What a boot builds; none of it may sit in the machine's own attributes.
KERNEL_STATE = ("mm", "log", "memblock", "zones", "tasks", "rmap", "cma_areas",
                "dma_contiguous_default_area", "boot_params", "init_argv", "init_envp",
                "tainted", "crashk_res", "kexec_image", "kexec_crash_image", "kexec_rng",
                "kexec_in_progress", "kexec_file_dbg_print", "kexec_load_disabled",
                "fault_inject", "dynamic_debug", "vm_stat_threshold", "kernel_image")


def test_mm_z0_each_boot_builds_a_new_kernel_and_the_machine_keeps_the_hardware() -> None:
    """K16.13 / MM Z0: a reboot into a loaded image starts a new ``m.kernel`` (nothing
    loaded, a log that starts with the banner, the pid counter and the crash region from
    the new command line) on the same RAM, devices and seed; the old kernel's state is left
    as it was, and the machine itself holds none of it."""
    gic = GICv3()
    m = Machine("256M", cmdline="cma=32M crashkernel=16M", devices=[gic], seed=3)
    k0 = m.kernel
    m.new_task()
    m.phys_write(0x4F00_0000, b"survives")
    m.kexec_file_load(images.arm64_image(2 << 20), None, "cma=32M", KEXEC_FILE_NO_CMA)
    assert m.kexec_image is k0.kexec.kexec_image is not None
    r = m.kernel_kexec()
    assert r.booted and m.generation == 1
    k1 = m.kernel
    assert isinstance(k1, Kernel) and k1 is not k0
    assert k1.kexec.kexec_image is None and m.kexec_image is None
    assert k0.kexec.kexec_image is not None                  # the old kernel, untouched
    assert k1.kexec.crashk_res is None and k0.kexec.crashk_res is not None
    assert m.crashk_res is None and m.cmdline == "cma=32M"
    assert m.tasks == {} and k1.tasks is not k0.tasks and m.new_task().pid == 1
    assert m.dmesg()[0][1].startswith("Linux version ") and m.log is k1.log
    assert m.devices["gic"] is gic and gic.machine is m and m.seed == 3
    assert m.phys_read(0x4F00_0000, 8) == b"survives"
    assert not set(KERNEL_STATE) & set(vars(m))


def test_views_of_the_running_kernel_are_read_only() -> None:
    """The machine's names for the running kernel's state (``m.mm``, ``m.kexec_image``,
    ``m.crashk_res``, ...) read ``m.kernel`` and cannot be assigned: the kernel's state
    changes only through the kernel's own paths."""
    m = Machine("128M", cmdline="cma=8M")
    assert m.mm is m.kernel.mm and m.cma_areas is m.kernel.cma_areas
    assert m.dma_contiguous_default_area is m.kernel.dma_contiguous_default_area
    for name in ("mm", "log", "kexec_image", "kexec_crash_image", "crashk_res", "tasks",
                 "tainted", "cma_areas", "dma_contiguous_default_area", "init_argv"):
        with pytest.raises(AttributeError):
            setattr(m, name, None)
    m.copy_ns = 1000                      # hardware settings stay plain attributes
    assert m.copy_ns == 1000


def test_k17_4_halted_machine_refuses_every_way_into_the_kernel() -> None:
    """K17.4: a panic with no crash image halts; after it the kernel's state cannot be
    reached by any path — the machine's calls, ``m.kernel``, ``m.mm``, and objects taken
    before the halt (a CMA area, a task) — while RAM and what the last kernel logged stay
    readable."""
    m = Machine("64M", cmdline="cma=8M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    task = m.new_task()
    task.mmap_anon(1)
    assert m.panic() is None and m.halted
    for call in (lambda: m.kernel, lambda: m.mm, lambda: cma.alloc(1, 0),
                 lambda: task.mmap_anon(1), lambda: task.exit(),
                 lambda: m.read("/proc/meminfo"), lambda: m.write("/proc/sys/vm/defrag_mode", "1"),
                 lambda: m.dmesg(), lambda: m.new_task(), lambda: m.kernel_kexec(),
                 lambda: m.panic(), lambda: m.kexec_file_load(b"", None, "", 0),
                 lambda: m.dma_alloc_from_contiguous(None, 1, 0),
                 lambda: m.mm.alloc_pages(gfp.GFP_KERNEL, 0)):
        with pytest.raises(RuntimeError, match="halted"):
            call()
    assert m.log.lines()[-1] == (0, "Kernel panic - not syncing: no crash kernel loaded")
    assert m.kexec_image is None and m.cmdline == "cma=8M"
    assert m.phys_read(0x4000_0000, 4) == bytes(4)


@pytest.mark.parametrize("cmdline", ["mem=0", "sysctl.vm.min_free_kbytes=-5"])
def test_gic_m3_a_refused_boot_keeps_none_of_its_devices(cmdline: str) -> None:
    """GIC-M3: a device belongs to one machine.  A machine whose first boot is refused
    (``ValueError``) gives its devices back, so they can go into the next one."""
    gic = GICv3()
    with pytest.raises(ValueError, match=cmdline.split("=")[0]):
        Machine("256M", cmdline=cmdline, devices=[gic])
    assert gic.machine is None
    m = Machine("256M", devices=[gic])
    assert gic.machine is m and m.devices["gic"] is gic
