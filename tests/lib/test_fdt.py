"""pykern.lib.fdt: the flattened-device-tree library (libfdt semantics, ARCH A36)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykern.lib.fdt import (
    FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP, Fdt, FdtError,
    FdtNode, fdt_header, of_read_number,
)

# ------------------------------------------------------------------ helpers


def tok(tag: int) -> bytes:
    return struct.pack(">I", tag)


def begin(name: str) -> bytes:
    raw = name.encode() + b"\0"
    return tok(FDT_BEGIN_NODE) + raw + bytes(-len(raw) % 4)


def prop(nameoff: int, value: bytes) -> bytes:
    return struct.pack(">III", FDT_PROP, len(value), nameoff) + value + bytes(-len(value) % 4)


def assemble(structure: bytes, strings: bytes, rsv: Sequence[tuple[int, int]] = (),
             gap: int = 0, **override: int) -> bytes:
    """A DTB laid out as dtc does (header, rsvmap, struct, strings), optionally
    with ``gap`` zero bytes between the blocks and header words overridden."""
    rsvmap = b"".join(struct.pack(">QQ", a, s) for a, s in rsv) + bytes(16)
    off_rsv = 40 + gap
    off_struct = off_rsv + len(rsvmap) + gap
    off_strings = off_struct + len(structure) + gap
    total = off_strings + len(strings) + gap
    fields = dict(magic=FDT_MAGIC, totalsize=total, off_dt_struct=off_struct,
                  off_dt_strings=off_strings, off_mem_rsvmap=off_rsv, version=17,
                  last_comp_version=16, boot_cpuid_phys=0, size_dt_strings=len(strings),
                  size_dt_struct=len(structure))
    fields.update(override)
    header = struct.pack(">10I", *fields.values())
    g = bytes(gap)
    return header + g + rsvmap + g + structure + g + strings + g


def sample() -> Fdt:
    """A small tree built with the sequential-style helpers."""
    f = Fdt()
    f.add_prop_last(f.root, "#address-cells", b"\0\0\0\2")
    f.add_prop_last(f.root, "#size-cells", b"\0\0\0\1")
    f.add_prop_last(f.root, "compatible", b"acme,board\0acme,soc\0")
    mem = f.add_subnode_last(f.root, "memory@40000000")
    f.add_prop_last(mem, "device_type", b"memory\0")
    f.add_prop_last(mem, "reg", struct.pack(">QI", 0x40000000, 0x10000000))
    chosen = f.add_subnode_last(f.root, "chosen")
    f.add_prop_last(chosen, "bootargs", b"console=ttyAMA0\0")
    f.add_mem_rsv(0x48000000, 0x1000)
    return f


def props(node: FdtNode | None) -> list[str]:
    assert node is not None
    return [name for name, _ in node.props]


# ------------------------------------------------------------------ layout, round trip


def test_pack_layout_is_minimal_v17() -> None:
    """ARCH A36: header (40 bytes), reservation map, structure, strings; no gaps."""
    data = sample().pack()
    h = fdt_header(data)
    assert h["magic"] == 0xD00DFEED
    assert (h["version"], h["last_comp_version"]) == (17, 16)
    assert h["off_mem_rsvmap"] == 40
    assert h["off_dt_struct"] == 40 + 2 * 16  # one entry + terminator
    assert h["off_dt_strings"] == h["off_dt_struct"] + h["size_dt_struct"]
    assert h["totalsize"] == h["off_dt_strings"] + h["size_dt_strings"] == len(data)
    assert data[:4] == b"\xd0\x0d\xfe\xed"  # big-endian
    assert struct.unpack_from(">QQ", data, 40) == (0x48000000, 0x1000)
    assert struct.unpack_from(">QQ", data, 56) == (0, 0)
    # structure starts with the root's FDT_BEGIN_NODE and an empty, padded name
    assert data[h["off_dt_struct"]:h["off_dt_struct"] + 8] == tok(1) + bytes(4)
    assert data[h["off_dt_strings"] - 4:h["off_dt_strings"]] == tok(FDT_END)


def test_round_trip_of_pack_output() -> None:
    data = sample().pack()
    f = Fdt.from_bytes(data)
    assert f.pack() == data
    assert props(f.root) == ["#address-cells", "#size-cells", "compatible"]
    assert [c.name for c in f.root.children] == ["memory@40000000", "chosen"]
    assert f.reservations == [(0x48000000, 0x1000)]
    chosen = f.find("/chosen")
    assert chosen is not None
    assert f.getprop_string(chosen, "bootargs") == "console=ttyAMA0"


def test_strings_block_in_first_use_order_and_names_padded() -> None:
    data = sample().pack()
    f = Fdt.from_bytes(data)
    assert f.strings == (b"#address-cells\0#size-cells\0compatible\0device_type\0reg\0"
                         b"bootargs\0")
    h = fdt_header(data)
    blk = data[h["off_dt_struct"]:h["off_dt_struct"] + h["size_dt_struct"]]
    assert b"memory@40000000\0" in blk
    assert len(blk) % 4 == 0


def test_parsing_keeps_the_original_strings_order_and_nameoffs() -> None:
    strings = b"reg\0compatible\0"  # not first-use order
    s = (begin("") + prop(4, b"x\0") + prop(0, b"\0\0\0\1") + tok(FDT_END_NODE)
         + tok(FDT_END))
    data = assemble(s, strings)
    f = Fdt.from_bytes(data)
    assert props(f.root) == ["compatible", "reg"]
    assert f.strings == strings
    assert f.pack() == data


def test_gapped_layout_packs_to_minimal() -> None:
    """dtc -p style padding between blocks: parsed, then packed without gaps."""
    s = begin("") + prop(0, b"a\0") + tok(FDT_END_NODE) + tok(FDT_END)
    tight = assemble(s, b"model\0", rsv=[(1 << 32, 4096)])
    padded = assemble(s, b"model\0", rsv=[(1 << 32, 4096)], gap=24)
    assert Fdt.from_bytes(padded).pack() == tight
    # the gaps before the strings count until fdt_pack; the one after them is free space
    assert Fdt.from_bytes(padded).open_size() == len(padded) - 24
    assert Fdt.from_bytes(tight).open_size() == len(tight)


def test_trailing_bytes_after_totalsize_are_ignored() -> None:
    data = sample().pack()
    assert Fdt.from_bytes(data + b"\xff" * 100).pack() == data
    assert Fdt.from_bytes(bytearray(data)).pack() == data
    assert Fdt.from_bytes(memoryview(data)).pack() == data


def test_nop_tokens_are_skipped() -> None:
    s = (begin("") + tok(FDT_NOP) + prop(0, b"a\0") + tok(FDT_NOP) + begin("n")
         + tok(FDT_END_NODE) + tok(FDT_NOP) + tok(FDT_END_NODE) + tok(FDT_END))
    f = Fdt.from_bytes(assemble(s, b"model\0"))
    assert props(f.root) == ["model"]
    assert [c.name for c in f.root.children] == ["n"]


def test_nop_tokens_count_until_pack_but_not_after() -> None:
    """fdt_open_into keeps NOPs in the buffer (open_size counts them); pack drops them."""
    s = (begin("") + tok(FDT_NOP) + prop(0, b"a\0") + tok(FDT_NOP) + begin("n")
         + tok(FDT_END_NODE) + tok(FDT_NOP) + tok(FDT_END_NODE) + tok(FDT_END))
    data = assemble(s, b"model\0")
    f = Fdt.from_bytes(data)
    assert f.open_size() == len(data)
    assert f.packed_size() == len(f.pack()) == len(data) - 3 * 4


def test_sizes_follow_pack_for_props_edited_directly() -> None:
    """packed_size()/open_size() are what pack() writes, names appended the way pack does
    (a name that is the tail of an earlier appended one is found there, not appended)."""
    f = sample()
    root = f.root
    before = f.open_size() - f.packed_size()
    root.props.append(("new-names", b"\1\2\3"))        # not in the strings block
    root.props.append(("names", b""))                     # the tail of "new-names"
    root.children[0].props.append(("bootargs", b"x"))     # nameoff of another node
    root.props.append(("raw", bytearray(b"12345")))       # not bytes
    data = f.pack()
    assert f.packed_size() == len(data)
    assert f.open_size() - f.packed_size() == before
    h = fdt_header(data)
    strings = data[h["off_dt_strings"]:]
    assert strings.endswith(b"reg\0bootargs\0new-names\0raw\0")
    assert Fdt.from_bytes(data).getprop(Fdt.from_bytes(data).root, "raw") == b"12345"
    root.props.append(("bad\0name", b""))
    for size in (f.pack, f.packed_size, f.open_size):
        with pytest.raises(FdtError, match="NUL"):
            size()


def test_version16_header_is_accepted_and_packed_as_17() -> None:
    data = sample().pack()
    v16 = data[:20] + struct.pack(">I", 16) + data[24:]
    f = Fdt.from_bytes(v16)
    assert f.pack() == data


def test_boot_cpuid_phys_preserved() -> None:
    f = sample()
    f.boot_cpuid_phys = 3
    assert Fdt.from_bytes(f.pack()).boot_cpuid_phys == 3


# ------------------------------------------------------------------ libfdt editing rules


def test_setprop_new_property_becomes_first() -> None:
    """ARCH A36: a property created on a node becomes its first property."""
    f = Fdt.from_bytes(sample().pack())
    chosen = f.find("/chosen")
    assert chosen is not None
    f.setprop_u64(chosen, "linux,initrd-start", 0x48000000)
    f.setprop_u64(chosen, "linux,initrd-end", 0x48001000)
    assert props(chosen) == ["linux,initrd-end", "linux,initrd-start", "bootargs"]


def test_setprop_existing_property_keeps_its_slot() -> None:
    f = Fdt.from_bytes(sample().pack())
    f.setprop(f.root, "#size-cells", b"\0\0\0\2")
    assert props(f.root) == ["#address-cells", "#size-cells", "compatible"]
    assert f.getprop_u32(f.root, "#size-cells") == 2
    data = f.pack()
    assert Fdt.from_bytes(data).getprop(Fdt.from_bytes(data).root, "#size-cells") == b"\0\0\0\2"


def test_new_names_appended_to_strings_existing_reused() -> None:
    """ARCH A36: new property names are appended; existing ones (even as the
    tail of a longer name, as fdt_find_string_ matches) are reused."""
    f = Fdt.from_bytes(sample().pack())
    before = f.strings
    chosen = f.find("/chosen")
    assert chosen is not None
    f.setprop_empty(chosen, "linux,booted-from-kexec")
    assert f.strings == before + b"linux,booted-from-kexec\0"
    f.setprop_u32(chosen, "reg", 1)             # already there
    f.setprop_u32(chosen, "size-cells", 1)      # tail of "#size-cells"
    f.setprop_u32(chosen, "args", 1)            # tail of "bootargs"
    assert f.strings == before + b"linux,booted-from-kexec\0"
    data = f.pack()
    g = Fdt.from_bytes(data)
    c = g.find("/chosen")
    assert c is not None
    assert props(c)[:4] == ["args", "size-cells", "reg", "linux,booted-from-kexec"]
    h = fdt_header(data)
    blk = data[h["off_dt_struct"]:]
    # the "size-cells" property points one byte into "#size-cells"
    off = blk.index(struct.pack(">III", FDT_PROP, 4, before.index(b"#size-cells") + 1))
    assert off > 0


def test_delprop_keeps_string_and_reports_absence() -> None:
    f = Fdt.from_bytes(sample().pack())
    chosen = f.find("/chosen")
    assert chosen is not None
    assert f.delprop(chosen, "bootargs") is True
    assert f.delprop(chosen, "bootargs") is False
    assert b"bootargs\0" in f.strings
    assert chosen.props == []
    f.setprop_string(chosen, "bootargs", "again")
    assert f.strings.count(b"bootargs\0") == 1


def test_appendprop_extends_in_place_or_creates_first() -> None:
    f = Fdt.from_bytes(sample().pack())
    chosen = f.find("/chosen")
    assert chosen is not None
    f.appendprop(chosen, "bootargs", b"more\0")
    assert chosen.getprop("bootargs") == b"console=ttyAMA0\0more\0"
    f.appendprop(chosen, "list", b"\0\0\0\1")
    f.appendprop(chosen, "list", b"\0\0\0\2")
    assert props(chosen) == ["list", "bootargs"]
    assert chosen.getprop("list") == b"\0\0\0\1\0\0\0\2"


def test_add_subnode_first_child_and_exists() -> None:
    f = Fdt.from_bytes(sample().pack())
    node = f.add_subnode(f.root, "aliases")
    assert [c.name for c in f.root.children] == ["aliases", "memory@40000000", "chosen"]
    assert node.path == "/aliases" and node.parent is f.root
    with pytest.raises(FdtError) as exc:
        f.add_subnode(f.root, "chosen")
    assert exc.value.code == "EXISTS"
    with pytest.raises(FdtError):
        f.add_subnode(f.root, "memory")  # matches memory@40000000 (libfdt rule)
    f.add_subnode(f.root, "memory@80000000")  # different unit address is fine


def test_del_node() -> None:
    f = Fdt.from_bytes(sample().pack())
    chosen = f.find("/chosen")
    assert chosen is not None
    f.del_node(chosen)
    assert f.find("/chosen") is None
    with pytest.raises(FdtError):
        f.del_node(f.root)


def test_bad_names_rejected() -> None:
    f = Fdt()
    with pytest.raises(FdtError):
        f.setprop(f.root, "a\0b", b"")
    with pytest.raises(FdtError):
        f.add_subnode(f.root, "x\0")
    with pytest.raises(FdtError):
        f.setprop(f.root, "snow\u2603", b"")


# ------------------------------------------------------------------ lookup


def test_find_paths_unit_addresses_and_aliases() -> None:
    f = Fdt.from_bytes(sample().pack())
    assert f.find("/") is f.root
    assert f.find("/chosen") is f.root.children[1]
    assert f.find("//chosen/") is f.root.children[1]
    assert f.find("/memory") is f.root.children[0]           # no '@' matches a unit
    assert f.find("/memory@40000000") is f.root.children[0]
    assert f.find("/memory@80000000") is None
    assert f.find("/chosen/missing") is None
    assert f.find("/missing/chosen") is None
    aliases = f.add_subnode(f.root, "aliases")
    f.setprop_string(aliases, "mem", "/memory@40000000")
    f.setprop_string(aliases, "bad", "mem")
    assert f.find("mem") is f.find("/memory")
    assert f.find("bad") is None
    assert f.find("nope") is None
    assert [n.path for n in f.walk()] == ["/", "/aliases", "/memory@40000000", "/chosen"]


def test_typed_getters() -> None:
    f = Fdt.from_bytes(sample().pack())
    root = f.root
    assert f.getprop_u32(root, "#address-cells") == 2
    assert f.getprop_u32(root, "missing") is None
    with pytest.raises(FdtError):
        f.getprop_u64(root, "#address-cells")
    with pytest.raises(FdtError):
        f.getprop_u32(root, "compatible")
    assert f.getprop_strings(root, "compatible") == ["acme,board", "acme,soc"]
    assert f.getprop_string(root, "compatible") == "acme,board"
    f.setprop(root, "raw", b"abc")
    with pytest.raises(FdtError):
        f.getprop_string(root, "raw")
    f.setprop_u64(root, "big", 1 << 40)
    assert f.getprop_u64(root, "big") == 1 << 40
    with pytest.raises(FdtError):
        f.setprop_u32(root, "x", 1 << 32)
    with pytest.raises(FdtError):
        f.setprop_u64(root, "x", -1)


def test_of_read_number() -> None:
    assert of_read_number(b"\0\0\0\1\0\0\0\2", 2) == (1 << 32) | 2
    assert of_read_number(b"\0\0\0\7", 1) == 7
    assert of_read_number(b"", 0) == 0
    assert of_read_number(b"\0\0\0\1" + b"\xff" * 8, 3) == (1 << 64) - 1  # low 64 bits
    with pytest.raises(FdtError):
        of_read_number(b"\0\0\0", 1)


# ------------------------------------------------------------------ cells (ARCH A34)


def test_cells_defaults_and_errors() -> None:
    """ARCH A34: #address-cells/#size-cells default to 2 and 1 when absent."""
    f = Fdt()
    assert (f.address_cells(f.root), f.size_cells(f.root)) == (2, 1)
    f.setprop_u32(f.root, "#address-cells", 1)
    f.setprop_u32(f.root, "#size-cells", 0)
    assert (f.address_cells(f.root), f.size_cells(f.root)) == (1, 0)
    f.setprop_u32(f.root, "#address-cells", 0)
    with pytest.raises(FdtError) as exc:
        f.address_cells(f.root)
    assert exc.value.code == "BADNCELLS"
    f.setprop_u32(f.root, "#address-cells", 5)
    with pytest.raises(FdtError):
        f.address_cells(f.root)
    f.setprop(f.root, "#size-cells", b"\0\0\0\1\0")
    with pytest.raises(FdtError):
        f.size_cells(f.root)


