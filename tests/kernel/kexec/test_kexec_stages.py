"""``kernel_kexec`` in stages (K16.1, K16.10, K16.11, K16.13; GIC-H1): ``KexecReboot``'s
``prepare``, ``hot_phase``, ``verify``, ``boot_next`` and ``finish`` called one by one leave
what ``m.kernel_kexec()`` leaves, refuse to run out of order, and the ``benchmark_kexec``
fixture puts exactly one of them inside the timer."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import struct
from typing import Any, Callable

import pytest

from pykern import Machine, images
from pykern.drivers.dma import DmaDevice
from pykern.drivers.gic import GICv3, MsiSource
from pykern.errors import RelocationError
from pykern.kernel.kexec.reboot import KEXEC_STAGES, KexecReboot
from pykern.kernel.kexec.uapi import KEXEC_FILE_NO_CMA
from pykern.testing.plugin import KexecBench

pytest_plugins = ["pytester"]

MiB = 1 << 20
_KERNEL = {"arm64": images.arm64_image(4 * MiB, seed=3), "x86_64": images.bzimage(4 * MiB, seed=3)}
_INITRD = images.payload_pattern(MiB + 321, seed=9)


def _device(arch: str) -> Any:
    """A device that keeps writing through the reboot: the GIC on arm64, a platform DMA
    master that ignores shutdown on x86_64 (the GIC is arm64 only)."""
    if arch == "arm64":
        return GICv3(honours_shutdown=False, sources=[MsiSource("eth0", nvec=32)], vpes=2)
    return DmaDevice("nic0", bus="platform", honours_shutdown=False)


def _loaded(arch: str, flags: int, device: bool) -> tuple[Machine, list[Any]]:
    devices = [_device(arch)] if device else []
    m = Machine("512M", arch=arch, cmdline="cma=64M", devices=devices, seed=11)
    m.kexec_file_load(_KERNEL[arch], _INITRD, "cma=64M next=1", flags)
    return m, devices


def _state(m: Machine, result: Any, devices: list[Any]) -> dict[str, Any]:
    fields = dataclasses.asdict(result)
    del fields["hot_phase_seconds"]                   # wall time
    return {"ram": hashlib.sha256(m.ram).hexdigest(), "result": fields,
            "dmesg": m.dmesg(), "generation": m.generation, "halted": m.halted,
            "buddyinfo": m.read("/proc/buddyinfo"), "meminfo": m.read("/proc/meminfo"),
            "cmdline": m.read("/proc/cmdline"), "loaded": m.read("/sys/kernel/kexec_loaded"),
            "traces": [list(d.trace) for d in devices]}


MODES = {"cma": 0, "no-cma": KEXEC_FILE_NO_CMA}


@pytest.mark.parametrize("device", [False, True], ids=["no-device", "device"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k16_1_stages_in_order_equal_kernel_kexec(arch: str, mode: str, device: bool) -> None:
    """K16.1/K16.13: prepare, hot_phase, verify, boot_next, finish called one by one leave the
    same RAM, KexecResult (wall time apart), dmesg, procfs text and device traces as
    ``m.kernel_kexec()``."""
    m, devices = _loaded(arch, MODES[mode], device)
    whole = _state(m, m.kernel_kexec(), devices)

    m, devices = _loaded(arch, MODES[mode], device)
    stages = m.kernel_kexec_stages()
    for name in KEXEC_STAGES[:-1]:
        assert stages.next_stage == name
        getattr(stages, name)()
        assert stages.stage == name
    result = stages.finish()
    assert stages.next_stage is None and result is stages.result
    assert _state(m, result, devices) == whole
    assert whole["generation"] == 1
    if device:
        assert whole["result"]["scribbles"]             # the device wrote during the reboot
    else:
        assert whole["result"]["verified"] and whole["result"]["corrupted"] == []


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k16_3_each_stage_does_its_own_part(arch: str) -> None:
    """GIC-H1 marks, K16.3, K16.13: prepare sets kexec_in_progress and fixes the clock but
    copies nothing; hot_phase alone puts the NO_CMA image at its destinations; the next
    generation exists only after boot_next; the corruption scan runs in finish."""
    m, _ = _loaded(arch, KEXEC_FILE_NO_CMA, device=False)
    image = m.kexec_image
    assert image is not None
    seg = image.segments[0]
    want = bytes(seg.buf[:seg.bufsz])
    assert m.phys_read(seg.mem, seg.bufsz) != want
    stages = m.kernel_kexec_stages()
    stages.prepare()
    assert m.kexec_in_progress and stages.result.t_kexec > 0
    assert stages.result.t_jump == stages.result.t_kexec + \
        sum(s.memsz for s in image.segments) // 4096 * m.copy_ns
    assert stages.result.hot_phase_pages == 0 and m.dmesg()[-1][1] == \
        "kexec_core: Starting new kernel"
    assert m.phys_read(seg.mem, seg.bufsz) != want
    stages.hot_phase()
    assert stages.result.hot_phase_pages == sum(s.memsz for s in image.segments) // 4096
    assert m.phys_read(seg.mem, seg.bufsz) == want and m.generation == 0
    stages.verify()
    assert stages.result.verified and not stages.result.booted and m.generation == 0
    stages.boot_next()
    assert stages.result.booted and m.generation == 1 and m.kexec_image is None
    stages.result.corrupted = [(0, 1, 0)]            # finish overwrites it with the scan
    assert stages.finish().corrupted == []


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_k16_10_checks_off_leaves_out_only_pykern_checks(arch: str) -> None:
    """K16.10/K16.11: ``checks=False`` skips arm64's reference check and the corruption scan
    (verified False and corrupted [] on arm64) and nothing else: RAM, log, devices and the
    other fields are as with checks; x86_64 purgatory's digest still runs (verified True)."""
    m, devices = _loaded(arch, KEXEC_FILE_NO_CMA, device=True)
    checked = _state(m, m.kernel_kexec(), devices)
    m, devices = _loaded(arch, KEXEC_FILE_NO_CMA, device=True)
    unchecked = _state(m, m.kernel_kexec_stages(checks=False).run(), devices)
    assert unchecked["result"]["verified"] == (arch == "x86_64")
    assert unchecked["result"]["corrupted"] == []
    for key in ("verified", "corrupted"):
        del checked["result"][key], unchecked["result"][key]
    assert unchecked == checked


