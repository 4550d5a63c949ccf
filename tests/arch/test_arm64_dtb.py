"""pykern.arch.arm64.dtb: the boot DTB (ARCH S5) and the kexec DTB (ARCH A29–A36)."""

from __future__ import annotations

import random
import struct

import pytest

from pykern.arch.arm64.dtb import (
    FDT_EXTRA_SPACE, GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE, boot_dtb, create_dtb,
    parse_kexec_dtb,
)
from pykern.lib.fdt import Fdt, FdtError, FdtNode, fdt_header

BANKS = [(0x4000_0000, 0x4000_0000)]
SEED = random.Random(42).randbytes(136)
INITRD = (0x4800_0000, 0x12_3456)


def chosen_of(data: bytes) -> tuple[Fdt, FdtNode]:
    f = Fdt.from_bytes(data)
    node = f.find("/chosen")
    assert node is not None
    return f, node


def names(node: FdtNode) -> list[str]:
    return [n for n, _ in node.props]


def kexec(boot: bytes, **kw: object) -> bytes:
    args: dict[str, object] = dict(cmdline="console=ttyAMA0", initrd=None, rng_seed=SEED)
    args.update(kw)
    return create_dtb(boot, **args)  # type: ignore[arg-type]


# ------------------------------------------------------------------ S5 boot DTB


def test_boot_dtb_header_and_root() -> None:
    """ARCH S5: magic 0xD00DFEED, version 17, last-compatible 16, big-endian;
    root #address-cells = #size-cells = 2 and a compatible."""
    data = boot_dtb(BANKS, "console=ttyAMA0")
    h = fdt_header(data)
    assert h["magic"] == 0xD00DFEED and data[:4] == b"\xd0\x0d\xfe\xed"
    assert (h["version"], h["last_comp_version"]) == (17, 16)
    assert h["totalsize"] == len(data)
    f = Fdt.from_bytes(data)
    assert f.getprop_u32(f.root, "#address-cells") == 2
    assert f.getprop_u32(f.root, "#size-cells") == 2
    assert f.getprop_string(f.root, "compatible") == "linux,dummy-virt"
    assert f.getprop_string(f.root, "model")
    assert f.reservations == []


def test_boot_dtb_memory_nodes_per_bank() -> None:
    """ARCH S5: one memory@<base> node per bank, device_type "memory", 2+2-cell reg."""
    banks = [(0x4000_0000, 0x2000_0000), (0x1_0000_0000, 0x4000_0000)]
    f = Fdt.from_bytes(boot_dtb(banks, ""))
    for base, size in banks:
        node = f.find(f"/memory@{base:x}")
        assert node is not None
        assert f.getprop_string(node, "device_type") == "memory"
        assert node.getprop("reg") == struct.pack(">QQ", base, size)
    assert parse_kexec_dtb(f.pack())["memory"] == banks


def test_boot_dtb_gic_node() -> None:
    """ARCH S5: the GICv3 node."""
    f = Fdt.from_bytes(boot_dtb(BANKS, ""))
    gic = f.find("/intc@8000000")
    assert gic is not None
    assert f.getprop_string(gic, "compatible") == "arm,gic-v3"
    assert gic.getprop("reg") == struct.pack(">4Q", 0x0800_0000, 0x10000, 0x080A_0000,
                                             0xF6_0000)
    assert (GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE) == (0x0800_0000, 0x10000,
                                                            0x080A_0000, 0xF6_0000)
    assert f.getprop_u32(gic, "#interrupt-cells") == 3
    assert gic.getprop("interrupt-controller") == b""


def test_boot_dtb_chosen_bootargs_and_initrd() -> None:
    """ARCH S5: /chosen with bootargs, plus linux,initrd-start/end (u64) when booted
    with an initrd."""
    f, chosen = chosen_of(boot_dtb(BANKS, "console=ttyAMA0 cma=64M"))
    assert f.getprop_string(chosen, "bootargs") == "console=ttyAMA0 cma=64M"
    assert not chosen.has_prop("linux,initrd-start")
    f, chosen = chosen_of(boot_dtb(BANKS, "x", initrd=INITRD))
    assert f.getprop_u64(chosen, "linux,initrd-start") == INITRD[0]
    assert f.getprop_u64(chosen, "linux,initrd-end") == INITRD[0] + INITRD[1]