def test_appendprop_addrrange_encodings_and_limits() -> None:
    f = Fdt()
    node = f.add_subnode(f.root, "chosen")
    f.appendprop_addrrange(f.root, node, "r", 0x1_2345_6789, 0x1000)  # 2 + 1 cells
    assert node.getprop("r") == struct.pack(">QI", 0x1_2345_6789, 0x1000)
    f.setprop_u32(f.root, "#address-cells", 1)
    f.setprop_u32(f.root, "#size-cells", 2)
    f.appendprop_addrrange(f.root, node, "s", 0x1000, 0x2000)
    assert node.getprop("s") == struct.pack(">IQ", 0x1000, 0x2000)
    assert f.encode_addrrange(f.root, 0, 0x1000) == struct.pack(">IQ", 0, 0x1000)
    assert f.encode_addrrange(f.root, 0xFFFFF000, 0x1000) == struct.pack(">IQ", 0xFFFFF000,
                                                                         0x1000)
    with pytest.raises(FdtError) as exc:
        f.encode_addrrange(f.root, 1 << 32, 0x1000)
    assert exc.value.code == "BADVALUE"
    with pytest.raises(FdtError):
        f.encode_addrrange(f.root, 0xFFFFF000, 0x2000)  # ends above 4 GiB
    f.setprop_u32(f.root, "#size-cells", 1)
    with pytest.raises(FdtError):
        f.encode_addrrange(f.root, 0, 1 << 32)
    f.setprop_u32(f.root, "#size-cells", 3)
    with pytest.raises(FdtError) as exc:
        f.encode_addrrange(f.root, 0, 1)
    assert exc.value.code == "BADNCELLS"
    f.setprop_u32(f.root, "#size-cells", 2)
    f.setprop_u32(f.root, "#address-cells", 2)
    assert f.decode_ranges(f.root, struct.pack(">QQQQ", 1, 2, 3, 4) + b"\0\0\0\1") == \
        [(1, 2), (3, 4)]


