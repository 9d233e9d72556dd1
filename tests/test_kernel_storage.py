"""Half-precision *storage* in the balancing kernel: float16 / bfloat16 tables, float32 sums.

A float16 or bfloat16 table stays in its dtype; the factors, targets, reductions and errors are
in the compute dtype (float32 by default), and each reduction casts bounded blocks of the table
(``raking.kernel.storage.HALF_BLOCK_ELEMENTS``) to it.
"""

from __future__ import annotations

import tracemalloc

import array_api_strict
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import raking.kernel.compiled
from raking import EmptyCategoryError, apply_scaling, balance, balance_result, scaling_factors
from raking._array_api import get_xp, to_numpy
from raking.kernel import storage as kernel_module
from raking.kernel.ipf import _ipf

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(20240611)
TABLE = RNG.uniform(0.1, 1.0, (300, 300))
TARGETS = [t / t.sum() for t in (RNG.uniform(0.5, 1.5, 300), RNG.uniform(0.5, 1.5, 300))]

HALF = {
    "numpy-float16": (lambda a: np.asarray(a, dtype=np.float16)),
    "torch-float16": (lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float16)),
    "torch-bfloat16": (lambda a: torch.as_tensor(np.asarray(a), dtype=torch.bfloat16)),
}


def _f64(x) -> np.ndarray:
    """Any array (bfloat16 included) as a float64 NumPy array."""
    return np.asarray(to_numpy(x), dtype=np.float64)


def _relative_marginal_error(table, factors, targets) -> float:
    """Max relative |marginal - target| of ``table * f_0 ⊗ f_1``, all in float64."""
    p = _f64(table) * _f64(factors[0])[..., :, None] * _f64(factors[1])[..., None, :]
    rows = np.abs(p.sum(axis=-1) / targets[0] - 1).max()
    cols = np.abs(p.sum(axis=-2) / targets[1] - 1).max()
    return float(max(rows, cols))


def _float32_of(table):
    """The half table's values in float32 (exact), same library."""
    return table.float() if isinstance(table, torch.Tensor) else table.astype(np.float32)


