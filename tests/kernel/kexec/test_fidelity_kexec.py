"""Issue 17 (kexec_file items) and issue 16 (unknown boot parameters): the kernel's log text,
levels and ordering, dynamic debug, the kernel configuration and version options.

Each test names the kernel function it follows.
"""

from __future__ import annotations

import errno
import pickle
import struct
from typing import Any

import pytest

from pykern import Machine, images
from pykern.kernel.kexec.uapi import (KEXEC_FILE_DEBUG, KEXEC_FILE_FORCE_DTB, KEXEC_FILE_NO_CMA,
                                      KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD)
from pykern.mm import gfp

MiB = 1 << 20
PAGE = 4096
ARCHES = ["arm64", "x86_64"]
CONTROL = "/sys/kernel/debug/dynamic_debug/control"
_NOWARN = gfp.__GFP_NOWARN


def kernel_for(arch: str, size: int = 2 * MiB, **kw: Any) -> bytes:
    return images.arm64_image(size, **kw) if arch == "arm64" else images.bzimage(size, **kw)


def new_lines(m: Machine, n: int) -> list[tuple[int, str]]:
    return m.dmesg()[n:]


def kexec_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    prefixes = ("kexec_file", "kexec-bzImage64", "kexec:")
    return [(lvl, t) for lvl, t in lines if t.startswith(prefixes)]


def control_lines(m: Machine) -> list[str]:
    return m.read(CONTROL).splitlines()


# ------------------------------------------------------------ 1. kexec_dprintk, pr_debug
@pytest.mark.parametrize("arch", ARCHES)
def test_kexec_dprintk_prints_nothing_without_kexec_file_debug(arch: str) -> None:
    """include/linux/kexec.h kexec_dprintk: ``if (kexec_file_dbg_print) pr_info(...)`` --
    without KEXEC_FILE_DEBUG a load logs nothing, not even at KERN_DEBUG (it used to log
    every placement line at level 7)."""
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for(arch), images.payload_pattern(MiB), "quiet", 0)
    assert m.kexec_image is not None and any(s.cma for s in m.kexec_image.segments)
    assert kexec_lines(new_lines(m, n)) == []


@pytest.mark.parametrize("arch", ARCHES)
def test_kexec_alloc_contig_is_pr_debug_even_under_kexec_file_debug(arch: str) -> None:
    """kernel/kexec_file.c kexec_alloc_contig: its "allocated %zu DMA pages" message is a
    pr_debug, so KEXEC_FILE_DEBUG prints the segment list at pr_info but not that line."""
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for(arch), None, "", KEXEC_FILE_DEBUG)
    lines = kexec_lines(new_lines(m, n))
    assert any(t.startswith("kexec_file: segment[0]:") for _, t in lines)
    assert {lvl for lvl, _ in lines} == {6}
    assert not any("DMA pages" in t for _, t in lines)


@pytest.mark.parametrize("param", ['dyndbg="func kexec_alloc_contig +p"',
                                   'kexec_file.dyndbg="+p"', "kexec_file.dyndbg",
                                   'dyndbg="file kernel/kexec_file.c line 679 +p"'])
def test_dyndbg_boot_parameter_enables_the_pr_debug_site(param: str) -> None:
    """lib/dynamic_debug.c ddebug_dyndbg_boot_param_cb: ``dyndbg=`` and
    ``<module>.dyndbg=`` (bare: ``+p``) switch kexec_alloc_contig's pr_debug on; it prints
    at KERN_DEBUG with the page count and the block's pfn, load flags or not."""
    m = Machine("512M", cmdline=f"cma=64M {param}")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("arm64"), None, "", 0)
    im = m.kexec_image
    assert im is not None
    want = [(7, f"kexec_file: allocated {s.memsz // PAGE} DMA pages at {s.mem // PAGE:#x}")
            for s in im.segments if s.cma]
    assert want and kexec_lines(new_lines(m, n)) == want


