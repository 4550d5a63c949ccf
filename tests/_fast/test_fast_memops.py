"""The compiled and pure-Python memops twins behave identically (results and errors)."""

from __future__ import annotations

import array
import mmap
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykern import _fast
from pykern._fast import memops_c, memops_py

MAX_SIZE = 64 * 1024

IMPLS = [
    pytest.param(memops_py, id="py"),
    pytest.param(
        memops_c,
        id="c",
        marks=pytest.mark.skipif(memops_c is None, reason="compiled _memops_c not built"),
    ),
]
both_built = pytest.mark.skipif(memops_c is None, reason="compiled _memops_c not built")
KINDS = ["bytearray", "mmap"]

# Hypothesis examples here allocate up to a few 64 KiB buffers each: no deadline.
memops_settings = settings(deadline=None, max_examples=60)


@contextmanager
def ram(kind: str, data: bytes) -> Iterator[bytearray | mmap.mmap]:
    """A writable buffer of ``kind`` holding ``data`` (mmap for the emulated RAM)."""
    if kind == "bytearray":
        yield bytearray(data)
        return
    # An anonymous mapping cannot be empty; a 0-byte RAM is tested with bytearray.
    m = mmap.mmap(-1, max(len(data), 1))
    try:
        m[: len(data)] = data
        if len(data) == 0:
            yield bytearray()
        else:
            yield m
    finally:
        m.close()  # fails if an implementation leaked a buffer export


def rand_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@st.composite
def buffer_and_span(draw: st.DrawFn) -> tuple[bytes, int, int]:
    size = draw(st.integers(0, MAX_SIZE))
    data = rand_bytes(draw(st.integers(0, 2**32 - 1)), size)
    off = draw(st.integers(0, size))
    n = draw(st.integers(0, size - off))
    return data, off, n


@st.composite
def two_ranges(draw: st.DrawFn) -> tuple[bytes, int, bytes, int, int]:
    """Two buffers with same-length ranges that are often equal, or differ in a few bytes."""
    size_a = draw(st.integers(0, MAX_SIZE))
    size_b = draw(st.integers(0, MAX_SIZE))
    n = draw(st.integers(0, min(size_a, size_b)))
    aoff = draw(st.integers(0, size_a - n))
    boff = draw(st.integers(0, size_b - n))
    a = bytearray(rand_bytes(draw(st.integers(0, 2**32 - 1)), size_a))
    b = bytearray(rand_bytes(draw(st.integers(0, 2**32 - 1)), size_b))
    b[boff : boff + n] = a[aoff : aoff + n]
    if n:
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, n - 1))
            b[boff + i] ^= draw(st.integers(1, 255))
    return bytes(a), aoff, bytes(b), boff, n


# ---- reference model --------------------------------------------------------------


def ref_first_diff(a: bytes, aoff: int, b: bytes, boff: int, n: int) -> int:
    for i in range(n):
        if a[aoff + i] != b[boff + i]:
            return i
    return -1


# ---- results ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
@memops_settings
@given(case=buffer_and_span())
def test_zero_range(ops: Any, kind: str, case: tuple[bytes, int, int]) -> None:
    data, off, n = case
    with ram(kind, data) as buf:
        assert ops.zero_range(buf, off, n) is None
        got = bytes(buf[: len(data)])
    assert got == data[:off] + bytes(n) + data[off + n :]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
@memops_settings
@given(case=buffer_and_span(), dst_size=st.integers(0, MAX_SIZE), data=st.data())
def test_copy_range_between_buffers(
    ops: Any, kind: str, case: tuple[bytes, int, int], dst_size: int, data: st.DataObject
) -> None:
    src, soff, n = case
    dst_size = max(dst_size, n)
    doff = data.draw(st.integers(0, dst_size - n))
    before = rand_bytes(dst_size, dst_size)
    with ram(kind, before) as dst:
        ops.copy_range(dst, doff, src, soff, n)  # src is read-only bytes
        got = bytes(dst[:dst_size])
    assert got == before[:doff] + src[soff : soff + n] + before[doff + n :]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
