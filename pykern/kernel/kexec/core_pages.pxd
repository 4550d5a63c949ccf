# The compiled build's view of core_pages.py (Cython's pure-Python mode): C types for the
# page loop's locals and a C call into the allocator.  The .py file stays the one source.
cimport cython
from pykern.mm.page_alloc cimport PageAlloc, __alloc_frozen_pages_noprof, __free_pages

cdef Py_ssize_t PG_reserved, _IND_SOURCE, _HEAD

@cython.locals(pfn=Py_ssize_t, addr=Py_ssize_t, k=Py_ssize_t, at=Py_ssize_t, old=Py_ssize_t,
               seg_mem=Py_ssize_t, first=Py_ssize_t, j=Py_ssize_t, copies=list)
cpdef tuple kimage_load_normal_pages(PageAlloc mm, Py_ssize_t gfp, Py_ssize_t maddr,
                                     Py_ssize_t end, Py_ssize_t entry, Py_ssize_t last,
                                     Py_ssize_t delta, object ram, object pack_two,
                                     bytearray flags, Py_ssize_t base, Py_ssize_t limit_pfn,
                                     list firsts, list reach, dict dest_pages,
                                     dict dest_index, list src, list unusable_pages,
                                     object owed, object offset)

@cython.locals(count=Py_ssize_t, pfn=Py_ssize_t, addr=Py_ssize_t, k=Py_ssize_t, j=Py_ssize_t,
               extra=list)
cpdef object kimage_take_control_block(PageAlloc mm, Py_ssize_t gfp, Py_ssize_t order,
                                       Py_ssize_t limit_pfn, bytearray flags, Py_ssize_t base,
                                       list firsts, list reach)

@cython.locals(n=Py_ssize_t, k=Py_ssize_t, e=Py_ssize_t, to=Py_ssize_t, frm=Py_ssize_t,
               size=Py_ssize_t)
cpdef copy_highpages(object ram, list copies, object offset, object copy_range,
                     object prefault_write)
