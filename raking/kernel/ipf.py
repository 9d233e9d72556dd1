r"""The balancing kernel: raking / IPF / Sinkhorn scaling, written once for every array library.

Balancing alternately rescales a non-negative table so that each balanced axis sums to its target
(``theory.md`` §1.2). Step ``k`` adjusts balanced axis ``(k - 1) mod d``: for a 2-D table odd steps
fix the X-marginal (rows) and even steps the Y-marginal (columns), as in the paper's
:math:`P_n^{(k)}`.

The kernel works in the *scaling form*: it never materialises the intermediate tables but keeps
one factor vector per axis, so that after any number of steps

.. math::

    P^{(k)}(x_1, \dots, x_d) = K(x_1, \dots, x_d)\, f_1(x_1) \cdots f_d(x_d),

and the step on axis :math:`a` sets :math:`f_a = t_a / R_a`, where :math:`R_a` is the marginal of
:math:`K \prod_{b \ne a} f_b` on axis :math:`a`. For 2-D tables :math:`R_a` is one batched
mat-vec. In the *log domain* the table holds log-weights :math:`L = \log K` and the factors are
log-potentials, :math:`g_a = \log t_a - \operatorname{logsumexp}_{\neg a}(L + \sum_{b\ne a} g_b)`.

Every function dispatches on the input's array namespace (NumPy, CuPy, PyTorch, array-api-strict)
through :mod:`raking._array_api`; leading axes are batch axes and are never looped over in Python. A
2-D ``scipy.sparse`` (``cupyx.scipy.sparse``) table runs through the same steps with NumPy (CuPy)
factors: its reductions are the mat-vecs ``table @ f`` and ``table.T @ f``
(:mod:`raking.kernel.sparse`). The loop (:func:`_loop`) is written once against the table's
:class:`~raking.kernel.storage.Storage` (dense, half-precision blocks or sparse), chosen at entry.

*Storage and compute dtypes.* The table is stored in its own dtype; the factors, targets, reductions
and errors are in the *compute dtype* (``compute_dtype``): the table's dtype for float32 / float64
tables, float32 for float16 / bfloat16 tables. A table stored narrower than the compute dtype is
never copied whole: each reduction reads it once, in blocks of at most
:data:`~raking.kernel.storage.HALF_BLOCK_ELEMENTS` elements that are cast to the compute dtype,
reduced there (a mat-vec per block for 2-D tables) and combined, so the extra memory is one block
(16 MiB in float32), not a float32 table. A float16 table of m x l cells takes 2 m l bytes instead
of 4 m l.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from raking._array_api import Array, get_xp, is_numpy, on_accelerator, to_float, to_numpy
from raking.exceptions import ConvergenceWarning
from raking.kernel.sparse import is_sparse, sparse_namespace, stored_values
from raking.kernel.steps import _apply, initial_factors, new_factor
from raking.kernel.storage import Storage, storage_of
from raking.results import BalanceResult, ScalingResult
from raking.validation import (
    check_check_every,
    check_compute_dtype,
    check_max_steps,
    check_steps,
    check_table,
    check_targets,
    check_tol,
    count_targets,
    raise_on_empty_categories,
    table_namespace,
)

__all__ = ["apply_scaling", "attainable_tol", "balance", "balance_result", "scaling_factors"]

TOL_EPS = 8
"""The smallest tolerance, in ``eps`` of the compute dtype times the largest target share:
see :func:`attainable_tol`."""

REPRESENT_RTOL = 2**10
"""Largest gap, in ``eps`` times the target total, between ``table * C_1 ⊗ ... ⊗ C_d`` and the
balanced table for which the cumulative factors ``C`` of an absorbed run are returned (else
NaN): see :func:`_represent`."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def balance(
    table: Array,
    targets: Sequence[Array],
    steps: int | None = None,
    *,
    tol: float = 1e-10,
    max_steps: int = 10_000,
    log_domain: bool = False,
    compute_dtype: Any = None,
) -> Array:
    r"""Balance ``table`` so that its last ``len(targets)`` axes match ``targets``.

    .. math::

        P^{(k)} = \begin{cases} P^{(k-1)}\, t_a / P^{(k-1)}_a & \text{(axis } a = (k-1) \bmod d)
        \end{cases}, \qquad P^{(0)} = \text{table}.

    Parameters
    ----------
    table : array, shape ``(*batch, n_1, ..., n_d)``, or 2-D sparse matrix
        Non-negative weights or counts (any scale; integers are promoted to float64, float32
        stays float32; float16 and bfloat16 are kept as the *storage* dtype and computed in
        float32, see ``compute_dtype``). With ``log_domain=True``: log-weights, finite or
        ``-inf``. A 2-D ``scipy.sparse`` (or ``cupyx.scipy.sparse``) matrix or array in CSR, CSC
        or COO format is balanced without densifying it: two targets, no batch axes,
        ``log_domain=False``.
    targets : sequence of d arrays
        Target marginal of each balanced axis, shape ``(n_i,)`` (or ``(*batch, n_i)``): shares or
        counts, non-negative, all with the same total ``T`` (to relative ``1e-8`` in float64,
        ``1e-4`` in float32). Totals accepted as equal but not identical are made identical:
        every target is rescaled to the total of ``targets[0]`` (per batch entry), since
        otherwise no table could meet them all to ``tol``. The result has that total (to
        rounding: totals within 4 eps of the first's, below the attainable ``tol``, are left
        as given).
    steps : int or None
        ``k`` single-marginal adjustments, cycling through the axes starting with the first
        (odd = X-step, even = Y-step for 2-D tables). ``None`` (or ``math.inf``): iterate until
        the marginal error is at most ``tol``.
    tol : float
        Largest accepted marginal error on the *share scale*, :math:`\max_{a,i} |m_{a,i} -
        t_{a,i}| / T` (``T`` the target total of the table: for shares the plain absolute
        error, for counts the error relative to the population). Raised to the rounding floor
        of the compute dtype where it is below it (:func:`attainable_tol`: at most ``1.8e-15``
        in float64, ``9.5e-7`` in float32), so the default is attainable in every dtype. The
        stopping rule when ``steps`` is None; with a fixed ``steps`` it decides ``converged``
        of :func:`balance_result` (it never changes the steps taken).
    max_steps : int
        Cap on adjustments when iterating to ``tol``; reaching it emits a
        :class:`~raking.exceptions.ConvergenceWarning` with the achieved error.
    log_domain : bool
        Whether ``table`` holds log-weights; the result is then the balanced log-table.
    compute_dtype : None, "float32", "float64" or a float32 / float64 dtype of the table's library
        The dtype of the factors, targets, reductions and marginal errors. ``None``: the table's
        dtype (float64 for integers), but float32 for a float16 or bfloat16 table. A float16 /
        bfloat16 table is then *stored* in half precision (2 bytes per cell, never copied whole to
        float32) and *accumulated* in float32: each step reads it once, in blocks of at most
        :data:`~raking.kernel.storage.HALF_BLOCK_ELEMENTS` cells cast to float32 (16 MiB of extra
        memory; 32 MiB in float64), where a float16 sum keeps 11 significant bits and overflows at
        65504. A compute dtype with less precision than the table (float32 for a float64 table) is
        refused; float64 for a float32 table takes the same block path. The log domain is handled
        alike (block logsumexps in the compute dtype).

    Returns
    -------
    array
        The balanced table, same array type, device and shape as ``table`` (never the input
        object modified in place), in the table's *storage* dtype: for a float16 / bfloat16
        table each block is formed in the compute dtype (table block x factors) and rounded
        back, so the result carries half-precision rounding (relative 2**-11 for float16,
        2**-8 for bfloat16; float16 overflows above 65504: give shares, not large counts),
        while the factors of :func:`balance_result` / :func:`scaling_factors` keep the full
        compute precision. Forming it holds the result's blocks and their concatenation: up to
        twice the half-precision table, briefly. For a sparse table, a sparse matrix of the
        same type and format with the same stored positions (explicit zeros included).

    Raises
    ------
    ValueError
        Negative, NaN or infinite entries (finite entries whose sum overflows are fine); a
        target of the wrong length, negative or non-finite; targets whose totals disagree
        (relative ``1e-8`` in a float64 compute dtype, ``1e-4`` in float32); a sparse table
        with batch axes or ``log_domain=True``; a ``compute_dtype`` that is not float32 /
        float64 or is coarser than the table.
    raking.exceptions.EmptyCategoryError
        A category with no mass in ``table`` but a positive target (missing mass).

    Notes
    -----
    ``theory.md`` §1.2 [SUM]: each step is the I-projection (KL) onto one marginal constraint;
    ``steps=None`` converges to the Sinkhorn / IPF fixed point :math:`e^{f(x)+g(y)} P_n(x, y)`.
    One "iteration" of the authors' ``data_balance`` is two steps here. A sparse table takes
    exactly the same steps (the scaling form below, with sparse mat-vecs as reductions), so its
    result equals that of the densified table.

    *Unreachable targets and extreme scales.* When the table's zeros make the targets
    unreachable (blocks whose targets disagree, e.g. ``balance(np.eye(2), [[1, 1], [.5,
    1.5]])``, or a zero pattern that forces a cell to 0), IPF does not converge: it oscillates,
    and the scaling factors diverge geometrically. The kernel keeps every factor within
    ``2**±(emax / (2 (d - 1)))`` of the compute dtype (``2**±512`` in float64 for 2-D tables),
    checked at every convergence check (one sweep on the host; without a host read in between
    on accelerators, every ``check_every`` steps): factors outside it are *absorbed* into a
    working copy of the table, which then holds what table-form IPF holds at that step, and
    restart at 1 (factors that overflowed within the period are discarded and the steps redone
    one by one). So for every ``steps`` the result is finite, keeps the targets' total, and
    equals table-form IPF (materialise :math:`P^{(k)}` and rescale it each step) to rounding;
    ``converged`` is then ``False`` and a :class:`~raking.exceptions.ConvergenceWarning` says
    that the targets cannot be met given the table's zeros, with the achieved error. A table
    whose total is far from its targets' (a sum that overflows, subnormal cells) is first
    rescaled by exact powers of two, folded into the factors. A normal run pays one host read
    of the factors' range per check and no extra pass over the table; the log domain needs
    none of this (log-potentials do not overflow).

    Examples
    --------
    >>> import numpy as np
    >>> from raking import balance, balance_result
    >>> table = np.array([[2.0, 1.0], [1.0, 4.0]])
    >>> out = balance(table, [np.array([0.5, 0.5]), np.array([0.3, 0.7])])
    >>> np.round(out.sum(axis=1), 10), np.round(out.sum(axis=0), 10)
    (array([0.5, 0.5]), array([0.3, 0.7]))

    A float16 table is stored in float16 and accumulated in float32 (the factors are float32;
    the balanced table is float16 again):

    >>> res = balance_result(table.astype(np.float16), [np.array([0.5, 0.5])] * 2, tol=1e-6)
    >>> res.table.dtype, res.factors[0].dtype, res.marginal_error <= 1e-6
    (dtype('float16'), dtype('float32'), True)
    """
    return balance_result(
        table,
        targets,
        steps,
        tol=tol,
        max_steps=max_steps,
        log_domain=log_domain,
        compute_dtype=compute_dtype,
    ).table


