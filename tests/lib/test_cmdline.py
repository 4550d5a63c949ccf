"""lib/cmdline.py: ``parse_args``'s split of an unquoted command line against the
character walk of ``next_arg`` (kernel/params.c) that it stands for (issue 19)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pykern.lib.cmdline import parse_args
from pykern.kernel.params import parse_boot_params

#: Blanks ``str.isspace`` knows (ASCII, the C1 and Unicode ones), and word characters.
_BLANKS = [chr(c) for c in range(0x3001) if chr(c).isspace()]
_TEXT = st.text(alphabet=st.sampled_from(_BLANKS + list('ab=c.-_"1')), max_size=24)


def _next_arg_walk(cmdline: str) -> list[tuple[str, str | None]]:
    """kernel/params.c ``next_arg`` one character at a time: skip blanks, take a word up
    to the next blank outside double quotes, drop the quotes, split at the first ``=``."""
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
        key, eq, value = word.partition("=")
        out.append((key, value) if eq else (word, None))
    return out


@settings(max_examples=500, deadline=None)
@given(_TEXT)
def test_parse_args_splits_as_next_arg_walks(cmdline: str) -> None:
    """``parse_args`` (``next_arg``): the same (param, value) pairs, in order, as the
    character walk, for command lines with and without quotes."""
    assert parse_args(cmdline) == _next_arg_walk(cmdline)


def test_parse_args_examples() -> None:
    """Blank runs of any kind separate words; a word without ``=`` has no value; quotes
    keep blanks and vanish."""
    assert parse_args("") == [] and parse_args(" \t\n ") == []
    assert parse_args(" a=1\u2003b  c= d=x=y ") == [("a", "1"), ("b", None), ("c", ""),
                                                     ("d", "x=y")]
    assert parse_args('a="x y" "b c"=d') == [("a", "x y"), ("b c", "d")]
    assert parse_boot_params("console=ttyAMA0  foo\tbar=1").init_argv == ["init", "foo"]
