"""Issue 17, memory-management items: behaviour checked against the 6.17/6.18 kernel
functions named in each test (mm/page_alloc.c, mm/page_isolation.c, mm/compaction.c,
mm/migrate.c, mm/cma.c)."""

from __future__ import annotations

import errno

import pytest

from pykern import Machine, images
from pykern.mm import gfp
from pykern.mm.cma import Cma
from pykern.mm.page_alloc_contig import (
    ACR_FLAGS_NONE, alloc_contig_range,
)
from pykern.mm.page_alloc_contig import (
    __alloc_contig_verify_gfp_mask as alloc_contig_verify_gfp_mask,
)
from pykern.mm.page_isolation import (
    PB_ISOLATE_MODE_OTHER, start_isolate_page_range, undo_isolate_page_range,
)

MiB = 1 << 20
PAGE = 4096
BASE = 0x40000                       # first pfn of the arm64 fresh zone
JUNK = (bytes(range(1, 256)) * 17)[:PAGE]

_COMP = gfp.__GFP_COMP
_WRITE = gfp.__GFP_WRITE
_NOFAIL = gfp.__GFP_NOFAIL
_NOWARN = gfp.__GFP_NOWARN


def fresh(cmdline: str = "", **kw: object) -> Machine:
    """The fresh zone of the worked examples."""
    return Machine(ram="64M", reserved=(), cmdline=f"cma=0 {cmdline}".strip(), **kw)


def vmstat(m: Machine) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in m.read("/proc/vmstat").splitlines())}


def area(m: Machine) -> Cma:
    cma = m.dma_contiguous_default_area
    assert cma is not None
    return cma


# ------------------------------------------------- 1. post_alloc_hook on contig pages
@pytest.mark.parametrize("init_on_alloc", [False, True])
def test_split_free_pages_post_alloc_hook_clears_cma_pages(init_on_alloc: bool) -> None:
    """alloc_contig_range_noprof -> split_free_pages -> post_alloc_hook (MM P8, R7): with
    init_on_alloc=1 every grabbed page is cleared, the caller's and the head/tail pages
    given back alike (the whole order-9 block the first cma_alloc grabs); the next block
    keeps its bytes.  With init_on_alloc=0 nothing is cleared."""
    m = Machine("256M", cmdline="cma=16M" + (" init_on_alloc=1" if init_on_alloc else ""))
    cma = area(m)
    base = cma.base_pfn * PAGE
    m.phys_write(base, JUNK * 1024)
    page = cma.alloc(100, 0)
    assert page is not None and page.pfn == cma.base_pfn
    expect = bytes(PAGE) if init_on_alloc else JUNK
    assert m.phys_read(base, PAGE) == expect                    # handed out
    assert m.phys_read(base + 99 * PAGE, PAGE) == expect
    assert m.phys_read(base + 511 * PAGE, PAGE) == expect       # grabbed, given back
    assert m.phys_read(base + 512 * PAGE, PAGE) == JUNK         # never grabbed
    m.mm.check_invariants()


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_kimage_load_cma_segment_tail_zero_with_init_on_alloc(arch: str) -> None:
    """kimage_load_cma_segment with the cma-stale-tail quirk on (K12.4, MM P8): cma_alloc's
    pages went through post_alloc_hook, so with init_on_alloc=1 the segment tail past
    bufsz is zero and the x86 purgatory digest matches."""
    m = Machine("512M", arch=arch, cmdline="cma=64M init_on_alloc=1")
    cma = area(m)
    m.phys_write(cma.base_pfn * PAGE, b"\x5A" * (cma.count * PAGE))
    k = images.arm64_image(MiB + 100, bss=2 * MiB) if arch == "arm64" else \
        images.bzimage(MiB, init_size=4 * MiB)
    m.kexec_file_load(k, None, "", 0)
    im = m.kexec_image
    assert im is not None
    kern = max(im.segments, key=lambda s: s.memsz)
    assert kern.cma and kern.memsz > kern.bufsz
    assert m.phys_read(kern.mem + kern.bufsz, kern.memsz - kern.bufsz) == \
        bytes(kern.memsz - kern.bufsz)
    r = m.kernel_kexec()
    assert r.verified and r.corrupted == [] and m.generation == 1


