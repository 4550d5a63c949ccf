"""A weak back-reference from a per-boot object to its :class:`~pykern.machine.Machine`.

A CMA area or the fault-injection state needs its machine, and the machine holds them; a
strong reference both ways would make every machine a reference cycle, freed (RAM mapping,
memmap and all) only when the cyclic garbage collector next runs.  With this mixin the
back-reference is weak, so a dropped machine goes at once; pickling (snapshots, ``fork``)
saves the machine itself and makes the reference weak again on load.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["MachineRef"]


class MachineRef:
    """Mixin: ``self._m`` is the machine, held weakly."""

    _mref: weakref.ref[Machine]

    @property
    def _m(self) -> Machine:
        m = self._mref()
        if m is None:
            raise ReferenceError(f"{type(self).__name__}: the machine it belonged to no "
                                 "longer exists")
        return m

    @_m.setter
    def _m(self, m: Machine) -> None:
        self._mref = weakref.ref(m)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mref"] = self._m
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        m = state.pop("_mref")
        self.__dict__.update(state)
        self._mref = weakref.ref(m)
