"""/proc/buddyinfo, /proc/pagetypeinfo, /proc/zoneinfo, /proc/vmstat (``mm/vmstat.c``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine


def buddyinfo(m: Machine) -> str:
    """MM T1."""
    lines = []
    for zone in m.mm.zones:
        if zone.populated_zone():
            lines.append(f"Node 0, zone {zone.name:>8} "
                         + "".join(f"{n:6d} " for n in zone.nr_free) + "\n")
    return "".join(lines)


def pagetypeinfo(m: Machine) -> str:
    raise NotImplementedError


def zoneinfo(m: Machine) -> str:
    raise NotImplementedError


def vmstat(m: Machine) -> str:
    raise NotImplementedError
