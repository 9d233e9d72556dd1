"""raking.rake on bad input: each error names the column and level and the fix; data untouched."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from raking.exceptions import ConvergenceWarning, EmptyCategoryError, SparseLevelWarning
from raking.survey.data import api_population_margins, load_api
from raking.survey.frontend import rake

MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}


@pytest.fixture
def srs():
    data = load_api("apisrs")
    data.index = [f"s{i}" for i in range(len(data))]
    return data


def _raises_and_keeps(data, match, exc=ValueError, **kwargs):
    before = data.copy()
    with pytest.raises(exc, match=match):
        rake(data, **kwargs)
    pd.testing.assert_frame_equal(data, before)


def test_missing_values_raise_naming_column_rows_and_options(srs):
    srs.loc[["s3", "s7"], "sch.wide"] = np.nan
    _raises_and_keeps(
        srs,
        r"data column 'sch.wide' \(targets\['sch.wide'\]\) has 2 missing value\(s\), at rows "
        r"\[s3, s7\].*na='drop'.*na='level'",
        targets=TWO,
        weights="pw",
    )


def test_na_drop_gives_nan_weights_and_rakes_the_rest(srs):
    srs.loc[["s3", "s7"], "sch.wide"] = np.nan
    res = rake(srs, TWO, weights="pw", na="drop")
    assert res.weights[["s3", "s7"]].isna().all() and res.n == 198
    assert res.weights.sum() == pytest.approx(6194) and res.converged
    est = res.mean("api00")
    assert est.n == 198 and any("2 rows dropped" in note for note in est.notes)


def test_na_level_needs_a_target_for_missing(srs):
    srs.loc[["s3", "s7"], "sch.wide"] = np.nan
    with pytest.raises(ValueError, match=r"level\(s\) \[nan \(2 rows\)\]"):
        rake(srs, TWO, weights="pw", na="level")
    targets = {"stype": TWO["stype"], "sch.wide": {"No": 1000, "Yes": 5100, np.nan: 94}}
    with pytest.warns(SparseLevelWarning, match=r"\[nan \(2 rows\)\]"):
        res = rake(srs, targets, weights="pw", na="level")
    assert res.weights[["s3", "s7"]].sum() == pytest.approx(94)


def test_target_level_without_rows_is_infeasible(srs):
    targets = {"stype": {"E": 4000, "H": 700, "M": 1000, "K": 494}, "sch.wide": TWO["sch.wide"]}
    _raises_and_keeps(
        srs,
        r"targets\['stype'\] has level\(s\) \['K'\] with positive target.*no row of data",
        exc=EmptyCategoryError,
        targets=targets,
        weights="pw",
    )


def test_sample_level_absent_from_targets(srs):
    srs.loc["s5", "stype"] = "K"
    _raises_and_keeps(
        srs,
        r"data has level\(s\) \['K' \(1 rows\)\] of targets\['stype'\].*unknown='zero'",
        targets=TWO,
        weights="pw",
    )
    with pytest.warns(UserWarning, match=r"'K' \(1 rows\).*get weight 0"):
        res = rake(srs, TWO, weights="pw", unknown="zero")
    assert res.weights["s5"] == 0 and res.weights.sum() == pytest.approx(6194)
    est = res.mean("api00")
    assert est.n == 199 and any("weight 0" in note for note in est.notes)


def test_level_type_mismatch_gets_a_hint(srs):
    srs["year"] = np.where(np.arange(200) % 2 == 0, 1, 2)
    targets = {"year": {"1": 0.5, "2": 0.5}}
    _raises_and_keeps(
        srs,
        r"types differ \(data has 1 of type int, the targets '1' of type str\)",
        targets=targets,
    )


def test_target_variable_missing_from_the_data(srs):
    targets = {"stype": TWO["stype"], "sch_wide": TWO["sch.wide"]}
    _raises_and_keeps(
        srs,
        r"targets\['sch_wide'\] names column\(s\) \['sch_wide'\].*did you mean \['sch.wide'",
        targets=targets,
    )


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ({"stype": {"E": 0.7, "H": 0.1, "M": 0.1}}, r"targets\['stype'\] sums to 0.9: shares must"),
        (
            {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"] + 1},
            r"targets\['sch.wide'\] sums to 6196 but targets\['stype'\] sums to 6194",
        ),
        (
            {"stype": MARGINS["stype"] / 6194, "sch.wide": MARGINS["sch.wide"]},
            r"sums to 6194 \(counts\) but targets\['stype'\] sums to 1 \(shares\)",
        ),
        (
            {"stype": {"E": 4421, "H": -755, "M": 1018}},
            r"negative or non-finite.*level\(s\) \['H'\]",
        ),
        (
            {"stype": {"E": 4421, "H": np.inf, "M": 1018}},
            r"non-finite value\(s\) at level\(s\) \['H'\]",
        ),
        ({("stype", "sch.wide"): {"E": 1, "H": 2}}, r"each level must be a tuple of 2 values"),
    ],
)
def test_bad_targets(srs, targets, match):
    _raises_and_keeps(srs, match, targets=targets)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_non_positive_design_weights_name_the_row(srs, bad):
    srs.loc["s9", "pw"] = bad
    _raises_and_keeps(
        srs,
        r"weights \(column 'pw'\) has 1 missing, non-positive or non-finite value\(s\) "
        r"at rows \[s9\]",
        targets=TWO,
        weights="pw",
    )


def test_unreachable_level_under_bounds_names_the_level_and_the_bound(srs):
    _raises_and_keeps(
        srs,
        r"bounds \(0.95, 1.1\) make targets\['sch.wide'\] level 'No' unreachable.*lower lo to at "
        r"most 0.9355",
        targets=TWO,
        weights="pw",
        bounds=(0.95, 1.1),
    )


def test_jointly_unreachable_bounds_report_within_seconds(srs):
    # each level alone is reachable; together they are not (scipy linprog: infeasible)
    start = time.perf_counter()
    with pytest.warns(ConvergenceWarning, match=r"stopped decreasing.*widen bounds"):
        res = rake(srs, TWO, weights="pw", bounds=(0.93, 1.016))
    assert time.perf_counter() - start < 5
    assert not res.converged and res.stalled and res.marginal_error > 1e-6
    assert "NOT converged" in res.summary() and "stalled" in res.summary()
    assert any("did NOT converge" in note for note in res.mean("api00").notes)


def test_convergence_warning_is_a_warning_not_printed_output(srs, capsys):
    with pytest.warns(ConvergenceWarning, match=r"after 1 sweeps .* max \|margin - target\| ="):
        res = rake(srs, TWO, weights="pw", max_iter=1, tol=1e-14)
    assert not res.converged and res.iterations == 1
    assert capsys.readouterr().out == ""


def test_sparse_levels_warn_with_their_counts(srs):
    srs["grp"] = np.where(np.arange(200) < 3, "rare", "common")
    with pytest.warns(
        SparseLevelWarning, match=r"targets\['grp'\] level\(s\) \['rare' \(3 rows\)\]"
    ):
        rake(srs, {"grp": {"rare": 0.02, "common": 0.98}})


def test_bad_arguments_name_themselves(srs):
    _raises_and_keeps(srs, r"na must be one of \['error', 'drop', 'level'\]", targets=TWO, na="x")
    _raises_and_keeps(srs, r"unknown must be one of", targets=TWO, unknown="skip")
    _raises_and_keeps(srs, r"bounds must be None or a pair", targets=TWO, bounds=(2, 1))
    _raises_and_keeps(srs, r"targets must be a non-empty mapping", exc=TypeError, targets=[1])
    _raises_and_keeps(
        srs, r"targets\['stype'\] must map each level", exc=TypeError, targets={"stype": [1, 2]}
    )
    with pytest.raises(TypeError, match=r"data must be a pandas.DataFrame"):
        rake(srs.to_numpy(), TWO)
    _raises_and_keeps(srs, r"total must be a positive finite number", targets=TWO, total=-5)


def test_single_psu_stratum_is_reported(srs):
    srs["region"] = np.where(np.arange(200) == 0, "north", "south")
    _raises_and_keeps(srs, r"stratum 'north' has a single PSU", targets=TWO, strata="region")


def test_estimator_errors_name_the_column(srs):
    res = rake(srs, TWO, weights="pw")
    with pytest.raises(TypeError, match=r"column 'sname' has dtype .*proportion\('sname'\)"):
        res.mean("sname")
    with pytest.raises(ValueError, match=r"names column\(s\) \['api0'\].*did you mean \['api00'"):
        res.mean("api0")
    with pytest.raises(ValueError, match=r"column 'acs.46' has \d+ missing value\(s\) among"):
        res.mean("acs.46")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(res.mean("api00").se)


def test_design_weights_of_dropped_rows_are_not_checked_and_series_are_aligned(srs):
    srs.loc["s3", "sch.wide"] = np.nan
    srs.loc["s3", "pw"] = np.nan
    res = rake(srs, TWO, weights="pw", na="drop")
    assert np.isnan(res.weights["s3"]) and res.converged
    shuffled = srs["pw"].sample(frac=1.0, random_state=1)  # a Series is aligned on the index
    again = rake(srs, TWO, weights=shuffled, na="drop")
    np.testing.assert_allclose(again.weights.dropna(), res.weights.dropna())


def test_missing_values_in_a_categorical_whose_categories_are_the_levels(srs):
    # The categorical fast path (codes used as they are) must still see the -1 of a missing
    # value: raise by default, drop or make it a level on request.
    levels = list(TWO["sch.wide"].index)
    srs["sch.wide"] = pd.Categorical(srs["sch.wide"], categories=levels)
    srs.loc[["s3", "s7"], "sch.wide"] = np.nan
    _raises_and_keeps(srs, r"'sch.wide'.*2 missing value\(s\)", targets=TWO, weights="pw")
    res = rake(srs, TWO, weights="pw", na="drop")
    assert res.weights[["s3", "s7"]].isna().all() and res.converged
    targets = {"stype": TWO["stype"], "sch.wide": {"No": 1000, "Yes": 5100, np.nan: 94}}
    with pytest.warns(SparseLevelWarning):
        res = rake(srs, targets, weights="pw", na="level")
    assert res.weights[["s3", "s7"]].sum() == pytest.approx(94)
