"""Balanced, empirical and IPW estimators; the missing-mass policy; the single-sample Estimate."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from raking.exceptions import EmptyCategoryError
from raking.kernel.ipf import balance
from raking.results import BalancedEstimates, BatchEstimates, Estimate
from raking.stats.estimators import balanced_estimate, empirical_estimate, estimate, ipw_estimate
from raking.stats.marginals import counts_from_codes, marginals, sample_counts
from raking.stats.theory import asymptotic_variance


def _ipf_reference(table, px, py, steps):
    """The recursion of theory.md §1.2, one table, written out step by step."""
    P = table / table.sum()
    for k in range(1, steps + 1):
        if k % 2 == 1:
            P = P * (px / P.sum(axis=1))[:, None]
        else:
            P = P * (py / P.sum(axis=0))[None, :]
    return P


@pytest.fixture
def setup():
    rng = np.random.default_rng(11)
    P = rng.dirichlet(np.full(12, 3.0)).reshape(3, 4)
    h = rng.standard_normal((3, 4))
    counts = sample_counts(P, 200, 50, seed=12)
    return P, h, counts, list(marginals(P))


def test_steps_zero_is_empirical(setup):
    _, h, counts, targets = setup
    res = balanced_estimate(counts, h, targets, 0)
    expected = (counts * h).sum(axis=(1, 2)) / counts.sum(axis=(1, 2))
    np.testing.assert_allclose(res.values, expected, rtol=1e-13)
    np.testing.assert_allclose(empirical_estimate(counts, h), expected, rtol=1e-13)
    assert isinstance(empirical_estimate(counts[0], h), float)


def test_one_x_step_recovers_known_marginal_mean(setup):
    _, _, counts, targets = setup
    f = np.array([1.5, -2.0, 0.25])
    h = np.repeat(f[:, None], 4, axis=1)  # h(x, y) = f(x)
    res = balanced_estimate(counts, h, targets, 1)
    np.testing.assert_allclose(res.values, np.full(50, targets[0] @ f), rtol=1e-13)
    # An odd step fixes X, so a Y-step alone does not recover it.
    h_y = np.repeat(np.array([1.0, 2.0, 3.0, 4.0])[None, :], 3, axis=0)
    res_y = balanced_estimate(counts, h_y, targets, 1)
    assert not np.allclose(res_y.values, targets[1] @ h_y[0])
    np.testing.assert_allclose(
        balanced_estimate(counts, h_y, targets, 2).values, targets[1] @ h_y[0], rtol=1e-13
    )


@pytest.mark.parametrize("steps", [1, 2, 3, 6])
def test_batched_equals_reference_loop(setup, steps):
    _, h, counts, targets = setup
    res = balanced_estimate(counts, h, targets, steps)
    assert isinstance(res, BalancedEstimates)
    assert res.values.shape == (50,)
    assert res.steps == steps
    assert res.n_fallback == 0
    expected = [(_ipf_reference(c, *targets, steps) * h).sum() for c in counts]
    np.testing.assert_allclose(res.values, expected, rtol=1e-12)
    single = balanced_estimate(counts[3], h, targets, steps)
    assert single.values.shape == ()
    np.testing.assert_allclose(single.values, expected[3], rtol=1e-12)


def test_batch_axes_are_preserved(setup):
    _, h, counts, targets = setup
    res = balanced_estimate(counts.reshape(5, 10, 3, 4), h, targets, 3)
    assert res.values.shape == (5, 10)
    assert res.fallback.shape == (5, 10)
    np.testing.assert_allclose(
        res.values.ravel(), balanced_estimate(counts, h, targets, 3).values, rtol=1e-14
    )


def test_to_convergence_matches_additive_functions(setup):
    _, _, counts, targets = setup
    f, g = np.array([1.0, -1.0, 2.0]), np.array([0.5, 0.0, -3.0, 1.0])
    h = f[:, None] + g[None, :]
    for steps in (None, math.inf):
        res = balanced_estimate(counts, h, targets, steps)
        assert res.steps is None
        assert res.converged
        assert res.marginal_error <= 1e-10
        # The limit has both marginals exact, so P^(inf)(f + g) = P_X(f) + P_Y(g).
        np.testing.assert_allclose(res.values, targets[0] @ f + targets[1] @ g, atol=1e-9)
    table = balance(counts[0].astype(float), targets)
    np.testing.assert_allclose(
        balanced_estimate(counts[0], h, targets, None).values, (table * h).sum(), atol=1e-9
    )


def test_targets_as_counts_and_per_replicate(setup):
    _, h, counts, targets = setup
    shares = balanced_estimate(counts, h, targets, 4).values
    totals = balanced_estimate(counts, h, [1000 * targets[0], 1000 * targets[1]], 4).values
    np.testing.assert_allclose(totals, shares, rtol=1e-12)
    rng = np.random.default_rng(5)
    px = rng.dirichlet(np.ones(3), size=50)
    py = rng.dirichlet(np.ones(4), size=50)
    res = balanced_estimate(counts, h, [px, py], 3)
    expected = [
        (_ipf_reference(c, a, b, 3) * h).sum() for c, a, b in zip(counts, px, py, strict=True)
    ]
    np.testing.assert_allclose(res.values, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Missing mass
# --------------------------------------------------------------------------------------------


@pytest.fixture
def holed(setup):
    """Counts where replicates 2 and 7 have an empty X row and replicate 4 an empty Y column."""
    _, h, counts, targets = setup
    counts = counts.copy()
    counts[2, 1, :] = 0
    counts[7, 0, :] = 0
    counts[4, :, 3] = 0
    return h, counts, targets


def test_missing_raise(holed):
    h, counts, targets = holed
    with pytest.raises(EmptyCategoryError, match="no mass in X categories") as info:
        balanced_estimate(counts, h, targets, 2)
    assert info.value.batch_index == 2
    with pytest.raises(EmptyCategoryError, match="'empirical' missing-mass policy"):
        ipw_estimate(counts, h, targets)
    # k = 0 divides by nothing: no missing-mass error.
    assert balanced_estimate(counts, h, targets, 0).n_fallback == 0


@pytest.mark.parametrize(
    ("steps", "expected"),
    [(0, []), (1, [2, 7]), (2, [2, 4, 7]), (5, [2, 4, 7]), (None, [2, 4, 7])],
)
def test_missing_empirical_falls_back_and_counts(holed, steps, expected):
    h, counts, targets = holed
    res = balanced_estimate(counts, h, targets, steps, missing="empirical")
    np.testing.assert_array_equal(np.flatnonzero(res.fallback), expected)
    assert res.n_fallback == len(expected)
    empirical = empirical_estimate(counts, h)
    np.testing.assert_allclose(res.values[expected], empirical[expected], rtol=1e-14)
    others = np.setdiff1d(np.arange(50), expected)
    alone = balanced_estimate(counts[others], h, targets, steps).values
    np.testing.assert_allclose(res.values[others], alone, rtol=1e-12, atol=1e-14)
    if steps is None:
        assert res.converged  # the fallback tables do not stall the run to tol
    summary = res.summary()
    assert f"{len(expected)} of 50 tables" in summary or not expected
    assert "missing mass" in summary or not expected


def test_all_tables_fall_back(holed):
    h, counts, targets = holed
    res = balanced_estimate(counts[[2, 7]], h, targets, 3, missing="empirical")
    assert res.n_fallback == 2
    assert not res.converged
    assert math.isnan(res.marginal_error)
    np.testing.assert_allclose(res.values, empirical_estimate(counts[[2, 7]], h))


def test_zero_target_category_is_not_missing_mass(setup):
    _, h, counts, _ = setup
    counts = counts.copy()
    counts[:, 0, :] = 0
    px = np.array([0.0, 0.5, 0.5])
    py = np.full(4, 0.25)
    res = balanced_estimate(counts, h, [px, py], None)
    assert res.n_fallback == 0
    assert res.converged


# --------------------------------------------------------------------------------------------
# IPW baselines
# --------------------------------------------------------------------------------------------


def _ipw_from_codes(x, y, h, px, py, side, self_normalized):
    n = len(x)
    pnx = np.bincount(x, minlength=len(px)) / n
    pny = np.bincount(y, minlength=len(py)) / n
    w = np.ones(n)
    if side in ("both", "x"):
        w = w * px[x] / pnx[x]
    if side in ("both", "y"):
        w = w * py[y] / pny[y]
    num = np.mean(w * h[x, y])
    return num / np.mean(w) if self_normalized else num


@pytest.mark.parametrize("side", ["both", "x", "y"])
@pytest.mark.parametrize("self_normalized", [False, True])
def test_ipw_equals_per_sample_computation(side, self_normalized):
    rng = np.random.default_rng(21)
    P = rng.dirichlet(np.full(15, 2.0)).reshape(5, 3)
    px, py = marginals(P)
    h = rng.standard_normal((5, 3))
    x = rng.integers(0, 5, size=(8, 300))
    y = rng.integers(0, 3, size=(8, 300))
    counts = counts_from_codes(x, y, (5, 3))
    res = ipw_estimate(counts, h, [px, py], side=side, self_normalized=self_normalized)
    assert isinstance(res, BatchEstimates)
    expected = [_ipw_from_codes(x[r], y[r], h, px, py, side, self_normalized) for r in range(8)]
    np.testing.assert_allclose(res.values, expected, rtol=1e-12)
    assert "[INF]" in res.method


def test_ipw_self_normalized_differs_and_one_sided_is_one_step(setup):
    _, h, counts, targets = setup
    plain = ipw_estimate(counts, h, targets).values
    normed = ipw_estimate(counts, h, targets, self_normalized=True).values
    assert not np.allclose(plain, normed)
    # Self-normalising makes the estimator exact for constants; the plain IPWI is not.
    ones = np.ones((3, 4))
    np.testing.assert_allclose(ipw_estimate(counts, ones, targets, self_normalized=True).values, 1)
    assert not np.allclose(ipw_estimate(counts, ones, targets).values, 1)
    # Weighting on X alone is exactly one X-step of balancing.
    np.testing.assert_allclose(
        ipw_estimate(counts, h, targets, side="x").values,
        balanced_estimate(counts, h, targets, 1).values,
        rtol=1e-12,
    )


def test_ipw_missing_empirical(holed):
    h, counts, targets = holed
    res = ipw_estimate(counts, h, targets, missing="empirical")
    np.testing.assert_array_equal(np.flatnonzero(res.fallback), [2, 4, 7])
    assert res.n_fallback == 3
    np.testing.assert_allclose(res.values[[2, 4, 7]], empirical_estimate(counts, h)[[2, 4, 7]])
    res_x = ipw_estimate(counts, h, targets, side="x", missing="empirical")
    np.testing.assert_array_equal(np.flatnonzero(res_x.fallback), [2, 7])


# --------------------------------------------------------------------------------------------
# The single-sample Estimate
# --------------------------------------------------------------------------------------------


@pytest.fixture
def sample():
    rng = np.random.default_rng(31)
    P = rng.dirichlet(np.full(12, 3.0)).reshape(4, 3)
    idx = rng.choice(12, size=800, p=P.ravel())
    h = rng.standard_normal((4, 3))
    return idx // 3, idx % 3, h, list(marginals(P))


@pytest.mark.parametrize("steps", [0, 1, 2, 5, None])
def test_estimate_value_and_plugin_se(sample, steps):
    x, y, h, targets = sample
    est = estimate(x, y, h, targets, steps=steps)
    assert isinstance(est, Estimate)
    counts = counts_from_codes(x, y, (4, 3))
    assert est.estimate == pytest.approx(float(balanced_estimate(counts, h, targets, steps).values))
    P_hat = balance(counts / 800.0, targets)
    k = math.inf if steps is None else steps
    assert est.se == pytest.approx(math.sqrt(asymptotic_variance(P_hat, h, k) / 800), rel=1e-7)
    assert est.n == 800
    assert est.steps == steps
    assert est.converged
    lo, hi = est.ci
    assert lo < est.estimate < hi
    assert hi - lo == pytest.approx(2 * 1.959963984540054 * est.se)
    lo90, hi90 = est.confint(0.90)
    assert lo < lo90 < est.estimate < hi90 < hi
    text = est.summary()
    assert "SE method: plug-in asymptotic sigma_k^2 / n [DER]" in text
    assert str(est) == text
    assert "[1]" in text
    d = est.to_dict()
    assert d["se_method"] == est.se_method
    assert d["ci_low"] == lo
    assert d["steps"] == steps
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.se = 0.0


def test_estimate_marginal_error_reflects_steps(sample):
    x, y, h, targets = sample
    assert estimate(x, y, h, targets, steps=None).marginal_error <= 1e-10
    assert estimate(x, y, h, targets, steps=0).marginal_error > 1e-3


def test_estimate_missing_mass(sample):
    x, y, h, targets = sample
    keep = x != 2
    with pytest.raises(EmptyCategoryError):
        estimate(x[keep], y[keep], h, targets, steps=2)
    est = estimate(x[keep], y[keep], h, targets, steps=2, missing="empirical")
    counts = counts_from_codes(x[keep], y[keep], (4, 3))
    assert est.estimate == pytest.approx(empirical_estimate(counts, h))
    assert est.se == pytest.approx(np.std(h[x[keep], y[keep]]) / math.sqrt(keep.sum()))
    assert "SE ignores raking" in est.summary()
    assert "missing mass" in est.summary()
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        est.confint(1.0)


@pytest.mark.parametrize("steps", [0, 1])
def test_estimate_plugin_needs_both_axes(sample, steps):
    """k = 0 and k = 1 divide by no Y category, but the plug-in P-hat does."""
    x, y, h, targets = sample
    keep = y != 1
    with pytest.raises(EmptyCategoryError, match="no mass in Y categories"):
        estimate(x[keep], y[keep], h, targets, steps=steps)
    est = estimate(x[keep], y[keep], h, targets, steps=steps, missing="empirical")
    counts = counts_from_codes(x[keep], y[keep], (4, 3))
    assert est.estimate == pytest.approx(empirical_estimate(counts, h))
    assert est.se_method.endswith("SE ignores raking)")
    assert not est.converged
    assert est.marginal_error >= targets[1][1]  # the empty Y category misses its whole target


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda c, h, t: balanced_estimate(c, h, t, 2, missing="drop"),
            ValueError,
            r"missing must be one of \['raise', 'empirical'\]",
        ),
        (
            lambda c, h, t: ipw_estimate(c, h, t, missing="ignore"),
            ValueError,
            "missing must be one of",
        ),
        (lambda c, h, t: ipw_estimate(c, h, t, side="z"), ValueError, "side must be one of"),
        (
            lambda c, h, t: balanced_estimate(c, h[:, :3], t, 2),
            ValueError,
            r"h has shape \(3, 3\) but the table's last two axes are \(3, 4\)",
        ),
        (
            lambda c, h, t: balanced_estimate(c, np.where(h > 0, np.nan, h), t, 2),
            ValueError,
            "h must be finite",
        ),
        (lambda c, h, t: balanced_estimate(c, h, t, -1), ValueError, "steps must be >= 0"),
        (lambda c, h, t: balanced_estimate(c, h, t, 2.5), TypeError, "steps must be"),
        (lambda c, h, t: balanced_estimate(c, h, [t[0]], 2), ValueError, "targets must be a pair"),
        (
            lambda c, h, t: balanced_estimate(c, h, [t[1], t[0]], 2),
            ValueError,
            r"targets\[0\] has shape \(4,\)",
        ),
        (lambda c, h, t: balanced_estimate(-c, h, t, 2), ValueError, "counts must be non-negative"),
        (
            lambda c, h, t: balanced_estimate(0 * c, h, t, 2),
            ValueError,
            "counts has a table with no observations",
        ),
        (
            lambda c, h, t: empirical_estimate(c[0, 0], h),
            ValueError,
            r"counts must be a count table of shape \(\.\.\., m, l\)",
        ),
        (lambda c, h, t: balanced_estimate(c, h, t, 2, tol=0), ValueError, "tol must be"),
    ],
)
def test_bad_input_raises(setup, call, error, match):
    _, h, counts, targets = setup
    with pytest.raises(error, match=match):
        call(counts, h, targets)


def test_estimate_bad_input(sample):
    x, y, h, targets = sample
    with pytest.raises(ValueError, match="shape is"):
        estimate(x, y, h, targets, steps=2, shape=(5, 3))
    with pytest.raises(ValueError, match="x must be 1-D"):
        estimate(x[None, :], y[None, :], h, targets, steps=2)
    with pytest.raises(ValueError, match="h must be an"):
        estimate(x, y, h.ravel(), targets, steps=2)
    with pytest.raises(ValueError, match="missing must be one of"):
        estimate(x, y, h, targets, steps=2, missing="nope")


def test_self_normalized_fallback_when_all_mass_has_zero_weight(setup):
    _, h, counts, targets = setup
    counts = counts[:3].copy()
    counts[0, 1:, :] = 0  # all of table 0's mass is in X category 0, whose target is 0
    px = np.array([0.0, 0.5, 0.5])
    res = ipw_estimate(counts, h, [px, targets[1]], self_normalized=True, missing="empirical")
    np.testing.assert_array_equal(res.fallback, [True, False, False])
    assert np.all(np.isfinite(res.values))


# ------------------------------------------------------------------------------------------------
# Backends: the estimators run in the namespace of the counts (CuPy on a GPU, torch, ...)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, 1, 4, None])
def test_balanced_estimate_on_every_backend(xp, steps):
    from raking._array_api import to_numpy
    from tests.conftest import assert_close, to_xp

    rng = np.random.default_rng(11)
    P = rng.dirichlet(np.ones(12)).reshape(3, 4)
    counts = rng.multinomial(200, P.ravel(), size=20).reshape(20, 3, 4).astype(float)
    counts[3, 1, :] = 0.0  # one replicate with missing mass: falls back
    h = rng.standard_normal((3, 4))
    targets = [P.sum(axis=1), P.sum(axis=0)]
    expected = balanced_estimate(counts, h, targets, steps, missing="empirical")
    actual = balanced_estimate(to_xp(xp, counts), h, targets, steps, missing="empirical")
    assert_close(actual.values, expected.values, xp=xp)
    np.testing.assert_array_equal(to_numpy(actual.fallback), expected.fallback)
    assert actual.n_fallback == expected.n_fallback == (0 if steps == 0 else 1)
    ipw = ipw_estimate(to_xp(xp, counts), h, targets, missing="empirical")
    assert_close(ipw.values, ipw_estimate(counts, h, targets, missing="empirical").values, xp=xp)
    assert_close(empirical_estimate(to_xp(xp, counts), h), empirical_estimate(counts, h), xp=xp)


@pytest.mark.parametrize("compiled", [True, False])
def test_compiled_and_array_api_kernels_agree(compiled):
    rng = np.random.default_rng(5)
    P = rng.dirichlet(np.ones(20)).reshape(4, 5)
    counts = rng.multinomial(500, P.ravel(), size=64).reshape(64, 4, 5)
    h = rng.standard_normal((4, 5))
    targets = [P.sum(axis=1), P.sum(axis=0)]
    auto = balanced_estimate(counts, h, targets, 6)
    forced = balanced_estimate(counts, h, targets, 6, compiled=compiled)
    np.testing.assert_allclose(forced.values, auto.values, rtol=1e-12)
    with pytest.raises(ValueError, match="compiled must be None, True or False"):
        balanced_estimate(counts, h, targets, 6, compiled="yes")


def test_compiled_flag_chooses_the_kernel(monkeypatch):
    import raking.kernel.compiled

    calls = []
    real = raking.kernel.compiled.numba_ipf

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(raking.kernel.compiled, "numba_ipf", spy)
    counts = np.full((2, 3, 3), 10.0)
    h = np.eye(3)
    targets = [np.full(3, 1 / 3)] * 2
    balanced_estimate(counts, h, targets, 2, compiled=False)
    assert not calls
    balanced_estimate(counts, h, targets, 2, compiled=True)
    assert calls
