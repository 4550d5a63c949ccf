"""kexec_file_load on the classic path: the syscall, the loaders, placement, the page list,
freeing and crash images (K0–K14, K17, K20; the ARCH A and X rules).

Loads here use ``KEXEC_FILE_NO_CMA`` or a machine without a default CMA area unless a test
says otherwise; the CMA patch has its own file (test_kexec_cma.py).
"""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest

import pykern
from pykern import Machine, images
from pykern.mm import gfp
from pykern.kernel.kexec.core import (KImage, kimage_alloc_control_pages,
                                      kimage_is_destination_range)
from pykern.kernel.kexec.file import (KexecBuf, kexec_add_buffer, locate_mem_hole_bottom_up,
                                      locate_mem_hole_callback, locate_mem_hole_top_down)
from pykern.kernel.kexec.uapi import (KEXEC_FILE_DEBUG, KEXEC_FILE_FLAGS, KEXEC_FILE_NO_CMA,
                                      KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH,
                                      KEXEC_FILE_UNLOAD)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
PAGE = 4096
U64 = (1 << 64) - 1
ARCHES = ["arm64", "x86_64"]


def kernel_for(arch: str, size: int = 2 * MiB, **kw: Any) -> bytes:
    return images.arm64_image(size, **kw) if arch == "arm64" else images.bzimage(size, **kw)


def machine(arch: str = "arm64", ram: Any = "512M", cmdline: str = "", **kw: Any) -> Machine:
    return Machine(ram, arch=arch, cmdline=cmdline, **kw)


def errno_of(m: Machine, *args: Any) -> int:
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(*args)
    assert exc.type is OSError or issubclass(exc.type, OSError)
    return exc.value.errno


def snapshot(m: Machine) -> tuple[Any, ...]:
    """What a failed load must leave alone (K20.4)."""
    cma = tuple((a.name, a.bitmap(), m.read(f"/sys/kernel/debug/cma/{a.name.strip()}/used"))
                for a in m.cma_areas)
    return (m.mm.nr_free_pages(), m.kexec_image, m.read("/sys/kernel/kexec_loaded"), cma)


def walk_segments(image: KImage) -> list[Any]:
    return [s for s in image.segments if not s.cma]


# ---------------------------------------------------------------- K0 constants
def test_k0_4_k0_5_uapi_flag_values() -> None:
    """K0.4/K0.5: the uapi values, re-exported from pykern, mask 0x1F (6.17 final)."""
    assert (pykern.KEXEC_FILE_UNLOAD, pykern.KEXEC_FILE_ON_CRASH, pykern.KEXEC_FILE_NO_INITRAMFS,
            pykern.KEXEC_FILE_DEBUG, pykern.KEXEC_FILE_NO_CMA) == (1, 2, 4, 8, 0x10)
    assert KEXEC_FILE_FLAGS == pykern.KEXEC_FILE_FLAGS == 0x1F


@pytest.mark.parametrize("arch", ARCHES)
def test_k0_11_loaded_files(arch: str) -> None:
    """K0.11: kexec_loaded / kexec_crash_loaded follow the two slots."""
    m = machine(arch, cmdline="crashkernel=64M")
    assert m.read("/sys/kernel/kexec_loaded") == "0\n"
    m.kexec_file_load(kernel_for(arch), None, "", KEXEC_FILE_NO_CMA)
    assert m.read("/sys/kernel/kexec_loaded") == "1\n"
    assert m.read("/sys/kernel/kexec_crash_loaded") == "0\n"
    m.kexec_file_load(kernel_for(arch), None, "", KEXEC_FILE_ON_CRASH)
    assert m.read("/sys/kernel/kexec_crash_loaded") == "1\n"
    assert m.kexec_image is not None and m.kexec_image.type == "default"
    assert m.kexec_crash_image is not None and m.kexec_crash_image.type == "crash"
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    assert m.read("/sys/kernel/kexec_loaded") == "0\n"
    assert m.read("/sys/kernel/kexec_crash_loaded") == "1\n"


# ---------------------------------------------------------------- K1 the syscall
@pytest.mark.parametrize("flags", [0x20, 0x40, 0x100, 1 << 31, 0x21])
def test_k1_3_illegal_flags_einval_nothing_touched(flags: int) -> None:
    """K1.3: any bit outside 0x1F → EINVAL, state as before (0x20 is 6.18's FORCE_DTB)."""
    m = machine()
    m.kexec_file_load(kernel_for("arm64"), None, "", 0)
    before = snapshot(m)
    assert errno_of(m, kernel_for("arm64"), None, "", flags) == errno.EINVAL
    assert snapshot(m) == before


def test_k1_2_token_spent_before_the_flag_check() -> None:
    """K1.2: a positive limit is decremented even by calls that then fail."""
    m = machine(cmdline="sysctl.kernel.kexec_load_limit_reboot=2")
    assert m.read("/proc/sys/kernel/kexec_load_limit_reboot") == "2\n"
    assert errno_of(m, kernel_for("arm64"), None, "", 0x40) == errno.EINVAL
    assert m.read("/proc/sys/kernel/kexec_load_limit_reboot") == "1\n"
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)      # unload of nothing: a token too
    assert m.read("/proc/sys/kernel/kexec_load_limit_reboot") == "0\n"
    assert errno_of(m, kernel_for("arm64"), None, "", 0) == errno.EPERM
    assert m.kexec_image is None


