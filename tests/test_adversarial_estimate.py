"""Adversarial inputs to raking.estimate (and the variance functions behind its SE).

Finding 2 of issue 11: when the sample balanced to convergence toward the targets (the plug-in
table of the SE) does not exist, ``estimate`` reported an SE of about 0 as valid. The sweep
below draws many small samples and checks every SE against an independent oracle: a linear
program (SciPy's HiGHS) decides whether a table positive on the sample's observed cells meets
the targets, table-form IPF (a NumPy loop, not the kernel) builds the plug-in, and the
operator route of sigma_k^2 (not the closed form that ``estimate`` uses) gives the variance.
The other tests feed NaN/inf/negative/overflowing/subnormal values, degenerate shapes, odd
dtypes and read-only or non-contiguous arrays, and check the error type and that the message
names the argument.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import linprog

import raking
from raking.exceptions import ConvergenceWarning, EmptyCategoryError
from raking.stats.estimators import _reachability
from raking.stats.variance import (
    asymptotic_variance,
    efficient_variance,
    ipwi_variance,
    one_sided_ipw_variance,
    variance_closed_form,
    variance_decay_bound,
    variance_operator,
)

# ------------------------------------------------------------------------------------------------
# Independent oracle
# ------------------------------------------------------------------------------------------------


def _lp_margin(support: np.ndarray, r: np.ndarray, c: np.ndarray) -> float | None:
    """max over tables F on ``support`` with marginals (r, c) of min F on the support; None if none.

    > 0: the targets are reachable with every observed cell positive (the plug-in exists);
    0: only on the boundary; None: unreachable.
    """
    cells = np.argwhere(support)
    s = len(cells)
    m, l = support.shape
    eq = np.zeros((m + l, s + 1))
    eq[cells[:, 0], np.arange(s)] = 1
    eq[m + cells[:, 1], np.arange(s)] = 1
    ub = np.zeros((s, s + 1))
    ub[np.arange(s), np.arange(s)] = -1
    ub[:, s] = 1
    res = linprog(
        np.r_[np.zeros(s), -1.0],
        A_ub=ub,
        b_ub=np.zeros(s),
        A_eq=eq,
        b_eq=np.r_[r, c],
        bounds=[(0, None)] * s + [(0, 1)],
        method="highs",
    )
    if res.status == 2:
        return None
    assert res.status == 0, res.message
    return -res.fun


def _table_ipf(table: np.ndarray, r: np.ndarray, c: np.ndarray, sweeps: int = 20_000):
    """Table-form IPF (rows, then columns) to 1e-13; None if it does not get there."""
    P = table / table.sum()
    for _ in range(sweeps):
        P = P * (r / P.sum(axis=1))[:, None]
        P = P * (c / P.sum(axis=0))[None, :]
        if np.abs(P.sum(axis=1) - r).max() < 1e-13:
            return P
    return None


def _sample(rng, m=3, l=4, n=15):
    P = rng.dirichlet(np.ones(m * l)).reshape(m, l)
    h = rng.standard_normal((m, l))
    cells = rng.choice(m * l, size=n, p=P.ravel())
    return P, h, cells // l, cells % l


# ------------------------------------------------------------------------------------------------
# Finding 2: no SE reported as valid without a plug-in table
# ------------------------------------------------------------------------------------------------


def test_reproducer_of_the_issue_gives_nan_se_and_names_the_arguments():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(12)).reshape(3, 4)
    h = rng.standard_normal((3, 4))
    x = np.r_[np.zeros(497, int), 1, 2, 2]
    y = np.r_[rng.integers(0, 4, 497), 0, 1, 3]
    with pytest.warns(ConvergenceWarning, match="no standard error"):
        res = raking.estimate(x, y, h, [P.sum(1), P.sum(0)], steps=2)
    assert math.isnan(res.se) and all(math.isnan(v) for v in res.ci)
    assert res.converged is False
    assert res.se_method.startswith("none")
    (note,) = res.notes
    assert "the x categories [2] occur only with the y categories [1, 3]" in note
    assert "targets[0]" in note and "targets[1]" in note
    assert f"{P.sum(1)[2]:.6g}" in note and f"{P.sum(0)[[1, 3]].sum():.6g}" in note
    assert math.isfinite(res.estimate)  # the k-step estimate itself is well defined
    assert "2 steps done, but no plug-in table for the SE" in res.summary()


def test_small_sample_sweep_every_se_is_valid_or_nan():
    """300 samples of n = 15 on a 3 x 4 table: about a fifth have no plug-in table."""
    rng = np.random.default_rng(1)
    seen = {"interior": 0, "unreachable": 0, "boundary": 0, "fallback": 0}
    for i in range(300):
        P, h, x, y = _sample(rng)
        k = i % 5
        r, c = P.sum(1), P.sum(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = raking.estimate(x, y, h, [r, c], steps=k, missing="empirical")
        counts = np.zeros((3, 4))
        np.add.at(counts, (x, y), 1)
        if res.se_method.startswith("plug-in Var_n"):
            assert (counts.sum(1) == 0).any() or (counts.sum(0) == 0).any()
            seen["fallback"] += 1
            continue
        margin = _lp_margin(counts > 0, r, c)
        if margin is None or margin < 1e-9:
            seen["unreachable" if margin is None else "boundary"] += 1
            assert "targets" in res.notes[0] and "plug-in table" in res.notes[0]
            if k == 0:  # the empirical mean's own SE needs no plug-in table
                mean = (counts * h).sum() / 15
                var = (counts * (h - mean) ** 2).sum() / 15
                assert res.se == pytest.approx(math.sqrt(var / 15), rel=1e-12)
                assert res.se_method.startswith("Var_n(h) / n of the empirical mean")
                continue
            assert math.isnan(res.se), f"sample {i}: SE {res.se} without a plug-in table"
            assert res.converged is False and res.se_method.startswith("none")
            assert "no standard error" in res.notes[0]
            continue
        seen["interior"] += 1
        assert math.isfinite(res.se) and res.se > 0, f"sample {i}: SE {res.se}"
        P_hat = _table_ipf(counts, r, c)
        if P_hat is None:  # the oracle is too slow near the boundary; checked below instead
            continue
        var = variance_operator(P_hat, h, k)
        assert res.se == pytest.approx(math.sqrt(var / 15), rel=1e-6), f"sample {i}"
    assert seen["unreachable"] >= 40 and seen["interior"] >= 100, seen


def test_slow_plugin_near_the_boundary_is_finished_and_correct():
    """Reachable with a margin of 8e-5: IPF alone stalls at 5e-6 after 10,000 steps."""
    counts = np.array([[0, 2, 0, 1], [0, 1, 0, 2], [3, 4, 1, 1]])
    r = np.array([0.27126382, 0.35970584, 0.36903034])
    c = np.array([0.21641277, 0.30153802, 0.15245076, 0.32959845])
    r, c = r / r.sum(), c / c.sum()
    x, y = np.nonzero(counts)
    x, y = np.repeat(x, counts[x, y]), np.repeat(y, counts[x, y])
    h = np.arange(12.0).reshape(3, 4) ** 1.5
    res = raking.estimate(x, y, h, [r, c], steps=2)
    P_hat = _table_ipf(counts, r, c, sweeps=400_000)
    assert P_hat is not None
    var = variance_operator(P_hat, h, 2)
    assert res.se == pytest.approx(math.sqrt(var / counts.sum()), rel=1e-6)


@pytest.mark.parametrize("tol", [1e-10, 1e-3])
@pytest.mark.parametrize("steps", [1, 2, None])
def test_targets_met_only_on_the_boundary_give_nan_se(steps, tol):
    """Cell (0, 1) must vanish: the boundary limit is diagonal and its sigma_k^2 is 0."""
    x = np.r_[[0] * 5, [1] * 5]
    y = np.r_[0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    h = np.array([[1.0, 2.0], [3.0, 5.0]])
    with pytest.warns(ConvergenceWarning, match="no standard error"):
        res = raking.estimate(x, y, h, [[0.5, 0.5], [0.5, 0.5]], steps=steps, tol=tol)
    assert math.isnan(res.se) and res.converged is False
    assert "(x, y) = [(0, 1)]" in res.notes[0]


def test_without_a_plug_in_k0_reports_the_empirical_mean_se():
    x = np.r_[[0] * 5, [1] * 5]
    y = np.r_[0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    h = np.array([[1.0, 2.0], [3.0, 5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a valid SE: no warning
        res = raking.estimate(x, y, h, [[0.5, 0.5], [0.5, 0.5]], steps=0)
    values = h[x, y]
    assert res.estimate == pytest.approx(values.mean())
    assert res.se == pytest.approx(values.std() / math.sqrt(10), rel=1e-12)
    assert "(x, y) = [(0, 1)]" in res.notes[0] and "empirical mean" in res.notes[0]


@pytest.mark.parametrize("t", [0.3, 1e-3, 1e-6])
def test_boundary_is_found_at_small_shares_too(t):
    """Support [[1, 1], [0, 1]] with r = c = (t, 1 - t): cell (0, 1) must be 0."""
    reach = _reachability(np.array([[1, 1], [0, 1]]) > 0, [np.array([t, 1 - t])] * 2)
    assert reach.unreachable is None and reach.forced_zero.tolist() == [[0, 1]]


def test_tiny_target_shares_keep_a_finite_se_of_the_right_order():
    """A category with a share of 1e-12 is reachable: sigma_k^2 is proportional to the share."""
    x, y, h = _codes(seed=0, n=200)
    ratios = []
    for tiny in (1e-6, 1e-9, 1e-12):
        res = raking.estimate(x, y, h, [[1 - tiny, tiny], [0.3, 0.3, 0.4]], steps=2)
        assert math.isfinite(res.se) and res.se > 0, (tiny, res.notes)
        ratios.append(res.se / math.sqrt(tiny))
    assert ratios == pytest.approx([ratios[0]] * 3, rel=1e-2)


def test_large_table_path_uses_ipf_and_says_when_it_stops_short(monkeypatch):
    """Past the Newton size limit the kernel's IPF finds the plug-in, bounded by max_steps."""
    import raking.stats.estimators as est

    x, y, h = _codes(seed=6, n=400, m=4, l=5)
    targets = [[0.1, 0.2, 0.3, 0.4], [0.3, 0.1, 0.2, 0.25, 0.15]]
    newton = raking.estimate(x, y, h, targets, steps=2)
    monkeypatch.setattr(est, "_NEWTON_MAX_WORK", 0)
    ipf = raking.estimate(x, y, h, targets, steps=2)
    assert ipf.se == pytest.approx(newton.se, rel=1e-8)
    with pytest.warns(ConvergenceWarning, match=r"did not reach tol=1e-10 .* max_steps=3"):
        short = raking.estimate(x, y, h, targets, steps=2, max_steps=3)
    assert math.isnan(short.se) and short.converged is False