@memops_settings
@given(case=buffer_and_span(), data=st.data())
def test_copy_range_overlapping(
    ops: Any, kind: str, case: tuple[bytes, int, int], data: st.DataObject
) -> None:
    """Within one buffer, forwards and backwards, the ranges possibly overlapping."""
    before, soff, n = case
    size = len(before)
    # Bias the destination to land near the source so that the ranges overlap.
    near = st.integers(max(0, soff - n), min(size - n, soff + n))
    doff = data.draw(st.one_of(near, st.integers(0, size - n)))
    with ram(kind, before) as buf:
        ops.copy_range(buf, doff, buf, soff, n)
        got = bytes(buf[:size])
    expect = bytearray(before)
    expect[doff : doff + n] = before[soff : soff + n]
    assert got == bytes(expect)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
@memops_settings
@given(case=two_ranges())
def test_compare(ops: Any, kind: str, case: tuple[bytes, int, bytes, int, int]) -> None:
    a, aoff, b, boff, n = case
    expect_diff = ref_first_diff(a, aoff, b, boff, n)
    with ram(kind, a) as ra:
        # RAM vs RAM, RAM vs bytes, bytes vs bytes
        with ram(kind, b) as rb:
            assert ops.range_equal(ra, aoff, rb, boff, n) is (expect_diff == -1)
            assert ops.first_diff(ra, aoff, rb, boff, n) == expect_diff
        assert ops.range_equal(ra, aoff, b, boff, n) is (expect_diff == -1)
        assert ops.first_diff(ra, aoff, b, boff, n) == expect_diff
    assert ops.first_diff(a, aoff, b, boff, n) == expect_diff
    # a range always equals itself
    assert ops.range_equal(a, aoff, a, aoff, n) is True
    assert ops.first_diff(a, aoff, a, aoff, n) == -1


@both_built
@memops_settings
@given(case=two_ranges(), data=st.data())
def test_twins_agree(case: tuple[bytes, int, bytes, int, int], data: st.DataObject) -> None:
    """Run every function on both twins from the same state; compare all outputs."""
    assert memops_c is not None
    a, aoff, b, boff, n = case
    doff = data.draw(st.integers(0, len(a) - n))
    out = {}
    for name, ops in (("c", memops_c), ("py", memops_py)):
        with ram("mmap", a) as buf:
            r = (ops.range_equal(buf, aoff, b, boff, n), ops.first_diff(buf, aoff, b, boff, n))
            ops.copy_range(buf, doff, buf, aoff, n)
            ops.zero_range(buf, boff % (len(a) - n + 1), n)
            out[name] = (r, bytes(buf[: len(a)]))
    assert out["c"] == out["py"]


def test_first_diff_chunk_boundaries() -> None:
    """Differences at every position around the twins' internal chunk sizes."""
    size = 3 * 64 * 1024 + 17
    a = rand_bytes(1, size)
    for ops in [memops_py] + ([memops_c] if memops_c is not None else []):
        for pos in (0, 1, 4095, 4096, 4097, 65535, 65536, 65537, size - 1):
            b = bytearray(a)
            b[pos] ^= 0xFF
            assert ops.first_diff(a, 0, b, 0, size) == pos
            assert ops.range_equal(a, 0, b, 0, size) is False
            assert ops.range_equal(a, 0, b, 0, pos) is True
            assert ops.first_diff(a, 1, b, 1, size - 1) == pos - 1  # -1 when pos == 0


# ---- errors ------------------------------------------------------------------------

BUF = 100


def calls(ops: Any, buf: Any, off: int, n: int) -> list[tuple[str, Callable[[], object]]]:
    """Each function with ``(off, n)`` applied to ``buf`` in each buffer position."""
    good = bytearray(BUF)
    return [
        ("zero_range", lambda: ops.zero_range(buf, off, n)),
        ("copy_range dst", lambda: ops.copy_range(buf, off, good, 0, n)),
        ("copy_range src", lambda: ops.copy_range(good, 0, buf, off, n)),
        ("range_equal a", lambda: ops.range_equal(buf, off, good, 0, n)),
        ("range_equal b", lambda: ops.range_equal(good, 0, buf, off, n)),
        ("first_diff a", lambda: ops.first_diff(buf, off, good, 0, n)),
        ("first_diff b", lambda: ops.first_diff(good, 0, buf, off, n)),
    ]


