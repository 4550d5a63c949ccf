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
_U32X2 = struct.Struct(">II")
_RSV = struct.Struct(">QQ")
_HEADER = struct.Struct(">10I")
_U64_MASK = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1


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


# Names that passed _encode_name, with their bytes: a node name's raw bytes, a property
# name's strings-block key (the bytes and a NUL).  Only plain str names are cached, and
# only a bounded number, so the caches stay small whatever trees are built.
_NODE_RAW: dict[str, bytes] = {}
_PROP_KEY: dict[str, bytes] = {}
_NAME_CACHE_MAX = 4096


def _node_raw(name: str) -> bytes:
    """``_encode_name(name, "node")``, cached."""
    raw = _NODE_RAW.get(name) if type(name) is str else None
    if raw is None:
        raw = _encode_name(name, "node")
        if type(name) is str and len(_NODE_RAW) < _NAME_CACHE_MAX:
            _NODE_RAW[name] = raw
    return raw


def _prop_key(name: str) -> bytes:
    """``_encode_name(name, "property")`` and its terminating NUL, cached."""
    key = _PROP_KEY.get(name) if type(name) is str else None
    if key is None:
        key = _encode_name(name, "property") + b"\0"
        if type(name) is str and len(_PROP_KEY) < _NAME_CACHE_MAX:
            _PROP_KEY[name] = key
    return key


def _value_bytes(value: bytes | bytearray) -> bytes:
    """The bytes ``pack`` writes for a property value that is not ``bytes`` (a ``props``
    entry edited directly): whatever ``bytearray.extend`` takes from it."""
    out = bytearray()
    out.extend(value)
    return bytes(out)


#: NULs that end a node name of ``len % 4`` bytes and pad it to 4 (at least one NUL).
_NAME_PAD = (b"\0\0\0\0", b"\0\0\0", b"\0\0", b"\0")
#: NULs that pad a property value of ``len % 4`` bytes to 4.
_VALUE_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_VALUE_PAD_LEN = (0, 3, 2, 1)
_BEGIN_NODE_TOKEN = struct.pack(">I", FDT_BEGIN_NODE)
_END_NODE_TOKEN = struct.pack(">I", FDT_END_NODE)
_END_TOKEN = struct.pack(">I", FDT_END)


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