def test_a_sample_split_into_blocks_says_so():
    """Observed cells (0, 0) and (1, 1) only: a valid plug-in, but a reducible one (SE 0)."""
    res = raking.estimate(
        np.array([0, 1, 1]), np.array([0, 1, 1]), [[1.0, 2.0], [3.0, 4.0]], [[0.5] * 2] * 2, steps=2
    )
    assert res.se == 0 and res.converged
    assert any("fall into 2 blocks" in note for note in res.notes)
    connected = raking.estimate(X, Y, H, T, steps=2)
    assert not any("blocks" in note for note in connected.notes)


@pytest.mark.parametrize("steps", [0, 1, 2, None])
def test_degenerate_shapes_give_finite_exact_answers(steps):
    """1 x 1, 1 x l and m x 1 tables, and a single pair: no crash, the right numbers."""
    assert raking.estimate([0, 0, 0], [0, 0, 0], [[2.0]], [[1.0], [1.0]], steps=steps).se == 0
    single = raking.estimate([0], [1], [[1.0, 2.0]], [[1.0], [0.0, 1.0]], steps=steps)
    assert (single.estimate, single.se) == (2.0, 0.0)
    row = raking.estimate(
        [0] * 3, [0, 1, 2], [[1.0, 2.0, 4.0]], [[1.0], [0.2, 0.3, 0.5]], steps=steps
    )
    col = raking.estimate(
        [0, 1, 2], [0] * 3, [[1.0], [2.0], [4.0]], [[0.2, 0.3, 0.5], [1.0]], steps=steps
    )
    # h is a function of one variable; once a step fixes that variable's known marginal the
    # estimate is exact (a Y-step for the 1 x 3 row, an X-step for the 3 x 1 column).
    for res, exact in ((row, steps in (2, None)), (col, steps != 0)):
        assert math.isfinite(res.se)
        if exact:
            assert res.estimate == pytest.approx(2.8, rel=1e-12) and res.se <= 1e-7
        else:
            assert res.estimate == pytest.approx(7 / 3, rel=1e-12) and res.se > 0.1


