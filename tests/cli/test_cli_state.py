"""``--state FILE``: the kexec-tools habit of ``kexec -l`` then ``kexec -e`` on one machine,
across separate ``pykern`` processes (issue: machine snapshots, state across verbs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

def pykern(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pykern", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)

def test_boot_load_exec_cat_in_separate_processes(tmp_path: Path) -> None:
    boot = pykern("boot", "cma-basic", "--step", "0", "--state", "s.pkm", "--json",
                  cwd=tmp_path)
    assert boot.returncode == 0, boot.stderr
    assert json.loads(boot.stdout)["machine"]["generation"] == 0
    assert (tmp_path / "s.pkm").stat().st_size > 0

    load = pykern("load", "--state", "s.pkm", "16M", "--json", cwd=tmp_path)
    assert load.returncode == 0, load.stderr
    doc = json.loads(load.stdout)
    assert doc["result"][0]["action"] == "load" and doc["result"][0]["status"] == "ok"

    # the loaded image survived in the file: exec without KERNEL reboots into it
    exe = pykern("exec", "--state", "s.pkm", "--json", cwd=tmp_path)
    assert exe.returncode == 0, exe.stderr
    doc = json.loads(exe.stdout)
    assert doc["machine"]["generation"] == 1
    assert doc["result"][0]["verified"] is True and doc["result"][0]["generation"] == 1

    cat = pykern("cat", "--state", "s.pkm", "/sys/kernel/kexec_loaded", cwd=tmp_path)
    assert cat.returncode == 0 and cat.stdout == "0\n"     # the reboot consumed the image

def test_unload_with_state_drops_the_image(tmp_path: Path) -> None:
    assert pykern("boot", "cma-basic", "--step", "0", "--state", "s.pkm",
                  cwd=tmp_path).returncode == 0
    assert pykern("load", "--state", "s.pkm", "8M", cwd=tmp_path).returncode == 0
    before = pykern("cat", "--state", "s.pkm", "/sys/kernel/kexec_loaded", cwd=tmp_path)
    assert before.stdout == "1\n"
    assert pykern("unload", "--state", "s.pkm", cwd=tmp_path).returncode == 0
    after = pykern("cat", "--state", "s.pkm", "/sys/kernel/kexec_loaded", cwd=tmp_path)
    assert after.stdout == "0\n"

@pytest.mark.parametrize("content", [b"junk\n", b""])
def test_a_file_that_is_not_a_snapshot_is_a_usage_error(tmp_path: Path,
                                                         content: bytes) -> None:
    (tmp_path / "bad.pkm").write_bytes(content)
    r = pykern("cat", "--state", "bad.pkm", "/proc/iomem", cwd=tmp_path)
    assert r.returncode == 2 and "--state bad.pkm" in r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "bad.pkm").read_bytes() == content  # left as it was

def test_a_missing_state_file_with_one_word_says_how_to_make_one(tmp_path: Path) -> None:
    r = pykern("cat", "--state", "none.pkm", "/proc/iomem", cwd=tmp_path)
    assert r.returncode == 2 and "pykern boot SCENARIO --state none.pkm" in r.stderr
    assert not (tmp_path / "none.pkm").exists()

def test_a_scenario_with_a_new_state_file_boots_and_saves(tmp_path: Path) -> None:
    r = pykern("cat", "cma-basic", "--step", "0", "/proc/cmdline", "--state", "n.pkm",
               cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "cma=64M console=ttyAMA0\n"
    again = pykern("cat", "--state", "n.pkm", "/proc/cmdline", cwd=tmp_path)
    assert again.stdout == r.stdout

def test_soak_is_a_verb(tmp_path: Path) -> None:
    r = pykern("soak", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--ops" in r.stdout
