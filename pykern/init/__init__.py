"""Models of the kernel's ``init/`` directory: ``start_kernel`` and the initramfs."""

__all__: list[str] = []