def _copy_node(node: FdtNode, parent: FdtNode | None) -> FdtNode:
    new = FdtNode.__new__(FdtNode)
    new.name = node.name
    new.props = list(node.props)            # (name, bytes) pairs: immutable
    new.parent = parent
    new._nameoff = dict(node._nameoff)
    new.children = [_copy_node(child, new) for child in node.children]
    return new


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

    def copy(self) -> Fdt:
        """An independent copy of the tree (editing one leaves the other as it was)."""
        new = Fdt.__new__(Fdt)
        new.root = _copy_node(self.root, None)
        new.reservations = list(self.reservations)
        new.boot_cpuid_phys = self.boot_cpuid_phys
        new._strings = bytearray(self._strings)
        new._rsv_end_addr = self._rsv_end_addr
        new._slack = self._slack
        return new

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
        version, last_comp = _U32X2.unpack_from(data, 20)
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
        used_struct, nops = fdt._parse_struct(data[off_struct:end], strings)
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
            # what pack() would write: the walk minus the dropped NOPs, every property
            # name already in the strings block where it was read (so nothing appended)
            packed = (FDT_V17_HEADER_SIZE + rsv_size + used_struct - 4 * nops
                      + len(fdt._strings))
            fdt._slack = max(0, off_strings + size_strings - packed)
        return fdt

    def _parse_struct(self, blk: bytes, strings: bytes) -> tuple[int, int]:
        """Walk the structure block; return the offset just past FDT_END and the number of
        FDT_NOP tokens dropped."""
        pos = 0
        nops = 0
        stack: list[FdtNode] = []
        root: FdtNode | None = None
        n = len(blk)
        nstrings = len(strings)
        unpack_u32 = _U32.unpack_from
        unpack_prop = _U32X2.unpack_from
        find = blk.find
        sfind = strings.find
        node: FdtNode | None = None          # the innermost open node (stack[-1])
        while True:
            if pos + 4 > n:
                raise FdtError(f"structure block ends at {n:#x} without FDT_END", "TRUNCATED")
            tag = unpack_u32(blk, pos)[0]
            at = pos
            pos += 4
            if tag == FDT_PROP:
                if node is None:
                    raise FdtError(f"property outside any node at struct offset {at:#x}")
                if pos + 8 > n:
                    raise FdtError(f"property header at struct offset {at:#x} is truncated",
                                   "TRUNCATED")
                length, nameoff = unpack_prop(blk, pos)
                pos += 8
                if length > n - pos:
                    raise FdtError(f"property value at struct offset {at:#x} ({length} "
                                   f"bytes) runs past the structure block", "TRUNCATED")
                value = blk[pos:pos + length]
                pos = (pos + length + 3) & ~3
                if nameoff >= nstrings:
                    raise FdtError(f"property name offset {nameoff:#x} is outside the "
                                   f"{nstrings}-byte strings block", "BADOFFSET")
                nul = sfind(b"\0", nameoff)
                if nul < 0:
                    raise FdtError(f"property name at strings offset {nameoff:#x} is not "
                                   f"terminated", "TRUNCATED")
                pname = strings[nameoff:nul].decode("latin-1")
                if node.children:
                    raise FdtError(f"property {pname!r} of {node.path!r} follows a subnode")
                node.props.append((pname, value))
                node._nameoff.setdefault(pname, nameoff)
            elif tag == FDT_BEGIN_NODE:
                nul = find(b"\0", pos)
                if nul < 0:
                    raise FdtError(f"node name at struct offset {pos:#x} is not terminated",
                                   "TRUNCATED")
                name = blk[pos:nul].decode("latin-1")
                pos = (nul + 4) & ~3          # past the NUL, 4-aligned
                if node is None:
                    if root is not None:
                        raise FdtError(f"second root node at struct offset {at:#x}")
                    node = root = FdtNode(name)
                else:
                    child = FdtNode(name, node)
                    node.children.append(child)
                    node = child
                stack.append(node)
            elif tag == FDT_END_NODE:
                if node is None:
                    raise FdtError(f"FDT_END_NODE without a node at struct offset {at:#x}")
                stack.pop()
                node = stack[-1] if stack else None
            elif tag == FDT_NOP:
                nops += 1
            elif tag == FDT_END:
                if node is not None:
                    raise FdtError(f"FDT_END inside node {node.path!r}")
                if root is None:
                    raise FdtError("structure block has no root node")
                self.root = root
                return pos, nops
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
        if type(value) is bytes:
            # of_read_number of each field, which lies whole inside the value
            mid = 4 * ac
            for off in range(0, len(value) - step + 1, step):
                out.append((int.from_bytes(value[off:off + mid], "big") & _U64_MASK,
                            int.from_bytes(value[off + mid:off + step], "big") & _U64_MASK))
            return out
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
        out: list[bytes] = []
        put = out.append
        prop_hdr = _PROP_HDR.pack
        size_struct = 4                      # FDT_END
        # depth first, each node's properties before its children (structure order)
        todo: list[FdtNode | None] = [self.root]
        while todo:
            node = todo.pop()
            if node is None:
                put(_END_NODE_TOKEN)
                size_struct += 4
                continue
            name = node.name
            raw = _node_raw(name)
            put(_BEGIN_NODE_TOKEN)
            put(raw)
            pad = _NAME_PAD[len(raw) & 3]
            put(pad)
            size_struct += 4 + len(raw) + len(pad)
            offs = node._nameoff
            for pname, value in node.props:
                n = len(value)
                # the name's offset: where it was parsed or created, else the first
                # match in the strings block, else appended (fdt_find_add_string_)
                key = _prop_key(pname)
                off = offs.get(pname)
                if off is None or off < 0 or not strings.startswith(key, off):
                    off = strings.find(key)
                    if off < 0:
                        off = len(strings)
                        strings += key
                put(prop_hdr(FDT_PROP, n, off))
                if type(value) is not bytes:         # set by editing ``props`` directly
                    value = _value_bytes(value)
                put(value)
                pad = _VALUE_PAD[n & 3]
                put(pad)
                size_struct += 12 + len(value) + len(pad)
            todo.append(None)
            children = node.children
            if children:
                todo.extend(reversed(children))
        put(_END_TOKEN)

        rsv = [_RSV.pack(_check_u64(addr, "reservation address"),
                         _check_u64(size, "reservation size"))
               for addr, size in self.reservations]
        rsv.append(_RSV.pack(self._rsv_end_addr, 0))

        off_rsv = FDT_V17_HEADER_SIZE
        off_struct = off_rsv + FDT_RESERVE_ENTRY_SIZE * len(rsv)
        off_strings = off_struct + size_struct
        totalsize = off_strings + len(strings)
        header = _HEADER.pack(FDT_MAGIC, totalsize, off_struct, off_strings, off_rsv,
                              17, 16, self.boot_cpuid_phys & _U32_MAX, len(strings),
                              size_struct)
        return b"".join((header, *rsv, *out, strings))

    def _packed_len(self) -> int:
        """``len(self.pack())`` without building the bytes: the same walk, the same name
        checks (FdtError where ``pack`` raises one), the same strings-block appends."""
        strings: bytes | bytearray = self._strings
        copied = False
        size_struct = 4                      # FDT_END
        todo: list[FdtNode] = [self.root]
        while todo:
            node = todo.pop()
            name = node.name
            raw = _node_raw(name)
            # FDT_BEGIN_NODE, the name, its NUL and padding, FDT_END_NODE
            size_struct += 8 + ((len(raw) + 4) & ~3)
            offs = node._nameoff
            for pname, value in node.props:
                n = len(value)
                key = _prop_key(pname)
                off = offs.get(pname)
                if off is None or off < 0 or not strings.startswith(key, off):
                    if strings.find(key) < 0:
                        if not copied:
                            strings = bytearray(strings)
                            copied = True
                        strings += key
                if type(value) is not bytes:
                    size_struct += len(_value_bytes(value)) - n
                size_struct += 12 + n + _VALUE_PAD_LEN[n & 3]
            children = node.children
            if children:
                todo.extend(reversed(children))
        for addr, size in self.reservations:
            _check_u64(addr, "reservation address")
            _check_u64(size, "reservation size")
        # the two header fields pack() checks by packing them
        _RSV.pack(self._rsv_end_addr, 0)
        _U32.pack(self.boot_cpuid_phys & _U32_MAX)
        return (FDT_V17_HEADER_SIZE + FDT_RESERVE_ENTRY_SIZE * (len(self.reservations) + 1)
                + size_struct + len(strings))

    def open_size(self) -> int:
        """Bytes the tree would occupy in an ``fdt_open_into`` buffer now: the
        packed size plus the gaps libfdt keeps until ``fdt_pack`` (gaps of an
        in-order input layout, size-0 reservation entries). A libfdt edit that
        makes this exceed the buffer fails with FDT_ERR_NOSPACE."""
        return self._packed_len() + self._slack

    def packed_size(self) -> int:
        return self._packed_len()

