"""na="omit" of a raked result's estimates against R survey's na.rm=TRUE (and svyglm's na.omit).

tests/data/r/na_omit.R -> na_omit_estimates.csv (R 4.2.2, survey 4.1.1): the API samples with
missing values set by the school number (api00 where snum % 7 == 0, api99 where snum % 5 == 2,
ell where snum % 6 == 1, yr.rnd where snum % 4 == 3), raked (calibrate calfun="raking") to
stype + sch.wide: apistrat (stratified), apiclus1 (one-stage cluster), apiclus2 (two stages),
JKn replicates of apistrat and JK1 replicates of apiclus1. Estimates to 1e-6 relative,
GLM coefficients to 1e-8.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raking
from raking.survey.data import api_population_margins, load_api
from raking.survey.glm import _irls

R = pd.read_csv(Path(__file__).parent / "data" / "r" / "na_omit_estimates.csv")
MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}
CASES = ["strat", "clus1", "clus2", "jkn", "jk1"]
RTOL = 1e-6
OPTIONS = {
    "strat": ("apistrat", {"strata": "stype", "fpc": "fpc"}),
    "clus1": ("apiclus1", {"cluster": "dnum", "fpc": "fpc"}),
    "clus2": ("apiclus2", {"cluster": ["dnum", "snum"], "fpc": ["fpc1", "fpc2"]}),
    "jkn": ("apistrat", {"strata": "stype", "fpc": "fpc", "replicates": "jkn"}),
    "jk1": ("apiclus1", {"cluster": "dnum", "fpc": "fpc", "replicates": "jk1"}),
}


def with_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """The missing values of na_omit.R, by the school number."""
    frame = frame.copy()
    snum = frame["snum"]
    frame.loc[snum % 7 == 0, "api00"] = np.nan
    frame.loc[snum % 5 == 2, "api99"] = np.nan
    frame.loc[snum % 6 == 1, "ell"] = np.nan
    frame.loc[snum % 4 == 3, "yr.rnd"] = np.nan
    return frame


def r_values(case: str, quantity: str) -> np.ndarray:
    rows = R[(R["case"] == case) & R["quantity"].str.match(rf"^{quantity}(\.\d+)?$")]
    assert len(rows), (case, quantity)
    return rows["value"].to_numpy(dtype=np.float64)


_CACHE: dict[str, raking.survey.results.RakeResult] = {}


def raked(case: str) -> raking.survey.results.RakeResult:
    if case not in _CACHE:
        name, kwargs = OPTIONS[case]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", raking.exceptions.SparseLevelWarning)
            _CACHE[case] = raking.rake(
                with_missing(load_api(name)), TWO, weights="pw", tol=1e-13, **kwargs
            )
    return _CACHE[case]


def close(actual: object, expected: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", ["mean", "total"])
def test_mean_and_total_equal_r_na_rm(case: str, kind: str) -> None:
    res = raked(case)
    one = getattr(res, kind)("api00", na="omit")
    close(one.estimate, r_values(case, f"{kind}.estimate"))
    close(one.se, r_values(case, f"{kind}.se"))
    close(one.deff, r_values(case, f"{kind}.deff"))
    close(one.deff_replace, r_values(case, f"{kind}.deff_replace"))
    omitted = int(r_values(case, "n_api00_missing")[0])
    assert any(f"na='omit': {omitted} raked row(s)" in note for note in one.notes)
    both = getattr(res, kind)(["api00", "api99"], na="omit")
    close(both.estimate, r_values(case, f"{kind}2.estimate"))
    close(both.cov.ravel(), r_values(case, f"{kind}2.cov"))
    close(both.se**2, np.diag(both.cov), rtol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_proportion_and_intervals_equal_r_na_rm(case: str) -> None:
    res = raked(case)
    table = res.proportion("yr.rnd", na="omit")
    close(table.estimate, r_values(case, "prop.estimate"))
    close(table.se, r_values(case, "prop.se"))
    for method in ("logit", "beta"):
        yes = res.proportion("yr.rnd", ci=method, na="omit")["Yes"]
        close(yes.estimate, r_values(case, f"ciprop_{method}.estimate"))
        close(yes.confint(0.95), r_values(case, f"ciprop_{method}.ci"))


@pytest.mark.parametrize("case", CASES)
def test_domain_proportions_totals_and_intervals_equal_r_na_rm(case: str) -> None:
    """svyby(..., na.rm=TRUE): shares of yr.rnd and totals of api00 by stype; svyciprop by
    sch.wide (R's df: the domain's, its missing rows included). Degenerate domains (a share of 0
    or 1, whose interval R's IRLS only approaches) are left out."""
    res = raked(case)
    table = res.proportion("yr.rnd", by="stype", na="omit")  # (domain, level), levels inner
    r_order = [(dom, lv) for lv in ("No", "Yes") for dom in ("E", "H", "M")]
    close(table.estimate.loc[r_order], r_values(case, "prop_by.estimate"), rtol=1e-10)
    # R's SE(svyby) is domains x levels, written by domain: the table's order
    np.testing.assert_allclose(table.se, r_values(case, "prop_by.se"), rtol=RTOL, atol=1e-12)
    totals = res.total("api00", by="stype", na="omit")
    close(totals.estimate, r_values(case, "total_by.estimate"))
    close(totals.se, r_values(case, "total_by.se"))
    for method in ("logit", "beta"):
        ours = res.proportion("yr.rnd", by="sch.wide", ci=method, na="omit")
        expected = r_values(case, f"ciprop_by_{method}.ci").reshape(2, 2, order="F")
        for i, domain in enumerate(("No", "Yes")):
            one = ours[(domain, "Yes")]
            if 0 < one.estimate < 1:
                close(one.confint(0.95), expected[i])


@pytest.mark.parametrize("case", ["clus1", "jk1"])
def test_logit_and_beta_intervals_of_a_share_of_zero_are_nan(case: str) -> None:
    """A domain without any row of a level (p = 0, and p = 1 for the other level): no logit, no
    effective sample size, NaN bounds rather than an exception."""
    table = raked(case).proportion("yr.rnd", by="sch.wide", ci="logit", na="omit")
    frame = table.to_frame()
    p = frame["estimate"].to_numpy()
    empty = np.isclose(p, 0.0, rtol=0, atol=1e-12) | np.isclose(p, 1.0, rtol=0, atol=1e-12)
    assert empty.sum() == 2
    assert frame.loc[empty, ["ci_low", "ci_high"]].isna().all().all()
    assert frame.loc[~empty, ["ci_low", "ci_high"]].notna().all().all()
    beta = raked(case).proportion("yr.rnd", by="sch.wide", ci="beta", na="omit").to_frame()
    assert beta.loc[empty, ["ci_low", "ci_high"]].isna().all().all()


@pytest.mark.parametrize("case", CASES)
def test_ratio_equals_r_na_rm(case: str) -> None:
    res = raked(case)
    one = res.ratio("api00", "api99", na="omit")
    close(one.estimate, r_values(case, "ratio.estimate"))
    close(one.se, r_values(case, "ratio.se"))
    table = res.ratio("api00", "api99", by="stype", na="omit")
    close(table.estimate, r_values(case, "ratio_by.estimate"))
    close(table.se, r_values(case, "ratio_by.se"))


@pytest.mark.parametrize("case", CASES)
def test_domain_means_cov_contrast_equal_r_na_rm(case: str) -> None:
    res = raked(case)
    table = res.mean("api00", by="stype", na="omit")
    close(table.estimate, r_values(case, "by.estimate"))
    close(table.se, r_values(case, "by.se"))
    close(table.deff, r_values(case, "by.deff"))
    close(table.cov.ravel(), r_values(case, "by.cov"))
    contrast = table.contrast({"E": 1, "H": -1})
    close(contrast.estimate, r_values(case, "contrast.estimate"))
    close(contrast.se, r_values(case, "contrast.se"))


@pytest.mark.parametrize("case", CASES)
def test_quantiles_equal_r_na_rm(case: str) -> None:
    res = raked(case)
    frame = res.quantile("api00", [0.1, 0.5, 0.9], na="omit").frame
    close(frame["quantile"], r_values(case, "quantile"))
    for ours, theirs in (("ci_low", "ci_l"), ("ci_high", "ci_u"), ("se", "se")):
        expected = r_values(case, f"quantile.{theirs}")
        assert np.array_equal(np.isnan(frame[ours]), np.isnan(expected))
        keep = ~np.isnan(expected)
        close(frame[ours].to_numpy()[keep], expected[keep])
    by = res.quantile("api00", [0.1, 0.5, 0.9], by="stype", na="omit").frame
    for level in ("E", "H", "M"):
        close(by.loc[level, "quantile"], r_values(case, f"quantile_{level}"))
        expected = r_values(case, f"quantile_{level}.se")
        keep = ~np.isnan(expected)
        close(by.loc[level, "se"].to_numpy()[keep], expected[keep])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("model", "formula", "family"),
    [
        ("gaussian", "api00 ~ ell + meals", "gaussian"),
        ("binomial", "I(api00 > 700) ~ ell + meals", "binomial"),
    ],
)
def test_glm_equals_r_svyglm_na_omit(case: str, model: str, formula: str, family: str) -> None:
    """R drops rows where api00 is NA even inside I(api00 > 700) (pandas' NaN > 700 is False)."""
    fit = raked(case).glm(formula, family=family, na="omit")
    close(fit.params, r_values(case, f"glm_{model}.estimate"), rtol=1e-8)
    close(fit.bse, r_values(case, f"glm_{model}.se"))
    assert fit.df_resid == r_values(case, f"glm_{model}.df_resid")[0]
    frame = with_missing(load_api(OPTIONS[case][0]))
    assert fit.nobs == int((frame["api00"].notna() & frame["ell"].notna()).sum())
    assert any("na='omit'" in note for note in fit.notes)


