"""pykern.testing.strategies (the testing guide): valid inputs by default, readable
shrinking, InvalidArgument for impossible constraints."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from pykern import Machine
from pykern.testing.strategies import kexec_loads, layouts

MiB = 1 << 20


@pytest.mark.parametrize("make", [
    lambda: layouts(min_ram="512M", max_ram="256M"),
    lambda: layouts(min_ram="8M"),
    lambda: layouts(arch="riscv"),
    lambda: layouts(max_banks=0),
    lambda: layouts(max_ram="lots"),
    lambda: kexec_loads(arch="mips"),
    lambda: kexec_loads(min_kernel="1M", max_kernel="64K"),
    lambda: kexec_loads(min_kernel=100),
])
def test_impossible_constraints_are_invalid_argument(make: Any) -> None:
    with pytest.raises(InvalidArgument):
        make().example()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(max_ram="256M"))
def test_layouts_always_boot_within_bounds(kw: dict[str, Any]) -> None:
    m = Machine(**kw)
    total = sum(size for _, size in m.banks)
    assert 64 * MiB <= total <= 256 * MiB
    assert m.arch == kw["arch"] and m.seed == kw["seed"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_valid_loads_are_accepted_by_the_probe(data: st.DataObject) -> None:
    """Valid loads never fail on the header: only placement errnos are possible."""
    import errno
    arch = data.draw(st.sampled_from(["arm64", "x86_64"]))
    load = data.draw(kexec_loads(arch=arch, max_kernel="1M", max_initrd="1M"))
    m = Machine("512M", arch=arch, cmdline="cma=64M")
    try:
        m.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], load["flags"])
    except OSError as exc:
        assert exc.errno in (errno.EADDRNOTAVAIL, errno.ENOMEM), exc


def test_shrinks_toward_one_small_bank() -> None:
    """The minimal failing layout for "has a crashkernel" is a single small bank."""
    from hypothesis import find
    kw = find(layouts(max_ram="512M"), lambda k: "crashkernel" in k["cmdline"])
    assert kw["ram"] == "64M" and kw.get("reserved") is None and kw["seed"] == 0


def test_devices_are_drawn_and_boot() -> None:
    """Issue 16: layouts(devices=True) never produced a device.  Over 150 draws it now gives
    GICv3s (arm64 only) and DMA devices, each machine boots with them attached, and
    a load plus reboot runs the devices' reboot schedules (GIC-H1)."""
    from collections import Counter

    from pykern import images
    from pykern.drivers.dma import DmaDevice
    from pykern.drivers.gic import GICv3
    from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_INITRAMFS

    seen: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(layouts(max_ram="128M", devices=True))
    def check(kw: dict[str, Any]) -> None:
        devs = kw["devices"]
        assert all(isinstance(d, (GICv3, DmaDevice)) for d in devs)
        gics = [d for d in devs if isinstance(d, GICv3)]
        assert len(gics) <= 1 and (not gics or kw["arch"] == "arm64")
        m = Machine(**kw)
        assert list(m.devices) == [d.name for d in devs]
        for d in devs:
            seen[type(d).__name__] += 1
        if devs and kw["arch"] == "arm64":
            try:
                m.kexec_file_load(images.arm64_image(1 << 20), None, "",
                                  KEXEC_FILE_NO_INITRAMFS)
            except OSError:
                return
            r = m.kernel_kexec()
            assert m.generation == 1 and isinstance(r.scribbles, list)

    check()
    assert seen["GICv3"] >= 10 and seen["DmaDevice"] >= 10


def test_devices_shrink_to_one_plain_device() -> None:
    """The smallest layout with a device has one device, with the default options (it
    honours shutdown)."""
    from hypothesis import find
    kw = find(layouts(devices=True), lambda k: bool(k["devices"]))
    [dev] = kw["devices"]
    assert dev.honours_shutdown and kw["ram"] == "64M"


def test_devices_docstring_and_argument() -> None:
    assert "none yet" not in (layouts.__doc__ or "")
    with pytest.raises(InvalidArgument):
        layouts(devices="gic").example()  # type: ignore[arg-type]
