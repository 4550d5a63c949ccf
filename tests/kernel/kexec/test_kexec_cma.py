"""The CMA patch: segments placed straight into CMA, KEXEC_FILE_NO_CMA, fallbacks, and each
upstream quirk next to its fix (K7, K12.4, K14.1, K18 and the [CMA] rules; ARCH
A23–A28, X33–X35; the guide's "Quirks and fixes")."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pykern import Machine, images, quirks
from pykern.kernel.kexec.uapi import (KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH,
                                      KEXEC_FILE_UNLOAD)
from pykern.testing.strategies import kexec_loads, layouts

MiB = 1 << 20
PAGE = 4096
ARCHES = ["arm64", "x86_64"]


def kernel_for(arch: str, size: int = 2 * MiB, **kw: Any) -> bytes:
    return images.arm64_image(size, **kw) if arch == "arm64" else images.bzimage(size, **kw)


def used(m: Machine) -> int:
    return int(m.read("/sys/kernel/debug/cma/reserved/used"))


def vmstat(m: Machine, key: str) -> int:
    for line in m.read("/proc/vmstat").splitlines():
        name, value = line.split()
        if name == key:
            return int(value)
    raise KeyError(key)


def area_range(m: Machine) -> tuple[int, int]:
    a = m.dma_contiguous_default_area
    assert a is not None
    return a.base_pfn * PAGE, (a.base_pfn + a.count) * PAGE


# ---------------------------------------------------------------- placement
@pytest.mark.parametrize("arch", ARCHES)
def test_k6_1_k7_9_k19_6_all_segments_in_cma(arch: str) -> None:
    """K6.1 step 3, K7.9, K12.4, K19.6: with a default area every segment is taken from
    CMA, its bytes are in place at load time, and the entry list is just DONE."""
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    lo, hi = area_range(m)
    initrd = images.payload_pattern(3 * MiB + 17, seed=4)
    m.kexec_file_load(kernel_for(arch), initrd, "x=1", 0)
    im = m.kexec_image
    assert im is not None
    assert all(s.cma and lo <= s.mem and s.mem + s.memsz <= hi for s in im.segments)
    assert im.entries() == [("DONE", 0)] and im.head == 0x4
    seg = next(s for s in im.segments if s.bufsz == len(initrd))
    assert m.phys_read(seg.mem, len(initrd)) == initrd           # written at load time
    assert used(m) == sum(s.memsz // PAGE for s in im.segments)
    r = m.kernel_kexec()
    assert r.hot_phase_pages == 0 and r.hot_phase_bytes == 0 and r.corrupted == []


@pytest.mark.parametrize("arch", ARCHES)
def test_k7_2_no_cma_flag_takes_the_classic_path(arch: str) -> None:
    """K2.4 step 4, K7.2, K7.13: NO_CMA makes no cma_alloc call (no counter moves), every
    segment is walk-placed and listed."""
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    ok, fail = vmstat(m, "cma_alloc_success"), vmstat(m, "cma_alloc_fail")
    m.kexec_file_load(kernel_for(arch), images.payload_pattern(MiB), "", KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None and not any(s.cma for s in im.segments)
    assert (vmstat(m, "cma_alloc_success"), vmstat(m, "cma_alloc_fail")) == (ok, fail)
    assert used(m) == 0
    kinds = [k for k, _ in im.entries()]
    assert kinds.count("DESTINATION") == im.nr_segments


def test_k7_4_no_default_area_no_attempt() -> None:
    """K7.4/MM C1.15: x86_64 has no default area unless cma= asks; nothing is tried."""
    m = Machine("512M", arch="x86_64")
    assert m.dma_contiguous_default_area is None
    m.kexec_file_load(kernel_for("x86_64"), None, "", 0)
    im = m.kexec_image
    assert im is not None and not any(s.cma for s in im.segments)
    assert vmstat(m, "cma_alloc_success") == vmstat(m, "cma_alloc_fail") == 0


def test_k7_3_crash_loads_never_use_cma() -> None:
    """K7.3/K17.1: the crash image stays in its reservation even with a default area."""
    m = Machine("512M", cmdline="cma=64M crashkernel=64M")
    m.kexec_file_load(kernel_for("arm64"), None, "", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None and not any(s.cma for s in im.segments)
    assert vmstat(m, "cma_alloc_success") == vmstat(m, "cma_alloc_fail") == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_k7_7_k7_11_too_small_area_mixed_image(arch: str) -> None:
    """K7.7, K7.11, K7.13: a kernel larger than the area falls back to the walk silently (the
    fail counter moves, no warning), and the later segments still take CMA."""
    m = Machine("512M", arch=arch, cmdline="cma=8M")
    fail = vmstat(m, "cma_alloc_fail")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for(arch, 12 * MiB), images.payload_pattern(MiB), "", 0)
    im = m.kexec_image
    assert im is not None
    big = max(im.segments, key=lambda s: s.memsz)
    assert not big.cma and any(s.cma for s in im.segments)
    assert vmstat(m, "cma_alloc_fail") == fail + 1
    assert not [t for lvl, t in m.dmesg()[n:] if lvl <= 4]
    dests = [a for k, a in im.entries() if k == "DESTINATION"]
    assert dests == [s.mem for s in im.segments if not s.cma]


def test_k7_6_migrates_movable_pages_and_skips_pinned() -> None:
    """K7.6/MM M8: task pages borrowing the area are migrated away (their data kept); a
    pinned page makes cma_alloc skip that window."""
    m = Machine("512M", cmdline="cma=64M")
    lo, hi = area_range(m)
    t = m.new_task()
    npages = m.mm.nr_free_pages() - 2000
    va = t.mmap_anon(npages)                            # fills the CMA area too
    in_cma = [va + i * PAGE for i in range(npages) if lo <= t.pfn_of(va + i * PAGE) * PAGE < hi]
    assert len(in_cma) > 1000
    first = min(in_cma, key=lambda v: t.pfn_of(v))
    t.write(first, b"keep me")
    t.pin(first, 1)
    pinned_at = t.pfn_of(first) * PAGE
    m.kexec_file_load(kernel_for("arm64", MiB), None, "", 0)
    im = m.kexec_image
    assert im is not None and im.segments[0].cma
    kern = im.segments[0]
    assert not kern.mem <= pinned_at < kern.mem + kern.memsz        # the window was skipped
    assert t.pfn_of(first) * PAGE == pinned_at and t.read(first, 7) == b"keep me"
    moved = [v for v in in_cma if kern.mem <= t.pfn_of(v) * PAGE < kern.mem + kern.memsz]
    assert not moved                                                # nobody left inside


@pytest.mark.parametrize("arch", ARCHES)
def test_k14_1_unload_releases_cma_and_k1_16_replacement(arch: str) -> None:
    """K14.1 step 6 and K1.16: a replacing load gets new blocks while the old image still
    holds its own; afterwards only the new image's blocks are used; unload frees them."""
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    m.kexec_file_load(kernel_for(arch), None, "", 0)
    first = m.kexec_image
    assert first is not None
    one = used(m)
    m.kexec_file_load(kernel_for(arch), None, "", 0)
    second = m.kexec_image
    assert second is not None
    a = {(s.mem, s.memsz) for s in first.segments}
    b = {(s.mem, s.memsz) for s in second.segments}
    assert not a & b and used(m) == one
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    assert used(m) == 0