def test_unreachable_through_a_zero_target_names_it():
    """x = 1 is observed only with y = 2, whose target is 0: no mass can reach x = 1."""
    x = np.r_[[0] * 6, 1, 1]
    y = np.r_[0, 1, 2, 0, 1, 2, 2, 2]
    h = np.arange(6.0).reshape(2, 3)
    with pytest.warns(ConvergenceWarning):
        res = raking.estimate(x, y, h, [[0.5, 0.5], [0.5, 0.5, 0.0]], steps=2)
    assert math.isnan(res.se)
    assert "x categories [1] occur only with y categories whose target is 0" in res.notes[0]


def test_reachability_agrees_with_the_linear_program():
    """The max-flow classification (interior / boundary / unreachable) against HiGHS."""
    rng = np.random.default_rng(5)
    agree = {}
    for it in range(300):
        m, l = rng.integers(2, 6, 2)
        support = rng.random((m, l)) < rng.uniform(0.3, 0.9)
        support[rng.integers(m, size=l), np.arange(l)] = True
        support[np.arange(m), rng.integers(l, size=m)] = True
        if it % 3 == 0:  # targets from a table on part of the support: many boundary cases
            F = support * (rng.random((m, l)) < 0.6) * rng.integers(1, 4, (m, l))
            if (F.sum(1) == 0).any() or (F.sum(0) == 0).any():
                continue
            r, c = F.sum(1) / F.sum(), F.sum(0) / F.sum()
        elif it % 3 == 1:
            r, c = rng.dirichlet(np.ones(m)), rng.dirichlet(np.ones(l))
        else:
            r, c = rng.integers(1, 4, m) / 1.0, rng.integers(1, 4, l) / 1.0
            r, c = r / r.sum(), c / c.sum()
        margin = _lp_margin(support, r, c)
        truth = "unreachable" if margin is None else "boundary" if margin < 1e-9 else "interior"
        reach = _reachability(support, [r, c])
        got = (
            "unreachable"
            if reach.unreachable is not None
            else "boundary"
            if reach.forced_zero is not None
            else "interior"
        )
        assert got == truth, (support.astype(int), r, c, margin)
        agree[truth] = agree.get(truth, 0) + 1
        if reach.unreachable is not None:  # the proof: A's cells lie in B, r(A) > c(B)
            A, B = reach.unreachable
            assert not support[np.ix_(A, np.setdiff1d(np.arange(l), B))].any()
            assert r[A].sum() > c[B].sum()
    assert min(agree.values()) >= 5, agree