def test_dynamic_debug_control_lists_the_sites_in_the_kernel_format() -> None:
    """lib/dynamic_debug.c ddebug_proc_show: header, then ``file:line [module]function
    =flags "format"`` with the format escaped; tables in link order, sites last first;
    everything off (``=_``) by default."""
    x86 = Machine("256M", arch="x86_64")
    assert control_lines(x86) == [
        "# filename:lineno [module]function flags format",
        'arch/x86/kernel/kexec-bzimage64.c:384 [kexec_bzimage64]bzImage64_probe =_ '
        '"It\'s a relocatable bzImage64\\n"',
        'kernel/kexec_file.c:685 [kexec_file]kexec_alloc_contig =_ '
        '"CMA overlaps existing mem: 0x%lx+0x%lx\\n"',
        'kernel/kexec_file.c:679 [kexec_file]kexec_alloc_contig =_ '
        '"allocated %zu DMA pages at 0x%lx"',
    ]
    arm = Machine("256M")
    assert len(control_lines(arm)) == 3                  # no x86 loader on arm64
    assert arm.read("/proc/dynamic_debug/control") == arm.read(CONTROL)


def test_dynamic_debug_control_write_query_language() -> None:
    """lib/dynamic_debug.c ddebug_exec_queries / ddebug_parse_query / ddebug_parse_flags:
    match-specs with wildcards, ``file name:func``, line ranges, ``^`` formats, several
    queries per write, ``+``/``-``/``=`` with the p/m/f/s/l/t flags."""
    m = Machine("256M", arch="x86_64")
    m.write(CONTROL, "module kexec_* line 680-690 +p")
    assert [ln.split(" =")[1][:1] for ln in control_lines(m)[1:]] == ["_", "p", "_"]
    m.write(CONTROL, 'file kexec_file.c:kexec_alloc_contig =pf; format "^It\'s" +p\n')
    assert [ln.split(" =")[1].split()[0] for ln in control_lines(m)[1:]] == ["p", "pf", "pf"]
    m.write(CONTROL, "func kexec_alloc_contig -f # comment")
    assert [ln.split(" =")[1].split()[0] for ln in control_lines(m)[1:]] == ["p", "p", "p"]
    m.write(CONTROL, "class FOO +p")                       # no site has a class: no match
    m.write(CONTROL, "module kexec_bzimage64 -p")
    n = len(m.dmesg())
    assert m.kexec_file_load(kernel_for("x86_64"), None, "", 0) is None
    assert not any("relocatable" in t for _, t in new_lines(m, n))


def test_dynamic_debug_prefix_flags_and_the_overlap_site() -> None:
    """lib/dynamic_debug.c __dynamic_emit_prefix with ``+pmfl``, on kexec_alloc_contig's
    "CMA overlaps existing mem" pr_debug (the K7.8 give-back of the x86 initrd block)."""
    m = Machine("512M", arch="x86_64", cmdline="cma=64M")
    m.write(CONTROL, "file kexec_file.c +pmfl")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("x86_64"), images.payload_pattern(249 * PAGE), "", 0)
    lines = [t for lvl, t in new_lines(m, n) if lvl == 7]
    assert any(t.startswith("kexec_file:kexec_alloc_contig:685: kexec_file: CMA overlaps "
                            "existing mem: 0x") and t.endswith("+0xf9000") for t in lines)
    assert any(t.startswith("kexec_file:kexec_alloc_contig:679: kexec_file: allocated 5 "
                            "DMA pages at 0x") for t in lines)


def test_bzimage64_probe_pr_debug_site() -> None:
    """arch/x86/kernel/kexec-bzimage64.c bzImage64_probe: the "It's a relocatable
    bzImage64" pr_debug, enabled by function name."""
    m = Machine("256M", arch="x86_64", cmdline='dyndbg="func bzImage64_probe +p"')
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("x86_64"), None, "", 0)
    assert (7, "kexec-bzImage64: It's a relocatable bzImage64") in new_lines(m, n)


