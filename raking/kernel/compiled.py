r"""Compiled CPU loops (Numba) for many small batched 2-D tables; loaded on first use.

The same algorithm as the scaling form of :func:`raking.kernel.ipf._ipf`, one table at a time and
in parallel over the batch (``numba.prange``): starting from :math:`f_0 = f_1 = 1`, step ``k``
sets

.. math::

    f_0 = t_0 / (K f_1) \quad (k \text{ odd, X-step}), \qquad
    f_1 = t_1 / (K^\top f_0) \quad (k \text{ even, Y-step}),

with the neutral factor 1 where the reduction is 0, for exactly ``steps`` adjustments; then the
max marginal error, relative to each table's target total, is measured on both axes
(``theory.md`` §1.2). The loops hold no working table: a table whose sum is far from its target
total, or whose factors leave the safe range of :class:`raking.kernel.ipf._Guard` after a step
(unreachable targets), is *flagged* and left, and :func:`raking.kernel.ipf.run_steps` balances the
flagged tables again with the array-API loop, which absorbs the factors.

Why it is faster than the batched NumPy path: each NumPy step is one batched mat-vec that
streams the whole batch through memory (``B * m * l`` numbers per step) and pays Python and
ufunc overhead, so for many small tables that path is memory- and overhead-bound. Here each table
is read from memory once and stays in cache for all of its steps, and the next table of the
thread's chunk is prefetched meanwhile (one part per step: ``llvm.prefetch``), so the reads
overlap the arithmetic. Both reductions vectorise: ``K^T f`` as a sum of contiguous rows
``f[i] K[i, :]``, taken in order; ``K f`` as row dot products, four rows at a time, whose sums
alone are compiled with ``fastmath={"reassoc", "contract"}`` (vector lanes and fused
multiply-adds; all terms are non-negative, so any order is exact to ``l`` roundings). The
summation order differs from BLAS's, so the factors agree with the kernel's to rounding (about
1e-15 relative), not bitwise.

For the public functions (:func:`raking.kernel.ipf.balance` etc.) the same pass also checks
each table (``check=True``: what :func:`raking.validation.check_table` and
:func:`raking.validation.raise_on_empty_categories` check, four passes over the batch
otherwise) and writes the balanced tables (``write=True``), so that the batch is read from
memory once: see :func:`numba_ipf`.

This module is imported by :mod:`raking.kernel.ipf` only for NumPy input with a fixed step count,
and it imports numba only once :func:`use_numba` has decided to use it: balancing one table never
loads numba (whose import takes 0.1-0.4 s).

JIT cost: the loops are compiled on their first call, once per dtype: about 2 s for float64 and
again for float32 (plus 0.4 s for :func:`numba_apply`), measured on a 2-core AMD EPYC. The
machine code is cached on disk (``cache=True``: in ``raking/__pycache__``, in numba's user-wide
cache directory where that is read-only, or in ``NUMBA_CACHE_DIR``), so a later process pays
about 0.2 s on its first call (import, cache load, thread pool start). Editing this file
invalidates the cache.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["NumbaRun", "numba_apply", "numba_ipf", "numba_supports", "use_numba"]

# Decision rule of use_numba (measurements in its docstring and in benchmarks/README.md).
_MIN_TABLES = 2  # a single table never loads numba
_SMALL_CELLS = 40_000  # up to 200 x 200: faster even on one thread than NumPy on all cores
_MAX_CELLS = 250_000  # up to 500 x 500: a table stays in cache for its steps

# Bound to ``numba.prange`` by ``_compiled()`` before the loops below are compiled; in plain Python
# the two are the same.
prange = range


def use_numba(table: Any, targets: Sequence[Any], steps: int | None) -> bool:
    """Whether the compiled loops are faster than the array-API kernel on this problem.

    Parameters
    ----------
    table : array, shape ``(*batch, m, l)``
        The validated table.
    targets : sequence of arrays
        The validated targets (or factors), shape ``(n,)`` or ``(*batch, n)`` each, of the
        table's dtype.
    steps : int or None
        The fixed step count; ``None`` (iterate to a tolerance) is never compiled.

    Returns
    -------
    bool
        ``True`` for NumPy float64/float32 input with exactly two balanced axes, a fixed
        ``steps``, ``B >= 2`` tables in the leading batch axes and at most 250,000 cells per
        table (``m * l``, 500 x 500), where tables above 40,000 cells (200 x 200) also need a
        table for every CPU (``B >= os.cpu_count()``); and only if numba can be imported.
        Otherwise ``False``: the NumPy path.

    Notes
    -----
    Measured with ``benchmarks/bench_kernel.py --rule`` (8 steps, uniform(0.1, 1) tables,
    per-table targets, JIT excluded) on a 2-core AMD EPYC (Zen 5), NumPy 2.4 with OpenBLAS
    0.3.31 (SkylakeX kernel, 2 threads), Numba 0.68 (2 threads); time per call, NumPy kernel /
    Numba loops (speed-up), with the loops on both cores and on one:

    ==============  ====================  ==========  ====================  ==========
    B x (m x l)     float64 (ms)          speed-up    float32 (ms)          speed-up
                                          (1 thread)                        (1 thread)
    ==============  ====================  ==========  ====================  ==========
    2 x 5x5         0.070 / 0.007  (9.4)  9.3         0.067 / 0.007  (9.2)  8.9
    10^4 x 5x5      3.5 / 1.1      (3.0)  1.6         3.0 / 1.1      (2.8)  1.4
    10^5 x 3x4      30 / 9.8       (3.1)  1.5         24 / 9.1       (2.7)  1.4
    2 x 50x50       0.071 / 0.009  (7.8)  6.5         0.071 / 0.009  (7.8)  6.7
    100 x 50x50     0.43 / 0.16    (2.7)  1.9         0.32 / 0.10    (3.2)  1.7
    10^4 x 50x50    97 / 15        (6.4)  3.4         49 / 11        (4.5)  2.3
    2 x 200x200     0.13 / 0.045   (2.9)  1.7         0.10 / 0.034   (2.9)  1.6
    100 x 200x200   8.5 / 2.3      (3.8)  1.8         2.2 / 1.4      (1.5)  0.8
    2 x 300x300     0.27 / 0.10    (2.6)  1.4         0.16 / 0.077   (2.0)  1.1
    2 x 500x500     0.49 / 0.28    (1.8)  0.9         0.33 / 0.22    (1.5)  0.8
    2 x 700x700     0.56 / 0.53    (1.1)  0.5         0.36 / 0.44    (0.8)  0.4
    2 x 1000x1000   1.2 / 2.1      (0.6)  0.4         0.58 / 0.93    (0.6)  0.3
    8 x 1000x1000   11 / 10        (1.0)  0.6         4.3 / 4.4      (1.0)  0.6
    ==============  ====================  ==========  ====================  ==========

    Why: the NumPy path pays Python and ufunc overhead at every step and streams the whole
    batch through memory once per step (one batched mat-vec), while the loops read each table
    once and keep it in cache for all its steps. Beyond 500 x 500 the table and its transposed
    copy (which the loops kept when this grid was measured) no longer fit in the caches and
    NumPy's BLAS mat-vecs win. The loops parallelise over
    tables only: with two tables up to 200 x 200, one thread per table beats NumPy on both cores
    (1.6x or more); above that it needs every core (0.8-0.9x at 500 x 500 on one thread), hence a
    table per CPU [INF: the rule for machines with more cores is extrapolated from the
    one-thread column, not measured].
    One table (no batch axis, or ``B = 1``) stays in NumPy: the one-off import of numba and
    load of the cached loops (0.2-0.5 s per process) would dominate.
    """
    if not _supported(table, targets, steps):
        return False
    n_tables = math.prod(table.shape[:-2])
    cells = table.shape[-2] * table.shape[-1]
    if n_tables < _MIN_TABLES or cells > _MAX_CELLS:
        return False
    if cells > _SMALL_CELLS and n_tables < (os.cpu_count() or 1):
        return False
    return _numba_available()


def numba_supports(table: Any, targets: Sequence[Any], steps: int | None) -> bool:
    """Whether the compiled loops can run this problem at all, fast or not.

    NumPy float64/float32 input with one or more batch axes, exactly two balanced axes, targets
    (or factors) of the table's dtype and a fixed ``steps``; and numba importable. This is what
    ``compiled=True`` asks for (the Monte Carlo ``numba`` backend); :func:`use_numba` adds the
    measured speed rule on top.
    """
    return _supported(table, targets, steps) and _numba_available()


def _supported(table: Any, targets: Sequence[Any], steps: int | None) -> bool:
    """The structural conditions of :func:`numba_supports`, without importing numba."""
    if steps is None or len(targets) != 2 or not isinstance(table, np.ndarray):
        return False
    if table.ndim < 3 or table.dtype not in (np.float64, np.float32):
        return False
    batch = table.shape[:-2]
    return all(
        isinstance(target, np.ndarray)
        and target.dtype == table.dtype
        and target.shape in ((n,), (*batch, n))
        for target, n in zip(targets, table.shape[-2:], strict=True)
    )


class NumbaRun(NamedTuple):
    """The raw output of :func:`numba_ipf`.

    ``factors``: shapes ``(*batch, m)`` and ``(*batch, l)`` in the table's dtype; ``errors``:
    float64 ``(n_tables,)``, each table's final max ``|marginal - target| / T`` (``T`` its
    target total), NaN if a term is NaN; ``flagged``: bool ``(n_tables,)``, the tables the
    loops stopped on because their factors left the safe range (their factors and error are
    meaningless: :func:`raking.kernel.ipf.run_steps` balances them again with absorption).
    ``invalid`` (with ``check=True``, else ``None``): bool ``(n_tables,)``, the tables that
    failed the input checks and were left. ``table`` (with ``write=True``, else ``None``): the
    balanced tables, shape and dtype of the input, except those flagged or invalid.
    """

    factors: tuple[np.ndarray, np.ndarray]
    errors: np.ndarray
    flagged: np.ndarray
    invalid: np.ndarray | None = None
    table: np.ndarray | None = None


def numba_ipf(
    table: np.ndarray,
    targets: Sequence[np.ndarray],
    steps: int,
    *,
    bounds: tuple[float, float, float] | None = None,
    check: bool = False,
    write: bool = False,
) -> NumbaRun:
    """Run exactly ``steps`` balancing steps on a batch of 2-D NumPy tables (compiled loops).

    Each table is read from memory once: its steps, its final error and (``write=True``) its
    balanced table ``K * f_0 ⊗ f_1`` run while it is in cache, as do the input checks
    (``check=True``) that the public functions would otherwise make in four more passes over
    the batch.

    Parameters
    ----------
    table : numpy.ndarray, shape ``(*batch, m, l)``, float32 or float64
        Validated non-negative table (any leading batch axes, also none).
    targets : two numpy.ndarray
        Validated targets of the table's dtype, shape ``(m,)`` / ``(l,)`` or with the batch axes
        in front; 1-D targets apply to every table of the batch.
    steps : int
        Single-marginal adjustments, starting with the X-marginal (axis 0).
    bounds : (low, high, ratio) or None
        A table is flagged (and left) when a factor of a positive-target category leaves
        ``[low, high]`` after a step, or when its target total over its sum leaves
        ``[1 / ratio, ratio]`` (a finite ratio; NaN is not flagged). ``None``: the bounds of
        :class:`raking.kernel.ipf._Guard` for the table's dtype.
    check : bool
        Check each table before its steps, as :func:`raking.validation.check_table` and
        :func:`raking.validation.raise_on_empty_categories` do: every row sum finite (so no
        NaN or infinite cell), no negative cell, and no row or column without mass whose
        target is positive. A table that fails (or whose finite cells sum to infinity) is
        marked ``invalid`` and left: the caller runs the complete validation, which explains.
    write : bool
        Also form the balanced tables, ``(K f_0) f_1`` cell by cell (bitwise equal to
        :func:`numba_apply`), in a new array returned as ``table``.

    Returns
    -------
    NumbaRun
        The factors, the per-table errors, the flagged (and invalid) tables, the balanced
        tables.
    """
    *batch, m, l = table.shape
    n_tables = math.prod(batch)
    dtype = table.dtype
    if bounds is None:
        from raking.kernel.ipf import _Guard

        guard = _Guard([np.ones(m, dtype), np.ones(l, dtype)], xp=np)
        bounds = (guard.low, guard.high, guard.ratio)
    K = np.ascontiguousarray(table).reshape(n_tables, m, l)
    t0 = _as_batch(targets[0], n_tables, dtype)
    t1 = _as_batch(targets[1], n_tables, dtype)
    f0 = np.empty((n_tables, m), dtype=dtype)
    f1 = np.empty((n_tables, l), dtype=dtype)
    errors = np.empty(n_tables, dtype=np.float64)
    flagged = np.zeros(n_tables, dtype=np.bool_)
    invalid = np.zeros(n_tables, dtype=np.bool_)
    out = np.empty((n_tables, m, l) if write else (1, 1, 1), dtype=dtype)
    compiled = _compiled()
    # A few chunks of tables per thread, each with its own scratch arrays.
    n_chunks = min(n_tables, 4 * compiled.get_num_threads())
    low, high, ratio = (float(b) for b in bounds)
    bits = K.reshape(n_tables, m * l).view(np.int64 if dtype == np.float64 else np.int32)
    compiled.ipf(
        K, t0, t1, int(steps), n_chunks, low, high, ratio, bool(check), bool(write), bits,
        f0, f1, errors, flagged, invalid, out,
    )  # fmt: skip
    return NumbaRun(
        (f0.reshape(*batch, m), f1.reshape(*batch, l)),
        errors,
        flagged,
        invalid if check else None,
        out.reshape(table.shape) if write else None,
    )


def numba_apply(table: np.ndarray, factors: Sequence[np.ndarray]) -> np.ndarray:
    """Form the balanced tables ``K * f_0 ⊗ f_1`` in one parallel pass (compiled loop).

    The same products, in the same order, as :func:`raking.kernel.steps._apply` (``(K f_0) f_1``, so
    the result is bitwise equal), without NumPy's two full-size temporaries.

    Parameters
    ----------
    table : numpy.ndarray, shape ``(*batch, m, l)``, float32 or float64
        The table the factors were computed for.
    factors : two numpy.ndarray
        Of the table's dtype, shape ``(*batch, m)`` / ``(*batch, l)`` or 1-D (shared).

    Returns
    -------
    numpy.ndarray
        A new array of the table's shape and dtype.
    """
    *batch, m, l = table.shape
    n_tables = math.prod(batch)
    dtype = table.dtype
    K = np.ascontiguousarray(table).reshape(n_tables, m, l)
    f0 = _as_batch(factors[0], n_tables, dtype)
    f1 = _as_batch(factors[1], n_tables, dtype)
    out = np.empty((n_tables, m, l), dtype=dtype)
    _compiled().apply(K, f0, f1, out)
    return out.reshape(table.shape)


def _as_batch(target: np.ndarray, n_tables: int, dtype: np.dtype) -> np.ndarray:
    """A target as a C-contiguous ``(1, n)`` (shared) or ``(n_tables, n)`` (per table) array."""
    n = target.shape[-1]
    rows = 1 if target.ndim == 1 else n_tables
    return np.ascontiguousarray(target, dtype=dtype).reshape(rows, n)


@functools.cache
def _numba_available() -> bool:
    try:
        importlib.import_module("numba")
    except ImportError:
        return False
    return True


class _Compiled(NamedTuple):
    ipf: Callable[..., None]
    apply: Callable[..., None]
    get_num_threads: Callable[[], int]


@functools.cache
def _compiled() -> _Compiled:
    """Jit the loops below: compiled per dtype on their first call, cached on disk.

    The loops are written as plain Python functions so that this module can be imported without
    numba; here their module names are rebound to the jitted versions (and ``prange`` to
    ``numba.prange``), which the compiler reads when it compiles the callers.
    """
    import numba

    names = globals()
    names["prange"] = numba.prange
    names["_prefetch"] = _prefetch_intrinsic(numba)
    exact = numba.njit(cache=True, fastmath=False)
    helpers = ("_prefetch_part", "_signs", "_rows_pass", "_columns_pass", "_reduce", "_rescale")
    for name in (*helpers, "_max_error", "_write"):
        names[name] = exact(getattr(names[name], "py_func", names[name]))
    reassoc = numba.njit(cache=True, fastmath={"reassoc", "contract"})
    names["_row_dots"] = reassoc(getattr(_row_dots, "py_func", _row_dots))
    parallel = numba.njit(parallel=True, cache=True, fastmath=False)
    return _Compiled(parallel(_ipf_loops), parallel(_apply_loops), numba.get_num_threads)


def _prefetch_intrinsic(numba: Any) -> Callable[..., None]:
    """A Numba intrinsic ``prefetch(flat, index)``: ``llvm.prefetch`` of ``&flat[index]``.

    Read (0), locality 2 (into L2: the table and its scratch fill half of L1), data cache (1).
    """
    from llvmlite import ir

    byte = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    signature = ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32])

    def typer(typingctx: Any, flat: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            array = context.make_array(sig.args[0])(context, builder, args[0])
            address = builder.bitcast(builder.gep(array.data, [args[1]]), byte)
            intrinsic = builder.module.declare_intrinsic("llvm.prefetch", [byte], signature)
            builder.call(intrinsic, [address, i32(0), i32(2), i32(1)])
            return context.get_dummy_value()

        return numba.types.void(flat, index), codegen

    return numba.extending.intrinsic(typer)


# --------------------------------------------------------------------------------------------
# The loops (plain Python until _compiled() jits them)
# --------------------------------------------------------------------------------------------


def _prefetch(flat: np.ndarray, index: int) -> None:
    """Ask the CPU to fetch the cache line of ``flat[index]`` into L2 (a no-op in plain Python).

    Bound by ``_compiled()`` to an intrinsic that emits ``llvm.prefetch`` (read, locality 2):
    a hint, so it neither faults nor changes a result.
    """


def _prefetch_part(flat: np.ndarray, part: int, parts: int) -> None:
    """Prefetch part ``part`` of ``parts`` of the 1-D array ``flat``, one hint per 64 bytes."""
    n = flat.shape[0]
    line = max(64 // flat.itemsize, 1)
    size = -(-n // (parts * line)) * line  # a whole number of lines per part
    for p in range(part * size, min((part + 1) * size, n), line):
        _prefetch(flat, p)


def _signs(bits: np.ndarray) -> bool:
    """Whether no cell has its sign bit set: the cells' bit patterns (1-D) OR-ed together.

    Integer OR is associative, so this loop vectorises exactly. ``-0.0`` fails too (the
    caller's complete validation then decides).
    """
    acc = bits[0] & 0
    for p in range(bits.shape[0]):
        acc |= bits[p]
    return acc >= 0


def _rows_pass(row_sums: np.ndarray, t0: np.ndarray) -> bool:
    """Whether every row sum is finite and no row whose target is positive is empty.

    A NaN or infinite cell makes its row's sum NaN or infinite; finite cells whose sum
    overflows fail too (the caller's complete validation decides).
    """
    for i in range(row_sums.shape[0]):
        r = row_sums[i]
        if not (abs(r) < np.inf) or (r <= 0 and t0[i] > 0):
            return False
    return True


def _columns_pass(K: np.ndarray, reduced: np.ndarray, t1: np.ndarray, exact: bool) -> bool:
    """Whether no column of the table whose target is positive is empty.

    ``reduced`` is ``K^T f_0`` for factors ``f_0`` that are positive wherever the row target
    is: a column with mass somewhere there has a positive entry, so only the columns where it
    is not (mass only in rows with a zero target, or a product that underflows) are scanned.
    ``exact``: ``reduced`` is not such a reduction (the steps stopped early); scan every column
    whose target is positive. The cells are already known to be finite and non-negative.
    """
    m, l = K.shape
    for j in range(l):
        if t1[j] > 0 and (exact or not reduced[j] > 0):
            empty = True
            for i in range(m):
                if K[i, j] != 0:
                    empty = False
                    break
            if empty:
                return False
    return True


def _write(K: np.ndarray, f0: np.ndarray, f1: np.ndarray, out: np.ndarray) -> None:
    """``out = (K * f0[:, None]) * f1[None, :]``, the products of :func:`_apply_loops`."""
    m, l = K.shape
    for i in range(m):
        a = f0[i]
        for j in range(l):
            out[i, j] = K[i, j] * a * f1[j]


def _row_dots(K: np.ndarray, f: np.ndarray, out: np.ndarray) -> None:
    """``out = K f``, i.e. ``out[i] = sum_j K[i, j] f[j]``, four rows at a time.

    Compiled with ``fastmath={"reassoc", "contract"}`` (this function only): each row's sum
    is taken in vector lanes and fused multiply-adds, in an order of the compiler's choosing.
    All terms are non-negative here, so any order gives the sum to ``l`` roundings (tested
    equal to the array-API loop to 1e-12); NaN and infinities still propagate.
    """
    m, l = K.shape
    m4 = m - m % 4
    zero = K[0, 0] * 0
    for i in range(0, m4, 4):
        s0, s1, s2, s3 = zero, zero, zero, zero
        for j in range(l):
            g = f[j]
            s0 += K[i, j] * g
            s1 += K[i + 1, j] * g
            s2 += K[i + 2, j] * g
            s3 += K[i + 3, j] * g
        out[i], out[i + 1], out[i + 2], out[i + 3] = s0, s1, s2, s3
    for i in range(m4, m):
        s = zero
        for j in range(l):
            s += K[i, j] * f[j]
        out[i] = s


def _reduce(A: np.ndarray, f: np.ndarray, out: np.ndarray) -> None:
    """``out = A^T f``, i.e. ``out[i] = sum_j f[j] A[j, i]``, summed over ``j`` in order.

    The inner loop runs over contiguous ``A[j, :]`` and vectorises; four ``j`` per pass keep
    ``out`` in registers longer (the sum is still taken left to right).
    """
    n, m = A.shape
    n4 = n - n % 4
    out[:] = 0
    for j in range(0, n4, 4):
        a, b, c, d = f[j], f[j + 1], f[j + 2], f[j + 3]
        for i in range(m):
            out[i] = (out[i] + A[j, i] * a + A[j + 1, i] * b + A[j + 2, i] * c) + A[j + 3, i] * d
    for j in range(n4, n):
        a = f[j]
        for i in range(m):
            out[i] += A[j, i] * a


def _rescale(
    reduced: np.ndarray, target: np.ndarray, factor: np.ndarray, low: float, high: float
) -> bool:
    """``factor = target / reduced`` (1 where ``reduced`` is 0); whether it stayed in range.

    In range: every factor of a positive-target category lies in ``[low, high]`` (NaN counts
    as in range: it propagates to the error instead).
    """
    bad = False  # bitwise & and | (no branches): the loop vectorises, divisions included
    for i in range(reduced.shape[0]):
        r = reduced[i]
        t = target[i]
        f = t / r if r > 0 else t * 0 + 1
        factor[i] = f
        bad |= (t > 0) & ((f < low) | (f > high))
    return not bad


def _max_error(
    reduced: np.ndarray, factor: np.ndarray, target: np.ndarray, scale: float, err: float
) -> float:
    """``max(err, max |factor * reduced - target| * scale)``, NaN if any term is NaN."""
    total = 0.0  # NaN iff a term is NaN; keeps the loop free of branches
    for i in range(reduced.shape[0]):
        e = abs(factor[i] * reduced[i] - target[i]) * scale
        err = e if e > err else err
        total += e
    return err if total == total else total


def _ipf_loops(
    K: np.ndarray,
    T0: np.ndarray,
    T1: np.ndarray,
    steps: int,
    n_chunks: int,
    low: float,
    high: float,
    ratio: float,
    check: bool,
    write: bool,
    bits: np.ndarray,
    F0: np.ndarray,
    F1: np.ndarray,
    errors: np.ndarray,
    flagged: np.ndarray,
    invalid: np.ndarray,
    out: np.ndarray,
) -> None:
    """Balance each table ``K[b]`` into ``F0[b]``, ``F1[b]``; its final error into ``errors[b]``.

    ``T0``, ``T1`` have one row per table or a single shared row. The batch is cut into
    ``n_chunks`` contiguous chunks run in parallel, each with its own scratch arrays; while a
    table is balanced (in cache), the next table of the chunk is prefetched, one part per step.
    A table whose sum is far from its target total, or whose factors leave ``[low, high]``, is
    flagged and left (see :func:`numba_ipf`). The error is relative to the target total.
    ``check``: a table that fails :func:`_signs` (``bits``: ``K`` viewed as integers, one row
    per table), :func:`_rows_pass` or :func:`_columns_pass` is marked ``invalid`` and left;
    ``write``: the balanced table goes to ``out[b]`` while ``K[b]`` is in cache.
    """
    n_tables, m, l = K.shape
    flat = K.reshape(n_tables, m * l)
    for c in prange(n_chunks):
        r0 = np.empty(m, dtype=K.dtype)
        r1 = np.empty(l, dtype=K.dtype)
        for b in range(c * n_tables // n_chunks, (c + 1) * n_tables // n_chunks):
            Kb = K[b]
            f0 = F0[b]
            f1 = F1[b]
            t0 = T0[0] if T0.shape[0] == 1 else T0[b]
            t1 = T1[0] if T1.shape[0] == 1 else T1[b]
            following = flat[min(b + 1, n_tables - 1)]
            _prefetch_part(following, 0, steps + 1)
            if check and not _signs(bits[b]):
                invalid[b] = True
                continue
            f0[:] = 1
            f1[:] = 1
            _row_dots(Kb, f1, r0)  # r0 = K 1: the first X-reduction (f1 = 1)
            if check and not _rows_pass(r0, t0):
                invalid[b] = True
                continue
            total = 0.0
            mass = 0.0
            for i in range(m):
                total += t0[i]
                mass += r0[i]
            scale = 1.0 / total
            if mass * ratio < total or total * ratio < mass:  # (NaN: not flagged)
                flagged[b] = True
                invalid[b] = check and not _columns_pass(Kb, r1, t1, True)
                continue
            for k in range(steps):
                _prefetch_part(following, k + 1, steps + 1)
                if k % 2 == 0:  # X-step: f0 = t0 / (K f1)
                    if k > 0:
                        _row_dots(Kb, f1, r0)
                    ok = _rescale(r0, t0, f0, low, high)
                else:  # Y-step: f1 = t1 / (K^T f0)
                    _reduce(Kb, f0, r1)
                    ok = _rescale(r1, t1, f1, low, high)
                if not ok:
                    flagged[b] = True
                    break
            if flagged[b]:
                invalid[b] = check and not _columns_pass(Kb, r1, t1, True)
                continue
            # Final error on both axes. The axis stepped last keeps its reduction: the other
            # factor has not changed since. So r1 = K^T f0 with f0 > 0 where t0 > 0.
            if steps % 2 == 0 and steps > 0:
                _row_dots(Kb, f1, r0)
            if steps % 2 == 1 or steps == 0:
                _reduce(Kb, f0, r1)
            if check and not _columns_pass(Kb, r1, t1, False):
                invalid[b] = True
                continue
            errors[b] = _max_error(r1, f1, t1, scale, _max_error(r0, f0, t0, scale, 0.0))
            if write:
                _write(Kb, f0, f1, out[b])


def _apply_loops(K: np.ndarray, F0: np.ndarray, F1: np.ndarray, out: np.ndarray) -> None:
    """``out[b] = (K[b] * F0[b][:, None]) * F1[b][None, :]`` (row 0 of ``F`` if it has one)."""
    n_tables, m, l = K.shape
    for b in prange(n_tables):
        f0 = F0[0] if F0.shape[0] == 1 else F0[b]
        f1 = F1[0] if F1.shape[0] == 1 else F1[b]
        for i in range(m):
            a = f0[i]
            for j in range(l):
                out[b, i, j] = K[b, i, j] * a * f1[j]
