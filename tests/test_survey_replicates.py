"""Replicate weights re-raked (``rake(..., replicates=)``), against R survey's numbers.

The references come from ``tests/data/r/replicates.R`` (R survey: ``as.svrepdesign`` then
``calibrate(calfun="raking")``, ``svymean`` / ``svytotal`` / ``svyby``), committed as CSVs.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raking
from raking.exceptions import ConvergenceWarning
from raking.survey.data import api_population_margins, load_api
from raking.survey.replicates import bootstrap, hadamard, jackknife
from raking.survey.weights import _rake_replicates, _rake_units, _units

R_DIR = Path(__file__).parent / "data" / "r"
MARGINS = api_population_margins()
RTOL = 1e-6


def read_r(name: str) -> pd.DataFrame:
    return pd.read_csv(R_DIR / name, comment="#", keep_default_na=False)


@pytest.fixture(scope="module")
def r_estimates() -> pd.DataFrame:
    return read_r("replicates_estimates.csv")


def targets(*names: str) -> dict:
    return {name: MARGINS[name] for name in names}


def paired_strat() -> pd.DataFrame:
    """apistrat as 14 pseudo-strata of two PSUs (the construction of replicates.R)."""
    data = load_api("apistrat").sort_values(["stype", "snum"], kind="stable")
    rank = data.groupby("stype").cumcount()
    n_type = data.groupby("stype")["snum"].transform("size")
    k = data["stype"].map({"E": 6, "H": 4, "M": 4})
    data["pstrat"] = data["stype"] + (1 + (rank * k // n_type)).astype(str)
    data["ppsu"] = data["pstrat"] + "-" + (rank % 2).astype(str)
    return data.reset_index(drop=True)


def raked(case: str) -> raking.survey.results.RakeResult:
    if case == "jk1":
        return raking.rake(
            load_api("apiclus1"),
            targets("stype", "sch.wide"),
            weights="pw",
            cluster="dnum",
            fpc="fpc",
            replicates="jk1",
        )
    if case.startswith("jkn"):
        return raking.rake(
            load_api("apistrat"),
            targets("stype", "sch.wide", "comp.imp"),
            weights="pw",
            strata="stype",
            fpc="fpc",
            replicates="jkn",
            bounds=(0.5, 1.55) if case == "jkn_bounded" else None,
            replicate_mse=case == "jkn_mse",
        )
    return raking.rake(
        paired_strat(),
        targets("stype", "sch.wide"),
        weights="pw",
        strata="pstrat",
        cluster="ppsu",
        replicates=case,
        fay_rho=0.3 if case == "fay" else None,
    )


def ours(res: raking.survey.results.RakeResult, kind: str) -> list:
    """Our estimates in the order of the R CSV's rows of one kind."""
    if kind == "mean":
        return [res.mean("api00")]
    if kind == "total":
        return [res.total("enroll")]
    if kind == "proportion":
        return list(res.proportion("awards").estimates)
    if kind == "by_mean":
        return list(res.mean("api00", by="both").estimates)
    return list(res.total("enroll", by="both").estimates)


CASES = ["jk1", "jkn", "jkn_bounded", "jkn_mse", "brr", "fay"]


@pytest.mark.parametrize("case", CASES)
def test_estimates_and_ses_equal_r(case: str, r_estimates: pd.DataFrame) -> None:
    res = raked(case)
    ref = r_estimates[r_estimates["case"] == case]
    assert len(ref) == 8
    for kind, rows in ref.groupby("kind", sort=False):
        got = ours(res, kind)
        assert len(got) == len(rows)
        for est, (_, row) in zip(got, rows.iterrows(), strict=True):
            assert est.estimate == pytest.approx(row["estimate"], rel=RTOL), (case, kind)
            assert est.se == pytest.approx(row["se"], rel=RTOL), (case, kind, row["level"])
            assert "re-raked" in est.se_method