@pytest.mark.parametrize("query,errors", [
    ("frob x +p", ['dyndbg: unknown keyword "frob"', "dyndbg: query parse failed"]),
    ("file x.c", ["dyndbg: bad flag-op x, at start of x.c", "dyndbg: flags parse failed"]),
    ("module kexec_file +z", ["dyndbg: unknown flag 'z'", "dyndbg: flags parse failed"]),
    ("module kexec_file +p; file", ["dyndbg: bad flag-op f, at start of file",
                                    "dyndbg: flags parse failed"]),
    ("line 9-3 +p", ["dyndbg: last-line:3 < 1st-line:9", "dyndbg: query parse failed"]),
    ("func a func b +p", ["dyndbg: match-spec:func val:a overridden by b",
                          "dyndbg: query parse failed"]),
])
def test_dynamic_debug_bad_queries_fail_with_einval(query: str, errors: list[str]) -> None:
    """lib/dynamic_debug.c ddebug_proc_write: a bad query logs the parser's pr_err lines
    and the write returns -EINVAL; the good queries of the same write still apply."""
    m = Machine("256M")
    n = len(m.dmesg())
    with pytest.raises(OSError) as exc:
        m.write(CONTROL, query)
    assert exc.value.errno == errno.EINVAL
    assert [t for lvl, t in new_lines(m, n) if lvl == 3] == errors
    flags = [ln.split(" =")[1].split()[0] for ln in control_lines(m)[1:]]
    assert flags == (["p", "p"] if query.startswith("module kexec_file +p") else ["_", "_"])
    with pytest.raises(OSError) as big:
        m.write(CONTROL, "#" * 4096)
    assert big.value.errno == errno.E2BIG


# ------------------------------------------------------- 2./3. segment lines, NOWARN
def _starved_machine() -> Machine:
    """512 MiB, its default CMA area, and all but ~8 MiB of the non-CMA memory taken."""
    m = Machine("512M")
    while m.mm.nr_free_pages() - m.mm.zones[0].nr_free_cma > 2048 + 512:
        assert m.mm.alloc_pages(gfp.GFP_KERNEL | _NOWARN, 9) is not None
    return m


def test_segment_debug_lines_print_before_each_segment_is_loaded() -> None:
    """kernel/kexec_file.c kexec_file_load: ``nr_segments`` and each ``segment[i]`` line
    are printed in the load loop, before kimage_load_segment(i); a load that runs out of
    memory in segment 0 has printed them up to segment[0] (and never the final
    ``kexec_file_load: type:`` line)."""
    m = _starved_machine()
    n = len(m.dmesg())
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(kernel_for("arm64", 32 * MiB), None, "", KEXEC_FILE_NO_CMA
                          | KEXEC_FILE_DEBUG)
    assert exc.value.errno == errno.ENOMEM
    texts = [t for _, t in kexec_lines(new_lines(m, n))]
    assert "kexec_file: nr_segments = 2" in texts
    assert any(t.startswith("kexec_file: segment[0]: ") for t in texts)
    assert not any(t.startswith(("kexec_file: segment[1]", "kexec_file: kexec_file_load:"))
                   for t in texts)
    assert m.kexec_image is None


def test_kimage_alloc_pages_warns_when_a_load_runs_out_of_memory() -> None:
    """kernel/kexec_core.c kimage_alloc_pages: ``alloc_pages(gfp_mask & ~__GFP_ZERO)`` adds
    no __GFP_NOWARN, so the source page that cannot be had leaves the allocator's
    page-allocation-failure warning (GFP_HIGHUSER, order 0)."""
    m = _starved_machine()
    n = len(m.dmesg())
    with pytest.raises(OSError):
        m.kexec_file_load(kernel_for("arm64", 32 * MiB), None, "", KEXEC_FILE_NO_CMA)
    warnings = [t for lvl, t in new_lines(m, n) if lvl == 4 and "page allocation failure" in t]
    assert len(warnings) == 1
    assert "order:0" in warnings[0] and "GFP_HIGHUSER" in warnings[0]


