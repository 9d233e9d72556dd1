"""raking: data balancing (raking, IPF, Sinkhorn scaling) as a statistical estimator.

The kernel (:func:`balance`, :func:`balance_result`, :func:`scaling_factors`,
:func:`apply_scaling`) runs on NumPy, CuPy, PyTorch and any array-API library; the statistics
layer (:mod:`raking.stats.estimators`, :mod:`raking.stats.marginals`, :mod:`raking.stats.theory`,
also reachable as ``raking.estimators``, ``raking.marginals``, ``raking.theory``) works in NumPy
float64. Heavy optional packages (numba, torch, cupy, pandas, dask, matplotlib) are imported
lazily, only by the functions that need them: :func:`raking.rake` (the pandas survey front end,
:mod:`raking.survey.frontend`) and :func:`raking.calibrate` (:mod:`raking.survey.calibration`)
are loaded on first access.
"""

from typing import Any

from raking.exceptions import ConvergenceWarning, EmptyCategoryError
from raking.kernel.ipf import apply_scaling, balance, balance_result, scaling_factors
from raking.results import BalanceResult, Estimate, ScalingResult
from raking.stats import estimators, marginals, theory
from raking.stats.estimators import balanced_estimate, empirical_estimate, estimate, ipw_estimate
from raking.stats.theory import asymptotic_variance, singular_values

__version__ = "0.1.0"

__all__ = [
    "BalanceResult",
    "ConvergenceWarning",
    "EmptyCategoryError",
    "Estimate",
    "ScalingResult",
    "__version__",
    "apply_scaling",
    "asymptotic_variance",
    "balance",
    "balance_result",
    "balanced_estimate",
    "empirical_estimate",
    "estimate",
    "estimators",
    "ipw_estimate",
    "marginals",
    "scaling_factors",
    "singular_values",
    "theory",
]


def __getattr__(name: str) -> Any:
    """Load the pandas survey front end when ``raking.rake`` or ``calibrate`` is first used."""
    if name == "rake":
        from raking.survey.frontend import rake

        return rake
    if name == "calibrate":
        from raking.survey.calibration import calibrate

        return calibrate
    raise AttributeError(f"module 'raking' has no attribute {name!r}")
