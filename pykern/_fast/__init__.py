"""Optional compiled accelerators, each with a pure-Python twin of identical behaviour.

``memops`` (byte-range zero/copy/compare over the RAM buffer) comes in two modules:
``_memops_c`` (Cython, built when a compiler is available) and ``_memops_py``.  The
compiled one is used when it imports, unless the environment has
``PYKERN_NO_EXTENSIONS=1``, which makes pykern behave as if it had never been built.

- ``COMPILED``: whether the default implementation is the compiled one.
- ``memops_c``: the compiled module, or ``None``; ``memops_py``: the pure-Python module.
- ``get_memops(extensions)``: pick one explicitly.
- ``zero_range``, ``copy_range``, ``range_equal``, ``first_diff``, ``first_equal``: the
  default's functions.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

from . import _memops_py as memops_py

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "COMPILED",
    "NO_EXTENSIONS",
    "MemOps",
    "copy_range",
    "first_diff",
    "first_equal",
    "get_relocate",
    "relocate_c",
    "relocate_py",
    "get_memops",
    "memops_c",
    "memops_py",
    "range_equal",
    "zero_range",
]


class MemOps(Protocol):
    """What both ``_memops_c`` and ``_memops_py`` provide (each module satisfies it)."""

    def zero_range(self, buf: Buffer, off: int, n: int) -> None: ...
    def copy_range(self, dst: Buffer, doff: int, src: Buffer, soff: int, n: int) -> None: ...
    def range_equal(self, a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> bool: ...
    def first_diff(self, a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> int: ...
    def first_equal(self, a: Buffer, aoff: int, b: Buffer, boff: int, n: int) -> int: ...


NO_EXTENSIONS: bool = os.environ.get("PYKERN_NO_EXTENSIONS") == "1"

memops_c: MemOps | None = None
if not NO_EXTENSIONS:
    try:
        from . import _memops_c
    except ImportError:  # not built (no compiler, or installed with PYKERN_NO_EXTENSIONS=1)
        pass
    else:
        memops_c = _memops_c

COMPILED: bool = memops_c is not None

from . import _relocate_py as relocate_py  # noqa: E402

relocate_c: Any = None
if not NO_EXTENSIONS:
    try:
        from . import _relocate_c as _rc
    except ImportError:
        pass
    else:
        relocate_c = _rc


def get_relocate(extensions: bool | None = None) -> Any:
    """The relocation-walk module: like :func:`get_memops`, for ``relocate_walk``."""
    if extensions is False:
        return relocate_py
    if relocate_c is not None:
        return relocate_c
    if extensions:
        why = "PYKERN_NO_EXTENSIONS=1 is set" if NO_EXTENSIONS else "it was not built"
        raise ImportError(f"pykern._fast._relocate_c is unavailable: {why}")
    return relocate_py


def get_memops(extensions: bool | None = None) -> MemOps:
    """Return the memops module to use.

    ``None``: the compiled one if available, else the pure-Python one; ``False``: the
    pure-Python one; ``True``: the compiled one, or ``ImportError`` if it is unavailable.
    """
    if extensions is False:
        return memops_py
    if memops_c is not None:
        return memops_c
    if extensions:
        why = "PYKERN_NO_EXTENSIONS=1 is set" if NO_EXTENSIONS else "it was not built"
        raise ImportError(f"pykern._fast._memops_c is unavailable: {why}")
    return memops_py


_default = get_memops()
zero_range = _default.zero_range
copy_range = _default.copy_range
range_equal = _default.range_equal
first_diff = _default.first_diff
first_equal = _default.first_equal
del _default
