"""Flattened device trees (DTB format, version 17), modelled on libfdt.

A DTB is a 40-byte big-endian header followed by three blocks: the memory
reservation map (``(address, size)`` pairs of u64, ended by an entry whose size
is 0), the structure block (tokens ``FDT_BEGIN_NODE`` 1 + NUL-terminated name,
``FDT_END_NODE`` 2, ``FDT_PROP`` 3 + length + name offset + value, ``FDT_NOP``
4, ``FDT_END`` 9; everything padded to 4 bytes) and the strings block (the
NUL-terminated property names the ``FDT_PROP`` tokens point into).

:class:`Fdt` holds the tree decoded (:class:`FdtNode` objects) and the
strings block as bytes, and reproduces the libfdt read-write rules that decide
the byte layout of what the kernel builds (rule ARCH A36):

- ``setprop`` on a property the node does not have yet inserts it as the
  node's *first* property; rewriting an existing property keeps its slot.
- ``add_subnode`` inserts the new node as the parent's *first* child (libfdt
  places it right after the parent's properties).
- A property name is looked up in the strings block the way
  ``fdt_find_add_string_`` does (the first place where the name followed by a
  NUL occurs, which may be the tail of a longer name) and appended at the end
  of the block when absent. Deleting a property never removes its name.
- ``add_mem_rsv`` appends to the reservation map; ``del_mem_rsv`` removes an
  entry by index.
- ``pack`` writes the minimal layout of ``fdt_pack``: header, reservation map,
  structure block, strings block, no gaps, ``totalsize`` = end of strings.

Any malformed input raises :class:`FdtError` (a ``ValueError``) with a
message naming the problem; parsing never raises anything else.

Divergences ([model]): ``FDT_NOP`` tokens of a parsed tree are dropped (libfdt
keeps them through ``fdt_pack``), as are stray bytes after ``FDT_END`` inside
the structure block; a property that follows a subnode (invisible to libfdt)
is rejected. Versions below 16 are refused. Names are handled as Latin-1 so
any byte string survives a round trip; ``Fdt.from_bytes(x).pack() == x``
holds for every ``x`` that ``pack`` produced.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ..errors import FdtError

__all__ = [
    "FDT_MAGIC", "FDT_BEGIN_NODE", "FDT_END_NODE", "FDT_PROP", "FDT_NOP", "FDT_END",
    "FDT_V17_HEADER_SIZE", "FDT_RESERVE_ENTRY_SIZE", "FDT_MAX_NCELLS",
    "FdtError", "FdtNode", "Fdt", "of_read_number", "fdt_header",
]

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE = 0x1
FDT_END_NODE = 0x2
FDT_PROP = 0x3
FDT_NOP = 0x4
FDT_END = 0x9

FDT_V16_HEADER_SIZE = 36
FDT_V17_HEADER_SIZE = 40
FDT_RESERVE_ENTRY_SIZE = 16
FDT_FIRST_SUPPORTED_VERSION = 16  # [model] libfdt goes down to 2
FDT_LAST_SUPPORTED_VERSION = 17
FDT_MAX_NCELLS = 4

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_PROP_HDR = struct.Struct(">III")  # tag, len, nameoff
_RSV = struct.Struct(">QQ")
_HEADER = struct.Struct(">10I")
_U64_MASK = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1


def _align4(n: int) -> int:
    return (n + 3) & ~3


def of_read_number(value: bytes, cells: int) -> int:
    """The kernel's ``of_read_number``: ``cells`` big-endian u32 cells from
    the start of ``value`` combined into one number, keeping the low 64 bits
    (as the kernel's u64 accumulator does)."""
    if cells < 0 or 4 * cells > len(value):
        raise FdtError(f"{cells} cells do not fit in a {len(value)}-byte value", "BADVALUE")
    result = 0
    for i in range(cells):
        result = ((result << 32) | _U32.unpack_from(value, 4 * i)[0]) & _U64_MASK
    return result


def fdt_header(data: bytes) -> dict[str, int]:
    """Decode the header words of a DTB without validating anything but the
    length (at least 40 bytes)."""
    if len(data) < FDT_V17_HEADER_SIZE:
        raise FdtError(f"DTB of {len(data)} bytes is shorter than its header", "TRUNCATED")
    names = ("magic", "totalsize", "off_dt_struct", "off_dt_strings", "off_mem_rsvmap",
             "version", "last_comp_version", "boot_cpuid_phys", "size_dt_strings",
             "size_dt_struct")
    return dict(zip(names, _HEADER.unpack_from(data, 0)))


def _encode_name(name: str, what: str) -> bytes:
    if not isinstance(name, str):
        raise FdtError(f"{what} name must be a str, not {type(name).__name__}", "BADVALUE")
    try:
        raw = name.encode("latin-1")
    except UnicodeEncodeError:
        raise FdtError(f"{what} name {name!r} is not Latin-1", "BADVALUE") from None
    if b"\0" in raw:
        raise FdtError(f"{what} name {name!r} contains a NUL byte", "BADVALUE")
    return raw


def _check_u64(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= _U64_MASK:
        raise FdtError(f"{what} {value!r} is not a 64-bit unsigned value", "BADVALUE")
    return value


def _nodename_eq(node_name: str, want: str) -> bool:
    """libfdt ``fdt_nodename_eq_``: exact match, or ``want`` has no unit
    address and the node name is ``want@<unit>``."""
    if node_name == want:
        return True
    return "@" not in want and node_name.startswith(want + "@")


class FdtNode:
    """One node: its ``name`` (with the unit address, ``""`` for the root),
    its properties in structure-block order and its children in order."""

    __slots__ = ("name", "props", "children", "parent", "_nameoff")

    def __init__(self, name: str, parent: FdtNode | None = None) -> None:
        self.name = name
        self.props: list[tuple[str, bytes]] = []
        self.children: list[FdtNode] = []
        self.parent = parent
        # name -> offset in the strings block recorded when the property was
        # parsed or created (libfdt never changes a property's nameoff).
        self._nameoff: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"FdtNode({self.path!r}, props={[n for n, _ in self.props]}, "
                f"children={[c.name for c in self.children]})")

    @property
    def path(self) -> str:
        """The node's full path (``"/"`` for the root)."""
        parts: list[str] = []
        node: FdtNode | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def getprop(self, name: str) -> bytes | None:
        """The first property called ``name``, or None."""
        for pname, value in self.props:
            if pname == name:
                return value
        return None

    def has_prop(self, name: str) -> bool:
        return any(pname == name for pname, _ in self.props)

    def subnode(self, name: str) -> FdtNode | None:
        """The first child matching ``name`` under libfdt's rule (``"memory"``
        also matches ``"memory@40000000"``), or None."""
        for child in self.children:
            if _nodename_eq(child.name, name):
                return child
        return None


class Fdt:
    """A device tree being read or edited (see the module docstring)."""

    def __init__(self) -> None:
        self.root = FdtNode("")
        #: the memory-reservation map, without its terminating entry
        self.reservations: list[tuple[int, int]] = []
        self.boot_cpuid_phys = 0
        self._strings = bytearray()
        self._rsv_end_addr = 0  # address word of the terminating entry
        self._slack = 0  # bytes libfdt keeps until fdt_pack (gaps of an opened tree)

    # -- parsing ------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Fdt:
        """Decode a DTB (libfdt's header checks plus a full structure walk).

        :raises FdtError: for anything malformed.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a DTB is bytes, not {type(data).__name__}")
        try:
            return cls._parse(bytes(data))
        except FdtError:
            raise
        except (struct.error, IndexError, OverflowError) as exc:  # safety net
            raise FdtError(f"malformed DTB: {exc}") from None

    @classmethod
    def _parse(cls, data: bytes) -> Fdt:
        if len(data) < 8:
            raise FdtError(f"DTB of {len(data)} bytes is too short for a header", "TRUNCATED")
        magic = _U32.unpack_from(data, 0)[0]
        if magic != FDT_MAGIC:
            raise FdtError(f"bad DTB magic {magic:#010x} (want {FDT_MAGIC:#010x})", "BADMAGIC")
        if len(data) < 28:
            raise FdtError(f"DTB of {len(data)} bytes is too short for a header", "TRUNCATED")
        version, last_comp = struct.unpack_from(">II", data, 20)
        if version < FDT_FIRST_SUPPORTED_VERSION:
            raise FdtError(f"unsupported DTB version {version} (need >= 16)", "BADVERSION")
        if last_comp > FDT_LAST_SUPPORTED_VERSION:
            raise FdtError(f"DTB last_comp_version {last_comp} is newer than 17", "BADVERSION")
        if version < last_comp:
            raise FdtError(f"DTB version {version} is below its last_comp_version "
                           f"{last_comp}", "BADVERSION")
        hdrsize = FDT_V17_HEADER_SIZE if version >= 17 else FDT_V16_HEADER_SIZE
        if len(data) < hdrsize:
            raise FdtError(f"DTB of {len(data)} bytes is too short for a version {version} "
                           f"header", "TRUNCATED")
        words = struct.unpack_from(f">{hdrsize // 4}I", data, 0)
        totalsize, off_struct, off_strings, off_rsv = words[1:5]
        size_strings = words[8]
        size_struct = words[9] if version >= 17 else None
        if totalsize < hdrsize:
            raise FdtError(f"DTB totalsize {totalsize} is smaller than its header", "TRUNCATED")
        if totalsize > len(data):
            raise FdtError(f"DTB totalsize {totalsize} exceeds the {len(data)} bytes given",
                           "TRUNCATED")

        def check_block(what: str, off: int, size: int) -> None:
            if off < hdrsize or off > totalsize or size > totalsize - off:
                raise FdtError(f"DTB {what} block [{off:#x}, +{size:#x}) is outside "
                               f"[{hdrsize:#x}, {totalsize:#x})", "TRUNCATED")

        check_block("memory-reservation", off_rsv, 0)
        check_block("structure", off_struct, size_struct or 0)
        check_block("strings", off_strings, size_strings)

        fdt = cls()
        fdt.boot_cpuid_phys = words[7]

        # reservation map: entries until one whose size is 0
        pos = off_rsv
        while True:
            if pos + FDT_RESERVE_ENTRY_SIZE > totalsize:
                raise FdtError("memory-reservation map is not terminated inside the DTB",
                               "TRUNCATED")
            addr, size = _RSV.unpack_from(data, pos)
            pos += FDT_RESERVE_ENTRY_SIZE
            if size == 0:
                fdt._rsv_end_addr = addr
                break
            fdt.reservations.append((addr, size))

        strings = data[off_strings:off_strings + size_strings]
        fdt._strings = bytearray(strings)
        end = off_struct + size_struct if size_struct is not None else totalsize
        used_struct = fdt._parse_struct(data[off_struct:end], strings)
        if size_struct is None:
            size_struct = used_struct

        # gaps libfdt's fdt_open_into keeps (blocks in order): they count against the
        # buffer until fdt_pack, so create_dtb's room check sees them.
        rsv_size = (len(fdt.reservations) + 1) * FDT_RESERVE_ENTRY_SIZE
        misordered = (off_rsv < FDT_V17_HEADER_SIZE
                      or off_struct < off_rsv + rsv_size
                      or off_strings < off_struct + size_struct
                      or totalsize < off_strings + size_strings)
        if not misordered:
            fdt._slack = max(0, off_strings + size_strings - len(fdt.pack()))
        return fdt

    def _parse_struct(self, blk: bytes, strings: bytes) -> int:
        """Walk the structure block; return the offset just past FDT_END."""
        pos = 0
        stack: list[FdtNode] = []
        root: FdtNode | None = None
        n = len(blk)
        while True:
            if pos + 4 > n:
                raise FdtError(f"structure block ends at {n:#x} without FDT_END", "TRUNCATED")
            tag = _U32.unpack_from(blk, pos)[0]
            at = pos
            pos += 4
            if tag == FDT_BEGIN_NODE:
                nul = blk.find(b"\0", pos)
                if nul < 0:
                    raise FdtError(f"node name at struct offset {pos:#x} is not terminated",
                                   "TRUNCATED")
                name = blk[pos:nul].decode("latin-1")
                pos = _align4(nul + 1)
                if not stack:
                    if root is not None:
                        raise FdtError(f"second root node at struct offset {at:#x}")
                    node = root = FdtNode(name)
                else:
                    parent = stack[-1]
                    node = FdtNode(name, parent)
                    parent.children.append(node)
                stack.append(node)
            elif tag == FDT_END_NODE:
                if not stack:
                    raise FdtError(f"FDT_END_NODE without a node at struct offset {at:#x}")
                stack.pop()
            elif tag == FDT_PROP:
                if not stack:
                    raise FdtError(f"property outside any node at struct offset {at:#x}")
                if pos + 8 > n:
                    raise FdtError(f"property header at struct offset {at:#x} is truncated",
                                   "TRUNCATED")
                length, nameoff = struct.unpack_from(">II", blk, pos)
                pos += 8
                if length > n - pos:
                    raise FdtError(f"property value at struct offset {at:#x} ({length} "
                                   f"bytes) runs past the structure block", "TRUNCATED")
                value = blk[pos:pos + length]
                pos = _align4(pos + length)
                if nameoff >= len(strings):
                    raise FdtError(f"property name offset {nameoff:#x} is outside the "
                                   f"{len(strings)}-byte strings block", "BADOFFSET")
                nul = strings.find(b"\0", nameoff)
                if nul < 0:
                    raise FdtError(f"property name at strings offset {nameoff:#x} is not "
                                   f"terminated", "TRUNCATED")
                pname = strings[nameoff:nul].decode("latin-1")
                node = stack[-1]
                if node.children:
                    raise FdtError(f"property {pname!r} of {node.path!r} follows a subnode")
                node.props.append((pname, value))
                node._nameoff.setdefault(pname, nameoff)
            elif tag == FDT_NOP:
                pass
            elif tag == FDT_END:
                if stack:
                    raise FdtError(f"FDT_END inside node {stack[-1].path!r}")
                if root is None:
                    raise FdtError("structure block has no root node")
                self.root = root
                return pos
            else:
                raise FdtError(f"bad structure token {tag:#x} at struct offset {at:#x}",
                               "BADSTRUCTURE")

    # -- lookup -------------------------------------------------------------------------

    def find(self, path: str) -> FdtNode | None:
        """``fdt_path_offset``: the node at ``path`` or None. Repeated slashes
        are skipped, a component without ``@`` matches a node with a unit
        address, and a path not starting with ``/`` begins with an alias
        from ``/aliases``."""
        node: FdtNode | None = self.root
        rest = path
        if not path.startswith("/"):
            alias, sep, tail = path.partition("/")
            aliases = self.root.subnode("aliases")
            target = aliases.getprop(alias) if aliases is not None else None
            if target is None or not target.endswith(b"\0"):
                return None
            target_path = target[:-1].decode("latin-1")
            if not target_path.startswith("/"):
                return None  # libfdt does not chase alias chains
            node = self.find(target_path)
            rest = tail
        for part in rest.split("/"):
            if not part:
                continue
            if node is None:
                return None
            node = node.subnode(part)
        return node

    def walk(self) -> Iterator[FdtNode]:
        """Every node in structure-block order (depth first)."""
        stack: list[Iterator[FdtNode]] = [iter((self.root,))]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                continue
            yield node
            stack.append(iter(node.children))

    @property
    def strings(self) -> bytes:
        """The strings block as it stands (names are only ever appended)."""
        return bytes(self._strings)

    # -- properties ---------------------------------------------------------------------

    def _find_add_string(self, raw: bytes) -> int:
        key = raw + b"\0"
        off = self._strings.find(key)
        if off >= 0:
            return off
        off = len(self._strings)
        self._strings += key
        return off

    def getprop(self, node: FdtNode, name: str) -> bytes | None:
        """The value of ``node``'s first property ``name``, or None."""
        return node.getprop(name)

    def setprop(self, node: FdtNode, name: str, value: bytes | bytearray) -> None:
        """``fdt_setprop``: rewrite the property in place, or create it as
        ``node``'s first property."""
        raw = _encode_name(name, "property")
        value = bytes(value)
        for i, (pname, _) in enumerate(node.props):
            if pname == name:
                node.props[i] = (name, value)
                return
        node._nameoff[name] = self._find_add_string(raw)
        node.props.insert(0, (name, value))

    def appendprop(self, node: FdtNode, name: str, value: bytes | bytearray) -> None:
        """``fdt_appendprop``: extend an existing property's value in place,
        or create it (as the first property)."""
        for i, (pname, old) in enumerate(node.props):
            if pname == name:
                node.props[i] = (name, old + bytes(value))
                return
        self.setprop(node, name, value)

    def add_prop_last(self, node: FdtNode, name: str, value: bytes | bytearray) -> None:
        """Sequential-write style (``fdt_property`` in libfdt's ``fdt_sw``):
        append a new property after the node's existing ones. Used to build
        trees from scratch in a natural order; not a libfdt read-write rule."""
        raw = _encode_name(name, "property")
        if node.has_prop(name):
            raise FdtError(f"{node.path!r} already has a property {name!r}", "EXISTS")
        node._nameoff[name] = self._find_add_string(raw)
        node.props.append((name, bytes(value)))

    def delprop(self, node: FdtNode, name: str) -> bool:
        """``fdt_delprop``: remove the first property ``name``; False when the
        node has none (libfdt's FDT_ERR_NOTFOUND). The name stays in the
        strings block."""
        for i, (pname, _) in enumerate(node.props):
            if pname == name:
                del node.props[i]
                return True
        return False

    def setprop_u32(self, node: FdtNode, name: str, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= _U32_MAX:
            raise FdtError(f"{value!r} is not a 32-bit unsigned value", "BADVALUE")
        self.setprop(node, name, _U32.pack(value))

    def setprop_u64(self, node: FdtNode, name: str, value: int) -> None:
        self.setprop(node, name, _U64.pack(_check_u64(value, "value")))

    def setprop_string(self, node: FdtNode, name: str, value: str) -> None:
        """The string's UTF-8 bytes plus a NUL (``fdt_setprop_string``)."""
        self.setprop(node, name, value.encode("utf-8", "surrogateescape") + b"\0")

    def setprop_empty(self, node: FdtNode, name: str) -> None:
        self.setprop(node, name, b"")

    def getprop_u32(self, node: FdtNode, name: str) -> int | None:
        """A 4-byte property as an int; None when absent, FdtError when it
        has another length."""
        value = node.getprop(name)
        if value is None:
            return None
        if len(value) != 4:
            raise FdtError(f"{node.path}:{name} is {len(value)} bytes, not 4", "BADVALUE")
        return int(_U32.unpack(value)[0])

    def getprop_u64(self, node: FdtNode, name: str) -> int | None:
        """An 8-byte property as an int; None when absent, FdtError when it
        has another length."""
        value = node.getprop(name)
        if value is None:
            return None
        if len(value) != 8:
            raise FdtError(f"{node.path}:{name} is {len(value)} bytes, not 8", "BADVALUE")
        return int(_U64.unpack(value)[0])

    def getprop_string(self, node: FdtNode, name: str) -> str | None:
        """A string property up to its first NUL (as C code reads it); None
        when absent, FdtError when it has no NUL or is not UTF-8."""
        value = node.getprop(name)
        if value is None:
            return None
        nul = value.find(b"\0")
        if nul < 0:
            raise FdtError(f"{node.path}:{name} is not NUL-terminated", "BADVALUE")
        try:
            return value[:nul].decode("utf-8")
        except UnicodeDecodeError:
            raise FdtError(f"{node.path}:{name} is not UTF-8", "BADVALUE") from None

    def getprop_strings(self, node: FdtNode, name: str) -> list[str] | None:
        """A string-list property (``compatible``) split at its NULs."""
        value = node.getprop(name)
        if value is None:
            return None
        if not value.endswith(b"\0"):
            raise FdtError(f"{node.path}:{name} is not NUL-terminated", "BADVALUE")
        return [s.decode("latin-1") for s in value[:-1].split(b"\0")]

    # -- cells --------------------------------------------------------------------------

    def address_cells(self, node: FdtNode) -> int:
        """``fdt_address_cells``: ``#address-cells`` of ``node``; 2 when
        absent (rule ARCH A34); FdtError (BADNCELLS) when not a u32 in 1..4."""
        value = node.getprop("#address-cells")
        if value is None:
            return 2
        if len(value) != 4:
            raise FdtError(f"{node.path}:#address-cells is {len(value)} bytes", "BADNCELLS")
        cells = int(_U32.unpack(value)[0])
        if cells == 0 or cells > FDT_MAX_NCELLS:
            raise FdtError(f"{node.path}:#address-cells = {cells}", "BADNCELLS")
        return cells

    def size_cells(self, node: FdtNode) -> int:
        """``fdt_size_cells``: ``#size-cells`` of ``node``; 1 when absent
        (rule ARCH A34); FdtError (BADNCELLS) when not a u32 in 0..4."""
        value = node.getprop("#size-cells")
        if value is None:
            return 1
        if len(value) != 4:
            raise FdtError(f"{node.path}:#size-cells is {len(value)} bytes", "BADNCELLS")
        cells = int(_U32.unpack(value)[0])
        if cells > FDT_MAX_NCELLS:
            raise FdtError(f"{node.path}:#size-cells = {cells}", "BADNCELLS")
        return cells

    def encode_addrrange(self, parent: FdtNode, addr: int, size: int) -> bytes:
        """One (address, size) pair in ``parent``'s cells, with libfdt's
        checks (``fdt_appendprop_addrrange``): only 1 or 2 cells each; with
        1 address cell the range must end at or below 4 GiB; with 1 size cell
        the size must fit in 32 bits."""
        _check_u64(addr, "address")
        _check_u64(size, "size")
        addr_cells = self.address_cells(parent)
        size_cells = self.size_cells(parent)
        if addr_cells == 1:
            if addr > _U32_MAX or (_U32_MAX + 1 - addr) < size:
                raise FdtError(f"range {addr:#x}+{size:#x} does not fit one address cell",
                               "BADVALUE")
            out = _U32.pack(addr)
        elif addr_cells == 2:
            out = _U64.pack(addr)
        else:
            raise FdtError(f"{addr_cells} address cells are not supported", "BADNCELLS")
        if size_cells == 1:
            if size > _U32_MAX:
                raise FdtError(f"size {size:#x} does not fit one size cell", "BADVALUE")
            out += _U32.pack(size)
        elif size_cells == 2:
            out += _U64.pack(size)
        else:
            raise FdtError(f"{size_cells} size cells are not supported", "BADNCELLS")
        return out

    def appendprop_addrrange(self, parent: FdtNode, node: FdtNode, name: str,
                             addr: int, size: int) -> None:
        """``fdt_appendprop_addrrange``: append (addr, size) encoded with the
        cells of ``parent`` (the kernel passes the root) to ``node``'s
        property ``name``."""
        self.appendprop(node, name, self.encode_addrrange(parent, addr, size))

    def decode_ranges(self, parent: FdtNode, value: bytes) -> list[tuple[int, int]]:
        """Split a ``reg``-style value into (address, size) pairs using
        ``parent``'s cells (``of_read_number`` per field; a trailing partial
        entry is ignored, as the kernel's loops do)."""
        ac = self.address_cells(parent)
        sc = self.size_cells(parent)
        step = 4 * (ac + sc)
        out = []
        for off in range(0, len(value) - step + 1, step):
            out.append((of_read_number(value[off:], ac),
                        of_read_number(value[off + 4 * ac:], sc)))
        return out

    # -- nodes --------------------------------------------------------------------------

    def add_subnode(self, parent: FdtNode, name: str) -> FdtNode:
        """``fdt_add_subnode``: a new empty node placed as ``parent``'s first
        child. FdtError (EXISTS) when a child already matches ``name``."""
        _encode_name(name, "node")
        if parent.subnode(name) is not None:
            raise FdtError(f"{parent.path!r} already has a subnode {name!r}", "EXISTS")
        node = FdtNode(name, parent)
        parent.children.insert(0, node)
        return node

    def add_subnode_last(self, parent: FdtNode, name: str) -> FdtNode:
        """Sequential-write style: like :meth:`add_subnode` but the new node
        becomes the parent's last child."""
        _encode_name(name, "node")
        if parent.subnode(name) is not None:
            raise FdtError(f"{parent.path!r} already has a subnode {name!r}", "EXISTS")
        node = FdtNode(name, parent)
        parent.children.append(node)
        return node

    def del_node(self, node: FdtNode) -> None:
        """``fdt_del_node``: remove a node and its subtree."""
        if node.parent is None:
            raise FdtError("the root node cannot be deleted", "BADOFFSET")
        node.parent.children.remove(node)
        node.parent = None

    # -- reservation map ----------------------------------------------------------------

    def num_mem_rsv(self) -> int:
        return len(self.reservations)

    def get_mem_rsv(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self.reservations):
            raise FdtError(f"no reservation entry {index}", "NOTFOUND")
        return self.reservations[index]

    def add_mem_rsv(self, addr: int, size: int) -> None:
        """``fdt_add_mem_rsv``: append (addr, size) to the reservation map.

        libfdt inserts the entry in front of the terminator, so a size-0
        entry becomes the new terminator (its address shows in the packed
        map and nothing is reserved); that is reproduced.
        """
        _check_u64(addr, "reservation address")
        _check_u64(size, "reservation size")
        if size == 0:
            self._rsv_end_addr = addr
            self._slack += FDT_RESERVE_ENTRY_SIZE
            return
        self.reservations.append((addr, size))

    def del_mem_rsv(self, index: int) -> None:
        """``fdt_del_mem_rsv``: remove entry ``index`` (FdtError NOTFOUND when
        out of range)."""
        if not 0 <= index < len(self.reservations):
            raise FdtError(f"no reservation entry {index}", "NOTFOUND")
        del self.reservations[index]

    def mem_rsv_index(self, addr: int, size: int) -> int | None:
        """Index of the first entry exactly equal to (addr, size), or None."""
        for i, entry in enumerate(self.reservations):
            if entry == (addr, size):
                return i
        return None

    # -- packing ------------------------------------------------------------------------

    def pack(self) -> bytes:
        """The minimal DTB (``fdt_pack``): header, reservation map, structure
        block, strings block. Properties created by editing ``props``
        directly get their names looked up or appended now (on a copy of the
        strings block; the Fdt itself is not changed)."""
        strings = bytearray(self._strings)
        out = bytearray()

        def nameoff(node: FdtNode, name: str) -> int:
            key = _encode_name(name, "property") + b"\0"
            off = node._nameoff.get(name)
            if off is not None and strings[off:off + len(key)] == key:
                return off
            found = strings.find(key)
            if found >= 0:
                return found
            found = len(strings)
            strings.extend(key)
            return found

        def begin(node: FdtNode) -> None:
            raw = _encode_name(node.name, "node")
            out.extend(_U32.pack(FDT_BEGIN_NODE))
            out.extend(raw)
            out.extend(b"\0" * (_align4(len(raw) + 1) - len(raw)))
            for pname, value in node.props:
                out.extend(_PROP_HDR.pack(FDT_PROP, len(value), nameoff(node, pname)))
                out.extend(value)
                out.extend(b"\0" * (_align4(len(value)) - len(value)))

        begin(self.root)
        stack: list[Iterator[FdtNode]] = [iter(self.root.children)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                out.extend(_U32.pack(FDT_END_NODE))
                continue
            begin(child)
            stack.append(iter(child.children))
        out.extend(_U32.pack(FDT_END))

        rsv = bytearray()
        for addr, size in self.reservations:
            rsv.extend(_RSV.pack(_check_u64(addr, "reservation address"),
                                 _check_u64(size, "reservation size")))
        rsv.extend(_RSV.pack(self._rsv_end_addr, 0))

        off_rsv = FDT_V17_HEADER_SIZE
        off_struct = off_rsv + len(rsv)
        off_strings = off_struct + len(out)
        totalsize = off_strings + len(strings)
        header = _HEADER.pack(FDT_MAGIC, totalsize, off_struct, off_strings, off_rsv,
                              17, 16, self.boot_cpuid_phys & _U32_MAX, len(strings),
                              len(out))
        return header + bytes(rsv) + bytes(out) + bytes(strings)

    def open_size(self) -> int:
        """Bytes the tree would occupy in an ``fdt_open_into`` buffer now: the
        packed size plus the gaps libfdt keeps until ``fdt_pack`` (gaps of an
        in-order input layout, size-0 reservation entries). A libfdt edit that
        makes this exceed the buffer fails with FDT_ERR_NOSPACE."""
        return len(self.pack()) + self._slack

    def packed_size(self) -> int:
        return len(self.pack())

