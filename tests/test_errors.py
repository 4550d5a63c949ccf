"""pykern.errors: every exception type in one module, each the kind of error Python users
expect for its cause (OSError with the kernel's errno, ValueError, RuntimeError,
AssertionError)."""

from __future__ import annotations

import errno

import pytest

from pykern import Machine, errors, images
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_INITRAMFS


def test_every_exception_type_lives_in_errors_and_keeps_its_old_home() -> None:
    from pykern.kernel.dynamic_debug import DdebugError
    from pykern.kernel.kexec.core import KexecError
    from pykern.kernel.kexec.reboot import RelocationError
    from pykern.lib.fdt import FdtError
    from pykern.snapshot import SnapshotError
    from pykern.testing.faults import SweepFailure
    from pykern.testing.invariants import InvariantViolation
    assert (KexecError, DdebugError, RelocationError, FdtError, SnapshotError, SweepFailure,
            InvariantViolation) == (errors.KexecError, errors.DdebugError,
                                    errors.RelocationError, errors.FdtError,
                                    errors.SnapshotError, errors.SweepFailure,
                                    errors.InvariantViolation)
    for name in errors.__all__:
        assert getattr(errors, name).__module__ == "pykern.errors", name


def test_a_kernel_refusal_is_an_oserror_with_the_kernels_errno() -> None:
    m = Machine("64M", cmdline="cma=0")
    with pytest.raises(OSError) as info:
        m.kexec_file_load(images.arm64_image(1 << 20), None, "", 0x4000)   # K1.3: no such flag
    assert info.value.errno == errno.EINVAL
    x86 = Machine("64M", arch="x86_64", cmdline="cma=0")
    with pytest.raises(OSError) as kinfo:                    # K2.4: x86_64 probes say ENOEXEC
        x86.kexec_file_load(b"\0" * 4096, None, "", KEXEC_FILE_NO_INITRAMFS)
    assert kinfo.value.errno == errno.ENOEXEC


def test_a_halted_machine_raises_machine_halted() -> None:
    """K16.13: after a halt only phys_read/phys_write answer; MachineHalted is a
    RuntimeError, so code written against the old RuntimeError still catches it."""
    m = Machine("256M")
    assert m.panic() is None                    # K17.4: no crash image, so the machine halts
    assert m.halted
    with pytest.raises(errors.MachineHalted, match="halted"):
        m.read("/proc/buddyinfo")
    assert issubclass(errors.MachineHalted, RuntimeError)
    assert m.phys_read(0x4000_0000, 4) == bytes(4)