def test_mse_and_bounds_change_the_se(r_estimates: pd.DataFrame) -> None:
    """The cases differ from each other in R by more than RTOL, so matching each tests the option.

    (The jackknife's replicate mean is close to the estimate: mse moves the SEs of the
    proportions by 4e-5 relative, of the mean by 1e-8.)
    """
    se = {case: rows["se"].to_numpy() for case, rows in r_estimates.groupby("case")}
    for a, b in (("jkn_mse", "jkn"), ("jkn_bounded", "jkn"), ("fay", "brr")):
        assert np.max(np.abs(se[a] / se[b] - 1)) > 10 * RTOL, (a, b)


def test_mse_centres_on_the_estimate() -> None:
    res = raked("jkn_mse")
    w = res.replicate_weights.to_numpy()
    y = load_api("apistrat")["api00"].to_numpy()
    thetas = (w * y[:, None]).sum(0) / w.sum(0)
    est = res.mean("api00")
    n_h = load_api("apistrat")["stype"].map({"E": 100, "H": 50, "M": 50}).to_numpy()
    f_h = n_h / load_api("apistrat")["fpc"].to_numpy()
    deleted = np.argmax(w == 0, axis=0)  # the row each replicate deletes
    assert sorted(deleted) == list(range(200))
    rscales = ((1 - f_h) * (n_h - 1) / n_h)[deleted]
    var = np.sum(rscales * (thetas - est.estimate) ** 2)
    assert est.se == pytest.approx(math.sqrt(var), rel=1e-12)


def test_jk1_replicate_weights_equal_r() -> None:
    ref = read_r("replicates_weights_jk1.csv")
    data = load_api("apiclus1")
    assert (data["snum"].to_numpy() == ref["snum"].to_numpy()).all()
    res = raked("jk1")
    assert res.weights.to_numpy() == pytest.approx(ref["weight"].to_numpy(), rel=1e-9)
    got = res.replicate_weights
    assert got.shape == (183, 15)
    assert list(got.index) == list(data.index)
    want = ref[[f"raked.r{j}" for j in range(1, 16)]].to_numpy()
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-8, atol=1e-9)
    assert (got.to_numpy()[want == 0] == 0).all()  # the deleted PSU of each replicate


def test_jkn_and_fay_replicate_weights_equal_r() -> None:
    ref = read_r("replicates_weights_jkn.csv")
    res = raked("jkn")
    assert res.replicate_weights.shape == (200, 200)
    want = ref[[f"raked.r{j}" for j in range(1, 13)]].to_numpy()
    np.testing.assert_allclose(res.replicate_weights.iloc[:, :12], want, rtol=1e-8, atol=1e-9)
    ref = read_r("replicates_weights_fay.csv")
    res = raked("fay")
    data = paired_strat()
    assert (data["snum"].to_numpy() == ref["snum"].to_numpy()).all()
    assert res.replicate_weights.shape == (200, 16)  # 14 strata: R's 16 x 16 Hadamard matrix
    np.testing.assert_allclose(
        res.replicate_weights, ref[[f"raked.r{j}" for j in range(1, 17)]], rtol=1e-8
    )


