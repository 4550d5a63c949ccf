"""Fuzz throughput: the local pool (--jobs 1, 2) against a local Dask cluster (1, 2 workers),
in one run, plus the scheduler's overhead per task and the memory of a Dask worker.

Run from the repository root after ``pip install -e '.[test]'`` (or ``'.[dask]'``)::

    python benches/fuzz_dask_throughput.py [--layouts 400] [--seed 5] [--repeat 2]

Not a pytest bench (CI does not run it): it starts clusters and prints Markdown tables.
Every configuration runs the same cases, and the script checks that each Dask run found
what the pool found.  Cluster start-up is timed apart from the campaign, which runs on the
started cluster, after a warm-up of a few cases (a fresh worker imports pykern on its first
case), ``--repeat`` times (the best wall time is shown).  Wall times depend on what
else the host runs; the CPU columns (this process and its workers, user + system) much less.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from typing import Any

from pykern.testing import fuzz, fuzz_dask


def _noop(config: fuzz.Config, indices: Any) -> list[dict[str, Any]]:
    """A task that runs no case: what is left of its time is the scheduler's."""
    return []


def _usage() -> tuple[int, float]:
    """Runs on a worker: its RSS and its CPU seconds so far."""
    import psutil
    proc = psutil.Process()
    cpu = proc.cpu_times()
    return int(proc.memory_info().rss), cpu.user + cpu.system


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _outcome(report: dict[str, Any]) -> Any:
    strip = {"seconds", "cycles_per_second"}
    return ({m: {k: v for k, v in s.items() if k not in strip}
             for m, s in report["per_mode"].items()}, report["failures"])


def pool(config: fuzz.Config, jobs: int, repeat: int) -> dict[str, Any]:
    best: dict[str, Any] = {}
    for _ in range(repeat):
        c0, k0, t0 = _self_cpu(), _children_cpu(), time.perf_counter()
        report = fuzz.campaign(config, jobs)
        wall = time.perf_counter() - t0
        # with one job the cases run in this process; with more, in children reaped at the end
        run = {"wall": wall, "report": report, "parent_cpu": _self_cpu() - c0,
               "worker_cpu": _children_cpu() - k0}
        if not best or wall < best["wall"]:
            best = run
    return best


def on_dask(config: fuzz.Config, workers: int, repeat: int, noop_tasks: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    cluster, client = fuzz_dask._start_local(workers)
    best: dict[str, Any] = {"start": time.perf_counter() - t0}
    try:
        address = cluster.scheduler_address
        idle = client.run(_usage)
        # the first cases a fresh worker runs import pykern; the pool's forked workers
        # inherit this process's imports, so warm the workers up before timing
        t0 = time.perf_counter()
        fuzz.campaign(fuzz.Config(seed=config.seed + 1, layouts=4 * workers),
                      scheduler=address)
        best["warmup"] = time.perf_counter() - t0
        for _ in range(repeat):
            before = client.run(_usage)
            c0, t0 = _self_cpu(), time.perf_counter()
            report = fuzz.campaign(config, scheduler=address)
            wall = time.perf_counter() - t0
            after = client.run(_usage)
            if "wall" not in best or wall < best["wall"]:
                best.update(wall=wall, report=report, parent_cpu=_self_cpu() - c0,
                            worker_cpu=sum(after[w][1] - before[w][1] for w in after),
                            rss=max(a[0] for a in after.values()))
        best["idle_rss"] = max(a[0] for a in idle.values())
        info: dict[str, Any] = {}
        fuzz_dask.run_on_dask(config, fuzz_dask.parse_scheduler(address),
                              list(range(noop_tasks)), lambda part: None, info, 1, _noop)
        best["noop"] = (time.perf_counter() - info["ready"]) / noop_tasks
    finally:
        fuzz_dask._close(client, cluster)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--layouts", type=int, default=400)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--noop-tasks", type=int, default=2000)
    args = p.parse_args()
    config = fuzz.Config(seed=args.seed, layouts=args.layouts)
    print(f"{args.layouts} layouts (seed {args.seed}, both modes and arches, default sizes), "
          f"best of {args.repeat}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at the start\n")
    rows: list[tuple[str, str, dict[str, Any]]] = []
    base = pool(config, 1, args.repeat)
    rows.append(("--jobs 1", "-", base))
    rows.append(("--jobs 2", "-", pool(config, 2, args.repeat)))
    dask_runs = []
    for workers in (1, 2):
        run = on_dask(config, workers, args.repeat, args.noop_tasks)
        assert _outcome(run["report"]) == _outcome(base["report"]), "Dask found other results"
        dask_runs.append((workers, run))
        rows.append((f"--scheduler local:{workers}",
                     f"{run['start']:.2f} s + {run['warmup']:.2f} s", run))
    cases = base["report"]["cases"]
    print("| run | cluster start + warm-up | campaign wall | cycles/s | CPU ms per case: workers | "
          "parent | batch |")
    print("|---|---|---|---|---|---|---|")
    for name, start, run in rows:
        rep = run["report"]
        worker_cpu = run["worker_cpu"] if rep["jobs"] > 1 or rep["scheduler"] else \
            run["parent_cpu"]
        parent_cpu = run["parent_cpu"] if rep["jobs"] > 1 or rep["scheduler"] else 0.0
        print(f"| `{name}` | {start} | {run['wall']:.2f} s | {rep['cycles'] / run['wall']:.0f} "
              f"| {worker_cpu / cases * 1e3:.1f} | {parent_cpu / cases * 1e3:.2f} | "
              f"{rep['batch']} |")
    print(f"\n| Dask workers | no-op task (batch of 1), wall per task | the same per case at "
          f"batch 16 | worker RSS idle | worker RSS after {args.layouts} layouts |")
    print("|---|---|---|---|---|")
    for workers, run in dask_runs:
        print(f"| {workers} | {run['noop'] * 1e3:.2f} ms | {run['noop'] / 16 * 1e3:.3f} ms | "
              f"{run['idle_rss'] / 2**20:.0f} MiB | {run['rss'] / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
