"""``pykern fuzz --scheduler`` (pykern.testing.fuzz_dask, issue 21): the fuzz campaign on a Dask
cluster gives the cases, results and replay lines of the local pool; lost workers, Ctrl-C,
a missing Dask and bad scheduler options.

The cases are the fuzz campaign's, so what is checked here is the plumbing: the same
``run_case`` results come back, case for case, whatever runs them.  Every cluster started
here is closed, and the tests check that its worker processes are gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pykern.testing import fuzz

pytestmark = pytest.mark.slow

distributed = pytest.importorskip("distributed")
fuzz_dask = pytest.importorskip("pykern.testing.fuzz_dask")
psutil = pytest.importorskip("psutil")

#: Report keys that depend on where and how fast the cases ran, not on what they found.
WHERE = {"seconds", "cycles_per_second", "cycles_per_second_per_core", "scheduler"}


def outcome(report: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in report.items() if k not in WHERE}
    out["per_mode"] = {m: {k: v for k, v in s.items() if k not in WHERE}
                       for m, s in report["per_mode"].items()}
    return out


def main_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    rc = fuzz.main([*argv, "--json", "--quiet"])
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1, out
    return rc, json.loads(out)


def without_seconds(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """run_case results sorted by case, without their wall-clock ``seconds``."""
    out = []
    for res in sorted(results, key=lambda r: int(r["case"])):
        res = dict(res, modes={m: {k: v for k, v in s.items() if k != "seconds"}
                               for m, s in res["modes"].items()})
        out.append(res)
    return out


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _workers(pid: int) -> list[int]:
    """Descendants of ``pid``, but multiprocessing's resource tracker: that one is started
    once per process, on its first spawn, and lives until that process exits."""
    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def _gone(pids: list[int]) -> list[int]:
    """The pids of ``pids`` still running after a few seconds' grace."""
    for _ in range(100):
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A 2-worker local cluster, started the way ``--scheduler local:2`` starts it; tests
    reach it by its address, as ``--scheduler tcp://...`` does."""
    cl, client = fuzz_dask._start_local(2)
    cl.pykern_client = client
    try:
        yield cl
    finally:
        pids = list(client.run(os.getpid).values())
        fuzz_dask._close(client, cl)
        assert _gone(pids) == [], "local cluster workers outlived the cluster"


def collect(config: fuzz.Config, where: str, cases: int, batch: int, runner: Any = None,
            ) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """run_on_dask over cases 0..cases-1: every batch handed to ``take``, and ``info``."""
    got: list[list[dict[str, Any]]] = []
    info: dict[str, Any] = {}
    kwargs = {} if runner is None else {"runner": runner}
    fuzz_dask.run_on_dask(config, fuzz_dask.parse_scheduler(where), list(range(cases)),
                          lambda part: got.append(list(part)), info, batch, **kwargs)
    return got, info


SMALL = fuzz.Config(seed=5, layouts=12, max_kernel=256 << 10, max_initrd=256 << 10,
                    max_kernel_text="256K", max_initrd_text="256K")


# ----------------------------------------------------------------------- same cases, same report
def test_scheduler_local_2_reports_what_jobs_2_reports(capsys: pytest.CaptureFixture[str],
                                                       ) -> None:
    """Issue 21: `--scheduler local:2` and `--jobs 2`, same --layouts/--seed: the same JSON
    report but for wall-clock numbers and the scheduler's name; no worker left behind."""
    before = set(_workers(os.getpid()))
    rc_d, dask_rep = main_json(capsys, "--scheduler", "local:2", "--layouts", "40",
                               "--seed", "5")
    rc_p, pool_rep = main_json(capsys, "--jobs", "2", "--layouts", "40", "--seed", "5")
    assert rc_d == rc_p == 0
    assert dask_rep["scheduler"] == "local:2" and pool_rep["scheduler"] is None
    assert dask_rep["jobs"] == pool_rep["jobs"] == 2 and dask_rep["batch"] == pool_rep["batch"]
    assert dask_rep["cases"] == 40 and dask_rep["cycles"] == 80
    assert outcome(dask_rep) == outcome(pool_rep)
    left = [pid for pid in _workers(os.getpid()) if pid not in before]
    assert _gone(left) == []


