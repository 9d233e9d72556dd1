"""raking.rake on survey data: R's published results, the population truth, Monte Carlo SEs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import raking
from raking import balance
from raking.survey.data import api_population_margins, api_population_truth, load_api
from raking.survey.frontend import rake, targets_from_frame

MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}


def test_matches_r_survey_rake_on_the_cluster_sample():
    # R survey 4.5, tests/rakecheck.Rout.save:
    #   dclus1 <- svydesign(id=~dnum, weights=~pw, data=apiclus1, fpc=~fpc)
    #   dclus1r <- rake(dclus1, list(~stype,~sch.wide), list(pop.types, pop.schwide),
    #                   control=list(epsilon=1e-10, maxit=30))
    #   svymean(~api00, dclus1r)   641.23  SE 23.704
    #   svytotal(~enroll, dclus1r) 3647280 SE 400603
    res = rake(load_api("apiclus1"), TWO, weights="pw", cluster="dnum", fpc="fpc")
    mean, total = res.mean("api00"), res.total("enroll")
    assert (round(mean.estimate, 2), round(mean.se, 3)) == (641.23, 23.704)
    assert (round(total.estimate), round(total.se)) == (3647280, 400603)


def test_matches_r_survey_rake_with_a_crossed_margin():
    # R survey 4.5, tests/rakecheck.Rout.save:
    #   dclus1r2 <- rake(dclus1, list(~stype+sch.wide, ~comp.imp), list(pop.table, pop.imp), ...)
    #   svymean(~api00, dclus1r2)  642.61  SE 22.731
    targets = {
        ("stype", "sch.wide"): MARGINS[("stype", "sch.wide")],
        "comp.imp": MARGINS["comp.imp"],
    }
    with pytest.warns(raking.exceptions.SparseLevelWarning, match=r"\('H', 'No'\) \(3 rows\)"):
        res = rake(load_api("apiclus1"), targets, weights="pw", cluster="dnum", fpc="fpc")
    mean = res.mean("api00")
    assert res.converged
    assert (round(mean.estimate, 2), round(mean.se, 3)) == (642.61, 22.731)


@pytest.mark.parametrize(
    ("name", "design", "mean", "se"),
    [
        # R survey 4.5, tests/testoutput/api.Rout.saved (example(api)):
        ("apistrat", {"strata": "stype", "fpc": "fpc"}, 662.29, 9.4089),  # svymean(~api00, dstrat)
        ("apiclus1", {"cluster": "dnum", "fpc": "fpc"}, 644.17, 23.542),  # svymean(~api00, dclus1)
    ],
)
def test_zero_steps_match_r_survey_unraked_designs(name, design, mean, se):
    res = rake(load_api(name), TWO, weights="pw", steps=0, **design)
    est = res.mean("api00")
    assert round(est.estimate, 2) == mean
    assert round(est.se, 4 if se < 10 else 3) == se
    if name == "apistrat":  # svytotal(~enroll, dstrat, na.rm=TRUE)  3687178 SE 114642
        total = res.total("enroll")  # (weights constant within strata: the same estimator)
        assert (round(total.estimate), round(total.se)) == (3687178, 114642)


@pytest.mark.parametrize(
    ("name", "design", "gain"),
    [("apisrs", {}, 0.8), ("apistrat", {"strata": "stype", "fpc": "fpc"}, 1.0)],
)
def test_raked_estimates_cover_the_population_truth(name, design, gain):
    truth = api_population_truth()
    data = load_api(name)
    res = rake(data, TWO, weights="pw", **design)
    unraked = rake(data, TWO, weights="pw", steps=0, **design)
    mean, total = res.mean("api00"), res.total("enroll")
    assert mean.ci[0] < truth["api00_mean"] < mean.ci[1]
    assert total.ci[0] < truth["enroll_total"] < total.ci[1]
    assert mean.se < unraked.mean("api00").se
    # enrolment depends strongly on stype (already used by the stratified design)
    assert total.se < gain * unraked.total("enroll").se


@pytest.mark.slow
@pytest.mark.parametrize("steps", [None, 1])
def test_standard_errors_match_monte_carlo(steps):
    pop = load_api("apipop").dropna(subset=["enroll"]).reset_index(drop=True)
    pop["fpc"] = float(len(pop))
    targets = {"stype": pop["stype"].value_counts(), "sch.wide": pop["sch.wide"].value_counts()}
    rng = np.random.default_rng(2024)
    est, se, naive = [], [], []
    for _ in range(1500):
        sample = pop.iloc[rng.choice(len(pop), size=200, replace=False)]
        res = rake(sample, targets, steps=steps, fpc="fpc")
        m, t = res.mean("api00"), res.total("enroll")
        est.append((m.estimate, t.estimate))
        se.append((m.se, t.se))
        wy = res.weights.to_numpy() * sample["enroll"].to_numpy()
        naive.append(np.sqrt(200 / 199 * np.sum((wy - wy.mean()) ** 2)))  # ignores the raking
    sd = np.std(est, axis=0, ddof=1)
    ratio = np.mean(se, axis=0) / sd
    assert np.all(np.abs(ratio - 1) < 0.10), ratio
    assert np.mean(naive) / sd[1] > 1.2  # the test can tell an SE that ignores the raking


@pytest.mark.parametrize("k", [1, 2, 3])
def test_fixed_steps_equal_the_kernel_on_the_crossed_table(k):
    data = load_api("apistrat")
    res = rake(data, TWO, weights="pw", steps=k)
    table = data.pivot_table(index="stype", columns="sch.wide", values="pw", aggfunc="sum")
    targets = [MARGINS["stype"][table.index].to_numpy(), MARGINS["sch.wide"][table.columns]]
    expected = balance(table.to_numpy(), [targets[0], targets[1].to_numpy()], steps=k)
    got = res.weights.groupby([data["stype"], data["sch.wide"]]).sum().unstack()
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-12)
    assert res.steps == k and res.tol is None


def test_weights_are_aligned_to_the_index_and_data_is_not_modified():
    data = load_api("apisrs").sample(frac=1.0, random_state=0)
    data.index = [f"school-{i}" for i in range(len(data))]
    before = data.copy()
    res = rake(data, TWO, weights="pw")
    pd.testing.assert_frame_equal(data, before)
    assert res.weights.index.equals(data.index)
    cells = res.weights.groupby(data["stype"]).sum()
    np.testing.assert_allclose(cells[["E", "H", "M"]], [4421, 755, 1018], rtol=1e-9)


def test_categorical_string_and_object_columns_give_the_same_weights():
    data = load_api("apistrat")
    base = rake(data, TWO, weights="pw").weights
    for dtype in ("category", object):
        other = data.assign(**{c: data[c].astype(dtype) for c in ("stype", "sch.wide")})
        np.testing.assert_allclose(rake(other, TWO, weights="pw").weights, base, rtol=1e-12)


def test_crossed_margin_equals_raking_a_combined_column():
    data = load_api("apistrat")
    joint = MARGINS[("stype", "sch.wide")]
    targets = {("stype", "sch.wide"): joint, "comp.imp": MARGINS["comp.imp"]}
    crossed = rake(data, targets, weights="pw")
    combined = data.assign(cell=data["stype"] + "/" + data["sch.wide"])
    flat = {"cell": {f"{a}/{b}": v for (a, b), v in joint.items()}, "comp.imp": MARGINS["comp.imp"]}
    np.testing.assert_allclose(crossed.weights, rake(combined, flat, weights="pw").weights)
    assert crossed.margins["level"].iloc[0] == ("E", "No")


def test_domain_means_and_proportions():
    data = load_api("apisrs")
    res = rake(data, TWO, weights="pw")
    w = res.weights
    by = res.mean("api00", by="stype")
    manual = (w * data["api00"]).groupby(data["stype"]).sum() / w.groupby(data["stype"]).sum()
    np.testing.assert_allclose(by.estimate[manual.index], manual, rtol=1e-12)
    assert by["H"].n == (data["stype"] == "H").sum() and by["H"].se > res.mean("api00").se
    assert list(by.ci.columns) == ["lower", "upper"] and list(by) == ["E", "H", "M"]
    props = res.proportion("awards")
    assert props.estimate.sum() == pytest.approx(1.0)
    indicator = rake(data.assign(yes=data["awards"].eq("Yes")), TWO, weights="pw").mean("yes")
    assert props["Yes"].estimate == pytest.approx(indicator.estimate)
    assert props["Yes"].se == pytest.approx(indicator.se)
    nested = res.proportion("awards", by="stype")
    assert nested.estimate.groupby(level="stype").sum().to_numpy() == pytest.approx(np.ones(3))
    assert nested[("H", "Yes")].estimate == pytest.approx(
        w[(data["stype"] == "H") & (data["awards"] == "Yes")].sum() / w[data["stype"] == "H"].sum()
    )
    assert set(nested.to_frame().columns) == {"estimate", "se", "ci_low", "ci_high", "n"}


def test_domain_total_sums_to_the_total_and_its_se_is_positive():
    res = rake(load_api("apisrs"), TWO, weights="pw")
    by = res.total("enroll", by="sch.wide")
    assert by.estimate.sum() == pytest.approx(res.total("enroll").estimate)
    assert (by.se > 0).all()


def test_shares_without_total_give_means_but_no_totals():
    shares = {k: v / v.sum() for k, v in TWO.items()}
    res = rake(load_api("apisrs"), shares)
    assert res.weights.sum() == pytest.approx(200) and not res.total_known
    assert res.mean("api00").estimate == pytest.approx(
        rake(load_api("apisrs"), TWO).mean("api00").estimate
    )
    with pytest.raises(ValueError, match=r"known population total.*pass total=N"):
        res.total("enroll")
    known = rake(load_api("apisrs"), shares, total=6194)
    assert known.weights.sum() == pytest.approx(6194) and known.total_known
    assert known.total("enroll").estimate == pytest.approx(
        rake(load_api("apisrs"), TWO).total("enroll").estimate
    )


def test_bounds_hold_inside_the_iteration():
    data = load_api("apisrs")
    free = rake(data, TWO, weights="pw")
    lo, hi = 0.9, 1.015
    assert free.adjustments.max() > hi  # the bounds bind
    res = rake(data, TWO, weights="pw", bounds=(lo, hi))
    g = res.adjustments
    assert res.converged and g.min() >= lo - 1e-12 and g.max() <= hi + 1e-12
    assert res.marginal_error <= 1e-10
    assert "bounds" in res.mean("api00").summary()


def test_diagnostics_summary_and_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    res = rake(load_api("apisrs"), TWO, weights="pw")
    w = res.weights.to_numpy()
    assert res.ess == pytest.approx(w.sum() ** 2 / np.sum(w**2))
    assert res.deff == pytest.approx(200 / res.ess)
    q = res.weight_quantiles()
    assert q[0.0] == pytest.approx(w.min()) and q[1.0] == pytest.approx(w.max())
    assert res.variable_errors.max() == res.marginal_error <= 1e-10
    text = res.summary()
    for piece in ("converged after", "Kish effective sample size", "sch.wide", "known population"):
        assert piece in text
    margins = res.margins.set_index(["variable", "level"])
    assert margins.loc[("stype", "H"), "n"] == 25
    assert margins.loc[("stype", "H"), "target"] == pytest.approx(755 / 6194)
    assert margins.loc[("stype", "H"), "sample"] == pytest.approx(25 / 200)
    fig = res.plot()
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)


def test_targets_from_a_long_table():
    frame = pd.DataFrame(
        {
            "variable": ["stype"] * 3 + ["sch.wide"] * 2,
            "level": ["E", "H", "M", "No", "Yes"],
            "target": [4421, 755, 1018, 1072, 5122],
        }
    )
    targets = targets_from_frame(frame)
    a = rake(load_api("apisrs"), targets, weights="pw").weights
    np.testing.assert_allclose(a, rake(load_api("apisrs"), TWO, weights="pw").weights)


def test_import_raking_loads_no_pandas_and_rake_is_lazy():
    code = (
        "import sys, json, raking; before = 'pandas' in sys.modules; "
        "f = raking.rake; print(json.dumps([before, 'pandas' in sys.modules, f.__module__]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, True, "raking.survey.frontend"]
    with pytest.raises(AttributeError, match="no attribute 'rake_it'"):
        raking.rake_it  # noqa: B018


@pytest.mark.parametrize("order", ["same", "reversed", "strings"])
def test_categorical_codes_are_copied_small_and_equal_to_the_string_coding(order):
    # The fast path hands categorical codes through as they are (when the categories are the
    # target levels, in order); it must still give the same weights as any other coding, and
    # never alias the DataFrame's own codes.
    from raking.survey.codes import _code_column

    srs = load_api("apisrs")
    levels = list(MARGINS["stype"].index)
    cats = {"same": levels, "reversed": levels[::-1], "strings": None}[order]
    column = srs["stype"].astype(str)
    data = srs.assign(stype=column if cats is None else pd.Categorical(column, categories=cats))
    codes = _code_column(data["stype"], levels, "error")
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(np.asarray(levels, dtype=object)[codes], column.to_numpy())
    if cats is not None:
        assert not np.shares_memory(codes, data["stype"].cat.codes.to_numpy())
    res = rake(data, TWO, weights="pw")
    ref = rake(srs.assign(stype=column), TWO, weights="pw")
    np.testing.assert_allclose(res.weights.to_numpy(), ref.weights.to_numpy(), rtol=1e-12)