def test_k1_2_panic_limit_is_separate_and_disabled_sysctl() -> None:
    """K1.2/K17.3: the crash type uses the panic limit; kexec_load_disabled refuses all."""
    m = machine(cmdline="crashkernel=64M")
    m.write("/proc/sys/kernel/kexec_load_limit_panic", "0")
    assert errno_of(m, kernel_for("arm64"), None, "", KEXEC_FILE_ON_CRASH) == errno.EPERM
    m.kexec_file_load(kernel_for("arm64"), None, "", 0)        # reboot limit untouched (-1)
    assert m.read("/proc/sys/kernel/kexec_load_limit_reboot") == "-1\n"
    m.write("/proc/sys/kernel/kexec_load_disabled", "1")
    before = snapshot(m)
    assert errno_of(m, kernel_for("arm64"), None, "", 0) == errno.EPERM
    assert snapshot(m) == before


def test_k1_1_type_from_raw_flags() -> None:
    """K1.1: illegal flags with bit 0x2 spend a *panic* token."""
    m = machine(cmdline="sysctl.kernel.kexec_load_limit_panic=3")
    assert errno_of(m, kernel_for("arm64"), None, "", 0x42) == errno.EINVAL
    assert m.read("/proc/sys/kernel/kexec_load_limit_panic") == "2\n"
    assert m.read("/proc/sys/kernel/kexec_load_limit_reboot") == "-1\n"


@pytest.mark.parametrize("arch", ARCHES)
def test_k1_6_unload_ignores_files_and_other_flags(arch: str) -> None:
    """K1.6: UNLOAD reads no file; the slot empties; an empty slot unloads fine."""
    m = machine(arch)
    base = m.mm.nr_free_pages()
    m.kexec_file_load(b"", b"", "", KEXEC_FILE_UNLOAD | KEXEC_FILE_NO_CMA | KEXEC_FILE_DEBUG)
    m.kexec_file_load(kernel_for(arch), images.payload_pattern(MiB), "a=b", KEXEC_FILE_NO_CMA)
    assert m.mm.nr_free_pages() < base
    m.kexec_file_load(b"not an image", None, "", KEXEC_FILE_UNLOAD)
    assert m.kexec_image is None
    assert m.mm.nr_free_pages() == base          # K14: every page back


@pytest.mark.parametrize("arch", ARCHES)
def test_k1_7_failed_crash_load_leaves_no_crash_image(arch: str) -> None:
    """K1.7/K19.9: the old crash image is freed before the new one is built."""
    m = machine(arch, cmdline="crashkernel=64M")
    m.kexec_file_load(kernel_for(arch), None, "", KEXEC_FILE_ON_CRASH)
    assert m.kexec_crash_image is not None
    assert errno_of(m, b"garbage" * 300, None, "", KEXEC_FILE_ON_CRASH) in (errno.EINVAL,
                                                                          errno.ENOEXEC)
    assert m.kexec_crash_image is None
    assert m.read("/sys/kernel/kexec_crash_loaded") == "0\n"


@pytest.mark.parametrize("arch", ARCHES)
def test_k1_14_failed_load_keeps_the_old_image(arch: str) -> None:
    """K1.14/K19.9/K20.4: a failing replacement leaves the installed image and the pages."""
    m = machine(arch)
    m.kexec_file_load(kernel_for(arch), images.payload_pattern(MiB), "x", KEXEC_FILE_NO_CMA)
    old = m.kexec_image
    assert old is not None
    entries = old.entries()
    before = snapshot(m)
    bad = kernel_for(arch, magic=b"XXXX")
    assert errno_of(m, bad, None, "", KEXEC_FILE_NO_CMA) in (errno.EINVAL, errno.ENOEXEC)
    assert snapshot(m) == before
    assert m.kexec_image is old and old.entries() == entries


@pytest.mark.parametrize("arch", ARCHES)
def test_k1_16_replacing_load_frees_the_old_image_after(arch: str) -> None:
    """K1.16: the new image is placed while the old one still holds its pages, then the old
    pages come back: the new image avoids none of the old one's memory by accident, and free
    pages end where a single load would leave them."""
    m = machine(arch)
    base = m.mm.nr_free_pages()
    k = kernel_for(arch, 8 * MiB)
    m.kexec_file_load(k, None, "", KEXEC_FILE_NO_CMA)
    first = m.kexec_image
    assert first is not None
    taken_one = base - m.mm.nr_free_pages()
    old_sources = {a for kind, a in first.entries() if kind == "SOURCE"}
    m.kexec_file_load(k, None, "", KEXEC_FILE_NO_CMA)
    second = m.kexec_image
    assert second is not None and second is not first
    new_sources = {a for kind, a in second.entries() if kind == "SOURCE"}
    assert not old_sources & new_sources          # coexisting images: no shared source page
    assert base - m.mm.nr_free_pages() == taken_one


# ---------------------------------------------------------------- K2 file checks
@pytest.mark.parametrize("arch", ARCHES)
def test_k2_4_file_checks(arch: str) -> None:
    """K2.4 step 1/3, K20.1: empty kernel, empty initrd → EINVAL; non-bytes → EBADF."""
    m = machine(arch)
    before = snapshot(m)
    assert errno_of(m, b"", None, "", 0) == errno.EINVAL
    assert errno_of(m, kernel_for(arch), b"", "", 0) == errno.EINVAL
    assert errno_of(m, "a str is not a file", None, "", 0) == errno.EBADF
    assert errno_of(m, kernel_for(arch), 12345, "", 0) == errno.EBADF
    assert snapshot(m) == before
    # NO_INITRAMFS ignores the initrd altogether, even an empty one (K20.1).
    m.kexec_file_load(kernel_for(arch), b"", "", KEXEC_FILE_NO_INITRAMFS | KEXEC_FILE_NO_CMA)
    assert m.kexec_image is not None