def test_given_replicate_weights_equal_the_built_ones(r_estimates: pd.DataFrame) -> None:
    """R's JK1 design replicate weights passed as a table, with JK1's scale: R's JK1 numbers."""
    ref = read_r("replicates_weights_jk1.csv")
    table = ref[[f"design.r{j}" for j in range(1, 16)]]
    table.index = load_api("apiclus1").index
    res = raking.rake(
        load_api("apiclus1"),
        targets("stype", "sch.wide"),
        weights="pw",
        replicates=table,
        replicate_scale=14 / 15 * (1 - 15 / 757),
    )
    want = r_estimates[(r_estimates["case"] == "jk1") & (r_estimates["kind"] == "by_mean")]
    for est, se in zip(res.mean("api00", by="both").estimates, want["se"], strict=True):
        assert est.se == pytest.approx(se, rel=RTOL)
    assert list(res.replicate_weights.columns) == list(table.columns)
    np.testing.assert_allclose(
        res.replicate_weights, ref[[f"raked.r{j}" for j in range(1, 16)]], rtol=1e-8, atol=1e-9
    )
    # rscales of 0 for one replicate: that replicate drops out of the sum and the mean
    rs = np.ones(15)
    rs[3] = 0.0
    half = raking.rake(
        load_api("apiclus1"),
        targets("stype", "sch.wide"),
        weights="pw",
        replicates=table.to_numpy(),
        replicate_scale=0.5,
        replicate_rscales=rs,
    )
    thetas = (
        half.replicate_weights.to_numpy() * load_api("apiclus1")["api00"].to_numpy()[:, None]
    ).sum(0) / half.replicate_weights.to_numpy().sum(0)
    keep = rs > 0
    var = 0.5 * np.sum((thetas[keep] - thetas[keep].mean()) ** 2)
    assert half.mean("api00").se == pytest.approx(math.sqrt(var), rel=1e-10)


def test_notes_say_the_method() -> None:
    res = raked("jk1")
    est = res.mean("api00")
    assert est.se_method.startswith("replicate: JK1, R=15, re-raked")
    assert "replicate: JK1, R=15, re-raked" in res.summary()
    assert "replicate: BRR, R=16, re-raked" in raked("brr").mean("api00").se_method
    plain = raking.rake(load_api("apiclus1"), targets("stype"), weights="pw")
    assert plain.replicate_weights is None


def test_dropped_rows_are_nan_in_the_replicate_weights() -> None:
    data = load_api("apistrat")
    data.loc[data.index[:3], "sch.wide"] = None
    res = raking.rake(
        data,
        targets("stype", "sch.wide"),
        weights="pw",
        strata="stype",
        na="drop",
        replicates="jkn",
    )
    rw = res.replicate_weights
    assert rw.shape == (200, 197)  # one replicate per sampled row (PSU)
    assert rw.iloc[:3].isna().all().all() and not rw.iloc[3:].isna().any().any()


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_same_seed_same_replicates_and_se_near_linearisation() -> None:
    """Rao-Wu bootstrap: reproducible by seed; SE within Monte Carlo error of the linearisation.

    The bootstrap variance is unbiased for the with-replacement linearisation variance (no fpc)
    up to O(1/n); its relative SD is about sqrt(2 / (R - 1)) (chi-square with R - 1 degrees of
    freedom), so the SE's is about 1 / sqrt(2 (R - 1)) = 3.2% at R = 500. Allow 4 of those.
    """
    data = load_api("apistrat")
    common = dict(weights="pw", strata="stype")
    t = targets("stype", "sch.wide", "comp.imp")
    lin = raking.rake(data, t, **common)
    n_rep = 500
    boot = raking.rake(data, t, **common, replicates="bootstrap", n_replicates=n_rep, seed=7)
    again = raking.rake(data, t, **common, replicates="bootstrap", n_replicates=n_rep, seed=7)
    other = raking.rake(data, t, **common, replicates="bootstrap", n_replicates=n_rep, seed=8)
    assert boot.replicate_weights.equals(again.replicate_weights)
    assert not boot.replicate_weights.equals(other.replicate_weights)
    band = 4 / math.sqrt(2 * (n_rep - 1))
    for column in ("api00", "enroll", "meals"):
        ratio = boot.mean(column).se / lin.mean(column).se
        assert abs(ratio - 1) < band, (column, ratio)
    assert boot.total("enroll").se / lin.total("enroll").se == pytest.approx(1, abs=band)
    assert "bootstrap, R=500" in boot.mean("api00").se_method