# ------------------------------------------------------------------ reservation map


def test_mem_rsv_append_delete_index() -> None:
    f = Fdt()
    f.add_mem_rsv(0x1000, 0x2000)
    f.add_mem_rsv(0x8000, 0x1000)
    f.add_mem_rsv(0x1000, 0x2000)
    assert f.reservations == [(0x1000, 0x2000), (0x8000, 0x1000), (0x1000, 0x2000)]
    assert f.num_mem_rsv() == 3
    assert f.mem_rsv_index(0x1000, 0x2000) == 0
    assert f.mem_rsv_index(0x8000, 0x1000) == 1
    assert f.mem_rsv_index(0x8000, 0x2000) is None
    f.del_mem_rsv(0)
    assert f.reservations == [(0x8000, 0x1000), (0x1000, 0x2000)]
    assert f.get_mem_rsv(1) == (0x1000, 0x2000)
    with pytest.raises(FdtError) as exc:
        f.del_mem_rsv(2)
    assert exc.value.code == "NOTFOUND"
    data = f.pack()
    assert Fdt.from_bytes(data).reservations == [(0x8000, 0x1000), (0x1000, 0x2000)]
    assert fdt_header(data)["off_dt_struct"] == 40 + 3 * 16


def test_mem_rsv_zero_size_entry_becomes_the_terminator() -> None:
    """libfdt inserts a size-0 entry in front of the terminator: it ends the map."""
    f = Fdt()
    f.add_mem_rsv(0x1000, 0x1000)
    f.add_mem_rsv(0x5000, 0)
    data = f.pack()
    assert struct.unpack_from(">QQ", data, 56) == (0x5000, 0)
    g = Fdt.from_bytes(data)
    assert g.reservations == [(0x1000, 0x1000)]
    assert g.pack() == data
    with pytest.raises(FdtError):
        f.add_mem_rsv(1 << 64, 1)


