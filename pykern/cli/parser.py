"""The ``pykern`` command line: the verb table, each verb's options, ``build_parser`` and
``main`` (``fuzz`` and ``soak`` are handed to their own modules in :mod:`pykern.testing`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..constants import ARCHES
from .demo import verb_demo
from .render import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, print_error
from .verbs import (save_state, verb_boot, verb_cat, verb_exec, verb_load, verb_map,
                    verb_panic, verb_run, verb_unload)

__all__ = ["VERBS", "Verb", "build_parser", "int_at_least", "main"]

#: Verbs with a parser of their own in pykern.testing (they need the test extra).
_DELEGATED = {"fuzz": "pykern.testing.fuzz", "soak": "pykern.testing.soak"}


def _delegate(verb: str, argv: Sequence[str]) -> int:
    """``pykern fuzz`` / ``pykern soak``: hand everything to that module's ``main``."""
    modname = _DELEGATED[verb]
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        what = f"{modname} is not available in this pykern" \
            if exc.name in (modname, "pykern.testing") else \
            f"pykern {verb} needs {exc.name or exc}: pip install 'pykern-emu[test]'"
        print_error(verb, what)
        return EXIT_USAGE
    rc = module.main(list(argv))
    return int(rc or 0)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _scenario_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="a scenario .toml file or a bundled name (pykern run --list); "
                        "optional with an existing --state FILE, whose machine its steps "
                        "then run on")


def _load_options(p: argparse.ArgumentParser, *, kernel_optional: bool) -> None:
    p.add_argument("-s", action="store_true",
                   help="use kexec_file_load (always: the only syscall pykern models)")
    p.add_argument("-p", "--load-panic", dest="p", action="store_true",
                   help="load a crash kernel (KEXEC_FILE_ON_CRASH)")
    p.add_argument("--no-cma", action="store_true",
                   help="KEXEC_FILE_NO_CMA: place every segment with the walk, never in CMA")
    p.add_argument("--initrd", "--ramdisk", metavar="FILE|SIZE",
                   help="an initrd file, or a size such as 32M for a synthetic one "
                        "(default: none, KEXEC_FILE_NO_INITRAMFS)")
    p.add_argument("--command-line", metavar="STR", help="the new kernel's command line")
    p.add_argument("--append", metavar="STR", help="appended to the command line")
    p.add_argument("--reuse-cmdline", action="store_true",
                   help="start from the running kernel's command line")
    p.add_argument("-d", "--debug", dest="d", action="store_true",
                   help="KEXEC_FILE_DEBUG: print the kernel's placement messages")
    p.add_argument("kernel", metavar="KERNEL", nargs="?",
                   help="an image file, or a size such as 16M for a synthetic image of the "
                        "machine's arch" + (" (omitted: reboot into the image the scenario "
                                            "loaded)" if kernel_optional else ""))


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ram", default="1G", metavar="SIZE",
                   help="RAM of the machine, one bank (default 1G)")
    p.add_argument("--arch", default="arm64", choices=ARCHES,
                   help="machine architecture and image format (default arm64: an Image; "
                        "x86_64: a bzImage)")
    p.add_argument("--cmdline", default="cma=256M console=ttyAMA0", metavar="STR",
                   help="boot command line of the machine and of the loaded kernel; its "
                        "cma= sizes the CMA area the CMA run loads into (default "
                        "'cma=256M console=ttyAMA0')")
    p.add_argument("--kernel-mib", type=int_at_least(1), default=16, metavar="MIB",
                   help="size of the synthetic kernel image in MiB (default 16)")
    p.add_argument("--initrd-mib", type=int_at_least(0), default=32, metavar="MIB",
                   help="size of the synthetic initrd in MiB, 0 for none (default 32)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="machine seed: device timing and image contents (default 0)")
    p.add_argument("--device", choices=("gic", "none"), default=None,
                   help="gic: a GICv3 that ignores shutdown and keeps writing during the "
                        "reboot; none: no device (default: gic on arm64 when "
                        "pykern.drivers.gic exists)")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="a scenario .toml file or a bundled name")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios")
    p.add_argument("--step", type=int_at_least(0), metavar="N",
                   help="stop after step N (0 = right after boot; default: all steps)")


def _load_verb_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    _load_options(p, kernel_optional=False)


def _exec_verb_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    _load_options(p, kernel_optional=True)


def _unload_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    p.add_argument("-p", "--load-panic", dest="p", action="store_true",
                   help="unload the crash kernel instead of the default one")


def _cat_options(p: argparse.ArgumentParser) -> None:
    _scenario_arg(p)
    p.add_argument("path", metavar="PATH", nargs="?",
                   help="a procfs, sysfs or debugfs file, e.g. /proc/iomem")
    p.add_argument("--step", type=int_at_least(0), metavar="N",
                   help="after step N (0 = at boot; default: after all steps)")


