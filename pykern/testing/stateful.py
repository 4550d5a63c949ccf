"""``KexecStateMachine``: a hypothesis ``RuleBasedStateMachine`` over one pykern machine.

Rules allocate and free pages, map, pin and exit tasks, take and give back CMA blocks, load
and unload kexec images with and without ``KEXEC_FILE_NO_CMA``, reboot and panic.  After
every step the invariants check the loaded images (the K19 invariants), the page accounting (every
free page is either free or held by someone the machine knows about), task data and the CMA
bitmap.  Subclass it to add rules or invariants, or to change the class attributes::

    class MyTest(KexecStateMachine):
        fixes = ()                 # run with the upstream quirks
    TestMine = MyTest.TestCase
"""

from __future__ import annotations

import errno
import random
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ..kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD
from ..machine import Machine
from ..mm import gfp
from .invariants import check_kimage, kimage_held_pages
from .strategies import kexec_loads, layouts

__all__ = ["KexecStateMachine"]

PAGE = 4096
_NOWARN = gfp.__GFP_NOWARN          # read outside the class body: no name mangling
#: What a load of a valid image may fail with (K6.1, K8.5, ARCH X12, K11.2).
LOAD_ERRNOS = frozenset({errno.EADDRNOTAVAIL, errno.EINVAL, errno.ENOMEM})


def _event(value: str) -> None:
    """``hypothesis.event`` inside a hypothesis test; nothing when the rules are driven
    directly (:mod:`pykern.testing.soak`)."""
    if currently_in_test_context():
        event(value)


def _text_offset(m: Machine, kernel: bytes) -> int:
    return int.from_bytes(kernel[8:16], "little") if m.arch == "arm64" else 0


