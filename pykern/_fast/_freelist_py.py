"""The buddy free lists of one zone, pure-Python build: one ``OrderedDict`` of first pfns per
(order, migratetype).  ``move_to_end(pfn, last=False)`` links at the head, ``fl[pfn] = None``
at the tail, ``popitem(last=False)`` takes the head, ``del`` unlinks: each O(1), as the
kernel's doubly linked lists.  ``_freelist_c`` is the compiled twin (per-page link arrays)."""

from __future__ import annotations

from collections import OrderedDict


def new_free_lists(start_pfn: int, end_pfn: int, nr_orders: int,
                   nr_types: int) -> list[list[OrderedDict[int, None]]]:
    """``free_list[order][mt]`` for a zone spanning ``[start_pfn, end_pfn)``, all empty."""
    return [[OrderedDict() for _ in range(nr_types)] for _ in range(nr_orders)]


def links_nbytes(free_list: list[list[OrderedDict[int, None]]]) -> int:
    """Bytes of per-page link arrays behind a zone's free lists: none in this build."""
    return 0
