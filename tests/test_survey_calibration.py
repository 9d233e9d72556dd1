"""raking.calibrate (linear, raking, logit; numeric totals) and RakeResult.trim against R survey.

The R numbers are in tests/data/r/calibrate_*.csv, written by tests/data/r/calibrate.R (R 4.2.2,
survey 4.1.1); R is not needed to run these tests.
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
from raking.exceptions import ConvergenceWarning, EmptyCategoryError, NegativeWeightWarning
from raking.survey.calibration import calibrate
from raking.survey.data import load_api
from raking.survey.frontend import rake
from raking.survey.linearization import CalibrationMatrix, CalibrationProjection

# GREG gives one negative weight on apiclus2 (as R); test_linear_calibration_warns_about_... checks
# the warning itself
pytestmark = pytest.mark.filterwarnings("ignore::raking.exceptions.NegativeWeightWarning")

R = Path(__file__).parent / "data" / "r"
R_WEIGHTS = pd.read_csv(R / "calibrate_weights.csv")
R_ESTIMATES = pd.read_csv(R / "calibrate_estimates.csv")

CLUS1 = load_api("apiclus1")
STRAT = load_api("apistrat")
CLUS2 = load_api("apiclus2")
CATEGORICAL = {"stype": {"E": 4421, "H": 755, "M": 1018}, "sch.wide": {"No": 1072, "Yes": 5122}}
ENROLL = {**CATEGORICAL, "enroll": 3811472}  # sum(apipop$enroll, na.rm = TRUE)
BOTH = {**ENROLL, "api99": 3914069}  # sum(apipop$api99)
CLUSTER = {"weights": "pw", "cluster": "dnum", "fpc": "fpc"}
STRATA = {"weights": "pw", "strata": "stype", "fpc": "fpc"}
TWO_STAGE = {"weights": "pw", "cluster": ["dnum", "snum"], "fpc": ["fpc1", "fpc2"]}
API99 = {"stype": CATEGORICAL["stype"], "api99": 3914069}

# case of calibrate.R: (sample, totals, design, method, bounds)
CASES = {
    "clus1_linear": (CLUS1, ENROLL, CLUSTER, "linear", None),
    "clus1_raking": (CLUS1, ENROLL, CLUSTER, "raking", None),
    "clus1_logit": (CLUS1, ENROLL, CLUSTER, "logit", (0.5, 2.5)),
    "clus1_linear_bounds": (CLUS1, ENROLL, CLUSTER, "linear", (0.7, 1.8)),
    "clus1_raking_bounds": (CLUS1, ENROLL, CLUSTER, "raking", (0.7, 1.8)),
    "clus1_linear_numeric_only": (
        CLUS1,
        {"enroll": 3811472},
        {**CLUSTER, "total": 6194},
        "linear",
        None,
    ),
    "clus1_logit_categorical": (CLUS1, CATEGORICAL, CLUSTER, "logit", (0.6, 1.7)),
    "clus1_linear_categorical": (CLUS1, CATEGORICAL, CLUSTER, "linear", None),
    "strat_linear": (STRAT, BOTH, STRATA, "linear", None),
    "strat_raking": (STRAT, BOTH, STRATA, "raking", None),
    "strat_logit": (STRAT, BOTH, STRATA, "logit", (0.5, 2.0)),
    "strat_linear_bounds": (STRAT, BOTH, STRATA, "linear", (0.75, 1.3)),
    "clus2_linear": (CLUS2, API99, TWO_STAGE, "linear", None),
    "clus2_logit": (CLUS2, API99, TWO_STAGE, "logit", (0.5, 2.5)),
}
# trimWeights(case, lower=, upper=, strict=) of calibrate.R
TRIMS = {
    "strat_raking_trim": ("strat_raking", 15, 40, False),
    "strat_raking_trim_strict": ("strat_raking", 15, 40, True),
    "clus1_linear_trim": ("clus1_linear", None, 60, False),
    "clus1_linear_trim_strict": ("clus1_linear", None, 60, True),
}


def _calibrated(case: str, **kwargs) -> raking.survey.results.RakeResult:
    data, totals, design, method, bounds = CASES[case]
    return calibrate(data, totals, method=method, bounds=bounds, **design, **kwargs)


def _assert_matches_r(res, case: str) -> None:
    r_weights = R_WEIGHTS.loc[R_WEIGHTS["case"] == case, "weight"].to_numpy()
    np.testing.assert_allclose(res.weights.to_numpy(), r_weights, rtol=1e-8, atol=0)
    rows = R_ESTIMATES[R_ESTIMATES["case"] == case]
    assert len(rows) == 6
    for row in rows.itertuples():
        est = res.mean(row.variable) if row.statistic == "mean" else res.total(row.variable)
        assert est.estimate == pytest.approx(row.estimate, rel=1e-9), (row.statistic, row.variable)
        # a calibrated variable's total has SE 0 up to rounding in R and here
        floor = 1e-8 * abs(row.estimate) if row.se < 1e-6 * abs(row.estimate) else 0.0
        assert est.se == pytest.approx(row.se, rel=1e-6, abs=floor), (row.statistic, row.variable)


def test_the_r_data_are_the_repository_data():
    # calibrate.R reads R's data(api); the rows must be those of raking/data/api, in order
    for case, (data, *_) in CASES.items():
        n = int((R_WEIGHTS["case"] == case).sum())
        assert n == len(data), case


@pytest.mark.parametrize("case", list(CASES))
def test_weights_and_standard_errors_equal_r_calibrate(case):
    res = _calibrated(case, tol=1e-13)
    assert res.converged
    _assert_matches_r(res, case)


@pytest.mark.parametrize("case", list(TRIMS))
def test_trim_equals_r_trim_weights(case):
    source, lower, upper, strict = TRIMS[case]
    trimmed = _calibrated(source, tol=1e-13).trim(lower=lower, upper=upper, strict=strict)
    _assert_matches_r(trimmed, case)


def test_strict_trimming_puts_every_weight_inside_and_keeps_the_total():
    res = _calibrated("strat_raking")
    once = res.trim(lower=15, upper=40)
    strict = res.trim(lower=15, upper=40, strict=True)
    total = res.weights.sum()
    assert once.weights.sum() == pytest.approx(total, rel=1e-13)
    assert strict.weights.sum() == pytest.approx(total, rel=1e-13)
    assert once.weights.max() > 40  # the shared excess pushed some past the bound again
    assert strict.weights.between(15, 40).all()
    # the note and the margins say how far the margins moved
    assert strict.marginal_error > 1e-4 > res.marginal_error
    assert set(strict.variable_errors.index) == {"stype", "sch.wide", "enroll", "api99"}
    note = strict.mean("api00").notes[-1]
    assert "trimmed to [15, 40]" in note and "strict=True" in note
    assert f"{strict.marginal_error:.3g}" in note
    assert "trimmed" in strict.summary()


def test_trim_without_weights_outside_changes_nothing():
    res = _calibrated("strat_raking")
    same = res.trim(lower=1, upper=1000)
    np.testing.assert_array_equal(same.weights.to_numpy(), res.weights.to_numpy())
    assert same.mean("api00").se == pytest.approx(res.mean("api00").se, rel=1e-12)


def test_trim_of_a_rake_result():
    margins = {"stype": CATEGORICAL["stype"], "sch.wide": CATEGORICAL["sch.wide"]}
    res = rake(STRAT, margins, weights="pw", strata="stype", fpc="fpc")
    trimmed = res.trim(upper=40, strict=True)
    assert trimmed.weights.max() <= 40
    assert trimmed.weights.sum() == pytest.approx(6194, rel=1e-12)
    assert np.isfinite(trimmed.mean("api00").se)


@pytest.mark.parametrize("case", list(CASES))
def test_calibrated_totals_equal_the_totals(case):
    data, totals, design, _, bounds = CASES[case]
    res = _calibrated(case)
    w = res.weights.to_numpy()
    for key, target in totals.items():
        if isinstance(target, dict):
            for level, count in target.items():
                assert w[(data[key] == level).to_numpy()].sum() == pytest.approx(count, rel=1e-10)
        else:
            assert w @ data[key].to_numpy(dtype=float) == pytest.approx(target, rel=1e-10)
    assert w.sum() == pytest.approx(design.get("total", 6194), rel=1e-10)
    g = res.adjustments.to_numpy()
    if bounds is not None:
        assert g.min() >= bounds[0] * (1 - 1e-12) and g.max() <= bounds[1] * (1 + 1e-12)


@pytest.mark.parametrize("bounds", [None, (0.7, 1.8)])
def test_raking_on_categorical_totals_is_rake(bounds):
    res = calibrate(CLUS1, CATEGORICAL, method="raking", bounds=bounds, **CLUSTER)
    ref = rake(CLUS1, CATEGORICAL, bounds=bounds, tol=1e-12, **CLUSTER)
    np.testing.assert_array_equal(res.weights.to_numpy(), ref.weights.to_numpy())
    assert res.mean("api00").se == ref.mean("api00").se


def test_raking_with_numeric_total_on_categorical_columns_alone_is_rake():
    # the Newton path (forced by a numeric column whose total the sample already meets with
    # the raked weights) gives rake's weights on the categorical part
    ref = rake(STRAT, CATEGORICAL, weights="pw", tol=1e-13)
    meals_total = float(ref.weights @ STRAT["meals"])
    res = calibrate(STRAT, {**CATEGORICAL, "meals": meals_total}, weights="pw", tol=1e-13)
    np.testing.assert_allclose(res.weights.to_numpy(), ref.weights.to_numpy(), rtol=1e-10)


def test_raking_calibrate_is_exported_lazily():
    assert raking.calibrate is calibrate


def test_the_margin_table_has_the_numeric_columns():
    res = _calibrated("strat_linear")
    m = res.margins.set_index(["variable", "level"])
    assert m.loc[("enroll", "(total)"), "target"] == pytest.approx(3811472 / 6194)
    assert m.loc[("api99", "(total)"), "raked"] == pytest.approx(3914069 / 6194, rel=1e-12)
    assert list(res.variable_errors.index) == ["stype", "sch.wide", "enroll", "api99"]
    assert res.marginal_error <= 1e-10
    assert 'calibrate(calfun="linear")' in res.mean("api00").se_method


def test_numeric_only_totals_use_the_intercept():
    res = _calibrated("clus1_linear_numeric_only")
    assert list(res.variable_errors.index) == ["(Intercept)", "enroll"]


# ---------------------------------------------------------------- properties


@st.composite
def _samples(draw):
    n = draw(st.integers(30, 80))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], size=n),
            "b": rng.choice(["p", "q"], size=n),
            "u": rng.gamma(2.0, 1.0, size=n),
            "v": rng.normal(0.0, 1.0, size=n) + rng.choice([0.0, 3.0], size=n),
            "d": rng.uniform(1.0, 3.0, size=n),
        }
    )
    data.loc[:5, "a"] = ["x", "y", "z", "x", "y", "z"]  # every level present
    data.loc[:3, "b"] = ["p", "q", "p", "q"]
    d = data["d"].to_numpy()
    shift = draw(st.floats(0.9, 1.1))
    totals = {
        "a": {lv: float(d[data["a"] == lv].sum()) * draw(st.floats(0.9, 1.1)) for lv in "xyz"},
        "u": float(d @ data["u"]) * shift,
    }
    n_total = sum(totals["a"].values())
    totals["b"] = {"p": n_total * 0.5, "q": n_total * 0.5}
    return data, totals


@settings(max_examples=40, deadline=None)
@given(_samples(), st.sampled_from(["linear", "raking", "logit"]))
def test_calibration_meets_totals_within_bounds(sample, method):
    data, totals = sample
    bounds = (0.2, 5.0) if method == "logit" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NegativeWeightWarning)
        res = calibrate(data, totals, weights="d", method=method, bounds=bounds)
    assert res.converged
    w = res.weights.to_numpy()
    assert w @ data["u"] == pytest.approx(totals["u"], rel=1e-9)
    for lv, count in totals["a"].items():
        assert w[(data["a"] == lv).to_numpy()].sum() == pytest.approx(count, rel=1e-9)
    g = w / data["d"].to_numpy()
    if method == "logit":
        assert (g > 0.2).all() and (g < 5.0).all()
    if method == "raking":
        assert (g > 0).all()
    if method == "linear":  # g = 1 + x'lambda: affine in the calibration vector
        x = np.column_stack(
            [np.ones(len(data)), data["a"] == "y", data["a"] == "z", data["b"] == "q", data["u"]]
        ).astype(float)
        coef, *_ = np.linalg.lstsq(x, g, rcond=None)
        np.testing.assert_allclose(x @ coef, g, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(20, 60), st.integers(0, 2**31 - 1))
def test_calibration_projection_is_the_weighted_least_squares_residual(n, seed):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, 3, size=n), rng.integers(0, 4, size=n)]
    codes[0][:3], codes[1][:4] = np.arange(3), np.arange(4)
    numeric = np.column_stack([rng.normal(size=n), rng.gamma(2.0, size=n) * 100])
    d = rng.uniform(0.5, 5.0, size=n)
    u = rng.normal(size=n)
    e = CalibrationProjection(CalibrationMatrix(codes, [3, 4], numeric), d).residual(u)
    x = np.column_stack([np.eye(3)[codes[0]], np.eye(4)[codes[1]], numeric])
    sw = np.sqrt(d)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], u * sw, rcond=None)
    np.testing.assert_allclose(e, u - x @ coef, atol=1e-10)
    np.testing.assert_allclose(x.T @ (d * e), 0.0, atol=1e-9)


def test_calibration_matrix_gram_is_x_transpose_d_x():
    rng = np.random.default_rng(3)
    codes = [rng.integers(0, 3, size=50), rng.integers(0, 2, size=50)]
    numeric = rng.normal(size=(50, 2))
    m = CalibrationMatrix(codes, [3, 2], numeric)
    x = np.column_stack([np.eye(3)[codes[0]], np.eye(2)[codes[1]], numeric])
    v = rng.uniform(size=50)
    np.testing.assert_allclose(m.gram(v), x.T @ (v[:, None] * x), atol=1e-12)
    beta = rng.normal(size=7)
    np.testing.assert_allclose(m.dot(beta), x @ beta, atol=1e-12)
    np.testing.assert_allclose(m.tdot(v), x.T @ v, atol=1e-12)


def test_calibration_projection_has_no_step_form():
    m = CalibrationMatrix([np.zeros(3, dtype=int)], [1], np.ones((3, 1)) * [[1], [2], [3]])
    with pytest.raises(ValueError, match="no step count"):
        CalibrationProjection(m, np.ones(3)).residual(np.ones(3), steps=2)
    assert np.isnan(CalibrationProjection(m, np.ones(3)).residual(np.array([1, np.nan, 0]))).all()


# ---------------------------------------------------------------- warnings and errors


def test_linear_calibration_warns_about_negative_weights():
    data = CLUS1.assign(x=np.where(CLUS1.index < 20, 50.0, 1.0))
    with pytest.warns(NegativeWeightWarning, match="negative weight"):
        res = calibrate(data, {**CATEGORICAL, "x": 1200.0}, weights="pw", method="linear")
    assert (res.weights < 0).any()
    assert res.weights.to_numpy() @ data["x"] == pytest.approx(1200.0, rel=1e-10)


def test_unreachable_together_is_a_convergence_warning():
    # each total is reachable within the bounds alone, not together
    # every total is reachable alone, and x's with sum(w) = 20 too (up to 36.25), but not with
    # the level counts: sum(g x) <= 10.75 + 20.75 = 31.5 < 34
    data = pd.DataFrame({"s": ["a"] * 10 + ["b"] * 10, "x": [1.0, 1.1] * 5 + [2.0, 2.1] * 5})
    totals = {"s": {"a": 10, "b": 10}, "x": 34.0}
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = calibrate(data, totals, method="logit", bounds=(0.5, 2.0), max_iter=30)
    assert not res.converged
    assert res.marginal_error > 1e-3


def test_inconsistent_totals_of_collinear_columns_are_an_error():
    data = CLUS1.assign(stype2=CLUS1["stype"])
    totals = {"stype": CATEGORICAL["stype"], "stype2": {"E": 4000, "H": 1000, "M": 1194}}
    with pytest.raises(ValueError, match=r"totals are inconsistent.*stype"):
        calibrate(data, {**totals, "enroll": 3811472}, weights="pw", method="linear")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "GREG"}, "method must be one of"),
        ({"method": "logit"}, "needs bounds"),
        ({"method": "logit", "bounds": (0.5, 0.9)}, "lo < 1 < hi"),
        ({"method": "logit", "bounds": (0.5, math.inf)}, "lo < 1 < hi"),
        ({"bounds": (2, 1)}, "bounds must be None or a pair"),
        ({"tol": -1}, "tol"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibrate(CLUS1, ENROLL, weights="pw", **kwargs)


def test_numeric_totals_alone_need_the_population_size():
    with pytest.raises(ValueError, match=r"only numeric columns.*total=N"):
        calibrate(CLUS1, {"enroll": 3811472}, weights="pw", method="linear")


def test_numeric_totals_with_share_targets_need_the_population_size():
    shares = {"stype": {"E": 0.7, "H": 0.1, "M": 0.2}, "enroll": 3811472}
    with pytest.raises(ValueError, match="shares and no total="):
        calibrate(CLUS1, shares, weights="pw", method="linear")
    res = calibrate(CLUS1, shares, weights="pw", method="linear", total=6194)
    assert res.weights.sum() == pytest.approx(6194)


@pytest.mark.parametrize(
    ("totals", "error", "match"),
    [
        ([("stype", 1)], TypeError, "non-empty mapping"),
        ({}, TypeError, "non-empty mapping"),
        ({**CATEGORICAL, "enroll": "3811472"}, TypeError, "must be a number"),
        ({**CATEGORICAL, "enroll": math.nan}, ValueError, "finite number"),
        ({**CATEGORICAL, "enroll": True}, TypeError, "must be a number"),
        ({**CATEGORICAL, "nosuch": 3.0}, ValueError, "nosuch"),
        ({**CATEGORICAL, "name": 3.0}, TypeError, "must be numeric"),
    ],
)
def test_bad_totals(totals, error, match):
    with pytest.raises(error, match=match):
        calibrate(CLUS1, totals, weights="pw", method="linear")


def test_missing_numeric_values_are_named():
    data = CLUS1.assign(enroll=CLUS1["enroll"].where(CLUS1.index != 7))
    with pytest.raises(ValueError, match=r"'enroll' has 1 missing.*rows \[7\]"):
        calibrate(data, ENROLL, weights="pw", method="linear")


def test_constant_numeric_column_is_singular():
    data = CLUS1.assign(one=2.0)
    with pytest.raises(ValueError, match=r"'one' is constant.*singular"):
        calibrate(data, {**ENROLL, "one": 12388.0}, weights="pw", method="linear")


def test_collinear_numeric_columns_are_named():
    data = CLUS1.assign(twice=2 * CLUS1["enroll"] + (CLUS1["stype"] == "H"))
    with pytest.raises(ValueError, match=r"'twice' is a linear combination.*'enroll'"):
        calibrate(data, {**ENROLL, "twice": 7623699.0}, weights="pw", method="raking")


def test_numeric_total_out_of_reach_of_the_bounds():
    with pytest.raises(ValueError, match=r"totals\['enroll'\] = 9000000 is unreachable"):
        calibrate(CLUS1, {**CATEGORICAL, "enroll": 9e6}, weights="pw", bounds=(0.5, 2))
    with pytest.raises(ValueError, match="unreachable with g > 0"):
        calibrate(CLUS1, {**CATEGORICAL, "enroll": -5.0}, weights="pw")


def test_level_without_rows_is_an_empty_category_error():
    totals = {"stype": {**CATEGORICAL["stype"], "K": 10}, "enroll": 3811472}
    with pytest.raises(EmptyCategoryError, match="'K'"):
        calibrate(CLUS1, totals, weights="pw", method="linear")


@pytest.mark.filterwarnings("ignore::raking.exceptions.SparseLevelWarning")
def test_too_many_columns_for_the_dense_solve():
    data = pd.DataFrame({"id": np.arange(2100), "x": np.arange(2100.0)})
    totals = {"id": dict.fromkeys(range(2100), 1.0), "x": 2100.0 * 2099 / 2}
    with pytest.raises(ValueError, match="2101-column calibration matrix"):
        calibrate(data, totals, method="linear")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "needs lower=, upper= or both"),
        ({"lower": 40, "upper": 15}, "lower < upper"),
        ({"upper": "60"}, "upper must be None or a number"),
        ({"upper": 10}, "upper=10 cannot hold"),
        ({"lower": 100}, "lower=100 cannot hold"),
    ],
)
def test_bad_trim_bounds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _calibrated("strat_raking").trim(**kwargs)


def test_trim_with_every_weight_outside():
    data = pd.DataFrame({"s": ["a", "b"] * 10})
    res = rake(data, {"s": {"a": 10, "b": 30}})  # weights 1 and 3, average 2
    with pytest.raises(ValueError, match="every one of the 20 weights lies outside"):
        res.trim(lower=1.5, upper=2.5)


def test_calibration_matrix_needs_a_categorical_variable():
    with pytest.raises(ValueError, match="at least one categorical variable"):
        CalibrationMatrix([], [], np.ones((3, 1)))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.floats(0.3, 0.95),
    st.floats(1.05, 3.0),
    st.booleans(),
)
def test_trim_moves_the_outside_weights_to_the_bounds_and_the_rest_by_one_amount(
    seed, lo_share, hi_share, strict
):
    rng = np.random.default_rng(seed)
    n = 60
    data = pd.DataFrame({"s": rng.choice(["a", "b", "c"], size=n), "d": rng.lognormal(size=n)})
    data.loc[:2, "s"] = ["a", "b", "c"]
    res = rake(data, {"s": {"a": 30.0, "b": 50.0, "c": 20.0}}, weights="d")
    w = res.weights.to_numpy()
    lo, hi = lo_share * w.mean(), hi_share * w.mean()
    if not ((w >= lo) & (w <= hi)).any():  # no weight to take the excess: a clear error
        with pytest.raises(ValueError, match="lies outside"):
            res.trim(lower=lo, upper=hi, strict=strict)
        return
    trimmed = res.trim(lower=lo, upper=hi, strict=strict).weights.to_numpy()
    assert trimmed.sum() == pytest.approx(w.sum(), rel=1e-12)
    outside = (w < lo) | (w > hi)
    if strict:
        assert (trimmed >= lo).all() and (trimmed <= hi).all()
    elif outside.any():  # one round of R's trimWeights
        np.testing.assert_array_equal(trimmed[outside], np.clip(w[outside], lo, hi))
        shift = trimmed[~outside] - w[~outside]
        np.testing.assert_allclose(shift, shift[0], atol=1e-12 * w.max())
        assert shift[0] == pytest.approx((w - np.clip(w, lo, hi)).sum() / (~outside).sum())
    else:
        np.testing.assert_array_equal(trimmed, w)


def test_newton_cut_short_by_max_iter_says_so():
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 Newton iterations"):
        res = calibrate(STRAT, BOTH, method="raking", max_iter=1, **STRATA)
    assert not res.converged and res.iterations == 1
    assert res.marginal_error > 1e-12
    assert "did NOT converge" in res.mean("api00").notes[-1]


def test_lonely_psu_and_the_design_options_pass_through_to_rake():
    data = STRAT.assign(s=np.where(STRAT.index == 0, "Z", STRAT["stype"]))
    with pytest.raises(ValueError, match="'Z'"):
        calibrate(data, ENROLL, weights="pw", strata="s", method="linear")
    ses = {}
    for option in ("certainty", "adjust"):
        res = calibrate(data, ENROLL, weights="pw", strata="s", method="linear", lonely_psu=option)
        ses[option] = res.mean("api00").se
        assert np.isfinite(ses[option])
    assert ses["adjust"] > ses["certainty"]  # the lonely PSU's deviation from the grand mean
    # on categorical totals, method="raking" is rake with the same design options
    res = calibrate(data, CATEGORICAL, weights="pw", strata="s", lonely_psu="adjust")
    ref = rake(data, CATEGORICAL, weights="pw", strata="s", lonely_psu="adjust", tol=1e-12)
    assert res.mean("api00").se == ref.mean("api00").se


@pytest.mark.parametrize(
    ("method", "bounds", "match"),
    [
        ("raking", None, r"can then only lie strictly between .* \(a mean of 0\.0\d+ to 37\.469"),
        ("logit", (0.5, 3.0), r"with g = w / d in \(0\.5, 3\.0\) while the weights sum"),
        ("linear", (0.5, 3.0), r"with g = w / d in \(0\.5, 3\.0\) while the weights sum"),
    ],
)
def test_a_numeric_total_out_of_reach_with_the_population_size_is_named(method, bounds, match):
    # alone (sum(w) free) the total is reachable; with sum(w) = N = 200 it is not: unbounded,
    # 10 times the sample's mean of x is beyond the largest x (37.5); with g in [0.5, 3], 2.5
    # times the sample total needs more than 40 rows at g = 3
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"s": rng.choice(["a", "b"], 200), "x": rng.gamma(0.5, 10, 200)})
    multiple = 10.0 if bounds is None else 2.5
    totals = {"s": {"a": 100, "b": 100}, "x": float(data["x"].sum()) * multiple}
    with pytest.raises(ValueError, match=match):
        calibrate(data, totals, method=method, bounds=bounds)


def test_reach_with_the_total_is_a_fractional_knapsack():
    from raking.validation._calibration import numeric_reach_with_total

    x, d = np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4)
    # g in [0.5, 2], sum g = 4: 0.5 each, then the 2 left over go 1.5 to the smallest x and
    # 0.5 to the next (lowest: 5 + 1.5 + 1), or to the largest (highest: 5 + 6 + 1.5)
    assert numeric_reach_with_total(x, d, 4.0, (0.5, 2.0)) == pytest.approx((7.5, 12.5))
    assert numeric_reach_with_total(x, d, 4.0, None) == pytest.approx((4.0, 16.0))


def test_replicates_are_re_raked_for_raking_on_categorical_totals():
    res = calibrate(CLUS1, CATEGORICAL, replicates="jk1", **CLUSTER)
    ref = rake(CLUS1, CATEGORICAL, replicates="jk1", tol=1e-12, **CLUSTER)
    np.testing.assert_array_equal(
        res.replicate_weights.to_numpy(), ref.replicate_weights.to_numpy()
    )
    assert res.mean("api00").se == ref.mean("api00").se
    assert res.mean("api00").se_method.startswith("replicate: JK1, R=15, re-raked")


@pytest.mark.parametrize(
    ("totals", "method", "bounds"),
    [(ENROLL, "raking", None), (CATEGORICAL, "linear", None), (CATEGORICAL, "logit", (0.3, 3.0))],
)
def test_replicates_are_re_calibrated_for_every_method(totals, method, bounds):
    # equality with R: tests/test_survey_calibration_replicates.py
    res = calibrate(CLUS1, totals, method=method, bounds=bounds, replicates="jk1", **CLUSTER)
    assert res._design.replicates.converged.all()
    assert res.mean("api00").se_method.startswith("replicate: JK1, R=15")
