"""Ratios, covariances, contrasts, proportion intervals and design effects against R survey.

R 4.2.2, survey 4.1.1 (tests/data/r/estimates.R -> estimates.csv): apiclus1 (id=~dnum, fpc),
apistrat (strata stype, fpc), two-stage apiclus2 (dnum + snum, fpc1 + fpc2) and JKn replicates
of apistrat, each raked (calibrate calfun="raking") to the population margins stype + sch.wide.
Everything to 1e-6 relative.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import raking
from raking.survey.data import api_population_margins, load_api
from raking.survey.estimates import EstimateTable, SurveyEstimate

R = pd.read_csv(Path(__file__).parent / "data" / "r" / "estimates.csv")
MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}
CASES = ["clus1", "strat", "clus2", "jkn", "jk1"]
RTOL = 1e-6


def r_values(case: str, quantity: str) -> np.ndarray:
    rows = R[(R["case"] == case) & R["quantity"].str.match(rf"^{quantity}(\.\d+)?$")]
    assert len(rows), (case, quantity)
    return rows["value"].to_numpy(dtype=np.float64)


_CACHE: dict[str, raking.survey.results.RakeResult] = {}


def raked(case: str) -> raking.survey.results.RakeResult:
    if case not in _CACHE:
        options = {
            "clus1": ("apiclus1", {"cluster": "dnum", "fpc": "fpc"}),
            "strat": ("apistrat", {"strata": "stype", "fpc": "fpc"}),
            "clus2": ("apiclus2", {"cluster": ["dnum", "snum"], "fpc": ["fpc1", "fpc2"]}),
            "jkn": ("apistrat", {"strata": "stype", "fpc": "fpc", "replicates": "jkn"}),
            "jk1": ("apiclus1", {"cluster": "dnum", "fpc": "fpc", "replicates": "jk1"}),
        }
        name, kwargs = options[case]
        frame = load_api(name).assign(
            api_diff=lambda f: f["api00"] - f["api99"],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", raking.exceptions.SparseLevelWarning)
            _CACHE[case] = raking.rake(frame, TWO, weights="pw", tol=1e-13, **kwargs)
    return _CACHE[case]


def ratio_columns(case: str) -> tuple[str, str]:
    """apiclus2 has missing enroll: api00 / api99 there (as the R script)."""
    return ("api00", "api99") if case == "clus2" else ("api.stu", "enroll")


@pytest.mark.parametrize("case", CASES)
def test_ratio_equals_r_svyratio(case: str) -> None:
    res = raked(case)
    one = res.ratio(*ratio_columns(case))
    assert isinstance(one, SurveyEstimate)
    np.testing.assert_allclose(one.estimate, r_values(case, "ratio.estimate"), rtol=1e-10)
    np.testing.assert_allclose(one.se, r_values(case, "ratio.se"), rtol=RTOL)
    by = res.ratio(*ratio_columns(case), by="stype")
    np.testing.assert_allclose(by.estimate, r_values(case, "ratio_by.estimate"), rtol=1e-10)
    np.testing.assert_allclose(by.se, r_values(case, "ratio_by.se"), rtol=RTOL)
    np.testing.assert_allclose(np.diag(by.cov), by.se.to_numpy() ** 2, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", ["mean", "total"])
def test_joint_estimates_cov_and_deff_equal_r(case: str, kind: str) -> None:
    table = getattr(raked(case), kind)(["api00", "api99"])
    assert isinstance(table, EstimateTable)
    np.testing.assert_allclose(table.estimate, r_values(case, f"{kind}2.estimate"), rtol=1e-10)
    np.testing.assert_allclose(table.cov.ravel(), r_values(case, f"{kind}2.cov"), rtol=RTOL)
    np.testing.assert_allclose(table.se.to_numpy() ** 2, np.diag(table.cov), rtol=1e-10)
    deff = [e.deff for e in table.estimates]
    replace = [e.deff_replace for e in table.estimates]
    np.testing.assert_allclose(deff, r_values(case, f"{kind}2.deff"), rtol=RTOL)
    np.testing.assert_allclose(replace, r_values(case, f"{kind}2.deff_replace"), rtol=RTOL)
    frame = table.to_frame(deff=True)
    assert list(frame.index) == ["api00", "api99"]
    np.testing.assert_allclose(frame["deff"], deff)


@pytest.mark.parametrize("case", CASES)
def test_domain_cov_contrast_and_deff_equal_r(case: str) -> None:
    table = raked(case).mean("api00", by="stype")
    np.testing.assert_allclose(table.estimate, r_values(case, "by.estimate"), rtol=1e-10)
    np.testing.assert_allclose(table.cov.ravel(), r_values(case, "by.cov"), rtol=RTOL)
    np.testing.assert_allclose(
        [e.deff for e in table.estimates], r_values(case, "by.deff"), rtol=RTOL
    )
    c = table.contrast({"E": 1, "H": -1})
    np.testing.assert_allclose(c.estimate, r_values(case, "contrast.estimate"), rtol=1e-10)
    np.testing.assert_allclose(c.se, r_values(case, "contrast.se"), rtol=RTOL)
    # a contrast of one label is that estimate
    single = table.contrast({"M": 1})
    assert single.estimate == pytest.approx(table["M"].estimate, rel=1e-14)
    assert single.se == pytest.approx(table["M"].se, rel=1e-10)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["logit", "beta"])
def test_proportion_intervals_equal_r_svyciprop(case: str, method: str) -> None:
    res = raked(case)
    p = res.proportion("yr.rnd", ci=method)["Yes"]
    assert p.estimate == pytest.approx(r_values(case, f"ciprop_{method}.estimate")[0], rel=1e-7)
    assert p.df == r_values(case, "degf")[0]
    np.testing.assert_allclose(p.ci, r_values(case, f"ciprop_{method}.ci"), rtol=RTOL)
    assert p.se == pytest.approx(r_values(case, "prop.se")[0], rel=RTOL)
    assert p.deff == pytest.approx(r_values(case, "prop.deff")[0], rel=RTOL)
    by = res.proportion("sch.wide", by="stype", ci=method)
    ci = by.ci.loc[[(s, "No") for s in ("E", "H", "M")]].to_numpy()
    dfs = [by[(s, "No")].df for s in ("E", "H", "M")]
    np.testing.assert_array_equal(dfs, r_values(case, "degf_by"))
    # R: svyby(~I(sch.wide == "No"), ~stype, svyciprop): lower bounds, then upper bounds
    np.testing.assert_allclose(ci.T.ravel(), r_values(case, f"ciprop_by_{method}.ci"), rtol=RTOL)
    assert (ci > 0).all() and (ci < 1).all()
    assert f"{method} CI (R svyciprop, t on {dfs[1]:g} df)" in by.summary()


def test_wald_proportion_unchanged_and_small_share_intervals_stay_in_unit_interval() -> None:
    res = raked("clus1")
    wald = res.proportion("yr.rnd")
    assert wald.ci.equals(res.proportion("yr.rnd", ci="wald").ci)
    lo, hi = wald["Yes"].ci
    assert lo < 0  # the normal interval crosses 0 for this small share
    for method in ("logit", "beta"):
        lo, hi = res.proportion("yr.rnd", ci=method)["Yes"].ci
        assert 0 < lo < wald["Yes"].estimate < hi < 1


def test_deff_is_not_the_weighting_design_effect() -> None:
    res = raked("strat")
    est = res.mean("api00")
    assert isinstance(est, SurveyEstimate)
    assert est.deff == pytest.approx(r_values("strat", "mean2.deff")[0], rel=RTOL)
    assert est.deff != pytest.approx(res.deff)
    assert "design effect" in str(est)


def test_joint_by_several_columns_cov_blocks_match_single_column_tables() -> None:
    res = raked("clus1")
    both = res.mean(["api00", "api99"], by="stype")
    assert both.labels[0] == ("E", "api00")
    one = res.mean("api00", by="stype")
    idx = [both.labels.index((s, "api00")) for s in one.labels]
    np.testing.assert_allclose(both.cov[np.ix_(idx, idx)], one.cov, rtol=1e-10)
    # the covariance is positive semi-definite
    assert np.linalg.eigvalsh(both.cov).min() > -1e-9 * np.abs(both.cov).max()


def test_contrast_of_replicates_equals_replicate_se_of_the_difference() -> None:
    # independent check: the JKn SE of mean_E - mean_H computed from the replicate weights
    res = raked("jkn")
    table = res.mean("api00", by="stype")
    reps = res.replicate_weights.to_numpy()
    data = load_api("apistrat")
    y = data["api00"].to_numpy(float)
    means = {}
    for s in ("E", "H"):
        ind = (data["stype"] == s).to_numpy(float)
        means[s] = (reps * (y * ind)[:, None]).sum(0) / (reps * ind[:, None]).sum(0)
    theta = means["E"] - means["H"]
    design = res._design.replicates.design
    var = design.scale * np.sum(design.rscales * (theta - theta.mean()) ** 2)
    assert table.contrast({"E": 1, "H": -1}).se == pytest.approx(math.sqrt(var), rel=1e-10)


def test_bad_input_names_the_argument() -> None:
    res = raked("strat")
    with pytest.raises(ValueError, match=r"numerator='stype'.*numeric"):
        res.ratio("stype", "enroll")
    with pytest.raises(ValueError, match=r"denominator='zero'.*total of 0"):
        res_zero = raking.rake(
            load_api("apistrat").assign(zero=0.0), TWO, weights="pw", strata="stype", fpc="fpc"
        )
        res_zero.ratio("api00", "zero")
    with pytest.raises(ValueError, match="ci must be one of"):
        res.proportion("yr.rnd", ci="wilson")
    table = res.mean("api00", by="stype")
    with pytest.raises(ValueError, match=r"weights names \['X'\]"):
        table.contrast({"X": 1})
    with pytest.raises(ValueError, match="needs the covariance"):
        res.proportion("yr.rnd").contrast({"Yes": 1})


def test_empty_domain_raises_for_ratio() -> None:
    data = load_api("apistrat")
    data["dom"] = pd.Categorical(np.where(data["stype"] == "E", "a", "b"), categories=["a", "b"])
    res = raking.rake(
        data, {"stype": MARGINS["stype"]}, weights="pw", strata="stype", fpc="fpc", unknown="zero"
    )
    frame = res.ratio("api.stu", "enroll", by="dom").to_frame()
    assert list(frame.index) == ["a", "b"]
    data2 = data.assign(stype=np.where(data["stype"] == "H", "Z", data["stype"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res2 = raking.rake(
            data2,
            {"stype": MARGINS["stype"].drop("H")},
            weights="pw",
            unknown="zero",
        )
    with pytest.raises(ValueError, match=r"by='stype'.*'Z' has no row"):
        res2.ratio("api.stu", "enroll", by="stype")


@pytest.mark.parametrize("case", CASES)
def test_contrast_of_joint_means_equals_mean_of_the_difference(case: str) -> None:
    # independent of the covariance code: the difference of two means over the same rows is the
    # mean of the difference, whose SE the single-column path computes
    res = raked(case)
    both = res.mean(["api00", "api99"])
    diff = both.contrast({"api00": 1, "api99": -1})
    direct = res.mean("api_diff")
    assert diff.estimate == pytest.approx(direct.estimate, rel=1e-12)
    assert diff.se == pytest.approx(direct.se, rel=1e-9)
    totals = res.total("api00", by="stype")
    np.testing.assert_allclose(np.diag(totals.cov), totals.se.to_numpy() ** 2, rtol=1e-9)
    assert totals.contrast({"E": 1, "H": 1, "M": 1}).estimate == pytest.approx(
        res.total("api00").estimate, rel=1e-12
    )


def test_new_results_print_se_method_and_design() -> None:
    ratio = raked("clus2").ratio("api00", "api99")
    text = str(ratio)
    assert "SE method: linearisation" in text and "2-stage design" in text
    assert "design effect" in text and "ratio api00 / api99" in text
    assert set(ratio.to_frame().columns) >= {"estimate", "se", "ci_low", "ci_high", "deff"}
    table = raked("jkn").mean(["api00", "api99"])
    assert "replicate: JKn" in str(table) and "covariance of the estimates" in str(table)
    by = raked("jkn").ratio("api.stu", "enroll", by="stype")
    assert list(by.to_frame().index) == ["E", "H", "M"] and "replicate: JKn" in str(by)


def test_many_domains_compute_the_covariance_only_when_asked(monkeypatch) -> None:
    # 40 domains: the SEs need K residual solves; the K x K matrix is built on first access
    # only (one design covariance, not K^2 polarised variances), equal to the polarisation.
    from raking.survey.design import SurveyDesign

    rng = np.random.default_rng(3)
    n = 4000
    df = pd.DataFrame(
        {
            "a": rng.integers(0, 3, n),
            "b": rng.integers(0, 4, n),
            "g": rng.integers(0, 40, n),
            "y": rng.normal(size=n),
            "psu": rng.integers(0, 200, n),
            "w": rng.uniform(1, 3, n),
        }
    )
    targets = {"a": {i: 1 / 3 for i in range(3)}, "b": {i: 0.25 for i in range(4)}}
    res = raking.rake(df, targets, weights="w", cluster="psu")
    calls = []
    original = SurveyDesign.covariance
    monkeypatch.setattr(
        SurveyDesign, "covariance", lambda self, z: calls.append(z.shape) or original(self, z)
    )
    table = res.mean("y", by="g")
    assert calls == []
    assert "40 x 40 matrix in .cov" in table.summary()
    assert calls == []
    cov = table.cov
    assert calls == [(n, 40)]
    np.testing.assert_allclose(np.diag(cov), table.se.to_numpy() ** 2, rtol=1e-10)
    # an off-diagonal entry: the variance of the difference of two domain means, by hand
    diff = res.mean("y", by="g")
    z = [
        res._linearised(
            np.where(df["g"] == g, df["y"] - diff.estimate[g], 0.0)
            / float(res.weights[df["g"] == g].sum())
        )
        for g in (0, 1)
    ]
    polarised = 0.25 * (res._sampling.variance(z[0] + z[1]) - res._sampling.variance(z[0] - z[1]))
    assert cov[0, 1] == pytest.approx(polarised, rel=1e-10)
    assert table.cov is cov  # computed once
    d = res.mean("y", by="g").contrast({0: 1, 1: -1})
    assert d.se == pytest.approx(math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), rel=1e-12)
