"""Running a scenario: :class:`Runner` boots its machine and executes its steps, one
:class:`StepResult` each."""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..constants import PAGE_SIZE
from ..kernel.kexec import uapi
from .schema import Blob, Scenario, Step, format_flags

if TYPE_CHECKING:
    from ..kernel.kexec.core import KImage
    from ..kernel.kexec.reboot import KexecResult
    from ..machine import Machine

__all__ = ["Runner", "StepResult", "kexec_result_json", "placement"]


@dataclass
class StepResult:
    """What one step did.

    ``status`` is ``ok``, ``failed``, ``expected-failure`` (failed with the errno its
    ``expect`` named), ``unexpected-success`` or ``corrupted`` (a reboot whose check failed or
    whose image was damaged).  ``ok`` is False for failed, unexpected-success and corrupted.
    """

    index: int
    action: str
    status: str = "ok"
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    errno: int | None = None
    reasons: list[str] = field(default_factory=list)
    output: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when the step did what the scenario expected."""
        return self.status in ("ok", "expected-failure")

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out: dict[str, Any] = {"step": self.index, "action": self.action,
                               "status": self.status, "ok": self.ok, "summary": self.summary}
        if self.note:
            out["note"] = self.note
        if self.error is not None:
            out["error"] = self.error
            out["errno"] = self.errno
            out["errno_name"] = _errno.errorcode.get(self.errno or 0)
            out["reasons"] = self.reasons
        if self.output is not None:
            out["output"] = self.output
        out.update(self.details)
        return out


def placement(cma: bool, crash: bool) -> str:
    """How a segment was placed: ``CMA``, ``walk`` (kexec_locate_mem_hole) or ``crash``."""
    return "crash" if crash else ("CMA" if cma else "walk")


def kexec_result_json(r: KexecResult) -> dict[str, Any]:
    """What a reboot's :class:`~pykern.kernel.kexec.reboot.KexecResult` reports in
    ``--json``: the hot phase, the check of the new image, corrupted runs and scribbles."""
    return {"hot_phase_pages": r.hot_phase_pages, "hot_phase_bytes": r.hot_phase_bytes,
            "hot_phase_ms": round(r.hot_phase_seconds * 1000, 3),
            "emulated_copy_ms": r.hot_phase_ns / 1e6, "verified": bool(r.verified),
            "corrupted": [list(c) for c in r.corrupted],
            "scribbles": [list(s) for s in r.scribbles]}


class Runner:
    """Boots a scenario's machine and executes steps on it, one :class:`StepResult` each.

    The runner keeps what the map and the reports need after the fact: the image last loaded
    or executed (``last_image``), the last reboot's ``KexecResult`` (``last_result``), the
    pages ``alloc`` steps hold and the tasks they created.
    """

    def __init__(self, scenario: Scenario, *,
                 flag_override: Callable[[int], int] | None = None,
                 machine: Machine | None = None) -> None:
        self.scenario = scenario
        #: ``machine``: run the steps on this machine (e.g. a restored snapshot) instead of
        #: booting the scenario's.
        self.machine: Machine = scenario.build_machine() if machine is None else machine
        self.results: list[StepResult] = []
        self.last_image: KImage | None = None
        self.last_result: KexecResult | None = None
        self.held_pages: list[tuple[Any, int]] = []
        self.tasks: list[Any] = []
        self.flag_override = flag_override

    def run(self, upto: int | None = None) -> list[StepResult]:
        """Execute the scenario's steps 1..``upto`` (all when None)."""
        steps = self.scenario.steps if upto is None else self.scenario.steps[:upto]
        for step in steps:
            self.results.append(self.execute(step))
        return self.results

    @property
    def failed(self) -> bool:
        """True when some step failed or found corruption."""
        return any(not r.ok for r in self.results)

    # --------------------------------------------------------------------- dispatch
    def execute(self, step: Step) -> StepResult:
        """Run one step; user-level failures become a failed result, never an exception."""
        res = StepResult(step.index, step.action, note=step.note)
        m = self.machine
        mark = self._dmesg_len()
        try:
            if m.halted and step.action not in ("cat",):
                raise RuntimeError("the machine is halted")
            getattr(self, f"_do_{step.action}")(step, res)
        except OSError as exc:
            code = exc.errno if exc.errno is not None else _errno.EIO
            res.status = "failed"
            res.errno = code
            res.error = os.strerror(code)
            if exc.strerror and exc.strerror != res.error:
                res.reasons.append(exc.strerror)
            elif exc.filename is None and exc.args and not exc.strerror:
                res.reasons.append(str(exc))
            res.reasons += [text for level, text in self._dmesg_since(mark) if level <= 4]
            res.summary = f"failed: {res.error}"
        except (ValueError, RuntimeError, KeyError) as exc:
            res.status = "failed"
            res.error = str(exc) or type(exc).__name__
            res.summary = f"failed: {res.error}"
        if step.expect is not None:
            want = getattr(_errno, step.expect)
            if res.status == "failed" and res.errno == want:
                res.status = "expected-failure"
                res.summary += f" (expected {step.expect})"
            elif res.status == "failed":
                res.summary += f" (expected {step.expect})"
            else:
                res.status = "unexpected-success"
                res.summary += f" (expected {step.expect})"
        return res

    def _dmesg_len(self) -> int:
        try:
            return len(self.machine.dmesg())
        except RuntimeError:
            return 0

    def _dmesg_since(self, mark: int) -> list[tuple[int, str]]:
        try:
            return self.machine.dmesg()[mark:]
        except RuntimeError:
            return []

    # --------------------------------------------------------------------- actions
    def _do_load(self, step: Step, res: StepResult) -> None:
        m = self.machine
        p = step.params
        kernel: Blob = p["kernel"]
        initrd: Blob | None = p["initrd"]
        flags: int = p["flags"]
        if self.flag_override is not None:
            flags = self.flag_override(flags)
        res.details.update(kernel=kernel.to_json(), initrd=initrd.to_json() if initrd else None,
                           cmdline=p["cmdline"], flags=flags, flag_names=format_flags(flags))
        try:
            kbytes = kernel.data(m.arch)
            ibytes = initrd.data(m.arch) if initrd is not None else None
        except OSError as exc:  # the file vanished or is unreadable: not a kernel refusal
            raise ValueError(f"cannot read {exc.filename}: {exc.strerror}") from None
        mark = self._dmesg_len()
        m.kexec_file_load(kbytes, ibytes, p["cmdline"], flags)
        if flags & uapi.KEXEC_FILE_DEBUG:
            res.details["debug"] = [t for _, t in self._dmesg_since(mark)]
        crash = bool(flags & uapi.KEXEC_FILE_ON_CRASH)
        image = m.kexec_crash_image if crash else m.kexec_image
        if image is None:  # not expected after a successful load
            res.summary = "loaded (no image?)"
            return
        self.last_image = image
        segs: list[dict[str, Any]] = [{"index": i, "mem": s.mem, "memsz": s.memsz, "bufsz": s.bufsz,
                 "cma": bool(s.cma)} for i, s in enumerate(image.segments)]
        entries = image.entries()
        kinds: dict[str, int] = {}
        for kind, _ in entries:
            kinds[kind] = kinds.get(kind, 0) + 1
        ncma = sum(1 for s in segs if s["cma"])
        res.details.update(image=image.type, segments=segs, entries=kinds,
                           entry_words=len(entries), cma_used_pages=self._cma_used())
        what = f"{kernel.describe(m.arch)}" + (
            f" + initrd {initrd.describe(m.arch)}" if initrd else "")
        res.summary = (f"{image.type} image: {len(segs)} segments ({ncma} CMA, "
                       f"{len(segs) - ncma} walk), {len(entries)} entry "
                       f"word{'s' if len(entries) != 1 else ''}")
        res.lines = [what + f"; flags {format_flags(flags)}"]
        res.lines += [f"segment {s['index']}: {s['mem']:#x} +{s['memsz']:#x} "
                      f"({placement(bool(s['cma']), crash)})" for s in segs]

    def _cma_used(self) -> int | None:
        area = self.machine.dma_contiguous_default_area
        if area is None:
            return None
        return int(area.count - area.available_count)

    def _do_unload(self, step: Step, res: StepResult) -> None:
        m = self.machine
        crash = bool(step.params.get("crash"))
        flags = uapi.KEXEC_FILE_UNLOAD | (uapi.KEXEC_FILE_ON_CRASH if crash else 0)
        had = (m.kexec_crash_image if crash else m.kexec_image) is not None
        m.kexec_file_load(None, None, "", flags)
        res.details.update(flags=flags, flag_names=format_flags(flags), had_image=had,
                           cma_used_pages=self._cma_used())
        res.summary = ("unloaded the " + ("crash" if crash else "default") + " image"
                       if had else "nothing was loaded")

    def _reboot_report(self, res: StepResult, r: KexecResult | None, image: Any) -> None:
        m = self.machine
        if r is None:
            res.details.update(halted=True, generation=m.generation)
            res.summary = "no crash kernel loaded: the machine halted"
            return
        self.last_result = r
        if image is not None:
            self.last_image = image
        res.details.update(image=r.image_type, **kexec_result_json(r), booted=bool(r.booted),
                           halted=bool(m.halted), generation=m.generation,
                           next_cmdline=None if m.halted else m.cmdline)
        bad = bool(r.corrupted) or not r.verified
        res.status = "corrupted" if bad else "ok"
        state = "halted" if m.halted else f"generation {m.generation}"
        res.summary = (f"{r.hot_phase_bytes} bytes copied in the hot phase, "
                       f"{'verified' if r.verified else 'NOT verified'}, "
                       f"{len(r.corrupted)} corrupted runs, {len(r.scribbles)} scribbles; "
                       f"now {state}")
        res.lines = [f"corrupted {phys:#x} +{length:#x} in segment {idx}"
                     for phys, length, idx in r.corrupted[:8]]
        if len(r.corrupted) > 8:
            res.lines.append(f"... {len(r.corrupted) - 8} more corrupted runs")
        res.lines += [f"scribble by {dev} at {phys:#x} +{length}"
                      for dev, phys, length in r.scribbles[:8]]
        if len(r.scribbles) > 8:
            res.lines.append(f"... {len(r.scribbles) - 8} more scribbles")

    def _do_exec(self, step: Step, res: StepResult) -> None:
        image = self.machine.kexec_image
        r = self.machine.kernel_kexec()
        self._reboot_report(res, r, image)

    def _do_panic(self, step: Step, res: StepResult) -> None:
        image = self.machine.kexec_crash_image
        r = self.machine.panic()
        self._reboot_report(res, r, image)

    def _do_alloc(self, step: Step, res: StepResult) -> None:
        p = step.params
        got: list[int] = []
        for _ in range(p["count"]):
            page = self.machine.mm.alloc_pages(p["gfp"], p["order"])
            if page is None:
                break
            self.held_pages.append((page, p["order"]))
            got.append(int(page.pfn))
        res.details.update(order=p["order"], gfp=p["gfp"], requested=p["count"],
                           allocated=len(got), pfns=got)
        res.summary = (f"{len(got)} of {p['count']} order-{p['order']} {p['gfp_name']} "
                       f"allocations")
        if got:
            res.summary += f", first pfn {got[0]:#x}"
        if len(got) < p["count"]:
            raise OSError(_errno.ENOMEM, f"allocation {len(got) + 1} of {p['count']} failed "
                          f"(no reclaim or compaction in pykern)")

    def _do_task(self, step: Step, res: StepResult) -> None:
        m = self.machine
        npages = step.params["npages"]
        task = m.new_task()
        va = task.mmap_anon(npages)
        self.tasks.append(task)
        in_cma = 0
        spans = [(c.base_pfn, c.base_pfn + c.count) for c in m.cma_areas]
        if spans:
            for i in range(npages):
                pfn = task.pfn_of(va + i * PAGE_SIZE)
                in_cma += any(lo <= pfn < hi for lo, hi in spans)
        res.details.update(pid=task.pid, va=va, npages=npages, pages_in_cma=in_cma)
        res.summary = f"pid {task.pid}: {npages} anonymous pages at {va:#x}, {in_cma} in CMA"

    def _do_cat(self, step: Step, res: StepResult) -> None:
        path = step.params["path"]
        if self.machine.halted:
            raise RuntimeError("the machine is halted: nothing can be read")
        text = self.machine.read(path)
        res.output = text
        nlines = text.count("\n")
        res.summary = f"{path}: {nlines} line{'s' if nlines != 1 else ''}"

    def _do_write(self, step: Step, res: StepResult) -> None:
        path, text = step.params["path"], step.params["text"]
        self.machine.write(path, text)
        res.summary = f"wrote {text!r} to {path}"
