"""``pykern soak`` (pykern.testing.soak): a short run in CI, its replay lines and exit codes."""

from __future__ import annotations

import json

import pytest

from pykern.testing import soak
from pykern.testing.stateful import KexecStateMachine


def test_short_soak_with_faults_keeps_every_invariant() -> None:
    """A few hundred steps with random fail_page_alloc faults and fail-nth writes: every
    rule's own checks and the K19 invariants, the page accounting (exact: every quirk fixed),
    task data and MM V1 after each step, and failures were really injected."""
    report = soak.soak(soak.SoakConfig(ops=300, seed=0, faults=True))
    assert report["violations"] == [] and report["ok"]
    assert report["ops"] == 300 and report["invariant_checks"] == 300 * len(soak.INVARIANTS)
    assert report["injected_failures"] > 0
    assert {"load", "reboot", "fail_nth", "cma_alloc", "task_map"} <= set(report["rules"])


def test_soak_finds_a_leak_and_its_replay_reproduces_it(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """With the upstream quirks (no fixes) an injected control-page failure leaks CMA blocks
    (K2.9): the page accounting breaks, and the printed replay runs exactly that sequence
    to the same step."""
    monkeypatch.setattr(KexecStateMachine, "fixes", ())
    report = soak.soak(soak.SoakConfig(ops=1000, seed=1, faults=True))
    assert report["violations"] and not report["ok"]
    v = report["violations"][0]
    assert "every_page_accounted_for" in v["at"]
    words = v["replay"].split()
    assert words[:2] == ["pykern", "soak"] and "--faults" in words
    args = soak.build_parser().parse_args(words[2:])
    again = soak.run_sequence(soak._config(soak.build_parser(), args), args.start)
    assert [(x["step"], x["rule"], x["at"]) for x in again["violations"]] == \
        [(v["step"], v["rule"], v["at"])]


def test_soak_main_prints_rate_and_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """``pykern soak`` text and JSON output; a run is fully determined by its options."""
    assert soak.main(["--ops", "60", "--seed", "3", "--steps", "30", "--faults"]) == 0
    out = capsys.readouterr().out
    assert "ops/s" in out and "invariant checks: 240, violations: 0" in out
    assert soak.main(["--ops", "60", "--seed", "3", "--steps", "30", "--faults",
                      "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    soak.main(["--ops", "60", "--seed", "3", "--steps", "30", "--faults", "--json"])
    second = json.loads(capsys.readouterr().out)
    assert first["rules"] == second["rules"]
    assert first["injected_failures"] == second["injected_failures"]


def test_soak_usage_errors_and_ctrl_c(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options exit 2; Ctrl-C prints the summary of what finished and exits 130."""
    assert soak.main(["--ops", "0"]) == 2
    assert soak.main(["--ops", "10", "--ram-max", "8M"]) == 2
    capsys.readouterr()
    real = soak.run_sequence
    calls = []

    def interrupted(config: soak.SoakConfig, index: int) -> dict[str, object]:
        calls.append(index)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(config, index)

    monkeypatch.setattr(soak, "run_sequence", interrupted)
    assert soak.main(["--ops", "100", "--steps", "20"]) == 130
    out = capsys.readouterr().out
    assert "interrupted after 20 of 100 ops" in out and "invariant checks: 80" in out
