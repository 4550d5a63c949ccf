"""kexec_file_load, the hot phase and the whole reboot, mode by mode, each group with a
floor measured in the same run (issues 4, 5, 6, 8, 19).

Each timed call is one part only (the ``benchmark_kexec`` fixture of ``pykern.testing``: a
fresh machine per round, only the chosen stage inside the timer, pykern's own checks left
out); the floor is what copying (or hashing) the same bytes costs on this host.  Groups
(``--benchmark-group-by=group``):

- ``load 64M+128M <arch>``: ``kexec_file_load`` alone, classic (NO_CMA) and CMA (into an
  idle area; on arm64 also into one half borrowed by a task, migration included), beside
  ``memmove`` (the image's bytes written into RAM once) and, on x86_64, ``sha256`` of the
  image (the digest the x86 load computes).  ``extra_info["pages"]``: µs/page = mean / pages.
- ``hot phase <size>``: ``machine_kexec`` alone (the ``hot_phase`` stage): CMA (nothing to
  copy), NO_CMA with the compiled walk, NO_CMA with the pure-Python twin (sources scattered
  the way the allocator scatters them), and a warm ``memmove`` of the same bytes.
- ``reboot (whole) 128M``: every stage of ``kernel_kexec`` (device shutdown, the hot phase,
  the jump, the next generation's boot) per mode, beside the same ``memmove``.
- ``load+reboot 512M``: load and whole reboot of a 512 MiB CMA image, with and without
  pykern's checks (``verified``, the corruption scan), beside one pass over the image.
"""

from __future__ import annotations

import hashlib
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


def _timing(benchmark: Any) -> bool:
    """False under --benchmark-disable, where only correctness is checked (and fast)."""
    return not getattr(benchmark, "disabled", False)


def _warm(m: Machine, benchmark: Any) -> Machine:
    """Touch every RAM page once so the host's first-touch faults are not measured (skipped
    under --benchmark-disable, where only correctness is checked)."""
    if _timing(benchmark):
        m.ram[:] = bytes(len(m.ram))
    return m


def _floor(benchmark: Any, group: str, nbytes: int, what: str = "memmove",
           data: bytes | None = None, **info: Any) -> None:
    """The floor member of ``group``: one warm ``memmove`` of ``nbytes`` inside RAM, the
    bytes of ``data`` written into RAM once (``what="memmove"`` with data), or the SHA-256
    of ``data`` (``what="sha256"``)."""
    memops = _fast.get_memops(None)
    ram = "2G" if nbytes > 128 * MiB else "1G"
    m = _warm(Machine(ram, cmdline="cma=0"), benchmark)
    base = m.physmem.offset(m.banks[0][0], 0) + 64 * MiB
    if what == "sha256":
        assert data is not None

        def run() -> None:
            hashlib.sha256(data).digest()
    elif data is not None:
        def run() -> None:
            m.ram[base:base + len(data)] = data
    else:
        def run() -> None:
            memops.copy_range(m.ram, base + nbytes, m.ram, base, nbytes)

    benchmark.group = group
    benchmark.extra_info.update(mode=what, bytes=nbytes, **info)
    benchmark.pedantic(run, rounds=10 if nbytes <= 256 * MiB else 5, iterations=1)


# ----------------------------------------------------------------------------- the load
LOAD_MODES = {
    "arm64": {"classic": (KEXEC_FILE_NO_CMA, False), "cma-idle": (0, False),
              "cma-half-borrowed": (0, True)},
    "x86_64": {"classic": (KEXEC_FILE_NO_CMA, False), "cma-idle": (0, False)},
}
LOAD_CASES = [(arch, mode) for arch in LOAD_MODES for mode in LOAD_MODES[arch]] + \
    [("arm64", "memmove"), ("x86_64", "memmove"), ("x86_64", "sha256")]


@pytest.mark.parametrize("arch,mode", LOAD_CASES, ids=[f"{a}-{m}" for a, m in LOAD_CASES])
def test_bench_kexec_file_load(benchmark_kexec: Any, benchmark: Any, arch: str,
                               mode: str) -> None:
    kernel, initrd = _kernel(arch, KERNEL), _initrd(INITRD)
    group = f"load 64M+128M {arch}"
    if mode in ("memmove", "sha256"):
        _floor(benchmark, group, KERNEL + INITRD, mode, kernel + initrd, pages=LOAD_PAGES)
        return
    flags, borrowed = LOAD_MODES[arch][mode]

    def machine() -> Machine:
        m = Machine("1G", arch=arch, cmdline="cma=256M")
        if borrowed:
            # A task faults pages in until it holds half the CMA area: movable allocations
            # take CMA pages once CMA holds more than half the free pages (MM A5.1).
            task = m.new_task()
            while _cma_free_kib(m) > 128 * 1024:
                task.mmap_anon(2048)
        return m

    benchmark.group = group
    benchmark.extra_info.update(pages=LOAD_PAGES, mode=mode)
    m = benchmark_kexec(machine, (kernel, initrd, "console=ttyAMA0", flags), "load", rounds=3)
    im = m.kexec_image
    assert im is not None and all(s.cma for s in im.segments) == (flags == 0)
    migrated = int(m.read("/proc/vmstat").split("pgmigrate_success ")[1].split()[0])
    assert (migrated > 0) == borrowed
    benchmark.extra_info["migrated_pages"] = migrated


def _cma_free_kib(m: Machine) -> int:
    return int(m.read("/proc/meminfo").split("CmaFree:")[1].split()[0])


