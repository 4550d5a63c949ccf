"""arm64 boot memory setup: ``setup_arch`` (``arch/arm64/kernel/setup.c``) and
``arm64_memblock_init``, ``bootmem_init``, ``zone_sizes_init`` (``arch/arm64/mm/init.c``).

[model] The order is pykern's (MM Z0.4): the CMA areas and ``crashkernel=`` are reserved
before ``zone_sizes_init`` logs the zone ranges, as x86 does; arm64's ``bootmem_init``
sizes the zones first.  Nothing else depends on it, since zone sizes come from memory, not
reservations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...constants import SZ_16M, SZ_4G
from ...kernel.crash_reserve import arch_reserve_crashkernel
from ...kernel.dma.contiguous import cma_declare_boot_areas, dma_contiguous_reserve
from ...mm.memblock import memblock_mem_limit_remove_map
from ...mm.mm_init import free_area_init
from ...mm.mmzone import PAGE_SHIFT
from .. import reserve_kernel_image

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["setup_arch", "arm64_memblock_init", "bootmem_init", "zone_sizes_init",
           "max_zone_phys", "ARM64_IMAGE_SIZE"]

#: The running kernel's default image size, from the lowest bank's base (MM Z0.2).
ARM64_IMAGE_SIZE = SZ_16M


def max_zone_phys(m: Machine) -> int:
    """``max_zone_phys(32)``: the top of ZONE_DMA (and of the 32-bit range), 4 GiB capped at
    the end of memory, or all memory when it starts at or above 4 GiB (MM Z1; QEMU virt has
    no firmware DMA limit)."""
    mb = m.kernel.memblock
    end = mb.memblock_end_of_DRAM()
    return end if mb.memblock_start_of_DRAM() >= SZ_4G else min(end, SZ_4G)


def arm64_memblock_init(m: Machine) -> None:
    """``arm64_memblock_init`` (MM Z0.1, Z0.2): ``mem=`` keeps the first bytes of memory
    (``memblock_mem_limit_remove_map``), then the kernel image is reserved."""
    k = m.kernel
    if k.boot_params.mem is not None:
        memblock_mem_limit_remove_map(k.memblock, k.boot_params.mem)
    if not k.memblock.memory:
        raise ValueError(f"mem={k.boot_params.mem}: leaves no memory")
    image = (m.banks[0][0], m.banks[0][0] + ARM64_IMAGE_SIZE)
    reserve_kernel_image(m, image, [image])


def zone_sizes_init(m: Machine) -> None:
    """``zone_sizes_init`` (MM Z1): ZONE_DMA up to ``max_zone_phys(32)``, ZONE_DMA32 empty
    above it, ZONE_NORMAL to the end of memory."""
    dma = max_zone_phys(m) >> PAGE_SHIFT
    end = m.kernel.memblock.memblock_end_of_DRAM() >> PAGE_SHIFT
    free_area_init(m, [dma, dma, end])


def bootmem_init(m: Machine) -> None:
    """``bootmem_init`` (MM Z0.4): the default CMA area below ``arm64_dma_phys_limit`` (D3),
    the other boot areas (CMA2), ``crashkernel=`` (Z0.5), then the zones."""
    m.kernel.dma_phys_limit = max_zone_phys(m)
    dma_contiguous_reserve(m, m.kernel.dma_phys_limit)
    cma_declare_boot_areas(m)
    arch_reserve_crashkernel(m)
    zone_sizes_init(m)


def setup_arch(m: Machine) -> None:
    """``setup_arch`` (MM Z0): memory from the device tree (the banks, or what the previous
    kernel handed over), ``arm64_memblock_init``, the EFI memreserve table, ``bootmem_init``.

    GIC-N2: after a kexec ``efi_init`` parses the EFI configuration tables and
    ``efi_config_parse_tables`` memblock-reserves the LINUX_EFI_MEMRESERVE entries, before
    ``bootmem_init`` places the CMA areas and the crash kernel.
    """
    k = m.kernel
    for base, size in (k.handover["memory"] if k.handover else m.banks):
        k.memblock.memblock_add(base, size)
    arm64_memblock_init(m)
    if k.handover:
        for base, size in m.efi_memreserve:
            k.memblock.memblock_reserve(base, size)
    bootmem_init(m)