@pytest.mark.parametrize("arch,err", [("arm64", errno.EINVAL), ("x86_64", errno.ENOEXEC)])
def test_k2_4_probe_error_is_the_last_loaders(arch: str, err: int) -> None:
    """K2.4 step 2 / ARCH G1: no loader accepts → arm64 EINVAL, x86_64 ENOEXEC."""
    m = machine(arch)
    before = snapshot(m)
    assert errno_of(m, bytes(4096), None, "", 0) == err
    assert snapshot(m) == before


def test_k2_2_debug_messages_only_with_the_flag() -> None:
    """K2.2/K20.5: KEXEC_FILE_DEBUG prints the segment list at pr_info (level 6) for that load
    only; placement is identical with or without it."""
    m = machine()
    n = len(m.dmesg())
    m.kexec_file_load(kernel_for("arm64"), None, "", KEXEC_FILE_NO_CMA | KEXEC_FILE_DEBUG)
    info = [t for lvl, t in m.dmesg()[n:] if lvl == 6 and t.startswith("kexec_file")]
    seg = m.kexec_image.segments if m.kexec_image else []
    assert any("nr_segments = 2" in t for t in info)
    assert any(f"mem={seg[0].mem:#x} memsz={seg[0].memsz:#x}" in t for t in info)
    assert any("flags:0x18" in t for t in info)
    places = [(s.mem, s.memsz) for s in seg]
    n = len(m.dmesg())
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    m.kexec_file_load(kernel_for("arm64"), None, "", KEXEC_FILE_NO_CMA)
    assert not [t for lvl, t in m.dmesg()[n:] if lvl == 6 and t.startswith("kexec_file")]
    assert m.kexec_image is not None
    assert [(s.mem, s.memsz) for s in m.kexec_image.segments] == places


