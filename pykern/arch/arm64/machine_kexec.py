"""arm64 machine hooks for kexec (``arch/arm64/kernel/machine_kexec.c``), ARCH A37–A43."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...kernel.kexec.core import (
    KexecError, KImage, _alloc_context, kimage_alloc_control_pages,
)
from ...kernel.kexec.uapi import IND_DONE, KEXEC_TYPE_CRASH
from .kexec_image import image_load, image_probe

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["Arm64Kexec"]

_U64 = (1 << 64) - 1


def trans_pgd_pages(m: Machine) -> int:
    """[model] Control pages for the copy of the linear map plus the idmap.

    The linear map is mapped with 4 KiB pages (arm64 defconfig has rodata=full):
    one table page per level-3 run of 2 MiB, per 1 GiB and per 512 GiB of RAM
    span, a pgd, and four pages for the identity map of the relocation code.
    """
    span = m.kernel.memblock.memblock_end_of_DRAM() - m.kernel.memblock.memblock_start_of_DRAM()
    ptes = -(-span // (2 << 20))
    pmds = -(-span // (1 << 30))
    puds = -(-span // (512 << 30))
    return 1 + puds + pmds + ptes + 4


class Arm64Kexec:
    """The arm64 side of kexec_file (one Image loader, memblock walk, no purgatory)."""

    name = "arm64"
    destination_memory_limit = _U64
    source_memory_limit = _U64
    control_memory_limit = _U64
    has_purgatory = False

    def probe(self, m: Machine, kernel: bytes) -> int:
        return image_probe(kernel)

    def crash_hotplug_support(self, m: Machine) -> bool:
        """arm64 has no ARCH_SUPPORTS_CRASH_HOTPLUG in 6.17/6.18."""
        return False

    def load(self, m: Machine, image: KImage, kernel: bytes, initrd: bytes | None,
             cmdline: bytes) -> None:
        image_load(m, image, kernel, initrd, cmdline)

    def walk_ranges(self, m: Machine, image: KImage, top_down: bool) -> list[tuple[int, int]]:
        """``kexec_walk_memblock`` (K6.2, arm64): the crash region, or the free memblock ranges
        (inclusive ends)."""
        if image.image_type == KEXEC_TYPE_CRASH:
            crashk_res = m.kernel.kexec.crashk_res
            if crashk_res is None:
                return [(0, 0)]
            return [(crashk_res[0], crashk_res[1] - 1)]
        ranges = [(b, e - 1) for b, e in m.kernel.memblock.for_each_free_mem_range()]
        return ranges[::-1] if top_down else ranges

    def machine_kexec_prepare(self, m: Machine, image: KImage) -> None:
        """``machine_kexec_prepare`` (K1.9): nothing to prepare (no CPU is stuck in pykern)."""

    def calculate_store_digests(self, m: Machine, image: KImage) -> None:
        """``kexec_calculate_store_digests`` (K13.5): nothing, arm64 has no purgatory."""

    def post_load(self, m: Machine, image: KImage) -> None:
        """``machine_kexec_post_load`` (K16.6 / ARCH A38): page tables for the relocation code
        unless DONE-only."""
        if image.head & IND_DONE:
            image.arch["relocation"] = False
            return
        image.arch["relocation"] = True
        tables = []
        ctx = _alloc_context(m, image)     # looked up once for the whole run of pages
        for _ in range(trans_pgd_pages(m)):
            page = kimage_alloc_control_pages(m, image, 0, ctx)
            if page is None:
                raise KexecError(12, "no control page for the relocation page tables")
            tables.append(page)
        image.arch["trans_pgd"] = tables
