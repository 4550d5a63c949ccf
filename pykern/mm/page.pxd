# The compiled build's view of page.py: the memmap as an extension type with typed fields.
cdef class MemMap:
    cdef public Py_ssize_t base_pfn, end_pfn
    cdef public bytearray flags, order, alloc_order, freelist_mt, pageblock_flags
    cdef public object refcount, _mapcount, _pincount

cdef class Page:
    cdef public object pfn
    cdef public object _mm
