"""The fault-injection framework (``lib/fault-inject.c``, ``include/linux/fault-inject.h``).

A :class:`FaultAttr` is one ``struct fault_attr``: the knobs of one capability (pykern has
one, ``fail_page_alloc``, :mod:`pykern.mm.fail_page_alloc`).  :func:`should_fail_ex` is the
kernel's decision, in the kernel's order:

1. the current task's ``fail_nth`` (``/proc/<pid>/fail-nth``): while it is set, every
   fault point the task reaches counts it down, and the point that brings it to 0 fails,
   whatever the probability, interval, times or space say (the stack filter still applies);
2. otherwise: probability 0 → no; ``task-filter`` and the task's ``make-it-fail`` 0 → no;
   ``times`` 0 → no; the stack filter; ``space`` larger than the request → consume it, no;
   ``interval`` > 1 → only every interval-th call goes on; a draw below ``probability``
   (of 100) fails;
3. a failure prints :func:`fail_dump` (unless the point passed FAULT_NOWARN) and takes one
   from ``times`` unless it is -1.

:class:`FaultInject` is the per-boot part of ``struct task_struct`` that fault injection
reads: ``fail_nth`` and ``make_it_fail`` of every task, and which task is *current*.

**Current task** [model].  Calls on the machine (``m.kexec_file_load``, ``m.write``,
``cma.alloc``, ``m.mm.alloc_pages``, debugfs writes...) run in the context of one notional
process, the machine context: ``/proc/self`` and ``/proc/thread-self`` are it; it prints as
PID 0, comm ``pykern``.  Calls on a :class:`~pykern.mm.task.Task` (``t.mmap_anon``,
``t.pin``, ...) run in that task's context: the task whose method is on the Python call
stack, innermost first, is current, and ``/proc/<pid>/`` and ``/proc/<pid>/task/<pid>/``
are its files.  A task is forked from the machine context (``m.new_task()``): it inherits
``make_it_fail`` and starts with ``fail_nth`` 0 (``dup_task_struct``).  Everything here is
per boot: a reboot starts the next kernel with fresh tasks and fresh attributes.

Divergences [model]:

- Only page-allocator fault points exist; a real kernel also counts the slab, usercopy and
  vmalloc-backed allocations of the same system call (failslab, fail_usercopy and the pages
  behind vmalloc), so the same N can land on another allocation there.
- The stack filter (``require-*``, ``reject-*``, ``stacktrace-depth``) sees no kernel text
  addresses: ``stack_trace_save`` returns no entry, so with a non-default filter and a
  depth above 0 only the default require range (0..ULONG_MAX) lets failures through.
- ``jiffies`` do not advance while the machine runs, so a ratelimit window
  (``verbose_ratelimit_interval_ms`` > 0) never ends: after ``verbose_ratelimit_burst``
  reports the rest are counted as missed and never summarised.
- ``dump_stack`` (``verbose`` 2) prints the header lines and a call trace made of the
  page allocator's entry frames and the pykern functions on the Python stack that carry
  kernel names, without offsets (pykern has no kernel text).
"""

from __future__ import annotations

import errno
import random
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..kernel.printk import KERN_NOTICE, KERN_WARNING

from .machine_ref import MachineRef

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["FAULT_NOWARN", "MAX_STACK_TRACE_DEPTH", "ULONG_MAX", "RatelimitState",
           "FaultAttr", "TaskFault", "FaultInject", "setup_fault_attr", "should_fail_ex",
           "fail_dump", "fault_attr_scanf", "fault_debugfs_read", "fault_debugfs_write",
           "FAULT_ATTR_FILES", "proc_pid_fault_read", "proc_pid_fault_write", "kstrtoull",
           "kstrtoll", "kstrtobool", "print_tainted"]

FAULT_NOWARN = 1 << 0
MAX_STACK_TRACE_DEPTH = 32
DEFAULT_RATELIMIT_BURST = 10
ULONG_MAX = (1 << 64) - 1
_U32 = (1 << 32) - 1
_LLONG_MAX = (1 << 63) - 1
#: PROC_NUMBUF: the make-it-fail write buffer (so 12 bytes of input at most).
PROC_NUMBUF = 13
#: simple_attr's set_buf is 24 bytes: a debugfs number write keeps its first 23.
_SET_BUF = 24


def _s32(value: int) -> int:
    """C's ``(int)`` of a 64-bit value."""
    value &= _U32
    return value - (1 << 32) if value & (1 << 31) else value


