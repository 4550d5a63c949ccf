"""Pure-Python byte-range primitives over the emulated RAM buffer.

The twin of the compiled :mod:`pykern._fast._memops_c`: same functions, same results and
the same exceptions (types and messages).  Buffers are any C-contiguous, one-dimensional,
byte-sized buffer (``bytearray``, ``mmap.mmap``, ``memoryview``; ``bytes`` where only read
access is needed).  Work is done with memoryview slice assignment and ``bytes`` comparisons
in fixed-size chunks, never byte by byte in Python.
"""

from __future__ import annotations

from operator import index as _index
from typing import TYPE_CHECKING, SupportsIndex

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["zero_range", "copy_range", "range_equal", "first_diff", "first_equal", "diff_runs"]

# Comparisons and zeroing run in chunks of this size: big enough to amortise the Python
# overhead, small enough to stay in cache (and to bound the temporaries ``tobytes`` makes).
_CHUNK = 64 * 1024
_ZEROS = bytes(_CHUNK)

# Formats accepted as "unsigned char", as the compiled twin's typed memoryviews accept them.
_BYTE_FORMATS = frozenset({"B", "c"})
# C type names of other struct formats, for the same dtype-mismatch message as Cython's.
_C_TYPES = {
    "b": "signed char", "h": "short", "H": "unsigned short", "i": "int", "I": "unsigned int",
    "l": "long", "L": "unsigned long", "q": "long long", "Q": "unsigned long long",
    "n": "Py_ssize_t", "N": "size_t", "f": "float", "d": "double", "e": "half",
}


def _view(obj: Buffer | None, arg: str, *, writable: bool) -> memoryview:
    """A flat unsigned-byte view of ``obj``, rejecting what the compiled twin rejects."""
    if obj is None:
        raise TypeError(f"Argument '{arg}' must not be None")
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(obj).__name__}'") from None
    if writable and mv.readonly:
        mv.release()
        if isinstance(obj, memoryview):
            raise BufferError("memoryview: underlying buffer is not writable")
        raise BufferError("Object is not writable.")
    if not mv.c_contiguous:
        mv.release()
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    if mv.ndim != 1:
        ndim = mv.ndim
        mv.release()
        raise ValueError(f"Buffer has wrong number of dimensions (expected 1, got {ndim})")
    fmt = mv.format.lstrip("@=<>!")
    if fmt not in _BYTE_FORMATS:
        mv.release()
        const = "" if writable else "const "
        got = _C_TYPES.get(fmt, fmt)
        raise ValueError(f"Buffer dtype mismatch, expected '{const}unsigned char' but got '{got}'")
    if fmt == "B":
        return mv
    with mv:
        return mv.cast("B")


def _span(func: str, arg: str, size: int, off: SupportsIndex, n: SupportsIndex) -> tuple[int, int]:
    """Check that [off, off + n) lies inside a buffer of ``size`` bytes; return (off, n)."""
    o = _index(off)
    k = _index(n)
    if o < 0:
        raise ValueError(f"{func}: {arg} offset {o} is negative")
    if k < 0:
        raise ValueError(f"{func}: length {k} is negative")
    if o + k > size:
        raise ValueError(
            f"{func}: {arg} range [{o}, {o + k}) is out of bounds for a buffer of {size} bytes"
        )
    return o, k


def zero_range(buf: Buffer, off: int, n: int) -> None:
    """Set the ``n`` bytes of ``buf`` starting at ``off`` to zero."""
    with _view(buf, "buf", writable=True) as mv:
        o, k = _span("zero_range", "buf", len(mv), off, n)
        end = o + k
        while o < end:
            step = min(_CHUNK, end - o)
            mv[o : o + step] = _ZEROS[:step] if step < _CHUNK else _ZEROS
            o += step


def copy_range(dst: Buffer, doff: int, src: Buffer, soff: int, n: int) -> None:
    """Copy ``n`` bytes from ``src[soff:]`` to ``dst[doff:]``; the ranges may overlap (memmove)."""
    with _view(dst, "dst", writable=True) as d, _view(src, "src", writable=False) as s:
        do, k = _span("copy_range", "dst", len(d), doff, n)
        so, k = _span("copy_range", "src", len(s), soff, n)
        if k:
            # memoryview slice assignment between contiguous views is a single memmove,
            # so overlapping ranges of one buffer are copied correctly.
            d[do : do + k] = s[so : so + k]


