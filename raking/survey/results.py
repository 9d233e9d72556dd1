r"""The result of :func:`raking.rake`: raked weights, diagnostics, and estimators with honest SEs.

:class:`RakeResult` is a frozen record of numbers -- weights, convergence, the margin table --
plus what its standard errors need, as R ``survey``'s raked design keeps its ``postStrata``: the
level codes of the raking variables, the design and final weights, the number of steps and the
sampling design. It also keeps a private, read-only reference to the DataFrame that was raked
(never copied, never modified), so that ``res.mean("api00")`` can read the column: a result that
outlives its data keeps that DataFrame alive, and pickling it pickles the data too.

Estimates (:meth:`RakeResult.mean`, :meth:`~RakeResult.total`, :meth:`~RakeResult.proportion`) are
:class:`~raking.results.Estimate` objects (or an :class:`EstimateTable` of them, one per domain or
level), whose SE is the linearisation of :mod:`raking.survey.linearization` for the number of steps
actually used. Every estimate takes ``na="error" | "omit"``: ``"omit"`` leaves out the rows where
an analysis column is missing as R's ``na.rm=TRUE`` does -- a domain of the raked design (the
rows keep their weights and their place in the design, with influence 0), not a re-rake.
"""

from __future__ import annotations

import functools
import html
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raking.exceptions import ConvergenceWarning
from raking.results import Estimate
from raking.survey import ratios
from raking.survey.calibration_replicates import TrimmedReplicates, trim_columns
from raking.survey.design import SurveyDesign
from raking.survey.estimates import EstimateTable, SurveyEstimate
from raking.survey.intervals import srs_variances
from raking.survey.linearization import (
    CalibrationMatrix,
    CalibrationProjection,
    RakingProjection,
    ResidualNotConverged,
)
from raking.survey.quantiles import QuantileTable, survey_quantiles
from raking.survey.replicates import RerakedReplicates, replicate_variance
from raking.validation import (
    check_ci,
    check_columns,
    check_estimate_na,
    check_trim_bounds,
    check_trim_reach,
    raise_missing_values,
    raise_no_complete_rows,
)

if TYPE_CHECKING:
    from raking.survey.glm import GLMResult

__all__ = ["EstimateTable", "RakeResult"]

_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_MAX_TRIM_ROUNDS = 10_000  # RakeResult.trim(strict=True)


@dataclass(frozen=True, eq=False)
class _Design:
    """What the standard errors need (arrays over the raked rows or the sampled rows)."""

    codes: list[np.ndarray]  # p integer arrays (m,): level codes of the m raked rows
    n_levels: tuple[int, ...]
    design: np.ndarray  # (m,) design weights d of the raked rows (scaled: total / n if none)
    final: np.ndarray  # (m,) raked weights
    raked_pos: np.ndarray  # (m,) positions of the raked rows among the sampled rows
    sample_pos: np.ndarray  # (s,) positions of the sampled rows (not dropped) in data
    steps: int | None  # requested k; None: raked to tolerance
    strata: np.ndarray | None  # (s,) stratum codes
    cluster: np.ndarray | None  # (s,) PSU codes
    fraction: np.ndarray | None  # (H,) sampling fraction per stratum
    # CALIBRATE (raking.calibrate, RakeResult.trim):
    numeric: np.ndarray | None = None  # (m, q) numeric calibration columns of the raked rows
    calibration: str | None = None  # calibrate()'s method ("linear", "raking", "logit")
    calibrated: np.ndarray | None = None  # (m,) weights before trim() (the SEs' projection)
    trim_note: str = ""  # what trim() did to the margins
    # DESIGNS: every stage and lonely_psu (None: one stage from strata, cluster, fraction)
    sampling: SurveyDesign | None = None
    # REPLICATES: the re-raked replicates (SEs from them); None: linearisation
    replicates: RerakedReplicates | None = None


@dataclass(frozen=True, eq=False)
class _RakeFields:
    """The diagnostics every raked result holds, documented on each result.

    Pandas: :class:`RakeResult`; Dask and Polars:
    :class:`raking.survey.frame_results.FrameRakeResult`.
    """

    weights: Any
    converged: bool
    iterations: int
    steps: int
    marginal_error: float
    variable_errors: pd.Series
    tol: float | None
    weight_total: float
    total_known: bool
    bounds: tuple[float, float] | None
    margins: pd.DataFrame
    method: str
    stalled: bool