# ------------------------------------------------------------------------ number parsing
def _fixup_radix(s: str, base: int) -> tuple[str, int]:
    """``_parse_integer_fixup_radix``."""
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2].lower() == "x" and s[2:3] in _XDIGITS else 8
        else:
            base = 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        s = s[2:]
    return s, base


_XDIGITS = frozenset("0123456789abcdefABCDEF")


def _parse_integer(s: str, base: int, max_chars: int = 1 << 62) -> tuple[int, int, bool]:
    """``_parse_integer_limit``: (value mod 2^64, digits used, overflowed)."""
    res, used, over = 0, 0, False
    for c in s[:max_chars]:
        if "0" <= c <= "9":
            val = ord(c) - 48
        elif "a" <= c.lower() <= "f":
            val = ord(c.lower()) - 87
        else:
            break
        if val >= base:
            break
        if res * base + val > ULONG_MAX:
            over = True
        res = (res * base + val) & ULONG_MAX
        used += 1
    return res, used, over


def _kstrtoull(s: str, base: int) -> int:
    s, base = _fixup_radix(s, base)
    value, used, over = _parse_integer(s, base)
    if used == 0:
        raise OSError(errno.EINVAL, "Invalid argument")
    if over:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    rest = s[used:]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise OSError(errno.EINVAL, "Invalid argument")
    return value


def kstrtoull(s: str, base: int = 0) -> int:
    """``kstrtoull``: OSError(EINVAL) for anything but one number and an optional
    newline, OSError(ERANGE) above 2^64-1."""
    if s.startswith("+"):
        s = s[1:]
    return _kstrtoull(s, base)


def kstrtoll(s: str, base: int = 0) -> int:
    """``kstrtoll``."""
    if s.startswith("-"):
        value = _kstrtoull(s[1:], base)
        if value > _LLONG_MAX + 1:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        return -value
    value = kstrtoull(s, base)
    if value > _LLONG_MAX:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    return value


def kstrtobool(s: str) -> bool:
    """``kstrtobool``: the first character (two for on/off) decides; OSError(EINVAL)."""
    first, second = s[:1], s[1:2]
    if first and first in "yYtT1":
        return True
    if first and first in "nNfF0":
        return False
    if first and first in "oO" and second:
        if second in "nN":
            return True
        if second in "fF":
            return False
    raise OSError(errno.EINVAL, "Invalid argument")


def fault_attr_scanf(text: str) -> tuple[int, int, int, int] | None:
    """``sscanf(str, "%lu,%lu,%d,%d", ...)`` as ``vsscanf`` reads it: the four values
    (interval, probability, space, times), or None when fewer than four convert.

    Each conversion skips blanks, needs a digit (a ``-`` first only for ``%d``), takes the
    longest run of decimal digits (wrapping modulo 2^64, ``%d`` then truncated to an int);
    each ``,`` must match exactly; whatever follows the fourth number is ignored.
    """
    values: list[int] = []
    s = text
    for k, signed in enumerate((False, False, True, True)):
        if k:
            if s[:1] != ",":
                return None
            s = s[1:]
        if not s:
            return None
        s = s.lstrip(" \t\n\v\f\r")
        neg = signed and s[:1] == "-"
        digits = s[1:] if neg else s
        if not digits[:1].isdigit() or not digits[:1].isascii():
            return None
        value, used, _ = _parse_integer(digits, 10)
        if neg:
            value = -value & ULONG_MAX
        values.append(_s32(value) if signed else value)
        s = digits[used:]
    return values[0], values[1], values[2], values[3]


# ------------------------------------------------------------------------------ ratelimit
@dataclass
class RatelimitState:
    """``struct ratelimit_state`` as 6.17's ``___ratelimit`` uses it.

    ``interval`` and ``burst`` are ints in the kernel but their debugfs files are u32, so
    they are kept as written (0..2^32-1) and read as signed where ``___ratelimit`` does.
    """

    interval: int = 0
    burst: int = DEFAULT_RATELIMIT_BURST
    initialized: bool = False
    begin: int = 0
    n_left: int = 0
    missed: int = 0