def balance_result(
    table: Array,
    targets: Sequence[Array],
    steps: int | None = None,
    *,
    tol: float = 1e-10,
    max_steps: int = 10_000,
    log_domain: bool = False,
    check_every: int | None = None,
    compute_dtype: Any = None,
) -> BalanceResult:
    """Like :func:`balance`, but return a :class:`~raking.results.BalanceResult`.

    The result holds the balanced table (in the table's storage dtype), the per-axis factors
    (in the compute dtype: float32 for a float16 / bfloat16 table), the number of steps taken,
    the final marginal error (share scale, always measured, in the compute dtype), the ``tol``
    used and ``converged``: ``marginal_error <= tol``, for a fixed ``steps`` as well (so three
    steps far from the targets give ``converged=False``). After unreachable targets the
    factors are the cumulative ones of the absorbed run, or NaN for a table where they would
    over- or underflow (:class:`~raking.results.ScalingResult`); ``table`` is always right.
    ``check_every`` is the period, in single-marginal adjustments, of the convergence check when
    iterating to ``tol``. Default: one full sweep over the axes for a table on the host; on an
    accelerator (CuPy, CUDA torch), where each check reads the error back and so waits for the
    device, :data:`~raking.validation.ACCELERATOR_CHECK_SWEEPS` (10) sweeps: the iteration
    may then run up to 9 sweeps past the first one within ``tol``, with no host
    synchronisation in between. ``compute_dtype`` as in :func:`balance`.
    """
    args = (table, targets, steps, tol, max_steps, log_domain, check_every, compute_dtype)
    run = _compiled_door(*args, write=True)
    if run is not None:
        balanced = run.table
    else:
        xp, table, targets, config = _validate(*args)
        run = run_steps(table, targets, xp=xp, log_domain=log_domain, **config)
        # In the table's storage dtype also when the factors of a half-precision table were
        # absorbed into a working table of the compute dtype.
        base = storage_of(run.base, targets[0].dtype, xp=xp, d=len(targets))
        balanced = base.scale(run.factors, log_domain=log_domain, dtype=table.dtype)
    scaling = run.result
    return BalanceResult(
        table=balanced,
        factors=scaling.factors,
        steps=scaling.steps,
        converged=scaling.converged,
        marginal_error=scaling.marginal_error,
        tol=scaling.tol,
        log_domain=log_domain,
    )


