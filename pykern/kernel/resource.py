"""The iomem resource tree (``kernel/resource.c``): ``/proc/iomem`` and the
System RAM walks kexec uses.

A resource is ``[start, end]`` with an inclusive end, as the kernel keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Resource", "IORESOURCE_SYSTEM_RAM", "IORESOURCE_MEM", "IORESOURCE_BUSY",
           "iomem_text"]

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
