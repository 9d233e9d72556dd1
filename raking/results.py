"""Frozen result objects: numbers and outputs, never inputs.

The kernel's results (:class:`ScalingResult`, :class:`BalanceResult`) keep their arrays in the
caller's namespace and on the caller's device; they are converted to NumPy only by
:meth:`summary` and :meth:`to_dict`. The estimators' results (:class:`BatchEstimates`,
:class:`BalancedEstimates`, :class:`Estimate`) hold NumPy float64 values.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from raking._array_api import Array

__all__ = [
    "BalanceResult",
    "BalancedEstimates",
    "BatchEstimates",
    "Estimate",
    "RakingWeights",
    "ScalingResult",
]


def _convergence_line(steps: int, converged: bool, marginal_error: float, tol: float | None) -> str:
    if tol is None:
        return f"steps: {steps} (fixed count); final max |marginal - target| = {marginal_error:.3g}"
    state = "converged" if converged else "NOT converged"
    return (
        f"steps: {steps}, {state}: final max |marginal - target| / total = "
        f"{marginal_error:.3g} (tol {tol:.3g})"
    )


@dataclass(frozen=True, slots=True)
class ScalingResult:
    """Per-axis scaling factors of a balanced table (the Sinkhorn / IPF scaling form).

    The balanced table is ``table * f_1 ⊗ ... ⊗ f_d`` (``log_domain=False``) or
    ``log_table + g_1 ⊕ ... ⊕ g_d`` (``log_domain=True``, the ``g`` are log-potentials); use
    :func:`raking.kernel.ipf.apply_scaling` to form it.

    Attributes
    ----------
    factors : tuple of arrays
        One array per balanced axis, shape ``(*batch, n_i)``, in the table's namespace and the
        compute dtype (the table's dtype; float32 for a float16 / bfloat16 table), always
        relative to the *input* table. When the targets are unreachable the factors diverge;
        the kernel then absorbs them into a working table (see :func:`raking.kernel.ipf.balance`)
        and returns their cumulative products. Where those over- or underflow, so that no
        factors of the compute dtype give the balanced table, a table's factors are NaN (with
        a :class:`~raking.exceptions.ConvergenceWarning`, and
        :func:`~raking.kernel.ipf.apply_scaling` refuses them): use ``balance_result(...).table``.
    steps : int
        Single-marginal adjustments performed (the paper's k).
    converged : bool
        ``marginal_error <= tol`` (and finite), for a fixed step count as well as when
        iterating to ``tol``: whether the marginals are met.
    marginal_error : float
        Final max over axes, categories and batch of ``|marginal - target| / T``, with ``T``
        the table's target total (the share scale), always measured (in the compute dtype).
    tol : float
        The tolerance ``converged`` is judged against, on the same share scale: the ``tol``
        argument, or the compute dtype's rounding floor if that is larger
        (:func:`raking.kernel.ipf.attainable_tol`).
    log_domain : bool
        Whether ``factors`` are log-potentials.
    """

    factors: tuple[Array, ...]
    steps: int
    converged: bool
    marginal_error: float
    tol: float
    log_domain: bool

    def summary(self) -> str:
        """A short text report: steps, convergence and the factor shapes."""
        shapes = ", ".join(str(tuple(f.shape)) for f in self.factors)
        kind = "log-potentials" if self.log_domain else "scaling factors"
        return "\n".join(
            [
                "Balancing (scaling form)",
                _convergence_line(self.steps, self.converged, self.marginal_error, self.tol),
                f"{kind}: {shapes}",
            ]
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """The scalar diagnostics as a flat dict (for DataFrames and Dask)."""
        return {
            "steps": self.steps,
            "converged": self.converged,
            "marginal_error": self.marginal_error,
            "tol": self.tol,
        }


@dataclass(frozen=True, slots=True)
class BalanceResult:
    """A balanced table with its scaling factors and convergence diagnostics.

    Attributes
    ----------
    table : array
        The balanced table (log-table when ``log_domain``), same namespace, shape and (storage)
        dtype as the input: a float16 / bfloat16 table's result is rounded back to it.
    factors, steps, converged, marginal_error, tol, log_domain
        As in :class:`ScalingResult`. ``table`` is right even where ``factors`` are NaN.
    """

    table: Array
    factors: tuple[Array, ...]
    steps: int
    converged: bool
    marginal_error: float
    tol: float
    log_domain: bool

    def summary(self) -> str:
        """A short text report: table shape, steps and convergence."""
        return "\n".join(
            [
                f"Balanced table of shape {tuple(self.table.shape)}"
                + (" (log-weights)" if self.log_domain else ""),
                _convergence_line(self.steps, self.converged, self.marginal_error, self.tol),
            ]
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """The scalar diagnostics as a flat dict (for DataFrames and Dask)."""
        return {
            "steps": self.steps,
            "converged": self.converged,
            "marginal_error": self.marginal_error,
            "tol": self.tol,
        }


@dataclass(frozen=True, slots=True)
class BatchEstimates:
    """Estimates for a batch of count tables, with the missing-mass fallbacks flagged.

    Attributes
    ----------
    values : numpy.ndarray of float64, batch shape
        One estimate per table (0-d for a single table).
    fallback : numpy.ndarray of bool, batch shape
        ``True`` where a table had an empty category and got the empirical estimate instead.
    n_fallback : int
        ``fallback.sum()``.
    method : str
        The estimator, e.g. ``"balanced, k=4"`` or ``"IPWI (both marginals) [INF]"``.
    """

    values: np.ndarray
    fallback: np.ndarray
    n_fallback: int
    method: str

    def _fallback_line(self) -> str:
        if self.n_fallback == 0:
            return "fallbacks: none (every table has mass in every category it is divided by)"
        return (
            f"fallbacks: {self.n_fallback} of {self.fallback.size} tables had an empty category "
            "with a positive target (missing mass) and report the empirical mean P_n(h)"
        )

    def summary(self) -> str:
        """A short text report: method, batch shape and fallbacks."""
        return "\n".join(
            [
                f"{self.method}: {self.values.size} estimate(s), batch shape {self.values.shape}",
                self._fallback_line(),
            ]
        )

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True, slots=True)
class BalancedEstimates(BatchEstimates):
    r"""Balanced estimates :math:`\varphi_n^{(k)}` of a batch of tables, with diagnostics.

    Attributes
    ----------
    values, fallback, n_fallback, method
        As in :class:`BatchEstimates`.
    steps : int or None
        The requested k (single-marginal adjustments); ``None``: balanced to ``tol``.
    steps_taken : int
        Adjustments performed (``steps`` unless iterating to ``tol``; 0 if every table fell back).
    converged : bool
        Whether the balanced tables reached ``tol`` (fixed ``steps``: whether the result is
        finite). ``False`` when no table was balanced.
    marginal_error : float
        Final max ``|marginal - target|`` over the balanced tables, NaN when none was balanced.
    """

    steps: int | None
    steps_taken: int
    converged: bool
    marginal_error: float

    def summary(self) -> str:
        """A short text report: method, convergence and fallbacks."""
        if self.steps is None:
            conv = "converged" if self.converged else "NOT converged"
            line = f"balanced to tolerance in {self.steps_taken} steps, {conv}"
        else:
            line = f"steps: {self.steps} (fixed count)"
        return "\n".join(
            [
                BatchEstimates.summary(self),
                f"{line}; final max |marginal - target| = {self.marginal_error:.3g}",
            ]
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate of :math:`P(h)` with its standard error and diagnostics.

    Attributes
    ----------
    estimate : float
        The estimate.
    se : float
        Its standard error.
    se_method : str
        How ``se`` was computed, with the tag of its derivation.
    n : int
        Sample size.
    steps : int or None
        Single-marginal adjustments; ``None``: balanced to tolerance.
    converged : bool
        Convergence of the balancing (fixed ``steps``: finite result), and ``False`` as well
        when ``se`` is NaN because the plug-in table of the SE does not exist (see ``notes``).
    marginal_error : float
        Final max ``|marginal - target|`` of the balanced table (always measured).
    notes : tuple of str
        Assumptions and diagnostics, printed as numbered notes.
    """

    estimate: float
    se: float
    se_method: str
    n: int
    steps: int | None
    converged: bool
    marginal_error: float
    notes: tuple[str, ...] = ()

    @property
    def ci(self) -> tuple[float, float]:
        """The 95% normal confidence interval."""
        return self.confint(0.95)

    def confint(self, level: float = 0.95) -> tuple[float, float]:
        """Normal confidence interval ``estimate ± z_{(1+level)/2} · se``."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}; e.g. 0.95.")
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return (self.estimate - z * self.se, self.estimate + z * self.se)

    def summary(self) -> str:
        """Estimate, SE, CI, n, steps, SE method, convergence and numbered notes."""
        lo, hi = self.ci
        k = "to tolerance" if self.steps is None else f"{self.steps} (fixed count)"
        if self.steps is None:
            state = "converged" if self.converged else "NOT converged"
        else:
            state = f"{self.steps} steps done" if self.converged else "NOT run (fallback)"
            if not self.converged and np.isnan(self.se):
                state = f"{self.steps} steps done, but no plug-in table for the SE (see notes)"
        lines = [
            f"estimate: {self.estimate:.6g}   SE: {self.se:.4g}   95% CI: [{lo:.6g}, {hi:.6g}]",
            f"n: {self.n}   steps: {k}",
            f"SE method: {self.se_method}",
            f"balancing: {state}; final max |marginal - target| = {self.marginal_error:.3g}",
        ]
        lines += [f"  [{i}] {note}" for i, note in enumerate(self.notes, start=1)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"

    def to_dict(self) -> dict[str, float | int | str | bool | None]:
        """Flat dict of the numbers (notes joined by ``"; "``), for DataFrames and Dask."""
        lo, hi = self.ci
        return {
            "estimate": self.estimate,
            "se": self.se,
            "ci_low": lo,
            "ci_high": hi,
            "se_method": self.se_method,
            "n": self.n,
            "steps": self.steps,
            "converged": self.converged,
            "marginal_error": self.marginal_error,
            "notes": "; ".join(self.notes),
        }


@dataclass(frozen=True, slots=True)
class RakingWeights:
    """Unit weights raked to margins (:func:`raking.survey.weights.rake_codes`), with diagnostics.

    Attributes
    ----------
    weights : numpy.ndarray of float64, shape ``(n,)``
        The raked weights, one per row, summing to the targets' total.
    margins : tuple of numpy.ndarray
        The raked margin (weighted count per level) of each variable.
    steps : int
        Single-variable adjustments performed (the paper's k).
    sweeps : int
        Full sweeps over the variables begun (R's iterations): ``ceil(steps / p)``.
    converged : bool
        To tolerance: ``marginal_error <= tol``. Fixed ``steps``: the weights are finite.
    marginal_error : float
        Final max over variables and levels of ``|margin - target| / total`` (share scale),
        always measured.
    variable_errors : tuple of float
        The same, per variable.
    tol : float or None
        The tolerance iterated to; ``None`` for a fixed step count.
    stalled : bool
        Whether iteration stopped early because the error stopped decreasing (unreachable
        margins); then ``converged`` is ``False``.
    units : int
        Units actually raked: non-empty cells of the crossed codes, or rows.
    method : str
        ``"cells"`` or ``"rows"``, and the backend (``"numpy"`` or ``"numba"``).
    """

    weights: np.ndarray
    margins: tuple[np.ndarray, ...]
    steps: int
    sweeps: int
    converged: bool
    marginal_error: float
    variable_errors: tuple[float, ...]
    tol: float | None
    stalled: bool
    units: int
    method: str

    def summary(self) -> str:
        """A short text report: rows, units raked, steps and convergence."""
        line = _convergence_line(self.steps, self.converged, self.marginal_error, self.tol)
        if self.stalled:
            line += " -- stopped: the error stopped decreasing (margins unreachable together)"
        return "\n".join(
            [
                f"Raked weights for {self.weights.shape[0]} rows ({self.units} units, "
                f"{self.method}); {len(self.margins)} variables, {self.sweeps} sweeps",
                line,
            ]
        )

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, float | int | bool | str | None]:
        """The scalar diagnostics as a flat dict."""
        return {
            "steps": self.steps,
            "sweeps": self.sweeps,
            "converged": self.converged,
            "marginal_error": self.marginal_error,
            "tol": self.tol,
            "stalled": self.stalled,
            "units": self.units,
            "method": self.method,
        }
