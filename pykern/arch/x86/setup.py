"""x86_64 boot memory setup: ``setup_arch`` (``arch/x86/kernel/setup.c``), ``parse_memopt``
(``arch/x86/kernel/e820.c``), ``reserve_real_mode`` (``arch/x86/realmode/init.c``) and
``zone_sizes_init`` (``arch/x86/mm/init.c``).

[model] ``mem=`` trims memory before the kernel image is reserved (the kernel reserves it in
``early_reserve_memory`` first); pykern clips reservations to memory, so the order only
matters for an image beyond ``mem=``, which pykern does not reserve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...constants import SZ_16M, SZ_1M, SZ_4G
from ...kernel.crash_reserve import arch_reserve_crashkernel
from ...kernel.dma.contiguous import cma_declare_boot_areas, dma_contiguous_reserve
from ...mm.mm_init import free_area_init
from ...mm.mmzone import PAGE_SHIFT, PAGE_SIZE
from .. import reserve_kernel_image

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["setup_arch", "parse_memopt", "zone_sizes_init", "X86_IMAGE", "MAX_DMA_PFN",
           "MAX_DMA32_PFN"]

#: The running kernel's default image: 16 MiB at its default load address (MM Z0.2).
X86_IMAGE = (SZ_16M, SZ_16M + SZ_16M)
#: ``MAX_DMA_PFN`` (16 MiB) and ``MAX_DMA32_PFN`` (4 GiB): the tops of ZONE_DMA, ZONE_DMA32.
MAX_DMA_PFN = SZ_16M >> PAGE_SHIFT
MAX_DMA32_PFN = SZ_4G >> PAGE_SHIFT


def parse_memopt(m: Machine, mem_size: int) -> None:
    """``parse_memopt`` (MM Z0.1): ``mem=`` removes the memory at and above ``mem_size``
    (cut at a page boundary)."""
    mb = m.kernel.memblock
    cut = mem_size & ~(PAGE_SIZE - 1)
    end = mb.memblock_end_of_DRAM()
    if cut < end:
        mb.memblock_remove(cut, end - cut)


def zone_sizes_init(m: Machine) -> None:
    """``zone_sizes_init`` (MM Z1): ZONE_DMA below 16 MiB, ZONE_DMA32 below 4 GiB,
    ZONE_NORMAL to the end of memory."""
    end = m.kernel.memblock.memblock_end_of_DRAM() >> PAGE_SHIFT
    free_area_init(m, [MAX_DMA_PFN, MAX_DMA32_PFN, end])


def setup_arch(m: Machine) -> None:
    """``setup_arch`` (MM Z0): memory from the e820 table (the bank, or what the previous
    kernel handed over), ``mem=``, the kernel image and the first MiB
    (``early_reserve_memory``, ``reserve_real_mode``, Z0.2), the EFI memreserve table after
    a kexec (GIC-N2), the default CMA area below ``max_pfn_mapped`` (D3), the other boot
    areas (CMA2), ``crashkernel=`` (Z0.5), then the zones (``paging_init``)."""
    k = m.kernel
    mb = k.memblock
    for base, size in (k.handover["memory"] if k.handover else m.banks):
        mb.memblock_add(base, size)
    if k.boot_params.mem is not None:
        parse_memopt(m, k.boot_params.mem)
    if not mb.memory:
        raise ValueError(f"mem={k.boot_params.mem}: leaves no memory")
    reserve_kernel_image(m, X86_IMAGE, [(0, SZ_1M), X86_IMAGE])
    if k.handover:
        for base, size in m.efi_memreserve:
            mb.memblock_reserve(base, size)
    k.dma_phys_limit = mb.memblock_end_of_DRAM()
    dma_contiguous_reserve(m, k.dma_phys_limit)
    cma_declare_boot_areas(m)
    arch_reserve_crashkernel(m)
    zone_sizes_init(m)
