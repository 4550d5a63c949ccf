"""Interrupt-controller drivers (``drivers/irqchip/`` in the kernel tree)."""

__all__: list[str] = []