def test_k16_6_all_cma_arm64_builds_no_relocation_tables() -> None:
    """K16.6/ARCH A38: a DONE-only arm64 image gets no relocation page tables."""
    m = Machine("512M", cmdline="cma=64M")
    m.kexec_file_load(kernel_for("arm64"), None, "", 0)
    cma_im = m.kexec_image
    assert cma_im is not None
    cma_ctl = len(cma_im.control_pages)
    m.kexec_file_load(kernel_for("arm64"), None, "", KEXEC_FILE_NO_CMA)
    walk_im = m.kexec_image
    assert walk_im is not None
    assert cma_ctl == 2                              # control code page and swap page
    assert len(walk_im.control_pages) > cma_ctl


# ---------------------------------------------------------------- quirks side by side
def test_quirks_table_matches_api() -> None:
    """pykern.quirks.QUIRKS: every quirk listed with its rule."""
    assert {k: v[0] for k, v in quirks.QUIRKS.items()} == {
        "cma-stale-tail": "K12.4", "cma-leak-on-failed-load": "K2.9",
        "arm64-retry-cma-leak": "K7.12", "cma-inclusive-end-conflict": "K7.8",
        "cma-align-cap": "K7.5", "cma-ignores-limits": "K7.10",
        "arm64-text-offset-cma": "K12.4", "cma-name-newline": "MM CMA3",
        "contig-comp-mismatch-leak": "MM R8", "kexec-source-page-leak": "K12.2",
        "gic-pending-table-leak-no-efi": "GIC-N5"}
    m = Machine("256M", fixes="all")
    assert set(m.fixes) == set(quirks.QUIRKS)
    with pytest.raises(ValueError, match="no-such-fix"):
        Machine("256M", fixes=["no-such-fix"])


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("arch", ARCHES)
def test_quirk_cma_stale_tail(arch: str, fixed: bool) -> None:
    """K12.4/K13.4/ARCH A28, X35: the CMA tail keeps old bytes (x86: the digest then fails
    and the machine halts); the fix zeroes it."""
    m = Machine("512M", arch=arch, cmdline="cma=64M",
                fixes=["cma-stale-tail"] if fixed else ())
    lo, hi = area_range(m)
    m.phys_write(lo, b"\x5A" * (hi - lo))                       # old data in the area
    k = kernel_for(arch, MiB + 100, bss=2 * MiB) if arch == "arm64" else \
        kernel_for(arch, MiB, init_size=4 * MiB)
    m.kexec_file_load(k, None, "", 0)
    im = m.kexec_image
    assert im is not None
    kern = max(im.segments, key=lambda s: s.memsz)
    assert kern.cma and kern.memsz > kern.bufsz
    tail = m.phys_read(kern.mem + kern.bufsz, kern.memsz - kern.bufsz)
    assert tail == (bytes(len(tail)) if fixed else b"\x5A" * len(tail))
    r = m.kernel_kexec()
    assert r.corrupted == []                        # the reference keeps the stale tail
    if arch == "x86_64":
        assert r.verified is fixed and m.halted is (not fixed)
        assert m.generation == (1 if fixed else 0)


