"""Where a key sits in a scenario file, and the error that names it.

``tomllib`` gives no positions, so a key's line is found by searching the TOML text for the
key under the table it belongs to (:func:`find_key_line`); :func:`error_at` makes the
:class:`~pykern.errors.ScenarioError` that carries the file, that line and the dotted key.
"""

from __future__ import annotations

import re
from typing import Union

from ..errors import ScenarioError

__all__ = ["KeyPath", "ScenarioError", "dotted_key", "error_at", "find_key_line"]

#: A position in the TOML document: table keys and array indices.
KeyPath = tuple[Union[str, int], ...]


def error_at(message: str, file: str, text: str, path: KeyPath) -> ScenarioError:
    """The :class:`ScenarioError` for the key at ``path`` of the scenario ``text`` read from
    ``file``."""
    return ScenarioError(message, file=file, line=find_key_line(text, path),
                         key=dotted_key(path))


def dotted_key(path: KeyPath) -> str:
    """``steps[2].kernel.size`` for ``("steps", 2, "kernel", "size")``."""
    out = ""
    for comp in path:
        out += f"[{comp}]" if isinstance(comp, int) else (f".{comp}" if out else comp)
    return out


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_\-.\"' ]+?)\s*\]\]?\s*(?:#.*)?$")


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (quotes respected, roughly)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def find_key_line(text: str, path: KeyPath) -> int | None:
    """The 1-based line of ``path`` (e.g. ``("steps", 2, "kernel", "size")``) in TOML ``text``.

    Table headers (``[machine]``, the k-th ``[[steps]]``) narrow the search to their lines; the
    remaining keys are searched for as ``key =`` in order from there, so keys of inline tables
    are found on or after the line of their parent.  Best effort: the deepest part found wins,
    and None means nothing matched.
    """
    lines = text.splitlines()
    headers: list[tuple[int, str, bool]] = []
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
            headers.append((i, name, m.group(1) == "[["))

    def span(h: int) -> tuple[int, int]:
        end = headers[h + 1][0] if h + 1 < len(headers) else len(lines)
        return headers[h][0], end

    table = ""
    lo, hi = 0, (headers[0][0] if headers else len(lines))
    found: int | None = None
    in_headers = True
    i = 0
    while i < len(path):
        comp = path[i]
        if isinstance(comp, int):
            i += 1
            continue
        name = f"{table}.{comp}" if table else comp
        matches = [k for k, (_, n, _) in enumerate(headers) if n == name]
        if in_headers and matches:
            h = matches[0]
            if headers[h][2] and i + 1 < len(path) and isinstance(path[i + 1], int):
                occurrence = path[i + 1]
                assert isinstance(occurrence, int)
                h = matches[min(occurrence, len(matches) - 1)]
                i += 1
            lo, hi = span(h)
            found = lo
            table = name
            i += 1
            continue
        if in_headers and any(n.startswith(name + ".") for _, n, _ in headers):
            table = name  # only sub-tables are written out ([[machine.devices]] alone)
            i += 1
            continue
        in_headers = False
        pattern = re.compile(r"(?:^|[\s{,.])[\"']?" + re.escape(comp) + r"[\"']?\s*=")
        start = found if found is not None else lo
        for j in range(start, hi):
            if pattern.search(_strip_comment(lines[j])):
                found = j
                break
        else:
            if found is None:  # last resort: anywhere in the file
                for j, line in enumerate(lines):
                    if pattern.search(_strip_comment(line)):
                        found = j
                        break
            break
        i += 1
    return None if found is None else found + 1
