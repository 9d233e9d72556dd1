"""Tests for raking.stats.theory: bias under misspecified marginals, MSE, the re-exported façade."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

import raking.stats.operators
import raking.stats.theory
import raking.stats.variance
from raking.stats.theory import (
    asymptotic_mse,
    asymptotic_variance,
    misspecified_variance,
    mse_bound,
    population_bias,
)

P22 = np.array([[0.3, 0.1], [0.2, 0.4]])
H22 = np.array([[1.0, -2.0], [0.5, 3.0]])
TARGETS22 = (np.array([0.5, 0.5]), np.array([0.35, 0.65]))


def random_table(m, l, seed, spike=0.0):
    rng = np.random.default_rng(seed)
    P = rng.random((m, l)) + 0.1
    P[0, 0] += spike
    return P / P.sum(), rng.normal(size=(m, l))


def marginals(P):
    return P.sum(axis=1), P.sum(axis=0)


def test_facade_reexports_the_defining_functions():
    for name in raking.stats.theory.__all__:
        assert callable(getattr(raking.stats.theory, name))
    assert raking.stats.theory.singular_values is raking.stats.operators.singular_values
    assert raking.stats.theory.variance_closed_form is raking.stats.variance.variance_closed_form
    assert {"singular_system", "efficient_variance", "variance_decay_bound"} <= set(
        raking.stats.theory.__all__
    )


# ---------------------------------------------------------------------------- population bias


@pytest.mark.parametrize("steps", [0, 1, 2, 5, math.inf])
@pytest.mark.parametrize("estimator", ["balanced", "ipwi", "empirical"])
def test_bias_vanishes_with_true_marginals(steps, estimator):
    P, h = random_table(3, 4, seed=1, spike=1.0)
    assert population_bias(P, h, marginals(P), steps, estimator=estimator) == pytest.approx(
        0.0, abs=1e-10
    )


def test_two_by_two_bias_matches_hand_calculation():
    (a, b), (c, d) = P22
    tx, ty = TARGETS22
    truth = np.sum(P22 * H22)
    # one X-step: rows rescaled to tx
    q1 = np.array([[a, b], [c, d]]) * (tx / np.array([a + b, c + d]))[:, None]
    # then one Y-step: columns rescaled to ty
    q2 = q1 * (ty / q1.sum(axis=0))[None, :]
    assert population_bias(P22, H22, TARGETS22, 1) == pytest.approx(np.sum(q1 * H22) - truth)
    assert population_bias(P22, H22, TARGETS22, 2) == pytest.approx(np.sum(q2 * H22) - truth)
    assert population_bias(P22, H22, TARGETS22, 1) != pytest.approx(0.0, abs=1e-3)
    # limit: the 2 x 2 table with margins (tx, ty) and the odds ratio of P
    odds = a * d / (b * c)

    def log_odds_gap(t):
        return np.log(t * (1 - tx[0] - ty[0] + t) / ((tx[0] - t) * (ty[0] - t))) - np.log(odds)

    lo, hi = max(0.0, tx[0] + ty[0] - 1), min(tx[0], ty[0])
    t = brentq(log_odds_gap, lo + 1e-12, hi - 1e-12, xtol=1e-15)
    q_inf = np.array([[t, tx[0] - t], [ty[0] - t, 1 - tx[0] - ty[0] + t]])
    assert population_bias(P22, H22, TARGETS22, math.inf) == pytest.approx(
        np.sum(q_inf * H22) - truth, abs=1e-9
    )


def test_two_by_two_ipwi_and_empirical_bias():
    px, py = marginals(P22)
    tx, ty = TARGETS22
    w = np.outer(tx / px, ty / py)
    truth = np.sum(P22 * H22)
    assert population_bias(P22, H22, TARGETS22, 1, estimator="ipwi") == pytest.approx(
        np.sum(P22 * w * H22) - truth
    )
    normalized = np.sum(P22 * w * H22) / np.sum(P22 * w) - truth
    assert population_bias(
        P22, H22, TARGETS22, 1, estimator="ipwi", self_normalized=True
    ) == pytest.approx(normalized)
    assert abs(normalized - (np.sum(P22 * w * H22) - truth)) > 1e-3
    assert population_bias(P22, H22, TARGETS22, 1, estimator="empirical") == 0.0
    stacked = np.stack(TARGETS22)  # a (2, m) array is a pair too
    assert population_bias(P22, H22, stacked, 2) == population_bias(P22, H22, TARGETS22, 2)


# ---------------------------------------------------------------------------- variance and MSE


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 6, math.inf])
def test_misspecified_variance_reduces_to_sigma_k_with_true_marginals(steps):
    P, h = random_table(4, 3, seed=6, spike=2.0)
    assert misspecified_variance(P, h, marginals(P), steps) == pytest.approx(
        asymptotic_variance(P, h, steps), abs=1e-9
    )


def _ipf_batch(tables, targets, steps):
    """Independent batched IPF for the Monte Carlo check (odd = X-step)."""
    tx, ty = targets
    out = tables.copy()
    for i in range(1, steps + 1):
        if i % 2:
            out *= (tx / out.sum(axis=2))[:, :, None]
        else:
            out *= (ty / out.sum(axis=1))[:, None, :]
    return out


def test_misspecified_variance_and_bias_match_monte_carlo():
    P, h = random_table(3, 3, seed=1, spike=1.0)
    targets = (np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.3, 0.2]))
    n, reps = 2000, 20_000
    rng = np.random.default_rng(12)
    Pn = rng.multinomial(n, P.ravel(), size=reps).reshape(reps, 3, 3) / n
    for k in (1, 2, 3):
        est = np.sum(_ipf_batch(Pn, targets, k) * h, axis=(1, 2))
        theory_var = misspecified_variance(P, h, targets, k)
        assert n * est.var() == pytest.approx(theory_var, rel=0.05)
        # the naive sigma_k^2 of P is far off here, so the check discriminates
        assert abs(asymptotic_variance(P, h, k) - theory_var) > 0.15 * theory_var
        bias = population_bias(P, h, targets, k)
        assert est.mean() - np.sum(P * h) == pytest.approx(bias, abs=4 * est.std() / reps**0.5)
        assert asymptotic_mse(P, h, targets, k, n) == pytest.approx(
            np.mean((est - np.sum(P * h)) ** 2), rel=0.05
        )


def test_misspecified_variance_limit_matches_many_steps():
    P, h = random_table(3, 4, seed=4, spike=1.0)
    targets = (np.array([0.5, 0.25, 0.25]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert misspecified_variance(P, h, targets, 300) == pytest.approx(
        misspecified_variance(P, h, targets, math.inf), abs=1e-9
    )


def test_asymptotic_mse_is_bias_squared_plus_variance_over_n():
    P, h = random_table(3, 3, seed=2)
    targets = (np.array([0.3, 0.3, 0.4]), np.array([0.4, 0.3, 0.3]))
    bias = population_bias(P, h, targets, 4)
    expected = bias**2 + misspecified_variance(P, h, targets, 4) / 500
    assert asymptotic_mse(P, h, targets, 4, 500) == pytest.approx(expected, rel=1e-14)
    assert asymptotic_mse(P, h, marginals(P), 4, 500) == pytest.approx(
        asymptotic_variance(P, h, 4) / 500, rel=1e-8
    )


def test_mse_bound_shape_and_required_constant():
    assert mse_bound(0.5, 100, 2, 3.0) == pytest.approx(0.5 / 100 + 3.0 * 64 / 1000)
    assert mse_bound(0.5, 100, 0, 3.0) == pytest.approx(0.005)
    with pytest.raises(TypeError):
        mse_bound(0.5, 100, 2)  # C has no default: it is unconfirmed
    with pytest.raises(ValueError, match="steps must be a finite integer"):
        mse_bound(0.5, 100, math.inf, 1.0)
    with pytest.raises(ValueError, match="C must be a finite number >= 0"):
        mse_bound(0.5, 100, 2, -1.0)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        mse_bound(0.5, 0, 2, 1.0)
    with pytest.raises(ValueError, match="sigma2_k must be a finite number >= 0"):
        mse_bound(-0.1, 10, 2, 1.0)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (
            np.array([0.5, 0.5]),
            r"targets must be a pair \[p_x, p_y\].*got an array of shape \(2,\)",
        ),
        ((np.array([0.5, 0.5]),), r"targets must be a pair \[p_x, p_y\].*got 1 array\."),
        ((np.array([1.0]), np.array([0.5, 0.5])), r"targets\[0\] must have shape \(2,\)"),
        ((np.array([0.5, 0.5]), np.array([0.6, 0.6])), r"targets\[1\] sums to 1\.2"),
        (
            (np.array([1.5, -0.5]), np.array([0.5, 0.5])),
            r"targets\[0\] must be finite and non-negative, found negative entries at \[1\]",
        ),
    ],
)
def test_bad_targets_raise(targets, match):
    with pytest.raises(ValueError, match=match):
        population_bias(P22, H22, targets, 1)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="estimator must be one of"):
        population_bias(P22, H22, TARGETS22, 1, estimator="ipw")
    with pytest.raises(ValueError, match="self_normalized=True applies only"):
        population_bias(P22, H22, TARGETS22, 1, self_normalized=True)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        asymptotic_mse(P22, H22, TARGETS22, 1, 0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        misspecified_variance(P22, H22, TARGETS22, -2)
