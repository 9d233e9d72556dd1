"""Unreachable targets, extreme scales and what ``converged`` means (issue 11: 5, 7, 8, 9, 11, 13).

The oracle is an independent *table-form* IPF: it materialises :math:`P^{(k)}` and rescales it at
every step, so it never holds a factor. On unreachable targets its tables stay bounded
(they oscillate), and the kernel, which keeps factors, must give the same tables for every step
count, never inf / NaN, never lost mass, never ``converged=True`` above ``tol``.
"""

from __future__ import annotations

import math
import warnings

import array_api_strict
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import raking.kernel.compiled
from raking import apply_scaling, balance, balance_result, scaling_factors
from raking._array_api import get_xp, to_numpy
from raking.exceptions import ConvergenceWarning

torch = pytest.importorskip("torch")

EYE_TARGETS = [np.array([1.0, 1.0]), np.array([0.5, 1.5])]
TRIANGLE = np.array([[1.0, 1.0], [0.0, 1.0]])
TRIANGLE_TARGETS = [np.array([0.5, 0.5]), np.array([0.9, 0.1])]
STEP_COUNTS = [1, 2, 3, 100, 2047, 2048, 2049, 2050, 2051, 5000]


# ------------------------------------------------------------------------------------------------
# The oracle
# ------------------------------------------------------------------------------------------------


def table_ipf(table, targets, steps):
    """Table-form IPF in float64: ``P <- P * t_a / P_a`` on axis ``(k - 1) mod d``, k times."""
    P = np.array(table, dtype=np.float64)
    d = len(targets)
    first = P.ndim - d
    for k in range(steps):
        a = k % d
        axes = tuple(first + b for b in range(d) if b != a)
        s = P.sum(axis=axes, keepdims=True)
        t = np.asarray(targets[a], dtype=np.float64)  # (n,) or (*batch, n)
        t = np.expand_dims(t, tuple(range(t.ndim, t.ndim + d - 1)))
        t = np.moveaxis(t, t.ndim - d, t.ndim - d + a)
        P = P * np.where(s > 0, t / np.where(s > 0, s, 1.0), 1.0)
    return P


def share_error(table, targets):
    """Max over axes and categories of ``|marginal - target| / total``, per the oracle."""
    P = np.asarray(table, dtype=np.float64)
    d = len(targets)
    first = P.ndim - d
    total = np.asarray(targets[0], dtype=np.float64).sum(axis=-1)
    worst = 0.0
    for a in range(d):
        axes = tuple(first + b for b in range(d) if b != a)
        gap = np.abs(P.sum(axis=axes) - np.asarray(targets[a], dtype=np.float64))
        worst = max(worst, float(np.max(gap / np.reshape(total, (*np.shape(total), 1)))))
    return worst