def test_boot_dtb_size_below_3k() -> None:
    """ARCH S5: below 3 KiB for short command lines, so that the kexec dtb is one
    page for command lines up to ~1 KiB."""
    banks = [(0x4000_0000 + i * 0x1_0000_0000, 0x4000_0000) for i in range(4)]
    data = boot_dtb(banks, "console=ttyAMA0 " * 8, initrd=INITRD)
    assert len(data) < 3 * 1024
    out = kexec(data, cmdline="x" * 1024, initrd=(0x5000_0000, 0x1000))
    assert len(out) <= 4096


def test_boot_dtb_extra_nodes_and_reservations() -> None:
    data = boot_dtb(BANKS, "", extra_nodes=[
        ("/reserved-memory", [("#address-cells", b"\0\0\0\2")]),
        ("/reserved-memory/buf@50000000", [("reg", struct.pack(">QQ", 0x5000_0000, 0x1000))]),
        ("/chosen", [("kaslr-seed", bytes(8))]),
    ], reservations=[(0x4f00_0000, 0x1000)])
    f, chosen = chosen_of(data)
    assert names(chosen) == ["bootargs", "kaslr-seed"]
    assert f.find("/reserved-memory/buf@50000000") is not None
    assert f.reservations == [(0x4f00_0000, 0x1000)]
    with pytest.raises(FdtError):
        boot_dtb(BANKS, "", extra_nodes=[("/no/such", [])])


# ------------------------------------------------------------------ A29–A36


def test_a29_room_is_totalsize_plus_cmdline_plus_4096() -> None:
    """ARCH A29/A18: the new tree must fit (boot totalsize + strlen(cmdline) + 4096);
    otherwise FdtError (EINVAL for the loader)."""
    boot = boot_dtb(BANKS, "console=ttyAMA0")
    limit = len(boot) + len("a") + FDT_EXTRA_SPACE
    best = None
    for n in range(100, 400):
        ranges = [(0x1000 * (i + 1), 0x1000) for i in range(n)]
        try:
            out = kexec(boot, cmdline="a", elfcorehdr=(0x7F00_0000, 0x1000),
                        usable_ranges=ranges)
        except FdtError as exc:
            assert exc.code == "NOSPACE"
            break
        best = out
    else:
        pytest.fail("never ran out of room")
    assert best is not None
    assert len(best) <= limit < len(best) + 16 + 32  # one more pair would not fit


def test_a29_room_checked_at_every_edit() -> None:
    """ARCH A29: libfdt refuses the edit that overflows the buffer.  Here the new
    ``bootargs`` overflows it; deleting ``kaslr-seed`` afterwards (A35, RNG not ready)
    would have brought the finished tree back under the limit, but comes too late."""
    boot = boot_dtb(BANKS, "", extra_nodes=[
        ("/chosen", [("kaslr-seed", bytes(8)), ("linux,booted-from-kexec", b"")])])
    cmdline = "a" * 64           # bootargs grows by exactly the 64 bytes the buffer adds
    limit = len(boot) + len(cmdline) + FDT_EXTRA_SPACE
    last = None
    for n in range(150, 400):
        ranges = [(0x1000 * (i + 1), 0x1000) for i in range(n)]
        try:
            out = kexec(boot, cmdline=cmdline, rng_seed=None,
                        elfcorehdr=(0x7F00_0000, 0x1000), usable_ranges=ranges)
        except FdtError as exc:
            assert exc.code == "NOSPACE"
            break
        last = out
    else:
        pytest.fail("never ran out of room")
    assert last is not None
    _, chosen = chosen_of(last)
    assert "kaslr-seed" not in names(chosen)
    # the refused tree, finished, is the last one plus one 16-byte pair: it would fit
    assert len(last) + 16 <= limit


def test_a30_boot_dtb_reservation_removed() -> None:
    """ARCH A30: the reservation entry exactly covering the boot DTB goes; others stay."""
    # the entry must cover (addr, totalsize): build once to learn the size
    probe = boot_dtb(BANKS, "x", reservations=[(0x4f00_0000, 0x1000), (0x4f00_0000, 1)])
    size = len(probe)
    boot = boot_dtb(BANKS, "x", reservations=[(0x4f00_0000, 0x1000), (0x4f00_0000, size)])
    assert len(boot) == size
    out = parse_kexec_dtb(kexec(boot, boot_dtb_addr=0x4f00_0000))
    assert out["reservations"] == [(0x4f00_0000, 0x1000)]
    out = parse_kexec_dtb(kexec(boot, boot_dtb_addr=0x4e00_0000))
    assert out["reservations"] == [(0x4f00_0000, 0x1000), (0x4f00_0000, size)]
    out = parse_kexec_dtb(kexec(boot))
    assert len(out["reservations"]) == 2