@dataclass(frozen=True, eq=False)
class RakeResult(_RakeFields):
    """Raked weights of a DataFrame, with diagnostics and estimators (see :func:`raking.rake`).

    Attributes
    ----------
    weights : pandas.Series
        The raked weight of every row, on ``data.index``: NaN for rows dropped by
        ``na="drop"``, 0 for rows of levels absent from the targets (``unknown="zero"``).
    converged : bool
        To tolerance: the max margin error reached ``tol``. Fixed ``steps``: the weights are
        finite (the margins of the last-adjusted variable are then exact, the others not).
    iterations : int
        Sweeps over the variables begun (R's iterations).
    steps : int
        Single-variable adjustments performed (the paper's k).
    marginal_error : float
        Final max ``|raked - target|`` over variables and levels, as a share of the total.
    variable_errors : pandas.Series
        The same per variable.
    tol : float or None
        The tolerance iterated to (``None`` for fixed ``steps``).
    weight_total : float
        The total of the weights.
    total_known : bool
        Whether ``weight_total`` is a known population total (count targets or ``total=``), which
        :meth:`total` needs.
    bounds : (lo, hi) or None
        The bounds on ``g = w / d``.
    margins : pandas.DataFrame
        One row per (variable, level): ``n`` sample rows, and shares of the total: ``sample``
        (design-weighted, before raking), ``target``, ``raked`` and ``error = raked - target``.
    method : str
        ``"cells"`` (the non-empty cells of the crossed codes were raked) or ``"rows"``, and the
        backend.
    stalled : bool
        Iteration stopped because the error stopped decreasing (unreachable margins).
    """

    weights: pd.Series
    _design: _Design = field(repr=False, compare=False)
    _data: pd.DataFrame = field(repr=False, compare=False)

    # ---------------------------------------------------------------- diagnostics

    @property
    def n(self) -> int:
        """Rows raked (rows with a positive weight)."""
        return int(self._design.final.shape[0])

    @property
    def ess(self) -> float:
        r"""Kish effective sample size :math:`(\sum w)^2 / \sum w^2` of the raked rows."""
        w = self._design.final
        return float(w.sum() ** 2 / np.dot(w, w))

    @property
    def deff(self) -> float:
        r"""Kish design effect of the weighting, :math:`n / n_\text{eff} = 1 + CV(w)^2`."""
        return self.n / self.ess

    @property
    def adjustments(self) -> pd.Series:
        """The adjustment factor ``g = w / d`` of every row (NaN where ``weights`` is NaN)."""
        g = np.full(len(self.weights), np.nan)
        pos = self._design.sample_pos
        g[pos] = 0.0
        g[pos[self._design.raked_pos]] = self._design.final / self._design.design
        return pd.Series(g, index=self.weights.index, name="adjustment")

    def weight_quantiles(self, q: tuple[float, ...] = _QUANTILES) -> pd.Series:
        """Quantiles of the raked weights (rows with positive weight)."""
        return pd.Series(np.quantile(self._design.final, q), index=list(q), name="weight")

    def summary(self) -> str:
        """Convergence, totals, weight distribution, effective sample size and the margin table."""
        state = "converged" if self.converged else "NOT converged"
        if self.tol is None:
            state = f"fixed {self.steps} steps"
        tol = "" if self.tol is None else f" (tol {self.tol:.3g})"
        w = self.weight_quantiles((0.0, 0.5, 1.0)).to_numpy()
        g = self.adjustments.to_numpy()[self._design.sample_pos[self._design.raked_pos]]
        calibrated = self._design.calibration is not None
        work = "Newton iterations" if calibrated else f"sweeps ({self.steps} steps)"
        lines = [
            f"{'Calibrated' if calibrated else 'Raked'} weights: {self.n} rows, "
            f"{len(self.variable_errors)} variables ({self.method})",
            f"{state} after {self.iterations} {work}: max |raked - target| "
            f"= {self.marginal_error:.3g} of the total{tol}"
            + (" (numeric columns: of their scale)" if self._design.numeric is not None else "")
            + (" -- stalled: margins unreachable together" if self.stalled else ""),
            f"total: {self.weight_total:.10g} ("
            + ("known population total" if self.total_known else "not a known population total")
            + ")",
            f"weights: min {w[0]:.4g}, median {w[1]:.4g}, max {w[2]:.4g}; adjustment g = w/d in "
            f"[{g.min():.4g}, {g.max():.4g}]"
            + ("" if self.bounds is None else f", bounds {self.bounds}"),
            f"Kish effective sample size {self.ess:.1f} (design effect of weighting "
            f"{self.deff:.3f})",
            *([self._design.trim_note] if self._design.trim_note else []),
            *([self._design.replicates.note()] if self._design.replicates is not None else []),
            "margins (shares of the total):",
            self.margins.to_string(
                index=False,
                formatters={
                    **{c: "{:.4f}".format for c in ("sample", "target", "raked")},
                    "error": "{:.1e}".format,
                },
            ),
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"

    def plot(self) -> Any:
        """Margins before and after raking, and the distribution of the weights (matplotlib).

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
        m = self.margins
        x = np.arange(len(m))
        for shift, col, label in (
            (-0.27, "sample", "sample (design-weighted)"),
            (0.0, "target", "target"),
            (0.27, "raked", "raked"),
        ):
            left.bar(x + shift, m[col], 0.27, label=label)
        left.set_xticks(
            x,
            [f"{v}={lv}" for v, lv in zip(m["variable"], m["level"], strict=True)],
            rotation=45,
            ha="right",
        )
        left.set_ylabel("share of the total")
        left.set_title("margins")
        left.legend()
        right.hist(self._design.final, bins=30)
        right.set_xlabel("weight")
        right.set_ylabel("rows")
        right.set_title(f"weights (Kish n_eff = {self.ess:.0f} of {self.n})")
        return fig

    # ---------------------------------------------------------------- trimming

    def trim(
        self, lower: float | None = None, upper: float | None = None, *, strict: bool = False
    ) -> RakeResult:
        r"""Trim the weights to ``[lower, upper]``, as R ``survey``'s ``trimWeights``.

        Weights outside the bounds are set to them and the total cut off (or added), :math:`E =
        \sum_i (w_i - \operatorname{clip}(w_i, \text{lower}, \text{upper}))`, is shared
        **equally** among the :math:`m` weights inside: :math:`w_i \mathrel{+}= E / m` (R adds
        the same amount to each, not an amount proportional to the weight), so the total of the
        weights is kept. ``strict=False`` does this once, and the shared excess can push weights
        past the bounds again; ``strict=True`` repeats it until every weight is within the
        bounds (R's recursion; a weight within 4 ulps of a bound counts as at it, since R's exact
        test can recurse for ever on weights that the shared excess pushes one ulp past the
        bound; at most 10,000 rounds, then a :class:`~raking.exceptions.ConvergenceWarning`).

        Bounds inside the raking (``bounds=(lo, hi)`` of :func:`raking.rake` or
        :func:`raking.calibrate`) are the recommended way: they bound :math:`g = w / d` while
        every margin is still met exactly, and the standard errors stay those of a calibration
        estimator. Trimming afterwards moves the margins off their targets (by how much is
        reported) and its SEs, as R's, treat the trimmed weights as fixed: the residuals are
        still those of the raking's projection, :math:`z = w^{\text{cal}} R\big((w /
        w^{\text{cal}})\, u\big)` with :math:`w^{\text{cal}}` the weights before trimming, which
        ignores the variance that the trimming itself adds or removes. With replicate weights
        (``replicates=``) every replicate's weights are trimmed by the same rule, column by
        column, as R's ``trimWeights`` on a replicate design (survey 4.1.1's own
        ``trimWeights.svyrep.design`` garbles this; see ``tests/data/r/calibrate_replicates.R``),
        and the SEs come from the trimmed replicates.

        Parameters
        ----------
        lower, upper : float, optional
            Bounds on the weights themselves (not on ``g``); at least one. Only the raked rows'
            weights are trimmed (rows of weight 0 from ``unknown="zero"`` stay 0; R's
            ``trimWeights`` would give them a share when ``lower`` is below 0).
        strict : bool
            Repeat until every weight is within the bounds.

        Returns
        -------
        RakeResult
            A new result with the trimmed weights; its ``margins``, ``marginal_error`` and
            ``variable_errors`` are those of the trimmed weights, and every estimate carries a
            note with how far the margins moved (``converged`` is still the raking's).

        Raises
        ------
        ValueError
            No bound, ``lower >= upper``, bounds that cannot hold with the total kept (``n
            lower > total`` or ``n upper < total``), or every weight outside the bounds.
        """
        lo, hi = check_trim_bounds(lower, upper)
        s = self._design
        w = s.final.copy()
        # a weight within a few ulps of a bound is at it: R's exact test can cycle for ever on
        # weights that the shared excess keeps pushing one ulp past the bound
        slack = 4 * np.finfo(np.float64).eps * max(abs(b) for b in (lo, hi) if np.isfinite(b))
        outside = (w < lo - slack) | (w > hi + slack)
        check_trim_reach(lo, hi, float(w.sum()), w.size, int(w.size - outside.sum()))
        rounds = 0
        while outside.any() and (strict or rounds == 0) and rounds < _MAX_TRIM_ROUNDS:
            clipped = np.clip(w, lo, hi)
            clipped[~outside] += (w - clipped).sum() / np.count_nonzero(~outside)
            w, rounds = clipped, rounds + 1
            outside = (w < lo - slack) | (w > hi + slack)
        if strict and outside.any():
            warnings.warn(
                f"trim(strict=True) stopped after {rounds} rounds with {int(outside.sum())} "
                f"weight(s) still outside [{lo:.6g}, {hi:.6g}] (the shared excess shrinks "
                "slowly when nearly every weight is at a bound); widen the bounds.",
                ConvergenceWarning,
                stacklevel=2,
            )
        elif strict:
            w = np.clip(w, lo, hi)  # the last ulps
        margins, errors = self._margins_of(w)
        moved = errors.groupby(margins["variable"].to_numpy(), sort=False).max()
        bound = int(np.count_nonzero((w == lo) | (w == hi)))
        note = (
            f"weights trimmed to [{lo:.6g}, {hi:.6g}] (R trimWeights, strict={strict}, "
            f"{rounds} round(s), {bound} weight(s) at a bound): the margins moved off their "
            f"targets by up to {errors.max():.3g} ("
            + ", ".join(f"{v}: {e:.3g}" for v, e in moved.items())
            + "; shares of the total, numeric columns relative to their scale); the SE treats "
            "the trimmed weights as fixed (as R)"
        )
        full = self.weights.to_numpy().copy()
        full[s.sample_pos[s.raked_pos]] = w
        design = replace(
            s,
            final=w,
            calibrated=s.final if s.calibrated is None else s.calibrated,
            trim_note=note,
            replicates=self._trimmed_replicates(lo, hi, strict, slack),
        )
        return replace(
            self,
            weights=pd.Series(full, index=self.weights.index, name="weight"),
            marginal_error=float(errors.max()),
            variable_errors=pd.Series(moved.to_numpy(), index=list(moved.index), name="error"),
            margins=margins,
            _design=design,
        )

    def _trimmed_replicates(
        self, lo: float, hi: float, strict: bool, slack: float
    ) -> RerakedReplicates | None:
        """Each replicate's weights trimmed by :meth:`trim`'s rule (``None`` without them).

        As R's ``trimWeights`` on a replicate design is documented to do; see
        :func:`raking.survey.calibration_replicates.trim_columns`.
        """
        reps = self._design.replicates
        if reps is None:
            return None
        table, rounds = trim_columns(
            reps.weights(self._design.design),
            lo,
            hi,
            strict=strict,
            slack=slack,
            max_rounds=_MAX_TRIM_ROUNDS,
        )
        if strict and int(rounds.max()) >= _MAX_TRIM_ROUNDS:
            warnings.warn(
                f"trim(strict=True) stopped after {_MAX_TRIM_ROUNDS} rounds on "
                f"{int(np.count_nonzero(rounds >= _MAX_TRIM_ROUNDS))} replicate(s) with weights "
                "still outside the bounds (then clipped to them); widen the bounds.",
                ConvergenceWarning,
                stacklevel=3,
            )
        fields = {f.name: getattr(reps, f.name) for f in dataclass_fields(RerakedReplicates)}
        return TrimmedReplicates(
            **fields,
            table=table,
            trim_detail=f"[{lo:.6g}, {hi:.6g}], strict={strict}, up to {int(rounds.max())} "
            "round(s)",
        )

    def _margins_of(self, w: np.ndarray) -> tuple[pd.DataFrame, pd.Series]:
        r"""The margin table of the raked rows' weights ``w``, and each row's scaled error.

        Level rows: shares of the total. Numeric rows (from :func:`raking.calibrate`): the mean
        per population unit, and the error relative to the column's scale
        :math:`\frac{N}{\sum d} \sum_i d_i |x_i|`.
        """
        s = self._design
        margins = self.margins.copy()
        n_total = self.weight_total
        sums = [
            np.bincount(c, weights=w, minlength=size)
            for c, size in zip(s.codes, s.n_levels, strict=True)
        ]
        raked = np.concatenate(sums) / n_total
        errors = np.abs(raked - margins["target"].to_numpy()[: raked.size])
        if s.numeric is not None:
            raked = np.concatenate([raked, np.einsum("i,ij->j", w, s.numeric) / n_total])
            scale = np.einsum("i,ij->j", s.design, np.abs(s.numeric)) / s.design.sum()
            target = margins["target"].to_numpy()[-s.numeric.shape[1] :]
            errors = np.concatenate([errors, np.abs(raked[-target.size :] - target) / scale])
        margins["raked"] = raked
        margins["error"] = margins["raked"] - margins["target"]
        return margins, pd.Series(errors)

    # ---------------------------------------------------------------- estimators

    def mean(
        self, column: Hashable | list[Hashable], *, by: Hashable | None = None, na: str = "error"
    ) -> Estimate | EstimateTable:
        r"""Raked mean :math:`\sum_i w_i y_i / \sum_i w_i` of ``column``, with its SE.

        ``by``: one estimate per level of that column (domain means, ratio estimators); then an
        :class:`EstimateTable`. Influence values :math:`u_i = 1_D(i)(y_i - \hat y_D) / \sum_D w`.
        ``column`` a list of columns: their joint estimates, an :class:`EstimateTable`. A table
        (a list, or ``by``) has the covariance matrix of its estimates as ``.cov`` (R ``vcov`` of
        ``svymean(~a+b)``, ``svyby(covmat=TRUE)``) and ``.contrast({"E": 1, "H": -1})`` (R
        ``svycontrast``); see :mod:`raking.survey.ratios`. Every estimate has ``deff`` and
        ``deff_replace`` (R ``svymean(deff=TRUE)``, ``deff="replace"``), distinct from the
        weighting design effect :attr:`deff`.
        When raking to ``tol`` stalled (``stalled``: margins unreachable together) every SE of
        :meth:`mean`, :meth:`total` and :meth:`proportion` is NaN with a note: the weights where
        it stopped are an artefact of where it stopped (their linearisation can be 0), as in
        :func:`raking.estimate`. A run cut short by ``max_iter`` keeps its SE, with a note.

        ``na``: ``"error"`` (default) refuses missing values of ``column`` among the raked rows;
        ``"omit"`` leaves those rows out as R's ``na.rm=TRUE`` does: the estimate is that of the
        domain of the rows where every column is present (they keep their weights -- no re-rake
        -- and the other rows stay in the design with influence 0, for linearisation and
        replicates alike); the notes say how many rows were left out.
        """
        na = check_estimate_na(na)
        if isinstance(column, list) or by is not None:
            columns = column if isinstance(column, list) else [column]
            return ratios.joint(self, "mean", columns, by, na)
        return self._estimate("mean", column, by, na=na)

    def total(
        self, column: Hashable | list[Hashable], *, by: Hashable | None = None, na: str = "error"
    ) -> Estimate | EstimateTable:
        r"""Raked total :math:`\sum_i w_i y_i` of ``column`` (per domain with ``by``), with its SE.

        Needs a known population total (count targets, or ``total=`` in :func:`raking.rake`).
        A list of columns, or ``by``: a table with ``.cov`` and ``.contrast``, as :meth:`mean`.
        ``na="omit"``: the total over the rows where the column(s) are present (R
        ``svytotal(na.rm=TRUE)``), as :meth:`mean`.
        """
        na = check_estimate_na(na)
        if not self.total_known:
            raise ValueError(
                "total() needs the weights to sum to a known population total, but the targets "
                "were shares and no total= was given (the weights sum to the sample's own "
                f"{self.weight_total:.6g}). Rake with targets as population counts or pass total=N."
            )
        if isinstance(column, list) or by is not None:
            columns = column if isinstance(column, list) else [column]
            return ratios.joint(self, "total", columns, by, na)
        return self._estimate("total", column, by, na=na)

    def ratio(
        self,
        numerator: Hashable,
        denominator: Hashable,
        *,
        by: Hashable | None = None,
        na: str = "error",
    ) -> Estimate | EstimateTable:
        r"""Ratio of raked totals :math:`\hat R = \sum_i w_i y_i / \sum_i w_i x_i` (R ``svyratio``).

        Linearised SE from the influence values :math:`(y_i - \hat R x_i) / \hat X` through the
        raking's projection (or from the re-raked replicates); ``by``: one ratio per domain, an
        :class:`EstimateTable` with ``.cov``. ``deff`` as R ``svyratio(deff=TRUE)``: that of the
        total of the influence values. See :mod:`raking.survey.ratios`. ``na="omit"``: rows
        where the numerator or the denominator is missing are left out, a domain (R
        ``svyratio(na.rm=TRUE)``; see :meth:`mean`).

        Raises
        ------
        ValueError
            A non-numeric column, a denominator whose weighted total is 0 (in some domain), a
            domain without rows of positive weight, missing values with ``na="error"``.
        """
        return ratios.ratio(self, numerator, denominator, by, check_estimate_na(na))

    def proportion(
        self,
        column: Hashable,
        *,
        by: Hashable | None = None,
        ci: str = "wald",
        na: str = "error",
    ) -> EstimateTable:
        r"""Raked share of each level of ``column`` (within each level of ``by``), with SEs.

        ``ci``: the interval of :meth:`~raking.survey.estimates.SurveyEstimate.confint` (and
        ``ci``, ``to_frame``), R ``svyciprop(method=)`` with the design's degrees of freedom
        (PSUs minus strata of the first stage, of the domain for ``by``):

        - ``"wald"``: normal, :math:`\hat p \pm 1.96\, SE` (can cross 0 or 1);
        - ``"logit"``: Wald on the logit scale with a :math:`t` quantile, mapped back;
        - ``"beta"``: Korn-Graubard's Clopper-Pearson interval at the effective sample size.

        For small proportions (or small domains) prefer ``"beta"``: its coverage stays near
        nominal where the SE is poorly estimated, at the cost of a slightly wider interval;
        ``"logit"`` also stays in (0, 1) and is R's default. Formulas:
        :mod:`raking.survey.intervals`.

        ``na="omit"``: the shares among the rows where ``column`` is present (R
        ``svymean(~factor, na.rm=TRUE)``, ``svyciprop(..., na.rm=TRUE)``: a domain, no re-rake;
        the intervals keep the degrees of freedom and rows of the design, as R's); ``"error"``
        (default) refuses missing values.
        """
        ci = check_ci(ci)
        na = check_estimate_na(na)
        if ci != "wald":
            table = self.proportion(column, by=by, na=na)
            labels, codes = self._levels(column, missing=na)
            logit_se = [np.nan] * len(table)
            if ci == "logit" and self._design.replicates is not None:
                logit_se = ratios.logit_ses(self, codes, len(labels), by)
            dfs = [d for d in ratios.degrees_of_freedom(self, by) for _ in labels]
            return replace(
                table,
                estimates=tuple(
                    replace(  # type: ignore[call-arg]
                        e,
                        ci_method=ci,
                        logit_se=logit,
                        df=df,
                        rows=rows,
                        notes=tuple(
                            n.replace("normal 95% CI", f"{ci} CI (R svyciprop, t on {df:g} df)")
                            for n in e.notes
                        ),
                    )
                    for e, logit, (df, rows) in zip(table.estimates, logit_se, dfs, strict=True)
                ),
            )
        labels, codes = self._levels(column, missing=na)
        kept, notes = self._kept_levels(column, codes)
        per_level = [
            self._estimate(
                "mean", (codes == j).astype(np.float64), by, name=column, kept=kept, notes=notes
            )
            for j in range(len(labels))
        ]
        if by is None:
            return EstimateTable(
                f"proportions of {column}", tuple(labels), tuple(per_level), column
            )
        domains = per_level[0].labels  # type: ignore[union-attr]
        keys = tuple((dom, lv) for dom in domains for lv in labels)
        estimates = tuple(
            per_level[j].estimates[i]  # type: ignore[union-attr]
            for i in range(len(domains))
            for j in range(len(labels))
        )
        return EstimateTable(f"proportions of {column} by {by}", keys, estimates, (by, column))

    def quantile(
        self,
        column: Hashable,
        q: float | Sequence[float],
        *,
        by: Hashable | None = None,
        qrule: str = "math",
        alpha: float = 0.05,
        na: str = "error",
    ) -> QuantileTable:
        r"""Quantiles of ``column`` with Woodruff intervals, equal to R ``svyquantile(ci=TRUE)``.

        The estimate is the weighted quantile rule ``qrule`` (R's names; default ``"math"``,
        R survey >= 4.1's: the smallest value whose raked CDF reaches ``q``). The interval is
        Woodruff's: the raked mean of :math:`1\{y \le \hat q\}` (the CDF at the estimate)
        with its SE -- linearised through the raking, or from the re-raked replicates, as
        :meth:`mean` -- gives :math:`\hat F \pm t_{1-\alpha/2,\nu} s_F`, mapped back
        through the rule; :math:`\operatorname{SE} = (U - L) / (2 t_{1-\alpha/2,\nu})` in
        the units of ``column``, :math:`\nu` R's ``degf`` (PSUs minus strata; see
        :mod:`raking.survey.quantiles`).

        Parameters
        ----------
        column : hashable
            A numeric column without missing values among the raked rows.
        q : float or sequence of float
            Probabilities in :math:`[0, 1]` (0.5: the median).
        by : hashable, optional
            One set of quantiles per level of this column (R ``svyby(..., svyquantile)``).
        qrule : str
            ``"math"``, ``"school"``, ``"shahvaish"`` or ``"hf1"`` ... ``"hf9"`` (R's
            ``qrule``).
        alpha : float
            The intervals cover :math:`1 - \alpha`.
        na : {"error", "omit"}
            ``"omit"``: leave out the rows where ``column`` is missing, as R
            ``svyquantile(na.rm=TRUE)`` (the design subset to the other rows: a domain, whose
            degrees of freedom are those of the rows kept); ``"error"`` refuses them.

        Returns
        -------
        QuantileTable
            ``frame`` (and ``to_frame()``): quantile, interval, SE, the CDF and its SE, the
            degrees of freedom and n per (domain,) probability; printing shows the rule and the
            design in its notes.

        Raises
        ------
        ValueError
            ``q`` outside :math:`[0, 1]`, a non-numeric column, an unknown ``qrule``, ``alpha``
            outside :math:`(0, 1)`, a domain without rows of positive weight, or missing values
            with ``na="error"``.
        """
        na = check_estimate_na(na)
        return survey_quantiles(self, column, q, by=by, qrule=qrule, alpha=alpha, na=na)

    def _estimate(
        self,
        kind: str,
        column: Any,
        by: Hashable | None,
        name: Hashable | None = None,
        *,
        na: str = "error",
        kept: np.ndarray | None = None,
        notes: tuple[str, ...] = (),
    ) -> Estimate | EstimateTable:
        """``kind`` of a column (or of the values ``column``, over the sampled rows) by domain.

        ``kept``: the rows where the analysis columns are present (``na="omit"``; each domain
        is restricted to them), with ``notes`` saying how many were left out.
        """
        s = self._design
        if isinstance(column, np.ndarray):
            y = column
        else:
            (y,), kept, notes = self._analysis([column], na)
        name = column if name is None else name
        w = np.zeros(s.sample_pos.size)
        w[s.raked_pos] = s.final
        if kept is None:
            kept = np.ones(w.size, dtype=bool)
        if by is None:
            self._check_kept([name], kept, w, None, None)
            return self._one(kind, y, w, kept, notes)
        labels, codes = self._levels(by)
        domains = [codes == j for j in range(len(labels))]
        for label, domain in zip(labels, domains, strict=True):
            self._check_kept([name], domain & kept, w, by, label, domain)
        estimates = tuple(self._one(kind, y, w, domain & kept, notes) for domain in domains)
        return EstimateTable(f"{kind} of {name} by {by}", tuple(labels), estimates, by)

    @staticmethod
    def _check_kept(
        columns: Sequence[Hashable],
        kept: np.ndarray,
        w: np.ndarray,
        by: Hashable | None,
        label: object,
        domain: np.ndarray | None = None,
    ) -> None:
        """Refuse a domain that had raked rows but has none left after ``na="omit"``."""
        had = np.any(w > 0) if domain is None else np.any(domain & (w > 0))
        if had and not np.any(kept & (w > 0)):
            raise_no_complete_rows(columns, by, label)

    def _one(
        self,
        kind: str,
        y: np.ndarray,
        w: np.ndarray,
        domain: np.ndarray,
        extra: tuple[str, ...] = (),
    ) -> Estimate:
        """One estimate over the rows ``domain`` (``extra``: notes added after the design's)."""
        s = self._design
        yd = np.where(domain, y, 0.0)
        vsrs = srs_variances(kind, y, w, domain)
        if kind == "total":
            estimate, u = float(np.dot(w, yd)), yd
        else:
            wd = float(w[domain].sum())
            estimate = float(np.dot(w, yd)) / wd if wd > 0 else np.nan
            u = np.where(domain, y - estimate, 0.0) / wd if wd > 0 else np.zeros_like(y)
        notes = self._notes() + extra
        if self.stalled and s.steps is None:
            # As raking.estimate without a plug-in: the weights where raking stopped are an
            # artefact of where it stopped, and their linearisation can be 0 (zero-width CIs).
            notes += (
                "SE is NaN: raking stopped because the margins are unreachable together (max "
                f"margin error {self.marginal_error:.3g} stopped decreasing), so there are no "
                "converged weights to linearise at; make the targets consistent with each "
                "other and with the sample's cells",
            )
            return self._with_se(estimate, np.nan, domain, w, notes, vsrs)
        if s.replicates is not None:
            se, replicate_notes = self._replicate_se(kind, yd, domain, estimate)
            return self._with_se(estimate, se, domain, w, notes + replicate_notes, vsrs)
        try:
            z = self._linearised(u)
        except ResidualNotConverged as exc:
            se = np.nan  # never an SE from a residual that did not converge
            notes += (
                f"SE is NaN: the least-squares solve of the SE stopped after {exc.iterations} "
                f"iterations at relative residual {exc.relative_residual:.3g} > "
                f"{exc.tol:.3g}; the margins are nearly collinear: merge levels that occur "
                "only together, or drop a nearly redundant margin",
            )
        else:
            se = float(np.sqrt(self._sampling.variance(z)))
            notes += self._lonely_psu_notes(se)
        return self._with_se(estimate, se, domain, w, notes, vsrs)

    def _linearised(self, u: np.ndarray) -> np.ndarray:
        r"""The linearised total :math:`z` of influence values ``u`` (sampled rows), for the SEs.

        :math:`z = w\, R(u)` on the raked rows (0 elsewhere), :math:`R` the residual on the
        raking margins; after ``trim()`` R keeps the calibration's projection, :math:`z =
        w^\text{cal} R((w / w^\text{cal}) u)`. Raises ``ResidualNotConverged``.
        """
        s = self._design
        ratio, base = 1.0, s.final
        if s.calibrated is not None:
            base = s.calibrated
            ratio = np.divide(s.final, base, out=np.zeros_like(base), where=base != 0)
        e = self._projection.residual(ratio * u[s.raked_pos], s.steps)
        z = np.zeros(s.sample_pos.size)
        z[s.raked_pos] = base * e
        return z

    def _replicate_se(
        self, kind: str, yd: np.ndarray, domain: np.ndarray, estimate: float
    ) -> tuple[float, tuple[str, ...]]:
        r"""SE from the re-raked replicates: :math:`\hat\theta_r` with each replicate's weights.

        Totals :math:`\sum_i w_{ir} y_i 1_D(i)`; means divide by :math:`\sum_{i \in D} w_{ir}`
        (NaN where the domain is empty in replicate ``r``: left out, as R's ``svrVar``).
        """
        s = self._design
        reps = s.replicates
        rows = s.raked_pos
        y = np.stack([yd[rows], domain[rows].astype(np.float64)])
        sums = reps.totals(y, s.design)  # type: ignore[union-attr]
        if kind == "total":
            thetas = sums[0]
        else:
            thetas = np.full(sums.shape[1], np.nan)
            np.divide(sums[0], sums[1], out=thetas, where=sums[1] > 0)
        var, left_out = replicate_variance(thetas, estimate, reps.design)  # type: ignore[union-attr]
        notes: tuple[str, ...] = ()
        if left_out:
            notes = (
                f"{left_out} of {thetas.size} replicates have no rows of this domain (no "
                "estimate) and were left out of the variance, as R's svrVar",
            )
        return float(np.sqrt(var)), notes

    def glm(self, formula: str, family: str = "gaussian", *, na: str = "error") -> GLMResult:
        r"""A generalised linear model fitted with the raked weights, with design-based SEs.

        Coefficients by design-weighted IRLS; covariance by the sandwich of R ``survey``'s
        ``svyglm`` (influence functions :math:`w_i x_i (y_i - \mu_i) \mu'_i / V(\mu_i)\,
        A^{-1}` through the raking's residual operator and the design's covariance of totals),
        or by refitting with each replicate's re-raked weights; t tests and intervals on
        ``degf + 1 - p`` degrees of freedom. Equals R ``svyglm(formula, design = raked, family
        = gaussian() | quasibinomial() | quasipoisson())``. See :mod:`raking.survey.glm`.

        Parameters
        ----------
        formula : str
            A Wilkinson formula read by ``formulaic``, e.g. ``"api00 ~ ell + stype"``
            (treatment coding, first sorted level as reference); quote names with dots inside
            expressions in backticks: ``"I(`comp.imp` == 'Yes') ~ ell"``.
        family : {"gaussian", "binomial", "poisson"}
            Identity, logit or log link; a binomial response in [0, 1], a Poisson one >= 0.
        na : {"error", "omit"}
            Rows where a column of the formula is missing: ``"error"`` (default) refuses them;
            ``"omit"`` leaves them out as R ``svyglm``'s default ``na.action = na.omit`` (the
            design subset to the complete rows: a domain, not a re-rake; the notes say how many).

        Returns
        -------
        raking.survey.glm.GLMResult
            ``params``, ``bse``, ``tvalues``, ``pvalues``, ``conf_int()``, ``cov_params()``,
            ``summary()``, ``nobs``, ``df_resid`` (statsmodels' names).

        Raises
        ------
        ValueError
            An unknown family, a formula naming a missing column or with missing values (with
            ``na="error"``), a singular model matrix (naming the aliased columns), a response
            outside the family's range.
        """
        from raking.survey.glm import fit_glm

        return fit_glm(self, formula, family, check_estimate_na(na))

    @functools.cached_property
    def replicate_weights(self) -> pd.DataFrame | None:
        r"""The re-raked replicate weights :math:`w_{ir}` (``replicates=`` of :func:`raking.rake`).

        One row per row of the data (on its index; NaN and 0 where ``weights`` has them), one
        column per replicate; R's ``weights(design, "analysis")`` after ``calibrate()``. Formed
        on first access (``n x R`` floats); ``None`` without replicates.
        """
        s = self._design
        if s.replicates is None:
            return None
        rows = s.sample_pos[s.raked_pos]
        if rows.size == len(self.weights):  # every row raked: no copy into a larger array
            full = s.replicates.weights(s.design)
        else:
            full = np.full((len(self.weights), s.replicates.design.n_replicates), np.nan)
            full[s.sample_pos] = 0.0
            full[rows] = s.replicates.weights(s.design)
        names = list(s.replicates.design.names)
        return pd.DataFrame(full, index=self.weights.index, columns=names, copy=False)

    def _with_se(
        self,
        estimate: float,
        se: float,
        domain: np.ndarray,
        w: np.ndarray,
        notes: tuple[str, ...],
        vsrs: tuple[float, float] = (np.nan, np.nan),
    ) -> SurveyEstimate:
        """The :class:`SurveyEstimate` of one domain, with this result's method and convergence.

        ``vsrs``: the SRS variances without and with replacement (the design effects' bases).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            deff, deff_replace = (float(np.float64(se) ** 2 / v) for v in vsrs)
        return SurveyEstimate(
            estimate=estimate,
            se=se,
            se_method=self._se_method(),
            n=int(np.count_nonzero(domain & (w > 0))),
            steps=self._design.steps,
            converged=self.converged,
            marginal_error=self.marginal_error,
            notes=notes,
            deff=deff,
            deff_replace=deff_replace,
        )

    def _lonely_psu_notes(self, se: float) -> tuple[str, ...]:
        """The design's note on lonely PSUs or a NaN SE (:meth:`SurveyDesign.lonely_psu_notes`)."""
        return self._sampling.lonely_psu_notes(se, n_rows=self._design.final.size)

    @functools.cached_property
    def _sampling(self) -> SurveyDesign:
        """The design of the SEs (one stage from ``strata``/``cluster``/``fraction`` if unset)."""
        s = self._design
        if s.sampling is not None:
            return s.sampling
        return SurveyDesign.one_stage(
            s.sample_pos.size, strata=s.strata, cluster=s.cluster, fraction=s.fraction
        )

    @functools.cached_property
    def _projection(self) -> RakingProjection | CalibrationProjection:
        s = self._design
        if s.numeric is not None:
            matrix = CalibrationMatrix(s.codes, s.n_levels, s.numeric)
            return CalibrationProjection(matrix, s.design)
        return RakingProjection(s.codes, s.n_levels, s.design)

    @functools.cached_property
    def _design_weights_vary_within_levels(self) -> bool:
        r"""Whether :math:`d` is not constant within some level (relative spread > 1e-9).

        Where it is constant in every level of every margin, R's ``rake()`` SE (unweighted level
        means) and ``calibrate()``'s (design-weighted ones, ours) coincide.
        """
        d = self._design.design
        return varies_within_levels(self._design.codes, self._design.n_levels, d, d)

    def _analysis(
        self, columns: Sequence[Hashable], na: str
    ) -> tuple[list[np.ndarray], np.ndarray, tuple[str, ...]]:
        """The numeric ``columns`` over the sampled rows (0 where missing), and the rows kept.

        ``na="error"``: missing values among the raked rows raise, naming the column and the
        fix. ``na="omit"``: the rows kept are those where every column is present (R's
        ``na.rm=TRUE`` on several columns), with a note saying how many raked rows were left out.
        """
        check_columns("the estimate", list(columns), list(self._data.columns))
        s = self._design
        w = np.zeros(s.sample_pos.size)
        w[s.raked_pos] = s.final
        values, missing = [], np.zeros(w.size, dtype=bool)
        for column in columns:
            series = self._data[column].iloc[s.sample_pos]
            if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
                raise TypeError(
                    f"column {column!r} has dtype {series.dtype}; mean() and total() need "
                    f"numbers. For the share of each level use proportion({column!r})."
                )
            y = series.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(y)
            if na == "error" and np.any(bad & (w > 0)):
                rows = series.index[bad & (w > 0)]
                raise_missing_values([column], rows.size, rows[:10])
            missing |= bad
            values.append(np.where(bad, 0.0, y))
        return values, ~missing, self._omitted_note(columns, missing & (w > 0))

    def _values(self, column: Hashable) -> np.ndarray:
        """One numeric column over the sampled rows, refusing missing values (``na="error"``)."""
        return self._analysis([column], "error")[0][0]

    @staticmethod
    def _omitted_note(columns: Sequence[Hashable], omitted: np.ndarray) -> tuple[str, ...]:
        """The note of ``na="omit"``: how many raked rows were left out, and how (as R)."""
        count = int(np.count_nonzero(omitted))
        if not count:
            return ()
        names = ", ".join(map(str, columns))
        return (
            f"na='omit': {count} raked row(s) with a missing value of {names} left out, as a "
            "domain (R's na.rm=TRUE: they keep their place in the design with influence 0; "
            "the weights are not re-raked)",
        )

    def _levels(self, column: Hashable, *, missing: str = "by") -> tuple[list[Any], np.ndarray]:
        """The sorted levels of ``column`` over the sampled rows and each row's code.

        ``missing``: ``"omit"`` gives missing values the code -1 (``proportion(na="omit")``);
        ``"error"`` (``proportion``) and ``"by"`` (a domain column) refuse them.
        """
        check_columns("by", [column], list(self._data.columns))
        series = self._data[column].iloc[self._design.sample_pos]
        if missing != "omit" and series.isna().any():
            fix = "give them a level (fillna) to estimate by it"
            if missing == "error":
                fix = (
                    "give them a level (fillna), or pass na='omit' to leave those rows out (R's "
                    "na.rm=TRUE: the shares among the other rows)"
                )
            raise ValueError(f"column {column!r} has missing values; {fix}.")
        codes, uniques = pd.factorize(series, sort=True)
        return list(uniques), codes

    def _kept_levels(
        self, column: Hashable, codes: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """The rows where ``column`` has a level (code >= 0), and the ``na="omit"`` note."""
        w = np.zeros(codes.size)
        w[self._design.raked_pos] = self._design.final
        kept = codes >= 0
        return kept, self._omitted_note([column], ~kept & (w > 0))

    def _se_method(self) -> str:
        k = self._design.steps
        if self._design.replicates is not None:
            return self._design.replicates.note()
        if self._design.calibration is not None:
            return (
                "linearisation of the calibration: residuals of the design-weighted least "
                "squares on the calibration matrix (level indicators"
                + (" and numeric columns" if self._design.numeric is not None else "")
                + ") times the calibrated weights (Deville & Sarndal 1992); equals R survey "
                f'calibrate(calfun="{self._design.calibration}")'
            )
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

    def _notes(self) -> tuple[str, ...]:
        s = self._design
        stages = len(self._sampling.stages)
        parts = ["one-stage design" if stages == 1 else f"{stages}-stage design"]
        parts.append("rows as PSUs" if s.cluster is None else "clusters as PSUs")
        if s.strata is not None:
            parts.append("stratified")
        parts.append("with replacement (no fpc)" if s.fraction is None else "with fpc")
        if stages > 1:
            later = any(stage.fraction is not None for stage in self._sampling.stages)
            parts.append(
                "SE: first stage plus later stages times the sampling fractions above them"
                if later and s.fraction is not None
                else "SE: ultimate clusters (with replacement at the first stage)"
            )
        notes = [", ".join(parts) + "; normal 95% CI"]
        if not self.converged:
            notes.append(
                f"raking did NOT converge (max margin error {self.marginal_error:.3g})"
                + ("" if self.stalled and s.steps is None else "; the SE assumes the margins hold")
            )
        if self.bounds is not None:
            notes.append(f"bounds {self.bounds}: the residuals ignore the bounds, as R calibrate")
        if s.trim_note:
            notes.append(s.trim_note)
        if s.steps is None and s.calibration is None and self._design_weights_vary_within_levels:
            notes.append(
                "design weights vary within levels of the margins: R survey's rake() reports a "
                "different SE here (its svyrecvar removes unweighted level means); this SE is "
                'calibrate(calfun="raking")\'s linearisation'
            )
        dropped = len(self.weights) - s.sample_pos.size
        if dropped:
            notes.append(f"{dropped} rows dropped (na='drop'), treated as not sampled")
        zeroed = s.sample_pos.size - s.raked_pos.size
        if zeroed:
            notes.append(f"{zeroed} rows of levels without target have weight 0")
        return tuple(notes)


def margin_table(
    variables: dict,
    t: list[np.ndarray],
    n_rows: list[np.ndarray],
    sample: list[np.ndarray],
    raked: list[np.ndarray],
) -> pd.DataFrame:
    """``RakeResult.margins``: one row per (variable, level), shares of the target total.

    Columns ``variable``, ``level``, ``n`` (sample rows), ``sample`` (design-weighted share),
    ``target`` and ``raked`` (shares of the total T of ``t[0]``) and ``error = raked - target``;
    ``variables`` as parsed by :func:`raking.survey.codes._parse_targets`, ``raked`` the raked
    weights' level sums.
    """
    total = float(t[0].sum())
    frames = [
        pd.DataFrame(
            {
                "variable": [key] * tv.size,
                "level": levels,
                "n": rows,
                "sample": dsum / dsum.sum(),
                "target": tv / total,
                "raked": m / total,
            }
        )
        for (key, (_, levels, _)), tv, rows, dsum, m in zip(
            variables.items(), t, n_rows, sample, raked, strict=True
        )
    ]
    margins = pd.concat(frames, ignore_index=True)
    margins["error"] = margins["raked"] - margins["target"]
    return margins


def varies_within_levels(
    codes: Sequence[np.ndarray], n_levels: Sequence[int], low: np.ndarray, high: np.ndarray
) -> bool:
    """Whether the design weights spread by more than 1e-9 relative within some level.

    ``codes[v]`` is the level of each unit (row or cell) in variable ``v``; ``low`` and
    ``high`` the smallest and largest design weight of each unit (the weight itself for rows).
    """
    for c, size in zip(codes, n_levels, strict=True):
        lo = np.full(size, np.inf)
        hi = np.full(size, -np.inf)
        np.minimum.at(lo, c, low)
        np.maximum.at(hi, c, high)
        if np.any(hi - lo > 1e-9 * hi):
            return True
    return False
