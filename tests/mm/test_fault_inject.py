"""Fault injection (lib/fault-inject.c, mm/fail_page_alloc.c, fs/proc/base.c fail-nth) and
the fail-nth sweep over kexec_file_load, cma_alloc, task faults, pins and unload."""

from __future__ import annotations

import errno

import pytest

from pykern import KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH, KEXEC_FILE_UNLOAD, Machine, images
from pykern.mm import gfp
from pykern.testing.faults import SweepFailure, configure_fail_page_alloc, fail_nth_sweep

D = "/sys/kernel/debug/fail_page_alloc/"
KiB = 1 << 10
ATOMIC = gfp.GFP_ATOMIC
HIGHMEM = gfp.__GFP_HIGHMEM
NOFAIL = gfp.__GFP_NOFAIL
NOWARN = gfp.__GFP_NOWARN
NOTICE_1 = (5, "FAULT_INJECTION: forcing a failure.")


def _set(m: Machine, **values: str) -> None:
    configure_fail_page_alloc(m, **values)


def _every_alloc_a_point(m: Machine) -> None:
    _set(m, min_order="0", ignore_gfp_wait="N", ignore_gfp_highmem="N")


def _fails(m: Machine, gfp_mask: int = ATOMIC, order: int = 1) -> bool:
    page = m.mm.alloc_pages(gfp_mask, order)
    if page is None:
        return True
    m.mm.free_pages(page, order)
    return False


def _notices(m: Machine) -> list[tuple[int, str]]:
    return [line for line in m.dmesg() if line[1].startswith(("FAULT_INJECTION", "name "))]


# --------------------------------------------------------------------------- debugfs
def test_fail_page_alloc_debugfs_defaults() -> None:
    """FAULT_ATTR_INITIALIZER and fail_page_alloc's own defaults (mm/fail_page_alloc.c):
    ignore-gfp-wait and ignore-gfp-highmem Y, min-order 1; ratelimit disabled (0, 10)."""
    m = Machine("64M")
    expected = {
        "probability": "0\n", "interval": "1\n", "times": "1\n", "space": "0\n",
        "verbose": "2\n", "verbose_ratelimit_interval_ms": "0\n",
        "verbose_ratelimit_burst": "10\n", "task-filter": "N\n", "stacktrace-depth": "32\n",
        "require-start": "0x0000000000000000\n", "require-end": "0xffffffffffffffff\n",
        "reject-start": "0x0000000000000000\n", "reject-end": "0x0000000000000000\n",
        "ignore-gfp-wait": "Y\n", "ignore-gfp-highmem": "Y\n", "min-order": "1\n",
    }
    assert {name: m.read(D + name) for name in expected} == expected
    with pytest.raises(FileNotFoundError):
        m.read(D + "count")


def test_debugfs_writes_parse_like_the_kernel() -> None:
    """simple_attr_write (kstrtoull/kstrtoll of at most 23 bytes, base 0), debugfs_u32's
    truncation, atomic_t's int, the stacktrace-depth clamp, and debugfs_write_file_bool,
    which ignores what kstrtobool cannot parse and still succeeds."""
    m = Machine("64M")
    _set(m, probability="0x10\n", times="-1", space="4294967295", min_order="4294967297",
         stacktrace_depth="100", require_start="010")
    assert [m.read(D + f) for f in ("probability", "times", "space", "min-order",
                                     "stacktrace-depth", "require-start")] == \
        ["16\n", "-1\n", "-1\n", "1\n", "32\n", "0x0000000000000008\n"]
    for name, text, err in (("probability", " 5", errno.EINVAL),
                            ("probability", "5 ", errno.EINVAL),
                            ("probability", "-1", errno.EINVAL),
                            ("probability", "18446744073709551616", errno.ERANGE),
                            ("interval", "", errno.EINVAL),
                            ("times", "9223372036854775808", errno.ERANGE)):
        with pytest.raises(OSError) as exc:
            m.write(D + name, text)
        assert exc.value.errno == err, (name, text)
    assert m.read(D + "probability") == "16\n"          # refused writes change nothing
    m.write(D + "probability", "0" * 22 + "17")          # only 23 bytes are read: octal 1
    assert m.read(D + "probability") == "1\n"
    m.write(D + "task-filter", "yes")
    m.write(D + "ignore-gfp-wait", "off")
    m.write(D + "ignore-gfp-highmem", "xyz")             # kstrtobool fails: ignored
    assert [m.read(D + f) for f in ("task-filter", "ignore-gfp-wait",
                                     "ignore-gfp-highmem")] == ["Y\n", "N\n", "Y\n"]
    with pytest.raises(FileNotFoundError):
        m.write(D + "count", "1")