def _max_rel_diff(a, b) -> float:
    a, b = _f64(a), _f64(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of at most 64 cells: many blocks per reduction even on small tables."""
    monkeypatch.setattr(kernel_module, "HALF_BLOCK_ELEMENTS", 64)


# ------------------------------------------------------------------------------------------------
# (a) float32 accumulation: marginals exact to float32 rounding, unlike float16 arithmetic
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(HALF))
def test_half_table_is_accumulated_in_float32(kind):
    table = HALF[kind](TABLE)
    res = balance_result(table, TARGETS, tol=1e-9)
    assert res.converged
    xp = get_xp(table)
    assert res.factors[0].dtype == xp.float32 and res.factors[1].dtype == xp.float32
    assert res.table.dtype == table.dtype  # the storage dtype
    assert _relative_marginal_error(table, res.factors, TARGETS) < 2e-6


@pytest.mark.parametrize("kind", ["numpy-float16", "torch-bfloat16"])
def test_half_precision_arithmetic_would_fail_that_check(kind):
    """The test above can fail: the same steps with factors and sums in half precision miss."""
    table = HALF[kind](TABLE)
    xp = get_xp(table)
    targets = [xp.astype(xp.asarray(HALF[kind](t)), table.dtype) for t in TARGETS]
    naive = _ipf(
        table,
        targets,
        steps=40,
        tol=0.0,
        max_steps=40,
        check_every=2,
        log_domain=False,
        xp=xp,
    )
    assert naive.factors[0].dtype == table.dtype
    assert _relative_marginal_error(table, naive.factors, TARGETS) > 1e-3


def test_large_float16_values_validate_without_overflow():
    """A float16 sum overflows at 65504; the checks and the steps never sum in float16."""
    table = np.full((300, 300), 60_000.0, dtype=np.float16)
    table[0, 0] = 1.0
    res = balance_result(table, TARGETS, tol=1e-9)
    assert res.converged and np.isfinite(res.marginal_error)
    assert _relative_marginal_error(table, res.factors, TARGETS) < 2e-6


# ------------------------------------------------------------------------------------------------
# (b) equal to the float32 kernel on the upcast table
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(HALF))
@pytest.mark.parametrize("log_domain", [False, True], ids=["linear", "log"])
def test_half_storage_equals_float32_kernel_on_the_upcast_table(kind, log_domain):
    table = HALF[kind](TABLE if not log_domain else np.log(TABLE))
    half = scaling_factors(table, TARGETS, steps=8, log_domain=log_domain)
    ref = scaling_factors(_float32_of(table), TARGETS, steps=8, log_domain=log_domain)
    for f, g in zip(half.factors, ref.factors, strict=True):
        assert f.dtype == g.dtype
        assert _max_rel_diff(f, g) < 1e-6
    assert half.marginal_error == pytest.approx(ref.marginal_error, rel=1e-3, abs=1e-9)
    # the balanced table: the float32 products rounded to the storage dtype
    out = balance(table, TARGETS, steps=8, log_domain=log_domain)
    assert out.dtype == table.dtype
    expected = apply_scaling(_float32_of(table), ref.factors, log_domain=log_domain)
    np.testing.assert_array_equal(_f64(out), _f64(HALF[kind](_f64(expected))))


# ------------------------------------------------------------------------------------------------
# (c) blocks: the same numbers as one block
# ------------------------------------------------------------------------------------------------

SHAPES = {
    "2-D": ((20, 30), 2),
    "batched": ((3, 20, 30), 2),
    "wide rows": ((2, 5, 100), 2),  # a row is longer than a block
    "3-axis": ((6, 7, 8), 3),
    "batched 3-axis": ((2, 6, 7, 8), 3),
}


def _problem(shape, d, seed=0):
    rng = np.random.default_rng(seed)
    table = rng.uniform(0.1, 1.0, shape)
    targets = []
    for n in shape[-d:]:
        t = rng.uniform(0.5, 1.5, n)
        targets.append(t / t.sum())
    return table, targets


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("kind", ["numpy-float16", "torch-bfloat16"])
@pytest.mark.parametrize("log_domain", [False, True], ids=["linear", "log"])
def test_blocks_give_the_numbers_of_one_block(shape, kind, log_domain, monkeypatch):
    values, targets = _problem(*SHAPES[shape])
    table = HALF[kind](np.log(values) if log_domain else values)
    one = balance_result(table, targets, steps=7, log_domain=log_domain)
    monkeypatch.setattr(kernel_module, "HALF_BLOCK_ELEMENTS", 64)
    assert kernel_module._block_plan(tuple(table.shape)) is not None
    many = balance_result(table, targets, steps=7, log_domain=log_domain)
    for f, g in zip(many.factors, one.factors, strict=True):
        assert f.shape == g.shape and f.dtype == g.dtype
        assert _max_rel_diff(f, g) < 1e-6  # the same float32 sums, in another order
    assert many.table.shape == table.shape and many.table.dtype == table.dtype
    assert _max_rel_diff(many.table, one.table) < 1e-2  # half-precision rounding of the result


def test_block_plan_bounds_every_block(monkeypatch):
    monkeypatch.setattr(kernel_module, "HALF_BLOCK_ELEMENTS", 64)
    assert kernel_module._block_plan((8, 8)) is None  # fits
    assert kernel_module._block_plan((9, 8)) == (0, 8)  # 8 rows per block
    assert kernel_module._block_plan((3, 5, 100)) == (2, 64)  # part of one row
    assert kernel_module._block_plan((100, 4, 4)) == (0, 4)  # 4 batch entries per block
    monkeypatch.setattr(kernel_module, "HALF_BLOCK_ELEMENTS", 2**22)
    assert kernel_module._block_plan((300, 300)) is None
    assert kernel_module._block_plan((32768, 32768)) == (0, 128)


def test_scaling_factors_never_copy_the_table_to_float32():
    """Peak memory: a float16 table of 2 MB is reduced in 256 kB float32 blocks.

    (One block of the whole table, ``HALF_BLOCK_ELEMENTS = 2**22``, peaks at 4 MB here.)
    """
    table = np.random.default_rng(1).uniform(0.1, 1.0, (1000, 1000)).astype(np.float16)
    targets = [np.full(1000, 1e-3, dtype=np.float32)] * 2
    old = kernel_module.HALF_BLOCK_ELEMENTS
    kernel_module.HALF_BLOCK_ELEMENTS = 2**16
    try:
        scaling_factors(table, targets, steps=4)  # first call: lazy imports allocate too
        tracemalloc.start()
        res = scaling_factors(table, targets, steps=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        kernel_module.HALF_BLOCK_ELEMENTS = old
    assert res.factors[0].dtype == np.float32
    assert peak < 2_000_000  # a float32 copy of the table alone is 4 MB


def test_apply_scaling_blocks_with_shared_and_batched_factors(small_blocks):
    values, _ = _problem((3, 20, 30), 2)
    table = HALF["torch-float16"](values)
    factors = [torch.linspace(0.5, 1.5, 20), torch.rand(3, 30, dtype=torch.float32) + 0.5]
    out = apply_scaling(table, factors)
    assert out.dtype == torch.float16
    expected = table.float() * factors[0][:, None] * factors[1][:, None, :]
    assert torch.equal(out, expected.to(torch.float16))


def test_float32_table_with_float64_compute_dtype(small_blocks):
    """float32 storage with float64 sums takes the block path too (array-api-strict here)."""
    values, targets = _problem((3, 20, 30), 2)
    table = array_api_strict.asarray(values.astype(np.float32))
    res = balance_result(table, targets, tol=1e-12, compute_dtype="float64")
    assert res.factors[0].dtype == array_api_strict.float64
    assert res.table.dtype == array_api_strict.float32
    ref = balance_result(values.astype(np.float32).astype(np.float64), targets, tol=1e-12)
    for f, g in zip(res.factors, ref.factors, strict=True):
        assert _max_rel_diff(f, g) < 1e-12


# ------------------------------------------------------------------------------------------------
# (d) compute_dtype: what is accepted, what is refused
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, np.float32),
        ("float32", np.float32),
        ("float64", np.float64),
        (np.float64, np.float64),
        (np.dtype("float32"), np.float32),
    ],
)
def test_compute_dtype_of_a_float16_table(given, expected):
    res = scaling_factors(TABLE.astype(np.float16), TARGETS, steps=2, compute_dtype=given)
    assert res.factors[0].dtype == expected


def test_compute_dtype_in_torch():
    table = HALF["torch-bfloat16"](TABLE)
    res = scaling_factors(table, TARGETS, steps=2, compute_dtype=torch.float64)
    assert res.factors[0].dtype == torch.float64
    from raking.torch import balance as torch_balance

    out = torch_balance(table, TARGETS, steps=2, compute_dtype="float64")
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, balance(table, TARGETS, steps=2, compute_dtype=torch.float64))


def test_integer_table_is_converted_to_the_compute_dtype():
    counts = np.arange(1, 13).reshape(3, 4)
    targets = [np.full(3, 1 / 3), np.full(4, 0.25)]
    assert balance(counts, targets, steps=2).dtype == np.float64
    assert balance(counts, targets, steps=2, compute_dtype="float32").dtype == np.float32


@pytest.mark.parametrize(
    "bad",
    ["float16", "f8", "double", np.float16, 3, True, torch.bfloat16, torch.float64],
    ids=str,
)
def test_compute_dtype_must_be_float32_or_float64(bad):
    with pytest.raises(ValueError, match=r"compute_dtype must be None, 'float32', 'float64'"):
        balance(TABLE.astype(np.float16), TARGETS, steps=2, compute_dtype=bad)


@pytest.mark.parametrize(
    ("table", "bad"),
    [
        (TABLE, "float32"),
        (torch.as_tensor(TABLE), torch.float32),
        (array_api_strict.asarray(TABLE), array_api_strict.float32),
    ],
    ids=["numpy", "torch", "array_api_strict"],
)
def test_compute_dtype_coarser_than_the_table_is_refused(table, bad):
    with pytest.raises(ValueError, match=r"compute_dtype=.* has less precision than the table"):
        scaling_factors(table, TARGETS, steps=2, compute_dtype=bad)
    with pytest.raises(ValueError, match=r"compute_dtype"):
        apply_scaling(table, [get_xp(table).ones(300, dtype=table.dtype)] * 2, compute_dtype=bad)


# ------------------------------------------------------------------------------------------------
# Validation of half tables and their targets
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(HALF))
@pytest.mark.parametrize(
    ("value", "message"),
    [(-1.0, "non-negative"), (float("nan"), "finite"), (float("inf"), "finite")],
    ids=["negative", "nan", "inf"],
)
def test_bad_entries_of_half_tables_are_named(kind, value, message):
    values = np.ones((4, 5))
    values[2, 3] = value
    with pytest.raises(ValueError, match=rf"{message}.*\(2, 3\)"):
        balance(HALF[kind](values), [np.full(4, 0.25), np.full(5, 0.2)])


def test_empty_category_of_a_half_table_is_found():
    values = np.ones((4, 5))
    values[:, 1] = 0.0
    with pytest.raises(EmptyCategoryError, match=r"Y categories \[1\]"):
        balance(HALF["torch-bfloat16"](values), [np.full(4, 0.25), np.full(5, 0.2)])


def test_target_totals_follow_the_compute_dtype():
    table = TABLE.astype(np.float16)
    close = [TARGETS[0], TARGETS[1] * (1 + 5e-5)]  # within float32's 1e-4, not float64's 1e-8
    balance(table, close, steps=2)
    with pytest.raises(ValueError, match=r"every target must have the same total"):
        balance(table, close, steps=2, compute_dtype="float64")


# ------------------------------------------------------------------------------------------------
# (e) float32 / float64 tables: exactly the code path and numbers as before
# ------------------------------------------------------------------------------------------------


def _reference_scaling(table, targets, steps):
    """The scaling form of the kernel, written out in NumPy with the kernel's operations."""
    f = [np.ones(n, dtype=table.dtype) for n in table.shape]
    for k in range(steps):
        if k % 2 == 0:
            r = np.matmul(table, f[1][..., None])[..., 0]
        else:
            r = np.matmul(f[0][..., None, :], table)[..., 0, :]
        safe = np.where(r > 0, r, np.ones_like(r))
        f[k % 2] = np.where(r > 0, targets[k % 2] / safe, np.ones_like(r))
    return f


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("compute_dtype", [None, "same"])
def test_float32_and_float64_tables_are_unchanged(dtype, compute_dtype, monkeypatch):
    def no_blocks(*args, **kwargs):
        raise AssertionError("a float32 / float64 table must not take the block path")

    monkeypatch.setattr(kernel_module, "_blocked_reduce", no_blocks)
    monkeypatch.setattr(kernel_module, "_over_blocks", no_blocks)
    table = TABLE.astype(dtype)
    targets = [t.astype(dtype) for t in TARGETS]
    given = np.dtype(dtype).name if compute_dtype == "same" else None
    res = balance_result(table, targets, steps=7, compute_dtype=given)
    ref = _reference_scaling(table, targets, 7)
    for f, g in zip(res.factors, ref, strict=True):
        assert f.dtype == dtype
        np.testing.assert_array_equal(f, g)
    np.testing.assert_array_equal(res.table, table * ref[0][:, None] * ref[1][None, :])


def test_half_tables_never_reach_numba(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("numba loops called for a float16 table")

    monkeypatch.setattr(raking.kernel.compiled, "numba_ipf", refuse)
    monkeypatch.setattr(raking.kernel.compiled, "numba_apply", refuse)
    values, targets = _problem((16, 20, 20), 2)
    table = values.astype(np.float16)
    xp = get_xp(table)
    checked = [xp.asarray(t, dtype=xp.float32) for t in targets]
    res = _ipf(
        table,
        checked,
        steps=6,
        tol=0.0,
        max_steps=6,
        check_every=2,
        log_domain=False,
        xp=xp,
        compiled=True,
    )
    assert res.factors[0].dtype == np.float32
    assert balance(table, targets, steps=6).dtype == np.float16


# ------------------------------------------------------------------------------------------------
# (f) property: any small half table, any block size
# ------------------------------------------------------------------------------------------------


@st.composite
def half_problems(draw):
    batch = draw(st.sampled_from([(), (2,)]))
    m, l = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    values = draw(hnp.arrays(np.float64, (*batch, m, l), elements=st.floats(0.05, 20.0)))
    targets = []
    for n in (m, l):
        t = draw(hnp.arrays(np.float64, n, elements=st.floats(0.05, 5.0)))
        targets.append(t / t.sum())
    return values, targets


@settings(max_examples=40, deadline=None)
@given(
    half_problems(),
    st.sampled_from(list(HALF)),
    st.integers(1, 40),
    st.integers(1, 9),
)
def test_half_storage_property(problem, kind, budget, steps):
    values, targets = problem
    table = HALF[kind](values)
    old = kernel_module.HALF_BLOCK_ELEMENTS
    kernel_module.HALF_BLOCK_ELEMENTS = budget
    try:
        res = balance_result(table, targets, steps=steps)
    finally:
        kernel_module.HALF_BLOCK_ELEMENTS = old
    ref = balance_result(_float32_of(table), targets, steps=steps)
    assert res.table.dtype == table.dtype and res.table.shape == table.shape
    for f, g in zip(res.factors, ref.factors, strict=True):
        assert f.dtype == g.dtype
        np.testing.assert_allclose(_f64(f), _f64(g), rtol=1e-5)
    # the step just taken holds in float32 on the stored values
    axis = (steps - 1) % 2
    p = _f64(table) * _f64(res.factors[0])[..., :, None] * _f64(res.factors[1])[..., None, :]
    marginal = p.sum(axis=-1) if axis == 0 else p.sum(axis=-2)
    np.testing.assert_allclose(marginal, np.broadcast_to(targets[axis], marginal.shape), rtol=1e-5)
