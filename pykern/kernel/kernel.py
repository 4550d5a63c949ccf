"""``m.kernel``: the state of the kernel running on a machine, one generation's worth.

A :class:`~pykern.machine.Machine` is the hardware, and what survives a kexec: RAM, banks,
CPUs, devices, the seed, the firmware's EFI tables.  Everything a boot builds and the next
boot throws away lives here: the kernel's globals (``memblock``, the zones and the page
allocator, the log buffer, the task list, the CMA areas, the kexec state, ``tainted``,
``argv_init``/``envp_init``...).  :func:`pykern.init.main.start_kernel` creates one at every
boot and fills it in the order ``start_kernel`` does; the machine's public names
(``m.mm``, ``m.kexec_image``, ``m.tasks``, ...) are read-only views into it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..mm.memblock import Memblock
from .kexec.core import KexecState
from .params import BootParams
from .printk import KernelLog

if TYPE_CHECKING:
    from ..lib.fault_inject import FaultInject
    from ..mm.cma import Cma
    from ..mm.mmzone import Zone
    from ..mm.page_alloc import PageAlloc
    from ..mm.rmap import Rmap
    from ..mm.task import Task
    from .dynamic_debug import DynamicDebug

__all__ = ["Kernel"]


class Kernel:
    """The running kernel of one generation (``m.kernel``).

    Attributes set while :func:`~pykern.init.main.start_kernel` runs (``mm``, ``zones``,
    ``rmap``, ``fault_inject``, ``vm_stat_threshold``, ``dynamic_debug``) do not exist
    before the step that makes them, as the kernel's own globals are not valid before
    their initcall.
    """

    #: ``free_area_init``: ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE.
    zones: list[Zone]
    #: The page allocator (``mm/page_alloc.c``) over this boot's memmap.
    mm: PageAlloc
    #: ``mm/rmap.c``: the owner of every anonymous page.
    rmap: Rmap
    #: lib/fault-inject.c state of this boot: the tasks' fail-nth and make-it-fail.
    fault_inject: FaultInject
    #: ``calculate_normal_threshold`` of each zone, fixed at boot (MM T3.5).
    vm_stat_threshold: list[int]
    #: ``lib/dynamic_debug.c``: which ``pr_debug`` sites print.
    dynamic_debug: DynamicDebug

    def __init__(self, boot_params: BootParams, *, seed: int, generation: int,
                 handover: dict[str, Any] | None = None, crash_kernel: bool = False) -> None:
        #: The parsed command line this kernel booted with.
        self.boot_params = boot_params
        #: What the previous kernel handed over (K16.13): kernel, memory, reservations,
        #: initrd, dtb; None for the kernel the machine powered on with.
        self.handover = handover
        #: ``is_kdump_kernel()``: booted by ``__crash_kexec`` (GIC-N4).
        self.crash_kernel = crash_kernel
        #: The printk ring buffer (``m.dmesg()``).
        self.log = KernelLog()
        self.memblock = Memblock()
        #: ``argv_init`` / ``envp_init`` (init/main.c): what init would be started with.
        self.init_argv: list[str] = list(boot_params.init_argv)
        self.init_envp: list[str] = list(boot_params.init_envp)
        #: [start, end) of the running kernel's image, None when ``reserved=`` replaced it.
        self.kernel_image: tuple[int, int] | None = None
        #: ``arm64_dma_phys_limit`` / x86 ``max_pfn_mapped << PAGE_SHIFT``: the limit of
        #: ``dma_contiguous_reserve`` (and of arm64's low crash kernel), set by setup_arch.
        self.dma_phys_limit = 0
        #: ``cma_areas[]`` in declaration order (mm/cma.c) and the global area
        #: (``dma_contiguous_default_area``, kernel/dma/contiguous.c).
        self.cma_areas: list[Cma] = []
        self.dma_contiguous_default_area: Cma | None = None
        #: The user processes by pid, and the next pid to hand out.
        self.tasks: dict[int, Task] = {}
        self.next_pid = 1
        #: ``tainted_mask`` (kernel/panic.c).
        self.tainted = 0
        #: The kexec globals (kernel/kexec_core.c, kernel/crash_reserve.c).
        self.kexec = KexecState(f"pykern-kexec-{seed}-{generation}")
        #: The device tree this kernel booted with (arm64 after a kexec), else built on
        #: first use (``m.boot_dtb``).
        self.boot_dtb: bytes | None = handover.get("dtb") if handover else None

    def __repr__(self) -> str:
        return f"<Kernel cmdline={self.boot_params.cmdline!r}>"
