"""Models of the kernel's ``mm/`` directory: pages, zones, the buddy allocator,
isolation, migration and CMA."""
