r"""Row- and cell-level raking of unit weights from integer category codes (survey scale).

Given design weights :math:`d_i > 0` of ``n`` rows and, for each of ``p`` variables, the level
:math:`c_v(i)` of every row and a target count :math:`t_v(j)` per level, raking finds weights
:math:`w_i = d_i g_i` whose margins :math:`\sum_{i: c_v(i) = j} w_i` equal the targets, with

.. math::

    g_i = \exp\Big(\sum_{v=1}^p \lambda_v(c_v(i))\Big)
    \quad\text{or, with bounds,}\quad
    g_i = \operatorname{clip}\Big(\exp\sum_v \lambda_v(c_v(i)),\ lo,\ hi\Big).

These are the KL-closest weights to the design weights that meet the margins (and the bounds):
they minimise :math:`\sum_i d_i (g_i \log g_i - g_i + 1)` subject to the margins and
:math:`lo \le g_i \le hi` -- raking ratio estimation (Deville & Särndal 1992), the weights of R
``survey``'s ``rake()`` and ``calibrate(calfun="raking", bounds=)``.

Step ``k`` adjusts variable ``v = (k - 1) mod p`` (``theory.md`` §1.2, the paper's k):

- unbounded (iterative proportional fitting on units): :math:`w_i \leftarrow w_i\,
  t_v(c_v(i)) / m_v(c_v(i))`, with :math:`m_v` the current margin (factor 1 where it is 0);
- bounded (dual coordinate ascent): for every level ``j`` of ``v`` at once, solve the monotone
  piecewise-linear equation :math:`\sum_{i \in j} d_i \operatorname{clip}(q_i \rho_j, lo, hi) =
  t_v(j)` exactly (safeguarded Newton: each iterate is bracketed, and Newton is exact once in the
  root's linear piece), then :math:`q_i \leftarrow q_i \rho_{c_v(i)}`, where
  :math:`q = \exp\sum_v \lambda_v` is the unclipped factor.

Cells or rows. Every row of a cell of the crossed codes gets the same factor :math:`g`, so when
the non-empty cells are few (at most half the rows), the cells are raked with their summed design
weights and ``g`` is expanded back to the rows; otherwise the rows are raked directly. Cells are
found from a mixed-radix integer key of the codes (``int32`` where it fits), via a count over the
key range when that range is at most ``4 n`` (so it costs no more memory than four ``int64``
columns; compiled in :func:`raking.survey.compiled.dense_cells` from 100,000 rows), else by
sorting (``numpy.unique``); the dense table of all level combinations is never formed. Each step
is O(units): one group sum per variable (``numpy.bincount``, or the compiled passes of
:mod:`raking.survey.compiled` for problems of 100,000 units and more). Codes are kept in the
smallest integer dtype (:func:`code_dtype`).

Scale. The weights depend on the design weights only relative to each other (and, with bounds,
through :math:`g = w / d`), so design weights outside :math:`2^{\pm 500}` are raked divided by a
power of two (exact; :func:`design_scale`): design weights of 1e307, whose sum overflows, or
subnormal ones give the same weights as their normal copies instead of zeros or NaN.

Stopping. With ``steps=None`` the max absolute margin error, as a share of the total, is measured
at the end of a sweep (in its last pass: every sweep with bounds; without, once the errors seen
before each step predict convergence); iteration stops when it is at most ``tol``, after
``max_iter`` sweeps, or when it has not fallen below 0.99 times its earlier best for 20 sweeps (a
stall: margins that the data's empty cells or the bounds rule out together). The last two warn
(:class:`~raking.exceptions.ConvergenceWarning`) and return ``converged=False``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from raking.exceptions import ConvergenceWarning
from raking.results import RakingWeights
from raking.survey.compiled import numba_available
from raking.survey.loops import _NUMBA_MIN_UNITS, _gemm_passes, _one, _passes, _Run, _run
from raking.validation import (
    check_bounded_levels,
    check_bounds,
    check_design_weights,
    check_positive_int,
    check_steps,
    check_target_values,
    check_tol,
    count_targets,
    raise_on_empty_levels,
    resolve_total,
)

__all__ = ["cells_from_codes", "design_scale", "rake_codes", "scaled_targets"]

_CELL_FRACTION = 0.5  # rake cells when there are at most this many per row
_DENSE_KEYS_PER_ROW = 4  # key lookup array allowed up to this many entries per row
_PLAIN_SCALE = (2.0**-500, 2.0**500)  # design weights raked as given within this range
_MAX_SPREAD_EXPONENT = 1000  # largest / smallest design weight beyond 2**this: refused


def rake_codes(
    codes: Sequence[np.ndarray] | np.ndarray,
    targets: Sequence[np.ndarray],
    *,
    weights: np.ndarray | None = None,
    steps: int | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    bounds: tuple[float, float] | None = None,
) -> RakingWeights:
    r"""Rake unit weights so that each variable's weighted level counts match its target.

    .. math::

        w_i = d_i\, g_i, \qquad \sum_{i:\, c_v(i) = j} w_i = t_v(j) \quad \text{for all } v, j.

    Parameters
    ----------
    codes : sequence of p integer arrays of shape ``(n,)``, or an array ``(p, n)``
        Level of each row for each variable, in ``[0, len(targets[v]))``.
    targets : sequence of p 1-D arrays
        Target count (or share) per level of each variable; all with the same total (relative
        1e-6; then rescaled to the first one's total), which the weights sum to.
    weights : numpy.ndarray of shape ``(n,)``, optional
        Design weights, finite and > 0, the starting weights; ``None``: equal, ``total / n``.
        Any real dtype, read-only or strided; near the float64 limits they are rescaled
        (:func:`design_scale`).
    steps : int or None
        ``k`` single-variable adjustments, cycling through the variables (the paper's
        :math:`P_n^{(k)}` on weighted data; ``0`` returns the design weights scaled to the total);
        ``None``: iterate until the max absolute margin error is at most ``tol`` of the total.
    tol : float
        Tolerance on the margin error as a share of the total (``steps=None``).
    max_iter : int
        Maximum number of full sweeps over the variables (``steps=None``).
    bounds : (lo, hi), optional
        Bounds on :math:`g_i = w_i / d_i`, enforced inside the iteration (see module notes).

    Returns
    -------
    raking.results.RakingWeights
        The weights (shape ``(n,)``), raked margins, steps, sweeps, convergence diagnostics.

    Raises
    ------
    ValueError
        Codes out of range, bad targets or weights, a level whose target no ``bounds`` can reach.
    raking.exceptions.EmptyCategoryError
        A level with a positive target but no rows.

    Notes
    -----
    ``theory.md`` §1.2 [SUM]: each unbounded step is the I-projection onto one margin; with
    ``steps=None`` the limit is the raking (KL) projection, the same weights as R ``survey``'s
    ``rake()``. :func:`raking.rake` is the pandas front end.

    Examples
    --------
    >>> import numpy as np
    >>> from raking.survey.weights import rake_codes
    >>> x, y = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 1])
    >>> out = rake_codes([x, y], [np.array([2.0, 3.0]), np.array([1.0, 4.0])])
    >>> np.round([out.weights[x == 0].sum(), out.weights[y == 1].sum()], 10)
    array([2., 4.])
    """
    p = count_targets(targets)
    t = [check_target_values(f"{v}", list(range(len(tv))), tv) for v, tv in enumerate(targets)]
    c = _check_codes(codes, [tv.size for tv in t])
    n = c.shape[1]
    sums = [float(tv.sum()) for tv in t]
    total, _ = resolve_total([str(v) for v in range(p)], sums, None, default=n)
    t = [tv * (total / s) for tv, s in zip(t, sums, strict=True)]
    d, shift = (
        (np.full(n, total / n), 0)
        if weights is None
        else design_scale(check_design_weights(weights, n, name="weights"), name="weights")
    )
    bounds = check_bounds(bounds)
    t_run = scaled_targets(t, shift, bounds)  # on the scale of d, for the bounds
    for v, (tv, tv_run) in enumerate(zip(t, t_run, strict=True)):
        dsum = np.bincount(c[v], weights=d, minlength=tv.size)
        empty = np.flatnonzero((dsum == 0) & (tv > 0))
        raise_on_empty_levels(f"{v}", empty.tolist(), tv[empty])
        if bounds is not None:
            check_bounded_levels(f"{v}", list(range(tv.size)), tv_run, dsum, bounds)
    return _rake(
        c,
        t_run,
        d,
        steps=check_steps(steps),
        tol=check_tol(tol),
        max_iter=check_positive_int(max_iter, name="max_iter"),
        bounds=bounds,
        shift=shift if bounds is not None else 0,
    )


def design_scale(
    d: np.ndarray, *, name: str, labels: Sequence[object] | None = None
) -> tuple[np.ndarray, int]:
    r"""Design weights divided by a power of two :math:`2^e` so that their sums cannot overflow.

    Raking does not depend on the scale of the design weights: without bounds the raked weights
    depend on them only through ratios within a level; with bounds on :math:`g_i = w_i / d_i`,
    dividing the targets by the same :math:`2^e` (:func:`scaled_targets`) and multiplying the
    raked weights back gives the same :math:`g` (powers of two scale floats exactly). So design
    weights of 1e307, whose sum overflows, or subnormal ones (1e-310, whose factors
    :math:`t / m` overflow and which hold fewer significant digits), are raked as
    :math:`d_i 2^{-e}` with the largest in ``[0.5, 1)``. Weights within :math:`2^{\pm 500}`
    (all real surveys) are returned as given: ``e = 0``, the same bits as before.

    Parameters
    ----------
    d : numpy.ndarray of float64, shape ``(n,)``
        Validated design weights (finite, > 0).
    name : str
        The argument, for the message.
    labels : sequence, optional
        Row labels (e.g. a DataFrame's index) to name rows by; default: positions.

    Returns
    -------
    (numpy.ndarray, int)
        The weights to rake from and :math:`e`.

    Raises
    ------
    ValueError
        When the largest design weight is more than :math:`2^{1000}` (about 1e301) times the
        smallest: scaled to the largest, the smallest would be subnormal or 0, and no float64
        factor could bring both to their targets. Design weights are inverse inclusion
        probabilities; such a spread is a corrupted value.
    """
    lo, hi = float(d.min()), float(d.max())
    if _PLAIN_SCALE[0] <= lo and hi <= _PLAIN_SCALE[1]:
        return d, 0
    e, e_lo = math.frexp(hi)[1], math.frexp(lo)[1]
    if e - e_lo > _MAX_SPREAD_EXPONENT:
        big, small = int(np.argmax(d)), int(np.argmin(d))
        where = (lambda i: f"row {labels[i]!r}") if labels is not None else (lambda i: f"row {i}")
        raise ValueError(
            f"{name} spans more than 2**{_MAX_SPREAD_EXPONENT} (about 1e301): its largest value "
            f"{hi!r} ({where(big)}) is about 2**{e - e_lo} times its smallest {lo!r} "
            f"({where(small)}). float64 cannot rake them together; "
            "design weights are inverse inclusion probabilities, so one of them is corrupted. "
            "Fix or drop those rows."
        )
    return np.ldexp(d, -e), e


def scaled_targets(
    targets: Sequence[np.ndarray],
    shift: int,
    bounds: tuple[float, float] | None,
    names: Sequence[object] | None = None,
) -> list[np.ndarray]:
    r"""Targets on the scale of design weights divided by ``2**shift`` (:func:`design_scale`).

    ``names`` (the keys of the targets) name the variable in the message; default: positions.

    Only bounded raking needs it (its factors :math:`g = w / d` are relative to the design
    weights); unbounded raking is invariant to the design weights' scale, so its targets stay.

    Raises
    ------
    ValueError
        When a scaled target leaves the normal float64 range: the factors :math:`g` that the
        bounds constrain (about the targets' total over the design weights' total, here near
        :math:`2^{\pm 1000}`) are then not representable.
    """
    if shift == 0 or bounds is None:
        return list(targets)
    with np.errstate(over="ignore", under="ignore"):  # checked below
        scaled = [np.ldexp(t, -shift) for t in targets]
    tiny = np.finfo(np.float64).tiny
    for v, (t, s) in enumerate(zip(targets, scaled, strict=True)):
        if not (np.isfinite(s).all() and (s[t > 0] >= tiny).all()):
            name = names[v] if names is not None else v
            raise ValueError(
                f"bounds={bounds} constrain g = w / d, the raked weight over the design weight, "
                f"but targets[{name!r}] (total {float(t.sum()):.6g}) is about 2**{-shift} times "
                "the design weights' scale: such g are beyond float64. Check that the targets and "
                "the design weights are in the same units, or rake without bounds."
            )
    return scaled


def cells_from_codes(
    codes: Sequence[np.ndarray] | np.ndarray,
    n_levels: Sequence[int],
    *,
    max_cells: int | None = None,
    return_counts: bool = False,
) -> tuple[np.ndarray, ...] | None:
    r"""The non-empty cells of the crossed codes: their codes, and the cell of every row.

    The mixed-radix key of row ``i`` is :math:`\sum_v c_v(i) \prod_{u<v} L_u`. When the key
    range is at most ``4 n + 1024``, cells come from a count over the range (compiled, with
    :func:`raking.survey.compiled.dense_cells`, from 100,000 rows when numba is installed; the
    same integers either way), else from sorting the keys (``numpy.unique``).

    Parameters
    ----------
    codes : numpy.ndarray of int, shape ``(p, n)``, or a sequence of p integer arrays ``(n,)``
        Validated level codes (any integer dtype).
    n_levels : sequence of int
        Number of levels of each variable.
    max_cells : int, optional
        Give up (return ``None``) when there are more non-empty cells than this.
    return_counts : bool
        Also return the number of rows in each cell.

    Returns
    -------
    (cell_codes, cell_of_row[, counts]) or None
        ``cell_codes`` of shape ``(p, m)`` in :func:`code_dtype` (cells in key order),
        ``cell_of_row`` of shape ``(n,)`` with values in ``[0, m)``, ``counts`` int64 of shape
        ``(m,)``. ``None`` if the key would overflow ``int64`` or there are more than
        ``max_cells`` cells.
    """
    p, n = len(codes), codes[0].shape[0]
    radix = math.prod(n_levels)
    if radix >= 2**62:
        return None
    dense = radix <= _DENSE_KEYS_PER_ROW * n + 1024
    if dense and n >= _NUMBA_MIN_UNITS and numba_available():
        from raking.survey.compiled import dense_cells

        stacked = codes if isinstance(codes, np.ndarray) else np.stack(codes)
        out = dense_cells(
            np.ascontiguousarray(stacked), list(n_levels), max_cells, code_dtype(n_levels)
        )
        return out if out is None or return_counts else out[:2]
    key_dtype = np.int32 if radix < 2**31 else np.int64  # half the traffic where it fits
    strides = [math.prod(n_levels[:v]) for v in range(p)]
    key = codes[0].astype(key_dtype)
    scratch = np.empty(n, dtype=key_dtype)
    for v in range(1, p):
        key += np.multiply(codes[v], strides[v], out=scratch, dtype=key_dtype)
    if dense:
        rows_per_key = np.bincount(key, minlength=radix)
        uniq = np.flatnonzero(rows_per_key)
        if max_cells is not None and uniq.size > max_cells:
            return None
        index = np.empty(radix, dtype=np.int32 if uniq.size < 2**31 else np.int64)
        index[uniq] = np.arange(uniq.size)
        cell_of_row = index[key]
        counts = rows_per_key[uniq]
    else:
        uniq, cell_of_row, counts = np.unique(key, return_inverse=True, return_counts=True)
        if max_cells is not None and uniq.size > max_cells:
            return None
    cell_codes = np.empty((p, uniq.size), dtype=code_dtype(n_levels))
    for v in range(p):
        cell_codes[v] = (uniq // strides[v]) % n_levels[v]
    return (cell_codes, cell_of_row, counts) if return_counts else (cell_codes, cell_of_row)


def code_dtype(n_levels: Sequence[int]) -> np.dtype:
    """The smallest signed integer dtype for level codes: ``int8`` up to 128 levels.

    The passes over the units read one code per variable per unit; small codes take less
    memory (fewer fresh pages) and traffic. Negative sentinels (-1, -2) fit too.
    """
    return np.min_scalar_type(-max(*n_levels, 128))


# --------------------------------------------------------------------------------------------
# The orchestration (no validation; inputs as checked by rake_codes or raking.survey.frontend)
# --------------------------------------------------------------------------------------------


class _Units(NamedTuple):
    """What is raked: the non-empty cells of the crossed codes, or the rows themselves."""

    codes: np.ndarray  # (p, m) in code_dtype, C-contiguous: level codes of the m units
    design: np.ndarray  # (m,) design weight of each unit (summed over a cell's rows)
    rows: np.ndarray | None  # (m,) rows per cell; None when the units are the rows
    cell_of_row: np.ndarray | None  # (n,) cell of each row; None when the units are the rows


def _units(
    codes: Sequence[np.ndarray] | np.ndarray,
    n_levels: Sequence[int],
    design: np.ndarray,
    *,
    equal: bool = False,
    method: str | None = None,
) -> _Units:
    """Cells when there are at most ``_CELL_FRACTION`` of them per row, else rows.

    ``equal``: every design weight is ``design[0]`` (then a cell's weight is its row count
    times that, without a pass over the rows). ``method`` (``"cells"``, ``"rows"``) forces a
    choice (tests and benchmarks).
    """
    n = design.shape[0]
    cells = None
    if method != "rows":
        limit = n if method == "cells" else int(_CELL_FRACTION * n)
        cells = cells_from_codes(codes, n_levels, max_cells=limit, return_counts=True)
    if cells is None:
        stacked = np.empty((len(codes), n), dtype=code_dtype(n_levels))
        for v, c in enumerate(codes):
            stacked[v] = c
        return _Units(stacked, design, None, None)
    cell_codes, cell_of_row, counts = cells
    if equal:
        cell_d = counts * design[0]
    else:
        cell_d = np.bincount(cell_of_row, weights=design, minlength=counts.size)
    return _Units(cell_codes, cell_d, counts, cell_of_row)


def _level_sums(units: _Units, n_levels: Sequence[int]) -> tuple[list, list]:
    """Rows (int64) and summed design weight of every level of every variable (two passes)."""
    offsets = np.concatenate([[0], np.cumsum(n_levels)]).astype(np.int64)
    p, m = len(n_levels), units.design.shape[0]
    passes = _passes(None, m)
    per_unit = np.ones(m) if units.rows is None else units.rows.astype(np.float64)
    rows = passes.scale_count(units.codes, offsets, per_unit, -1, None, 0, p)
    design = passes.scale_count(units.codes, offsets, units.design, -1, None, 0, p)
    rows = np.rint(rows).astype(np.int64)  # sums of integers below 2**53: exact
    return (
        [rows[offsets[v] : offsets[v + 1]] for v in range(p)],
        [design[offsets[v] : offsets[v + 1]] for v in range(p)],
    )


def _rake(
    codes: Sequence[np.ndarray] | np.ndarray,
    targets: Sequence[np.ndarray],
    design: np.ndarray,
    *,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float] | None,
    backend: str | None = None,
    method: str | None = None,
    shift: int = 0,
) -> RakingWeights:
    """Rake validated ``codes`` (``(p, n)``) to ``targets`` (one total) from ``design``.

    ``backend`` (``"numpy"``, ``"numba"``) and ``method`` (``"cells"``, ``"rows"``) force a path
    (tests and benchmarks); ``None`` chooses by size. ``shift``: see :func:`_rake_units`.
    """
    units = _units(codes, [int(t.size) for t in targets], design, method=method)
    return _rake_units(
        units,
        design,
        targets,
        steps=steps,
        tol=tol,
        max_iter=max_iter,
        bounds=bounds,
        backend=backend,
        shift=shift,
    )


def _rake_units(
    units: _Units,
    design: np.ndarray,
    targets: Sequence[np.ndarray],
    *,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float] | None,
    backend: str | None = None,
    shift: int = 0,
) -> RakingWeights:
    """Rake ``units`` (from :func:`_units`) and give every row its weight.

    ``shift``: the targets were divided by ``2**shift`` (:func:`scaled_targets`); the weights
    and margins are multiplied back (the errors, shares of the total, are unchanged).
    """
    p = len(targets)
    n_levels = [int(t.size) for t in targets]
    offsets = np.concatenate([[0], np.cumsum(n_levels)]).astype(np.int64)
    total = float(targets[0].sum())
    unit_codes, unit_d = units.codes, units.design
    passes = _passes(backend, unit_d.shape[0])
    run = _run(
        _one(passes),
        unit_codes,
        offsets,
        targets,
        unit_d[None],
        total,
        steps,
        tol,
        max_iter,
        bounds,
    )
    w, steps_done = run.w[0], int(run.steps[0])
    converged, stalled = bool(run.converged[0]), bool(run.stalled[0])
    if units.cell_of_row is None:
        weights = w
    else:
        weights = (w / unit_d)[units.cell_of_row]
        weights *= design
    margins = tuple(run.margins[0, offsets[v] : offsets[v + 1]] for v in range(p))
    errors = tuple(
        float(np.max(np.abs(m - t))) / total if t.size else 0.0
        for m, t in zip(margins, targets, strict=True)
    )
    error = max(errors)
    if shift:
        weights = np.ldexp(weights, shift)
        margins = tuple(np.ldexp(m, shift) for m in margins)
    result = RakingWeights(
        weights=weights,
        margins=margins,
        steps=steps_done,
        sweeps=-(-steps_done // p),
        converged=converged,
        marginal_error=error,
        variable_errors=errors,
        tol=None if steps is not None else tol,
        stalled=stalled,
        units=int(unit_d.shape[0]),
        method=f"{'cells' if units.cell_of_row is not None else 'rows'}, {passes.name}",
    )
    if steps is None and not converged:
        _warn_not_converged(result, bounds)
    return result


def _rake_replicates(
    units: _Units,
    design: np.ndarray,
    targets: Sequence[np.ndarray],
    group: np.ndarray,
    multipliers: np.ndarray,
    *,
    steps: int | None,
    tol: float,
    max_iter: int,
    bounds: tuple[float, float] | None,
    backend: str | None = None,
    shift: int = 0,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, _Run]:
    r"""Rake ``R`` replicates of the same units in one batched call; their raking factors.

    Replicate ``r`` has design weights :math:`d_i a_r(g_i)` (``group`` :math:`g` of each row,
    ``multipliers`` :math:`a` of shape ``(G, R)``). The raking factor depends only on the unit
    (cell of the crossed codes, or row), so each replicate is a raking of the ``R x C`` matrix
    of replicate unit design weights :math:`D_{ru} = \sum_{i \in u} d_i a_r(g_i)`, with the
    same targets, steps, tolerance and bounds as the full sample (:func:`_rake_units`), each
    replicate stopping on its own. ``R x C`` from 100,000 runs compiled, parallel over
    replicates (:func:`raking.survey.compiled.rake_batch`), else the driver of the single rake
    (:func:`raking.survey.loops._run`) on ``R`` replicates with NumPy passes
    (:func:`raking.survey.loops._gemm_passes`); ``backend`` forces one.

    ``start`` (unbounded raking to ``tol`` only): a raking factor per unit to start every
    replicate from, :math:`W^{(0)}_{ru} = D_{ru}\, \gamma_u` -- the full sample's factors,
    which are near each replicate's. IPF keeps its iterates of the form :math:`D_r \prod_v
    f_v(\text{level}_v)`, and :math:`\gamma` is of that form, so the limit is the same raking
    (the KL projection of :math:`D_r` onto the margins), reached in fewer sweeps (10 -> 7 on
    10^6 rows, 6 variables, 100 bootstrap replicates). Fixed ``steps`` and bounds start
    from :math:`D_r` (a ``k``-step raking depends on where it starts).

    Returns
    -------
    (factors, run)
        :math:`\gamma_r(u) = W_{ru} / D_{ru}` of shape ``(R, C)`` (0 where :math:`D_{ru} = 0`;
        times ``2**shift`` with bounds, see :func:`_rake_units`), and the batched run (steps,
        convergence, stall and error per replicate).
    """
    n_levels = [int(t.size) for t in targets]
    offsets = np.concatenate([[0], np.cumsum(n_levels)]).astype(np.int64)
    total = float(targets[0].sum())
    n_rep = multipliers.shape[1]
    m = units.design.shape[0]
    if backend is None:
        use_numba = n_rep * m >= _NUMBA_MIN_UNITS and numba_available()
        backend = "numba" if use_numba else "numpy"
    if units.cell_of_row is None:
        d_rep = (design[:, None] * multipliers[group]).T.copy()
    elif backend == "numba":
        from raking.survey.compiled import replicate_design

        d_rep = replicate_design(units.cell_of_row, units.rows, group, design, multipliers)
    else:
        key = units.cell_of_row[:, None].astype(np.int64) * n_rep + np.arange(n_rep)
        summed = np.bincount(key.ravel(), (design[:, None] * multipliers[group]).ravel(), m * n_rep)
        d_rep = summed.reshape(m, n_rep).T.copy()
    w0 = d_rep if bounds is not None else _start(d_rep, start, steps)
    if backend == "numba" and steps != 0:
        from raking.survey.compiled import rake_batch

        t_all = np.concatenate(targets)
        run = _Run(
            *rake_batch(units.codes, offsets, t_all, w0, total, steps, tol, max_iter, bounds)
        )
    else:
        passes = _gemm_passes(units.codes, offsets)
        run = _run(passes, units.codes, offsets, targets, w0, total, steps, tol, max_iter, bounds)
    factors = np.divide(run.w, d_rep, out=np.zeros_like(run.w), where=d_rep > 0)
    if shift:
        factors = np.ldexp(factors, shift)
    return factors, run


def _start(d_rep: np.ndarray, start: np.ndarray | None, steps: int | None) -> np.ndarray:
    r"""Unbounded replicates' starting weights: :math:`D_{ru} \gamma_u` to ``tol``, else D."""
    return d_rep if start is None or steps is not None else d_rep * start


def _warn_not_converged(result: RakingWeights, bounds: tuple[float, float] | None) -> None:
    where = f"after {result.sweeps} sweeps ({result.steps} single-variable adjustments)"
    error = f"max |margin - target| = {result.marginal_error:.3g} of the total"
    if not math.isfinite(result.marginal_error):
        cause = "The weights became non-finite; check the targets and design weights."
    elif result.stalled:
        cause = (
            "The error stopped decreasing: the margins are unreachable together -- rows that "
            "the targets need are missing from some cells"
            + (f", or bounds={bounds} are too tight" if bounds else "")
            + ". Check the targets for consistency, merge sparse levels"
            + (", or widen bounds." if bounds else ".")
        )
    else:
        cause = "Raise max_iter (or tol)."
    warnings.warn(
        f"raking did not converge {where}: {error} (tol {result.tol:.3g}). {cause}",
        ConvergenceWarning,
        stacklevel=3,
    )


def _check_codes(codes: Sequence[np.ndarray] | np.ndarray, n_levels: Sequence[int]) -> np.ndarray:
    """Codes as a C-contiguous int32 array ``(p, n)``, each row within its variable's levels."""
    try:
        arr = np.asarray(codes) if isinstance(codes, np.ndarray) else np.stack(list(codes))
    except ValueError as exc:
        raise ValueError(
            f"codes must hold one integer array of length n per variable, all of one length "
            f"({exc})."
        ) from exc
    p = len(n_levels)
    if arr.ndim != 2 or arr.shape[0] != p or arr.shape[1] == 0:
        raise ValueError(
            f"codes must have shape (p, n) = ({p}, n) for {p} targets, got {arr.shape}; give one "
            "code array per target, in the same order."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"codes must be integer level codes, got dtype {arr.dtype}; encode each variable as "
            "0, 1, ..., e.g. with numpy.unique(values, return_inverse=True)."
        )
    for v, size in enumerate(n_levels):
        lo, hi = int(arr[v].min()), int(arr[v].max())
        if lo < 0 or hi >= size:
            raise ValueError(
                f"codes[{v}] has values in [{lo}, {hi}] but targets[{v}] has {size} levels; "
                f"every code must index a level in [0, {size})."
            )
    return np.ascontiguousarray(arr, dtype=np.int32)
