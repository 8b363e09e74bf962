"""Pure-JAX core: vector fields, neural terms, their composition and the solve.

Nothing here knows about xarray, files or Dask; everything is safe under
``jit``, ``vmap`` and ``grad``.
"""
