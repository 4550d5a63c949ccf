# The compiled build's view of mmzone.py: struct zone as an extension type with typed fields.
cdef class Zone:
    cdef public Py_ssize_t idx
    cdef public str name
    cdef public Py_ssize_t zone_start_pfn, spanned_pages, present_pages, managed_pages, cma_pages
    cdef public list free_list
    cdef public list nr_free
    cdef public Py_ssize_t nr_free_pages, nr_free_cma, nr_free_highatomic, nr_free_pages_blocks
    cdef public list _watermark
    cdef public Py_ssize_t watermark_boost
    cdef public list lowmem_reserve
    cdef public Py_ssize_t nr_reserved_highatomic, nr_isolate_pageblock, numa_hit, pgalloc
    cdef public Py_ssize_t nr_inactive_anon
    cdef public bint kswapd_wake