# ------------------------------------------------------------------- 4. x86 messages
@pytest.mark.parametrize("kw,message", [
    ({"size": 1000}, "File is too short to be a bzImage"),
    ({"magic": b"HdrX"}, "Not a bzImage"),
    ({"boot_flag": 0x55AA}, "No x86 boot sector present"),
    ({"version": 0x020B}, "Must be at least protocol version 2.12"),
    ({"loadflags": 0}, "zImage not a bzImage"),
    ({"xloadflags": 2}, "Not a bzImage64. XLF_KERNEL_64 is not set."),
    ({"xloadflags": 1}, "XLF_CAN_BE_LOADED_ABOVE_4G is not set."),
])
def test_bzimage64_probe_error_messages(kw: dict[str, Any], message: str) -> None:
    """arch/x86/kernel/kexec-bzimage64.c bzImage64_probe: each refusal is a pr_err with
    the loader's prefix, and the syscall fails with ENOEXEC."""
    m = Machine("256M", arch="x86_64")
    size = kw.pop("size", 2 * MiB)
    n = len(m.dmesg())
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(images.bzimage(size, **kw), None, "", 0)
    assert exc.value.errno == errno.ENOEXEC
    assert [(lvl, t) for lvl, t in new_lines(m, n)] == [(3, "kexec-bzImage64: " + message)]


def test_bzimage64_load_initrd_line_prints_the_length() -> None:
    """arch/x86/kernel/kexec-bzimage64.c bzImage64_load: "Loaded initrd at ... bufsz=
    memsz=" both print initrd_len, not the page-rounded segment memsz."""
    m = Machine("256M", arch="x86_64")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("x86_64"), b"\1" * 5000, "", KEXEC_FILE_DEBUG)
    im = m.kexec_image
    assert im is not None and im.segments[3].memsz == 0x2000
    assert (6, f"kexec-bzImage64: Loaded initrd at {im.segments[3].mem:#x} bufsz=0x1388 "
               "memsz=0x1388") in new_lines(m, n)


def test_x86_crash_elf_header_message_uses_crash_c_prefix() -> None:
    """arch/x86/kernel/crash.c crash_load_segments: pr_fmt there is "kexec: ", so the
    message reads "kexec: Loaded ELF headers at ..." (not the bzImage loader's prefix);
    the E820 memmap of setup_boot_parameters follows the command line."""
    m = Machine("1G", arch="x86_64", cmdline="crashkernel=128M")
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("x86_64"), None, "", KEXEC_FILE_ON_CRASH | KEXEC_FILE_DEBUG)
    im = m.kexec_crash_image
    assert im is not None
    texts = [t for _, t in new_lines(m, n)]
    seg = im.segments[0]
    assert f"kexec: Loaded ELF headers at {seg.mem:#x} bufsz=0x1000 memsz={seg.memsz:#x}" \
        in texts
    e820 = texts.index("kexec-bzImage64: E820 memmap:")
    assert texts[e820 - 1].startswith("kexec-bzImage64: Final command line is: elfcorehdr=")
    assert texts[e820 + 1] == "kexec-bzImage64: 0000000000000000-00000000000fffff (1)"


# ------------------------------------------------------------- 5. config, crash hotplug
def _purgatory_regions(m: Machine) -> list[tuple[int, int]]:
    im = m.kexec_crash_image
    assert im is not None
    blob = m.phys_read(im.segments[im.arch["purgatory_idx"]].mem, 0x400)
    table = [struct.unpack_from("<QQ", blob, 0x200 + 16 * k) for k in range(16)]
    return [r for r in table if r[1]]


