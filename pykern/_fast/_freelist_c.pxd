# Declarations of _freelist_c.pyx for the compiled allocator core (page_alloc.pxd cimports
# FreeList so that its methods are C calls there).
from libc.stdint cimport int16_t, int32_t

cdef class ZoneLinks:
    cdef Py_ssize_t base, n
    cdef int32_t *next
    cdef int32_t *prev
    cdef int16_t *owner

cdef class FreeList:
    cdef ZoneLinks links
    cdef int16_t ident
    cdef int32_t head, tail
    cdef Py_ssize_t count, version
    cdef Py_ssize_t _index(self, object key) except -2
    cdef void _link_tail(self, int32_t i) noexcept
    cdef void _link_head(self, int32_t i) noexcept
    cdef void _unlink(self, int32_t i) noexcept
    cpdef move_to_end(self, object key, bint last=*)
    cpdef popitem(self, bint last=*)
