"""x86_64: the bzImage64 loader, pykern's purgatory and the machine hooks."""

__all__: list[str] = []
