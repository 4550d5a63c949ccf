# The compiled build's view of page_alloc.py (Cython pure-Python mode): PageAlloc as an
# extension type, the allocator's kernel functions as C-callable cpdef functions, and C types
# for their locals and for the constants they test.  The .py file stays the one source.
cimport cython
from pykern.mm.mmzone cimport Zone
from pykern.mm.page cimport MemMap, Page
from pykern._fast._freelist_c cimport FreeList

cdef Py_ssize_t MAX_PAGE_ORDER, NR_PAGE_ORDERS, pageblock_order, pageblock_nr_pages
cdef Py_ssize_t PAGE_ALLOC_COSTLY_ORDER, MAX_NR_ZONES
cdef Py_ssize_t MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_PCPTYPES
cdef Py_ssize_t MIGRATE_HIGHATOMIC, MIGRATE_CMA, MIGRATE_ISOLATE, MIGRATE_TYPES
cdef Py_ssize_t ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE
cdef Py_ssize_t WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO
cdef Py_ssize_t PG_buddy, PG_head, PG_valid, PG_reserved, PG_lru, PG_movable_ops
cdef Py_ssize_t PB_migrate_isolate, PB_migrate_mask, NO_ALLOC, _FREE_CHECK
cdef Py_ssize_t ALLOC_CMA, ALLOC_CPUSET, ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_MIN_RESERVE
cdef Py_ssize_t ALLOC_NO_WATERMARKS, ALLOC_NOFRAGMENT, ALLOC_NON_BLOCK, ALLOC_OOM
cdef Py_ssize_t ALLOC_RESERVES, ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN
cdef Py_ssize_t FPI_NONE, FPI_TO_TAIL
cdef Py_ssize_t __GFP_COMP, __GFP_KSWAPD_RECLAIM, __GFP_MOVABLE, __GFP_ZERO, __GFP_NOWARN

cdef class PageAlloc:
    cdef dict __dict__
    cdef public MemMap mem_map
    cdef public list zones
    cdef public object log, arch, clear_pages
    cdef public bint init_on_alloc, init_on_free
    cdef public object min_free_kbytes, user_min_free_kbytes, watermark_scale_factor
    cdef public object watermark_boost_factor, percpu_pagelist_high_fraction
    cdef public object lowmem_reserve_ratio, totalreserve_pages, totalcma_pages
    cdef public Py_ssize_t defrag_mode
    cdef public bint page_group_by_mobility_disabled, memalloc_pin
    cdef public dict vm_events
    cdef public Py_ssize_t pgfree
    cdef public list zonelists, zone_spans
    cdef public dict gfp_params
    cdef public object fail_page_alloc

# pageblock flags
@cython.locals(mem=MemMap)
cpdef Py_ssize_t __get_pfnblock_flags_mask(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t mask)
@cython.locals(mem=MemMap, bits=Py_ssize_t)
cpdef Py_ssize_t get_pfnblock_migratetype(PageAlloc mm, Py_ssize_t pfn)
@cython.locals(mem=MemMap, i=Py_ssize_t, flags=bytearray)
cpdef set_pageblock_migratetype(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t mt)
@cython.locals(mem=MemMap, i=Py_ssize_t, flags=bytearray)
cpdef toggle_pageblock_isolate(PageAlloc mm, Py_ssize_t pfn, bint isolate)

# free lists
cpdef account_freepages(Zone zone, Py_ssize_t nr_pages, Py_ssize_t mt)
@cython.locals(mem=MemMap, i=Py_ssize_t, fl=FreeList)
cpdef __add_to_free_list(PageAlloc mm, Py_ssize_t pfn, Zone zone, Py_ssize_t order,
                         Py_ssize_t mt, bint tail)
@cython.locals(mem=MemMap, i=Py_ssize_t)
cpdef __del_page_from_free_list(PageAlloc mm, Py_ssize_t pfn, Zone zone, Py_ssize_t order,
                                Py_ssize_t mt)
cpdef del_page_from_free_list(PageAlloc mm, Py_ssize_t pfn, Zone zone, Py_ssize_t order,
                              Py_ssize_t mt)
@cython.locals(mem=MemMap, nr=Py_ssize_t)
cpdef move_to_free_list(PageAlloc mm, Py_ssize_t pfn, Zone zone, Py_ssize_t order,
                        Py_ssize_t old_mt, Py_ssize_t new_mt)
@cython.locals(mem=MemMap, flags=bytearray, orders=bytearray, freelist_mt=bytearray,
               base=Py_ssize_t, free_list=list, nr_free=list, nr_added=Py_ssize_t,
               size=Py_ssize_t, p=Py_ssize_t, i=Py_ssize_t, fl=FreeList)