def ratelimit(fi: FaultInject, rs: RatelimitState, func: str) -> bool:
    """``___ratelimit``: may the caller print now?  (``jiffies`` stand still, module doc.)"""
    interval, burst = _s32(rs.interval), _s32(rs.burst)
    ret = False
    if interval <= 0 or burst <= 0:
        if (interval < 0 or burst < 0) and not fi.warned_ratelimit:
            fi.warned_ratelimit = True
            fi.log.warn(f"Negative interval ({interval}) or burst ({burst}): Uninitialized "
                        f"ratelimit_state structure?")
            fi.log.warn("WARNING: lib/ratelimit.c: ___ratelimit")
        ret = interval == 0 or burst > 0
        if rs.initialized and (interval or burst):
            rs.initialized = False              # re-initialised once re-enabled
    else:
        jiffies = fi.jiffies
        if not rs.initialized:
            rs.begin = jiffies
            rs.initialized = True
            rs.n_left = burst
        if rs.begin + interval < jiffies:      # time_is_before_jiffies: never, here
            rs.n_left = burst
            rs.begin = jiffies
            missed, rs.missed = rs.missed, 0
            if missed:
                fi.log.warn(f"{func}: {missed} callbacks suppressed")
        if rs.n_left > 0:
            rs.n_left -= 1
            ret = True
    if not ret:
        rs.missed += 1
    return ret


# ----------------------------------------------------------------------------- the attr
@dataclass
class FaultAttr:
    """``struct fault_attr`` with ``FAULT_ATTR_INITIALIZER``'s defaults."""

    dname: str
    probability: int = 0
    interval: int = 1
    times: int = 1
    space: int = 0
    verbose: int = 2
    task_filter: bool = False
    stacktrace_depth: int = 32
    require_start: int = 0
    require_end: int = ULONG_MAX
    reject_start: int = 0
    reject_end: int = 0
    count: int = 0
    ratelimit_state: RatelimitState = field(default_factory=RatelimitState)


def setup_fault_attr(attr: FaultAttr, text: str) -> bool:
    """``setup_fault_attr``: ``<interval>,<probability>,<space>,<times>`` into ``attr``.

    Returns False (the caller logs ``FAULT_INJECTION: failed to parse arguments`` at
    KERN_WARNING and the parameter is then unknown) when fewer than four values parse.
    """
    values = fault_attr_scanf(text)
    if values is None:
        return False
    attr.interval, attr.probability, attr.space, attr.times = values
    return True


# ----------------------------------------------------------------------------- the tasks
@dataclass
class TaskFault:
    """The fault-injection fields of one ``struct task_struct``."""

    pid: int
    comm: str = "pykern"
    make_it_fail: int = 0
    fail_nth: int = 0


#: PID of the machine context (module doc).
MACHINE_PID = 0