@pytest.mark.parametrize("hotplug", [True, False])
def test_config_crash_hotplug_sizes_the_elfcorehdr(hotplug: bool) -> None:
    """arch/x86/kernel/crash.c crash_load_segments with CONFIG_CRASH_HOTPLUG (default on
    x86_64): memsz = page_align((2 + NR_CPUS_DEFAULT 64 + CRASH_MAX_MEMORY_RANGES 8192) *
    56 + 64) = 0x71000, elfcorehdr_index recorded; kexec_calculate_store_digests skips it,
    and crash_setup_memmap_entries cuts the unrounded size out of the crash region.
    Without it: memsz = bufsz, index -1, the segment is in the digest."""
    cfg = None if hotplug else {"CRASH_HOTPLUG": False}
    m = Machine("1G", arch="x86_64", cmdline="crashkernel=256M", config=cfg)
    assert m.config["CRASH_HOTPLUG"] is hotplug
    m.kexec_file_load(kernel_for("x86_64"), None, "", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None
    elf = im.segments[0]
    assert elf.bufsz == 0x1000 and elf.memsz == (0x71000 if hotplug else 0x1000)
    assert im.elfcorehdr_index == (0 if hotplug else -1)
    assert im.hotplug_support is hotplug
    assert ((elf.mem, elf.memsz) in _purgatory_regions(m)) is not hotplug
    crashk = m.crashk_res
    assert crashk is not None
    zero = m.phys_read(im.arch["boot_params"], PAGE)
    entries = [struct.unpack_from("<QQI", zero, 0x2D0 + 20 * k) for k in range(zero[0x1E8])]
    cut = 0x70EB0 if hotplug else 0x1000
    assert entries[-1] == (crashk[0] + cut, crashk[1] - crashk[0] - cut, 1)
    r = m.panic()
    assert r is not None and r.verified and m.generation == 1


@pytest.mark.parametrize("memory_hotplug", [True, False])
def test_config_memory_hotplug_and_nr_cpus_default_in_the_elfcorehdr(
        memory_hotplug: bool) -> None:
    """crash_load_segments: with MEMORY_HOTPLUG room for CRASH_MAX_MEMORY_RANGES headers,
    without it only for the present ranges (here 2: below and above the crash region);
    NR_CPUS_DEFAULT and CRASH_MAX_MEMORY_RANGES are read from the configuration."""
    cfg = {"MEMORY_HOTPLUG": memory_hotplug, "NR_CPUS_DEFAULT": 128,
           "CRASH_MAX_MEMORY_RANGES": 1000}
    m = Machine("1G", arch="x86_64", cmdline="crashkernel=256M", config=cfg)
    m.kexec_file_load(kernel_for("x86_64"), None, "", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None
    pnum = 2 + 128 + (1000 if memory_hotplug else 2)
    assert im.segments[0].memsz == (pnum * 56 + 64 + PAGE - 1) // PAGE * PAGE


def test_config_crash_hotplug_too_many_program_headers() -> None:
    """crash_load_segments: at PN_XNUM (0xffff) program headers or more the kernel logs
    "number of Phdrs ... exceeds max" and keeps the unsized segment (no elfcorehdr_index)."""
    m = Machine("1G", arch="x86_64", cmdline="crashkernel=256M",
                config={"CONFIG_CRASH_MAX_MEMORY_RANGES": 0xFFFF})
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("x86_64"), None, "", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None and im.segments[0].memsz == 0x1000 and im.elfcorehdr_index == -1
    assert (3, f"kexec: number of Phdrs {2 + 64 + 0xFFFF} exceeds max") in new_lines(m, n)


def test_config_is_a_readonly_validated_mapping() -> None:
    """``Machine(config=...)`` (pykern.kernel.config): documented defaults per arch,
    readable as ``m.config``, not writable, picklable; unknown symbols, bad values and
    CRASH_HOTPLUG on arm64 (no ARCH_SUPPORTS_CRASH_HOTPLUG) are refused."""
    arm, x86 = Machine("256M"), Machine("256M", arch="x86_64")
    assert (arm.config["CRASH_HOTPLUG"], x86.config["CRASH_HOTPLUG"]) == (False, True)
    assert (arm.config["CMA_SIZE_MBYTES"], x86.config["CMA_SIZE_MBYTES"]) == (32, 0)
    assert dict(x86.config)["CMA_ALIGNMENT"] == 8 and x86.config["NR_CPUS_DEFAULT"] == 64
    with pytest.raises(TypeError):
        x86.config["CMA_ALIGNMENT"] = 9            # type: ignore[index]
    assert pickle.loads(pickle.dumps(x86.config)) == x86.config
    for bad in ({"NO_SUCH": 1}, {"CMA_ALIGNMENT": 13}, {"CMA_ALIGNMENT": True},
                {"CRASH_HOTPLUG": 1}, "CRASH_HOTPLUG"):
        with pytest.raises(ValueError):
            Machine("256M", arch="x86_64", config=bad)
    with pytest.raises(ValueError, match="arm64"):
        Machine("256M", config={"CRASH_HOTPLUG": True})


@pytest.mark.parametrize("cma_alignment", [8, 9])
def test_config_cma_alignment_caps_dma_alloc_from_contiguous(cma_alignment: int) -> None:
    """kernel/dma/contiguous.c dma_alloc_from_contiguous: ``align`` is clamped to
    CONFIG_CMA_ALIGNMENT; with 8 an order-9 request behind one used page starts at the next
    MiB, with 9 at the next 2 MiB."""
    m = Machine("512M", cmdline="cma=64M", config={"CMA_ALIGNMENT": cma_alignment})
    area = m.dma_contiguous_default_area
    assert area is not None and area.base_pfn % 512 == 0
    assert m.dma_alloc_from_contiguous(None, 1, 0) is not None
    page = m.dma_alloc_from_contiguous(None, 1, 9)
    assert page is not None and page.pfn - area.base_pfn == (256 if cma_alignment == 8 else 512)


@pytest.mark.parametrize("arch,size_mb", [("x86_64", 0), ("x86_64", 16), ("arm64", 32),
                                          ("arm64", 0)])
def test_config_cma_size_mbytes_sizes_the_default_area(arch: str, size_mb: int) -> None:
    """kernel/dma/contiguous.c dma_contiguous_reserve: without ``cma=`` the default area
    is CONFIG_CMA_SIZE_MBYTES (x86_64 0, arm64 32 by default)."""
    m = Machine("512M", arch=arch, config={"CMA_SIZE_MBYTES": size_mb})
    area = m.dma_contiguous_default_area
    assert (area.count * PAGE if area else 0) == size_mb * MiB


def test_config_nr_cpus_bounds_cpus() -> None:
    """CONFIG_NR_CPUS bounds the possible CPUs: 512 by default, as configured otherwise."""
    assert Machine("256M", cpus=512).cpus == 512
    with pytest.raises(ValueError, match="NR_CPUS"):
        Machine("256M", cpus=513)
    with pytest.raises(ValueError, match="NR_CPUS"):
        Machine("256M", cpus=16, config={"NR_CPUS": 8})


@pytest.mark.parametrize("on", [True, False])
def test_config_dynamic_debug(on: bool) -> None:
    """CONFIG_DYNAMIC_DEBUG: with it, ``dyndbg=`` is a known (__setup) parameter and the
    control file exists; without it pr_debug is compiled out, there is no control file and
    ``dyndbg=`` is an unknown parameter passed to init (init/main.c unknown_bootoption)."""
    m = Machine("512M", cmdline='cma=64M dyndbg="+p"', config={"DYNAMIC_DEBUG": on})
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("arm64"), None, "", 0)
    assert any("DMA pages" in t for _, t in new_lines(m, n)) is on
    assert ("dyndbg=+p" in m.init_envp) is not on
    if on:
        assert control_lines(m)[0].startswith("# filename")
    else:
        with pytest.raises(FileNotFoundError):
            m.read(CONTROL)
        with pytest.raises(FileNotFoundError):
            m.write(CONTROL, "+p")


@pytest.mark.parametrize("which", ["alloc", "free"])
@pytest.mark.parametrize("default_on", [False, True])
def test_config_init_on_default(which: str, default_on: bool) -> None:
    """mm/mm_init.c init_mem_debugging_and_hardening: init_on_alloc/init_on_free default to
    CONFIG_INIT_ON_ALLOC/FREE_DEFAULT_ON; the command line still decides when given."""
    cfg = {f"INIT_ON_{which.upper()}_DEFAULT_ON": default_on}
    m = Machine("256M", config=cfg)
    assert getattr(m.mm, f"init_on_{which}") is default_on
    forced = Machine("256M", config=cfg, cmdline=f"init_on_{which}={int(not default_on)}")
    assert getattr(forced.mm, f"init_on_{which}") is (not default_on)


# ------------------------------------------------------------------- 6. version
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("version", ["6.17", "6.18"])
def test_version_force_dtb_flag(arch: str, version: str) -> None:
    """kernel/kexec_file.c kexec_file_load: ``flags & ~KEXEC_FILE_FLAGS`` -> EINVAL, and
    KEXEC_FILE_FLAGS gained KEXEC_FILE_FORCE_DTB (0x20) in 6.18; 6.17 is the default."""
    m = Machine("256M", arch=arch, version=version)
    if version == "6.17":
        with pytest.raises(OSError) as exc:
            m.kexec_file_load(kernel_for(arch), None, "", KEXEC_FILE_FORCE_DTB)
        assert exc.value.errno == errno.EINVAL and m.kexec_image is None
    else:
        m.kexec_file_load(kernel_for(arch), None, "", KEXEC_FILE_FORCE_DTB)
        assert m.kexec_image is not None and m.kexec_image.force_dtb
        m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD | KEXEC_FILE_FORCE_DTB)
        assert m.kexec_image is None
    assert Machine("256M", arch=arch).kernel_version == "6.17"


