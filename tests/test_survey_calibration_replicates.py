"""raking.calibrate(replicates=...) for every method and numeric totals, and trim() of replicates.

References: tests/data/r/calibrate_replicates.R (R 4.2.2, survey 4.1.1): as.svrepdesign(type="JK1"
on apiclus1, "JKn" on apistrat), calibrate(calfun=, bounds=), svymean / svytotal; trimming of
each replicate by trimWeights' rule.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import raking
from raking.exceptions import ConvergenceWarning
from raking.survey.calibration_replicates import trim_columns
from raking.survey.data import load_api

R_DIR = Path(__file__).parent / "data" / "r"
WEIGHTS = pd.read_csv(R_DIR / "calibrate_replicates_weights.csv")
ESTIMATES = pd.read_csv(R_DIR / "calibrate_replicates_estimates.csv")
CLUS1 = load_api("apiclus1")
STRAT = load_api("apistrat")
STYPE = {"stype": {"E": 4421, "H": 755, "M": 1018}}
ENROLL = {**STYPE, "enroll": 3811472.0}
API99 = {**STYPE, "api99": 3914069.0}
JK1 = {"cluster": "dnum", "fpc": "fpc", "replicates": "jk1"}
JKN = {"strata": "stype", "fpc": "fpc", "replicates": "jkn"}
CASES = {
    "clus1_jk1_linear": (CLUS1, ENROLL, "linear", None, JK1),
    "clus1_jk1_linear_bounds": (CLUS1, ENROLL, "linear", (0.5, 2.5), JK1),
    "clus1_jk1_logit": (CLUS1, API99, "logit", (0.5, 2.5), JK1),
    "clus1_jk1_raking": (CLUS1, API99, "raking", None, JK1),
    "strat_jkn_linear": (STRAT, ENROLL, "linear", None, JKN),
    "strat_jkn_logit": (STRAT, API99, "logit", (0.5, 2.0), JKN),
    "strat_jkn_raking": (STRAT, API99, "raking", None, JKN),
}
TRIMS = {
    "strat_jkn_raking_trim": {"upper": 40.0, "strict": False},
    "strat_jkn_raking_trim_strict": {"upper": 40.0, "strict": True},
    "strat_jkn_raking_trim_lower": {"lower": 20.0, "upper": 40.0, "strict": True},
}


def _calibrated(case: str, **kwargs):
    data, totals, method, bounds, design = CASES[case]
    return raking.calibrate(
        data, totals, weights="pw", method=method, bounds=bounds, **design, **kwargs
    )


def _assert_matches_r(res, case: str) -> None:
    ref = WEIGHTS[WEIGHTS["case"] == case]
    keep = [int(k) - 1 for k in ref["replicates"].iloc[0].split()]
    np.testing.assert_allclose(res.weights.to_numpy(), ref["weight"].to_numpy(), rtol=1e-8)
    expected = ref[[f"r{j + 1}" for j in range(len(keep))]].to_numpy()
    got = res.replicate_weights.to_numpy()[:, keep]
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8 * expected.max())
    for row in ESTIMATES[ESTIMATES["case"] == case].itertuples():
        est = getattr(res, row.statistic)(row.variable)
        assert est.estimate == pytest.approx(row.estimate, rel=1e-9)
        # a calibrated total has an SE of rounding noise in R and here: compare on its scale
        assert est.se == pytest.approx(row.se, rel=1e-6, abs=1e-10 * abs(row.estimate))


@pytest.mark.parametrize("case", list(CASES))
def test_replicate_weights_and_ses_equal_r(case):
    res = _calibrated(case)
    _assert_matches_r(res, case)
    assert res._design.replicates.converged.all()
    assert "replicate: J" in res.mean("api00").se_method


@pytest.mark.parametrize("case", list(CASES))
def test_every_replicate_meets_the_totals(case):
    data, totals, _, bounds, _ = CASES[case]
    res = _calibrated(case)
    rw = res.replicate_weights.to_numpy()
    numeric = next(k for k, v in totals.items() if not isinstance(v, dict))
    np.testing.assert_allclose(rw.T @ data[numeric].to_numpy(), totals[numeric], rtol=1e-9)
    for level, count in STYPE["stype"].items():
        np.testing.assert_allclose(rw[(data["stype"] == level).to_numpy()].sum(0), count, rtol=1e-9)
    if bounds is not None:  # g of each replicate within the bounds, relative to d_r
        d_r = res._design.replicates.design.multipliers[res._design.replicates.design.group]
        d_r = d_r * data["pw"].to_numpy()[:, None]
        g = rw[d_r > 0] / d_r[d_r > 0]
        assert g.min() >= bounds[0] - 1e-9 and g.max() <= bounds[1] + 1e-9


def test_given_replicate_table_equals_the_jackknife():
    res = _calibrated("clus1_jk1_logit")
    data, totals, method, bounds, _ = CASES["clus1_jk1_logit"]
    spec = res._design.replicates.design
    table = data["pw"].to_numpy()[:, None] * spec.multipliers[spec.group]
    again = raking.calibrate(
        data,
        totals,
        weights="pw",
        method=method,
        bounds=bounds,
        cluster="dnum",
        replicates=table,
        replicate_scale=spec.scale,
    )
    np.testing.assert_allclose(again.replicate_weights, res.replicate_weights, rtol=1e-12)
    assert again.mean("api00").se == pytest.approx(res.mean("api00").se, rel=1e-12)


def test_categorical_linear_replicates_work_on_cells():
    res = raking.calibrate(STRAT, STYPE, weights="pw", method="linear", **JKN)
    raked = raking.rake(STRAT, STYPE, weights="pw", **JKN)
    # post-stratification: linear and raking calibration give the same weights
    np.testing.assert_allclose(res.replicate_weights, raked.replicate_weights, rtol=1e-10)
    assert res._design.replicates.unit_of_row is not None


def test_numeric_only_totals_with_the_intercept():
    res = raking.calibrate(
        CLUS1, {"enroll": 3811472.0}, weights="pw", method="linear", total=6194.0, **JK1
    )
    rw = res.replicate_weights.to_numpy()
    np.testing.assert_allclose(rw.sum(0), 6194.0, rtol=1e-10)
    np.testing.assert_allclose(rw.T @ CLUS1["enroll"].to_numpy(), 3811472.0, rtol=1e-10)


def test_replicates_that_cannot_converge_are_counted_in_the_notes():
    with pytest.warns(ConvergenceWarning, match="replicates did not converge"):
        res = raking.calibrate(
            CLUS1, ENROLL, weights="pw", method="linear", bounds=(0.7, 1.8), max_iter=30, **JK1
        )
    reps = res._design.replicates
    bad = int((~reps.converged).sum())
    assert 0 < bad < reps.design.n_replicates
    assert f"{bad} of 15 replicates did NOT converge" in res.mean("api00").se_method


def test_bad_replicate_options_are_refused_before_calibrating():
    with pytest.raises(ValueError, match="replicates"):
        raking.calibrate(CLUS1, ENROLL, weights="pw", method="linear", replicates="jk2")


@pytest.mark.parametrize("case", list(TRIMS))
def test_trimmed_replicates_equal_r(case):
    raked = raking.calibrate(STRAT, STYPE, weights="pw", method="raking", tol=1e-13, **JKN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = raked.trim(**TRIMS[case])
    _assert_matches_r(res, case)
    assert "every replicate trimmed" in res.mean("api00").se_method
    assert not any("untrimmed" in n for n in res.mean("api00").notes)


def test_trim_columns_keeps_each_column_total_and_bounds():
    rng = np.random.default_rng(3)
    table = rng.gamma(2.0, 10.0, size=(300, 7))
    trimmed, rounds = trim_columns(table, 5.0, 40.0, strict=True, slack=1e-12, max_rounds=10_000)
    np.testing.assert_allclose(trimmed.sum(0), table.sum(0), rtol=1e-12)
    assert trimmed.min() >= 5.0 and trimmed.max() <= 40.0
    assert (rounds >= 1).all()
    once, rounds_once = trim_columns(table, 5.0, 40.0, strict=False, slack=0.0, max_rounds=10)
    assert (rounds_once == 1).all()
    for r in range(table.shape[1]):  # column by column, the rule of one vector
        w = table[:, r]
        clipped = np.clip(w, 5.0, 40.0)
        inside = (w >= 5.0) & (w <= 40.0)
        clipped[inside] += (w - clipped).sum() / inside.sum()
        np.testing.assert_allclose(once[:, r], clipped, rtol=1e-13)


def test_trim_columns_with_a_replicate_all_outside():
    with pytest.raises(ValueError, match="replicate"):
        trim_columns(np.full((4, 2), 50.0), 0.0, 40.0, strict=False, slack=0.0, max_rounds=5)


@pytest.mark.parametrize("case", ["clus1_jk1_logit", "clus1_jk1_linear_bounds"])
def test_batched_equals_one_calibration_per_replicate(case):
    data, totals, method, bounds, _ = CASES[case]
    res = _calibrated(case)
    spec = res._design.replicates.design
    d_r = data["pw"].to_numpy()[:, None] * spec.multipliers[spec.group]
    rw = res.replicate_weights.to_numpy()
    for r in range(spec.n_replicates):
        keep = d_r[:, r] > 0
        one = raking.calibrate(
            data[keep], totals, weights=d_r[keep, r], method=method, bounds=bounds
        )
        np.testing.assert_allclose(rw[keep, r], one.weights.to_numpy(), rtol=1e-10)
        assert (rw[~keep, r] == 0).all()


def test_strict_trim_of_replicates_that_cannot_settle_warns(monkeypatch):
    import raking.survey.results as results

    raked = raking.calibrate(STRAT, STYPE, weights="pw", method="raking", **JKN)
    monkeypatch.setattr(results, "_MAX_TRIM_ROUNDS", 1)
    with pytest.warns(ConvergenceWarning, match="replicate"):
        res = raked.trim(lower=20.0, upper=40.0, strict=True)
    assert res.replicate_weights.to_numpy().max() <= 40.0
