"""The fuzz worker's process settings (:func:`pykern.testing.fuzz.runner.prepare_worker`) and
the lazily seeded kexec generator they rely on not changing any draw."""

from __future__ import annotations

import gc
import random
import sys

import pytest

from pykern import Machine
from pykern.kernel.kexec.core import KexecState
from pykern.testing.fuzz import runner
from pykern.testing.fuzz.cases import Config


def test_prepare_worker_imports_the_cycle_and_raises_the_gc_threshold() -> None:
    """After prepare_worker the modules a cycle needs are loaded, and the collector's first
    threshold is at least 10,000 (the other two unchanged); a second call changes nothing."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        runner.prepare_worker()
        after = gc.get_threshold()
        assert after == (10_000, before[1], before[2])
        assert "pykern.machine" in sys.modules and "pykern.testing.invariants" in sys.modules
        runner.prepare_worker()
        assert gc.get_threshold() == after
    finally:
        gc.set_threshold(*before)


def test_a_worker_runs_the_same_cases() -> None:
    """The settings change no result: a case gives the same report before and after."""
    config = Config(seed=1, layouts=3)
    first = [runner.run_case(config, i) for i in range(3)]
    before = gc.get_threshold()
    try:
        runner.prepare_worker()
        again = [runner.run_case(config, i) for i in range(3)]
    finally:
        gc.set_threshold(*before)
    for a, b in zip(first, again):
        for stats in (*a["modes"].values(), *b["modes"].values()):
            stats.pop("seconds")
        assert a == b


@pytest.mark.parametrize("seed", [0, 5])
def test_kexec_rng_seeded_on_first_use_draws_as_before(seed: int) -> None:
    """``m.kexec_rng`` is the generator seeded by (machine seed, generation), whether or not
    it was made at boot: its draws equal a Random seeded with the same string."""
    m = Machine("64M", seed=seed)
    want = random.Random(f"pykern-kexec-{seed}-0")
    assert [m.kexec_rng.getrandbits(32) for _ in range(5)] == \
        [want.getrandbits(32) for _ in range(5)]
    state = KexecState("x")
    other = random.Random(7)
    state.kexec_rng = other
    assert state.kexec_rng is other
