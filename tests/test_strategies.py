"""pykern.testing.strategies (api.md "Testing"): valid inputs by default, readable
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
