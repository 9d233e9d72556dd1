"""The O(n + levels) raking residual (raking.survey.linearization) against dense least squares.

Issue 11, finding 4: the converged residual is now found by conjugate gradients on the scaled
normal equations, without the dense ``levels x levels`` Gram matrix. These tests hold it to two
independent dense computations -- ``numpy.linalg.lstsq`` on the one-hot design and the former
pseudo-inverse of the Jacobi-scaled Gram matrix -- on random, rank-deficient and medium-size
designs, check the stated stopping rule, and check that a solve that does not converge never
yields an SE.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raking.survey.data import api_population_margins, load_api
from raking.survey.frontend import rake
from raking.survey.linearization import RakingProjection, ResidualNotConverged

MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}


def _onehot(codes, levels, n):
    return np.hstack([np.ones((n, 1))] + [np.eye(L)[c] for c, L in zip(codes, levels, strict=True)])


def _lstsq_residual(codes, levels, d, u):
    """Minimum-norm weighted least squares on intercept + every one-hot indicator."""
    x = _onehot(codes, levels, u.size)
    sw = np.sqrt(d)
    beta = np.linalg.lstsq(x * sw[:, None], u * sw, rcond=None)[0]
    return u - x @ beta


def _gram_pinv_residual(codes, levels, d, u):
    """The former dense route: pseudo-inverse of the Jacobi-scaled Gram matrix X'DX."""
    x = np.hstack([np.eye(L)[c] for c, L in zip(codes, levels, strict=True)])
    gram = x.T @ (d[:, None] * x)
    keep = np.flatnonzero(np.diag(gram) > 0)
    s = 1.0 / np.sqrt(np.diag(gram)[keep])
    beta = s * (
        np.linalg.pinv(gram[np.ix_(keep, keep)] * np.outer(s, s)) @ (s * (x.T @ (d * u))[keep])
    )
    return u - x[:, keep] @ beta


def _k_step_dense(codes, levels, d, u, k):
    """T_0 T_1 ... T_k u with dense n x n projection matrices (last step's projection first)."""
    n = u.size
    e = u.copy()
    for s in range(k, 0, -1):
        c, size = codes[(s - 1) % len(codes)], levels[(s - 1) % len(codes)]
        x = np.eye(size)[c]
        proj = x @ np.linalg.pinv(x.T @ (d[:, None] * x)) @ (x.T * d)
        e = (np.eye(n) - proj) @ e
    return e - np.dot(d, e) / d.sum()


def _scale(d, u):
    return np.sqrt(np.sum(d * u * u) / d.sum()) + 1e-300


@st.composite
def designs(draw):
    """Small designs with empty declared levels, repeated variables and crossed margins."""
    n = draw(st.integers(2, 40))
    p = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    observed = [draw(st.integers(1, 5)) for _ in range(p)]
    codes = [rng.integers(0, L, n) for L in observed]
    levels = [L + draw(st.integers(0, 2)) for L in observed]  # extra levels without rows
    if draw(st.booleans()):  # the same variable again
        codes.append(codes[0].copy())
        levels.append(levels[0])
    if p >= 2 and draw(st.booleans()):  # the cross of the first two, overlapping both
        codes.append(codes[0] * levels[1] + codes[1])
        levels.append(levels[0] * levels[1])
    d = rng.uniform(0.1, 10.0, n)
    u = rng.standard_normal(n) * draw(st.sampled_from([1e-6, 1.0, 1e6]))
    return codes, levels, d, u


@settings(max_examples=150, deadline=None)
@given(designs())
def test_converged_residual_equals_dense_least_squares(design):
    codes, levels, d, u = design
    e = RakingProjection(codes, levels, d).residual(u)
    scale = _scale(d, u)
    np.testing.assert_allclose(e, _lstsq_residual(codes, levels, d, u), atol=1e-9 * scale)
    np.testing.assert_allclose(e, _gram_pinv_residual(codes, levels, d, u), atol=1e-9 * scale)


@settings(max_examples=60, deadline=None)
@given(designs(), st.integers(0, 7))
def test_k_step_residual_equals_dense_projections(design, k):
    codes, levels, d, u = design
    e = RakingProjection(codes, levels, d).residual(u, k)
    np.testing.assert_allclose(e, _k_step_dense(codes, levels, d, u, k), atol=1e-9 * _scale(d, u))


