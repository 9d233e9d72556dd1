"""Sparse 2-D tables in the kernel: the same steps as the densified table, and the errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from raking import (
    EmptyCategoryError,
    apply_scaling,
    balance,
    balance_result,
    scaling_factors,
)
from raking.kernel.sparse import is_sparse

FORMATS = ["csr", "csc", "coo"]
KINDS = [sp.csr_matrix, sp.csr_array]


def _dense_table() -> np.ndarray:
    """A 6 x 5 table with structural zeros, an empty row (2) and an empty column (4)."""
    rng = np.random.default_rng(3)
    table = rng.uniform(0.1, 2.0, (6, 5))
    table[rng.random((6, 5)) < 0.4] = 0.0
    table[2, :] = 0.0
    table[:, 4] = 0.0
    table[0, 0] = table[5, 1] = 1.0  # every other row and column keeps some mass
    return table


def _targets() -> list[np.ndarray]:
    p_x = np.array([0.1, 0.2, 0.0, 0.3, 0.25, 0.15])  # the empty row has target 0
    p_y = np.array([0.3, 0.2, 0.25, 0.25, 0.0])  # so does the empty column
    return [p_x, p_y]


def _sparse(dense: np.ndarray, fmt: str, kind=sp.csr_matrix, explicit_zeros: bool = True):
    """``dense`` as a sparse table of ``fmt``, with two explicit zeros stored."""
    table = kind(dense)
    if explicit_zeros:  # store zeros at (1, 4) and (2, 0): the stored positions must not matter
        coo = sp.coo_matrix(table)
        row = np.concatenate([coo.row, [1, 2]])
        col = np.concatenate([coo.col, [4, 0]])
        data = np.concatenate([coo.data, [0.0, 0.0]])
        table = kind(sp.coo_matrix((data, (row, col)), shape=dense.shape))
    return table.asformat(fmt)


@pytest.mark.parametrize("kind", KINDS, ids=["matrix", "array"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 8])
def test_fixed_steps_equal_the_dense_kernel(fmt, kind, steps):
    dense = _dense_table()
    table = _sparse(dense, fmt, kind)
    nnz = table.nnz
    out = balance_result(table, _targets(), steps=steps)
    ref = balance_result(dense, _targets(), steps=steps)
    assert is_sparse(out.table)
    assert type(out.table) is type(table)
    assert out.table.format == fmt
    assert out.table.nnz == nnz  # same stored positions, explicit zeros included
    np.testing.assert_allclose(out.table.toarray(), ref.table, rtol=1e-14, atol=1e-16)
    for f, g in zip(out.factors, ref.factors, strict=True):
        assert isinstance(f, np.ndarray)
        np.testing.assert_allclose(f, g, rtol=1e-14)
    assert out.steps == ref.steps == steps
    assert out.marginal_error == pytest.approx(ref.marginal_error, rel=1e-10, abs=1e-15)
    np.testing.assert_array_equal(table.toarray(), dense)  # the input is untouched


@pytest.mark.parametrize("fmt", FORMATS)
def test_to_tolerance_equals_the_dense_kernel_and_meets_the_targets(fmt):
    dense = _dense_table()
    out = balance_result(_sparse(dense, fmt), _targets(), tol=1e-12)
    ref = balance_result(dense, _targets(), tol=1e-12)
    assert out.converged and out.steps == ref.steps
    balanced = out.table.toarray()
    np.testing.assert_allclose(balanced, ref.table, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(balanced.sum(axis=1), _targets()[0], atol=1e-12)
    np.testing.assert_allclose(balanced.sum(axis=0), _targets()[1], atol=1e-12)
    assert out.marginal_error <= 1e-12


@pytest.mark.parametrize("fmt", FORMATS)
def test_scaling_factors_and_apply_scaling(fmt):
    dense = _dense_table()
    table = _sparse(dense, fmt)
    res = scaling_factors(table, _targets(), steps=5)
    ref = scaling_factors(dense, _targets(), steps=5)
    for f, g in zip(res.factors, ref.factors, strict=True):
        np.testing.assert_allclose(f, g, rtol=1e-14)
    applied = apply_scaling(table, res.factors)
    assert applied.format == fmt
    np.testing.assert_allclose(applied.toarray(), apply_scaling(dense, ref.factors), rtol=1e-14)
    np.testing.assert_allclose(
        balance(table, _targets(), steps=5).toarray(), applied.toarray(), rtol=1e-14
    )


def test_the_first_step_fixes_rows_and_the_second_columns():
    dense = _dense_table()
    table = _sparse(dense, "csr")
    one = balance(table, _targets(), steps=1).toarray()
    two = balance(table, _targets(), steps=2).toarray()
    np.testing.assert_allclose(one.sum(axis=1), _targets()[0], atol=1e-15)
    np.testing.assert_allclose(two.sum(axis=0), _targets()[1], atol=1e-15)


def test_coo_duplicates_are_summed_like_the_dense_table():
    row, col = np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1])
    data = np.array([1.0, 2.0, 1.0, 0.5, 0.5])
    table = sp.coo_matrix((data, (row, col)), shape=(2, 2))
    targets = [np.array([0.5, 0.5]), np.array([0.6, 0.4])]
    out = balance(table, targets, steps=4)
    ref = balance(table.toarray(), targets, steps=4)
    np.testing.assert_allclose(out.toarray(), ref, rtol=1e-14)


def test_dtypes_follow_the_dense_rules():
    ints = sp.csr_matrix(np.array([[1, 0], [2, 3]], dtype=np.int64))
    targets = [np.array([0.5, 0.5]), np.array([0.5, 0.5])]
    assert balance(ints, targets, steps=2).dtype == np.float64
    assert ints.dtype == np.int64
    single = ints.astype(np.float32)
    out = balance_result(single, targets, steps=2)
    assert out.table.dtype == np.float32 and out.factors[0].dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(
    data=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 7), st.integers(1, 7)),
        elements=st.sampled_from([0.0, 0.0, 0.3, 1.0, 2.5]),
    ),
    steps=st.integers(0, 9),
    fmt=st.sampled_from(FORMATS),
)
def test_random_sparse_tables_equal_the_dense_kernel(data, steps, fmt):
    rows, cols = data.sum(axis=1), data.sum(axis=0)
    if rows.sum() == 0:
        return
    targets = [rows / rows.sum() * 0.5 + (rows > 0) / (rows > 0).sum() * 0.5, cols / cols.sum()]
    out = balance(sp.csr_matrix(data).asformat(fmt), targets, steps=steps)
    np.testing.assert_allclose(out.toarray(), balance(data, targets, steps=steps), rtol=1e-13)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_log_domain_is_refused():
    with pytest.raises(ValueError, match="log_domain=True is not supported for a sparse table"):
        balance(_sparse(_dense_table(), "csr"), _targets(), steps=1, log_domain=True)


@pytest.mark.parametrize("n_targets", [1, 3])
def test_sparse_tables_need_exactly_two_targets(n_targets):
    targets = [np.full(5, 0.2)] * n_targets
    with pytest.raises(
        ValueError, match=f"no batch axes and needs exactly 2 targets.*got {n_targets}"
    ):
        balance(_sparse(_dense_table(), "csr"), targets, steps=1)


def test_negative_and_non_finite_values_name_their_cells():
    dense = _dense_table()
    dense[3, 1] = -1.0
    with pytest.raises(ValueError, match=r"non-negative.*cells \[\(3, 1\)\]"):
        balance(sp.csc_matrix(dense), _targets(), steps=1)
    dense[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"finite.*cells \[\(3, 1\)\]"):
        balance(sp.coo_matrix(dense), _targets(), steps=1)


def test_missing_mass_names_the_categories():
    targets = _targets()
    targets[0] = np.array([0.1, 0.2, 0.1, 0.2, 0.25, 0.15])  # empty row 2 now has a target
    with pytest.raises(EmptyCategoryError, match=r"no mass in X categories \[2\]") as info:
        balance(_sparse(_dense_table(), "csr"), targets, steps=1)
    assert info.value.axis == 0 and info.value.categories == (2,)
    targets = _targets()
    targets[1] = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    with pytest.raises(EmptyCategoryError, match=r"no mass in Y categories \[4\]"):
        balance(_sparse(_dense_table(), "csc"), targets, steps=1)


def test_targets_must_match_the_shape():
    with pytest.raises(ValueError, match=r"targets\[1\] has shape \(4,\).*5 categories"):
        balance(_sparse(_dense_table(), "csr"), [_targets()[0], np.full(4, 0.25)], steps=1)


def test_other_formats_ask_for_a_conversion():
    with pytest.raises(TypeError, match=r"LIL format.*table.tocsr\(\)"):
        balance(sp.lil_matrix(_dense_table()), _targets(), steps=1)


def test_apply_scaling_checks_the_factors():
    table = _sparse(_dense_table(), "csr")
    with pytest.raises(ValueError, match=r"factors\[1\] has shape \(4,\)"):
        apply_scaling(table, [np.ones(6), np.ones(4)])
    with pytest.raises(ValueError, match="a sparse table takes 1-D factors"):
        apply_scaling(table, [np.ones((2, 6)), np.ones(5)])


def test_recognising_a_dense_table_loads_no_scipy():
    code = (
        "import sys, json, numpy as np, raking; from raking.kernel.sparse import is_sparse; "
        "assert not is_sparse(np.ones((2, 2))); "
        "raking.balance(np.ones((2, 2)), [np.ones(2) / 2] * 2, steps=1); "
        "print(json.dumps('scipy' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