def test_bootstrap_multipliers() -> None:
    """n_h - 1 draws per stratum scaled by n_h / (n_h - 1): mean 1 per PSU, right sum."""
    strata = np.repeat([0, 1, 2], [5, 8, 3])
    spec = bootstrap(
        strata, None, strata.size, n_replicates=4000, rng=np.random.default_rng(0), mse=False
    )
    a = spec.multipliers
    for h, nh in enumerate((5, 8, 3)):
        rows = a[strata == h]
        np.testing.assert_allclose(rows.sum(axis=0), nh, rtol=1e-12)  # (n_h - 1) n_h/(n_h - 1)
        assert np.all(np.isclose(rows * (nh - 1) / nh, np.round(rows * (nh - 1) / nh)))
        assert rows.mean() == pytest.approx(1.0, abs=0.02)
    assert spec.scale == pytest.approx(1 / 3999)


def test_jackknife_multipliers_and_scales() -> None:
    strata = np.repeat([0, 1], [3, 4])
    spec = jackknife(strata, None, np.array([0.25, 0.5]), 7, stratified=True, mse=False)
    assert spec.n_replicates == 7
    np.testing.assert_allclose(spec.rscales, [0.75 * 2 / 3] * 3 + [0.5 * 3 / 4] * 4)
    a = spec.multipliers
    np.testing.assert_allclose(np.diag(a), 0)
    assert a[1, 0] == pytest.approx(1.5) and a[5, 0] == 1.0 and a[5, 4] == pytest.approx(4 / 3)
    # a census stratum gives no replicates (R drops them)
    census = jackknife(strata, None, np.array([1.0, 0.5]), 7, stratified=True, mse=False)
    assert census.n_replicates == 4


def test_hadamard_matrices_equal_r() -> None:
    ref = pd.read_csv(R_DIR / "replicates_hadamard.csv", comment="#", dtype={"bits": str})
    for n, rows in ref.groupby("n"):
        want = np.array([[int(c) for c in b] for b in rows["bits"]])
        got = hadamard(int(n))
        assert got.shape == want.shape, n
        assert (got == want).all(), n
        h = 2 * got.astype(int) - 1
        assert (h @ h.T == got.shape[0] * np.eye(got.shape[0])).all()