def test_a30_chosen_created_when_missing() -> None:
    """ARCH A30: /chosen is created under the root (libfdt: as its first child)."""
    f = Fdt.from_bytes(boot_dtb(BANKS, "x"))
    chosen = f.find("/chosen")
    assert chosen is not None
    f.del_node(chosen)
    out = Fdt.from_bytes(kexec(f.pack(), cmdline="new"))
    assert out.root.children[0].name == "chosen"
    assert out.getprop_string(out.root.children[0], "bootargs") == "new"


def test_a31_old_crash_properties_deleted() -> None:
    """ARCH A31: linux,elfcorehdr and linux,usable-memory-range are removed."""
    boot = boot_dtb(BANKS, "x", extra_nodes=[("/chosen", [
        ("linux,elfcorehdr", struct.pack(">QQ", 1, 2)),
        ("linux,usable-memory-range", struct.pack(">QQ", 3, 4))])])
    _, chosen = chosen_of(kexec(boot))
    assert not chosen.has_prop("linux,elfcorehdr")
    assert not chosen.has_prop("linux,usable-memory-range")


def test_a32_old_initrd_reservation_exact_then_rounded() -> None:
    """ARCH A32: the running kernel's initrd reservation (start, end - start) is
    deleted, or else (start, align_up(end - start, PAGE))."""
    start, length = INITRD
    rounded = (length + 4095) & ~4095
    for entry in [(start, length), (start, rounded)]:
        boot = boot_dtb(BANKS, "x", initrd=INITRD,
                        reservations=[(0x4f00_0000, 0x1000), entry])
        assert parse_kexec_dtb(kexec(boot))["reservations"] == [(0x4f00_0000, 0x1000)]
    # both present: only the exact one goes
    boot = boot_dtb(BANKS, "x", initrd=INITRD,
                    reservations=[(start, rounded), (start, length)])
    assert parse_kexec_dtb(kexec(boot))["reservations"] == [(start, rounded)]
    # unrelated sizes stay
    boot = boot_dtb(BANKS, "x", initrd=INITRD, reservations=[(start, rounded + 4096)])
    assert parse_kexec_dtb(kexec(boot))["reservations"] == [(start, rounded + 4096)]


def test_a32_old_initrd_32bit_cells() -> None:
    """ARCH A32: the old values are read with of_read_number (len / 4 cells)."""
    boot = boot_dtb(BANKS, "x", extra_nodes=[("/chosen", [
        ("linux,initrd-start", struct.pack(">I", 0x4800_0000)),
        ("linux,initrd-end", struct.pack(">I", 0x4800_2000))])],
        reservations=[(0x4800_0000, 0x2000)])
    assert parse_kexec_dtb(kexec(boot))["reservations"] == []


def test_a32_initrd_start_without_end_is_an_error() -> None:
    """ARCH A32/A18: linux,initrd-start without linux,initrd-end → FdtError (EINVAL)."""
    boot = boot_dtb(BANKS, "x", extra_nodes=[("/chosen", [
        ("linux,initrd-start", struct.pack(">Q", 0x4800_0000))])])
    with pytest.raises(FdtError):
        kexec(boot)


def test_a33_new_initrd_properties_and_reservation() -> None:
    """ARCH A33: initrd-start = address, initrd-end = address + length (exclusive, not
    rounded), both big-endian u64; reservation (address, length) appended."""
    boot = boot_dtb(BANKS, "x", reservations=[(0x4f00_0000, 0x1000)])
    addr, length = 0x5000_0000, 0x1234
    f, chosen = chosen_of(kexec(boot, initrd=(addr, length)))
    start = chosen.getprop("linux,initrd-start")
    end = chosen.getprop("linux,initrd-end")
    assert start == addr.to_bytes(8, "big")
    assert end == (addr + length).to_bytes(8, "big")
    assert f.reservations == [(0x4f00_0000, 0x1000), (addr, length)]
    assert parse_kexec_dtb(f.pack())["initrd"] == (addr, length)


