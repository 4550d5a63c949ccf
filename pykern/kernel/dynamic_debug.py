"""Dynamic debug for pykern's ``pr_debug`` sites (``lib/dynamic_debug.c``).

With ``CONFIG_DYNAMIC_DEBUG`` (on in distribution kernels, ``m.config``) every
``pr_debug`` is a call site that prints nothing until a query switches its ``p`` flag on.
Queries come from the boot command line (``dyndbg="QUERY"``, ``<module>.dyndbg="QUERY"``,
a bare ``<module>.dyndbg`` meaning ``+p``) and from writes to
``/sys/kernel/debug/dynamic_debug/control`` (also ``/proc/dynamic_debug/control``);
reading that file lists the sites in the kernel's line format::

    # filename:lineno [module]function flags format
    kernel/kexec_file.c:685 [kexec_file]kexec_alloc_contig =_ "CMA overlaps ...\\n"

The query language is the kernel's: ``file``, ``func``, ``module``, ``format``, ``line``
and ``class`` match-specs (``*``/``?`` wildcards for file, func and module; ``file
name.c:func`` and ``file name.c:12-20`` forms; ``^`` anchors a format), then one flags
word ``[+-=][pmfslt_]+``; several queries are separated by ``;`` or newlines, ``#`` starts
a comment.  A bad query logs the kernel's ``dyndbg:`` errors and the write fails with
EINVAL (E2BIG above 4095 bytes).  An enabled site prints at KERN_DEBUG (level 7) with the
optional ``m``/``f``/``s``/``l``/``t`` prefixes of ``__dynamic_emit_prefix``.

[model] Only the sites pykern has are listed (a real kernel has thousands): the two
``pr_debug`` calls of ``kexec_alloc_contig`` (kernel/kexec_file.c) and, on x86_64,
bzImage64_probe's "It's a relocatable bzImage64" (arch/x86/kernel/kexec-bzimage64.c).
Tables appear in link order (arch/ before kernel/), sites within a table last first, as
``ddebug_iter_next`` walks them.  Line numbers are those of the 6.17 sources as pykern
reconstructs them from the merged patches.  The ``t`` flag prints ``[1] ``: pykern has
no current task, the caller is taken to be pid 1.  Classes are not modelled (no site has
one), so a ``class`` query matches nothing.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .printk import KERN_DEBUG, KERN_ERR, KERN_WARNING
from ..errors import DdebugError

if TYPE_CHECKING:
    from ..machine import Machine
    from .printk import KernelLog

__all__ = ["DdebugSite", "DDEBUG_SITES", "DynamicDebug", "DdebugError", "control_read",
           "control_write", "dynamic_debug_init"]

_DPRINTK_FLAGS_PRINT = 1 << 0
_DPRINTK_FLAGS_INCL_MODNAME = 1 << 1
_DPRINTK_FLAGS_INCL_FUNCNAME = 1 << 2
_DPRINTK_FLAGS_INCL_LINENO = 1 << 3
_DPRINTK_FLAGS_INCL_TID = 1 << 4
_DPRINTK_FLAGS_INCL_SOURCENAME = 1 << 5
#: ``opt_array`` order: the order ``ddebug_describe_flags`` prints them in.
_OPT = (("p", _DPRINTK_FLAGS_PRINT), ("m", _DPRINTK_FLAGS_INCL_MODNAME),
        ("f", _DPRINTK_FLAGS_INCL_FUNCNAME), ("s", _DPRINTK_FLAGS_INCL_SOURCENAME),
        ("l", _DPRINTK_FLAGS_INCL_LINENO), ("t", _DPRINTK_FLAGS_INCL_TID), ("_", 0))
_OPT_CHARS = dict(_OPT)
MAXWORDS = 9
USER_BUF_PAGE = 4096
UINT_MAX = (1 << 32) - 1


@dataclass(frozen=True)
class DdebugSite:
    """One ``struct _ddebug``: where a ``pr_debug`` is and what it prints."""

    key: str            #: pykern's handle for the call site
    modname: str        #: KBUILD_MODNAME of the object file
    filename: str
    function: str
    lineno: int
    format: str         #: the format string as written (pr_fmt not applied)
    pr_fmt: str         #: the file's pr_fmt prefix, printed before the message
    arch: str | None = None


#: Every site pykern has, in the order the kernel's tables list them (see module doc).
DDEBUG_SITES: tuple[DdebugSite, ...] = (
    DdebugSite("bzImage64_probe", "kexec_bzimage64", "arch/x86/kernel/kexec-bzimage64.c",
               "bzImage64_probe", 384, "It's a relocatable bzImage64\n", "kexec-bzImage64: ",
               "x86_64"),
    DdebugSite("kexec_alloc_contig:allocated", "kexec_file", "kernel/kexec_file.c",
               "kexec_alloc_contig", 679, "allocated %zu DMA pages at 0x%lx", "kexec_file: "),
    DdebugSite("kexec_alloc_contig:overlap", "kexec_file", "kernel/kexec_file.c",
               "kexec_alloc_contig", 685, "CMA overlaps existing mem: 0x%lx+0x%lx\n",
               "kexec_file: "),
)


def _wildcard(pattern: str, text: str) -> bool:
    """``match_wildcard``: ``*`` any run, ``?`` any one character, nothing else special."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.S) is not None


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", "a": "\a",
                   "e": "\x1b", "\\": "\\", '"': '"'}