# ------------------------------------------------------------------------------ kernel


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.sampled_from([None, 1, 4, 7]),
    bounded=st.booleans(),
    n_rep=st.integers(1, 6),
    method=st.sampled_from(["cells", "rows"]),
)
def test_batched_raking_equals_one_rake_per_replicate(
    seed: int, steps: int | None, bounded: bool, n_rep: int, method: str
) -> None:
    """Each replicate of the batched call (NumPy and Numba) equals raking it alone."""
    rng = np.random.default_rng(seed)
    n, levels = 60, [2, 3, 4]
    codes = [rng.permutation(np.arange(n) % size) for size in levels]
    d = rng.uniform(0.5, 2.0, n)
    t = [rng.uniform(0.5, 1.5, size) for size in levels]
    t = [tv * d.sum() / tv.sum() for tv in t]
    group = rng.integers(0, 6, n)
    mult = rng.uniform(0.5, 1.5, (6, n_rep))
    bounds = (0.4, 2.5) if bounded else None
    units = _units(codes, levels, d, method=method)
    opts = dict(steps=steps, tol=1e-10, max_iter=300, bounds=bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # the single bounded rake, q -> inf
        f_np, run_np = _rake_replicates(units, d, t, group, mult, backend="numpy", **opts)
        f_nb, run_nb = _rake_replicates(units, d, t, group, mult, backend="numba", **opts)
        np.testing.assert_allclose(f_nb, f_np, rtol=1e-11, atol=1e-13)
        assert (run_np.steps == run_nb.steps).all()
        assert (run_np.converged == run_nb.converged).all()
        unit_of_row = np.arange(n) if units.cell_of_row is None else units.cell_of_row
        for r in range(n_rep):
            dr = d * mult[group, r]
            one = _rake_units(_units(codes, levels, dr, method=method), dr, t, **opts)
            np.testing.assert_allclose(dr * f_np[r, unit_of_row], one.weights, rtol=1e-11)
            assert run_np.steps[r] == one.steps
            assert run_np.converged[r] == one.converged


def test_batched_numba_path_on_many_cells() -> None:
    """R x C above the dispatch threshold runs compiled and agrees with the NumPy path."""
    rng = np.random.default_rng(3)
    n, levels = 40_000, [4, 5, 6, 7]
    codes = [rng.integers(0, size, n) for size in levels]
    d = rng.uniform(1, 3, n)
    t = [np.full(size, d.sum() / size) for size in levels]
    group = rng.integers(0, 200, n)
    mult = rng.uniform(0.0, 2.0, (200, 120))
    units = _units(codes, levels, d)
    for bounds in (None, (0.5, 2.5)):
        opts = dict(steps=None, tol=1e-10, max_iter=200, bounds=bounds)
        f_auto, run = _rake_replicates(units, d, t, group, mult, **opts)
        f_np, _ = _rake_replicates(units, d, t, group, mult, backend="numpy", **opts)
        assert run.converged.all()
        np.testing.assert_allclose(f_auto, f_np, rtol=1e-10)
    # a warm start from factors of product form reaches the same raking (the KL projection)
    factors = [rng.normal(0, 0.2, size)[c] for c, size in zip(units.codes, levels, strict=True)]
    gamma = np.exp(sum(factors))
    opts = dict(steps=None, tol=1e-12, max_iter=200, bounds=None)
    cold, _ = _rake_replicates(units, d, t, group, mult, **opts)
    for backend in ("numpy", "numba"):
        warm, run_warm = _rake_replicates(
            units, d, t, group, mult, backend=backend, start=gamma, **opts
        )
        assert run_warm.converged.all()
        np.testing.assert_allclose(warm, cold, rtol=1e-9)


# ------------------------------------------------------------------------------ errors


def clus1(**kwargs: object) -> raking.survey.results.RakeResult:
    return raking.rake(load_api("apiclus1"), targets("stype"), weights="pw", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"replicates": "jackknife"}, r"replicates='jackknife' is not a replicate method.*'jkn'"),
        ({"replicates": [1, 2, 3]}, "replicates must be a method name or a 2-D table"),
        ({"replicates": "bootstrap", "n_replicates": 1}, "n_replicates must be an integer >= 2"),
        ({"replicates": "bootstrap", "n_replicates": 2.5}, "n_replicates must be an integer"),
        ({"replicates": "jk1", "n_replicates": 10}, "n_replicates applies to .*'bootstrap' only"),
        ({"replicates": "jk1", "seed": 1}, "seed applies to .*'bootstrap' only"),
        ({"replicates": "jk1", "fay_rho": 0.5}, "fay_rho applies to .*'fay' only"),
        ({"replicates": "jk1", "replicate_scale": 1.0}, "replicate_scale applies to .*matrix"),
        ({"n_replicates": 10}, "only apply to replicate weights; pass replicates="),
        ({"replicate_mse": True}, "only apply to replicate weights"),
        ({"replicates": "jk1", "replicate_mse": "yes"}, "replicate_mse must be True or False"),
        ({"replicates": "jkn", "cluster": "dnum"}, "replicates='jkn' needs the strata"),
        ({"replicates": "brr", "cluster": "dnum"}, "replicates='brr' needs the strata"),
        ({"replicates": "jk1", "strata": "stype"}, "use replicates='jkn'"),
    ],
)
def test_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        clus1(**kwargs)


