"""``weightipy``: ``weightipy.weight(df, scheme)`` with a ``weightipy.Rim`` scheme.

Input: a pandas DataFrame of categorical columns (string labels) and a Rim scheme whose targets
are percentages per level (``Rim.set_targets([{column: {label: percent}}, ...])``).

Convergence (``weightipy.internal.rim.Rake.start``): there is no tolerance. Before each sweep it
stops when the L1 change of the unit weights over the previous sweep, ``sum |w - w_old|``, did
not fall below ``(1 - convcrit)`` times the change over the sweep before (default
``convcrit=0.01``): it iterates until the change stops shrinking by 1% a sweep, in practice to
round-off. ``max_iterations`` caps the sweeps. It reports the loop counter at the stop, which
counts the check that stopped it: the sweeps done are one fewer (at the cap, the counter is
ambiguous and is reported as is).
"""

from __future__ import annotations

import numpy as np

PACKAGES = ("weightipy", "numpy", "pandas")


def prepare(problem):
    import pandas as pd
    import weightipy

    df = pd.DataFrame(
        {
            name: pd.Categorical.from_codes(problem.codes[:, j], categories=problem.labels[j])
            for j, name in enumerate(problem.names)
        }
    )
    scheme = weightipy.Rim("bench", max_iterations=problem.max_iter)
    scheme.set_targets(
        [
            {
                name: {
                    lab: 100.0 * float(s)
                    for lab, s in zip(problem.labels[j], problem.shares[j], strict=True)
                }
            }
            for j, name in enumerate(problem.names)
        ]
    )
    return df, scheme


def rake(state, problem):
    import weightipy

    df, scheme = state
    weights = weightipy.weight(df, scheme).to_numpy(dtype=np.float64)
    counter = scheme.groups[next(iter(scheme.groups))].get("iterations")
    if counter is None:
        return weights, None, ""
    if counter < problem.max_iter:
        return weights, int(counter) - 1, ""
    # At the cap the counter reads the same whether the last check stopped it or not.
    return weights, int(counter), "hit max_iterations"
