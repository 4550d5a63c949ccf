"""kexec_file_load and the hot phase, mode by mode (issues 4, 5, 6, 8).

Groups (``--benchmark-group-by=group``):

- ``load 64M+128M``: the classic path on both arches, the CMA path into an idle area and into
  one half borrowed by a task (migration included). ``extra_info["pages"]`` is the page count,
  so µs/page = mean / pages.
- ``hot phase <size>``: the reboot of an image of that size: CMA (nothing to copy), NO_CMA
  with the compiled walk, NO_CMA with the pure-Python twin, and a warm ``memmove`` of the
  same bytes inside RAM as the floor.
"""

from __future__ import annotations

from typing import Any

import pytest

from pykern import Machine, _fast, images
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA
from pykern.mm import gfp

MiB = 1 << 20
KERNEL = 64 * MiB
INITRD = 128 * MiB
LOAD_PAGES = (KERNEL + INITRD) // 4096

_FILES: dict[tuple[str, int], bytes] = {}


def _kernel(arch: str, size: int) -> bytes:
    key = (arch, size)
    if key not in _FILES:
        _FILES[key] = images.arm64_image(size) if arch == "arm64" else images.bzimage(size)
    return _FILES[key]


def _initrd(size: int) -> bytes:
    key = ("initrd", size)
    if key not in _FILES:
        _FILES[key] = images.payload_pattern(size, seed=5)
    return _FILES[key]


def _warm(m: Machine, benchmark: Any) -> Machine:
    """Touch every RAM page once so the host's first-touch faults are not measured (skipped
    under --benchmark-disable, where only correctness is checked)."""
    if not getattr(benchmark, "disabled", False):
        m.ram[:] = bytes(len(m.ram))
    return m


LOAD_MODES = {
    "classic-arm64": ("arm64", KEXEC_FILE_NO_CMA, False),
    "cma-arm64-idle": ("arm64", 0, False),
    "cma-arm64-half-borrowed": ("arm64", 0, True),
    "classic-x86_64": ("x86_64", KEXEC_FILE_NO_CMA, False),
    "cma-x86_64-idle": ("x86_64", 0, False),
}


@pytest.mark.parametrize("mode", list(LOAD_MODES))
def test_bench_kexec_file_load(benchmark: Any, mode: str) -> None:
    arch, flags, borrowed = LOAD_MODES[mode]
    kernel, initrd = _kernel(arch, KERNEL), _initrd(INITRD)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        m = _warm(Machine("1G", arch=arch, cmdline="cma=256M"), benchmark)
        if borrowed:
            # more than half the free pages are CMA, so movable task pages land there
            t = m.new_task()
            t.mmap_anon(m.mm.nr_free_pages() // 2)
        return (m,), {}

    def run(m: Machine) -> None:
        m.kexec_file_load(kernel, initrd, "console=ttyAMA0", flags)
        im = m.kexec_image
        assert im is not None and all(s.cma for s in im.segments) == (flags == 0)

    benchmark.group = "load 64M+128M"
    benchmark.extra_info.update(pages=LOAD_PAGES, mode=mode)
    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)


SIZES = {"16M": 16 * MiB, "128M": 128 * MiB, "512M": 512 * MiB}
HOT_MODES = ["cma", "no-cma-compiled", "no-cma-pure", "memmove"]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mode", HOT_MODES)
def test_bench_hot_phase(benchmark: Any, mode: str, size: str) -> None:
    nbytes = SIZES[size]
    if getattr(benchmark, "disabled", False) and nbytes > 128 * MiB:
        pytest.skip("the 512M case only runs when benchmarking (CI time)")
    if mode == "no-cma-compiled" and not _fast.COMPILED:
        pytest.skip("pykern._fast is not compiled here")
    ram = "2G" if nbytes > 128 * MiB else "1G"
    # CMA mode needs an area the image fits in; NO_CMA needs room for scattered sources.
    cma = f"cma={max(64, 2 * nbytes // MiB)}M" if mode == "cma" else "cma=64M"

    if mode == "memmove":
        memops = _fast.get_memops(None)
        m = _warm(Machine(ram, cmdline="cma=0"), benchmark)
        base = m.physmem.offset(m.banks[0][0], 0) + 64 * MiB

        def copy() -> None:
            memops.copy_range(m.ram, base + nbytes, m.ram, base, nbytes)

        benchmark.group = f"hot phase {size}"
        benchmark.extra_info.update(bytes=nbytes, mode=mode)
        benchmark(copy)
        return

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        m = _warm(Machine(ram, cmdline=cma, extensions=mode != "no-cma-pure"), benchmark)
        flags = 0 if mode == "cma" else KEXEC_FILE_NO_CMA
        if flags and not getattr(benchmark, "disabled", False):
            _scatter_sources(m, nbytes, ram)     # sources scattered, none in place
        m.kexec_file_load(_kernel("arm64", nbytes), None, "", flags)
        return (m,), {}

    def reboot(m: Machine) -> None:
        r = m.kernel_kexec()
        assert r.corrupted == [] and m.generation == 1
        assert (r.hot_phase_bytes == 0) == (mode == "cma")
        benchmark.extra_info["hot_phase_seconds"] = r.hot_phase_seconds
        benchmark.extra_info["hot_phase_bytes"] = r.hot_phase_bytes

    benchmark.group = f"hot phase {size}"
    benchmark.extra_info.update(bytes=nbytes, mode=mode)
    benchmark.pedantic(reboot, setup=setup, rounds=1 if mode == "no-cma-pure" else 3,
                       iterations=1)


