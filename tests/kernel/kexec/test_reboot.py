"""Rebooting into a loaded image (K16, K17)."""

from __future__ import annotations

import errno
import struct

import pytest

from pykern import Machine, _fast, images
from pykern.kernel.kexec.reboot import RelocationError
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH

MiB = 1 << 20


def _kernel(arch: str, size: int = 4 * MiB, seed: int = 1) -> bytes:
    return images.arm64_image(size, seed=seed) if arch == "arm64" else \
        images.bzimage(size, seed=seed)


def _loaded(arch: str, flags: int, *, cmdline: str = "cma=64M", extensions: bool | None = None,
            fixes: object = ()) -> tuple[Machine, bytes]:
    m = Machine("512M", arch=arch, cmdline=cmdline, extensions=extensions, fixes=fixes)
    initrd = images.payload_pattern(3 * MiB + 123, seed=7)
    m.kexec_file_load(_kernel(arch), initrd, "cma=64M next=1", flags)
    return m, initrd


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k16_1_nothing_loaded_is_einval(arch: str) -> None:
    """K16.1: kernel_kexec without a normal image → EINVAL, nothing changes."""
    m = Machine("256M", arch=arch)
    with pytest.raises(OSError) as exc:
        m.kernel_kexec()
    assert exc.value.errno == errno.EINVAL
    assert m.generation == 0 and not m.halted


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k19_8_cma_and_no_cma_boot_identical_segment_contents(arch: str) -> None:
    """K19.8/K16.11: both modes leave the same bytes in their segments; NO_CMA copies them."""
    contents = {}
    for flags in (0, KEXEC_FILE_NO_CMA):
        m, _ = _loaded(arch, flags)
        image = m.kexec_image
        assert image is not None
        want = [bytes(s.buf[:s.bufsz]) for s in image.segments]
        cma = [s.cma for s in image.segments]
        r = m.kernel_kexec()
        assert r.verified and r.corrupted == [] and m.generation == 1
        got = [m.phys_read(s.mem, s.bufsz) for s in image.segments]
        assert got == want
        if flags:
            assert not any(cma)
            assert r.hot_phase_pages == sum(s.memsz for s in image.segments) // 4096
            assert r.hot_phase_bytes == 4096 * r.hot_phase_pages
        else:
            assert all(cma) and r.hot_phase_pages == 0
        contents[flags] = {len(g): g for g in got}
    # the kernel and initrd payloads reach RAM byte for byte in both modes
    initrd = images.payload_pattern(3 * MiB + 123, seed=7)
    assert contents[0][len(initrd)] == contents[KEXEC_FILE_NO_CMA][len(initrd)] == initrd


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k16_13_chain_of_generations(arch: str) -> None:
    """K16.13: load → reboot → load works for many generations; cmdline handed over."""
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    for gen in range(1, 5):
        flags = KEXEC_FILE_NO_CMA if gen % 2 else 0
        m.kexec_file_load(_kernel(arch, seed=gen), None, f"cma=64M gen={gen}", flags)
        r = m.kernel_kexec()
        assert r.verified and m.generation == gen
        assert m.read("/proc/cmdline") == f"cma=64M gen={gen}\n"
        assert m.kexec_image is None and m.read("/sys/kernel/kexec_loaded") == "0\n"
        m.mm.check_invariants()


def test_k16_12_twins_leave_identical_ram() -> None:
    """Machine(extensions=...): the compiled walk and the pure twin give byte-identical RAM."""
    if _fast.relocate_c is None:
        pytest.skip("compiled walk not built")
    rams = []
    for ext in (True, False):
        m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA, extensions=ext)
        r = m.kernel_kexec()
        assert r.hot_phase_pages > 0
        rams.append(bytes(m.ram))
    assert rams[0] == rams[1]