# ------------------------------------------------------------------------ command line
def test_cmdline_fail_page_alloc_sets_the_attr() -> None:
    """__setup("fail_page_alloc=") → setup_fault_attr: <interval>,<probability>,<space>,
    <times>; a parameter it accepts is consumed (not passed to init)."""
    m = Machine("64M", cmdline="fail_page_alloc=10,50,4096,3")
    assert [m.read(D + f) for f in ("interval", "probability", "space", "times")] == \
        ["10\n", "50\n", "4096\n", "3\n"]
    assert not any("Unknown kernel command line" in text for _, text in m.dmesg())
    assert not any("fail_page_alloc" in e for e in m.init_envp)


def test_cmdline_bad_value_warns_and_goes_to_init() -> None:
    """setup_fault_attr: fewer than four values → KERN_WARNING "FAULT_INJECTION: failed to
    parse arguments" while the command line is parsed, the handler returns 0 and the
    parameter becomes an unknown one (envp_init); the attribute keeps its defaults."""
    m = Machine("64M", cmdline="fail_page_alloc=1,100,0")
    log = m.dmesg()
    k = next(i for i, (_, t) in enumerate(log) if t.startswith("Kernel command line:"))
    assert log[k + 1] == (4, "FAULT_INJECTION: failed to parse arguments")
    assert log[k + 2][1] == ('Unknown kernel command line parameters "fail_page_alloc=1,100,'
                             '0", will be passed to user space.')
    assert "fail_page_alloc=1,100,0" in m.init_envp
    assert m.read(D + "probability") == "0\n" and m.read(D + "times") == "1\n"


@pytest.mark.parametrize("value, parsed", [
    ("1,100,0,-1junk", ("1", "100", "0", "-1")),       # sscanf ignores what follows
    ('"1, 100, 0, 2"', ("1", "100", "0", "2")),        # each conversion skips blanks
    ("1,100,0,4294967295", ("1", "100", "0", "-1")),   # %d keeps the low 32 bits
    ("-1,100,0,1", None),                              # %lu takes no sign
    ("1,100,,1", None),
    ("1;100;0;1", None),
])
def test_cmdline_sscanf_edges(value: str, parsed: tuple[str, ...] | None) -> None:
    """vsscanf("%lu,%lu,%d,%d") as setup_fault_attr calls it."""
    m = Machine("32M", cmdline=f"fail_page_alloc={value}")
    got = tuple(m.read(D + f).strip() for f in ("interval", "probability", "space", "times"))
    warned = (4, "FAULT_INJECTION: failed to parse arguments") in m.dmesg()
    assert (got, warned) == ((parsed, False) if parsed else (("1", "0", "0", "1"), True))


def test_cmdline_dashes_match_and_next_kernel_parses_its_own() -> None:
    """parameqn treats - and _ alike; the next kernel's fault attribute comes from the
    command line it was loaded with (a fresh attribute per boot)."""
    m = Machine("64M", cmdline="fail-page-alloc=1,100,0,-1")
    assert m.read(D + "probability") == "100\n"
    m.write(D + "probability", "7")
    m.kexec_file_load(images.arm64_image(64 * KiB), None, "fail_page_alloc=2,30,0,5",
                      KEXEC_FILE_NO_CMA)
    m.kernel_kexec()
    assert [m.read(D + f) for f in ("interval", "probability", "times", "min-order")] == \
        ["2\n", "30\n", "5\n", "1\n"]