class KexecStateMachine(RuleBasedStateMachine):
    """Allocations, tasks, pins, CMA, kexec loads, reboots and panics on one machine."""

    #: Machine(fixes=...) for every generation; "all" makes page accounting exact (no leaks).
    fixes: Any = "all"
    #: Bounds for the layouts the machine is drawn from.
    max_ram: str = "192M"
    #: Largest kernel and initrd a load draws.
    max_image: str = "4M"

    def __init__(self) -> None:
        super().__init__()
        self.layout: dict[str, Any] = {"ram": "64M"}
        self.m = Machine(**self.layout, fixes=self.fixes)
        self._reset_tracking()

    def _reset_tracking(self) -> None:
        self.base_free = self.m.mm.nr_free_pages()
        self.pages: list[tuple[int, int]] = []
        self.tasks: list[dict[str, Any]] = []
        self.cma_blocks: list[tuple[Any, int]] = []
        self.text_offsets: dict[str, int] = {"default": 0, "crash": 0}

    @initialize(kw=layouts(max_ram="192M", max_reserved=1))
    def boot(self, kw: dict[str, Any]) -> None:
        self.layout = kw
        self.m = Machine(**kw, fixes=self.fixes)
        self._reset_tracking()

    # ------------------------------------------------------------ memory users
    @rule(order=st.integers(0, 6), movable=st.booleans())
    def alloc_pages(self, order: int, movable: bool) -> None:
        mask = gfp.GFP_HIGHUSER_MOVABLE if movable else gfp.GFP_KERNEL
        page = self.m.mm.alloc_pages(mask | _NOWARN, order)
        if page is not None:
            self.pages.append((page.pfn, order))

    @rule(k=st.integers(0, 1000))
    def free_pages(self, k: int) -> None:
        if not self.pages:
            return
        pfn, order = self.pages.pop(k % len(self.pages))
        self.m.mm.free_pages(pfn, order)

    @rule(npages=st.integers(1, 512), seed=st.integers(0, 255))
    def task_map(self, npages: int, seed: int) -> None:
        t = self.m.new_task()
        try:
            va = t.mmap_anon(npages)
        except OSError as exc:
            assert exc.errno == errno.ENOMEM
            t.exit()
            return
        data = random.Random(seed).randbytes(min(npages, 8) * PAGE)
        t.write(va, data)
        self.tasks.append({"t": t, "va": va, "n": npages, "data": data, "pins": []})

    @rule(k=st.integers(0, 1000), page=st.integers(0, 511), longterm=st.booleans())
    def pin(self, k: int, page: int, longterm: bool) -> None:
        if not self.tasks:
            return
        task = self.tasks[k % len(self.tasks)]
        page %= task["n"]
        try:
            task["t"].pin(task["va"] + page * PAGE, 1, longterm=longterm)
        except OSError as exc:
            assert longterm and exc.errno == errno.ENOMEM
            return
        task["pins"].append(page)

    @rule(k=st.integers(0, 1000))
    def unpin(self, k: int) -> None:
        pinned = [t for t in self.tasks if t["pins"]]
        if not pinned:
            return
        task = pinned[k % len(pinned)]
        task["t"].unpin(task["va"] + task["pins"].pop() * PAGE, 1)

    @rule(k=st.integers(0, 1000))
    def task_exit(self, k: int) -> None:
        if not self.tasks:
            return
        self.tasks.pop(k % len(self.tasks))["t"].exit()

    @rule(count=st.integers(1, 2048), align=st.integers(0, 9))
    def cma_alloc(self, count: int, align: int) -> None:
        if self.m.dma_contiguous_default_area is None:
            return
        page = self.m.dma_alloc_from_contiguous(None, count, align, True)
        if page is not None:
            self.cma_blocks.append((page, count))

    @rule(k=st.integers(0, 1000))
    def cma_release(self, k: int) -> None:
        if not self.cma_blocks:
            return
        page, count = self.cma_blocks.pop(k % len(self.cma_blocks))
        assert self.m.dma_release_from_contiguous(None, page, count)

    # ------------------------------------------------------------ kexec
    def _load(self, data: st.DataObject, flags_extra: int, no_cma: bool) -> None:
        load = data.draw(kexec_loads(arch=self.m.arch, max_kernel=self.max_image,
                                     max_initrd=self.max_image), label="load")
        self.load_image(load, flags_extra, no_cma)

    def load_image(self, load: dict[str, Any], flags_extra: int, no_cma: bool) -> None:
        """``kexec_file_load`` of ``load`` (a :func:`~pykern.testing.strategies.kexec_loads`
        dict) into the slot ``flags_extra`` selects, and the checks of the outcome."""
        flags = (load["flags"] & ~KEXEC_FILE_NO_CMA) | flags_extra
        if no_cma:
            flags |= KEXEC_FILE_NO_CMA
        slot = "crash" if flags_extra & KEXEC_FILE_ON_CRASH else "default"
        old = self.m.kexec_image if slot == "default" else None
        try:
            self.m.kexec_file_load(load["kernel"], load["initrd"], load["cmdline"], flags)
        except OSError as exc:
            _event(f"{slot} load: {errno.errorcode.get(exc.errno or 0, str(exc.errno))}")
            assert exc.errno in LOAD_ERRNOS, exc
            assert slot == "crash" or self.m.kexec_image is old          # K19.9
            if slot == "crash":
                assert self.m.kexec_crash_image is None
            return
        im = self.m.kexec_image if slot == "default" else self.m.kexec_crash_image
        assert im is not None
        _event(f"{slot} load: {sum(s.cma for s in im.segments)}/{im.nr_segments} in CMA")
        self.text_offsets[slot] = _text_offset(self.m, load["kernel"])

    @rule(data=st.data(), no_cma=st.booleans())
    def load(self, data: st.DataObject, no_cma: bool) -> None:
        self._load(data, 0, no_cma)

    @rule(data=st.data())
    def load_crash(self, data: st.DataObject) -> None:
        self._load(data, KEXEC_FILE_ON_CRASH, False)

    @rule(crash=st.booleans())
    def unload(self, crash: bool) -> None:
        self.m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD
                               | (KEXEC_FILE_ON_CRASH if crash else 0))
        assert (self.m.kexec_crash_image if crash else self.m.kexec_image) is None

    @rule()
    def reboot(self) -> None:
        if self.m.kexec_image is None:
            try:
                self.m.kernel_kexec()
            except OSError as exc:
                assert exc.errno == errno.EINVAL                        # K16.1
            else:
                raise AssertionError("kernel_kexec without an image did not fail")
            return
        gen = self.m.generation
        r = self.m.kernel_kexec()
        assert r.corrupted == [] and r.scribbles == []          # no devices, nothing stray
        if self.m.halted:
            assert self.m.arch == "x86_64" and not r.verified
            self._power_cycle()
            return
        assert self.m.generation == gen + 1 and self.m.kexec_image is None
        _event(f"reboot copied {r.hot_phase_pages > 0}")
        self._reset_tracking()

    @rule()
    def panic(self) -> None:
        had = self.m.kexec_crash_image is not None
        gen = self.m.generation
        self.m.panic()
        if had:
            assert self.m.generation == gen + 1 and not self.m.halted
            self._reset_tracking()
        else:
            assert self.m.halted                                        # K17.4
            self._power_cycle()

    def _power_cycle(self) -> None:
        """Power-cycle a halted machine (K16.13/K17.4): it answers only phys_read/phys_write;
        then it is switched off and on again (a new generation-0 machine with the same
        layout)."""
        assert self.m.halted
        try:
            self.m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD)
        except RuntimeError:
            pass
        else:
            raise AssertionError("a halted machine accepted a syscall")
        self.m.phys_read(self.m.banks[0][0], 8)
        self.m = Machine(**self.layout, fixes=self.fixes)
        self._reset_tracking()

    # ------------------------------------------------------------ invariants
    @invariant()
    def images_keep_section_19(self) -> None:
        for im in (self.m.kexec_image, self.m.kexec_crash_image):
            if im is not None:
                check_kimage(self.m, im)

    @invariant()
    def every_page_accounted_for(self) -> None:
        if self.m.halted:
            return
        held = sum(1 << order for _, order in self.pages)
        held += sum(t["n"] for t in self.tasks)
        held += sum(count for _, count in self.cma_blocks)
        if self.m.kexec_image is not None:
            held += kimage_held_pages(self.m.kexec_image, self.text_offsets["default"])
        assert self.m.mm.nr_free_pages() == self.base_free - held

    @invariant()
    def task_data_survives_migration(self) -> None:
        if self.m.halted:
            return
        for task in self.tasks:
            assert task["t"].read(task["va"], len(task["data"])) == task["data"]
