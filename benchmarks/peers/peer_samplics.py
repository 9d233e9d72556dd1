"""``samplics`` (archived; its successor is ``svy``): ``SampleWeight().rake``.

Input: unit sample weights (ones), ``margins={name: integer code array}`` and
``control={name: {code: target count}}``. Integer codes are the fastest valid input: each
post-stratification step calls ``np.unique`` on the domain array (a sort), which on object
strings would be far slower.

Convergence (``SampleWeight.rake``): after each sweep, both the largest relative change of a
level's weighted total since the previous sweep (``tol``) and the largest relative miss against
its control total, ``|total - control| / control`` (``ctrl_tol``), must be at most their
tolerances; both are set to the benchmark's tolerance. samplics does not report the sweep count;
the adapter counts calls to ``poststratify`` (one per variable per sweep).
"""

from __future__ import annotations

import numpy as np

PACKAGES = ("samplics", "numpy", "pandas", "polars")


def prepare(problem):
    margins = {name: problem.codes[:, j].astype(np.int64) for j, name in enumerate(problem.names)}
    control = {
        name: {k: float(s) * problem.n for k, s in enumerate(problem.shares[j])}
        for j, name in enumerate(problem.names)
    }
    return margins, control


def rake(state, problem):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "samplics is archived"
        from samplics.weighting import SampleWeight

    margins, control = state
    sw = SampleWeight()
    calls = [0]
    poststratify = sw.poststratify

    def counted(*args, **kwargs):
        calls[0] += 1
        return poststratify(*args, **kwargs)

    sw.poststratify = counted
    weights = sw.rake(
        samp_weight=np.ones(problem.n),
        margins=margins,
        control=control,
        tol=problem.tol,
        ctrl_tol=problem.tol,
        max_iter=problem.max_iter,
    )
    sweeps = calls[0] // len(margins)
    note = "hit max_iter" if sweeps >= problem.max_iter else ""
    return np.asarray(weights, dtype=np.float64), sweeps, note
