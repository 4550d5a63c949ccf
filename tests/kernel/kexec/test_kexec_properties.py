"""The K19 invariants as hypothesis properties over random layouts and loads, and a
fuzz of mutated image headers (only OSError, nothing changed).

Layouts and loads come from ``pykern.testing.strategies``, the same strategies users get.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pykern import Machine, images
from pykern.kernel.kexec.core import KImage
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_UNLOAD
from pykern.testing.invariants import check_kimage, kimage_held_pages
from pykern.testing.strategies import kexec_loads, layouts

pytestmark = pytest.mark.slow

PAGE = 4096
MiB = 1 << 20
#: What a load of a valid image may still fail with: no room (K6.1), over half of RAM or a
#: cmdline too long (K8.5, ARCH X12), no memory for pages (K11.2).
PLACEMENT_ERRNOS = {errno.EADDRNOTAVAIL, errno.EINVAL, errno.ENOMEM}
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _good(arch: str) -> bytes:
    return images.arm64_image(64 * 1024) if arch == "arm64" else images.bzimage(64 * 1024)


def state(m: Machine) -> tuple[Any, ...]:
    return (m.mm.nr_free_pages(), m.kexec_image, m.kexec_crash_image,
            tuple(a.bitmap() for a in m.cma_areas))


def text_offset(kernel: bytes, arch: str) -> int:
    return int.from_bytes(kernel[8:16], "little") if arch == "arm64" else 0


def check_invariants(m: Machine, im: KImage, kernel: bytes) -> int:
    """K19.1–K19.6 (pykern.testing.invariants), then the K19.7 page count it holds."""
    check_kimage(m, im)
    return kimage_held_pages(im, text_offset(kernel, m.arch))


def run_load(kw: dict[str, Any], load: dict[str, Any], fixes: Any) -> None:
    m = Machine(**kw, fixes=fixes)
    before = state(m)
    try:
        m.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], load["flags"])
    except OSError as exc:
        event(f"refused: {errno.errorcode[exc.errno]}")
        assert exc.errno in PLACEMENT_ERRNOS, exc
        assert state(m) == before                                            # K20.4
        return
    im = m.kexec_image
    assert im is not None
    event(f"{sum(s.cma for s in im.segments)} of {im.nr_segments} segments in CMA")
    held = check_invariants(m, im, load["kernel"])
    assert before[0] - m.mm.nr_free_pages() == held                          # K19.7
    r = m.kernel_kexec()
    assert r.corrupted == [] and r.verified                                  # K19.8
    assert r.hot_phase_pages == sum(s.memsz // PAGE for s in im.segments if not s.cma)
    assert r.hot_phase_bytes == PAGE * r.hot_phase_pages
    assert m.generation == 1 and m.kexec_image is None


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
@SETTINGS
@given(st.data())
def test_k19_invariants(arch: str, data: st.DataObject) -> None:
    """K19.1–K19.8 per arch, every fix on (so CMA blocks balance exactly and, on x86_64,
    the digest always matches, K13.4)."""
    kw = data.draw(layouts(arch=arch, max_ram="384M"), label="layout")
    load = data.draw(kexec_loads(arch=arch), label="load")
    run_load(kw, load, "all")


@SETTINGS
@given(st.data())
def test_k19_7_unload_gives_back_every_page(data: st.DataObject) -> None:
    """K19.7/K14: with the default quirks, a NO_CMA load and its unload leave the free page
    count and every CMA bitmap as they were; so does a CMA load with the fixes on."""
    kw = data.draw(layouts(max_ram="256M"), label="layout")
    no_cma = data.draw(st.booleans(), label="no_cma")
    load = data.draw(kexec_loads(arch=kw["arch"], max_kernel="4M", max_initrd="4M"),
                     label="load")
    flags = load["flags"] | KEXEC_FILE_NO_CMA if no_cma else load["flags"] & ~KEXEC_FILE_NO_CMA
    m = Machine(**kw, fixes=() if no_cma else "all")
    before = state(m)
    try:
        m.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], flags)
    except OSError as exc:
        assert exc.errno in PLACEMENT_ERRNOS
    m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
    assert state(m) == before


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_mutated_headers_only_oserror_and_nothing_changes(data: st.DataObject) -> None:
    """Issue #4 "bad input": up to four corrupted header bytes, any flags. The loader
    either accepts the image or raises OSError; a refusal leaves the slot, the free pages
    and the CMA bitmaps exactly as before (fixes on, so K2.9 keeps nothing)."""
    arch = data.draw(st.sampled_from(["arm64", "x86_64"]), label="arch")
    load = data.draw(kexec_loads(arch=arch, max_kernel="1M", max_initrd="256K", valid=False),
                     label="load")
    flags = data.draw(st.sampled_from([load["flags"], 0x20, 0x3F, load["flags"] | 0x4]),
                      label="flags")
    m = Machine("256M", arch=arch, cmdline="cma=32M", fixes="all")
    m.kexec_file_load(_good(arch), None, "", KEXEC_FILE_NO_CMA)     # an image to keep
    before = state(m)
    try:
        m.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], flags)
    except OSError as exc:
        event(f"refused: {errno.errorcode[exc.errno]}")
        assert type(exc) is OSError and exc.errno in PLACEMENT_ERRNOS | {errno.ENOEXEC}
        assert state(m) == before
    else:
        assert m.kexec_image is not before[1]



def test_invariant_checker_catches_a_poked_entry() -> None:
    """The K19 checker can fail: a SOURCE word rewritten in RAM to point into another
    segment's destination is reported as K19.2, a lost SOURCE word as K19.5."""
    import struct

    from pykern.testing.invariants import InvariantViolation

    m = Machine("256M", cmdline="cma=0")
    m.kexec_file_load(images.arm64_image(64 * 1024), images.payload_pattern(8192), "", 0)
    im = m.kexec_image
    assert im is not None
    check_kimage(m, im)
    page = im.head & ~0xFFF
    words = list(struct.unpack("<512Q", m.phys_read(page, PAGE)))
    initrd = im.segments[1]
    words[1] = initrd.mem | 0x8                 # kernel page 0 "sourced" from the initrd
    m.phys_write(page, struct.pack("<512Q", *words))
    with pytest.raises(InvariantViolation) as exc:
        check_kimage(m, im)
    assert exc.value.rule == "K19.2"
    words[1] = 0                                # a skipped word: one SOURCE fewer
    m.phys_write(page, struct.pack("<512Q", *words))
    with pytest.raises(InvariantViolation) as exc:
        check_kimage(m, im)
    assert exc.value.rule == "K19.5"
