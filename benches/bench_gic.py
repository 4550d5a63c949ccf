"""Issue 7's speed rule: a GIC firing at its default rate (20 kHz, ignoring shutdown) must
not make a reboot more than 2x slower than the same reboot without devices.

Group ``reboot 64M NO_CMA`` compares the two; ``extra_info`` carries the write count."""

from __future__ import annotations

from typing import Any

import pytest

from pykern import Machine, images
from pykern.drivers.gic import GICv3
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA

MiB = 1 << 20
_KERNEL = images.arm64_image(64 * MiB)


@pytest.mark.parametrize("device", ["none", "gic-20khz", "gic-200khz"])
def test_bench_reboot_with_gic(benchmark: Any, device: str) -> None:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        devices = [] if device == "none" else [
            GICv3(honours_shutdown=False,
                  msi_rate_hz=20000.0 if device == "gic-20khz" else 200000.0)]
        m = Machine("1G", cmdline="cma=64M", devices=devices, seed=1)
        m.kexec_file_load(_KERNEL, None, "", KEXEC_FILE_NO_CMA)
        return (m,), {}

    def reboot(m: Machine) -> None:
        r = m.kernel_kexec()
        assert m.generation == 1
        benchmark.extra_info["scribbles"] = len(r.scribbles)
        benchmark.extra_info["hot_phase_seconds"] = r.hot_phase_seconds

    benchmark.group = "reboot 64M NO_CMA"
    benchmark.extra_info["device"] = device
    benchmark.pedantic(reboot, setup=setup, rounds=5, iterations=1)