def test_a33_old_initrd_properties_rewritten_in_place() -> None:
    """ARCH A33/A36: existing initrd properties keep their slots when rewritten."""
    boot = boot_dtb(BANKS, "x", initrd=INITRD)
    _, before = chosen_of(boot)
    assert names(before) == ["bootargs", "linux,initrd-start", "linux,initrd-end"]
    _, chosen = chosen_of(kexec(boot, initrd=(0x5000_0000, 0x1000), rng_seed=None))
    assert names(chosen) == ["linux,booted-from-kexec", "bootargs", "linux,initrd-start",
                             "linux,initrd-end"]


def test_a33_no_initrd_deletes_properties() -> None:
    """ARCH A33: without a new initrd both properties are deleted (and nothing is
    reserved); an address of 0 counts as none, as the kernel tests the address."""
    boot = boot_dtb(BANKS, "x", initrd=INITRD)
    for initrd in (None, (0, 0x1000)):
        f, chosen = chosen_of(kexec(boot, initrd=initrd))
        assert not chosen.has_prop("linux,initrd-start")
        assert not chosen.has_prop("linux,initrd-end")
        assert f.reservations == []


def test_a34_crash_properties_with_root_cells() -> None:
    """ARCH A34: linux,elfcorehdr + its reservation, linux,usable-memory-range for the
    crash region then the low region, encoded with the root's cells (2/2 here)."""
    boot = boot_dtb(BANKS, "x")
    hdr = (0x7F00_0000, 0x1000)
    ranges = [(0x7000_0000, 0x1000_0000), (0x2000_0000, 0x100_0000)]
    data = kexec(boot, initrd=(0x7E00_0000, 0x2000), elfcorehdr=hdr, usable_ranges=ranges)
    f, chosen = chosen_of(data)
    assert chosen.getprop("linux,elfcorehdr") == struct.pack(">QQ", *hdr)
    assert chosen.getprop("linux,usable-memory-range") == struct.pack(">4Q", *ranges[0],
                                                                      *ranges[1])
    assert f.reservations == [(0x7E00_0000, 0x2000), hdr]   # initrd first, then the header
    info = parse_kexec_dtb(data)
    assert info["elfcorehdr"] == hdr
    assert info["usable_memory_range"] == ranges


def test_a34_crash_cells_default_and_one_cell() -> None:
    """ARCH A34: cells come from the root: 2 and 1 when absent; 1/1 gives 8-byte pairs;
    a range that does not fit → FdtError."""
    def tree(cells: tuple[int, int] | None) -> bytes:
        f = Fdt()
        if cells:
            f.add_prop_last(f.root, "#address-cells", struct.pack(">I", cells[0]))
            f.add_prop_last(f.root, "#size-cells", struct.pack(">I", cells[1]))
        f.add_subnode_last(f.root, "chosen")
        return f.pack()

    _, chosen = chosen_of(kexec(tree(None), elfcorehdr=(0x7F00_0000, 0x1000),
                                usable_ranges=[(0x7000_0000, 0x1000_0000)]))
    assert chosen.getprop("linux,elfcorehdr") == struct.pack(">QI", 0x7F00_0000, 0x1000)
    assert chosen.getprop("linux,usable-memory-range") == struct.pack(">QI", 0x7000_0000,
                                                                      0x1000_0000)
    _, chosen = chosen_of(kexec(tree((1, 1)), elfcorehdr=(0x7F00_0000, 0x1000),
                                usable_ranges=[(0x7000_0000, 0x1000_0000)]))
    assert chosen.getprop("linux,elfcorehdr") == struct.pack(">II", 0x7F00_0000, 0x1000)
    with pytest.raises(FdtError):
        kexec(tree((1, 1)), elfcorehdr=(0x1_7F00_0000, 0x1000))


def test_a34_normal_image_ignores_usable_ranges() -> None:
    _, chosen = chosen_of(kexec(boot_dtb(BANKS, "x"), usable_ranges=[(0x1000, 0x1000)]))
    assert not chosen.has_prop("linux,usable-memory-range")
    assert not chosen.has_prop("linux,elfcorehdr")


