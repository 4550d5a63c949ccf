"""The ``pykern`` command through its console entry point (README's first commands)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from typing import Any
from pathlib import Path

import pytest

from pykern import images
from pykern.cli import main, render_table

#: A small machine for the verbs: a crash reservation, a task, an image left loaded.
SCN = """\
name = "clitest"
description = "small arm64 machine for the CLI tests"

[machine]
ram = "160M"
cmdline = "cma=32M crashkernel=32M"
seed = 4

[[steps]]
action = "task"
npages = 128

[[steps]]
action = "load"
kernel = "2M"
initrd = "1M"
cmdline = "cma=32M next=1"
"""


@pytest.fixture
def scn(tmp_path: Path) -> str:
    p = tmp_path / "clitest.toml"
    p.write_text(SCN)
    return str(p)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------- demo
def test_demo_json_compares_the_two_modes(capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's first claim: with CMA nothing is copied in the hot phase."""
    rc = main(["demo", "--json", "--kernel-mib", "4", "--initrd-mib", "4", "--device", "none"])
    runs = json.loads(capsys.readouterr().out)
    assert rc == 0
    cma, no_cma = runs
    assert cma["mode"] == "CMA" and no_cma["mode"] == "NO_CMA"
    assert cma["hot_phase_bytes"] == 0 and cma["entry_words"] == 1
    assert all(where == "CMA" for *_, where in cma["segments"])
    assert no_cma["hot_phase_pages"] == sum(s[2] for s in no_cma["segments"]) // 4096
    assert all(where == "walk" for *_, where in no_cma["segments"])
    assert cma["verified"] and no_cma["verified"]
    assert cma["scribbles"] == no_cma["scribbles"] == [] and cma["device"] == "none"