RAMS = {"256M": "256M", "1G": "1G", "4G": "4G"}


@pytest.mark.parametrize("ram", list(RAMS))
@pytest.mark.parametrize("mode", ["cma", "no-cma-compiled"])
def test_bench_reboot_by_ram_size(benchmark: Any, mode: str, ram: str) -> None:
    """Load + reboot of a 16 MiB kernel and 16 MiB initrd as RAM grows: what scales with RAM
    (boot of the next generation, the memmap) against what scales with the image."""
    if getattr(benchmark, "disabled", False) and ram == "4G":
        pytest.skip("the 4G case only runs when benchmarking (CI time)")
    flags = 0 if mode == "cma" else KEXEC_FILE_NO_CMA
    kernel, initrd = _kernel("arm64", 16 * MiB), _initrd(16 * MiB)

    def cycle() -> None:
        m = Machine(RAMS[ram], cmdline="cma=64M")
        m.kexec_file_load(kernel, initrd, "", flags)
        r = m.kernel_kexec()
        assert r.corrupted == [] and m.generation == 1

    benchmark.group = "load+reboot 16M+16M by RAM size"
    benchmark.extra_info.update(ram=ram, mode=mode)
    benchmark.pedantic(cycle, rounds=3, iterations=1)


def _scatter_sources(m: Machine, nbytes: int, ram: str = "1G") -> None:
    """Take every page, then give back every other page outside the image's destinations
    (found on a twin machine: placement ignores the buddy state, K6.8). The load's source
    pages are then scattered two pages apart and none sits in place (K11.5)."""
    twin = Machine(ram, cmdline=m.cmdline)
    twin.kexec_file_load(_kernel("arm64", nbytes), None, "", KEXEC_FILE_NO_CMA)
    im = twin.kexec_image
    assert im is not None
    dests = [(s.mem, s.mem + s.memsz) for s in im.segments]
    held = []
    while (page := m.mm.alloc_pages(gfp.GFP_KERNEL, 0)) is not None:
        held.append(page.phys)
    outside = [p for p in held if not any(lo <= p < hi for lo, hi in dests)]
    for phys in outside[::2]:
        m.mm.free_pages(phys >> 12, 0)


def _foreign_sources(im: Any) -> list[int]:
    out, dest = [], 0
    for kind, addr in im.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            if addr != dest:
                out.append(addr)
            dest += 4096
    return out


@pytest.mark.parametrize("impl", ["compiled", "pure", "memmove"])
def test_bench_walk_100m(benchmark: Any, impl: str) -> None:
    """Issue 6's ratio: the relocation walk alone over a 100 MiB walk-placed image (its 4 KiB
    source pages scattered by the allocator) against one contiguous 100 MiB memmove in the
    same RAM. Re-walking is idempotent (sources never overlap destinations, K11), so every
    round copies the same bytes."""
    nbytes = 100 * MiB
    if impl == "compiled" and not _fast.COMPILED:
        pytest.skip("pykern._fast is not compiled here")
    m = _warm(Machine("1G", cmdline="cma=0"), benchmark)
    if impl == "memmove":
        memops = _fast.get_memops(None)
        base = m.physmem.offset(m.banks[0][0], 0) + 64 * MiB

        def run() -> None:
            memops.copy_range(m.ram, base + nbytes + MiB, m.ram, base, nbytes)
    else:
        _scatter_sources(m, nbytes)
        m.kexec_file_load(_kernel("arm64", nbytes), None, "", KEXEC_FILE_NO_CMA)
        im = m.kexec_image
        assert im is not None
        own = sum(1 for k, a in im.entries() if k == "SOURCE") - len(_foreign_sources(im))
        assert own == 0, f"{own} source pages sit in place: the walk would not copy them"
        walker = _fast.get_relocate(impl == "compiled")
        runs = [v for run in m.physmem._runs for v in run]
        pages = sum(s.memsz // 4096 for s in im.segments)       # the kernel and the dtb

        def run() -> None:
            status, _, _, done, _ = walker.relocate_walk(m.ram, runs, im.head, -1, 0, 1 << 40)
            assert status == 0 and done == pages

    benchmark.group = "walk 100M"
    benchmark.extra_info.update(bytes=nbytes, impl=impl)
    benchmark.pedantic(run, rounds=5 if impl == "pure" else 20, iterations=1)