def scaling_factors(
    table: Array,
    targets: Sequence[Array],
    steps: int | None = None,
    *,
    tol: float = 1e-10,
    max_steps: int = 10_000,
    log_domain: bool = False,
    check_every: int | None = None,
    compute_dtype: Any = None,
) -> ScalingResult:
    """Balance in the scaling form and return only the per-axis factors.

    Memory stays at the table plus one vector per axis: no intermediate or final table is formed
    (for 2-D tables each step is one batched mat-vec). Arguments as in :func:`balance_result`;
    :func:`apply_scaling` forms the balanced table when it is needed. The factors are in the compute
    dtype (float32 for a float16 / bfloat16 table, whose storage then stays at 2 bytes per cell plus
    one float32 block of at most :data:`~raking.kernel.storage.HALF_BLOCK_ELEMENTS` cells per
    reduction).

    Examples
    --------
    >>> import numpy as np
    >>> from raking import apply_scaling, balance, scaling_factors
    >>> K = np.array([[1.0, 2.0], [3.0, 1.0]])
    >>> t = [np.array([0.4, 0.6]), np.array([0.5, 0.5])]
    >>> res = scaling_factors(K, t, steps=5)
    >>> bool(np.allclose(apply_scaling(K, res.factors), balance(K, t, steps=5)))
    True
    """
    args = (table, targets, steps, tol, max_steps, log_domain, check_every, compute_dtype)
    run = _compiled_door(*args, write=False)
    if run is None:
        xp, table, targets, config = _validate(*args)
        run = run_steps(table, targets, xp=xp, log_domain=log_domain, **config)
    return run.result


def apply_scaling(
    table: Array,
    factors: Sequence[Array],
    *,
    log_domain: bool = False,
    compute_dtype: Any = None,
) -> Array:
    r"""Form the balanced table :math:`K \cdot f_1 \otimes \dots \otimes f_d` from its factors.

    With ``log_domain=True``, ``table`` is a log-table and ``factors`` are log-potentials; the
    result is :math:`L + g_1 \oplus \dots \oplus g_d`. A sparse 2-D ``table`` (CSR, CSC, COO)
    with two 1-D factors gives :math:`\operatorname{diag}(f_1) K \operatorname{diag}(f_2)` as a
    sparse matrix of the same type and format.

    A table stored in a narrower dtype than the factors (a float16 / bfloat16 table with the
    float32 factors of :func:`scaling_factors`, or a float32 table with float64 factors) gives a
    result in the table's dtype, formed in blocks of at most
    :data:`~raking.kernel.storage.HALF_BLOCK_ELEMENTS` cells: each block is cast to the
    factors' dtype, scaled and rounded back. ``compute_dtype`` (``None``: the factors' own
    dtype; else as in :func:`balance`) casts the factors first.
    """
    sparse = is_sparse(table)
    xp = sparse_namespace(table, *factors) if sparse else get_xp(table, *factors)
    if compute_dtype is not None:
        dtype = check_compute_dtype(compute_dtype, table, xp=xp)
        factors = [xp.astype(f, dtype, copy=False) for f in factors]
    else:
        dtype = None
    table = check_table(
        table, n_axes=len(factors), xp=xp, log_domain=log_domain, compute_dtype=dtype
    )
    d = len(factors)
    for i, f in enumerate(factors):
        n_i = table.shape[table.ndim - d + i]
        if f.shape[-1] != n_i or (sparse and f.ndim != 1):
            raise ValueError(
                f"factors[{i}] has shape {tuple(f.shape)} but balanced axis {i} of table has "
                f"{n_i} entries{' (a sparse table takes 1-D factors)' if sparse else ''}; pass "
                "the factors computed for this table."
            )
        if bool(xp.any(xp.isnan(f))):
            raise ValueError(
                f"factors[{i}] holds NaN: scaling factors that could not be represented in "
                f"{f.dtype} (the targets were unreachable, the factors diverged and were "
                "absorbed into the balanced table; see ScalingResult.factors). Use "
                "balance_result(table, targets, ...).table for the balanced table."
            )
    return _apply(table, factors, xp=xp, log_domain=log_domain)


# --------------------------------------------------------------------------------------------
# Private kernel: no validation, no namespace lookup
# --------------------------------------------------------------------------------------------


