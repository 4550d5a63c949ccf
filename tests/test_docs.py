"""The documentation that ships: the rule index, the scenario reference, the guide's code and
the findings' scenarios.

The Sphinx build itself runs in CI (``python -m sphinx -W``); these tests check the parts of
it that can drift from the code, quickly and without Sphinx:

* every rule ID cited in ``pykern/``, ``tests/``, ``benches/`` and ``examples/`` has an entry
  in ``docs/rules/*.toml`` (``docs/tools/rule_index.py --check``), and the scanner reads IDs
  the way the index page says;
* every quirk of ``pykern.quirks.QUIRKS`` has its rule entry with the upstream commit;
* ``docs/reference/scenario_keys.toml`` documents exactly the keys ``pykern.scenario``
  accepts;
* the Python examples of the guide run;
* each shipped finding scenario still shows what ``docs/findings.md`` says it shows.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _rule_index() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rule_index", DOCS / "tools" / "rule_index.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["rule_index"] = mod
    spec.loader.exec_module(mod)
    return mod


ri = _rule_index()


# ------------------------------------------------------------------------ the rule index
def test_rule_index_check_every_cited_id_has_an_entry() -> None:
    """``rule_index.py --check`` on this tree: exit 0, no cited rule ID without an entry."""
    proc = subprocess.run([sys.executable, str(DOCS / "tools" / "rule_index.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "all with an entry" in proc.stdout


def _tree(tmp_path: Path, code: str, rules: dict[str, str]) -> Path:
    (tmp_path / "pykern").mkdir()
    (tmp_path / "pykern" / "mod.py").write_text(code)
    (tmp_path / "docs" / "rules").mkdir(parents=True)
    for stem, text in rules.items():
        (tmp_path / "docs" / "rules" / f"{stem}.toml").write_text(text)
    return tmp_path


def test_rule_index_check_fails_listing_a_cited_id_without_entry(tmp_path: Path) -> None:
    """The check exits 1 and names the ID and where it is cited."""
    mm_id, k_id = "mm a5.1".upper(), "k7.8".upper()     # not citations of this file
    root = _tree(tmp_path, f'def f():\n    """{mm_id} and {k_id}: placement."""\n',
                 {"mm": f'"{mm_id[3:]}" = {{ rule = "x" }}\n', "kexec": ""})
    proc = subprocess.run([sys.executable, str(DOCS / "tools" / "rule_index.py"), "--check",
                           "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{k_id}: pykern/mod.py:2" in proc.stderr and mm_id not in proc.stderr


def test_rule_index_check_only_notes_an_unreadable_test_name(tmp_path: Path) -> None:
    """An ID squeezed into a test name that matches no rule is a note, not a failure."""
    root = _tree(tmp_path, "", {"mm": "", "kexec": ""})
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("def test_leaks_k" + "29_until_fixed():\n"
                                                "    pass\n")
    proc = subprocess.run([sys.executable, str(DOCS / "tools" / "rule_index.py"), "--check",
                           "--root", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "note: the test name tests/test_x.py::test_leaks_k29_until_fixed" in proc.stdout


def test_rule_index_scanner_reads_ids_as_documented(tmp_path: Path) -> None:
    """Tags carry over lists and ranges; hex, attached words, noqa codes and identifier
    strings are not IDs; a letter shared by two files resolves by the file's area."""
    # Built from lower-case pieces: the scanner must not count this file as citing them.
    ids = [x.upper() for x in ("e402", "f401", "d0", "gic-t9", "n2", "mm d4", "d5",
                               "gic-r1", "r3", "k2.4", "k2.6", "a15", "cma5")]
    code = (
        "X = 0xA2  # noqa: {} {}\n"
        'MODE = "{}"\n'
        "def f():\n"
        '    """{}/{}, {}, {} and {}..{}; Cortex-A57 at D3hot; {}-{}."""\n'
        "def g():\n"
        '    """{} here is an mm rule, {} too."""\n').format(*ids)
    root = _tree(tmp_path, code, {})
    found = {(c.candidates[0], c.local) for c in ri.scan(root)}
    assert found == {("GIC", "T9"), ("GIC", "N2"), ("MM", "D4"), ("MM", "D5"),
                     ("GIC", "R1"), ("GIC", "R2"), ("GIC", "R3"), ("K", "K2.4"),
                     ("K", "K2.5"), ("K", "K2.6"), ("MM", "A15"), ("MM", "CMA5")}
    (root / "pykern" / "arch").mkdir()
    (root / "pykern" / "arch" / "loader.py").write_text(f'"""{ids[11]}: the window."""\n')
    arch = [c for c in ri.scan(root) if c.path == "pykern/arch/loader.py"]
    assert [c.candidates for c in arch] == [("ARCH", "MM")]