def test_version_proc_version_and_banner() -> None:
    """init/version.c linux_banner: /proc/version and the first boot line (pr_notice)
    name the release; an unknown version is refused."""
    for version in ("6.17", "6.18"):
        m = Machine("256M", version=version)
        text = m.read("/proc/version")
        assert text.startswith(f"Linux version {version}.") and text.endswith("\n")
        assert m.dmesg()[0] == (5, text.rstrip("\n"))
    with pytest.raises(ValueError, match="version"):
        Machine("256M", version="6.16")


# ------------------------------------------------------- 7. unknown boot parameters
def test_unknown_boot_parameters_are_logged_and_passed_to_init() -> None:
    """init/main.c unknown_bootoption / print_unknown_bootoptions: "foo=bar" goes to init's
    environment, "nosuchparam" to its argv; the notice lists argv first, then envp; known
    parameters and dotted (module) ones are not listed; a second ``HOME=`` replaces the
    default; everything after ``--`` is init's argv (set_init_arg)."""
    m = Machine("256M", cmdline='foo=bar quiet nosuchparam cma=16M mod.opt=1 HOME=/root '
                                'sysctl.vm.nosuch=1 BOOT_IMAGE=/vmlinuz -- single x=y')
    notice = [(lvl, t) for lvl, t in m.dmesg() if t.startswith("Unknown kernel command")]
    assert notice == [(5, 'Unknown kernel command line parameters "nosuchparam foo=bar '
                          'BOOT_IMAGE=/vmlinuz", will be passed to user space.')]
    texts = [t for _, t in m.dmesg()]
    assert texts.index(notice[0][1]) == texts.index("Kernel command line: " + m.cmdline) + 1
    assert m.init_argv == ["init", "nosuchparam", "single", "x=y"]
    assert m.init_envp == ["HOME=/root", "TERM=linux", "foo=bar", "BOOT_IMAGE=/vmlinuz"]
    assert m.dma_contiguous_default_area is not None


