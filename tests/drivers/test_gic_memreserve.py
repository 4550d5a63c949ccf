"""What happens to the GIC's LPI tables around the EFI memreserve list in the next kernel
(GIC-N2, GIC-N5, GIC-I6, GIC-T9; issue 17 follow-ups).

- its_lpi_memreserve_init() registers its_cpu_memreserve_lpi() only when the machine booted
  through EFI, so without EFI the pending table pre-allocated for a CPU that adopts its old
  one is never freed (quirk ``gic-pending-table-leak-no-efi``, d23bc2bc1d63).
- efi_init() -> efi_config_parse_tables() memblock-reserves the LINUX_EFI_MEMRESERVE ranges in
  setup_arch(), before bootmem_init() -> dma_contiguous_reserve() places the CMA areas and
  before the crash kernel is reserved: a ``cma=`` or ``crashkernel=`` of the next kernel can
  never take the published tables.
"""

from __future__ import annotations

from typing import Any

import pytest

from pykern import Machine, images
from pykern.drivers.gic import GICv3
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA

MiB = 1 << 20
K64_PAGES = 16
FIX = "gic-pending-table-leak-no-efi"


def _adopt_without_efi(fixes: Any = ()) -> tuple[Machine, GICv3, list[int]]:
    """A device-tree boot (no EFI) whose NO_CMA kernel lands on the boot-time GIC tables, so
    the next kernel finds the property table inside its own image reservation and adopts
    the old tables (GIC-N4); returns the machine after the reboot, the GIC and the pending
    tables generation 0 programmed."""
    gic = GICv3(honours_shutdown=True)
    m = Machine("512M", cmdline="cma=64M", devices=[gic], fixes=fixes)
    old = [gic.redistributors[c].pend_addr for c in range(m.cpus)]
    m.kexec_file_load(images.arm64_image(16 * MiB), images.payload_pattern(MiB), "x=1",
                      KEXEC_FILE_NO_CMA)
    m.kernel_kexec()
    assert (6, "GICv3: Using preallocated redistributor tables") in m.dmesg()
    assert [gic.redistributors[c].pend_addr for c in range(m.cpus)] == old
    return m, gic, old


def _buddy_pages(m: Machine) -> int:
    """Free pages as /proc/buddyinfo counts them."""
    total = 0
    for line in m.read("/proc/buddyinfo").splitlines():
        counts = [int(x) for x in line.split()[4:]]
        total += sum(n << order for order, n in enumerate(counts))
    return total


def test_gic_n5_its_lpi_memreserve_init_without_efi_leaks_the_fresh_pending_tables() -> None:
    """its_lpi_memreserve_init() returns before registering its_cpu_memreserve_lpi() when
    !efi_enabled(EFI_CONFIG_TABLES): every adopting CPU's fresh 64 KiB pending table stays
    allocated, listed by gic.tables() as generation 1's, zero-filled and used by no RD; the
    free lists are short of exactly those pages.  With the fix they are freed (GIC-I6)."""
    leaky, gic, old = _adopt_without_efi()
    fixed, gic_f, _ = _adopt_without_efi(fixes=[FIX])
    cpus = leaky.cpus
    fresh = [(p, o) for k, p, _, o, g in gic.tables() if k == "pending" and g == 1]
    assert [o for _, o in fresh] == list(range(cpus))
    assert not any(k == "pending" and g == 1 for k, _, _, _, g in gic_f.tables())
    mem = leaky.mm.mem_map
    for phys, cpu in fresh:
        pfn = phys >> 12
        assert not any(leaky.mm.page_is_free(pfn + k) for k in range(K64_PAGES))
        assert mem.refcount[pfn - mem.base_pfn] == 1
        assert leaky.phys_read(phys, K64_PAGES * 4096) == bytes(K64_PAGES * 4096)
        assert phys not in old
    leaked = cpus * K64_PAGES
    assert leaky.mm.nr_free_pages() == fixed.mm.nr_free_pages() - leaked
    assert _buddy_pages(leaky) == _buddy_pages(fixed) - leaked
    assert leaky.read("/proc/buddyinfo") != fixed.read("/proc/buddyinfo")
    # the leak is silent: no warning, no taint, either way
    assert [x for x in leaky.dmesg() if x[0] <= 4] == [x for x in fixed.dmesg() if x[0] <= 4]
    assert leaky.tainted == fixed.tainted == 0


