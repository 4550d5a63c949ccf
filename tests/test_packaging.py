"""The installed distribution as a user meets it: its name, its version, the compiled build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import metadata, version
from pathlib import Path

import pytest

import pykern
import pykern._fast


def test_version_comes_from_the_distribution_metadata() -> None:
    assert pykern.DIST_NAME == "pykern-emu"
    assert pykern.__version__ == version("pykern-emu") != "0+unknown"
    assert metadata("pykern-emu")["Name"] == "pykern-emu"


def test_cli_version_prints_distribution_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "pykern", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"pykern-emu {pykern.__version__}"


@pytest.mark.skipif(os.environ.get("PYKERN_NO_EXTENSIONS") == "1",
                    reason="PYKERN_NO_EXTENSIONS=1 selects the pure-Python build")
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: nothing was compiled")
def test_tests_import_the_compiled_build() -> None:
    """With a compiler, the README's editable install builds the extensions where the tests
    import pykern from, so the compiled twins are what the suite exercises."""
    assert pykern._fast.COMPILED
    here = Path(pykern._fast.__file__).parent
    assert any(p.name.startswith("_relocate_c") for p in here.iterdir() if p.suffix == ".so")


def test_install_hints_name_the_distribution() -> None:
    """No hint sends a user to the unrelated PyPI project called ``pykern``."""
    root = Path(pykern.__file__).parent
    for path in root.rglob("*.py"):
        bad = re.findall(r"pip install ['\"]?pykern(?![-\w])", path.read_text())
        assert not bad, (path, bad)
