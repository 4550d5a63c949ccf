"""Models of the kernel's ``kernel/`` directory (printk, resources, dma, kexec)."""
