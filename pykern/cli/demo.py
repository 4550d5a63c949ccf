"""``pykern demo``: the same machine and kexec image, loaded with CMA and with
``KEXEC_FILE_NO_CMA``, rebooted, side by side."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from ..constants import PAGE_SHIFT
from .render import (EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError, format_mib, print_error,
                     print_json, render_table, rich_console)

__all__ = ["gic_available", "verb_demo"]


def gic_available() -> bool:
    """Whether this pykern has the GICv3 model (``pykern.drivers.gic``)."""
    try:
        importlib.import_module("pykern.drivers.gic")
    except ImportError:
        return False
    return True


_MiB = 1 << 20
#: What a load needs in the CMA area besides the kernel and the initrd: the DTB (arm64) or
#: purgatory and boot parameters (x86_64), and the alignment gaps between the blocks.
_CMA_SLACK = 2 * _MiB


def _with_cma(cmdline: str, size: int) -> str:
    """``cmdline`` with its ``cma=`` word replaced by (or extended with) ``cma=<size>M``."""
    words = [w for w in cmdline.split() if not w.startswith("cma=")]
    return " ".join([f"cma={size >> 20}M", *words])


def _demo_devices(args: argparse.Namespace) -> list[Any]:
    """``--device gic``: a GICv3 whose ITS ignores shutdown; ``none``: no device."""
    if args.device != "gic":
        return []
    gic = importlib.import_module("pykern.drivers.gic")
    return [gic.GICv3(honours_shutdown=False)]


def _demo_machine(args: argparse.Namespace, *, ram: str | None = None,
                  cmdline: str | None = None) -> Any:
    """The demo's machine, booted (``ram`` and ``cmdline`` override the options)."""
    from .. import Machine
    devices = _demo_devices(args)
    return Machine(args.ram if ram is None else ram, arch=args.arch,
                   cmdline=args.cmdline if cmdline is None else cmdline, seed=args.seed,
                   devices=devices or None)


def _area_bytes(m: Any) -> int:
    """Bytes of the default CMA area (``reserved``), 0 without one."""
    area = m.dma_contiguous_default_area
    return 0 if area is None else int(area.count) << PAGE_SHIFT


def _suggest_cma(args: argparse.Namespace, need: int, ram: int) -> str:
    """A ``--cmdline``/``--ram`` change under which the default area is reserved and holds
    ``need`` bytes: a few trial boots (cheap: RAM is zeroed lazily), smallest size first."""
    size = 16 * _MiB
    while size < need:
        size <<= 1
    tried = size
    while size <= ram:
        cmdline = _with_cma(args.cmdline, size)
        if _area_bytes(_demo_machine(args, cmdline=cmdline)) >= need:
            return f"--cmdline {cmdline!r}"
        size <<= 1
    bigger = max(ram, 256 * _MiB) << 1
    cmdline = _with_cma(args.cmdline, tried)
    while bigger <= 64 << 30:
        text = f"{bigger >> 30}G" if bigger >= 1 << 30 else f"{bigger >> 20}M"
        if _area_bytes(_demo_machine(args, ram=text, cmdline=cmdline)) >= need:
            return f"--ram {text} --cmdline {cmdline!r}"
        bigger <<= 1
    return "a smaller --kernel-mib/--initrd-mib"


def _demo_cma_problem(args: argparse.Namespace, m: Any, need: int, ram: int
                      ) -> list[str] | None:
    """Why the CMA run could not be a CMA run, before any image is built: no default area
    (its reservation failed or ``cma=0``), or an area smaller than the image."""
    images = (f"the {args.kernel_mib} MiB kernel + {args.initrd_mib} MiB initrd")
    area = m.dma_contiguous_default_area
    if area is None:
        failed = [text for level, text in m.dmesg() if text.startswith("cma: ")
                  and level <= 4]
        param = m.boot_params.cma
        if param is None or param.size == 0:
            why = ("the command line asks for no area" if param is not None else
                   f"the {args.arch} default configuration reserves none without cma=")
        else:
            why = (f"the kernel logged {failed[0]!r}" if failed else
                   "the reservation failed") + (
                f": cma={format_mib(param.size)} must fit in one free, aligned range of RAM "
                f"below the DMA limit, beside the kernel's own reservations, and this "
                f"machine has {format_mib(ram)} of RAM in all")
        return [f"no CMA area \"reserved\" on this {format_mib(ram)} {args.arch} machine "
                f"(--cmdline {args.cmdline!r}), so the CMA run would be placed by the walk "
                f"exactly like NO_CMA; nothing was run",
                f"  why: {why}",
                f"  try: {_suggest_cma(args, need, ram)}"]
    have = _area_bytes(m)
    if have < need:
        return [f"the CMA area \"{area.name.strip()}\" ({format_mib(have)}) cannot hold "
                f"{images} (about {format_mib(need)} with the small segments and alignment), "
                f"so the CMA run would fall back to the walk; nothing was run",
                "  why: kexec_file_load takes each segment from the default CMA area and "
                "places a segment the area cannot hold with the walk, as NO_CMA does",
                f"  try: {_suggest_cma(args, need, ram)}"]
    return None