cpdef Py_ssize_t expand(PageAlloc mm, Zone zone, Py_ssize_t pfn, Py_ssize_t low,
                        Py_ssize_t high, Py_ssize_t mt)
@cython.locals(nr=Py_ssize_t)
cpdef page_del_and_expand(PageAlloc mm, Zone zone, Py_ssize_t pfn, Py_ssize_t low,
                          Py_ssize_t high, Py_ssize_t mt)
@cython.locals(buddy=Py_ssize_t, mem=MemMap, i=Py_ssize_t)
cpdef find_buddy_page_pfn(PageAlloc mm, Zone zone, Py_ssize_t pfn, Py_ssize_t order)

# freeing
@cython.locals(mem=MemMap, flags=bytearray, orders=bytearray, base=Py_ssize_t,
               start=Py_ssize_t, end=Py_ssize_t, buddy_pfn=Py_ssize_t, j=Py_ssize_t,
               buddy_mt=Py_ssize_t, list_mt=Py_ssize_t, to_tail=bint)
cpdef __free_one_page(PageAlloc mm, Py_ssize_t pfn, Zone zone, Py_ssize_t order,
                      Py_ssize_t mt, Py_ssize_t fpi)
cpdef bint buddy_merge_likely(PageAlloc mm, Zone zone, Py_ssize_t pfn, Py_ssize_t order)
@cython.locals(end=Py_ssize_t)
cpdef split_large_buddy(PageAlloc mm, Zone zone, Py_ssize_t pfn, Py_ssize_t order,
                        Py_ssize_t fpi)
cpdef free_one_page(PageAlloc mm, Zone zone, Py_ssize_t pfn, Py_ssize_t order,
                    Py_ssize_t fpi=*)
@cython.locals(mem=MemMap, i=Py_ssize_t, n=Py_ssize_t)
cpdef free_pages_prepare(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t order)
@cython.locals(mem=MemMap, i=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, bits=Py_ssize_t,
               mt=Py_ssize_t, zone=Zone)
cpdef free_frozen_pages(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t order)
@cython.locals(mem=MemMap, i=Py_ssize_t, head=Py_ssize_t, pfn=object)
cpdef __free_pages(PageAlloc mm, object page, object order=*)

# allocation
@cython.locals(free_list=list, k=Py_ssize_t, pfn=Py_ssize_t, mem=MemMap, i=Py_ssize_t,
               nr=Py_ssize_t, fl=FreeList)
cpdef object __rmqueue_smallest(PageAlloc mm, Zone zone, Py_ssize_t order, Py_ssize_t mt)
cpdef object __rmqueue_cma_fallback(PageAlloc mm, Zone zone, Py_ssize_t order)
cpdef object __rmqueue(PageAlloc mm, Zone zone, Py_ssize_t order, Py_ssize_t mt,
                       Py_ssize_t alloc_flags)
cpdef object rmqueue_buddy(PageAlloc mm, Zone zone, Py_ssize_t order, Py_ssize_t alloc_flags,
                           Py_ssize_t mt)
cpdef object rmqueue(PageAlloc mm, Zone zone, Py_ssize_t order, Py_ssize_t alloc_flags,
                     Py_ssize_t mt)
@cython.locals(min_=Py_ssize_t, o=Py_ssize_t, lists=list)
cpdef bint __zone_watermark_ok(Zone z, Py_ssize_t order, Py_ssize_t mark,
                               Py_ssize_t highest_zoneidx, Py_ssize_t alloc_flags,
                               Py_ssize_t free_pages)
cpdef bint zone_watermark_ok(Zone z, Py_ssize_t order, Py_ssize_t mark,
                             Py_ssize_t highest_zoneidx, Py_ssize_t alloc_flags)
cpdef bint zone_watermark_fast(Zone z, Py_ssize_t order, Py_ssize_t mark,
                               Py_ssize_t highest_zoneidx, Py_ssize_t alloc_flags)
@cython.locals(zone=Zone, mark=Py_ssize_t)
cpdef object get_page_from_freelist(PageAlloc mm, Py_ssize_t gfp, Py_ssize_t order,
                                    Py_ssize_t alloc_flags, Py_ssize_t highest, Py_ssize_t mt)
cpdef post_alloc_hook(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t nr, Py_ssize_t gfp)
@cython.locals(mem=MemMap, i=Py_ssize_t)
cpdef prep_new_page(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t order, Py_ssize_t gfp)
@cython.locals(params=dict, highest=Py_ssize_t, mt=Py_ssize_t, alloc_flags=Py_ssize_t,
               zonelist=list)