# ------------------------------------------------------------------------------------------------
# Finding 12 (estimate): a zero target for an unobserved category
# ------------------------------------------------------------------------------------------------


def _codes(seed=0, n=60, m=2, l=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, m, n), rng.integers(0, l, n), rng.standard_normal((m, l))


@pytest.mark.parametrize("steps", [0, 1, 2, 3, None])
def test_zero_target_for_an_unobserved_category_is_dropped_exactly(steps):
    x, y, h = _codes()
    h3 = np.vstack([h, [[7.0, -3.0, 1.0]]])  # a third x category, never observed
    res = raking.estimate(x, y, h3, [[0.4, 0.6, 0.0], [0.3, 0.3, 0.4]], steps=steps)
    ref = raking.estimate(x, y, h, [[0.4, 0.6], [0.3, 0.3, 0.4]], steps=steps)
    assert res.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert res.se == pytest.approx(ref.se, rel=1e-10) and res.se > 0
    assert not any(" P " in note or "P has" in note for note in res.notes)


def test_zero_target_for_an_observed_category_notes_the_dropped_mass():
    x, y, h = _codes()
    res = raking.estimate(x, y, h, [[0.4, 0.6], [0.5, 0.5, 0.0]], steps=2)
    assert math.isfinite(res.se) and res.se > 0
    assert any("y categories [2]" in note and "target is 0" in note for note in res.notes)
    keep = y != 2
    ref = raking.estimate(x[keep], y[keep], h[:, :2], [[0.4, 0.6], [0.5, 0.5]], steps=2)
    assert res.se * math.sqrt(x.size) == pytest.approx(ref.se * math.sqrt(keep.sum()), rel=1e-8)


