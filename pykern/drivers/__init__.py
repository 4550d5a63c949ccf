"""Devices: hardware models that live across kexec (``Machine(devices=[...])``) and the
driver code each generation runs against them (the devices guide)."""

__all__: list[str] = []