cpdef object __alloc_frozen_pages_noprof(PageAlloc mm, object gfp, object order)

# lookup, isolation, moving free pages between lists, claiming and stealing
@cython.locals(start=Py_ssize_t, end=Py_ssize_t)
cpdef Zone page_zone(PageAlloc mm, Py_ssize_t pfn)
@cython.locals(mem=MemMap, flags=bytearray, orders=bytearray, base=Py_ssize_t,
               k=Py_ssize_t, head=Py_ssize_t, i=Py_ssize_t)
cpdef bint is_free_buddy_page(PageAlloc mm, Py_ssize_t pfn)
@cython.locals(p=Py_ssize_t)
cpdef change_pageblock_range(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t order, Py_ssize_t mt)
@cython.locals(start=Py_ssize_t, end=Py_ssize_t, free=Py_ssize_t, movable=Py_ssize_t,
               mem=MemMap, flags=bytearray, orders=bytearray, base=Py_ssize_t,
               p=Py_ssize_t, f=Py_ssize_t, n=Py_ssize_t)
cpdef object prep_move_freepages_block(PageAlloc mm, Zone zone, Py_ssize_t pfn, bint count)
@cython.locals(mem=MemMap, flags=bytearray, orders=bytearray, base=Py_ssize_t,
               p=Py_ssize_t, end=Py_ssize_t, moved=Py_ssize_t, order=Py_ssize_t)
cpdef Py_ssize_t __move_freepages_block(PageAlloc mm, Zone zone, Py_ssize_t start,
                                        Py_ssize_t old_mt, Py_ssize_t new_mt)
cpdef Py_ssize_t move_freepages_block(PageAlloc mm, Zone zone, Py_ssize_t pfn,
                                      Py_ssize_t old_mt, Py_ssize_t new_mt)
@cython.locals(mem=MemMap, flags=bytearray, orders=bytearray, base=Py_ssize_t,
               order=Py_ssize_t, pfn=Py_ssize_t)
cpdef Py_ssize_t find_large_buddy(PageAlloc mm, Py_ssize_t start_pfn)
@cython.locals(start=Py_ssize_t, mem=MemMap, head=Py_ssize_t, si=Py_ssize_t,
               order=Py_ssize_t, real=Py_ssize_t, old=Py_ssize_t, new=Py_ssize_t)
cpdef bint __move_freepages_block_isolate(PageAlloc mm, Zone zone, Py_ssize_t pfn,
                                          bint isolate)
cpdef bint pageblock_isolate_and_move_free_pages(PageAlloc mm, Zone zone, Py_ssize_t pfn)
cpdef bint pageblock_unisolate_and_move_free_pages(PageAlloc mm, Zone zone, Py_ssize_t pfn)
cpdef __putback_isolated_page(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t order, Py_ssize_t mt)
@cython.locals(mem=MemMap, i=Py_ssize_t, n=Py_ssize_t, zone=Zone)
cpdef __free_pages_core(PageAlloc mm, Py_ssize_t pfn, Py_ssize_t order)
cpdef bint should_try_claim_block(PageAlloc mm, Py_ssize_t order, Py_ssize_t start_mt)
@cython.locals(fallback_mt=Py_ssize_t)
cpdef Py_ssize_t find_suitable_fallback(PageAlloc mm, Zone zone, Py_ssize_t order,
                                        Py_ssize_t mt, bint claimable)
@cython.locals(start=Py_ssize_t, free=Py_ssize_t, movable=Py_ssize_t, alike=Py_ssize_t,
               nr_added=Py_ssize_t)
cpdef object try_to_claim_block(PageAlloc mm, Zone zone, Py_ssize_t pfn,
                                Py_ssize_t current_order, Py_ssize_t order,
                                Py_ssize_t start_mt, Py_ssize_t block_mt,
                                Py_ssize_t alloc_flags)
@cython.locals(min_order=Py_ssize_t, current_order=Py_ssize_t, fallback_mt=Py_ssize_t)
cpdef object __rmqueue_claim(PageAlloc mm, Zone zone, Py_ssize_t order, Py_ssize_t start_mt,
                             Py_ssize_t alloc_flags)
@cython.locals(current_order=Py_ssize_t, fallback_mt=Py_ssize_t)
cpdef object __rmqueue_steal(PageAlloc mm, Zone zone, Py_ssize_t order, Py_ssize_t start_mt)
