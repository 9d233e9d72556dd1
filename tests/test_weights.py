"""Row- and cell-level raking from integer codes (raking.survey.weights, raking.survey.compiled)."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest

import raking.survey.weights as weights_module
from raking import balance
from raking.exceptions import ConvergenceWarning, EmptyCategoryError
from raking.survey.weights import _rake, cells_from_codes, rake_codes


def _problem(seed, n=400, levels=(3, 4, 5), feasible=True):
    """Random codes, design weights and targets (margins of a reweighted sample if feasible)."""
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, L, n) for L in levels]).astype(np.int32)
    d = rng.uniform(0.5, 3.0, n)
    w = d * rng.lognormal(0.0, 0.4, n) if feasible else d
    targets = [np.bincount(c, weights=w, minlength=L) for c, L in zip(codes, levels, strict=True)]
    total = targets[0].sum()
    return codes, d, [t * (total / t.sum()) for t in targets]


def _margins(codes, w, levels):
    return [np.bincount(c, weights=w, minlength=L) for c, L in zip(codes, levels, strict=True)]


@pytest.mark.parametrize("bounds", [None, (0.5, 2.0)])
def test_margins_exact_and_total_after_convergence(bounds):
    codes, d, targets = _problem(0)
    out = rake_codes(codes, targets, weights=d, bounds=bounds)
    assert out.converged and out.tol == 1e-10 and out.marginal_error <= 1e-10
    total = targets[0].sum()
    for m, t in zip(_margins(codes, out.weights, (3, 4, 5)), targets, strict=True):
        np.testing.assert_allclose(m, t, rtol=0, atol=1e-9 * total)
    if bounds is not None:
        g = out.weights / d
        assert g.min() >= 0.5 - 1e-12 and g.max() <= 2.0 + 1e-12


def test_raking_is_invariant_to_the_scale_of_the_design_weights_and_the_order_of_rows():
    codes, d, targets = _problem(1)
    a = rake_codes(codes, targets, weights=d).weights
    b = rake_codes(codes, targets, weights=7.0 * d).weights
    perm = np.random.default_rng(0).permutation(d.size)
    c = rake_codes(codes[:, perm], targets, weights=d[perm]).weights
    np.testing.assert_allclose(a, b, rtol=1e-9)
    np.testing.assert_allclose(a[perm], c, rtol=1e-9)


def test_one_variable_is_post_stratification():
    codes, d, targets = _problem(2, levels=(4,))
    out = rake_codes(codes, targets, weights=d)
    level_d = np.bincount(codes[0], weights=d)
    np.testing.assert_allclose(out.weights, d * (targets[0] / level_d)[codes[0]], rtol=1e-12)
    assert out.steps == 1


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_fixed_steps_equal_the_kernel_on_the_crossed_table(k):
    codes, d, targets = _problem(3, levels=(3, 4))
    out = rake_codes(codes, targets, weights=d, steps=k)
    table = np.zeros((3, 4))
    np.add.at(table, (codes[0], codes[1]), d)
    expected = balance(table, targets, steps=k)
    cells = np.zeros((3, 4))
    np.add.at(cells, (codes[0], codes[1]), out.weights)
    np.testing.assert_allclose(cells, expected, rtol=1e-12, atol=1e-12)
    assert out.steps == k and out.tol is None and out.converged
    # the variable adjusted last has its margin exactly
    last = (k - 1) % 2
    np.testing.assert_allclose(out.margins[last], targets[last], rtol=1e-12)


def test_steps_zero_gives_the_design_weights_scaled_to_the_total():
    codes, d, targets = _problem(4)
    out = rake_codes(codes, targets, weights=d, steps=0)
    np.testing.assert_allclose(out.weights, d * targets[0].sum() / d.sum(), rtol=1e-14)
    assert out.steps == 0


@pytest.mark.parametrize("bounds", [None, (0.5, 2.0)])
def test_cells_and_rows_give_the_same_weights(bounds):
    rng = np.random.default_rng(5)
    n = 3000
    codes = np.stack([rng.integers(0, 3, n), rng.integers(0, 4, n)]).astype(np.int32)
    d = rng.uniform(0.5, 2, n)
    g = rng.uniform(0.5, 2.0, n)
    targets = [np.bincount(codes[0], weights=d * g), np.bincount(codes[1], weights=d * g)]
    kw = {"steps": None, "tol": 1e-12, "max_iter": 1000, "bounds": bounds}
    cells = _rake(codes, targets, d, method="cells", **kw)
    rows = _rake(codes, targets, d, method="rows", **kw)
    assert cells.method.startswith("cells") and cells.units == 12
    assert rows.method.startswith("rows") and rows.units == n
    assert cells.converged and rows.converged
    np.testing.assert_allclose(cells.weights, rows.weights, rtol=1e-9)


@pytest.mark.parametrize("bounds", [None, (0.3, 3.0)])
@pytest.mark.parametrize("steps", [None, 4])
def test_numba_passes_equal_numpy_passes(bounds, steps):
    pytest.importorskip("numba")
    codes, d, targets = _problem(6, n=50_000, levels=(4, 7, 9))
    kw = {"steps": steps, "tol": 1e-11, "max_iter": 1000, "bounds": bounds, "method": "rows"}
    a = _rake(codes, targets, d, backend="numpy", **kw)
    b = _rake(codes, targets, d, backend="numba", **kw)
    assert b.method == "rows, numba"
    assert a.steps == b.steps
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-12)


def test_bounded_weights_are_the_kl_projection_found_by_scipy():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(2)
    n = 24
    codes = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)]).astype(np.int32)
    d = rng.uniform(1, 3, n)
    lo, hi = 0.5, 2.0
    g_true = rng.uniform(lo, hi, size=(2, 3))[codes[0], codes[1]]  # feasible by construction
    targets = [np.bincount(c, weights=d * g_true) for c in codes]
    out = rake_codes(codes, targets, weights=d, bounds=(lo, hi), tol=1e-12)
    g = out.weights / d
    assert out.converged and (g <= hi + 1e-12).all() and (g >= lo - 1e-12).all()
    assert ((g > hi - 1e-9) | (g < lo + 1e-9)).any(), "test case must have active bounds"
    rows = np.concatenate([np.eye(2)[codes[0]].T, np.eye(3)[codes[1]].T]) * d

    def kl(x):
        return np.sum(d * (x * np.log(x) - x + 1)), d * np.log(x)

    res = optimize.minimize(
        kl,
        np.ones(n),
        jac=True,
        method="SLSQP",
        bounds=[(lo, hi)] * n,
        constraints=[{"type": "eq", "fun": lambda x: rows @ x - np.concatenate(targets)}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert res.success
    # SLSQP is the oracle only where it found the minimum: scipy 1.11's (the oldest admitted)
    # stops at a feasible point of higher divergence here (6.91 against 5.81). Ours must be
    # feasible and never worse than the oracle, and equal to it where the oracle got there.
    assert np.abs(rows @ g - np.concatenate(targets)).max() < 1e-9 * np.concatenate(targets).max()
    assert kl(g)[0] <= kl(res.x)[0] + 1e-9
    if kl(res.x)[0] <= kl(g)[0] + 1e-8:
        np.testing.assert_allclose(g, res.x, atol=2e-6)
    else:  # the KKT form of the KL projection: g = clip(exp(lambda_x + lambda_y), lo, hi)
        assert np.ptp(np.log(g)[(codes[0] == 0) & (codes[1] == 0)]) < 1e-12
    assert kl(g)[0] <= res.fun + 1e-8


def test_unreachable_level_under_bounds_raises_at_once():
    codes, d, targets = _problem(8, levels=(2, 3))
    targets = [targets[0], targets[1] * np.array([3.0, 0.5, 0.5])]
    targets[1] *= targets[0].sum() / targets[1].sum()
    with pytest.raises(ValueError, match=r"bounds \(0.8, 1.25\) make targets\['1'\] level 0"):
        rake_codes(codes, targets, weights=d, bounds=(0.8, 1.25))


def test_jointly_unreachable_bounds_stop_quickly_with_a_warning():
    # each level alone is reachable, but x=0 and y=0 are the same rows, with different targets
    codes = np.array([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], dtype=np.int32)
    targets = [np.array([2.4, 3.6]), np.array([1.6, 4.4])]
    start = time.perf_counter()
    with pytest.warns(ConvergenceWarning, match="stopped decreasing.*widen bounds"):
        out = rake_codes(codes, targets, bounds=(0.5, 2.0))
    assert time.perf_counter() - start < 5
    assert not out.converged and out.stalled and out.marginal_error > 0.05
    assert out.sweeps < 1000


def test_unreachable_margins_without_bounds_stall_instead_of_reporting_success():
    # rows exist only in cells (0, 0) and (1, 1): the x and y margins are then tied together
    codes = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], dtype=np.int32)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        out = rake_codes(codes, [np.array([1.0, 3.0]), np.array([2.0, 2.0])])
    assert not out.converged and out.marginal_error > 0.1


def test_max_iter_reached_warns_with_the_achieved_error():
    codes, d, targets = _problem(9)
    with pytest.warns(ConvergenceWarning, match=r"after 1 sweeps .* Raise max_iter"):
        out = rake_codes(codes, targets, weights=d, max_iter=1, tol=1e-15)
    assert not out.converged and out.sweeps == 1 and out.steps == 3


def test_fixed_steps_never_warn():
    codes, d, targets = _problem(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = rake_codes(codes, targets, weights=d, steps=2)
    assert out.converged and out.tol is None and out.marginal_error > 1e-6


@pytest.mark.parametrize("n", [50, 100_000])
def test_cells_from_codes_matches_numpy_unique(n):
    rng = np.random.default_rng(10)
    levels = (3, 5, 7) if n == 50 else (40, 50, 60)  # dense lookup: NumPy, then compiled
    codes = np.stack([rng.integers(0, L, n) for L in levels]).astype(np.int32)
    cell_codes, cell_of_row = cells_from_codes(codes, levels)
    uniq, inverse = np.unique(codes.T, axis=0, return_inverse=True)
    assert cell_codes.shape[1] == len(uniq)
    np.testing.assert_array_equal(cell_codes[:, cell_of_row], codes)
    # the same partition of the rows
    assert len(set(zip(cell_of_row.tolist(), inverse.ravel().tolist(), strict=True))) == len(uniq)
    assert cells_from_codes(codes, levels, max_cells=len(uniq) - 1) is None


@pytest.mark.parametrize("dtype", [np.int8, np.int32])
def test_compiled_cells_equal_numpy_cells(monkeypatch, dtype):
    rng = np.random.default_rng(12)
    levels = (4, 5, 8, 12, 20)  # 38,400 keys, 120,000 rows: the dense branch
    p = np.array([0.6, 0.3, 0.1])  # skewed, so many keys are empty
    codes = np.stack([np.minimum(rng.choice(3, 120_000, p=p) * L // 3, L - 1) for L in levels])
    codes = (codes + rng.integers(0, 2, codes.shape)) % np.array(levels)[:, None]
    codes = codes.astype(dtype)
    compiled = cells_from_codes(codes, levels, return_counts=True)
    assert compiled[0].shape[1] < 38_400 // 2
    monkeypatch.setattr(weights_module, "_NUMBA_MIN_UNITS", 10**9)
    reference = cells_from_codes(list(codes), levels, return_counts=True)
    for a, b in zip(compiled, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    assert compiled[2].sum() == 120_000
    m = compiled[0].shape[1]
    monkeypatch.setattr(weights_module, "_NUMBA_MIN_UNITS", 0)
    assert cells_from_codes(codes, levels, max_cells=m - 1) is None
    assert cells_from_codes(codes, levels, max_cells=m) is not None


def test_invalid_codes_and_targets_are_named():
    codes, d, targets = _problem(11, levels=(2, 3))
    with pytest.raises(ValueError, match=r"codes\[1\] has values in \[0, 2\] but targets\[1\]"):
        rake_codes(codes, [targets[0], targets[1][:2]])
    with pytest.raises(EmptyCategoryError, match=r"targets\['0'\] has level\(s\) \[2\]"):
        rake_codes(codes, [np.append(targets[0] - [5.0, 0.0], 5.0), targets[1]])
    with pytest.raises(ValueError, match=r"every target must have the same population total"):
        rake_codes(codes, [targets[0], 2 * targets[1]])
    with pytest.raises(ValueError, match=r"weights has 1 missing, non-positive"):
        rake_codes(codes, targets, weights=np.where(np.arange(d.size) == 3, 0.0, d))


def _sweeps_checking_every_sweep(codes, d, targets, tol):
    """Plain row IPF that measures every margin after every sweep (absolute, share of total)."""
    w, total = d.copy(), targets[0].sum()
    for sweep in range(1, 1000):
        for c, t in zip(codes, targets, strict=True):
            m = np.bincount(c, weights=w, minlength=t.size)
            w *= np.divide(t, m, out=np.ones_like(t), where=m > 0)[c]
        err = max(
            np.max(np.abs(np.bincount(c, weights=w, minlength=t.size) - t))
            for c, t in zip(codes, targets, strict=True)
        )
        if err / total <= tol:
            return sweep
    raise AssertionError("reference did not converge")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_predicted_full_check_stops_at_the_same_sweep_as_checking_every_sweep(seed, tol):
    # The driver sums every variable only when the errors seen before each step predict
    # convergence; it must stop at the first sweep whose margins are within tol, no later.
    codes, d, targets = _problem(seed, n=3000, levels=(3, 6, 4, 8))
    out = rake_codes(codes, targets, weights=d, tol=tol)
    assert out.converged and out.marginal_error <= tol
    assert out.sweeps == _sweeps_checking_every_sweep(codes, d, targets, tol)


def _read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("code_dtype", [np.int8, np.int16, np.int32])
def test_compiled_passes_read_read_only_and_strided_inputs(code_dtype):
    # Issue 11: pandas 3 hands out read-only columns; numba refused to compile a loop that may
    # store into an argument given a read-only array, even on a branch not taken.
    pytest.importorskip("numba")
    from raking.survey import compiled as nb
    from raking.survey.loops import _np_clip_eval, _np_clip_update, _np_scale_count

    codes, d, _ = _problem(13, n=5000, levels=(4, 7, 9))
    offsets = np.array([0, 4, 11, 20])
    rho = np.array([0.5, 1.5, 1.0, 2.0])
    for c, dd in [
        (_read_only(codes.astype(code_dtype)), _read_only(d)),
        (np.repeat(codes.astype(code_dtype), 2, axis=1)[:, ::2], np.repeat(d, 2)[::2]),
    ]:
        np.testing.assert_allclose(
            nb.scale_count(c, offsets, dd, -1, None, 0, 3),
            _np_scale_count(c, offsets, dd, -1, None, 0, 3),
            rtol=1e-13,
        )
        q = _read_only(np.linspace(0.5, 2.0, d.size))
        for got, want in zip(
            nb.clip_eval(c, 0, q, dd, rho, 0.6, 1.8),
            _np_clip_eval(c, 0, q, dd, rho, 0.6, 1.8),
            strict=True,
        ):
            np.testing.assert_allclose(got, want, rtol=1e-13)
        q1, w1, q2, w2 = q.copy(), np.empty(d.size), q.copy(), np.empty(d.size)
        m1 = nb.clip_update(c, offsets, 0, q1, dd, rho, 0.6, 1.8, w1, 0, 3)
        m2 = _np_clip_update(c, offsets, 0, q2, dd, rho, 0.6, 1.8, w2, 0, 3)
        np.testing.assert_allclose(m1, m2, rtol=1e-13)
        np.testing.assert_allclose(w1, w2, rtol=1e-15)
        cells = nb.dense_cells(c, [4, 7, 9], None, np.dtype(np.int8))
        np.testing.assert_array_equal(cells[0][:, cells[1]], c)


@pytest.mark.parametrize("bounds", [None, (0.3, 3.0)])
def test_rake_codes_takes_read_only_and_strided_codes_and_weights(bounds):
    codes, d, targets = _problem(14, n=3000)
    ref = rake_codes(codes, targets, weights=d, bounds=bounds)
    ro = rake_codes(_read_only(codes), targets, weights=_read_only(d), bounds=bounds)
    strided = rake_codes(
        np.repeat(codes, 2, axis=1)[:, ::2], targets, weights=np.repeat(d, 2)[::2], bounds=bounds
    )
    np.testing.assert_array_equal(ro.weights, ref.weights)
    np.testing.assert_array_equal(strided.weights, ref.weights)


@pytest.mark.parametrize(
    ("scale", "bounds"),
    [
        (2.0**1020, None),
        (2.0**-1040, None),
        (2.0**-1070, None),
        (2.0**1000, (0.3, 3.0)),
        (2.0**-1000, (0.3, 3.0)),
    ],
)
def test_design_weights_near_the_float_limits_rake_as_their_normal_scaled_copies(scale, bounds):
    # Issue 11, finding 10: design weights of 1e307 (whose sum overflows) gave all-zero weights;
    # subnormal ones overflow the factors t / m. Raking does not depend on the design weights'
    # scale; bounds on g = w / d scale inversely.
    codes, d, targets = _problem(15, n=2000)
    d = np.round(d * 4) / 4  # few significant bits: exact as subnormals down to 2**-1070
    ref = rake_codes(codes, targets, weights=d, bounds=bounds)
    scaled_bounds = None if bounds is None else (bounds[0] / scale, bounds[1] / scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or underflow warnings either
        out = rake_codes(codes, targets, weights=d * scale, bounds=scaled_bounds)
    assert out.converged and np.isfinite(out.weights).all() and (out.weights > 0).all()
    if bounds is None:  # the same bits: powers of two scale exactly
        np.testing.assert_array_equal(out.weights, ref.weights)
    else:  # the same solution; Newton's path within each step differs (it starts at rho = 1)
        np.testing.assert_allclose(out.weights, ref.weights, rtol=1e-8)
        g = out.weights / (d * scale)
        assert scaled_bounds[0] * (1 - 1e-12) <= g.min() and g.max() <= scaled_bounds[1] * (
            1 + 1e-12
        )
    if scale < 1:  # the factors g ~ 1 / scale: beyond float64 with bounds on them, refused
        with pytest.raises(ValueError, match=r"bounds=.* constrain g = w / d.*beyond float64"):
            rake_codes(codes, targets, weights=d * 2.0**-1060, bounds=(0.0, math.inf))


def test_design_weights_spanning_more_than_float64_can_rake_are_refused():
    codes, d, targets = _problem(16, n=200)
    d[7], d[11] = 1e307, 1e-300
    with pytest.raises(ValueError, match=r"weights spans more than 2\*\*1000.*1e\+307 \(row 7\)"):
        rake_codes(codes, targets, weights=d)
    d[7], d[11] = 1e280, 1e-10  # within 2**1000: raked, margins met
    w = d * np.random.default_rng(0).lognormal(0.0, 0.3, d.size)
    targets = [
        np.bincount(c, weights=w, minlength=t.size) for c, t in zip(codes, targets, strict=True)
    ]
    out = rake_codes(codes, targets, weights=d)
    assert out.converged and np.isfinite(out.weights).all() and (out.weights > 0).all()
    for c, t in zip(codes, targets, strict=True):
        m = np.bincount(c, weights=out.weights)  # tol is a share of the total (here 1e280)
        np.testing.assert_allclose(m, t, rtol=0, atol=1e-9 * t.sum())