# ------------------------------------------------------------------------------------------------
# Overflow and underflow: SEs scale exactly, never inf or NaN for a representable answer
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2.0**1000, 1e300, 1e-300, 2.0**-1000])
def test_se_scales_exactly_with_huge_or_tiny_h(scale):
    x, y, h = _codes(seed=3)
    targets = [[0.5, 0.5], [0.3, 0.3, 0.4]]
    base = raking.estimate(x, y, h, targets, steps=2)
    big = raking.estimate(x, y, h * scale, targets, steps=2)
    assert big.se == pytest.approx(base.se * scale, rel=1e-12)
    assert big.estimate == pytest.approx(base.estimate * scale, rel=1e-12)


def test_h_at_the_float64_limit_gives_a_finite_se():
    x, y, h = _codes(seed=3)
    res = raking.estimate(x, y, np.sign(h) * 1.7e308, [[0.5, 0.5], [0.3, 0.3, 0.4]], steps=2)
    assert math.isfinite(res.se) and res.se > 1e306


@pytest.mark.parametrize(
    "fn",
    [
        lambda P, h: variance_operator(P, h, 2),
        lambda P, h: variance_operator(P, h, math.inf),
        lambda P, h: variance_closed_form(P, h, 3),
        lambda P, h: variance_closed_form(P, h, math.inf),
        lambda P, h: asymptotic_variance(P, h, 1),
        efficient_variance,
        ipwi_variance,
        lambda P, h: one_sided_ipw_variance(P, h, "y"),
        lambda P, h: variance_decay_bound(P, h, 2),
    ],
)
def test_variance_functions_scale_exactly_and_never_return_nan(fn):
    P = np.array([[0.3, 0.1, 0.05], [0.2, 0.25, 0.1]])
    h = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    base = fn(P, h)
    assert fn(P, h * 2.0**500) == pytest.approx(base * 2.0**1000, rel=1e-12)
    assert fn(P, h * 2.0**-500) == pytest.approx(base * 2.0**-1000, rel=1e-12)
    assert fn(P, h * 1e300) == math.inf  # the variance itself exceeds float64: inf, not NaN
    assert fn(P, np.zeros_like(h)) == 0.0