def test_brr_needs_two_psus_per_stratum() -> None:
    data = paired_strat()
    data.loc[data.index[:3], "ppsu"] = ["E1-0", "E1-1", "E1-2"]  # a third PSU in E1
    with pytest.raises(ValueError, match=r"exactly two PSUs per stratum, but stratum 'E1' has 3"):
        raking.rake(
            data, targets("stype"), weights="pw", strata="pstrat", cluster="ppsu", replicates="brr"
        )
    with pytest.raises(ValueError, match="fay_rho must be a number strictly between 0 and 1"):
        raking.rake(
            paired_strat(),
            targets("stype"),
            weights="pw",
            strata="pstrat",
            cluster="ppsu",
            replicates="fay",
            fay_rho=1.0,
        )


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (np.ones((182, 5)), r"one row per row of data .* got \(182, 5\)"),
        (np.ones((183, 1)), "at least 2 columns"),
        (np.ones(183), "replicates must be a method name or a 2-D table"),
        (np.where(np.arange(183)[:, None] == 4, -1.0, np.ones((183, 3))), "finite and >= 0"),
        (np.where(np.arange(183)[:, None] == 4, np.nan, np.ones((183, 3))), "finite and >= 0"),
        (np.c_[np.ones(183), np.zeros(183)], "all 0 on the raked rows"),
    ],
)
def test_bad_replicate_tables(table: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        clus1(replicates=table)


def test_bad_scales() -> None:
    table = np.ones((183, 4))
    with pytest.raises(ValueError, match=r"one value per replicate \(4\), got 3"):
        clus1(replicates=table, replicate_rscales=[1, 1, 1])
    with pytest.raises(ValueError, match="replicate_scale must be a finite number > 0"):
        clus1(replicates=table, replicate_scale=-1)
    with pytest.raises(ValueError, match="replicate_rscales must be finite and >= 0"):
        clus1(replicates=table, replicate_rscales=[1, -1, 1, 1])


@pytest.mark.filterwarnings("ignore::raking.exceptions.SparseLevelWarning")
def test_unconverged_replicates_warn() -> None:
    """A jackknife replicate that deletes every row of a target level cannot meet it."""
    data = load_api("apiclus1")
    data = data.assign(g=np.where(data.index == 0, "a", "b"))  # row 0: the first district
    with pytest.warns(ConvergenceWarning, match=r"1 of 15 replicates did not converge"):
        res = raking.rake(
            data, {"g": {"a": 100.0, "b": 6094.0}}, weights="pw", cluster="dnum", replicates="jk1"
        )
    assert "1 of 15 replicates did NOT converge" in res.mean("api00").se_method


@pytest.mark.parametrize(("steps", "bounds"), [(3, None), (None, (0.6, 1.8)), (4, (0.6, 1.8))])
def test_each_replicate_is_raked_like_the_full_sample(steps, bounds) -> None:
    """Replicate r equals rake() of its own design weights with the same steps and bounds."""
    data = load_api("apistrat")
    t = targets("stype", "sch.wide", "comp.imp")
    opts = dict(steps=steps, bounds=bounds)
    res = raking.rake(data, t, weights="pw", strata="stype", replicates="jkn", **opts)
    design = raking.rake(data, t, weights="pw", strata="stype", replicates="jkn", steps=0)
    d_rep = design.replicate_weights.to_numpy() / design.weights.to_numpy()[:, None]
    d_rep *= data["pw"].to_numpy()[:, None]  # steps=0 rescales to the total: undo it
    for r in (0, 57, 199):
        keep = d_rep[:, r] > 0
        alone = raking.rake(data[keep], t, weights=d_rep[keep, r], **opts)
        np.testing.assert_allclose(
            res.replicate_weights.to_numpy()[keep, r], alone.weights.to_numpy(), rtol=1e-9
        )
        assert (res.replicate_weights.to_numpy()[~keep, r] == 0).all()


def test_trim_keeps_replicates_and_says_so() -> None:
    res = raked("jk1")
    trimmed = res.trim(upper=60.0)
    est = trimmed.mean("api00")
    # each replicate is trimmed too, as R's trimWeights (test_survey_calibration_replicates.py)
    assert "every replicate trimmed" in est.se_method
    assert est.se > 0