def _validate(
    table: Array,
    targets: Sequence[Array],
    steps: object,
    tol: object,
    max_steps: object,
    log_domain: bool,
    check_every: object,
    compute_dtype: object = None,
) -> tuple[Any, Array, list[Array], dict[str, Any]]:
    """The single door of the public kernel functions.

    The table keeps its (floating) storage dtype; the targets come back in the compute dtype,
    which is how :func:`_ipf` knows it.
    """
    xp = table_namespace(table, name="table")
    n_axes = count_targets(targets)
    dtype = check_compute_dtype(compute_dtype, table, xp=xp)
    table = check_table(table, n_axes=n_axes, xp=xp, log_domain=log_domain, compute_dtype=dtype)
    targets = check_targets(targets, table, xp=xp, dtype=dtype)
    raise_on_empty_categories(table, targets, xp=xp, log_domain=log_domain)
    config = {
        "steps": check_steps(steps),
        "tol": check_tol(tol),
        "max_steps": check_max_steps(max_steps),
        "check_every": check_check_every(
            check_every,
            n_axes=n_axes,
            accelerator=on_accelerator(stored_values(table)),
        ),
    }
    return xp, table, targets, config


def _compiled_door(
    table: Array,
    targets: Sequence[Array],
    steps: object,
    tol: object,
    max_steps: object,
    log_domain: bool,
    check_every: object,
    compute_dtype: object,
    *,
    write: bool,
) -> _Run | None:
    """The public functions' run through the compiled loops, which check each table themselves.

    For the NumPy batches that :func:`raking.kernel.compiled.use_numba` sends to the compiled
    loops (float32 / float64, two balanced axes, a fixed ``steps``), the table checks of
    :func:`_validate` (finite, non-negative, no empty category with a positive target: four
    passes over the batch) are made by the loops while each table is in cache for its steps,
    and ``write`` forms the balanced tables in the same pass. The cheap checks (targets,
    scalars, dtypes) run here first, as in :func:`_validate`. ``None`` (the caller then takes
    :func:`_validate` and :func:`run_steps`) when the problem is not one for the loops, or
    when a check fails: the fast path checks, :func:`_validate` explains, with its message and
    in its order, and raises.
    """
    if log_domain or not isinstance(table, np.ndarray) or table.ndim < 3:
        return None
    if table.dtype not in (np.float64, np.float32) or 0 in table.shape:
        return None
    try:
        xp = table_namespace(table)
        if count_targets(targets) != 2:
            return None
        dtype = check_compute_dtype(compute_dtype, table, xp=xp)
        if dtype != table.dtype:
            return None
        checked = check_targets(targets, table, xp=xp, dtype=dtype)
        steps, tol = check_steps(steps), check_tol(tol)
        max_steps = check_max_steps(max_steps)
        check_check_every(check_every, n_axes=2, accelerator=False)
    except (TypeError, ValueError):  # _validate raises the first error, in its order
        return None
    from raking.kernel.compiled import use_numba

    if steps is None or not use_numba(table, checked, steps):
        return None
    tol = attainable_tol(tol, checked, xp=xp)
    run = _numba_run(table, checked, steps, tol, xp=xp, check=True, write=write)
    if run is not None:
        _warn(run, steps=steps, max_steps=max_steps, dtype=dtype, stacklevel=4)
    return run


def _axis_error(
    reduced: Array,
    factor: Array,
    target: Array,
    inv_total: Array | None,
    *,
    xp: Any,
    log_domain: bool,
) -> Array:
    """Max of ``|f_a R_a - t_a| / T`` (0-d array, share scale; NaN propagates).

    ``inv_total`` is ``1 / T``, one per table (shape ``(*batch, 1)``): the error of each table
    is measured relative to its own target total; ``None``: not scaled (the caller scales the
    max by the one total of 1-D targets).
    """
    marginal = xp.exp(factor + reduced) if log_domain else factor * reduced
    gap = xp.abs(marginal - target)
    return xp.max(gap if inv_total is None else gap * inv_total)


def _log_targets(targets: list[Array], *, xp: Any) -> list[Array]:
    """``log t`` with ``-inf`` for zero targets, without a divide-by-zero warning."""
    out = []
    for t in targets:
        positive = t > 0
        safe = xp.where(positive, t, xp.ones_like(t))
        out.append(xp.where(positive, xp.log(safe), xp.full_like(t, -math.inf)))
    return out


def _measure(
    table: Storage,
    targets: list[Array],
    factors: list[Array],
    inv_total: Array,
    known: dict[int, Array],
    *,
    xp: Any,
    log_domain: bool,
) -> tuple[Array, dict[int, Array]]:
    """Max marginal error over all axes (0-d array of the compute dtype, not yet on the host).

    ``known`` holds reductions that are still valid (the axis just adjusted: its reduction
    does not depend on its own factor); the others are computed and returned with them, so
    that the next step on one of those axes can reuse its reduction.
    """
    reductions = dict(known)
    shared = inv_total.ndim == 1  # 1-D targets: one total, applied to the max
    err = None
    for a in range(len(targets)):
        if a not in reductions:
            reductions[a] = table.reduce(factors, a, log_domain=log_domain)
        e = _axis_error(
            reductions[a],
            factors[a],
            targets[a],
            None if shared else inv_total,
            xp=xp,
            log_domain=log_domain,
        )
        err = e if err is None else xp.maximum(err, e)
    return (err * inv_total[0] if shared else err), reductions