class FaultInject(MachineRef):
    """Per-boot fault-injection state: the tasks' fields, ``current``, the log."""

    def __init__(self, m: Machine) -> None:
        self._m = m
        self.log = m.kernel.log
        self.tasks: dict[int, TaskFault] = {MACHINE_PID: TaskFault(MACHINE_PID)}
        #: Tasks whose fail_nth is set (the fault points' fast path tests this first).
        self.nth_pending = 0
        #: ``jiffies``: stands still while the machine runs (module doc).
        self.jiffies = 0
        self.warned_ratelimit = False
        #: Failures forced so far this boot (pykern's statistic, not a kernel counter).
        self.injected = 0
        # The generator of the probability draws, seeded on first use (``rng``).
        self._rng: random.Random | None = None
        self._rng_seed = f"pykern-fault-inject-{m.seed}-{m.generation}"

    @property
    def rng(self) -> random.Random:
        """The probability draws (``fault_prandom_u32_below_100``), seeded per machine and
        generation.  Made on first use: seeding costs more than the rest of a boot's fault
        state, and only a ``probability`` setting ever draws."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self._rng_seed)
        return rng

    # -- tasks -------------------------------------------------------------------------
    def dup_task_struct(self, pid: int) -> None:
        """A new task forked from the machine context: make_it_fail inherited,
        fail_nth 0."""
        self.tasks[pid] = TaskFault(pid, make_it_fail=self.tasks[MACHINE_PID].make_it_fail)

    def task(self, pid: int) -> TaskFault | None:
        """The live task ``pid`` (the machine context for MACHINE_PID), else None."""
        if pid != MACHINE_PID and pid not in self._m.kernel.tasks:
            return None
        tf = self.tasks.get(pid)
        if tf is None:
            tf = self.tasks[pid] = TaskFault(pid)
        return tf

    def current(self) -> TaskFault:
        """``current``: the innermost Task on the Python call stack, else the machine
        context (module doc)."""
        from ..mm.task import Task

        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if (code.co_argcount and code.co_varnames[0] == "self"
                    and frame.f_globals.get("__name__") == "pykern.mm.task"):
                obj = frame.f_locals.get("self")
                if isinstance(obj, Task):
                    tf = self.task(obj.pid)
                    if tf is not None:
                        return tf
            frame = frame.f_back  # type: ignore[assignment]
        return self.tasks[MACHINE_PID]

    def set_fail_nth(self, tf: TaskFault, n: int) -> None:
        self.nth_pending += (n != 0) - (tf.fail_nth != 0)
        tf.fail_nth = n

    def recount(self) -> None:
        """Forget pending fail_nth of tasks that have exited."""
        live = self._m.kernel.tasks
        for pid in [p for p, tf in self.tasks.items() if p != MACHINE_PID and p not in live]:
            del self.tasks[pid]
        self.nth_pending = sum(1 for tf in self.tasks.values() if tf.fail_nth)


# ------------------------------------------------------------------------ should_fail_ex
def fail_stacktrace(attr: FaultAttr) -> bool:
    """``fail_stacktrace`` over an empty stack trace (module doc)."""
    found = attr.require_start == 0 and attr.require_end == ULONG_MAX
    return found


def should_fail_ex(fi: FaultInject, attr: FaultAttr, size: int, flags: int,
                   frames: Callable[[], list[str]] | None = None) -> bool:
    """``should_fail_ex``: should this fault point fail now?  (Order: module doc.)"""
    if fi.nth_pending:
        cur = fi.current()
        if cur.fail_nth:
            if not fail_stacktrace(attr):
                return False
            fi.set_fail_nth(cur, cur.fail_nth - 1)
            if cur.fail_nth:
                return False
            return _fail(fi, attr, flags, cur, frames)
        if fi.nth_pending and cur.pid == MACHINE_PID:
            fi.recount()
    if attr.probability == 0:
        return False
    cur_task: TaskFault | None = None
    if attr.task_filter:
        cur_task = fi.current()
        if not cur_task.make_it_fail:
            return False
    if attr.times == 0:
        return False
    if not fail_stacktrace(attr):
        return False
    if attr.space > size:
        attr.space -= size
        return False
    if attr.interval > 1:
        attr.count = (attr.count + 1) & ULONG_MAX
        if attr.count % attr.interval:
            return False
    if attr.probability <= fi.rng.getrandbits(32) % 100:
        return False
    return _fail(fi, attr, flags, cur_task, frames)


def _fail(fi: FaultInject, attr: FaultAttr, flags: int, cur: TaskFault | None,
          frames: Callable[[], list[str]] | None) -> bool:
    fi.injected += 1
    if not flags & FAULT_NOWARN:
        fail_dump(fi, attr, cur, frames)
    if attr.times != -1 and attr.times != 0:
        attr.times -= 1
    return True


def fail_dump(fi: FaultInject, attr: FaultAttr, cur: TaskFault | None = None,
              frames: Callable[[], list[str]] | None = None) -> None:
    """``fail_dump``: the notice (``verbose`` >= 1, ratelimited) and, with ``verbose``
    >= 2, ``dump_stack``.  The notice is one printk with a newline inside, so ``dmesg``
    shows it as two lines at KERN_NOTICE."""
    if attr.verbose > 0 and ratelimit(fi, attr.ratelimit_state, "fail_dump"):
        fi.log.printk(KERN_NOTICE, "FAULT_INJECTION: forcing a failure.")
        fi.log.printk(KERN_NOTICE, f"name {attr.dname}, interval {attr.interval}, "
                                   f"probability {attr.probability}, space {attr.space}, "
                                   f"times {attr.times}")
        if attr.verbose > 1:
            dump_stack(fi, cur or fi.current(), frames() if frames is not None else [])


# --------------------------------------------------------------------------- dump_stack
#: ``taint_flags[]`` of 6.17 (kernel/panic.c): (set char, clear char, name).
_TAINT_FLAGS = (
    ("P", "G", "PROPRIETARY_MODULE"), ("F", " ", "FORCED_MODULE"),
    ("S", " ", "CPU_OUT_OF_SPEC"), ("R", " ", "FORCED_RMMOD"), ("M", " ", "MACHINE_CHECK"),
    ("B", " ", "BAD_PAGE"), ("U", " ", "USER"), ("D", " ", "DIE"),
    ("A", " ", "OVERRIDDEN_ACPI_TABLE"), ("W", " ", "WARN"), ("C", " ", "CRAP"),
    ("I", " ", "FIRMWARE_WORKAROUND"), ("O", " ", "OOT_MODULE"), ("E", " ", "UNSIGNED_MODULE"),
    ("L", " ", "SOFTLOCKUP"), ("K", " ", "LIVEPATCH"), ("X", " ", "AUX"),
    ("T", " ", "RANDSTRUCT"), ("N", " ", "TEST"), ("J", " ", "FWCTL"),
)


def print_tainted(mask: int, verbose: bool = False) -> str:
    """``print_tainted`` / ``print_tainted_verbose``."""
    if not mask:
        return "Not tainted"
    if verbose:
        return "Tainted: " + ", ".join(f"[{c}]={name}" for i, (c, _, name)
                                       in enumerate(_TAINT_FLAGS) if mask >> i & 1)
    return "Tainted: " + "".join(c if mask >> i & 1 else off
                                 for i, (c, off, _) in enumerate(_TAINT_FLAGS))


def dump_stack(fi: FaultInject, cur: TaskFault, frames: list[str]) -> None:
    """``dump_stack`` at KERN_DEFAULT: ``dump_stack_print_info`` then the arch's
    ``show_stack`` (frames: module doc)."""
    m = fi._m
    level = KERN_WARNING                      # KERN_DEFAULT prints at the default level 4
    release = m.linux_banner.split()[2]
    kdump = "Kdump: loaded " if m.kernel.kexec.kexec_crash_image is not None else ""
    fi.log.printk(level, f"CPU: 0 UID: 0 PID: {cur.pid} Comm: {cur.comm[:20]} {kdump}"
                         f"{print_tainted(m.kernel.tainted)} {release} #1 PREEMPT(voluntary) ")
    if m.kernel.tainted:
        fi.log.printk(level, print_tainted(m.kernel.tainted, verbose=True))
    if m.arch == "arm64":
        from ..arch.arm64.dtb import DEFAULT_MODEL
        fi.log.printk(level, f"Hardware name: {DEFAULT_MODEL} (DT)")
        fi.log.printk(level, "Call trace:")
        for name in ["show_stack", "dump_stack_lvl", "dump_stack"] + frames:
            fi.log.printk(level, f" {name}")
    else:
        fi.log.printk(level, "Call Trace:")
        fi.log.printk(level, " <TASK>")
        for name in ["dump_stack_lvl"] + frames:
            fi.log.printk(level, f" {name}")
        fi.log.printk(level, " </TASK>")


def _kernel_name(code: Any) -> str | None:
    """The kernel name a pykern function stands for, or None for a pykern helper: kernel
    functions keep their names, leading double underscores included (``__free_one_page``,
    module doc of :mod:`pykern.mm.page_alloc`); other ``_`` names and Python's
    ``__dunder__`` methods are pykern's own."""
    name: str = code.co_name
    if name[:1] == "<" or name.endswith("__"):
        return None
    if name[:1] == "_" and name[:2] != "__":
        return None
    return name


