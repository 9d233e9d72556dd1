"""Shared Monte Carlo helpers: replicates balanced on a backend, their statistics, row keys.

Every point function (:mod:`._dependence`, :mod:`._k_sweep`) balances all replicates of one step
count in a single :func:`raking.stats.estimators.balanced_estimate` call on the chosen backend and
reduces them to the MSE, its Monte Carlo standard error, the bias and the variance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raking._array_api import to_numpy
from raking.simulation.experiments._options import BACKENDS
from raking.stats.estimators import balanced_estimate


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(
            "backend='cupy' needs CuPy and a CUDA GPU, but CuPy cannot be imported. Install it "
            "with pip install -e '.[gpu]', or choose backend='numba' or 'numpy'."
        ) from exc
    return cupy


def _on_backend(counts: np.ndarray, backend: str) -> tuple[Any, dict[str, Any]]:
    """Counts for :func:`~raking.stats.estimators.balanced_estimate`, its kwargs, on ``backend``."""
    if backend == "numba":
        return counts, {}
    if backend == "numpy":
        return counts, {"compiled": False}
    if backend == "cupy":
        return _import_cupy().asarray(counts), {}
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")


def _balanced(
    counts: Any, h: np.ndarray, targets: list[np.ndarray], k: int, kwargs: dict[str, Any]
) -> tuple[np.ndarray, int]:
    """All replicates balanced with ``k`` steps in one call: (values as NumPy, fallbacks)."""
    res = balanced_estimate(counts, h, targets, k, missing="empirical", **kwargs)
    return np.asarray(to_numpy(res.values), dtype=np.float64), int(res.n_fallback)


def _mc_stats(values: np.ndarray, truth: float) -> dict[str, float]:
    """MSE, its Monte Carlo standard error, bias and variance of ``values`` around ``truth``."""
    err = values - truth
    sq = err * err
    return {
        "mse": float(sq.mean()),
        "mse_se": float(sq.std(ddof=1) / math.sqrt(values.size)),
        "bias": float(err.mean()),
        "variance": float(values.var(ddof=1)),
    }


def _base(point: dict) -> dict[str, Any]:
    """The grid point's scalar parameters, copied into every row."""
    return {key: value for key, value in point.items() if not isinstance(value, list | tuple)}
