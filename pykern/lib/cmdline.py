"""Kernel command-line parsing: ``memparse`` and ``parse_args``.

Models ``lib/cmdline.c`` (``memparse``) and the word splitting of
``kernel/params.c`` (``next_arg``): words are separated by blanks, a value may
be double-quoted, and a word without ``=`` has the value ``None``.
"""

from __future__ import annotations

import re

__all__ = ["memparse", "parse_args", "parse_size"]

_SUFFIX = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([KkMmGgTtPpEe]?)")


def memparse(text: str) -> tuple[int, str]:
    """Parse a size like the kernel's ``memparse``: a C integer (decimal, 0x
    hex or 0 octal) with an optional K/M/G/T/P/E suffix.

    :return: ``(value, rest)``, the rest of the string after the size.
    :raises ValueError: when ``text`` does not start with a number.
    """
    match = _NUMBER.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size")
    digits, suffix = match.groups()
    value = int(digits, 0) if not (digits.startswith("0") and len(digits) > 1
                                   and digits[1] not in "xX") else int(digits, 8)
    return value << _SUFFIX[suffix.upper()], text[match.end():]


def parse_size(value: int | str, what: str = "size") -> int:
    """A whole size given as an int or a kernel-style string ("64M", "1G").

    :raises ValueError: naming ``what`` when the value is malformed or negative.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}: {value} is negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{what}: {value!r} is not a size")
    try:
        size, rest = memparse(value.strip())
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not a size") from None
    if rest:
        raise ValueError(f"{what}: {value!r} has trailing {rest!r}")
    return size


def parse_args(cmdline: str) -> list[tuple[str, str | None]]:
    """Split a command line into ``(param, value)`` pairs in order.

    Quoting follows ``next_arg``: ``"a b"`` or ``param="a b"`` keep blanks.
    """
    if '"' not in cmdline:
        # Nothing quoted: every run of blanks ends a word (``str.split`` splits where
        # ``str.isspace`` is true, the test of the loop below).
        return [(w, None) if (eq := w.find("=")) < 0 else (w[:eq], w[eq + 1:])
                for w in cmdline.split()]
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(cmdline)
    while i < n:
        while i < n and cmdline[i].isspace():
            i += 1
        if i >= n:
            break
        start, quoted = i, False
        while i < n and (quoted or not cmdline[i].isspace()):
            if cmdline[i] == '"':
                quoted = not quoted
            i += 1
        word = cmdline[start:i].replace('"', "")
        if "=" in word:
            key, value = word.split("=", 1)
            out.append((key, value))
        else:
            out.append((word, None))
    return out
