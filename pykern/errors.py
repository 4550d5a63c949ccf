"""Every exception type pykern raises, in one module.

What a user can get, by the kind of mistake or event:

- **A kernel refusal** is an ``OSError`` whose ``errno`` is the kernel's, as Python's ``os``
  module reports a failed system call: ``m.kexec_file_load`` raises a plain ``OSError`` (the
  kernel functions underneath raise :class:`KexecError`, which the syscall turns into its
  errno), :class:`DdebugError` is a dynamic debug query the kernel rejects, and ``m.read`` /
  ``m.write`` raise ``OSError``/``FileNotFoundError``.
- **A bad argument** (a size, a range, a pfn, a double free) is a ``ValueError`` naming the bad
  part; :class:`FdtError`, :class:`ScenarioError` and :class:`SnapshotError` are the
  ``ValueError`` kinds for a device tree, a scenario file and a snapshot file.
- **A machine that stopped**: :class:`MachineHalted` (every call but ``phys_read`` and
  ``phys_write`` after a halt) and :class:`RelocationError` (the relocation walk met an entry
  it cannot follow, so the machine halts) are ``RuntimeError`` kinds.
- **A broken invariant found by pykern.testing**: :class:`InvariantViolation` and
  :class:`SweepFailure` are ``AssertionError`` kinds, so pytest reports them as failed checks.

The modules that raise them re-export them under their old names.
"""

from __future__ import annotations

__all__ = ["KexecError", "DdebugError", "FdtError", "SnapshotError", "ScenarioError",
           "MachineHalted", "RelocationError", "InvariantViolation", "SweepFailure"]


class KexecError(OSError):
    """A kernel-side failure: ``errno`` is the value the syscall returns."""

    def __init__(self, err: int, why: str) -> None:
        super().__init__(err, why)


class DdebugError(OSError):
    """A query the kernel refuses (``-EINVAL``/``-E2BIG`` from the control write)."""


class FdtError(ValueError):
    """A malformed device tree or a libfdt-style failure.

    ``code`` names the libfdt error it stands for (``"BADMAGIC"``,
    ``"TRUNCATED"``, ``"NOTFOUND"``, ``"EXISTS"``, ``"NOSPACE"``, ...).
    The kexec loaders map every FdtError to EINVAL (rule ARCH A18).
    """

    def __init__(self, message: str, code: str = "BADSTRUCTURE") -> None:
        super().__init__(message)
        self.code = code


class SnapshotError(ValueError):
    """A file that is not a snapshot this pykern can restore (bad magic, other format or
    version, truncated, corrupt)."""


class ScenarioError(ValueError):
    """A mistake in a scenario file: the file, the 1-based line (when found) and the key at
    fault (:func:`pykern.scenario.find_key_line` finds the line)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = self.file or "<scenario>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class MachineHalted(RuntimeError):
    """The machine has halted: only ``phys_read`` and ``phys_write`` still work."""


class RelocationError(RuntimeError):
    """The relocation walk met an entry that points outside RAM."""


class InvariantViolation(AssertionError):
    """A K19 invariant does not hold; ``rule`` is its ID."""

    def __init__(self, rule: str, what: str) -> None:
        super().__init__(f"{rule}: {what}")
        self.rule = rule


class SweepFailure(AssertionError):
    """The sweep found an outcome the kernel would not give (the message says which)."""
