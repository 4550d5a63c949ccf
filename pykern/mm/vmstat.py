"""/proc/buddyinfo, /proc/pagetypeinfo, /proc/zoneinfo, /proc/vmstat (``mm/vmstat.c``).

Byte-exact renderings of MM T1, T2, T3 and T5 for the single node 0.  The
line sets follow the captured 6.18.15 kernels of ``tests/data/real-kernel/``
without what the modelled configuration lacks (MM Z1, T3): no ``Device`` zone,
four protection values, no ``nr_unaccepted`` in zoneinfo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .mmzone import (
    MIGRATE_TYPES, NR_PAGE_ORDERS, WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO,
    migratetype_names, pageblock_nr_pages, pageblock_order,
)
from .page_alloc import get_pfnblock_migratetype, page_zone

if TYPE_CHECKING:
    from ..machine import Machine
    from .mmzone import Zone
    from .page_alloc import PageAlloc

__all__ = [
    "buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat",
    "NODE_STAT_NAMES", "ZONE_STAT_NAMES", "NUMA_STAT_NAMES", "vmstat_names",
    "calculate_normal_threshold", "count_vm_events",
]

NODE_ID = 0
#: ``pagetypeinfo_showfree_print`` stops counting a list here.
FREECOUNT_CAP = 100000

#: ``node_stat_name`` order: the 51 per-node counters of MM T3.2.
NODE_STAT_NAMES: tuple[str, ...] = (
    "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon",
    "nr_isolated_file", "workingset_nodes", "workingset_refault_anon",
    "workingset_refault_file", "workingset_activate_anon", "workingset_activate_file",
    "workingset_restore_anon", "workingset_restore_file", "workingset_nodereclaim",
    "nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_dirty", "nr_writeback", "nr_shmem",
    "nr_shmem_hugepages", "nr_shmem_pmdmapped", "nr_file_hugepages", "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages", "nr_vmscan_write", "nr_vmscan_immediate_reclaim",
    "nr_dirtied", "nr_written", "nr_throttled_written", "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired", "nr_foll_pin_released", "nr_kernel_stack",
    "nr_page_table_pages", "nr_sec_page_table_pages", "nr_iommu_pages", "nr_swapcached",
    "pgpromote_success", "pgpromote_candidate", "pgpromote_candidate_nrl",
    "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged", "pgdemote_proactive",
    "nr_hugetlb", "nr_balloon_pages", "nr_kernel_file_pages",
)

#: ``zone_stat_name`` order (MM T3.4), without the x86 ``nr_unaccepted``.
ZONE_STAT_NAMES: tuple[str, ...] = (
    "nr_free_pages", "nr_free_pages_blocks", "nr_zone_inactive_anon", "nr_zone_active_anon",
    "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable",
    "nr_zone_write_pending", "nr_mlock", "nr_zspages", "nr_free_cma",
)

#: ``numa_stat_name`` order (MM T3.4).
NUMA_STAT_NAMES: tuple[str, ...] = (
    "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other",
)

#: /proc/vmstat lines after the node counters and before the events.
_GLOBAL_STAT_NAMES: tuple[str, ...] = (
    "nr_dirty_threshold", "nr_dirty_background_threshold", "nr_memmap_pages",
    "nr_memmap_boot_pages",
)

_PER_ZONE_EVENTS: tuple[str, ...] = ("pgalloc", "allocstall", "pgskip")
_EVENT_ZONES: tuple[str, ...] = ("dma", "dma32", "normal", "movable", "device")

#: ``vm_event_name`` order after the per-zone events, for both arches (the union of the
#: captured 6.18.15 files); ``_X86_ONLY`` / ``_ARM64_ONLY`` filter it per arch.
_VM_EVENTS_TAIL: tuple[str, ...] = (
    "pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault",
    "pglazyfreed", "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct",
    "pgsteal_khugepaged", "pgsteal_proactive", "pgscan_kswapd", "pgscan_direct",
    "pgscan_khugepaged", "pgscan_proactive", "pgscan_direct_throttle", "pgscan_anon",
    "pgscan_file", "pgsteal_anon", "pgsteal_file", "zone_reclaim_success",
    "zone_reclaim_failed", "pginodesteal", "slabs_scanned", "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun",
    "pgrotated", "drop_pagecache", "drop_slab", "oom_kill", "numa_pte_updates",
    "numa_huge_pte_updates", "numa_hint_faults", "numa_hint_faults_local",
    "numa_pages_migrated", "pgmigrate_success", "pgmigrate_fail", "thp_migration_success",
    "thp_migration_fail", "thp_migration_split", "compact_migrate_scanned",
    "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
    "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned", "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail",
    "cma_alloc_success", "cma_alloc_fail", "unevictable_pgs_culled",
    "unevictable_pgs_scanned", "unevictable_pgs_rescued", "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked", "unevictable_pgs_cleared", "unevictable_pgs_stranded",
    "thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
    "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc",
    "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page",
    "thp_split_page_failed", "thp_deferred_split_page", "thp_underused_split_page",
    "thp_split_pmd", "thp_scan_exceed_none_pte", "thp_scan_exceed_swap_pte",
    "thp_scan_exceed_share_pte", "thp_split_pud", "thp_zero_page_alloc",
    "thp_zero_page_alloc_failed", "thp_swpout", "thp_swpout_fallback", "balloon_inflate",
    "balloon_deflate", "balloon_migrate", "swap_ra", "swap_ra_hit", "swpin_zero",
    "swpout_zero", "ksm_swpin_copy", "cow_ksm", "zswpin", "zswpout", "zswpwb",
    "direct_map_level2_splits", "direct_map_level3_splits", "direct_map_level2_collapses",
    "direct_map_level3_collapses", "nr_unstable",
)

#: Lines only the x86_64 capture has: unaccepted memory, PUD-sized THP, direct-map stats.
_X86_ONLY = frozenset({
    "nr_unaccepted", "thp_split_pud", "direct_map_level2_splits", "direct_map_level3_splits",
    "direct_map_level2_collapses", "direct_map_level3_collapses",
})
#: Lines only the arm64 capture has (arm64 defconfig: VIRTIO_BALLOON, KSM).
_ARM64_ONLY = frozenset({
    "balloon_inflate", "balloon_deflate", "balloon_migrate", "ksm_swpin_copy", "cow_ksm",
})


def vmstat_names(arch: str) -> tuple[str, ...]:
    """The /proc/vmstat names in ``vmstat_text`` order, as the captured 6.18.15 ``arch``
    kernel prints them (MM T5)."""
    zone_stats = ZONE_STAT_NAMES + ("nr_unaccepted",)
    per_zone = tuple(f"{event}_{z}" for event in _PER_ZONE_EVENTS for z in _EVENT_ZONES)
    events = ("pgpgin", "pgpgout", "pswpin", "pswpout") + per_zone + _VM_EVENTS_TAIL
    names = zone_stats + NUMA_STAT_NAMES + NODE_STAT_NAMES + _GLOBAL_STAT_NAMES + events
    skip = _ARM64_ONLY if arch == "x86_64" else _X86_ONLY
    return tuple(name for name in names if name not in skip)


# ------------------------------------------------------------------ buddyinfo
def frag_show_print(zone: Zone) -> str:
    """``frag_show_print``: one zone's free block count per order (MM T1)."""
    counts = "".join(f"{n:6d} " for n in zone.nr_free)
    return f"Node {NODE_ID}, zone {zone.name:>8} {counts}\n"


