"""``pykern map``: memory-map pictures (PNG and SVG) through the console entry point."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pykern.cli import main
from pykern.cli.map import MapData, zoom_windows

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


@pytest.mark.slow
def test_demo_map_png_both_modes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without a scenario the demo's machine is drawn in both modes, after its reboot."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo.png"
    rc = main(["map", "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cma, no_cma = doc["panels"]
    assert (cma["label"], no_cma["label"]) == ("CMA", "NO_CMA")
    assert all(s["placement"] == "CMA" for s in cma["segments"])
    assert all(s["placement"] == "walk" for s in no_cma["segments"])
    assert cma["image"] == no_cma["image"] == "executed" and doc["after_step"] == 3


@pytest.mark.slow
def test_demo_map_is_drawn_after_the_reboot(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    """Issue 16: the demo's map was drawn before kernel_kexec(), its "after reboot" row
    empty.  Now the NO_CMA panel has the corrupted runs of the walk-placed kernel and both
    have the GIC's scribbles (GIC-K3), with a legend entry for each colour."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo.svg"
    rc = main(["map", "-o", str(out), "--json"])
    cap = capsys.readouterr()
    cma, no_cma = json.loads(cap.out)["panels"]
    assert rc == 0
    assert no_cma["corrupted"] > 0 and no_cma["scribbles"] > 0 and cma["scribbles"] > 0
    assert cma["corrupted"] == 0
    texts = svg_texts(out)
    for entry in ("corrupted run (RAM differs from the loaded image)",
                  "device write after shutdown (scribble)", "GIC tables (RAM the GIC writes)",
                  "kexec segment placed by the walk (copied at reboot)",
                  "kexec segment in CMA (nothing to copy)", "zone DMA",
                  "zoomed region (lane below)"):
        assert entry in texts, entry
    # the zoomed lanes: one per segment and one for the GIC tables, in each panel
    for panel in (cma, no_cma):
        whats = [w["what"] for w in panel["windows"]]
        assert [w for w in whats if w.startswith("segment")] == [
            f"segment {s['index']} ({s['placement']})" for s in panel["segments"]]
        assert "gic tables" in whats
    assert sum(w["corrupted"] for w in no_cma["windows"]) >= no_cma["corrupted"]
    for w in cma["windows"] + no_cma["windows"]:      # numbers as numbers in the JSON
        assert all(type(v) is int for k, v in w.items() if k not in ("letter", "what")), w


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
    """A GIC's tables() get their own row."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "gic.png"
    rc = main(["map", "gic-vs-cma", "--step", "2", "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["panels"][0]["device_tables"] > 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_map_exit_code_is_the_maps_own(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    """Issue 16: step 5 of gic-vs-cma finds corruption; the map is written, so exit 0, and
    the step is named on stderr."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "m.png"
    rc = main(["map", "gic-vs-cma", "-o", str(out), "--json"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert rc == 0 and doc["ok"] is True and doc["scenario_ok"] is False
    assert "gic-vs-cma step 5 (exec) corrupted" in cap.err
    assert doc["panels"][0]["corrupted"] > 0


# ------------------------------------------------------------------ zoomed lanes
def _panel(**kw: Any) -> MapData:
    base: dict[str, Any] = {"label": "", "arch": "arm64", "generation": 1, "halted": False,
                            "banks": [(0x4000_0000, 0x4000_0000 + (16 << 30))]}
    base.update(kw)
    return MapData(**base)


def test_zoom_windows_one_per_segment_and_table_cluster() -> None:
    """At 16 GiB a 16 MiB segment or a 64 KiB table is a sliver of the overview: each
    segment gets its lane, the GIC's tables one lane (closer than 2 MiB: one cluster), and
    corruption outside both a lane of its own."""
    gib = 1 << 30
    data = _panel(
        segments=[(0, 0x4100_0000, 16 << 20, "walk"), (1, 0x4200_0000, 32 << 20, "walk"),
                  (2, 0x4_3fdf_f000, 4096, "walk")],
        device_tables=[("gic", "prop", 0x1_0000_0000, 0x10000),
                       ("gic", "pending cpu0", 0x1_0001_0000, 0x10000)],
        device_kinds={"gic": "gic"},
        scribbles=[("gic", 0x1_0001_0004, 1), ("gic", 0x2_0000_0000, 1)],
        corrupted=[(0x4100_0100, 8, 0), (0x3_0000_0000, 1, 0)])
    wins = zoom_windows(data)
    assert [w.what for w in wins] == ["segment 0 (walk)", "segment 1 (walk)", "gic tables",
                                      "corruption", "corruption", "segment 2 (walk)"]
    assert [w.letter for w in wins] == list("ABCDEF")
    seg0, _, tables, *_ = wins
    assert seg0.start < 0x4100_0000 and seg0.end > 0x4200_0000 - 1
    assert seg0.counts["corrupted"] == 1
    assert tables.start <= 0x1_0000_0000 and tables.end >= 0x1_0002_0000
    assert tables.end - tables.start < 1 << 20 and tables.counts["scribbles"] == 1
    assert all(data.banks[0][0] <= w.start < w.end <= data.banks[0][1] for w in wins)
    assert wins[-1].end - wins[-1].start < 4 * gib


def test_zoom_windows_are_capped() -> None:
    """Hundreds of scattered corrupted runs become at most MAX_WINDOWS lanes."""
    from pykern.cli.map import MAX_WINDOWS
    runs = [(0x4000_0000 + k * (40 << 20), 1, 0) for k in range(300)]
    wins = zoom_windows(_panel(corrupted=runs))
    assert 1 <= len(wins) <= MAX_WINDOWS
    assert sum(w.counts["corrupted"] for w in wins) == 300


def test_tiny_ranges_keep_a_minimum_drawn_width() -> None:
    """A 1-byte scribble on a 16 GiB axis is drawn MIN_WIDTH of the axis wide."""
    from pykern.cli.map import MIN_WIDTH, Window, _Axis, _Zoom
    axis = _Axis([(0x4000_0000, 0x4000_0000 + (16 << 30))])
    [(_, w)] = axis.bars([(0x1_0000_0000, 0x1_0000_0001)])
    assert w == pytest.approx(axis.width * MIN_WIDTH)
    zoom = _Zoom(Window("A", 0x1_0000_0000, 0x1_0100_0000, "x"))
    [(x, w)] = zoom.bars([(0x1_0000_1000, 0x1_0000_1001)])
    assert x == 0x1_0000_1000 and w == pytest.approx((16 << 20) * MIN_WIDTH)


def test_16g_map_keeps_segments_and_tables_readable(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    """The 16 GiB machine's SVG has a lane per segment and for the GIC tables, with their
    names as text, and a lettered box per lane on the overview."""
    pytest.importorskip("matplotlib")
    scn = tmp_path / "big.toml"
    scn.write_text('name = "big"\n[machine]\nram = "16G"\ncmdline = "cma=256M"\n'
                   '[[machine.devices]]\ntype = "gic"\nhonours_shutdown = false\n'
                   '[[steps]]\naction = "load"\nkernel = "16M"\ninitrd = "32M"\n'
                   'flags = ["NO_CMA"]\n[[steps]]\naction = "exec"\n')
    out = tmp_path / "big.svg"
    rc = main(["map", str(scn), "-o", str(out), "--json"])
    [panel] = json.loads(capsys.readouterr().out)["panels"]
    assert rc == 0
    texts = svg_texts(out)
    letters = [w["letter"] for w in panel["windows"]]
    assert len(letters) == len(panel["segments"]) + 1
    for w in panel["windows"]:
        assert any(t.startswith(f"{w['letter']}: {w['what']}") for t in texts), w
        assert w["letter"] in texts                  # its box on the overview
    assert any(t.startswith("segment 0 (walk)") for t in texts)   # a label in its lane
    assert "prop" in texts                                         # a GIC table's name