def test_free_contig_range_init_on_free_clears_released_pages() -> None:
    """cma_release -> free_contig_range -> __free_page -> free_pages_prepare (MM P8,
    CMA8): with init_on_free=1 the released pages are cleared, as every freed page is."""
    m = Machine("256M", cmdline="cma=16M init_on_free=1")
    cma = area(m)
    page = cma.alloc(8, 0)
    assert page is not None
    m.phys_write(page.phys, JUNK * 8)
    assert cma.release(page, 8)
    assert m.phys_read(page.phys, 8 * PAGE) == bytes(8 * PAGE)


# ------------------------------------------------------------- 2. vmstat events
def test_pgalloc_pgfree_count_buddy_allocations_and_frees() -> None:
    """rmqueue_buddy's __count_zid_vm_events(PGALLOC) and free_one_page's
    __count_vm_events(PGFREE) (MM T5): pages, not calls; the boot release
    (__free_pages_core -> __free_pages_ok -> free_one_page) counts in pgfree too."""
    m = fresh()
    v = vmstat(m)
    assert v["pgfree"] == 16384 and v["pgalloc_dma"] == 0 and v["numa_hit"] == 0
    page = m.mm.alloc_pages(gfp.GFP_KERNEL, 3)
    assert page is not None
    v = vmstat(m)
    assert v["pgalloc_dma"] == 8 and v["numa_hit"] == 1
    m.mm.free_pages(page, 3)
    one = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert one is not None
    m.mm.free_pages(one, 0)
    v = vmstat(m)
    assert (v["pgalloc_dma"], v["pgfree"]) == (9, 16384 + 9)
    assert v["pgalloc_dma32"] == v["pgalloc_normal"] == v["pgalloc_movable"] == 0


def test_pgalloc_per_zone_x86() -> None:
    """__count_zid_vm_events(PGALLOC, page_zonenum(page), ...): each zone its own line."""
    m = Machine("1G", arch="x86_64")
    assert m.mm.alloc_pages(gfp.GFP_DMA, 1) is not None
    assert m.mm.alloc_pages(gfp.GFP_KERNEL, 2) is not None
    v = vmstat(m)
    assert (v["pgalloc_dma"], v["pgalloc_dma32"], v["pgalloc_normal"]) == (2, 4, 0)


def test_compact_isolated_matches_captured_dma_pools() -> None:
    """isolate_freepages_block's count_compact_events(COMPACTISOLATED) on the
    alloc_contig_range path: two 32-page cma_alloc calls on a fresh area grab an order-9
    block and then an order-5 block: 544, what the captured 6.18.15 x86_64 1 GiB
    cma=128M kernel reports after its two DMA-pool allocations."""
    m = Machine("1G", arch="x86_64", cmdline="cma=128M")
    v0 = vmstat(m)
    assert v0["pgfree"] == sum(z.managed_pages for z in m.mm.zones)
    assert area(m).alloc(32, 5) is not None and area(m).alloc(32, 5) is not None
    v = vmstat(m)
    assert v["compact_isolated"] == 544 and v["cma_alloc_success"] == 2
    assert v["pgfree"] - v0["pgfree"] == 512 - 32           # the first block's tail
    assert v["pgalloc_dma32"] == v0["pgalloc_dma32"] == 0    # contig pages are not PGALLOC