def attainable_tol(tol: float, targets: Sequence[Array], *, xp: Any) -> float:
    r"""The tolerance the kernel iterates to: ``tol``, or the rounding floor if that is larger.

    ``tol`` is on the share scale: the error is :math:`\max |m_i - t_i| / T`, with ``T`` the
    target total of the table (``1`` for shares, the population for counts). A marginal is
    represented to about ``eps`` times itself, so the error cannot be driven below a few
    ``eps`` times the largest target share :math:`s = \max_i t_i / T`; the kernel uses

    .. math::

        \mathrm{tol}_{\mathrm{eff}} = \max(\mathrm{tol},\ \mathrm{TOL\_EPS}
        \cdot \varepsilon \cdot s),

    with ``eps`` of the compute dtype (``TOL_EPS = 8``; measured: at most ``7 eps s`` from 2x2
    to 1000x1000 and 40x30x20 tables). In float64 the floor is at most ``1.8e-15``: any
    usual ``tol`` is kept. In float32 (also the compute dtype of float16 / bfloat16 tables)
    it is at most ``9.5e-7``, so the default ``1e-10`` is attainable there too. The
    tolerance used is stored in the result (``tol``).
    """
    floor = TOL_EPS * float(xp.finfo(targets[0].dtype).eps)
    if tol >= floor:  # a share is at most 1: no need to look at the targets
        return tol
    share = max(to_float(xp.max(t / xp.sum(t, axis=-1, keepdims=True))) for t in targets)
    return max(tol, floor * share)


class _Guard:
    """Keeps the scaling factors within the compute dtype (``theory.md`` §1.2 stabilisation).

    The scaling form multiplies a table by ``d`` factors. When the targets are unreachable
    (the table's zeros split it into blocks whose targets disagree, or force a cell to 0), the
    factors diverge geometrically and would overflow or underflow. Factors are therefore kept
    in ``[2**-e, 2**e]`` with ``e = emax / (2 (d - 1))`` (``2**512`` in float64 for 2-D
    tables, ``2**64`` in float32): so a table cell times ``d - 1`` factors never overflows. When
    they leave that range they are *absorbed*: the working table becomes ``base * f_1 ⊗ ...
    ⊗ f_d`` (what table-form IPF holds at that step) and the factors restart at 1. A table
    whose scale is far from its targets' (a sum that overflows, subnormal cells) is rescaled
    the same way before the first step, by exact powers of two.
    """

    def __init__(self, targets: list[Array], *, xp: Any, host: bool = True) -> None:
        self.xp = xp
        self.host = host  # host arrays: read scalars one by one; else one read per check
        self.numpy = is_numpy(xp)
        dtype = targets[0].dtype
        self.low, self.high, self.ratio = _Guard.bounds(dtype, len(targets), xp=xp)
        self.tiny = float(xp.finfo(dtype).smallest_normal)
        self.d = len(targets)
        # Zero targets have zero factors by design: ``pad`` lifts them to 1 for the minimum.
        self.pad = [xp.astype(t == 0, dtype) if bool(xp.any(t == 0)) else None for t in targets]

    @staticmethod
    def bounds(dtype: Any, d: int, *, xp: Any) -> tuple[float, float, float]:
        """``(low, high, ratio)``: the factors' range ``2**±e`` and the largest ``T / sum``.

        ``e = floor(emax / (2 (d - 1)))`` and ``ratio = 2**floor(emax / 4)``, with ``emax``
        the base-2 exponent of the largest number of ``dtype``.
        """
        emax = math.log2(float(xp.finfo(dtype).max))
        e = math.floor(emax / (2 * max(d - 1, 1)))
        return 2.0**-e, 2.0**e, 2.0 ** math.floor(emax / 4)

    def _read(self, values: list[Array]) -> list[float]:
        """0-d arrays as floats: one by one on the host, in one transfer from an accelerator."""
        if self.host:
            return [to_float(v) for v in values]
        xp = self.xp
        stacked = xp.stack([xp.astype(v, values[0].dtype) for v in values])
        return [float(v) for v in to_numpy(stacked).astype(np.float64)]

    def check(self, factors: list[Array], error: Array | None) -> tuple[float, str]:
        """The error (NaN if not given) and the factors' state, in one host read.

        ``"ok"``: within range; ``"absorb"``: finite but out of range; ``"overflow"``: a
        factor overflowed, underflowed below the normal range, or is NaN.
        """
        xp = self.xp
        lifted = [f if p is None else f + p for f, p in zip(factors, self.pad, strict=True)]
        if self.numpy:  # the common case, without the namespace's wrappers
            host = [float(f.max()) for f in factors] + [float(f.min()) for f in lifted]
            host += [] if error is None else [float(error)]
        else:
            values = [xp.max(f) for f in factors] + [xp.min(f) for f in lifted]
            host = self._read(values + ([] if error is None else [error]))
        high, low = max(host[: self.d]), min(host[self.d : 2 * self.d])
        if any(math.isnan(v) for v in host[: 2 * self.d]):
            high = math.nan
        err = host[-1] if error is not None else math.nan
        if self.low <= low and high <= self.high:
            return err, "ok"
        if self.tiny <= low and high < math.inf:
            return err, "absorb"
        return err, "overflow"

    def prescale(self, table: Storage, first: Array, inv_total: Array) -> list[Array] | None:
        """Exact power-of-two factors that bring each table's sum near its target total.

        ``first`` is the first reduction (the table's axis-0 marginal, factors 1). ``None``
        when every table's ``T / sum`` lies in ``[2**-emax/4, 2**emax/4]`` (one host read).
        Else a table whose sum overflows is measured by its largest cell times its cell count.
        """
        xp = self.xp
        total = xp.sum(first, axis=-1, keepdims=True)  # (*batch, 1): inf if it overflows
        ratio = 1 / (total * inv_total)  # T / S: 0 if S overflowed, inf if it is subnormal
        low, high = self._read([xp.min(ratio), xp.max(ratio)])
        if 1 / self.ratio <= low and high <= self.ratio:
            return None
        d = self.d
        first_axis = table.ndim - d
        shape = (*first.shape[:-1], 1)
        ratio_np = np.broadcast_to(to_numpy(ratio).astype(np.float64), shape)
        bad = ~((1 / self.ratio <= ratio_np) & (ratio_np <= self.ratio))
        log_t = np.broadcast_to(-np.log2(to_numpy(inv_total).astype(np.float64)), shape)
        mass = to_numpy(total).astype(np.float64)
        if np.any(np.isinf(mass)):  # the sum overflowed: bound it by max cell x cells
            top = to_numpy(table.cell_max(table.values)).astype(np.float64)
            cells = math.prod(table.shape[first_axis:])
            bound = math.log2(cells) + np.log2(np.reshape(top, np.shape(mass)))
            log_s = np.where(np.isinf(mass), bound, np.log2(np.where(np.isinf(mass), 1, mass)))
        else:
            log_s = np.log2(mass)
        shift = np.rint(np.where(bad, log_t - log_s, 0.0)).astype(np.int64)
        per_axis = np.floor_divide(shift, d)
        exponents = [shift - (d - 1) * per_axis] + [per_axis] * (d - 1)
        dtype = first.dtype
        out = []
        for a, exponent in enumerate(exponents):
            n = table.shape[first_axis + a]
            values = np.broadcast_to(np.ldexp(1.0, exponent), (*exponent.shape[:-1], n))
            values = np.ascontiguousarray(values)
            out.append(xp.asarray(values, dtype=dtype, device=table.device))
        return out


