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

The kernel modules of ``PURE_MODULES`` (the buddy allocator core) are a second kind: plain
Python that the compiled build compiles as it is (Cython's pure-Python mode, with a ``.pxd``
beside each module giving C types).  The ``.py`` file is the one source: under
``PYKERN_NO_EXTENSIONS=1`` a finder installed here loads it instead of the compiled module,
and ``source_twin(name)`` loads a second copy from source beside the compiled one (the
equivalence tests run both on the same operations).  ``CORE_COMPILED`` says which runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from . import _memops_py as memops_py

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "COMPILED",
    "CORE_COMPILED",
    "NO_EXTENSIONS",
    "PURE_MODULES",
    "core_compiled",
    "source_twin",
    "MemOps",
    "copy_range",
    "first_diff",
    "first_equal",
    "freelist_c",
    "freelist_py",
    "new_free_lists",
    "free_list_links_nbytes",
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
    def diff_runs(self, a: Buffer, aoff: int, b: Buffer, boff: int,
                  n: int) -> list[tuple[int, int]]: ...


NO_EXTENSIONS: bool = os.environ.get("PYKERN_NO_EXTENSIONS") == "1"

#: Kernel modules the compiled build compiles from their own source (setup.py's list).
PURE_MODULES: tuple[str, ...] = ("pykern.mm.mmzone", "pykern.mm.page", "pykern.mm.page_alloc",
                                  "pykern.kernel.kexec.core_pages")
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _source_path(name: str) -> Path:
    return _PACKAGE_DIR.joinpath(*name.split(".")[1:]).with_suffix(".py")


class _SourceFirst(MetaPathFinder):
    """Loads the modules of ``PURE_MODULES`` from their ``.py`` files, never from a compiled
    module beside them (``PYKERN_NO_EXTENSIONS=1`` at run time)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in PURE_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _source_path(fullname))


if NO_EXTENSIONS and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceFirst())


def core_compiled() -> bool:
    """Whether the running allocator core (``pykern.mm.page_alloc``) is the compiled one."""
    import pykern.mm.page_alloc as pa
    return not str(pa.__file__).endswith(".py")


def source_twin(name: str) -> ModuleType:
    """A fresh copy of ``name`` (one of ``PURE_MODULES``) run from its ``.py`` source, as
    ``<name>_source``; its own imports resolve to the running (maybe compiled) modules."""
    if name not in PURE_MODULES:
        raise ValueError(f"{name} is not one of {PURE_MODULES}")
    twin = f"{name}_source"
    spec = importlib.util.spec_from_file_location(twin, _source_path(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = name.rpartition(".")[0]
    sys.modules[twin] = module
    spec.loader.exec_module(module)
    return module


def _compiled(stem: str) -> Any:
    """The compiled module ``pykern._fast.<stem>``, or None when it was not built (no
    compiler, or installed with PYKERN_NO_EXTENSIONS=1) or PYKERN_NO_EXTENSIONS=1 is set."""
    if NO_EXTENSIONS:
        return None
    try:
        return importlib.import_module(f"{__name__}.{stem}")
    except ImportError:
        return None


memops_c: MemOps | None = _compiled("_memops_c")

COMPILED: bool = memops_c is not None

from . import _relocate_py as relocate_py  # noqa: E402

relocate_c: Any = _compiled("_relocate_c")


from . import _freelist_py as freelist_py  # noqa: E402

freelist_c: Any = _compiled("_freelist_c")

#: The zones' free lists: link arrays when compiled, else OrderedDicts (same interface for
#: what the allocator does with them, same order; tests/_fast checks).  Chosen per process.
new_free_lists: Callable[[int, int, int, int], list[list[OrderedDict[int, None]]]] = (
    freelist_c.new_free_lists if freelist_c is not None else freelist_py.new_free_lists)
#: Bytes of per-page link arrays behind one zone's free lists (0 in the pure build).
free_list_links_nbytes: Callable[[list[list[OrderedDict[int, None]]]], int] = (
    freelist_c.links_nbytes if freelist_c is not None else freelist_py.links_nbytes)


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


def __getattr__(name: str) -> Any:
    if name == "CORE_COMPILED":  # computed on first use: it imports the allocator
        return core_compiled()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_default = get_memops()
zero_range = _default.zero_range
copy_range = _default.copy_range
range_equal = _default.range_equal
first_diff = _default.first_diff
first_equal = _default.first_equal
del _default