def test_pgmigrate_success_and_compact_isolated_on_cma_alloc() -> None:
    """migrate_pages' count_vm_events(PGMIGRATE_SUCCESS) and isolate_migratepages_block's
    COMPACTISOLATED: a cma_alloc over the whole area moves a task's 100 pages out
    (each destination is a buddy allocation: pgalloc, numa_hit; each source a free:
    pgfree) and then grabs all 12288 pages."""
    m = Machine("64M", reserved=(), cmdline="cma=48M")
    cma = area(m)
    t = m.new_task()
    va = t.mmap_anon(100)
    before = [t.pfn_of(va + k * PAGE) for k in range(100)]
    assert all(cma.base_pfn <= p < cma.base_pfn + cma.count for p in before)
    v0 = vmstat(m)
    assert cma.alloc(cma.count, 0) is not None
    v = vmstat(m)
    delta = {k: v[k] - v0[k] for k in ("pgmigrate_success", "pgmigrate_fail",
                                       "compact_isolated", "pgalloc_dma", "pgfree",
                                       "numa_hit")}
    assert delta == {"pgmigrate_success": 100, "pgmigrate_fail": 0,
                     "compact_isolated": 100 + 12288, "pgalloc_dma": 100, "pgfree": 100,
                     "numa_hit": 100}
    assert all(t.pfn_of(va + k * PAGE) != before[k] for k in range(100))


def test_pgmigrate_fail_counts_the_page_without_destination() -> None:
    """migrate_pages_batch: -ENOMEM for a destination counts that folio in
    nr_failed_pages (PGMIGRATE_FAIL) and stops; the first batch of 32 was isolated."""
    m = Machine("64M", reserved=(), cmdline="cma=48M")
    cma = area(m)
    m.new_task().mmap_anon(100)
    while m.mm.alloc_pages(gfp.GFP_KERNEL | _NOWARN, 0) is not None:
        pass
    v0 = vmstat(m)
    assert cma.alloc(cma.count, 0) is None
    v = vmstat(m)
    assert (v["pgmigrate_success"] - v0["pgmigrate_success"],
            v["pgmigrate_fail"] - v0["pgmigrate_fail"],
            v["compact_isolated"] - v0["compact_isolated"]) == (0, 1, 32)


# ---------------------------------------------------------- 3. gfp mask check
def test_alloc_contig_verify_gfp_mask_ignores_write_hint() -> None:
    """__alloc_contig_verify_gfp_mask drops GFP_ZONEMASK, __GFP_RECLAIMABLE, __GFP_WRITE,
    __GFP_HARDWALL, __GFP_THISNODE and __GFP_MOVABLE before the reclaim/action check:
    a mask with __GFP_WRITE allocates, __GFP_NOFAIL still gets EINVAL."""
    m = fresh()
    start = BASE + 2048
    assert alloc_contig_range(m, start, start + 16, ACR_FLAGS_NONE,
                              gfp.GFP_KERNEL | _WRITE) == 0
    assert all(not m.mm.page_is_free(p) for p in range(start, start + 16))
    free = m.mm.nr_free_pages()
    assert alloc_contig_range(m, start + 512, start + 528, ACR_FLAGS_NONE,
                              gfp.GFP_KERNEL | _NOFAIL) == -errno.EINVAL
    assert m.mm.nr_free_pages() == free
    m.mm.check_invariants()


def test_alloc_contig_verify_gfp_mask_migration_mask() -> None:
    """__alloc_contig_verify_gfp_mask's gfp_cc_mask: the reclaim bits, RETRY_MAYFAIL and
    NOWARN of the request, plus __GFP_HARDWALL | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL."""
    hw, mov, rm = gfp.__GFP_HARDWALL, gfp.__GFP_MOVABLE, gfp.__GFP_RETRY_MAYFAIL
    assert alloc_contig_verify_gfp_mask(gfp.GFP_KERNEL) == gfp.GFP_KERNEL | hw | mov | rm
    assert alloc_contig_verify_gfp_mask(gfp.GFP_NOIO | _WRITE | _NOWARN | gfp.__GFP_ZERO) \
        == gfp.GFP_NOIO | _NOWARN | hw | mov | rm
    assert alloc_contig_verify_gfp_mask(gfp.GFP_KERNEL | gfp.__GFP_NORETRY) is None