def test_k16_13_x86_digest_mismatch_in_stages() -> None:
    """K16.13: stale bytes in the CMA area break purgatory's digest (quirk cma-stale-tail):
    verify finds the mismatch, boot_next boots nothing, finish halts the machine with
    purgatory's line, as ``kernel_kexec`` does."""
    def stale() -> Machine:
        m = Machine("512M", arch="x86_64", cmdline="cma=64M", seed=2)
        cma = m.dma_contiguous_default_area
        assert cma is not None
        m.phys_write(cma.base_pfn << 12, b"\x5a" * (cma.count << 12))
        m.kexec_file_load(_KERNEL["x86_64"], _INITRD, "", 0)
        return m

    m = stale()
    r = m.kernel_kexec()
    whole = (hashlib.sha256(m.ram).hexdigest(), r.verified, r.booted, m.halted, m.log.lines())
    m = stale()
    stages = m.kernel_kexec_stages()
    stages.prepare()
    stages.hot_phase()
    stages.verify()
    assert not stages.result.verified and not m.halted
    stages.boot_next()
    assert m.generation == 0 and not stages.result.booted
    r = stages.finish()
    assert m.halted and m.log.lines()[-1] == (0, "purgatory: SHA-256 mismatch, spinning")
    assert (hashlib.sha256(m.ram).hexdigest(), r.verified, r.booted, m.halted,
            m.log.lines()) == whole


def _snapshot(m: Machine, stages: KexecReboot) -> tuple[Any, ...]:
    return (hashlib.sha256(m.ram).hexdigest(), list(m.log.lines()), m.generation,
            stages.stage, dataclasses.asdict(stages.result))