def run(table, targets, steps=None, **kwargs):
    """``balance_result`` with its ConvergenceWarnings recorded (and RuntimeWarnings as errors)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)
        res = balance_result(table, targets, steps, **kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    return res, messages


def assert_like_table_ipf(res, table, targets, steps, *, atol=1e-12):
    out = np.asarray(res.table, dtype=np.float64)
    ref = table_ipf(table, targets, steps)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=atol)
    # The mass of the axis stepped last is its target's: nothing lost.
    total = np.asarray(targets[0], dtype=np.float64).sum(axis=-1)
    d = len(targets)
    np.testing.assert_allclose(out.sum(axis=tuple(range(out.ndim - d, out.ndim))), total)
    assert res.converged == (res.marginal_error <= res.tol)
    assert res.marginal_error == pytest.approx(share_error(ref, targets), abs=1e-12)


def assert_factors_honest(res, table):
    """The factors either give the balanced table or are NaN and refused by apply_scaling."""
    if any(bool(np.any(np.isnan(np.asarray(f)))) for f in res.factors):
        with pytest.raises(ValueError, match=r"factors\[0\] holds NaN"):
            apply_scaling(table, res.factors)
    else:
        np.testing.assert_allclose(
            np.asarray(apply_scaling(table, res.factors)), np.asarray(res.table), atol=1e-12
        )


# ------------------------------------------------------------------------------------------------
# Finding 13: unreachable targets, every step count
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize(
    "table, targets",
    [(np.eye(2), EYE_TARGETS), (TRIANGLE, TRIANGLE_TARGETS)],
    ids=["block-diagonal", "triangular"],
)
def test_unreachable_targets_give_table_form_ipf_at_every_step_count(table, targets, steps):
    res, messages = run(table, targets, steps)
    assert_like_table_ipf(res, table, targets, steps)
    assert not res.converged
    assert res.steps == steps
    assert_factors_honest(res, table)
    if steps >= 2047:  # the factors left the safe range: the warning says why
        assert any("cannot be met given the table's zeros" in m for m in messages)
        assert not any("max_steps" in m for m in messages)


@pytest.mark.parametrize("steps", [2049, 5000, 20001])
def test_block_factors_stay_representable(steps):
    """Blocks whose targets disagree: the factors are re-gauged per block and stay usable."""
    table = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    targets = [np.array([0.3, 0.3, 0.4]), np.array([0.5, 0.3, 0.2])]
    res, _ = run(table, targets, steps)
    assert_like_table_ipf(res, table, targets, steps)
    assert all(np.all(np.isfinite(f)) for f in res.factors)
    assert all(np.abs(np.log2(f)).max() < 64 for f in res.factors)
    np.testing.assert_allclose(apply_scaling(table, res.factors), res.table, atol=1e-14)


def test_triangle_factors_are_nan_and_refused():
    """Inside one block the factors' ratios diverge: no float64 factors give the table."""
    res, messages = run(TRIANGLE, TRIANGLE_TARGETS, 5000)
    assert all(np.all(np.isnan(f)) for f in res.factors)
    assert any("returned as NaN" in m for m in messages)
    with pytest.raises(ValueError, match=r"factors\[0\] holds NaN.*balance_result"):
        apply_scaling(TRIANGLE, res.factors)
    np.testing.assert_allclose(res.table, [[0.9, 0.0], [0.0, 0.1]], atol=1e-15)


def test_the_reproducers_of_the_issue():
    res, _ = run(np.eye(2), EYE_TARGETS, 2049)
    np.testing.assert_allclose(res.table, [[1.0, 0.0], [0.0, 1.0]], atol=1e-15)
    res, _ = run(np.eye(2), EYE_TARGETS, 2051)
    np.testing.assert_allclose(res.table, [[1.0, 0.0], [0.0, 1.0]], atol=1e-15)
    assert not res.converged and res.marginal_error == pytest.approx(0.25)  # |1 - .5| / 2


@pytest.mark.parametrize("max_steps", [2047, 2049, 2051, 3001, 5000])
def test_to_tolerance_with_a_cap_in_the_divergence_window(max_steps):
    for table, targets in [(np.eye(2), EYE_TARGETS), (TRIANGLE, TRIANGLE_TARGETS)]:
        res, messages = run(table, targets, max_steps=max_steps)
        assert res.steps == max_steps
        assert_like_table_ipf(res, table, targets, max_steps)
        assert not res.converged
        assert len(messages) == 1 and "cannot be met given the table's zeros" in messages[0]
        assert f"after {max_steps} adjustments" in messages[0]


def test_three_way_block_table():
    table = np.zeros((2, 2, 2))
    table[0, 0, 0] = table[1, 1, 1] = 1.0
    targets = [np.array([0.5, 0.5]), np.array([0.2, 0.8]), np.array([0.6, 0.4])]
    for steps in (3, 300, 3001):
        res, _ = run(table, targets, steps)
        assert_like_table_ipf(res, table, targets, steps)