def test_demo_bad_ram_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A user mistake exits 2 with a message, not a traceback."""
    assert main(["demo", "--ram", "12Q"]) == 2
    assert "12Q" in capsys.readouterr().err


def test_demo_text_has_the_side_by_side_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "demo", "--kernel-mib", "2", "--initrd-mib", "2", "--ram", "512M",
                     "--cmdline", "cma=64M", "--device", "none")
    assert rc == 0
    rows = {line.split("  ")[0]: line.split() for line in out.splitlines()}
    assert "scribbles" in rows and "corrupted runs" in rows
    assert rows["hot-phase bytes"][2] == "0" and int(rows["hot-phase bytes"][3]) > 0


def test_demo_gic_needs_arm64(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "demo", "--arch", "x86_64", "--device", "gic")
    assert rc == 2 and "arm64" in err


def test_demo_with_a_gic(capsys: pytest.CaptureFixture[str]) -> None:
    """With the GIC that ignores shutdown, both runs report their scribbles."""
    rc = main(["demo", "--json", "--kernel-mib", "4", "--initrd-mib", "4", "--device", "gic"])
    runs = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and [r["device"] for r in runs] == ["gic", "gic"]
    assert all(isinstance(r["scribbles"], list) for r in runs)


# ----------------------------------------------------------------------------------- run
def test_run_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "run", "--list")
    assert rc == 0 and "gic-vs-cma" in out and "cma-basic" in out
    rc, out, _ = run(capsys, "run", "--list", "--json")
    assert rc == 0 and {"cma-basic", "crash-panic"} <= {s["name"] for s in json.loads(out)}


def test_run_prints_one_row_per_step(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, err = run(capsys, "run", scn)
    assert rc == 0 and err == ""
    assert "step  action  result" in out and "2 steps, all ok" in out
    assert "(CMA)" in out and "segment 0:" in out


def test_run_json_is_one_document(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, _ = run(capsys, "run", scn, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] and doc["scenario"] == "clitest"
    assert [s["action"] for s in doc["steps"]] == ["task", "load"]
    assert all(seg["cma"] for seg in doc["steps"][1]["segments"])


def test_run_bundled_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "run", "crash-panic", "--json")
    doc = json.loads(out)
    assert rc == 0 and [s["status"] for s in doc["steps"]][:2] == ["expected-failure", "ok"]
    assert doc["steps"][-1]["action"] == "panic" and doc["machine"]["generation"] == 1
    rc, out, _ = run(capsys, "run", "cma-basic")
    assert rc == 0 and "7 steps, all ok" in out


def test_run_gic_vs_cma(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "run", "gic-vs-cma", "--json")
    doc = json.loads(out)
    assert rc in (0, 1) and len(doc["steps"]) == 5
    assert "scribbles" in doc["steps"][2] and "scribbles" in doc["steps"][4]


def test_run_failed_step_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "fail.toml"
    p.write_text('[machine]\nram = "128M"\n[[steps]]\naction = "exec"\n')
    rc, out, _ = run(capsys, "run", str(p))
    assert rc == 1 and "failed" in out and "1 not ok" in out


@pytest.mark.parametrize(("text", "line", "key"), [
    ('[machine]\nram = "128M"\nfrobnicate = 1\n', 3, "machine.frobnicate"),
    ('[machine]\nram = "128M"\n\n[[steps]]\naction = "task"\nnpages = "many"\n', 6,
     "steps[0].npages"),
    ('[[steps]]\naction = "load"\nkernel = "2M"\ninitrd = { size = "9G" }\n', 4,
     "steps[0].initrd.size"),
])
def test_run_bad_scenario_names_file_line_key(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, text: str, line: int,
                                              key: str) -> None:
    p = tmp_path / "broken.toml"
    p.write_text(text)
    rc, out, err = run(capsys, "run", str(p))
    assert rc == 2 and out == ""
    assert f"broken.toml:{line}:" in err and key in err and "Traceback" not in err


def test_run_toml_syntax_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "syntax.toml"
    p.write_text('[machine]\nram = "128M\n')
    rc, _, err = run(capsys, "run", str(p))
    assert rc == 2 and "syntax.toml" in err and "line 2" in err


def test_run_missing_file_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "run", "/nonexistent/x.toml")
    assert rc == 2 and "x.toml" in err
    assert run(capsys, "run")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "--help")[0] == 0


# ------------------------------------------------------------------------- kexec verbs
def test_load_verb_reports_segments(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, err = run(capsys, "load", scn, "-s", "--initrd", "1M", "--command-line", "a=1",
                       "--append", "b=2", "-d", "2M")
    assert rc == 0 and err == ""
    assert "segment  mem" in out and "CMA" in out and "'a=1 b=2'" in out
    assert "kexec debug: kexec_file: nr_segments" in out


def test_load_no_cma_json(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, _ = run(capsys, "load", scn, "--no-cma", "--json", "2M")
    doc = json.loads(out)
    [res] = doc["result"]
    assert rc == 0 and doc["verb"] == "load" and res["flag_names"] == "NO_INITRAMFS|NO_CMA"
    assert not any(s["cma"] for s in res["segments"]) and res["entries"]["SOURCE"] > 0


def test_load_crash_and_kernel_file(capsys: pytest.CaptureFixture[str], scn: str,
                                    tmp_path: Path) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(images.arm64_image(1 << 20, seed=2))
    rc, out, _ = run(capsys, "load", scn, "-p", str(kernel))
    assert rc == 0 and "crash image" in out and "crash" in out


def test_load_refusal_prints_like_kexec_tools(capsys: pytest.CaptureFixture[str], scn: str,
                                              tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"not a kernel" * 100)
    rc, _, err = run(capsys, "load", scn, str(junk))
    assert rc == 1
    assert "kexec_file_load failed: Invalid argument" in err
    assert "no loader recognises the kernel image" in err


def test_load_bad_kernel_argument(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, _, err = run(capsys, "load", scn, "12Q")
    assert rc == 2 and "12Q" in err
    rc, _, err = run(capsys, "load", scn, "--initrd", "1T", "1M")
    assert rc == 2 and "larger" in err


def test_exec_verb(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, _ = run(capsys, "exec", scn, "--json")
    doc = json.loads(out)
    [res] = doc["result"]
    assert rc == 0 and res["hot_phase_bytes"] == 0 and res["generation"] == 1
    assert doc["machine"]["cmdline"] == "cma=32M next=1"
    rc, out, _ = run(capsys, "exec", scn, "--no-cma", "1M")  # KERNEL after an option
    assert rc == 0 and "hot-phase bytes" in out and "walk" in out
    assert run(capsys, "exec", scn, "-p", "1M")[0] == 2


def test_exec_with_nothing_loaded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "empty.toml"
    p.write_text('[machine]\nram = "64M"\n')
    rc, _, err = run(capsys, "exec", str(p))
    assert rc == 1 and "failed: Invalid argument" in err


def test_unload_and_panic(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, _ = run(capsys, "unload", scn, "--json")
    [res] = json.loads(out)["result"]
    assert rc == 0 and res["had_image"] and res["flag_names"] == "UNLOAD"
    rc, out, _ = run(capsys, "unload", scn, "-p")
    assert rc == 0 and "nothing was loaded" in out
    rc, out, _ = run(capsys, "panic", scn)
    assert rc == 0 and "halted" in out


# --------------------------------------------------------------------------------- cat
def test_cat(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, out, _ = run(capsys, "cat", scn, "/sys/kernel/kexec_loaded")
    assert (rc, out) == (0, "1\n")
    rc, out, _ = run(capsys, "cat", scn, "/sys/kernel/kexec_loaded", "--step", "0")
    assert (rc, out) == (0, "0\n")
    rc, out, _ = run(capsys, "cat", scn, "/proc/iomem", "--json")
    doc = json.loads(out)
    assert rc == 0 and "Crash kernel" in doc["text"] and doc["after_step"] == 2


def test_cat_errors(capsys: pytest.CaptureFixture[str], scn: str) -> None:
    rc, _, err = run(capsys, "cat", scn, "/proc/nonsense")
    assert rc == 1 and "No such file" in err
    rc, _, err = run(capsys, "cat", scn, "/proc/iomem", "--step", "9")
    assert rc == 2 and "--step 9" in err


# -------------------------------------------------------------------------------- fuzz
def test_fuzz_delegates(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("pykern.testing.fuzz")

    def fuzz_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3
    fake.main = fuzz_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pykern.testing.fuzz", fake)
    assert main(["fuzz", "--runs", "5", "-x"]) == 3
    assert seen == [["--runs", "5", "-x"]]


def test_fuzz_missing_module(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pykern.testing.fuzz", None)
    rc, _, err = run(capsys, "fuzz")
    assert rc == 2 and "pykern.testing.fuzz" in err


# ------------------------------------------------------------------------------ output
def test_plain_table_aligns_multiline_cells(capsys: pytest.CaptureFixture[str]) -> None:
    text = render_table(["a", "bb"], [["x", "1\n22"], ["yyy", "3"]])
    assert text == "a    bb\n---  --\nx    1\n     22\nyyy  3"


def test_rich_table_when_rich_is_there() -> None:
    rich_console = pytest.importorskip("rich.console")
    import io
    buf = io.StringIO()
    console = rich_console.Console(file=buf, width=100, color_system=None)
    rows = [[1, "ok"], [2, "[mem 0x40000000-0x4fffffff]\n[/bold]"]]
    assert render_table(["step", "result"], rows, console=console) is None
    assert "step" in buf.getvalue() and "[mem 0x40000000-0x4fffffff]" in buf.getvalue()


def test_console_script_in_a_subprocess() -> None:
    """The installed `pykern` script (and its exit code) outside this process."""
    script = Path(sys.executable).with_name("pykern")
    if not script.exists():
        pytest.skip("no pykern console script next to this interpreter")
    proc = subprocess.run([str(script), "run", "--list", "--json"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "cma-basic" in proc.stdout
    proc = subprocess.run([str(script), "run", "no-such-scenario"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "no-such-scenario" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_default_shows_the_claim_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """README's first command: with the default GIC ignoring shutdown, the NO_CMA run is
    corrupted and the CMA run is not; that is the expected outcome, so the exit code is 0."""
    rc = main(["demo", "--json", "--kernel-mib", "8", "--initrd-mib", "8"])
    out = json.loads(capsys.readouterr().out)
    runs = out if isinstance(out, list) else out["runs"]
    cma, no_cma = runs
    assert rc == 0
    assert cma["corrupted"] == [] and no_cma["corrupted"]
    assert cma["hot_phase_bytes"] == 0 < no_cma["hot_phase_bytes"]


# ------------------------------------------------------------- issue 16: exit codes
#: A scenario whose first reboot has nothing to boot: step 1 fails (K16.1, EINVAL), and
#: every step after it, and every verb, still has a machine to work on.
FAILED_FIRST = """\
name = "failedfirst"

