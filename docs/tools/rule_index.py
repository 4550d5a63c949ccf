#!/usr/bin/env python3
"""Find every rule ID cited in pykern's code and tests, and build the rule index.

Usage (from the repository root; standard library only)::

    python docs/tools/rule_index.py --check          # exit 1 listing cited IDs without an entry
    python docs/tools/rule_index.py --list           # every cited ID and where it is cited
    python docs/tools/rule_index.py --page OUT.md    # write the rule index page (MyST Markdown)

The entries live in ``docs/rules/{mm,kexec,arch,gic}.toml``, one table per rule ID.  The
scanner reads ``pykern/``, ``tests/``, ``benches/`` and ``examples/``: comments, docstrings
and string literals of Python files (a string without a blank in it is an identifier or a
value, not prose, and is skipped; so are ``# noqa:`` codes), test function names, and the
whole text of TOML and Markdown files.

The ID scheme (also printed at the top of the generated page):

* ``K<n>[.<m>]`` is a kexec rule (``K7.8``); ``K<n>`` alone is a section of kexec rules.
* ``GIC-<L><n>`` is a GIC rule (``GIC-W2``).
* The mm rules (``MM A5.3``, ``MM CMA5``) and the architecture rules (``ARCH A19``) share
  letters, so their canonical form carries the file tag: ``MM`` or ``ARCH``.
* ``<X><n>.<m>`` is item m of rule ``<X><n>``, when the rule is a numbered list.

Citations in the code are often shorter.  A cited ID is resolved against the index, trying
namespaces in this order and taking the first that has an entry for it:

1. the tag written in front of it (``MM``/``mm.md``, ``ARCH``/``arch.md``, ``kexec.md``,
   ``GIC-``/``GIC``/``gic.md``), or the tag of the previous ID in the same list
   (``GIC-T9/N2``, ``MM D4, D5``, ``GIC-R1..R8`` - a ``..`` or dash range is expanded);
2. for a test name, the tag word in it (``test_mm_t1_...``, ``test_gic_k3_...``,
   ``test_arch_a12_...``), where ``k16_1`` reads ``K16.1``;
3. the namespaces the letter belongs to, ordered by the file's area: GIC first in GIC/DMA
   device files, ARCH first in architecture and image files, mm first everywhere else.

An ID found in no namespace is reported by ``--check`` under the first namespace it could
belong to.  IDs read from test names are the exception: a name cannot say whether
``k29`` is K2.9 or K29, so one that matches no entry is printed as a note only.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "docs" / "rules"
SCAN_DIRS = ("pykern", "tests", "benches", "examples")
SKIP_PARTS = {"__pycache__", "data", "_build", ".hypothesis"}
SUFFIXES = {".py", ".pyx", ".pyi", ".toml", ".md"}

#: namespace -> (rules file stem, canonical prefix, title)
NAMESPACES = {
    "MM": ("mm", "MM ", "Memory management: buddy allocator, isolation, migration, CMA"),
    "K": ("kexec", "", "kexec_file_load, the kimage, placement, the hot phase"),
    "ARCH": ("arch", "ARCH ", "Architecture loaders: arm64 Image, x86_64 bzImage"),
    "GIC": ("gic", "GIC-", "GICv3/ITS, DmaDevice, the reboot clock"),
}

#: which namespaces each rule letter exists in
LETTERS: dict[str, tuple[str, ...]] = {
    "CMA": ("MM",), "P": ("MM",), "Z": ("MM",), "F": ("MM",),
    "X": ("ARCH",), "E": ("ARCH",), "S": ("ARCH",),
    "B": ("GIC",), "H": ("GIC",), "O": ("GIC",), "N": ("GIC",),
    "K": ("K", "GIC"),
    "C": ("MM", "GIC"), "T": ("MM", "GIC"), "R": ("MM", "GIC"), "W": ("MM", "GIC"),
    "I": ("MM", "GIC"), "D": ("MM", "GIC"),
    "A": ("MM", "ARCH"), "G": ("MM", "ARCH"), "V": ("MM", "ARCH"),
    "M": ("MM", "ARCH", "GIC"),
}

#: file areas: (regex on the posix path, namespace order for ambiguous letters)
AREAS = (
    (re.compile(r"(^|/)(drivers/|forensics|[^/]*gic[^/]*|[^/]*dma[^/]*|[^/]*reboot_clock)"),
     ("GIC", "K", "MM", "ARCH")),
    (re.compile(r"(^|/)(arch/|[^/]*(arm64|x86|images|fdt|dtb|bzimage|purgatory)[^/]*$)"),
     ("ARCH", "K", "MM", "GIC")),
)
DEFAULT_ORDER = ("MM", "K", "ARCH", "GIC")

TAGS = {"MM": "MM", "mm.md": "MM", "ARCH": "ARCH", "arch.md": "ARCH", "kexec.md": "K",
        "gic.md": "GIC", "GIC": "GIC"}

_LETTERS = "".join(sorted(k for k in LETTERS if len(k) == 1))
_ID = r"(?:CMA|[" + _LETTERS + r"])\d+(?:\.\d+)*"
ID_RE = re.compile(
    r"(?P<tag>\b(?:MM|ARCH|GIC|mm\.md|arch\.md|kexec\.md|gic\.md)(?:-|\s+))?"
    r"(?<![\w])(?P<id>" + _ID + r")(?:[a-z])?(?![\w])")
SEP_RE = re.compile(r"^\s*(?:/|,|;|&|\band\b|\bor\b)\s*$")
RANGE_RE = re.compile(r"^\s*(?:\.\.|-|–|—|to)\s*$")
NOQA_RE = re.compile(r"noqa(?::[\sA-Z0-9,]*)?")
NAME_TOKEN = re.compile(r"^(cma|[" + _LETTERS.lower() + r"])(\d+)$")
NAME_TAGS = {"mm": "MM", "arch": "ARCH", "gic": "GIC", "kexec": "K"}
NAME_STOP = {"x86", "x32", "v16", "v17"}
#: words that look like IDs but name something else (the x86 E820 memory map)
STOP_IDS = {"E820"}


@dataclass
class Citation:
    """One place an ID is cited."""

    path: str        # posix path from the repository root
    line: int
    where: str       # dotted function/class name, or the test id
    is_test: bool
    candidates: tuple[str, ...]   # namespaces to try, in order
    local: str       # the ID as written, without tag (``A5.1``)
    from_name: bool = False       # read from a test function's name


@dataclass
class Entry:
    """One rule of the index."""

    ns: str
    local: str
    rule: str
    kernel: str = ""
    commit: str = ""
    quirk: str = ""
    impl: str = ""
    note: str = ""
    kind: str = "rule"
    cited_by: list[Citation] = field(default_factory=list)

    @property
    def canonical(self) -> str:
        return canonical(self.ns, self.local)


def canonical(ns: str, local: str) -> str:
    """``MM A5.1``, ``K7.8``, ``ARCH A19``, ``GIC-W2``."""
    return NAMESPACES[ns][1] + local


def _letter(local: str) -> str:
    return "CMA" if local.startswith("CMA") else local[0]


def _file_order(path: str) -> tuple[str, ...]:
    for pattern, order in AREAS:
        if pattern.search(path):
            return order
    return DEFAULT_ORDER


def candidates(local: str, tag: str | None, path: str) -> tuple[str, ...]:
    """Namespaces to try for ``local`` cited with ``tag`` (or none) in ``path``."""
    letter = _letter(local)
    owners = LETTERS.get(letter, ())
    if letter == "K" and "." in local:
        owners = ("K",)                 # GIC K rules are never dotted
    if letter == "C" and "." in local:
        owners = ("MM",)
    order = [ns for ns in _file_order(path) if ns in owners]
    if tag is not None:
        order = [tag] + [ns for ns in order if ns != tag]
    return tuple(order)


def _expand(first: str, last: str) -> list[str]:
    """The IDs between ``first`` and ``last`` (``R1``..``R8``, ``K19.1``-``K19.6``)."""
    a = re.fullmatch(r"(CMA|[A-Z])((?:\d+\.)*)(\d+)", first)
    b = re.fullmatch(r"(CMA|[A-Z])((?:\d+\.)*)(\d+)", last)
    if not a or not b or a.group(1, 2) != b.group(1, 2):
        return [last]
    lo, hi = int(a.group(3)), int(b.group(3))
    if not lo < hi <= lo + 30:
        return [last]
    return [f"{a.group(1)}{a.group(2)}{n}" for n in range(lo + 1, hi + 1)]


def ids_in_text(text: str) -> Iterator[tuple[int, str, str | None]]:
    """(offset, local ID, tag namespace or None) for every ID in a piece of prose."""
    prev_end = -1
    prev_tag: str | None = None
    prev_local: str | None = None
    for m in ID_RE.finditer(text):
        local = m.group("id")
        if local in STOP_IDS:
            continue
        raw_tag = m.group("tag")
        tag = TAGS[raw_tag.rstrip("- \t\n")] if raw_tag else None
        start = m.start("id")
        between = text[prev_end:m.start()] if prev_end >= 0 else None
        if raw_tag is None and start > 0 and text[start - 1] in ".-–—":
            # "Cortex-A57" and "0x1.A2" are not citations; "R1..R8" and "K2.4-K2.7" are
            if between is None or not RANGE_RE.match(between):
                prev_end = -1
                continue
        if tag is None and between is not None and prev_local is not None:
            if SEP_RE.match(between):
                tag = prev_tag
            elif RANGE_RE.match(between):
                tag = prev_tag
                for mid in _expand(prev_local, local)[:-1]:
                    yield start, mid, tag
        yield start, local, tag
        prev_end, prev_tag, prev_local = m.end(), tag, local


def ids_in_test_name(name: str) -> Iterator[tuple[str, str | None]]:
    """IDs in a test function name: ``test_gic_k3_k8_...`` -> GIC K3, GIC K8.

    A tag word (``mm``, ``arch``, ``gic``, ``kexec``) applies to the IDs that follow it up
    to the first ordinary word; a number right after an ID is its item (``k16_1``).
    """
    parts = name.split("_")[1:]
    tag: str | None = None
    i = 0
    while i < len(parts):
        part = parts[i]
        m = NAME_TOKEN.match(part)
        if part in NAME_TAGS:
            tag = NAME_TAGS[part]
        elif m and part not in NAME_STOP:
            local = m.group(1).upper() + m.group(2)
            if i + 1 < len(parts) and parts[i + 1].isdigit():
                local += "." + parts[i + 1]
                i += 1
            yield local, tag
        else:
            tag = None
        i += 1


# ----------------------------------------------------------------------------- scanning
def _python_prose(text: str) -> Iterator[tuple[int, int, str]]:
    """(line, column, text) of comments and prose strings of a Python/Cython source."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        # Cython or broken source: comments and triple-quoted strings, roughly
        for n, line in enumerate(text.splitlines(), 1):
            if "#" in line:
                col = line.index("#")
                yield n, col, NOQA_RE.sub("", line[col:])
        for m in re.finditer(r'("""|\'\'\')(.*?)\1', text, re.S):
            yield text.count("\n", 0, m.start()) + 1, 0, m.group(2)
        return
    string_types = {tokenize.STRING}
    for extra in ("FSTRING_MIDDLE", "TSTRING_MIDDLE"):
        if hasattr(tokenize, extra):
            string_types.add(getattr(tokenize, extra))
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.start[1], NOQA_RE.sub("", tok.string)
        elif tok.type in string_types and re.search(r"\s", tok.string):
            yield tok.start[0], tok.start[1], tok.string