def _unescape(text: str) -> str:
    """``string_unescape_inplace`` with UNESCAPE_SPACE | OCTAL | SPECIAL."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[nxt])
                i += 2
                continue
            m = re.match(r"[0-7]{1,3}", text[i + 1:])
            if m:
                out.append(chr(int(m.group(), 8) & 0xFF))
                i += 1 + len(m.group())
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _escape(fmt: str) -> str:
    """``seq_escape_str(..., ESCAPE_SPACE, "\\t\\r\\n\\"")`` of a format string."""
    table = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return "".join(table.get(c, c) for c in fmt)


def _describe(flags: int) -> str:
    text = "".join(ch for ch, bit in _OPT if bit and flags & bit)
    return text or "_"


class DynamicDebug:
    """The ddebug tables of one boot and the flags of each site (picklable state only)."""

    def __init__(self, arch: str, enabled: bool = True) -> None:
        self.sites: list[DdebugSite] = ([s for s in DDEBUG_SITES if s.arch in (None, arch)]
                                        if enabled else [])
        self.flags: dict[str, int] = {s.key: 0 for s in self.sites}

    # ------------------------------------------------------------------ printing
    def enabled(self, key: str) -> bool:
        """The site's ``p`` flag (``DYNAMIC_DEBUG_BRANCH``); False for unknown sites."""
        return bool(self.flags.get(key, 0) & _DPRINTK_FLAGS_PRINT)

    def pr_debug(self, log: KernelLog, key: str, message: str) -> None:
        """``__dynamic_pr_debug``: print ``message`` (already formatted, without pr_fmt)
        at KERN_DEBUG when the site is enabled, with its flag prefixes."""
        flags = self.flags.get(key, 0)
        if not flags & _DPRINTK_FLAGS_PRINT:
            return
        site = next(s for s in self.sites if s.key == key)
        prefix = ""
        if flags & _DPRINTK_FLAGS_INCL_TID:
            prefix += "[1] "
        tail = ""
        if flags & _DPRINTK_FLAGS_INCL_MODNAME:
            tail += f"{site.modname}:"
        if flags & _DPRINTK_FLAGS_INCL_FUNCNAME:
            tail += f"{site.function}:"
        if flags & _DPRINTK_FLAGS_INCL_SOURCENAME:
            tail += f"{site.filename}:"
        if flags & _DPRINTK_FLAGS_INCL_LINENO:
            tail += f"{site.lineno}:"
        if tail:
            tail += " "
        log.printk(KERN_DEBUG, (prefix + tail + site.pr_fmt + message).rstrip("\n"))

    # ------------------------------------------------------------------ control
    def control(self) -> str:
        """Text of ``<debugfs>/dynamic_debug/control`` (``ddebug_proc_show``)."""
        lines = ["# filename:lineno [module]function flags format\n"]
        tables: dict[str, list[DdebugSite]] = {}
        for site in self.sites:
            tables.setdefault(site.modname, []).append(site)
        for sites in tables.values():
            for site in reversed(sites):
                lines.append(f"{site.filename}:{site.lineno} [{site.modname}]{site.function} "
                             f"={_describe(self.flags[site.key])} \"{_escape(site.format)}\"\n")
        return "".join(lines)

    def write_control(self, log: KernelLog, text: str) -> int:
        """``ddebug_proc_write``: run the queries; the number of matching sites.

        :raises DdebugError: EINVAL for a bad query (after the others ran), E2BIG for
            4096 bytes or more.
        """
        if not text:
            return 0
        if len(text.encode()) > USER_BUF_PAGE - 1:
            log.printk(KERN_WARNING, f"dyndbg: expected <{USER_BUF_PAGE} bytes into control")
            raise DdebugError(errno.E2BIG, "Argument list too long")
        rc = self.exec_queries(log, text, None)
        if rc < 0:
            raise DdebugError(-rc, "Invalid argument")
        return rc

    def exec_queries(self, log: KernelLog, text: str, modname: str | None) -> int:
        """``ddebug_exec_queries``: every query runs; the last error, else the matches."""
        exitcode, nfound = 0, 0
        for query in re.split(r"[;\n]", text):
            query = query.lstrip()
            if not query or query.startswith("#"):
                continue
            rc = self._exec_query(log, query, modname)
            if rc < 0:
                exitcode = rc
            else:
                nfound += rc
        return exitcode or nfound

    def _exec_query(self, log: KernelLog, query: str, modname: str | None) -> int:
        def err(text: str) -> int:
            log.printk(KERN_ERR, "dyndbg: " + text)
            return -errno.EINVAL
        words = self._tokenize(log, query)
        if words is None or not words:
            return err("tokenize failed")
        parsed = self._parse_flags(log, words[-1])
        if parsed is None:
            return err("flags parse failed")
        spec = self._parse_query(log, words[:-1], modname)
        if spec is None:
            return err("query parse failed")
        flags, mask = parsed
        nfound = 0
        for site in self.sites:
            if not self._matches(spec, site):
                continue
            nfound += 1
            self.flags[site.key] = (self.flags[site.key] & mask) | flags
        return nfound

    @staticmethod
    def _tokenize(log: KernelLog, text: str) -> list[str] | None:
        words: list[str] = []
        i, n = 0, len(text)
        while i < n:
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] == "#":
                break
            if text[i] in "\"'":
                quote = text[i]
                end = text.find(quote, i + 1)
                if end < 0:
                    log.printk(KERN_ERR, f"dyndbg: unclosed quote: {text[i + 1:]}")
                    return None
                word, i = text[i + 1:end], end
            else:
                start = i
                while i < n and not text[i].isspace():
                    i += 1
                word = text[start:i]
            if len(words) == MAXWORDS:
                log.printk(KERN_ERR, f"dyndbg: too many words, legal max <={MAXWORDS}")
                return None
            words.append(word)
            if i < n:
                i += 1      # the separator is consumed with the word
        return words

    @staticmethod
    def _parse_flags(log: KernelLog, word: str) -> tuple[int, int] | None:
        if not word or word[0] not in "+-=":
            op = word[:1] or "\\0"
            log.printk(KERN_ERR, f"dyndbg: bad flag-op {op}, at start of {word}")
            return None
        op, flags = word[0], 0
        for ch in word[1:]:
            if ch not in _OPT_CHARS:
                log.printk(KERN_ERR, f"dyndbg: unknown flag '{ch}'")
                return None
            flags |= _OPT_CHARS[ch]
        if op == "=":
            return flags, 0
        if op == "+":
            return flags, UINT_MAX
        return 0, ~flags & UINT_MAX

    @staticmethod
    def _parse_query(log: KernelLog, words: list[str],
                     modname: str | None) -> dict[str, object] | None:
        if len(words) % 2:
            log.printk(KERN_ERR, "dyndbg: expecting pairs of match-spec <value>")
            return None
        spec: dict[str, object] = {}

        def check_set(name: str, value: str, label: str) -> bool:
            if name in spec:
                log.printk(KERN_ERR, f"dyndbg: match-spec:{label} val:{spec[name]} "
                                     f"overridden by {value}")
                spec[name] = value
                return False
            spec[name] = value
            return True

        def linerange(text: str) -> bool:
            if "line" in spec:
                log.printk(KERN_ERR, "dyndbg: match-spec: line used 2x")
                return False
            first, sep, last = text.partition("-")
            try:
                lo = int(first, 10) if first else 0
                hi = (int(last, 10) if last else 0) if sep else lo
            except ValueError:
                log.printk(KERN_ERR, f"dyndbg: bad line-number: {first if not sep else text}")
                return False
            if lo < 0 or hi < 0 or lo > UINT_MAX or hi > UINT_MAX:
                log.printk(KERN_ERR, f"dyndbg: bad line-number: {text}")
                return False
            if sep and hi == 0:
                hi = UINT_MAX
            if sep and hi < lo:
                log.printk(KERN_ERR, f"dyndbg: last-line:{hi} < 1st-line:{lo}")
                return False
            spec["line"] = (lo, hi)
            return True

        for keyword, arg in zip(words[::2], words[1::2]):
            if keyword == "func":
                ok = check_set("func", arg, "func")
            elif keyword == "file":
                name, colon, info = arg.partition(":")
                if not check_set("file", name, "file"):
                    return None
                if not colon:
                    continue
                if info[:1].isalpha() or info[:1] in ("*", "?"):
                    if not check_set("func", info, "func"):
                        return None
                elif not linerange(info):
                    return None
                ok = True
            elif keyword == "module":
                ok = check_set("module", arg, "module")
            elif keyword == "format":
                ok = check_set("format", _unescape(arg), "format")
            elif keyword == "line":
                if not linerange(arg):
                    return None
                ok = True
            elif keyword == "class":
                ok = check_set("class", arg, "class")
            else:
                log.printk(KERN_ERR, f"dyndbg: unknown keyword \"{keyword}\"")
                return None
            if not ok:
                return None
        if "module" not in spec and modname:
            spec["module"] = modname
        return spec

    @staticmethod
    def _matches(spec: dict[str, object], site: DdebugSite) -> bool:
        module = spec.get("module")
        if isinstance(module, str) and not _wildcard(module, site.modname):
            return False
        if "class" in spec:
            return False            # no site has a class
        name = spec.get("file")
        if isinstance(name, str) and not (_wildcard(name, site.filename)
                                          or _wildcard(name, site.filename.rsplit("/", 1)[-1])):
            return False
        func = spec.get("func")
        if isinstance(func, str) and not _wildcard(func, site.function):
            return False
        fmt = spec.get("format")
        if isinstance(fmt, str):
            if fmt.startswith("^"):
                if not site.format.startswith(fmt[1:]):
                    return False
            elif fmt not in site.format:
                return False
        line = spec.get("line")
        if isinstance(line, tuple):
            lo, hi = line
            if lo and site.lineno < lo or hi and site.lineno > hi:
                return False
        return True