def test_known_boot_parameters_print_no_notice() -> None:
    """print_unknown_bootoptions returns early when argv_init[1] and envp_init[2] are
    empty; parameters after ``--`` are not parsed as kernel parameters at all."""
    m = Machine("256M", cmdline="quiet console=ttyS0 cma=16M -- cma=64M")
    assert not any(t.startswith("Unknown kernel command") for _, t in m.dmesg())
    assert m.init_argv == ["init", "cma=64M"] and m.init_envp == ["HOME=/", "TERM=linux"]
    area = m.dma_contiguous_default_area
    assert area is not None and area.count * PAGE == 16 * MiB


def test_unknown_boot_parameters_of_the_next_kernel() -> None:
    """The kexec'd kernel parses the command line the load gave it (K16.13) the same way:
    its own notice and init arguments."""
    m = Machine("512M")
    m.kexec_file_load(kernel_for("arm64"), None, "root=/dev/vda splash", 0)
    m.kernel_kexec()
    assert m.generation == 1 and m.init_argv == ["init", "splash"]
    assert (5, 'Unknown kernel command line parameters "splash", will be passed to user '
               'space.') in m.dmesg()


def test_too_many_init_arguments_are_refused() -> None:
    """init/main.c unknown_bootoption: past CONFIG_INIT_ENV_ARG_LIMIT (32) slots the
    kernel panics starting init ("Too many boot init vars"); pykern refuses the machine."""
    words = " ".join(f"w{k}" for k in range(32))
    with pytest.raises(ValueError, match="Too many boot init vars at `w31'"):
        Machine("256M", cmdline=words)
    assert len(Machine("256M", cmdline=" ".join(f"w{k}" for k in range(31))).init_argv) == 32