def sparse_counts_with_an_isolated_cell():
    rng = np.random.default_rng(4)
    dense = rng.poisson(0.8, size=(30, 40)).astype(float)
    dense[0, :] = 0.0
    dense[:, 0] = 0.0
    dense[0, 0] = 7.0  # row 0 and column 0 meet only here: a block of one cell
    row = rng.dirichlet(np.ones(30))
    col = rng.dirichlet(np.ones(40))
    col[0] = row[0] * 3  # the block's targets disagree
    col /= col.sum()
    return dense, [row, col]


@pytest.mark.parametrize("steps", [2049, 2051, 4999, 5000, 5001])
def test_sparse_count_table_with_an_isolated_cell(steps):
    dense, targets = sparse_counts_with_an_isolated_cell()
    for fmt in ("csr", "csc", "coo"):
        table = sp.csr_matrix(dense).asformat(fmt)
        res, _ = run(table, targets, steps)
        assert sp.issparse(res.table) and res.table.format == fmt
        out = res.table.toarray()
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, table_ipf(dense, targets, steps), atol=1e-12)
        assert out.sum() == pytest.approx(1.0, rel=1e-12)  # no mass lost
        assert not res.converged
        dense_res, _ = run(dense, targets, steps)
        np.testing.assert_allclose(out, dense_res.table, atol=1e-13)


def test_sparse_to_tolerance_in_the_window():
    dense, targets = sparse_counts_with_an_isolated_cell()
    res, messages = run(sp.csr_matrix(dense), targets, max_steps=5001)
    assert np.all(np.isfinite(res.table.toarray()))
    np.testing.assert_allclose(res.table.toarray(), table_ipf(dense, targets, 5001), atol=1e-12)
    assert "cannot be met" in messages[0]


def batch_with_unreachable_tables():
    rng = np.random.default_rng(5)
    table = rng.uniform(0.1, 1.0, size=(6, 4, 5))
    table[1] = 0.0
    table[1, :2, :2] = rng.uniform(0.5, 1.0, (2, 2))  # two blocks, targets disagree
    table[1, 2:, 2:] = rng.uniform(0.5, 1.0, (2, 3))
    table[4, 0, 1:] = 0.0  # row 0 only in column 0, column 0 fed by row 0 only
    table[4, 1:, 0] = 0.0
    px = rng.dirichlet(np.ones(4), size=6)
    py = rng.dirichlet(np.ones(5), size=6)
    return table, [px, py]


