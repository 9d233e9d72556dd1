"""The compiled loops (``raking.kernel.compiled``) against their oracle, the array-API kernel."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import warnings

import array_api_compat.numpy as xp_numpy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import raking.kernel.compiled
import raking.kernel.ipf
from raking import balance, balance_result, scaling_factors
from raking.exceptions import ConvergenceWarning
from raking.kernel.compiled import numba_apply, numba_ipf, use_numba
from raking.kernel.ipf import _ipf
from raking.kernel.steps import _apply
from raking.validation import check_targets

pytest.importorskip("numba")


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def numba_dispatch_off():
    """The kernel's NumPy path, however large the batch."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(raking.kernel.compiled, "use_numba", lambda table, targets, steps: False)
        yield


def kernel(table, targets, steps, *, compiled=False):
    """The array-API kernel's result (the oracle); ``compiled=True``: through the loops."""
    return _ipf(
        table,
        targets,
        steps=steps,
        tol=1e-10,
        max_steps=10_000,
        check_every=2,
        log_domain=False,
        xp=xp_numpy,
        compiled=compiled,
    )


def compiled(table, targets, steps):
    """The kernel's result through the compiled loops (asserting that they ran)."""
    runs = []
    real = raking.kernel.compiled.numba_ipf
    with pytest.MonkeyPatch.context() as mp:
        spy = lambda *a, **k: runs.append(1) or real(*a, **k)  # noqa: E731
        mp.setattr(raking.kernel.compiled, "numba_ipf", spy)
        result = kernel(table, targets, steps, compiled=True)
    assert runs
    return result


def assert_same_result(actual, expected, table, targets, *, rtol=1e-12):
    """Same factors, balanced tables, steps and diagnostics as the kernel."""
    assert actual.steps == expected.steps
    assert actual.converged == expected.converged
    assert actual.tol == expected.tol
    assert actual.log_domain is False
    for fa, fe in zip(actual.factors, expected.factors, strict=True):
        assert isinstance(fa, np.ndarray)
        assert fa.dtype == fe.dtype == table.dtype
        assert fa.shape == fe.shape
        np.testing.assert_allclose(fa, fe, rtol=rtol, atol=0)
    np.testing.assert_allclose(
        _apply(table, actual.factors, xp=xp_numpy, log_domain=False),
        _apply(table, expected.factors, xp=xp_numpy, log_domain=False),
        rtol=rtol,
        atol=0,
    )
    scale = max(float(np.max(t)) for t in targets)  # units of the marginal error
    np.testing.assert_allclose(
        actual.marginal_error, expected.marginal_error, rtol=rtol, atol=10 * rtol * scale
    )


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------


def _shares(draw, shape, total):
    w = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.05, 5.0)))
    return total * w / w.sum(axis=-1, keepdims=True)


@st.composite
def batched_problems(draw):
    """A positive batch of 2-D tables, targets (1-D or batched) with equal totals, steps."""
    batch = draw(st.one_of(st.tuples(st.integers(1, 6)), st.just((2, 3))))
    m = draw(st.integers(1, 7))
    l = draw(st.integers(1, 7))
    table = draw(hnp.arrays(np.float64, (*batch, m, l), elements=st.floats(1e-3, 1e3)))
    total = draw(st.sampled_from([1.0, 37.5, 1e4]))
    targets = [  # shared (1-D) or per table (batched), each row summing to `total`
        _shares(draw, (*batch, n) if draw(st.booleans()) else (n,), total) for n in (m, l)
    ]
    steps = draw(st.integers(0, 12))
    return table, targets, steps


# ------------------------------------------------------------------------------------------------
# numba_ipf equals the kernel
# ------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(batched_problems())
def test_numba_ipf_matches_the_kernel(problem):
    table, targets, steps = problem
    assert_same_result(
        compiled(table, targets, steps), kernel(table, targets, steps), table, targets
    )


@settings(max_examples=40, deadline=None)
@given(batched_problems())
def test_numba_ipf_matches_the_kernel_in_float32(problem):
    table, targets, steps = problem
    table = table.astype(np.float32)
    targets = [t.astype(np.float32) for t in targets]
    assert_same_result(
        compiled(table, targets, steps), kernel(table, targets, steps), table, targets, rtol=2e-4
    )


