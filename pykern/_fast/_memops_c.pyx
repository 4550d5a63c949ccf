# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: autotestdict=False
# (autotestdict=False: no doctest `__test__` dict, which would be missing from the stub)
"""Compiled byte-range primitives over the emulated RAM buffer.

The twin of :mod:`pykern._fast._memops_py`: same functions, same results, same errors.
Buffers are any C-contiguous, one-dimensional, byte-sized buffer (``bytearray``,
``mmap.mmap``, ``memoryview``, and ``bytes`` where only read access is needed).
All bounds are checked here, with the GIL held, before the C routine runs without it.
"""

from libc.string cimport memcmp, memmove, memset
from operator import index as _index

# first_diff compares this many bytes with memcmp before looking at single bytes.
cdef Py_ssize_t _CHUNK = 4096


cdef (Py_ssize_t, Py_ssize_t) _span(str func, str arg, Py_ssize_t size, object off, object n) except *:
    """Check that [off, off + n) lies inside a buffer of ``size`` bytes; return (off, n)."""
    off = _index(off)
    n = _index(n)
    if off < 0:
        raise ValueError(f"{func}: {arg} offset {off} is negative")
    if n < 0:
        raise ValueError(f"{func}: length {n} is negative")
    if off + n > size:
        raise ValueError(
            f"{func}: {arg} range [{off}, {off + n}) is out of bounds for a buffer of {size} bytes"
        )
    return off, n


cdef Py_ssize_t _first_diff(const unsigned char *a, const unsigned char *b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0, j, step
    while i < n:
        step = n - i
        if step > _CHUNK:
            step = _CHUNK
        if memcmp(a + i, b + i, <size_t>step) != 0:
            for j in range(i, i + step):
                if a[j] != b[j]:
                    return j
        i += step
    return -1


def zero_range(unsigned char[::1] buf not None, off, n):
    """Set the ``n`` bytes of ``buf`` starting at ``off`` to zero."""
    cdef Py_ssize_t o, k
    o, k = _span("zero_range", "buf", buf.shape[0], off, n)
    if k == 0:
        return
    cdef unsigned char *p = &buf[o]
    with nogil:
        memset(p, 0, <size_t>k)


def copy_range(unsigned char[::1] dst not None, doff, const unsigned char[::1] src not None, soff, n):
    """Copy ``n`` bytes from ``src[soff:]`` to ``dst[doff:]``; the ranges may overlap (memmove)."""
    cdef Py_ssize_t do, so, k
    do, k = _span("copy_range", "dst", dst.shape[0], doff, n)
    so, k = _span("copy_range", "src", src.shape[0], soff, n)
    if k == 0:
        return
    cdef unsigned char *d = &dst[do]
    cdef const unsigned char *s = &src[so]
    with nogil:
        memmove(d, s, <size_t>k)


def range_equal(const unsigned char[::1] a not None, aoff, const unsigned char[::1] b not None, boff, n):
    """Whether ``a[aoff:aoff+n]`` and ``b[boff:boff+n]`` hold the same bytes."""
    cdef Py_ssize_t ao, bo, k
    cdef int r
    ao, k = _span("range_equal", "a", a.shape[0], aoff, n)
    bo, k = _span("range_equal", "b", b.shape[0], boff, n)
    if k == 0:
        return True
    cdef const unsigned char *pa = &a[ao]
    cdef const unsigned char *pb = &b[bo]
    with nogil:
        r = memcmp(pa, pb, <size_t>k)
    return r == 0


def first_diff(const unsigned char[::1] a not None, aoff, const unsigned char[::1] b not None, boff, n):
    """Offset ``i`` (relative to the ranges' starts) of the first ``a[aoff+i] != b[boff+i]``, or -1."""
    cdef Py_ssize_t ao, bo, k, r
    ao, k = _span("first_diff", "a", a.shape[0], aoff, n)
    bo, k = _span("first_diff", "b", b.shape[0], boff, n)
    if k == 0:
        return -1
    cdef const unsigned char *pa = &a[ao]
    cdef const unsigned char *pb = &b[bo]
    with nogil:
        r = _first_diff(pa, pb, k)
    return r


def first_equal(const unsigned char[::1] a not None, aoff, const unsigned char[::1] b not None, boff, n):
    """Offset ``i`` (relative to the ranges' starts) of the first ``a[aoff+i] == b[boff+i]``, or -1."""
    cdef Py_ssize_t ao, bo, k, j, r = -1
    ao, k = _span("first_equal", "a", a.shape[0], aoff, n)
    bo, k = _span("first_equal", "b", b.shape[0], boff, n)
    cdef const unsigned char *pa
    cdef const unsigned char *pb
    if k == 0:
        return -1
    pa = &a[ao]
    pb = &b[bo]
    with nogil:
        for j in range(k):
            if pa[j] == pb[j]:
                r = j
                break
    return r


def diff_runs(const unsigned char[::1] a not None, aoff, const unsigned char[::1] b not None, boff, n):
    """The maximal runs ``(offset, length)`` (offsets relative to the ranges' starts) where
    ``a[aoff:aoff+n]`` and ``b[boff:boff+n]`` differ, ascending."""
    cdef Py_ssize_t ao, bo, k, pos = 0, first, end, d
    ao, k = _span("diff_runs", "a", a.shape[0], aoff, n)
    bo, k = _span("diff_runs", "b", b.shape[0], boff, n)
    runs = []
    if k == 0:
        return runs
    cdef const unsigned char *pa = &a[ao]
    cdef const unsigned char *pb = &b[bo]
    while pos < k:
        with nogil:
            d = _first_diff(pa + pos, pb + pos, k - pos)
        if d < 0:
            break
        first = pos + d
        end = first + 1
        while end < k and pa[end] != pb[end]:
            end += 1
        runs.append((first, end - first))
        pos = end
    return runs
