"""``Machine``: RAM, a booted kernel's memory management, and everything on top.

A machine boots generation 0 in its constructor.  The boot follows MM Z0:
banks and ``mem=``, the running kernel's reservations, CMA areas, then
``crashkernel=``, zones, the release of free memory to the buddy allocator,
CMA activation, watermarks and device probe.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

from . import quirks as _quirks
from ._fast import get_memops
from .kernel.config import KernelConfig, kernel_config
from .kernel.dynamic_debug import DynamicDebug
from .kernel.params import BootParams, parse_boot_params
from .kernel.printk import KERN_INFO, KERN_NOTICE, KERN_WARNING, KernelLog
from .kernel.resource import IORESOURCE_SYSTEM_RAM, Resource
from .lib.cmdline import parse_size
from .mm import gfp as _gfp
from .mm.memblock import Memblock, subtract
from .mm.memory import PhysMem
from .mm.mmzone import (
    MAX_NR_ZONES, MAX_ORDER_NR_PAGES, PAGE_SHIFT, PAGE_SIZE, ZONE_DMA, ZONE_DMA32,
    ZONE_MOVABLE, ZONE_NORMAL, Zone, pageblock_nr_pages,
)
from .mm.page import PG_reserved, PG_valid, MemMap
from .mm.page_alloc import PageAlloc
from .mm.fail_page_alloc import fail_page_alloc_init
from .mm.cma import Cma, cma_activate_area, cma_declare_contiguous_nid
from .mm.rmap import Rmap
from .kernel.kexec.core import KImage
from .kernel.kexec.file import KexecArch, kexec_file_load
from .kernel.kexec.handover import next_kernel_info
from .kernel.kexec.reboot import KexecResult, crash_kexec, kernel_kexec
from .kernel.kexec.uapi import KEXEC_TYPE_CRASH
from .mm.mm_init import free_reserved_page
from .arch.arm64.machine_kexec import Arm64Kexec
from .arch.x86.machine_kexec_64 import X86Kexec
from .mm.task import Task
from .kernel.dma.contiguous import (
    dma_alloc_from_contiguous, dma_contiguous_reserve, dma_release_from_contiguous,
)

__all__ = ["Machine", "ARCHES"]

ARCHES = ("arm64", "x86_64")
#: ``Machine(version=...)``: the kernel release modelled and its UTS_RELEASE.
KERNEL_VERSIONS = {"6.17": "6.17.0-pykern", "6.18": "6.18.0-pykern"}
SZ_1M = 1 << 20
SZ_2M = 2 << 20
SZ_16M = 16 << 20
SZ_4G = 4 << 30

#: Physical address bits: arm64 defconfig's 48-bit PA, x86_64's MAX_PHYSMEM_BITS with
#: 5-level paging (the most a 6.18 kernel can address).
_PHYS_ADDR_BITS = {"arm64": 48, "x86_64": 52}

#: The running kernel's default image ranges (MM Z0.2).
_ARM64_IMAGE_SIZE = SZ_16M
_X86_IMAGE = (SZ_16M, SZ_16M)


def _parse_banks(ram: Any, arch: str) -> list[tuple[int, int]]:
    if isinstance(ram, (int, str)) and not isinstance(ram, bool):
        size = parse_size(ram, "ram")
        banks = [(0x4000_0000 if arch == "arm64" else 0, size)]
    elif isinstance(ram, Iterable):
        banks = []
        for k, bank in enumerate(ram):
            try:
                base, size = bank
            except (TypeError, ValueError):
                raise ValueError(f"ram bank {k}: {bank!r} is not a (base, size) pair") from None
            banks.append((parse_size(base, f"ram bank {k} base"),
                          parse_size(size, f"ram bank {k} size")))
    else:
        raise ValueError(f"ram: {ram!r} is neither a size nor a list of (base, size) banks")
    if not banks:
        raise ValueError("ram: no banks")
    for base, size in banks:
        if size == 0:
            raise ValueError(f"ram bank at {base:#x}: size 0")
        if base % PAGE_SIZE or size % PAGE_SIZE:
            raise ValueError(f"ram bank ({base:#x}, {size:#x}) is not page aligned")
        if base + size > 1 << _PHYS_ADDR_BITS[arch]:
            raise ValueError(f"ram bank ({base:#x}, {size:#x}) ends above the "
                             f"{_PHYS_ADDR_BITS[arch]}-bit physical address space of {arch}")
    banks.sort()
    for (b0, s0), (b1, _) in zip(banks, banks[1:]):
        if b0 + s0 > b1:
            raise ValueError(f"ram banks ({b0:#x}, {s0:#x}) and starting {b1:#x} overlap")
    return banks


_CMA_AREA_KEYS = ("name", "size", "base", "limit", "alignment", "order_per_bit", "fixed")


def _cma_area_args(k: int, spec: Any) -> dict[str, Any]:
    """Validate one ``Machine(cma_areas=...)`` entry."""
    if not isinstance(spec, dict):
        raise ValueError(f"cma_areas[{k}]: {spec!r} is not a dict")
    unknown = set(spec) - set(_CMA_AREA_KEYS)
    if unknown:
        raise ValueError(f"cma_areas[{k}]: unknown keys {sorted(unknown)}")
    if "size" not in spec:
        raise ValueError(f"cma_areas[{k}]: needs a size")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"cma_areas[{k}]: bad name {name!r}")
    opb = spec.get("order_per_bit", 0)
    if isinstance(opb, bool) or not isinstance(opb, int) or not 0 <= opb <= 10:
        raise ValueError(f"cma_areas[{k}]: order_per_bit {opb!r} must be an int in 0..10")
    return {
        "name": name,
        "size": parse_size(spec["size"], f"cma_areas[{k}] size"),
        "base": parse_size(spec.get("base", 0), f"cma_areas[{k}] base"),
        "limit": parse_size(spec.get("limit", 0), f"cma_areas[{k}] limit"),
        "alignment": parse_size(spec.get("alignment", 0), f"cma_areas[{k}] alignment"),
        "order_per_bit": opb,
        "fixed": bool(spec.get("fixed", False)),
    }


def _ranges(value: Any, what: str) -> list[tuple[int, int]]:
    out = []
    for k, item in enumerate(value):
        try:
            base, size = item
        except (TypeError, ValueError):
            raise ValueError(f"{what} {k}: {item!r} is not a (base, size) pair") from None
        out.append((parse_size(base, f"{what} {k} base"), parse_size(size, f"{what} {k} size")))
    return out


class _Halted:
    """Stands in for ``m.mm`` once the machine has halted."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the machine is halted: only phys_read/phys_write work")


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for b, e in sorted(ranges):
        if out and b <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((b, e))
    return out