def _medium(seed, n=1000):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 80, n)
    b = np.where(rng.random(n) < 0.9, a // 4, rng.integers(0, 20, n))  # correlated with a
    g = rng.integers(0, 3, n)
    h = rng.integers(0, 4, n)
    d = rng.lognormal(0.0, 1.0, n)
    u = rng.standard_normal(n) + np.sin(a) + g
    return a, b, g, h, d, u


@pytest.mark.parametrize(
    "case",
    ["two correlated", "same variable twice", "cross with its main effects", "disconnected"],
)
def test_medium_rank_deficient_designs_equal_dense_least_squares(case):
    a, b, g, h, d, u = _medium(7)
    codes, levels = {
        "two correlated": ([a, b], [80, 20]),
        "same variable twice": ([a, b, a], [80, 20, 85]),  # + 5 empty levels
        "cross with its main effects": ([g * 4 + h, g, h, b], [12, 3, 4, 20]),
        # a's levels 0..39 meet only b's 0..9: two connected blocks, a 2-dim null space
        "disconnected": ([a, (a // 40) * 10 + (b % 10)], [80, 20]),
    }[case]
    e = RakingProjection(codes, levels, d).residual(u)
    expected = _lstsq_residual(codes, levels, d, u)
    np.testing.assert_allclose(e, expected, atol=1e-10 * _scale(d, u))
    # the SE-relevant sum of squares agrees to far better than 1e-10 relative
    assert np.sum(e**2) == pytest.approx(np.sum(expected**2), rel=1e-10)


def test_the_stopping_rule_holds_for_the_returned_residual():
    a, b, _, _, d, u = _medium(8)
    proj = RakingProjection([a, b], [80, 20], d, tol=1e-13)
    e = proj.residual(u)
    # ||S X'D e|| recomputed independently: sum over variables of ||Pi_v e||_D^2
    r2 = sum(np.sum(np.bincount(c, weights=d * e) ** 2 / np.bincount(c, weights=d)) for c in (a, b))
    assert np.sqrt(r2) <= 1e-13 * np.sqrt(np.sum(d * u * u))
    assert proj.effective_tol == 1e-13


def test_the_tolerance_floor_grows_with_the_rounding_of_long_sums():
    n = 1_000_000
    proj = RakingProjection([np.zeros(n, dtype=np.int8)], [1], np.ones(n))
    assert proj.effective_tol == pytest.approx(8 * np.finfo(float).eps * 1000)
    assert proj.effective_tol > proj.tol == 1e-12


def test_a_solve_that_does_not_converge_raises_and_names_the_fix():
    a, b, _, _, d, u = _medium(9)
    proj = RakingProjection([a, b], [80, 20], d, max_iter=2)
    with pytest.raises(ResidualNotConverged, match=r"2 conjugate-gradient.*raise max_iter") as info:
        proj.residual(u)
    assert info.value.iterations == 2
    assert info.value.relative_residual > info.value.tol == proj.effective_tol
    assert isinstance(info.value, ValueError)
    proj.residual(u, steps=5)  # finite k needs no solve


def test_nan_or_inf_influence_values_give_nan_not_a_residual():
    a, b, _, _, d, u = _medium(10, n=200)
    for bad in (np.nan, np.inf):
        v = u.copy()
        v[3] = bad
        assert np.isnan(RakingProjection([a, b], [80, 20], d).residual(v)).all()


@pytest.mark.parametrize("steps", [None, 4])
@pytest.mark.parametrize("size", [2.0**1000, 2.0**-1000])
def test_huge_and_tiny_influence_values_neither_overflow_nor_underflow(size, steps):
    a, b, _, _, d, u = _medium(11, n=500)
    proj = RakingProjection([a, b], [80, 20], d)
    e = proj.residual(u * size, steps)
    assert np.all(np.isfinite(e))
    expected = proj.residual(u, steps)  # the same up to the subnormals of tiny e / size
    np.testing.assert_allclose(e / size, expected, rtol=1e-15, atol=1e-15 * np.abs(expected).max())


def _without_convergence(res):
    """Give ``res`` a projection whose solve stops after one iteration."""
    s = res._design
    res.__dict__["_projection"] = RakingProjection(s.codes, s.n_levels, s.design, max_iter=1)
    return res


def test_an_estimate_whose_solve_did_not_converge_has_a_nan_se_and_says_why():
    res = _without_convergence(rake(load_api("apistrat"), TWO, weights="pw"))
    est = res.mean("api00")
    assert np.isfinite(est.estimate) and np.isnan(est.se)
    assert np.isnan(est.ci[0]) and np.isnan(est.ci[1])
    assert any(n.startswith("SE is NaN: the least-squares solve") for n in est.notes)
    assert "SE is NaN" in est.summary()
    table = res.mean("api00", by="awards")
    assert np.isnan(table.se).all() and "SE is NaN" in table.summary()
    # steps=k needs no solve: a valid SE
    fixed = _without_convergence(rake(load_api("apistrat"), TWO, weights="pw", steps=2))
    assert np.isfinite(fixed.mean("api00").se)


def test_a_table_summary_shows_a_note_of_one_label_with_that_label():
    res = rake(load_api("apisrs"), TWO, weights="pw")
    table = res.mean("api00", by="stype")
    bad = table.estimates[1]
    notes = (*bad.notes, "SE is NaN: made up for the test")
    broken = dataclasses.replace(bad, se=np.nan, notes=notes)
    table = type(table)(
        table.name, table.labels, (table.estimates[0], broken, table.estimates[2]), "stype"
    )
    lines = table.summary().splitlines()
    assert any(line.endswith("'H': SE is NaN: made up for the test") for line in lines)
    assert sum("one-stage design" in line for line in lines) == 1  # common notes once, unlabelled


def test_cells_of_huge_level_ranges_compact_before_int64_overflows():
    # 4 variables of 2^16 declared levels: mixed-radix cell keys reach 2^64, so the cell codes
    # are compacted on the way (by sorting: the key range is far above 4 n)
    rng = np.random.default_rng(12)
    n, declared = 2000, 2**16
    observed = [rng.choice(declared, 20, replace=False) for _ in range(4)]
    codes = [obs[rng.integers(0, 20, n)] for obs in observed]
    d = rng.uniform(0.5, 2.0, n)
    u = rng.standard_normal(n) + (codes[0] % 3)
    proj = RakingProjection(codes, [declared] * 4, d)
    compact = [np.unique(c, return_inverse=True)[1] for c in codes]
    expected = _lstsq_residual(compact, [20] * 4, d, u)
    np.testing.assert_allclose(proj.residual(u), expected, atol=1e-10 * _scale(d, u))
    e = u.copy()  # the k-step residual on the rows, step by step
    for v in (1, 0, 3, 2, 1, 0):  # steps 6..1: v(s) = (s - 1) mod 4, the last step first
        means = np.bincount(compact[v], weights=d * e) / np.bincount(compact[v], weights=d)
        e -= means[compact[v]]
    e -= np.dot(d, e) / d.sum()
    np.testing.assert_allclose(proj.residual(u, 6), e, atol=1e-12 * _scale(d, u))


def test_a_chain_of_levels_converges_within_the_default_iterations():
    # level j of a meets levels j and j + 1 of b: the slowest design for CG (about sum L_v
    # iterations, here more than the former fixed cap of 10,000); reference: a sparse direct
    # solve with one column of b dropped (the intercept), which makes the system full rank
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    rng = np.random.default_rng(13)
    levels = 5000
    a = np.repeat(np.arange(levels), 4)  # two rows in each of the cells (j, j) and (j, j + 1)
    b = a + np.tile([0, 1, 0, 1], levels)
    n = a.size
    d = rng.uniform(1.0, 3.0, n)
    u = rng.standard_normal(n) + np.sin(a / 50)
    e = RakingProjection([a, b], [levels, levels + 1], d).residual(u)
    rows = np.arange(n)
    x = sp.hstack(
        [
            sp.csr_matrix((np.ones(n), (rows, a)), shape=(n, levels)),
            sp.csr_matrix((np.ones(n), (rows, b)), shape=(n, levels + 1))[:, 1:],
        ]
    ).tocsr()
    beta = spsolve((x.T @ sp.diags(d) @ x).tocsc(), x.T @ (d * u))
    expected = u - x @ beta
    np.testing.assert_allclose(e, expected, atol=1e-8 * _scale(d, u))
    assert np.sum(e**2) == pytest.approx(np.sum(expected**2), rel=1e-9)