# ---------------------------------------------------------------- K3 arch loaders
def test_k3_1_arm64_segments_order_alignment_and_limits() -> None:
    """K3.1 / ARCH A11–A17: kernel (2 MiB aligned, bottom-up), initrd (above the kernel),
    dtb (2 MiB aligned, top-down); image.start = kernel mem."""
    m = machine("arm64", "1G")
    k = images.arm64_image(3 * MiB + 5, bss=MiB)
    m.kexec_file_load(k, images.payload_pattern(2 * MiB + 1), "root=/dev/vda",
                      KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None and im.nr_segments == 3
    kern, initrd, dtb = im.segments
    hdr = images.arm64_image_header(k)
    assert kern.bufsz == len(k) and kern.memsz == hdr["image_size"]
    assert kern.mem % (2 * MiB) == 0 and im.start == kern.mem
    assert initrd.bufsz == 2 * MiB + 1 and initrd.memsz == 2 * MiB + PAGE
    assert initrd.mem >= kern.mem + kern.memsz
    assert initrd.mem + initrd.memsz <= (kern.mem // GiB) * GiB + 32 * GiB
    assert dtb.mem % (2 * MiB) == 0 and dtb.mem >= kern.mem + kern.memsz
    # dtb is top-down: the highest 2 MiB slot of a free range, so it lies above the initrd.
    assert dtb.mem > initrd.mem
    # bottom-up: the kernel is the lowest 2 MiB-aligned free spot of the memblock walk.
    lowest = min(s for s, e in m.memblock.for_each_free_mem_range()
                 if -(-s // (2 * MiB)) * (2 * MiB) + kern.memsz <= e)
    assert kern.mem == -(-lowest // (2 * MiB)) * (2 * MiB)


def test_arch_a12_text_offset_shifts_the_kernel_segment() -> None:
    """ARCH A12/K3.1: placed with memsz = image_size + text_offset, then mem += text_offset,
    memsz -= text_offset."""
    m = machine("arm64")
    k = images.arm64_image(MiB, text_offset=0x80000)
    m.kexec_file_load(k, None, "", KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    kern = im.segments[0]
    assert kern.mem % (2 * MiB) == 0x80000
    assert kern.memsz == MiB and im.start == kern.mem


@pytest.mark.parametrize("kw,err", [
    ({"size": 63}, errno.EINVAL),                                   # A4
    ({"magic": b"ARM\x65"}, errno.EINVAL),                          # A5
    ({"image_size": 0}, errno.EINVAL),                              # A7
])
def test_arch_a4_a5_a7_header_checks(kw: dict[str, Any], err: int) -> None:
    """ARCH A4, A5, A7: short file, bad magic, image_size 0."""
    m = machine("arm64")
    size = kw.pop("size", MiB)
    before = snapshot(m)
    assert errno_of(m, images.arm64_image(size, **kw), None, "", 0) == err
    assert snapshot(m) == before


def test_arch_a8_a9_cpu_features() -> None:
    """ARCH A8/A9: big-endian needs mixed_endian; page-size codes need their granule."""
    m = machine("arm64", cpu_features={"granule_4k"})
    be = images.arm64_image(MiB, flags=0x1 | 0x2)
    assert errno_of(m, be, None, "", KEXEC_FILE_NO_CMA) == errno.EINVAL
    for code, ok in ((1, True), (2, False), (3, False), (0, True)):
        img = images.arm64_image(MiB, flags=code << 1)
        if ok:
            m.kexec_file_load(img, None, "", KEXEC_FILE_NO_CMA)
        else:
            assert errno_of(m, img, None, "", KEXEC_FILE_NO_CMA) == errno.EINVAL


@pytest.mark.parametrize("kw", [
    {"size": 1023},                       # X1
    {"magic": b"HdrT"},                   # X2
    {"boot_flag": 0xAA56},                # X3
    {"version": 0x020B},                  # X4
    {"loadflags": 0},                     # X5
    {"xloadflags": 0x2},                  # X6
    {"xloadflags": 0x1},                  # X7
])
def test_arch_x1_x7_probe_refusals_enoexec(kw: dict[str, Any]) -> None:
    """ARCH X1–X7: each refused header field → ENOEXEC, nothing changed."""
    m = machine("x86_64")
    size = kw.pop("size", 2 * MiB)
    before = snapshot(m)
    assert errno_of(m, images.bzimage(size, **kw), None, "", 0) == errno.ENOEXEC
    assert snapshot(m) == before


def test_arch_x12_command_line_length_counts_the_nul() -> None:
    """ARCH X12/K20.2: L = len + 1; L + 30 must fit cmdline_size, even for a normal image."""
    m = machine("x86_64")
    k = images.bzimage(2 * MiB, cmdline_size=64)
    m.kexec_file_load(k, None, "x" * 33, KEXEC_FILE_NO_CMA)       # cmdline_size - 31
    before = snapshot(m)
    for n in (34, 63, 64):       # the elfcorehdr room (30), then cmdline_size itself
        assert errno_of(m, k, None, "x" * n, KEXEC_FILE_NO_CMA) == errno.EINVAL
    assert snapshot(m) == before


def test_arch_x20_k8_4_init_size_below_payload_is_einval() -> None:
    """ARCH X20/K8.4: bufsz > memsz is placed, then refused by the sanity check."""
    m = machine("x86_64")
    before = snapshot(m)
    k = images.bzimage(4 * MiB, init_size=2 * MiB)
    assert errno_of(m, k, None, "", KEXEC_FILE_NO_CMA) == errno.EINVAL
    assert snapshot(m) == before


def test_k3_2_x86_segments_order_and_limits() -> None:
    """K3.2 / ARCH X14–X19: purgatory, boot params, kernel, initrd; all top-down; kernel
    memsz = init_size and aligned to kernel_alignment above max(1 MiB, pref_address);
    initrd above 16 MiB; start = purgatory."""
    m = machine("x86_64", "1G")
    k = images.bzimage(3 * MiB, init_size=6 * MiB, kernel_alignment=4 * MiB)
    m.kexec_file_load(k, images.payload_pattern(MiB), "quiet", KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None and im.nr_segments == 4
    purg, params, kern, initrd = im.segments
    assert purg.mem >= 0x3000 and im.start >= purg.mem and im.start < purg.mem + purg.memsz
    assert kern.memsz == 6 * MiB and kern.mem % (4 * MiB) == 0 and kern.mem >= 16 * MiB
    assert kern.bufsz == len(k) - 2 * 512
    assert initrd.mem >= 16 * MiB and initrd.bufsz == MiB
    # Top-down: every segment sits at the top of System RAM it could get, below 1 GiB.
    assert max(s.mem + s.memsz for s in im.segments) <= GiB
    assert purg.mem == max(s.mem for s in im.segments)
    # The boot parameters carry the command line at offset 4096 (ARCH X22).
    assert params.buf[4096:4096 + 6] == b"quiet\0"


# ---------------------------------------------------------------- K5, K6 placement
def _bare_image(m: Machine) -> KImage:
    im = KImage()
    im._m = m
    return im


def test_k5_1_k5_2_k5_3_add_buffer_refusals() -> None:
    """K5.1 file_mode, K5.2 at most 16 segments, K5.3 no segment after a control page."""
    m = machine()
    im = _bare_image(m)
    im.file_mode = False
    with pytest.raises(OSError) as exc:
        kexec_add_buffer(m, KexecBuf(im, b"", 0, PAGE))
    assert exc.value.errno == errno.EINVAL
    im.file_mode = True
    for _ in range(16):
        kexec_add_buffer(m, KexecBuf(im, b"x", 1, 1, top_down=True))
    assert im.nr_segments == 16
    with pytest.raises(OSError) as exc:
        kexec_add_buffer(m, KexecBuf(im, b"x", 1, 1))
    assert exc.value.errno == errno.EINVAL and im.nr_segments == 16
    im2 = _bare_image(m)
    im2.control_pages_list.append((0x40000000, 0))
    with pytest.raises(OSError) as exc:
        kexec_add_buffer(m, KexecBuf(im2, b"x", 1, 1))
    assert exc.value.errno == errno.EINVAL and im2.nr_segments == 0


def test_k4_2_k5_4_request_modified_in_place() -> None:
    """K4.2/K5.4: memsz rounded to a page, buf_align raised to a page, mem set."""
    m = machine()
    im = _bare_image(m)
    kb = KexecBuf(im, b"abc", 3, 100, buf_align=16)
    kexec_add_buffer(m, kb)
    assert kb.memsz == PAGE and kb.buf_align == PAGE and kb.mem != 0 and kb.mem % PAGE == 0
    seg = im.segments[0]
    assert (seg.mem, seg.memsz, seg.bufsz) == (kb.mem, PAGE, 3)


def test_k5_7_bufsz_over_memsz_is_placed() -> None:
    """K5.7: kexec_add_buffer does not check bufsz against memsz."""
    m = machine()
    im = _bare_image(m)
    kexec_add_buffer(m, KexecBuf(im, bytes(3 * PAGE), 3 * PAGE, PAGE))
    assert im.nr_segments == 1 and im.segments[0].memsz == PAGE


def test_k6_1_preset_address_is_taken_as_is() -> None:
    """K6.1 step 1: a preset mem is accepted without a search (no CMA either)."""
    m = machine()
    im = _bare_image(m)
    kb = KexecBuf(im, b"x", 1, PAGE, mem=0x12345000)
    kexec_add_buffer(m, kb)
    assert im.segments[0].mem == 0x12345000 and not im.segments[0].cma


def test_k6_4_callback_skips_small_and_out_of_window_ranges() -> None:
    """K6.4 steps 2–3."""
    im = KImage()
    kb = KexecBuf(im, b"", 0, 2 * PAGE, buf_align=PAGE, buf_min=0x10000, buf_max=0x1FFFF)
    assert locate_mem_hole_callback(kb, 0x0, 0x0FFF) == 0            # too small
    assert locate_mem_hole_callback(kb, 0x0, 0xFFFF) == 0            # ends below buf_min
    assert locate_mem_hole_callback(kb, 0x20000, 0x40000) == 0       # starts above buf_max
    assert locate_mem_hole_callback(kb, 0x0, 0x40000) == 1
    assert kb.mem == 0x10000                                          # bottom-up from buf_min


def test_k6_6_top_down_steps_by_alignment_around_segments() -> None:
    """K6.6: highest aligned candidate; overlap steps one page, round_down makes it align."""
    im = KImage()
    from pykern.kernel.kexec.core import KexecSegment
    im.segments.append(KexecSegment(b"", 0, 0x1E0000, 0x20000))      # [0x1E0000, 0x200000)
    kb = KexecBuf(im, b"", 0, 0x10000, buf_align=0x10000, buf_max=U64, top_down=True)
    assert locate_mem_hole_top_down(kb, 0x100000, 0x1FFFFF) == 1
    assert kb.mem == 0x1D0000
    kb2 = KexecBuf(im, b"", 0, 0x10000, buf_align=0x10000, buf_min=0x1D8000, top_down=True)
    assert locate_mem_hole_top_down(kb2, 0x100000, 0x1FFFFF) == 0     # cand < buf_min


def test_k6_7_bottom_up_and_inclusive_overlap() -> None:
    """K6.7 and K6.5: the inclusive compare; a candidate that ends where a segment starts is
    free, one that reaches into it is not."""
    from pykern.kernel.kexec.core import KexecSegment
    im = KImage()
    im.segments.append(KexecSegment(b"", 0, 0x104000, PAGE))
    assert kimage_is_destination_range(im, 0x103000, 0x103FFF) is False
    assert kimage_is_destination_range(im, 0x103000, 0x104000) is True
    kb = KexecBuf(im, b"", 0, 0x4000, buf_align=PAGE)
    assert locate_mem_hole_bottom_up(kb, 0x100000, 0x10FFFF) == 1
    assert kb.mem == 0x100000
    kb = KexecBuf(im, b"", 0, 0x8000, buf_align=PAGE)
    assert locate_mem_hole_bottom_up(kb, 0x100000, 0x10FFFF) == 1
    assert kb.mem == 0x105000
    kb = KexecBuf(im, b"", 0, 0x8000, buf_align=PAGE, buf_max=0x10BFFF)
    assert locate_mem_hole_bottom_up(kb, 0x100000, 0x10FFFF) == 0     # c_end > buf_max


def _page_step_search(im: KImage, kb: KexecBuf, start: int, end: int) -> tuple[int, int]:
    """locate_mem_hole_top_down / _bottom_up (K6.6/K6.7) written as the kernel loops: one
    page step per overlapping candidate; ``(result, mem)``."""
    align = kb.buf_align
    if kb.top_down:
        temp = min(end, kb.buf_max) - kb.memsz + 1
        while True:
            temp &= ~(align - 1)
            if temp < start or temp < kb.buf_min:
                return 0, 0
            if kimage_is_destination_range(im, temp, temp + kb.memsz - 1):
                temp -= PAGE
                continue
            return 1, temp
    temp = max(start, kb.buf_min)
    while True:
        temp = (temp + align - 1) & ~(align - 1)
        last = temp + kb.memsz - 1
        if last > end or last > kb.buf_max:
            return 0, 0
        if kimage_is_destination_range(im, temp, last):
            temp += PAGE
            continue
        return 1, temp


def test_k6_6_k6_7_hole_search_meets_the_page_steps_candidate() -> None:
    """K6.6/K6.7: locate_mem_hole_top_down and _bottom_up skip the candidates that overlap
    the same segment in one go; over random segments, sizes, alignments (powers of two and
    not) and windows they find the same hole, or the same failure, as the kernel's page
    steps."""
    import random
    from pykern.kernel.kexec.core import KexecSegment
    rng = random.Random(6)
    for _ in range(3000):
        im = KImage()
        for _ in range(rng.randint(0, 5)):
            im.segments.append(KexecSegment(
                b"", 0, rng.randrange(0, 1 << 24, PAGE if rng.random() < 0.8 else 1),
                rng.choice([0, PAGE, rng.randrange(0, 1 << 22, PAGE), rng.randrange(1 << 20)])))
        kb = KexecBuf(im, b"", 0, rng.choice([PAGE, rng.randrange(PAGE, 1 << 22, PAGE),
                                               rng.randrange(1, 1 << 21)]),
                      buf_align=rng.choice([PAGE, 2 * PAGE, 0x10000, 0x200000, 3 * PAGE]),
                      buf_min=rng.choice([0, rng.randrange(1 << 24)]),
                      buf_max=rng.choice([U64, rng.randrange(1 << 25)]),
                      top_down=rng.random() < 0.5)
        start = rng.randrange(1 << 24)
        end = start + rng.randrange(1 << 24)
        want = _page_step_search(im, kb, start, end)
        search = locate_mem_hole_top_down if kb.top_down else locate_mem_hole_bottom_up
        assert (search(kb, start, end), kb.mem) == want


def test_k6_1_no_hole_is_eaddrnotavail() -> None:
    """K6.1 step 4/K3.3: a kernel larger than any free range → EADDRNOTAVAIL, nothing kept."""
    m = machine("arm64", "256M")
    before = snapshot(m)
    k = images.arm64_image(MiB, image_size=240 * MiB)
    assert errno_of(m, k, None, "", KEXEC_FILE_NO_CMA) == errno.EADDRNOTAVAIL
    assert snapshot(m) == before


@pytest.mark.parametrize("arch", ARCHES)
def test_k6_2_walk_ranges_per_arch(arch: str) -> None:
    """K6.2/ARCH A25/X34: the arm64 walk skips memblock reservations (the CMA area and the
    running kernel); x86 walks System RAM, CMA area included (so top-down lands in it
    when it sits at the top)."""
    m = machine(arch, "512M", cmdline="cma=128M")
    area = m.dma_contiguous_default_area
    assert area is not None
    a0, a1 = area.base_pfn * PAGE, (area.base_pfn + area.count) * PAGE
    m.kexec_file_load(kernel_for(arch, 4 * MiB), images.payload_pattern(8 * MiB), "",
                      KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    inside = [s for s in im.segments if s.mem < a1 and s.mem + s.memsz > a0]
    if arch == "arm64":
        assert not inside
        for s in im.segments:
            for r0, r1 in m.memblock.reserved:
                assert s.mem + s.memsz <= r0 or s.mem >= r1
    else:
        top = max(s.mem + s.memsz for s in im.segments)
        assert a1 == top or inside, (hex(a0), hex(a1), hex(top))


# ---------------------------------------------------------------- K8 sanity checks
def test_k8_5_segment_over_half_of_ram_is_einval() -> None:
    """K8.5: one segment larger than totalram/2 → EINVAL (after it was placed)."""
    m = machine("arm64", "512M", cmdline="cma=16M")
    half = sum(z.managed_pages for z in m.mm.zones) // 2
    k = images.arm64_image(MiB, image_size=(half + 1) * PAGE)
    before = snapshot(m)
    assert errno_of(m, k, None, "", KEXEC_FILE_NO_CMA) == errno.EINVAL
    assert snapshot(m) == before
    k2 = images.arm64_image(MiB, image_size=(half - 600) * PAGE)
    assert errno_of(m, k2, images.payload_pattern(4 * MiB), "",
                    KEXEC_FILE_NO_CMA) == errno.EINVAL            # the sum is over half
    assert snapshot(m) == before


# ---------------------------------------------------------------- K9–K12 pages
@pytest.mark.parametrize("arch", ARCHES)
def test_k9_2_k19_3_control_pages_outside_segments(arch: str) -> None:
    """K9.2/K19.3: control pages and indirection pages avoid every destination."""
    m = machine(arch)
    m.kexec_file_load(kernel_for(arch, 6 * MiB), images.payload_pattern(5 * MiB), "",
                      KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None and im.control_pages
    ind = [a for kind, a in im.entries() if kind == "INDIRECTION"]
    for addr, order in im.control_pages:
        assert not kimage_is_destination_range(im, addr, addr + (PAGE << order) - 1)
    for addr in ind:
        assert not kimage_is_destination_range(im, addr, addr + PAGE - 1)


def test_k9_2_control_limit_refuses_a_block_whose_end_pfn_reaches_the_limit_pfn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """K9.2, kimage_alloc_normal_control_pages: a block is set aside when its end pfn
    (``pfn + count``) is at or above ``KEXEC_CONTROL_MEMORY_LIMIT >> PAGE_SHIFT``.  With the
    limit at the last byte of the page after P, the page P the allocator hands out first is
    refused (its end pfn equals the limit's pfn) and given back; the control page comes from
    below P."""
    m = machine("x86_64", "64M")
    control_gfp = gfp.GFP_KERNEL | gfp.__GFP_NORETRY
    probe = m.mm.alloc_pages(control_gfp, 0)
    assert probe is not None
    p = probe.pfn
    m.mm.free_pages(probe, 0)
    monkeypatch.setattr(m.kexec_arch, "control_memory_limit", ((p + 1) << 12) | 0xFFF)
    free = m.mm.nr_free_pages()
    im = KImage(_m=m)
    got = kimage_alloc_control_pages(m, im, 0)
    assert got is not None and got >> 12 < p
    assert im.control_pages == [(got, 0)]
    assert m.mm.page_is_free(p) and m.mm.nr_free_pages() == free - 1


@pytest.mark.parametrize("arch,ram,kernel,initrd", [("arm64", "48M", 8 * MiB, 2 * MiB),
                                                    ("x86_64", "48M", 4 * MiB, 8 * MiB)])
def test_k11_7_k12_2_every_source_page_holds_its_destinations_bytes(
        arch: str, ram: str, kernel: int, initrd: int) -> None:
    """K11.7/K12.2: on a machine small enough that the allocator hands out destination pages
    whose data is already loaded (kimage_alloc_page copies that page to its destination and
    hands out the old source), every SOURCE page holds exactly its destination's bytes of
    the reference (buffer, then zeros), whatever RAM held before."""
    m = machine(arch, ram, "cma=0")
    m.ram[:] = b"\x5A" * len(m.ram)
    m.kexec_file_load(kernel_for(arch, kernel), images.payload_pattern(initrd, seed=2), "x",
                      KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    refs = [(s.mem, s.mem + s.memsz, im.reference(i)) for i, s in enumerate(im.segments)]
    dest, in_place, pages = 0, 0, 0
    for kind, addr in im.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            lo, _, ref = next(r for r in refs if r[0] <= dest < r[1])
            assert m.phys_read(addr, PAGE) == ref[dest - lo:dest - lo + PAGE], hex(dest)
            in_place += addr == dest
            pages += 1
            dest += PAGE
    assert pages == sum(s.memsz // PAGE for s in im.segments) and in_place > 400


@pytest.mark.parametrize("arch", ARCHES)
def test_k10_3_k10_9_entry_list_layout_in_ram(arch: str) -> None:
    """K10.2/K10.3/K10.9: head links to the first indirection page; 511 entries per page,
    word 511 links to the next; DESTINATION then memsz/4096 SOURCE words per segment; the
    list ends with DONE. The words are really in RAM, little-endian."""
    m = machine(arch)
    m.kexec_file_load(kernel_for(arch, 3 * MiB), images.payload_pattern(MiB + 7), "",
                      KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    ent = im.entries()
    assert ent[0][0] == "INDIRECTION" and im.head == ent[0][1] | 0x2
    assert ent[-1] == ("DONE", 0)
    body = [e for e in ent if e[0] in ("DESTINATION", "SOURCE")]
    expect = []
    for seg in im.segments:
        expect.append(("DESTINATION", seg.mem))
        expect += [("SOURCE", None)] * (seg.memsz // PAGE)
    assert [(k, a if k == "DESTINATION" else None) for k, a in body] == expect
    pages = [a for k, a in ent if k == "INDIRECTION"]
    assert len(pages) == -(-len(body) // 511)
    words = struct.unpack("<512Q", m.phys_read(pages[0], PAGE))
    assert words[511] == pages[1] | 0x2
    dests = [a for k, a in body if k == "DESTINATION"]
    assert words[0] == dests[0] | 0x1
    assert all(w & 0xF == 0x8 for w in words[1:min(511, im.segments[0].memsz // PAGE + 1)])


@pytest.mark.parametrize("arch", ARCHES)
def test_k12_2_source_pages_hold_the_buffer_then_zeros(arch: str) -> None:
    """K12.2: each source page holds its 4 KiB of the buffer; the tail past bufsz is zero,
    whatever the page held before (RAM is dirtied first)."""
    m = machine(arch)
    m.ram[:] = b"\xA5" * len(m.ram)         # m.ram is the writable buffer
    initrd = images.payload_pattern(2 * PAGE + 100, seed=3)
    m.kexec_file_load(kernel_for(arch), initrd, "", KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    idx = next(i for i, s in enumerate(im.segments) if s.bufsz == len(initrd))
    seg = im.segments[idx]
    dest = None
    got = bytearray()
    for kind, addr in im.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            assert dest is not None
            if seg.mem <= dest < seg.mem + seg.memsz:
                got += m.phys_read(addr, PAGE)
            dest += PAGE
    assert bytes(got) == initrd + bytes(seg.memsz - len(initrd))


@pytest.mark.parametrize("arch", ARCHES)
def test_k11_k19_2_sources_never_inside_another_destination(arch: str) -> None:
    """K6.8/K11/K19.2: placement ignores what the buddy allocator has handed out, so a twin
    machine shows where the segments go; then every page is taken except those inside the
    destinations and 2048 others. The load must use in-place pages (K11.5), park pages whose
    destination is not loaded yet (K11.1/K11.8), and still never source from a foreign
    destination."""
    def load(m: Machine) -> KImage:
        m.kexec_file_load(kernel_for(arch, 4 * MiB), images.payload_pattern(4 * MiB), "",
                          KEXEC_FILE_NO_CMA)
        assert m.kexec_image is not None
        return m.kexec_image

    twin = load(machine(arch, "256M"))
    m = machine(arch, "256M")
    held = []
    while (page := m.mm.alloc_pages(gfp.GFP_HIGHUSER, 0)) is not None:
        held.append(page)
    inside = [p for p in held if kimage_is_destination_range(twin, p.phys, p.phys + PAGE - 1)]
    outside = [p for p in held if not kimage_is_destination_range(twin, p.phys,
                                                                  p.phys + PAGE - 1)]
    for page in outside[:2048] + inside:        # the destinations are handed out first
        m.mm.free_pages(page, 0)
    im = load(m)
    assert [(s.mem, s.memsz) for s in im.segments] == [(s.mem, s.memsz) for s in twin.segments]
    dest = 0
    own = 0
    for kind, addr in im.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            if addr == dest:
                own += 1
            else:
                assert not kimage_is_destination_range(im, addr, addr + PAGE - 1)
            dest += PAGE
    assert own > 1000                   # K11.5 and K11.1: pages sitting in place


@pytest.mark.parametrize("arch", ARCHES)
def test_k14_k19_7_unload_returns_every_page(arch: str) -> None:
    """K14/K19.7: after unload the free page count is back, and the pages taken equal
    SOURCE + INDIRECTION + parked + control pages."""
    m = machine(arch)
    base = m.mm.nr_free_pages()
    m.kexec_file_load(kernel_for(arch, 5 * MiB), images.payload_pattern(3 * MiB), "",
                      KEXEC_FILE_NO_CMA)
    im = m.kexec_image
    assert im is not None
    ent = im.entries()
    counted = (sum(1 for k, _ in ent if k in ("SOURCE", "INDIRECTION"))
               + len(im.dest_pages) + len(im.unusable_pages)
               + sum(1 << o for _, o in im.control_pages))
    assert base - m.mm.nr_free_pages() == counted
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    assert m.mm.nr_free_pages() == base


# ---------------------------------------------------------------- K17 crash images
@pytest.mark.parametrize("arch", ARCHES)
def test_k17_1_crash_image_lives_in_the_reservation(arch: str) -> None:
    """K17.1/K12.5/K9.4: crash segments inside crashkernel=, written at load time, no
    entries, no buddy pages taken, no CMA even with a default area."""
    m = machine(arch, cmdline="crashkernel=64M cma=64M")
    assert m.crashk_res is not None
    c0, c1 = m.crashk_res
    base = m.mm.nr_free_pages()
    used = m.read("/sys/kernel/debug/cma/reserved/used")
    initrd = images.payload_pattern(MiB + 5, seed=9)
    m.kexec_file_load(kernel_for(arch), initrd, "crash=1", KEXEC_FILE_ON_CRASH)
    im = m.kexec_crash_image
    assert im is not None and im.type == "crash"
    assert im.entries() == [("DONE", 0)] and im.head == 0x4
    assert not im.control_pages                       # bump-allocated, not on the list
    assert m.mm.nr_free_pages() == base
    assert m.read("/sys/kernel/debug/cma/reserved/used") == used
    for seg in im.segments:
        assert c0 <= seg.mem and seg.mem + seg.memsz <= c1 and not seg.cma
    seg = next(s for s in im.segments if s.bufsz == len(initrd))
    assert m.phys_read(seg.mem, seg.memsz) == initrd + bytes(seg.memsz - len(initrd))
    assert m.kexec_image is None


@pytest.mark.parametrize("arch", ARCHES)
def test_k17_5_crash_load_without_reservation(arch: str) -> None:
    """K17.5: EADDRNOTAVAIL, the normal slot and CMA untouched, the token spent, unload 0."""
    m = machine(arch, cmdline="cma=32M sysctl.kernel.kexec_load_limit_panic=5")
    m.kexec_file_load(kernel_for(arch), None, "", 0)
    before = snapshot(m)
    success = m.read("/proc/vmstat")
    for _ in range(2):
        assert errno_of(m, kernel_for(arch), images.payload_pattern(MiB), "",
                        KEXEC_FILE_ON_CRASH) == errno.EADDRNOTAVAIL
    assert snapshot(m) == before and m.kexec_crash_image is None
    vm = dict(line.split() for line in m.read("/proc/vmstat").splitlines())
    vm0 = dict(line.split() for line in success.splitlines())
    assert (vm["cma_alloc_success"], vm["cma_alloc_fail"]) == (vm0["cma_alloc_success"],
                                                               vm0["cma_alloc_fail"])
    assert m.read("/proc/sys/kernel/kexec_load_limit_panic") == "3\n"
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH)


def test_k8_6_crash_sanity_check_confines_segments() -> None:
    """K8.6 with K6.2: a crash image that does not fit the reservation fails, leaving
    nothing behind."""
    m = machine("arm64", cmdline="crashkernel=16M")
    assert errno_of(m, images.arm64_image(MiB), images.payload_pattern(20 * MiB), "",
                    KEXEC_FILE_ON_CRASH) == errno.EADDRNOTAVAIL
    assert m.kexec_crash_image is None


def test_k0_2_k8_2_wrapping_and_unaligned_segments() -> None:
    """K0.2/K8.2: mem + memsz wraps past 2^64 → EADDRNOTAVAIL; unaligned ends likewise;
    K8.3 a half-open overlap → EINVAL (checked only after every K8.2 check)."""
    from pykern.kernel.kexec.core import KexecError, KexecSegment, sanity_check_segment_list
    m = machine()
    cases = [([((1 << 64) - PAGE, 2 * PAGE)], errno.EADDRNOTAVAIL),
             ([(0x4100_0800, PAGE)], errno.EADDRNOTAVAIL),
             ([(0x4100_0000, 2 * PAGE), (0x4100_1000, PAGE)], errno.EINVAL),
             ([(0x4100_0000, PAGE), (0x4100_1000, PAGE)], None)]
    for segs, err in cases:
        im = _bare_image(m)
        for mem, memsz in segs:
            im.segments.append(KexecSegment(b"", 0, mem, memsz))
            im.segment_cma.append(None)
        if err is None:
            sanity_check_segment_list(m, im)
            continue
        with pytest.raises(KexecError) as exc:
            sanity_check_segment_list(m, im)
        assert exc.value.errno == err


def test_k6_6_top_down_candidate_below_zero_wraps_to_failure() -> None:
    """K0.2/K6.6: a request larger than the range end makes t_end - memsz + 1 negative in
    C (a huge unsigned value) — it must fail, not place the buffer at a wrapped address."""
    im = KImage()
    kb = KexecBuf(im, b"", 0, 0x20000, buf_align=PAGE, top_down=True)
    assert locate_mem_hole_top_down(kb, 0x0, 0x0FFFF) == 0
