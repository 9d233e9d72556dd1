"""Monte Carlo check of the asymptotic variance: n * MSE of phi_n^(k) against sigma_k^2.

For each distribution, R = 20,000 multinomial samples of size n = 2,000 are drawn once and every
k is estimated with ONE batched ``balanced_estimate`` call. The Monte Carlo relative standard
error of an MSE is about sqrt(2 / R) = 1%, and the O(n^{-1/2}) higher-order terms are of the same
size here (theory.md §2.3 reports 1-2% agreement), so a 5% tolerance leaves a margin of several
standard errors while still catching a wrong step order, a wrong operator or a missing factor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from raking.stats.estimators import balanced_estimate, ipw_estimate
from raking.stats.marginals import marginals, sample_counts
from raking.stats.theory import asymptotic_variance, ipwi_variance, singular_values

N = 2_000
REPS = 20_000
RTOL = 0.05


def _distribution(shape, concentration, seed):
    """A seeded Dirichlet table with every cell >= ~0.01, and an N(0, 1) function h."""
    rng = np.random.default_rng(seed)
    m, l = shape
    P = rng.dirichlet(np.full(m * l, concentration)).reshape(m, l)
    P = np.maximum(P, 0.01)
    P /= P.sum()
    h = rng.standard_normal((m, l))
    return P, h


# Low Dirichlet concentrations give strong dependence (s_2 = 0.73 and 0.57), so sigma_k^2 falls
# by 73% (5x4) and 75% (3x6) from k = 0 to the limit, and sigma_IPWI is twice sigma_inf^2 (5x4).
@pytest.fixture(scope="module", params=[((5, 4), 0.5, 2024), ((3, 6), 1.0, 7)], ids=["5x4", "3x6"])
def replicates(request):
    shape, concentration, seed = request.param
    P, h = _distribution(shape, concentration, seed)
    counts = sample_counts(P, N, REPS, seed=seed + 1)
    return P, h, counts


def _n_mse(values, P, h):
    return N * float(np.mean((values - float((P * h).sum())) ** 2))


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 5, 6, None])
def test_n_mse_matches_sigma_k(replicates, steps):
    P, h, counts = replicates
    res = balanced_estimate(counts, h, list(marginals(P)), steps)
    assert res.n_fallback == 0
    assert res.values.shape == (REPS,)
    sigma2 = asymptotic_variance(P, h, math.inf if steps is None else steps)
    ratio = _n_mse(res.values, P, h) / sigma2
    print(f"{P.shape} k={steps}: sigma_k^2={sigma2:.4f}, n*MSE/sigma_k^2={ratio:.4f}")
    assert ratio == pytest.approx(1.0, abs=RTOL)


@pytest.mark.parametrize("self_normalized", [False, True])
def test_n_mse_matches_ipwi_variance(replicates, self_normalized):
    P, h, counts = replicates
    res = ipw_estimate(counts, h, list(marginals(P)), self_normalized=self_normalized)
    assert res.n_fallback == 0
    sigma2 = ipwi_variance(P, h)
    ratio = _n_mse(res.values, P, h) / sigma2
    print(f"{P.shape} IPWI (self-normalised={self_normalized}): ratio {ratio:.4f}")
    assert ratio == pytest.approx(1.0, abs=RTOL)


def test_distributions_are_informative(replicates):
    """The check has power: the sigma_k^2 differ by more than the tolerance across k."""
    P, h, _ = replicates
    sigmas = [asymptotic_variance(P, h, k) for k in (0, 1, 2, math.inf)]
    assert singular_values(P)[1] > 0.1  # X and Y are dependent
    assert sigmas[0] > (1 + 2 * RTOL) * sigmas[-1]
    assert ipwi_variance(P, h) != pytest.approx(sigmas[-1], rel=2 * RTOL)