def _map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", nargs="?",
                   help="a scenario .toml file or a bundled name (default: the demo's "
                        "machine, loaded and rebooted in both modes)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the picture to write: FILE.png or FILE.svg")
    p.add_argument("--step", type=int_at_least(0), metavar="N",
                   help="draw the machine after step N (default: after all steps)")
    p.add_argument("--modes", action="store_true",
                   help="run the scenario twice, its loads with CMA allowed and with "
                        "KEXEC_FILE_NO_CMA, and draw the two one above the other")


def _common_options(p: argparse.ArgumentParser) -> None:
    """Options every verb takes (the one place to add another)."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout instead of text")


def _state_option(p: argparse.ArgumentParser) -> None:
    """``--state FILE``: the verbs that act on one machine keep it in a snapshot file."""
    p.add_argument("--state", metavar="FILE",
                   help="a machine snapshot: when FILE exists the machine is restored from it "
                        "instead of booting the scenario, and after the command it is saved "
                        "back (pykern boot SCENARIO --state FILE makes one)")


def _boot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a scenario .toml file or a bundled name (pykern run --list)")
    p.add_argument("--step", type=int_at_least(0), metavar="N",
                   help="stop after step N (0 = right after boot; default: all steps)")


@dataclass(frozen=True)
class Verb:
    """A verb of the ``pykern`` command: its handler, its options and its help."""

    name: str
    func: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None]
    help: str
    #: takes ``--state FILE`` (every verb that acts on one machine)
    state: bool = True


VERBS: tuple[Verb, ...] = (
    Verb("demo", verb_demo, _demo_options,
         "one image loaded with CMA and with KEXEC_FILE_NO_CMA, rebooted under a GIC that "
         "ignores shutdown, side by side (exit 1 if the CMA run is damaged, 2 if the CMA "
         "area is missing or too small)", state=False),
    Verb("boot", verb_boot, _boot_options,
         "power on a scenario's machine and run its steps; with --state FILE, save it for "
         "the verbs that follow (kexec -l / -e on one machine)"),
    Verb("run", verb_run, _run_options,
         "execute a scenario file and report each step (exit 1 if a step failed or found "
         "corruption)"),
    Verb("load", verb_load, _load_verb_options,
         "kexec -s -l: load a kernel on a scenario's machine"),
    Verb("exec", verb_exec, _exec_verb_options,
         "load KERNEL (if given) and reboot into it (kexec -e)"),
    Verb("unload", verb_unload, _unload_options, "kexec -u: unload the loaded kernel"),
    Verb("panic", verb_panic, _scenario_arg,
         "panic: boot the loaded crash kernel, or halt"),
    Verb("cat", verb_cat, _cat_options,
         "print a procfs/sysfs/debugfs file of a scenario's machine"),
    Verb("map", verb_map, _map_options,
         "draw the physical memory map into a PNG or SVG (needs pykern-emu[plot])"),
)


#: The optional positional each verb takes after SCENARIO.
_OWN_POSITIONAL = {"load": "kernel", "exec": "kernel", "cat": "path"}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``pykern`` command."""
    parser = argparse.ArgumentParser(
        prog="pykern", description="Linux memory and kexec, emulated in Python.",
        epilog="Exit codes: 0 the command did what was asked; 1 its own operation failed or "
               "its own reboot found corruption; 2 usage or bad input; 130 interrupted.")
    from .. import DIST_NAME, __version__
    parser.add_argument("--version", action="version", version=f"{DIST_NAME} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for verb in VERBS:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help)
        verb.options(p)
        _common_options(p)
        if verb.state:
            _state_option(p)
        p.set_defaults(func=verb.func)
    sub.add_parser("fuzz", add_help=False,
                   help="the fuzz campaign (pykern fuzz --help for its options)")
    sub.add_parser("soak", add_help=False,
                   help="long random operation sequences with every invariant checked "
                        "(pykern soak --help for its options)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pykern`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _DELEGATED:
            return _delegate(argv[0], argv[1:])
        return _main(argv)
    except KeyboardInterrupt:          # Ctrl-C: a short message, no traceback
        verb = f" {argv[0]}" if argv and argv[0] in {v.name for v in VERBS} else ""
        print(f"pykern{verb}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `pykern demo | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str]) -> int:
    """Parse ``argv``, run the verb, then save its machine to ``--state`` when asked."""
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        # argparse cannot give an optional positional after options (`exec S --no-cma 4M`,
        # bpo-14191): a verb's own KERNEL or PATH may come back as the one leftover word.
        own = _OWN_POSITIONAL.get(args.command)
        if (own is not None and len(extras) == 1 and getattr(args, own) is None
                and not extras[0].startswith("-")):
            setattr(args, own, extras[0])
            extras = []
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        rc: int = args.func(args)
    except UsageError as exc:
        print_error(args.command, str(exc))
        return EXIT_USAGE
    return save_state(args.command, args) or rc
