"""Build the optional Cython accelerators in pykern/_fast (metadata lives in pyproject.toml).

Every ``pykern/_fast/<stem>.pyx`` becomes the extension ``pykern._fast.<stem>``.  Extensions
are ``optional``: if the C compiler fails, the build goes on and pykern falls back to its
pure-Python twins.  ``PYKERN_NO_EXTENSIONS=1`` (or no Cython) builds none at all.
"""

import os
from pathlib import Path

from setuptools import Extension, setup

DIRECTIVES = {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True}


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
    for ext in exts:  # cythonize() builds new Extension objects and drops `optional`
        ext.optional = True
    return exts


setup(ext_modules=extensions())
