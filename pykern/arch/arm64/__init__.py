"""arm64: the Image loader, its device tree and the machine hooks."""

__all__: list[str] = []