def python_frames(skip_modules: tuple[str, ...], skip_names: frozenset[str]) -> list[str]:
    """Kernel-named pykern functions on the Python stack, innermost first, from the
    caller outwards up to the first frame outside pykern (module doc)."""
    out: list[str] = []
    frame = sys._getframe(1)
    seen = False
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("pykern.") and not module.startswith("pykern.testing"):
            seen = True
            name = None if module in skip_modules else _kernel_name(frame.f_code)
            if name is not None and name not in skip_names and (not out or out[-1] != name):
                out.append(name)
        elif seen:
            break
        frame = frame.f_back  # type: ignore[assignment]
    return out


# ------------------------------------------------------------------------------ debugfs
#: The files ``fault_create_debugfs_attr`` makes: name → (field, kind).
FAULT_ATTR_FILES: dict[str, tuple[str, str]] = {
    "probability": ("probability", "ul"),
    "interval": ("interval", "ul"),
    "times": ("times", "atomic_t"),
    "space": ("space", "atomic_t"),
    "verbose": ("verbose", "ul"),
    "verbose_ratelimit_interval_ms": ("ratelimit_state.interval", "u32"),
    "verbose_ratelimit_burst": ("ratelimit_state.burst", "u32"),
    "task-filter": ("task_filter", "bool"),
    "stacktrace-depth": ("stacktrace_depth", "stacktrace_depth"),
    "require-start": ("require_start", "xul"),
    "require-end": ("require_end", "xul"),
    "reject-start": ("reject_start", "xul"),
    "reject-end": ("reject_end", "xul"),
}


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for part in head:
        obj = getattr(obj, part)
    setattr(obj, last, value)


