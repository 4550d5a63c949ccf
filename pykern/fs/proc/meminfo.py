"""/proc/meminfo (``fs/proc/meminfo.c``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Machine


def meminfo(m: Machine) -> str:
    raise NotImplementedError
