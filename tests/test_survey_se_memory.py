"""Memory tier of the survey SEs: ``RakeResult.mean``/``total`` on a variable with 10^4-10^5 levels.

The linearisation SE (:mod:`raking.survey.linearization`) must cost O(n + levels) memory. Before
issue 11 it formed the dense ``levels x levels`` Gram matrix of the raking indicators: 800 MB at
10^4 levels, a ``MemoryError`` (74.5 GiB) at 10^5. Here the peak traced allocation (``tracemalloc``
traces NumPy's buffers) of the estimates must stay within a budget linear in n and the levels.
"""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from raking.survey.frontend import rake

N = 200_000


def _budget(n: int, levels: int) -> int:
    """Bytes an estimate may allocate at its peak: 32 float64 n-vectors and 16 level-vectors.

    One estimate holds about a dozen float64 vectors over the rows at a time (values, weights,
    domain and influence values, residual, fitted values, weighted products, the ``intp`` casts
    of the codes that ``numpy.bincount`` makes, the design-variance temporaries) and a few over
    the levels (the conjugate-gradient vectors, level weights and scales). 32 and 16 leave room
    for pandas and allocator differences; at n = 2 x 10^5 the budget is 64 MB, a twelfth of the
    800 MB that the one dense Gram matrix of 10^4 levels takes.
    """
    return 8 * (32 * n + 16 * levels)


@functools.cache
def _sample(levels: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """n = 2 x 10^5 rows: ``big`` with every one of ``levels`` levels, small ``g`` and ``h``.

    The targets of ``big`` are its own design-weighted counts and those of ``g`` (or the cross
    ``g x h``) are 10% off the sample's, so raking converges in a few sweeps.
    """
    rng = np.random.default_rng(seed)
    big = np.concatenate([np.arange(levels), rng.integers(0, levels, N - levels)])
    data = pd.DataFrame(
        {
            "big": big,
            "g": rng.integers(0, 4, N),
            "h": rng.integers(0, 3, N),
            "y": rng.standard_normal(N) + big % 7,
            "w": rng.uniform(1.0, 3.0, N),
        }
    )
    data["big0"] = (data["big"] == 0).astype(np.float64)
    counts = data.groupby("big")["w"].sum()
    total = counts.sum()
    g = data.groupby("g")["w"].sum() * np.array([1.1, 0.9, 1.05, 0.95])
    cross = data.groupby(["g", "h"])["w"].sum() * np.tile([1.1, 0.9, 1.0], 4)
    targets = {
        "plain": {"big": counts, "g": g * (total / g.sum())},
        "crossed": {"big": counts, ("g", "h"): cross * (total / cross.sum())},
    }
    return data, targets


def _peak(run):
    """Peak traced bytes while ``run()`` runs, and its result."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = run()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


@pytest.mark.filterwarnings("ignore::raking.exceptions.SparseLevelWarning")
@pytest.mark.parametrize(
    ("levels", "margins", "steps"),
    [
        (10_000, "plain", None),
        (100_000, "plain", None),
        (100_000, "crossed", None),
        (100_000, "plain", 3),
    ],
    ids=["1e4-levels", "1e5-levels", "1e5-levels-crossed", "1e5-levels-k=3"],
)
def test_mean_and_total_se_fit_a_linear_memory_budget(levels, margins, steps):
    data, targets = _sample(levels)
    res = rake(data, targets[margins], weights="w", steps=steps)
    assert steps is not None or res.converged

    def estimates():
        return res.mean("y"), res.total("y"), res.total("big0"), res.mean("y", by="g")

    peak, (mean, total, fixed, by) = _peak(estimates)
    assert peak <= _budget(N, levels), f"peak {peak / 2**20:.1f} MiB"
    assert np.isfinite(mean.se) and mean.se > 0
    assert np.isfinite(total.se) and total.se > 0
    assert np.all(np.isfinite(by.se.to_numpy())) and np.all(by.se.to_numpy() > 0)
    if steps is None:
        # the total of a raking level's indicator is fixed by the raking: SE 0 up to rounding
        assert fixed.estimate == pytest.approx(targets[margins]["big"].iloc[0], abs=1e-9 * N)
        assert fixed.se <= 1e-8 * total.se
        assert "relative residual" in mean.se_method