@pytest.mark.parametrize("done,call,why", [
    (0, "hot_phase", "is not due yet; the next stage is prepare"),
    (1, "boot_next", "is not due yet; the next stage is hot_phase"),
    (2, "prepare", "already ran; the next stage is verify"),
    (4, "verify", "already ran; the next stage is finish"),
    (5, "finish", "the reboot is over"),
])
def test_k16_1_stage_out_of_order_is_a_clear_error(done: int, call: str, why: str) -> None:
    """K16.1: a stage called before its turn, again, or after finish raises RuntimeError
    naming the stage due, and changes nothing."""
    m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA, device=False)
    stages = m.kernel_kexec_stages()
    for name in KEXEC_STAGES[:done]:
        getattr(stages, name)()
    before = _snapshot(m, stages)
    with pytest.raises(RuntimeError, match=f"cannot run {call}: .*{why}"):
        getattr(stages, call)()
    assert _snapshot(m, stages) == before
    if done < len(KEXEC_STAGES):                     # the refused call did not break it
        assert stages.run().booted and m.generation == 1


def test_k16_1_kexec_while_a_reboot_is_in_progress_is_ebusy() -> None:
    """K16.1 (``kexec_trylock`` in kernel_kexec): once prepare ran, another
    ``kernel_kexec`` gets EBUSY and changes nothing; the staged reboot then completes.
    Without an image: EINVAL, nothing changes."""
    m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA, device=False)
    stages = m.kernel_kexec_stages()
    stages.prepare()
    before = _snapshot(m, stages)
    for call in (m.kernel_kexec, m.kernel_kexec_stages):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.EBUSY
    assert _snapshot(m, stages) == before
    assert stages.run().verified and m.generation == 1
    with pytest.raises(OSError) as exc:
        m.kernel_kexec_stages()
    assert exc.value.errno == errno.EINVAL and m.generation == 1


def test_k16_1_two_staged_reboots_one_machine() -> None:
    """K16.1: of two staged reboots made before either started, the second to prepare gets
    EBUSY; one made before another reboot completed refuses to run on the new kernel."""
    m, _ = _loaded("arm64", 0, device=False)
    a, b = m.kernel_kexec_stages(), m.kernel_kexec_stages()
    a.prepare()
    with pytest.raises(OSError) as exc:
        b.prepare()
    assert exc.value.errno == errno.EBUSY and b.next_stage == "prepare"
    a.run()
    with pytest.raises(RuntimeError, match="booted another kernel"):
        b.prepare()
    assert m.generation == 1


def test_k16_3_after_a_relocation_error_no_stage_runs() -> None:
    """K16.3/K16.13: a SOURCE outside RAM stops hot_phase with RelocationError and halts the
    machine; every later stage then says the reboot stopped."""
    m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA, device=False)
    image = m.kexec_image
    assert image is not None
    m.phys_write((image.head & ~0xFFF) + 8, struct.pack("<Q", (1 << 48) | 0x8))
    stages = m.kernel_kexec_stages()
    stages.prepare()
    with pytest.raises(RelocationError, match="source page"):
        stages.hot_phase()
    assert m.halted
    for name in ("hot_phase", "verify"):
        with pytest.raises(RuntimeError, match="the reboot stopped .*hot_phase failed"):
            getattr(stages, name)()
    with pytest.raises(RuntimeError, match="stopped"):
        stages.run()


# ------------------------------------------------------------ the benchmark_kexec fixture
class _StubBenchmark:
    """pytest-benchmark's ``pedantic`` protocol: setup, then the timed target, per round;
    records which stage each target call started and ended at."""

    disabled = True

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}
        self.timed: list[tuple[Any, Any]] = []

    def pedantic(self, target: Callable[..., Any], setup: Callable[[], Any], rounds: int,
                 warmup_rounds: int = 0) -> Any:
        out = None
        for _ in range(rounds):
            args, kwargs = setup()
            before = self._where(args[0])
            out = target(*args, **kwargs)
            self.timed.append((before, self._where(out)))
        return out

    @staticmethod
    def _where(obj: Any) -> Any:
        """A staged reboot's last stage; a machine's loaded image."""
        return obj.stage if isinstance(obj, KexecReboot) else obj.kexec_image


@pytest.fixture
def stub() -> _StubBenchmark:
    return _StubBenchmark()


