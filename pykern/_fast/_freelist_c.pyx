# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: autotestdict=False, auto_pickle=False
"""Compiled twin of :mod:`pykern._fast._freelist_py`: the buddy free lists of one zone.

The pure-Python build keeps each free list (one per order and migratetype) as an
``OrderedDict`` of first pfns.  Here the lists are threaded through per-page link arrays
owned by the zone, the way the kernel threads ``page->buddy_list``: ``next``/``prev`` hold
neighbour indexes (-1 at the ends) and ``owner`` says which list a page heads (-1: none).
A :class:`FreeList` answers the part of the ``OrderedDict`` interface the allocator uses,
with the same results and the same order: ``fl[pfn] = None`` (link at the tail; a pfn
already on the list stays where it is), ``del fl[pfn]``, ``move_to_end(pfn, last)``,
``popitem(last)``, ``pfn in fl``, ``len``, truth and iteration (head first).
"""

from collections import OrderedDict

cimport cython

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int16_t, int32_t
from libc.string cimport memset


cdef class ZoneLinks:
    """The link arrays of one zone's span (10 bytes a page)."""

    def __cinit__(self, Py_ssize_t base, Py_ssize_t n):
        if n < 0 or n >= 0x7FFFFFFF:
            raise ValueError(f"a zone of {n} pages cannot be linked")
        self.base = base
        self.n = n
        cdef Py_ssize_t size = n if n > 0 else 1
        self.next = <int32_t *>PyMem_Malloc(size * sizeof(int32_t))
        self.prev = <int32_t *>PyMem_Malloc(size * sizeof(int32_t))
        self.owner = <int16_t *>PyMem_Malloc(size * sizeof(int16_t))
        if self.next == NULL or self.prev == NULL or self.owner == NULL:
            raise MemoryError()
        memset(self.owner, 0xFF, size * sizeof(int16_t))     # -1: on no list

    def __dealloc__(self):
        PyMem_Free(self.next)
        PyMem_Free(self.prev)
        PyMem_Free(self.owner)

    def nbytes(self) -> int:
        return self.n * (2 * sizeof(int32_t) + sizeof(int16_t))


cdef class _FreeListIter:
    """Head-first iteration; like an OrderedDict's, it fails if the list changes."""

    cdef FreeList fl
    cdef int32_t cur
    cdef Py_ssize_t version

    def __iter__(self):
        return self

    def __next__(self):
        cdef FreeList fl = self.fl
        if fl.version != self.version:
            raise RuntimeError("free list mutated during iteration")
        if self.cur < 0:
            raise StopIteration
        cdef int32_t i = self.cur
        self.cur = fl.links.next[i]
        return fl.links.base + i


