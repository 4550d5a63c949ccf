"""The fuzz campaign's throughput (issue 19 target: at least 600 load-and-reboot cycles per
second per core on the default 64 MiB layouts, both modes), as a pytest-benchmark group.

One round runs the same 40 cases of seed 1 (80 cycles: each case in CMA and NO_CMA mode)
through :func:`pykern.testing.fuzz.runner.run_case`, exactly what ``pykern fuzz --layouts 40
--seed 1`` runs on one core, in a process prepared as the command prepares its own
(:func:`~pykern.testing.fuzz.runner.prepare_worker`; the collector's threshold is put back
afterwards); ``extra_info["cycles_per_second"]`` is 80 over the round's mean.
"""

from __future__ import annotations

import gc
from typing import Any

from pykern.testing.fuzz.cases import Config
from pykern.testing.fuzz.runner import prepare_worker, run_case

CASES = 40


def test_bench_fuzz_cycles_default_layouts(benchmark: Any) -> None:
    config = Config(seed=1, layouts=CASES)

    def campaign() -> list[dict[str, Any]]:
        return [run_case(config, i) for i in range(CASES)]

    benchmark.group = "fuzz 64M layouts, both modes"
    threshold = gc.get_threshold()
    prepare_worker()
    try:
        results = benchmark.pedantic(campaign, rounds=3, iterations=1, warmup_rounds=1)
    finally:
        gc.set_threshold(*threshold)
    assert len(results) == CASES and not any(r.get("failures") for r in results)
    cycles = CASES * len(config.modes)
    if benchmark.stats is not None:
        benchmark.extra_info["cycles"] = cycles
        benchmark.extra_info["cycles_per_second"] = round(cycles / benchmark.stats.stats.mean, 1)
