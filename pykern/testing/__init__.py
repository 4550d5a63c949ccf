"""pykern as a test bench: the pytest plugin, hypothesis strategies and a state machine.

Nothing here is imported by ``pykern`` itself; importing this package pulls in neither
hypothesis nor pytest.  ``KexecStateMachine`` (which needs hypothesis) is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KexecStateMachine", "fail_nth_sweep"]


def __getattr__(name: str) -> Any:
    if name == "KexecStateMachine":
        from .stateful import KexecStateMachine
        return KexecStateMachine
    if name == "fail_nth_sweep":          # pykern.testing.faults: needs neither library
        from .faults import fail_nth_sweep
        return fail_nth_sweep
    raise AttributeError(f"module 'pykern.testing' has no attribute {name!r}")
