"""The arm64 device trees: the boot DTB of the emulated machine (rule ARCH S5)
and the one kexec_file builds for the next kernel (rules ARCH A29–A36, the
kernel's ``of_kexec_alloc_and_setup_fdt`` followed by ``fdt_pack``).

Every failure is an :class:`~pykern.lib.fdt.FdtError`; the Image loader maps
it to EINVAL (rule ARCH A18).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from ...constants import PAGE_SIZE
from ...lib.fdt import FDT_RESERVE_ENTRY_SIZE, Fdt, FdtError, FdtNode, of_read_number

__all__ = [
    "FdtError", "boot_dtb", "create_dtb", "parse_kexec_dtb",
    "GICD_BASE", "GICD_SIZE", "GICR_BASE", "GICR_SIZE", "FDT_EXTRA_SPACE",
    "KASLR_SEED_SIZE", "RNG_SEED_SIZE", "DEFAULT_MODEL", "DEFAULT_COMPATIBLE",
]

_U64_MASK = (1 << 64) - 1

#: GICv3 distributor and redistributor frames of QEMU's virt machine
GICD_BASE = 0x08000000
GICD_SIZE = 0x10000
GICR_BASE = 0x080A0000
GICR_SIZE = 0xF60000

#: room added to the boot DTB's size for the kexec copy (``FDT_EXTRA_SPACE``)
FDT_EXTRA_SPACE = 0x1000
KASLR_SEED_SIZE = 8
RNG_SEED_SIZE = 128

DEFAULT_MODEL = "pykern arm64 virt"
DEFAULT_COMPATIBLE = "linux,dummy-virt"

# /chosen property names (drivers/of/kexec.c)
PROP_ELFCOREHDR = "linux,elfcorehdr"
PROP_USABLE_MEM = "linux,usable-memory-range"
PROP_INITRD_START = "linux,initrd-start"
PROP_INITRD_END = "linux,initrd-end"
PROP_BOOTARGS = "bootargs"
PROP_KASLR_SEED = "kaslr-seed"
PROP_RNG_SEED = "rng-seed"
PROP_BOOTED_FROM_KEXEC = "linux,booted-from-kexec"

ExtraNode = tuple[str, Sequence[tuple[str, bytes]]]


def _u32s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def _u64s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}Q", *values)


def _string(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def boot_dtb(banks: Sequence[tuple[int, int]], cmdline: str,
             initrd: tuple[int, int] | None = None,
             extra_nodes: Iterable[ExtraNode] = (), *,
             reservations: Iterable[tuple[int, int]] = (),
             model: str = DEFAULT_MODEL, boot_cpuid_phys: int = 0) -> bytes:
    """The DTB the emulated arm64 machine boots with (rule ARCH S5, [model]).

    Layout, in structure order: the root (``#address-cells = <2>``,
    ``#size-cells = <2>``, ``compatible = "linux,dummy-virt"``, ``model``),
    one ``memory@<base in hex>`` node per bank in the order given
    (``device_type = "memory"``, ``reg = <base size>`` in 2+2 cells), the
    GICv3 node ``intc@8000000`` and ``/chosen`` with ``bootargs`` (plus
    ``linux,initrd-start``/``linux,initrd-end`` as u64 when ``initrd`` =
    ``(address, length)`` is given; the end is exclusive).

    ``extra_nodes`` is a sequence of ``(path, props)``: the node at ``path``
    gets ``props`` appended in order (it is created as the last child of its
    parent when missing; the parent must exist). ``reservations`` fills the
    memory-reservation map (boot loaders such as U-Boot reserve the DTB and
    the initrd there). The result stays below 3 KiB for short command lines.
    """
    fdt = Fdt()
    fdt.boot_cpuid_phys = boot_cpuid_phys
    root = fdt.root
    fdt.add_prop_last(root, "#address-cells", _u32s(2))
    fdt.add_prop_last(root, "#size-cells", _u32s(2))
    fdt.add_prop_last(root, "compatible", _string(DEFAULT_COMPATIBLE))
    fdt.add_prop_last(root, "model", _string(model))
    for base, size in banks:
        mem = fdt.add_subnode_last(root, f"memory@{base:x}")
        fdt.add_prop_last(mem, "device_type", _string("memory"))
        fdt.add_prop_last(mem, "reg", _u64s(base, size))
    gic = fdt.add_subnode_last(root, f"intc@{GICD_BASE:x}")
    fdt.add_prop_last(gic, "compatible", _string("arm,gic-v3"))
    fdt.add_prop_last(gic, "reg", _u64s(GICD_BASE, GICD_SIZE, GICR_BASE, GICR_SIZE))
    fdt.add_prop_last(gic, "#interrupt-cells", _u32s(3))
    fdt.add_prop_last(gic, "interrupt-controller", b"")
    chosen = fdt.add_subnode_last(root, "chosen")
    fdt.add_prop_last(chosen, PROP_BOOTARGS, _string(cmdline))
    if initrd is not None:
        start, length = initrd
        fdt.add_prop_last(chosen, PROP_INITRD_START, _u64s(start))
        fdt.add_prop_last(chosen, PROP_INITRD_END, _u64s(start + length))
    for path, props in extra_nodes:
        node = fdt.find(path)
        if node is None:
            parent_path, _, name = path.rstrip("/").rpartition("/")
            parent = fdt.find(parent_path or "/")
            if parent is None or not name:
                raise FdtError(f"cannot create {path!r}: no parent node", "NOTFOUND")
            node = fdt.add_subnode_last(parent, name)
        for name, value in props:
            fdt.add_prop_last(node, name, value)
    for addr, size in reservations:
        fdt.add_mem_rsv(addr, size)
    return fdt.pack()


#: What adding ``/chosen`` adds: FDT_BEGIN_NODE, "chosen" and its NUL, FDT_END_NODE.
_MAX_NEW_CHOSEN = 4 + 8 + 4


def _most_prop_adds(name: str, nbytes: int) -> int:
    """The most a ``setprop`` (or an ``appendprop`` of ``nbytes``) can add to an opened
    tree: a new property header, the value padded to 4 bytes, the name and its NUL
    appended to the strings block.  Rewriting a property in place adds less."""
    return 12 + ((nbytes + 3) & ~3) + len(name) + 1


def _find_and_del_mem_rsv(fdt: Fdt, start: int, size: int) -> bool:
    """``fdt_find_and_del_mem_rsv``: delete the first entry equal to
    (start, size); False (the kernel's -ENOENT) when there is none."""
    index = fdt.mem_rsv_index(start, size)
    if index is None:
        return False
    fdt.del_mem_rsv(index)
    return True


#: Boot DTBs parsed lately, by their bytes: a machine's loads, its twin's and the next
#: case's mode start from the same boot DTB.  Emptied when full.
_PARSED: dict[bytes, Fdt] = {}
_PARSED_MAX = 32


def _open_boot_dtb(data: bytes) -> Fdt:
    """``Fdt.from_bytes(data)``, from a copy of the tree parsed last time for the same
    bytes (a DTB is bytes: equal bytes parse to equal trees)."""
    if type(data) is not bytes:
        return Fdt.from_bytes(data)
    tree = _PARSED.get(data)
    if tree is None:
        tree = Fdt.from_bytes(data)       # raises for a malformed DTB: nothing is kept
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[data] = tree
    return tree.copy()


def create_dtb(boot_dtb: bytes, *, cmdline: str | None,
               initrd: tuple[int, int] | None,
               elfcorehdr: tuple[int, int] | None = None,
               usable_ranges: Iterable[tuple[int, int]] = (),
               rng_seed: bytes | None,
               boot_dtb_addr: int | None = None) -> bytes:
    """The packed DTB for the next kernel (rules ARCH A29–A36, in that order).

    :param boot_dtb: the DTB the running kernel booted with.
    :param cmdline: the new command line (without its NUL; text after an
        embedded NUL is ignored as ``strlen`` would); None deletes ``bootargs``.
    :param initrd: ``(address, length)`` of the new initrd segment, or None.
        An address of 0 counts as no initrd (the kernel tests the address).
    :param elfcorehdr: crash images only: ``(address, size)`` of the ELF core
        headers. Its presence makes this a crash dtb (A34).
    :param usable_ranges: crash images only: ``(start, size)`` of the crash
        region, then the low crash region if any (ignored for normal images).
    :param rng_seed: ``KASLR_SEED_SIZE + RNG_SEED_SIZE`` (136) random bytes:
        the first 8 become ``kaslr-seed``, the rest ``rng-seed``; None models
        an RNG that is not ready (neither property is added).
    :param boot_dtb_addr: physical address of the boot DTB, to drop the
        reservation entry ``(addr, totalsize)`` that covers it (A30).
    :raises FdtError: malformed boot DTB, ``linux,initrd-start`` without
        ``linux,initrd-end``, a range that does not fit the root's cells, or
        no room in the buffer of A29.
    """
    if rng_seed is not None and len(rng_seed) != KASLR_SEED_SIZE + RNG_SEED_SIZE:
        raise ValueError(f"rng_seed must be {KASLR_SEED_SIZE + RNG_SEED_SIZE} bytes, "
                         f"not {len(rng_seed)}")
    # A29: open into a buffer of totalsize + strlen(cmdline) + FDT_EXTRA_SPACE
    fdt = _open_boot_dtb(boot_dtb)
    boot_size = struct.unpack_from(">I", boot_dtb, 4)[0]
    text = None if cmdline is None else cmdline.split("\0", 1)[0]
    text_len = 0 if text is None else len(text.encode("utf-8", "surrogateescape"))
    bufsize = boot_size + text_len + FDT_EXTRA_SPACE

    def room() -> int:
        used = fdt.open_size() if checks else 0
        if used > bufsize:
            raise FdtError(f"new device tree needs {used} bytes, buffer has {bufsize}",
                           "NOSPACE")
        return used

    checks = True
    used = room()
    # Every later check passes when even the most the edits below can add fits: deletions
    # only shrink the tree, so each intermediate size stays under that total.  Then the
    # per-edit checks are left out; otherwise each is made as libfdt makes it.
    growth = _MAX_NEW_CHOSEN + _most_prop_adds(PROP_BOOTARGS, text_len + 1)
    if initrd is not None and initrd[0]:
        growth += (_most_prop_adds(PROP_INITRD_START, 8) + _most_prop_adds(PROP_INITRD_END, 8)
                   + FDT_RESERVE_ENTRY_SIZE)
    if elfcorehdr is not None:
        growth += _most_prop_adds(PROP_ELFCOREHDR, 16) + FDT_RESERVE_ENTRY_SIZE
        usable_ranges = list(usable_ranges)
        growth += len(usable_ranges) * _most_prop_adds(PROP_USABLE_MEM, 16)
    if rng_seed is not None:
        growth += (_most_prop_adds(PROP_KASLR_SEED, KASLR_SEED_SIZE)
                   + _most_prop_adds(PROP_RNG_SEED, RNG_SEED_SIZE))
    growth += _most_prop_adds(PROP_BOOTED_FROM_KEXEC, 0)
    checks = used + growth > bufsize
    # A30: the boot DTB's own reservation, then /chosen
    if boot_dtb_addr is not None:
        _find_and_del_mem_rsv(fdt, boot_dtb_addr, boot_size)
    chosen = fdt.find("/chosen")
    if chosen is None:
        chosen = fdt.add_subnode(fdt.root, "chosen")
        room()
    # A31
    fdt.delprop(chosen, PROP_ELFCOREHDR)
    fdt.delprop(chosen, PROP_USABLE_MEM)
    # A32: the running kernel's initrd reservation
    old_start = fdt.getprop(chosen, PROP_INITRD_START)
    if old_start is not None:
        start = of_read_number(old_start, len(old_start) // 4)
        old_end = fdt.getprop(chosen, PROP_INITRD_END)
        if old_end is None:
            raise FdtError(f"/chosen has {PROP_INITRD_START} but no {PROP_INITRD_END}",
                           "NOTFOUND")
        end = of_read_number(old_end, len(old_end) // 4)
        size = (end - start) & _U64_MASK
        if not _find_and_del_mem_rsv(fdt, start, size):
            rounded = ((size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) & _U64_MASK
            _find_and_del_mem_rsv(fdt, start, rounded)
    # A33
    if initrd is not None and initrd[0]:
        addr, length = initrd
        fdt.setprop_u64(chosen, PROP_INITRD_START, addr)
        room()
        fdt.setprop_u64(chosen, PROP_INITRD_END, (addr + length) & _U64_MASK)
        room()
        fdt.add_mem_rsv(addr, length)
        room()
    else:
        fdt.delprop(chosen, PROP_INITRD_START)
        fdt.delprop(chosen, PROP_INITRD_END)
    # A34
    if elfcorehdr is not None:
        addr, size = elfcorehdr
        fdt.appendprop_addrrange(fdt.root, chosen, PROP_ELFCOREHDR, addr, size)
        room()
        fdt.add_mem_rsv(addr, size)
        room()
        for start, size in usable_ranges:
            fdt.appendprop_addrrange(fdt.root, chosen, PROP_USABLE_MEM, start, size)
            room()
    # A35
    if text is not None:
        fdt.setprop_string(chosen, PROP_BOOTARGS, text)
        room()
    else:
        fdt.delprop(chosen, PROP_BOOTARGS)
    fdt.delprop(chosen, PROP_KASLR_SEED)
    if rng_seed is not None:
        fdt.setprop(chosen, PROP_KASLR_SEED, rng_seed[:KASLR_SEED_SIZE])
        room()
        fdt.setprop(chosen, PROP_RNG_SEED, rng_seed[KASLR_SEED_SIZE:])
        room()
    fdt.setprop_empty(chosen, PROP_BOOTED_FROM_KEXEC)
    room()
    # A36
    return fdt.pack()


def _memory_banks(fdt: Fdt) -> list[tuple[int, int]]:
    """``early_init_dt_scan_memory``: root children with ``device_type =
    "memory"`` and an available status; ``linux,usable-memory`` overrides
    ``reg``; zero-sized entries are skipped."""
    banks: list[tuple[int, int]] = []
    for node in fdt.root.children:
        dtype = node.getprop("device_type")
        if dtype is None or dtype.split(b"\0", 1)[0] != b"memory":
            continue
        status = node.getprop("status")
        if status is not None and status.split(b"\0", 1)[0] not in (b"okay", b"ok"):
            continue
        reg = node.getprop("linux,usable-memory")
        if reg is None:
            reg = node.getprop("reg")
        if reg is None:
            continue
        banks.extend((b, s) for b, s in fdt.decode_ranges(fdt.root, reg) if s)
    return banks


def _one_range(fdt: Fdt, value: bytes | None) -> tuple[int, int] | None:
    if value is None:
        return None
    ranges = fdt.decode_ranges(fdt.root, value)
    return ranges[0] if ranges else None


def parse_kexec_dtb(dtb: bytes) -> dict[str, Any]:
    """What the next kernel reads from the DTB it was handed.

    Keys: ``memory`` (list of ``(base, size)`` from the memory nodes),
    ``bootargs`` (str up to the first NUL, undecodable bytes replaced, or None), ``initrd`` (``(start, length)`` or None, from
    ``linux,initrd-start``/``-end``), ``reservations`` (the reservation map),
    ``elfcorehdr`` (``(address, size)`` or None), ``usable_memory_range``
    (list of ``(start, size)``), ``booted_from_kexec`` (bool), ``kaslr_seed``
    and ``rng_seed`` (bytes or None), ``model`` and ``compatible`` (root).
    Pairs are decoded with the root's cells (defaults 2 and 1).

    :raises FdtError: for a malformed DTB.
    """
    fdt = Fdt.from_bytes(dtb)
    chosen: FdtNode | None = fdt.find("/chosen")
    result: dict[str, Any] = {
        "memory": _memory_banks(fdt),
        "reservations": list(fdt.reservations),
        "bootargs": None, "initrd": None, "elfcorehdr": None,
        "usable_memory_range": [], "booted_from_kexec": False,
        "kaslr_seed": None, "rng_seed": None,
        "model": fdt.getprop_string(fdt.root, "model")
        if fdt.root.has_prop("model") else None,
        "compatible": fdt.getprop_strings(fdt.root, "compatible")
        if fdt.root.has_prop("compatible") else None,
    }
    if chosen is None:
        return result
    bootargs = chosen.getprop(PROP_BOOTARGS)
    if bootargs is not None:
        # read as C code does (up to the first NUL); bytes that are not UTF-8 are
        # replaced rather than refused, so a strange command line still boots
        result["bootargs"] = bootargs.split(b"\0", 1)[0].decode("utf-8", "replace")
    start = chosen.getprop(PROP_INITRD_START)
    end = chosen.getprop(PROP_INITRD_END)
    if start is not None and end is not None:
        s = of_read_number(start, len(start) // 4)
        e = of_read_number(end, len(end) // 4)
        result["initrd"] = (s, (e - s) & _U64_MASK)
    result["elfcorehdr"] = _one_range(fdt, chosen.getprop(PROP_ELFCOREHDR))
    usable = chosen.getprop(PROP_USABLE_MEM)
    if usable is not None:
        result["usable_memory_range"] = fdt.decode_ranges(fdt.root, usable)
    result["booted_from_kexec"] = chosen.has_prop(PROP_BOOTED_FROM_KEXEC)
    result["kaslr_seed"] = chosen.getprop(PROP_KASLR_SEED)
    result["rng_seed"] = chosen.getprop(PROP_RNG_SEED)
    return result
