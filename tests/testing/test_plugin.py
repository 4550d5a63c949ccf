"""The pykern pytest plugin (pykern.testing.plugin): fixtures, options, the failure report
section, the installed ``pytest11`` entry point, and the worked examples in ``examples/``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pykern._fast

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]

FIXTURE_TESTS = """
    from pykern import Machine

    def test_machine_is_small_default(machine):
        assert isinstance(machine, Machine)
        assert sum(size for _, size in machine.banks) == 256 << 20
        assert machine.generation == 0 and machine.cmdline == ""

    def test_factory_kwargs_override(machine_factory):
        a = machine_factory(ram="64M", cmdline="cma=8M")
        b = machine_factory(arch="x86_64", seed=99)
        assert machine_factory.machines == [a, b]
        assert sum(size for _, size in a.banks) == 64 << 20
        assert a.dma_contiguous_default_area.count == 2048
        assert (b.arch, b.seed) == ("x86_64", 99)

    def test_report_options(machine, machine_factory, pytestconfig):
        m = machine_factory(ram="64M")
        print("OPTIONS", machine.arch, machine.seed, machine.extensions,
              m.arch, m.seed, m.extensions, m.memops.__name__.rsplit(".", 1)[-1])
"""


def test_fixtures_with_default_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=3)
    # PYKERN_NO_EXTENSIONS=1 makes a machine's default the pure twins (extensions=False)
    ext = "False" if pykern._fast.NO_EXTENSIONS else "None"
    result.stdout.fnmatch_lines([f"*OPTIONS arm64 0 {ext} arm64 0 {ext} *"])


def test_options_change_arch_seed_and_extensions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS)
    result = pytester.runpytest("-s", "--pykern-arch=x86_64", "--pykern-seed=7",
                                "--pykern-no-extensions")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["pykern: arch=x86_64 seed=7 extensions=python",
                                 "*OPTIONS x86_64 7 False x86_64 7 False _memops_py*"])


def test_bad_arch_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one(machine):\n    pass\n")
    result = pytester.runpytest("--pykern-arch=riscv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pykern-arch*invalid choice*riscv*"])


FAILING_TESTS = """
    def test_passes(machine):
        assert machine.generation == 0

    def test_fails(machine, machine_factory):
        other = machine_factory(arch="x86_64", cmdline="cma=8M crashkernel=16M")
        assert other.panic() is None          # nothing loaded: the machine halts (K17.4)
        assert other.halted
        assert machine.generation == 1, "expected a reboot"

    def test_fails_without_machines():
        assert False
"""


def test_failure_report_has_a_pykern_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_report=FAILING_TESTS)
    rec = pytester.inline_run("--pykern-seed=5")
    reports = {r.nodeid.split("::")[-1]: r for r in rec.getreports("pytest_runtest_logreport")
               if r.when == "call"}
    assert reports["test_passes"].passed and reports["test_fails"].failed
    assert [name for name, _ in reports["test_passes"].sections if name == "pykern"] == []
    assert [name for name, _ in reports["test_fails_without_machines"].sections
            if name == "pykern"] == []
    (text,) = [body for name, body in reports["test_fails"].sections if name == "pykern"]
    first, second = text.split("machine <Machine ")[1:]
    # the `machine` fixture's machine: its settings and the tail of its kernel log
    assert "arch=arm64 seed=5 generation=0" in first and "cmdline=''" in first
    assert "last 10 of " in first
    log_lines = [ln for ln in first.splitlines() if ln.startswith("    <")]
    assert len(log_lines) == 10
    # the halted x86_64 machine: no dmesg, but still described
    assert "arch=x86_64 seed=5 generation=0 HALTED" in second
    assert "cmdline='cma=8M crashkernel=16M'" in second and "dmesg unavailable" in second
    assert text.splitlines()[-1] == \
        "replay: pytest --pykern-seed=5 test_report.py::test_fails"


def test_failure_section_in_terminal_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_report=FAILING_TESTS)
    result = pytester.runpytest("--pykern-arch=x86_64", "--pykern-seed=3")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*- pykern -*",
        "machine <Machine x86_64 256 MiB gen 0*",
        "  arch=x86_64 seed=3 generation=0",
        "replay: pytest --pykern-seed=3 --pykern-arch=x86_64 test_report.py::test_fails",
    ])


OUTSIDE_TEST = """
    def test_machine(machine):
        assert machine.arch == "x86_64" and machine.seed == 11

    def test_factory(machine_factory):
        m = machine_factory(ram="64M", arch="arm64")
        assert m.arch == "arm64" and m.seed == 11
"""


def test_entry_point_works_outside_the_repo(tmp_path: Path) -> None:
    """No conftest, no -p: the installed pytest11 entry point provides the fixtures."""
    (tmp_path / "test_outside.py").write_text(textwrap.dedent(OUTSIDE_TEST))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--pykern-arch=x86_64", "--pykern-seed=11", "test_outside.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    assert not (tmp_path / "conftest.py").exists()


def test_plugin_import_does_not_pull_in_hypothesis() -> None:
    code = ("import sys, pykern.testing.plugin as p; "
            "print(sorted(n for n in ('hypothesis', 'pykern.testing.strategies', "
            "'pykern.testing.fuzz') if n in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_examples_pass() -> None:
    """examples/ is outside testpaths; run it the way its README says."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(REPO / "examples")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout
