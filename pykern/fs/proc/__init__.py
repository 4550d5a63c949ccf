"""procfs and sysfs views; importing this package registers them."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .. import read_file, register, register_tree, register_writer
from . import sysctl
from ...kernel import dynamic_debug
from ...kernel.resource import iomem_text, request_standard_resources
from ...lib import fault_inject
from ...mm import cma_debug, fail_page_alloc, vmstat
from . import meminfo

if TYPE_CHECKING:
    from ...machine import Machine

#: Importing this module registers the views; it exports no names.
__all__: list[str] = []


def _crash_size(crashk_res: tuple[int, int] | None) -> int:
    """``kexec_crash_size_show``: the size of ``crashk_res``, 0 without one."""
    return crashk_res[1] - crashk_res[0] if crashk_res else 0


register("/proc/buddyinfo", vmstat.buddyinfo)
register("/proc/pagetypeinfo", vmstat.pagetypeinfo)
register("/proc/zoneinfo", vmstat.zoneinfo)
register("/proc/vmstat", vmstat.vmstat)
register("/proc/meminfo", meminfo.meminfo)
register("/proc/iomem", lambda m: iomem_text(request_standard_resources(m)))
register("/proc/cmdline", lambda m: m.kernel.boot_params.cmdline + "\n")
register("/sys/kernel/kexec_loaded", lambda m: f"{int(m.kernel.kexec.kexec_image is not None)}\n")
register("/sys/kernel/kexec_crash_loaded",
         lambda m: f"{int(m.kernel.kexec.kexec_crash_image is not None)}\n")
register("/sys/kernel/kexec_crash_size", lambda m: f"{_crash_size(m.kernel.kexec.crashk_res)}\n")
register_tree("/proc/sys/", sysctl.sysctl_read)
register_tree("/sys/kernel/debug/cma/", cma_debug.cma_debugfs_read)
register_writer("/sys/kernel/debug/cma/", cma_debug.cma_debugfs_write)
register_tree("/sys/kernel/mm/cma/", cma_debug.cma_sysfs_read)
register_writer("/proc/sys/", sysctl.sysctl_write)
register("/proc/version", lambda m: m.linux_banner)
register("/sys/kernel/debug/dynamic_debug/control", dynamic_debug.control_read)
register("/proc/dynamic_debug/control", dynamic_debug.control_read)
register_writer("/sys/kernel/debug/dynamic_debug/", dynamic_debug.control_write)
register_writer("/proc/dynamic_debug/", dynamic_debug.control_write)

# Fault injection: debugfs fail_page_alloc/ and the per-task /proc/<pid>/ files
# (lib/fault-inject.c, mm/fail_page_alloc.c, fs/proc/base.c).  The /proc/ writer comes
# last so the narrower /proc/ writers above keep their paths.
register_tree("/sys/kernel/debug/fail_page_alloc/",
              fail_page_alloc.fail_page_alloc_debugfs_read)
register_writer("/sys/kernel/debug/fail_page_alloc/",
                fail_page_alloc.fail_page_alloc_debugfs_write)
register_tree("/proc/", fault_inject.proc_pid_fault_read)


def _proc_write(m: Machine, rest: str, text: str) -> None:
    if fault_inject.proc_pid_fault_write(m, rest, text):
        return
    try:
        read_file(m, "/proc/" + rest)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                "/proc/" + rest) from None
    raise PermissionError(errno.EACCES, "Permission denied", "/proc/" + rest)


register_writer("/proc/", _proc_write)
