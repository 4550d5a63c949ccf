"""The mm kernel functions under their kernel names (issue 18): each function modelled from
mm/page_alloc.c, mm/page_isolation.c, mm/migrate.c and mm/cma.c is one module-level
function with the kernel's exact name, leading double underscores included, taking the
state it acts on first; the classes' user-facing methods are those functions; and no class
body in the package names a double-underscore identifier, which Python would mangle."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import ModuleType

import pykern
import pykern.mm.cma as cma_c
import pykern.mm.fail_page_alloc as fail_page_alloc_c
import pykern.mm.memblock as memblock_c
import pykern.mm.migrate as migrate_c
import pykern.mm.mmzone as mmzone_c
import pykern.mm.page as page_c
import pykern.mm.page_alloc as page_alloc_c
import pykern.mm.page_alloc_contig as contig_c
import pykern.mm.page_isolation as isolation_c
import pykern.mm.task as task_c
from pykern import Machine
from pykern.mm.internal import FPI_NONE
from pykern.mm.mmzone import MIGRATE_MOVABLE
from pykern.testing.faults import configure_fail_page_alloc

PACKAGE = Path(pykern.__file__).resolve().parent
PAGE = 4096

#: The kernel functions each module must define at module level, by their 6.17 names.
KERNEL_FUNCTIONS: dict[ModuleType, tuple[str, ...]] = {
    page_alloc_c: (
        "__rmqueue_smallest", "__rmqueue_cma_fallback", "__rmqueue_claim", "__rmqueue_steal",
        "__rmqueue", "rmqueue_buddy", "rmqueue", "expand", "page_del_and_expand",
        "__add_to_free_list", "__del_page_from_free_list", "del_page_from_free_list",
        "move_to_free_list", "account_freepages", "__free_one_page", "buddy_merge_likely",
        "split_large_buddy", "free_one_page", "__free_pages", "free_frozen_pages",
        "free_pages_prepare", "__free_pages_core", "__putback_isolated_page",
        "__move_freepages_block", "move_freepages_block", "prep_move_freepages_block",
        "__move_freepages_block_isolate", "pageblock_isolate_and_move_free_pages",
        "pageblock_unisolate_and_move_free_pages", "find_large_buddy", "try_to_claim_block",
        "find_suitable_fallback", "should_try_claim_block", "boost_watermark",
        "__zone_watermark_ok", "zone_watermark_ok", "zone_watermark_fast",
        "get_page_from_freelist", "prep_new_page", "post_alloc_hook",
        "__alloc_frozen_pages_noprof", "__alloc_pages_slowpath", "gfp_to_alloc_flags",
        "alloc_flags_nofragment", "reserve_highatomic_pageblock",
        "unreserve_highatomic_pageblock", "build_all_zonelists", "setup_per_zone_wmarks",
        "setup_per_zone_lowmem_reserve", "calculate_min_free_kbytes",
        "calculate_totalreserve_pages", "init_per_zone_wmark_min", "get_pfnblock_migratetype",
        "set_pageblock_migratetype", "toggle_pageblock_isolate", "change_pageblock_range",
        "is_free_buddy_page", "bad_page",
    ),
    contig_c: (
        "__alloc_contig_verify_gfp_mask", "__alloc_contig_migrate_range",
        "alloc_contig_range", "free_contig_range", "split_free_pages",
    ),
    isolation_c: (
        "__first_valid_page", "has_unmovable_pages", "set_migratetype_isolate",
        "unset_migratetype_isolate", "isolate_single_pageblock", "start_isolate_page_range",
        "undo_isolate_page_range", "__test_page_isolated_in_pageblock", "test_pages_isolated",
    ),
    migrate_c: ("migrate_pages", "putback_movable_pages", "migrate_folio_move",
                "folio_isolate_lru"),
    task_c: ("folio_is_longterm_pinnable", "check_and_migrate_movable_pages"),
    fail_page_alloc_c: ("__should_fail_alloc_page",),
    mmzone_c: ("zone_end_pfn", "zone_spans_pfn", "populated_zone", "wmark_pages"),
    page_c: ("pfn_valid",),
    cma_c: (
        "__cma_alloc", "cma_alloc", "cma_range_alloc", "cma_release", "cma_pages_valid",
        "cma_clear_bitmap", "cma_bitmap_maxno", "cma_bitmap_pages_to_bits",
        "cma_bitmap_aligned_mask", "cma_bitmap_aligned_offset", "cma_debug_show_areas",
        "cma_init_reserved_mem", "cma_declare_contiguous_nid", "__cma_declare_contiguous_nid",
        "cma_validate_zones", "cma_activate_area",
    ),
    memblock_c: (
        "memblock_add", "memblock_remove", "memblock_reserve", "memblock_phys_free",
        "memblock_start_of_DRAM", "memblock_end_of_DRAM", "memblock_is_region_memory",
        "memblock_is_region_reserved", "for_each_free_mem_range", "memblock_find_in_range",
        "__free_pages_memory",
    ),
}


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in PACKAGE.rglob("*.py")}


def test_mm_kernel_functions_are_module_level_under_kernel_names() -> None:
    """Each modelled kernel function is a module attribute with its exact name (a method
    named ``__cma_alloc`` is reachable only as ``_Cma__cma_alloc``), a plain function whose
    ``__qualname__`` is that name (not a method of a class); in the compiled build the
    modules of ``pykern._fast.PURE_MODULES`` hold Cython functions instead."""
    for module, names in KERNEL_FUNCTIONS.items():
        for name in names:
            fn = getattr(module, name, None)
            compiled = type(fn).__name__ == "cython_function_or_method"
            assert inspect.isfunction(fn) or compiled, f"{module.__name__}.{name}"
            assert fn.__qualname__ == name, f"{module.__name__}.{name} is {fn.__qualname__}"


def test_mm_kernel_functions_are_defined_once_in_the_package() -> None:
    """``git grep 'def __rmqueue_smallest'`` finds one place: every name above is defined
    by exactly one ``def`` in pykern/, methods included (pykern.testing's state-machine
    rules, named after the calls they drive, aside)."""
    defs: dict[str, list[str]] = {}
    for path, tree in _trees().items():
        if path.relative_to(PACKAGE).parts[0] == "testing":
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defs.setdefault(node.name, []).append(f"{path.relative_to(PACKAGE)}:"
                                                      f"{node.lineno}")
    for names in KERNEL_FUNCTIONS.values():
        for name in names:
            assert len(defs.get(name, [])) == 1, (name, defs.get(name))


def test_no_class_body_names_a_mangled_identifier() -> None:
    """Python mangles ``__name`` written anywhere inside a class body (method names,
    ``x.__name``, bare ``__name``): a method calling ``__free_pages`` would look up
    ``_Cls__free_pages``.  No class in the package writes one (``__dunder__`` names are
    not mangled)."""
    def mangled(name: str) -> bool:
        return name.startswith("__") and not name.endswith("__")

    found: list[str] = []
    for path, tree in _trees().items():
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in ast.walk(cls):
                name = (node.id if isinstance(node, ast.Name)
                        else node.attr if isinstance(node, ast.Attribute)
                        else node.name if isinstance(node, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef))
                        else None)
                if name is not None and mangled(name):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} "
                                 f"{cls.name}: {name}")
    assert found == []


def test_user_facing_methods_are_the_kernel_functions() -> None:
    """``m.mm.alloc_pages``, ``m.mm.free_pages`` (``__free_pages``), ``cma.alloc``
    (``cma_alloc``), ``cma.release`` (``cma_release``) are the module functions bound to
    their object, so both spellings run the same code."""
    assert page_alloc_c.PageAlloc.alloc_pages is page_alloc_c.alloc_pages
    assert page_alloc_c.PageAlloc.free_pages is page_alloc_c.__free_pages
    assert page_alloc_c.PageAlloc.page_zone is page_alloc_c.page_zone
    assert cma_c.Cma.alloc is cma_c.cma_alloc
    assert cma_c.Cma.release is cma_c.cma_release


def test_mm_a6_rmqueue_smallest_and_free_one_page_take_the_allocator_first() -> None:
    """__rmqueue_smallest (MM A6, A6.1) and __free_one_page (MM F4, F5.2) called as module
    functions with ``m.mm`` first: on a fresh zone the first order-0 take is the zone's
    first pfn, expand leaves its buddy at the head of list(0, Movable) and the other
    halves on orders 1..9; freeing the page merges it back into the order-10 block at the
    head of list(10, Movable)."""
    m = Machine("64M", reserved=(), cmdline="cma=0")
    mm = m.mm
    zone = mm.zones[0]
    base = zone.zone_start_pfn
    free = mm.nr_free_pages()
    assert mm.free_list("DMA", 10, "Movable")[0] == base
    pfn = page_alloc_c.__rmqueue_smallest(mm, zone, 0, MIGRATE_MOVABLE)
    assert pfn == base and mm.nr_free_pages() == free - 1
    assert [mm.free_list("DMA", k, "Movable")[0] for k in range(10)] == \
        [base + (1 << k) for k in range(10)]
    page_alloc_c.__free_one_page(mm, pfn, zone, 0, MIGRATE_MOVABLE, FPI_NONE)
    assert mm.free_list("DMA", 10, "Movable")[0] == base
    assert all(mm.free_list("DMA", k, "Movable") == [] for k in range(10))
    assert mm.nr_free_pages() == free
    mm.check_invariants()


def test_fail_dump_call_trace_names_dunder_kernel_functions() -> None:
    """fail_dump's dump_stack (lib/fault-inject.c) lists the kernel-named functions on the
    stack: a migration allocation failing inside cma_alloc shows migrate_pages,
    __alloc_contig_migrate_range, alloc_contig_range, cma_range_alloc, __cma_alloc and
    cma_alloc, innermost first, and no pykern-only method name after them."""
    m = Machine("128M", reserved=(), cmdline="cma=64M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    t = m.new_task()
    va = t.mmap_anon(4096)                     # half of them land in the CMA area
    assert any(cma.base_pfn <= t.pfn_of(va + k * PAGE) < cma.base_pfn + cma.count
               for k in range(4096))
    configure_fail_page_alloc(m, probability="100", times="1", verbose="2", min_order="0",
                              ignore_gfp_wait="N", ignore_gfp_highmem="N")
    n = len(m.dmesg())
    assert cma.alloc(cma.count, 0) is None
    text = [line for _, line in m.dmesg()[n:]]
    trace = text[text.index("Call trace:") + 1:text.index("cma: __cma_alloc: reserved: alloc "
                                                           "failed, req-size: 16384 pages, "
                                                           "ret: -12")]
    assert trace[-6:] == [" migrate_pages", " __alloc_contig_migrate_range",
                          " alloc_contig_range", " cma_range_alloc", " __cma_alloc",
                          " cma_alloc"]