@pytest.mark.parametrize("steps", [7, 2049, 2051, 5000])
@pytest.mark.parametrize("compiled", [None, True])
def test_batched_numba_path_with_unreachable_tables(steps, compiled, monkeypatch):
    pytest.importorskip("numba")
    table, targets = batch_with_unreachable_tables()
    calls = []
    real = raking.kernel.compiled.numba_ipf
    monkeypatch.setattr(
        raking.kernel.compiled, "numba_ipf", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    if compiled:  # the loops wherever they apply (the Monte Carlo numba backend)
        from raking.kernel.ipf import run_steps

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            state = run_steps(
                table,
                targets,
                steps=steps,
                tol=1e-10,
                max_steps=1,
                check_every=2,
                log_domain=False,
                xp=get_xp(table),
                compiled=True,
            )
        out = state.base * state.factors[0][..., :, None] * state.factors[1][..., None, :]
        np.testing.assert_allclose(out, table_ipf(table, targets, steps), atol=1e-12)
        assert state.result.converged == (state.result.marginal_error <= state.result.tol)
        assert calls
        return
    res, _ = run(table, targets, steps)
    assert calls  # the compiled loops ran, and handed the diverging tables back
    assert_like_table_ipf(res, table, targets, steps)
    for b in range(6):  # each table as if balanced alone
        alone, _ = run(table[b], [targets[0][b], targets[1][b]], steps)
        np.testing.assert_allclose(res.table[b], alone.table, atol=1e-13)
        if not np.any(np.isnan(res.factors[0][b])):
            np.testing.assert_allclose(
                apply_scaling(table[b], [res.factors[0][b], res.factors[1][b]]),
                res.table[b],
                atol=1e-12,
            )


@pytest.mark.parametrize("namespace", ["torch", "array_api_strict"])
@pytest.mark.parametrize("steps", [2049, 2051])
def test_other_array_libraries(namespace, steps):
    if namespace == "torch":
        table, targets = torch.eye(2, dtype=torch.float64), [torch.tensor(t) for t in EYE_TARGETS]
    else:
        table = array_api_strict.asarray(np.eye(2))
        targets = [array_api_strict.asarray(t) for t in EYE_TARGETS]
    res, _ = run(table, targets, steps)
    out = to_numpy(res.table)
    np.testing.assert_allclose(out, table_ipf(np.eye(2), EYE_TARGETS, steps), atol=1e-15)
    assert not res.converged


def test_float32_unreachable_targets():
    table = TRIANGLE.astype(np.float32)
    targets = [t.astype(np.float32) for t in TRIANGLE_TARGETS]
    for steps in (300, 301, 5000):
        res, _ = run(table, targets, steps)
        assert np.all(np.isfinite(res.table))
        np.testing.assert_allclose(
            res.table, table_ipf(TRIANGLE, TRIANGLE_TARGETS, steps), atol=1e-6
        )


def test_float32_block_targets_far_apart_overflow_within_one_sweep():
    """A ratio of 1e30 per sweep overflows float32 factors inside one check period."""
    table = np.eye(2, dtype=np.float32)
    targets = [np.array([1.0, 1e-30], np.float32), np.array([1e-30, 1.0], np.float32)]
    for steps in (2, 3, 4, 9, 50):
        res, _ = run(table, targets, steps)
        assert np.all(np.isfinite(res.table))
        np.testing.assert_allclose(res.table, table_ipf(table, targets, steps), rtol=1e-5, atol=0)


def test_log_domain_is_unaffected():
    log_table = np.log(np.where(TRIANGLE > 0, TRIANGLE, 1.0))
    log_table[TRIANGLE == 0] = -np.inf
    for steps in (2049, 5000):
        res, _ = run(log_table, TRIANGLE_TARGETS, steps, log_domain=True)
        np.testing.assert_allclose(
            np.exp(res.table), table_ipf(TRIANGLE, TRIANGLE_TARGETS, steps), atol=1e-12
        )


# ------------------------------------------------------------------------------------------------
# ``converged`` means the marginals are met, for every step count
# ------------------------------------------------------------------------------------------------


@st.composite
def problems(draw):
    m = draw(st.integers(1, 5))
    l = draw(st.integers(1, 5))
    table = draw(hnp.arrays(np.float64, (m, l), elements=st.sampled_from([0.0, 0.1, 1.0, 3.0])))
    assume_rows = table.sum(axis=1) > 0
    assume_cols = table.sum(axis=0) > 0
    if not (assume_rows.all() and assume_cols.all()):
        table = table + np.eye(m, l)  # every category gets mass
        table[np.eye(m, l, dtype=bool) & (table.sum(axis=1, keepdims=True) == 0)] = 1.0
    table = np.where(table.sum(axis=1, keepdims=True) > 0, table, 1.0)
    table = np.where(table.sum(axis=0, keepdims=True) > 0, table, 1.0)
    w = [draw(hnp.arrays(np.float64, (n,), elements=st.floats(0.05, 1.0))) for n in (m, l)]
    total = draw(st.sampled_from([1.0, 1e9]))
    targets = [total * x / x.sum() for x in w]
    steps = draw(st.one_of(st.none(), st.integers(0, 3000)))
    return table, targets, steps


@settings(max_examples=80, deadline=None)
@given(problems())
def test_converged_iff_the_measured_error_is_within_tol(problem):
    table, targets, steps = problem
    res, _ = run(table, targets, steps, max_steps=3000)
    out = np.asarray(res.table)
    assert np.all(np.isfinite(out))
    measured = share_error(out, targets)
    assert res.marginal_error == pytest.approx(measured, abs=1e-12)
    assert res.converged == (res.marginal_error <= res.tol)
    if res.converged:
        assert measured <= res.tol + 1e-15
    if steps is not None:
        np.testing.assert_allclose(
            out, table_ipf(table, targets, steps), rtol=1e-9, atol=1e-12 * targets[0].sum()
        )


def test_fixed_steps_far_from_the_targets_are_not_converged():
    table = np.array([[2.0, 1.0], [1.0, 4.0]])
    targets = [np.array([0.5, 0.5]), np.array([0.3, 0.7])]
    res, messages = run(table, targets, 1)
    assert not res.converged and res.marginal_error > 0.01 and res.tol == 1e-10
    assert not messages  # a fixed small k is not a failure: no warning
    assert "NOT converged" in res.summary()
    assert scaling_factors(table, targets, 80).converged


# ------------------------------------------------------------------------------------------------
# Finding 7: a tolerance that can be met in every compute dtype, and a true warning
# ------------------------------------------------------------------------------------------------


HALF = {
    "float32": lambda a: np.asarray(a, np.float32),
    "float16": lambda a: np.asarray(a, np.float16),
    "torch-float32": lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32),
    "torch-float16": lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float16),
    "torch-bfloat16": lambda a: torch.as_tensor(np.asarray(a), dtype=torch.bfloat16),
}


