"""Scenario files (pykern.scenario): validation with file/line/key, and the step runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from pykern import images
from pykern.kernel.kexec.uapi import KEXEC_FILE_DEBUG, KEXEC_FILE_NO_CMA, KEXEC_FILE_ON_CRASH
from pykern.scenario import (Runner, ScenarioError, Step, bundled_scenarios, find_key_line,
                             format_flags, load_scenario, parse_flags, parse_gfp)

SMALL = """\
name = "small"
description = "a small arm64 machine"

[machine]
ram = "128M"
cmdline = "cma=32M"
seed = 3

[[steps]]
action = "task"
npages = 64

[[steps]]
action = "load"
kernel = { size = "2M", seed = 5 }
initrd = "1M"
cmdline = "next=1"

[[steps]]
action = "cat"
path = "/sys/kernel/kexec_loaded"

[[steps]]
action = "exec"
"""


def write(tmp_path: Path, text: str, name: str = "scn.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def bad(tmp_path: Path, text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(str(write(tmp_path, text, "bad.toml")))
    return exc.value


def test_small_scenario_runs_every_step(tmp_path: Path) -> None:
    """Steps run in order; the load is placed in CMA, the reboot copies nothing."""
    scn = load_scenario(str(write(tmp_path, SMALL)))
    assert scn.name == "small" and [s.action for s in scn.steps] == [
        "task", "load", "cat", "exec"]
    runner = Runner(scn)
    results = runner.run()
    assert [r.status for r in results] == ["ok"] * 4 and not runner.failed
    load = results[1].details
    assert all(s["cma"] for s in load["segments"]) and load["entry_words"] == 1
    assert results[2].output == "1\n"
    assert results[3].details["hot_phase_bytes"] == 0 and results[3].details["verified"]
    assert runner.machine.generation == 1 and runner.machine.cmdline == "next=1"


def test_steps_are_numbered_from_one_and_upto_stops(tmp_path: Path) -> None:
    scn = load_scenario(str(write(tmp_path, SMALL)))
    runner = Runner(scn)
    runner.run(2)
    assert [r.index for r in runner.results] == [1, 2]
    assert runner.machine.kexec_image is not None


def test_lines_are_found_under_their_table() -> None:
    """tomllib has no positions: the key is searched for under its [[steps]] header."""
    assert find_key_line(SMALL, ("machine", "ram")) == 5
    assert find_key_line(SMALL, ("steps", 1, "kernel", "seed")) == 15
    assert find_key_line(SMALL, ("steps", 1, "cmdline")) == 17
    assert find_key_line(SMALL, ("steps", 3)) == 23
    assert find_key_line(SMALL, ("description",)) == 2
    assert find_key_line(SMALL, ("nowhere",)) is None


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    err = bad(tmp_path, '[machine]\nram = "64M"\ncolour = "blue"\n')
    assert err.file and err.file.endswith("bad.toml")
    assert err.line == 3 and err.key == "machine.colour"
    assert "colour" in str(err) and "bad.toml:3" in str(err)


def test_wrong_type_in_a_step(tmp_path: Path) -> None:
    err = bad(tmp_path, '[machine]\nram = "64M"\n\n[[steps]]\naction = "task"\nnpages = 1\n'
                        '[[steps]]\naction = "alloc"\norder = "three"\n')
    assert (err.line, err.key) == (9, "steps[1].order")
    assert "integer" in err.message


def test_unknown_key_in_an_inline_table(tmp_path: Path) -> None:
    err = bad(tmp_path, '[[steps]]\naction = "load"\nkernel = { size = "1M", sise = 2 }\n')
    assert (err.line, err.key) == (3, "steps[0].kernel.sise")


def test_impossible_sizes(tmp_path: Path) -> None:
    err = bad(tmp_path, '[machine]\nram = "12Q"\n')
    assert (err.line, err.key) == (2, "machine.ram") and "12Q" in err.message
    err = bad(tmp_path, '[machine]\nram = "64M"\n[[steps]]\naction = "load"\nkernel = "1G"\n')
    assert (err.line, err.key) == (5, "steps[0].kernel") and "larger" in err.message
    err = bad(tmp_path, '[[steps]]\naction = "task"\nnpages = 0\n')
    assert err.key == "steps[0].npages"


def test_kernel_and_initrd_that_never_fit_together(tmp_path: Path) -> None:
    """Each fits the 64M machine, both together cannot: refused when the file is read,
    before a machine is booted or an image built (issue 16)."""
    err = bad(tmp_path, '[machine]\nram = "64M"\n[[steps]]\naction = "load"\n'
                        'kernel = "40M"\ninitrd = "40M"\n')
    assert (err.line, err.key) == (6, "steps[0].initrd") and "together (80M)" in err.message


def test_bad_names(tmp_path: Path) -> None:
    err = bad(tmp_path, '[[steps]]\naction = "explode"\n')
    assert err.key == "steps[0].action" and "explode" in err.message
    err = bad(tmp_path, '[[steps]]\naction = "load"\nkernel = "1M"\nflags = ["NO_CAM"]\n')
    assert (err.line, err.key) == (4, "steps[0].flags") and "NO_CAM" in err.message
    err = bad(tmp_path, '[machine]\nfixes = ["cma-stale-tale"]\n')
    assert err.key == "machine.fixes" and err.line == 2
    err = bad(tmp_path, '[[machine.devices]]\ntype = "usb"\n')
    assert (err.line, err.key) == (2, "machine.devices[0].type")
    err = bad(tmp_path, '[machine]\narch = "x86_64"\n[[machine.devices]]\ntype = "gic"\n')
    assert "arm64" in err.message
    err = bad(tmp_path, '[[steps]]\naction = "load"\nkernel = "1M"\nexpect = "EWHAT"\n')
    assert err.key == "steps[0].expect"


def test_toml_syntax_error_keeps_tomllib_message(tmp_path: Path) -> None:
    err = bad(tmp_path, '[machine]\nram = "64M"\nseed = \n')
    assert err.line == 3 and "line 3" in err.message and "TOML" in err.message


def test_missing_kernel_file_and_file_kernels(tmp_path: Path) -> None:
    err = bad(tmp_path, '[[steps]]\naction = "load"\nkernel = { file = "nope.img" }\n')
    assert err.key == "steps[0].kernel.file" and "nope.img" in err.message
    (tmp_path / "Image").write_bytes(images.arm64_image(1 << 20, seed=9))
    scn = load_scenario(str(write(tmp_path, '[machine]\nram = "128M"\ncmdline = "cma=16M"\n'
                                  '[[steps]]\naction = "load"\nkernel = { file = "Image" }\n')))
    [res] = Runner(scn).run()
    assert res.ok and res.details["kernel"] == {"file": str(tmp_path / "Image")}


def test_machine_errors_are_scenario_errors(tmp_path: Path) -> None:
    """Machine() refusals (here overlapping banks) are reported against the scenario."""
    scn = load_scenario(str(write(tmp_path, '[machine]\nbanks = [["0x40000000", "64M"], '
                                  '["0x42000000", "64M"]]\n')))
    with pytest.raises(ScenarioError) as exc:
        Runner(scn)
    assert exc.value.key == "machine.banks" and exc.value.line == 2


def test_failed_load_reports_errno_and_reason(tmp_path: Path) -> None:
    """A refused load is a failed step with the errno and the kernel's reason; `expect`
    turns the same refusal into a pass."""
    text = ('[machine]\nram = "128M"\n[[steps]]\naction = "load"\nkernel = "1M"\nflags = 0x20\n'
            '[[steps]]\naction = "load"\nkernel = "1M"\nflags = 0x20\nexpect = "EINVAL"\n'
            '[[steps]]\naction = "exec"\nexpect = "EINVAL"\n')
    runner = Runner(load_scenario(str(write(tmp_path, text))))
    first, second, third = runner.run()
    assert first.status == "failed" and first.errno == 22 and first.error == "Invalid argument"
    assert any("0x20" in r for r in first.reasons)
    assert second.status == third.status == "expected-failure" and runner.failed


def test_alloc_unload_panic_write(tmp_path: Path) -> None:
    text = ('[machine]\nram = "128M"\ncmdline = "crashkernel=16M"\n'
            '[[steps]]\naction = "alloc"\norder = 2\ngfp = "GFP_KERNEL|__GFP_ZERO"\ncount = 3\n'
            '[[steps]]\naction = "load"\nkernel = "1M"\nflags = ["ON_CRASH"]\n'
            '[[steps]]\naction = "unload"\ncrash = true\n'
            '[[steps]]\naction = "write"\npath = "/proc/sys/kernel/kexec_load_disabled"\n'
            'text = "1"\n'
            '[[steps]]\naction = "load"\nkernel = "1M"\nexpect = "EPERM"\n'
            '[[steps]]\naction = "panic"\n'
            '[[steps]]\naction = "cat"\npath = "/proc/iomem"\n')
    runner = Runner(load_scenario(str(write(tmp_path, text))))
    alloc, crash, unload, write_, refused, panic, cat = runner.run()
    assert alloc.ok and alloc.details["allocated"] == 3
    assert crash.ok and crash.details["image"] == "crash"
    assert unload.ok and unload.details["had_image"]
    assert write_.ok and refused.status == "expected-failure"
    assert panic.ok and panic.details["halted"] and runner.machine.halted
    assert cat.status == "failed" and "halted" in (cat.error or "")


def test_execute_a_step_built_in_python(tmp_path: Path) -> None:
    """The verbs build steps themselves: a Step with Python values works the same."""
    from pykern.scenario import Blob
    runner = Runner(load_scenario(str(write(tmp_path, '[machine]\nram = "128M"\n'))))
    step = Step(1, "load", {"kernel": Blob("kernel", size=1 << 20), "initrd": None,
                            "cmdline": "", "flags": KEXEC_FILE_DEBUG})
    res = runner.execute(step)
    assert res.ok and res.details["debug"] and res.details["flag_names"] == "DEBUG"


def test_flag_and_gfp_parsing() -> None:
    assert parse_flags(["NO_CMA", "kexec_file_debug"]) == KEXEC_FILE_NO_CMA | KEXEC_FILE_DEBUG
    assert parse_flags("ON_CRASH|NO_CMA") == KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_CMA
    assert parse_flags(0x12) == 0x12
    assert format_flags(0x12 | 0x20) == "ON_CRASH|NO_CMA|0x20" and format_flags(0) == "0"
    with pytest.raises(ValueError):
        parse_flags(["FORCE_DTB"])
    from pykern.mm import gfp
    assert parse_gfp("GFP_KERNEL | __GFP_ZERO") == gfp.GFP_KERNEL | gfp.__GFP_ZERO
    assert parse_gfp("KERNEL") == gfp.GFP_KERNEL
    with pytest.raises(ValueError):
        parse_gfp("GFP_BOGUS")


def test_bundled_scenarios_parse() -> None:
    """Every shipped example validates (running them is in test_cli.py)."""
    names = [n for n, _ in bundled_scenarios()]
    assert {"cma-basic", "crash-panic", "gic-vs-cma"} <= set(names)
    for name in names:
        scn = load_scenario(name)
        assert scn.steps and scn.description
    assert load_scenario("cma-basic.toml").name == "cma-basic"
    with pytest.raises(ScenarioError, match="bundled"):
        load_scenario("no-such-scenario")
