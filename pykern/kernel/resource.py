"""The iomem resource tree (``kernel/resource.c``): ``/proc/iomem`` and the
System RAM walks kexec uses.

A resource is ``[start, end]`` with an inclusive end, as the kernel keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..mm.memblock import subtract
from ..mm.mmzone import PAGE_SHIFT

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["Resource", "IORESOURCE_SYSTEM_RAM", "IORESOURCE_MEM", "IORESOURCE_BUSY",
           "iomem_text", "request_standard_resources"]

IORESOURCE_MEM = 0x00000200
IORESOURCE_BUSY = 0x80000000
IORESOURCE_SYSRAM = 0x01000000
IORESOURCE_SYSTEM_RAM = IORESOURCE_MEM | IORESOURCE_SYSRAM


@dataclass
class Resource:
    """One ``struct resource``."""

    name: str
    start: int
    end: int  # inclusive
    flags: int = IORESOURCE_MEM | IORESOURCE_BUSY
    children: list[Resource] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def insert(self, child: Resource) -> None:
        """Add a child in address order (children never overlap here)."""
        if child.start < self.start or child.end > self.end:
            raise ValueError(f"resource {child.name} [{child.start:#x}-{child.end:#x}] "
                             f"outside {self.name}")
        self.children.append(child)
        self.children.sort(key=lambda r: r.start)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Resource]]:
        yield depth, self
        for c in self.children:
            yield from c.walk(depth + 1)


def iomem_text(roots: list[Resource]) -> str:
    """``r_show`` over the tree (MM T6): ``%*s%0*llx-%0*llx : %s``, two spaces per level,
    8 hex digits min."""
    lines = []
    for root in sorted(roots, key=lambda r: r.start):
        for depth, r in root.walk():
            lines.append(f"{'  ' * depth}{r.start:08x}-{r.end:08x} : {r.name}\n")
    return "".join(lines)


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for b, e in sorted(ranges):
        if out and b <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((b, e))
    return out


def _kernel_image_pieces(arch: str, s: int, e: int) -> list[tuple[str, int, int]]:
    """The running kernel's image ``[s, e)`` as the named pieces ``/proc/iomem`` shows
    (MM T6): arm64 code, a reserved gap and data in fixed proportions; x86_64 code, rodata,
    data and bss at the offsets of a distribution build; clipped to the image."""
    if arch == "arm64":
        n = (e - s) >> PAGE_SHIFT
        c, r = 25 * n // 32, 3 * n // 32
        raw = [("Kernel code", s, s + (c << PAGE_SHIFT)),
               ("reserved", s + (c << PAGE_SHIFT), s + ((c + r) << PAGE_SHIFT)),
               ("Kernel data", s + ((c + r) << PAGE_SHIFT), e)]
    else:
        raw = [("Kernel code", s, s + 0x501258),
               ("Kernel rodata", s + 0x600000, s + 0x6DB000),
               ("Kernel data", s + 0x800000, s + 0x8E2A80),
               ("Kernel bss", s + 0x9D1000, s + 0xE00000)]
    return [(name, max(b, s), min(t, e)) for name, b, t in raw if min(t, e) > max(b, s)]


def request_standard_resources(m: Machine) -> list[Resource]:
    """``request_standard_resources`` (arm64; x86_64's ``e820__reserve_resources`` and the
    kernel resources of ``setup_arch``), MM T6: a ``System RAM`` root per memblock memory
    region with the kernel image pieces, ``Crash kernel`` and, on arm64, the memblock
    reservations (and the EFI memreserve ranges, GIC-T9) merged as memblock merges them and
    shown as ``reserved`` where nothing named covers them.

    [model] Built on demand from this boot's memblock rather than kept as a tree.
    """
    k = m.kernel
    roots: list[Resource] = []
    named: list[tuple[int, int]] = []
    children: list[Resource] = []
    if k.kernel_image is not None:
        for name, b, e in _kernel_image_pieces(m.arch, *k.kernel_image):
            children.append(Resource(name, b, e - 1))
            if name != "reserved":
                named.append((b, e))
    crashk_res = k.kexec.crashk_res
    if crashk_res is not None:
        b, e = crashk_res
        children.append(Resource("Crash kernel", b, e - 1))
        named.append((b, e))
    if m.arch == "arm64":
        pieces = _merge_ranges(list(k.memblock.reserved) +
                               [(b, b + n) for b, n in m.efi_memreserve])
        for b, e in named:
            pieces = subtract(pieces, b, e)
        children = [c for c in children if c.name != "reserved"]
        children += [Resource("reserved", b, e - 1) for b, e in pieces]
    for b, e in k.memblock.memory:
        ram = Resource("System RAM", b, e - 1, IORESOURCE_SYSTEM_RAM)
        for c in children:
            lo, hi = max(c.start, b), min(c.end, e - 1)
            if hi >= lo:
                ram.insert(Resource(c.name, lo, hi))
        roots.append(ram)
    return roots