# ------------------------------------------------------------------------------ errors


def test_bad_na_names_the_argument() -> None:
    res = raked("strat")
    calls = [
        lambda: res.mean("api00", na="bogus"),
        lambda: res.total("api00", na="drop"),
        lambda: res.proportion("yr.rnd", na=None),
        lambda: res.ratio("api00", "api99", na="Omit"),
        lambda: res.quantile("api00", 0.5, na="bogus"),
        lambda: res.glm("api00 ~ ell", na="bogus"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^na must be 'error' or 'omit', got"):
            call()


@pytest.mark.parametrize("case", ["strat", "jkn"])
def test_missing_values_with_na_error_name_the_column_and_the_fix(case: str) -> None:
    res = raked(case)
    pattern = r"column 'api00' has 33 missing value\(s\) among the raked rows.*na='omit'"
    for call in (
        lambda: res.mean("api00"),
        lambda: res.total(["api00", "enroll"]),
        lambda: res.mean("api00", by="stype"),
        lambda: res.quantile("api00", 0.5),
        lambda: res.ratio("api00", "enroll"),
    ):
        with pytest.raises(ValueError, match=pattern):
            call()
    with pytest.raises(ValueError, match=r"column 'api99' has \d+ missing.*na='omit'"):
        res.ratio("enroll", "api99")
    with pytest.raises(ValueError, match=r"column 'yr.rnd' has missing values.*na='omit'"):
        res.proportion("yr.rnd", ci="beta")
    glm_pattern = r"columns 'api00', 'ell' have missing values in \d+ row\(s\) .*; formula="
    with pytest.raises(ValueError, match=glm_pattern + r"'api00 ~ ell' .*na='omit'"):
        res.glm("api00 ~ ell")
    with pytest.raises(ValueError, match=glm_pattern + r"'I\(api00 > 700\) ~ ell'"):
        res.glm("I(api00 > 700) ~ ell", family="binomial")


def test_a_domain_without_non_missing_rows_is_a_clear_error() -> None:
    frame = with_missing(load_api("apistrat"))
    frame.loc[frame["stype"] == "H", "api00"] = np.nan
    res = raking.rake(frame, TWO, weights="pw", strata="stype", fpc="fpc")
    pattern = r"na='omit' leaves no row: 'api00' is missing on every one of the raked rows of "
    pattern += r"the domain 'H' of by='stype'"
    for call in (
        lambda: res.mean("api00", by="stype", na="omit"),
        lambda: res.total(["api00"], by="stype", na="omit"),
        lambda: res.quantile("api00", 0.5, by="stype", na="omit"),
    ):
        with pytest.raises(ValueError, match=pattern):
            call()
    with pytest.raises(ValueError, match=r"leaves no row: 'api00', 'api99' .* domain 'H'"):
        res.ratio("api00", "api99", by="stype", na="omit")
    everywhere = frame.assign(api00=np.nan)
    res = raking.rake(everywhere, TWO, weights="pw", strata="stype", fpc="fpc")
    with pytest.raises(ValueError, match=r"leaves no row: 'api00' is missing on every one of"):
        res.mean("api00", na="omit")
    with pytest.raises(ValueError, match=r"na='omit' leaves no row"):
        res.glm("api00 ~ ell", na="omit")


def test_singular_model_matrix_names_formula_and_aliased_columns() -> None:
    data = with_missing(load_api("apistrat")).assign(ell2=lambda f: 2 * f["ell"])
    frame_res = raking.rake(data, TWO, weights="pw", strata="stype", fpc="fpc")
    with pytest.raises(ValueError, match=r"formula='api00 ~ ell \+ ell2'.*\['ell', 'ell2'\]"):
        frame_res.glm("api00 ~ ell + ell2", na="omit")


def test_no_missing_values_gives_the_same_numbers_with_either_na() -> None:
    res = raked("jk1")
    for a, b in (
        (res.mean("enroll"), res.mean("enroll", na="omit")),
        (res.ratio("api.stu", "enroll"), res.ratio("api.stu", "enroll", na="omit")),
    ):
        assert (a.estimate, a.se) == (b.estimate, b.se)
        assert a.notes == b.notes
    fit, fit_omit = res.glm("api.stu ~ meals"), res.glm("api.stu ~ meals", na="omit")
    pd.testing.assert_series_equal(fit.bse, fit_omit.bse)
    assert fit.df_resid == fit_omit.df_resid


# ------------------------------------------------------------------------------ properties


def _indicator_estimate(res, kind: str, y: np.ndarray, keep: np.ndarray, domain: np.ndarray):
    """The estimate of y 1_keep over the domain of `keep` by the public API (independent path)."""
    frame = res._data.assign(_y=np.where(keep, y, 0.0), _d=np.where(keep & domain, "in", "out"))
    other = raking.rake(
        frame, TWO, weights="pw", strata="stype", fpc="fpc", tol=1e-13
    )  # the same raking on the same rows: the same weights
    table = getattr(other, kind)("_y", by="_d")
    return table["in"]


@settings(max_examples=15, deadline=None)
@given(
    modulus=st.integers(2, 9),
    remainder=st.integers(0, 8),
    kind=st.sampled_from(["mean", "total"]),
    level=st.sampled_from(["E", "H", "M", None]),
)
def test_omit_equals_the_domain_of_the_non_missing_rows(
    modulus: int, remainder: int, kind: str, level: str | None
) -> None:
    """na="omit" is the domain estimate of y with the missing rows' y set to 0, outside.

    Linearisation: missing values where snum % modulus == remainder, and the estimate of that
    column with na="omit" (optionally in a domain of stype) equals the domain estimate (the
    domain: present and in the level) of a column whose missing values are 0, computed by
    ``by=`` on an indicator column of a second, identical raking.
    """
    data = load_api("apistrat")
    missing = (data["snum"] % modulus == remainder % modulus).to_numpy()
    if missing.all():
        return
    y = data["api00"].to_numpy(dtype=np.float64)
    frame = data.assign(api00=np.where(missing, np.nan, y))
    res = raking.rake(frame, TWO, weights="pw", strata="stype", fpc="fpc", tol=1e-13)
    domain = np.ones(len(frame), bool) if level is None else (frame["stype"] == level).to_numpy()
    if not np.any(domain & ~missing):
        return
    if level is None:
        ours = getattr(res, kind)("api00", na="omit")
    else:
        ours = getattr(res, kind)("api00", by="stype", na="omit")[level]
    expected = _indicator_estimate(res, kind, y, ~missing, domain)
    np.testing.assert_allclose(ours.estimate, expected.estimate, rtol=1e-10)
    np.testing.assert_allclose(ours.se, expected.se, rtol=1e-8)


@pytest.mark.parametrize("case", ["strat", "clus2"])
def test_omit_equals_explicit_domain_linearisation(case: str) -> None:
    """The SE of the mean with na="omit" from its formula: influence (y - m)/N_D on the kept rows,
    0 elsewhere, through the raking's residual and the design's variance (no re-rake)."""
    res = raked(case)
    s = res._design
    y = res._data["api00"].to_numpy(dtype=np.float64)[s.sample_pos]
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    keep = ~np.isnan(y)
    big_n = w[keep].sum()
    m = float(np.dot(w[keep], y[keep]) / big_n)
    u = np.where(keep, np.nan_to_num(y) - m, 0.0) / big_n
    se = np.sqrt(res._sampling.variance(res._linearised(u)))
    one = res.mean("api00", na="omit")
    np.testing.assert_allclose(one.estimate, m, rtol=1e-13)
    np.testing.assert_allclose(one.se, se, rtol=1e-10)


def test_chunked_replicate_irls_equals_one_batch() -> None:
    """The replicate refits in chunks give the numbers of one batched IRLS."""
    from raking.survey import glm

    res = raked("jkn")
    old = glm._REPLICATE_CHUNK
    try:
        glm._REPLICATE_CHUNK = 10**6  # every replicate in one batch
        fit = res.glm("api00 ~ ell + meals", na="omit")
        glm._REPLICATE_CHUNK = 7  # the replicates in chunks of 7, the last one shorter
        chunked = res.glm("api00 ~ ell + meals", na="omit")
    finally:
        glm._REPLICATE_CHUNK = old
    assert res._design.replicates.design.n_replicates > 7
    np.testing.assert_allclose(chunked.bse, fit.bse, rtol=1e-12)
    np.testing.assert_allclose(chunked.params, fit.params, rtol=0)
    s = res._design
    frame = res._data.iloc[s.sample_pos[s.raked_pos]]
    keep = frame[["api00", "ell", "meals"]].notna().all(axis=1).to_numpy()
    x = np.column_stack([np.ones(keep.sum()), frame["ell"][keep], frame["meals"][keep]])
    y = frame["api00"].to_numpy()[keep]
    weights = s.replicates.weights(s.design)[keep]
    one, _ = _irls(x, y, weights[:, :3].T.copy(), glm.FAMILIES["gaussian"], None)
    for r in range(3):
        root = np.sqrt(weights[:, r])
        beta = np.linalg.lstsq(root[:, None] * x, root * y, rcond=None)[0]
        np.testing.assert_allclose(one[r], beta, rtol=1e-9)
