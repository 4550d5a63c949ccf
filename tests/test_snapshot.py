"""Machine snapshots (issue 16): ``m.save(path)``, ``Machine.restore(path)``, ``m.fork()``.

The property test runs one operation sequence three times: once without a snapshot, and
once saved (or forked) at a random point, continuing both the original and the copy.  Every
later result (the kernel's return values and errnos, ``KexecResult`` fields) and the whole
state (RAM bytes, the procfs/debugfs text, free lists, dmesg, images, devices, generators)
must equal the run that never saved.
"""

from __future__ import annotations

import copy
import dataclasses
import array
import json
import mmap
import os
import pickle
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import FunctionType, MethodType, ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pykern import (KEXEC_FILE_DEBUG, KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH,
                    KEXEC_FILE_UNLOAD, Machine, images, snapshot)
from pykern._fast import range_equal
from pykern.drivers.dma import DmaDevice
from pykern.drivers.gic import GICv3, MsiSource
from pykern.mm import gfp, memory
from pykern.mm.memory import PhysMem
from pykern.mm.mmzone import migratetype_names
from pykern.snapshot import CHUNK_SIZE, FORMAT_VERSION, MAGIC, SnapshotError
from pykern.testing.strategies import layouts

PAGE = 4096
_NOWARN = gfp.__GFP_NOWARN
_PROCFS = ("buddyinfo", "pagetypeinfo", "zoneinfo", "meminfo", "vmstat", "iomem", "cmdline")


# ------------------------------------------------------------------ one operation sequence
def build(layout: dict[str, Any], gic: bool, dma: bool) -> Machine:
    """A fresh machine (devices are hardware objects: one set per machine)."""
    devices: list[Any] = []
    if gic and layout["arch"] == "arm64":
        devices.append(GICv3(honours_shutdown=False, sources=[MsiSource("eth0", nvec=32)]))
    if dma:
        devices.append(DmaDevice("nic0", honours_shutdown=False))
    return Machine(**layout, devices=devices)


def new_track() -> dict[str, Any]:
    return {"pages": [], "tasks": [], "cma": []}


def _kernel(m: Machine, pages: int, seed: int) -> bytes:
    if m.arch == "arm64":
        return images.arm64_image(pages * PAGE, seed=seed)
    return images.bzimage((pages + 2) * PAGE, seed=seed)


def apply(m: Machine, track: dict[str, Any], op: tuple[Any, ...]) -> Any:
    """Run one operation; the result is plain data (pfns, errnos, KexecResult fields).

    ``track`` names what the sequence holds by pfn and pid only, so a restored or forked
    machine continues from a copy of it.
    """
    try:
        return _apply(m, track, op)
    except RuntimeError as exc:                     # a halted machine (K16.13, K17.4)
        assert m.halted, exc
        return ("halted",)