def buddyinfo(m: Machine) -> str:
    """``frag_show``: /proc/buddyinfo, populated zones in index order (MM T1)."""
    return "".join(frag_show_print(z) for z in m.kernel.mm.zones if z.populated_zone())


# --------------------------------------------------------------- pagetypeinfo
def _freecount(n: int) -> str:
    """``%s%6lu `` of a list length, capped with ``>`` at FREECOUNT_CAP (MM T2.3)."""
    if n >= FREECOUNT_CAP:
        return f">{FREECOUNT_CAP:6d} "
    return f"{n:6d} "


def pagetypeinfo_showfree_print(zone: Zone) -> str:
    """``pagetypeinfo_showfree_print``: blocks per (type, order) of one zone (MM T2.3)."""
    lines = []
    for mt in range(MIGRATE_TYPES):
        counts = "".join(_freecount(len(zone.free_list[order][mt]))
                         for order in range(NR_PAGE_ORDERS))
        lines.append(f"Node {NODE_ID:4d}, zone {zone.name:>8}, type "
                     f"{migratetype_names[mt]:>12} {counts}\n")
    return "".join(lines)


def pagetypeinfo_showfree(m: Machine) -> str:
    """``pagetypeinfo_showfree``: the header, then every populated zone (MM T2.2–T2.3)."""
    header = f"{'Free pages count per migrate type at order':<43} " + "".join(
        f"{order:6d} " for order in range(NR_PAGE_ORDERS)) + "\n"
    return header + "".join(pagetypeinfo_showfree_print(z)
                            for z in m.kernel.mm.zones if z.populated_zone())