# ------------------------------------------------ 4. isolation of a block after a hole
def test_set_migratetype_isolate_scans_from_first_valid_page() -> None:
    """start_isolate_page_range passes __first_valid_page of each inner block to
    set_migratetype_isolate, whose has_unmovable_pages scan starts at that page: an inner
    block that begins with a hole (1 MiB missing between two banks) is isolated, not
    refused with EBUSY; undo gives every block its type back."""
    base = 0x4000_0000
    m = Machine(ram=[(base, 64 * MiB), (base + 65 * MiB, 63 * MiB)], reserved=(),
                cmdline="cma=0")
    hole_block = (base + 64 * MiB) >> 12          # pfns 0..255 of this block are a hole
    start, end = hole_block - 512, hole_block + 1024
    assert start_isolate_page_range(m.mm, start, end, PB_ISOLATE_MODE_OTHER) == 0
    blocks = (start, hole_block + 256, hole_block + 512)
    assert [m.mm.pageblock_type(p) for p in blocks] == ["Isolate"] * 3
    m.mm.check_invariants()
    undo_isolate_page_range(m.mm, start, end)
    assert [m.mm.pageblock_type(p) for p in blocks] == ["Movable"] * 3
    m.mm.check_invariants()


# ------------------------------------------------------ 5. __GFP_COMP range mismatch
@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_contig_comp_mismatch_leak(fixed: bool) -> None:
    """alloc_contig_range_noprof with __GFP_COMP: [1024, 1408) grabs the whole order-9
    block [1024, 1536), so the kernel WARNs and returns -EINVAL leaving the 512 grabbed
    pages off every list (quirk contig-comp-mismatch-leak; upstream's fix
    release_free_list()s them with its own warning).  The pageblock is unisolated
    either way."""
    m = fresh(fixes=["contig-comp-mismatch-leak"] if fixed else ())
    buddyinfo = m.read("/proc/buddyinfo")
    start, end = BASE + 1024, BASE + 1024 + 384
    n = len(m.dmesg())
    assert alloc_contig_range(m, start, end, ACR_FLAGS_NONE, gfp.GFP_KERNEL | _COMP) \
        == -errno.EINVAL
    assert m.dmesg()[n:] == [(4, (
        f"WARNING: PFN range: allocated [{start}, {start + 512}) does not match requested "
        f"[{start}, {end}), freeing allocated PFNs") if fixed else (
        f"WARNING: PFN range: requested [{start}, {end}), allocated [{start}, {start + 512})"))]
    assert m.mm.pageblock_type(start) == "Movable"
    assert m.mm.nr_free_pages() == 16384 - (0 if fixed else 512)
    assert m.mm.page_is_free(start) is fixed
    if fixed:
        assert m.read("/proc/buddyinfo") == buddyinfo
    else:
        with pytest.raises(ValueError):        # nobody owns the leaked pages
            m.mm.free_pages(start, 9)
    m.mm.check_invariants()


# ------------------------------------------------------ 6. cma_debug_show_areas
def test_cma_debug_show_areas_one_line_pair_per_range() -> None:
    """cma_debug_show_areas (6.17/6.18: for_each_clear_bitrange): per range a
    ``range %d: `` line continued with the clear runs, ``+`` before a run whose first bit
    is not 0, and that range's own pr_info("\\n") line; the total stands alone.  pykern
    declares no multi-range area (CMA4), so two boot areas' ranges make one here."""
    m = Machine("256M", cmdline="cma=0",
                cma_areas=[{"name": "a", "size": "8M"}, {"name": "b", "size": "8M"}])
    lo, hi = sorted(m.cma_areas, key=lambda c: c.base_pfn)
    multi = Cma(m, "multi", lo.count + hi.count, 0)
    multi.ranges = [lo.ranges[0], hi.ranges[0]]
    multi.activated = True
    first = multi.alloc(10, 0)
    assert first is not None and multi.alloc(20, 0) is not None
    assert multi.release(first, 10)
    n = len(m.dmesg())
    assert multi.alloc(multi.count, 0) is None
    assert m.dmesg()[n:] == [
        (3, f"cma: __cma_alloc: multi: alloc failed, req-size: {multi.count} pages, "
            "ret: -16"),
        (6, "cma: number of available pages: "),
        (6, "cma: range 0: 10@0+2018@30"),
        (6, "cma: "),
        (6, "cma: range 1: 2048@0"),
        (6, "cma: "),
        (4, f"=> {multi.count - 20} free of {multi.count} total pages"),
    ]
