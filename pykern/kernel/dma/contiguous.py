"""``kernel/dma/contiguous.c``: the global CMA area and the DMA wrappers (the MM D rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...mm.cma import Cma, cma_declare_contiguous_nid
from ...mm.page import Page

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["CMA_SIZE_MBYTES", "CONFIG_CMA_ALIGNMENT", "dma_contiguous_reserve",
           "cma_declare_boot_areas", "dev_get_cma_area", "dma_alloc_from_contiguous",
           "dma_release_from_contiguous"]

#: CONFIG_CMA_SIZE_MBYTES per arch defconfig (MM C1.15); a machine reads ``m.config``.
CMA_SIZE_MBYTES = {"arm64": 32, "x86_64": 0}
#: The Kconfig default; a machine reads ``m.config["CMA_ALIGNMENT"]``.
CONFIG_CMA_ALIGNMENT = 8


def dma_contiguous_reserve(m: Machine, limit: int) -> None:
    """``dma_contiguous_reserve`` (MM D3): reserve the default area named ``reserved`` at
    boot, below ``limit`` (``arm64_dma_phys_limit``, x86 ``max_pfn_mapped``)."""
    k = m.kernel
    param = k.boot_params.cma
    if param is not None:
        size, base, fixed = param.size, param.base, param.fixed
        sel_limit = min(param.limit, limit) if param.limit else limit
    else:
        size, base, fixed, sel_limit = m.config["CMA_SIZE_MBYTES"] << 20, 0, False, limit
    if size and k.dma_contiguous_default_area is None:
        cma = cma_declare_contiguous_nid(m, base, size, sel_limit, 0, 0, fixed, "reserved")
        if isinstance(cma, Cma):
            k.dma_contiguous_default_area = cma


def cma_declare_boot_areas(m: Machine) -> None:
    """The areas of ``Machine(cma_areas=...)``, in list order, right after the default one
    (MM CMA2, Z0.4).

    [model] They stand for what other boot code declares with
    ``cma_declare_contiguous_nid`` (hugetlb_cma, per-NUMA areas, reserved-memory nodes);
    every generation declares them again.
    """
    for args in m.cma_areas_arg:
        cma_declare_contiguous_nid(m, args["base"], args["size"], args["limit"],
                                   args["alignment"], args["order_per_bit"],
                                   bool(args["fixed"]), args["name"])


def dev_get_cma_area(m: Machine, dev: Any) -> Cma | None:
    """``dev_get_cma_area`` (MM D1): the device's own area, else the default one."""
    area = getattr(dev, "cma_area", None) if dev is not None else None
    return area if area is not None else m.kernel.dma_contiguous_default_area


def dma_alloc_from_contiguous(m: Machine, dev: Any, count: int, align: int,
                              no_warn: bool) -> Page | None:
    """``dma_alloc_from_contiguous`` (MM D4): align capped at CONFIG_CMA_ALIGNMENT
    (``m.config``), then cma_alloc."""
    cma = dev_get_cma_area(m, dev)
    if cma is None:
        return None
    return cma.alloc(count, min(align, m.config["CMA_ALIGNMENT"]), no_warn)


def dma_release_from_contiguous(m: Machine, dev: Any, page: Page | int | None,
                                count: int) -> bool:
    """``dma_release_from_contiguous`` (MM D5): ``cma_release`` on the device's area."""
    cma = dev_get_cma_area(m, dev)
    if cma is None or page is None:
        return False
    return cma.release(page, count)