@pytest.mark.parametrize("kind", list(HALF))
@pytest.mark.parametrize("shape", [(5, 7), (60, 40), (300, 200)])
def test_default_tol_converges_in_narrow_dtypes(kind, shape):
    rng = np.random.default_rng(7)
    table = HALF[kind](rng.uniform(0.1, 1.0, shape))
    targets = [rng.dirichlet(np.ones(n)) for n in shape]
    res, messages = run(table, targets)
    assert res.converged and not messages
    assert res.marginal_error <= res.tol < 1e-6
    assert res.steps < 200


def test_count_targets_of_a_billion_meet_tol_on_the_share_scale():
    rng = np.random.default_rng(8)
    table = rng.poisson(50, size=(40, 30)).astype(float) + 1
    targets = [1e9 * rng.dirichlet(np.ones(n)) for n in table.shape]
    res, messages = run(table, targets, tol=1e-10)
    assert res.converged and not messages and res.steps < 400
    assert res.marginal_error <= 1e-10
    gap = max(abs(res.table.sum(axis=1 - a) - targets[a]).max() for a in (0, 1))
    assert gap <= 1e-10 * 1e9


def test_the_stop_test_and_the_final_error_agree():
    """The check that stops the run includes the axis just adjusted, like the final error."""
    rng = np.random.default_rng(9)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        table = rng.uniform(0.1, 1.0, (30, 20)).astype(np.float32)
        targets = [rng.dirichlet(np.ones(n)).astype(np.float32) for n in (30, 20)]
        for tol in (1e-10, 1e-7, 3e-7):
            res, messages = run(table, targets, tol=tol)
            assert res.converged and not messages, (seed, tol, res)


def test_max_steps_warning_names_max_steps_only_when_that_is_why():
    table = np.array([[1.0, 1e-6], [1e-6, 1.0]])
    targets = [np.array([0.5, 0.5]), np.array([0.01, 0.99])]  # reachable, slowly
    res, messages = run(table, targets, max_steps=10)
    assert not res.converged
    assert len(messages) == 1 and "max_steps=10" in messages[0]
    assert "cannot be met" not in messages[0]