def test_an_address_gets_the_cases_of_the_local_pool(cluster: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`--scheduler tcp://HOST:PORT` on a running scheduler: same report as `--jobs 2`, and the
    cases came back in several batches as they finished (here 3 cases each)."""
    argv = ["--layouts", "12", "--seed", "3", "--max-kernel", "256K", "--max-initrd", "256K"]
    rc_d, dask_rep = main_json(capsys, "--scheduler", cluster.scheduler_address, "--batch",
                               "3", *argv)
    rc_p, pool_rep = main_json(capsys, "--jobs", "2", "--batch", "3", *argv)
    assert rc_d == rc_p == 0 and dask_rep["scheduler"] == cluster.scheduler_address
    assert outcome(dask_rep) == outcome(pool_rep)
    got, info = collect(SMALL, cluster.scheduler_address, 12, 3)
    assert [len(part) for part in got] == [3, 3, 3, 3]        # streamed one batch at a time
    assert {k: info[k] for k in ("scheduler", "jobs", "batch")} == \
        {"scheduler": cluster.scheduler_address, "jobs": 2, "batch": 3}


def test_failures_and_replay_lines_match_case_for_case(cluster: Any) -> None:
    """A K19.5 violation injected into case 3 (cma mode) on the workers gives, case for case,
    the run_case results of the same injection in this process, and the same replay line."""
    def runner(config: Any, indices: Any) -> Any:
        from pykern.testing.fuzz import runner as f
        real = f.run_cycle

        def broken(config: Any, case: Any, mode: str, stats: Any) -> Any:
            if case.index == 3 and mode == "cma":
                raise f.CaseFailure("violation", "K19.5", "injected")
            return real(config, case, mode, stats)

        f.run_cycle = broken
        try:
            return f.run_chunk(config, indices)
        finally:
            f.run_cycle = real

    got, _ = collect(SMALL, cluster.scheduler_address, 12, 4, runner)
    remote = without_seconds([r for part in got for r in part])
    local = without_seconds(runner(SMALL, range(12)))
    assert remote == local
    failures = [f for r in remote for f in r["failures"]]
    assert [(f["case"], f["mode"], f["rule"]) for f in failures] == [(3, "cma", "K19.5")]
    assert failures[0]["replay"] == SMALL.replay(3, "cma", remote[3]["arch"])
    assert remote[3]["modes"]["cma"]["violations"] == {"K19.5": 1}
    assert fuzz.build_report(SMALL, 2, remote, 1.0)["failures"] == failures


def test_the_local_cluster_listens_on_loopback_only(cluster: Any) -> None:
    """`--scheduler local:N` opens no public port: the scheduler, its HTTP server (no
    dashboard) and every worker listen on 127.0.0.1, none on the default 8787; the workers
    run one thread, ignore SIGINT and do not profile."""
    procs = [psutil.Process()] + [psutil.Process(pid) for pid in
                                  cluster.pykern_client.run(os.getpid).values()]
    listening = [c.laddr for p in procs for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}
    assert all(a.port != 8787 for a in listening)

    def state() -> Any:
        import signal as s
        import dask
        return (s.getsignal(s.SIGINT) == s.SIG_IGN,
                dask.config.get("distributed.worker.profile.enabled"))

    assert list(cluster.pykern_client.run(state).values()) == [(True, False)] * 2
    assert set(cluster.pykern_client.nthreads().values()) == {1}


# ----------------------------------------------------------------------- lost workers
def test_a_lost_worker_has_its_cases_resubmitted(cluster: Any, tmp_path: Path) -> None:
    """The worker running case 5 is killed (SIGKILL) on the first attempt only: the scheduler
    runs that batch again on a worker that lives, and every case comes back as if nothing
    happened; the nanny started a new worker process."""
    marker = tmp_path / "killed"

    def runner(config: Any, indices: Any) -> Any:
        import os as o
        import signal as s
        from pykern.testing.fuzz import runner as f
        if 5 in indices and not marker.exists():
            marker.write_text(str(o.getpid()))
            o.kill(o.getpid(), s.SIGKILL)
        return f.run_chunk(config, indices)

    client = cluster.pykern_client
    pids = set(client.run(os.getpid).values())
    got, _ = collect(SMALL, cluster.scheduler_address, 12, 2, runner)
    assert marker.exists() and int(marker.read_text()) in pids      # a worker did die
    results = [r for part in got for r in part]
    assert sorted(r["case"] for r in results) == list(range(12))
    assert without_seconds(results) == without_seconds(fuzz.run_chunk(SMALL, range(12)))
    assert not _alive(int(marker.read_text()))


def test_a_case_that_always_kills_its_worker_is_reported_alone(cluster: Any) -> None:
    """Case 4 kills every worker that runs it: its batch comes back KilledWorker, each of its
    cases is tried alone, and only case 4 is reported (WorkerDied, with its replay line), as
    the local pool reports a case that kills its worker process."""
    def runner(config: Any, indices: Any) -> Any:
        import os as o
        from pykern.testing.fuzz import runner as f
        if 4 in indices:
            o._exit(3)
        return f.run_chunk(config, indices)

    sched = cluster.scheduler
    allowed = sched.allowed_failures
    sched.allowed_failures = 0           # the default (3) gives the same result, more slowly
    try:
        got, _ = collect(SMALL, cluster.scheduler_address, 8, 4, runner)
    finally:
        sched.allowed_failures = allowed
    results = without_seconds([r for part in got for r in part])
    assert [r["case"] for r in results] == list(range(8))
    dead = results.pop(4)
    assert dead["modes"] == {} and [(f["kind"], f["rule"]) for f in dead["failures"]] == \
        [("error", "WorkerDied")]
    assert "died" in dead["failures"][0]["detail"]
    assert dead["failures"][0]["replay"].startswith("pykern fuzz --layouts 1 --seed 5 --start 4")
    assert results == without_seconds(fuzz.run_chunk(SMALL, [0, 1, 2, 3, 5, 6, 7]))


def test_a_scheduler_lost_mid_campaign_ends_it_with_a_message() -> None:
    """The scheduler goes away after the first batch: run_on_dask raises SchedulerError (the
    campaign reports what finished, then the message, exit 1), and the client's own
    tracebacks are not printed."""
    cl, client = fuzz_dask._start_local(1)
    pids = list(client.run(os.getpid).values())
    got: list[list[dict[str, Any]]] = []

    def take(part: Any) -> None:
        got.append(list(part))
        if len(got) == 1:
            cl.close()                  # scheduler and workers gone, futures outstanding

    try:
        with pytest.raises(fuzz_dask.SchedulerError, match="scheduler-connection-lost|cancel"):
            fuzz_dask.run_on_dask(SMALL, fuzz_dask.parse_scheduler(cl.scheduler_address),
                                  list(range(40)), take, {}, 1)
    finally:
        fuzz_dask._close(client, cl)
    assert 1 <= len(got) < 40
    assert _gone(pids) == []


def test_workers_of_another_pykern_are_refused(cluster: Any, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers whose pykern-emu differs from this one would draw other cases: exit 2, naming
    them, before any case runs."""
    import pykern
    monkeypatch.setattr(pykern, "__version__", "0.0.0-other")
    rc = fuzz.main(["--scheduler", cluster.scheduler_address, "--layouts", "4"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert "run another pykern-emu than this one (0.0.0-other)" in cap.err
    assert cap.err.count("tcp://127.0.0.1:") >= 3          # the scheduler and both workers


# ----------------------------------------------------------------------- Ctrl-C
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_ctrl_c_cancels_the_campaign_and_closes_the_cluster() -> None:
    """Ctrl-C on a terminal (SIGINT to the whole process group) during
    `pykern fuzz --scheduler local:2 --layouts 100000 --json`: exit 130, one JSON report
    marked incomplete, no traceback from the parent or the workers, no process left."""
    proc = subprocess.Popen([sys.executable, "-m", "pykern", "fuzz", "--scheduler", "local:2",
                             "--layouts", "100000", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 60       # a guard against a hang, not a measurement
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                kids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
                workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                           if "spawn_main" in " ".join(p.cmdline())]
            except psutil.Error:
                continue
            if len(workers) == 2 and all(p.cpu_times().user > 0.5 for p in workers):
                break                          # both workers are busy with cases
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.endswith("pykern fuzz: interrupted\n"), err
    report = json.loads(out)
    assert report["incomplete"] is True and report["ok"] is False
    assert report["cases"] < report["layouts"] == 100000 and report["scheduler"] == "local:2"
    assert len(kids) >= 2 and _gone(kids) == []


# ----------------------------------------------------------------------- options and errors
def test_without_dask_the_option_says_how_to_install_it(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)      # import distributed fails
    rc = fuzz.main(["--scheduler", "local:2", "--layouts", "4"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert "pip install 'pykern-emu[dask]'" in cap.err and "--scheduler" in cap.err


@pytest.mark.parametrize("argv, says", [
    (["--scheduler", "local:0"], "at least 1 worker"),
    (["--scheduler", "local:two"], "must be an integer"),
    (["--scheduler", "my laptop"], "not a scheduler address"),
    (["--scheduler", "tcp://10.0.0.1"], "not a scheduler address"),
    (["--scheduler", "local:2", "--jobs", "2"], "not with --scheduler"),
    (["--scheduler", "local:2", "--batch", "0"], "below 1"),
])
def test_bad_scheduler_options_exit_2_with_usage(capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as exc:
        fuzz.main([*argv, "--layouts", "4"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pykern fuzz") and says in err


def test_an_unreachable_scheduler_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import dask
    with socket.socket() as s:                   # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc = fuzz.main(["--scheduler", f"tcp://127.0.0.1:{port}", "--layouts", "4"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert cap.err.startswith(f"pykern fuzz: cannot reach the Dask scheduler at "
                              f"tcp://127.0.0.1:{port}")
