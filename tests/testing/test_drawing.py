"""pykern.testing.drawing and the fuzz cases it draws: case ``i`` of seed ``S`` never changes
(users replay cases by index), and :class:`RandomSource` takes exactly the draws of
:meth:`random.Random.randint` from its stream."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykern.testing.drawing import CMDLINE_ALPHABET, RandomSource, choose, draw_kexec_image
from pykern.testing.fuzz.cases import Config, draw_case

MiB = 1 << 20


def _cases_digest(config: Config, n: int) -> str:
    h = hashlib.sha256()
    for i in range(n):
        c = draw_case(config, i)
        h.update(repr((c.index, c.layout, c.cmdline, c.flags, c.text_offset, c.summary)).encode())
        h.update(c.kernel)
        h.update(b"-" if c.initrd is None else c.initrd)
    return h.hexdigest()[:32]


@pytest.mark.parametrize("config,digest", [
    (Config(seed=0), "1ada647b8ba5653807cce147cff95cc3"),
    (Config(seed=1), "950cf924041eed6087ec18e821b06640"),
    (Config(seed=7), "5bc83e1ad88bad7594be3890dda29cea"),
    (Config(seed=1, arches=("x86_64",), ram_max=256 * MiB, max_kernel=2 * MiB, max_initrd=0),
     "10b0d58cf487f2809ff68853390f9d2b"),
    (Config(seed=7, arches=("arm64",), ram_max=32 * MiB, max_kernel=64 << 10,
            max_initrd=2 * MiB), "0a2fb04fce8de01c3950b772243a4670"),
])
def test_draw_case_replays_the_recorded_cases(config: Config, digest: str) -> None:
    """draw_case(config, i) is a pure function of the seed and i: the layouts, kernel and
    initrd bytes, command lines, flags and summaries of cases 0..39, recorded when the
    campaign's replay lines were first printed, are drawn again byte for byte."""
    assert _cases_digest(config, 40) == digest


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), bounds=st.lists(
    st.tuples(st.integers(-(2**70), 2**70), st.integers(0, 2**70) | st.integers(0, 300)),
    min_size=1, max_size=20))
def test_random_source_integer_draws_what_randint_draws(
        seed: int, bounds: list[tuple[int, int]]) -> None:
    """RandomSource.integer(lo, hi) == Random.randint(lo, hi) value for value, leaving the
    generator in the same state (so the draws after it are the same too)."""
    mine, plain = random.Random(seed), random.Random(seed)
    src = RandomSource(mine)
    for lo, width in bounds:
        assert src.integer(lo, lo + width) == plain.randint(lo, lo + width)
    assert mine.getstate() == plain.getstate()


def test_random_source_empty_range_is_randints_error() -> None:
    src = RandomSource(random.Random(1))
    with pytest.raises(ValueError) as mine:
        src.integer(5, 4)
    with pytest.raises(ValueError) as plain:
        random.Random(1).randint(5, 4)
    assert str(mine.value) == str(plain.value)
    assert src.rng.getstate() == random.Random(1).getstate()


class _PlainSource(RandomSource):
    """A Source that draws through randint, as RandomSource first did."""

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
@pytest.mark.parametrize("seed", range(12))
def test_draw_kexec_image_same_through_either_source(arch: str, seed: int) -> None:
    """draw_kexec_image's command line (choose() inlined for each character) and images are
    those a randint-drawing source gives, and the stream is left at the same point."""
    kw: dict[str, Any] = dict(min_kernel=64 << 10, max_kernel=300 << 10, max_initrd=100 << 10,
                              valid=seed % 3 != 0)
    a, b = random.Random(seed), random.Random(seed)
    fast, plain = draw_kexec_image(RandomSource(a), arch, **kw), \
        draw_kexec_image(_PlainSource(b), arch, **kw)
    assert fast == plain
    assert a.getstate() == b.getstate()
    c = random.Random(seed)
    assert choose(RandomSource(c), CMDLINE_ALPHABET) == CMDLINE_ALPHABET[
        random.Random(seed).randint(0, len(CMDLINE_ALPHABET) - 1)]
