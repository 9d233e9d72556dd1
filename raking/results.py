"""Frozen result objects of the kernel: numbers and outputs, never inputs.

Arrays stay in the caller's namespace and on the caller's device; they are converted to NumPy only
by :meth:`summary` and :meth:`to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass

from raking._array_api import Array

__all__ = ["BalanceResult", "ScalingResult"]


def _convergence_line(steps: int, converged: bool, marginal_error: float, tol: float | None) -> str:
    if tol is None:
        return f"steps: {steps} (fixed count); final max |marginal - target| = {marginal_error:.3g}"
    state = "converged" if converged else "NOT converged"
    return (
        f"steps: {steps}, {state}: final max |marginal - target| = {marginal_error:.3g} "
        f"(tol {tol:.3g})"
    )


@dataclass(frozen=True, slots=True)
class ScalingResult:
    """Per-axis scaling factors of a balanced table (the Sinkhorn / IPF scaling form).

    The balanced table is ``table * f_1 ⊗ ... ⊗ f_d`` (``log_domain=False``) or
    ``log_table + g_1 ⊕ ... ⊕ g_d`` (``log_domain=True``, the ``g`` are log-potentials); use
    :func:`raking.kernel.apply_scaling` to form it.

    Attributes
    ----------
    factors : tuple of arrays
        One array per balanced axis, shape ``(*batch, n_i)``, in the table's namespace and dtype.
    steps : int
        Single-marginal adjustments performed (the paper's k).
    converged : bool
        ``marginal_error <= tol`` (always ``True`` for a fixed step count whose result is finite).
    marginal_error : float
        Final max over axes, categories and batch of ``|marginal - target|``, always measured.
    tol : float or None
        The tolerance iterated to, ``None`` for a fixed step count.
    log_domain : bool
        Whether ``factors`` are log-potentials.
    """

    factors: tuple[Array, ...]
    steps: int
    converged: bool
    marginal_error: float
    tol: float | None
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
        The balanced table (log-table when ``log_domain``), same namespace and shape as the input.
    factors, steps, converged, marginal_error, tol, log_domain
        As in :class:`ScalingResult`.
    """

    table: Array
    factors: tuple[Array, ...]
    steps: int
    converged: bool
    marginal_error: float
    tol: float | None
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