def _apply(m: Machine, track: dict[str, Any], op: tuple[Any, ...]) -> Any:
    kind, *args = op
    if kind == "alloc":                             # __alloc_pages (MM A1)
        order, movable = args
        mask = (gfp.GFP_HIGHUSER_MOVABLE if movable else gfp.GFP_KERNEL) | _NOWARN
        page = m.mm.alloc_pages(mask, order)
        if page is not None:
            track["pages"].append((page.pfn, order))
        return None if page is None else page.pfn
    if kind == "free":                              # __free_pages (MM F1)
        if not track["pages"]:
            return "none"
        pfn, order = track["pages"].pop(args[0] % len(track["pages"]))
        m.mm.free_pages(m.mm.pfn_to_page(pfn), order)
        return pfn
    if kind == "map":                               # mmap + faults + write
        npages, seed = args
        t = m.new_task()
        try:
            va = t.mmap_anon(npages)
        except OSError as exc:
            t.exit()
            return ("errno", exc.errno)
        t.write(va, bytes([seed]) * (min(npages, 4) * PAGE - 7))
        track["tasks"].append({"pid": t.pid, "va": va, "n": npages, "pins": []})
        return va, [t.pfn_of(va + i * PAGE) for i in range(npages)]
    if kind == "write":
        if not track["tasks"]:
            return "none"
        k, page, seed = args
        task = track["tasks"][k % len(track["tasks"])]
        va = task["va"] + (page % task["n"]) * PAGE
        m.tasks[task["pid"]].write(va + 5, bytes([seed, seed ^ 0x5A]) * 100)
        return m.tasks[task["pid"]].read(va, 16)
    if kind == "pin":                               # pin_user_pages (MM M7, M8)
        if not track["tasks"]:
            return "none"
        k, page, longterm = args
        task = track["tasks"][k % len(track["tasks"])]
        page %= task["n"]
        t = m.tasks[task["pid"]]
        try:
            t.pin(task["va"] + page * PAGE, 1, longterm=longterm)
        except OSError as exc:
            return ("errno", exc.errno)
        task["pins"].append(page)
        return t.pfn_of(task["va"] + page * PAGE)
    if kind == "unpin":
        pinned = [t for t in track["tasks"] if t["pins"]]
        if not pinned:
            return "none"
        task = pinned[args[0] % len(pinned)]
        m.tasks[task["pid"]].unpin(task["va"] + task["pins"].pop() * PAGE, 1)
        return task["pid"]
    if kind == "exit":
        if not track["tasks"]:
            return "none"
        task = track["tasks"].pop(args[0] % len(track["tasks"]))
        m.tasks[task["pid"]].exit()
        return task["pid"]
    if kind == "cma_alloc":                         # cma_alloc (MM CMA6)
        count, align = args
        if m.dma_contiguous_default_area is None:
            return "none"
        page = m.dma_alloc_from_contiguous(None, count, align, True)
        if page is not None:
            track["cma"].append((page.pfn, count))
        return None if page is None else page.pfn
    if kind == "cma_release":                       # cma_release (MM CMA8)
        if not track["cma"]:
            return "none"
        pfn, count = track["cma"].pop(args[0] % len(track["cma"]))
        return m.dma_release_from_contiguous(None, m.mm.pfn_to_page(pfn), count)
    if kind == "load":                              # kexec_file_load (K20)
        kpages, ipages, no_cma, crash, debug, seed = args
        flags = (KEXEC_FILE_NO_CMA if no_cma else 0) | (KEXEC_FILE_ON_CRASH if crash else 0)
        flags |= KEXEC_FILE_DEBUG if debug else 0
        initrd = images.payload_pattern(ipages * PAGE - 3, seed=seed) if ipages else None
        try:
            m.kexec_file_load(_kernel(m, kpages, seed), initrd, f"console=ttyS0 s={seed}",
                              flags)
        except OSError as exc:
            return ("errno", exc.errno)
        im = m.kexec_crash_image if crash else m.kexec_image
        assert im is not None
        return [(s.mem, s.memsz, s.bufsz, s.cma) for s in im.segments]
    if kind == "unload":
        m.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD | (KEXEC_FILE_ON_CRASH * args[0]))
        return None
    if kind in ("reboot", "panic"):                 # kernel_kexec (K16), __crash_kexec (K17)
        try:
            r = m.kernel_kexec() if kind == "reboot" else m.panic()
        except OSError as exc:
            return ("errno", exc.errno)
        if r is None:
            return ("halted-by-panic", m.halted)
        if not m.halted:
            track.clear()
            track.update(new_track())
        fields = dataclasses.asdict(r)
        del fields["hot_phase_seconds"]             # wall time, the one non-emulated field
        return fields, m.generation, m.halted
    raise AssertionError(op)


def observe(m: Machine) -> dict[str, Any]:
    """Everything visible about a machine, RAM aside (compared with :func:`same_ram`)."""
    out: dict[str, Any] = {"generation": m.generation, "halted": m.halted, "seed": m.seed,
                           "fixes": m.fixes, "log": m.log.lines(), "cmdline": m.cmdline,
                           "kexec_rng": m.kexec_rng.getstate()}
    for name, dev in m.devices.items():
        if isinstance(dev, GICv3):
            out[name] = (dev.tables(), dev.trace, dev.its, dev.redistributors,
                         dev.dropped_writes)
        else:
            out[name] = (dev.buffers(), dev.trace, dev.dropped_writes)
    if m.halted:
        return out
    for f in _PROCFS:
        out[f] = m.read(f"/proc/{f}")
    for cma in m.cma_areas:
        for f in ("count", "used", "maxchunk", "base_pfn", "order_per_bit", "bitmap"):
            out[f"cma/{cma.name}/{f}"] = m.read(f"/sys/kernel/debug/cma/{cma.name}/{f}")
    out["free_lists"] = [m.mm.free_list(z.name, order, mt) for z in m.zones
                         if z.spanned_pages for order in range(11) for mt in migratetype_names]
    out["tasks"] = {pid: (t.pid,) for pid, t in m.tasks.items()}
    for slot, im in (("image", m.kexec_image), ("crash", m.kexec_crash_image)):
        out[slot] = None if im is None else (
            [(s.mem, s.memsz, s.bufsz, s.cma) for s in im.segments], im.entries(),
            im.control_pages, im.dest_pages, im.unusable_pages, im.start, im.head)
    return out