# ------------------------------------------------------------------------------------------------
# Finding 8: totals equal within the check but not identical
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap", [1e-9, 3e-9, -5e-9, 1e-12])
def test_totals_accepted_as_equal_are_rescaled_to_the_first(gap):
    table = np.array([[2.0, 1.0, 1.0], [1.0, 4.0, 2.0]])
    targets = [np.array([0.4, 0.6]), np.array([0.3, 0.3, 0.4]) * (1 + gap)]
    res, messages = run(table, targets)
    assert res.converged and not messages and res.steps < 200
    assert res.table.sum() == pytest.approx(1.0, abs=1e-15)  # the total of targets[0]
    np.testing.assert_allclose(res.table.sum(axis=1), targets[0], atol=1e-10)
    np.testing.assert_allclose(res.table.sum(axis=0), targets[1] / (1 + gap), atol=1e-10)


def test_totals_within_four_eps_are_left_as_given():
    """A gap below the attainable tol is not rescaled (the same arrays come back), and balances."""
    import array_api_compat.numpy as xp

    from raking.validation._arrays import check_targets

    table = np.array([[2.0, 1.0, 1.0], [1.0, 4.0, 2.0]])
    py = np.array([0.3, 0.3, 0.4])
    for ulps, kept in ((0, True), (2, True), (4, True), (40, False)):
        scaled = py * (1 + ulps * np.finfo(np.float64).eps)
        out = check_targets([np.array([0.4, 0.6]), scaled], table, xp=xp)
        assert (out[1] is scaled) == kept, ulps
        if not kept:
            assert out[1].sum() == pytest.approx(1.0, rel=1e-16, abs=0)
        res, messages = run(table, [np.array([0.4, 0.6]), scaled])
        assert res.converged and not messages
        np.testing.assert_allclose(res.table.sum(axis=0), py, atol=2e-15)


def test_batched_totals_are_rescaled_per_table():
    rng = np.random.default_rng(10)
    table = rng.uniform(0.1, 1, (3, 4, 5))
    px = rng.dirichlet(np.ones(4), size=3) * np.array([[1.0], [2.0], [5.0]])
    py = rng.dirichlet(np.ones(5), size=3) * np.array([[1.0], [2.0], [5.0]]) * (1 + 4e-9)
    res, messages = run(table, [px, py])
    assert res.converged and not messages
    np.testing.assert_allclose(res.table.sum(axis=(1, 2)), [1.0, 2.0, 5.0], rtol=1e-15)


def test_total_mismatch_message_prints_the_digits_that_differ():
    table = np.ones((2, 2))
    with pytest.raises(ValueError) as info:
        balance(table, [np.array([0.5, 0.5]), np.array([0.3, 0.7 + 1e-7])])
    message = str(info.value)
    assert "targets[1] sums to 1.0000000999999998 but targets[0] sums to 1.0" in message
    assert "relative gap of 1e-07" in message
    batch = np.ones((3, 2, 2))
    py = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.6]])
    with pytest.raises(
        ValueError, match=r"sums to 1\.1 but targets\[0\] sums to 1\.0 \(batch entry \(2,\)\)"
    ):
        balance(batch, [np.array([0.5, 0.5]), py])


# ------------------------------------------------------------------------------------------------
# Findings 9 and 11: a sum that overflows, subnormal tables
# ------------------------------------------------------------------------------------------------


TARGETS_23 = [np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5])]
SHAPE = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 0.5]])


@pytest.mark.parametrize("scale", [1e308 / 5, 1e300, 1e-300, 1e-310, 1e-318, 2.0**-1074 * 4])
@pytest.mark.parametrize("steps", [None, 1, 2, 7])
def test_extreme_scales_give_the_result_of_the_unit_table(scale, steps):
    table = SHAPE * scale if scale > 1e-300 else np.where(SHAPE > 1, 2, 1) * scale
    unit = table / scale
    res, messages = run(table, TARGETS_23, steps)
    ref = balance_result(unit, TARGETS_23, steps)
    assert not messages
    np.testing.assert_allclose(res.table, ref.table, rtol=1e-13, atol=0)
    assert res.converged == ref.converged
    np.testing.assert_allclose(apply_scaling(table, res.factors), ref.table, rtol=1e-13)