class _Run(NamedTuple):
    """What :func:`run_steps` found: the public result and the working state that forms the table.

    ``base`` is the table the ``factors`` apply to: the input table, or, after the factors had
    to be absorbed, the working table (compute dtype). ``result.factors`` apply to the input.
    ``table``: the balanced table where the compiled loops formed it already, else ``None``.
    """

    result: ScalingResult
    base: Array
    factors: tuple[Array, ...]
    diverged: bool
    stopped_at: int | None
    unrepresentable: int
    table: Array | None = None


def _ipf(
    table: Array,
    targets: list[Array],
    *,
    steps: int | None,
    tol: float,
    max_steps: int,
    check_every: int,
    log_domain: bool,
    xp: Any,
    compiled: bool | None = None,
) -> ScalingResult:
    """The factors of :func:`run_steps` (validated inputs only), for callers that need no table."""
    return run_steps(
        table,
        targets,
        steps=steps,
        tol=tol,
        max_steps=max_steps,
        check_every=check_every,
        log_domain=log_domain,
        xp=xp,
        compiled=compiled,
    ).result


def run_steps(
    table: Array,
    targets: list[Array],
    *,
    steps: int | None,
    tol: float,
    max_steps: int,
    check_every: int,
    log_domain: bool,
    xp: Any,
    compiled: bool | None = None,
    stacklevel: int = 4,
) -> _Run:
    """Run the balancing steps in the scaling form (validated inputs only).

    Fixed ``steps``: exactly that many adjustments. ``steps=None``: adjust until the error, measured
    every ``check_every`` steps, is at most ``tol`` (raised to :func:`attainable_tol`), or
    ``max_steps`` is reached. ``compiled``: ``None`` sends NumPy batches to the Numba loops where
    they are measured to be faster (:func:`raking.kernel.compiled.use_numba`), ``True`` wherever the
    loops support the input, ``False`` never. Both paths compute the same numbers (tested to 1e-12);
    a table whose factors leave the safe range is redone by the array-API loop (:class:`_Guard`).

    The compute dtype is the targets' dtype: the factors are created in it, and a table stored
    in a narrower dtype (float16 / bfloat16) is reduced in blocks cast to it (never compiled).
    Warns (:class:`~raking.exceptions.ConvergenceWarning`) when the factors diverged (the
    targets are unreachable) or the run to ``tol`` hit ``max_steps``.
    """
    tol = attainable_tol(tol, targets, xp=xp)
    run = None
    if compiled is not False and steps is not None and not log_domain and is_numpy(xp):
        from raking.kernel.compiled import numba_supports, use_numba

        chosen = numba_supports if compiled else use_numba
        if chosen(table, targets, steps):
            run = _numba_run(table, targets, steps, tol, xp=xp)
    if run is None:
        run = _loop(
            table,
            targets,
            steps=steps,
            tol=tol,
            max_steps=max_steps,
            check_every=check_every,
            log_domain=log_domain,
            xp=xp,
        )
    _warn(run, steps=steps, max_steps=max_steps, dtype=targets[0].dtype, stacklevel=stacklevel)
    return run


def _warn(run: _Run, *, steps: int | None, max_steps: int, dtype: Any, stacklevel: int) -> None:
    """The :class:`~raking.exceptions.ConvergenceWarning` of a run, with its true reason."""
    res = run.result
    if res.converged and not run.unrepresentable:
        return
    achieved = f"max |marginal - target| / total = {res.marginal_error:.3g}"
    if run.stopped_at is not None:
        reason = (
            f"balancing stopped after {res.steps} adjustments: the next step would overflow "
            f"{dtype} (a category's mass is too small for its target); {achieved}."
        )
    elif run.diverged and not res.converged:
        reason = (
            "the targets cannot be met given the table's zeros: the scaling factors diverged "
            "(past the safe range of the compute dtype), as they do when blocks of the table "
            "have targets that disagree or the zero pattern forces a cell to 0 (targets met "
            "at best in a limit where some cell vanishes), so balancing oscillates or stalls "
            f"instead of converging; after {res.steps} adjustments {achieved} > "
            f"tol={res.tol:.3g}. The result is what table-form IPF gives after that many steps. "
            "Check the targets against the table's zero pattern (or merge categories)."
        )
    elif steps is None and not res.converged:
        reason = (
            f"balancing stopped after max_steps={max_steps} adjustments with {achieved} > "
            f"tol={res.tol:.3g}. Increase max_steps or loosen tol."
        )
    else:
        reason = ""
    if run.unrepresentable:
        reason += (
            f" The scaling factors of {run.unrepresentable} table(s) cannot represent the "
            f"balanced table in {dtype} (they over- or underflow) and are returned as NaN; the "
            "balanced table of balance / balance_result is right."
        )
    if reason:
        warnings.warn(reason.strip(), ConvergenceWarning, stacklevel=stacklevel)


