"""raking: data balancing (raking, IPF, Sinkhorn scaling) as a statistical estimator.

The kernel (:func:`balance`, :func:`balance_result`, :func:`scaling_factors`,
:func:`apply_scaling`) runs on NumPy, CuPy, PyTorch and any array-API library; the statistics
layer (:mod:`raking.estimators`, :mod:`raking.marginals`, :mod:`raking.theory`) works in NumPy.
Heavy optional packages (numba, torch, cupy, pandas, dask, matplotlib) are imported lazily.
"""

from raking.exceptions import ConvergenceWarning, EmptyCategoryError
from raking.kernel import apply_scaling, balance, balance_result, scaling_factors
from raking.results import BalanceResult, ScalingResult

__version__ = "0.1.0"

__all__ = [
    "BalanceResult",
    "ConvergenceWarning",
    "EmptyCategoryError",
    "ScalingResult",
    "__version__",
    "apply_scaling",
    "balance",
    "balance_result",
    "scaling_factors",
]
