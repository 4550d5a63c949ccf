"""``pykern fuzz``: a boot / load / check / reboot campaign over random layouts (issue #8).

Case ``i`` of a campaign is fully determined by ``(seed, i)`` and the options that shape the
draws (``--ram-max``, ``--max-kernel``, ``--max-initrd``): a machine layout and a kexec load
drawn by the generator :func:`pykern.testing.strategies.layouts` and
:func:`~pykern.testing.strategies.kexec_loads` use too (:mod:`pykern.testing.drawing`), but
from a seeded ``random.Random`` instead of hypothesis's engine, so a case can be replayed
alone with ``--layouts 1 --start I`` and the campaign can be split across processes.

For every selected mode (``cma``: flags without ``KEXEC_FILE_NO_CMA``; ``no-cma``: with it)
a case boots the layout, loads, checks the K19 invariants
(:func:`pykern.testing.invariants.check_kimage` and page accounting), reboots with
``m.kernel_kexec()`` (``m.panic()`` for an ON_CRASH load) and records the hot-phase bytes,
corrupted runs, scribbles and ``verified``.  CMA leaks (K2.9, K7.12) are measured in debugfs
``cma/reserved/used``: across a failed load on the machine itself, and across a load plus
unload on a second machine of the same layout.

A case fails when an invariant breaks, something raises other than ``OSError`` from the load,
or RAM is corrupted with no device to blame and no quirk that explains it; each failure is
printed as a one-line replay command.  Exit status: 0 clean, 1 failures (or a Dask
scheduler lost mid-campaign), 2 bad options (or a scheduler that cannot be used), 130
interrupted: Ctrl-C stops the workers at once and the report (``incomplete`` in JSON) covers
the cases that finished.  The progress line is drawn only on a terminal.

``--jobs J`` runs the cases on J local processes; ``--scheduler ADDRESS|local[:N]`` runs them
on a Dask cluster (:mod:`pykern.testing.fuzz_dask`), with the same cases and report.  Every
process that runs cases is first made a worker (:func:`prepare_worker`: modules imported,
glibc's heap padding and the collector's threshold raised for thousands of short-lived
machines); the settings change no result.

The package: :mod:`~pykern.testing.fuzz.cases` (:class:`Config`, :func:`draw_case`),
:mod:`~pykern.testing.fuzz.runner` (:func:`run_cycle`, :func:`run_case`, the worker pool,
:func:`campaign` and its report) and :mod:`~pykern.testing.fuzz.command` (the options and
:func:`main`).
"""

from __future__ import annotations

from .runner import (CaseFailure, build_report, campaign, default_batch, failure_record,
                     prepare_worker, run_case, run_chunk, run_cycle)
from .cases import ARCHES, MODES, Case, Config, draw_case
from .command import build_parser, main, parse_config

__all__ = ["main", "Config", "Case", "draw_case", "run_case", "run_cycle", "build_parser",
           "MODES", "ARCHES", "CaseFailure", "campaign", "default_batch", "failure_record",
           "parse_config", "run_chunk", "build_report", "prepare_worker"]
