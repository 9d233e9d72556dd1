"""Properties of the balancing kernel (``raking.kernel.ipf``), on every array library."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import minimize

from raking import (
    ConvergenceWarning,
    EmptyCategoryError,
    apply_scaling,
    balance,
    balance_result,
    scaling_factors,
)
from tests.conftest import assert_close, to_xp

# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------


def _probability(draw, n: int) -> np.ndarray:
    w = draw(hnp.arrays(np.float64, n, elements=st.floats(0.05, 5.0)))
    return w / w.sum()


@st.composite
def problems(draw, max_side: int = 6, batch: bool = False):
    """A positive 2-D (optionally batched) table and two target marginals with total 1."""
    m = draw(st.integers(1, max_side))
    l = draw(st.integers(1, max_side))
    shape = ((draw(st.integers(1, 3)),) if batch else ()) + (m, l)
    table = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.01, 10.0)))
    return table, [_probability(draw, m), _probability(draw, l)]


def _marginal(table: np.ndarray, axis: int) -> np.ndarray:
    """Marginal of balanced axis ``axis`` (0 = X, 1 = Y) of a (batched) 2-D table."""
    return table.sum(axis=-1) if axis == 0 else table.sum(axis=-2)


# ------------------------------------------------------------------------------------------------
# Properties (hypothesis, NumPy reference)
# ------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(problems(batch=True), st.integers(1, 9))
def test_each_step_matches_its_marginal(problem, steps):
    table, targets = problem
    out = balance(table, targets, steps=steps)
    axis = (steps - 1) % 2  # odd steps fix X, even steps fix Y
    np.testing.assert_allclose(
        _marginal(out, axis),
        np.broadcast_to(targets[axis], _marginal(out, axis).shape),
        rtol=1e-12,
        atol=1e-14,
    )
    assert out.shape == table.shape


@settings(max_examples=30, deadline=None)
@given(problems(batch=True))
def test_steps_zero_returns_the_input(problem):
    table, targets = problem
    before = table.copy()
    out = balance(table, targets, steps=0)
    np.testing.assert_array_equal(out, table)
    np.testing.assert_array_equal(table, before)  # never modified


@settings(max_examples=40, deadline=None)
@given(problems(), st.integers(1, 8), st.floats(1e-3, 1e3))
def test_invariant_to_scaling_the_table(problem, steps, scale):
    table, targets = problem
    np.testing.assert_allclose(
        balance(scale * table, targets, steps=steps),
        balance(table, targets, steps=steps),
        rtol=1e-11,
        atol=1e-14,
    )


@settings(max_examples=40, deadline=None)
@given(problems(), st.integers(0, 8), st.randoms(use_true_random=False))
def test_permutation_equivariance(problem, steps, rnd):
    table, (px, py) = problem
    rows = list(range(table.shape[0]))
    cols = list(range(table.shape[1]))
    rnd.shuffle(rows)
    rnd.shuffle(cols)
    permuted = balance(table[np.ix_(rows, cols)], [px[rows], py[cols]], steps=steps)
    np.testing.assert_allclose(
        permuted, balance(table, [px, py], steps=steps)[np.ix_(rows, cols)], rtol=1e-12, atol=1e-15
    )


@settings(max_examples=40, deadline=None)
@given(problems(batch=True))
def test_converges_to_the_sinkhorn_fixed_point(problem):
    """The limit matches both marginals and has the form e^{f(x)+g(y)} K (unique such table)."""
    table, targets = problem
    res = balance_result(table, targets, tol=1e-12, max_steps=100_000)
    assert res.converged and res.marginal_error <= 1e-12
    for axis in (0, 1):
        np.testing.assert_allclose(
            _marginal(res.table, axis),
            np.broadcast_to(targets[axis], _marginal(res.table, axis).shape),
            atol=1e-12,
        )
    # log(P_inf / K) is additively separable: its double-centred part vanishes.
    r = np.log(res.table / table)
    centred = (
        r - r.mean(-1, keepdims=True) - r.mean(-2, keepdims=True) + r.mean((-2, -1), keepdims=True)
    )
    np.testing.assert_allclose(centred, 0.0, atol=1e-9)


def _kl(q: np.ndarray, p: np.ndarray) -> float:
    return float(np.sum(q * np.log(q / p)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_each_step_is_the_kl_projection(seed, steps):
    """Step k is argmin KL(Q || P^(k-1)) over Q with the k-th marginal fixed (generic solver)."""
    rng = np.random.default_rng(seed)
    m, l = 2 + seed % 2, 3
    table = rng.dirichlet(np.ones(m * l)).reshape(m, l)
    targets = [rng.dirichlet(np.ones(m)), rng.dirichlet(np.ones(l))]
    previous = balance(table, targets, steps=steps - 1)
    previous = previous / previous.sum()
    axis = (steps - 1) % 2

    constraint = {"type": "eq", "fun": lambda q: _marginal(q.reshape(m, l), axis) - targets[axis]}
    solved = minimize(
        lambda q: _kl(q.reshape(m, l), previous),
        x0=np.full(m * l, 1.0 / (m * l)),
        jac=lambda q: np.log(q / previous.ravel()) + 1.0,
        bounds=[(1e-12, 1.0)] * (m * l),
        constraints=[constraint],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert solved.success
    ours = balance(table, targets, steps=steps)
    np.testing.assert_allclose(ours, solved.x.reshape(m, l), atol=1e-6)
    assert _kl(ours, previous) <= solved.fun + 1e-10


@settings(max_examples=30, deadline=None)
@given(problems(batch=True), st.integers(0, 7))
def test_batched_equals_per_table(problem, steps):
    table, targets = problem
    batched = balance(table, targets, steps=steps)
    for b in range(table.shape[0]):
        np.testing.assert_allclose(batched[b], balance(table[b], targets, steps=steps), rtol=1e-13)


@settings(max_examples=30, deadline=None)
@given(problems(batch=True), st.one_of(st.none(), st.integers(0, 7)))
def test_log_domain_equals_linear(problem, steps):
    table, targets = problem
    linear = balance(table, targets, steps=steps)
    logged = balance(np.log(table), targets, steps=steps, log_domain=True)
    np.testing.assert_allclose(np.exp(logged), linear, rtol=1e-9, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(problems(batch=True), st.one_of(st.none(), st.integers(0, 7)), st.booleans())
def test_scaling_form_equals_balance(problem, steps, log_domain):
    table, targets = problem
    given_table = np.log(table) if log_domain else table
    res = scaling_factors(given_table, targets, steps=steps, log_domain=log_domain)
    assert [f.shape for f in res.factors] == [table.shape[:-1], table.shape[:-2] + table.shape[-1:]]
    np.testing.assert_allclose(
        apply_scaling(given_table, res.factors, log_domain=log_domain),
        balance(given_table, targets, steps=steps, log_domain=log_domain),
        rtol=1e-13,
    )


def test_three_way_table_matches_all_margins():
    rng = np.random.default_rng(3)
    table = rng.random((4, 3, 5, 2)) + 0.05
    targets = [rng.dirichlet(np.ones(n)) for n in (3, 5, 2)]
    res = balance_result(table, targets)
    assert res.converged
    for axis, t in enumerate(targets):
        other = tuple(1 + b for b in range(3) if b != axis)
        np.testing.assert_allclose(
            res.table.sum(axis=other), np.broadcast_to(t, (4, t.size)), atol=1e-10
        )


def test_counts_targets_and_zero_target_category():
    table = np.array([[3, 1, 2], [0, 4, 1]])  # integer counts
    targets = [np.array([60.0, 40.0]), np.array([0.0, 50.0, 50.0])]  # population counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = balance(table, targets)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[:, 0], 0.0)
    np.testing.assert_allclose(out.sum(axis=1), targets[0], atol=1e-10)
    np.testing.assert_allclose(out.sum(axis=0), targets[1], atol=1e-10)


def test_batched_targets():
    rng = np.random.default_rng(0)
    table = rng.random((3, 4, 5)) + 0.1
    px = rng.dirichlet(np.ones(4), size=3)
    py = rng.dirichlet(np.ones(5), size=3)
    out = balance(table, [px, py])
    for b in range(3):
        np.testing.assert_allclose(out[b], balance(table[b], [px[b], py[b]]), atol=1e-12)


def test_tolerance_mode_reports_steps_and_error():
    rng = np.random.default_rng(1)
    table = rng.random((6, 7)) + 0.01
    targets = [np.full(6, 1 / 6), np.full(7, 1 / 7)]
    loose = balance_result(table, targets, tol=1e-4)
    tight = balance_result(table, targets, tol=1e-12)
    assert loose.converged and tight.converged
    assert loose.marginal_error <= 1e-4 and tight.marginal_error <= 1e-12
    assert 0 < loose.steps < tight.steps
    assert "converged" in tight.summary()
    fixed = balance_result(table, targets, steps=3)
    # A fixed step count is judged against tol too: three steps are far from it.
    assert fixed.steps == 3 and fixed.tol == 1e-10 and fixed.marginal_error > 1e-4
    assert not fixed.converged and "NOT converged" in fixed.summary()
    many = balance_result(table, targets, steps=200, tol=1e-12)
    assert many.converged and many.marginal_error <= 1e-12 and many.tol == 1e-12


def test_already_balanced_takes_no_step():
    table = np.full((3, 3), 1 / 9)
    res = balance_result(table, [np.full(3, 1 / 3), np.full(3, 1 / 3)])
    assert res.steps == 0 and res.converged


def test_infeasible_zero_pattern_warns_and_reports():
    table = np.eye(2)  # rows and columns are tied: p_x must equal p_y
    with pytest.warns(ConvergenceWarning, match=r"max_steps=50 .*tol"):
        res = balance_result(table, [np.array([0.5, 0.5]), np.array([0.3, 0.7])], max_steps=50)
    assert not res.converged
    assert res.steps == 50
    assert res.marginal_error > 0.1


# ------------------------------------------------------------------------------------------------
# Backends: the same numbers on NumPy, array-api-strict and PyTorch (CPU)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, 1, 2, 5, None])
@pytest.mark.parametrize("log_domain", [False, True])
def test_same_result_on_every_backend(xp, steps, log_domain):
    rng = np.random.default_rng(7)
    table = rng.random((3, 5, 4)) + 0.05
    targets = [rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(4))]
    given_table = np.log(table) if log_domain else table
    expected = balance(given_table, targets, steps=steps, log_domain=log_domain)
    actual = balance(
        to_xp(xp, given_table), [to_xp(xp, t) for t in targets], steps=steps, log_domain=log_domain
    )
    assert_close(actual, expected, xp=xp)


def test_torch_float32_stays_float32_and_is_differentiable():
    torch = pytest.importorskip("torch")
    logits = torch.randn(4, 4, dtype=torch.float32, requires_grad=True)
    uniform = torch.full((4,), 0.25)
    out = balance(logits, [uniform, uniform], steps=2, log_domain=True)
    assert out.dtype == torch.float32
    torch.diagonal(out).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_mixed_libraries_are_converted_or_rejected():
    torch = pytest.importorskip("torch")
    table = torch.rand(3, 3, dtype=torch.float64) + 0.1
    out = balance(table, [np.full(3, 1 / 3), [1 / 3] * 3], steps=2)  # NumPy and list targets
    assert isinstance(out, torch.Tensor)


# ------------------------------------------------------------------------------------------------
# Bad input: a clear error, and the input untouched
# ------------------------------------------------------------------------------------------------

TARGETS = [np.array([0.5, 0.5]), np.array([0.25, 0.75])]


@pytest.mark.parametrize(
    ("table", "targets", "kwargs", "error", "match"),
    [
        (
            np.array([[1.0, -1.0], [1.0, 1.0]]),
            TARGETS,
            {},
            ValueError,
            r"table must be non-negative.*\(0, 1\)",
        ),
        (
            np.array([[1.0, np.nan], [1.0, 1.0]]),
            TARGETS,
            {},
            ValueError,
            r"table must be finite.*\(0, 1\)",
        ),
        (np.array([[1.0, np.inf], [1.0, 1.0]]), TARGETS, {}, ValueError, r"table must be finite"),
        (np.ones((2, 3)), TARGETS, {}, ValueError, r"targets\[1\] has shape \(2,\).*3 categories"),
        (np.ones(2), TARGETS, {}, ValueError, r"table has 1 axes but 2 targets"),
        (
            np.ones((2, 2)),
            [np.array([1.5, -0.5]), TARGETS[1]],
            {},
            ValueError,
            r"targets\[0\] has negative",
        ),
        (
            np.ones((2, 2)),
            [np.array([0.5, np.nan]), TARGETS[1]],
            {},
            ValueError,
            r"targets\[0\] must be finite",
        ),
        (
            np.ones((2, 2)),
            [np.array([0.5, 0.5]), np.array([2.0, 3.0])],
            {},
            ValueError,
            r"targets\[1\] sums to 5.*same total",
        ),
        (np.ones((2, 2)), [np.zeros(2), np.zeros(2)], {}, ValueError, r"targets\[0\] sums to 0"),
        (np.ones((2, 2)), TARGETS, {"steps": -1}, ValueError, r"steps must be >= 0"),
        (
            np.ones((2, 2)),
            TARGETS,
            {"steps": 1.5},
            TypeError,
            r"steps must be a non-negative integer",
        ),
        (np.ones((2, 2)), TARGETS, {"tol": 0.0}, ValueError, r"tol must be a positive"),
        (np.ones((2, 2)), TARGETS, {"max_steps": 0}, ValueError, r"max_steps must be a positive"),
        (
            np.ones((2, 2)),
            np.array([0.5, 0.5]),
            {},
            TypeError,
            r"targets must be a non-empty sequence",
        ),
        ([[1.0, 1.0], [1.0, 1.0]], TARGETS, {}, TypeError, r"table must be an array"),
        (
            np.array([[0.0, np.inf], [1.0, 1.0]]),
            TARGETS,
            {"log_domain": True},
            ValueError,
            r"log-weights.*\(0, 1\)",
        ),
    ],
)
def test_bad_input_raises(table, targets, kwargs, error, match):
    before = np.array(table, copy=True) if isinstance(table, np.ndarray) else None
    with pytest.raises(error, match=match):
        balance(table, targets, **kwargs)
    if before is not None:
        np.testing.assert_array_equal(table, before)


def test_missing_mass_names_the_cells():
    table = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 1.0]])
    with pytest.raises(EmptyCategoryError, match=r"no mass in Y categories \[1\]") as info:
        balance(table, [np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5])], steps=2)
    assert info.value.axis == 1 and info.value.categories == (1,)
    assert isinstance(info.value, ValueError)


def test_missing_mass_in_a_batch_names_the_table():
    table = np.ones((3, 2, 2))
    table[2, 1, :] = 0.0
    with pytest.raises(EmptyCategoryError, match=r"X categories \[1\].*batch entry 2 \(1 tables"):
        balance(table, TARGETS)


def test_missing_mass_in_the_log_domain():
    table = np.array([[0.0, -np.inf], [0.0, -np.inf]])  # log of [[1, 0], [1, 0]]
    with pytest.raises(EmptyCategoryError, match=r"Y categories \[1\]"):
        balance(table, TARGETS, log_domain=True)


def test_empty_category_with_zero_target_is_fine():
    table = np.array([[1.0, 0.0], [1.0, 0.0]])
    out = balance(table, [np.array([0.5, 0.5]), np.array([1.0, 0.0])])
    np.testing.assert_allclose(out, [[0.5, 0.0], [0.5, 0.0]])


def test_float_steps_infinity_means_to_tolerance():
    rng = np.random.default_rng(0)
    table = rng.random((3, 3)) + 0.1
    t = [np.full(3, 1 / 3)] * 2
    assert balance_result(table, t, steps=math.inf).tol == 1e-10


# ------------------------------------------------------------------------------------------------
# Convergence-check period (check_every)
# ------------------------------------------------------------------------------------------------


def test_host_arrays_are_not_on_an_accelerator(xp):
    from raking._array_api import on_accelerator

    assert not on_accelerator(to_xp(xp, np.ones((2, 2))))


def test_check_every_default_is_one_sweep_on_the_host_and_ten_on_an_accelerator():
    from raking.validation import ACCELERATOR_CHECK_SWEEPS, check_check_every

    assert check_check_every(None, n_axes=3) == 3
    assert check_check_every(None, n_axes=3, accelerator=True) == 3 * ACCELERATOR_CHECK_SWEEPS
    assert check_check_every(7, n_axes=3, accelerator=True) == 7  # an explicit period wins
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="check_every must be a positive integer"):
            check_check_every(bad, n_axes=2)


def test_check_every_spaces_the_convergence_checks(xp):
    rng = np.random.default_rng(3)
    table = to_xp(xp, rng.uniform(0.1, 1.0, (30, 40)))
    targets = [to_xp(xp, np.full(30, 1 / 30)), to_xp(xp, np.full(40, 1 / 40))]
    every_sweep = balance_result(table, targets, tol=1e-12)
    spaced = balance_result(table, targets, tol=1e-12, check_every=10)
    assert every_sweep.converged and spaced.converged
    assert spaced.steps % 10 == 0 and every_sweep.steps % 2 == 0
    # The first check at or after the first converged sweep: no earlier, less than 10 later.
    assert every_sweep.steps <= spaced.steps < every_sweep.steps + 10
    assert spaced.marginal_error <= 1e-12
