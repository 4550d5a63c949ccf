"""Models of the kernel's ``mm/`` directory: pages, zones, the buddy allocator,
isolation, migration and CMA.

Each modelled kernel function is a module-level function under its kernel name, leading
double underscores included (``page_alloc.__rmqueue_smallest``, ``cma.__cma_alloc``), that
takes the state it acts on first; the classes (``PageAlloc``, ``Cma``, ``Task``) hold the
state and the user-facing API.  Python mangles ``__name`` written inside a class body, so
only module-level code calls the double-underscore functions."""

__all__: list[str] = []