def _scopes(text: str, module: str, is_test: bool, rel: str) -> list[tuple[int, int, str]]:
    """(first line, last line, name) of every function and class, innermost last."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = prefix + [child.name]
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                label = (f"{rel}::{'::'.join(names)}" if is_test
                         else f"{module}.{'.'.join(names)}")
                out.append((first, child.end_lineno or child.lineno, label))
                visit(child, names)
    visit(tree, [])
    return out


def _where(scopes: list[tuple[int, int, str]], line: int, fallback: str) -> str:
    best = fallback
    for first, last, label in scopes:
        if first <= line <= last:
            best = label  # later entries are nested deeper
    return best


def iter_files(root: Path = ROOT, dirs: Iterable[str] = SCAN_DIRS) -> Iterator[Path]:
    for d in dirs:
        base = root / d
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and p.suffix in SUFFIXES and not SKIP_PARTS & set(rel.parts):
                yield p


def scan(root: Path = ROOT, dirs: Iterable[str] = SCAN_DIRS) -> list[Citation]:
    """Every citation in the scanned files."""
    out: list[Citation] = []
    for path in iter_files(root, dirs):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        is_test = rel.startswith(("tests/", "examples/", "benches/")) and path.suffix == ".py"
        if path.suffix in (".py", ".pyx", ".pyi"):
            module = rel[:-len(path.suffix)].replace("/", ".").removesuffix(".__init__")
            scopes = _scopes(text, module, is_test, rel)
            fallback = rel if is_test else module
            for line, _col, prose in _python_prose(text):
                for off, local, tag in ids_in_text(prose):
                    n = line + prose.count("\n", 0, off)
                    out.append(Citation(rel, n, _where(scopes, n, fallback), is_test,
                                        candidates(local, tag, rel), local))
            if is_test:
                for first, _last, label in scopes:
                    name = label.rsplit("::", 1)[-1]
                    if name.startswith("test_"):
                        for local, tag in ids_in_test_name(name):
                            out.append(Citation(rel, first, label, True,
                                                candidates(local, tag, rel), local, True))
        else:
            for off, local, tag in ids_in_text(text):
                n = text.count("\n", 0, off) + 1
                out.append(Citation(rel, n, rel, rel.startswith("tests/"),
                                    candidates(local, tag, rel), local))
    return out


# ------------------------------------------------------------------------------ entries
def load_entries(rules_dir: Path = RULES_DIR) -> dict[tuple[str, str], Entry]:
    """Every entry of ``docs/rules/*.toml``, keyed by (namespace, local ID)."""
    out: dict[tuple[str, str], Entry] = {}
    for ns, (stem, _prefix, _title) in NAMESPACES.items():
        path = rules_dir / f"{stem}.toml"
        if not path.is_file():
            continue
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for local, fields in data.items():
            if not isinstance(fields, dict) or "rule" not in fields:
                raise ValueError(f"{path.name}: [{local}] needs a rule = \"...\" line")
            unknown = set(fields) - {"rule", "kernel", "commit", "quirk", "impl", "note", "kind"}
            if unknown:
                raise ValueError(f"{path.name}: [{local}] has unknown keys {sorted(unknown)}")
            out[(ns, local)] = Entry(ns, local, **fields)
    return out


def resolve(cites: list[Citation], entries: dict[tuple[str, str], Entry],
            unreadable: dict[str, list[Citation]] | None = None) -> dict[str, list[Citation]]:
    """Attach citations to entries; return the unresolved ones by canonical ID.

    A test name squeezes an ID (``k2_9`` is K2.9, but ``k29`` could be K2.9 or K29), so an ID
    read from a name that matches no entry is not counted as missing: it goes to
    ``unreadable`` (when given), which ``--check`` prints as a note.
    """
    missing: dict[str, list[Citation]] = defaultdict(list)
    for c in cites:
        for ns in c.candidates:
            entry = entries.get((ns, c.local))
            if entry is not None:
                entry.cited_by.append(c)
                break
        else:
            ns = c.candidates[0] if c.candidates else "?"
            key = canonical(ns, c.local) if ns in NAMESPACES else c.local
            if c.from_name:
                if unreadable is not None:
                    unreadable[key].append(c)
            else:
                missing[key].append(c)
    return missing


# ------------------------------------------------------------------------------- output
def _natural(local: str) -> tuple[object, ...]:
    m = re.match(r"(CMA|[A-Z])(.*)", local)
    assert m
    return (m.group(1),) + tuple(int(p) for p in m.group(2).split(".") if p.isdigit())


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(ns: str, local: str) -> str:
    return "rule-" + (NAMESPACES[ns][0] + "-" + local).lower().replace(".", "-")


def render_page(entries: dict[tuple[str, str], Entry]) -> str:
    """The rule index page as MyST Markdown."""
    out = [
        "# Rule index",
        "",
        "pykern's code, tests and docstrings cite numbered rules: the kernel behaviour the",
        "emulation reproduces, one rule per ID.  This page gives every rule in one line, the",
        "kernel source it comes from, the upstream commit for each reproduced quirk, and the",
        "pykern functions and tests that cite it (found by scanning the source tree when the",
        "documentation is built, so they cannot go stale).",
        "",
        "## How IDs are written",
        "",
        "| ID | area | example |",
        "|---|---|---|",
        "| `MM <letter><n>[.<m>]` | memory management (zones, buddy, isolation, migration, "
        "CMA, procfs text) | `MM A5.1`, `MM CMA5` |",
        "| `K<n>.<m>` | kexec_file_load, kimage, placement, page list, hot phase; `K<n>` "
        "alone is a section | `K7.8`, `K16` |",
        "| `ARCH <letter><n>` | arm64 and x86_64 loaders, device tree, boot parameters, "
        "synthetic images | `ARCH A19`, `ARCH X26` |",
        "| `GIC-<letter><n>` | GICv3/ITS model and driver, DmaDevice, reboot clock, "
        "scribbles | `GIC-N4` |",
        "",
        "`<X><n>.<m>` is item *m* of rule `<X><n>`.  The mm and arch rules share the letters",
        "A, G, M and V, so their full form carries the `MM` or `ARCH` tag.  In the code a tag",
        "is often left out (`CMA5`, `A15`, `X26`) or shared by a list (`GIC-T9/N2`,",
        "`MM D4, D5`, `GIC-R1..R8`).  Such a citation means the first of these that exists:",
        "the tag in front of it or of the previous ID of the same list; the tag word of a test",
        "name (`test_gic_k3_...` is `GIC-K3`, `test_k16_1_...` is `K16.1`); then the areas the",
        "letter belongs to, GIC first in device files, ARCH first in architecture and image",
        "files, mm first elsewhere.  `CMA`, `P`, `Z` and `F` are mm letters only; `X`, `E` and",
        "`S` arch only; `B`, `H`, `O` and `N` GIC only.  A `0x` prefix, a word attached to the",
        "ID (`D3hot`, `Cortex-A57`), `# noqa:` codes, `E820` and strings without a blank",
        "(identifiers, values such as `\"D0\"`) are never read as IDs.",
        "An ID read from a test name that matches no rule is only noted by the check, since a",
        "name cannot say whether `k29` means `K2.9` or `K29` (write `k2_9`); an ID written in",
        "a comment, docstring or message must have an entry.",
        "",
        "Markers: **quirk** — upstream behaviour reproduced by default and undone by",
        "`Machine(fixes=[name])`; **model** — a pykern choice, not kernel behaviour;",
        "**section** — a group of rules.",
        "",
        "The check `python docs/tools/rule_index.py --check` (run by `tests/test_docs.py`)",
        "fails when the code cites an ID that has no entry here.",
        "",
    ]
    for ns, (_stem, _prefix, title) in NAMESPACES.items():
        items = sorted((e for e in entries.values() if e.ns == ns),
                       key=lambda e: _natural(e.local))
        if not items:
            continue
        out += [f"## {title}", ""]
        for e in items:
            out.append(f"({_anchor(e.ns, e.local)})=")
            marks = [m for m in (e.kind if e.kind != "rule" else "",
                                 "quirk" if e.quirk else "") if m]
            head = f"### {e.canonical}"
            if marks:
                head += " (" + ", ".join(marks) + ")"
            out += [head, "", e.rule.strip(), ""]
            rows: list[tuple[str, str]] = []
            if e.kernel:
                rows.append(("kernel", e.kernel))
            if e.quirk:
                rows.append(("fix name", f"`{e.quirk}`"))
            if e.commit:
                rows.append(("upstream commit", e.commit))
            if e.note:
                rows.append(("note", e.note))
            impl = [c.where for c in e.cited_by if not c.is_test]
            if e.impl:
                impl = [e.impl] + impl
            impl = list(dict.fromkeys(impl))
            tests = list(dict.fromkeys(c.where for c in e.cited_by if c.is_test))
            if impl:
                rows.append(("pykern", ", ".join(f"`{w}`" for w in impl)))
            if tests:
                rows.append(("tests", ", ".join(f"`{w}`" for w in tests)))
            if rows:
                out += ["| | |", "|---|---|"]
                out += [f"| {k} | {_md(v)} |" for k, v in rows]
                out.append("")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 listing every cited ID without an entry")
    ap.add_argument("--list", action="store_true", help="every cited ID and where")
    ap.add_argument("--page", metavar="OUT", help="write the rule index page (Markdown)")
    ap.add_argument("--root", default=str(ROOT), help="repository root to scan")
    args = ap.parse_args(argv)
    root = Path(args.root)
    try:
        entries = load_entries(root / "docs" / "rules")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"rule_index: {exc}", file=sys.stderr)
        return 2
    cites = scan(root)
    unreadable: dict[str, list[Citation]] = defaultdict(list)
    missing = resolve(cites, entries, unreadable)
    rc = 0
    if args.list:
        found: dict[str, list[Citation]] = defaultdict(list)
        for e in entries.values():
            if e.cited_by:
                found[e.canonical] += e.cited_by
        for key, cs in list(found.items()) + list(missing.items()):
            mark = "" if key in found else "  (NO ENTRY)"
            places = sorted({f"{c.path}:{c.line}" for c in cs})
            print(f"{key}{mark}: {', '.join(places[:6])}"
                  + (f" (+{len(places) - 6})" if len(places) > 6 else ""))
    if args.page:
        Path(args.page).write_text(render_page(entries), encoding="utf-8")
    if args.check:
        for key in sorted(unreadable):
            for c in unreadable[key]:
                print(f"note: the test name {c.where} reads as {key}, which is no rule "
                      f"(write an item with an underscore: k2_9 for K2.9)")
        if missing:
            print(f"{len(missing)} cited rule IDs have no entry in docs/rules/*.toml:",
                  file=sys.stderr)
            for key in sorted(missing):
                places = sorted({f"{c.path}:{c.line}" for c in missing[key]})
                print(f"  {key}: {', '.join(places[:4])}"
                      + (f" (+{len(places) - 4} more)" if len(places) > 4 else ""),
                      file=sys.stderr)
            rc = 1
        else:
            n = sum(1 for e in entries.values() if e.cited_by)
            print(f"rule index: {len(cites)} citations of {n} IDs, all with an entry "
                  f"({len(entries)} entries)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
