"""Small helpers shared by the whole tree (the kernel's ``lib/``)."""

__all__: list[str] = []
