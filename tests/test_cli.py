"""The demo scenario, through the console entry point (README's first command)."""

from __future__ import annotations

import json

import pytest

from pykern.cli import main


def test_demo_json_compares_the_two_modes(capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's first claim: with CMA nothing is copied in the hot phase."""
    rc = main(["demo", "--json", "--kernel-mib", "4", "--initrd-mib", "4"])
    runs = json.loads(capsys.readouterr().out)
    assert rc == 0
    cma, no_cma = runs
    assert cma["mode"] == "CMA" and no_cma["mode"] == "NO_CMA"
    assert cma["hot_phase_bytes"] == 0 and cma["entry_words"] == 1
    assert all(where == "CMA" for *_, where in cma["segments"])
    assert no_cma["hot_phase_pages"] == sum(s[2] for s in no_cma["segments"]) // 4096
    assert all(where == "walk" for *_, where in no_cma["segments"])
    assert cma["verified"] and no_cma["verified"]


def test_demo_bad_ram_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A user mistake exits 2 with a message, not a traceback."""
    assert main(["demo", "--ram", "12Q"]) == 2
    assert "12Q" in capsys.readouterr().err
