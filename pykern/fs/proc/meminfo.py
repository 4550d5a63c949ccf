"""/proc/meminfo (``fs/proc/meminfo.c``), MM T4.

The 6.18 line set and order: 54 lines on arm64, 56 on x86_64 (``DirectMap4k`` and
``DirectMap2M`` from ``arch_report_meminfo``); no ``Unaccepted`` (MM T4 [cfg]).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...mm.mmzone import PAGE_SHIFT

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["meminfo", "MEMINFO_LABELS", "direct_map_pages"]

#: Every line before ``HardwareCorrupted`` up to ``Percpu`` is a ``show_val_kb`` line.
MEMINFO_LABELS: tuple[str, ...] = (
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
    "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)",
    "Unevictable", "Mlocked", "SwapTotal", "SwapFree", "Zswap", "Zswapped", "Dirty",
    "Writeback", "AnonPages", "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable",
    "SUnreclaim", "KernelStack", "PageTables", "SecPageTables", "NFS_Unstable", "Bounce",
    "WritebackTmp", "CommitLimit", "Committed_AS", "VmallocTotal", "VmallocUsed",
    "VmallocChunk", "Percpu", "HardwareCorrupted", "AnonHugePages", "ShmemHugePages",
    "ShmemPmdMapped", "FileHugePages", "FilePmdMapped", "CmaTotal", "CmaFree", "Balloon",
    "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
    "Hugepagesize", "Hugetlb",
)
#: ``arch_report_meminfo`` lines (x86_64 only).
X86_DIRECTMAP_LABELS: tuple[str, ...] = ("DirectMap4k", "DirectMap2M")
_HUGEPAGE_COUNT_LABELS = frozenset({
    "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
})

#: VMALLOC_TOTAL in kB (48-bit virtual addresses, as captured).
VMALLOC_TOTAL_KB = {"x86_64": 34359738367, "arm64": 135288315904}
HPAGE_PMD_KB = 2048
#: Pages in one 2 MiB (PMD) direct mapping.
PMD_NR_PAGES = (2 << 20) >> PAGE_SHIFT
#: ``sysctl_overcommit_ratio`` default.
OVERCOMMIT_RATIO = 50


def pages_to_kb(pages: int) -> int:
    """``K(x)``: pages to kB (4 KiB pages)."""
    return pages << (PAGE_SHIFT - 10)


def show_val_kb(label: str, kb: int) -> str:
    """``show_val_kb``: the label in 16 columns, ``%8lu`` (wider values whole), `` kB``."""
    return f"{label + ':':<16}{kb:>8} kB\n"


def format_line(label: str, value: int) -> str:
    """One meminfo line in the form its label uses (MM T4.1–T4.3)."""
    if label == "HardwareCorrupted":
        return f"HardwareCorrupted: {value:>5} kB\n"
    if label in _HUGEPAGE_COUNT_LABELS:
        return f"{label + ':':<19}{value:>5}\n"
    return show_val_kb(label, value)


def si_mem_available(m: Machine) -> int:
    """``si_mem_available`` in pages: free pages above totalreserve_pages; no page cache
    or reclaimable slab to add (MM T4)."""
    free = sum(z.nr_free_pages for z in m.kernel.mm.zones)
    return max(0, free - m.kernel.mm.totalreserve_pages)


def vm_commit_limit(m: Machine) -> int:
    """``vm_commit_limit`` in pages: overcommit ratio 50, no swap, no huge pages."""
    return sum(z.managed_pages for z in m.kernel.mm.zones) * OVERCOMMIT_RATIO // 100


def _block_coverage(memory: Iterable[tuple[int, int]]) -> dict[int, int]:
    """RAM pages per 2 MiB block, for every block RAM touches."""
    cover: dict[int, int] = {}
    for base, end in memory:
        pfn, last = base >> PAGE_SHIFT, end >> PAGE_SHIFT
        while pfn < last:
            block = pfn // PMD_NR_PAGES
            stop = min(last, (block + 1) * PMD_NR_PAGES)
            cover[block] = cover.get(block, 0) + stop - pfn
            pfn = stop
    return cover


def direct_map_pages(memory: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(4k, 2M) pages of the x86_64 direct map model: RAM in the block at address 0 or
    in 2 MiB blocks not wholly RAM is mapped with 4 KiB pages, the rest with 2 MiB
    pages (MM T4 [model])."""
    small = large = 0
    for block, pages in _block_coverage(memory).items():
        if block == 0 or pages < PMD_NR_PAGES:
            small += pages
        else:
            large += pages
    return small, large


def meminfo_values(m: Machine) -> dict[str, int]:
    """The value of every line, in kB (HugePages_* in pages); 0 unless modelled (MM T4)."""
    zones = m.kernel.mm.zones
    anon_kb = pages_to_kb(sum(z.nr_inactive_anon for z in zones))
    values = dict.fromkeys(MEMINFO_LABELS, 0)
    values.update({
        "MemTotal": pages_to_kb(sum(z.managed_pages for z in zones)),
        "MemFree": pages_to_kb(sum(z.nr_free_pages for z in zones)),
        "MemAvailable": pages_to_kb(si_mem_available(m)),
        "Inactive": anon_kb,
        "Inactive(anon)": anon_kb,
        "AnonPages": anon_kb,
        "CommitLimit": pages_to_kb(vm_commit_limit(m)),
        "VmallocTotal": VMALLOC_TOTAL_KB[m.arch],
        "CmaTotal": pages_to_kb(m.kernel.mm.totalcma_pages),
        "CmaFree": pages_to_kb(sum(z.nr_free_cma for z in zones)),
        "Hugepagesize": HPAGE_PMD_KB,
    })
    if m.arch == "x86_64":
        small, large = direct_map_pages(m.kernel.memblock.memory)
        values["DirectMap4k"] = pages_to_kb(small)
        values["DirectMap2M"] = pages_to_kb(large)
    return values


def meminfo(m: Machine) -> str:
    """``meminfo_proc_show`` (with ``hugetlb_report_meminfo`` and, on x86_64,
    ``arch_report_meminfo``): /proc/meminfo (MM T4, CMA13)."""
    return "".join(format_line(label, value) for label, value in meminfo_values(m).items())