def test_gic_i6_with_the_fix_the_next_boot_holds_only_what_gic_tables_lists() -> None:
    """GIC-I6 on a boot without EFI, with the fix: free pages = the same reboot without a
    GIC minus the pages of the tables generation 1 still holds (its ITS tables, device
    page and ITT; the adopted property and pending tables lie in the image reservation in
    both boots alike).  Without the fix the generation-1 pending tables come on top."""
    base = Machine("512M", cmdline="cma=64M")
    base.kexec_file_load(images.arm64_image(16 * MiB), images.payload_pattern(MiB), "x=1",
                         KEXEC_FILE_NO_CMA)
    base.kernel_kexec()
    for fixes in ([FIX], ()):
        m, gic, _ = _adopt_without_efi(fixes=fixes)
        gen1 = [(k, s) for k, _, s, _, g in gic.tables() if g == 1]
        held = sum(s // 4096 for _, s in gen1)
        assert m.mm.nr_free_pages() == base.mm.nr_free_pages() - held
        kinds = [k for k, _ in gen1]
        assert kinds == (["cmdq", "device-l1", "collection", "device-l2", "itt"] if fixes
                         else ["cmdq", "device-l1", "collection"] + ["pending"] * m.cpus
                         + ["device-l2", "itt"])


@pytest.mark.parametrize("efi", [False, True])
def test_gic_n5_quirk_is_only_the_no_efi_boot(efi: bool) -> None:
    """Under EFI the callback is registered, so the default (unfixed) machine frees the
    adopting CPUs' fresh tables as the fixed one does; without EFI it does not."""
    gic = GICv3(honours_shutdown=True, efi_memreserve=efi)
    m = Machine("512M", cmdline="cma=64M", devices=[gic])
    m.kexec_file_load(images.arm64_image(16 * MiB), images.payload_pattern(MiB), "x=1",
                      KEXEC_FILE_NO_CMA)
    m.kernel_kexec()
    assert (6, "GICv3: Using preallocated redistributor tables") in m.dmesg()
    gen1_pending = [o for k, _, _, o, g in gic.tables() if k == "pending" and g == 1]
    assert gen1_pending == ([] if efi else list(range(m.cpus)))


# ---------------------------------------------------- GIC-N2: EFI memreserve before CMA
def _efi_boot_then(cmdline: str) -> tuple[Machine, GICv3, list[tuple[int, int]]]:
    """An EFI boot whose GIC publishes its tables (GIC-T9), then a CMA-placed reboot into a
    kernel started with ``cmdline``."""
    gic = GICv3(honours_shutdown=True, efi_memreserve=True)
    m = Machine("512M", cmdline="cma=64M", devices=[gic])
    published = list(m.efi_memreserve)
    m.kexec_file_load(images.arm64_image(MiB), images.payload_pattern(MiB), cmdline, 0)
    assert all(s.cma for s in m.kexec_image.segments)    # type: ignore[union-attr]
    m.kernel_kexec()
    return m, gic, published


def _tables_untouched(m: Machine, published: list[tuple[int, int]]) -> None:
    """Each published range is memblock-reserved, none of its pages is free, and the next
    kernel adopted the tables without complaint."""
    for base, size in published:
        assert m.memblock.is_region_reserved(base, size)
        assert not any(m.mm.page_is_free(pfn) for pfn in range(base >> 12, (base + size) >> 12))
    assert (6, "GICv3: Using preallocated redistributor tables") in m.dmesg()
    assert m.tainted & 1024 == 0


def _area_span(m: Machine) -> tuple[int, int] | None:
    cma = m.dma_contiguous_default_area
    return None if cma is None else (cma.base_pfn << 12, (cma.base_pfn + cma.count) << 12)


def test_gic_n2_fixed_cma_over_published_tables_fails_ebusy() -> None:
    """cma_declare_contiguous_nid with a fixed base (cma=size@base): the published tables
    are already memblock-reserved when dma_contiguous_reserve runs, so
    memblock_is_region_reserved() makes it fail with -EBUSY ("cma: Failed to reserve"), and
    no default area exists.  Declared before the reservation (the old order) the area would
    have been laid over the tables and handed their pages to the buddy allocator."""
    _, _, published = _efi_boot_then("")
    lo = min(b for b, _ in published) & ~(2 * MiB - 1)
    m, _, again = _efi_boot_then(f"cma=16M@{lo:#x}")
    assert again == published and all(lo <= b and b + s <= lo + 16 * MiB for b, s in again)
    lines = m.dmesg()
    assert (3, "cma: Failed to reserve 16 MiB") in lines
    assert not any(t.startswith("cma: Reserved") for _, t in lines)
    assert m.dma_contiguous_default_area is None and m.cma_areas == []
    assert m.read("/proc/meminfo").count("CmaTotal:              0 kB") == 1
    _tables_untouched(m, published)


def test_gic_n2_cma_placement_avoids_published_tables() -> None:
    """cma_declare_contiguous_nid without a fixed base (cma=size@base-limit) searches its
    window top-down for a free range: the reserved tables push it below them, to the
    window's only candidate that does not cover them (the old order would have taken the
    topmost one, right over the tables)."""
    _, _, published = _efi_boot_then("")
    lo = min(b for b, _ in published) & ~(2 * MiB - 1)
    window = (lo - 16 * MiB, lo + 16 * MiB)
    m, _, _ = _efi_boot_then(f"cma=16M@{window[0]:#x}-{window[1]:#x}")
    span = _area_span(m)
    assert span == (window[0], window[0] + 16 * MiB)
    assert (6, f"cma: Reserved 16 MiB at 0x{window[0]:016x}") in m.dmesg()
    assert not any(b < span[1] and span[0] < b + s for b, s in published)
    _tables_untouched(m, published)


def test_gic_n2_fixed_crashkernel_over_published_tables_is_refused() -> None:
    """reserve_crashkernel with crashkernel=size@base: the range holds reserved tables, so
    the reservation fails ("crashkernel reservation failed - memory is in use.") and no
    crash kernel region exists."""
    _, _, published = _efi_boot_then("")
    lo = min(b for b, _ in published) & ~(2 * MiB - 1)
    m, _, _ = _efi_boot_then(f"crashkernel=16M@{lo:#x}")
    assert (4, "crashkernel reservation failed - memory is in use.") in m.dmesg()
    assert m.crashk_res is None
    _tables_untouched(m, published)