@st.composite
def wide_problems(draw):
    """Tables wider than the loops' vector lanes, cells over twelve decades, a few zeros."""
    batch = draw(st.integers(2, 4))
    m, l = draw(st.integers(8, 70)), draw(st.integers(8, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = 10.0 ** rng.uniform(-6.0, 6.0, size=(batch, m, l))
    table[rng.uniform(size=table.shape) < 0.05] = 0.0
    targets = [rng.dirichlet(np.ones(n), size=batch) for n in (m, l)]
    return table, targets, draw(st.integers(0, 12))


@settings(max_examples=30, deadline=None)
@given(wide_problems(), st.sampled_from([np.float64, np.float32]))
def test_numba_ipf_matches_the_kernel_on_wide_tables(problem, dtype):
    """The row sums in vector lanes (reassociated) agree with the kernel's to rounding."""
    table, targets, steps = problem
    table = table.astype(dtype)
    targets = [t.astype(dtype) for t in targets]
    rtol = 1e-12 if dtype == np.float64 else 2e-4
    assert_same_result(
        compiled(table, targets, steps), kernel(table, targets, steps), table, targets, rtol=rtol
    )


def test_batched_targets_differ_per_table():
    rng = np.random.default_rng(1)
    table = rng.uniform(0.1, 1.0, size=(4, 3, 5, 6))
    px = rng.uniform(0.5, 1.5, size=(4, 3, 5))
    py = rng.uniform(0.5, 1.5, size=(4, 3, 6))
    px /= px.sum(axis=-1, keepdims=True)
    py /= py.sum(axis=-1, keepdims=True)
    result = compiled(table, [px, py], 7)
    assert result.factors[0].shape == (4, 3, 5)
    assert result.factors[1].shape == (4, 3, 6)
    assert_same_result(result, kernel(table, [px, py], 7), table, [px, py])
    # Balanced to each table's own X-target after the last (odd) step.
    out = _apply(table, result.factors, xp=xp_numpy, log_domain=False)
    np.testing.assert_allclose(out.sum(axis=-1), px, rtol=1e-12)


@pytest.mark.parametrize("steps", [0, 1, 2, 5])
def test_zero_rows_and_columns_with_zero_targets_get_the_neutral_factor(steps):
    rng = np.random.default_rng(2)
    table = rng.uniform(0.1, 1.0, size=(3, 4, 5))
    table[0, 1, :] = 0.0  # empty X category in table 0
    table[2, :, 3] = 0.0  # empty Y category in table 2
    px = np.array([[0.3, 0.0, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    py = np.array([[0.2] * 5, [0.2] * 5, [0.3, 0.3, 0.2, 0.0, 0.2]])
    result = compiled(table, [px, py], steps)
    assert_same_result(result, kernel(table, [px, py], steps), table, [px, py])
    assert result.factors[0][0, 1] == 1.0 or steps == 0
    assert result.factors[1][2, 3] == 1.0


def test_non_contiguous_input_and_steps_zero():
    rng = np.random.default_rng(3)
    table = rng.uniform(0.1, 1.0, size=(5, 6, 4)).transpose(0, 2, 1)  # (5, 4, 6), a view
    targets = [np.full(4, 0.25), np.full(6, 1 / 6)]
    for steps in (0, 3):
        expected = kernel(table, targets, steps)
        assert_same_result(compiled(table, targets, steps), expected, table, targets)
    result = compiled(table, targets, 0)
    assert all(np.all(f == 1.0) for f in result.factors)


def test_nan_in_the_table_gives_a_nan_error_not_a_flag():
    """The loops propagate NaN to the error (validation keeps it out of the kernel)."""
    table = np.ones((3, 2, 2))
    table[1, 0, 1] = np.nan
    targets = [np.full(2, 0.5), np.full(2, 0.5)]
    run = numba_ipf(table, targets, 3)
    assert math.isnan(run.errors[1]) and not run.flagged.any()
    assert np.all(run.errors[[0, 2]] == 0.0)


@settings(max_examples=40, deadline=None)
@given(batched_problems())
def test_numba_apply_equals_the_kernel_apply_bitwise(problem):
    table, targets, steps = problem
    factors = kernel(table, targets, steps).factors
    np.testing.assert_array_equal(
        numba_apply(table, factors), _apply(table, factors, xp=xp_numpy, log_domain=False)
    )


# ------------------------------------------------------------------------------------------------
# The public functions' compiled pass: table checks and balanced tables in the same read
# ------------------------------------------------------------------------------------------------

SPOILS = [
    "none",
    "nan",
    "inf",
    "-inf",
    "negative",
    "tiny negative",
    "-0.0",
    "empty row",
    "empty column",
    "empty row, zero target",
    "column only in zero-target rows",
    "sum overflows",
]


@st.composite
def spoiled_problems(draw):
    """A batch of >= 2 positive tables that the loops take, one table spoiled in one way."""
    n = draw(st.integers(2, 5))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if draw(st.booleans()):  # small: every cell drawn
        m, l = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        table = draw(hnp.arrays(np.float64, (n, m, l), elements=st.floats(0.05, 5.0)))
    else:  # wider than the loops' vector lanes (and not a multiple of them): seeded cells
        m, l = draw(st.integers(7, 40)), draw(st.integers(7, 40))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        table = rng.uniform(0.05, 5.0, size=(n, m, l))
    table = table.astype(dtype)
    px, py = (_shares(draw, (n, k), 1.0) for k in (m, l))
    spoil = draw(st.sampled_from(SPOILS))
    b, i, j = (draw(st.integers(0, k - 1)) for k in (n, m, l))
    values = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -0.5}
    values |= {"tiny negative": -1e-30, "-0.0": -0.0}
    if spoil in values:
        table[b, i, j] = values[spoil]
    elif spoil.startswith("empty row"):
        table[b, i, :] = 0.0
    elif spoil == "empty column":
        table[b, :, j] = 0.0
    elif spoil == "column only in zero-target rows":
        table[b, :, j] = 0.0
        table[b, i, j] = 1.0
    elif spoil == "sum overflows":  # finite cells whose sum is inf: valid, rescaled by the kernel
        table[b] = np.finfo(dtype).max / 1.5
    if spoil in ("empty row, zero target", "column only in zero-target rows"):
        px[b, i] = 0.0
        with np.errstate(invalid="ignore"):  # a 1-row table: 0 / 0, refused by the target checks
            px[b] /= px[b].sum()
    shared = draw(st.booleans())  # 1-D targets for every table (unspoiled targets only)
    if shared and spoil not in ("empty row, zero target", "column only in zero-target rows"):
        px, py = px[0], py[0]
    return table, [px, py], draw(st.integers(0, 9)), spoil


def _outcome(table, targets, steps):
    """``balance_result``'s result, or the error it raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            return balance_result(table, targets, steps=steps)
        except (TypeError, ValueError) as exc:
            return exc


@settings(max_examples=200, deadline=None)
@given(spoiled_problems())
def test_the_compiled_checks_refuse_what_validation_refuses(problem):
    """Same error (type and message) or same result as the complete validation + NumPy kernel.

    A valid batch is never validated again; a spoiled one goes through ``_validate`` once, which
    explains (or, for a false alarm such as an overflowing sum or ``-0.0``, lets it run the
    usual way).
    """
    table, targets, steps, spoil = problem
    calls = []
    real = raking.kernel.ipf._validate
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(raking.kernel.ipf, "_validate", lambda *a: calls.append(1) or real(*a))
        fast = _outcome(table, targets, steps)
    with numba_dispatch_off():
        slow = _outcome(table, targets, steps)
    valid = {"none", "empty row, zero target", "column only in zero-target rows"}
    if table.shape[-1] == 1:  # a row of one huge cell does not overflow
        valid.add("sum overflows")
    fast_only = spoil in valid and not isinstance(slow, Exception)  # else the loops flag it
    assert calls == ([] if fast_only else [1])
    if isinstance(slow, Exception):
        assert type(fast) is type(slow) and str(fast) == str(slow)
        return
    assert not isinstance(fast, Exception), fast
    rtol = 1e-12 if table.dtype == np.float64 else 2e-4
    assert (fast.steps, fast.converged) == (slow.steps, slow.converged)
    assert fast.table.dtype == table.dtype and fast.table.shape == table.shape
    np.testing.assert_allclose(fast.table, slow.table, rtol=rtol, atol=0)
    if spoil == "sum overflows":  # rescaled: factors equal up to a gauge (powers of two)
        return
    for f, g in zip(fast.factors, slow.factors, strict=True):
        np.testing.assert_allclose(f, g, rtol=rtol, atol=0)


def test_public_balance_checks_and_writes_in_the_compiled_pass(monkeypatch):
    """One compiled call (checks and tables included), bitwise the loops' factors and tables."""
    rng = np.random.default_rng(6)
    table = rng.uniform(0.1, 1.0, size=(40, 9, 7))
    targets = [rng.dirichlet(np.ones(9), size=40), rng.dirichlet(np.ones(7), size=40)]
    checked = check_targets(targets, table, xp=xp_numpy)  # on one total, as the kernel has them
    expected = numba_ipf(table, checked, 5)
    tables = numba_apply(table, expected.factors)
    seen = []
    real = raking.kernel.compiled.numba_ipf

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("check", "write")})
        return real(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("a valid batch is validated in the compiled pass, not again")

    monkeypatch.setattr(raking.kernel.compiled, "numba_ipf", spy)
    monkeypatch.setattr(raking.kernel.compiled, "numba_apply", refuse)
    monkeypatch.setattr(raking.kernel.ipf, "_validate", refuse)
    result = balance_result(table, targets, steps=5)
    assert seen == [{"check": True, "write": True}]
    for f, g in zip(result.factors, expected.factors, strict=True):
        np.testing.assert_array_equal(f, g)
    np.testing.assert_array_equal(result.table, tables)
    scaling_factors(table, targets, steps=5)
    assert seen[-1] == {"check": True, "write": False}


@settings(max_examples=40, deadline=None)
@given(batched_problems(), st.sampled_from([np.float64, np.float32]))
def test_tables_written_in_the_loops_equal_numba_apply_bitwise(problem, dtype):
    table, targets, steps = problem
    table = table.astype(dtype)
    targets = [t.astype(dtype) for t in targets]
    run = numba_ipf(table, targets, steps, check=True, write=True)
    assert not run.invalid.any() and not run.flagged.any()
    assert run.table.shape == table.shape and run.table.dtype == dtype
    np.testing.assert_array_equal(run.table, numba_apply(table, run.factors))
    plain = numba_ipf(table, targets, steps)
    assert plain.invalid is None and plain.table is None
    np.testing.assert_array_equal(run.errors, plain.errors)


# ------------------------------------------------------------------------------------------------
# use_numba and the dispatch from the kernel
# ------------------------------------------------------------------------------------------------


def _big_batch(dtype=np.float64):
    """A 10^4 x 50 x 50 NumPy batch without allocating it (use_numba reads shape and dtype)."""
    return np.broadcast_to(np.ones((1, 1, 1), dtype), (10_000, 50, 50))


def test_use_numba_for_many_small_numpy_tables():
    targets = [np.full(50, 0.02), np.full(50, 0.02)]
    assert use_numba(_big_batch(), targets, 8)
    assert use_numba(_big_batch(np.float32), [t.astype(np.float32) for t in targets], 8)
    batched = [np.full((10_000, 50), 0.02)] * 2
    assert use_numba(_big_batch(), batched, 8)


def test_use_numba_is_false_for_torch_input():
    torch = pytest.importorskip("torch")
    table = torch.ones(1, dtype=torch.float64).expand(10_000, 50, 50)
    targets = [torch.full((50,), 0.02, dtype=torch.float64)] * 2
    assert not use_numba(table, targets, 8)


@pytest.mark.parametrize(
    "shape", [(50, 50), (1, 50, 50), (1, 1, 50, 50)], ids=["2-D", "B=1", "B=1x1"]
)
def test_use_numba_is_false_for_one_table(shape):
    assert not use_numba(np.ones(shape), [np.full(50, 0.02)] * 2, 8)


def test_use_numba_is_false_outside_its_domain():
    table, t = _big_batch(), np.full(50, 0.02)
    assert not use_numba(table, [t, t], None)  # iterate to tolerance
    assert not use_numba(table, [t, t, t], 8)  # three balanced axes
    assert not use_numba(table.astype(np.float16), [t.astype(np.float16)] * 2, 8)
    assert not use_numba(table, [t.astype(np.float32), t], 8)  # mixed dtypes
    assert not use_numba(table, [np.full((7, 50), 0.02), t], 8)  # foreign batch shape
    big = np.broadcast_to(np.ones((1, 1, 1)), (2, 1000, 1000))  # 8 MB per table
    assert not use_numba(big, [np.full(1000, 1e-3)] * 2, 8)


def test_use_numba_needs_a_table_per_cpu_for_larger_tables(monkeypatch):
    table = np.broadcast_to(np.ones((1, 1, 1)), (4, 400, 400))
    targets = [np.full(400, 1 / 400)] * 2
    monkeypatch.setattr(raking.kernel.compiled.os, "cpu_count", lambda: 4)
    assert use_numba(table, targets, 8)
    monkeypatch.setattr(raking.kernel.compiled.os, "cpu_count", lambda: 8)
    assert not use_numba(table, targets, 8)
    small = np.broadcast_to(np.ones((1, 1, 1)), (2, 100, 100))  # small: any B >= 2
    assert use_numba(small, [np.full(100, 0.01)] * 2, 8)


def test_use_numba_is_false_without_numba(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    raking.kernel.compiled._numba_available.cache_clear()
    try:
        assert not use_numba(_big_batch(), [np.full(50, 0.02)] * 2, 8)
    finally:
        raking.kernel.compiled._numba_available.cache_clear()


def _spy(monkeypatch):
    calls = []
    original = raking.kernel.compiled.numba_ipf

    def spy(table, targets, steps, **kwargs):
        calls.append((table.shape, steps))
        return original(table, targets, steps, **kwargs)

    monkeypatch.setattr(raking.kernel.compiled, "numba_ipf", spy)
    return calls


def test_balance_on_a_numpy_batch_takes_the_numba_path(monkeypatch):
    calls = _spy(monkeypatch)
    rng = np.random.default_rng(4)
    table = rng.uniform(0.1, 1.0, size=(8, 5, 6))
    targets = [np.full(5, 0.2), np.full(6, 1 / 6)]
    out = balance(table, targets, steps=3)
    assert calls == [((8, 5, 6), 3)]
    with numba_dispatch_off():
        expected = balance(table, targets, steps=3)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    result = balance_result(table, targets, steps=3)
    # Three steps do not reach tol: converged says so, also for a fixed step count.
    assert not result.converged and result.tol == 1e-10 and len(calls) == 2
    assert result.marginal_error > 1e-4
    scaling_factors(table, targets, steps=2)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": None}, {"steps": 4, "log_domain": True}],
    ids=["to-tolerance", "log-domain"],
)
def test_balance_stays_in_numpy_outside_the_domain(monkeypatch, kwargs):
    calls = _spy(monkeypatch)
    table = np.random.default_rng(5).uniform(0.1, 1.0, size=(8, 5, 6))
    if kwargs.get("log_domain"):
        table = np.log(table)
    balance(table, [np.full(5, 0.2), np.full(6, 1 / 6)], **kwargs)
    assert calls == []


def test_balance_on_one_numpy_table_stays_in_numpy(monkeypatch):
    calls = _spy(monkeypatch)
    balance(np.ones((5, 6)), [np.full(5, 0.2), np.full(6, 1 / 6)], steps=4)
    assert calls == []


def test_importing_the_module_does_not_import_numba():
    code = "import sys, json, raking.kernel.compiled; print(json.dumps('numba' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
