"""Type stub for the compiled twin (pykern/_fast/_relocate_c.pyx) of ``_relocate_py``."""

from collections.abc import Sequence

from typing_extensions import Buffer

WALK_DONE: int
WALK_MORE: int
WALK_BAD_WORD: int
WALK_BAD_SOURCE: int
WALK_BAD_DEST: int
WALK_LOOP: int

def relocate_walk(ram: Buffer, runs_obj: Sequence[int], head: int, loc: int, dest: int,
                  max_sources: int, max_words: int = ...,
                  zeros: tuple[int, int, bytearray, Sequence[int]] | None = ...,
                  ) -> tuple[int, int, int, int, int]: ...
