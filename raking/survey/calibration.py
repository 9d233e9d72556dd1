r"""Calibrate weights to population totals: :func:`calibrate` (also ``raking.calibrate``).

The calibration family of Deville & Särndal (1992), as R ``survey``'s ``calibrate()``: find
weights :math:`w_i = d_i g_i` closest to the design weights :math:`d` in a distance :math:`G`
with :math:`\sum_i w_i x_i = T` for the calibration vector :math:`x_i` of each row (the level
indicators of every categorical column, and the numeric columns) and the population totals
:math:`T`. The solution is :math:`g_i = F(x_i^\top \lambda)` for the Lagrange multipliers
:math:`\lambda \in \mathbb R^p`, :math:`F = (G')^{-1}`:

- ``"linear"`` (chi-square distance, GREG): :math:`F(u) = 1 + u`, clipped to ``bounds``;
  unbounded, :math:`\lambda = (X^\top D X)^+ (T - X^\top d)` in closed form (R's
  ``regcalibrate``);
- ``"raking"`` (the multiplicative / exponential distance): :math:`F(u) = e^u`, clipped to
  ``bounds`` (R's ``cal.raking``); on purely categorical totals this is :func:`raking.rake`;
- ``"logit"``: :math:`F(u) = \frac{L (U - 1) + U (1 - L) e^{A u}}{U - 1 + (1 - L) e^{A u}}`,
  :math:`A = \frac{U - L}{(U - 1)(1 - L)}`, which keeps :math:`g` strictly inside the bounds
  :math:`(L, U)` (R's ``cal.logit``).

:math:`\lambda` solves :math:`X^\top (d \circ F(X \lambda)) = T`, the gradient of the convex dual
:math:`\Phi(\lambda) = \sum_i d_i \Psi(x_i^\top \lambda) - \lambda^\top T`
(:math:`\Psi' = F`, :math:`\Psi(0) = 0`), by Newton's method (R's ``grake``): the step
:math:`\delta = H^+ (T - X^\top w)` with :math:`H = X^\top \operatorname{diag}(d F'(X\lambda))
X`, halved until :math:`\Phi` or the largest misfit decreases. :math:`X` is never formed: its
products and :math:`H` are group sums over the rows (:class:`~raking.survey.linearization.
CalibrationMatrix`), :math:`O(n p)` per iteration, and :math:`H^+` is the pseudo-inverse of a
:math:`p \times p` matrix.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd  # noqa: TID253 (applications layer; loaded with raking.calibrate only)

from raking.exceptions import ConvergenceWarning, NegativeWeightWarning
from raking.survey.calibration_replicates import calibrate_replicates, group_sums
from raking.survey.codes import column
from raking.survey.frontend import (
    _as_float,
    _design_weights,
    _DesignOptions,
    _replicate_design,
    _warn_replicates,
    rake,
)
from raking.survey.linearization import CalibrationMatrix, GramInverse
from raking.survey.replicates import ReplicateDesign, RerakedReplicates
from raking.survey.results import RakeResult
from raking.validation import (
    CALIBRATION_HINT,
    CALIBRATION_METHODS,
    check_calibration_bounds,
    check_numeric_column,
    check_numeric_reach,
    check_option,
    check_positive_int,
    check_tol,
    raise_if_out_of_reach_with_total,
    raise_on_collinear,
    raise_on_inconsistent_totals,
    raise_on_share_totals,
    raise_without_population_size,
    split_calibration_totals,
)

__all__ = ["calibrate"]

_INTERCEPT: tuple = ()
"""The key of the intercept (every row in one level) when only numeric totals are given."""

_MAX_COLUMNS = 2000
"""Largest calibration matrix (columns) solved densely (its p x p Gram is pseudo-inverted)."""


def calibrate(
    data: pd.DataFrame,
    totals: Mapping[Hashable, Mapping[Any, float] | pd.Series | float],
    *,
    weights: str | Sequence[float] | np.ndarray | None = None,
    method: str = "raking",
    bounds: tuple[float, float] | None = None,
    strata: Hashable | list[Hashable | None] | None = None,
    cluster: Hashable | list[Hashable] | None = None,
    fpc: Hashable | list[Hashable | None] | None = None,
    lonely_psu: str = "error",
    nest: bool = False,
    replicates: str | pd.DataFrame | np.ndarray | None = None,
    n_replicates: int | None = None,
    seed: int | np.random.Generator | None = None,
    fay_rho: float | None = None,
    replicate_scale: float | None = None,
    replicate_rscales: Sequence[float] | np.ndarray | None = None,
    replicate_mse: bool = False,
    total: float | None = None,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> RakeResult:
    r"""Calibrate the rows of ``data`` to population totals of categorical and numeric columns.

    Finds :math:`w_i = d_i g_i`, :math:`g_i = F(x_i^\top \lambda)`, with :math:`\sum_i w_i x_i =
    T` (see :mod:`raking.survey.calibration` for the three distances). Equals R ``survey``'s
    ``calibrate(design, ~ ..., population, calfun=method, bounds=bounds)`` followed by
    ``svymean`` / ``svytotal``, in the weights and in the standard errors.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per sampled unit; never modified.
    totals : mapping
        ``{column: {level: count}}`` (or a :class:`pandas.Series` indexed by level) for each
        categorical column, exactly as :func:`raking.rake`'s targets (crossed margins and share
        targets included), and ``{column: number}`` for each numeric column: its population total
        :math:`\sum_{i \in U} x_i` (e.g. ``{"stype": {"E": 4421, "H": 755, "M": 1018}, "enroll":
        3811472}``), mixed freely.
    weights : column label or array, optional
        Design weights :math:`d > 0` (as in :func:`raking.rake`); ``None``: equal, ``N / n``.
    method : {"raking", "linear", "logit"}
        The distance. ``"raking"`` on categorical totals only runs :func:`raking.rake` (the same
        weights); ``"linear"`` may give negative weights (a
        :class:`~raking.exceptions.NegativeWeightWarning`); ``"logit"`` needs ``bounds``.
    bounds : (lo, hi), optional
        Bounds on :math:`g = w / d` (``0 <= lo < hi``; for ``"logit"`` finite with ``lo < 1 <
        hi``, and the weights stay strictly inside). Linear and raking clip :math:`F` to them, as
        R's ``cal.linear`` / ``cal.raking``. (R rescales the design weights first when every
        total exceeds 20 times its sample estimate, and then reads bounds relative to the rescaled
        weights; here bounds are always relative to ``weights``.)
    strata, cluster, fpc : column label or list of them, optional
        The sampling design, for the standard errors, exactly as in :func:`raking.rake` (one
        entry per stage for a multi-stage design).
    lonely_psu : {"error", "certainty", "remove", "adjust", "average"}
        A stratum with a single PSU, as in :func:`raking.rake` (R's ``survey.lonely.psu``).
    nest : bool
        PSU labels numbered within strata, as in :func:`raking.rake` (R's ``nest=TRUE``).
    replicates, n_replicates, seed, fay_rho, replicate_scale, replicate_rscales, replicate_mse
        Replicate weights, exactly as in :func:`raking.rake`; every replicate's design weights
        are re-calibrated to the same totals with the same method and bounds (R's
        ``calibrate()`` on an ``as.svrepdesign``): for ``method="raking"`` on categorical
        totals by :func:`raking.rake`'s batched re-raking, otherwise by one batched Newton run
        over all replicates (:mod:`raking.survey.calibration_replicates`). Replicates that do
        not converge are warned about and counted in the SE's method.
    total : float, optional
        Population size :math:`N` (R's ``(Intercept)`` total). Default: the categorical counts'
        total. Required with only numeric totals (as R needs the intercept in the formula), and
        with share targets when numeric totals are given.
    tol : float
        Largest misfit allowed, as a share of the scale of each constraint: :math:`N` for a level
        count (as ``rake``'s ``tol``), :math:`\frac{N}{\sum d} \sum_i d_i |x_{ij}|` for a numeric
        column. Newton converges quadratically, so the default is tighter than ``rake``'s (it costs
        about one more iteration); ``method="raking"`` on categorical totals passes it to ``rake``.
    max_iter : int
        Maximum Newton iterations (R's ``maxit``).

    Returns
    -------
    raking.survey.results.RakeResult
        As :func:`raking.rake`'s; ``iterations`` and ``steps`` count Newton iterations, the
        margin table has one row per numeric column (level ``"(total)"``: ``sample``, ``target``
        and ``raked`` are that column's design-weighted mean, population mean :math:`T / N` and
        calibrated mean), and the standard errors are the residuals of the design-weighted least
        squares on the full calibration matrix, multiplied by the calibrated weights (R's
        ``svyrecvar`` for a calibrated design).

    Raises
    ------
    ValueError
        As :func:`raking.rake` for the categorical totals; a numeric column that is missing,
        not numeric, has missing values, is constant or collinear with the other columns (named),
        a numeric total out of reach of the bounds (checked first, for ``g`` alone), or out of
        reach once the weights must also sum to :math:`N` (checked when Newton does not
        converge, :func:`~raking.validation._calibration.numeric_reach_with_total`), only
        numeric totals without ``total=``, ``method="logit"`` without bounds, inconsistent
        totals (linear).

    Warns
    -----
    ConvergenceWarning
        The Newton iteration stopped above ``tol`` (``converged=False``, with the achieved
        misfit): the totals are unreachable together within the bounds, or ``max_iter`` is low.
    NegativeWeightWarning
        ``method="linear"`` gave negative weights.

    Examples
    --------
    >>> from raking.survey.data import load_api
    >>> clus1 = load_api("apiclus1")
    >>> res = calibrate(clus1, {"stype": {"E": 4421, "H": 755, "M": 1018}, "enroll": 3811472},
    ...                 weights="pw", cluster="dnum", fpc="fpc", method="linear")
    >>> round(float((res.weights * clus1["enroll"]).sum()))
    3811472
    """
    method = check_option(method, options=CALIBRATION_METHODS, name="method", hint=CALIBRATION_HINT)
    categorical, numeric = split_calibration_totals(totals)
    bounds = check_calibration_bounds(bounds, method)
    tol = check_tol(tol)
    max_iter = check_positive_int(max_iter, name="max_iter")
    options = _DesignOptions(
        strata=strata,
        cluster=cluster,
        fpc=fpc,
        lonely_psu=lonely_psu,
        nest=nest,
        replicates=replicates,
        n_replicates=n_replicates,
        seed=seed,
        fay_rho=fay_rho,
        replicate_scale=replicate_scale,
        replicate_rscales=replicate_rscales,
        replicate_mse=replicate_mse,
    )
    if method == "raking" and not numeric:
        return rake(
            data,
            categorical,  # type: ignore[arg-type]
            weights=weights,
            tol=tol,
            max_iter=max_iter,
            bounds=bounds,
            total=total,
            **options.keywords(),
        )
    _refuse_frames(data, method, numeric)
    if not categorical:
        if total is None:
            raise_without_population_size(list(numeric))
        categorical = {_INTERCEPT: {_INTERCEPT: total}}
    design = options.keywords(replicates=False)
    base = rake(data, categorical, weights=weights, steps=0, total=total, bounds=bounds, **design)  # type: ignore[arg-type]
    if numeric and not base.total_known:
        raise_on_share_totals(list(numeric))
    s = base._design
    rows = s.sample_pos[s.raked_pos]  # positions of the calibrated rows in data
    d = s.design if weights is None else _raw_design(data, weights, rows)
    x = _numeric_columns(data, numeric, rows)
    names = _column_names(base.margins) + [str(k) for k in numeric]
    matrix = CalibrationMatrix(s.codes, s.n_levels, x if numeric else None)
    if matrix.n_columns > _MAX_COLUMNS:
        raise ValueError(
            f"calibrate() solves a {matrix.n_columns}-column calibration matrix densely (at most "
            f"{_MAX_COLUMNS}); merge levels, or for categorical totals only use "
            "method='raking' (raking.rake), which handles any number of levels."
        )
    n_total = base.weight_total
    t_cat = base.margins["target"].to_numpy() * n_total
    t = np.concatenate([t_cat, np.array(list(numeric.values()), dtype=np.float64)])
    for j, (key, target) in enumerate(numeric.items()):
        check_numeric_reach(key, x[:, j], d, target, method, bounds)
    gram = matrix.gram(d)  # the Hessian at lambda = 0 (F'(0) = 1 for every distance)
    _check_rank(gram, matrix, list(numeric))
    scale = np.concatenate(
        [
            np.full(matrix.n_categorical, n_total),
            np.einsum("i,ij->j", d, np.abs(x)) * (n_total / d.sum()),
        ]
    )
    dist = _distance(method, bounds)
    solution = _newton(matrix, d, t, dist, scale, tol, max_iter, gram)
    errors = np.abs(solution.misfit) / scale
    if not solution.converged:
        if method == "linear" and bounds is None:
            worst = np.argsort(-errors)[:5]
            raise_on_inconsistent_totals([names[j] for j in worst], errors[worst].tolist())
        for j, (key, target) in enumerate(numeric.items()):  # infeasible with sum(w) = N?
            raise_if_out_of_reach_with_total(key, x[:, j], d, n_total, target, bounds)
        worst = int(np.argmax(errors))
        warnings.warn(
            f"calibrate(method={method!r}) did not converge in {solution.iterations} Newton "
            f"iterations: largest misfit {errors.max():.3g} (as a share of its scale, column "
            f"{names[worst]}) > tol {tol:.3g}"
            + (" (stalled: no step reduced it)" if solution.stalled else "")
            + ". The totals may be unreachable together within the bounds: widen bounds, or "
            "check the totals; or raise max_iter.",
            ConvergenceWarning,
            stacklevel=2,
        )
    w = d * solution.g
    if method == "linear" and (w < 0).any():
        warnings.warn(
            f"linear calibration gave {int((w < 0).sum())} of {w.size} rows a negative weight "
            f"(smallest g = w / d: {solution.g.min():.4g}); totals stay unbiased, but pass "
            "bounds=(lo, hi) or use method='raking' / 'logit' for positive weights.",
            NegativeWeightWarning,
            stacklevel=2,
        )
    result = _calibrated_result(base, method, numeric, x, w, solution, errors, names, tol)
    if options.kind is None:
        return result
    columns = {"strata": s.strata, "cluster": s.cluster, "fraction": s.fraction}
    spec = _replicate_design(data, options, columns, s.sample_pos, s.raked_pos, d)
    spec = replace(spec, detail=f"each calibrated by method={method!r}")
    reps = _recalibrate(matrix, spec, d, s.design, t, dist, scale, tol, max_iter)
    _warn_replicates(reps, None, bounds)
    return replace(result, _design=replace(result._design, replicates=reps))


def _recalibrate(
    matrix: CalibrationMatrix,
    spec: ReplicateDesign,
    d: np.ndarray,
    d_run: np.ndarray,
    t: np.ndarray,
    dist: _Distance,
    scale: np.ndarray,
    tol: float,
    max_iter: int,
) -> RerakedReplicates:
    r"""Every replicate of ``spec`` calibrated as the full sample, in one batched Newton run.

    Units are the cells of the crossed codes without numeric columns (unit weights
    :math:`D_{cr} = \sum_{i \in c} d_i a_r(\mathrm{psu}_i)`), else the rows. The factors kept
    are :math:`g_{ir} d_i / d^{\text{run}}_i` (``d_run``: the design weights of the result,
    which :func:`raking.rake` may have rescaled), so that ``RerakedReplicates.weights(d_run)``
    is :math:`d_i a_r g_{ir}`.
    """
    rows_d = d[:, None] * spec.multipliers[spec.group]  # (m, R): d_ir
    numeric = matrix.numeric if matrix.numeric.shape[1] else None
    if numeric is None:
        cells = group_sums(matrix._cell, matrix.n_cells, rows_d)
        unit_cell, unit_of_row, unit_d = None, matrix._cell, cells
    else:
        unit_cell, unit_of_row, unit_d = matrix._cell, None, rows_d
    run = calibrate_replicates(
        matrix._cell_codes,
        matrix.n_levels,
        unit_cell,
        numeric,
        unit_d,
        t,
        dist,
        scale,
        tol,
        max_iter,
    )
    ratio = float(d[0] / d_run[0])  # d / d_run is one power of two (or 1) for every row
    return RerakedReplicates(
        spec,
        np.ascontiguousarray((run.g * ratio).T),
        unit_of_row,
        run.steps,
        run.converged,
        run.stalled,
        run.errors,
    )


class _Distance:
    """``F`` (the adjustment ``g`` of ``u = x'lambda``), ``F'`` and ``Psi`` (``Psi' = F``)."""

    def __init__(
        self,
        g: Callable[[np.ndarray], np.ndarray],
        dg: Callable[[np.ndarray], np.ndarray],
        psi: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.g, self.dg, self.psi = g, dg, psi


def _distance(method: str, bounds: tuple[float, float] | None) -> _Distance:
    r"""The calibration function of ``method`` with ``bounds``, as R's ``cal.*``.

    Clipped distances: :math:`F_b(u) = f(\operatorname{clip}(u, a, b))` with :math:`a =
    f^{-1}(lo)`, :math:`b = f^{-1}(hi)`, whose primitive is :math:`\Psi(u) = P(\operatorname{clip}
    (u, a, b)) + lo \min(u - a, 0) + hi \max(u - b, 0) - \Psi_0` (:math:`P' = f`); :math:`F_b'`
    is 0 outside :math:`(a, b)`, as R's ``dF``.
    """
    lo, hi = (-math.inf, math.inf) if bounds is None else bounds
    if method == "logit":
        amp = (hi - lo) / ((hi - 1.0) * (1.0 - lo))
        shift = math.log((1.0 - lo) / (hi - 1.0))

        def sigmoid(u: np.ndarray) -> np.ndarray:
            return 0.5 * (1.0 + np.tanh(0.5 * (amp * u + shift)))

        def softplus(u: np.ndarray) -> np.ndarray:
            return np.logaddexp(0.0, amp * u + shift) - np.logaddexp(0.0, shift)

        def slope(u: np.ndarray) -> np.ndarray:
            s = sigmoid(u)
            return (hi - lo) * amp * s * (1.0 - s)

        return _Distance(
            lambda u: lo + (hi - lo) * sigmoid(u),
            slope,
            lambda u: lo * u + (hi - lo) / amp * softplus(u),
        )
    if method == "linear":
        f, prim = (lambda u: 1.0 + u), (lambda u: u + 0.5 * u * u)
        a, b = lo - 1.0, hi - 1.0
    else:
        f, prim = np.exp, (lambda u: np.exp(u) - 1.0)
        with np.errstate(divide="ignore"):
            a, b = math.log(lo) if lo > 0 else -math.inf, math.log(hi)

    def psi(u: np.ndarray) -> np.ndarray:
        clipped = np.clip(u, a, b)
        out = prim(clipped)
        if lo > -math.inf and lo != 0.0:
            out = out + lo * np.minimum(u - a, 0.0)
        if hi < math.inf:
            out = out + hi * np.maximum(u - b, 0.0)
        return out - float(prim(np.clip(np.zeros(1), a, b))[0])

    if bounds is None:  # no clipping: F' = F for raking, 1 for linear
        ones = (lambda u: np.ones_like(u)) if method == "linear" else f
        return _Distance(f, ones, psi)
    return _Distance(
        lambda u: f(np.clip(u, a, b)),
        lambda u: np.where((u > a) & (u < b), f(np.clip(u, a, b)), 0.0),
        psi,
    )


class _Solution:
    """The Newton iteration's end: ``g``, the misfit ``T - X'w``, and how it ended."""

    def __init__(
        self, g: np.ndarray, misfit: np.ndarray, iterations: int, converged: bool, stalled: bool
    ) -> None:
        self.g, self.misfit = g, misfit
        self.iterations, self.converged, self.stalled = iterations, converged, stalled


def _newton(
    matrix: CalibrationMatrix,
    d: np.ndarray,
    t: np.ndarray,
    dist: _Distance,
    scale: np.ndarray,
    tol: float,
    max_iter: int,
    gram: np.ndarray,
) -> _Solution:
    r"""Newton on the multipliers from :math:`\lambda = 0` (:math:`g = 1`), as R's ``grake``.

    ``gram``: :math:`X^\top D X`, the Hessian at :math:`\lambda = 0`. A full step is taken when
    it lowers the largest scaled misfit or, failing that, the dual :math:`\Phi` (evaluated only
    then); otherwise it is halved, up to 50 times (then ``stalled``). Unbounded linear
    calibration ends after one step: its misfit is then zero up to rounding.
    """

    def dual(lam: np.ndarray, u: np.ndarray) -> float:
        return float(np.add.reduce(d * dist.psi(u))) - float(lam @ t)

    lam = np.zeros(matrix.n_columns)
    u = np.zeros(matrix.n_rows)
    g = dist.g(u)
    misfit = t - matrix.tdot(d * g)
    err = float(np.max(np.abs(misfit) / scale))
    phi: float | None = None  # the dual at lam, when a step has needed it
    hessian: np.ndarray | None = gram
    for iteration in range(max_iter + 1):
        if err <= tol:
            return _Solution(g, misfit, iteration, True, False)
        if iteration == max_iter:
            break
        if hessian is None:
            hessian = matrix.gram(d * dist.dg(u))
        step = GramInverse(hessian).solve(misfit)
        hessian = None
        alpha = 1.0
        for _ in range(50):
            lam_new = lam + alpha * step
            u_new = matrix.dot(lam_new)
            g_new = dist.g(u_new)
            misfit_new = t - matrix.tdot(d * g_new)
            err_new = float(np.max(np.abs(misfit_new) / scale))
            phi_new = None
            if np.isfinite(err_new):
                if err_new < err:
                    break
                phi = dual(lam, u) if phi is None else phi
                phi_new = dual(lam_new, u_new)
                if phi_new < phi:
                    break
            alpha *= 0.5
        else:
            return _Solution(g, misfit, iteration, False, True)
        lam, u, g, misfit, err, phi = lam_new, u_new, g_new, misfit_new, err_new, phi_new
    return _Solution(g, misfit, max_iter, False, False)


def _refuse_frames(data: object, method: str, numeric: object) -> None:
    """Dask and Polars frames are raked (``raking.rake``), not calibrated otherwise."""
    from raking.survey.frames import frame_kind

    kind = frame_kind(data)
    if kind is None:
        return
    what = f"method={method!r}" + (" with numeric totals" if numeric else "")
    raise NotImplementedError(
        f"calibrate({what}) is not offered for {kind} frames: only raking to level totals "
        "is (method='raking' without numeric totals, which is raking.rake). Calibrate a "
        "pandas DataFrame of the columns it needs (for Dask: ddf[columns].compute())."
    )


def _raw_design(data: pd.DataFrame, weights: object, rows: np.ndarray) -> np.ndarray:
    """The design weights of the calibrated rows, unscaled (bounds are relative to them)."""
    mask = np.zeros(len(data), dtype=bool)
    mask[rows] = True
    return np.asarray(_design_weights(data, weights, mask), dtype=np.float64)[rows]


def _numeric_columns(
    data: pd.DataFrame, numeric: Mapping[Hashable, float], rows: np.ndarray
) -> np.ndarray:
    """The numeric calibration columns on the calibrated rows, ``(n, q)`` float64, checked."""
    out = np.empty((rows.size, len(numeric)), order="F")
    labels = data.index[rows]
    for j, key in enumerate(numeric):
        series = column(data, key, f"totals[{key!r}]").iloc[rows]
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            dtype = dtype.categories.dtype
        is_numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        values = _as_float(series, f"totals[{key!r}]") if is_numeric else np.zeros(0)
        out[:, j] = check_numeric_column(key, values, labels, is_numeric=is_numeric)
    return out


def _column_names(margins: pd.DataFrame) -> list[str]:
    """``variable=level`` of each categorical column of the calibration matrix, for messages."""
    return [
        "(Intercept)" if v == _INTERCEPT else f"{v}={lv!r}"
        for v, lv in zip(margins["variable"], margins["level"], strict=True)
    ]


def _check_rank(gram: np.ndarray, matrix: CalibrationMatrix, numeric: list[Hashable]) -> None:
    """Each numeric column must add one to the rank of the design-weighted Gram ``gram``."""
    if not numeric:
        return
    k = matrix.n_categorical
    rank = GramInverse(gram[:k, :k]).rank
    for j, key in enumerate(numeric):
        size = k + j + 1
        new_rank = GramInverse(gram[:size, :size]).rank
        if new_rank <= rank:
            x = matrix.numeric[:, j]
            raise_on_collinear(key, numeric[:j], constant=bool(np.ptp(x) == 0))
        rank = new_rank


def _calibrated_result(
    base: RakeResult,
    method: str,
    numeric: Mapping[Hashable, float],
    x: np.ndarray,
    w: np.ndarray,
    solution: _Solution,
    errors: np.ndarray,
    names: list[str],
    tol: float,
) -> RakeResult:
    """``base`` (the design weights scaled by :func:`raking.rake` with ``steps=0``) calibrated."""
    s = base._design
    n_total = base.weight_total
    full = base.weights.to_numpy().copy()
    full[s.sample_pos[s.raked_pos]] = w
    margins = base.margins.copy()
    k = len(margins)
    t_cat = margins["target"].to_numpy() * n_total
    margins["raked"] = (t_cat - solution.misfit[:k]) / n_total
    margins["error"] = margins["raked"] - margins["target"]
    d = s.design
    rows = [
        {
            "variable": key,
            "level": "(total)",
            "n": w.size,
            "sample": float(np.add.reduce(d * x[:, j]) / d.sum()),
            "target": target / n_total,
            "raked": float(np.add.reduce(w * x[:, j])) / n_total,
        }
        for j, (key, target) in enumerate(numeric.items())
    ]
    if rows:
        extra = pd.DataFrame(rows)
        extra["error"] = extra["raked"] - extra["target"]
        margins = pd.concat([margins, extra], ignore_index=True)
    margins["variable"] = margins["variable"].map(lambda v: "(Intercept)" if v == _INTERCEPT else v)
    variables = list(dict.fromkeys(margins["variable"]))
    per_variable = pd.Series(errors).groupby(margins["variable"].to_numpy()).max()
    design = replace(
        s,
        final=w,
        steps=None,  # linearised at the solution (the base's steps=0 only scaled d)
        numeric=x if numeric else None,
        calibration=method,
    )
    return replace(
        base,
        weights=pd.Series(full, index=base.weights.index, name="weight"),
        converged=solution.converged,
        iterations=solution.iterations,
        steps=solution.iterations,
        marginal_error=float(errors.max()),
        variable_errors=pd.Series(
            per_variable.reindex(variables).to_numpy(), index=variables, name="error"
        ),
        tol=tol,
        margins=margins,
        method=f"calibrate {method} (Newton on {len(names)} multipliers, rows)",
        stalled=solution.stalled,
        _design=design,
    )
