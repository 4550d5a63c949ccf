"""pykern.images: synthetic arm64 Image and x86_64 bzImage builders (ARCH S1–S4)."""

from __future__ import annotations

import random
import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykern import images
from pykern.images import (
    ARM64_CODE0_EFI, arm64_image, arm64_image_header, bzimage, bzimage_header,
    payload_pattern,
)

MiB = 1 << 20


# ------------------------------------------------------------------ S1 arm64 Image


def test_s1_arm64_header_offsets_and_defaults() -> None:
    """ARCH S1 / A.1: 64-byte little-endian header, magic at 0x38."""
    size = 10_000
    img = arm64_image(size)
    assert len(img) == size
    code0, code1, text_offset, image_size, flags, r2, r3, r4 = struct.unpack_from(
        "<IIQQQQQQ", img, 0)
    assert code0 == 0x14000010 and code0 != 0
    assert code1 == 0
    assert text_offset == 0
    assert image_size == 12_288  # align_up(size, PAGE)
    assert flags == 0x0A
    assert (r2, r3, r4) == (0, 0, 0)
    assert img[0x38:0x3C] == bytes([0x41, 0x52, 0x4D, 0x64])
    assert struct.unpack_from("<I", img, 0x38)[0] == 0x644D5241
    assert struct.unpack_from("<I", img, 0x3C)[0] == 0
    assert img[64:] == payload_pattern(size - 64, 0)


def test_s1_arm64_options() -> None:
    img = arm64_image(8192, text_offset=0x80000, bss=0x3000, flags=0x0E, res5=0x40,
                      code0=ARM64_CODE0_EFI)
    h = arm64_image_header(img)
    assert h["text_offset"] == 0x80000
    assert h["image_size"] == 8192 + 0x3000
    assert h["flags"] == 0x0E and h["page_size_code"] == 3 and h["page_size"] == 64 << 10
    assert h["phys_placement"] == 1 and h["big_endian"] is False
    assert h["res5"] == 0x40
    assert img[:2] == b"MZ"
    assert h["magic_ok"] is True
    assert arm64_image_header(arm64_image(100, image_size=0x5000))["image_size"] == 0x5000


def test_s1_payload_deterministic_and_seeded() -> None:
    """ARCH S1: a deterministic payload so corruption checks can compare."""
    assert arm64_image(100_000, seed=7) == arm64_image(100_000, seed=7)
    assert arm64_image(100_000, seed=7)[64:] != arm64_image(100_000, seed=8)[64:]
    assert arm64_image(100_000, seed=7)[:64] == arm64_image(100_000, seed=8)[:64]


def test_payload_pattern_pages_differ() -> None:
    data = payload_pattern(4 * MiB, 3)
    pages = {data[i:i + 4096] for i in range(0, len(data), 4096)}
    assert len(pages) == len(data) // 4096
    assert payload_pattern(100, 3) == data[:100]
    assert payload_pattern(0) == b""
    assert len(payload_pattern(65537)) == 65537