# ------------------------------------------------------------------ the decision order
def test_should_fail_alloc_page_filters() -> None:
    """__should_fail_alloc_page: order < min-order, __GFP_NOFAIL, __GFP_HIGHMEM with
    ignore-gfp-highmem, __GFP_DIRECT_RECLAIM with ignore-gfp-wait never fail; the rest go
    to should_fail_ex.  A forced failure returns NULL before any zone is tried: no
    "page allocation failure" warning, the free lists untouched."""
    m = Machine("64M", cmdline="fail_page_alloc=1,100,0,-1")
    _set(m, verbose="0")
    free = m.read("/proc/buddyinfo")
    assert not _fails(m, ATOMIC, 0)                      # min-order 1
    assert not _fails(m, gfp.GFP_KERNEL, 1)              # may direct-reclaim
    assert not _fails(m, ATOMIC | HIGHMEM, 1)            # ignore-gfp-highmem
    assert not _fails(m, ATOMIC | NOFAIL, 1)
    assert _fails(m, ATOMIC, 1)
    assert m.read("/proc/buddyinfo") == free
    assert not any("page allocation failure" in t for _, t in m.dmesg())
    _every_alloc_a_point(m)
    assert _fails(m, ATOMIC, 0) and _fails(m, gfp.GFP_KERNEL, 1) and _fails(m, ATOMIC | HIGHMEM)
    assert not _fails(m, gfp.GFP_KERNEL | NOFAIL, 0)


def test_times_space_interval() -> None:
    """should_fail_ex: times counts failures down to 0 (-1: unlimited); space is consumed by
    each request's size (1 << order) before anything fails; with interval > 1 only every
    interval-th call that got that far may fail."""
    m = Machine("64M", cmdline="fail_page_alloc=1,100,0,2")
    _set(m, verbose="0")
    assert [_fails(m) for _ in range(3)] == [True, True, False]
    assert m.read(D + "times") == "0\n"
    _set(m, times="-1", space="5")
    assert [_fails(m) for _ in range(4)] == [False, False, True, True]   # 5 > 2, 3 > 2
    assert m.read(D + "space") == "1\n" and m.read(D + "times") == "-1\n"
    _set(m, space="0", interval="3")
    assert [_fails(m) for _ in range(7)] == [False, False, True, False, False, True, False]


def test_probability_draws_follow_the_machine_seed() -> None:
    """fault_prandom_u32_below_100: the draws come from a generator seeded by the machine
    seed (deterministic, and carried by snapshots)."""
    def pattern(m: Machine, n: int = 200) -> list[bool]:
        return [_fails(m) for _ in range(n)]

    def machine(seed: int) -> Machine:
        m = Machine("64M", seed=seed, cmdline="fail_page_alloc=1,50,0,-1")
        _set(m, verbose="0")
        return m

    a, b = machine(1), machine(1)
    first = pattern(a)
    assert first == pattern(b) and 60 < sum(first) < 140
    assert first != pattern(machine(2))
    twin = a.fork()
    assert pattern(a) == pattern(twin)


def test_task_filter_and_make_it_fail() -> None:
    """fail_task: with task-filter only tasks with make-it-fail fail (/proc/<pid>/
    make-it-fail, proc_fault_inject_write: 0 or 1); a task forked later inherits it
    (dup_task_struct) while its fail-nth starts at 0."""
    m = Machine("64M", cmdline="fail_page_alloc=1,100,0,-1")
    _set(m, task_filter="Y", verbose="0")
    assert not _fails(m)
    m.write("/proc/self/make-it-fail", "1")
    assert _fails(m)
    m.write("/proc/self/fail-nth", "5")
    t = m.new_task()
    assert m.read(f"/proc/{t.pid}/make-it-fail") == "1\n"
    assert m.read(f"/proc/{t.pid}/task/{t.pid}/fail-nth") == "0\n"
    for text, err in (("2", errno.EINVAL), ("x", errno.EINVAL), ("99999999999", errno.ERANGE)):
        with pytest.raises(OSError) as exc:
            m.write("/proc/thread-self/make-it-fail", text)
        assert exc.value.errno == err
    assert m.read("/proc/thread-self/make-it-fail") == "1\n"