@pytest.mark.parametrize(
    "scale", [2.0**400, 2.0**-400, 1e9, 1e308, 1e-310], ids=lambda s: f"{s:.0e}"
)
def test_targets_at_any_scale_give_the_share_result_or_a_clear_error(scale):
    """Counts, huge totals that overflow, subnormal ones: shares, or an error naming targets."""
    x, y, h = _codes(seed=4)
    ref = raking.estimate(x, y, h, [[0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]], steps=3)
    targets = [[scale, scale], [2 * scale / 3] * 3]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = raking.estimate(x, y, h, targets, steps=3)
    except ValueError as exc:  # the validation may refuse totals it cannot balance
        assert scale in (1e308, 1e-310), f"a total of {2 * scale:g} must be accepted: {exc}"
        assert str(exc).startswith("targets[") and "shares" in str(exc)
        return
    assert res.estimate == pytest.approx(ref.estimate, rel=1e-9)
    assert res.se == pytest.approx(ref.se, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# Bad arguments: error type and a message that names the argument
# ------------------------------------------------------------------------------------------------

X, Y, H = _codes(seed=2)
T = [[0.5, 0.5], [0.3, 0.3, 0.4]]
NAN, INF = math.nan, math.inf

BAD = [
    # x and y
    ({"x": X.astype(float)}, ValueError, r"^x must hold integer category codes.*astype\(int\)"),
    ({"x": np.r_[X[:-1], NAN]}, ValueError, r"^x has missing values .* at positions \[59\]"),
    ({"x": np.r_[X[:-1].astype(object), None]}, ValueError, r"^x has missing values"),
    ({"x": np.r_[X[:-1], 0.5]}, ValueError, r"^x must hold integer category codes"),
    ({"x": X.astype(bool)}, ValueError, r"^x must hold integer category codes"),
    ({"x": np.array(["a"] * 60)}, ValueError, r"^x must hold integer category codes"),
    ({"x": np.r_[X[:-1], -1]}, ValueError, r"^x has codes \[-1\] outside \[0, 2\)"),
    ({"x": np.r_[X[:-1], 2**62]}, ValueError, r"^x has codes \[4611686018427387904\]"),
    ({"x": X.reshape(6, 10)}, ValueError, r"^x must be 1-D"),
    ({"y": np.r_[Y[:-1], 3]}, ValueError, r"^y has codes \[3\] outside \[0, 3\)"),
    ({"y": Y.astype(float)}, ValueError, r"^y must hold integer category codes"),
    ({"y": Y.reshape(6, 10)}, ValueError, r"^y must be 1-D"),
    ({"y": Y[:-1]}, ValueError, r"x and y must have the same shape"),
    ({"x": X[:0], "y": Y[:0]}, ValueError, r"no observations"),
    # h
    ({"h": np.where(np.eye(2, 3) > 0, NAN, H)}, ValueError, r"^h must be finite.*\(0, 0\)"),
    ({"h": np.full((2, 3), INF)}, ValueError, r"^h must be finite"),
    ({"h": np.full((2, 3), -INF)}, ValueError, r"^h must be finite"),
    ({"h": H.ravel()}, ValueError, r"^h must be an \(m, l\) table"),
    ({"h": np.array([["a"] * 3] * 2)}, ValueError, r"^h must hold real numbers.*'a'"),
    ({"h": H + 1j}, ValueError, r"^h must hold real numbers .* complex"),
    ({"h": H[:, :2]}, ValueError, r"^y has codes \[2\] outside \[0, 2\)"),
    ({"shape": (3, 3)}, ValueError, r"^shape is \(3, 3\) but h has shape \(2, 3\)"),
    # targets
    ({"targets": [[NAN, 0.5], T[1]]}, ValueError, r"^targets\[0\] must be finite"),
    ({"targets": [T[0], [INF, 0.3, 0.4]]}, ValueError, r"^targets\[1\] must be finite"),
    ({"targets": [[-0.5, 1.5], T[1]]}, ValueError, r"^targets\[0\] has negative entries"),
    ({"targets": [[0.0, 0.0], T[1]]}, ValueError, r"^targets\[0\] sums to 0"),
    ({"targets": [[0.5, 0.5, 0.0], T[1]]}, ValueError, r"^targets\[0\] has shape \(3,\)"),
    ({"targets": [T[0], [0.3, 0.3, 0.5]]}, ValueError, r"^targets\[1\] sums to 1.1"),
    ({"targets": [T[0]]}, ValueError, r"^targets must be a pair"),
    ({"targets": [T[0], T[1], [1.0]]}, ValueError, r"^targets must be a pair"),
    # options
    ({"steps": -1}, ValueError, r"^steps must be >= 0"),
    ({"steps": 1.5}, TypeError, r"^steps must be a non-negative integer"),
    ({"steps": NAN}, TypeError, r"^steps must be a non-negative integer"),
    ({"steps": True}, TypeError, r"^steps must be a non-negative integer"),
    ({"tol": -1.0}, ValueError, r"^tol must be a positive finite number"),
    ({"tol": NAN}, ValueError, r"^tol must be a positive finite number"),
    ({"max_steps": 0}, ValueError, r"^max_steps must be a positive integer"),
    ({"missing": "drop"}, ValueError, r"^missing must be one of"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD)
def test_bad_arguments_raise_and_name_the_argument(kwargs, error, match):
    args = {"x": X, "y": Y, "h": H, "targets": T, "steps": 2, **kwargs}
    with pytest.raises(error, match=match):
        raking.estimate(args.pop("x"), args.pop("y"), args.pop("h"), args.pop("targets"), **args)


def test_nullable_codes_with_missing_values_are_named():
    pd = pytest.importorskip("pandas")
    x = pd.array([*X[:-2], None, X[-1]], dtype="Int64")
    with pytest.raises(ValueError, match=r"^x has missing values .* at positions \[58\]"):
        raking.estimate(x, Y, H, T, steps=2)
    with pytest.raises(ValueError, match=r"^y has missing values .* at positions \[0\]"):
        raking.estimate(X, pd.Series([None, *Y[1:]], dtype="Int64"), H, T, steps=2)


def test_empty_category_with_positive_target_names_counts_and_axis():
    with pytest.raises(EmptyCategoryError, match="category"):
        raking.estimate(np.zeros(20, int), Y[:20], H, T, steps=2)


@pytest.mark.parametrize(
    ("P", "match"),
    [
        ([["a", "b"], ["c", "d"]], r"^P must hold real numbers"),
        ([[0.5 + 1j, 0.0], [0.0, 0.5]], r"^P must hold real numbers .* complex"),
        ([[NAN, 0.5], [0.25, 0.25]], r"^P must be finite"),
        ([[0.6, -0.1], [0.25, 0.25]], r"^P must be finite and non-negative, found negative"),
        ([[0.5, 0.5], [0.0, 0.0]], r"^P has zero probability in X categories \[1\]"),
    ],
)
def test_variance_functions_name_a_bad_P(P, match):
    with pytest.raises(ValueError, match=match):
        asymptotic_variance(P, np.ones((2, 2)), 2)


# ------------------------------------------------------------------------------------------------
# Read-only, non-contiguous and foreign arrays give the same result as plain copies
# ------------------------------------------------------------------------------------------------


def _read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_read_only_and_non_contiguous_inputs_equal_copies():
    pd = pytest.importorskip("pandas")
    ref = raking.estimate(X, Y, H, T, steps=3)
    variants = [
        (_read_only(X), _read_only(Y), _read_only(H), [_read_only(t) for t in T]),
        (np.repeat(X, 2)[::2], np.repeat(Y, 2)[::2], np.asfortranarray(H), T),
        (np.c_[H.T, H.T].T[:2], None, None, None),
        (pd.Series(X), pd.Series(Y), pd.DataFrame(H), [pd.Series(t) for t in T]),
        (pd.array(X, dtype="Int64"), pd.Categorical(Y), H.tolist(), T),
        (X.astype(np.uint8), Y.astype(np.int16), H, [tuple(t) for t in T]),
        (X.astype(object), list(Y), H, T),  # pandas < 3 gives nullable integers as objects
    ]
    for x, y, h, t in variants:
        if y is None:  # a strided view of h only
            x, y, h, t = X, Y, np.c_[H.T, H.T].T[:2], T
        res = raking.estimate(x, y, h, t, steps=3)
        assert res.estimate == pytest.approx(ref.estimate, rel=1e-12)
        assert res.se == pytest.approx(ref.se, rel=1e-10)
