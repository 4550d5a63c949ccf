"""CMA areas, cma_alloc with migration, pins (the MM I, M, R, CMA and D rules)."""

from __future__ import annotations

import errno

import pytest

from pykern import Machine

MiB = 1 << 20


def _debugfs(m: Machine, name: str, f: str) -> str:
    return m.read(f"/sys/kernel/debug/cma/{name}/{f}")


def test_d3_arm64_default_area_at_top_of_ram() -> None:
    """MM D3/C1.15: arm64 reserves 32 MiB named "reserved" at the top of RAM below 4 GiB."""
    m = Machine("1G")
    cma = m.dma_contiguous_default_area
    assert cma is not None and cma.name == "reserved"
    assert cma.base_pfn << 12 == 0x7E00_0000 and cma.count == 8192
    assert _debugfs(m, "reserved", "count") == "8192\n"
    assert _debugfs(m, "reserved", "used") == "0\n"


def test_d3_x86_has_no_default_area() -> None:
    """MM C1.15: x86_64 has no area without cma=."""
    assert Machine("1G", arch="x86_64").dma_contiguous_default_area is None


def test_cma2_size_rounded_up_to_2m() -> None:
    """MM CMA2.2: cma=3M reserves 4 MiB."""
    cma = Machine("256M", cmdline="cma=3M").dma_contiguous_default_area
    assert cma is not None and cma.count == 1024


def test_d2_fixed_base_and_disabled() -> None:
    """MM D2: size@base is fixed at base; cma=0 disables the area."""
    m = Machine("1G", cmdline="cma=16M@0x50000000")
    assert m.dma_contiguous_default_area is not None
    assert m.dma_contiguous_default_area.base_pfn << 12 == 0x5000_0000
    assert Machine("1G", cmdline="cma=0").dma_contiguous_default_area is None


def test_d2_malformed_cma_is_valueerror() -> None:
    with pytest.raises(ValueError, match="cma="):
        Machine("1G", cmdline="cma=xyz")


def test_cma2_unsatisfiable_logs_and_boots_without_area() -> None:
    """MM CMA2: a cma= that cannot fit is logged and the machine boots without it."""
    m = Machine("64M", cmdline="cma=128M")
    assert m.dma_contiguous_default_area is None
    assert any("Failed to reserve 128 MiB" in text for _, text in m.dmesg())


def test_cma2_6a_bottom_up_from_4g() -> None:
    """MM CMA2.6a: with limit ≥ 4 GiB + size the area goes to the lowest fit above 4 GiB."""
    m = Machine([(0, 2 << 30), (4 << 30, 3 << 30)], arch="x86_64", cmdline="cma=256M")
    cma = m.dma_contiguous_default_area
    assert cma is not None and cma.base_pfn << 12 == 4 << 30