_ATOMS = (type(None), bool, int, float, complex, str, bytes)


def graph_diff(a: Any, b: Any) -> str | None:
    """The first place where two object graphs differ, or None: same types, same values,
    dicts in the same order, and the same sharing (an object reached twice in one graph is
    one object reached twice in the other).  The RAM buffers are compared by
    :func:`same_ram`; modules by name."""
    pairs: dict[int, int] = {}
    seen_b: set[int] = set()
    keep: list[Any] = []
    stack: list[tuple[str, Any, Any]] = [("m", a, b)]
    while stack:
        path, x, y = stack.pop()
        if type(x) is not type(y):
            return f"{path}: {type(x).__name__} vs {type(y).__name__}"
        if isinstance(x, _ATOMS):
            if x != y:
                return f"{path}: {x!r} vs {y!r}"
            continue
        if isinstance(x, ModuleType):
            if x.__name__ != y.__name__:
                return f"{path}: module {x.__name__} vs {y.__name__}"
            continue
        if not isinstance(x, tuple):
            if id(x) in pairs or id(y) in seen_b:
                if pairs.get(id(x)) != id(y):
                    return f"{path}: shared differently"
                continue                        # already compared
            pairs[id(x)] = id(y)
            seen_b.add(id(y))
            keep += (x, y)
        if isinstance(x, mmap.mmap):
            continue
        if isinstance(x, (bytearray, array.array, set, frozenset, random.Random)):
            if (x.getstate() != y.getstate()) if isinstance(x, random.Random) else x != y:
                return f"{path}: differs"
            continue
        if isinstance(x, dict):
            if list(x) != list(y):
                return f"{path}: keys {list(x)[:8]} vs {list(y)[:8]}"
            stack += [(f"{path}[{k!r}]", x[k], y[k]) for k in x]
        elif isinstance(x, (list, tuple)):
            if len(x) != len(y):
                return f"{path}: length {len(x)} vs {len(y)}"
            stack += [(f"{path}[{i}]", u, v) for i, (u, v) in enumerate(zip(x, y))]
        elif isinstance(x, (MethodType, FunctionType)):
            if x.__qualname__ != y.__qualname__:
                return f"{path}: {x.__qualname__} vs {y.__qualname__}"
            if isinstance(x, MethodType):
                stack.append((f"{path}.__self__", x.__self__, y.__self__))
        else:
            xs, ys = _attrs(x), _attrs(y)
            if sorted(xs) != sorted(ys):
                return f"{path}: attributes {sorted(xs)} vs {sorted(ys)}"
            stack += [(f"{path}.{k}", xs[k], ys[k]) for k in xs
                      if not (isinstance(x, PhysMem) and k == "_vaddr")]   # each buffer's own
    return None


def _attrs(obj: Any) -> dict[str, Any]:
    out = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                out[slot] = getattr(obj, slot)
    return out


def same_ram(a: Machine, b: Machine) -> bool:
    return len(a.ram) == len(b.ram) and range_equal(a.ram, 0, b.ram, 0, len(a.ram))


def _mm_op() -> st.SearchStrategy[tuple[Any, ...]]:
    k = st.integers(0, 99)
    return st.one_of(
        st.tuples(st.just("alloc"), st.integers(0, 6), st.booleans()),
        st.tuples(st.just("free"), k),
        st.tuples(st.just("map"), st.integers(1, 256), st.integers(0, 255)),
        st.tuples(st.just("write"), k, st.integers(0, 255), st.integers(0, 255)),
        st.tuples(st.just("pin"), k, st.integers(0, 255), st.booleans()),
        st.tuples(st.just("unpin"), k),
        st.tuples(st.just("exit"), k),
        st.tuples(st.just("cma_alloc"), st.integers(1, 1024), st.integers(0, 8)),
        st.tuples(st.just("cma_release"), k),
    )


def _load_op(crash: bool) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(st.just("load"), st.integers(1, 384), st.integers(0, 256), st.booleans(),
                     st.just(crash), st.booleans(), st.integers(0, 255))