def _demo_mode(args: argparse.Namespace, no_cma: bool, m: Any) -> dict[str, Any]:
    """One run of the demo on the freshly booted ``m``: load the same image, reboot, report.
    """
    from .. import images
    from ..kernel.kexec.uapi import KEXEC_FILE_NO_CMA, KEXEC_FILE_NO_INITRAMFS
    from ..scenario import kexec_result_json

    area = m.dma_contiguous_default_area
    cma_area = None if area is None else {
        "name": area.name.strip(), "base": int(area.base_pfn) << PAGE_SHIFT,
        "bytes": _area_bytes(m)}
    kernel = (images.arm64_image(args.kernel_mib << 20, seed=args.seed) if args.arch == "arm64"
              else images.bzimage(args.kernel_mib << 20, seed=args.seed))
    initrd = images.payload_pattern(args.initrd_mib << 20, seed=args.seed + 1) \
        if args.initrd_mib else None
    task = m.new_task()  # a user process whose pages borrow CMA until the load reclaims them
    va = task.mmap_anon(2048)
    task.write(va, b"user data " * 800)
    flags = (KEXEC_FILE_NO_CMA if no_cma else 0) | (
        0 if initrd is not None else KEXEC_FILE_NO_INITRAMFS)
    m.kexec_file_load(kernel, initrd, args.cmdline, flags)
    image = m.kexec_image
    assert image is not None
    segments = [(i, s.mem, s.memsz, "CMA" if s.cma else "walk")
                for i, s in enumerate(image.segments)]
    entries = len(image.entries())
    used = None if area is None else int(area.count - area.available_count)
    result = m.kernel_kexec()
    return {"mode": "NO_CMA" if no_cma else "CMA", "device": args.device,
            "cma_area": cma_area, "segments": segments, "entry_words": entries,
            "cma_used_pages": used, **kexec_result_json(result),
            "generation": m.generation, "next_cmdline": m.cmdline if not m.halted else None}


def _demo_sizes(args: argparse.Namespace) -> int:
    """RAM in bytes; sizes that can never fit are refused here, before any work."""
    from ..lib.cmdline import parse_size
    try:
        ram = parse_size(args.ram, "--ram")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if ram == 0:
        raise UsageError("--ram 0: a machine needs RAM")
    image = (args.kernel_mib + args.initrd_mib) << 20
    if image + _CMA_SLACK > ram:
        raise UsageError(f"--kernel-mib {args.kernel_mib} + --initrd-mib {args.initrd_mib} "
                         f"({format_mib(image)}) can never fit in --ram {args.ram} "
                         f"({format_mib(ram)}); nothing was run")
    return ram


