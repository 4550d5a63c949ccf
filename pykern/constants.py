"""Constants the whole tree shares, defined once.

The page geometry is the one both modelled architectures use here (``asm/page.h`` with 4 KiB
pages: arm64 with ``CONFIG_ARM64_4K_PAGES``, x86_64 always); the ``SZ_*`` sizes are those of
``include/linux/sizes.h``; ``ARCHES`` names the architectures pykern models.
"""

from __future__ import annotations

__all__ = ["PAGE_SHIFT", "PAGE_SIZE", "PAGE_MASK", "ARCHES", "SZ_64K", "SZ_1M", "SZ_2M",
           "SZ_16M", "SZ_1G", "SZ_4G"]

#: ``PAGE_SHIFT``: log2 of the page size.
PAGE_SHIFT = 12
#: ``PAGE_SIZE``: 4 KiB.
PAGE_SIZE = 1 << PAGE_SHIFT
#: ``PAGE_MASK``: clears the offset within a page (as a Python int, so it is negative).
PAGE_MASK = ~(PAGE_SIZE - 1)

#: The architectures pykern models, as ``Machine(arch=...)`` names them.
ARCHES = ("arm64", "x86_64")

#: ``SZ_64K``
SZ_64K = 0x1_0000
#: ``SZ_1M``
SZ_1M = 0x10_0000
#: ``SZ_2M``
SZ_2M = 0x20_0000
#: ``SZ_16M``
SZ_16M = 0x100_0000
#: ``SZ_1G``
SZ_1G = 0x4000_0000
#: ``SZ_4G``
SZ_4G = 0x1_0000_0000
