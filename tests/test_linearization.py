"""Raking residuals and design variances (raking.survey.linearization), against direct formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from raking.survey.linearization import RakingProjection, design_variance


def _design(seed, n=300, levels=(3, 4, 5)):
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, L, n) for L in levels])
    d = rng.uniform(0.5, 3.0, n)
    u = rng.standard_normal(n) + codes[0] - 0.5 * codes[1]
    return codes, list(levels), d, u


def _lstsq_residual(codes, levels, d, u):
    """Independent route: weighted least squares on intercept + all one-hot indicators."""
    x = np.hstack(
        [np.ones((u.size, 1))] + [np.eye(L)[c] for c, L in zip(codes, levels, strict=True)]
    )
    sw = np.sqrt(d)
    beta = np.linalg.lstsq(x * sw[:, None], u * sw, rcond=None)[0]
    return u - x @ beta


def test_converged_residual_equals_weighted_least_squares():
    codes, levels, d, u = _design(0)
    e = RakingProjection(codes, levels, d).residual(u)
    np.testing.assert_allclose(e, _lstsq_residual(codes, levels, d, u), atol=1e-10)
    # orthogonal (in the d-weighted inner product) to every indicator
    for c, L in zip(codes, levels, strict=True):
        np.testing.assert_allclose(np.bincount(c, weights=d * e, minlength=L), 0, atol=1e-9)


def test_residual_handles_empty_levels_and_collinear_variables():
    codes, levels, d, u = _design(1, levels=(3, 4))
    codes = np.vstack([codes, codes[0]])  # the same variable twice
    levels = [*levels, 5]  # ... declared with two extra, empty levels
    e = RakingProjection(codes, levels, d).residual(u)
    np.testing.assert_allclose(e, _lstsq_residual(codes[:2], levels[:2], d, u), atol=1e-10)


def test_k_step_residual_tends_to_the_converged_residual():
    codes, levels, d, u = _design(2)
    proj = RakingProjection(codes, levels, d)
    limit = proj.residual(u)
    gaps = [np.max(np.abs(proj.residual(u, k) - limit)) for k in (3, 6, 12, 24, 300)]
    assert gaps[0] > 1e-2  # a few steps are not the limit ...
    assert all(b < a for a, b in itertools.pairwise(gaps[:-1]))  # ... but approach it
    assert gaps[-1] < 1e-12


def test_k_step_residual_applies_the_last_step_first():
    codes, levels, d, u = _design(3, levels=(3, 4))
    proj = RakingProjection(codes, levels, d)

    def remove_level_means(e, c):
        means = np.bincount(c, weights=d * e) / np.bincount(c, weights=d)
        return e - means[c]

    def remove_mean(e):
        return e - np.dot(d, e) / d.sum()

    np.testing.assert_allclose(proj.residual(u, 0), remove_mean(u), atol=1e-12)
    np.testing.assert_allclose(proj.residual(u, 1), remove_level_means(u, codes[0]), atol=1e-12)
    # k = 2: T_1 T_2 u = (I - Pi_x)(I - Pi_y) u -- the y-projection acts first
    expected = remove_level_means(remove_level_means(u, codes[1]), codes[0])
    np.testing.assert_allclose(proj.residual(u, 2), remove_mean(expected), atol=1e-12)
    wrong_order = remove_level_means(remove_level_means(u, codes[0]), codes[1])
    assert np.max(np.abs(proj.residual(u, 2) - wrong_order)) > 1e-3


def test_design_variance_simple_random_sampling():
    z = np.random.default_rng(4).standard_normal(50)
    n = z.size
    expected = n / (n - 1) * np.sum((z - z.mean()) ** 2)
    assert design_variance(z) == pytest.approx(expected, rel=1e-13)
    assert design_variance(z, fraction=np.array([0.2])) == pytest.approx(0.8 * expected)


def test_design_variance_stratified_clusters_against_a_loop():
    rng = np.random.default_rng(5)
    n = 120
    strata = rng.integers(0, 3, n)
    cluster = strata * 10 + rng.integers(0, 4, n)  # nested: each PSU within one stratum
    _, cluster = np.unique(cluster, return_inverse=True)
    z = rng.standard_normal(n)
    fraction = np.array([0.1, 0.0, 0.5])
    expected = 0.0
    for h in range(3):
        psus = np.unique(cluster[strata == h])
        totals = np.array([z[cluster == c].sum() for c in psus])
        m = totals.size
        expected += (1 - fraction[h]) * m / (m - 1) * np.sum((totals - totals.mean()) ** 2)
    got = design_variance(z, strata=strata, cluster=cluster, fraction=fraction)
    assert got == pytest.approx(expected, rel=1e-12)