def fault_debugfs_read(obj: Any, fieldname: str, kind: str) -> str:
    """The text of one debugfs file of kind ``kind`` (the debugfs helper's format)."""
    value = _get(obj, fieldname)
    if kind == "bool":
        return "Y\n" if value else "N\n"
    if kind == "xul":
        return f"0x{value:016x}\n"
    return f"{value}\n"            # %llu (ul, u32, stacktrace_depth) or %lld (atomic_t)


def fault_debugfs_write(obj: Any, fieldname: str, kind: str, text: str) -> None:
    """A write to one debugfs file: ``simple_attr_write`` (kstrtoull/kstrtoll of at most
    23 bytes) for numbers, ``debugfs_write_file_bool`` for booleans.

    :raises OSError: EINVAL/ERANGE as the kernel returns them.  A boolean the kernel
        cannot parse is ignored and the write still succeeds, as the kernel's does.
    """
    if kind == "bool":
        try:
            _set(obj, fieldname, kstrtobool(text.encode()[:3].decode("latin-1")))
        except OSError:
            pass
        return
    buf = text.encode()[:_SET_BUF - 1].decode("latin-1")
    if kind == "atomic_t":
        _set(obj, fieldname, _s32(kstrtoll(buf)))
        return
    value = kstrtoull(buf)
    if kind == "u32":
        value &= _U32
    elif kind == "stacktrace_depth":
        value = min(value, MAX_STACK_TRACE_DEPTH)
    _set(obj, fieldname, value)


# ------------------------------------------------------------------ /proc/<pid>/ files
def _proc_task(m: Machine, rest: str) -> tuple[TaskFault, str] | None:
    """The task and file name of ``self/<file>``, ``thread-self/<file>`` (the machine
    context), ``<pid>/<file>`` or ``<pid>/task/<pid>/<file>`` (a live Task: one thread
    each, so its tid is its pid)."""
    parts = rest.split("/")
    fi: FaultInject = m.kernel.fault_inject
    if len(parts) == 4 and parts[1] == "task" and parts[2] == parts[0]:
        parts = [parts[0], parts[3]]
    if len(parts) != 2:
        return None
    who, name = parts
    if who in ("self", "thread-self"):
        return fi.tasks[MACHINE_PID], name
    if not who.isdigit() or not who.isascii() or who != str(int(who)) \
            or int(who) == MACHINE_PID:
        return None
    tf = fi.task(int(who))
    return None if tf is None else (tf, name)


def proc_pid_fault_read(m: Machine, rest: str) -> str | None:
    """``/proc/<pid>/{fail-nth,make-it-fail}`` (``proc_fail_nth_read``,
    ``proc_fault_inject_read``): ``%u`` / ``%i`` and a newline."""
    found = _proc_task(m, rest)
    if found is None or found[1] not in ("fail-nth", "make-it-fail"):
        return None
    tf, name = found
    return f"{tf.fail_nth}\n" if name == "fail-nth" else f"{tf.make_it_fail}\n"


def proc_pid_fault_write(m: Machine, rest: str, text: str) -> bool:
    """Writes to those files; False when ``rest`` is not one of them.

    ``proc_fail_nth_write``: ``kstrtouint`` (base 0, at most 34 bytes) into the task's
    ``fail_nth`` (0 switches it off).  ``proc_fault_inject_write``: ``kstrtoint`` (base 0)
    of the stripped text, 0 or 1, else EINVAL.
    """
    found = _proc_task(m, rest)
    if found is None or found[1] not in ("fail-nth", "make-it-fail"):
        return False
    tf, name = found
    data = text.encode()
    if name == "fail-nth":
        n = kstrtoull(data[:34].decode("latin-1"))
        if n > _U32:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        m.kernel.fault_inject.set_fail_nth(tf, n)
        return True
    raw = data[:PROC_NUMBUF - 1].decode("latin-1").strip()
    value = kstrtoll(raw)
    if value != _s32(value):
        raise OSError(errno.ERANGE, "Numerical result out of range")
    if value not in (0, 1):
        raise OSError(errno.EINVAL, "Invalid argument")
    tf.make_it_fail = value
    return True
