"""Architecture code (``arch/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mm.memblock import clip_to_memory

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["reserve_kernel_image"]


def reserve_kernel_image(m: Machine, image: tuple[int, int],
                         ranges: list[tuple[int, int]]) -> None:
    """The running kernel's memblock reservations, the part of each arch's ``setup_arch``
    that reserves the kernel image (MM Z0.2, Z0.3), clipped to memory.

    A kexec'd kernel reserves what the previous one handed over (its kernel, on arm64 its
    device tree, the initrd and the ranges published for it) and runs from the kernel
    segment.  At power-on ``Machine(reserved=...)`` replaces the defaults (and no image is
    shown in ``/proc/iomem``); otherwise ``ranges`` (``[start, end)``, the image among
    them) are reserved and the image is what of ``image`` is memory.  Sets
    ``m.kernel.kernel_image``.
    """
    k = m.kernel
    mb = k.memblock
    if k.handover is not None:
        ranges, kernel = k.handover["reserve"], k.handover["kernel"]
    elif m.reserved_arg is not None:
        ranges, kernel = [(b, b + n) for b, n in m.reserved_arg], None
    else:
        clipped = clip_to_memory(mb, *image)
        kernel = (clipped[0][0], clipped[-1][1]) if clipped else None
    for base, end in ranges:
        for b, e in clip_to_memory(mb, base, end):
            mb.memblock_reserve(b, e - b)
    k.kernel_image = kernel