@cython.no_gc
@cython.freelist(1024)
cdef class FreeList:
    """One free list (order, migratetype) of a zone: first pfns of free blocks, head first."""

    def __cinit__(self):
        self.head = -1
        self.tail = -1
        self.count = 0
        self.version = 0

    def __init__(self, ZoneLinks links, int ident):
        self.links = links
        self.ident = <int16_t>ident

    cdef Py_ssize_t _index(self, object key) except -2:
        """The link index of pfn ``key`` if it heads a block on this list, else -1."""
        cdef Py_ssize_t i
        if type(key) is not int:
            return -1
        try:
            i = <Py_ssize_t>key - self.links.base
        except OverflowError:
            return -1
        if i < 0 or i >= self.links.n or self.links.owner[i] != self.ident:
            return -1
        return i

    cdef void _link_tail(self, int32_t i) noexcept:
        cdef ZoneLinks L = self.links
        L.owner[i] = self.ident
        L.next[i] = -1
        L.prev[i] = self.tail
        if self.tail >= 0:
            L.next[self.tail] = i
        else:
            self.head = i
        self.tail = i
        self.count += 1
        self.version += 1

    cdef void _link_head(self, int32_t i) noexcept:
        cdef ZoneLinks L = self.links
        L.owner[i] = self.ident
        L.prev[i] = -1
        L.next[i] = self.head
        if self.head >= 0:
            L.prev[self.head] = i
        else:
            self.tail = i
        self.head = i
        self.count += 1
        self.version += 1

    cdef void _unlink(self, int32_t i) noexcept:
        cdef ZoneLinks L = self.links
        cdef int32_t p = L.prev[i], n = L.next[i]
        if p >= 0:
            L.next[p] = n
        else:
            self.head = n
        if n >= 0:
            L.prev[n] = p
        else:
            self.tail = p
        L.owner[i] = -1
        self.count -= 1
        self.version += 1

    def __len__(self):
        return self.count

    def __contains__(self, key):
        return self._index(key) >= 0

    def __iter__(self):
        cdef _FreeListIter it = _FreeListIter.__new__(_FreeListIter)
        it.fl = self
        it.cur = self.head
        it.version = self.version
        return it

    def __getitem__(self, key):
        if self._index(key) < 0:
            raise KeyError(key)
        return None

    def __setitem__(self, key, value):
        if value is not None:
            raise TypeError("a free list maps pfns to None")
        if type(key) is not int:
            raise TypeError(f"pfn {key!r} is not an int")
        cdef Py_ssize_t i = <Py_ssize_t>key - self.links.base
        if i < 0 or i >= self.links.n:
            raise ValueError(f"pfn {key:#x} lies outside the zone's span")
        cdef int16_t owner = self.links.owner[i]
        if owner == self.ident:
            return                             # already on the list: it keeps its place
        if owner >= 0:
            raise ValueError(f"pfn {key:#x} is already on another free list of the zone")
        self._link_tail(<int32_t>i)

    def __delitem__(self, key):
        cdef Py_ssize_t i = self._index(key)
        if i < 0:
            raise KeyError(key)
        self._unlink(<int32_t>i)

    cpdef move_to_end(self, object key, bint last=True):
        """Move ``key`` to the tail (``last``) or the head; KeyError if it is not here."""
        cdef Py_ssize_t i = self._index(key)
        if i < 0:
            raise KeyError(key)
        if (self.tail if last else self.head) == i:
            return
        self._unlink(<int32_t>i)
        if last:
            self._link_tail(<int32_t>i)
        else:
            self._link_head(<int32_t>i)

    cpdef popitem(self, bint last=True):
        """Unlink the tail (``last``) or the head; ``(pfn, None)``."""
        cdef int32_t i = self.tail if last else self.head
        if i < 0:
            raise KeyError("dictionary is empty")
        self._unlink(i)
        return (self.links.base + i, None)

    def __repr__(self):
        return f"FreeList({list(self)!r})"

    def __reduce__(self):
        # A lone free list pickles as what the pure build holds; Zone rebuilds its own.
        return OrderedDict, ([(pfn, None) for pfn in self],)


def new_free_lists(Py_ssize_t start_pfn, Py_ssize_t end_pfn, int nr_orders, int nr_types):
    """``free_list[order][mt]`` for a zone spanning ``[start_pfn, end_pfn)``, all empty."""
    if nr_orders * nr_types >= 0x7FFF:
        raise ValueError("too many free lists for one zone")
    cdef ZoneLinks links = ZoneLinks(start_pfn, max(end_pfn - start_pfn, 0))
    cdef list out = [], lists
    cdef FreeList fl
    cdef int order, mt
    for order in range(nr_orders):
        lists = []
        for mt in range(nr_types):
            fl = FreeList.__new__(FreeList)     # FreeList(links, ident) without the call
            fl.links = links
            fl.ident = <int16_t>(order * nr_types + mt)
            lists.append(fl)
        out.append(lists)
    return out


def links_nbytes(list free_list):
    """Bytes of the link arrays behind a zone's ``free_list`` (0 for none)."""
    for lists in free_list:
        for fl in lists:
            return (<FreeList?>fl).links.nbytes()
    return 0
