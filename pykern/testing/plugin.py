"""The pykern pytest plugin (the testing guide).

Registered through the ``pytest11`` entry point, so installing pykern is enough::

    def test_boot(machine):                      # a small default machine
        assert machine.generation == 0

    def test_two(machine_factory):
        a = machine_factory(ram="128M", cmdline="cma=16M")
        b = machine_factory(arch="x86_64")

Options: ``--pykern-seed=N`` (default 0), ``--pykern-arch=arm64|x86_64`` (default arm64) and
``--pykern-no-extensions`` (the pure-Python twin of the compiled memory operations).  They
are the defaults of every machine the fixtures build; keyword arguments override them.

``benchmark_kexec`` (with pytest-benchmark) times one part of a kexec on a fresh machine per
round: the load, one stage of the reboot, or the whole reboot::

    def test_hot_phase(benchmark_kexec):
        kernel = images.arm64_image(128 << 20)
        benchmark_kexec({"ram": "1G", "cmdline": "cma=64M"},
                        (kernel, None, "", KEXEC_FILE_NO_CMA), stage="hot_phase")

When a test that used the fixtures fails, its report gets a ``pykern`` section naming every
machine it built (arch, seed, generation, command line, the last kernel log lines) and the
command line that replays it.

The module stays import-light, because pytest loads it at start-up in every session of every
project that has pykern installed: it imports neither hypothesis nor the machine model itself
(``Machine`` is imported inside the factory) and builds nothing until a fixture is used.
Importing any pykern submodule still runs ``pykern/__init__``, which imports ``Machine``.
"""

from __future__ import annotations

import gc
import mmap
from typing import TYPE_CHECKING, Any, Generator, Protocol

import pytest

from ..constants import ARCHES

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["MachineFactory", "machine", "machine_factory", "pykern_report", "DEFAULT_RAM",
           "LOG_TAIL", "REPORT_MACHINES", "benchmark_kexec", "KexecBench",
           "KEXEC_BENCH_STAGES"]

#: RAM of the ``machine`` fixture: small enough to boot in about a millisecond.
DEFAULT_RAM = "256M"
#: Kernel log lines quoted per machine in a failure report.
LOG_TAIL = 10
#: Machines described per failing test (the most recently built ones).
REPORT_MACHINES = 8
#: Where each test's machines are kept for the report (one list per test item).
_MACHINES_KEY = pytest.StashKey[list["Machine"]]()


class MachineFactory(Protocol):
    """The ``machine_factory`` fixture: ``machine_factory(**Machine_kwargs) -> Machine``."""

    machines: list[Machine]
    defaults: dict[str, Any]

    def __call__(self, **kwargs: Any) -> Machine: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pykern", "pykern emulated machines")
    group.addoption("--pykern-seed", type=int, default=0, metavar="N",
                    help="seed of every machine the pykern fixtures build (default 0)")
    group.addoption("--pykern-arch", choices=ARCHES, default="arm64",
                    help="architecture of the pykern fixtures' machines (default arm64)")
    group.addoption("--pykern-no-extensions", action="store_true", default=False,
                    help="build machines with extensions=False (the pure-Python twin)")


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.getoption("--pykern-seed")
    arch = config.getoption("--pykern-arch")
    impl = "python" if config.getoption("--pykern-no-extensions") else "default"
    if seed == 0 and arch == "arm64" and impl == "default":
        return None
    return f"pykern: arch={arch} seed={seed} extensions={impl}"


def _defaults(config: pytest.Config) -> dict[str, Any]:
    kw: dict[str, Any] = {"arch": config.getoption("--pykern-arch"),
                          "seed": config.getoption("--pykern-seed")}
    if config.getoption("--pykern-no-extensions"):
        kw["extensions"] = False
    return kw


def _registry(request: pytest.FixtureRequest) -> list[Machine]:
    stash = request.node.stash
    machines: list[Machine] = stash.setdefault(_MACHINES_KEY, [])
    return machines