def test_cma5_3_cma_blocks_descend_on_list10() -> None:
    """MM CMA5.3: list(10, CMA) holds the area's blocks in descending pfn order."""
    m = Machine("64M", reserved=(), cmdline="cma=16M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    blocks = m.mm.free_list("DMA", 10, "CMA")
    assert blocks == sorted(blocks, reverse=True) and len(blocks) == 4
    assert blocks[-1] == cma.base_pfn


def test_cma3_generated_name_quirk_and_fix() -> None:
    """MM CMA3 [quirk] cma-name-newline."""
    area = [{"size": "8M"}]
    assert Machine("256M", cma_areas=area).cma_areas[1].name == "cma2\n"
    assert Machine("256M", cma_areas=area, fixes=["cma-name-newline"]).cma_areas[1].name == "cma2"


def test_cma6_failure_log_lines() -> None:
    """MM CMA6.3: the captured failure dump, line for line."""
    m = Machine("512M", cmdline="cma=128M")
    cma = m.dma_contiguous_default_area
    assert cma is not None and cma.count == 32768
    assert cma.alloc(74, 0) is not None
    assert cma.alloc(32769, 0) is None
    tail = [text for _, text in m.dmesg()[-5:]]
    assert tail == ["cma: __cma_alloc: reserved: alloc failed, req-size: 32769 pages, ret: -16",
                    "cma: number of available pages: ", "cma: range 0: +32694@74", "cma: ",
                    "=> 32694 free of 32768 total pages"]
    assert _debugfs(m, "reserved", "used") == "74\n"
    assert _debugfs(m, "reserved", "bitmap").startswith("4294967295 4294967295 1023 0 ")


def test_cma12_no_warn_counts_but_stays_quiet() -> None:
    """MM CMA12: no_warn suppresses the log only."""
    m = Machine("256M", cmdline="cma=16M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    before = len(m.dmesg())
    assert cma.alloc(cma.count + 1, 0, no_warn=True) is None
    assert len(m.dmesg()) == before
    assert "cma_alloc_fail 1\n" in m.read("/proc/vmstat")
    assert m.read("/sys/kernel/mm/cma/reserved/alloc_pages_fail") == f"{cma.count + 1}\n"


def test_cma8_release_rules() -> None:
    """MM CMA8: outside → False; inside but not handed out → ValueError, state unchanged."""
    m = Machine("256M", cmdline="cma=16M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    assert cma.release(0x40000, 1) is False
    with pytest.raises(ValueError):
        cma.release(cma.base_pfn, 4)
    page = cma.alloc(16, 4)
    assert page is not None and page.pfn % 16 == 0
    assert cma.release(page, 16) and _debugfs(m, "reserved", "used") == "0\n"
    m.mm.check_invariants()


def test_cma11_debugfs_alloc_free() -> None:
    """MM CMA11: debugfs alloc/free writes."""
    m = Machine("256M", cmdline="cma=16M")
    m.write("/sys/kernel/debug/cma/reserved/alloc", "10")
    m.write("/sys/kernel/debug/cma/reserved/alloc", "5")
    assert _debugfs(m, "reserved", "used") == "15\n"
    m.write("/sys/kernel/debug/cma/reserved/free", "7")
    assert _debugfs(m, "reserved", "used") == "8\n"
    with pytest.raises(OSError) as exc:
        m.write("/sys/kernel/debug/cma/reserved/alloc", "100000")
    assert exc.value.errno == errno.ENOMEM


def _borrowing_machine() -> tuple[Machine, object, int, int]:
    m = Machine("128M", cmdline="cma=80M")
    task = m.new_task()
    n = 3000
    va = task.mmap_anon(n)
    task.write(va, bytes(range(256)) * (n * 16))
    return m, task, va, n


def test_a5_1_movable_pages_borrow_cma_and_unmovable_never_do() -> None:
    """MM A5.1/G5: CMA first when its free pages exceed half; unmovable never get CMA."""
    m, task, va, n = _borrowing_machine()
    assert all(m.mm.pageblock_type(task.pfn_of(va + k * 4096)) == "CMA"  # type: ignore
               for k in range(n))
    from pykern.mm import gfp
    page = m.mm.alloc_pages(gfp.GFP_KERNEL, 0)
    assert page is not None and m.mm.pageblock_type(page.pfn) != "CMA"


def test_m5_cma_alloc_migrates_task_pages_and_keeps_bytes() -> None:
    """MM M5/CMA7: cma_alloc moves the borrowed pages out; the task still reads its bytes."""
    m, task, va, n = _borrowing_machine()
    cma = m.dma_contiguous_default_area
    assert cma is not None
    block = cma.alloc(cma.count, 0)
    assert block is not None
    assert task.read(va, n * 4096) == bytes(range(256)) * (n * 16)  # type: ignore
    pfns = [task.pfn_of(va + k * 4096) for k in range(n)]  # type: ignore
    assert not any(cma.base_pfn <= p < cma.base_pfn + cma.count for p in pfns)
    m.mm.check_invariants()


def test_m8_short_term_pin_blocks_the_window() -> None:
    """MM M8/CMA7.4f: a pinned page stays; cma_alloc over it fails, bytes intact."""
    m, task, va, n = _borrowing_machine()
    cma = m.dma_contiguous_default_area
    assert cma is not None
    task.pin(va, 1)  # type: ignore
    pinned = task.pfn_of(va)  # type: ignore
    assert cma.alloc(cma.count, 0, no_warn=True) is None
    assert task.pfn_of(va) == pinned  # type: ignore
    assert task.read(va, n * 4096) == bytes(range(256)) * (n * 16)  # type: ignore
    m.mm.check_invariants()
    task.unpin(va, 1)  # type: ignore
    with pytest.raises(ValueError):
        task.unpin(va, 1)  # type: ignore
    assert cma.alloc(cma.count, 0) is not None


def test_m7_long_term_pin_leaves_cma() -> None:
    """MM M7: FOLL_LONGTERM migrates out of CMA first."""
    m, task, va, n = _borrowing_machine()
    task.pin(va, 8, longterm=True)  # type: ignore
    for k in range(8):
        assert m.mm.pageblock_type(task.pfn_of(va + k * 4096)) != "CMA"  # type: ignore
    assert task.read(va, 8 * 4096) == (bytes(range(256)) * (n * 16))[:8 * 4096]  # type: ignore


def test_m7_long_term_pin_of_pinned_cma_page_is_enomem() -> None:
    """MM M7.2: a CMA page that cannot move fails the pin with ENOMEM, nothing pinned."""
    m, task, va, _ = _borrowing_machine()
    task.pin(va, 1)  # type: ignore
    with pytest.raises(OSError) as exc:
        task.pin(va, 2, longterm=True)  # type: ignore
    assert exc.value.errno == errno.ENOMEM
    task.unpin(va, 1)  # type: ignore
    with pytest.raises(ValueError):
        task.unpin(va + 4096, 1)  # type: ignore


def test_d4_dma_alloc_caps_alignment() -> None:
    """MM D4: dma_alloc_from_contiguous caps align at 8 and uses dev.cma_area first (D1)."""
    m = Machine("512M", cmdline="cma=64M", cma_areas=[{"name": "dev", "size": "16M"}])
    page = m.dma_alloc_from_contiguous(None, 1, 12, False)
    assert page is not None and page.pfn % 256 == 0
    dev = type("Dev", (), {"cma_area": m.cma_areas[1]})()
    p2 = m.dma_alloc_from_contiguous(dev, 4, 0, False)
    assert p2 is not None and m.cma_areas[1].base_pfn <= p2.pfn
    assert m.dma_release_from_contiguous(dev, p2, 4)


def test_cma6_1_zero_and_negative_counts() -> None:
    """MM CMA6.1: count 0 → None, nothing counted; a negative count is the kernel's huge one."""
    m = Machine("256M", cmdline="cma=16M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    assert cma.alloc(0, 0) is None
    assert "cma_alloc_fail 0\n" in m.read("/proc/vmstat")
    assert cma.alloc(-1, 0) is None
    assert any("req-size: 18446744073709551615" in t for _, t in m.dmesg())
    assert _debugfs(m, "reserved", "used") == "0\n"
