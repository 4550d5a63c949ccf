"""CMA debugfs (``mm/cma_debug.c``) and sysfs (``mm/cma_sysfs.c``), MM CMA11–CMA12."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from .cma import Cma

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["cma_debugfs_read", "cma_debugfs_write", "cma_sysfs_read"]


def _area(m: Machine, name: str) -> Cma | None:
    for cma in m.kernel.cma_areas:
        if cma.activated and cma.name == name:
            return cma
    return None



#: The one-number files of an area's directory, each computed only when read (``maxchunk``
#: scans the bitmap).
_AREA_FILES: dict[str, Callable[[Cma], int]] = {
    "count": lambda cma: cma.count,
    "used": lambda cma: cma.count - cma.available_count,
    "maxchunk": lambda cma: cma.maxchunk(),
    "order_per_bit": lambda cma: cma.order_per_bit,
    "base_pfn": lambda cma: cma.base_pfn,
}


def cma_debugfs_read(m: Machine, rest: str) -> str | None:
    """``/sys/kernel/debug/cma/<name>/<file>`` (``rest`` is ``<name>/<file>``)."""
    parts = rest.split("/")
    if len(parts) < 2:
        return None
    cma = _area(m, parts[0])
    if cma is None:
        return None
    fname = "/".join(parts[1:])
    value = _AREA_FILES.get(fname)
    if value is not None:
        return f"{value(cma)}\n"
    if fname == "bitmap":
        fname = "ranges/0/bitmap"
    if fname.startswith("ranges/"):
        sub = fname.split("/")
        if len(sub) != 3 or not sub[1].isdigit() or int(sub[1]) >= cma.nranges:
            return None
        r = int(sub[1])
        if sub[2] == "base_pfn":
            return f"{cma.ranges[r].base_pfn}\n"
        if sub[2] == "bitmap":
            return " ".join(str(w) for w in cma.bitmap_words(r)) + "\n"
    return None


def cma_debugfs_write(m: Machine, rest: str, text: str) -> None:
    """``alloc`` and ``free`` (MM CMA11)."""
    parts = rest.split("/")
    cma = _area(m, parts[0]) if len(parts) == 2 else None
    if cma is None or parts[1] not in ("alloc", "free"):
        if cma is not None and cma_debugfs_read(m, rest) is not None:
            raise PermissionError(errno.EACCES, "Permission denied",
                                  "/sys/kernel/debug/cma/" + rest)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                "/sys/kernel/debug/cma/" + rest)
    try:
        n = int(text.strip(), 0)
    except ValueError:
        raise OSError(errno.EINVAL, f"Invalid argument: {text!r}") from None
    if parts[1] == "alloc":
        page = cma.alloc(n, 0, False)
        if page is None:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        cma.mem_head.append((page.pfn, n))
        return
    while n > 0 and cma.mem_head:
        pfn, count = cma.mem_head.pop()
        if count <= n:
            cma.release(pfn, count)
            n -= count
        elif cma.order_per_bit == 0:
            cma.release(pfn, n)
            cma.mem_head.append((pfn + n, count - n))
            n = 0
        else:
            cma.mem_head.append((pfn, count))
            break


def cma_sysfs_read(m: Machine, rest: str) -> str | None:
    """``/sys/kernel/mm/cma/<name>/<stat>``."""
    parts = rest.split("/")
    if len(parts) != 2:
        return None
    cma = _area(m, parts[0])
    if cma is None:
        return None
    stats = {
        "alloc_pages_success": cma.alloc_pages_success,
        "alloc_pages_fail": cma.alloc_pages_fail,
        "release_pages_success": cma.release_pages_success,
        "total_pages": cma.count,
        "available_pages": cma.available_count,
    }
    value = stats.get(parts[1])
    return None if value is None else f"{value}\n"