# ------------------------------------------------------------------ malformed input


GOOD_STRUCT = begin("") + prop(0, b"m\0") + begin("c") + tok(FDT_END_NODE) + tok(FDT_END_NODE) \
    + tok(FDT_END)
GOOD_STRINGS = b"model\0"


@pytest.mark.parametrize("data, words", [
    (b"", "too short"),
    (b"\xd0\x0d\xfe\xed\0\0", "too short"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, magic=0xEDFE0DD0), "magic"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, version=15, last_comp_version=15), "version"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, last_comp_version=18, version=18), "last_comp"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, version=16, last_comp_version=17), "below"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS)[:60], "exceeds"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, totalsize=20), "smaller than its header"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, off_dt_struct=0x10000), "structure block"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, off_dt_struct=8), "structure block"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, size_dt_struct=0x10000), "structure block"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, off_dt_strings=0xFFFFFFFF), "strings block"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, size_dt_strings=0x7FFFFFFF), "strings block"),
    (assemble(GOOD_STRUCT, GOOD_STRINGS, off_mem_rsvmap=0x10000), "memory-reservation"),
    (assemble(GOOD_STRUCT[:-4], GOOD_STRINGS), "without FDT_END"),
    (assemble(GOOD_STRUCT[:-8] + tok(FDT_END), GOOD_STRINGS), "FDT_END inside"),
    (assemble(GOOD_STRUCT[:-4] + tok(FDT_END_NODE) + tok(FDT_END), GOOD_STRINGS),
     "FDT_END_NODE without"),
    (assemble(GOOD_STRUCT[:-4] + begin("") + tok(FDT_END_NODE) + tok(FDT_END),
              GOOD_STRINGS), "second root"),
    (assemble(tok(FDT_END), GOOD_STRINGS), "no root"),
    (assemble(prop(0, b"") + GOOD_STRUCT, GOOD_STRINGS), "outside any node"),
    (assemble(begin("") + tok(7) + tok(FDT_END_NODE) + tok(FDT_END), GOOD_STRINGS),
     "bad structure token"),
    (assemble(tok(FDT_BEGIN_NODE) + b"abcd", GOOD_STRINGS), "not terminated"),
    (assemble(begin("") + struct.pack(">III", FDT_PROP, 100, 0) + tok(FDT_END_NODE)
              + tok(FDT_END), GOOD_STRINGS), "runs past"),
    (assemble(begin("") + struct.pack(">II", FDT_PROP, 0), GOOD_STRINGS), "truncated"),
    (assemble(begin("") + prop(99, b"") + tok(FDT_END_NODE) + tok(FDT_END), GOOD_STRINGS),
     "outside the"),
    (assemble(begin("") + prop(0, b"") + tok(FDT_END_NODE) + tok(FDT_END), b"model"),
     "not terminated"),
    (assemble(begin("") + begin("c") + tok(FDT_END_NODE) + prop(0, b"") + tok(FDT_END_NODE)
              + tok(FDT_END), GOOD_STRINGS), "follows a subnode"),
])
def test_malformed_inputs_raise_fdterror(data: bytes, words: str) -> None:
    with pytest.raises(FdtError) as exc:
        Fdt.from_bytes(data)
    assert words in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_unterminated_reservation_map() -> None:
    h = struct.pack(">10I", FDT_MAGIC, 56, 40, 40, 40, 17, 16, 0, 0, 0)
    with pytest.raises(FdtError, match="not terminated"):
        Fdt.from_bytes(h + struct.pack(">QQ", 1, 1))


