"""Adversarial inputs to the kernel entry points: the error type, and a message naming the argument.

``balance``, ``balance_result``, ``scaling_factors`` and ``apply_scaling`` share one door
(``raking.kernel.ipf._validate`` / ``check_table``); every bad input must be refused there with a
``ValueError`` / ``TypeError`` that names the argument (``table``, ``targets[i]``, ``tol``, ...),
and every odd-but-valid input (read-only, non-contiguous, integer, overflowing or subnormal
scale, one target) must give the right, finite table without touching the caller's arrays.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from raking import apply_scaling, balance, balance_result, scaling_factors
from raking.exceptions import ConvergenceWarning, EmptyCategoryError

T2 = [np.array([0.5, 0.5]), np.array([0.3, 0.7])]
K = np.array([[1.0, 2.0], [3.0, 4.0]])

ENTRY_POINTS = {
    "balance": balance,
    "balance_result": lambda table, targets, **kw: balance_result(table, targets, **kw).table,
    "scaling_factors": lambda table, targets, **kw: apply_scaling(
        table, scaling_factors(table, targets, **kw).factors
    ),
}


@pytest.fixture(params=list(ENTRY_POINTS))
def entry(request):
    return ENTRY_POINTS[request.param]


def _with(cell, value):
    table = K.copy()
    table[cell] = value
    return table


# ------------------------------------------------------------------------------------------------
# Bad tables
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, error, match",
    [
        (
            _with((0, 1), np.nan),
            ValueError,
            r"table must be finite, found NaN or inf at cells \[\(0, 1\)\]",
        ),
        (_with((1, 0), np.inf), ValueError, r"table must be finite, .* \[\(1, 0\)\]"),
        (_with((1, 0), -np.inf), ValueError, r"table must be finite, .* \[\(1, 0\)\]"),
        (_with((1, 1), -1e-300), ValueError, r"table must be non-negative .* \[\(1, 1\)\]"),
        (np.float64(1.0), ValueError, r"table has 0 axes but 2 targets"),
        (np.ones(2), ValueError, r"table has 1 axes but 2 targets"),
        (np.ones((0, 2)), ValueError, r"table has an empty axis \(shape \(0, 2\)\)"),
        (np.ones((3, 0, 2)), ValueError, r"table has an empty axis"),
        ([[1.0, 2.0], [3.0, 4.0]], TypeError, r"table must be an array"),
        (np.ones((2, 2), complex), TypeError, r"complex"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, r"real-valued"),
        (np.zeros((2, 2)), EmptyCategoryError, r"table has no mass in X categories \[0, 1\]"),
    ],
)
def test_bad_table(entry, table, error, match):
    targets = T2 if np.ndim(table) != 3 else [np.array([0.5, 0.5]), np.array([0.5, 0.5])]
    with pytest.raises(error, match=match):
        entry(table, targets)


def test_nan_in_a_batch_names_the_cell():
    table = np.ones((3, 2, 2))
    table[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"table must be finite.*\[\(2, 1, 0\)\]"):
        balance(table, T2)


def test_bad_log_table():
    log_table = np.log(K)
    log_table[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"table holds log-weights.*\[\(0, 0\)\]"):
        balance(log_table, T2, log_domain=True)


def test_bad_sparse_table():
    table = sp.csr_matrix(np.array([[1.0, np.nan], [0.0, 2.0]]))
    with pytest.raises(ValueError, match=r"table must be finite, found NaN or inf stored at"):
        balance(table, T2)
    with pytest.raises(TypeError, match=r"table is a sparse matrix in LIL format"):
        balance(sp.lil_matrix(K), T2)


# ------------------------------------------------------------------------------------------------
# Bad targets
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "targets, error, match",
    [
        ([np.array([np.nan, 1.0]), T2[1]], ValueError, r"targets\[0\] must be finite"),
        ([T2[0], np.array([np.inf, 1.0])], ValueError, r"targets\[1\] must be finite"),
        ([np.array([-0.5, 1.5]), T2[1]], ValueError, r"targets\[0\] has negative entries"),
        ([np.array([1.0]), T2[1]], ValueError, r"targets\[0\] has shape \(1,\)"),
        ([T2[0], np.ones((3, 2))], ValueError, r"targets\[1\] has shape \(3, 2\)"),
        ([np.zeros(2), np.zeros(2)], ValueError, r"targets\[0\] sums to 0"),
        ("ab", TypeError, r"targets must be a non-empty sequence"),
        ([], TypeError, r"targets must be a non-empty sequence"),
        ([np.array(["a", "b"]), T2[1]], TypeError, r"targets\[0\] could not be converted"),
        ([T2[0], np.array([0.3, 0.8])], ValueError, r"targets\[1\] sums to 1\.1 but"),
        ([np.array([1e308, 1e308])] * 2, ValueError, r"targets\[0\] sums to inf, outside"),
        ([np.array([1e-320, 1e-320])] * 2, ValueError, r"targets\[0\] sums to 2e-320, outside"),
        ([np.array([1e200, 1e200])] * 2, ValueError, r"pass shares instead"),
    ],
)
def test_bad_targets(entry, targets, error, match):
    with pytest.raises(error, match=match):
        entry(K, targets)


def test_float32_target_range():
    table = K.astype(np.float32)
    with pytest.raises(ValueError, match=r"targets\[0\] sums to .* in float32"):
        balance(table, [np.array([1e20, 1e20])] * 2)
    out = balance(table, [np.array([4e9, 4e9]), np.array([2e9, 6e9])])
    np.testing.assert_allclose(out.sum(axis=0), [2e9, 6e9], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Bad scalar arguments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tol": 0}, ValueError, r"tol must be a positive finite number, got 0"),
        ({"tol": -1e-3}, ValueError, r"tol must be"),
        ({"tol": math.nan}, ValueError, r"tol must be"),
        ({"tol": math.inf}, ValueError, r"tol must be"),
        ({"tol": True}, ValueError, r"tol must be"),
        ({"steps": -1}, ValueError, r"steps must be >= 0, got -1"),
        ({"steps": 1.5}, TypeError, r"steps must be a non-negative integer"),
        ({"steps": "3"}, TypeError, r"steps must be"),
        ({"steps": -math.inf}, TypeError, r"steps must be"),
        ({"max_steps": 0}, ValueError, r"max_steps must be a positive integer, got 0"),
        ({"max_steps": 2.0}, ValueError, r"max_steps must be"),
        ({"compute_dtype": "int8"}, ValueError, r"compute_dtype must be None"),
        ({"compute_dtype": "float16"}, ValueError, r"compute_dtype must be None"),
    ],
)
def test_bad_scalars(entry, kwargs, error, match):
    with pytest.raises(error, match=match):
        entry(K, T2, **kwargs)


def test_bad_check_every():
    with pytest.raises(ValueError, match=r"check_every must be a positive integer or None"):
        balance_result(K, T2, check_every=0)


# ------------------------------------------------------------------------------------------------
# apply_scaling
# ------------------------------------------------------------------------------------------------


def test_apply_scaling_refuses_wrong_or_nan_factors():
    with pytest.raises(ValueError, match=r"factors\[0\] has shape \(3,\)"):
        apply_scaling(K, [np.ones(3), np.ones(2)])
    with pytest.raises(ValueError, match=r"factors\[1\] holds NaN"):
        apply_scaling(K, [np.ones(2), np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match=r"factors\[0\] has shape .* sparse table takes 1-D"):
        apply_scaling(sp.csr_matrix(K), [np.ones((1, 2)), np.ones(2)])
    with pytest.raises(ValueError, match=r"table must be finite"):
        apply_scaling(_with((0, 0), np.nan), [np.ones(2), np.ones(2)])


# ------------------------------------------------------------------------------------------------
# Odd but valid inputs: the right table, the caller's arrays untouched
# ------------------------------------------------------------------------------------------------


def test_read_only_inputs_are_fine_and_untouched(entry):
    table = K.copy()
    targets = [t.copy() for t in T2]
    for a in (table, *targets):
        a.flags.writeable = False
    out = entry(table, targets, steps=5)
    np.testing.assert_allclose(out, balance(K.copy(), T2, steps=5), rtol=1e-15)
    np.testing.assert_array_equal(table, K)


def test_read_only_batch_through_the_compiled_loops():
    rng = np.random.default_rng(0)
    table = rng.uniform(0.1, 1.0, (16, 5, 6))
    targets = [rng.dirichlet(np.ones(5), size=16), rng.dirichlet(np.ones(6), size=16)]
    expected = balance(table.copy(), targets, steps=6)
    table.flags.writeable = False
    for t in targets:
        t.flags.writeable = False
    np.testing.assert_allclose(balance(table, targets, steps=6), expected, rtol=1e-14)


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a.T.copy().T,  # Fortran order
        lambda a: np.repeat(np.repeat(a, 2, 0), 3, 1)[::2, ::3],  # strided view
        lambda a: np.ascontiguousarray(a[:, ::-1])[:, ::-1],  # negative strides
    ],
)
def test_non_contiguous_tables(entry, view):
    table = view(K)
    assert not table.flags.c_contiguous or table.strides != K.strides
    np.testing.assert_allclose(entry(table, T2, steps=7), balance(K, T2, steps=7), rtol=1e-14)


def test_non_contiguous_targets_and_batch():
    rng = np.random.default_rng(1)
    table = rng.uniform(0.1, 1, (4, 6, 5)).transpose(0, 2, 1)  # (4, 5, 6), a view
    px = rng.dirichlet(np.ones(10))[::2] * 2
    px = px / px.sum()
    py = np.repeat(rng.dirichlet(np.ones(6)), 2)[::2]
    out = balance(table, [px, py], steps=9)
    ref = balance(np.ascontiguousarray(table), [px.copy(), py.copy()], steps=9)
    np.testing.assert_allclose(out, ref, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint16, bool])
def test_integer_and_boolean_tables(dtype):
    table = np.array([[1, 2], [0, 3]]).astype(dtype)
    out = balance(table, T2)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, balance(table.astype(float), T2), rtol=1e-15)


@pytest.mark.parametrize("scale", [1e308, 1e-310, 5e-324])
def test_overflowing_and_subnormal_tables(entry, scale):
    table = np.full((2, 2), scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = entry(table, T2)
    np.testing.assert_allclose(out, balance(np.ones((2, 2)), T2), rtol=1e-14)


def test_degenerate_shapes():
    np.testing.assert_allclose(balance(np.ones((1, 1)), [np.ones(1), np.ones(1)]), [[1.0]])
    np.testing.assert_allclose(balance(np.array([3.0]), [np.array([2.0])]), [2.0])
    out = balance(np.ones((1, 4)), [np.array([1.0]), np.full(4, 0.25)])
    np.testing.assert_allclose(out, np.full((1, 4), 0.25))
    batch = np.ones((2, 1, 3, 2))
    out = balance(batch, [np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.5])])
    assert out.shape == batch.shape


def test_one_target_is_a_single_rescaling_in_every_mode():
    table = np.array([[1.0, 3.0], [2.0, 2.0]])
    target = [np.array([0.25, 0.75])]
    for steps in (None, 1, 5):
        res = balance_result(table, target, steps)
        assert res.converged and res.marginal_error <= 1e-15
        np.testing.assert_allclose(res.table.sum(axis=-1), [1.0, 1.0])


def test_unreachable_targets_warn_with_the_reason_and_stay_finite():
    with pytest.warns(ConvergenceWarning, match=r"cannot be met given the table's zeros"):
        res = balance_result(np.eye(2), [np.array([1.0, 1.0]), np.array([0.5, 1.5])])
    assert np.all(np.isfinite(res.table)) and res.table.sum() == pytest.approx(2.0)
    assert not res.converged and res.marginal_error > res.tol
