"""The DMA mapping layer's contiguous allocator (``kernel/dma/``)."""
