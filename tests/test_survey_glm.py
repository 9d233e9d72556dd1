"""RakeResult.glm: design-weighted GLMs on a raked design, against R survey's svyglm.

tests/data/r/glm.R writes glm_estimates.csv: svyglm on apiclus1 (one-stage cluster, fpc),
apistrat (stratified, fpc), apiclus2 (two-stage, fpc per stage) raked by calibrate(calfun =
"raking") to stype + sch.wide, on JKn (apistrat, three margins) and JK1 (apiclus1) replicate
designs raked the same way, and on apistrat and its JKn replicates calibrated linearly with
numeric totals too; gaussian, quasibinomial and quasipoisson families.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raking
from raking.survey.data import api_population_margins, load_api
from raking.survey.design import SurveyDesign
from raking.survey.glm import FAMILIES, _irls

R_DIR = Path(__file__).parent / "data" / "r"
MARGINS = api_population_margins()
TWO = {k: MARGINS[k] for k in ("stype", "sch.wide")}
THREE = {k: MARGINS[k] for k in ("stype", "sch.wide", "comp.imp")}
MODELS = {
    "gaussian": ("api00 ~ ell + meals + mobility", "gaussian"),
    "categorical": ("api00 ~ ell + stype", "gaussian"),
    "binomial": ("I(`comp.imp` == 'Yes') ~ ell + meals", "binomial"),
    "poisson": ("api.stu ~ ell + stype", "poisson"),
}
CASES = ["clus1", "strat", "strat_linear", "clus2", "jkn", "jk1", "jkn_linear"]
NUMERIC = {"enroll": 3811472.0, "api99": 3914069.0}  # apipop totals (glm.R)


@pytest.fixture(scope="module")
def r_glm() -> pd.DataFrame:
    return pd.read_csv(R_DIR / "glm_estimates.csv", comment="#")


_RAKED: dict[str, raking.survey.results.RakeResult] = {}


def raked(case: str) -> raking.survey.results.RakeResult:
    if case not in _RAKED:
        clus1 = dict(weights="pw", cluster="dnum", fpc="fpc", tol=1e-13)
        strat = dict(weights="pw", strata="stype", fpc="fpc", tol=1e-13)
        _RAKED[case] = {
            "clus1": lambda: raking.rake(load_api("apiclus1"), TWO, **clus1),
            "strat": lambda: raking.rake(load_api("apistrat"), TWO, **strat),
            "strat_linear": lambda: raking.calibrate(
                load_api("apistrat"), {**TWO, **NUMERIC}, method="linear", **strat
            ),
            "clus2": lambda: raking.rake(
                load_api("apiclus2"),
                TWO,
                weights="pw",
                cluster=["dnum", "snum"],
                fpc=["fpc1", "fpc2"],
                tol=1e-13,
            ),
            "jkn": lambda: raking.rake(load_api("apistrat"), THREE, **strat, replicates="jkn"),
            "jkn_linear": lambda: raking.calibrate(
                load_api("apistrat"), {**TWO, **NUMERIC}, method="linear", **strat, replicates="jkn"
            ),
            "jk1": lambda: raking.rake(load_api("apiclus1"), TWO, **clus1, replicates="jk1"),
        }[case]()
    return _RAKED[case]


def r_name(name: str) -> str:
    """formulaic's column name as R's: Intercept -> (Intercept), stype[T.H] -> stypeH."""
    if name == "Intercept":
        return "(Intercept)"
    if "[T." in name:
        var, level = name[:-1].split("[T.")
        return var + level
    return name


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", list(MODELS))
def test_glm_equals_r_svyglm(r_glm: pd.DataFrame, case: str, model: str) -> None:
    formula, family = MODELS[model]
    fit = raked(case).glm(formula, family=family)
    ref = r_glm[(r_glm["case"] == case) & (r_glm["model"] == model)]
    # formulaic's treatment coding: R's levels (sorted, first as reference) and R's order
    assert [r_name(n) for n in fit.params.index] == list(ref["term"])
    np.testing.assert_allclose(fit.params, ref["estimate"], rtol=1e-8)
    np.testing.assert_allclose(fit.bse, ref["se"], rtol=1e-6)
    np.testing.assert_allclose(fit.tvalues, ref["t"], rtol=1e-6)
    np.testing.assert_allclose(fit.pvalues, ref["p"], rtol=1e-5)
    ci = fit.conf_int()
    np.testing.assert_allclose(ci[0], ref["lower"], rtol=1e-6)
    np.testing.assert_allclose(ci[1], ref["upper"], rtol=1e-6)
    assert fit.df_resid == ref["df_resid"].iloc[0]
    assert fit.df_design == ref["degf"].iloc[0]
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_params())), fit.bse, rtol=1e-14)
    assert fit.nobs == raked(case).n


@pytest.mark.parametrize("case", ["clus1", "clus2", "jkn"])
def test_intercept_only_model_is_the_raked_mean(case: str) -> None:
    """svyglm(y ~ 1) is svymean(~y): the same influence values, hence the same SE."""
    res = raked(case)
    fit = res.glm("api00 ~ 1")
    mean = res.mean("api00")
    np.testing.assert_allclose(fit.params.iloc[0], mean.estimate, rtol=1e-12)
    np.testing.assert_allclose(fit.bse.iloc[0], mean.se, rtol=1e-9)


@pytest.mark.parametrize("case", ["clus1", "jkn"])
def test_intercept_only_model_after_trim_is_the_trimmed_mean(case: str) -> None:
    """After trim(), the SE keeps the calibration's projection (linearised) or trims each
    replicate, exactly as the mean does."""
    res = raked(case)
    trimmed = res.trim(upper=float(np.quantile(res._design.final, 0.9)))
    fit = trimmed.glm("api00 ~ 1")
    mean = trimmed.mean("api00")
    assert abs(fit.bse.iloc[0] - res.glm("api00 ~ 1").bse.iloc[0]) > 1e-6 * mean.se
    np.testing.assert_allclose(fit.params.iloc[0], mean.estimate, rtol=1e-12)
    np.testing.assert_allclose(fit.bse.iloc[0], mean.se, rtol=1e-9)


def test_poisson_intercept_is_the_log_of_the_mean() -> None:
    res = raked("strat")
    fit = res.glm("api.stu ~ 1", family="poisson")
    mean = res.mean("api.stu")
    np.testing.assert_allclose(fit.params.iloc[0], np.log(mean.estimate), rtol=1e-12)
    np.testing.assert_allclose(fit.bse.iloc[0], mean.se / mean.estimate, rtol=1e-9)


def test_batched_replicate_fits_equal_one_fit_per_replicate() -> None:
    res = raked("jkn")
    s = res._design
    frame = load_api("apistrat").iloc[s.sample_pos[s.raked_pos]]
    x = np.column_stack([np.ones(len(frame)), frame["ell"], frame["meals"]])
    y = (frame["comp.imp"] == "Yes").to_numpy(dtype=float)
    fam = FAMILIES["binomial"]
    w = s.replicates.weights(s.design).T[:7]
    batched, _ = _irls(x, y, w, fam, None)
    for r in range(w.shape[0]):
        one, _ = _irls(x, y, w[r : r + 1], fam, None)
        np.testing.assert_allclose(batched[r], one[0], rtol=1e-10)
    # the score equations hold at each replicate's solution
    mu = fam.linkinv(batched @ x.T)
    score = np.einsum("rm,rm,mp->rp", w, y - mu, x)
    assert np.max(np.abs(score)) < 1e-8 * np.einsum("rm,mp->rp", w, np.abs(x)).max()


@settings(max_examples=40, deadline=None)
@given(
    n_psu=st.integers(2, 6),
    per=st.integers(1, 4),
    strata=st.integers(1, 3),
    fpc=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_design_covariance_is_the_variance_of_every_combination(
    n_psu: int, per: int, strata: int, fpc: bool, seed: int
) -> None:
    """cov's diagonal is variance() of each column, and c' cov c is variance(z c)."""
    rng = np.random.default_rng(seed)
    psu = np.repeat(np.arange(n_psu * strata), per)
    stratum = psu // n_psu
    fraction = rng.uniform(0.05, 0.9, strata) if fpc else None
    design = SurveyDesign.one_stage(psu.size, strata=stratum, cluster=psu, fraction=fraction)
    z = rng.normal(size=(psu.size, 3))
    cov = design.covariance(z)
    np.testing.assert_allclose(cov, cov.T, rtol=1e-12, atol=1e-12)
    for j in range(3):
        np.testing.assert_allclose(cov[j, j], design.variance(z[:, j]), rtol=1e-10, atol=1e-12)
    c = rng.normal(size=3)
    np.testing.assert_allclose(c @ cov @ c, design.variance(z @ c), rtol=1e-9, atol=1e-10)


def test_two_stage_covariance_matches_variance() -> None:
    design = raked("clus2")._sampling
    z = np.random.default_rng(3).normal(size=(raked("clus2")._design.sample_pos.size, 2))
    cov = design.covariance(z)
    np.testing.assert_allclose(np.diag(cov), [design.variance(z[:, j]) for j in range(2)])
    np.testing.assert_allclose(cov[0, 1] * 2, design.variance(z.sum(axis=1)) - np.trace(cov))


def test_summary_table_and_intervals() -> None:
    fit = raked("clus1").glm("api00 ~ ell + stype")
    text = fit.summary()
    for part in (
        "Survey GLM: api00 ~ ell + stype",
        "gaussian",
        "stype[T.H]",
        "sandwich",
        "df = degf + 1 - p = 11",
        "clusters as PSUs",
    ):
        assert part in text
    frame = fit.to_frame()
    assert list(frame.columns) == ["estimate", "se", "t", "p", "lower", "upper"]
    wide, narrow = fit.conf_int(0.01), fit.conf_int(0.2)
    assert np.all(wide[0] < narrow[0]) and np.all(wide[1] > narrow[1])
    assert "JKn" in raked("jkn").glm("api00 ~ ell").se_method


@pytest.mark.parametrize(
    ("formula", "family", "match"),
    [
        ("api00 ~ nosuch + ell", "gaussian", r"formula='api00 ~ nosuch \+ ell' could not be"),
        ("api00 ~ ell + I(2 * ell)", "gaussian", r"singular model matrix.*'ell', 'I\(2 \* ell\)'"),
        ("api00 ~ ell", "logit", r"family='logit' is not a family.*'binomial'"),
        ("api00 ~ ell", "binomial", r"needs a response in \[0, 1\].*I\(column == 'level'\)"),
        ("I(api00 - 1000) ~ ell", "poisson", r"needs a response >= 0"),
        ("stype ~ ell", "gaussian", r"response of 3 columns"),
        ("ell + meals", "gaussian", r"needs a response and predictors"),
        ("api00 ~ ell +", "gaussian", r"could not be evaluated"),
    ],
)
def test_bad_input_is_a_clear_error(formula: str, family: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        raked("clus1").glm(formula, family=family)


def test_missing_values_in_a_model_column_are_refused() -> None:
    data = load_api("apiclus1")
    data.loc[data.index[:3], "ell"] = np.nan
    res = raking.rake(data, TWO, weights="pw", cluster="dnum", fpc="fpc")
    with pytest.raises(ValueError, match=r"3 missing value\(s\).*Fill them"):
        res.glm("api00 ~ ell")