def test_a35_bootargs_set_or_deleted() -> None:
    """ARCH A35: bootargs = the new command line; deleted when none is given."""
    boot = boot_dtb(BANKS, "old command line")
    f, chosen = chosen_of(kexec(boot, cmdline="new one"))
    assert f.getprop_string(chosen, "bootargs") == "new one"
    assert chosen.getprop("bootargs") == b"new one\0"
    _, chosen = chosen_of(kexec(boot, cmdline=None))
    assert not chosen.has_prop("bootargs")
    _, chosen = chosen_of(kexec(boot, cmdline=""))
    assert chosen.getprop("bootargs") == b"\0"
    _, chosen = chosen_of(kexec(boot, cmdline="cut\0here"))
    assert chosen.getprop("bootargs") == b"cut\0"


def test_a35_seeds_and_booted_from_kexec() -> None:
    """ARCH A35: kaslr-seed (8 bytes) and rng-seed (128 bytes) from the caller's RNG,
    old kaslr-seed replaced, empty linux,booted-from-kexec added."""
    boot = boot_dtb(BANKS, "x", extra_nodes=[("/chosen", [("kaslr-seed", b"\1" * 8)])])
    f, chosen = chosen_of(kexec(boot))
    assert chosen.getprop("kaslr-seed") == SEED[:8]
    assert chosen.getprop("rng-seed") == SEED[8:]
    assert len(chosen.getprop("kaslr-seed") or b"") == 8
    assert len(chosen.getprop("rng-seed") or b"") == 128
    assert chosen.getprop("linux,booted-from-kexec") == b""
    info = parse_kexec_dtb(f.pack())
    assert info["booted_from_kexec"] is True
    assert info["kaslr_seed"] == SEED[:8] and info["rng_seed"] == SEED[8:]
    # libfdt order: each new property became the first one
    assert names(chosen) == ["linux,booted-from-kexec", "rng-seed", "kaslr-seed", "bootargs"]


def test_a35_rng_not_ready() -> None:
    """ARCH A35: without RNG the old kaslr-seed is still deleted and none is added."""
    boot = boot_dtb(BANKS, "x", extra_nodes=[("/chosen", [("kaslr-seed", b"\1" * 8)])])
    _, chosen = chosen_of(kexec(boot, rng_seed=None))
    assert not chosen.has_prop("kaslr-seed")
    assert not chosen.has_prop("rng-seed")
    assert chosen.has_prop("linux,booted-from-kexec")
    with pytest.raises(ValueError):
        kexec(boot, rng_seed=b"short")


def test_a35_kexec_of_a_kexec_dtb_is_stable() -> None:
    """A second kexec from a kexec'd DTB rewrites in place, except kaslr-seed, which
    A35 deletes and re-creates (so it becomes the first property)."""
    first = kexec(boot_dtb(BANKS, "x"), initrd=(0x5000_0000, 0x1000))
    _, c1 = chosen_of(first)
    second = kexec(first, initrd=(0x5000_0000, 0x1000))
    _, c2 = chosen_of(second)
    assert names(c2) == ["kaslr-seed"] + [n for n in names(c1) if n != "kaslr-seed"]
    assert len(second) == len(first)
    assert parse_kexec_dtb(second)["reservations"] == [(0x5000_0000, 0x1000)]


def test_a36_packed_minimal_and_strings_appended() -> None:
    """ARCH A36: packed to minimum size; new names appended to the strings block;
    new reservations appended to the map."""
    boot = boot_dtb(BANKS, "x", reservations=[(0x4f00_0000, 0x1000)])
    data = kexec(boot, initrd=(0x5000_0000, 0x1000))
    h = fdt_header(data)
    assert h["totalsize"] == len(data)
    assert h["off_mem_rsvmap"] == 40
    assert h["off_dt_struct"] == 40 + 3 * 16
    assert h["off_dt_strings"] == h["off_dt_struct"] + h["size_dt_struct"]
    old = Fdt.from_bytes(boot).strings
    new = Fdt.from_bytes(data).strings
    assert new.startswith(old)
    assert new[len(old):] == (b"linux,initrd-start\0linux,initrd-end\0kaslr-seed\0"
                              b"rng-seed\0linux,booted-from-kexec\0")
    assert Fdt.from_bytes(data).pack() == data


def test_a18_malformed_boot_dtb() -> None:
    """ARCH A18: a malformed boot DTB → FdtError (EINVAL)."""
    boot = bytearray(boot_dtb(BANKS, "x"))
    boot[0] ^= 0xFF
    with pytest.raises(FdtError):
        kexec(bytes(boot))
    with pytest.raises(FdtError):
        parse_kexec_dtb(bytes(boot))


