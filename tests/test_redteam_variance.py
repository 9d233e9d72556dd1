"""Red-team variant: a float32 / float16 pmf normalised as the error message says is accepted.

``P sums to 1.00000009, not 1 (tolerance 1e-08). Divide P by its sum (P / P.sum())``: done in
float32, that fix still left the sum 1e-7 from 1 in float64, so the error repeated (109 of 200
random 3 x 4 float32 tables).
"""

from __future__ import annotations

import numpy as np
import pytest

from raking.stats import variance


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("seed", range(20))
def test_a_narrow_pmf_divided_by_its_sum_is_a_pmf(dtype, seed):
    rng = np.random.default_rng(seed)
    P64 = rng.dirichlet(np.ones(12)).reshape(3, 4)
    P = P64.astype(dtype)
    P = P / P.sum()
    h = rng.normal(size=(3, 4))
    got = variance.asymptotic_variance(P, h, 2)
    exact = variance.asymptotic_variance(P.astype(np.float64) / P.astype(np.float64).sum(), h, 2)
    assert got == pytest.approx(exact, rel=1e-12)


def test_a_float64_pmf_keeps_the_tight_tolerance():
    P = np.full((2, 2), 0.25)
    P[0, 0] += 1e-7
    with pytest.raises(ValueError, match=r"P sums to 1\.0000001, not 1 \(tolerance 1e-08\)"):
        variance.asymptotic_variance(P, np.ones((2, 2)), 2)


def test_a_float32_pmf_far_from_one_is_still_an_error():
    P = np.full((2, 2), 0.3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"P sums to 1\.2.*tolerance 1\.9"):
        variance.asymptotic_variance(P, np.ones((2, 2)), 2)
