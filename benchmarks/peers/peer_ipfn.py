"""``ipfn``: ``ipfn.ipfn(original, aggregates, dimensions).iteration()`` on the cross-tabulation.

ipfn fits a contingency table (NumPy array) or a DataFrame with one row per cell to margins; it
has no row-level survey interface. The timed call therefore does what a user must: cross-tabulate
the sample into the full product table (``np.bincount`` of the flattened cell index), run ipfn in
NumPy mode with the target margins as counts, and give each row its cell's fitted count / sample
count. The note gives the time of the ipfn call alone.

Convergence (``ipfn.iteration``): after each sweep, max over margins and levels of
``|margin / target - 1|`` (relative margin error) must be at most ``convergence_rate``; it also
stops when that error changes by at most ``rate_tolerance`` between sweeps (set to 0 here).
``ipfn_np`` loops in Python over every slice of the table for every level of every variable.
"""

from __future__ import annotations

import time

import numpy as np

PACKAGES = ("ipfn", "numpy", "pandas")


def prepare(problem):
    return None


def rake(state, problem):
    from ipfn.ipfn import ipfn

    shape = tuple(len(lab) for lab in problem.labels)
    cell = np.ravel_multi_index(tuple(problem.codes.T.astype(np.intp)), shape)
    counts = np.bincount(cell, minlength=int(np.prod(shape))).astype(np.float64)
    table = counts.reshape(shape).copy()  # ipfn rescales the table it is given in place
    aggregates = [s * problem.n for s in problem.shares]
    dimensions = [[j] for j in range(len(shape))]
    start = time.perf_counter()
    fitted, converged, history = ipfn(
        table,
        aggregates,
        dimensions,
        convergence_rate=problem.tol,
        max_iteration=problem.max_iter,
        rate_tolerance=0.0,
        verbose=2,
    ).iteration()
    core = time.perf_counter() - start
    weights = fitted.ravel()[cell] / counts[cell]
    note = f"ipfn call {core:.3g} s"
    if not converged:
        note += "; not converged (max_iteration)"
    return weights, len(history), note
