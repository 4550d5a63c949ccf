"""Build the optional Cython accelerators in pykern/_fast (metadata lives in pyproject.toml).

Every ``pykern/_fast/<stem>.pyx`` becomes the extension ``pykern._fast.<stem>``.  Extensions
are ``optional``: if the C compiler fails, the build goes on and pykern falls back to its
pure-Python twins.  ``PYKERN_NO_EXTENSIONS=1`` (or no Cython) builds none at all.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

DIRECTIVES = {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True}
#: Python's semantics kept (floor division, negative and checked indexing); types come from
#: the .pxd files only, never from the annotations (they are for mypy).
PURE_DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}


#: Kernel modules written as plain Python and compiled as they are (Cython's pure-Python
#: mode): the ``.pxd`` beside each gives the compiled build its C types.  Keep in step with
#: ``pykern._fast.PURE_MODULES`` (tests/_fast checks).
PURE_MODULES = ["pykern/mm/mmzone.py", "pykern/mm/page.py", "pykern/mm/page_alloc.py",
                "pykern/kernel/kexec/core_pages.py"]


def extensions() -> list[Extension]:
    if os.environ.get("PYKERN_NO_EXTENSIONS") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    sources = sorted(Path("pykern/_fast").glob("*.pyx"))
    exts = [Extension(f"pykern._fast.{p.stem}", [p.as_posix()], optional=True) for p in sources]
    exts = cythonize(exts, compiler_directives=DIRECTIVES, quiet=True)
    pure = [Extension(m.replace("/", ".")[:-3], [m], optional=True) for m in PURE_MODULES]
    exts += cythonize(pure, compiler_directives=PURE_DIRECTIVES, quiet=True)
    for ext in exts:  # cythonize() builds new Extension objects and drops `optional`
        ext.optional = True
    return exts


setup(ext_modules=extensions())
