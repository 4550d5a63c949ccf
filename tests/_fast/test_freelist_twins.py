"""The free lists' compiled twin (per-page link arrays) against the pure build's OrderedDicts.

Every operation the allocator performs on a free list (MM C1.5 head and tail insertion, F4
unlinking of a merged buddy, A6 taking the head, F5.1 moves between lists) must give the
same result, the same error and the same head-to-tail order in both.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pykern._fast as fast

pytestmark = pytest.mark.skipif(fast.freelist_c is None,
                                reason="the pure build: no compiled free lists")

BASE, SPAN, LISTS = 0x40000, 64, 3

PFN = st.integers(BASE - 2, BASE + SPAN + 1)
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, LISTS - 1), PFN),
    st.tuples(st.just("del"), st.integers(0, LISTS - 1), PFN),
    st.tuples(st.just("head"), st.integers(0, LISTS - 1), PFN),
    st.tuples(st.just("tail"), st.integers(0, LISTS - 1), PFN),
    st.tuples(st.just("pophead"), st.integers(0, LISTS - 1), st.just(0)),
    st.tuples(st.just("poptail"), st.integers(0, LISTS - 1), st.just(0)),
    st.tuples(st.just("first"), st.integers(0, LISTS - 1), st.just(0)),
), max_size=200)


def _apply(lists: list[Any], others: list[Any], op: tuple[str, int, int]) -> Any:
    kind, k, pfn = op
    fl = lists[k]
    try:
        if kind == "set":
            # a pfn heads at most one block: the allocator never puts it on two lists
            if any(pfn in o for o in others if o is not fl):
                return "skip"
            fl[pfn] = None
            return None
        if kind == "del":
            del fl[pfn]
            return None
        if kind in ("head", "tail"):
            return fl.move_to_end(pfn, kind == "tail")
        if kind in ("pophead", "poptail"):
            return fl.popitem(kind == "poptail")
        return next(iter(fl), None)
    except KeyError as exc:
        return ("KeyError", exc.args)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_link_arrays_behave_as_ordered_dicts(ops: list[tuple[str, int, int]]) -> None:
    """Same results, errors, lengths, membership and order after every operation."""
    c_lists = fast.freelist_c.new_free_lists(BASE, BASE + SPAN, 1, LISTS)[0]
    py_lists: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(LISTS)]
    for op in ops:
        if op[0] == "set" and not BASE <= op[2] < BASE + SPAN:
            with pytest.raises(ValueError, match="outside the zone's span"):
                c_lists[op[1]][op[2]] = None
            continue
        got_c = _apply(c_lists, c_lists, op)
        got_py = _apply(py_lists, py_lists, op)
        assert got_c == got_py, op
        for c, p in zip(c_lists, py_lists):
            assert list(c) == list(p) and len(c) == len(p) and bool(c) == bool(p), op
            assert all((pfn in c) == (pfn in p) for pfn in range(BASE - 1, BASE + SPAN + 1))


def test_mutation_during_iteration_fails_as_for_an_ordered_dict() -> None:
    fl = fast.freelist_c.new_free_lists(BASE, BASE + SPAN, 1, 1)[0][0]
    fl[BASE] = None
    fl[BASE + 1] = None
    it = iter(fl)
    assert next(it) == BASE
    del fl[BASE + 1]
    with pytest.raises(RuntimeError):
        next(it)


def test_a_pfn_on_one_list_cannot_join_another() -> None:
    """A free block has one list (MM C1.5): linking it on a second list of the zone is an
    error, not a silent corruption of the first."""
    a, b = fast.freelist_c.new_free_lists(BASE, BASE + SPAN, 1, 2)[0]
    a[BASE + 4] = None
    with pytest.raises(ValueError, match="another free list"):
        b[BASE + 4] = None
    assert list(a) == [BASE + 4] and not b


def test_a_lone_free_list_pickles_as_what_the_pure_build_holds() -> None:
    fl = fast.freelist_c.new_free_lists(BASE, BASE + SPAN, 1, 1)[0][0]
    for pfn in (BASE + 3, BASE + 1, BASE + 2):
        fl[pfn] = None
    fl.move_to_end(BASE + 2, False)
    restored = pickle.loads(pickle.dumps(fl))
    assert restored == OrderedDict.fromkeys([BASE + 2, BASE + 3, BASE + 1])
