"""``ipfn`` on the survey rows: ``ipfn.ipfn(df, aggregates, dimensions, weight_col="w")``.

ipfn's pandas mode fits a DataFrame whose rows carry a weight column to margins given as
Series (``aggregates``) over column lists (``dimensions``). Its rows need not be distinct cells,
so the survey rows themselves are its input, as a user with microdata would call it: one row per
unit with weight 1, one categorical column (string labels) per variable, and the target margins
as counts. The timed call returns the rows re-indexed by ipfn (it calls ``set_index`` on the
raked columns); the adapter restores the input order from a row-number column.

Per sweep and variable, ``ipfn_df`` groups the rows by the variable (``groupby(...).sum()``) and
then, for every level, builds a boolean mask over all rows and updates the weight column with
``.loc`` -- O(n x levels) work per sweep.

Convergence (``ipfn.iteration``): as in NumPy mode, after each sweep the max over margins and
levels of ``|margin / target - 1|`` must be at most ``convergence_rate``; ``rate_tolerance=0``.
"""

from __future__ import annotations

import numpy as np

PACKAGES = ("ipfn", "numpy", "pandas")
FRESH_STATE = True  # ipfn sets the index of the frame it is given (in place)


def prepare(problem):
    import pandas as pd

    df = pd.DataFrame(
        {
            name: pd.Categorical.from_codes(problem.codes[:, j], categories=problem.labels[j])
            for j, name in enumerate(problem.names)
        }
    )
    df["w"] = 1.0
    df["row"] = np.arange(problem.n)
    aggregates = [
        pd.Series(s * problem.n, index=pd.CategoricalIndex(lab, categories=lab, name=name))
        for name, lab, s in zip(problem.names, problem.labels, problem.shares, strict=True)
    ]
    return df, aggregates


def rake(state, problem):
    from ipfn.ipfn import ipfn

    df, aggregates = state
    fitted, converged, history = ipfn(
        df,
        aggregates,
        [[name] for name in problem.names],
        weight_col="w",
        convergence_rate=problem.tol,
        max_iteration=problem.max_iter,
        rate_tolerance=0.0,
        verbose=2,
    ).iteration()
    weights = np.empty(problem.n)
    weights[fitted["row"].to_numpy()] = fitted["w"].to_numpy(dtype=np.float64)
    note = "" if converged else "not converged (max_iteration)"
    return weights, len(history), note