# ------------------------------------------------------------------ the control file
def control_read(m: Machine) -> str:
    """``cat <debugfs>/dynamic_debug/control``; absent without CONFIG_DYNAMIC_DEBUG."""
    if not m.config["DYNAMIC_DEBUG"]:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                "dynamic_debug/control")
    return m.kernel.dynamic_debug.control()


def control_write(m: Machine, rest: str, text: str) -> None:
    """``echo QUERY > <debugfs>/dynamic_debug/control``: OSError(EINVAL/E2BIG) when the
    kernel's write would fail."""
    if rest != "control" or not m.config["DYNAMIC_DEBUG"]:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", rest)
    if not isinstance(text, str):
        raise OSError(errno.EINVAL, f"a query must be a str, not {type(text).__name__}")
    m.kernel.dynamic_debug.write_control(m.kernel.log, text)


def dynamic_debug_init(m: Machine) -> None:
    """``dynamic_debug_init``: this boot's ddebug tables (none without CONFIG_DYNAMIC_DEBUG),
    then the ``dyndbg=`` and ``<module>.dyndbg=`` boot parameters applied in command-line
    order (``ddebug_dyndbg_boot_param_cb``)."""
    k = m.kernel
    k.dynamic_debug = DynamicDebug(m.arch, m.config["DYNAMIC_DEBUG"])
    for module, query in k.boot_params.dyndbg:
        k.dynamic_debug.exec_queries(k.log, query, module)
