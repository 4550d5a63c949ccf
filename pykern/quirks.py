"""Upstream oddities pykern reproduces by default, and the fixes that undo them.

``QUIRKS`` maps each fix name to ``(rule id, one-line description)`` (the guide's
"Quirks and fixes").  ``Machine(fixes=[names] | "all")`` switches fixes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, get_args

__all__ = ["QUIRKS", "LEAKS", "Fixes", "QuirkName", "parse_fixes"]

#: Every quirk's name: mypy checks a literal name written at a call site
#: (``m.fixes.on("cma-stale-tail")``), and :class:`Fixes` checks any name at run time.
QuirkName = Literal[
    "cma-stale-tail",
    "cma-leak-on-failed-load",
    "arm64-retry-cma-leak",
    "cma-inclusive-end-conflict",
    "cma-align-cap",
    "cma-ignores-limits",
    "arm64-text-offset-cma",
    "cma-name-newline",
    "contig-comp-mismatch-leak",
    "kexec-source-page-leak",
    "gic-pending-table-leak-no-efi",
]

QUIRKS: dict[str, tuple[str, str]] = {
    "cma-stale-tail": ("K12.4", "a CMA segment's tail past bufsz keeps old bytes; the x86 "
                                "digest can fail (fix: zero the tail)"),
    "cma-leak-on-failed-load": ("K2.9", "CMA blocks of a load that fails in K2.4-K2.7 stay "
                                        "allocated (fix: release them)"),
    "arm64-retry-cma-leak": ("K7.12", "blocks of segments dropped by the arm64 retry loop "
                                      "leak (fix: release on drop)"),
    "cma-inclusive-end-conflict": ("K7.8", "a segment starting right after the CMA block "
                                           "counts as overlap (fix: mem+memsz-1)"),
    "cma-align-cap": ("K7.5", "the CMA alignment is capped at 1 MiB (fix: full alignment)"),
    "cma-ignores-limits": ("K7.10", "CMA placement ignores buf_min/buf_max (fix: an "
                                    "out-of-range block falls back to the walk)"),
    "arm64-text-offset-cma": ("K12.4", "arm64 data lands at the block start and text_offset "
                                       "pages are never freed (fix: data at mem)"),
    "cma-name-newline": ("MM CMA3", "a generated CMA area name ends in a newline (fix: no "
                                    "newline)"),
    "contig-comp-mismatch-leak": ("MM R8", "alloc_contig_range with __GFP_COMP and a grabbed "
                                           "range that differs from the request leaves the "
                                           "grabbed free pages off every list (fix: release "
                                           "them)"),
    "kexec-source-page-leak": ("K12.2", "a source page whose SOURCE entry cannot be added (no "
                                        "page for a new indirection page, K10.2) is on no "
                                        "list, so kimage_free never frees it (fix: free it)"),
    "gic-pending-table-leak-no-efi": ("GIC-N5", "without EFI no memreserve callback is "
                                                "registered, so the pending table allocated "
                                                "for a CPU that adopts its old one is never "
                                                "freed (fix: free it)"),
}

#: Quirks that keep memory after a failed call: leaks the fault-injection sweep
#: (:func:`pykern.testing.faults.fail_nth_sweep`) accepts while their fix is off.
LEAKS = frozenset({"cma-leak-on-failed-load", "arm64-retry-cma-leak",
                   "contig-comp-mismatch-leak", "kexec-source-page-leak"})

#: Fixes that switch on others with them.
_IMPLIES = {"arm64-retry-cma-leak": ("cma-ignores-limits",)}


class Fixes(frozenset[str]):
    """The fixes a machine has switched on: a frozenset of quirk names that refuses to
    answer for a name it does not know, so a misspelt quirk is an error where it is asked,
    never a silent "not fixed"."""

    def __contains__(self, name: object) -> bool:
        if name not in QUIRKS:
            raise KeyError(f"unknown quirk {name!r} (known: {', '.join(QUIRKS)})")
        return frozenset.__contains__(self, name)

    def on(self, name: QuirkName) -> bool:
        """Whether the fix for quirk ``name`` is switched on."""
        return name in self

    def __or__(self, other: Iterable[str]) -> Fixes:  # type: ignore[override]
        return Fixes(frozenset(self) | frozenset(other))

    def __sub__(self, other: Iterable[str]) -> Fixes:  # type: ignore[override]
        return Fixes(frozenset(self) - frozenset(other))


def parse_fixes(fixes: Any) -> Fixes:
    """Validate ``Machine(fixes=...)``: ``"all"`` or an iterable of quirk names."""
    if fixes == "all":
        return Fixes(QUIRKS)
    if isinstance(fixes, str):
        fixes = [fixes]
    try:
        names = list(fixes)
    except TypeError:
        raise ValueError(f"fixes: {fixes!r} is not 'all' or a list of names") from None
    out: set[str] = set()
    for name in names:
        if name not in QUIRKS:
            raise ValueError(f"fixes: unknown fix {name!r} (known: {', '.join(QUIRKS)})")
        out.add(name)
        out.update(_IMPLIES.get(name, ()))
    return Fixes(out)


if set(get_args(QuirkName)) != set(QUIRKS):
    raise AssertionError("QuirkName and QUIRKS must list the same quirks")