class Machine:
    """An emulated machine running a Linux 6.17/6.18 memory model.

    Same arguments give the same machine, byte for byte.
    """

    def __init__(self, ram: Any = "1G", *, cmdline: str = "", arch: str = "arm64",
                 cpus: int = 4, seed: int = 0, devices: Sequence[Any] | None = None,
                 fixes: Any = (), extensions: bool | None = None,
                 reserved: Sequence[tuple[Any, Any]] | None = None,
                 cma_areas: Sequence[dict[str, Any]] = (), pcp: bool = False,
                 cpu_features: Iterable[str] | None = None, config: Any = None,
                 version: str = "6.17") -> None:
        """Boot generation 0.

        ``config``: Kconfig overrides (:mod:`pykern.kernel.config` lists the symbols and
        their distribution defaults); ``m.config`` is the resulting read-only mapping.

        ``version``: the kernel release modelled, ``"6.17"`` (default, the release that
        merged the kexec CMA patch) or ``"6.18"``.  The differences pykern models:

        - ``KEXEC_FILE_FLAGS``: 6.17 is 0x1F, so ``KEXEC_FILE_FORCE_DTB`` (0x20) gets
          EINVAL; 6.18 is 0x3F and accepts it.  FORCE_DTB hands the boot DTB to the next
          x86 kernel; pykern's x86 machines boot without one, so on 6.18 the flag is
          accepted and changes nothing (arm64 always passes a DTB and ignores it).
        - the release in ``/proc/version`` and the boot banner.

        The CMA follow-ups merged between 6.17 and 6.18 change nothing pykern can
        observe: "kexec_core: remove superfluous page offset handling in segment
        loading" and "kexec: remove unused code in kimage_load_cma_segment()" remove dead
        code; the arm64/riscv zero-initialised ``kexec_buf`` fixes affect no placement;
        the ``kimage_map_segment()`` CMA fix (6.19, 6.18.4 stable) matters only for IMA,
        which pykern does not model.
        """
        if arch not in ARCHES:
            raise ValueError(f"arch {arch!r} is not one of {', '.join(ARCHES)}")
        if not isinstance(version, str) or version not in KERNEL_VERSIONS:
            raise ValueError(f"version {version!r} is not one of "
                             f"{', '.join(map(repr, KERNEL_VERSIONS))}")
        self.config: KernelConfig = kernel_config(arch, config)
        nr_cpus = self.config["NR_CPUS"]
        if isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= nr_cpus:
            raise ValueError(f"cpus {cpus!r} must be an int in 1..{nr_cpus} (CONFIG_NR_CPUS)")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed {seed!r} must be an int")
        if pcp:
            raise ValueError("pcp=True: per-CPU page lists (MM A13) are not modelled yet")
        if extensions is None and os.environ.get("PYKERN_NO_EXTENSIONS") == "1":
            extensions = False
        self.arch = arch
        #: ``Machine(version=...)``, e.g. "6.17".
        self.kernel_version = version
        self.cpus = cpus
        self.seed = seed
        self.extensions = extensions
        self.memops = get_memops(extensions)
        self.fixes = _quirks.parse_fixes(fixes)
        self.pcp = pcp
        self.banks = _parse_banks(ram, arch)
        self.reserved_arg = None if reserved is None else _ranges(reserved, "reserved range")
        self.cma_areas_arg = [_cma_area_args(k, a) and a for k, a in enumerate(cma_areas)]
        self.cpu_features = cpu_features
        self.boot_params: BootParams = parse_boot_params(
            cmdline, dynamic_debug=self.config["DYNAMIC_DEBUG"])
        self.physmem = PhysMem(self.banks, self.memops)
        #: ``m.ram``: the RAM buffer itself (writable, buffer protocol).
        self.ram = self.physmem.buf
        self.generation = 0
        self._handover: dict[str, Any] | None = None
        self.halted = False
        self.copy_ns = 400
        self.crash_kernel = False
        self.devices: dict[str, Any] = {}
        #: GIC-T9/N2: the EFI memreserve list; it survives kexec like the EFI table does.
        self.efi_memreserve: list[tuple[int, int]] = []
        for dev in devices or ():
            name = getattr(dev, "name", None)
            if not isinstance(name, str) or not hasattr(dev, "probe"):
                raise ValueError(f"devices: {dev!r} is not a pykern device")
            if name in self.devices:
                raise ValueError(f"devices: two devices are named {name!r}")
            self.devices[name] = dev
        features = ("granule_4k", "granule_16k", "granule_64k", "mixed_endian")
        if cpu_features is None:
            self.arm64_cpu_features = frozenset(features)
        else:
            chosen = frozenset(cpu_features)
            unknown = chosen - set(features)
            if unknown:
                raise ValueError(f"cpu_features: unknown {sorted(unknown)} (known: "
                                 f"{', '.join(features)})")
            self.arm64_cpu_features = chosen
        self.kexec_arch: KexecArch = Arm64Kexec() if arch == "arm64" else X86Kexec()
        attached = []
        try:
            for dev in self.devices.values():
                dev.attach(self)
                attached.append(dev)
        except ValueError:
            for dev in attached:          # a refused machine keeps none of its devices
                dev.machine = None
            raise
        self._boot(first=True)

    # ---------------------------------------------------------------- boot
    def _boot(self, first: bool) -> None:
        bp = self.boot_params
        self.log = KernelLog()
        self.memblock = mb = Memblock()
        handover = self._handover
        for base, size in (handover["memory"] if handover else self.banks):
            mb.memblock_add(base, size)
        self._apply_mem_limit(bp.mem)
        if not mb.memory:
            raise ValueError(f"mem={bp.mem}: leaves no memory")
        self.log.printk(KERN_NOTICE, self.linux_banner.rstrip("\n"))
        self.log.printk(KERN_NOTICE, f"Kernel command line: {bp.cmdline}")
        for text in bp.setup_warnings:  # __setup handlers refusing their value
            self.log.printk(KERN_WARNING, text)
        if bp.unknown:                  # print_unknown_bootoptions
            self.log.printk(KERN_NOTICE, f'Unknown kernel command line parameters '
                                         f'"{bp.unknown}", will be passed to user space.')
        #: ``argv_init`` / ``envp_init``: what init would be started with.
        self.init_argv: list[str] = list(bp.init_argv)
        self.init_envp: list[str] = list(bp.init_envp)
        self.kernel_image = self._reserve_kernel_image()
        self.crashk_res: tuple[int, int] | None = None
        if handover:
            # GIC-N2: efi_init() parses the EFI configuration tables in setup_arch(), and
            # efi_config_parse_tables() reserves the LINUX_EFI_MEMRESERVE entries in memblock
            # there, before bootmem_init() places the CMA areas and the crash kernel.
            for base, size in self.efi_memreserve:
                mb.memblock_reserve(base, size)
        self._reserve_cma_areas()
        self._reserve_crashkernel()
        self._init_zones()
        #: lib/fault-inject.c state of this boot: the tasks' fail-nth and make-it-fail.
        self.fault_inject = fail_page_alloc_init(self)
        self.rmap = Rmap(self.mm.mem_map.base_pfn, self.mm.mem_map.nr_slots)
        self.tasks: dict[int, Task] = {}
        self._next_pid = 1
        self._memblock_free_all(clear=False)
        self._activate_cma_areas()
        mm = self.mm
        mm.init_per_zone_wmark_min()
        self.tainted = 0
        self.kexec_load_disabled = 0
        self.kexec_load_limit_reboot = -1
        self.kexec_load_limit_panic = -1
        self._apply_boot_sysctls()
        mm.set_mobility_grouping()
        self.vm_stat_threshold = self._calculate_threshold()
        self._log_memory_line()
        self.kexec_image: KImage | None = None
        self.kexec_crash_image: KImage | None = None
        self.kexec_file_dbg_print = False
        # dynamic_debug_init, then the dyndbg boot parameters (lib/dynamic_debug.c).
        self.dynamic_debug = DynamicDebug(self.arch, self.config["DYNAMIC_DEBUG"])
        for module, query in bp.dyndbg:
            self.dynamic_debug.exec_queries(self.log, query, module)
        self.kexec_rng = random.Random(f"pykern-kexec-{self.seed}-{self.generation}")
        self._boot_dtb: bytes | None = handover.get("dtb") if handover else None
        self.kexec_in_progress = False
        # GIC-B1: irqchips probe early in start_kernel, long before the initramfs is
        # unpacked and its memory freed.
        for dev in self.devices.values():
            dev.probe(self)
        if handover and handover.get("initrd"):
            self._free_initrd_mem(*handover["initrd"])

    def _free_initrd_mem(self, start: int, size: int) -> None:
        """The initrd's pages go to the buddy allocator at the end of boot (MM Z0.3)."""
        lo = start & ~(PAGE_SIZE - 1)
        hi = (start + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        self.memblock.memblock_phys_free(lo, hi - lo)
        for b, e in self._clip_to_memory(lo, hi):
            for pfn in range(b >> PAGE_SHIFT, e >> PAGE_SHIFT):
                free_reserved_page(self.mm, pfn)
        self.log.info(f"Freeing initrd memory: {(hi - lo) >> 10}K")

    def _apply_mem_limit(self, limit: int | None) -> None:
        """``mem=`` as ``arm64_memblock_init`` and x86's ``parse_memopt`` apply it (MM Z0.1):
        arm64 keeps the first ``mem`` bytes, x86_64 what lies below it."""
        if limit is None:
            return
        mb = self.memblock
        if self.arch == "x86_64":
            cut = limit
        else:
            left, cut = limit, mb.memblock_end_of_DRAM()
            for b, e in mb.memory:
                if e - b >= left:
                    cut = b + left
                    break
                left -= e - b
        cut &= ~(PAGE_SIZE - 1)
        end = mb.memblock_end_of_DRAM()
        if cut < end:
            mb.memblock_remove(cut, end - cut)

    def _clip_to_memory(self, base: int, end: int) -> list[tuple[int, int]]:
        return [(max(b, base), min(e, end)) for b, e in self.memblock.memory
                if min(e, end) > max(b, base)]

    def _reserve_kernel_image(self) -> tuple[int, int] | None:
        """The running kernel's memblock reservations, as ``arm64_memblock_init`` and x86's
        ``early_reserve_memory``/``reserve_real_mode`` make them (MM Z0.2): the kernel (and
        on x86_64 the first MiB); a kexec'd generation reserves what the load passed
        (Z0.3)."""
        mb = self.memblock
        handover = self._handover
        if handover is not None:
            for base, end in handover["reserve"]:
                for b, e in self._clip_to_memory(base, end):
                    mb.memblock_reserve(b, e - b)
            kernel: tuple[int, int] = handover["kernel"]
            return kernel
        if self.reserved_arg is not None:
            for base, size in self.reserved_arg:
                for b, e in self._clip_to_memory(base, base + size):
                    mb.memblock_reserve(b, e - b)
            return None
        if self.arch == "arm64":
            image = (self.banks[0][0], self.banks[0][0] + _ARM64_IMAGE_SIZE)
            ranges = [image]
        else:
            image = (_X86_IMAGE[0], _X86_IMAGE[0] + _X86_IMAGE[1])
            ranges = [(0, SZ_1M), image]
        for base, end in ranges:
            for b, e in self._clip_to_memory(base, end):
                mb.memblock_reserve(b, e - b)
        clipped = self._clip_to_memory(*image)
        if not clipped:
            return None
        return clipped[0][0], clipped[-1][1]

    def _reserve_cma_areas(self) -> None:
        """The CMA reservations of ``bootmem_init``/``setup_arch`` (MM Z0.4): the default area
        (D3), then ``cma_areas=`` in order (CMA2)."""
        self.cma_areas: list[Cma] = []
        self.dma_contiguous_default_area: Cma | None = None
        dma_contiguous_reserve(self, self._arch_dma_limit())
        for k, spec in enumerate(self.cma_areas_arg):
            args = _cma_area_args(k, spec)
            cma_declare_contiguous_nid(self, args["base"], args["size"], args["limit"],
                                       args["alignment"], args["order_per_bit"],
                                       bool(args["fixed"]), args["name"])

    def _activate_cma_areas(self) -> None:
        """``cma_init_reserved_areas`` (MM CMA5): activate every declared area in order."""
        for cma in self.cma_areas:
            cma_activate_area(self, cma)

    def _arch_dma_limit(self) -> int:
        """Top of ZONE_DMA on arm64 / of directly mapped RAM on x86_64."""
        end = self.memblock.memblock_end_of_DRAM()
        if self.arch == "arm64":
            start = self.memblock.memblock_start_of_DRAM()
            return end if start >= SZ_4G else min(end, SZ_4G)
        return end

    def _reserve_crashkernel(self) -> None:
        """``reserve_crashkernel_generic`` (MM Z0.5): a fixed ``crashkernel=size@base``
        range, or the highest aligned free range below the limit; failure only logs."""
        ck = self.boot_params.crashkernel
        if ck is None:
            return
        size, base = ck
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        mb = self.memblock
        if base is not None:
            if (mb.is_region_memory(base, size) and not mb.is_region_reserved(base, size)):
                found: int | None = base
            else:
                found = None
                self.log.warn(f"crashkernel reservation failed - memory is in use.")
        else:
            align = SZ_2M if self.arch == "arm64" else SZ_16M
            limit = self._arch_dma_limit() if self.arch == "arm64" else SZ_4G
            found = mb.find_in_range(size, align, 0, limit)
            if found is None:
                self.log.warn(f"cannot allocate crashkernel (size:{size:#x})")
        if found is None:
            return
        mb.memblock_reserve(found, size)
        self.crashk_res = (found, found + size)
        self.log.info(f"crashkernel reserved: 0x{found:016x} - 0x{found + size:016x} "
                      f"({size >> 20} MB)")

    def _zone_limits(self) -> list[tuple[int, int]]:
        """The zone limits ``zone_sizes_init`` sets (MM Z1): [start, end) physical bounds of
        DMA, DMA32, Normal."""
        start = self.memblock.memblock_start_of_DRAM()
        end = self.memblock.memblock_end_of_DRAM()
        if self.arch == "x86_64":
            dma, dma32 = SZ_16M, SZ_4G
        else:
            dma = end if start >= SZ_4G else SZ_4G
            dma32 = dma
        lo = [start, max(start, min(dma, end)), max(start, min(dma32, end))]
        hi = [lo[1], lo[2], end]
        return list(zip(lo, hi))

    def _movable_start(self, zones: list[tuple[int, int]]) -> int | None:
        """``find_zone_movable_pfns_for_nodes`` (MM Z2): where ZONE_MOVABLE starts in the
        highest populated zone."""
        bp = self.boot_params
        if bp.movablecore is None and bp.kernelcore is None:
            return None
        top_lo, top_hi = next((z for z in reversed(zones) if z[1] > z[0]))
        present = sum(e - b for b, e in self.memblock.memory)
        if bp.movablecore is not None:
            kind, v = bp.movablecore
            movable = present * v // 100 if kind == "percent" else v
        else:
            assert bp.kernelcore is not None
            kind, v = bp.kernelcore
            kernel = present * v // 100 if kind == "percent" else v
            movable = present - kernel
        align = MAX_ORDER_NR_PAGES * PAGE_SIZE
        start = (top_hi - max(0, movable) + align - 1) // align * align
        if start >= top_hi:
            return None
        return max(start, top_lo)

    def _init_zones(self) -> None:
        """Zones, memmap, present pages (MM Z1, Z2, Z5)."""
        mb = self.memblock
        limits = self._zone_limits()
        movable = self._movable_start(limits)
        spans = [(b >> PAGE_SHIFT, e >> PAGE_SHIFT) for b, e in limits]
        if movable is not None:
            top = max(i for i, (b, e) in enumerate(spans) if e > b)
            mov_pfn = movable >> PAGE_SHIFT
            spans.append((mov_pfn, spans[top][1]))
            spans[top] = (spans[top][0], mov_pfn)
        else:
            spans.append((0, 0))
        zones = []
        for idx, (s, e) in enumerate(spans):
            zone = Zone(idx, s, e) if e > s else Zone(idx, 0, 0)
            zones.append(zone)
        first = mb.memblock_start_of_DRAM() >> PAGE_SHIFT
        last = mb.memblock_end_of_DRAM() >> PAGE_SHIFT
        mem_map = MemMap(first, last)
        marker = bytes([PG_valid | PG_reserved])
        for b, e in mb.memory:
            i, j = (b >> PAGE_SHIFT) - mem_map.base_pfn, (e >> PAGE_SHIFT) - mem_map.base_pfn
            mem_map.flags[i:j] = marker * (j - i)
            for zone in zones:
                lo = max(zone.zone_start_pfn, b >> PAGE_SHIFT)
                hi = min(zone.zone_end_pfn, e >> PAGE_SHIFT)
                if hi > lo:
                    zone.present_pages += hi - lo
        # Pageblocks start Movable (MM Z3).
        mem_map.pageblock_flags[:] = b"\x01" * len(mem_map.pageblock_flags)
        self.zones = zones
        self.mm = PageAlloc(mem_map, zones, self.log, self.physmem.clear_pages, arch=self.arch,
                            init_on_alloc=self._init_on("alloc"),
                            init_on_free=self._init_on("free"))
        self.mm.totalcma_pages = sum(cma.count for cma in self.cma_areas)
        self.log.info("Zone ranges:")
        for zone in zones[:ZONE_MOVABLE]:
            if zone.spanned_pages:
                self.log.info(f"  {zone.name:<8} [mem 0x{zone.zone_start_pfn << PAGE_SHIFT:016x}"
                              f"-0x{(zone.zone_end_pfn << PAGE_SHIFT) - 1:016x}]")
            else:
                self.log.info(f"  {zone.name:<8} empty")
        self.log.info("Movable zone start for each node")
        if zones[ZONE_MOVABLE].spanned_pages:
            self.log.info(f"  Node 0: 0x{zones[ZONE_MOVABLE].zone_start_pfn << PAGE_SHIFT:016x}")
        self.log.info("Early memory node ranges")
        for b, e in mb.memory:
            self.log.info(f"  node   0: [mem 0x{b:016x}-0x{e - 1:016x}]")
        self.log.info(f"Initmem setup node 0 [mem 0x{mb.memblock_start_of_DRAM():016x}-"
                      f"0x{mb.memblock_end_of_DRAM() - 1:016x}]")

    def _init_on(self, which: str) -> bool:
        """The ``init_on_alloc``/``init_on_free`` static keys (MM P8): ``init_on_<which>=`` if
        given, else CONFIG_INIT_ON_<WHICH>_DEFAULT_ON."""
        value: bool | None = getattr(self.boot_params, f"init_on_{which}")
        if value is None:
            return bool(self.config[f"INIT_ON_{which.upper()}_DEFAULT_ON"])
        return value

    def _memblock_free_all(self, clear: bool) -> None:
        """``memblock_free_all`` (MM Z4): every free memblock range to the buddy allocator,
        ascending."""
        for b, e in self.memblock.for_each_free_mem_range():
            s = (b + PAGE_SIZE - 1) >> PAGE_SHIFT
            t = e >> PAGE_SHIFT
            if t > s:
                self.mm.release_free_range(s, t, clear)

    def _apply_boot_sysctls(self) -> None:
        from .fs import write_sysctl
        for name, value in self.boot_params.sysctl_vm:
            try:
                write_sysctl(self, f"vm/{name}", value)
            except OSError:
                raise ValueError(f"sysctl.vm.{name}={value}: invalid value") from None
        for name, value in self.boot_params.sysctl_kernel:
            try:
                write_sysctl(self, f"kernel/{name}", value)
            except OSError:
                raise ValueError(f"sysctl.kernel.{name}={value}: invalid value") from None
        for param in self.boot_params.ignored_sysctls:
            self.log.printk(KERN_WARNING, f"pykern: {param} is not modelled; ignored")

    def _calculate_threshold(self) -> list[int]:
        """``calculate_normal_threshold`` (MM T3.5): each zone's vm stats threshold, once at
        boot."""
        return [min(125, 2 * self.cpus.bit_length()
                    * (1 + (z.managed_pages >> 15).bit_length())) for z in self.zones]

    def _log_memory_line(self) -> None:
        present = sum(z.present_pages for z in self.zones)
        cma = self.mm.totalcma_pages
        free = self.mm.nr_free_pages() - sum(z.nr_free_cma for z in self.zones)
        managed = sum(z.managed_pages for z in self.zones) - cma
        reserved = present - managed - cma
        self.log.info(f"Memory: {free * 4}K/{present * 4}K available ("
                      f"{reserved * 4}K reserved, {cma * 4}K cma-reserved)")

    # ------------------------------------------------------------------ reboot
    def kernel_kexec(self) -> KexecResult:
        """``reboot(LINUX_REBOOT_CMD_KEXEC)`` (K16): into ``m.kexec_image``."""
        return kernel_kexec(self)

    def panic(self) -> KexecResult | None:
        """A kernel panic: boot the crash image (K17.2), or halt (K17.4)."""
        return crash_kexec(self)

    def _halt(self, why: str) -> None:
        """Halt the machine (K16.13): nothing runs any more; only physical RAM stays
        reachable."""
        self.log.printk(0, why)
        self.halted = True
        self._stub_halted()

    #: What a halted machine no longer answers (K16.13).
    _HALTED_CALLS = ("read", "write", "dmesg", "kexec_file_load", "kernel_kexec", "panic",
                     "new_task", "dma_alloc_from_contiguous", "dma_release_from_contiguous")

    def _stub_halted(self) -> None:
        def halted(*_: Any, **__: Any) -> Any:
            raise RuntimeError("the machine is halted: only phys_read/phys_write work")
        for name in self._HALTED_CALLS:
            setattr(self, name, halted)
        self.mm = _Halted()  # type: ignore[assignment]

    def _boot_next(self, handover: dict[str, Any]) -> None:
        """Boot the next generation after the jump (K16.13): same RAM, from what the load
        passed."""
        image = handover["image"]
        info = next_kernel_info(self, image)
        dyndbg = self.config["DYNAMIC_DEBUG"]
        try:
            self.boot_params = parse_boot_params(info["cmdline"], dynamic_debug=dyndbg)
        except ValueError as exc:
            info["cmdline_error"] = str(exc)
            self.boot_params = parse_boot_params("", dynamic_debug=dyndbg)
        self.generation += 1
        self.crash_kernel = image.image_type == KEXEC_TYPE_CRASH      # GIC-N4
        self._handover = info
        self.kexec_image = None
        self.kexec_crash_image = None
        self._boot(first=False)
        if "cmdline_error" in info:
            self.log.warn(f"pykern: ignoring a malformed command line: {info['cmdline_error']}")

    # ------------------------------------------------------------------ kexec
    @property
    def boot_dtb(self) -> bytes:
        """The device tree this generation booted with (rule ARCH S5), built on demand."""
        if self._boot_dtb is None:
            from .arch.arm64.dtb import boot_dtb
            self._boot_dtb = boot_dtb(self.banks, self.cmdline)
        return self._boot_dtb

    def kexec_file_load(self, kernel: bytes | None, initrd: bytes | None = None,
                        cmdline: str = "", flags: int = 0) -> None:
        """The ``kexec_file_load`` syscall (rules K1, K20); OSError(errno) on failure."""
        kexec_file_load(self, kernel, initrd, cmdline, flags)

    # ---------------------------------------------------------- tasks, DMA
    def new_task(self) -> Task:
        """A new user process with no memory."""
        task = Task(self, self._next_pid)
        self.tasks[task.pid] = task
        self.fault_inject.dup_task_struct(task.pid)
        self._next_pid += 1
        return task

    def dma_alloc_from_contiguous(self, dev: Any, count: int, align: int,
                                  no_warn: bool = False) -> Any:
        """``dma_alloc_from_contiguous`` (MM D4): ``count`` pages from ``dev``'s CMA area, the
        alignment capped at CONFIG_CMA_ALIGNMENT; a Page or None."""
        return dma_alloc_from_contiguous(self, dev, count, align, no_warn)

    def dma_release_from_contiguous(self, dev: Any, page: Any, count: int) -> bool:
        """``dma_release_from_contiguous`` (MM D5): ``cma_release`` on ``dev``'s area."""
        return dma_release_from_contiguous(self, dev, page, count)

    # --------------------------------------------------------------- views
    @property
    def cmdline(self) -> str:
        return self.boot_params.cmdline

    @property
    def linux_banner(self) -> str:
        """``linux_banner``: the boot banner and ``/proc/version`` (init/version.c)."""
        return (f"Linux version {KERNEL_VERSIONS[self.kernel_version]} (pykern@pykern) "
                f"(pykern) #1 SMP PREEMPT_DYNAMIC {self.arch}\n")

    def dmesg(self) -> list[tuple[int, str]]:
        """(log level, text) of every kernel message of this generation."""
        return self.log.lines()

    def read(self, path: str) -> str:
        """Kernel text of a procfs/sysfs/debugfs file (the MM T rules); FileNotFoundError."""
        from .fs import read_file
        return read_file(self, path)

    def write(self, path: str, text: str) -> None:
        """Write a procfs/sysfs/debugfs file; kernel refusals raise OSError(errno)."""
        from .fs import write_file
        write_file(self, path, text)

    def phys_read(self, addr: int, n: int) -> bytes:
        return self.physmem.read(addr, n)

    def phys_write(self, addr: int, data: bytes) -> None:
        self.physmem.write(addr, data)

    def iomem_resources(self) -> list[Resource]:
        """The ``iomem_resource`` tree (MM T6), rebuilt from the boot's reservations."""
        roots: list[Resource] = []
        named: list[tuple[int, int]] = []
        children: list[Resource] = []
        if self.kernel_image is not None:
            for name, b, e in self._image_pieces(*self.kernel_image):
                children.append(Resource(name, b, e - 1))
                if name != "reserved":
                    named.append((b, e))
        if self.crashk_res is not None:
            b, e = self.crashk_res
            children.append(Resource("Crash kernel", b, e - 1))
            named.append((b, e))
        if self.arch == "arm64":
            # GIC-T9: published tables show as reserved, merged like memblock merges them.
            pieces = _merge_ranges(list(self.memblock.reserved) +
                                   [(b, b + n) for b, n in self.efi_memreserve])
            for b, e in named:
                pieces = subtract(pieces, b, e)
            image_reserved = [c for c in children if c.name == "reserved"]
            children = [c for c in children if c.name != "reserved"]
            del image_reserved
            children += [Resource("reserved", b, e - 1) for b, e in pieces]
        for b, e in self.memblock.memory:
            ram = Resource("System RAM", b, e - 1, IORESOURCE_SYSTEM_RAM)
            for c in children:
                lo, hi = max(c.start, b), min(c.end, e - 1)
                if hi >= lo:
                    ram.insert(Resource(c.name, lo, hi))
            roots.append(ram)
        return roots

    def _image_pieces(self, s: int, e: int) -> list[tuple[str, int, int]]:
        if self.arch == "arm64":
            n = (e - s) >> PAGE_SHIFT
            c, r = 25 * n // 32, 3 * n // 32
            raw = [("Kernel code", s, s + (c << PAGE_SHIFT)),
                   ("reserved", s + (c << PAGE_SHIFT), s + ((c + r) << PAGE_SHIFT)),
                   ("Kernel data", s + ((c + r) << PAGE_SHIFT), e)]
        else:
            raw = [("Kernel code", s, s + 0x501258),
                   ("Kernel rodata", s + 0x600000, s + 0x6DB000),
                   ("Kernel data", s + 0x800000, s + 0x8E2A80),
                   ("Kernel bss", s + 0x9D1000, s + 0xE00000)]
        return [(name, max(b, s), min(t, e)) for name, b, t in raw if min(t, e) > max(b, s)]

    # ------------------------------------------------------------- snapshots
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole machine to ``path`` (:mod:`pykern.snapshot`); halted ones too."""
        from .snapshot import save
        save(self, path)

    @classmethod
    def restore(cls, path: str | os.PathLike[str]) -> Machine:
        """The machine ``path`` holds; ``ValueError`` (``SnapshotError``) for a file that is
        not a whole snapshot written by this pykern version."""
        from .snapshot import restore
        return restore(path)

    def fork(self) -> Machine:
        """An independent copy in memory: new RAM with the same bytes, same state."""
        from .snapshot import fork
        return fork(self)

    def __getstate__(self) -> dict[str, Any]:
        """The instance dict for a snapshot, without the stubs a halted machine holds."""
        state = self.__dict__.copy()
        if self.halted:
            for name in self._HALTED_CALLS + ("mm",):
                state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.halted:
            self._stub_halted()

    def __repr__(self) -> str:
        total = sum(size for _, size in self.banks)
        return (f"<Machine {self.arch} {total >> 20} MiB gen {self.generation} "
                f"cmdline={self.cmdline!r}>")


_ = (KERN_INFO, ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, MAX_NR_ZONES, pageblock_nr_pages, _gfp)
