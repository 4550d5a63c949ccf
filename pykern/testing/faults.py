"""The fail-nth sweep: every page allocation an operation makes, failed in turn.

:func:`fail_nth_sweep` runs an operation with ``fail-nth`` = 1, 2, 3, ... (``/proc/<pid>/
fail-nth``, :mod:`pykern.lib.fault_inject`) until a run reaches fewer fault points than
asked, i.e. succeeds with nothing injected.  Each run happens on a fork of the machine
(``m.fork()``), so every run starts from the same state and the machine passed in is left
as it was.  After an injected failure it checks the kernel's outcome:

- the call fails with one of the expected errnos (or returns NULL/None, for calls whose
  kernel counterpart returns a pointer);
- ``fail-nth`` reads 0 (the fault was injected);
- the machine is as before the call (:func:`machine_state`): free pages and the free
  blocks (per zone, order and migratetype), the memmap arrays and pageblock types, the
  reverse map, CMA bitmaps and counts, both kexec slots (image, entries, the bytes of its
  pages), every task's mappings and data, and the text of /proc/buddyinfo, pagetypeinfo,
  meminfo, zoneinfo (without its event counters), iomem, the kexec sysfs files and the CMA
  debugfs files.  A difference is accepted only when a known kernel leak explains it: the
  same run on a fork with one quirk of :data:`pykern.quirks.LEAKS` fixed leaves no
  difference.  With ``fixes="all"`` nothing is accepted.

Two things the kernel never restores are not compared [model]: the order of blocks on a
free list (which end a freed block goes to depends on its neighbours, MM F5) and which of
Unmovable, Movable and Reclaimable a pageblock has (any allocation that falls back may
claim a block, MM A8, and freeing never gives it back); free blocks on those three lists
are compared as one set, and pagetypeinfo with those three rows and columns summed.
CMA, HighAtomic and Isolate are compared exactly.

``moves_pages=True`` is for operations that migrate pages (``cma_alloc`` over borrowed
pages, long-term pins): ``migrate_pages`` does not move back the pages it moved before an
allocation failed, so where pages sit may change; the check then compares what migration
preserves (free pages per zone, CMA bitmaps, the kexec slots, every task's data and page
count, reference/map/pin totals, no pageblock left isolated) and MM V1.

A run whose injected failure the operation absorbs (a CMA attempt that falls back to the
walk, say) succeeds; it is recorded and checked against MM V1 and the K19 invariants only.

The sweep configures each fork's ``fail_page_alloc`` so that every allocation is a fault
point (``min-order`` 0, ``ignore-gfp-wait`` N, ``ignore-gfp-highmem`` N) unless
``configure=False``; fail-nth itself obeys those filters, as the kernel's does.
"""

from __future__ import annotations

import errno as _errno
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..quirks import LEAKS, Fixes, parse_fixes
from ..errors import SweepFailure

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["Attempt", "SweepResult", "SweepFailure", "fail_nth_sweep", "machine_state",
           "state_differences", "configure_fail_page_alloc", "FAIL_PAGE_ALLOC"]

FAIL_PAGE_ALLOC = "/sys/kernel/debug/fail_page_alloc/"
_PROC_FILES = ("/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/meminfo", "/proc/zoneinfo",
               "/proc/iomem", "/sys/kernel/kexec_loaded", "/sys/kernel/kexec_crash_loaded")
_ZONEINFO_EVENTS = ("numa_hit", "numa_miss", "numa_foreign", "numa_interleave",
                    "numa_local", "numa_other")


@dataclass
class Attempt:
    """One run of the sweep: ``n`` is the fail-nth written."""

    n: int
    #: "errno", "null" (the call returned None) or "ok" (the failure was absorbed).
    outcome: str
    errno: int | None = None
    #: Quirks of :data:`pykern.quirks.LEAKS` whose fixes explain the differences.
    leaks: tuple[str, ...] = ()
    #: The differences found (explained by ``leaks``, or none).
    differences: list[str] = field(default_factory=list)


