"""``pykern fuzz`` (pykern.testing.fuzz): the JSON report, determinism, --jobs, option errors
and replay lines.  Small images keep every campaign here well under a second or two."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import sys
from typing import Any

import pytest

from pykern.testing import fuzz
from pykern.testing.fuzz import command, runner
from pykern.testing.invariants import InvariantViolation

SMALL = ["--max-kernel", "256K", "--max-initrd", "256K", "--quiet"]
#: Report keys that measure time or say how the cases ran, rather than count outcomes.
TIMING = {"seconds", "cycles_per_second", "cycles_per_second_per_core", "jobs", "batch"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    rc = fuzz.main([*argv, "--json"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1, out                      # one JSON object, nothing else
    return rc, json.loads(lines[0])


def counts(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its wall-clock numbers."""
    out = {k: v for k, v in report.items() if k not in TIMING}
    out["per_mode"] = {m: {k: v for k, v in s.items() if k not in TIMING}
                       for m, s in report["per_mode"].items()}
    return out


@pytest.fixture(scope="module")
def seed1() -> dict[str, Any]:
    """20 cases, both modes, both arches, seed 1 (shared by several tests)."""
    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        rc = fuzz.main(["--layouts", "20", "--seed", "1", "--json", *SMALL])
    finally:
        sys.stdout = old
    report: dict[str, Any] = json.loads(buf.getvalue())
    report["_rc"] = rc
    return report


def test_json_report_structure_and_counts(seed1: dict[str, Any]) -> None:
    r = seed1
    assert r["_rc"] == 0 and r["ok"] is True and r["failures"] == []
    assert r["cases"] == r["layouts"] == 20 and r["seed"] == 1 and r["start"] == 0
    assert r["modes"] == ["cma", "no-cma"] and r["arches"] == ["arm64", "x86_64"]
    assert set(r["cases_by_arch"]) == {"arm64", "x86_64"}
    assert sum(r["cases_by_arch"].values()) == 20
    assert r["cycles"] == 40 and r["cycles_per_second"] > 0
    for mode, s in r["per_mode"].items():
        assert s["cycles"] == 20
        assert s["loads"] + s["failed_loads"] == 20
        assert sum(s["failed"].values()) == s["failed_loads"]
        assert s["all_cma"] + s["mixed"] + s["walk_only"] + s["crash_loads"] == s["loads"]
        assert s["reboots"] == s["loads"]            # every placed image is booted
        assert s["violations"] == {} and s["errors"] == 0
        assert s["hot_phase_bytes"] % 4096 == 0 and s["cycles_per_second"] > 0
        assert all(name.startswith("E") for name in s["failed"])
    no_cma, cma = r["per_mode"]["no-cma"], r["per_mode"]["cma"]
    assert no_cma["all_cma"] == no_cma["mixed"] == 0 and no_cma["leaks"] == 0
    assert cma["all_cma"] + cma["mixed"] > 0         # some loads did take CMA blocks
    # NO_CMA copies every walk-placed page in the hot phase; CMA loads copy fewer
    assert no_cma["hot_phase_bytes"] > cma["hot_phase_bytes"]


def test_same_seed_same_counts_other_seed_differs(capsys: pytest.CaptureFixture[str],
                                                  seed1: dict[str, Any]) -> None:
    rc, again = run(capsys, "--layouts", "20", "--seed", "1", *SMALL)
    assert rc == 0
    first = {k: v for k, v in seed1.items() if k != "_rc"}
    assert counts(again) == counts(first)
    _, other = run(capsys, "--layouts", "20", "--seed", "2", *SMALL)
    assert counts(other)["per_mode"] != counts(first)["per_mode"]


def test_jobs_2_gives_the_counts_of_jobs_1(capsys: pytest.CaptureFixture[str],
                                           seed1: dict[str, Any]) -> None:
    rc, par = run(capsys, "--layouts", "20", "--seed", "1", "--jobs", "2", *SMALL)
    assert rc == 0 and par["jobs"] == 2
    first = {k: v for k, v in seed1.items() if k != "_rc"}
    assert counts(par) == counts(first)


def test_a_case_replays_alone() -> None:
    """Case 3 of a campaign is the same machine and load when run with --start 3."""
    cfg = fuzz.Config(seed=7, layouts=5, max_kernel=256 << 10, max_initrd=256 << 10)
    alone = fuzz.Config(seed=7, start=3, layouts=1, max_kernel=256 << 10,
                        max_initrd=256 << 10)
    a, b = fuzz.draw_case(cfg, 3), fuzz.draw_case(alone, 3)
    assert (a.layout, a.kernel, a.initrd, a.cmdline, a.flags) == \
        (b.layout, b.kernel, b.initrd, b.cmdline, b.flags)
    # forcing the arch the case drew leaves every other draw as it was
    forced = fuzz.draw_case(fuzz.Config(seed=7, arches=(a.arch,), max_kernel=256 << 10,
                                        max_initrd=256 << 10), 3)
    assert forced.layout == a.layout and forced.kernel == a.kernel
    ra, rb = fuzz.run_case(cfg, 3), fuzz.run_case(alone, 3)
    for res in (ra, rb):
        for stats in res["modes"].values():
            del stats["seconds"]
    assert ra == rb


