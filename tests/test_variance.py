"""Tests for raking.stats.variance: sigma_k^2 by operator product and by closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import minimize

from raking.stats.operators import maximal_correlation, singular_system
from raking.stats.variance import (
    asymptotic_variance,
    efficient_variance,
    ipwi_variance,
    one_sided_ipw_variance,
    variance_closed_form,
    variance_decay_bound,
    variance_operator,
)

FAST = settings(max_examples=40, deadline=None)
STEPS = [*range(11), math.inf]


@st.composite
def table_and_function(draw, min_side=1, max_side=6):
    """A joint pmf with entries bounded away from 0 and a function on the same grid."""
    m = draw(st.integers(min_side, max_side))
    l = draw(st.integers(min_side, max_side))
    P = draw(hnp.arrays(np.float64, (m, l), elements=st.floats(0.05, 1.0)))
    h = draw(hnp.arrays(np.float64, (m, l), elements=st.floats(-5.0, 5.0)))
    return P / P.sum(), h


def random_table(m, l, seed, spike=0.0):
    rng = np.random.default_rng(seed)
    P = rng.random((m, l)) + 0.05
    P[0, 0] += spike
    return P / P.sum(), rng.normal(size=(m, l))


def brw_by_optimizer(P, h):
    """min_{f,g} E_P[(h - P(h) - f(X) - g(Y))^2] by a generic optimiser (independent route)."""
    m, l = P.shape
    hbar = h - np.sum(P * h)

    def loss(theta):
        r = hbar - theta[:m, None] - theta[None, m:]
        return np.sum(P * r * r)

    res = minimize(loss, np.zeros(m + l), method="BFGS", options={"gtol": 1e-12})
    return res.fun


# ---------------------------------------------------------------------------- two routes agree


@FAST
@given(table_and_function())
def test_operator_product_equals_closed_form(data):
    P, h = data
    for k in STEPS:
        op, cf = variance_operator(P, h, k), variance_closed_form(P, h, k)
        assert cf == pytest.approx(op, abs=1e-10, rel=1e-10), (P.shape, k)


@pytest.mark.parametrize("shape", [(5, 3), (3, 6), (1, 4), (4, 1), (4, 4)])
def test_operator_equals_closed_form_on_rectangular_tables(shape):
    P, h = random_table(*shape, seed=sum(shape), spike=2.0)
    for k in STEPS:
        assert variance_closed_form(P, h, k) == pytest.approx(variance_operator(P, h, k), abs=1e-12)


def test_reducible_table_closed_form_handles_unit_singular_value():
    P = np.zeros((4, 5))
    P[:2, :2] = [[0.1, 0.2], [0.05, 0.15]]
    P[2:, 2:] = [[0.1, 0.05, 0.1], [0.05, 0.1, 0.1]]
    h = np.arange(20.0).reshape(4, 5) ** 0.5
    assert maximal_correlation(P) == pytest.approx(1.0, abs=1e-12)
    for k in STEPS:
        cf = variance_closed_form(P, h, k)
        assert np.isfinite(cf)
        assert cf == pytest.approx(variance_operator(P, h, k), abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 5)])
def test_efficient_variance_is_brw_least_squares(shape):
    P, h = random_table(*shape, seed=7, spike=1.0)
    target = brw_by_optimizer(P, h)
    assert efficient_variance(P, h) == pytest.approx(target, abs=1e-9)
    assert variance_operator(P, h, math.inf) == pytest.approx(target, abs=1e-9)


def test_steps_none_means_limit_and_sigma0_is_variance():
    P, h = random_table(3, 4, seed=2)
    mean = np.sum(P * h)
    assert variance_closed_form(P, h, 0) == pytest.approx(np.sum(P * (h - mean) ** 2), rel=1e-14)
    assert variance_operator(P, h, None) == variance_operator(P, h, math.inf)
    assert variance_closed_form(P, h, None) == variance_closed_form(P, h, math.inf)
    # the limit is reached by many alternating steps (von Neumann)
    assert variance_operator(P, h, 400) == pytest.approx(efficient_variance(P, h), abs=1e-12)


# ---------------------------------------------------------------------------- properties


def test_function_of_x_is_recovered_by_one_x_step_but_not_two():
    P, h = random_table(4, 3, seed=9, spike=2.0)
    f = np.broadcast_to(h[:, :1], P.shape)
    for route in (variance_operator, variance_closed_form):
        assert route(P, f, 1) == pytest.approx(0.0, abs=1e-14)
        assert route(P, f, 2) > 1e-3  # non-monotone: sigma_2^2 > sigma_1^2 = 0
        assert route(P, f, math.inf) == pytest.approx(0.0, abs=1e-12)


def test_function_of_y_needs_a_y_step_first():
    P, h = random_table(4, 3, seed=9, spike=2.0)
    g = np.broadcast_to(h[:1, :], P.shape)
    assert variance_operator(P, g, 1) > 1e-3
    assert variance_closed_form(P, g, 2) == pytest.approx(0.0, abs=1e-14)
    assert one_sided_ipw_variance(P, g, "y") == pytest.approx(0.0, abs=1e-14)


@FAST
@given(table_and_function(min_side=2))
def test_geometric_decay_and_efficiency_bound(data):
    P, h = data
    s2 = maximal_correlation(P)
    v0, vinf = variance_closed_form(P, h, 0), variance_closed_form(P, h, math.inf)
    assert vinf <= v0 + 1e-12
    assert variance_operator(P, h, 1) <= v0 + 1e-12
    for k in range(1, 11):
        vk = variance_operator(P, h, k)
        assert vinf <= vk + 1e-12
        assert vk - vinf <= s2 ** (2 * (k - 1)) * (v0 - vinf) + 1e-12
        assert variance_decay_bound(P, h, k) == pytest.approx(
            vinf + s2 ** (2 * (k - 1)) * (v0 - vinf), abs=1e-12
        )
        assert vk <= variance_decay_bound(P, h, k) + 1e-12


def test_rank_one_dependence_gap_contracts_by_s_to_the_fourth_per_two_steps():
    # uniform marginals, alpha and beta +-1 contrasts: P = P_X P_Y (1 + s alpha beta), s_2 = s
    alpha, beta = np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.0, 1.0, -1.0, -1.0])
    s = 0.7
    P = (1 + s * np.outer(alpha, beta)) / 16
    h = np.random.default_rng(4).normal(size=(4, 4))
    vinf = variance_operator(P, h, math.inf)
    gaps = np.array([variance_operator(P, h, k) - vinf for k in range(2, 10)])
    # from k = 2 on only the s_2 block is left (s_j = 0 components survive k = 1 only)
    np.testing.assert_allclose(gaps[2:] / gaps[:-2], s**4, rtol=1e-8)
    assert gaps[0] / gaps[1] != pytest.approx(s**2, rel=1e-3)  # odd/even leads differ


def test_decay_bound_limit_and_bad_steps():
    P, h = random_table(3, 3, seed=1)
    assert variance_decay_bound(P, h, math.inf) == pytest.approx(efficient_variance(P, h))
    assert variance_decay_bound(P, h, 1) == pytest.approx(variance_closed_form(P, h, 0))
    with pytest.raises(ValueError, match="steps must be >= 1 for the decay bound"):
        variance_decay_bound(P, h, 0)


# ---------------------------------------------------------------------------- baselines


def test_ipwi_variance_is_efficient_under_independence():
    px, py = np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.6, 0.1, 0.2])
    P = np.outer(px, py)
    h = np.random.default_rng(0).normal(size=P.shape)
    assert ipwi_variance(P, h) == pytest.approx(efficient_variance(P, h), abs=1e-14)


@FAST
@given(table_and_function(min_side=2))
def test_ipwi_variance_closed_form_lies_between_efficient_and_var_h(data):
    P, h = data
    sys = singular_system(P)
    hbar = h - np.sum(P * h)
    a = sys.alpha[:, 1:].T @ (P * hbar).sum(axis=1)
    b = sys.beta[:, 1:].T @ (P * hbar).sum(axis=0)
    s = sys.s[1:]
    # each (alpha_j, beta_j) block of hbar is mapped to -s_j (d alpha_j + c beta_j): norm * s_j^2
    block = (a * a - 2 * s * a * b + b * b) / (1 - s * s)
    expected = efficient_variance(P, h) + np.sum(s * s * block)
    assert ipwi_variance(P, h) == pytest.approx(expected, abs=1e-10)
    assert efficient_variance(P, h) - 1e-12 <= ipwi_variance(P, h)
    assert ipwi_variance(P, h) <= variance_closed_form(P, h, 0) + 1e-12


def _multinomial_tables(P, n, reps, seed):
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, P.ravel(), size=reps).reshape(reps, *P.shape) / n


def test_ipwi_and_one_sided_variances_match_monte_carlo():
    P, h = random_table(3, 3, seed=21, spike=1.5)
    px, py = P.sum(axis=1), P.sum(axis=0)
    n, reps = 2000, 20_000
    Pn = _multinomial_tables(P, n, reps, seed=8)
    wx = px / Pn.sum(axis=2)
    wy = py / Pn.sum(axis=1)
    ipwi = np.sum(Pn * wx[:, :, None] * wy[:, None, :] * h, axis=(1, 2))
    one_x = np.sum(Pn * wx[:, :, None] * h, axis=(1, 2))
    # one-sided X weighting is exactly one X-step of balancing: rows rescaled to P_X
    one_step = np.sum((Pn / Pn.sum(axis=2, keepdims=True)) * px[None, :, None] * h, axis=(1, 2))
    np.testing.assert_allclose(one_x, one_step, rtol=1e-12)
    assert n * ipwi.var() == pytest.approx(ipwi_variance(P, h), rel=0.05)
    assert n * one_x.var() == pytest.approx(one_sided_ipw_variance(P, h, "x"), rel=0.05)
    assert one_sided_ipw_variance(P, h, "x") == pytest.approx(variance_operator(P, h, 1))
    assert abs(ipwi_variance(P, h) - variance_closed_form(P, h, 0)) > 0.1 * ipwi_variance(P, h)


# ---------------------------------------------------------------------------- dispatch, errors


def test_asymptotic_variance_dispatches_both_methods():
    P, h = random_table(4, 2, seed=3, spike=1.0)
    for k in (0, 3, math.inf):
        expected = variance_operator(P, h, k)
        assert asymptotic_variance(P, h, k, method="operator") == expected
        assert asymptotic_variance(P, h, k) == variance_closed_form(P, h, k)
    with pytest.raises(ValueError, match="method must be one of"):
        asymptotic_variance(P, h, 1, method="svd")


def test_bad_arguments_raise():
    P, h = random_table(2, 3, seed=0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        variance_operator(P, h, -1)
    with pytest.raises(TypeError, match="steps must be a non-negative integer"):
        variance_closed_form(P, h, 1.5)
    with pytest.raises(ValueError, match=r"side must be one of \['x', 'y'\], got 'X'"):
        one_sided_ipw_variance(P, h, "X")
    with pytest.raises(ValueError, match="sums to"):
        ipwi_variance(2 * P, h)
    with pytest.raises(ValueError, match="shape"):
        efficient_variance(P, h.T)