@dataclass
class SweepResult:
    """What :func:`fail_nth_sweep` found."""

    #: Fault points the operation reaches when nothing fails.
    points: int
    attempts: list[Attempt]
    #: The operation's return value on the run that succeeded, and that run's machine.
    result: Any
    machine: Machine

    @property
    def leaks(self) -> dict[str, list[int]]:
        """Quirk → the fail-nth values whose failure it leaks on."""
        out: dict[str, list[int]] = {}
        for a in self.attempts:
            for q in a.leaks:
                out.setdefault(q, []).append(a.n)
        return out

    @property
    def absorbed(self) -> list[int]:
        """fail-nth values whose injected failure the operation survived."""
        return [a.n for a in self.attempts if a.outcome == "ok"]


def configure_fail_page_alloc(m: Machine, **values: str) -> None:
    """Write ``fail_page_alloc`` debugfs files, one per keyword: a keyword is the file's
    name, with ``_`` for each ``-`` of names such as ``min-order`` or ``task-filter``."""
    from ..mm.fail_page_alloc import FAIL_PAGE_ALLOC_FILES
    for name, value in values.items():
        if name not in FAIL_PAGE_ALLOC_FILES:
            name = name.replace("_", "-")
        m.write(FAIL_PAGE_ALLOC + name, value)


def _fail_nth_path(task: int | None) -> str:
    return "/proc/thread-self/fail-nth" if task is None else \
        f"/proc/{task}/task/{task}/fail-nth"


# ----------------------------------------------------------------------------- the state
def _image_state(m: Machine, im: Any) -> Any:
    if im is None:
        return None
    entries = im.entries()
    digest = hashlib.sha256()
    for kind, addr in entries:
        if kind in ("SOURCE", "INDIRECTION"):
            digest.update(m.phys_read(addr, 4096))
    for seg in im.segments:
        if seg.cma:
            digest.update(m.phys_read(seg.mem, seg.bufsz))
    return (im.type, im.head, im.start,
            [(s.mem, s.memsz, s.bufsz, s.cma) for s in im.segments],
            list(im.control_pages), list(im.dest_pages), list(im.unusable_pages),
            entries, digest.hexdigest())


def _task_state(m: Machine) -> Any:
    """Per task: its mappings, page count and a digest of its data in address order (what
    migration must preserve; where the pages sit is the reverse map's business)."""
    rmap = m.kernel.rmap
    pages: dict[int, list[tuple[int, int]]] = {}
    for i, owner in enumerate(rmap.owner):
        if owner:
            pages.setdefault(owner, []).append((rmap.vpn[i], rmap.base_pfn + i))
    ram, offset = m.ram, m.physmem.offset
    out = {}
    for pid, t in sorted(m.tasks.items()):
        digest = hashlib.sha256()
        owned = sorted(pages.get(pid, ()))
        for _, pfn in owned:
            at = offset(pfn << 12, 4096)
            digest.update(ram[at:at + 4096])
        out[pid] = (t.mappings(), len(owned), digest.hexdigest())
    return out


def _cma_state(m: Machine) -> Any:
    return [(c.name, c.count, c.available_count, [bytes(r.bitmap) for r in c.ranges],
             list(c.mem_head)) for c in m.cma_areas]


def _fold_pagetypeinfo(text: str) -> str:
    """pagetypeinfo with the Unmovable, Movable and Reclaimable rows (free pages per order)
    and columns (pageblocks per type) summed, as the module doc says."""
    out: list[str] = []
    pending: dict[str, list[int]] = {}
    for line in text.split("\n"):
        words = line.split()
        if words[:1] == ["Node"] and "type" in words and \
                words[words.index("type") + 1] in _PCP:
            key = " ".join(words[:words.index("type")])
            counts = [int(w) for w in words[words.index("type") + 2:]]
            acc = pending.setdefault(key, [0] * len(counts))
            pending[key] = [a + c for a, c in zip(acc, counts)]
            if words[words.index("type") + 1] == "Reclaimable":
                out.append(f"{key} type Unmovable+Movable+Reclaimable "
                           + " ".join(map(str, pending.pop(key))))
            continue
        if words[:1] == ["Node"] and "zone" in words and "type" not in words:
            nums = [int(w) for w in words[4:]] if len(words) > 4 else []
            if len(nums) == 6:
                line = " ".join(words[:4] + [str(sum(nums[:3]))] + words[7:])
        out.append(line)
    return "\n".join(out)


_PCP = ("Unmovable", "Movable", "Reclaimable")


