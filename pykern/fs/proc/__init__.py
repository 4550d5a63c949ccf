"""procfs and sysfs views; importing this package registers them."""

from __future__ import annotations

from .. import register, register_tree, register_writer
from . import sysctl
from ...kernel.resource import iomem_text
from ...mm import cma_debug, vmstat
from . import meminfo

register("/proc/buddyinfo", vmstat.buddyinfo)
register("/proc/pagetypeinfo", vmstat.pagetypeinfo)
register("/proc/zoneinfo", vmstat.zoneinfo)
register("/proc/vmstat", vmstat.vmstat)
register("/proc/meminfo", meminfo.meminfo)
register("/proc/iomem", lambda m: iomem_text(m.iomem_resources()))
register("/proc/cmdline", lambda m: m.cmdline + "\n")
register("/sys/kernel/kexec_loaded", lambda m: f"{int(m.kexec_image is not None)}\n")
register("/sys/kernel/kexec_crash_loaded",
         lambda m: f"{int(m.kexec_crash_image is not None)}\n")
register("/sys/kernel/kexec_crash_size",
         lambda m: f"{m.crashk_res[1] - m.crashk_res[0] if m.crashk_res else 0}\n")
register_tree("/proc/sys/", sysctl.sysctl_read)
register_tree("/sys/kernel/debug/cma/", cma_debug.cma_debugfs_read)
register_writer("/sys/kernel/debug/cma/", cma_debug.cma_debugfs_write)
register_tree("/sys/kernel/mm/cma/", cma_debug.cma_sysfs_read)
register_writer("/proc/sys/", sysctl.sysctl_write)
