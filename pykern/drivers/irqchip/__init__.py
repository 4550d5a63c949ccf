"""Interrupt-controller drivers (``drivers/irqchip/`` in the kernel tree)."""