def _procfs(m: Machine, moves_pages: bool) -> dict[str, str]:
    out = {}
    paths = ("/proc/iomem", "/sys/kernel/kexec_loaded", "/sys/kernel/kexec_crash_loaded") \
        if moves_pages else _PROC_FILES
    for path in paths:
        text = m.read(path)
        if path == "/proc/pagetypeinfo":
            text = _fold_pagetypeinfo(text)
        if path == "/proc/zoneinfo":
            text = "\n".join(line for line in text.split("\n")
                             if (line.split() or [""])[0] not in _ZONEINFO_EVENTS)
        out[path] = text
    if moves_pages:
        out["/proc/meminfo"] = "\n".join(line for line in m.read("/proc/meminfo").split("\n")
                                         if line.startswith(("MemTotal", "MemFree")))
    for cma in m.cma_areas:
        base = f"/sys/kernel/debug/cma/{cma.name}/"
        for name in ("used", "maxchunk", "bitmap"):
            try:
                out[base + name] = m.read(base + name)
            except FileNotFoundError:
                pass
    return out


def machine_state(m: Machine, moves_pages: bool = False) -> dict[str, Any]:
    """What a failed call must leave as it found it (module doc), as comparable values."""
    mm = m.mm
    mem = mm.mem_map
    state: dict[str, Any] = {}
    zones = {}
    for z in mm.zones:
        counts: tuple[Any, ...] = (z.nr_free_pages, z.managed_pages)
        if not moves_pages:
            counts += (tuple(z.nr_free), z.nr_free_cma, z.nr_free_highatomic,
                       z.nr_free_pages_blocks, z.nr_reserved_highatomic, z.watermark_boost,
                       z.nr_inactive_anon)
        zones[z.name] = counts
        if not moves_pages:
            state[f"free blocks of {z.name}"] = [
                (sorted(pfn for fl in per_order[:3] for pfn in fl),
                 [sorted(fl) for fl in per_order[3:]]) for per_order in z.free_list]
    state["zone counters"] = zones
    if moves_pages:
        state["isolated pageblocks"] = bytes(b & 0x10 for b in mem.pageblock_flags)
        state["reference totals"] = (sum(mem.refcount), sum(mem.mapcount), sum(mem.pincount))
    else:
        state["memmap flags"] = bytes(mem.flags)
        state["memmap order"] = bytes(mem.order)
        state["memmap alloc_order"] = bytes(mem.alloc_order)
        state["memmap refcount"] = mem.refcount.tobytes()
        state["memmap mapcount"] = mem.mapcount.tobytes()
        state["memmap pincount"] = mem.pincount.tobytes()
        state["pageblock types"] = bytes(b if b & 0x7 >= 3 else b & ~0x7
                                         for b in mem.pageblock_flags)
        state["rmap"] = (m.kernel.rmap.owner.tobytes(), m.kernel.rmap.vpn.tobytes())
    state["cma areas"] = _cma_state(m)
    state["kexec_image"] = _image_state(m, m.kexec_image)
    state["kexec_crash_image"] = _image_state(m, m.kexec_crash_image)
    state["tasks"] = _task_state(m)
    state.update(_procfs(m, moves_pages))
    return state