class _Factory:
    """Builds machines from the command-line defaults plus the caller's keywords."""

    def __init__(self, defaults: dict[str, Any], machines: list[Machine]) -> None:
        self.defaults = defaults
        self.machines = machines

    def __call__(self, **kwargs: Any) -> Machine:
        from ..machine import Machine

        kw = {"ram": DEFAULT_RAM, **self.defaults, **kwargs}
        m = Machine(**kw)
        self.machines.append(m)
        return m

    def __repr__(self) -> str:
        return f"<pykern machine_factory defaults={self.defaults!r} built={len(self.machines)}>"


@pytest.fixture
def machine_factory(request: pytest.FixtureRequest) -> MachineFactory:
    """``machine_factory(**kwargs)`` → a booted :class:`pykern.Machine`.

    The ``--pykern-*`` options give the defaults (``ram="256M"`` too); keywords override
    them.  The factory remembers every machine it built in ``machine_factory.machines``.
    """
    return _Factory(_defaults(request.config), _registry(request))


@pytest.fixture
def machine(machine_factory: MachineFactory) -> Machine:
    """A small default machine: ``Machine("256M")`` with the ``--pykern-*`` options."""
    return machine_factory()


#: What ``benchmark_kexec`` times: the load, one stage of the reboot
#: (:class:`~pykern.kernel.kexec.reboot.KexecReboot`), or the whole reboot.
KEXEC_BENCH_STAGES = ("load", "prepare", "hot_phase", "verify", "boot_next", "finish",
                      "reboot")
_WARM_CHUNK = 64 << 20


class KexecBench:
    """What the ``benchmark_kexec`` fixture returns, around pytest-benchmark's
    ``benchmark`` fixture (or any object with its ``pedantic``, ``extra_info`` and
    ``disabled``); ``defaults`` are the ``Machine`` keywords under the caller's, and
    ``machines`` the list that keeps the latest round's machine for the failure report."""

    def __init__(self, benchmark: Any, defaults: dict[str, Any] | None = None,
                 machines: list[Machine] | None = None) -> None:
        self.benchmark = benchmark
        self.defaults = {} if defaults is None else defaults
        self.machines = [] if machines is None else machines

    def __call__(self, machine: Any, load: Any, stage: str = "reboot", *, rounds: int = 5,
                 warmup_rounds: int = 0, warm_ram: bool = True, checks: bool = False) -> Any:
        from ..machine import Machine

        if stage not in KEXEC_BENCH_STAGES:
            raise ValueError(f"benchmark_kexec: stage {stage!r} is not one of "
                             f"{', '.join(KEXEC_BENCH_STAGES)}")
        if not callable(machine) and not isinstance(machine, dict):
            raise ValueError(f"benchmark_kexec: machine {machine!r} is neither Machine "
                             f"keywords nor a callable returning a Machine")
        if callable(load):
            do_load = load
        elif isinstance(load, tuple) and len(load) == 4:
            def do_load(m: Machine) -> None:
                m.kexec_file_load(*load)
        else:
            raise ValueError(f"benchmark_kexec: load {load!r} is neither (kernel, initrd, "
                             f"cmdline, flags) nor a callable load(m)")
        bench = self.benchmark
        timing = not getattr(bench, "disabled", False)
        last: list[Machine] = []

        def fresh() -> Machine:
            for old in last:                 # the report names the latest round's machine
                if old in self.machines:
                    self.machines.remove(old)
                _release_ram(old)
            last.clear()
            gc.collect()                     # earlier tests' machines, with their RAM
            m = machine() if callable(machine) else \
                Machine(**{"ram": DEFAULT_RAM, **self.defaults, **machine})
            if warm_ram and timing:
                zeros = bytes(min(_WARM_CHUNK, len(m.ram)))
                for off in range(0, len(m.ram), len(zeros)):
                    m.ram[off:off + len(zeros)] = zeros[:len(m.ram) - off]
            last.append(m)
            self.machines.append(m)
            return m

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            m = fresh()
            if stage == "load":
                return (m,), {}
            do_load(m)
            reboot = m.kernel_kexec_stages(checks=checks)
            while stage != "reboot" and reboot.next_stage != stage:
                getattr(reboot, str(reboot.next_stage))()
            return (reboot,), {}

        def target(obj: Any) -> Any:
            if stage == "load":
                do_load(obj)
            elif stage == "reboot":
                obj.run()
            else:
                getattr(obj, stage)()
            return obj

        bench.extra_info.update(stage=stage, checks=checks)
        return bench.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds)


