"""Collect ``bench_*.py`` as test modules (pytest's default pattern is ``test_*.py``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # A file named on the command line is already collected by pytest itself.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def _collect_machines() -> Iterator[None]:
    """Machines hold reference cycles, so a finished bench's RAM (up to a few GiB, touched)
    would wait for the cyclic collector: collect after every bench."""
    yield
    gc.collect()