def state_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The keys of :func:`machine_state` whose values differ, with a short hint."""
    out = []
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        hint = ""
        if isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)) \
                and len(a) == len(b):
            first = next(i for i in range(len(a)) if a[i] != b[i])
            hint = f" (first at byte {first}: {a[first]:#x} -> {b[first]:#x})"
        elif isinstance(a, str) and isinstance(b, str):
            la, lb = a.split("\n"), b.split("\n")
            diff = next((f"{x!r} -> {y!r}" for x, y in zip(la, lb) if x != y), "length")
            hint = f" ({diff})"
        out.append(f"{key}{hint}")
    return sorted(out)


# ----------------------------------------------------------------------------- the sweep
def _check_after_success(m: Machine) -> None:
    from .invariants import check_kimage
    m.mm.check_invariants()
    for im in (m.kexec_image, m.kexec_crash_image):
        if im is not None:
            check_kimage(m, im)


def _run(m: Machine, op: Callable[[Machine], Any], n: int, task: int | None,
         configure: bool, fixes: Fixes | None = None
         ) -> tuple[Machine, str, Any, int]:
    """One run on a fork: (machine, outcome, result or errno, fail-nth left)."""
    m2 = m.fork()
    if fixes is not None:
        m2.fixes = fixes
    if configure:
        configure_fail_page_alloc(m2, min_order="0", ignore_gfp_wait="N",
                                  ignore_gfp_highmem="N")
    path = _fail_nth_path(task)
    m2.write(path, str(n))
    try:
        result = op(m2)
    except OSError as exc:
        left = int(m2.read(path))
        return m2, "errno", exc.errno, left
    left = int(m2.read(path))
    return m2, "null" if result is None else "ok", result, left


def fail_nth_sweep(m: Machine, op: Callable[[Machine], Any], *, task: int | None = None,
                   errnos: Iterable[int] = (_errno.ENOMEM,), null_is_failure: bool = False,
                   moves_pages: bool = False, configure: bool = True, start: int = 1,
                   max_points: int = 100_000) -> SweepResult:
    """Fail each fault point ``op(machine)`` reaches, one run per point (module doc).

    ``task``: the pid of the Task whose fail-nth is set (``op`` then calls that task's
    methods, ``m.tasks[pid]``); None for the machine context.  ``errnos``: the errnos the
    kernel returns for an allocation failure on this path.  ``null_is_failure``: a None
    return is the call's failure (``cma_alloc``, ``alloc_pages``).  ``start``: the first
    fail-nth tried (a long operation can be swept over the window that matters only).

    :raises SweepFailure: an unexpected errno or outcome, a fault not injected, a state
        difference no unfixed leak quirk explains, or a run that is not deterministic.
    """
    allowed = frozenset(errnos)
    before = machine_state(m, moves_pages)
    attempts: list[Attempt] = []
    if isinstance(start, bool) or not isinstance(start, int) or start < 1:
        raise ValueError(f"start {start!r} must be a positive int")
    n = start
    while True:
        if n > max_points:
            raise SweepFailure(f"more than {max_points} fault points")
        m2, outcome, value, left = _run(m, op, n, task, configure)
        if left:
            reached = n - left
            if reached != n - 1 and n > start:
                raise SweepFailure(f"fail-nth {n}: the run reached {reached} fault points, "
                                   f"the previous one at least {n - 1} (not deterministic)")
            if outcome == "errno" or outcome == "null" and null_is_failure:
                raise SweepFailure(f"the operation fails with nothing injected ({outcome} "
                                   f"{value})")
            _check_after_success(m2)
            return SweepResult(reached, attempts, value, m2)
        if outcome == "ok" or outcome == "null" and not null_is_failure:
            _check_after_success(m2)
            attempts.append(Attempt(n, "ok"))
            n += 1
            continue
        if outcome == "errno" and value not in allowed:
            raise SweepFailure(f"fail-nth {n}: errno {value} "
                               f"({_errno.errorcode.get(value or 0, '?')}), expected one of "
                               f"{sorted(allowed)}")
        after = machine_state(m2, moves_pages)
        diffs = state_differences(before, after)
        leaks: tuple[str, ...] = ()
        if diffs:
            leaks = _explain(m, op, n, task, configure, moves_pages, before)
            if not leaks:
                raise SweepFailure(f"fail-nth {n} ({outcome} {value}): the failed call "
                                   f"changed {', '.join(diffs)}; no unfixed leak quirk "
                                   f"explains it (fixes: {sorted(m.fixes) or 'none'})")
        m2.mm.check_invariants()
        attempts.append(Attempt(n, outcome, value if outcome == "errno" else None, leaks,
                                diffs))
        n += 1


def _explain(m: Machine, op: Callable[[Machine], Any], n: int, task: int | None,
             configure: bool, moves_pages: bool, before: dict[str, Any]) -> tuple[str, ...]:
    """The unfixed leak quirks whose fixes make run ``n`` leave no difference: each alone
    first, then all of them together."""
    unfixed = sorted(LEAKS - m.fixes)
    trials = [[q] for q in unfixed] + ([unfixed] if len(unfixed) > 1 else [])
    for names in trials:
        fixes = m.fixes | parse_fixes(names)
        m3, outcome, _, left = _run(m, op, n, task, configure, fixes)
        if left or outcome == "ok":
            continue
        if not state_differences(before, machine_state(m3, moves_pages)):
            return tuple(names)
    return ()