[machine]
ram = "160M"
cmdline = "cma=32M crashkernel=32M"

[[steps]]
action = "exec"

[[steps]]
action = "load"
kernel = "2M"
"""


@pytest.fixture
def failed_first(tmp_path: Path) -> str:
    p = tmp_path / "failedfirst.toml"
    p.write_text(FAILED_FIRST)
    return str(p)


@pytest.mark.parametrize("argv", [
    ["cat", "{scn}", "/sys/kernel/kexec_loaded"],
    ["load", "{scn}", "1M"],
    ["unload", "{scn}"],
])
def test_earlier_failed_step_is_reported_not_the_exit_code(
        capsys: pytest.CaptureFixture[str], failed_first: str, argv: list[str]) -> None:
    """Issue 16: cat/load/unload exit 0 when they did what was asked; the scenario's failed
    step 1 (kernel_kexec with nothing loaded: K16.1, EINVAL) is named on stderr instead."""
    rc, out, err = run(capsys, *[a.format(scn=failed_first) for a in argv])
    assert rc == 0, err
    if argv[0] == "cat":
        assert out == "1\n"                          # stdout is the file and nothing else
        assert "failedfirst step 1 (exec) failed" in err
        assert "not this command's result" in err
    else:                                          # the verbs' reports carry the table
        assert f"1 not ok (reported here; the exit code is {argv[0]}'s own)" in out
        assert "Invalid argument" in out and err == ""


def test_earlier_failed_step_json_keeps_both_outcomes(capsys: pytest.CaptureFixture[str],
                                                      failed_first: str) -> None:
    rc, out, _ = run(capsys, "load", failed_first, "--json", "1M")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] is True and doc["scenario_ok"] is False
    assert doc["steps"][0]["status"] == "failed" and doc["result"][0]["status"] == "ok"


def test_run_still_reports_the_scenarios_outcome(capsys: pytest.CaptureFixture[str],
                                                 failed_first: str) -> None:
    rc, out, _ = run(capsys, "run", failed_first)
    assert rc == 1 and "1 not ok: step 1 (failed)" in out


def test_cat_gic_vs_cma_iomem_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16's first case: step 5 of gic-vs-cma finds corruption (GIC-K3: LPI pending
    bits written into the walk-placed kernel); `cat` still prints /proc/iomem and exits 0,
    and `run` keeps exiting 1 for that scenario."""
    rc, out, err = run(capsys, "cat", "gic-vs-cma", "/proc/iomem")
    assert rc == 0 and out.startswith("40000000-7fffffff : System RAM\n")
    assert "gic-vs-cma step 5 (exec) corrupted" in err
    rc, out, _ = run(capsys, "run", "gic-vs-cma", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["steps"][4]["status"] == "corrupted" and doc["ok"] is False


#: A GIC that ignores shutdown and a NO_CMA load: the reboot `exec` does is its own, and
#: the walk-placed kernel sits on the boot-time GIC tables (GIC-K3, GIC-W2).
GIC_NO_CMA = """\
name = "gicnocma"

[machine]
ram = "1G"
cmdline = "cma=256M"

[[machine.devices]]
type = "gic"
honours_shutdown = false

[[steps]]
action = "load"
kernel = "16M"
initrd = "32M"
flags = ["NO_CMA"]
"""


def test_exec_exits_1_when_its_own_reboot_is_corrupted(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    p = tmp_path / "gicnocma.toml"
    p.write_text(GIC_NO_CMA)
    rc, out, err = run(capsys, "exec", str(p), "--json")
    doc = json.loads(out)
    [res] = doc["result"]
    assert rc == 1 and res["status"] == "corrupted" and res["corrupted"]
    assert doc["ok"] is False and doc["scenario_ok"] is True


def test_load_that_can_never_fit_is_refused_before_any_work(
        capsys: pytest.CaptureFixture[str], scn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """kernel + initrd larger than RAM together: exit 2 before the scenario's machine is
    booted or an image built."""
    from pykern import scenario

    def no_runner(*a: object, **k: object) -> None:
        raise AssertionError("the scenario was run")
    monkeypatch.setattr(scenario, "Runner", no_runner)
    for verb in ("load", "exec"):
        rc, _, err = run(capsys, verb, scn, "--initrd", "100M", "100M")
        assert rc == 2 and "can never fit" in err and "160 MiB" in err


# ------------------------------------------------------------- issue 16: the demo
def test_demo_without_its_cma_area_exits_2_naming_it(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """`demo --ram 256M`: cma=256M cannot be reserved (the kernel logs "cma: Failed to
    reserve 256 MiB", MM D3), so the CMA run would be walk-placed; the demo says so on its
    first line, explains why, suggests a cma= that works, and exits 2 with nothing on
    stdout."""
    rc, out, err = run(capsys, "demo", "--ram", "256M")
    lines = err.splitlines()
    assert rc == 2 and out == ""
    assert lines[0].startswith("pykern demo: no CMA area \"reserved\"")
    assert "Failed to reserve 256 MiB" in err and "Traceback" not in err
    [hint] = [line for line in lines if line.strip().startswith("try:")]
    assert "--cmdline 'cma=64M console=ttyAMA0'" in hint


def test_demo_suggestion_works(capsys: pytest.CaptureFixture[str]) -> None:
    """The suggested cma= gives a real CMA run on the 256 MiB machine: every segment in
    CMA (K7.9), nothing copied in the hot phase."""
    rc, out, _ = run(capsys, "demo", "--ram", "256M", "--cmdline", "cma=64M console=ttyAMA0",
                     "--device", "none", "--json")
    cma, no_cma = json.loads(out)
    assert rc == 0 and all(seg[3] == "CMA" for seg in cma["segments"])
    assert cma["hot_phase_bytes"] == 0 < no_cma["hot_phase_bytes"]


def test_demo_area_too_small_for_the_image(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """cma=32M holds no 16 MiB kernel + 32 MiB initrd: refused (2) before the images are
    built, naming the area and its size."""
    def no_build(*a: object, **k: object) -> bytes:
        raise AssertionError("an image was built")
    monkeypatch.setattr(images, "arm64_image", no_build)
    rc, out, err = run(capsys, "demo", "--cmdline", "cma=32M", "--device", "none")
    assert rc == 2 and out == ""
    assert err.startswith("pykern demo: the CMA area \"reserved\" (32 MiB) cannot hold")
    assert "try: --cmdline 'cma=64M'" in err


def test_demo_cma_run_with_a_walked_segment_exits_2(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """When the area has no free block for a segment, kexec_locate_mem_hole falls back to
    the walk (K7.9): the "CMA" run is then no CMA run, and the demo says so and exits 2
    instead of comparing two walk-placed loads."""
    import errno

    from pykern.kernel.kexec import file as kexec_file
    real = kexec_file.kexec_alloc_contig

    def no_block_for_the_initrd(m: Any, kbuf: Any) -> int:
        if kbuf.memsz == 2 << 20 and kbuf.bufsz == 2 << 20 and m.kexec_image is None:
            return -errno.ENOMEM
        return int(real(m, kbuf))
    monkeypatch.setattr(kexec_file, "kexec_alloc_contig", no_block_for_the_initrd)
    rc, out, err = run(capsys, "demo", "--arch", "x86_64", "--kernel-mib", "4",
                       "--initrd-mib", "2", "--cmdline", "cma=256M")
    assert rc == 2 and out == ""
    assert err.startswith("pykern demo: the CMA area \"reserved\" (256 MiB) could not hold "
                          "every segment: segment 3 was placed by the walk")
    assert "try: --cmdline" in err


@pytest.mark.parametrize(("argv", "word"), [
    (["--kernel-mib", "4096"], "can never fit"),
    (["--ram", "32M"], "can never fit"),
    (["--kernel-mib", "0"], "--kernel-mib"),
    (["--initrd-mib", "-1"], "--initrd-mib"),
])
def test_demo_impossible_sizes_refused_before_any_work(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        argv: list[str], word: str) -> None:
    """Issue 16: `demo --kernel-mib 4096` on 1G spent 22 s and 8 GB before "no hole"; now no
    machine is booted and no image built."""
    import pykern

    def no_machine(*a: object, **k: object) -> None:
        raise AssertionError("a machine was booted")
    monkeypatch.setattr(pykern, "Machine", no_machine)
    rc, out, err = run(capsys, "demo", *argv)
    assert rc == 2 and out == "" and word in err and "Traceback" not in err


def test_demo_json_numbers_are_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    """cma_used_pages was the debugfs text ("12289"); now the number, as every count is."""
    rc, out, _ = run(capsys, "demo", "--json", "--kernel-mib", "2", "--initrd-mib", "2",
                     "--ram", "512M", "--cmdline", "cma=64M", "--device", "none")
    cma, no_cma = json.loads(out)
    assert rc == 0 and cma["cma_used_pages"] == 1025 and no_cma["cma_used_pages"] == 0
    assert_numbers_are_numbers([cma, no_cma])


def numeric_strings(doc: object, path: str = "") -> list[str]:
    """Paths of JSON strings that spell a number (file text and command lines excepted)."""
    import re
    free_text = {"text", "output", "cmdline", "next_cmdline", "summary", "description",
                 "flag_names"}  # flag_names renders `flags` (an int): "0" when none
    if isinstance(doc, dict):
        return [p for k, v in doc.items() if k not in free_text
                for p in numeric_strings(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in numeric_strings(v, f"{path}[{i}]")]
    if isinstance(doc, str) and re.fullmatch(r"-?(0x[0-9a-fA-F]+|[0-9]+(\.[0-9]+)?)", doc.strip()):
        return [path]
    return []


def assert_numbers_are_numbers(doc: object) -> None:
    assert numeric_strings(doc) == []


@pytest.mark.parametrize("argv", [
    ["run", "{scn}"], ["load", "{scn}", "1M"], ["exec", "{scn}"], ["unload", "{scn}"],
    ["panic", "{scn}"], ["cat", "{scn}", "/sys/kernel/debug/cma/reserved/used"],
    ["run", "--list"],
])
def test_every_json_output_has_numbers_as_numbers(capsys: pytest.CaptureFixture[str],
                                                  scn: str, argv: list[str]) -> None:
    rc, out, _ = run(capsys, *[a.format(scn=scn) for a in argv], "--json")
    assert rc == 0
    assert_numbers_are_numbers(json.loads(out))


# ------------------------------------------------------------ issue 16: help and Ctrl-C
def _all_parsers() -> list[tuple[str, Any]]:
    import argparse

    from pykern.cli import build_parser
    from pykern.testing.fuzz import build_parser as fuzz_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = [(name, p) for name, p in sub.choices.items() if name != "fuzz"]
    return [("pykern", parser), *found, ("fuzz", fuzz_parser())]


def test_every_option_of_every_verb_has_help() -> None:
    """`pykern demo --help` described none of its options; now every option (and every
    positional) of every verb, fuzz included, says what it does."""
    import argparse
    missing = [f"{verb} {'/'.join(a.option_strings) or a.dest}"
               for verb, p in _all_parsers() for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and not (a.help or "").strip()]
    assert missing == []
    assert {verb for verb, _ in _all_parsers()} >= {"demo", "run", "load", "exec", "unload",
                                                     "panic", "cat", "map", "fuzz"}


def test_demo_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "demo", "--help")
    assert rc == 0
    for phrase in ("--ram SIZE", "RAM of the machine", "--kernel-mib MIB", "--initrd-mib MIB",
                   "cma= sizes the CMA area", "--seed S", "--json"):
        assert phrase in " ".join(out.split()), phrase


def test_keyboard_interrupt_in_a_verb_exits_130_quietly(
        capsys: pytest.CaptureFixture[str], scn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pykern import scenario

    def interrupted(self: Any, upto: int | None = None) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(scenario.Runner, "run", interrupted)
    rc, out, err = run(capsys, "run", scn)
    assert (rc, out, err) == (130, "", "pykern run: interrupted\n")


def test_sigint_stops_the_demo(tmp_path: Path) -> None:
    """A real SIGINT in the middle of a demo's reboot: exit 130, a short message, no
    traceback.  The reboot is made to wait so the signal lands inside it."""
    import signal
    code = ("import sys, time\n"
            "import pykern.machine as M\n"
            "def slow(self, *a, **k):\n"
            "    print('rebooting', file=sys.stderr, flush=True)\n"
            "    time.sleep(120)\n"
            "M.Machine.kernel_kexec = slow\n"
            "from pykern.cli import main\n"
            "sys.exit(main(['demo', '--device', 'none', '--kernel-mib', '2', "
            "'--initrd-mib', '2']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert proc.stderr.readline() == "rebooting\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "pykern demo: interrupted\n" and out == ""
