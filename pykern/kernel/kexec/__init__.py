"""kexec: loading a new kernel over the running one (``kernel/kexec*.c``)."""

__all__: list[str] = []
