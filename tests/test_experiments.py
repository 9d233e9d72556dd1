"""The experiments: designs, grids, Monte Carlo points against theory, determinism, summaries.

The Monte Carlo checks use fixed seeds, so each is deterministic; their tolerances are several
Monte Carlo standard errors wide, and each catches a specific mistake (a wrong step order or
sigma_k^2, a missing bias term, an estimator that ignores the targets).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from raking.simulation.experiments import (
    DEPENDENCE_DESIGN,
    EXPERIMENTS,
    REFERENCE_DESIGN,
    Options,
    build_design,
    dependence_point,
    illustration_joint,
    illustration_point,
    k_sweep_point,
    summarize,
    two_valued_direction,
)
from raking.stats.theory import singular_values

NAMES = ["dependence", "theory_vs_mc", "mse_vs_n", "mse_vs_k", "illustration"]


def _seed(i=0):
    return np.random.SeedSequence(20240).spawn(i + 1)[i]


# --------------------------------------------------------------------------------------------
# Options and registry
# --------------------------------------------------------------------------------------------


def test_registry_has_the_five_experiments():
    assert list(EXPERIMENTS) == NAMES
    for name, exp in EXPERIMENTS.items():
        assert exp.name == name and exp.description


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reps": 1}, "reps must be an integer >= 2"),
        ({"reps": 10.0}, "reps must be an integer >= 2"),
        ({"n": (0,)}, "n must be a non-empty tuple"),
        ({"n": ()}, "n must be a non-empty tuple"),
        ({"backend": "torch"}, "backend must be one of"),
    ],
)
def test_options_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Options(**kwargs)


def test_options_coerce_n_to_a_tuple():
    assert Options(n=[100, 200]).n == (100, 200)
    assert Options(n=500).n == (500,)
    assert Options(reps=np.int64(64)).reps == 64


# --------------------------------------------------------------------------------------------
# Designs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_two_valued_direction_is_centred_unit_norm(seed):
    p = np.random.default_rng(seed).dirichlet(np.ones(7))
    alpha = two_valued_direction(p)
    assert len(np.unique(alpha)) == 2
    assert float(p @ alpha) == pytest.approx(0.0, abs=1e-14)
    assert float(p @ alpha**2) == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize("design", [DEPENDENCE_DESIGN, REFERENCE_DESIGN], ids=["dep", "ref"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_design_has_its_marginals_and_s2_equal_to_s(design, fraction):
    s_max = build_design({**design, "s": 0.0}).s_max
    d = build_design({**design, "s": fraction * s_max})
    assert d.P.min() >= 0.0
    np.testing.assert_allclose(d.P.sum(axis=1), d.p_x, atol=1e-15)
    np.testing.assert_allclose(d.P.sum(axis=0), d.p_y, atol=1e-15)
    assert singular_values(d.P)[1] == pytest.approx(fraction * s_max, abs=1e-10)
    assert d.s2 == pytest.approx(d.s, abs=1e-10)
    if design is DEPENDENCE_DESIGN:
        assert d.p_x.min() >= DEPENDENCE_DESIGN["floor"]
        assert d.p_x.max() > 2 * d.p_x.min()  # not uniform: mixture noise moves it
        assert 0.9 < s_max < 1.0


def test_design_rejects_s_beyond_s_max():
    s_max = build_design({**DEPENDENCE_DESIGN, "s": 0.0}).s_max
    with pytest.raises(ValueError, match="outside"):
        build_design({**DEPENDENCE_DESIGN, "s": 1.01 * s_max})


def test_illustration_joint_matches_the_notebook_formula():
    from scipy.stats import binom

    m = 50
    P = illustration_joint(m)
    i = np.arange(1, m + 1)
    K = np.outer(i, i) + 0.5 * m
    K = K / K.sum(axis=0)[None, :]
    p = 0.8 * binom.pmf(np.arange(m), m - 1, 0.7) + 0.2 / m
    np.testing.assert_allclose(P, K * p[None, :], rtol=1e-12)
    np.testing.assert_allclose(P.sum(axis=0), p, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("quick", [False, True])
def test_grid_points_are_json_and_self_describing(name, quick):
    exp = EXPERIMENTS[name]
    points = exp.grid(Options(quick=quick))
    assert points
    for point in points:
        assert json.loads(json.dumps(point)) == point
        assert point["experiment"] == name
        assert exp.replicates(point) == point["reps"] >= 1


def test_dependence_grid_defaults_and_s2():
    points = EXPERIMENTS["dependence"].grid(Options())
    assert len(points) == 120
    assert [p["h_align"] for p in points[:40]] == [1.0] * 40  # the reference h keeps its seeds
    assert {p["h_align"] for p in points} == {1.0, 0.5, 0.0}
    assert {p["eps"] for p in points} == {0.0, 0.01, 0.05, 0.1}
    assert len({p["s"] for p in points}) == 10
    assert {p["n"] for p in points} == {1000} and {p["reps"] for p in points} == {2000}
    assert {tuple(p["ks"]) for p in points} == {(1, 2, 4, 8)}
    s_max = points[0]["s_max"]
    assert max(p["s"] for p in points) == pytest.approx(0.95 * s_max)
    for p in points:
        assert singular_values(build_design(p).P)[1] == pytest.approx(p["s"], abs=1e-10)
        assert p["s2"] == pytest.approx(p["s"], abs=1e-10)


def test_additive_share_is_the_part_of_var_h_that_balancing_removes_at_s_0():
    """1 - sigma_inf^2 / sigma_0^2 at s = 0 = (Var E[h|X] + Var E[h|Y]) / Var h under P_X P_Y."""
    from raking.simulation.experiments._dependence import additive_share

    shares = []
    for a in (0.0, 0.5, 1.0, 2.0):
        d = build_design({**DEPENDENCE_DESIGN, "h_align": a, "s": 0.0})
        mean = float(np.sum(d.P * d.h))
        h_x, h_y = (d.P * d.h).sum(1) / d.p_x, (d.P * d.h).sum(0) / d.p_y
        var = float(np.sum(d.P * (d.h - mean) ** 2))
        main = float(d.p_x @ (h_x - mean) ** 2 + d.p_y @ (h_y - mean) ** 2)
        share = additive_share({**DEPENDENCE_DESIGN, "h_align": a, "s": 0.7})  # s is ignored
        assert share == pytest.approx(main / var, rel=1e-10)
        shares.append(share)
    assert shares == sorted(shares) and 0.1 < shares[0] < 0.2 and shares[-1] > 0.9


def test_dependence_ratio_and_its_paired_se():
    """mse_ratio is MSE / empirical MSE on the same replicates; its s.e. is smaller than the
    unpaired one, and pure-noise h at s = 0 keeps most of its MSE (little additive part)."""
    points = EXPERIMENTS["dependence"].grid(Options(reps=400))
    clean = [p for p in points if p["eps"] == 0.0 and p["s"] == 0.0]
    assert [p["h_align"] for p in clean] == [1.0, 0.5, 0.0]
    assert {p["h_align"] for p in EXPERIMENTS["dependence"].grid(Options(quick=True))} == {1.0}
    for i, point in enumerate(clean):
        rows = dependence_point(point, _seed(i), "numba")
        emp = _pick(rows, "empirical")
        assert (emp["mse_ratio"], emp["mse_ratio_se"]) == (1.0, 0.0)
        bal = _pick(rows, "balanced", 8)
        assert bal["mse_ratio"] == pytest.approx(bal["mse"] / emp["mse"], rel=1e-12)
        unpaired = bal["mse_ratio"] * math.hypot(
            bal["mse_se"] / bal["mse"], emp["mse_se"] / emp["mse"]
        )
        assert 0 < bal["mse_ratio_se"] < unpaired
        assert bal["theory_ratio"] == pytest.approx(bal["theory_mse"] / emp["theory_mse"])
        # at s = 0 the ratio is 1 - additive share, to a few paired standard errors
        expected = 1.0 - point["additive_share"]
        assert abs(bal["mse_ratio"] - expected) < 4 * bal["mse_ratio_se"] + 0.03, point


def test_dependence_figure_draws_the_h_comparison_row(tmp_path):
    points = EXPERIMENTS["dependence"].grid(Options(reps=30))
    s_values = sorted({p["s"] for p in points})
    chosen = [p for p in points if p["s"] in s_values[::9] and p["eps"] in (0.0, 0.1)]
    frame = pd.DataFrame(
        [r for i, p in enumerate(chosen) for r in dependence_point(p, _seed(i), "numba")]
    )
    assert set(frame["h_align"]) == {1.0, 0.5, 0.0}
    every = EXPERIMENTS["dependence"].plot(frame, tmp_path / "all")
    reference = EXPERIMENTS["dependence"].plot(frame[frame["h_align"] == 1.0], tmp_path / "ref")
    assert [p.name for p in every] == ["dependence.png", "dependence.pdf"]
    assert every[0].read_bytes() != reference[0].read_bytes()  # the extra row is drawn


def test_mse_vs_k_paired_gap_matches_theory_and_beats_the_unpaired_one():
    (point,) = EXPERIMENTS["mse_vs_k"].grid(Options(n=(1000,), reps=4000))
    assert point["k_ref"] == 60 and point["ks"] == list(range(13))
    rows = k_sweep_point(point, _seed(), "numba")
    for r in rows[1:]:
        assert r["gap_theory"] == pytest.approx(r["sigma2_k"] - r["sigma2_inf"], rel=1e-8)
        assert abs(r["gap_mc"] - r["gap_theory"]) < 4 * r["gap_mc_se"], r
        if r["k"] >= 8:  # where the gap is small, pairing removes most of the MC noise
            assert r["gap_mc_se"] < 0.5 * r["mc_se"]
        assert r["ratio_se"] == pytest.approx(r["mc_se"] / r["sigma2_k"])
    other = EXPERIMENTS["theory_vs_mc"].grid(Options(n=(100,), reps=20))[0]
    assert "k_ref" not in other and "gap_mc" not in k_sweep_point(other, _seed(), "numba")[0]


def test_options_override_reps_and_n():
    assert [p["n"] for p in EXPERIMENTS["mse_vs_k"].grid(Options())] == [1000, 10_000, 100_000]
    points = EXPERIMENTS["mse_vs_k"].grid(Options(reps=50, n=(300, 400)))
    assert [p["n"] for p in points] == [300, 400]
    assert {p["reps"] for p in points} == {50}
    assert EXPERIMENTS["theory_vs_mc"].grid(Options())[0]["ks"] == list(range(9))
    assert [p["n"] for p in EXPERIMENTS["theory_vs_mc"].grid(Options())] == [100, 1000, 10000]


# --------------------------------------------------------------------------------------------
# Monte Carlo against theory
# --------------------------------------------------------------------------------------------


def test_theory_vs_mc_ratio_within_5_percent_at_n_10000():
    """n * MSE / sigma_k^2 within 5% for k = 0..8 at n = 10,000 (relative MC s.e. ~1.4%)."""
    (point,) = EXPERIMENTS["theory_vs_mc"].grid(Options(n=(10_000,), reps=10_000))
    rows = EXPERIMENTS["theory_vs_mc"].point(point, _seed(), "numba")
    assert [r["k"] for r in rows] == list(range(9))
    for r in rows:
        assert r["n_fallback"] == 0
        assert r["ratio"] == pytest.approx(1.0, abs=0.05), r
        assert r["mc_se"] / r["sigma2_k"] < 0.02
    sigmas = [r["sigma2_k"] for r in rows]
    assert sigmas[0] > 10 * sigmas[-1]  # the check has power: sigma_k^2 varies with k


@pytest.fixture(scope="module")
def dependence_rows():
    """The largest-s points of the default dependence grid at eps = 0 and eps = 0.1."""
    points = EXPERIMENTS["dependence"].grid(Options())
    s_top = max(p["s"] for p in points)
    chosen = [
        p for p in points if p["s"] == s_top and p["eps"] in (0.0, 0.1) and p["h_align"] == 1.0
    ]
    return {p["eps"]: dependence_point(p, _seed(i), "numba") for i, p in enumerate(chosen)}


def _pick(rows, estimator, k=None):
    (row,) = [r for r in rows if r["estimator"] == estimator and (k is None or r["k"] == k)]
    return row


def test_dependence_balancing_beats_empirical_at_high_s(dependence_rows):
    rows = dependence_rows[0.0]
    emp, bal = _pick(rows, "empirical"), _pick(rows, "balanced", 8)
    gap = emp["mse"] - bal["mse"]
    assert gap > 4 * math.hypot(emp["mse_se"], bal["mse_se"])
    assert bal["mse"] < 0.5 * emp["mse"]
    assert _pick(rows, "ipwi")["mse"] > 2 * bal["mse"]  # IPWI degrades with dependence


def test_dependence_noisy_marginals_sit_on_the_bias_floor(dependence_rows):
    rows = dependence_rows[0.1]
    reps = rows[0]["reps"]
    for k in (1, 2, 4, 8):
        row = _pick(rows, "balanced", k)
        se_mean = math.sqrt(row["variance"] / reps)
        assert abs(row["bias"] - row["theory_bias"]) < 4 * se_mean + 2e-3, row
        assert abs(row["theory_bias"]) > 20 * se_mean  # the bias is real, not MC noise
        assert row["theory_bias"] ** 2 > 0.8 * row["mse"]  # bias^2 dominates the MSE
    assert _pick(rows, "empirical")["theory_bias"] == 0.0


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_dependence_rows_match_theory(dependence_rows, eps):
    rows = dependence_rows[eps]
    assert len(rows) == 6
    for row in rows:
        assert row["n_fallback"] == 0
        assert row["mse"] == pytest.approx(row["theory_mse"], rel=0.15), row
        assert row["mse"] == pytest.approx(row["bias"] ** 2 + row["variance"], rel=1e-3)


def test_k_sweep_rows_have_bound_and_efficient_variance():
    point = EXPERIMENTS["mse_vs_k"].grid(Options(reps=200, quick=True))[0]
    rows = k_sweep_point(point, _seed(), "numba")
    assert rows[0]["bound"] is None
    for r in rows[1:]:
        assert r["sigma2_inf"] - 1e-12 <= r["sigma2_k"] <= r["bound"] + 1e-12


# --------------------------------------------------------------------------------------------
# Determinism, fallbacks, backends
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_rows(name):
    exp = EXPERIMENTS[name]
    point = exp.grid(Options(quick=True, reps=64))[-1]
    first = exp.point(point, _seed(3), "numba")
    assert first == exp.point(point, _seed(3), "numba")
    assert first != exp.point(point, _seed(4), "numba")
    assert all("n_fallback" in row for row in first)


def test_missing_mass_is_counted_not_dropped():
    # n = 30 pairs over 10 x 10 categories: many replicates have an empty category.
    point = EXPERIMENTS["dependence"].grid(Options(n=(30,), reps=200, quick=True))[0]
    rows = dependence_point(point, _seed(), "numba")
    balanced = [r for r in rows if r["estimator"] == "balanced"]
    assert all(r["reps"] == 200 for r in rows)
    assert all(0 < r["n_fallback"] < 200 for r in balanced)
    assert _pick(rows, "ipwi")["n_fallback"] > 0
    assert _pick(rows, "empirical")["n_fallback"] == 0


def test_illustration_balances_on_the_observed_support():
    point = EXPERIMENTS["illustration"].grid(Options(n=(150,)))[0]
    frame = pd.DataFrame(illustration_point(point, _seed(), "numba"))
    first = frame.iloc[0]
    assert first["n_empty_x"] > 0 and first["n_empty_y"] > 0  # 150 pairs, 50 x 50 categories
    empty = [json.loads(first["empty_x"]), json.loads(first["empty_y"])]
    assert [len(e) for e in empty] == [first["n_empty_x"], first["n_empty_y"]]
    P = illustration_joint()
    for k in (1, 2, 3):
        Q = frame[frame["k"] == k].pivot(index="x", columns="y", values="value").to_numpy()
        assert Q.sum() == pytest.approx(1.0)
        assert np.all(Q[empty[0], :] == 0.0) and np.all(Q[:, empty[1]] == 0.0)
        axis = 0 if k % 2 else 1  # X-step fixes the row sums, Y-step the column sums
        seen = np.setdiff1d(np.arange(50), empty[axis])
        target = P.sum(axis=1 - axis)[seen]
        np.testing.assert_allclose(Q.sum(axis=1 - axis)[seen], target / target.sum(), atol=1e-12)


def test_numpy_backend_matches_numba():
    point = EXPERIMENTS["mse_vs_k"].grid(Options(reps=300, quick=True))[0]
    a = k_sweep_point(point, _seed(), "numba")
    b = k_sweep_point(point, _seed(), "numpy")
    for ra, rb in zip(a, b, strict=True):
        assert ra["mse"] == pytest.approx(rb["mse"], rel=1e-12)


def test_cupy_backend_without_cupy_says_how_to_install():
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is installed; the GPU path is exercised on a GPU machine")
    point = EXPERIMENTS["mse_vs_k"].grid(Options(reps=10, quick=True))[0]
    with pytest.raises(ImportError, match=r"pip install -e '\.\[gpu\]'"):
        k_sweep_point(point, _seed(), "cupy")


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def test_dependence_summary(dependence_rows):
    frame = pd.DataFrame(dependence_rows[0.0] + dependence_rows[0.1])
    table = summarize("dependence", frame)
    assert list(table["eps"]) == [0.0, 0.1] and set(table["h_align"]) == {1.0}
    assert table["ratio_k8_se"].iloc[0] > 0
    assert (table["ratio_balanced_k8_empirical"].iloc[0]) < 0.5
    assert table["bias2_share_balanced"].iloc[1] > 0.8


@pytest.mark.parametrize("name", ["theory_vs_mc", "mse_vs_n", "mse_vs_k", "illustration"])
def test_summaries_of_quick_runs(name):
    exp = EXPERIMENTS[name]
    points = exp.grid(Options(quick=True, reps=100))
    seeds = np.random.SeedSequence(1).spawn(len(points))
    frame = pd.DataFrame(
        [r for p, s in zip(points, seeds, strict=True) for r in exp.point(p, s, "numba")]
    )
    table = summarize(name, frame)
    assert len(table) > 0
    if name == "mse_vs_n":
        assert set(table["k"]) == {0, 1, 2, 8}
        assert all(-1.3 < v < -0.7 for v in table["slope_log_mse_log_n"])
    if name == "illustration":
        odd = table[table["k"] % 2 == 1]
        assert (table["k"].tolist() == [0, 1, 2, 3]) and (odd["max_error_x"] < 0.01).all()


def test_summarize_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown experiment"):
        summarize("nope", pd.DataFrame())