@pytest.mark.parametrize("stage", ["prepare", "hot_phase", "verify", "boot_next", "finish"])
def test_benchmark_kexec_times_one_stage(stub: _StubBenchmark, stage: str) -> None:
    """``KexecBench`` (what ``benchmark_kexec`` returns): each round's setup runs the stages
    before ``stage`` on a fresh machine, so the timed call runs exactly that stage (K16.1
    order); the latest round's machine is kept for the failure report."""
    machines: list[Machine] = []
    bench = KexecBench(stub, machines=machines)
    load = (_KERNEL["arm64"], None, "", KEXEC_FILE_NO_CMA)
    r = bench({"ram": "256M", "cmdline": "cma=32M"}, load, stage, rounds=2)
    k = KEXEC_STAGES.index(stage)
    assert stub.timed == [(KEXEC_STAGES[k - 1] if k else None, stage)] * 2
    assert isinstance(r, KexecReboot) and not r.checks
    assert machines == [r.machine]
    assert stub.extra_info == {"stage": stage, "checks": False}
    r.run()
    assert r.result.booted and r.machine.generation == 1


def test_benchmark_kexec_load_and_bad_arguments(stub: _StubBenchmark) -> None:
    """``stage="load"`` times kexec_file_load alone (no image before, one after); bad
    arguments are ValueErrors naming the part."""
    bench = KexecBench(stub)
    load = (_KERNEL["arm64"], _INITRD, "", 0)
    m = bench({"ram": "256M", "cmdline": "cma=32M"}, load, "load", rounds=1)
    assert isinstance(m, Machine) and m.generation == 0
    assert stub.timed[0][0] is None and stub.timed[0][1] is m.kexec_image
    assert m.kexec_image is not None and all(s.cma for s in m.kexec_image.segments)
    with pytest.raises(ValueError, match="stage 'walk'"):
        bench({}, load, "walk")
    with pytest.raises(ValueError, match="load"):
        bench({}, (b"", None), "reboot")
    with pytest.raises(ValueError, match="machine"):
        bench("1G", load, "reboot")


def test_benchmark_kexec_whole_reboot(stub: _StubBenchmark) -> None:
    """``stage="reboot"``: the timed call starts before prepare and ends after finish."""
    load = (_KERNEL["x86_64"], None, "", KEXEC_FILE_NO_CMA)
    r = KexecBench(stub)(lambda: Machine("256M", arch="x86_64", cmdline="cma=32M"), load,
                         "reboot", rounds=1, checks=True)
    assert stub.timed == [(None, "finish")]
    assert r.result.verified and r.result.corrupted == [] and r.machine.generation == 1


def test_benchmark_kexec_fixture_with_pytest_benchmark(pytester: pytest.Pytester) -> None:
    """The ``benchmark_kexec`` fixture on pytest-benchmark's own ``benchmark`` (correctness
    run, ``--benchmark-disable``): the hot phase of a NO_CMA image, then the rest."""
    pytester.makepyfile(test_hot="""
        from pykern import images, KEXEC_FILE_NO_CMA

        def test_hot(benchmark_kexec):
            load = (images.arm64_image(1 << 20), None, "", KEXEC_FILE_NO_CMA)
            r = benchmark_kexec({"ram": "128M", "cmdline": "cma=16M"}, load, "hot_phase")
            assert r.stage == "hot_phase" and r.result.hot_phase_pages > 0
            assert r.run().booted and r.machine.generation == 1
    """)
    result = pytester.runpytest("--benchmark-disable", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_k1_4_kexec_file_load_during_a_staged_reboot_is_ebusy() -> None:
    """K1.4: kexec_file_load takes the kexec try-lock after its flag check, so a load (or an
    unload) while a reboot is in progress gets EBUSY and leaves the loaded image in place; a
    bad flag is still EINVAL first (K1.3)."""
    m, _ = _loaded("arm64", KEXEC_FILE_NO_CMA, device=False)
    image = m.kexec_image
    stages = m.kernel_kexec_stages()
    stages.prepare()
    before = _snapshot(m, stages)
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(images.arm64_image(1 << 20), None, "", KEXEC_FILE_NO_CMA)
    assert exc.value.errno == errno.EBUSY
    with pytest.raises(OSError) as exc:
        m.kexec_file_load(None, None, "", 0x4000)
    assert exc.value.errno == errno.EINVAL
    assert m.kexec_image is image and _snapshot(m, stages) == before
    assert stages.run().verified and m.generation == 1