def verb_demo(args: argparse.Namespace) -> int:
    """The same machine and kexec image, loaded with CMA and with KEXEC_FILE_NO_CMA.

    Exit 0 when the claim holds (the CMA run is intact), 1 when the CMA run was damaged or
    could not load, 2 for bad sizes and for a CMA run that could not be one (no default
    area, or an area too small for the image).
    """
    explicit = args.device is not None
    if args.device is None:
        args.device = "gic" if args.arch == "arm64" and gic_available() else "none"
    if args.device == "gic":
        if args.arch != "arm64":
            raise UsageError("--device gic needs --arch arm64 (a GICv3 is an arm64 device)")
        if not gic_available():
            raise UsageError("--device gic: pykern.drivers.gic is not available in this "
                             "pykern")
    ram = _demo_sizes(args)
    need = ((args.kernel_mib + args.initrd_mib) << 20) + _CMA_SLACK
    try:
        first = _demo_machine(args)
        problem = _demo_cma_problem(args, first, need, ram)
        if problem:
            print_error("demo", problem[0])
            for line in problem[1:]:
                print(line, file=sys.stderr)
            return EXIT_USAGE
        area = first.dma_contiguous_default_area
        area_line = (f"CMA area \"{area.name.strip()}\": {format_mib(_area_bytes(first))} "
                     f"at {area.base_pfn << PAGE_SHIFT:#x}")
        runs = []
        for classic in (False, True):
            label = "NO_CMA" if classic else "CMA"
            try:
                runs.append(_demo_mode(args, classic, _demo_machine(args) if classic else first))
            except OSError as exc:
                print_error("demo", f"the {label} run's kexec_file_load failed: "
                                    f"{os.strerror(exc.errno) if exc.errno else exc}"
                                    + (f" ({exc.strerror})" if exc.strerror else ""))
                return EXIT_PROBLEM
            walked = [seg for seg in runs[0]["segments"] if seg[3] != "CMA"]
            if walked and not classic:
                idx = ", ".join(str(seg[0]) for seg in walked)
                print_error("demo", f"the CMA area \"{area.name.strip()}\" "
                                    f"({format_mib(_area_bytes(first))}) could not hold every "
                                    f"segment: segment {idx} was placed by the walk, so the "
                                    f"CMA run is not a CMA run")
                print("  why: a segment the area has no free block for goes to the walk, as "
                      "with NO_CMA (its free space is split by alignment and other users)",
                      file=sys.stderr)
                print(f"  try: {_suggest_cma(args, need + _mib_round(need), ram)}",
                      file=sys.stderr)
                return EXIT_USAGE
    except ImportError as exc:
        if explicit:
            raise UsageError(f"--device {args.device} cannot be used in this pykern: {exc}"
                             ) from None
        print_error("demo", f"note: the GIC model cannot be used ({exc}); running without it")
        args.device = "none"
        return verb_demo(args)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None
    cma, no_cma = runs
    if args.json:
        print_json(runs)
    else:
        print(f"pykern demo: {args.arch}, {args.ram} RAM, cmdline {args.cmdline!r}, "
              f"{args.kernel_mib} MiB kernel + {args.initrd_mib} MiB initrd, "
              f"device {args.device}")
        print(area_line + "\n")
        for run in runs:
            print(f"== {run['mode']} ==")
            for idx, mem, memsz, where in run["segments"]:
                print(f"  segment {idx}: {mem:#012x} +{memsz:#x}  ({where})")
            used = "-" if run["cma_used_pages"] is None else run["cma_used_pages"]
            print(f"  entry words: {run['entry_words']}, CMA pages used: {used}")
            print(f"  hot phase: {run['hot_phase_pages']} pages, {run['hot_phase_bytes']} bytes "
                  f"copied, {run['emulated_copy_ms']} ms at copy_ns (wall {run['hot_phase_ms']}"
                  f" ms)")
            print(f"  verified: {run['verified']}, corrupted runs: {len(run['corrupted'])}, "
                  f"scribbles: {len(run['scribbles'])}, now generation {run['generation']}\n")
        rows = [["hot-phase bytes", cma["hot_phase_bytes"], no_cma["hot_phase_bytes"]],
                ["emulated copy ms", cma["emulated_copy_ms"], no_cma["emulated_copy_ms"]],
                ["scribbles", len(cma["scribbles"]), len(no_cma["scribbles"])],
                ["corrupted runs", len(cma["corrupted"]), len(no_cma["corrupted"])],
                ["verified", cma["verified"], no_cma["verified"]]]
        render_table(["", "CMA", "NO_CMA"], rows, console=rich_console())
    # The demo exists to show NO_CMA being damaged, so that is its expected outcome: it
    # fails (1) only when the CMA run, which the seed claims is safe, was damaged too.
    bad = bool(cma["corrupted"]) or not cma["verified"]
    return EXIT_PROBLEM if bad else EXIT_OK


def _mib_round(n: int) -> int:
    """Extra room for a second suggestion: a quarter more, at least 2 MiB."""
    return max(_CMA_SLACK, n // 4)