def test_cells_of_1e308_whose_sum_overflows():
    table = np.full((3, 3), 1e308)
    table[0, 0] = 1.7e308
    targets = [np.full(3, 1 / 3), np.full(3, 1 / 3)]
    res, messages = run(table, targets)
    assert res.converged and not messages and np.all(np.isfinite(res.table))
    np.testing.assert_allclose(res.table, balance(table / 1e308, targets), rtol=1e-13)
    sparse, _ = run(sp.csr_matrix(table), targets)
    np.testing.assert_allclose(sparse.table.toarray(), res.table, rtol=1e-13)


def test_a_batch_mixing_scales():
    table = np.stack([SHAPE, SHAPE * 1e300, SHAPE * 1e-310, SHAPE * (1e308 / 5)])
    res, _ = run(table, TARGETS_23, 5)
    for b in range(4):
        np.testing.assert_allclose(res.table[b], balance(SHAPE, TARGETS_23, 5), rtol=1e-13)


def test_float32_and_half_extreme_scales():
    for dtype, scale in [
        (np.float32, 1e37),
        (np.float32, 1e-40),
        (np.float16, 1e4),
        (np.float16, 1e-7),
    ]:
        table = (SHAPE * scale).astype(dtype)
        res, messages = run(table, TARGETS_23)
        assert res.converged and not messages
        assert np.all(np.isfinite(res.table.astype(np.float64)))
        exact = balance(table.astype(np.float64), TARGETS_23)  # the stored values, balanced
        np.testing.assert_allclose(res.table.astype(np.float64), exact, rtol=2e-3, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# Finding 5: one target, to tolerance
# ------------------------------------------------------------------------------------------------


def test_one_target_to_tolerance():
    target = np.array([0.2, 0.3, 0.5])
    res, messages = run(np.array([1.0, 2.0, 3.0]), [target])
    assert res.converged and res.steps == 1 and not messages
    np.testing.assert_allclose(res.table, target)
    batch = np.array([[1.0, 2.0, 3.0], [5.0, 0.0, 1.0]])
    out = balance(batch, [np.array([0.2, 0.0, 0.8])])
    np.testing.assert_allclose(out, [[0.2, 0.0, 0.8], [0.2, 0.0, 0.8]])
    assert scaling_factors(batch, [np.array([0.2, 0.0, 0.8])], tol=1e-12).converged
    assert balance_result(batch, [np.array([0.2, 0.0, 0.8])], steps=0).marginal_error > 0.1


def test_math_inf_steps_is_to_tolerance_with_one_target():
    res = balance_result(np.full(4, 0.5), [np.full(4, 0.5)], math.inf)
    assert res.converged and res.steps == 0


@pytest.mark.parametrize("steps", [None, 2051])
def test_accelerator_reads_one_stacked_transfer_per_check(steps, monkeypatch):
    """On an accelerator the checks are spaced (10 sweeps) and read back in one transfer.

    Simulated on the CPU: torch tensors are declared to be on an accelerator.
    """
    import raking.kernel.ipf as kernel_module

    monkeypatch.setattr(kernel_module, "on_accelerator", lambda x: True)
    reads = []
    real = kernel_module.to_numpy
    monkeypatch.setattr(kernel_module, "to_numpy", lambda x: reads.append(1) or real(x))
    table, targets = batch_with_unreachable_tables()
    res, _ = run(torch.tensor(table), [torch.tensor(t) for t in targets], steps, max_steps=2051)
    np.testing.assert_allclose(to_numpy(res.table), table_ipf(table, targets, 2051), atol=1e-12)
    assert reads and not res.converged