# ------------------------------------------------------------------------ the hot phase
SIZES = {"16M": 16 * MiB, "128M": 128 * MiB, "512M": 512 * MiB}
HOT_MODES = ["cma", "no-cma-compiled", "no-cma-pure", "memmove"]
_DESTS: dict[tuple[str, str, int], list[tuple[int, int]]] = {}


def _reboot_machine(benchmark: Any, mode: str, nbytes: int) -> tuple[Any, tuple[Any, ...]]:
    """The machine builder and load of a ``mode`` reboot of an ``nbytes`` arm64 kernel: CMA
    needs an area the image fits in; NO_CMA gets its sources scattered, none in place."""
    ram = "2G" if nbytes > 128 * MiB else "1G"
    cma = f"cma={max(64, 2 * nbytes // MiB)}M" if mode == "cma" else "cma=64M"
    flags = 0 if mode == "cma" else KEXEC_FILE_NO_CMA
    timing = _timing(benchmark)

    def machine() -> Machine:
        m = Machine(ram, cmdline=cma, extensions=mode != "no-cma-pure")
        if flags and timing:
            _scatter_sources(m, nbytes, ram)
        return m

    return machine, (_kernel("arm64", nbytes), None, "", flags)


def _skip(benchmark: Any, mode: str, nbytes: int) -> None:
    if not _timing(benchmark) and nbytes > 128 * MiB:
        pytest.skip("the 512M cases only run when benchmarking (CI time)")
    if mode == "no-cma-compiled" and not _fast.COMPILED:
        pytest.skip("pykern._fast is not compiled here")


def _reboot_bench(benchmark: Any, group: str, mode: str,
                  nbytes: int) -> tuple[Any, tuple[Any, ...]] | None:
    """One member of a reboot group: skipped where it does not run, the floor timed (None),
    or the group set and the machine of ``mode`` built."""
    _skip(benchmark, mode, nbytes)
    if mode == "memmove":
        _floor(benchmark, group, nbytes)
        return None
    benchmark.group = group
    benchmark.extra_info.update(bytes=nbytes, mode=mode)
    return _reboot_machine(benchmark, mode, nbytes)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mode", HOT_MODES)
def test_bench_hot_phase(benchmark_kexec: Any, benchmark: Any, mode: str, size: str) -> None:
    """The ``hot_phase`` stage alone (``machine_kexec``, K16.2) of each mode."""
    nbytes = SIZES[size]
    built = _reboot_bench(benchmark, f"hot phase {size}", mode, nbytes)
    if built is None:
        return
    machine, load = built
    r = benchmark_kexec(machine, load, "hot_phase", rounds=1 if mode == "no-cma-pure" else 3,
                        checks=not _timing(benchmark))      # CI: finish with the checks
    assert (r.result.hot_phase_bytes == 0) == (mode == "cma")
    benchmark.extra_info["hot_phase_seconds"] = r.result.hot_phase_seconds
    benchmark.extra_info["hot_phase_bytes"] = r.result.hot_phase_bytes
    assert r.run().booted and r.machine.generation == 1
    assert r.result.corrupted == []


@pytest.mark.parametrize("mode", HOT_MODES)
def test_bench_reboot_whole(benchmark_kexec: Any, benchmark: Any, mode: str) -> None:
    """Every stage of ``kernel_kexec`` (K16.1) of a 128 MiB kernel, pykern's checks left out
    (with them under --benchmark-disable)."""
    nbytes = 128 * MiB
    built = _reboot_bench(benchmark, "reboot (whole) 128M", mode, nbytes)
    if built is None:
        return
    machine, load = built
    checks = not _timing(benchmark)
    r = benchmark_kexec(machine, load, "reboot", rounds=1 if mode == "no-cma-pure" else 3,
                        checks=checks)
    assert r.result.booted and r.machine.generation == 1
    assert r.result.corrupted == [] and r.result.verified == checks


@pytest.mark.parametrize("mode", ["cma", "cma-checked", "memmove"])
def test_bench_load_reboot_512m(benchmark_kexec: Any, benchmark: Any, mode: str) -> None:
    """Issue 19's row: load + whole reboot of a 512 MiB kernel in CMA mode (next boot
    included; with pykern's checks in ``cma-checked``) against one pass over the image."""
    nbytes = 512 * MiB
    _skip(benchmark, mode, nbytes)
    group = "load+reboot 512M"
    kernel = _kernel("arm64", nbytes)
    if mode == "memmove":
        _floor(benchmark, group, nbytes, "memmove", kernel)
        return
    checks = mode == "cma-checked"

    def load_and_reboot(m: Machine) -> None:
        m.kexec_file_load(kernel, None, "", 0)
        m.kernel_kexec_stages(checks=checks).run()

    benchmark.group = group
    benchmark.extra_info.update(bytes=nbytes, mode=mode)
    m = benchmark_kexec({"ram": "2G", "cmdline": "cma=1G"}, load_and_reboot, "load",
                        rounds=3)
    benchmark.extra_info["checks"] = checks       # the reboot's, not the fixture's
    assert m.generation == 1


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
    key = (ram, m.cmdline, nbytes)
    if key not in _DESTS:
        twin = Machine(ram, cmdline=m.cmdline)
        twin.kexec_file_load(_kernel("arm64", nbytes), None, "", KEXEC_FILE_NO_CMA)
        im = twin.kexec_image
        assert im is not None
        _DESTS[key] = [(s.mem, s.mem + s.memsz) for s in im.segments]
    dests = _DESTS[key]
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
