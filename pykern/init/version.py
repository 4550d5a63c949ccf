"""``init/version.c``: the release string and ``linux_banner``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["KERNEL_VERSIONS", "linux_banner"]

#: ``Machine(version=...)``: the kernel release modelled and its UTS_RELEASE.
KERNEL_VERSIONS = {"6.17": "6.17.0-pykern", "6.18": "6.18.0-pykern"}


def linux_banner(m: Machine) -> str:
    """``linux_banner``: the first boot line and ``/proc/version``."""
    return (f"Linux version {KERNEL_VERSIONS[m.kernel_version]} (pykern@pykern) "
            f"(pykern) #1 SMP PREEMPT_DYNAMIC {m.arch}\n")
