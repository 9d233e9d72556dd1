"""Meta's ``balance``: ``balance.weighting_methods.rake.rake`` (needs NumPy < 2: own venv).

Input: the sample as a pandas DataFrame of string columns and unit design weights. balance takes
the population as a *target frame* with weights; we pass a small frame whose weighted margins
equal the target shares exactly (the comonotone coupling of the margins: at most sum(L_j) - d + 1
rows; built untimed). balance's own ``target_margins=`` argument realises the margins as at most
``target_margins_max_length`` (10,000) synthetic rows by Hare-Niemeyer rounding, which rounds
every share to a multiple of 1e-4, so it cannot reach a 1e-10 tolerance.

Inside ``rake`` balance casts the columns to ``str``, cross-tabulates the sample into the full
product table with ``groupby``, runs a vectorised IPF on that table (``_run_ipf_numpy``) and
merges the fitted cells back onto the rows: all of that is in the timed call.

Convergence (``_run_ipf_numpy``): after each sweep, max over variables and levels of
``|margin / target - 1|`` (relative margin error, all margins measured after the full sweep) must
be at most ``convergence_rate``; it also stops when that error changes by at most
``rate_tolerance`` between sweeps (set to 0 here so only the tolerance stops it). Default
transformations (quantising numbers, lumping rare levels) are switched off.
"""

from __future__ import annotations

import logging

import numpy as np

PACKAGES = ("balance", "numpy", "pandas", "scipy")


def comonotone_frame(shares: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (codes per variable) and weights whose weighted margins are ``shares`` exactly."""
    cuts = [np.cumsum(s)[:-1] for s in shares]
    points = np.unique(np.concatenate([[0.0, 1.0], *cuts]))
    lo, hi = points[:-1], points[1:]
    keep = hi - lo > 0
    mid = 0.5 * (lo + hi)[keep]
    rows = np.stack([np.searchsorted(c, mid, side="right") for c in cuts], axis=1)
    weights = (hi - lo)[keep]
    return rows, weights


def prepare(problem):
    import pandas as pd

    logging.getLogger("balance").setLevel(logging.WARNING)
    sample = pd.DataFrame(
        {
            name: np.asarray(problem.labels[j], dtype=object)[problem.codes[:, j]]
            for j, name in enumerate(problem.names)
        }
    )
    rows, w = comonotone_frame(problem.shares)
    target = pd.DataFrame(
        {
            name: np.asarray(problem.labels[j], dtype=object)[rows[:, j]]
            for j, name in enumerate(problem.names)
        }
    )
    return sample, pd.Series(np.ones(problem.n)), target, pd.Series(w * problem.n)


def rake(state, problem):
    from balance.weighting_methods.rake import rake as balance_rake

    sample, sample_w, target, target_w = state
    out = balance_rake(
        sample,
        sample_w,
        target,
        target_w,
        transformations=None,
        na_action="add_indicator",
        max_iteration=problem.max_iter,
        convergence_rate=problem.tol,
        rate_tolerance=0.0,
    )
    model = out["model"]
    note = "" if model["converged"] else "not converged (max_iteration)"
    return out["weight"].to_numpy(dtype=np.float64), len(model["iterations"]), note
