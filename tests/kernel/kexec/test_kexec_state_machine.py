"""The public ``pykern.testing.KexecStateMachine`` run as a test: random sequences of
allocations, tasks, pins, CMA blocks, kexec loads (with and without NO_CMA), unloads, reboots
and panics keep the K19 invariants and the page accounting after every step."""

from __future__ import annotations

import pytest

from hypothesis import HealthCheck, settings

from pykern.testing import KexecStateMachine

KexecStateMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestKexecStateMachine = pytest.mark.slow(KexecStateMachine.TestCase)