def test_fail_dump_per_verbose() -> None:
    """fail_dump: verbose 0 prints nothing; 1 the KERN_NOTICE report (one printk with a
    newline: two dmesg lines, with times before the decrement); 2 also dump_stack (the
    header and the arch's call trace); __GFP_NOWARN (FAULT_NOWARN) prints nothing but
    still counts times down."""
    m = Machine("64M", cmdline="fail_page_alloc=1,100,0,9")
    _set(m, verbose="0")
    _fails(m)
    assert _notices(m) == []
    _set(m, verbose="1")
    _fails(m)
    assert _notices(m) == [NOTICE_1, (5, "name fail_page_alloc, interval 1, probability 100, "
                                         "space 0, times 8")]
    n = len(m.dmesg())
    assert _fails(m, ATOMIC | NOWARN) and len(m.dmesg()) == n and m.read(D + "times") == "6\n"
    _set(m, verbose="2")
    _fails(m)
    tail = [t for _, t in m.dmesg()[n + 2:]]
    assert tail[0] == ("CPU: 0 UID: 0 PID: 0 Comm: pykern Not tainted 6.17.0-pykern #1 "
                       "PREEMPT(voluntary) ")
    assert tail[1:4] == ["Hardware name: pykern arm64 virt (DT)", "Call trace:", " show_stack"]
    assert " should_fail_ex" in tail and " __alloc_pages_noprof" in tail
    x = Machine("64M", arch="x86_64", cmdline="fail_page_alloc=1,100,0,-1")
    _fails(x)
    text = [t for _, t in x.dmesg()]
    assert text[text.index("Call Trace:") + 1:text.index("Call Trace:") + 3] == \
        [" <TASK>", " dump_stack_lvl"] and text[-1] == " </TASK>"


def test_fail_dump_ratelimit_with_frozen_jiffies() -> None:
    """___ratelimit: burst reports per interval; pykern's jiffies stand still while the
    machine runs, so once the burst is used the rest are only counted as missed."""
    m = Machine("64M", cmdline="fail_page_alloc=1,100,0,-1")
    _set(m, verbose="1", verbose_ratelimit_interval_ms="1000", verbose_ratelimit_burst="2")
    assert all(_fails(m) for _ in range(5))
    assert _notices(m).count(NOTICE_1) == 2


# ----------------------------------------------------------------------------- fail-nth
def test_fail_nth_counts_down_every_point_and_reads_zero() -> None:
    """should_fail_ex with current->fail_nth: each fault point counts it down and the one
    that reaches 0 fails, ignoring probability and times; proc_fail_nth_read gives what is
    left ("0" once injected); kstrtouint base 0 for writes."""
    m = Machine("64M")
    _every_alloc_a_point(m)
    _set(m, times="0", verbose="0")
    m.write("/proc/thread-self/fail-nth", "0x3")
    assert m.read("/proc/self/fail-nth") == "3\n"
    assert [_fails(m, gfp.GFP_KERNEL, 0) for _ in range(4)] == [False, False, True, False]
    assert m.read("/proc/thread-self/fail-nth") == "0\n" and m.read(D + "times") == "0\n"
    for text, err in (("-1", errno.EINVAL), ("4294967296", errno.ERANGE), ("", errno.EINVAL)):
        with pytest.raises(OSError) as exc:
            m.write("/proc/self/fail-nth", text)
        assert exc.value.errno == err


def test_fail_nth_obeys_fail_page_alloc_filters() -> None:
    """__should_fail_alloc_page filters before should_fail_ex, so with the defaults
    (min-order 1, ignore-gfp-wait) GFP_KERNEL and order-0 requests do not count."""
    m = Machine("64M")
    m.write("/proc/self/fail-nth", "1")
    assert not _fails(m, gfp.GFP_KERNEL, 0) and not _fails(m, ATOMIC, 0)
    assert m.read("/proc/self/fail-nth") == "1\n"
    assert _fails(m, ATOMIC, 1)