@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_cma_leak_on_failed_load(fixed: bool) -> None:
    """K2.9: blocks taken before the sanity check fails (X20: init_size below the payload)
    stay allocated; the fix releases them whole."""
    m = Machine("512M", arch="x86_64", cmdline="cma=64M",
                fixes=["cma-leak-on-failed-load"] if fixed else ())
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(images.bzimage(4 * MiB, init_size=2 * MiB), None, "", 0)
    assert exc.value.errno == errno.EINVAL
    leaked = used(m)
    assert leaked == 0 if fixed else leaked == 5 + 2 + 512   # purgatory, params, kernel
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    assert used(m) == leaked                                  # until reboot


@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_arm64_retry_cma_leak(fixed: bool) -> None:
    """K7.12/ARCH A19, A26: the initrd does not fit above a CMA-backed kernel at the top of
    RAM, so the loader keeps dropping and re-requesting the kernel: each drop leaks a block,
    CMA ignores the raised minimum, and the area drains. The fix releases on drop (and,
    implying cma-ignores-limits, ends the loop)."""
    m = Machine("512M", cmdline="cma=64M", fixes=["arm64-retry-cma-leak"] if fixed else ())
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(kernel_for("arm64", 4 * MiB), images.payload_pattern(80 * MiB),
                          "", 0)
    assert exc.value.errno == errno.EADDRNOTAVAIL
    area = m.dma_contiguous_default_area
    assert area is not None
    assert used(m) == (0 if fixed else area.count)


