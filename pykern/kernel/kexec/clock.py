"""The reboot clock (GIC-H1/H2 and rule K16.12): integer nanoseconds from the start
of ``kernel_kexec()`` or ``panic()``.

[model] Nothing in the kernel keeps such a clock; pykern needs one so that device writes land
at reproducible instants relative to the relocation copy.  Wall time never enters it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RebootClock", "SLOT_NS", "SYSCORE_NS", "OFFLINE_NS", "KEXEC_AFTER_SLOTS_NS",
           "KEXEC_AFTER_OFFLINE_NS", "TAKEOVER_NS", "END_NS", "CRASH_KEXEC_NS", "PHASES"]

US = 1000
MS = 1000 * US
SLOT_NS = 50 * US                 #: one device's shutdown slot
SYSCORE_NS = 50 * US              #: last slot end → syscore_shutdown
OFFLINE_NS = 200 * US             #: per secondary CPU taken offline
KEXEC_AFTER_SLOTS_NS = 2 * MS     #: earliest machine_kexec after the last slot
KEXEC_AFTER_OFFLINE_NS = 100 * US  #: earliest machine_kexec after the last CPU went offline
TAKEOVER_NS = 5 * MS              #: jump → the next kernel's ITS probe
END_NS = 10 * MS                  #: takeover → the end of the observed run
CRASH_KEXEC_NS = 100 * US         #: panic → machine_kexec (no slots)
PHASES = ("shutdown", "offline", "relocate", "jump", "next-kernel")


@dataclass
class RebootClock:
    """The marks of one reboot (GIC-H1).

    ``slots`` are ``(device_name, extra_ns)`` in reverse probe order; each slot lasts
    ``SLOT_NS + extra_ns``.  ``pages`` is the number of SOURCE entries the walk will copy
    (0 for a crash image or an all-CMA image).  ``syscore_wait_ns`` is added before
    ``t_syscore`` (GIC-K8).
    """

    copy_ns: int
    pages: int
    cpus: int = 1
    crash: bool = False
    slots: list[tuple[str, int]] = field(default_factory=list)
    syscore_wait_ns: int = 0
    t_shut: dict[str, int] = field(default_factory=dict)
    t_slot_start: dict[str, int] = field(default_factory=dict)
    t_syscore: int = 0
    t_offline: list[int] = field(default_factory=list)
    t_kexec: int = 0

    def __post_init__(self) -> None:
        if self.crash:
            self.slots = []
            self.t_syscore = 0
            self.t_offline = []
            self.t_kexec = CRASH_KEXEC_NS
            return
        t = 0
        for name, extra in self.slots:
            self.t_slot_start[name] = t
            t += SLOT_NS + extra
            self.t_shut[name] = t
        last_slot = t
        self.t_syscore = last_slot + SYSCORE_NS + self.syscore_wait_ns
        self.t_offline = [self.t_syscore + OFFLINE_NS * k for k in range(1, self.cpus)]
        latest = self.t_offline[-1] if self.t_offline else self.t_syscore
        self.t_kexec = max(last_slot + KEXEC_AFTER_SLOTS_NS, latest + KEXEC_AFTER_OFFLINE_NS)

    @property
    def t_jump(self) -> int:
        return self.t_kexec + self.pages * self.copy_ns

    @property
    def t_takeover(self) -> int:
        return self.t_jump + TAKEOVER_NS

    @property
    def t_end(self) -> int:
        return self.t_takeover + END_NS

    def page_done(self, i: int) -> int:
        """When relocation page ``i`` (0-based, entry-list order) is complete."""
        return self.t_kexec + (i + 1) * self.copy_ns

    def pages_done_by(self, t: int) -> int:
        """How many pages the copy has completed at instant ``t``."""
        if t < self.t_kexec:
            return 0
        if self.copy_ns <= 0:
            return self.pages
        return min(self.pages, (t - self.t_kexec) // self.copy_ns)

    def phase(self, t: int) -> str:
        """The name of the reboot phase instant ``t`` falls in, as the trace gives it
        (GIC-O2)."""
        if t < self.t_syscore:
            return "shutdown"
        if t < self.t_kexec:
            return "offline"
        if t < self.t_jump:
            return "relocate"
        if t < self.t_takeover:
            return "jump"
        return "next-kernel"
