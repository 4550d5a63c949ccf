"""x86_64 purgatory's digest check (K13.1, K13.3, ARCH X41) and the load's record of what it
hashed (:class:`~pykern.arch.x86.purgatory.HashedRegions`): comparing RAM with the hashed
bytes must give exactly the answer hashing RAM gives, whatever was changed."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pykern import Machine, images
from pykern.arch.x86.purgatory import HashedRegions, purgatory_verify
from pykern.kernel.kexec.core import KImage
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA

MiB = 1 << 20
_TABLE, _DIGEST = 0x200, 0x300


def _at_jump(flags: int) -> tuple[Machine, KImage, int]:
    """A bzImage + initrd loaded and relocated: the reboot stopped just before the check."""
    m = Machine("128M", arch="x86_64", cmdline="cma=32M")
    m.kexec_file_load(images.bzimage(300 * 1024, seed=3),
                      images.payload_pattern(200 * 1024 + 5, seed=4), "console=ttyS0", flags)
    image = m.kexec_image
    assert image is not None
    stages = m.kernel_kexec_stages()
    stages.prepare()
    stages.hot_phase()
    return m, image, image.segments[image.arch["purgatory_idx"]].mem


def _sha_of_ram(m: Machine, regions: tuple[tuple[int, int], ...]) -> bytes:
    sha = hashlib.sha256()
    for start, length in regions:
        sha.update(m.phys_read(start, length))
    return sha.digest()


def test_k13_1_hashed_regions_record_what_the_load_hashed() -> None:
    """K13.1: the record names every segment but the purgatory, memsz long, and its digest
    is the one stored in the purgatory's table; RAM at the jump hashes to it."""
    m, image, purg = _at_jump(KEXEC_FILE_NO_CMA)
    hashed = image.arch["hashed"]
    assert isinstance(hashed, HashedRegions)
    skip = image.arch["purgatory_idx"]
    assert hashed.regions == tuple((s.mem, s.memsz) for i, s in enumerate(image.segments)
                                   if i != skip)
    assert [len(b) for b in hashed.bodies] == [s.bufsz for i, s in enumerate(image.segments)
                                              if i != skip]
    assert m.phys_read(purg + _DIGEST, 32) == hashed.digest
    assert _sha_of_ram(m, hashed.regions) == hashed.digest
    assert hashed.holds(m, list(hashed.regions))
    assert purgatory_verify(m, purg, hashed) and purgatory_verify(m, purg)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([0, KEXEC_FILE_NO_CMA]), st.data())
def test_k13_3_compare_or_hash_same_answer(flags: int, data: st.DataObject) -> None:
    """K13.3: with one byte flipped anywhere in a hashed region (body or zero tail), in the
    region table or in the stored digest, the check answers as hashing RAM does: False when
    the RAM no longer hashes to the stored digest."""
    m, image, purg = _at_jump(flags)
    hashed: HashedRegions = image.arch["hashed"]
    where = data.draw(st.sampled_from(["region", "tail", "table", "digest"]))
    if where in ("region", "tail"):
        k = data.draw(st.integers(0, len(hashed.regions) - 1))
        start, length = hashed.regions[k]
        body = len(hashed.bodies[k])
        lo, hi = (0, body) if where == "region" or body == length else (body, length)
        phys = start + data.draw(st.integers(lo, max(lo, hi - 1)))
    elif where == "table":
        phys = purg + _TABLE + data.draw(st.integers(0, 16 * len(hashed.regions) - 1))
    else:
        phys = purg + _DIGEST + data.draw(st.integers(0, 31))
    old = m.phys_read(phys, 1)[0]
    m.phys_write(phys, bytes([old ^ (1 << data.draw(st.integers(0, 7)))]))
    fast, slow = purgatory_verify(m, purg, hashed), purgatory_verify(m, purg)
    assert fast == slow
    if where in ("region", "tail", "digest"):
        assert not fast
    table = m.phys_read(purg + _TABLE, 256)
    regions = tuple(r for r in struct.iter_unpack("<QQ", table) if r[1])
    if regions != hashed.regions:
        assert not hashed.holds(m, list(regions))
