"""The DMA mapping layer's contiguous allocator (``kernel/dma/``)."""

__all__: list[str] = []