def error_of(fn: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - comparing whatever is raised
        return type(e), str(e)
    return None


OUT_OF_BOUNDS = [
    (-1, 0),
    (-1, 10),
    (0, -1),
    (BUF, 1),
    (BUF + 1, 0),
    (BUF - 10, 11),
    (0, BUF + 1),
    (2**70, 0),
    (0, 2**70),
    (-(2**70), 2**70),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
@pytest.mark.parametrize(("off", "n"), OUT_OF_BOUNDS)
def test_out_of_bounds_raises(ops: Any, kind: str, off: int, n: int) -> None:
    with ram(kind, bytes(range(BUF))) as buf:
        for what, fn in calls(ops, buf, off, n):
            with pytest.raises(ValueError, match=r"out of bounds|is negative"):
                fn()
            assert bytes(buf[:BUF]) == bytes(range(BUF)), f"{what} wrote despite the error"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
@memops_settings
@given(off=st.integers(-(2**64), 2**64), n=st.integers(-(2**64), 2**64))
def test_bounds_property(ops: Any, kind: str, off: int, n: int) -> None:
    """Any (off, n) either is in bounds and works, or raises ValueError."""
    in_bounds = off >= 0 and n >= 0 and off + n <= BUF
    with ram(kind, bytes(BUF)) as buf:
        for _, fn in calls(ops, buf, off, n):
            if in_bounds:
                fn()
            else:
                with pytest.raises(ValueError):
                    fn()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ops", IMPLS)
def test_edges_in_bounds(ops: Any, kind: str) -> None:
    with ram(kind, bytes(range(BUF))) as buf:
        ops.zero_range(buf, BUF, 0)
        ops.zero_range(buf, 0, 0)
        assert ops.range_equal(buf, BUF, b"", 0, 0) is True
        assert ops.first_diff(buf, BUF, b"", 0, 0) == -1
        ops.copy_range(buf, BUF, b"", 0, 0)
        assert bytes(buf[:BUF]) == bytes(range(BUF))
        ops.zero_range(buf, BUF - 1, 1)
        assert buf[BUF - 1] == 0


READ_ONLY = [
    pytest.param(lambda: b"\x01" * BUF, id="bytes"),
    pytest.param(lambda: memoryview(b"\x01" * BUF), id="ro-memoryview"),
]

BAD_BUFFERS = [
    pytest.param(lambda: None, id="None"),
    pytest.param(lambda: "x" * BUF, id="str"),
    pytest.param(lambda: 12345, id="int"),
    pytest.param(lambda: array.array("b", bytes(BUF)), id="signed-char-array"),
    pytest.param(lambda: array.array("i", [0] * BUF), id="int-array"),
    pytest.param(lambda: memoryview(bytearray(2 * BUF))[::2], id="strided"),
    pytest.param(lambda: memoryview(bytearray(BUF)).cast("B", (10, 10)), id="2-d"),
]


@both_built
@pytest.mark.parametrize("make", READ_ONLY + BAD_BUFFERS)
def test_bad_buffers_same_errors(make: Callable[[], Any]) -> None:
    assert memops_c is not None
    for what, fn_c in calls(memops_c, make(), 0, 1):
        fn_py = dict(calls(memops_py, make(), 0, 1))[what]
        assert error_of(fn_c) == error_of(fn_py), what


@pytest.mark.parametrize("ops", IMPLS)
@pytest.mark.parametrize("make", READ_ONLY)
def test_read_only_buffers(ops: Any, make: Callable[[], Any]) -> None:
    ro = make()
    with pytest.raises(BufferError):
        ops.zero_range(ro, 0, 1)
    with pytest.raises(BufferError):
        ops.copy_range(ro, 0, bytes(BUF), 0, 1)
    # ... but they are fine as sources and for comparisons
    dst = bytearray(BUF)
    ops.copy_range(dst, 0, ro, 0, BUF)
    assert dst == b"\x01" * BUF
    assert ops.range_equal(ro, 0, dst, 0, BUF) is True


@pytest.mark.parametrize("ops", IMPLS)
def test_char_format_and_types(ops: Any) -> None:
    buf = memoryview(bytearray(b"abcd")).cast("c")
    ops.zero_range(buf, 1, 2)
    assert buf.tobytes() == b"a\0\0d"
    assert ops.first_diff(buf, 0, b"a\0\0e", 0, 4) == 3
    with pytest.raises(TypeError):
        ops.zero_range(bytearray(4), 1.0, 1)


@both_built
@pytest.mark.parametrize(("off", "n"), OUT_OF_BOUNDS)
def test_bounds_messages_identical(off: int, n: int) -> None:
    assert memops_c is not None
    buf_c, buf_py = bytearray(BUF), bytearray(BUF)
    for (what, fn_c), (_, fn_py) in zip(calls(memops_c, buf_c, off, n), calls(memops_py, buf_py, off, n)):
        err = error_of(fn_c)
        assert err is not None and err[0] is ValueError
        assert err == error_of(fn_py), what


# ---- selection ---------------------------------------------------------------------


def test_selection() -> None:
    assert _fast.get_memops(False) is memops_py
    if memops_c is None:
        assert _fast.COMPILED is False
        assert _fast.get_memops(None) is memops_py
        with pytest.raises(ImportError):
            _fast.get_memops(True)
    else:
        assert _fast.COMPILED is True
        assert _fast.get_memops(None) is memops_c
        assert _fast.get_memops(True) is memops_c
    default = _fast.get_memops(None)
    for name in ("zero_range", "copy_range", "range_equal", "first_diff"):
        assert getattr(_fast, name) is getattr(default, name)


@pytest.mark.parametrize("ops", IMPLS)
def test_first_equal_matches_a_byte_loop(ops: Any) -> None:
    """first_equal: the first offset where the ranges agree, -1 if none; both twins agree
    with a byte loop on buffers with long differing stretches (the corrupted-run ends of
    K16.11)."""
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(0, 9000)
        a = bytearray(rng.randbytes(n))
        b = bytearray(a)
        for _ in range(rng.randint(0, 4)):
            if n:
                s0 = rng.randrange(n)
                for i in range(s0, min(n, s0 + rng.randint(1, 6000))):
                    b[i] = (a[i] + rng.randint(1, 255)) % 256
        off = rng.randint(0, n)
        want = next((i - off for i in range(off, n) if a[i] == b[i]), -1)
        assert ops.first_equal(a, off, bytes(b), off, n - off) == want
    with pytest.raises(ValueError):
        ops.first_equal(bytearray(4), 2, b"abcd", 0, 3)


def _plain_runs(a: bytes, b: bytes) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((i, 1))
    return runs


@pytest.mark.parametrize("ops", IMPLS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_diff_runs_matches_a_byte_loop(ops: Any, data: Any) -> None:
    """diff_runs (K16.11's corrupted runs): the maximal differing runs, ascending, as a byte
    loop finds them, in both twins; random buffers with sparse flips, long shifted stretches
    (the text_offset quirk) and offsets into both buffers."""
    n = data.draw(st.integers(0, 12000))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    a = bytearray(rng.randbytes(n))
    b = bytearray(a)
    for _ in range(data.draw(st.integers(0, 5))):
        if n:
            s0 = rng.randrange(n)
            k = rng.choice([1, 2, 7, 300, 5000])
            b[s0:s0 + k] = rng.randbytes(len(b[s0:s0 + k]))
    ao = data.draw(st.integers(0, 64))
    bo = data.draw(st.integers(0, 64))
    big_a = bytes(rng.randbytes(ao)) + bytes(a)
    big_b = bytearray(rng.randbytes(bo)) + b
    assert ops.diff_runs(big_a, ao, big_b, bo, n) == _plain_runs(bytes(a), bytes(b))
    with pytest.raises(ValueError):
        ops.diff_runs(bytearray(4), 2, b"abcd", 0, 3)