def _chunks_equal(a: memoryview, ao: int, b: memoryview, bo: int, k: int) -> bool:
    # bytes == bytes is a memcmp; memoryview == memoryview unpacks item by item.
    return a[ao : ao + k].tobytes() == b[bo : bo + k].tobytes()


def range_equal(a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> bool:
    """Whether ``a[aoff:aoff+n]`` and ``b[boff:boff+n]`` hold the same bytes."""
    with _view(a, "a", writable=False) as va, _view(b, "b", writable=False) as vb:
        ao, k = _span("range_equal", "a", len(va), aoff, n)
        bo, k = _span("range_equal", "b", len(vb), boff, n)
        for i in range(0, k, _CHUNK):
            if not _chunks_equal(va, ao + i, vb, bo + i, min(_CHUNK, k - i)):
                return False
        return True


def first_diff(a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> int:
    """Offset ``i`` (relative to the ranges' starts) of the first ``a[aoff+i] != b[boff+i]``, or -1."""
    with _view(a, "a", writable=False) as va, _view(b, "b", writable=False) as vb:
        ao, k = _span("first_diff", "a", len(va), aoff, n)
        bo, k = _span("first_diff", "b", len(vb), boff, n)
        for i in range(0, k, _CHUNK):
            step = min(_CHUNK, k - i)
            if _chunks_equal(va, ao + i, vb, bo + i, step):
                continue
            # The first difference is in [lo, lo + width): halve the window until one
            # byte is left, keeping the half that still differs.
            lo, width = i, step
            while width > 1:
                half = width // 2
                if _chunks_equal(va, ao + lo, vb, bo + lo, half):
                    lo += half
                    width -= half
                else:
                    width = half
            return lo
        return -1


_FEW = 16        # first_equal looks at this many bytes one by one before going block-wise


def first_equal(a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> int:
    """Offset ``i`` (relative to the ranges' starts) of the first ``a[aoff+i] == b[boff+i]``, or -1.

    Block-wise: XOR the two blocks as integers; the lowest zero byte of the XOR (the
    has-zero-byte bit trick) is the first equal byte.
    """
    with _view(a, "a", writable=False) as va, _view(b, "b", writable=False) as vb:
        ao, k = _span("first_equal", "a", len(va), aoff, n)
        bo, k = _span("first_equal", "b", len(vb), boff, n)
        for j in range(min(k, _FEW)):
            if va[ao + j] == vb[bo + j]:
                return j
        i, block = min(k, _FEW), 256
        while i < k:
            step = min(block, k - i)
            block = 4096
            x = int.from_bytes(va[ao + i:ao + i + step], "little") ^ \
                int.from_bytes(vb[bo + i:bo + i + step], "little")
            ones = int.from_bytes(b"\x01" * step, "little")
            t = (x - ones) & ~x & (ones << 7)
            if t:
                return i + ((t & -t).bit_length() - 1) // 8
            i += step
        return -1


def diff_runs(a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> list[tuple[int, int]]:
    """The maximal runs ``(offset, length)`` (offsets relative to the ranges' starts) where
    ``a[aoff:aoff+n]`` and ``b[boff:boff+n]`` differ, ascending: :func:`first_diff` and
    :func:`first_equal` in turn."""
    with _view(a, "a", writable=False) as va, _view(b, "b", writable=False) as vb:
        ao, k = _span("diff_runs", "a", len(va), aoff, n)
        bo, k = _span("diff_runs", "b", len(vb), boff, n)
        runs: list[tuple[int, int]] = []
        pos = 0
        while pos < k:
            d = first_diff(va, ao + pos, vb, bo + pos, k - pos)
            if d < 0:
                break
            first = pos + d
            e = first_equal(va, ao + first + 1, vb, bo + first + 1, k - first - 1)
            end = k if e < 0 else first + 1 + e
            runs.append((first, end - first))
            pos = end
        return runs