@st.composite
def _phase(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Memory users, maybe a crash load, maybe a load, then a reboot, panic, unload or
    nothing: so that sequences do reach later generations."""
    ops = draw(st.lists(_mm_op(), max_size=4))
    if draw(st.integers(0, 4)) == 0:
        ops.append(draw(_load_op(True)))
    if draw(st.integers(0, 4)) > 0:
        ops.append(draw(_load_op(False)))
        ops += draw(st.lists(_mm_op(), max_size=2))
    ops.append(draw(st.sampled_from([("reboot",), ("reboot",), ("reboot",), ("panic",),
                                     ("unload", 0), ("unload", 1), ("alloc", 0, False)])))
    return ops


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    layout = draw(layouts(min_ram="64M", max_ram="128M", max_reserved=1))
    layout["fixes"] = draw(st.sampled_from([(), "all"]))
    ops = [op for phase in draw(st.lists(_phase(), min_size=1, max_size=3)) for op in phase]
    return {"layout": layout, "gic": draw(st.booleans()), "dma": draw(st.booleans()),
            "ops": ops, "split": draw(st.integers(0, len(ops))),
            "how": draw(st.sampled_from(["restore", "fork"]))}


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@pytest.mark.slow
@given(sc=scenarios())
def test_snapshot_round_trip_continues_like_the_run_that_never_saved(
        sc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    """save/restore and fork at any point of a sequence of allocations, frees, tasks with
    mmap/write, pins (MM M7/M8), cma_alloc/cma_release (MM CMA6/CMA8), kexec_file_load with
    and without KEXEC_FILE_NO_CMA and ON_CRASH (K20), unloads, kernel_kexec reboots (K16)
    and panics (K17), with and without a GICv3 and a DMA device: the original and the copy
    give the same results and end in the same state as the run that never saved."""
    layout, ops, k = sc["layout"], sc["ops"], sc["split"]
    ref = build(layout, sc["gic"], sc["dma"])
    ref_track = new_track()
    ref_results = [apply(ref, ref_track, op) for op in ops]

    m = build(layout, sc["gic"], sc["dma"])
    track = new_track()
    assert [apply(m, track, op) for op in ops[:k]] == ref_results[:k]
    before = observe(m)
    if sc["how"] == "restore":
        path = tmp_path_factory.mktemp("snap") / "m.pkm"
        m.save(path)
        copy_m = Machine.restore(path)
    else:
        copy_m = m.fork()
    assert copy_m is not m and copy_m.ram is not m.ram
    assert observe(copy_m) == before and observe(m) == before
    assert graph_diff(m, copy_m) is None
    assert same_ram(copy_m, m)
    copy_track = copy.deepcopy(track)
    event(f"saved at generation {m.generation}{', halted' if m.halted else ''}")
    results, copy_results = [], []
    for op in ops[k:]:                  # interleaved: the two must not share anything
        results.append(apply(m, track, op))
        copy_results.append(apply(copy_m, copy_track, op))
    event(f"{sc['how']}, ends at generation {ref.generation}"
          f"{', halted' if ref.halted else ''}, {len(ref.devices)} devices")
    for op, res in zip(ops, ref_results):
        if op[0] in ("load", "reboot", "panic"):
            event(f"{op[0]}: {'ok' if not isinstance(res, tuple) or res[0] != 'errno' else 'errno'}")
    assert results == ref_results[k:]
    assert copy_results == ref_results[k:]
    final = observe(ref)
    assert observe(m) == final
    assert observe(copy_m) == final
    assert graph_diff(ref, m) is None and graph_diff(ref, copy_m) is None
    assert same_ram(m, ref) and same_ram(copy_m, ref)


# ------------------------------------------------------------------ big, sparse machines
def test_mostly_empty_16g_machine_saves_to_a_small_file(tmp_path: Path) -> None:
    """A 16 GiB machine with a task and a loaded image (kexec_file_load, K20) saves to a
    file of about the data it holds: all-zero chunks are skipped, the rest compressed."""
    m = Machine("16G", cmdline="cma=64M")
    t = m.new_task()
    va = t.mmap_anon(64)
    t.write(va, b"sparse" * 4000)
    m.kexec_file_load(images.arm64_image(1 << 20), None, "", 0)
    path = tmp_path / "big.pkm"
    m.save(path)
    size = path.stat().st_size
    assert size < 4 << 20, size                 # the image (1 MiB) twice, the memmap, zeros
    r = Machine.restore(path)
    assert r.read("/proc/buddyinfo") == m.read("/proc/buddyinfo")
    assert r.read("/proc/meminfo") == m.read("/proc/meminfo")
    assert r.tasks[t.pid].read(va, 24000) == b"sparse" * 4000
    assert r.kexec_image is not None and m.kexec_image is not None
    assert r.kexec_image.entries() == m.kexec_image.entries()
    assert list(snapshot._nonzero_chunks(r.ram)) == list(snapshot._nonzero_chunks(m.ram))


def test_touched_chunk_scan_finds_every_written_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pagemap shortcut never misses a chunk: the non-zero chunks it reports equal a
    byte-by-byte scan of the whole RAM."""
    m = Machine("64M")
    for off in (0, 5 * CHUNK_SIZE + 17, len(m.ram) - 1, 300 * CHUNK_SIZE - 1):
        m.ram[off] = 0xA5
    found = [off for off, _ in snapshot._nonzero_chunks(m.ram)]
    full = [off for off in range(0, len(m.ram), CHUNK_SIZE)
            if m.ram[off:off + CHUNK_SIZE].count(0) != CHUNK_SIZE]
    assert found == full and 0 in found and len(found) >= 4
    monkeypatch.setattr(memory, "_PAGEMAP", [os.getpid(), -1])   # no pagemap: read it all
    assert snapshot._touched_chunks(m.ram) == list(range(0, len(m.ram), CHUNK_SIZE))
    assert [off for off, _ in snapshot._nonzero_chunks(m.ram)] == full


# ------------------------------------------------------------------ the file and bad files
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = Machine("64M", cmdline="cma=8M", seed=3)
    t = m.new_task()
    t.write(t.mmap_anon(4), b"x" * 9000)
    path = tmp_path_factory.mktemp("snap") / "m.pkm"
    m.save(path)
    return path


def test_file_records_magic_format_and_version(saved: Path) -> None:
    raw = saved.read_bytes()
    assert raw.startswith(MAGIC)
    (n,) = struct.unpack_from("<I", raw, len(MAGIC))
    header = json.loads(raw[len(MAGIC) + 4:len(MAGIC) + 4 + n])
    import pykern
    assert header["format"] == FORMAT_VERSION == 1
    assert header["pykern"] == pykern.__version__
    assert header["ram_size"] == 64 << 20 and header["arch"] == "arm64"
    assert snapshot.read_header(saved) == header
    tag, length = struct.unpack_from("<cQ", raw, len(raw) - 13)
    assert (tag, length) == (b"E", 4)
    assert struct.unpack_from("<I", raw, len(raw) - 4)[0] == zlib.crc32(raw[:-4])


def _rewrite(raw: bytes, header: dict[str, Any] | None = None, state: bytes | None = None) -> bytes:
    """The same file with another header or state record, checksum recomputed."""
    pos = len(MAGIC)
    (n,) = struct.unpack_from("<I", raw, pos)
    old = json.loads(raw[pos + 4:pos + 4 + n])
    body = raw[pos + 4 + n:-13]
    if state is not None:
        tag, ln = struct.unpack_from("<cQ", body, 0)
        assert tag == b"S"
        z = zlib.compress(state)
        packed = struct.pack("<BI", 1, len(z)) + z     # one compressed piece
        body = struct.pack("<cQ", b"S", len(packed)) + packed + body[9 + ln:]
    hdr = json.dumps(header if header is not None else old).encode()
    out = MAGIC + struct.pack("<I", len(hdr)) + hdr + body + struct.pack("<cQ", b"E", 4)
    return out + struct.pack("<I", zlib.crc32(out))


def _restore_bytes(tmp_path: Path, data: bytes) -> Machine:
    p = tmp_path / "bad.pkm"
    p.write_bytes(data)
    return Machine.restore(p)


def test_bad_files_raise_valueerror_with_a_clear_message(saved: Path, tmp_path: Path) -> None:
    raw = saved.read_bytes()
    header = snapshot.read_header(saved)
    cases = [
        (b"", "bad magic"),
        (b"PK\x03\x04" + raw[4:], "bad magic"),
        (raw[:len(MAGIC) + 2], "truncated"),
        (raw[:len(raw) // 2], "truncated"),
        (raw[:-1], "truncated"),
        (raw[:-40] + bytes([raw[-40] ^ 1]) + raw[-39:], "corrupt"),
        (raw + b"\0", "corrupt"),
        (_rewrite(raw, {**header, "format": 2}), "format 2"),
        (_rewrite(raw, {**header, "pykern": "0.0.1"}), "'0.0.1'"),
        (_rewrite(raw, state=b"not a pickle"), "cannot be rebuilt"),
        (_rewrite(raw, state=pickle.dumps([1, 2])), "not a Machine"),
    ]
    for data, why in cases:
        with pytest.raises(ValueError, match=why) as info:
            _restore_bytes(tmp_path, data)
        assert isinstance(info.value, SnapshotError)
        assert str(tmp_path / "bad.pkm") in str(info.value)


def test_foreign_classes_in_the_state_are_refused(saved: Path, tmp_path: Path) -> None:
    """The loader rebuilds pykern classes only: a state that calls os.system is refused."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))
    raw = _rewrite(saved.read_bytes(), state=pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="posix.system|os.system"):
        _restore_bytes(tmp_path, raw)
    assert not marker.exists()


def test_failed_save_keeps_the_old_file(saved: Path, tmp_path: Path) -> None:
    """A machine holding something pickle cannot carry names it, and the file it was to
    replace stays as it was, with no temporary left behind."""
    path = tmp_path / "keep.pkm"
    path.write_bytes(saved.read_bytes())
    m = Machine("64M")
    m.plugin_state = {"hook": lambda: 0}        # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=r"m\.plugin_state\['hook'\]"):
        m.save(path)
    assert path.read_bytes() == saved.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pkm"]


def test_new_attributes_are_saved_without_extra_work(tmp_path: Path) -> None:
    """Attributes other code hangs on the machine (config, dynamic-debug state...) and any
    random generator come back, generator state included."""
    m = Machine("64M")
    m.extra = {"version": (6, 18), "ddebug": {"mm/cma.c": "+p"}}   # type: ignore[attr-defined]
    m.fault_rng = random.Random(5)                                    # type: ignore[attr-defined]
    m.fault_rng.random()                                              # type: ignore[attr-defined]
    m.save(tmp_path / "m.pkm")
    r = Machine.restore(tmp_path / "m.pkm")
    assert r.extra == m.extra                                         # type: ignore[attr-defined]
    assert r.fault_rng.random() == m.fault_rng.random()               # type: ignore[attr-defined]


# ------------------------------------------------------------------ halted machines, forks
def test_halted_machine_round_trip(tmp_path: Path) -> None:
    """A panic with no crash kernel halts (K17.4): the restored machine is halted too,
    answers only phys_read/phys_write, and holds the same RAM and log."""
    m = Machine("64M", cmdline="cma=8M")
    m.phys_write(0x4100_0000, b"still here")
    assert m.panic() is None and m.halted
    m.save(tmp_path / "h.pkm")
    r = Machine.restore(tmp_path / "h.pkm")
    assert r.halted and r.phys_read(0x4100_0000, 10) == b"still here"
    assert r.log.lines()[-1] == (0, "Kernel panic - not syncing: no crash kernel loaded")
    for call in (lambda: r.read("/proc/meminfo"), lambda: r.mm.nr_free_pages(),
                 lambda: r.kernel_kexec(), lambda: r.new_task()):
        with pytest.raises(RuntimeError, match="halted"):
            call()
    assert same_ram(r, m)


def test_fork_is_independent() -> None:
    """Allocations, RAM writes and reboots on a fork leave the original untouched."""
    gic = GICv3(honours_shutdown=False)
    m = Machine("128M", cmdline="cma=32M", devices=[gic])
    m.kexec_file_load(images.arm64_image(2 << 20), None, "", KEXEC_FILE_NO_CMA)
    before = observe(m)
    f = m.fork()
    assert f.devices["gic"] is not gic and f.devices["gic"].machine is f
    f.phys_write(0x4200_0000, b"fork only")
    f.mm.alloc_pages(gfp.GFP_KERNEL, 3)
    r = f.kernel_kexec()
    assert f.generation == 1 and r.booted
    assert observe(m) == before and m.generation == 0
    assert m.phys_read(0x4200_0000, 9) != b"fork only"
    assert gic.machine is m


def test_restore_without_compiled_extensions_uses_the_twins(saved: Path) -> None:
    """A machine saved with the compiled memops restores under PYKERN_NO_EXTENSIONS=1 with
    the pure-Python twin (identical results, pykern._fast)."""
    code = ("import sys; from pykern import Machine; m = Machine.restore(sys.argv[1]); "
            "print(m.memops.__name__, m.physmem._memops.__name__); "
            "print(m.read('/proc/buddyinfo'), end='')")
    env = dict(os.environ, PYKERN_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code, str(saved)], env=env, check=True,
                         capture_output=True, text=True).stdout
    first, rest = out.split("\n", 1)
    assert first.split() == ["pykern._fast._memops_py"] * 2
    assert rest == Machine.restore(saved).read("/proc/buddyinfo")
