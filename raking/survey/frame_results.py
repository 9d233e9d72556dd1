r"""The result of raking a Dask or Polars frame: :class:`FrameRakeResult` and its estimates.

The weights stay lazy (:mod:`raking.survey.frames`); what the client holds is the cell table:
the codes, row counts and summed design weights of the raked cells and their raking factors.
The estimates (:meth:`FrameRakeResult.mean`, :meth:`~FrameRakeResult.total`,
:meth:`~FrameRakeResult.proportion`, with ``by=`` and lists of columns) are the pandas path's
(:class:`raking.survey.results.RakeResult`), computed by group sums over the rows:

1. per domain: :math:`\sum w y`, :math:`\sum w`, rows of positive weight -> the estimates
   :math:`\hat\theta` and the influence values :math:`u_i = 1_D(i)(y_i - \hat\theta) / \sum_D
   w` (a mean; :math:`u = 1_D y` for a total);
2. per cell: :math:`S_c = \sum_{i \in c} d_i u_i` and :math:`\sum d_i u_i^2` (the solve's
   scale), and the weighted sum of squares of the design effect's SRS variance;
3. on the client, the raking residual's fitted value :math:`f_c` of every cell
   (:class:`CellProjection`: :class:`~raking.survey.linearization.RakingProjection` run on the
   cells, whose every operator is a sum over cells), so that :math:`e_i = u_i - f_{c(i)}`;
4. per PSU (clustered) :math:`Z = \sum z_i`, :math:`z_i = w_i e_i`; without clusters, per
   stratum :math:`\sum z_i` and then the centred :math:`\sum (z_i - \bar z_h)^2` (two passes,
   as :meth:`raking.survey.design.SurveyDesign.variance`, never :math:`\sum z^2 - (\sum
   z)^2 / n`);
5. the variance of the one-stage design on the client: the same
   :class:`~raking.survey.design.SurveyDesign` (strata, clusters, fpc, lonely PSUs).

Each step is one pass over the rows (four for an estimate, three with clusters), in chunks;
they return :class:`~raking.survey.estimates.SurveyEstimate` and
:class:`~raking.survey.estimates.EstimateTable` objects equal to the pandas path's to rounding
(1e-12 relative). Not offered here (a ``NotImplementedError`` naming the workaround):
``ratio``, ``quantile``, ``glm``, ``trim``, ``proportion(ci="logit" | "beta")``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raking.results import RakingWeights
from raking.survey.design import SurveyDesign
from raking.survey.estimates import EstimateTable, SurveyEstimate
from raking.survey.linearization import RakingProjection, ResidualNotConverged
from raking.survey.results import RakeResult, _RakeFields, margin_table
from raking.validation import (
    check_ci,
    check_columns,
    check_estimate_na,
    raise_missing_values,
    raise_no_complete_rows,
)

__all__ = ["CellProjection", "FrameRakeResult"]


class CellProjection(RakingProjection):
    r""":class:`~raking.survey.linearization.RakingProjection` of rows given by their cells.

    Every operator of the raking residual is constant within a cell of the crossed codes, so the
    fitted value :math:`f_c` of each cell follows from the cell sums :math:`S_c = \sum_{i \in c}
    d_i u_i` and :math:`D_c = \sum_{i \in c} d_i` alone: the projection runs on "rows" that are
    the cells, with design weights :math:`D_c` and values :math:`S_c / D_c`. Two things of the
    rows are kept: the tolerance's scale :math:`\lVert u \rVert_D` (the rows' :math:`\sum d_i
    u_i^2`, not the cells') and :math:`n` in :attr:`effective_tol`, so the solve stops where the
    pandas path's does.

    Parameters
    ----------
    cell_codes : numpy.ndarray of int, shape ``(p, C)``
        Codes of the cells.
    n_levels : sequence of int
        Levels of each variable.
    cell_design : numpy.ndarray of float64, shape ``(C,)``
        :math:`D_c`.
    n_rows : int
        Rows raked.
    """

    def __init__(
        self, cell_codes: np.ndarray, n_levels: Sequence[int], cell_design: np.ndarray, n_rows: int
    ) -> None:
        super().__init__(list(cell_codes), n_levels, cell_design)
        self.n_rows = int(n_rows)
        self._row_norm = math.nan

    @property
    def effective_tol(self) -> float:
        """As :attr:`RakingProjection.effective_tol`, with the number of rows."""
        return max(self.tol, 8.0 * np.finfo(np.float64).eps * np.sqrt(self.n_rows))

    def _norm(self, u: np.ndarray) -> float:
        return self._row_norm

    def fitted(self, sums: np.ndarray, squares: float, steps: int | None) -> np.ndarray:
        r"""The fitted value :math:`f_c` of every cell; row ``i``'s residual is :math:`u_i - f_c`.

        Parameters
        ----------
        sums : numpy.ndarray, shape ``(C,)``
            :math:`S_c = \sum_{i \in c} d_i u_i`.
        squares : float
            :math:`\sum_i d_i u_i^2` over the rows.
        steps : int or None
            As :meth:`RakingProjection.residual`.

        Raises
        ------
        ResidualNotConverged
            As :meth:`RakingProjection.residual`.
        """
        ubar = sums / self.design
        top = float(np.max(np.abs(ubar))) if ubar.size else 0.0
        if not np.isfinite(top) or not np.isfinite(squares):
            return np.full_like(ubar, np.nan)
        if top == 0.0:
            return np.zeros_like(ubar)
        exponent = np.frexp(top)[1]  # residual() works on u / 2**exponent
        self._row_norm = math.ldexp(math.sqrt(squares), -int(exponent))
        return ubar - self.residual(ubar, steps)


@dataclass(frozen=True, eq=False)
class FrameDesign:
    """The one-stage design of a frame: the SurveyDesign and its table of label groups."""

    sampling: SurveyDesign
    table: pd.DataFrame  # columns s, c, f (labels) and rows, one row per group
    strata: Hashable | None
    cluster: Hashable | None
    fpc: Hashable | None
    rows_as_units: bool


@dataclass(frozen=True, eq=False)
class FrameState:
    """What the estimates of a frame need: its rows, the cell table and the design."""

    rows: Any  # raking.survey.frames._Rows, with its coding and plan attached
    coding: Any
    plan: Any
    cell_codes: np.ndarray  # (p, C)
    n_levels: tuple[int, ...]
    cell_design: np.ndarray  # (C,) D_c (scaled by 2**-shift)
    cell_design2: np.ndarray  # (C,) sum of d^2 per cell (same scale, squared)
    counts: np.ndarray  # (C,) rows per cell
    n_sampled: int
    n_total: int
    steps: int | None
    varies_within_levels: bool
    design: Callable[[], FrameDesign]

    def design_now(self) -> FrameDesign:
        """The design (one pass over the rows, on first use)."""
        return self._design_value

    @functools.cached_property
    def _design_value(self) -> FrameDesign:
        return self.design()


@dataclass(frozen=True, eq=False)
class FrameRakeResult(_RakeFields):
    """Raked weights of a Dask or Polars frame: diagnostics, lazy weights and estimates.

    The attributes are :class:`raking.survey.results.RakeResult`'s, except ``weights``:

    Attributes
    ----------
    weights : dask Series, polars.Series, polars.LazyFrame or pyarrow.Array
        Dask: a lazy Series with the frame's partitions and index. Polars eager: a Series
        ``weight``; LazyFrame: a LazyFrame with one column ``weight`` in the rows' order
        (``result.weights.sink_parquet(path)``, or :meth:`with_weights`); PyArrow: an Array.
        NaN for rows dropped by ``na="drop"``, 0 for ``unknown="zero"``, as pandas.
    """

    weights: Any
    _state: FrameState = field(repr=False, compare=False)

    @classmethod
    def build(
        cls,
        variables: dict,
        result: RakingWeights,
        t: list[np.ndarray],
        n_rows: list[np.ndarray],
        sample: list[np.ndarray],
        known: bool,
        bounds: tuple[float, float] | None,
        weights: Any,
        state: FrameState,
    ) -> FrameRakeResult:
        """The result of :func:`raking.survey.frame_rake.rake_frame` (margins as pandas')."""
        total = float(t[0].sum())
        margins = margin_table(variables, t, n_rows, sample, result.margins)
        return cls(
            weights=weights,
            converged=result.converged,
            iterations=result.sweeps,
            steps=result.steps,
            marginal_error=result.marginal_error,
            variable_errors=pd.Series(result.variable_errors, index=list(variables), name="error"),
            tol=result.tol,
            weight_total=total,
            total_known=known,
            bounds=bounds,
            margins=margins,
            method=f"{result.method}, {state.rows.kind}",
            stalled=result.stalled,
            _state=state,
        )

    # ---------------------------------------------------------------- diagnostics

    @property
    def n(self) -> int:
        """Rows raked."""
        return int(self._state.counts.sum())

    @property
    def ess(self) -> float:
        r"""Kish effective sample size :math:`(\sum w)^2 / \sum w^2`, from the cell sums."""
        s = self._state
        g = s.plan.factor
        return float(np.dot(g, s.cell_design) ** 2 / np.dot(g * g, s.cell_design2))

    @property
    def deff(self) -> float:
        r"""Kish design effect of the weighting, :math:`n / n_\text{eff}`."""
        return self.n / self.ess

    def with_weights(self, name: str = "weight") -> Any:
        """The raked frame with the weights as column ``name`` (lazy for Dask and LazyFrames)."""
        rows = self._state.rows
        if rows.kind == "dask":
            return rows.ddf.assign(**{name: self.weights})
        return rows.with_weights(name)

    def summary(self) -> str:
        """Convergence, totals, effective sample size and the margin table."""
        state = "converged" if self.converged else "NOT converged"
        if self.tol is None:
            state = f"fixed {self.steps} steps"
        lines = [
            f"Raked weights: {self.n} rows, {len(self.variable_errors)} variables ({self.method})",
            f"{state} after {self.iterations} sweeps ({self.steps} steps): max |raked - target| "
            f"= {self.marginal_error:.3g} of the total",
            f"total: {self.weight_total:.10g} ("
            + ("known population total" if self.total_known else "not a known population total")
            + ")",
            f"Kish effective sample size {self.ess:.1f} (design effect of weighting "
            f"{self.deff:.3f})",
            "margins (shares of the total):",
            self.margins.to_string(index=False),
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # ---------------------------------------------------------------- estimators

    def mean(
        self, column: Hashable | list[Hashable], *, by: Hashable | None = None, na: str = "error"
    ) -> SurveyEstimate | EstimateTable:
        r"""Raked mean :math:`\sum w y / \sum w` (per domain with ``by``), with its linearised SE.

        As :meth:`raking.survey.results.RakeResult.mean` (a list of columns or ``by``: an
        :class:`EstimateTable` with ``cov``; ``na="omit"``: over the rows where the column(s)
        are present, a domain, as R's ``na.rm=TRUE``), computed by passes over the rows (module
        docstring).
        """
        return self._table("mean", column, by, check_estimate_na(na))

    def total(
        self, column: Hashable | list[Hashable], *, by: Hashable | None = None, na: str = "error"
    ) -> SurveyEstimate | EstimateTable:
        r"""Raked total :math:`\sum w y`, as :meth:`raking.survey.results.RakeResult.total`."""
        if not self.total_known:
            raise ValueError(
                "total() needs the weights to sum to a known population total, but the targets "
                "were shares and no total= was given (the weights sum to the sample's own "
                f"{self.weight_total:.6g}). Rake with targets as population counts or pass total=N."
            )
        return self._table("total", column, by, check_estimate_na(na))

    def proportion(
        self,
        column: Hashable,
        *,
        by: Hashable | None = None,
        ci: str = "wald",
        na: str = "error",
    ) -> EstimateTable:
        """Raked share of each level of ``column`` (per domain of ``by``), Wald intervals.

        As :meth:`raking.survey.results.RakeResult.proportion` with ``ci="wald"``; the logit
        and beta intervals need the design's degrees of freedom per domain, not offered on
        frames. ``na="omit"``: the shares among the rows where ``column`` is present.
        """
        ci = check_ci(ci)
        na = check_estimate_na(na)
        if ci != "wald":
            raise NotImplementedError(
                f"proportion(ci={ci!r}) is not offered for Dask or Polars frames; take the "
                "estimate and SE of the Wald table (ci='wald') and build the interval, or use "
                "a pandas DataFrame."
            )
        self._check_columns([column], "the estimate")
        level_labels = self._levels(column, missing=na)
        ys = [_Indicator(column, lv) for lv in level_labels]
        kept = (column,) if na == "omit" else ()
        estimates, domains, _ = self._estimates("mean", ys, by, kept)
        if by is None:
            return EstimateTable(
                f"proportions of {column}", tuple(level_labels), tuple(estimates), column
            )
        keys = tuple((dom, lv) for dom in domains for lv in level_labels)
        return EstimateTable(
            f"proportions of {column} by {by}", keys, tuple(estimates), (by, column)
        )

    def ratio(self, *args: Any, **kwargs: Any) -> Any:
        """Not offered on frames (``NotImplementedError``)."""
        raise NotImplementedError(_NOT_OFFERED.format(what="ratio()"))

    def quantile(self, *args: Any, **kwargs: Any) -> Any:
        """Not offered on frames (``NotImplementedError``)."""
        raise NotImplementedError(_NOT_OFFERED.format(what="quantile()"))

    def glm(self, *args: Any, **kwargs: Any) -> Any:
        """Not offered on frames (``NotImplementedError``)."""
        raise NotImplementedError(_NOT_OFFERED.format(what="glm()"))

    def trim(self, *args: Any, **kwargs: Any) -> Any:
        """Not offered on frames (``NotImplementedError``)."""
        raise NotImplementedError(
            "trim() is not offered for Dask or Polars frames; bound the adjustment factors "
            "inside the raking instead (raking.rake(..., bounds=(lo, hi))), which meets every "
            "margin exactly."
        )

    # ---------------------------------------------------------------- the passes

    def _check_columns(self, columns: Sequence[Hashable], owner: str) -> None:
        meta = self._state.rows.meta
        check_columns(owner, list(columns), list(meta.columns))

    def _check_numeric(self, column: Hashable) -> None:
        rows = self._state.rows
        if rows.kind == "dask":
            dtype = rows.meta[column].dtype
            ok = pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        else:
            dtype = rows.schema[column]
            ok = dtype.is_numeric() or str(dtype).startswith("Boolean")
        if not ok:
            raise TypeError(
                f"column {column!r} has dtype {dtype}; mean() and total() need numbers. "
                f"For the share of each level use proportion({column!r})."
            )

    def _levels(self, column: Hashable, *, missing: str = "by") -> list[Any]:
        """The sorted levels of ``column`` among the sampled rows, as ``RakeResult._levels``.

        ``missing``: ``"omit"`` leaves missing values out; ``"error"`` (``proportion``) and
        ``"by"`` (a domain column) refuse them with the pandas path's message.
        """
        levels, absent = self._levels_found(column)
        if missing != "omit" and absent:
            _raise_missing_levels(column, missing)
        return levels

    def _levels_found(self, column: Hashable) -> tuple[list[Any], bool]:
        """The sorted levels of ``column`` among the sampled rows, and whether some are missing."""
        chunk = functools.partial(_levels_chunk, column=column)
        table = self._state.rows.map_reduce([column], chunk, ["level"], weights=False)
        absent = pd.isna(table["level"]).to_numpy()
        return list(pd.Index(table["level"][~absent].tolist()).sort_values()), bool(absent.any())

    def _table(
        self, kind: str, column: Hashable | list[Hashable], by: Hashable | None, na: str
    ) -> SurveyEstimate | EstimateTable:
        columns = column if isinstance(column, list) else [column]
        self._check_columns(columns, "the estimate")
        for c in columns:
            self._check_numeric(c)
        kept = tuple(columns) if na == "omit" else ()
        estimates, domains, cov = self._estimates(kind, list(columns), by, kept)
        if not isinstance(column, list) and by is None:
            return estimates[0]
        what = ", ".join(map(str, columns))
        if by is None:
            return EstimateTable(
                f"{kind} of {what}", tuple(columns), tuple(estimates), "variable", cov
            )
        if len(columns) == 1:
            return EstimateTable(
                f"{kind} of {what} by {by}", tuple(domains), tuple(estimates), by, cov
            )
        keys = tuple((dom, c) for dom in domains for c in columns)
        return EstimateTable(
            f"{kind} of {what} by {by}", keys, tuple(estimates), (by, "variable"), cov
        )

    def _estimates(
        self, kind: str, ys: list, by: Hashable | None, kept: tuple = ()
    ) -> tuple[list[SurveyEstimate], list[Any], Callable[[], np.ndarray]]:
        """The estimates of every (domain, y) (domains outer), their labels and lazy ``cov``.

        ``kept``: the columns that must be present in a row for it to count (``na="omit"``).
        """
        s = self._state
        domains: list[Any] = [None]
        by_missing = False
        if by is not None:
            self._check_columns([by], "by")
            domains, by_missing = self._levels_found(by)
        spec = _Spec(kind, tuple(ys), by, tuple(domains), kept)
        sums = s.rows.map_reduce(spec.columns, functools.partial(_point_chunk, spec=spec), ["k"])
        point = _Points.of(spec, sums)
        notes = self._notes() + _check_missing(self, spec, point, sums)  # y's errors first
        if by_missing:
            _raise_missing_levels(by, "by")
        srs_pass = functools.partial(_cell_chunk, spec=spec, point=point)
        cells = s.rows.map_reduce(spec.columns, srs_pass, ["cell"])
        vsrs = point.srs(cells, kind)
        stalled = self.stalled and s.steps is None
        fitted, failed = (None, None) if stalled else self._fitted(spec, point, cells)
        variances = np.full(spec.size, np.nan)
        design = s.design_now()
        totals = None
        if fitted is not None:
            totals = self._design_totals(spec, point, fitted, design)
            variances = _variances(design, totals, self, spec, point, fitted)
        estimates = []
        for k in range(spec.size):
            extra: tuple[str, ...] = ()
            se = math.sqrt(variances[k]) if variances[k] >= 0 else math.nan
            if stalled:
                extra = (
                    "SE is NaN: raking stopped because the margins are unreachable together (max "
                    f"margin error {self.marginal_error:.3g} stopped decreasing), so there are no "
                    "converged weights to linearise at; make the targets consistent with each "
                    "other and with the sample's cells",
                )
            elif failed is not None and failed[k] is not None:
                exc = failed[k]
                se = math.nan
                extra = (
                    f"SE is NaN: the least-squares solve of the SE stopped after "
                    f"{exc.iterations} iterations at relative residual "
                    f"{exc.relative_residual:.3g} > {exc.tol:.3g}; the margins are nearly "
                    "collinear: merge levels that occur only together, or drop a nearly "
                    "redundant margin",
                )
            else:
                extra = self._lonely_psu_notes(se, design)
            vs = vsrs[k]
            with np.errstate(divide="ignore", invalid="ignore"):
                deff, deff_replace = (float(np.float64(se) ** 2 / v) for v in vs)
            estimates.append(
                SurveyEstimate(
                    estimate=float(point.estimate[k]),
                    se=se,
                    se_method=self._se_method(),
                    n=int(point.rows[k]),
                    steps=s.steps,
                    converged=self.converged,
                    marginal_error=self.marginal_error,
                    notes=notes + extra,
                    deff=deff,
                    deff_replace=deff_replace,
                )
            )

        def cov() -> np.ndarray:
            if totals is None:
                return np.full((spec.size, spec.size), np.nan)
            return _covariance(design, totals, self, spec, point, fitted)

        return estimates, list(domains), cov

    @functools.cached_property
    def _projection(self) -> CellProjection:
        s = self._state
        return CellProjection(s.cell_codes, s.n_levels, s.cell_design, self.n)

    def _fitted(
        self, spec: _Spec, point: _Points, cells: pd.DataFrame
    ) -> tuple[np.ndarray | None, list]:
        """The fitted cell values ``(C, K)`` of every estimate's residual, and the failures."""
        s = self._state
        c = s.cell_design.size
        sums = np.zeros((c, spec.size))
        squares = np.zeros(spec.size)
        raked = cells[cells["cell"] >= 0]
        where = raked["cell"].to_numpy(dtype=np.int64)
        for k in range(spec.size):
            sums[where, k] = raked[f"S{k}"].to_numpy()
            squares[k] = float(raked[f"Q{k}"].sum())
        fitted = np.zeros((c, spec.size))
        failed: list = [None] * spec.size
        for k in range(spec.size):
            try:
                fitted[:, k] = self._projection.fitted(sums[:, k], squares[k], s.steps)
            except ResidualNotConverged as exc:
                failed[k] = exc
                fitted[:, k] = np.nan
        return fitted, failed

    def _design_totals(
        self, spec: _Spec, point: _Points, fitted: np.ndarray, design: FrameDesign
    ) -> np.ndarray:
        """Sums of :math:`z` per group of the design table, shape ``(groups, K)``."""
        rows = self._state.rows
        chunk = functools.partial(
            _z_chunk, spec=spec, point=point, fitted=fitted, design=_DesignColumns.of(design)
        )
        out = rows.map_reduce(_DesignColumns.of(design).columns(spec), chunk, ["s", "c", "f"])
        return _align(design.table, out, spec.size)

    def _notes(self) -> tuple[str, ...]:
        s = self._state
        design = s.design_now()
        parts = ["one-stage design"]
        parts.append("rows as PSUs" if design.cluster is None else "clusters as PSUs")
        if design.strata is not None:
            parts.append("stratified")
        parts.append("with replacement (no fpc)" if design.fpc is None else "with fpc")
        notes = [", ".join(parts) + "; normal 95% CI"]
        if not self.converged:
            notes.append(
                f"raking did NOT converge (max margin error {self.marginal_error:.3g})"
                + ("" if self.stalled and s.steps is None else "; the SE assumes the margins hold")
            )
        if self.bounds is not None:
            notes.append(f"bounds {self.bounds}: the residuals ignore the bounds, as R calibrate")
        if s.steps is None and s.varies_within_levels:
            notes.append(
                "design weights vary within levels of the margins: R survey's rake() reports a "
                "different SE here (its svyrecvar removes unweighted level means); this SE is "
                'calibrate(calfun="raking")\'s linearisation'
            )
        dropped = self._n_rows_total - s.n_sampled
        if dropped:
            notes.append(f"{dropped} rows dropped (na='drop'), treated as not sampled")
        zeroed = s.n_sampled - self.n
        if zeroed:
            notes.append(f"{zeroed} rows of levels without target have weight 0")
        return tuple(notes)

    @property
    def _n_rows_total(self) -> int:
        return self._state.n_total

    def _se_method(self) -> str:
        k = self._state.steps
        if k is None:
            return (
                "linearisation after raking to convergence: residuals of the design-weighted "
                "least squares on the raking margins (Deville & Sarndal 1992), solved by "
                f"conjugate gradients to relative residual <= {self._projection.effective_tol:.0e}"
                '; equals R survey calibrate(calfun="raking")'
            )
        return (
            f"linearisation after k = {k} raking steps: residuals T_0 T_1 ... T_k u of "
            "alternating design-weighted level-mean projections (theory.md 2.2) [DER]"
        )

    def _lonely_psu_notes(self, se: float, design: FrameDesign) -> tuple[str, ...]:
        """The design's note on lonely PSUs or a NaN SE (:meth:`SurveyDesign.lonely_psu_notes`)."""
        return design.sampling.lonely_psu_notes(se, n_rows=self.n)


_NOT_OFFERED = (
    "{what} is not offered for Dask or Polars frames (mean, total and proportion are); "
    "compute it on a pandas DataFrame of the columns it needs with the raked weights "
    "(e.g. frame[cols].assign(w=result.weights).compute() for Dask)."
)


# ------------------------------------------------------------------------------------------
# What the chunks compute (top-level functions: they travel to Dask workers)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Indicator:
    """The indicator of one level of a column (a proportion)."""

    column: Hashable
    level: Any


@dataclass(frozen=True)
class _Spec:
    """The estimates of one call: ``ys`` (columns or indicators) in each domain of ``by``."""

    kind: str
    ys: tuple
    by: Hashable | None
    domains: tuple
    kept: tuple = ()  # columns a row must have (na="omit")

    @property
    def size(self) -> int:
        return len(self.ys) * len(self.domains)

    @property
    def columns(self) -> list[Hashable]:
        cols = [y.column if isinstance(y, _Indicator) else y for y in self.ys]
        if self.by is not None:
            cols.append(self.by)
        return list(dict.fromkeys(cols))

    def values(self, arrays: dict[str, Any]) -> list[np.ndarray]:
        """Each y as float64 over the chunk (NaN where missing)."""
        out = []
        for y in self.ys:
            if isinstance(y, _Indicator):
                series = arrays[y.column]
                out.append(_equals(series, y.level).astype(np.float64))
            else:
                series = arrays[y]
                out.append(series.to_numpy(dtype=np.float64, na_value=np.nan))
        return out

    @property
    def numeric(self) -> list[Hashable]:
        """The numeric columns estimated (not the indicators of a proportion)."""
        return [y for y in self.ys if not isinstance(y, _Indicator)]

    def present(self, arrays: dict[str, Any]) -> np.ndarray:
        """The rows where every ``kept`` column has a value."""
        out = np.ones(arrays["w"].shape[0], dtype=bool)
        for c in self.kept:
            out &= ~arrays[c].isna().to_numpy()
        return out

    def domain_masks(self, arrays: dict[str, Any], *, kept: bool = True) -> list[np.ndarray]:
        """Each domain's rows in the chunk (with ``kept``: those with the ``kept`` columns)."""
        n = arrays["w"].shape[0]
        if self.by is None:
            masks = [np.ones(n, dtype=bool)]
        else:
            series = arrays[self.by]
            masks = [_equals(series, dom) for dom in self.domains]
        if kept and self.kept:
            present = self.present(arrays)
            masks = [m & present for m in masks]
        return masks

    def parts(self, arrays: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(y, domain mask)`` of every estimate, domains outer."""
        values = self.values(arrays)
        return [(y, dom) for dom in self.domain_masks(arrays) for y in values]


def _equals(series: pd.Series, value: object) -> np.ndarray:
    """``series == value`` as a NumPy bool array (missing values: False), for any dtype."""
    return pd.array(series == value, dtype="boolean").to_numpy(dtype=bool, na_value=False)


def _levels_chunk(arrays: dict[str, Any], column: Hashable) -> pd.DataFrame:
    sampled = arrays["sampled"]
    values = _labels(arrays, column, sampled, int(sampled.sum()))
    return (
        pd.DataFrame({"level": values, "n": np.ones(values.size, dtype=np.int64)})
        .groupby("level", dropna=False, sort=False)
        .sum()
        .reset_index()
    )


def _point_chunk(arrays: dict[str, Any], spec: _Spec) -> pd.DataFrame:
    r"""Per estimate ``k``: :math:`\sum w y 1_D`, :math:`\sum w 1_D`, rows with w > 0.

    ``had``: the domain's rows with w > 0 before ``na="omit"``. Rows ``k = -1 - j``: the raked
    rows missing numeric column ``j`` (``nan``); ``k = -1 - len(numeric)``: the raked rows
    left out by ``na="omit"``.
    """
    w = arrays["w"]
    w0 = np.where(arrays["cell"] >= 0, w, 0.0)
    raked = w0 > 0
    out: dict[str, list] = {"k": [], "wy": [], "w": [], "rows": [], "had": [], "nan": []}

    def add(
        k: int, wy: float = 0.0, ws: float = 0.0, rows: int = 0, had: int = 0, nan: int = 0
    ) -> None:
        for key, value in zip(out, (k, wy, ws, rows, had, nan), strict=True):
            out[key].append(value)

    raw = [d for d in spec.domain_masks(arrays, kept=False) for _ in spec.ys]
    for k, ((y, dom), before) in enumerate(zip(spec.parts(arrays), raw, strict=True)):
        yd = np.where(dom & ~np.isnan(y), y, 0.0)
        rows = int(np.count_nonzero(dom & raked))
        add(
            k,
            float(np.dot(w0, yd)),
            float(w0[dom].sum()),
            rows,
            int(np.count_nonzero(before & raked)),
        )
    for j, c in enumerate(spec.numeric):
        add(-1 - j, nan=int(np.count_nonzero(arrays[c].isna().to_numpy() & raked)))
    add(-1 - len(spec.numeric), nan=int(np.count_nonzero(~spec.present(arrays) & raked)))
    return pd.DataFrame(out)


@dataclass(frozen=True)
class _Points:
    """The point estimates of a call (from the first pass), per estimate ``k``."""

    estimate: np.ndarray
    wsum: np.ndarray
    ymean: np.ndarray  # weighted mean of y over the domain's rows of positive weight
    rows: np.ndarray
    had: np.ndarray  # rows of positive weight in the domain before na="omit"
    kind: str

    @classmethod
    def of(cls, spec: _Spec, sums: pd.DataFrame) -> _Points:
        sums = sums.set_index("k").reindex(range(spec.size), fill_value=0)
        wy = sums["wy"].to_numpy(dtype=np.float64)
        w = sums["w"].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(w > 0, wy / w, np.nan)
        estimate = wy if spec.kind == "total" else mean
        return cls(
            estimate,
            w,
            mean,
            sums["rows"].to_numpy(np.int64),
            sums["had"].to_numpy(np.int64),
            spec.kind,
        )

    def influence(self, k: int, y: np.ndarray, dom: np.ndarray) -> np.ndarray:
        """:math:`u` of estimate ``k`` on the chunk's rows (0 outside the domain)."""
        if self.kind == "total":
            return np.where(dom, y, 0.0)
        wd = self.wsum[k]
        if not wd > 0:
            return np.zeros_like(y)
        return np.where(dom, y - self.estimate[k], 0.0) / wd

    def srs(self, cells: pd.DataFrame, kind: str) -> list[tuple[float, float]]:
        """The SRS variances of :func:`raking.survey.intervals.srs_variances` per estimate."""
        out = []
        for k in range(self.estimate.size):
            n = int(self.rows[k])
            if n < 2:
                out.append((math.nan, math.nan))
                continue
            big_n = float(self.wsum[k])
            s2 = n / (n - 1) * float(cells[f"V{k}"].sum()) / big_n
            scale = big_n**2 if kind == "total" else 1.0
            replace = scale * s2 / n
            without = math.nan if big_n < n else replace * (big_n - n) / big_n
            out.append((without, replace))
        return out


def _raise_missing_levels(column: Hashable, missing: str) -> None:
    """``RakeResult._levels``' error for missing values of a level column."""
    fix = "give them a level (fillna) to estimate by it"
    if missing == "error":
        fix = (
            "give them a level (fillna), or pass na='omit' to leave those rows out (R's "
            "na.rm=TRUE: the shares among the other rows)"
        )
    raise ValueError(f"column {column!r} has missing values; {fix}.")


def _check_missing(
    result: FrameRakeResult, spec: _Spec, point: _Points, sums: pd.DataFrame
) -> tuple[str, ...]:
    """Missing values of the analysis columns among the raked rows, as the pandas path.

    ``na="error"``: the first numeric column with some raises (naming rows); ``na="omit"``: a
    domain left without rows raises, else the note saying how many raked rows were left out.
    """
    count = dict(zip(sums["k"].tolist(), sums["nan"].tolist(), strict=True))
    if not spec.kept:
        for j, column in enumerate(spec.numeric):
            if count.get(-1 - j, 0):
                rows = result._state.rows.labels_where(
                    [column], functools.partial(_missing_y, column=column)
                )
                raise_missing_values([column], int(count[-1 - j]), rows)
        return ()
    for k in range(spec.size):
        if point.had[k] and not point.rows[k]:
            y = spec.ys[k % len(spec.ys)]
            column = y.column if isinstance(y, _Indicator) else y
            label = spec.domains[k // len(spec.ys)]
            raise_no_complete_rows([column], spec.by, label)
    omitted = int(count.get(-1 - len(spec.numeric), 0))
    return RakeResult._omitted_note(list(spec.kept), np.ones(omitted, dtype=bool))


def _missing_y(arrays: dict[str, Any], column: Hashable) -> np.ndarray:
    values = arrays[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return (arrays["w"] > 0) & np.isnan(values)


def _cell_chunk(arrays: dict[str, Any], spec: _Spec, point: _Points) -> pd.DataFrame:
    r"""Per raked cell and estimate: :math:`\sum d u`, :math:`\sum d u^2`, SRS sum of squares.

    The last is :math:`\sum w (y - \bar y)^2` over the domain's rows of positive weight (the
    design effect's SRS variance). The cells are integers ``0 .. C-1``: the sums are
    bincounts, returned for the cells the chunk has.
    """
    cell = arrays["cell"]
    raked = cell >= 0
    c = cell[raked]
    w, d = arrays["w"][raked], arrays["d"][raked]
    size = int(c.max()) + 1 if c.size else 0
    present = np.flatnonzero(np.bincount(c, minlength=size))
    cols: dict[str, np.ndarray] = {"cell": present.astype(np.int64)}

    def per_cell(values: np.ndarray) -> np.ndarray:
        return np.bincount(c, values, minlength=size)[present]

    for k, (y, dom) in enumerate(spec.parts(arrays)):
        y0 = np.where(np.isnan(y), 0.0, y)
        u = point.influence(k, y0, dom)[raked]
        du = d * u
        cols[f"S{k}"] = per_cell(du)
        cols[f"Q{k}"] = per_cell(du * u)
        keep = dom[raked] & (w > 0)
        centred = y0[raked] - point.ymean[k]
        cols[f"V{k}"] = per_cell(np.where(keep, w * centred * centred, 0.0))
    return pd.DataFrame(cols)


@dataclass(frozen=True)
class _DesignColumns:
    """The label columns of the design table, read from the rows."""

    strata: Hashable | None
    cluster: Hashable | None
    fpc: Hashable | None

    @classmethod
    def of(cls, design: FrameDesign) -> _DesignColumns:
        return cls(design.strata, design.cluster, design.fpc)

    def columns(self, spec: _Spec) -> list[Hashable]:
        own = [c for c in (self.strata, self.cluster, self.fpc) if c is not None]
        return list(dict.fromkeys([*spec.columns, *own]))

    def labels(self, arrays: dict[str, Any], rows: np.ndarray) -> dict[str, pd.Series]:
        out = {}
        n = int(rows.sum())
        for key, col in (("s", self.strata), ("c", self.cluster), ("f", self.fpc)):
            out[key] = _labels(arrays, col, rows, n)
        return out


def _labels(arrays: dict[str, Any], col: Hashable | None, rows: np.ndarray, n: int) -> pd.Series:
    """The labels of a design column on ``rows`` in their own dtype (0 without the column)."""
    if col is None:
        return pd.Series(np.zeros(n, dtype=np.int8))
    values = arrays[col][rows].reset_index(drop=True)
    if isinstance(values.dtype, pd.CategoricalDtype):  # groups of its values, not categories
        categories = values.cat.categories.dtype
        values = values.astype(object if values.isna().any() else categories)
    return values


def _residuals(
    arrays: dict[str, Any], spec: _Spec, point: _Points, fitted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The sampled rows, and :math:`z = w (u - f_c)` of each estimate on them ``(rows, K)``."""
    cell = arrays["cell"]
    sampled = cell >= -1
    raked = cell >= 0
    w = arrays["w"]
    z = np.zeros((int(sampled.sum()), spec.size))
    on_raked = raked[sampled]
    for k, (y, dom) in enumerate(spec.parts(arrays)):
        y0 = np.where(np.isnan(y), 0.0, y)
        u = point.influence(k, y0, dom)
        e = u[raked] - fitted[cell[raked], k]
        z[on_raked, k] = w[raked] * e
    return sampled, z


def _z_chunk(
    arrays: dict[str, Any],
    spec: _Spec,
    point: _Points,
    fitted: np.ndarray,
    design: _DesignColumns,
) -> pd.DataFrame:
    """Per group of the design table: the sums of :math:`z` of every estimate."""
    sampled, z = _residuals(arrays, spec, point, fitted)
    frame = pd.DataFrame(design.labels(arrays, sampled))
    for k in range(spec.size):
        frame[f"z{k}"] = z[:, k]
    return frame.groupby(["s", "c", "f"], dropna=False, sort=False).sum().reset_index()


def _squares_chunk(
    arrays: dict[str, Any],
    spec: _Spec,
    point: _Points,
    fitted: np.ndarray,
    design: _DesignColumns,
    means: pd.DataFrame,
    cross: bool,
) -> pd.DataFrame:
    r"""Rows as PSUs: per stratum :math:`\sum (z - \bar z_h)^2` (all products with ``cross``)."""
    sampled, z = _residuals(arrays, spec, point, fitted)
    labels = design.labels(arrays, sampled)["s"]
    index = pd.Index(means["s"].tolist()).get_indexer(labels)
    dev = z - means[[f"m{k}" for k in range(spec.size)]].to_numpy()[index]
    frame = pd.DataFrame({"s": labels})
    pairs = [(j, k) for j in range(spec.size) for k in range(j if cross else 0, spec.size)]
    if not cross:
        pairs = [(k, k) for k in range(spec.size)]
    for j, k in pairs:
        frame[f"q{j}_{k}"] = dev[:, j] * dev[:, k]
    return frame.groupby("s", dropna=False, sort=False).sum().reset_index()


def _align(table: pd.DataFrame, out: pd.DataFrame, size: int) -> np.ndarray:
    """The rows of ``out`` in the order of the design ``table`` (matched by labels)."""
    keys = list(zip(table["s"], table["c"], table["f"], strict=True))
    position = {key: i for i, key in enumerate(keys)}
    totals = np.zeros((len(table), size))
    cols = [f"z{k}" for k in range(size)]
    values = out[cols].to_numpy()
    for row, key in enumerate(zip(out["s"], out["c"], out["f"], strict=True)):
        totals[position[key]] = values[row]
    return totals


def _stratum_means(design: FrameDesign, totals: np.ndarray) -> pd.DataFrame:
    r""":math:`\bar z_h` per stratum label (0 for lonely strata under ``"adjust"``)."""
    stage = design.sampling.stages[0]
    terms = design.sampling._terms[0]
    s_codes, s_labels = pd.factorize(design.table["s"])
    sums = np.stack(
        [
            np.bincount(s_codes, weights=totals[:, k], minlength=len(s_labels))
            for k in range(totals.shape[1])
        ],
        axis=1,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums / stage.n_units[:, None]
    if terms.uncentred is not None:
        means[terms.uncentred] = 0.0
    frame = pd.DataFrame({"s": pd.Series(list(s_labels), dtype=object)})
    for k in range(totals.shape[1]):
        frame[f"m{k}"] = means[:, k]
    return frame


def _row_squares(
    design: FrameDesign,
    totals: np.ndarray,
    result: FrameRakeResult,
    spec: _Spec,
    point: _Points,
    fitted: np.ndarray,
    cross: bool,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows as PSUs: the factor per stratum and the summed (cross) squares per stratum."""
    means = _stratum_means(design, totals)
    columns = _DesignColumns.of(design)
    chunk = functools.partial(
        _squares_chunk,
        spec=spec,
        point=point,
        fitted=fitted,
        design=columns,
        means=means,
        cross=cross,
    )
    squares = result._state.rows.map_reduce(columns.columns(spec), chunk, ["s"])
    order = pd.Index(squares["s"].tolist(), dtype=object).get_indexer(
        pd.Index(means["s"].tolist(), dtype=object)
    )
    return design.sampling._terms[0].factor, squares.iloc[order].reset_index(drop=True)


def _variances(
    design: FrameDesign,
    totals: np.ndarray,
    result: FrameRakeResult,
    spec: _Spec,
    point: _Points,
    fitted: np.ndarray,
) -> np.ndarray:
    """The design variance of every estimate's linearised total."""
    if not design.rows_as_units:
        return np.array([design.sampling.variance(totals[:, k]) for k in range(spec.size)])
    factor, squares = _row_squares(design, totals, result, spec, point, fitted, cross=False)
    return np.array(
        [float(np.add.reduce(factor * squares[f"q{k}_{k}"].to_numpy())) for k in range(spec.size)]
    )


def _covariance(
    design: FrameDesign,
    totals: np.ndarray,
    result: FrameRakeResult,
    spec: _Spec,
    point: _Points,
    fitted: np.ndarray,
) -> np.ndarray:
    """The design covariance of the linearised totals (one more pass without clusters)."""
    if not design.rows_as_units:
        return design.sampling.covariance(totals)
    factor, squares = _row_squares(design, totals, result, spec, point, fitted, cross=True)
    out = np.zeros((spec.size, spec.size))
    for j in range(spec.size):
        for k in range(j, spec.size):
            out[j, k] = out[k, j] = float(factor @ squares[f"q{j}_{k}"].to_numpy())
    return out
