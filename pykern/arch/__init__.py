"""Architecture code (``arch/``)."""