def _loop(
    table: Array,
    targets: list[Array],
    *,
    steps: int | None,
    tol: float,
    max_steps: int,
    check_every: int,
    log_domain: bool,
    xp: Any,
) -> _Run:
    """The array-API loop of :func:`run_steps`, with the factors kept in range by :class:`_Guard`.

    Written once against the table's :class:`~raking.kernel.storage.Storage` (chosen here, at
    entry): its reductions, its absorption of factors into a working table. Every
    ``check_every`` steps (and after the last) the factors' range is read back with the
    error, in one host read. Factors out of range are absorbed into the working table; factors
    that over- or underflowed within the period are discarded: the run goes back to the last
    check, absorbs the factors it had there and redoes the steps one by one.
    """
    d = len(targets)
    dtype = targets[0].dtype
    inv_total = 1 / xp.sum(targets[0], axis=-1, keepdims=True)
    log_targets = _log_targets(targets, xp=xp) if log_domain else None
    store = storage_of(table, dtype, xp=xp, d=d)
    host = not on_accelerator(store.values)
    guard = None if log_domain else _Guard(targets, xp=xp, host=host)
    base, absorbed = store, None
    factors = initial_factors(table, targets, xp=xp, log_domain=log_domain, dtype=dtype)
    with np.errstate(over="ignore"):  # NumPy: a sum may overflow (then the table is rescaled)
        cached = {0: base.reduce(factors, 0, log_domain=log_domain)}
        scale = None if guard is None else guard.prescale(base, cached[0], inv_total)
    if scale is not None:
        base, absorbed = base.absorb(scale), scale
        cached = {0: base.reduce(factors, 0, log_domain=log_domain)}
    limit = max_steps if steps is None else steps
    taken, period, error = 0, check_every, math.inf
    diverged, stopped_at = False, None
    if steps is None:
        err, cached = _measure(
            base, targets, factors, inv_total, cached, xp=xp, log_domain=log_domain
        )
        error = to_float(err)
    ones = list(factors)  # the factors of a fresh start (after an absorption: of the base)
    snapshot = (0, ones)
    while taken < limit and not (steps is None and error <= tol):
        a = taken % d
        reduced = cached.pop(a) if a in cached else base.reduce(factors, a, log_domain=log_domain)
        cached.clear()
        factors[a] = new_factor(
            reduced, targets[a], None if log_targets is None else log_targets[a], xp=xp
        )
        taken += 1
        cached = {a: reduced}  # still valid: it does not depend on factors[a]
        if taken % period and taken != limit:
            continue
        err = None
        if steps is None:
            err, cached = _measure(
                base, targets, factors, inv_total, cached, xp=xp, log_domain=log_domain
            )
        if guard is None:
            error = error if err is None else to_float(err)
            continue
        measured, state = guard.check(factors, err)
        if steps is None:
            error = measured
        if state == "ok":
            snapshot = (taken, list(factors))
            continue
        diverged, cached = True, {}
        if state == "overflow":  # back to the last check, then one step at a time
            start, saved = snapshot
            if saved is ones and start == taken - 1:  # a single step overflows: stop there
                taken, factors, stopped_at = start, list(ones), start
                break
            taken, factors, period, error = start, list(saved), 1, math.inf
            if saved is ones:  # nothing to absorb: redo the steps one by one
                continue
        with np.errstate(all="ignore"):  # NumPy: a cumulative factor may overflow (then NaN)
            base = base.absorb(factors)
            absorbed = _times(absorbed, factors, store, xp=xp)
        factors = initial_factors(table, targets, xp=xp, log_domain=False, dtype=dtype)
        ones = list(factors)
        snapshot = (taken, ones)
    if steps is not None or stopped_at is not None:
        err, _ = _measure(base, targets, factors, inv_total, cached, xp=xp, log_domain=log_domain)
        error = to_float(err)
    public, unrepresentable = factors, 0
    if absorbed is not None:
        with np.errstate(all="ignore"):  # NumPy: overflowing cumulative factors give NaN
            public, unrepresentable = _represent(store, base, factors, absorbed, inv_total, xp=xp)
    result = ScalingResult(
        factors=tuple(public),
        steps=taken,
        converged=math.isfinite(error) and error <= tol,
        marginal_error=error,
        tol=tol,
        log_domain=log_domain,
    )
    return _Run(result, base.table, tuple(factors), diverged, stopped_at, unrepresentable)


def _times(
    absorbed: list[Array] | None, factors: list[Array], table: Storage, *, xp: Any
) -> list[Array]:
    """The cumulative factors after absorbing ``factors``, re-gauged per block of ``table``.

    ``absorbed * factors``, then :func:`_gauge`: the scale freedom of each connected block of
    the table's support is spent on keeping the factors near 1, so that blocks whose targets
    disagree (their factors drift apart by a constant ratio per sweep) keep representable
    cumulative factors however long the run.
    """
    cumulative = list(factors) if absorbed is None else [
        c * f for c, f in zip(absorbed, factors, strict=True)
    ]
    return _gauge(cumulative, table, xp=xp)


