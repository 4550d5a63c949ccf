"""``init/main.c``: ``start_kernel``, one boot of a generation on a machine (MM Z0).

The machine is the hardware and keeps what survives a kexec; :func:`start_kernel` builds
``m.kernel`` (:class:`~pykern.kernel.kernel.Kernel`) afresh and runs the boot steps that
fill it, each a module-level function where Linux keeps it: ``setup_arch``
(``pykern.arch.<arch>.setup``), ``free_area_init``/``memblock_free_all``
(:mod:`pykern.mm.mm_init`), ``reserve_crashkernel_generic``
(:mod:`pykern.kernel.crash_reserve`), ``dma_contiguous_reserve``
(:mod:`pykern.kernel.dma.contiguous`), ``cma_init_reserved_areas`` (:mod:`pykern.mm.cma`),
``do_sysctl_args`` (:mod:`pykern.fs.proc.sysctl`), ``free_initrd_mem``
(:mod:`pykern.init.initramfs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..arch.arm64 import setup as _arm64_setup
from ..arch.x86 import setup as _x86_setup
from ..fs.proc.sysctl import do_sysctl_args
from ..kernel.dynamic_debug import dynamic_debug_init
from ..kernel.kernel import Kernel
from ..kernel.params import BootParams
from ..kernel.printk import KERN_NOTICE, KERN_WARNING
from ..mm.cma import cma_init_reserved_areas
from ..mm.fail_page_alloc import fail_page_alloc_init
from ..mm.mm_init import mem_init_print_info, memblock_free_all
from ..mm.page_alloc import init_per_zone_wmark_min, set_mobility_grouping
from ..mm.rmap import Rmap
from ..mm.vmstat import calculate_normal_threshold
from .initramfs import free_initrd_mem
from .version import linux_banner

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["start_kernel", "setup_arch", "print_unknown_bootoptions"]


def print_unknown_bootoptions(k: Kernel) -> None:
    """``print_unknown_bootoptions``: the parameters the kernel did not know, which init
    gets (``argv_init``/``envp_init``), in one notice."""
    unknown = k.boot_params.unknown
    if unknown:
        k.log.printk(KERN_NOTICE, f'Unknown kernel command line parameters "{unknown}", '
                                  f'will be passed to user space.')


def setup_arch(m: Machine) -> None:
    """``setup_arch``: the arch's memory setup (``pykern.arch.arm64.setup`` or
    ``pykern.arch.x86.setup``), from memblock to the zones."""
    (_arm64_setup if m.arch == "arm64" else _x86_setup).setup_arch(m)


def start_kernel(m: Machine, boot_params: BootParams, handover: dict[str, Any] | None = None,
                 crash_kernel: bool = False) -> Kernel:
    """``start_kernel`` and the initcalls after it (MM Z0): boot a kernel on ``m`` and make
    it ``m.kernel``.  ``handover`` is what the previous kernel passed (None at power-on);
    ``crash_kernel`` says ``__crash_kexec`` started it.

    The order: the banner and command line; ``setup_arch`` (memory, ``mem=``, the kernel
    image, the EFI memreserve table, the CMA areas, ``crashkernel=``, the zones); the page
    allocator's fault injection and reverse map; ``memblock_free_all`` (Z4);
    ``cma_init_reserved_areas`` (CMA5); ``init_per_zone_wmark_min`` (Z6); the
    ``sysctl.*`` parameters; mobility grouping; the vmstat thresholds; the ``Memory:``
    line; dynamic debug; irqchip probe (GIC-B1); at last the initrd's memory is freed
    (Z0.3).

    [model] The command line, its ``__setup`` warnings and the unknown parameters are
    logged before ``setup_arch``; the kernel prints them after it.  Raises ``ValueError``
    for a boot that cannot happen (``mem=`` leaving no memory, a refused ``sysctl.*``).
    """
    k = Kernel(boot_params, seed=m.seed, generation=m.generation, handover=handover,
               crash_kernel=crash_kernel)
    m.kernel = k
    log = k.log
    log.printk(KERN_NOTICE, linux_banner(m).rstrip("\n"))
    log.printk(KERN_NOTICE, f"Kernel command line: {boot_params.cmdline}")
    for text in boot_params.setup_warnings:     # __setup handlers refusing their value
        log.printk(KERN_WARNING, text)
    print_unknown_bootoptions(k)
    setup_arch(m)
    k.fault_inject = fail_page_alloc_init(m)
    k.rmap = Rmap(k.mm.mem_map.base_pfn, k.mm.mem_map.nr_slots)
    memblock_free_all(m)
    cma_init_reserved_areas(m)
    init_per_zone_wmark_min(k.mm)
    do_sysctl_args(m)
    set_mobility_grouping(k.mm)
    k.vm_stat_threshold = [calculate_normal_threshold(z, m.cpus) for z in k.zones]
    mem_init_print_info(m)
    dynamic_debug_init(m)
    # GIC-B1: init_IRQ probes the irqchips early in start_kernel, long before the
    # initramfs is unpacked and its memory freed.
    for dev in m.devices.values():
        dev.probe(m)
    if handover and handover.get("initrd"):
        free_initrd_mem(m, *handover["initrd"])
    return k