def test_k16_3_damaged_entry_shows_as_corruption() -> None:
    """K16.3: a poked SOURCE word is walked as written; the wrong page lands, K16.11 sees it."""
    m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA)
    image = m.kexec_image
    assert image is not None
    first_page = image.head & ~0xFFF
    # word 1 is the first SOURCE of the kernel segment: point it at the second one's page
    w1, w2 = struct.unpack("<QQ", m.phys_read(first_page + 8, 16))
    m.phys_write(first_page + 8, struct.pack("<Q", w2))
    r = m.kernel_kexec()
    assert r.corrupted and r.corrupted[0][2] == 0
    assert r.corrupted[0][0] == image.segments[0].mem
    del w1


def test_k16_11_a_run_across_the_end_of_the_buffer_is_one_maximal_run() -> None:
    """K16.11: the corruption scan compares RAM with the reference (buffer, then the zero
    tail); a damaged page that holds the initrd's last bytes and the start of its tail shows
    as one maximal run over the whole page, not as one run per part."""
    m, initrd = _loaded("arm64", KEXEC_FILE_NO_CMA)
    image = m.kexec_image
    assert image is not None
    idx = next(i for i, s in enumerate(image.segments) if s.bufsz == len(initrd))
    seg = image.segments[idx]
    target = seg.mem + (seg.bufsz & ~0xFFF)         # the page where the buffer ends
    assert seg.mem + seg.bufsz - target not in (0, 4096)
    dest, source = 0, None
    for kind, addr in image.entries():
        if kind == "DESTINATION":
            dest = addr
        elif kind == "SOURCE":
            if dest == target:
                source = addr
            dest += 4096
    assert source is not None
    m.phys_write(source, bytes(b ^ 0xFF for b in m.phys_read(source, 4096)))
    r = m.kernel_kexec()
    assert not r.verified and r.corrupted == [(target, 4096, idx)]


def test_k16_3_source_outside_ram_is_a_clear_error() -> None:
    """A SOURCE outside RAM stops the walk with an error naming the entry."""
    m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA)
    image = m.kexec_image
    assert image is not None
    first_page = image.head & ~0xFFF
    m.phys_write(first_page + 8, struct.pack("<Q", (0x1_0000_0000_0000) | 0x8))
    with pytest.raises(RelocationError, match="source page"):
        m.kernel_kexec()


def test_k17_4_panic_without_crash_image_halts() -> None:
    """K17.4: no crash image → halted, None; only phys_read/phys_write still work."""
    m = Machine("256M")
    assert m.panic() is None
    assert m.halted
    assert m.phys_read(0x4000_0000, 4) == bytes(4)
    with pytest.raises(RuntimeError):
        m.read("/proc/buddyinfo")
    with pytest.raises(RuntimeError):
        m.mm.nr_free_pages()


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k17_2_panic_boots_the_crash_kernel_in_its_region(arch: str) -> None:
    """K17.1/K17.2: crash segments are in place already; the crash kernel manages its region."""
    m = Machine("1G", arch=arch, cmdline="crashkernel=128M")
    m.kexec_file_load(_kernel(arch), None, "crash=1", KEXEC_FILE_ON_CRASH)
    assert m.read("/sys/kernel/kexec_crash_loaded") == "1\n"
    crash = m.crashk_res
    assert crash is not None
    r = m.panic()
    assert r is not None and r.verified and r.hot_phase_pages == 0 and m.generation == 1
    assert "crash=1" in m.read("/proc/cmdline")
    managed = sum(z.managed_pages for z in m.mm.zones) * 4096
    assert managed <= crash[1] - crash[0] + (1 << 20)


def test_k13_4_stale_cma_tail_fails_the_x86_digest() -> None:
    """K13.4 [quirk] cma-stale-tail: junk in CMA pages breaks purgatory's check; fix zeroes."""
    for fixes, expect in (((), False), (("cma-stale-tail",), True)):
        m = Machine("512M", arch="x86_64", cmdline="cma=64M", fixes=fixes)
        cma = m.dma_contiguous_default_area
        assert cma is not None
        m.phys_write(cma.base_pfn << 12, b"\xaa" * (48 * MiB))
        m.kexec_file_load(_kernel("x86_64"), None, "x", 0)
        r = m.kernel_kexec()
        assert r.verified is expect
        assert m.halted is (not expect)
        assert m.generation == (1 if expect else 0)