def count_pageblocks(m: Machine, zone: Zone) -> list[int]:
    """Pageblocks of ``zone`` per type, as ``pagetypeinfo_showblockcount_print`` counts:
    one pfn per pageblock step from zone_start_pfn, skipping pfns that are not RAM or
    belong to another zone; isolated blocks count as Isolate (MM T2.5, P4)."""
    mm = m.kernel.mm
    count = [0] * MIGRATE_TYPES
    for pfn in range(zone.zone_start_pfn, zone.zone_end_pfn, pageblock_nr_pages):
        if not mm.mem_map.pfn_valid(pfn) or page_zone(mm, pfn) is not zone:
            continue
        mt = get_pfnblock_migratetype(mm, pfn)
        if mt < MIGRATE_TYPES:
            count[mt] += 1
    return count


def pagetypeinfo_showblockcount_print(m: Machine, zone: Zone) -> str:
    """``pagetypeinfo_showblockcount_print``: one zone's pageblock counts (MM T2.5)."""
    counts = "".join(f"{n:12d} " for n in count_pageblocks(m, zone))
    return f"Node {NODE_ID}, zone {zone.name:>8} {counts}\n"


def pagetypeinfo_showblockcount(m: Machine) -> str:
    """``pagetypeinfo_showblockcount``: empty line, header, populated zones (MM T2.4)."""
    header = "\n" + f"{'Number of blocks type ':<23}" + "".join(
        f"{name:>12} " for name in migratetype_names) + "\n"
    return header + "".join(pagetypeinfo_showblockcount_print(m, z)
                            for z in m.kernel.mm.zones if z.populated_zone())


def pagetypeinfo(m: Machine) -> str:
    """``pagetypeinfo_show``: /proc/pagetypeinfo of node 0 (MM T2; no page_owner, so no
    mixed-blocks section, T2.6)."""
    head = (f"Page block order: {pageblock_order}\n"
            f"Pages per block:  {pageblock_nr_pages}\n\n")
    return head + pagetypeinfo_showfree(m) + pagetypeinfo_showblockcount(m)


# ------------------------------------------------------------------- zoneinfo
def task_pages(m: Machine) -> int:
    """Pages mapped by tasks, node-wide: NR_INACTIVE_ANON = NR_ANON_PAGES (MM T3.2)."""
    return sum(z.nr_inactive_anon for z in m.kernel.mm.zones)


def node_page_state(m: Machine) -> dict[str, int]:
    """``node_page_state_pages`` of node 0: task pages, every other counter 0 (MM T3.2)."""
    anon = task_pages(m)
    return {name: anon if name in ("nr_inactive_anon", "nr_anon_pages") else 0
            for name in NODE_STAT_NAMES}


def zone_page_state(zone: Zone) -> dict[str, int]:
    """``zone_page_state`` for every ZONE_STAT_NAMES item (MM T3.4, P6)."""
    state = dict.fromkeys(ZONE_STAT_NAMES, 0)
    state["nr_free_pages"] = zone.nr_free_pages
    state["nr_free_pages_blocks"] = zone.nr_free_pages_blocks
    state["nr_zone_inactive_anon"] = zone.nr_inactive_anon
    state["nr_free_cma"] = zone.nr_free_cma
    return state


def zone_numa_event_state(zone: Zone) -> dict[str, int]:
    """``zone_numa_event_state``: hit = local, the rest 0 (MM T3.4)."""
    state = dict.fromkeys(NUMA_STAT_NAMES, 0)
    state["numa_hit"] = state["numa_local"] = zone.numa_hit
    return state


def _stat_lines(state: dict[str, int]) -> list[str]:
    """``\\n      %-12s %lu`` per counter."""
    return [f"      {name:<12} {value}" for name, value in state.items()]


def stat_threshold(m: Machine, zone: Zone) -> int:
    """``per_cpu_zonestats->stat_threshold`` of ``zone`` (MM T3.5), from the value the
    boot stored in ``m.kernel.vm_stat_threshold``: one int for every zone, or one per zone
    index."""
    value: object = m.kernel.vm_stat_threshold
    if isinstance(value, int):
        return value
    assert isinstance(value, Sequence)
    return int(value[zone.idx])


def _watermark_lines(zone: Zone) -> list[str]:
    """``pages free`` to ``protection:`` (MM T3.3); watermarks include the boost (A10)."""
    protection = ", ".join(str(v) for v in zone.lowmem_reserve)
    return [
        f"  pages free     {zone.nr_free_pages}",
        f"        boost    {zone.watermark_boost}",
        f"        min      {zone.wmark_pages(WMARK_MIN)}",
        f"        low      {zone.wmark_pages(WMARK_LOW)}",
        f"        high     {zone.wmark_pages(WMARK_HIGH)}",
        f"        promo    {zone.wmark_pages(WMARK_PROMO)}",
        f"        spanned  {zone.spanned_pages}",
        f"        present  {zone.present_pages}",
        f"        managed  {zone.managed_pages}",
        f"        cma      {zone.cma_pages}",
        f"        protection: ({protection})",
    ]