def test_from_bytes_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        Fdt.from_bytes("not bytes")  # type: ignore[arg-type]


VALID = sample().pack()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(0, len(VALID)))
def test_mutated_dtb_raises_only_fdterror(mutations: list[tuple[int, int]],
                                         cut: int) -> None:
    """Random byte mutations (and truncation) of a valid DTB: from_bytes either
    succeeds or raises FdtError; a tree it accepts packs and re-parses stably."""
    data = bytearray(VALID)
    for pos, value in mutations:
        data[pos] = value
    data = data[:cut] if cut < len(VALID) // 2 else data
    try:
        f = Fdt.from_bytes(bytes(data))
    except FdtError:
        return
    packed = f.pack()
    again = Fdt.from_bytes(packed)
    assert again.pack() == packed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_fdterror(blob: bytes) -> None:
    for data in (blob, VALID[:40] + blob, VALID[:8] + blob):
        try:
            Fdt.from_bytes(data)
        except FdtError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["set", "del", "node", "rsv", "delrsv", "append"]),
                max_size=30),
       st.lists(st.sampled_from(["a", "b", "reg", "size-cells", "bootargs", "x@1", "x"]),
                min_size=30, max_size=30),
       st.binary(max_size=12))
def test_edits_round_trip(ops: list[str], names: list[str], value: bytes) -> None:
    """Whatever sequence of edits, pack() output re-parses to the same bytes."""
    f = Fdt.from_bytes(VALID)
    nodes = [f.root]
    for op, name in zip(ops, names):
        node = nodes[len(name) % len(nodes)]
        if op == "set":
            f.setprop(node, name, value)
        elif op == "append":
            f.appendprop(node, name, value)
        elif op == "del":
            f.delprop(node, name)
        elif op == "node":
            try:
                nodes.append(f.add_subnode(node, name))
            except FdtError:
                pass
        elif op == "rsv":
            f.add_mem_rsv(len(value) << 12, len(name) << 12)
        elif op == "delrsv" and f.reservations:
            f.del_mem_rsv(0)
    data = f.pack()
    assert Fdt.from_bytes(data).pack() == data