def _plain_pattern(length: int, seed: Any, block: int = 64 << 10) -> bytes:
    """payload_pattern as its docstring states it, one big-integer XOR per block (the
    builder's first implementation): the reference the translate-based builder must equal."""
    if length <= 0:
        return b""
    first = random.Random(seed).randbytes(block)
    base = int.from_bytes(first, "little")
    ones = int.from_bytes((b"\x01" + bytes(7)) * (block // 8), "little")
    blocks = [first] + [(base ^ (ones * (i & ((1 << 64) - 1)))).to_bytes(block, "little")
                        for i in range(1, -(-length // block))]
    return b"".join(blocks)[:length]


@pytest.mark.parametrize("seed", [0, 3, 255, 256, -7, 2**40 + 1, "s", b"b"])
def test_payload_pattern_equals_the_plain_xor_of_block_counters(seed: Any) -> None:
    """S1 payload: block i is block 0 with the counter i XOR-ed into every u64 word, around
    block boundaries, whether or not block 0 of the seed is cached yet."""
    lengths = [1, 5, 8, 63, 4097, 65532, 65533, 65535, 65536, 65537, 3 * 65536 + 9, MiB + 3]
    for cached in (False, True):
        images._BLOCK0.clear()
        if cached:
            payload_pattern(65536, seed)
        for n in lengths:
            assert payload_pattern(n, seed) == _plain_pattern(n, seed), (n, cached)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, 300_000), seed=st.integers(-(2**70), 2**70), warm=st.booleans())
def test_payload_pattern_matches_plain_reference(length: int, seed: int, warm: bool) -> None:
    """Differential: any length and seed, cold or warm block-0 cache."""
    if not warm:
        images._BLOCK0.pop(seed, None)
    assert payload_pattern(length, seed) == _plain_pattern(length, seed)


def test_payload_counter_bytes_above_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """From block 256 on the counter has a second byte, from block 65536 a third: with a
    64-byte block (so 70000 blocks stay small) each is XOR-ed into its byte of every word."""
    monkeypatch.setattr(images, "_BLOCK", 64)
    monkeypatch.setattr(images, "_BLOCK0", {})
    n = 64 * 70_000 + 13
    for seed in (9, "nine"):
        assert payload_pattern(n, seed) == _plain_pattern(n, seed, 64)
    assert arm64_image(64 + 64 * 300 + 5, seed=9)[64:] == _plain_pattern(64 * 300 + 5, 9, 64)


def test_short_payload_is_a_prefix_of_the_first_block() -> None:
    """A payload shorter than 64 KiB draws only the whole 32-bit words it needs: the same
    bytes as the first block's start (randbytes fills words little-endian in stream order)."""
    images._BLOCK0.clear()
    for seed in (1, 12345, "x"):
        first = random.Random(seed).randbytes(65536)
        for n in (1, 2, 3, 4, 5, 7, 1000, 65535):
            assert payload_pattern(n, seed) == first[:n]
    assert not images._BLOCK0          # short payloads fill no cache


def test_block0_cache_is_bounded() -> None:
    images._BLOCK0.clear()
    for seed in range(images._BLOCK0_MAX + 5):
        payload_pattern(65536 + 1, seed)
    assert 0 < len(images._BLOCK0) <= images._BLOCK0_MAX
    assert payload_pattern(65537, 2) == _plain_pattern(65537, 2)


def test_large_images_build_fast() -> None:
    start = time.perf_counter()
    img = arm64_image(128 * MiB)
    bz = bzimage(64 * MiB)
    elapsed = time.perf_counter() - start
    assert len(img) == 128 * MiB and len(bz) == 64 * MiB
    assert elapsed < 10  # typically ~1 s; a per-byte loop would take minutes


# ------------------------------------------------------------------ S2 arm64 negatives


def test_s2_short_file() -> None:
    """ARCH S2: short file (< 64 bytes) = the header truncated."""
    full = arm64_image(64)
    for n in (0, 1, 63):
        assert arm64_image(n) == full[:n]
    with pytest.raises(ValueError):
        arm64_image_header(arm64_image(63))


def test_s2_wrong_magic() -> None:
    h = arm64_image_header(arm64_image(4096, magic=b"ARM\x65"))
    assert h["magic"] == b"ARM\x65" and h["magic_ok"] is False
    with pytest.raises(ValueError):
        arm64_image(4096, magic=b"ARM")


def test_s2_image_size_zero_be_flag_page_codes() -> None:
    assert arm64_image_header(arm64_image(4096, image_size=0))["image_size"] == 0
    assert arm64_image_header(arm64_image(4096, flags=0x0B))["big_endian"] is True
    for code, size in ((2, 16 << 10), (3, 64 << 10)):
        h = arm64_image_header(arm64_image(4096, flags=0x08 | (code << 1)))
        assert h["page_size_code"] == code and h["page_size"] == size


def test_s2_text_offset_not_page_multiple_and_file_longer_than_image_size() -> None:
    assert arm64_image_header(arm64_image(8192, text_offset=0x800))["text_offset"] == 0x800
    img = arm64_image(3 * 4096, image_size=4096)
    assert len(img) == 3 * 4096 and arm64_image_header(img)["image_size"] == 4096


# ------------------------------------------------------------------ S3 bzImage


def test_s3_bzimage_fields_at_their_offsets() -> None:
    """ARCH S3 / X.1."""
    size = 1 * MiB
    bz = bzimage(size)
    assert len(bz) == size
    assert bz[0x1F1] == 1
    assert bz[0x1FE:0x200] == b"\x55\xaa"
    assert bz[0x200] == 0xEB and bz[0x201] == 0x6A
    assert bz[0x202:0x206] == b"HdrS"
    assert struct.unpack_from("<I", bz, 0x202)[0] == 0x53726448
    assert struct.unpack_from("<H", bz, 0x206)[0] == 0x020F
    assert bz[0x211] == 0x01
    assert struct.unpack_from("<I", bz, 0x230)[0] == 0x200000
    assert bz[0x234] == 1 and bz[0x235] == 0x15
    assert struct.unpack_from("<H", bz, 0x236)[0] == 0x0003
    assert struct.unpack_from("<I", bz, 0x238)[0] == 0x7FF
    assert struct.unpack_from("<Q", bz, 0x258)[0] == 0x1000000
    payload = size - 1024
    assert struct.unpack_from("<I", bz, 0x260)[0] == 2 * MiB  # payload rounded to 2 MiB
    # everything else below kern16 is zero; the payload starts at kern16 = 1024
    written = {0x1F1, 0x1FE, 0x1FF, 0x200, 0x201, 0x206, 0x207, 0x211, 0x234, 0x235,
               0x236, 0x237} | set(range(0x202, 0x206)) | set(range(0x230, 0x234)) \
        | set(range(0x238, 0x23C)) | set(range(0x258, 0x260)) | set(range(0x260, 0x264))
    assert all(bz[i] == 0 for i in range(1024) if i not in written)
    assert bz[1024:] == payload_pattern(payload, 0)
    assert 0x202 + bz[0x201] == 0x26C  # the header copy ends at 0x26C


def test_s3_header_parser() -> None:
    h = bzimage_header(bzimage(3 * MiB, setup_sects=3, init_size=8 * MiB,
                               xloadflags=0x23, pref_address=0x2000000))
    assert h["setup_sects"] == 3 and h["kern16"] == 4 * 512
    assert h["boot_flag"] == 0xAA55
    assert h["jump"] == 0x6AEB and h["jump_len"] == 0x6A and h["header_end"] == 0x26C
    assert h["header"] == b"HdrS" and h["magic_ok"] is True
    assert h["version"] == 0x020F and h["loadflags"] == 1
    assert h["kernel_alignment"] == 0x200000
    assert h["relocatable_kernel"] == 1 and h["min_alignment"] == 0x15
    assert h["xloadflags"] == 0x23 and h["cmdline_size"] == 0x7FF
    assert h["pref_address"] == 0x2000000 and h["init_size"] == 8 * MiB
    assert h["setup_data"] == 0 and h["type_of_loader"] == 0
    assert bzimage_header(bzimage(2048, setup_sects=0))["kern16"] == 5 * 512
    with pytest.raises(ValueError):
        bzimage_header(bzimage(0x26B))


def test_s3_init_size_default_rounding() -> None:
    assert bzimage_header(bzimage(1024 + 2 * MiB))["init_size"] == 2 * MiB
    assert bzimage_header(bzimage(1025 + 2 * MiB))["init_size"] == 4 * MiB


# ------------------------------------------------------------------ S4 bzImage negatives


def test_s4_negative_variants() -> None:
    assert len(bzimage(1023)) == 1023 and bzimage(1023) == bzimage(4096)[:1023]
    assert bzimage(600)[:0x1F1] == bytes(0x1F1)
    assert bzimage_header(bzimage(4096, magic=b"HdrT"))["magic_ok"] is False
    assert bzimage_header(bzimage(4096, boot_flag=0x1234))["boot_flag"] == 0x1234
    assert bzimage_header(bzimage(4096, version=0x020B))["version"] == 0x020B
    assert bzimage_header(bzimage(4096, loadflags=0x80))["loadflags"] & 1 == 0
    assert bzimage_header(bzimage(4096, xloadflags=0x2))["xloadflags"] & 1 == 0
    assert bzimage_header(bzimage(4096, xloadflags=0x1))["xloadflags"] & 2 == 0
    big_setup = bzimage(4096, setup_sects=20)
    assert len(big_setup) == 4096 and bzimage_header(big_setup)["kern16"] > 4096
    assert big_setup[0x264:] == bytes(4096 - 0x264)
    small_init = bzimage(3 * MiB, init_size=MiB)
    assert bzimage_header(small_init)["init_size"] < len(small_init) - 1024
    assert bzimage_header(bzimage(4096, cmdline_size=16))["cmdline_size"] == 16
    h = bzimage_header(bzimage(4096, jump_len=-2))
    assert h["jump_len"] == -2 and h["header_end"] == 0x200