def _pageset_lines(m: Machine, zone: Zone) -> list[str]:
    """``pagesets``: per online CPU the reference model's disabled pcp (MM A0) and the
    CPU's ``vm stats threshold`` (MM T3.5)."""
    threshold = stat_threshold(m, zone)
    lines = ["  pagesets"]
    for cpu in range(m.cpus):
        lines += [
            f"    cpu: {cpu}",
            "              count:    0",
            "              high:     0",
            "              batch:    1",
            "              high_min: 0",
            "              high_max: 0",
            f"  vm stats threshold: {threshold}",
        ]
    return lines


def is_zone_first_populated(m: Machine, zone: Zone) -> bool:
    """``is_zone_first_populated``: ``zone`` is node 0's lowest populated zone."""
    first = next((z for z in m.kernel.mm.zones if z.populated_zone()), None)
    return first is zone


def zoneinfo_show_print(m: Machine, zone: Zone) -> str:
    """``zoneinfo_show_print``: one zone's block of /proc/zoneinfo (MM T3.1–T3.6)."""
    lines = [f"Node {NODE_ID}, zone {zone.name:>8}"]
    if is_zone_first_populated(m, zone):
        lines.append("  per-node stats")
        lines += _stat_lines(node_page_state(m))
    lines += _watermark_lines(zone)
    if zone.populated_zone():
        lines += _stat_lines(zone_page_state(zone))
        lines += _stat_lines(zone_numa_event_state(zone))
        lines += _pageset_lines(m, zone)
        lines += ["  node_unreclaimable:  0",
                  f"  start_pfn:           {zone.zone_start_pfn}"]
    return "".join(line + "\n" for line in lines)


def zoneinfo(m: Machine) -> str:
    """``zoneinfo_show``: every zone of node 0 in index order, populated or not (MM T3)."""
    return "".join(zoneinfo_show_print(m, z) for z in m.kernel.mm.zones)


# --------------------------------------------------------------------- vmstat
def count_vm_events(mm: PageAlloc, item: str, delta: int) -> None:
    """``count_vm_events`` (``include/linux/vmstat.h``): add ``delta`` to the /proc/vmstat
    event ``item`` (``m.mm.vm_events``)."""
    if delta:
        mm.vm_events[item] = mm.vm_events.get(item, 0) + delta


def global_state(m: Machine) -> dict[str, int]:
    """The counters /proc/vmstat sums over zones and the node (MM P6, T3), and the
    allocator's own events: ``pgalloc_<zone>`` (pages handed out by rmqueue in that zone)
    and ``pgfree`` (pages given to the buddy allocator: boot release and CMA activation
    included, as ``__free_pages_core`` counts them)."""
    zones = m.kernel.mm.zones
    anon = task_pages(m)
    hits = sum(z.numa_hit for z in zones)
    state = {
        "nr_free_pages": sum(z.nr_free_pages for z in zones),
        "nr_free_pages_blocks": sum(z.nr_free_pages_blocks for z in zones),
        "nr_zone_inactive_anon": anon,
        "nr_free_cma": sum(z.nr_free_cma for z in zones),
        "numa_hit": hits,
        "numa_local": hits,
        "nr_inactive_anon": anon,
        "nr_anon_pages": anon,
        "pgfree": m.kernel.mm.pgfree,
    }
    for zone, short in zip(zones, _EVENT_ZONES):
        state[f"pgalloc_{short}"] = zone.pgalloc
    return state


def vmstat(m: Machine) -> str:
    """``vmstat_show``: /proc/vmstat, ``name value`` per counter (MM T5). Values: the
    model's counters (``global_state``), then any event in ``m.mm.vm_events``
    (``cma_alloc_*``, CMA12; ``pgmigrate_*``, ``compact_isolated``); the rest 0."""
    state = global_state(m)
    events = m.kernel.mm.vm_events
    return "".join(f"{name} {events.get(name, state.get(name, 0))}\n"
                   for name in vmstat_names(m.arch))


def calculate_normal_threshold(zone: Zone, nr_cpus: int) -> int:
    """``calculate_normal_threshold`` (MM T3.5): a zone's vm stats threshold, computed once at
    boot from its managed pages (in 128 MiB units) and the online CPUs, capped at 125."""
    return min(125, 2 * nr_cpus.bit_length() * (1 + (zone.managed_pages >> 15).bit_length()))
