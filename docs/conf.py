"""Sphinx configuration of the pykern documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The extension in ``_ext/pykern_docs.py`` writes ``_generated/`` before the sources are read:
the CLI reference (from the argparse parser), the scenario-key tables (checked against
``pykern.scenario``), the rule index (``tools/rule_index.py``), the findings' results and the
``pykern map`` pictures.  Pages include those files, so nothing there can drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS / "tools"))

project = "pykern"
author = "the pykern developers"
copyright = "the pykern developers"
try:
    from pykern import __version__ as release
except ImportError:  # pragma: no cover - the docs extra installs pykern
    release = "unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "pykern_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "rules", "tools", "_ext", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options: dict[str, object] = {}
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"pykern {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Linux memory and kexec, emulated in Python",
                      "fixed_sidebar": True}
