"""The public surface: every module declares ``__all__``, every name in it exists, and what
the API reference documents is exactly what the modules export."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import pykern

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "reference" / "api.md"

def _modules() -> list[str]:
    names = ["pykern"]
    for info in pkgutil.walk_packages(pykern.__path__, "pykern."):
        if info.name.endswith(".__main__") or info.name.startswith("pykern._fast._"):
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_every_module_declares_all_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__ list"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which it lacks"


def _documented() -> list[tuple[str, str]]:
    """(directive, target) of every autodoc directive on the API reference page."""
    text = API_PAGE.read_text()
    return re.findall(r"\.\. (automodule|autoclass|autofunction|autodata):: ([\w.]+)", text)


def test_the_api_page_documents_what_the_modules_export() -> None:
    documented = _documented()
    assert documented, "the API reference lists nothing"
    for directive, target in documented:
        if directive == "automodule":
            module = importlib.import_module(target)
            assert isinstance(getattr(module, "__all__", None), list), target
            continue
        modname, _, attr = target.rpartition(".")
        module = importlib.import_module(modname)
        assert attr in module.__all__, f"{target} is documented but not in {modname}.__all__"


def test_the_top_level_names_are_documented() -> None:
    """Everything ``from pykern import *`` gives is documented: named on the API page or in
    the README, or exported by a module the API page documents whole."""
    text = API_PAGE.read_text() + (ROOT / "README.md").read_text()
    whole = {name for directive, target in _documented() if directive == "automodule"
             for name in importlib.import_module(target).__all__}
    for name in pykern.__all__:
        assert name in text or name in whole, f"pykern.{name} is exported but documented nowhere"
