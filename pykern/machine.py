"""``Machine``: the hardware, and the kernel running on it (``m.kernel``).

A machine is what survives a kexec: RAM (``m.ram``, ``m.physmem``) and its banks, the CPUs,
the devices, the seed, the firmware's choices (the kernel release and Kconfig it boots,
the EFI memreserve table) and the pykern switches (``fixes``, ``extensions``).  The running
kernel's state is ``m.kernel`` (:class:`~pykern.kernel.kernel.Kernel`), which
:func:`~pykern.init.main.start_kernel` builds afresh at every boot: the constructor boots
generation 0 and every reboot into a loaded image boots the next one on the same RAM
(MM Z0).  ``m.mm``, ``m.kexec_image``, ``m.tasks`` and the other names of the running
kernel are read-only views into ``m.kernel``.

A halted machine (K16.13, K17.4) answers only ``phys_read``/``phys_write``: the calls
that need a running kernel check the machine's state first (``RuntimeError``).
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from .constants import ARCHES
from . import quirks as _quirks
from ._fast import get_memops
from .errors import MachineHalted
from .init.main import start_kernel
from .init.version import KERNEL_VERSIONS, linux_banner
from .kernel.config import KernelConfig, kernel_config
from .kernel.fork import copy_process
from .kernel.kernel import Kernel
from .kernel.params import BootParams, parse_boot_params
from .kernel.resource import Resource, request_standard_resources
from .lib.cmdline import parse_size
from .mm.memblock import Memblock
from .mm.memory import PhysMem
from .mm.mmzone import PAGE_SIZE, Zone
from .mm.page_alloc import PageAlloc
from .mm.cma import Cma
from .kernel.kexec.core import KImage
from .kernel.kexec.file import KexecArch, kexec_file_load
from .kernel.kexec.handover import next_kernel_info
from .kernel.kexec.reboot import (KexecReboot, KexecResult, crash_kexec, kernel_kexec,
                                  kernel_kexec_stages)
from .kernel.kexec.uapi import KEXEC_TYPE_CRASH
from .arch.arm64.machine_kexec import Arm64Kexec
from .arch.x86.machine_kexec_64 import X86Kexec
from .mm.task import Task
from .kernel.dma.contiguous import dma_alloc_from_contiguous, dma_release_from_contiguous

if TYPE_CHECKING:
    from .kernel.printk import KernelLog

__all__ = ["Machine", "ARCHES"]


#: Physical address bits: arm64 defconfig's 48-bit PA, x86_64's MAX_PHYSMEM_BITS with
#: 5-level paging (the most a 6.18 kernel can address).
_PHYS_ADDR_BITS = {"arm64": 48, "x86_64": 52}


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
            if type(base) is not int or base < 0:      # parse_size's int case, inline
                base = parse_size(base, f"ram bank {k} base")
            if type(size) is not int or size < 0:
                size = parse_size(size, f"ram bank {k} size")
            banks.append((base, size))
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

#: ``Machine(cpu_features=...)``: the arm64 CPU features pykern knows; all by default.
_ARM64_CPU_FEATURE_NAMES = ("granule_4k", "granule_16k", "granule_64k", "mixed_endian")
_ARM64_CPU_FEATURES = frozenset(_ARM64_CPU_FEATURE_NAMES)


@functools.lru_cache(maxsize=16)
def _firmware_dtb(banks: tuple[tuple[int, int], ...], cmdline: str) -> bytes:
    """The arm64 boot DTB of ``banks`` and ``cmdline`` (bytes: machines with the same RAM
    and command line share one; a fuzz case boots several)."""
    from .arch.arm64.dtb import boot_dtb
    return boot_dtb(banks, cmdline)


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


_P = ParamSpec("_P")
_R = TypeVar("_R")
_HALTED = "the machine is halted: only phys_read/phys_write work"


def _running(method: Callable[Concatenate[Machine, _P], _R]
             ) -> Callable[Concatenate[Machine, _P], _R]:
    """The state check of the calls a halted machine refuses (K16.13, K17.4)."""
    @functools.wraps(method)
    def call(self: Machine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.halted:
            raise MachineHalted(_HALTED)
        return method(self, *args, **kwargs)
    return call


class Machine:
    """An emulated machine running a Linux 6.17/6.18 memory model.

    Same arguments give the same machine, byte for byte.
    """

    _kernel: Kernel

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
        #: The Kconfig of the kernels this machine boots (a firmware choice).
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
        #: ``Machine(reserved=...)``: replaces generation 0's boot reservations (MM Z0.2).
        self.reserved_arg = None if reserved is None else _ranges(reserved, "reserved range")
        #: ``Machine(cma_areas=...)``, checked: declared again by every boot (MM CMA2).
        self.cma_areas_arg = [_cma_area_args(k, a) for k, a in enumerate(cma_areas)]
        self.cpu_features = cpu_features
        boot_params = parse_boot_params(cmdline, dynamic_debug=self.config["DYNAMIC_DEBUG"])
        self.physmem = PhysMem(self.banks, self.memops)
        #: ``m.ram``: the RAM buffer itself (writable, buffer protocol).
        self.ram = self.physmem.buf
        #: Boots so far: 0 for the kernel the machine powered on with, +1 per kexec.
        self.generation = 0
        self.halted = False
        #: Emulated nanoseconds per hot-phase page (K16.12).
        self.copy_ns = 400
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
        if cpu_features is None:
            self.arm64_cpu_features = _ARM64_CPU_FEATURES
        else:
            chosen = frozenset(cpu_features)
            unknown = chosen - _ARM64_CPU_FEATURES
            if unknown:
                raise ValueError(f"cpu_features: unknown {sorted(unknown)} (known: "
                                 f"{', '.join(_ARM64_CPU_FEATURE_NAMES)})")
            self.arm64_cpu_features = chosen
        self.kexec_arch: KexecArch = Arm64Kexec() if arch == "arm64" else X86Kexec()
        attached = []
        try:
            for dev in self.devices.values():
                dev.attach(self)
                attached.append(dev)
            start_kernel(self, boot_params)
        except ValueError:
            for dev in attached:          # a refused machine keeps none of its devices
                dev.machine = None
            raise

    # ------------------------------------------------------------------ the kernel
    @property
    def kernel(self) -> Kernel:
        """The running kernel (:class:`~pykern.kernel.kernel.Kernel`), built afresh at every
        boot.  A halted machine runs none: ``RuntimeError``, the one state check every path
        into the kernel's state goes through (the machine's read-only views such as
        ``m.log`` or ``m.kexec_image`` still show what the last kernel left)."""
        if self.halted:
            raise MachineHalted(_HALTED)
        return self._kernel

    @kernel.setter
    def kernel(self, kernel: Kernel) -> None:
        self._kernel = kernel

    # ------------------------------------------------------------------ reboot
    @_running
    def kernel_kexec(self) -> KexecResult:
        """``reboot(LINUX_REBOOT_CMD_KEXEC)`` (K16): into ``m.kexec_image``."""
        return kernel_kexec(self)

    @_running
    def kernel_kexec_stages(self, *, checks: bool = True) -> KexecReboot:
        """``kernel_kexec`` (K16.1) one stage at a time, for benchmarks: the
        :class:`~pykern.kernel.kexec.reboot.KexecReboot` whose ``prepare()``,
        ``hot_phase()``, ``verify()``, ``boot_next()`` and ``finish()`` (or ``run()``) do what
        ``kernel_kexec()`` does.  OSError(EINVAL) when nothing is loaded, OSError(EBUSY)
        while another reboot is in progress.  ``checks=False`` leaves out pykern's own checks
        (arm64's ``verified``, the corruption scan)."""
        return kernel_kexec_stages(self, checks=checks)

    @_running
    def panic(self) -> KexecResult | None:
        """A kernel panic: boot the crash image (K17.2), or halt (K17.4)."""
        return crash_kexec(self)

    def machine_halt(self, why: str) -> None:
        """The CPUs stop for good (K16.13, K17.4): ``why`` is the kernel's last log line
        (KERN_EMERG); afterwards only physical RAM is reachable (``phys_read`` and
        ``phys_write``), every other call raises ``RuntimeError``."""
        self._kernel.log.printk(0, why)
        self.halted = True

    def boot_next(self, handover: dict[str, Any]) -> Kernel:
        """The jump into the next kernel (K16.13): a new generation on the same RAM and
        devices, booted from what the load handed over (``handover["image"]``, read back
        from RAM by :func:`~pykern.kernel.kexec.handover.next_kernel_info`).  A command
        line the next kernel cannot parse is dropped with a warning."""
        image = handover["image"]
        info = next_kernel_info(self, image)
        dyndbg = self.config["DYNAMIC_DEBUG"]
        try:
            boot_params = parse_boot_params(info["cmdline"], dynamic_debug=dyndbg)
        except ValueError as exc:
            info["cmdline_error"] = str(exc)
            boot_params = parse_boot_params("", dynamic_debug=dyndbg)
        self.generation += 1
        kernel = start_kernel(self, boot_params, info,
                              crash_kernel=image.image_type == KEXEC_TYPE_CRASH)  # GIC-N4
        if "cmdline_error" in info:
            kernel.log.warn(f"pykern: ignoring a malformed command line: "
                            f"{info['cmdline_error']}")
        return kernel

    # ------------------------------------------------------------------ kexec
    @_running
    def kexec_file_load(self, kernel: bytes | None, initrd: bytes | None = None,
                        cmdline: str = "", flags: int = 0) -> None:
        """The ``kexec_file_load`` syscall (rules K1, K20); OSError(errno) on failure."""
        kexec_file_load(self, kernel, initrd, cmdline, flags)

    @property
    def boot_dtb(self) -> bytes:
        """The device tree this generation booted with (rule ARCH S5), built on demand."""
        k = self._kernel
        if k.boot_dtb is None:
            k.boot_dtb = _firmware_dtb(tuple(self.banks), k.boot_params.cmdline)
        return k.boot_dtb

    # ---------------------------------------------------------- tasks, DMA
    @_running
    def new_task(self) -> Task:
        """A new user process with no memory (``copy_process``)."""
        return copy_process(self)

    @_running
    def dma_alloc_from_contiguous(self, dev: Any, count: int, align: int,
                                  no_warn: bool = False) -> Any:
        """``dma_alloc_from_contiguous`` (MM D4): ``count`` pages from ``dev``'s CMA area, the
        alignment capped at CONFIG_CMA_ALIGNMENT; a Page or None."""
        return dma_alloc_from_contiguous(self, dev, count, align, no_warn)

    @_running
    def dma_release_from_contiguous(self, dev: Any, page: Any, count: int) -> bool:
        """``dma_release_from_contiguous`` (MM D5): ``cma_release`` on ``dev``'s area."""
        return dma_release_from_contiguous(self, dev, page, count)

    # ------------------------------------------- views into m.kernel (read-only)
    # On a halted machine they show what the last kernel left, except m.mm (K16.13).
    @property
    def mm(self) -> PageAlloc:
        """The page allocator of the running kernel (``m.kernel.mm``)."""
        return self.kernel.mm

    @property
    def log(self) -> KernelLog:
        """The running kernel's log buffer (``m.kernel.log``; ``m.dmesg()`` reads it)."""
        return self._kernel.log

    @property
    def memblock(self) -> Memblock:
        return self._kernel.memblock

    @property
    def zones(self) -> list[Zone]:
        return self._kernel.zones

    @property
    def tasks(self) -> dict[int, Task]:
        """The user processes by pid (``m.kernel.tasks``)."""
        return self._kernel.tasks

    @property
    def cma_areas(self) -> list[Cma]:
        """Every CMA area declared at boot, in order (``m.kernel.cma_areas``)."""
        return self._kernel.cma_areas

    @property
    def dma_contiguous_default_area(self) -> Cma | None:
        """The global CMA area, named ``reserved`` (MM D3), or None."""
        return self._kernel.dma_contiguous_default_area

    @property
    def boot_params(self) -> BootParams:
        return self._kernel.boot_params

    @property
    def cmdline(self) -> str:
        """The running kernel's command line (``/proc/cmdline``)."""
        return self._kernel.boot_params.cmdline

    @property
    def init_argv(self) -> list[str]:
        """``argv_init``: what init would be started with (unknown parameters included)."""
        return self._kernel.init_argv

    @property
    def init_envp(self) -> list[str]:
        """``envp_init``: init's environment (unknown ``name=value`` parameters)."""
        return self._kernel.init_envp

    @property
    def tainted(self) -> int:
        """``tainted_mask`` (``/proc/sys/kernel/tainted``)."""
        return self._kernel.tainted

    @property
    def crashk_res(self) -> tuple[int, int] | None:
        """The ``crashkernel=`` region ``[start, end)`` (MM Z0.5), or None."""
        return self._kernel.kexec.crashk_res

    @property
    def kexec_image(self) -> KImage | None:
        """The loaded kexec image (``m.kernel.kexec.kexec_image``), or None."""
        return self._kernel.kexec.kexec_image

    @property
    def kexec_crash_image(self) -> KImage | None:
        """The loaded crash image, or None."""
        return self._kernel.kexec.kexec_crash_image

    @property
    def kexec_rng(self) -> random.Random:
        return self._kernel.kexec.kexec_rng

    @property
    def kexec_in_progress(self) -> bool:
        return self._kernel.kexec.kexec_in_progress

    @property
    def linux_banner(self) -> str:
        """``linux_banner``: the boot banner and ``/proc/version`` (init/version.c)."""
        return linux_banner(self)

    # --------------------------------------------------------------- views
    @_running
    def dmesg(self) -> list[tuple[int, str]]:
        """(log level, text) of every kernel message of this generation."""
        return self.kernel.log.lines()

    @_running
    def read(self, path: str) -> str:
        """Kernel text of a procfs/sysfs/debugfs file (the MM T rules); FileNotFoundError."""
        from .fs import read_file
        return read_file(self, path)

    @_running
    def write(self, path: str, text: str) -> None:
        """Write a procfs/sysfs/debugfs file; kernel refusals raise OSError(errno)."""
        from .fs import write_file
        write_file(self, path, text)

    def phys_read(self, addr: int, n: int) -> bytes:
        return self.physmem.read(addr, n)

    def phys_write(self, addr: int, data: bytes) -> None:
        self.physmem.write(addr, data)

    def iomem_resources(self) -> list[Resource]:
        """The ``iomem_resource`` tree (MM T6), rebuilt from the boot's reservations
        (``request_standard_resources``)."""
        return request_standard_resources(self)

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

    def __repr__(self) -> str:
        total = sum(size for _, size in self.banks)
        return (f"<Machine {self.arch} {total >> 20} MiB gen {self.generation} "
                f"cmdline={self.cmdline!r}>")
