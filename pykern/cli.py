"""The ``pykern`` command (``python -m pykern``).

Exit codes: 0 ok, 1 the scenario found a problem, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _demo_mode(args: argparse.Namespace, no_cma: bool) -> dict[str, Any]:
    """One run of the demo: boot, load the same image, reboot, report."""
    from . import Machine, images
    from .kernel.kexec.uapi import KEXEC_FILE_NO_CMA

    m = Machine(args.ram, arch=args.arch, cmdline=args.cmdline, seed=args.seed)
    kernel = (images.arm64_image(args.kernel_mib << 20, seed=args.seed) if args.arch == "arm64"
              else images.bzimage(args.kernel_mib << 20, seed=args.seed))
    initrd = images.payload_pattern(args.initrd_mib << 20, seed=args.seed + 1)
    task = m.new_task()  # a user process whose pages borrow CMA until the load reclaims them
    va = task.mmap_anon(2048)
    task.write(va, b"user data " * 800)
    m.kexec_file_load(kernel, initrd, args.cmdline, KEXEC_FILE_NO_CMA if no_cma else 0)
    image = m.kexec_image
    assert image is not None
    segments = [(i, s.mem, s.memsz, "CMA" if s.cma else "walk")
                for i, s in enumerate(image.segments)]
    entries = len(image.entries())
    used = m.read("/sys/kernel/debug/cma/reserved/used").strip() \
        if m.dma_contiguous_default_area is not None else "-"
    result = m.kernel_kexec()
    return {"mode": "NO_CMA" if no_cma else "CMA", "segments": segments, "entry_words": entries,
            "cma_used_pages": used, "hot_phase_pages": result.hot_phase_pages,
            "hot_phase_bytes": result.hot_phase_bytes,
            "hot_phase_ms": round(result.hot_phase_seconds * 1000, 3),
            "emulated_copy_ms": result.hot_phase_ns / 1e6,
            "verified": result.verified, "corrupted": result.corrupted,
            "generation": m.generation, "next_cmdline": m.cmdline if not m.halted else None}


def _demo(args: argparse.Namespace) -> int:
    """The same machine and kexec image, loaded with CMA and with KEXEC_FILE_NO_CMA."""
    try:
        runs = [_demo_mode(args, no_cma) for no_cma in (False, True)]
    except (ValueError, OSError) as exc:
        print(f"pykern demo: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        print(f"pykern demo: {args.arch}, {args.ram} RAM, cmdline {args.cmdline!r}, "
              f"{args.kernel_mib} MiB kernel + {args.initrd_mib} MiB initrd\n")
        for run in runs:
            print(f"== {run['mode']} ==")
            for idx, mem, memsz, where in run["segments"]:
                print(f"  segment {idx}: {mem:#012x} +{memsz:#x}  ({where})")
            print(f"  entry words: {run['entry_words']}, CMA pages used: {run['cma_used_pages']}")
            print(f"  hot phase: {run['hot_phase_pages']} pages, {run['hot_phase_bytes']} bytes "
                  f"copied, {run['emulated_copy_ms']} ms at copy_ns (wall {run['hot_phase_ms']}"
                  f" ms)")
            print(f"  verified: {run['verified']}, corrupted runs: {len(run['corrupted'])}, "
                  f"now generation {run['generation']}\n")
    bad = any(run["corrupted"] or not run["verified"] for run in runs)
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pykern", description="Linux memory and kexec, "
                                     "emulated in Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="boot a machine and show the allocator at work")
    demo.add_argument("--ram", default="1G")
    demo.add_argument("--arch", default="arm64", choices=("arm64", "x86_64"))
    demo.add_argument("--cmdline", default="cma=256M console=ttyAMA0")
    demo.add_argument("--kernel-mib", type=int, default=16)
    demo.add_argument("--initrd-mib", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except BrokenPipeError:  # e.g. `pykern demo | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
