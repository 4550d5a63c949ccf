"""The files ``m.read`` and ``m.write`` reach: procfs, sysfs and debugfs.

Each path maps to a function that renders the kernel's text (the MM T rules).  Files
are looked up exactly; an unknown path raises ``FileNotFoundError`` and a
write the kernel would refuse raises ``OSError`` with its errno.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["read_file", "write_file", "write_sysctl", "register"]

Reader = Callable[["Machine"], str]
_static: dict[str, Reader] = {}
#: Providers of whole directory trees: prefix -> (machine, rest) -> text or None.
_dynamic: list[tuple[str, Callable[["Machine", str], str | None]]] = []
_writers: list[tuple[str, Callable[["Machine", str, str], None]]] = []


def register(path: str, reader: Reader) -> None:
    _static[path] = reader


def register_tree(prefix: str, reader: Callable[[Machine, str], str | None]) -> None:
    _dynamic.append((prefix, reader))


def register_writer(prefix: str, writer: Callable[[Machine, str, str], None]) -> None:
    _writers.append((prefix, writer))


def _load() -> None:
    if _static:
        return
    from . import proc  # noqa: F401  (registers the views)


def read_file(m: Machine, path: str) -> str:
    """Text of ``path`` on ``m``."""
    _load()
    if not isinstance(path, str):
        raise FileNotFoundError(f"{path!r}: not a path")
    norm = "/" + path.strip("/")
    reader = _static.get(norm)
    if reader is not None:
        return reader(m)
    for prefix, tree in _dynamic:
        if norm.startswith(prefix):
            text = tree(m, norm[len(prefix):])
            if text is not None:
                return text
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)


def write_file(m: Machine, path: str, text: str) -> None:
    """Write ``text`` to ``path`` on ``m``."""
    _load()
    norm = "/" + str(path).strip("/")
    for prefix, writer in _writers:
        if norm.startswith(prefix):
            writer(m, norm[len(prefix):], text)
            return
    if norm in _static or any(norm.startswith(p) for p, _ in _dynamic):
        raise PermissionError(errno.EACCES, "Permission denied", path)
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)


def write_sysctl(m: Machine, name: str, text: str) -> None:
    """``/proc/sys/<name>`` (``vm/...`` or ``kernel/...``)."""
    _load()
    from .proc.sysctl import sysctl_write
    sysctl_write(m, name, text)
