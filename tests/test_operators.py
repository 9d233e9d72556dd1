"""Tests for raking.stats.operators: conditional means, projections, singular system."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from raking.exceptions import EmptyCategoryError
from raking.stats.operators import (
    conditional_mean_operators,
    maximal_correlation,
    project_x,
    project_y,
    singular_system,
    singular_values,
)

FAST = settings(max_examples=40, deadline=None)


@st.composite
def table_and_function(draw, min_side=1, max_side=6):
    """A joint pmf with entries bounded away from 0 and a function on the same grid."""
    m = draw(st.integers(min_side, max_side))
    l = draw(st.integers(min_side, max_side))
    cells = hnp.arrays(np.float64, (m, l), elements=st.floats(0.05, 1.0))
    P = draw(cells)
    h = draw(hnp.arrays(np.float64, (m, l), elements=st.floats(-5.0, 5.0)))
    return P / P.sum(), h


def rank_one_table(px, py, s, alpha, beta):
    """P = P_X P_Y (1 + s alpha beta) with alpha, beta centred and unit-norm (theory.md §5)."""
    return np.outer(px, py) * (1.0 + s * np.outer(alpha, beta))


def unit_centred(v, p):
    v = v - p @ v
    return v / np.sqrt(p @ v**2)


# ---------------------------------------------------------------------------- operators


@FAST
@given(table_and_function())
def test_conditional_mean_operators_are_adjoint_and_stochastic(data):
    P, h = data
    mu_x, mu_y = conditional_mean_operators(P)
    px, py = P.sum(axis=1), P.sum(axis=0)
    f, g = h[:, 0], h[0, :]
    # <f, mu_X g>_{P_X} = E_P[f(X) g(Y)] = <mu_Y f, g>_{P_Y}
    cross = f @ P @ g
    np.testing.assert_allclose(px @ (f * (mu_x @ g)), cross, atol=1e-12)
    np.testing.assert_allclose(py @ ((mu_y @ f) * g), cross, atol=1e-12)
    np.testing.assert_allclose(mu_x.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(mu_y.sum(axis=1), 1.0, atol=1e-12)
    assert mu_x.shape == P.shape and mu_y.shape == P.T.shape


def test_conditional_mean_matches_loop_definition():
    P = np.array([[0.1, 0.2, 0.05], [0.3, 0.15, 0.2]])
    g = np.array([1.0, -2.0, 4.0])
    mu_x, _ = conditional_mean_operators(P)
    expected = [sum(P[x, y] * g[y] for y in range(3)) / P[x].sum() for x in range(2)]
    np.testing.assert_allclose(mu_x @ g, expected, rtol=1e-14)


@FAST
@given(table_and_function())
def test_projections_are_idempotent_self_adjoint_conditional_means(data):
    P, h = data
    g = np.cos(h) + 2.0
    for project in (project_x, project_y):
        ph = project(P, h)
        np.testing.assert_allclose(project(P, ph), ph, atol=1e-12)
        np.testing.assert_allclose(np.sum(P * ph * g), np.sum(P * h * project(P, g)), atol=1e-11)
    # Pi_X h is constant along y and preserves E[h 1{X = x}]
    ph = project_x(P, h)
    np.testing.assert_allclose(ph, ph[:, :1] * np.ones_like(ph), atol=0)
    np.testing.assert_allclose((P * ph).sum(axis=1), (P * h).sum(axis=1), atol=1e-12)
    ph = project_y(P, h)
    np.testing.assert_allclose((P * ph).sum(axis=0), (P * h).sum(axis=0), atol=1e-12)


def test_projection_onto_other_subspace_is_mu():
    rng = np.random.default_rng(3)
    P = rng.random((4, 3)) + 0.1
    P /= P.sum()
    g = rng.normal(size=3)
    mu_x, mu_y = conditional_mean_operators(P)
    np.testing.assert_allclose(project_x(P, np.tile(g, (4, 1)))[:, 0], mu_x @ g, rtol=1e-13)
    f = rng.normal(size=4)
    np.testing.assert_allclose(project_y(P, np.tile(f[:, None], (1, 3)))[0], mu_y @ f)


# ---------------------------------------------------------------------------- singular system


@FAST
@given(table_and_function())
def test_singular_system_relations(data):
    P, _ = data
    m, l = P.shape
    r = min(m, l)
    px, py = P.sum(axis=1), P.sum(axis=0)
    sys = singular_system(P)
    mu_x, mu_y = conditional_mean_operators(P)
    assert sys.s.shape == (r,) and sys.alpha.shape == (m, r) and sys.beta.shape == (l, r)
    assert sys.s[0] == 1.0
    assert np.all(np.diff(sys.s) <= 1e-15) and sys.s[-1] >= 0
    np.testing.assert_array_equal(sys.alpha[:, 0], 1.0)
    np.testing.assert_array_equal(sys.beta[:, 0], 1.0)
    full_a = np.column_stack([sys.alpha, sys.alpha_unpaired])
    full_b = np.column_stack([sys.beta, sys.beta_unpaired])
    np.testing.assert_allclose(full_a.T @ (px[:, None] * full_a), np.eye(m), atol=1e-10)
    np.testing.assert_allclose(full_b.T @ (py[:, None] * full_b), np.eye(l), atol=1e-10)
    np.testing.assert_allclose(mu_y @ sys.alpha, sys.beta * sys.s, atol=1e-10)
    np.testing.assert_allclose(mu_x @ sys.beta, sys.alpha * sys.s, atol=1e-10)
    np.testing.assert_allclose(sys.alpha.T @ P @ sys.beta, np.diag(sys.s), atol=1e-10)
    np.testing.assert_allclose(mu_y @ sys.alpha_unpaired, 0.0, atol=1e-10)
    np.testing.assert_allclose(mu_x @ sys.beta_unpaired, 0.0, atol=1e-10)


@FAST
@given(table_and_function(min_side=2))
def test_singular_values_match_eigenvalues_of_mu_x_mu_y(data):
    P, _ = data
    mu_x, mu_y = conditional_mean_operators(P)
    eig = np.sort(np.linalg.eigvals(mu_x @ mu_y).real)[::-1][: min(P.shape)]
    np.testing.assert_allclose(singular_values(P) ** 2, eig, atol=1e-10)


def test_two_by_two_maximal_correlation_is_phi_coefficient():
    P = np.array([[0.3, 0.1], [0.2, 0.4]])
    px, py = P.sum(axis=1), P.sum(axis=0)
    phi = abs(P[0, 0] * P[1, 1] - P[0, 1] * P[1, 0]) / np.sqrt(np.prod(px) * np.prod(py))
    assert maximal_correlation(P) == pytest.approx(phi, abs=1e-14)


@pytest.mark.parametrize("shape", [(5, 5), (4, 6), (6, 3)])
@pytest.mark.parametrize("s", [0.0, 0.3, 0.7])
def test_rank_one_dependence_has_s2_equal_to_s(shape, s):
    rng = np.random.default_rng(11)
    m, l = shape
    px, py = rng.dirichlet(np.full(m, 5.0)), rng.dirichlet(np.full(l, 5.0))
    alpha = unit_centred(rng.normal(size=m), px)
    beta = unit_centred(rng.normal(size=l), py)
    s = min(s, 0.95 / (np.abs(alpha).max() * np.abs(beta).max()))
    values = singular_values(rank_one_table(px, py, s, alpha, beta))
    assert maximal_correlation(rank_one_table(px, py, s, alpha, beta)) == pytest.approx(
        s, abs=1e-12
    )
    np.testing.assert_allclose(values[2:], 0.0, atol=1e-12)


def test_independent_table_has_zero_correlation_and_one_point_margin():
    P = np.outer([0.2, 0.5, 0.3], [0.6, 0.4])
    np.testing.assert_allclose(singular_values(P), [1.0, 0.0], atol=1e-14)
    assert maximal_correlation(np.array([[0.25, 0.75]])) == 0.0
    assert singular_values(np.array([[0.25], [0.75]])).tolist() == [1.0]


def test_reducible_table_keeps_alpha_one_constant():
    P = np.zeros((4, 5))
    P[:2, :2] = [[0.1, 0.2], [0.05, 0.15]]
    P[2:, 2:] = [[0.1, 0.05, 0.1], [0.05, 0.1, 0.1]]
    sys = singular_system(P)
    assert sys.s[1] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(sys.alpha[:, 0], 1.0)
    # the second pair is the block indicator contrast: alpha_2(X) = beta_2(Y) P-almost surely
    support = P > 0
    a2 = np.broadcast_to(sys.alpha[:, 1:2], P.shape)[support]
    b2 = np.broadcast_to(sys.beta[None, :, 1], P.shape)[support]
    np.testing.assert_allclose(a2, b2, atol=1e-10)


def test_singular_system_is_deterministic_and_read_only():
    rng = np.random.default_rng(5)
    P = rng.random((4, 3)) + 0.1
    P /= P.sum()
    a, b = singular_system(P), singular_system(P)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    cols = a.alpha[:, 1:] * np.sqrt(P.sum(axis=1))[:, None]
    assert np.all(cols[np.argmax(np.abs(cols), axis=0), np.arange(cols.shape[1])] > 0)
    with pytest.raises(ValueError, match="read-only"):
        a.s[0] = 2.0


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("P", "match"),
    [
        (np.array([0.5, 0.5]), "2-D joint pmf"),
        (np.zeros((0, 3)), "2-D joint pmf"),
        (np.array([[0.5, np.nan], [0.25, 0.25]]), "NaN or infinite"),
        (np.array([[0.6, -0.1], [0.25, 0.25]]), "negative entries"),
        (np.array([[0.5, 0.2], [0.25, 0.25]]), r"sums to 1\.2.*Divide P by its sum"),
    ],
)
def test_bad_tables_raise(P, match):
    with pytest.raises(ValueError, match=match):
        singular_values(P)


def test_empty_categories_are_named():
    P = np.array([[0.5, 0.0, 0.2], [0.0, 0.0, 0.0], [0.2, 0.0, 0.1]])
    P = P / P.sum()
    with pytest.raises(EmptyCategoryError, match=r"X categories \[1\].*Drop these rows") as info:
        conditional_mean_operators(P)
    assert info.value.axis == 0 and info.value.categories == (1,)
    P[1, 0] = 0.1
    P = P / P.sum()
    with pytest.raises(ValueError, match=r"Y categories \[1\].*Drop these columns"):
        project_x(P, np.ones_like(P))


@pytest.mark.parametrize(
    ("h", "match"),
    [(np.ones((3, 2)), r"shape \(2, 3\)"), (np.array([[1.0, np.inf, 0], [0, 0, 0]]), "NaN or inf")],
)
def test_bad_functions_raise(h, match):
    P = np.full((2, 3), 1 / 6)
    with pytest.raises(ValueError, match=match):
        project_y(P, h)
