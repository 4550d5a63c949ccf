"""``pykern map``: memory-map pictures (PNG and SVG) through the console entry point."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pykern.cli import main

SCN = """\
name = "mapped"

[machine]
ram = "128M"
cmdline = "cma=32M crashkernel=16M"

[[steps]]
action = "task"
npages = 64

[[steps]]
action = "load"
kernel = "2M"
initrd = "1M"

[[steps]]
action = "exec"
"""


@pytest.fixture
def scn(tmp_path: Path) -> str:
    p = tmp_path / "mapped.toml"
    p.write_text(SCN)
    return str(p)


def svg_texts(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    return ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("}text")]


def test_missing_matplotlib_exits_2(capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without matplotlib: a hint how to get it, exit 2, and no traceback."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = main(["map", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'pykern-emu[plot]'" in err


def test_bad_suffix_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    assert main(["map", "-o", str(tmp_path / "x.bmp")]) == 2
    assert ".png or .svg" in capsys.readouterr().err


def test_demo_map_png_both_modes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without a scenario the demo's machine is drawn; --modes gives two panels."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo.png"
    rc = main(["map", "--modes", "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cma, no_cma = doc["panels"]
    assert (cma["label"], no_cma["label"]) == ("CMA", "NO_CMA")
    assert all(s["placement"] == "CMA" for s in cma["segments"])
    assert all(s["placement"] == "walk" for s in no_cma["segments"])
    assert no_cma["source_runs"] > 0 and cma["source_runs"] == 0


def test_svg_has_labelled_layers(capsys: pytest.CaptureFixture[str], scn: str,
                                 tmp_path: Path) -> None:
    """The SVG parses as XML and keeps its labels as text: CMA, segments, row names."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "map.svg"
    rc = main(["map", scn, "--step", "2", "-o", str(out)])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    texts = svg_texts(out)
    assert any("CMA" in t for t in texts)
    assert any("segment" in t for t in texts)
    assert {"System RAM", "zones", "kexec segments", "page list"} <= set(texts)
    assert any("Crash kernel" in t for t in texts)


def test_map_after_the_reboot_shows_the_executed_image(capsys: pytest.CaptureFixture[str],
                                                       scn: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "after.svg"
    rc = main(["map", scn, "-o", str(out), "--json", "--modes"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["after_step"] == 3
    assert [p["image"] for p in doc["panels"]] == ["executed", "executed"]
    assert [p["generation"] for p in doc["panels"]] == [1, 1]
    assert any("generation 1" in t for t in svg_texts(out))


def test_map_bad_step(capsys: pytest.CaptureFixture[str], scn: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main(["map", scn, "--step", "7", "-o", str(tmp_path / "m.png")]) == 2
    assert "--step 7" in capsys.readouterr().err


def test_map_with_device_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A GIC's tables() get their own row (skipped while the GIC model is not there)."""
    pytest.importorskip("matplotlib")
    gic = pytest.importorskip("pykern.drivers.gic")
    from pykern import Machine
    try:
        Machine("256M", devices=[gic.GICv3()])
    except ImportError as exc:
        pytest.skip(f"the GIC model is incomplete: {exc}")
    out = tmp_path / "gic.png"
    rc = main(["map", "gic-vs-cma", "--step", "2", "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["panels"][0]["device_tables"] > 0
    assert out.read_bytes()[:4] == b"\x89PNG"