def test_fail_nth_is_per_task() -> None:
    """current: Machine-level calls run in the machine context (/proc/self), Task methods
    in their task (/proc/<pid>/ and /proc/<pid>/task/<pid>/, the same thread)."""
    m = Machine("64M")
    _every_alloc_a_point(m)
    t = m.new_task()
    m.write(f"/proc/{t.pid}/fail-nth", "2")
    assert not _fails(m, gfp.GFP_KERNEL, 0)             # machine context: not t's count
    assert m.read(f"/proc/{t.pid}/task/{t.pid}/fail-nth") == "2\n"
    with pytest.raises(OSError) as exc:
        t.mmap_anon(4)
    assert exc.value.errno == errno.ENOMEM and t.mappings() == []
    assert m.read(f"/proc/{t.pid}/fail-nth") == "0\n"
    t.exit()
    with pytest.raises(FileNotFoundError):
        m.read(f"/proc/{t.pid}/fail-nth")
    with pytest.raises(PermissionError):
        m.write("/proc/buddyinfo", "1")


# ------------------------------------------------------------------------------ sweeps
def _kernel(arch: str, size: int = 64 * KiB) -> bytes:
    return images.arm64_image(size) if arch == "arm64" else images.bzimage(size, init_size=size)


@pytest.mark.parametrize("arch, points", [("arm64", 2), ("x86_64", 4)])
def test_sweep_kexec_cma_load_leaks_k29_until_fixed(arch: str, points: int) -> None:
    """kimage_file_alloc_init: a control page that cannot be had (K2.6/K2.7) fails the load
    with ENOMEM after the CMA blocks were taken; without kimage_free they stay allocated
    (K2.9, quirk cma-leak-on-failed-load).  With the fix every failure leaves nothing."""
    k, ird = _kernel(arch), images.payload_pattern(16 * KiB, seed=1)
    m = Machine("48M", arch=arch, cmdline="cma=8M")
    r = fail_nth_sweep(m, lambda m2: m2.kexec_file_load(k, ird, "x", 0))
    assert r.points == points and r.leaks == {"cma-leak-on-failed-load": [1, 2]}
    assert all(a.errno == errno.ENOMEM for a in r.attempts)
    assert all(s.cma for s in r.machine.kexec_image.segments)
    fixed = fail_nth_sweep(Machine("48M", arch=arch, cmdline="cma=8M", fixes="all"),
                           lambda m2: m2.kexec_file_load(k, ird, "x", 0))
    assert fixed.points == points and fixed.leaks == {}


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_sweep_kexec_no_cma_load_gives_every_page_back(arch: str) -> None:
    """K1.12/K14: every source, indirection and control page a NO_CMA load takes fails in
    turn with ENOMEM and kimage_free gives back everything; the old image stays (K1.16)."""
    k, ird = _kernel(arch), images.payload_pattern(16 * KiB, seed=1)
    m = Machine("48M", arch=arch, cmdline="cma=8M")
    m.kexec_file_load(_kernel(arch, 128 * KiB), None, "", KEXEC_FILE_NO_CMA)
    r = fail_nth_sweep(m, lambda m2: m2.kexec_file_load(k, ird, "x", KEXEC_FILE_NO_CMA))
    assert r.points > 20 and len(r.attempts) == r.points and r.leaks == {}
    assert {a.errno for a in r.attempts} == {errno.ENOMEM}


def test_sweep_kexec_source_page_leak_quirk() -> None:
    """kimage_load_normal_segment: when kimage_add_page cannot get a new indirection page
    (K10.2) the source page it just took is on no list and kimage_free never frees it
    (quirk kexec-source-page-leak, fixed by freeing it).  The 512th entry needs the second
    indirection page: a 2 MiB x86 kernel segment reaches it."""
    k = images.bzimage(64 * KiB)                     # init_size 2 MiB: 512 source pages
    leaky = fail_nth_sweep(Machine("48M", arch="x86_64"),
                           lambda m2: m2.kexec_file_load(k, None, "", 0), start=505)
    assert leaky.leaks == {"kexec-source-page-leak": [515]}
    fixed = fail_nth_sweep(Machine("48M", arch="x86_64", fixes=["kexec-source-page-leak"]),
                           lambda m2: m2.kexec_file_load(k, None, "", 0), start=505)
    assert fixed.leaks == {} and fixed.points == leaky.points


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_sweep_crash_load_and_unload_take_no_pages(arch: str) -> None:
    """A crash load writes into the crash reservation (K12.5, K9.4) and an unload only
    frees (K1.6, K14): neither reaches a page-allocator fault point."""
    k = _kernel(arch)
    m = Machine("48M", arch=arch, cmdline="cma=8M crashkernel=8M")
    r = fail_nth_sweep(m, lambda m2: m2.kexec_file_load(k, None, "", KEXEC_FILE_ON_CRASH))
    assert r.points == 0 and r.machine.kexec_crash_image is not None
    m.kexec_file_load(k, None, "", KEXEC_FILE_NO_CMA)
    r = fail_nth_sweep(m, lambda m2: m2.kexec_file_load(b"", None, "", KEXEC_FILE_UNLOAD))
    assert r.points == 0 and r.machine.kexec_image is None