def test_parse_kexec_dtb_fields() -> None:
    data = kexec(boot_dtb([(0x4000_0000, 0x1000_0000)], "x"), cmdline="root=/dev/vda",
                 initrd=(0x4800_0000, 0x3000))
    info = parse_kexec_dtb(data)
    assert info["memory"] == [(0x4000_0000, 0x1000_0000)]
    assert info["bootargs"] == "root=/dev/vda"
    assert info["initrd"] == (0x4800_0000, 0x3000)
    assert info["reservations"] == [(0x4800_0000, 0x3000)]
    assert info["elfcorehdr"] is None
    assert info["usable_memory_range"] == []
    assert info["booted_from_kexec"] is True
    assert info["compatible"] == ["linux,dummy-virt"]
    boot_info = parse_kexec_dtb(boot_dtb(BANKS, "y"))
    assert boot_info["booted_from_kexec"] is False
    assert boot_info["kaslr_seed"] is None


def test_parse_kexec_dtb_bootargs_read_as_c_string() -> None:
    boot = boot_dtb(BANKS, "x", extra_nodes=[("/chosen", [("linux,initrd-start", bytes(8))])])
    f, chosen = chosen_of(boot)
    f.setprop(chosen, "bootargs", b"a\xffb\0junk\0")
    info = parse_kexec_dtb(f.pack())
    assert info["bootargs"] == "a\ufffdb"
    assert info["initrd"] is None  # start without end
    # the surrogate-escaped form of such bytes is written back byte for byte
    _, c2 = chosen_of(kexec(boot_dtb(BANKS, "x"), cmdline=b"a\xffb".decode("utf-8",
                                                                           "surrogateescape")))
    assert c2.getprop("bootargs") == b"a\xffb\0"


def test_fdt_copy_is_independent_of_the_tree_it_copies() -> None:
    """Fdt.copy: editing the copy (properties, nodes, reservations, new strings) leaves the
    original packing to the same bytes, and an unedited copy packs as the original."""
    blob = boot_dtb([(0x40000000, 0x4000000)], "console=ttyAMA0", initrd=(0x48000000, 4096))
    fdt = Fdt.from_bytes(blob)
    before = fdt.pack()
    twin = fdt.copy()
    assert twin.pack() == before
    chosen = twin.find("/chosen")
    assert chosen is not None
    twin.setprop(chosen, "bootargs", b"other\0")
    twin.setprop(chosen, "pykern,new-name", b"\1\2\3\4")
    twin.delprop(chosen, "linux,initrd-start")
    twin.add_subnode(twin.root, "extra")
    twin.reservations.append((0x1000, 0x1000))
    assert twin.pack() != before
    assert fdt.pack() == before and Fdt.from_bytes(blob).pack() == before


def test_a29_create_dtb_from_a_reparsed_or_remembered_boot_dtb_is_the_same() -> None:
    """ARCH A29: create_dtb opens the boot DTB; whether the parse is fresh or a copy of the
    one made for the same bytes earlier, the next kernel's DTB is byte for byte the same,
    and a malformed DTB is refused every time."""
    from pykern.arch.arm64 import dtb as dtb_mod
    blob = boot_dtb([(0x40000000, 0x8000000)], "a=b", initrd=(0x44000000, 8192))
    args = dict(cmdline="next=1", initrd=(0x45000000, 4096), rng_seed=bytes(range(136)))
    dtb_mod._PARSED.clear()
    fresh = create_dtb(blob, **args)          # type: ignore[arg-type]
    assert blob in dtb_mod._PARSED
    again = create_dtb(blob, **args)          # type: ignore[arg-type]
    crash = create_dtb(blob, cmdline=None, initrd=None, elfcorehdr=(0x46000000, 4096),
                       usable_ranges=[(0x46000000, 0x1000000)], rng_seed=None)
    assert again == fresh and create_dtb(blob, **args) == fresh      # type: ignore[arg-type]
    dtb_mod._PARSED.clear()
    assert create_dtb(blob, cmdline=None, initrd=None, elfcorehdr=(0x46000000, 4096),
                      usable_ranges=[(0x46000000, 0x1000000)], rng_seed=None) == crash
    bad = b"\0" * 64
    for _ in range(2):
        with pytest.raises(FdtError):
            create_dtb(bad, **args)               # type: ignore[arg-type]
    assert bad not in dtb_mod._PARSED
