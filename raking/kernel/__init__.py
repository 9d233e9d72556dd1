"""The balancing kernel: one loop for every array library and every storage of the table.

- :mod:`raking.kernel.ipf`: the public functions (``balance``, ``balance_result``,
  ``scaling_factors``, ``apply_scaling``; re-exported as ``raking.balance`` etc.), their
  validation and the balancing loop;
- :mod:`raking.kernel.storage`: the table's storage as the loop reads it, one interface
  (:class:`~raking.kernel.storage.Storage`: reduce, scale, absorb, ...) with three
  implementations: dense arrays of any array library, half-precision tables in blocks, sparse
  matrices; the loop picks one at entry (:func:`~raking.kernel.storage.storage_of`);
- :mod:`raking.kernel.steps`: one adjustment step (reduce to a marginal, new factor, initial
  factors, log-sum-exp), public inside the package so that :mod:`raking.torch` runs the same
  step;
- :mod:`raking.kernel.sparse`: 2-D SciPy / CuPy sparse tables, recognised without importing
  either library;
- :mod:`raking.kernel.compiled`: the Numba loops for many small batched 2-D tables, which also
  check each table and write the balanced tables in the same pass (numba is imported on first
  use).

Import each name from the module that defines it (``raking.balance`` is the public entry):
this package imports nothing itself, so that :mod:`raking.validation` can read sparse tables
through :mod:`raking.kernel.sparse` without loading the loop. The kernel imports nothing from
the statistics layer or the applications, and no heavy package at module level.
"""