def _task_in_cma() -> tuple[Machine, int, int, list[int]]:
    """A machine whose task has pages at the bottom of the CMA area (MM A5 balance)."""
    m = Machine("32M", cmdline="cma=4M")
    cma = m.dma_contiguous_default_area
    assert cma is not None
    t = m.new_task()
    va = t.mmap_anon(3000)
    t.write(va, bytes(range(256)) * 16 * 3000)
    lo, hi = cma.base_pfn, cma.base_pfn + 16
    inside = [k for k in range(3000) if lo <= t.pfn_of(va + 4096 * k) < hi]
    assert len(inside) == 16
    return m, t.pid, va, inside


def test_sweep_cma_alloc_over_task_pages() -> None:
    """cma_alloc → alloc_contig_range → migrate_pages: each destination page that cannot be
    had makes the allocation fail (NULL) after putting the unmoved pages back; the pages
    already moved stay moved (migrate_pages does not undo), the bitmap, the task's data
    and the page counts are as before, no pageblock stays isolated."""
    m, pid, va, inside = _task_in_cma()
    r = fail_nth_sweep(m, lambda m2: m2.dma_contiguous_default_area.alloc(16, 0),
                       null_is_failure=True, moves_pages=True)
    assert r.points == len(inside) and {a.outcome for a in r.attempts} == {"null"}
    assert r.machine.read("/sys/kernel/debug/cma/reserved/used") == "16\n"
    with pytest.raises(SweepFailure, match="rmap"):   # exact mode sees the moved pages
        fail_nth_sweep(m, lambda m2: m2.dma_contiguous_default_area.alloc(16, 0),
                       null_is_failure=True)


def test_sweep_task_fault_and_longterm_pin() -> None:
    """Task page faults (mmap_anon: nothing stays mapped on ENOMEM) and FOLL_LONGTERM pins
    (migration out of CMA fails → ENOMEM, nothing pinned, MM M7.2), swept with the task's
    own fail-nth."""
    m, pid, va, inside = _task_in_cma()
    r = fail_nth_sweep(m, lambda m2: m2.tasks[pid].mmap_anon(8), task=pid)
    assert r.points == 8 and {a.errno for a in r.attempts} == {errno.ENOMEM}
    at = va + 4096 * inside[0]
    r = fail_nth_sweep(m, lambda m2: m2.tasks[pid].pin(at, 3, longterm=True), task=pid,
                       moves_pages=True)
    assert r.points == 2 and {a.errno for a in r.attempts} == {errno.ENOMEM}
    assert fail_nth_sweep(m, lambda m2: m2.tasks[pid].pin(at, 3, longterm=True)).points == 0


def test_sweep_reports_an_unexplained_leak() -> None:
    """The sweep's own check: a call that keeps a page when a later allocation fails is a
    finding no quirk explains."""
    def leaky(m2: Machine) -> None:
        m2.mm.alloc_pages(gfp.GFP_KERNEL, 0)
        if m2.mm.alloc_pages(gfp.GFP_KERNEL, 0) is None:
            raise OSError(errno.ENOMEM, "second page")

    with pytest.raises(SweepFailure, match="fail-nth 2.*memmap"):
        fail_nth_sweep(Machine("32M"), leaky)
    with pytest.raises(SweepFailure, match="errno 12"):
        fail_nth_sweep(Machine("32M"), leaky, errnos=(errno.EINVAL,))