@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_cma_inclusive_end_conflict(fixed: bool) -> None:
    """K7.8/K7.13: x86 places purgatory (5 pages) and params (2) at the area base and the
    kernel at the next MiB; a 249-page initrd block then ends exactly where the kernel
    starts. The inclusive compare calls that a conflict: the block is given back (counted
    as a success and a release) and the initrd walks. The fix keeps it."""
    m = Machine("512M", arch="x86_64", cmdline="cma=64M",
                fixes=["cma-inclusive-end-conflict"] if fixed else ())
    ok = vmstat(m, "cma_alloc_success")
    m.kexec_file_load(kernel_for("x86_64"), images.payload_pattern(249 * PAGE), "", 0)
    im = m.kexec_image
    assert im is not None
    kern, initrd = im.segments[2], im.segments[3]
    assert initrd.cma is fixed
    if fixed:
        assert initrd.mem + initrd.memsz == kern.mem
    cma_segments = sum(s.cma for s in im.segments)
    assert vmstat(m, "cma_alloc_success") - ok == cma_segments + (0 if fixed else 1)
    assert used(m) == sum(s.memsz // PAGE for s in im.segments if s.cma)


@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_cma_align_cap(fixed: bool) -> None:
    """K7.5/ARCH A24: the 2 MiB kernel alignment becomes 1 MiB in CMA; the fix keeps 2 MiB."""
    m = Machine("512M", arch="x86_64", cmdline="cma=64M", fixes=["cma-align-cap"] if fixed
                else ())
    m.kexec_file_load(kernel_for("x86_64"), None, "", 0)
    im = m.kexec_image
    assert im is not None
    kern = im.segments[2]
    assert kern.cma and kern.mem % MiB == 0
    assert (kern.mem % (2 * MiB) == 0) is True if fixed else kern.mem % (2 * MiB) == MiB


@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_cma_ignores_limits(fixed: bool) -> None:
    """K7.10: an area below 16 MiB serves the x86 kernel and initrd whose minimum is
    16 MiB; the fix sends them to the walk instead."""
    m = Machine("512M", arch="x86_64", cmdline="cma=8M@0-16M",
                fixes=["cma-ignores-limits"] if fixed else ())
    m.kexec_file_load(kernel_for("x86_64", MiB), images.payload_pattern(MiB), "", 0)
    im = m.kexec_image
    assert im is not None
    kern, initrd = im.segments[2], im.segments[3]
    for seg in (kern, initrd):
        assert (seg.mem < 16 * MiB) is (not fixed) and seg.cma is (not fixed)
    assert im.segments[0].cma                    # purgatory's minimum (0x3000) is met


@pytest.mark.parametrize("fixed", [False, True])
def test_quirk_arm64_text_offset_cma(fixed: bool) -> None:
    """K12.4/K14.1/ARCH A27: with text_offset the data land at the block start, text_offset
    below segment.mem (corruption after reboot), and unload leaves text_offset/4096 pages
    allocated; the fix writes at mem and frees the whole block."""
    fixes = ["arm64-text-offset-cma"] if fixed else ()
    k = kernel_for("arm64", 2 * MiB, text_offset=0x80000)
    m = Machine("512M", cmdline="cma=64M", fixes=fixes)
    m.kexec_file_load(k, None, "", 0)
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    assert used(m) == (0 if fixed else 0x80000 // PAGE)
    m = Machine("512M", cmdline="cma=64M", fixes=fixes)
    m.kexec_file_load(k, None, "", 0)
    im = m.kexec_image
    assert im is not None
    kern = im.segments[0]
    assert kern.cma and kern.mem % MiB == 0x80000
    at_mem = m.phys_read(kern.mem, 64) == k[:64]
    assert at_mem is fixed
    assert (m.phys_read(kern.mem - 0x80000, 64) == k[:64]) is (not fixed)
    r = m.kernel_kexec()
    assert (r.corrupted == []) is fixed and r.verified is fixed
    if not fixed:
        assert all(idx == 0 for _, _, idx in r.corrupted)


# ---------------------------------------------------------------- CMA vs NO_CMA property
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_cma_and_no_cma_side_by_side(data: st.DataObject) -> None:
    """The same layout and load with and without NO_CMA (every fix on): errors decided
    before placement are identical; whatever succeeds boots to the same segment bytes
    (K19.8), CMA segments never appear in the list, the CMA mode copies no more in the hot
    phase, and the bitmap returns to its pre-load state after unload."""
    kw = data.draw(layouts(max_ram="256M"), label="layout")
    load = data.draw(kexec_loads(arch=kw["arch"], max_kernel="4M", max_initrd="4M",
                                 valid=data.draw(st.booleans(), label="valid")), label="load")
    outcome: dict[bool, Any] = {}
    for no_cma in (True, False):
        m = Machine(**kw, fixes="all")
        bitmaps = [a.bitmap() for a in m.cma_areas]
        flags = (load["flags"] | KEXEC_FILE_NO_CMA) if no_cma else \
            (load["flags"] & ~KEXEC_FILE_NO_CMA)
        try:
            m.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], flags)
        except OSError as exc:
            outcome[no_cma] = exc.errno
            assert [a.bitmap() for a in m.cma_areas] == bitmaps
            continue
        im = m.kexec_image
        assert im is not None
        dests = {a for k, a in im.entries() if k == "DESTINATION"}
        assert not any(s.mem in dests for s in im.segments if s.cma)
        # The generated dtb / boot parameters name addresses, so they differ by mode; the
        # file-backed segments must be the same bytes in both.
        files = {bytes(load["kernel"]), bytes(load["kernel"][1024:])} | \
            ({bytes(load["initrd"])} if load["initrd"] is not None else set())
        contents = ([s.bufsz for s in im.segments],
                    [bytes(s.buf[:s.bufsz]) for s in im.segments if bytes(s.buf[:s.bufsz]) in files])
        m2 = Machine(**kw, fixes="all")
        m2.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], flags)
        m2.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
        assert [a.bitmap() for a in m2.cma_areas] == bitmaps
        r = m.kernel_kexec()
        assert r.corrupted == []
        outcome[no_cma] = (contents, r.hot_phase_pages)
    a, b = outcome[True], outcome[False]
    event(f"NO_CMA {'ok' if isinstance(a, tuple) else errno.errorcode[a]}, "
          f"CMA {'ok' if isinstance(b, tuple) else errno.errorcode[b]}")
    if isinstance(a, tuple) and isinstance(b, tuple):
        assert a[0] == b[0]
        assert b[1] <= a[1]
    elif isinstance(a, int) and isinstance(b, int) and errno.EADDRNOTAVAIL not in (a, b):
        assert a == b                          # probe, header and size checks agree


def test_fixes_refuse_an_unknown_quirk_name() -> None:
    """A misspelt quirk is an error where it is asked, never a silent "not fixed"."""
    m = Machine("64M", fixes=["cma-stale-tail"])
    assert m.fixes.on("cma-stale-tail") and not m.fixes.on("cma-align-cap")
    with pytest.raises(KeyError, match="cma-stale-tial"):
        "cma-stale-tial" in m.fixes  # noqa: B015 (the lookup itself must raise)
    assert isinstance(m.fixes | {"cma-align-cap"}, quirks.Fixes)
