"""The ``pykern`` command (``python -m pykern``).

Exit codes: 0 ok, 1 the scenario found a problem, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """Boot a machine, allocate and free, borrow and reclaim CMA, show the views."""
    from . import Machine
    from .mm import gfp

    try:
        m = Machine(args.ram, arch=args.arch, cmdline=args.cmdline, seed=args.seed)
    except ValueError as exc:
        print(f"pykern demo: {exc}", file=sys.stderr)
        return 2
    report: dict[str, object] = {"machine": repr(m)}
    out: list[str] = [f"{m!r}", "", "/proc/buddyinfo at boot:", m.read("/proc/buddyinfo")]
    report["buddyinfo_boot"] = m.read("/proc/buddyinfo")
    pages = [m.mm.alloc_pages(gfp.GFP_KERNEL, order) for order in (0, 3, 9, 10)]
    out += ["after GFP_KERNEL allocations of order 0, 3, 9 and 10:", m.read("/proc/buddyinfo")]
    report["buddyinfo_allocated"] = m.read("/proc/buddyinfo")
    for page, order in zip(pages, (0, 3, 9, 10)):
        if page is not None:
            m.mm.free_pages(page, order)
    out += ["after freeing them again:", m.read("/proc/buddyinfo")]
    report["buddyinfo_freed"] = m.read("/proc/buddyinfo")
    cma = m.dma_contiguous_default_area
    if cma is not None:
        task = m.new_task()
        n = min(cma.count // 2, 4096)
        va = task.mmap_anon(n)
        task.write(va, b"pykern!" * (n * 4096 // 7))
        in_cma = sum(m.mm.pageblock_type(task.pfn_of(va + k * 4096)) == "CMA" for k in range(n))
        block = cma.alloc(cma.count // 2, 0)
        moved = sum(m.mm.pageblock_type(task.pfn_of(va + k * 4096)) == "CMA"
                    for k in range(n))
        intact = task.read(va, n * 4096 // 7 * 7) == b"pykern!" * (n * 4096 // 7)
        out += [f"CMA area {cma.name!r}: {cma.count} pages at pfn {cma.base_pfn:#x}",
                f"a task mapped {n} movable pages, {in_cma} of them in CMA",
                f"cma_alloc({cma.count // 2}) -> "
                f"{'pfn %#x' % block.pfn if block else 'failed'}; task pages left in CMA: "
                f"{moved}; task bytes intact: {intact}",
                f"debugfs used: {m.read(f'/sys/kernel/debug/cma/{cma.name}/used').strip()}"]
        report.update(cma_task_pages=in_cma, cma_alloc=block.pfn if block else None,
                      task_intact=intact)
        if not intact:
            print("\n".join(out))
            return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pykern", description="Linux memory and kexec, "
                                     "emulated in Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="boot a machine and show the allocator at work")
    demo.add_argument("--ram", default="1G")
    demo.add_argument("--arch", default="arm64", choices=("arm64", "x86_64"))
    demo.add_argument("--cmdline", default="cma=600M")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="machine-readable output")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
