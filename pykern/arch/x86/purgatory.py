"""pykern's x86_64 purgatory object (ARCH X16, M4), rule K13.

Laid out to the sizes of the real 6.18 purgatory: ``bufsz`` 0x4000 (the loaded
sections, a 4 KiB stack among them), ``memsz`` 0x5000, alignment 0x1000.  Its
symbols sit at fixed offsets of the buffer; its behaviour (X41) is
``purgatory_verify``: hash the regions as RAM holds them, compare, jump.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Machine

__all__ = ["HashedRegions", "Purgatory", "PURGATORY_BUFSZ", "PURGATORY_MEMSZ",
           "PURGATORY_ALIGN", "purgatory_verify"]

PURGATORY_BUFSZ = 0x4000
PURGATORY_MEMSZ = 0x5000
PURGATORY_ALIGN = 0x1000
_MAGIC = b"pykern purgatory\0"
_REGS = 0x100          # entry64_regs: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip
_SHA_REGIONS = 0x200   # purgatory_sha_regions: 16 x (start u64, len u64)
_SHA_DIGEST = 0x300    # purgatory_sha256_digest: 32 bytes
_STACK_END = 0x4000    # end of the 4 KiB stack in the data section
_REGION = struct.Struct("<QQ")
_REG_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10",
              "r11", "r12", "r13", "r14", "r15", "rip")


class Purgatory:
    """The purgatory segment's buffer and its symbols."""

    entry_offset = 0
    stack_end_offset = _STACK_END

    def __init__(self) -> None:
        self._buf = bytearray(PURGATORY_BUFSZ)
        self._buf[:len(_MAGIC)] = _MAGIC

    def blob(self) -> bytes:
        return bytes(self._buf)

    def set_entry64_regs(self, **regs: int) -> None:
        """``kexec_purgatory_get_set_symbol(image, "entry64_regs", …)``."""
        values = [regs.get(name, 0) for name in _REG_NAMES]
        struct.pack_into("<17Q", self._buf, _REGS, *values)

    def entry64_regs(self) -> dict[str, int]:
        return dict(zip(_REG_NAMES, struct.unpack_from("<17Q", self._buf, _REGS)))

    def store_digest(self, regions: list[tuple[int, int]], digest: bytes) -> None:
        """``purgatory_sha_regions`` and ``purgatory_sha256_digest`` (K13.1)."""
        table = (regions + [(0, 0)] * 16)[:16]
        for k, (start, length) in enumerate(table):
            struct.pack_into("<QQ", self._buf, _SHA_REGIONS + 16 * k, start, length)
        self._buf[_SHA_DIGEST:_SHA_DIGEST + 32] = digest


class HashedRegions:
    """[model] What ``kexec_calculate_store_digests`` fed SHA-256 at load: each region (start,
    length) in order, the bytes it began with (the segment's ``bufsz`` bytes; zeros make up
    the rest of the region) and the digest that came out.

    :func:`purgatory_verify` is given it to spare hashing the same bytes twice: where the
    table in RAM names the same regions and RAM still holds exactly these bytes (a memcmp),
    the digest of RAM is this digest.  Any other RAM is hashed, so the answer is always
    SHA-256's own."""

    __slots__ = ("regions", "bodies", "digest")

    def __init__(self, regions: list[tuple[int, int]], bodies: list[bytes],
                 digest: bytes) -> None:
        self.regions = tuple(regions)
        self.bodies = tuple(bodies)
        self.digest = digest

    def holds(self, m: Machine, regions: list[tuple[int, int]]) -> bool:
        """Whether ``regions`` are these regions and RAM holds exactly the hashed bytes."""
        if tuple(regions) != self.regions:
            return False
        physmem, equal = m.physmem, m.memops.range_equal
        for (start, length), body in zip(self.regions, self.bodies):
            n = len(body)
            if n > length or not equal(physmem.buf, physmem.offset(start, length), body, 0, n) \
                    or not physmem.is_zero(start + n, length - n):
                return False
        return True


def purgatory_verify(m: Machine, purgatory_mem: int,
                     hashed: HashedRegions | None = None) -> bool:
    """``verify_sha256_digest`` (ARCH X41 / K13.3): SHA-256 of the regions in RAM against
    the stored digest.

    Reads the table and digest from the purgatory as it lies in RAM; the regions are hashed
    straight from RAM (views, not copies).  [model] With ``hashed``, the load's record of
    what it hashed, RAM that still holds those very bytes is compared instead of hashed
    again (:class:`HashedRegions`; same answer).
    """
    blob = m.physmem.read(purgatory_mem, PURGATORY_BUFSZ)
    if not blob.startswith(_MAGIC):
        return False
    regions = []
    for k in range(16):
        start, length = _REGION.unpack_from(blob, _SHA_REGIONS + 16 * k)
        if not length:
            continue
        if not m.physmem.is_ram(start, length):
            return False
        regions.append((start, length))
    stored = blob[_SHA_DIGEST:_SHA_DIGEST + 32]
    if hashed is not None and hashed.holds(m, regions):
        return hashed.digest == stored
    sha = hashlib.sha256()
    with memoryview(m.ram) as ram:
        for start, length in regions:
            at = m.physmem.offset(start, length)
            with ram[at:at + length] as region:
                sha.update(region)
    return sha.digest() == stored
