"""``svy``: ``svy.Sample(data, svy.Design(wgt=...)).weighting.rake(controls=...)``.

Input: a polars DataFrame of string columns plus a unit weight column, wrapped in a ``Sample``
(built untimed), and ``controls={name: {label: target count}}``. The raking loop runs in svy's
Rust extension (``svy_rs``); the Python side first maps every row's label to a code with a Python
generator, one column at a time, and afterwards checks the margins.

Convergence: the Rust kernel stops when the weights change by at most ``tol`` over a sweep (its
``check_convergence``; the wheel ships no Rust source); svy then checks that the largest
relative margin error ``|total - target| / target`` is at most ``tol`` and otherwise raises
(``on_nonconvergence="error"``, the default, kept). svy reports no sweep count: after the timed
calls the adapter finds the smallest ``max_iter`` whose Rust result equals the full one
(bisection, not timed).
"""

from __future__ import annotations

import numpy as np

PACKAGES = ("svy", "svy-rs", "numpy", "polars")


def prepare(problem):
    import polars as pl
    import svy

    data = pl.DataFrame(
        {
            **{
                name: np.asarray(problem.labels[j])[problem.codes[:, j]]
                for j, name in enumerate(problem.names)
            },
            "w0": np.ones(problem.n),
        }
    )
    controls = {
        name: {
            lab: float(s) * problem.n
            for lab, s in zip(problem.labels[j], problem.shares[j], strict=True)
        }
        for j, name in enumerate(problem.names)
    }
    return svy.Sample(data, svy.Design(wgt="w0")), controls


def rake(state, problem):
    sample, controls = state
    out = sample.weighting.rake(controls=controls, tol=problem.tol, max_iter=problem.max_iter)
    return out.data.get_column("rk_wgt").to_numpy().astype(np.float64), None, ""


def count_sweeps(state, problem, weights):
    from svy_rs._internal import rake as rust_rake

    codes = [
        np.ascontiguousarray(problem.codes[:, j], dtype=np.int64) for j in range(len(problem.names))
    ]
    # svy sorts the levels of each column; our labels are already in sorted order.
    targets = [s * problem.n for s in problem.shares]
    w0 = np.ones((problem.n, 1))

    def run(k):
        return rust_rake(w0, codes, targets, None, None, problem.tol, k)[:, 0]

    full = run(problem.max_iter)
    if not np.array_equal(full, weights):
        return None
    lo, hi = 1, problem.max_iter
    while lo < hi:
        mid = (lo + hi) // 2
        if np.array_equal(run(mid), full):
            hi = mid
        else:
            lo = mid + 1
    return lo