def _release_ram(m: Machine) -> None:
    """Give a finished round's RAM back to the host (its pages read as zeros afterwards):
    pytest-benchmark still holds that round's arguments while the next round is set up."""
    ram = m.ram
    if isinstance(ram, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        ram.madvise(mmap.MADV_DONTNEED)


@pytest.fixture
def benchmark_kexec(request: pytest.FixtureRequest) -> Any:
    """``benchmark_kexec(machine, load, stage="reboot", *, rounds=5, warmup_rounds=0,
    warm_ram=True, checks=False)``: ``benchmark.pedantic`` with a fresh machine per round
    and only ``stage`` inside the timer.

    ``machine``: ``Machine`` keywords (over the ``--pykern-*`` defaults) or a callable
    returning a booted machine.  ``load``: ``(kernel, initrd, cmdline, flags)`` or a
    callable ``load(m)``.  Each round's setup builds the machine, touches every RAM page
    once (``warm_ram``, skipped under ``--benchmark-disable``) so the host's first-touch
    faults are not timed, loads (unless ``stage == "load"``), and runs the stages before
    ``stage``; the timed call is the load, that one stage, or ``"reboot"``: every stage.
    ``checks=False`` leaves pykern's own checks out of the stages (``KexecReboot``).

    Returns what the last round's timed call left: the machine for ``"load"``, else its
    ``KexecReboot`` (``.result``, ``.machine``; ``.run()`` finishes the reboot).  The RAM
    of the earlier rounds' machines is given back to the host as the next round starts.
    """
    try:
        bench = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.fail("benchmark_kexec needs pytest-benchmark (pip install pytest-benchmark)",
                    pytrace=False)
    return KexecBench(bench, _defaults(request.config), _registry(request))


def _describe(m: Machine) -> list[str]:
    lines = [f"machine {m!r}",
             f"  arch={m.arch} seed={m.seed} generation={m.generation}"
             f"{' HALTED' if m.halted else ''}",
             f"  cmdline={m.cmdline!r}"]
    try:
        log = m.dmesg()
    except RuntimeError as exc:          # a halted machine answers nothing (K16.13)
        lines.append(f"  dmesg unavailable: {exc}")
    else:
        tail = log[-LOG_TAIL:]
        lines.append(f"  last {len(tail)} of {len(log)} kernel log lines:")
        lines += [f"    <{level}> {text}" for level, text in tail]
    return lines


def _replay_hint(item: pytest.Item) -> str:
    config = item.config
    args = ["pytest", f"--pykern-seed={config.getoption('--pykern-seed')}"]
    arch = config.getoption("--pykern-arch")
    if arch != "arm64":
        args.append(f"--pykern-arch={arch}")
    if config.getoption("--pykern-no-extensions"):
        args.append("--pykern-no-extensions")
    args.append(item.nodeid)
    return "replay: " + " ".join(args)


def pykern_report(item: pytest.Item) -> str | None:
    """The text of the ``pykern`` report section for ``item``, or None without machines."""
    machines = item.stash.get(_MACHINES_KEY, None)
    if not machines:
        return None
    lines: list[str] = []
    if len(machines) > REPORT_MACHINES:     # e.g. one per hypothesis example: the last few
        lines.append(f"({len(machines) - REPORT_MACHINES} earlier machines not shown)")
    for m in machines[-REPORT_MACHINES:]:
        try:
            lines += _describe(m)
        except Exception as exc:         # never let the report hide the real failure
            lines.append(f"machine (unprintable: {exc!r})")
    lines.append(_replay_hint(item))
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if rep.failed:
        text = pykern_report(item)
        if text is not None:
            rep.sections.append(("pykern", text))
            item.user_properties.append(("pykern", text))     # junitxml <property>
    if call.when == "teardown":
        # the last report of the test is made: let the machines (and their RAM) go
        item.stash.get(_MACHINES_KEY, []).clear()