def _gauge(factors: list[Array], table: Storage, *, xp: Any) -> list[Array]:
    r"""Factors rescaled by exact powers of two per connected block, the balanced table unchanged.

    Every positive cell of ``table`` joins its categories of all balanced axes; within one
    connected block :math:`c` the factors of axis :math:`a` may be multiplied by
    :math:`2^{s_{c,a}}` with :math:`\sum_a s_{c,a} = 0`, which leaves every product
    :math:`K f_1 \cdots f_d` as it is (exactly). The shifts bring the mean :math:`\log_2` of the
    positive factors of each axis of the block to the mean over the axes. Computed on the host
    (SciPy's ``connected_components`` on the support, factor vectors only); called only when
    factors are absorbed.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    d = len(factors)
    sizes = [int(table.shape[table.ndim - d + a]) for a in range(d)]
    offsets = np.cumsum([0, *sizes])
    nodes = int(offsets[-1])
    batch, where, cells = table.support()
    first = where * nodes + cells[0]
    tails = np.concatenate([first] * (d - 1))
    heads = np.concatenate([where * nodes + offsets[a] + cells[a] for a in range(1, d)])
    n = batch * nodes
    graph = coo_matrix((np.ones(tails.size, np.int8), (tails, heads)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    logs = []
    for f in factors:
        host = np.broadcast_to(to_numpy(f).astype(np.float64), (batch, f.shape[-1]))
        positive = np.isfinite(host) & (host > 0)
        logs.append(np.where(positive, np.log2(np.where(positive, host, 1.0)), np.nan))
    ids = [np.reshape(labels, (batch, nodes))[:, offsets[a] : offsets[a + 1]] for a in range(d)]
    means = []
    for a in range(d):
        ok = ~np.isnan(logs[a])
        total = np.bincount(ids[a][ok], weights=logs[a][ok], minlength=n)
        count = np.bincount(ids[a][ok], minlength=n)
        means.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    centre = np.mean(means, axis=0)  # NaN where some axis has no positive factor in the block
    shifts = [np.where(np.isnan(centre), 0.0, np.rint(centre - m)) for m in means[1:]]
    shifts = [-np.sum(shifts, axis=0), *shifts]
    out = []
    for a, f in enumerate(factors):
        s = shifts[a][ids[a]]  # (batch, n_a)
        if not np.any(s):
            out.append(f)
            continue
        scaled = np.ldexp(np.broadcast_to(to_numpy(f), s.shape), s.astype(np.int64))
        shape = (*table.shape[: table.ndim - d], sizes[a])
        scaled = np.reshape(scaled, shape) if f.ndim > 1 or batch > 1 else scaled[0]
        out.append(xp.asarray(scaled, dtype=f.dtype, device=table.device))
    return out


def _represent(
    table: Storage,
    base: Storage,
    factors: list[Array],
    absorbed: list[Array],
    inv_total: Array,
    *,
    xp: Any,
) -> tuple[list[Array], int]:
    """The factors relative to the input table after absorption, NaN where they cannot be.

    The cumulative factors ``C_a = absorbed_a * f_a`` are returned for every table of the
    batch whose ``table * C_1 ⊗ ... ⊗ C_d`` equals the working table's result to
    :data:`REPRESENT_RTOL` times the target total; a table whose factors over- or underflowed
    (targets unreachable inside a connected block of the table) gets NaN factors, so that
    :func:`apply_scaling` refuses them instead of forming a wrong table. Also returns the
    number of such tables. Costs two table-sized products (only after an absorption).
    """
    cumulative = _times(absorbed, factors, table, xp=xp)
    dtype = factors[0].dtype
    tol = REPRESENT_RTOL * float(xp.finfo(dtype).eps)
    expected = base.cells(factors)
    gap = table.cell_max(xp.abs(table.cells(cumulative) - expected)) * inv_total[..., 0]
    bad = ~(gap <= tol)
    if not bool(xp.any(bad)):
        return cumulative, 0
    count = int(xp.sum(xp.astype(bad, xp.int64)))
    nan = xp.asarray(math.nan, dtype=dtype, device=table.device)
    return [xp.where(bad[..., None], nan, c) for c in cumulative], count


def _numba_run(
    table: Array,
    targets: list[Array],
    steps: int,
    tol: float,
    *,
    xp: Any,
    check: bool = False,
    write: bool = False,
) -> _Run | None:
    """:func:`run_steps` with the compiled loops; tables whose factors left the safe range redone.

    The loops flag a table whose sum is far from its target total or whose factors leave the
    :class:`_Guard` range, and stop on it; those tables (rare: unreachable targets) are
    balanced again by :func:`_loop`, which absorbs the factors, and merged back. ``check``:
    the loops also check each table (:func:`raking.kernel.compiled.numba_ipf`), and ``None``
    is returned if one fails. ``write``: the balanced tables are formed in the same pass
    (``_Run.table``).
    """
    from raking.kernel.compiled import numba_ipf

    bounds = _Guard.bounds(targets[0].dtype, 2, xp=xp)
    out = numba_ipf(table, targets, steps, bounds=bounds, check=check, write=write)
    if check and out.invalid.any():
        return None
    *batch, m, l = table.shape
    f0, f1 = (np.reshape(f, (-1, f.shape[-1])) for f in out.factors)
    errors = out.errors
    flagged = np.flatnonzero(out.flagged)
    base, factors, public = table, [f0, f1], [f0, f1]
    diverged, stopped, unrepresentable = False, None, 0
    if flagged.size:
        n = f0.shape[0]
        flat = np.reshape(table, (n, m, l))
        sub = [t if t.ndim == 1 else np.reshape(t, (n, -1))[flagged] for t in targets]
        redo = _loop(
            flat[flagged],
            sub,
            steps=steps,
            tol=tol,
            max_steps=max(steps, 1),
            check_every=2,
            log_domain=False,
            xp=xp,
        )
        base = flat.copy()
        base[flagged] = redo.base
        factors = [f.copy() for f in factors]
        public = [f.copy() for f in public]
        for a in range(2):
            factors[a][flagged] = redo.factors[a]
            public[a][flagged] = redo.result.factors[a]
        errors = errors.copy()
        errors[flagged] = -np.inf
        errors = np.append(errors, redo.result.marginal_error)
        base = np.reshape(base, table.shape)
        diverged, stopped = redo.diverged, redo.stopped_at
        unrepresentable = redo.unrepresentable
        if write:
            redone = storage_of(redo.base, targets[0].dtype, xp=xp, d=2)
            np.reshape(out.table, (n, m, l))[flagged] = redone.scale(
                redo.factors, log_domain=False
            )
    error = float(np.max(errors))  # NaN propagates
    shapes = [(*batch, m), (*batch, l)]
    result = ScalingResult(
        factors=tuple(np.reshape(f, s) for f, s in zip(public, shapes, strict=True)),
        steps=steps if stopped is None else stopped,
        converged=math.isfinite(error) and error <= tol,
        marginal_error=error,
        tol=tol,
        log_domain=False,
    )
    factors = tuple(np.reshape(f, s) for f, s in zip(factors, shapes, strict=True))
    return _Run(result, base, factors, diverged, stopped, unrepresentable, out.table)