def test_rule_index_test_names() -> None:
    """A test name ``test_k16_1_...`` reads as kexec rule 16.1; a tag word (``gic``,
    ``arch``) applies to the IDs after it until an ordinary word."""
    assert list(ri.ids_in_test_name("test_k16_1_shutdown_hooks")) == [("K16.1", None)]
    assert list(ri.ids_in_test_name("test_gic_k3_k8_vpe_writebacks")) == [("K3", "GIC"),
                                                                          ("K8", "GIC")]
    assert list(ri.ids_in_test_name("test_arch_x20_k8_4_init_size")) == [("X20", "ARCH"),
                                                                         ("K8.4", "ARCH")]
    assert list(ri.ids_in_test_name("test_x86_q35_layout")) == []


def test_rule_index_page_lists_citing_functions_and_tests() -> None:
    """The generated page gives each entry its kernel source, pykern functions and tests."""
    entries = ri.load_entries(DOCS / "rules")
    ri.resolve(ri.scan(ROOT), entries)
    page = ri.render_page(entries)
    head, nxt = "### " + "k7.8".upper(), "### " + "k7.9".upper()
    k78 = page[page.index(head):page.index(nxt)]
    assert "kexec_alloc_contig" in k78 and "07d24902977e" in k78
    assert "`cma-inclusive-end-conflict`" in k78 and "tests/" in k78


def test_every_quirk_has_its_rule_entry_with_a_commit() -> None:
    """pykern.quirks.QUIRKS: each quirk's rule entry names the fix and the upstream commit."""
    from pykern.quirks import QUIRKS
    entries = ri.load_entries(DOCS / "rules")
    for name, (rule, _text) in QUIRKS.items():
        ns, local = ("MM", rule[3:]) if rule.startswith("MM ") else \
            ("GIC", rule[4:]) if rule.startswith("GIC-") else ("K", rule)
        entry = entries[(ns, local)]
        assert name in entry.quirk, (name, rule)
        assert re.search(r"\b[0-9a-f]{12}\b", entry.commit), (name, entry.commit)


# --------------------------------------------------------------------- scenario reference
def test_scenario_reference_documents_exactly_the_accepted_keys() -> None:
    """docs/reference/scenario_keys.toml against pykern.scenario's key lists."""
    from pykern import scenario
    data = tomllib.loads((DOCS / "reference" / "scenario_keys.toml").read_text())
    assert set(data["top"]) == set(scenario.TOP_KEYS)
    assert set(data["machine"]) == set(scenario.MACHINE_KEYS)
    assert set(data["step"]) == set(scenario.COMMON_STEP_KEYS)
    assert set(data["action"]) == set(scenario.ACTIONS)
    assert set(data["device"]) == set(scenario.DEVICE_TYPES)
    for action, keys in scenario.ACTIONS.items():
        documented = {k for k, v in data["action_keys"].items() if action in v["actions"]}
        assert documented == set(keys), action
    for section in ("top", "machine", "step", "action_keys", "blob", "cma_areas"):
        for key, fields in data[section].items():
            assert fields.get("doc") and "default" in fields, (section, key)


# ------------------------------------------------------------------------- guide examples
def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)


GUIDE_PAGES = ["index.md", "guide/machine.md", "guide/memory.md", "guide/cma.md",
               "guide/kexec.md", "guide/cma-patch.md", "guide/devices.md", "guide/testing.md"]


