"""x86_64 machine hooks for kexec (``arch/x86/kernel/machine_kexec_64.c``) and the
digest step of ``kernel/kexec_file.c`` (K13.1)."""

from __future__ import annotations

import errno
import hashlib
from typing import TYPE_CHECKING

from ...kernel.kexec.core import KexecError, KImage, _alloc_context, kimage_alloc_control_pages
from ...kernel.kexec.uapi import KEXEC_TYPE_CRASH
from .kexec_bzimage64 import bzImage64_load, bzImage64_probe
from .purgatory import HashedRegions, Purgatory

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["X86Kexec", "MAXMEM"]

MAXMEM = 1 << 46  # 4-level paging
_ZEROS = memoryview(bytes(1 << 20))


def init_pgtable_pages(m: Machine) -> int:
    """[model] Control pages of the identity map: a PGD and one PUD page per
    512 GiB of mapped space, with 1 GiB mappings (gbpages)."""
    end = m.kernel.memblock.memblock_end_of_DRAM()
    return 1 + max(1, -(-end // (512 << 30)))


class X86Kexec:
    """The x86_64 side of kexec_file (bzImage64, System RAM walk, purgatory)."""

    name = "x86_64"
    destination_memory_limit = MAXMEM - 1
    source_memory_limit = MAXMEM - 1
    control_memory_limit = MAXMEM - 1
    has_purgatory = True

    def probe(self, m: Machine, kernel: bytes) -> int:
        return bzImage64_probe(kernel, m)

    def crash_hotplug_support(self, m: Machine) -> bool:
        """``arch_crash_hotplug_support``: every file-mode crash load, with CRASH_HOTPLUG."""
        return bool(m.config["CRASH_HOTPLUG"])

    def load(self, m: Machine, image: KImage, kernel: bytes, initrd: bytes | None,
             cmdline: bytes) -> None:
        bzImage64_load(m, image, kernel, initrd, cmdline)

    def walk_ranges(self, m: Machine, image: KImage, top_down: bool) -> list[tuple[int, int]]:
        """``kexec_walk_resources`` (K6.2, x86_64): the crash resource, or each System RAM
        resource."""
        if image.image_type == KEXEC_TYPE_CRASH:
            crashk_res = m.kernel.kexec.crashk_res
            if crashk_res is None:
                return []
            return [(crashk_res[0], crashk_res[1] - 1)]
        ranges = [(b, e - 1) for b, e in m.kernel.memblock.memory]
        return ranges[::-1] if top_down else ranges

    def machine_kexec_prepare(self, m: Machine, image: KImage) -> None:
        """``machine_kexec_prepare`` (K1.9): the identity-mapped page tables, in control
        pages."""
        tables = []
        ctx = _alloc_context(m, image)     # looked up once for the whole run of pages
        for _ in range(init_pgtable_pages(m)):
            page = kimage_alloc_control_pages(m, image, 0, ctx)
            if page is None:
                raise KexecError(errno.ENOMEM, "no control page for the identity map")
            tables.append(page)
        image.arch["pgtable"] = tables

    def calculate_store_digests(self, m: Machine, image: KImage) -> None:
        """``kexec_calculate_store_digests`` (K13.1): SHA-256 over every segment but the
        purgatory, tails as zeros; with CONFIG_CRASH_HOTPLUG also without the segment at
        ``image.elfcorehdr_index`` (the hotplug-updatable elfcorehdr)."""
        sha = hashlib.sha256()
        regions = []
        bodies = []
        skip: int = image.arch["purgatory_idx"]
        hotplug = bool(m.config["CRASH_HOTPLUG"])
        for i, seg in enumerate(image.segments):
            if hotplug and i == image.elfcorehdr_index:
                continue
            if i == skip:
                continue
            buf = seg.buf
            body = buf if type(buf) is bytes and len(buf) == seg.bufsz else \
                bytes(memoryview(buf)[:seg.bufsz])
            sha.update(body)
            bodies.append(body)
            tail = seg.memsz - seg.bufsz
            while tail > 0:             # the zeros past bufsz, a block at a time
                step = min(tail, len(_ZEROS))
                sha.update(_ZEROS[:step])
                tail -= step
            regions.append((seg.mem, seg.memsz))
        purgatory: Purgatory = image.arch["purgatory"]
        digest = sha.digest()
        purgatory.store_digest(regions, digest)
        image.segments[skip].buf = purgatory.blob()
        image.arch["digest"] = digest
        image.arch["hashed"] = HashedRegions(regions, bodies, digest)

    def post_load(self, m: Machine, image: KImage) -> None:
        """Nothing on x86_64."""