@pytest.mark.parametrize("argv", [
    [],                                        # --layouts is required
    ["--layouts", "0"],
    ["--layouts", "x"],
    ["--layouts", "2", "--jobs", "0"],
    ["--layouts", "2", "--seed", "-1"],
    ["--layouts", "2", "--mode", "sometimes"],
    ["--layouts", "2", "--arch", "riscv"],
    ["--layouts", "2", "--ram-max", "16M"],
    ["--layouts", "2", "--ram-max", "lots"],
    ["--layouts", "2", "--max-kernel", "4K"],
    ["--layouts", "2", "--fixes", "no-such-fix"],
])
def test_bad_options_exit_2_with_usage(capsys: pytest.CaptureFixture[str],
                                       argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        fuzz.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pykern fuzz") and "error:" in err


def test_an_unexpected_error_is_reported_with_a_replay_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz.run_cycle

    def flaky(config: fuzz.Config, case: fuzz.Case, mode: str,
              stats: dict[str, Any]) -> list[fuzz.CaseFailure]:
        if case.index == 3 and mode == "cma":
            raise RuntimeError("injected")
        return real(config, case, mode, stats)

    monkeypatch.setattr(runner, "run_cycle", flaky)
    rc = fuzz.main(["--layouts", "6", "--seed", "5", *SMALL])
    out = capsys.readouterr().out
    assert rc == 1
    replays = [line.strip() for line in out.splitlines()
               if line.strip().startswith("pykern fuzz --")]
    assert len(replays) == 1, out
    line = replays[0]
    assert "RuntimeError: injected" in line
    arch = fuzz.draw_case(fuzz.Config(seed=5), 3).arch
    cmd = line.split("#")[0].split()
    assert cmd[:9] == ["pykern", "fuzz", "--layouts", "1", "--seed", "5", "--start", "3",
                       "--mode"]
    assert cmd[9] == "cma" and cmd[cmd.index("--arch") + 1] == arch
    assert "== cma ==" in out and "errors: 1" in out      # the campaign went on
    # the replay line runs that one case again (and fails again while the bug is in)
    rc, rep = run(capsys, *cmd[2:], "--quiet")
    assert rc == 1 and rep["cases"] == 1 and rep["start"] == 3
    assert [(f["case"], f["mode"], f["kind"]) for f in rep["failures"]] == [(3, "cma", "error")]
    monkeypatch.setattr(runner, "run_cycle", real)
    rc, rep = run(capsys, *cmd[2:], "--quiet")
    assert rc == 0 and rep["failures"] == []


def test_an_invariant_violation_fails_the_campaign(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pykern.testing import invariants

    def broken(m: Any, im: Any) -> None:
        raise InvariantViolation("K19.5", "injected")

    monkeypatch.setattr(invariants, "check_kimage", broken)
    rc, rep = run(capsys, "--layouts", "3", "--seed", "1", "--mode", "no-cma", *SMALL)
    s = rep["per_mode"]["no-cma"]
    assert rc == 1 and rep["ok"] is False
    assert s["violations"] == {"K19.5": s["loads"]} and s["loads"] > 0
    assert {f["kind"] for f in rep["failures"]} == {"violation"}
    assert all(f["replay"].startswith("pykern fuzz --layouts 1 --seed 1 --start ")
               and "--mode no-cma" in f["replay"] for f in rep["failures"])


def test_text_report_lists_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    rc = fuzz.main(["--layouts", "3", "--arch", "x86_64", "--mode", "cma", *SMALL])
    out = capsys.readouterr().out
    assert rc == 0
    assert "== cma ==" in out and "== no-cma ==" not in out
    assert "cycles/s" in out and "all in CMA" in out and "invariant violations: none" in out
    assert "'x86_64': 3" in out


def test_progress_line_only_after_a_second() -> None:
    stream = io.StringIO()
    p = command._Progress(10, True, stream)
    p.update(1, 2)
    assert stream.getvalue() == ""                      # a short run prints nothing
    p.t0 -= 2.0
    p.update(10, 20)
    p.close()
    text = stream.getvalue()
    assert text.startswith("\r") and "10/10 cases" in text and text.endswith("\n")


def test_python_dash_m_runs_the_campaign() -> None:
    proc = subprocess.run([sys.executable, "-m", "pykern.testing.fuzz", "--layouts", "2",
                           "--json", *SMALL], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cases"] == 2
    bad = subprocess.run([sys.executable, "-m", "pykern.testing.fuzz", "--layouts", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "usage: pykern fuzz" in bad.stderr


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                    reason="the injected crash reaches the workers only through fork")
def test_a_dying_worker_loses_only_its_case(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz.run_case

    def crashing(config: fuzz.Config, index: int) -> dict[str, Any]:
        if index == 4:
            os._exit(3)                  # the worker process vanishes mid-case
        return real(config, index)

    monkeypatch.setattr(runner, "run_case", crashing)
    rc, rep = run(capsys, "--layouts", "8", "--seed", "1", "--jobs", "2", *SMALL)
    assert rc == 1 and rep["cases"] == 8
    assert [(f["case"], f["kind"]) for f in rep["failures"]] == [(4, "error")]
    assert "died" in rep["failures"][0]["detail"]
    assert rep["failures"][0]["replay"].startswith("pykern fuzz --layouts 1 --seed 1 --start 4")
    assert all(s["cycles"] == 7 for s in rep["per_mode"].values())


# ------------------------------------------------------------------- issue 16: Ctrl-C
def test_interrupt_keeps_the_finished_cases(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during case 5 (one job): the report covers cases 0-4, says it is incomplete,
    and the exit code is 130; no traceback."""
    real = fuzz.run_case

    def interrupted(config: fuzz.Config, index: int) -> dict[str, Any]:
        if index == 5:
            raise KeyboardInterrupt
        return real(config, index)

    monkeypatch.setattr(runner, "run_case", interrupted)
    rc = fuzz.main(["--layouts", "50", "--seed", "1", "--json", *SMALL])
    cap = capsys.readouterr()
    report = json.loads(cap.out)
    assert rc == 130 and cap.err == "pykern fuzz: interrupted\n"
    assert report["incomplete"] is True and report["ok"] is False
    assert report["cases"] == 5 and report["layouts"] == 50
    assert all(s["cycles"] == 5 for s in report["per_mode"].values())
    rc = fuzz.main(["--layouts", "50", "--seed", "1", *SMALL])
    out = capsys.readouterr().out
    assert rc == 130 and out.startswith("pykern fuzz: interrupted: 5 of 50 cases finished")


def test_complete_report_is_marked_complete(seed1: dict[str, Any]) -> None:
    assert seed1["incomplete"] is False


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_sigint_stops_a_parallel_campaign() -> None:
    """Issue 16: SIGINT to `pykern fuzz --layouts 100000 --jobs 2 --json` used to leave the
    workers running; now it ends with exit 130, one JSON report marked incomplete on stdout,
    and no worker process left behind."""
    import signal
    import time
    # its own session, so that whatever happens the whole group can be killed at the end
    proc = subprocess.Popen([sys.executable, "-m", "pykern", "fuzz", "--layouts", "100000",
                             "--jobs", "2", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60       # a guard against a hang, not a measurement
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            workers = _children(proc.pid)
        assert len(workers) == 2, "the workers never started"
        proc.send_signal(signal.SIGINT)        # to the parent only, as `kill -INT` does
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None or any(_alive(pid) for pid in workers):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.endswith("pykern fuzz: interrupted\n")
    report = json.loads(out)
    assert report["incomplete"] is True and report["cases"] < report["layouts"] == 100000
    assert report["jobs"] == 2
    for pid in workers:
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        assert not _alive(pid), f"worker {pid} outlived the campaign"


def test_progress_only_on_a_terminal(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No carriage-return progress line into logs: main enables it only when stderr is a
    terminal (and --quiet is not given)."""
    seen: list[bool] = []
    real = command._Progress

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, total: int, enabled: bool, stream: Any) -> None:
            seen.append(enabled)
            super().__init__(total, enabled, stream)

    monkeypatch.setattr(command, "_Progress", Spy)
    argv = ["--layouts", "1", "--max-kernel", "256K", "--max-initrd", "256K", "--json"]
    fuzz.main(argv)
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", tty)
    fuzz.main(argv)
    fuzz.main([*argv, "--quiet"])
    capsys.readouterr()
    assert seen == [False, True, False]


def test_sizes_that_never_fit_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--max-kernel/--max-initrd above --ram-max could never be loaded: exit 2 up front."""
    with pytest.raises(SystemExit) as exc:
        fuzz.main(["--layouts", "1", "--max-kernel", "4G"])
    assert exc.value.code == 2
    assert "--max-kernel" in capsys.readouterr().err