@pytest.mark.parametrize("page", GUIDE_PAGES)
def test_guide_examples_run(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every ```python block of a guide page runs, in page order, in one namespace."""
    blocks = _python_blocks(DOCS / page)
    assert blocks, page
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem}"}
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)


# ------------------------------------------------------------------------------ findings
def _run(name: str) -> list[Any]:
    from pykern.scenario import Runner, load_scenario
    runner = Runner(load_scenario(name))
    runner.run()
    return runner.results


def test_finding1_cma_hot_phase_copies_nothing() -> None:
    """K16.7, K19.6: the CMA image reboots with 0 bytes copied, the NO_CMA one copies every
    page of its segments (finding-cma-copies-nothing)."""
    res = _run("finding-cma-copies-nothing")
    assert [r.status for r in res] == ["ok"] * 7
    assert res[3].details["hot_phase_bytes"] == 0
    # 16 MiB kernel + 32 MiB initrd + one page of device tree, all through the page list
    assert res[6].details["hot_phase_bytes"] == (16 << 20) + (32 << 20) + 4096


def test_finding2_gic_ignoring_shutdown_corrupts_walk_not_cma() -> None:
    """GIC-I2, GIC-H8: the same GIC scribbles in both runs, but only the walk-placed image is
    corrupted; with EFI persistent reservations (GIC-T9) the walk avoids the tables."""
    walk = _run("finding-gic-walk-corrupted")[1]
    assert walk.status == "corrupted" and walk.details["scribbles"]
    assert not walk.details["verified"]
    cma = _run("finding-gic-cma-clean")[1]
    assert cma.status == "ok" and cma.details["scribbles"] and not cma.details["corrupted"]
    efi = _run("finding-gic-walk-efi")
    assert efi[0].details["segments"][0]["mem"] > 0x4107_FFFF
    assert efi[1].status == "ok" and efi[1].details["scribbles"]


def test_finding3_next_kernel_fills_adopted_prop_table_in_walk_image() -> None:
    """GIC-N4, GIC-I4: with a GIC that honours shutdown there is no scribble, yet the
    NO_CMA image is corrupted exactly inside the old property table, after t_jump."""
    res = _run("finding-adopted-prop-fill")[1].details
    assert res["scribbles"] == [] and res["verified"] and res["corrupted"]
    assert all(0x4103_0000 <= a and a + n <= 0x4104_0000 for a, n, _ in res["corrupted"])


def test_finding4_cma_area_over_old_tables_makes_cma_kexec_unsafe() -> None:
    """GIC-N4, GIC-I1, GIC-I2 exception: generation 1's cma= area covers the tables it
    adopts, and its CMA-placed initrd is corrupted by the GIC."""
    res = _run("finding-cma-over-old-tables")
    assert res[1].status == "ok"
    load = res[3].details
    assert all(s["cma"] for s in load["segments"])
    initrd = load["segments"][1]
    assert initrd["mem"] <= 0x4103_0000 < initrd["mem"] + initrd["memsz"]
    reboot = res[4].details
    assert res[4].status == "corrupted" and reboot["scribbles"]
    assert {idx for _, _, idx in reboot["corrupted"]} == {1}


def test_finding4_efi_memreserve_keeps_next_cma_area_off_old_tables() -> None:
    """GIC-N2, GIC-T9, MM Z0.4: under EFI, generation 1 memblock-reserves the published tables
    before it places its CMA area (efi_init() runs before bootmem_init() in arm64's
    setup_arch()), so ``cma=64M@0x40000000`` is refused and the load is walk-placed around
    the tables: clean (finding-cma-over-old-tables-efi)."""
    from pykern import Machine, images
    from pykern.drivers.gic import GICv3
    res = _run("finding-cma-over-old-tables-efi")
    assert [r.status for r in res] == ["ok"] * 5
    iomem = res[2].output
    assert "41030000-4107ffff : reserved" in iomem and "40000000-43ffffff" not in iomem
    segments = res[3].details["segments"]
    assert not any(s["cma"] for s in segments)
    assert all(s["mem"] + s["memsz"] <= 0x4103_0000 or s["mem"] >= 0x4108_0000
               for s in segments)
    reboot = res[4].details
    assert reboot["verified"] and not reboot["corrupted"] and reboot["scribbles"]
    # generation 1's own log: the area is refused, nothing is cma-reserved
    m = Machine("1G", cmdline="cma=256M console=ttyAMA0", seed=0,
                devices=[GICv3(honours_shutdown=False, efi_memreserve=True)])
    m.kexec_file_load(images.arm64_image(16 << 20), None, "cma=64M@0x40000000", 0)
    m.kernel_kexec()
    log = [text for _, text in m.dmesg()]
    assert "cma: Failed to reserve 64 MiB" in log and m.cma_areas == []
    assert any("0K cma-reserved" in line for line in log if line.startswith("Memory: "))
