"""Models of the kernel's ``kernel/`` directory (printk, resources, fork, crash_reserve, dma,
kexec), and :class:`~pykern.kernel.kernel.Kernel`, the running kernel's state
(``m.kernel``)."""

__all__: list[str] = []
