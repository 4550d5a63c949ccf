"""The ``pykern`` command (``python -m pykern``).

Verbs::

    pykern demo [--device gic|none]          CMA vs KEXEC_FILE_NO_CMA on one machine
    pykern run SCENARIO | --list             execute a scenario file, one row per step
    pykern boot SCENARIO --state FILE        run its steps, save the machine to FILE
    pykern load SCENARIO [-p] [--no-cma] [--initrd FILE|SIZE] [--command-line STR]
                [--append STR] [-d] KERNEL   kexec -s -l, on the scenario's machine
    pykern exec SCENARIO [load options] [KERNEL]   load (if KERNEL) and reboot (kexec -e)
    pykern unload SCENARIO [-p]              kexec -u
    pykern panic SCENARIO                    crash into the loaded crash kernel
    pykern cat SCENARIO PATH [--step N]      a procfs/sysfs/debugfs file after step N
    pykern map [SCENARIO] -o FILE.png|.svg   a picture of the physical memory map
    pykern fuzz ...                          pykern.testing.fuzz
    pykern soak ...                          pykern.testing.soak

A SCENARIO is a TOML file (see :mod:`pykern.scenario`) or the name of a bundled one
(``pykern run --list``).  Every verb takes ``--json`` (one JSON document on stdout), and
every verb that acts on one machine ``--state FILE``; a verb is one
:class:`~pykern.cli.parser.Verb` of :data:`pykern.cli.parser.VERBS`.

Exit codes describe the command that was run: 0 it did what was asked; 1 its own operation
failed, or the reboot it made found corruption (``run``: some step of the scenario did;
``demo``: its CMA run was damaged); 2 usage or bad input (a bad scenario, a size that can
never fit, a demo whose CMA area is missing or too small); 130 interrupted (Ctrl-C: a short
message, no traceback).  The verbs other than ``run`` report what earlier scenario steps
found (on stderr, or in their step table) without making it their exit code.

The package follows the command's seams: :mod:`~pykern.cli.parser` (options, the verb table,
``main``), :mod:`~pykern.cli.demo`, :mod:`~pykern.cli.verbs` (the verbs on a scenario's
machine and ``--state`` sessions), :mod:`~pykern.cli.render` (tables, JSON, errors, exit
codes) and :mod:`~pykern.cli.map` (the ``pykern map`` picture).
"""

from __future__ import annotations

from .parser import build_parser, main
from .render import render_table

__all__ = ["build_parser", "main", "render_table"]
