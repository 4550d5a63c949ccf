"""``DmaDevice``: a bus master that may or may not stop when told (GIC-D1..D5,
GIC-I1, GIC-I2)."""

from __future__ import annotations

from typing import Any

import pytest

from pykern import Machine, images
from pykern.drivers.dma import DmaDevice
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH

MiB = 1 << 20


def _machine(dev: DmaDevice, arch: str = "arm64", cmdline: str = "cma=64M") -> Machine:
    return Machine("512M", arch=arch, cmdline=cmdline, devices=[dev])


def _kernel(arch: str) -> bytes:
    return images.arm64_image(4 * MiB) if arch == "arm64" else images.bzimage(4 * MiB)


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_d1_ring_from_cma_rx_from_buddy(arch: str) -> None:
    """D1/I1: a multi-page ring comes from the default area's bitmap; rx pages are
    unmovable buddy pages outside every CMA area; without an area the ring is buddy too."""
    dev = DmaDevice("nic0")
    m = _machine(dev, arch)
    area = m.dma_contiguous_default_area
    assert area is not None
    lo, hi = area.base_pfn << 12, (area.base_pfn + area.count) << 12
    kinds = [k for k, _, _ in dev.buffers()]
    assert kinds == ["ring"] + ["rx"] * 16
    ring = dev.buffers()[0]
    assert lo <= ring[1] < hi and int(m.read("/sys/kernel/debug/cma/reserved/used")) == 16
    for _, phys, _ in dev.buffers()[1:]:
        assert not lo <= phys < hi and m.mm.pageblock_type(phys >> 12) == "Unmovable"
    dev2 = DmaDevice("nic1", coherent_from_cma=False)
    m2 = _machine(dev2, arch)
    assert not lo <= dev2.buffers()[0][1] < hi
    assert dev.cma_area is None


@pytest.mark.parametrize("kw,stops", [
    ({}, True),
    ({"honours_shutdown": False}, True),                          # bus mastering cleared
    ({"honours_shutdown": False, "pci_state": "D3cold"}, False),
    ({"has_shutdown": False, "pci_state": "unknown"}, False),
    ({"bus": "platform", "honours_shutdown": False}, False),
    ({"bus": "platform", "has_shutdown": False}, False),
    ({"bus": "platform"}, True),
])
def test_d3_who_stops_at_shutdown(kw: dict[str, Any], stops: bool) -> None:
    dev = DmaDevice("nic0", **kw)
    m = _machine(dev)
    m.kexec_file_load(_kernel("arm64"), None, "", KEXEC_FILE_NO_CMA)
    r = m.kernel_kexec()
    assert (r.scribbles == []) is stops


def test_d2_payload_and_completion_writes() -> None:
    """D2: each arrival writes rx_bytes into the next rx buffer and 16 bytes into the next
    ring slot."""
    dev = DmaDevice("nic0", bus="platform", has_shutdown=False, rx_bytes=512)
    m = _machine(dev)
    rx0 = dev.buffers()[1][1]
    ring = dev.buffers()[0][1]
    m.kexec_file_load(_kernel("arm64"), None, "", 0)
    r = m.kernel_kexec()
    kinds = [t.kind for t in dev.trace]
    assert kinds[:2] == ["rx-payload", "rx-completion"]
    assert dev.trace[0].phys == rx0 and dev.trace[0].length == 512
    assert dev.trace[1].phys == ring and dev.trace[1].length == 16
    assert int.from_bytes(m.phys_read(ring, 8), "little") == rx0
    assert r.corrupted == []                   # all-CMA image: nothing of it was hit (I2)


def test_d4_crash_path_keeps_writing() -> None:
    dev = DmaDevice("nic0")
    m = _machine(dev, cmdline="cma=64M crashkernel=64M")
    m.kexec_file_load(_kernel("arm64"), None, "", KEXEC_FILE_ON_CRASH)
    r = m.panic()
    assert r is not None and r.scribbles and r.corrupted == []


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_d5_use_after_free_hits_a_cma_segment(arch: str) -> None:
    """D5: the freed ring goes back to the CMA bitmap, the load takes it, the device keeps
    writing: the one way a CMA-backed segment gets corrupted."""
    dev = DmaDevice("nic0", bus="platform", has_shutdown=False, uaf_before_load=True)
    m = _machine(dev, arch)
    assert int(m.read("/sys/kernel/debug/cma/reserved/used")) == 0
    m.kexec_file_load(_kernel(arch), None, "", 0)
    im = m.kexec_image
    assert im is not None
    ring = dev.buffers()[0][1]
    assert any(s.cma and s.mem <= ring < s.mem + s.memsz for s in im.segments)
    r = m.kernel_kexec()
    assert r.corrupted and r.scribbles


def test_dma_constructor_checks() -> None:
    for kw in ({"bus": "usb"}, {"pci_state": "D9"}, {"rx_bytes": 8192}, {"rate_hz": -1},
               {"ring_bytes": 8}, {"coherent_from_cma": "yes"}):
        with pytest.raises(ValueError):
            DmaDevice("x", **kw)
