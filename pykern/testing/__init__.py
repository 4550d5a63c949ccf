"""pykern as a test bench: the pytest plugin, hypothesis strategies and a state machine.

Nothing here is imported by ``pykern`` itself; importing this package pulls in neither
hypothesis nor pytest.  ``KexecStateMachine`` (which needs hypothesis) is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KexecStateMachine"]


def __getattr__(name: str) -> Any:
    if name == "KexecStateMachine":
        from .stateful import KexecStateMachine
        return KexecStateMachine
    raise AttributeError(f"module 'pykern.testing' has no attribute {name!r}")
