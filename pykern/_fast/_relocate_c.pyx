# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: autotestdict=False
"""Compiled twin of :mod:`pykern._fast._relocate_py`: the kexec relocation walk.

Same arguments, same results; the copy loop runs without the GIL and copies
each page with ``memcpy`` (sources never overlap destinations: rule K11).
"""

from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
from posix.types cimport off_t
from posix.unistd cimport pread

cdef enum:
    IND_DESTINATION = 0x1
    IND_INDIRECTION = 0x2
    IND_DONE = 0x4
    IND_SOURCE = 0x8

cdef enum:
    C_DONE = 0
    C_MORE = 1
    C_BAD_WORD = 2
    C_BAD_SOURCE = 3
    C_BAD_DEST = 4
    C_LOOP = 5

WALK_DONE = C_DONE
WALK_MORE = C_MORE
WALK_BAD_WORD = C_BAD_WORD
WALK_BAD_SOURCE = C_BAD_SOURCE
WALK_BAD_DEST = C_BAD_DEST
WALK_LOOP = C_LOOP

cdef uint64_t PAGE_MASK = ~(<uint64_t>0xFFF)


cdef inline int64_t _offset(const int64_t[::1] runs, uint64_t addr, uint64_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef uint64_t base, end
    for k in range(0, runs.shape[0], 3):
        base = <uint64_t>runs[k]
        end = <uint64_t>runs[k + 1]
        if base <= addr and addr + n <= end:
            return runs[k + 2] + <int64_t>(addr - base)
    return -1


cdef enum:
    MARK_ZERO = 0
    MARK_WRITTEN = 1
    MARK_UNKNOWN = 2
    DEST_WINDOW = 512           # pagemap entries read at a time: for the destination cursor,
    SOURCE_WINDOW = 64          # which moves page by page; for a source, which may be anywhere


cdef unsigned char _mark(unsigned char *marks, Py_ssize_t nmarks, int fd, uint64_t first,
                         Py_ssize_t page, Py_ssize_t window) noexcept nogil:
    """The mark of buffer page ``page``, its pagemap window (``window`` <= DEST_WINDOW
    entries) read if not known yet."""
    cdef uint64_t entries[DEST_WINDOW]
    cdef Py_ssize_t lo, hi, k, got
    if page >= nmarks:
        return MARK_WRITTEN
    if marks[page] == MARK_UNKNOWN:
        lo = page - page % window
        hi = lo + window if lo + window <= nmarks else nmarks
        got = pread(fd, entries, 8 * (hi - lo), <off_t>(8 * (first + lo)))
        for k in range(lo, hi):
            if marks[k] != MARK_UNKNOWN:
                continue
            if got != 8 * (hi - lo) or entries[k - lo] >> 62:     # present or swapped
                marks[k] = MARK_WRITTEN
            else:
                marks[k] = MARK_ZERO
    return marks[page]


cdef inline bint _in(const int64_t[::1] where, uint64_t addr) noexcept nogil:
    """Whether ``addr`` lies in one of the ``[lo, hi)`` pairs of ``where``."""
    cdef Py_ssize_t k
    for k in range(0, where.shape[0] - 1, 2):
        if <uint64_t>where[k] <= addr < <uint64_t>where[k + 1]:
            return True
    return False


cdef inline bint _unwritten(unsigned char *marks, Py_ssize_t nmarks, int fd, uint64_t first,
                            int64_t off, Py_ssize_t window) noexcept nogil:
    """Whether the 4 KiB at buffer offset ``off`` lie in never-written host pages."""
    return (_mark(marks, nmarks, fd, first, off >> 12, window) == MARK_ZERO and
            _mark(marks, nmarks, fd, first, (off + 4095) >> 12, window) == MARK_ZERO)


def relocate_walk(unsigned char[::1] ram not None, runs_obj, head, loc, dest, max_sources,
                  max_words=-1, zeros=None):
    """See :func:`pykern._fast._relocate_py.relocate_walk`."""
    cdef int64_t[::1] runs
    import array
    runs = array.array("q", runs_obj)
    cdef uint64_t word = 0, c_head = <uint64_t>head, c_dest = <uint64_t>dest
    cdef int state = 0 if loc == -1 else (2 if loc == -2 else 1)  # 0 head, 1 RAM, 2 past head
    cdef uint64_t c_loc = 0 if state != 1 else <uint64_t>loc
    cdef int64_t off, src, dst
    cdef long long done = 0, limit = max_sources, words = 0, word_limit = max_words
    cdef int status = -1
    cdef Py_ssize_t size = ram.shape[0]
    cdef unsigned char *base = &ram[0]
    cdef unsigned char[::1] mview
    cdef unsigned char *marks = NULL
    cdef Py_ssize_t nmarks = 0
    cdef int fd = -1
    cdef uint64_t first = 0
    cdef int64_t[::1] where
    if zeros is not None:
        fd, first, mark_buf, where_obj = zeros
        mview = mark_buf
        nmarks = mview.shape[0]
        where = array.array("q", where_obj)
        if nmarks and where.shape[0] >= 2:
            marks = &mview[0]
    with nogil:
        while True:
            if words == word_limit:
                status = C_LOOP
                word = 0
                break
            words += 1
            if state == 2:
                status = C_DONE
                break
            if state == 0:
                word = c_head
            else:
                off = _offset(runs, c_loc, 8)
                if off < 0 or off + 8 > size:
                    status = C_BAD_WORD
                    word = 0
                    break
                memcpy(&word, base + off, 8)  # little-endian hosts only (x86_64, arm64)
            if word & IND_DESTINATION:
                c_dest = word & PAGE_MASK
            elif word & IND_INDIRECTION:
                c_loc = word & PAGE_MASK
                state = 1
                continue
            elif word & IND_DONE:
                status = C_DONE
                break
            elif word & IND_SOURCE:
                if done >= limit:
                    status = C_MORE
                    break
                src = _offset(runs, word & PAGE_MASK, 4096)
                if src < 0:
                    status = C_BAD_SOURCE
                    break
                dst = _offset(runs, c_dest, 4096)
                if dst < 0:
                    status = C_BAD_DEST
                    break
                if src != dst:
                    if not (marks != NULL and _in(where, c_dest) and
                            _unwritten(marks, nmarks, fd, first, dst, DEST_WINDOW) and
                            _unwritten(marks, nmarks, fd, first, src, SOURCE_WINDOW)):
                        memcpy(base + dst, base + src, 4096)
                        if marks != NULL:
                            if (dst >> 12) < nmarks:
                                marks[dst >> 12] = MARK_WRITTEN
                            if ((dst + 4095) >> 12) < nmarks:
                                marks[(dst + 4095) >> 12] = MARK_WRITTEN
                c_dest += 4096
                done += 1
            if state == 0:
                state = 2
                status = C_DONE
                break
            c_loc += 8
    py_loc = -1 if state == 0 else (-2 if state == 2 else c_loc)
    return status, py_loc, c_dest, done, word
