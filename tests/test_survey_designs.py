"""Multi-stage designs and lonely PSUs of raking.rake against R survey (tests/data/r/designs.R).

R 4.2.2, survey 4.1.1: ``calibrate(design, ~stype + sch.wide, pop, calfun="raking")`` on the
API samples, then ``svymean`` / ``svytotal`` / ``svyby``; the CSVs in tests/data/r are its output.
Weights must agree to 1e-8 and SEs to 1e-6, relative.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest

import raking
from raking.survey.data import api_population_margins, load_api
from raking.survey.design import SurveyDesign
from raking.survey.linearization import design_variance

R_DIR = Path(__file__).parent / "data" / "r"
R_WEIGHTS = pd.read_csv(R_DIR / "designs_weights.csv")
R_ESTIMATES = pd.read_csv(R_DIR / "designs_estimates.csv", keep_default_na=False)
MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}
LONELY = ["certainty", "remove", "adjust", "average"]


def _with_enroll_domain(frame: pd.DataFrame) -> pd.DataFrame:
    """R's na.rm=TRUE estimates of enroll are those of the domain of rows with enroll."""
    return frame.assign(enroll_ok=frame["enroll"].notna(), enroll0=frame["enroll"].fillna(0.0))


def _clus2() -> pd.DataFrame:
    return _with_enroll_domain(load_api("apiclus2"))


def _clus2_strata() -> pd.DataFrame:
    extra = pd.read_csv(R_DIR / "designs_apiclus2_strata.csv")
    frame = _clus2().merge(extra, on="snum", how="left", validate="one_to_one")
    assert frame["dstr"].notna().all()
    return frame


def _clus3() -> pd.DataFrame:
    extra = pd.read_csv(R_DIR / "designs_apiclus2_three.csv")
    return _clus2().merge(extra, on="snum", how="left", validate="one_to_one")


def _strat_lonely() -> pd.DataFrame:
    """apistrat with one high school (R: the one with the smallest snum)."""
    strat = load_api("apistrat")
    first_h = strat.loc[strat["stype"] == "H", "snum"].min()
    sub = strat[(strat["stype"] != "H") | (strat["snum"] == first_h)].reset_index(drop=True)
    return _with_enroll_domain(sub)


def _clus1_lonely() -> pd.DataFrame:
    """apiclus1 with the district of smallest dnum alone in stratum A."""
    clus = load_api("apiclus1")
    clus["str"] = np.where(clus["dnum"] == clus["dnum"].min(), "A", "B")
    return _with_enroll_domain(clus)


def _fpc_weights(frame: pd.DataFrame, strata: list, cluster: list, fpc: list) -> np.ndarray:
    """R's design weights from the fpc counts: the product over the stages of N_h / n_h.

    n_h counts the units of stage k in the row's stratum of stage k, read within the units
    (and strata) of the stages above, as R's svydesign does.
    """
    weights = np.ones(len(frame))
    above: list = []
    for s, c, f in zip(strata, cluster, fpc, strict=True):
        keys = above + ([s] if s is not None else [])
        units = frame.groupby(keys)[c].transform("nunique") if keys else frame[c].nunique()
        weights = weights * frame[f].to_numpy() / np.asarray(units)
        above = [*keys, c]
    return weights


# case -> (data, rake keyword arguments); "lonely" is added per R row
CASES = {
    "clus2_fpc": (_clus2, {"weights": "pw", "cluster": ["dnum", "snum"], "fpc": ["fpc1", "fpc2"]}),
    "clus2_fpc_steps0": (
        _clus2,
        {"weights": "pw", "cluster": ["dnum", "snum"], "fpc": ["fpc1", "fpc2"], "steps": 0},
    ),
    "clus2_fpc_design": (
        _clus2,
        {"weights": "pw", "cluster": ["dnum", "snum"], "fpc": ["fpc1", "fpc2"], "steps": 0},
    ),
    "clus2_nofpc": (_clus2, {"weights": "pw", "cluster": ["dnum", "snum"]}),
    "clus2_fpc1_only": (
        _clus2,
        {"weights": "pw", "cluster": ["dnum", "snum"], "fpc": ["fpc1", None]},
    ),
    "clus2_strat": (
        _clus2_strata,
        {
            "weights": "w",
            "strata": ["dstr", "stype"],
            "cluster": ["dnum", "snum"],
            "fpc": ["fpc1s", "fpc2s"],
        },
    ),
    "clus2_strat1": (
        _clus2_strata,
        {"weights": "w", "strata": "dstr", "cluster": ["dnum", "snum"], "fpc": ["fpc1s", "fpc2"]},
    ),
    "clus3": (
        _clus3,
        {
            "weights": "w",
            "cluster": ["cnum", "dnum", "snum"],
            "fpc": ["fpc_county", "fpc_district", "fpc_school"],
        },
    ),
    "clus2_nest": (
        _clus2,
        {
            "weights": "w",
            "strata": "stype",
            "cluster": ["dnum", "snum"],
            "fpc": ["fpc1", "fpc2"],
            "nest": True,
        },
    ),
    "strat_lonely": (_strat_lonely, {"weights": "w", "strata": "stype", "fpc": "fpc"}),
    "strat_lonely_nofpc": (_strat_lonely, {"weights": "w", "strata": "stype"}),
    "clus1_lonely": (
        _clus1_lonely,
        {"weights": "w", "strata": "str", "cluster": "dnum", "fpc": "fpc"},
    ),
}
# R's design weights (from the fpc) of each case: the stages and fpc columns that give them
FPC_WEIGHTS = {
    "clus3": (
        [None, None, None],
        ["cnum", "dnum", "snum"],
        ["fpc_county", "fpc_district", "fpc_school"],
    ),
    "clus2_strat": (["dstr", "stype"], ["dnum", "snum"], ["fpc1s", "fpc2s"]),
    "clus2_strat1": (["dstr", None], ["dnum", "snum"], ["fpc1s", "fpc2"]),
    "clus2_nest": (["stype", None], ["dnum", "snum"], ["fpc1", "fpc2"]),
    "strat_lonely": (["stype"], ["snum"], ["fpc"]),
    "strat_lonely_nofpc": (["stype"], ["snum"], ["fpc"]),
    "clus1_lonely": (["str"], ["dnum"], ["fpc"]),
}


def _data(case: str) -> pd.DataFrame:
    make, kwargs = CASES[case]
    frame = make()
    if case in FPC_WEIGHTS:
        frame[kwargs["weights"]] = _fpc_weights(frame, *FPC_WEIGHTS[case])
    return frame


def _rake(case: str, lonely: str) -> raking.survey.results.RakeResult:
    options = dict(CASES[case][1])
    if lonely != "fail":
        options["lonely_psu"] = lonely
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", raking.exceptions.SparseLevelWarning)
        return raking.rake(_data(case), TWO, tol=1e-13, **options)


def _ours(res: raking.survey.results.RakeResult, statistic: str, variable: str, domain: str):
    if variable == "enroll":
        assert domain == ""
        if statistic == "total":
            return res.total("enroll0")
        table = res.mean("enroll0", by="enroll_ok")
        return table.estimates[list(table.labels).index(True)]
    if domain:
        column, level = domain.split("=")
        table = res.mean(variable, by=column)
        return table.estimates[list(table.labels).index(level)]
    return getattr(res, statistic)(variable)


@pytest.mark.parametrize(
    ("case", "lonely"),
    sorted(set(zip(R_ESTIMATES["case"], R_ESTIMATES["lonely"], strict=True))),
)
def test_estimates_and_ses_equal_r_survey(case, lonely):
    res = _rake(case, lonely)
    assert res.converged
    rows = R_ESTIMATES[(R_ESTIMATES["case"] == case) & (R_ESTIMATES["lonely"] == lonely)]
    assert len(rows) >= 4
    for row in rows.itertuples():
        est = _ours(res, row.statistic, row.variable, row.domain)
        what = f"{case} {lonely} {row.statistic} {row.variable} {row.domain}"
        assert est.estimate == pytest.approx(float(row.estimate), rel=1e-9), what
        if np.isnan(float(row.se)):
            assert np.isnan(est.se), what
            assert any("no variance to average" in note for note in est.notes), what
        else:
            assert est.se == pytest.approx(float(row.se), rel=1e-6), what


@pytest.mark.parametrize("case", sorted(set(R_WEIGHTS["case"])))
def test_weights_equal_r_survey(case):
    lonely = R_ESTIMATES.loc[R_ESTIMATES["case"] == case, "lonely"].iloc[0]
    r = R_WEIGHTS[R_WEIGHTS["case"] == case]
    design = CASES[case][1]["weights"]
    np.testing.assert_allclose(_data(case)[design], r["design"], rtol=1e-12)
    np.testing.assert_allclose(_rake(case, lonely).weights, r["weight"], rtol=1e-8)


def test_the_repository_csv_is_r_s_apiclus2():
    # R's weights(svydesign(id=~dnum+snum, fpc=~fpc1+fpc2)) equal the CSV's pw (designs.R checks)
    frame = load_api("apiclus2")
    n1 = frame["dnum"].nunique()
    n2 = frame.groupby("dnum")["snum"].transform("nunique")
    np.testing.assert_allclose(frame["pw"], frame["fpc1"] / n1 * frame["fpc2"] / n2, rtol=1e-12)


# --- properties of the multi-stage formula ---------------------------------------------------


def test_two_stage_variance_is_the_first_stage_plus_the_fractions_times_the_second():
    rng = np.random.default_rng(5)
    psu = np.repeat(np.arange(6), [3, 2, 4, 1, 2, 3])
    n = psu.size
    z = rng.normal(size=n)
    ssu_fpc = np.array([5.0, 2.0, 9.0, 1.0, 4.0, 3.0])[psu]  # PSU 3: its one unit of one
    design = SurveyDesign.from_codes(
        n,
        strata=[None, None],
        cluster=[_coded("psu", psu), _coded("ssu", np.arange(n))],
        fpc=[("f1", np.full(n, 20.0)), ("f2", ssu_fpc)],
    )
    first = design_variance(z, cluster=psu, fraction=np.array([6 / 20]))
    second = 0.0
    for c in range(6):
        zc, m, big_m = z[psu == c], (psu == c).sum(), ssu_fpc[psu == c][0]
        if m > 1:
            second += (1 - m / big_m) * m / (m - 1) * ((zc - zc.mean()) ** 2).sum()
    assert design.variance(z) == pytest.approx(first + 6 / 20 * second, rel=1e-13)
    no_fpc = SurveyDesign.from_codes(
        n,
        strata=[None, None],
        cluster=[_coded("psu", psu), _coded("ssu", np.arange(n))],
        fpc=[None, None],
    )
    assert no_fpc.variance(z) == pytest.approx(design_variance(z, cluster=psu), rel=1e-13)


def _coded(name, codes):
    codes = np.asarray(codes, dtype=np.intp)
    return raking.survey.design.Coded(name, codes, list(range(int(codes.max()) + 1)))


def test_certainty_first_stage_keeps_the_whole_second_stage():
    # every PSU sampled (fpc1 = number of PSUs): stage 1 contributes 0, stage 2 in full
    frame = _clus2()
    frame["all_districts"] = frame["dnum"].nunique()
    res = raking.rake(
        frame, TWO, weights="pw", cluster=["dnum", "snum"], fpc=["all_districts", "fpc2"]
    )
    one_stage = raking.rake(frame, TWO, weights="pw", strata="dnum", fpc="fpc2", nest=True)
    # the second stage alone is a stratified (by district) one-stage design of schools
    assert res.mean("api00").se == pytest.approx(one_stage.mean("api00").se, rel=1e-12)


def test_labels_of_a_later_stage_are_read_within_their_psu():
    frame = _clus2()
    ref = raking.rake(frame, TWO, weights="pw", cluster=["dnum", "snum"], fpc=["fpc1", "fpc2"])
    # renumber the schools 0, 1, ... within each district: the same design
    frame["school"] = frame.groupby("dnum").cumcount()
    out = raking.rake(frame, TWO, weights="pw", cluster=["dnum", "school"], fpc=["fpc1", "fpc2"])
    assert out.mean("api00").se == ref.mean("api00").se


def test_one_stage_designs_given_as_lists_are_the_same():
    strat = load_api("apistrat")
    ref = raking.rake(strat, TWO, weights="pw", strata="stype", fpc="fpc").mean("api00")
    out = raking.rake(strat, TWO, weights="pw", strata=["stype"], fpc=["fpc"], cluster=["snum"])
    assert out.mean("api00").se == pytest.approx(ref.se, rel=1e-13)


def test_nest_reads_psu_labels_within_strata():
    strat = load_api("apistrat")
    strat["psu"] = strat.groupby("stype").cumcount()  # 0, 1, ... in each stratum
    ref = raking.rake(strat, TWO, weights="pw", strata="stype", fpc="fpc").mean("api00")
    out = raking.rake(
        strat, TWO, weights="pw", strata="stype", cluster="psu", fpc="fpc", nest=True
    ).mean("api00")
    assert out.se == pytest.approx(ref.se, rel=1e-13)


def test_notes_say_the_stages_and_the_lonely_option():
    res = _rake("clus2_nest", "adjust")
    notes = res.mean("api00").notes
    assert notes[0].startswith("2-stage design, clusters as PSUs, stratified, with fpc")
    assert any("lonely_psu='adjust'" in note and "at stage 2" in note for note in notes)
    assert not any("lonely" in note for note in _rake("clus2_fpc", "fail").mean("api00").notes)


def test_a_lonely_stratum_sampled_whole_is_no_error():
    # R: a stratum with fpc = its sample size contributes 0 before the lonely-PSU check
    strat = _data("strat_lonely")
    strat.loc[strat["stype"] == "H", "fpc"] = 1
    with pytest.warns(raking.exceptions.SparseLevelWarning, match=r"'H' \(1 rows\)"):
        res = raking.rake(strat, TWO, weights="w", strata="stype", fpc="fpc", tol=1e-13)
    certainty = _rake("strat_lonely", "certainty")
    assert res.mean("api00").se == pytest.approx(certainty.mean("api00").se, rel=1e-12)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"cluster": ["dnum", "snum"], "fpc": ["fpc1"]},
            r"fpc has 1 entry for the 2 stages of cluster=\['dnum', 'snum'\]; give one per "
            r"stage.*fpc=\['fpc1', 'fpc2'\]",
        ),
        (
            {"cluster": ["dnum", "snum"], "fpc": "fpc1"},
            r"fpc has 1 entry for the 2 stages",
        ),
        ({"cluster": "dnum", "fpc": ["fpc1", "fpc2"]}, r"fpc has 2 entries for the one stage"),
        ({"cluster": ["dnum"], "strata": ["stype", "sch.wide"]}, r"strata has 2 entries for"),
        ({"cluster": []}, r"cluster=\[\] names no stage"),
        ({"cluster": ["dnum", None]}, r"cluster=\['dnum', None\] has a None stage"),
        ({"lonely_psu": "fail"}, r"lonely_psu must be one of \['error', 'certainty'"),
        ({"cluster": ["dnum", "nope"]}, r"cluster names column\(s\) \['nope'\]"),
    ],
)
def test_bad_design_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        raking.rake(_clus2(), TWO, weights="pw", **kwargs)


def test_a_psu_in_two_strata_is_an_error_unless_nest():
    frame = _clus2()
    with pytest.raises(
        ValueError,
        match=r"cluster column 'dnum' \(stage 1\) has unit \d+ in two strata, '\w' and '\w'.*"
        r"pass nest=True",
    ):
        raking.rake(frame, TWO, weights="pw", strata="stype", cluster=["dnum", "snum"])


def test_a_later_stage_unit_in_two_strata_of_its_stage_is_an_error_unless_nest():
    frame = _clus2()
    frame["half"] = np.arange(len(frame)) % 2  # stage-2 strata: alternate rows
    frame["block"] = frame["dnum"]  # stage-2 units: one per district, so split by "half"
    with pytest.raises(ValueError, match=r"cluster column 'block' \(stage 2\) has unit \d+ in two"):
        raking.rake(frame, TWO, weights="pw", strata=[None, "half"], cluster=["dnum", "block"])


def test_fpc_must_be_constant_within_a_stratum_of_its_stage():
    frame = _clus2()
    frame.loc[frame.index[3], "fpc2"] = 7  # district 83 has fpc2 3 in its other rows
    with pytest.raises(
        ValueError,
        match=r"fpc column 'fpc2' must be constant within each stratum \(stage 2: unit 83 of "
        r"'dnum' has 3.0 and 7.0\)",
    ):
        raking.rake(frame, TWO, weights="pw", cluster=["dnum", "snum"], fpc=["fpc1", "fpc2"])


def test_fpc_below_the_sampled_units_is_an_error():
    frame = _clus2()
    frame.loc[frame["dnum"] == 83, "fpc2"] = 2  # 3 schools sampled of "2"
    with pytest.raises(
        ValueError,
        match=r"fpc column 'fpc2' gives more sampled units of stage 2 than the population has: "
        r"stage 2, unit 83 of 'dnum': the fpc is 2.0, smaller than the 3 sampled",
    ):
        raking.rake(frame, TWO, weights="pw", cluster=["dnum", "snum"], fpc=["fpc1", "fpc2"])
    frame = _clus2()
    frame["fpc1"] = 30  # 40 districts sampled
    with pytest.raises(ValueError, match=r"fpc column 'fpc1' gives more sampled PSUs"):
        raking.rake(frame, TWO, weights="pw", cluster=["dnum", "snum"], fpc=["fpc1", "fpc2"])


def test_lonely_strata_are_errors_by_default_naming_stage_and_stratum():
    with pytest.raises(ValueError, match=r"stratum 'H' has a single PSU \(one row.*lonely_psu="):
        _rake("strat_lonely", "fail")
    with pytest.raises(ValueError, match=r"stratum 'A' has a single PSU \(one cluster \(of col"):
        _rake("clus1_lonely", "fail")
    with pytest.raises(
        ValueError,
        match=r"stage 2: stratum '\w' of PSU \d+ \(of column 'dnum'\) in stratum '(even|odd)' has "
        r"a single sampled unit \(one cluster \(of column 'snum'\).*lonely_psu=.*of its stage\.$",
    ):
        _rake("clus2_strat", "fail")
    with pytest.raises(
        ValueError,
        match=r"^stage 2: PSU \d+ \(of column 'dnum'\) has a single sampled unit .*"
        r"'average' \(R's survey.lonely.psu\)\.$",
    ):
        _rake("clus2_fpc1_only", "fail")


def test_a_later_stage_unit_split_by_strata_is_two_units_with_nest():
    frame = _clus2()
    frame["half"] = np.arange(len(frame)) % 2
    frame["block"] = frame["dnum"]
    res = raking.rake(
        frame, TWO, weights="pw", strata=[None, "half"], cluster=["dnum", "block"], nest=True
    )
    assert np.isfinite(res.mean("api00").se)


# --- the formula against R's recursion, written out --------------------------------------------


def _r_onestrat(x, cluster, n_psu, popsize, lonely):
    """R survey 4.1.1 onestrat for a vector x (one stratum's rows)."""
    f = 1.0 if popsize is None else (1.0 if np.isinf(popsize) else (popsize - n_psu) / popsize)
    scale = f * n_psu / (n_psu - 1) if n_psu > 1 else f
    if f < 1e-7:
        return 0.0
    totals = np.array([x[cluster == c].sum() for c in np.unique(cluster)])
    if lonely != "adjust" or totals.size > 1:
        totals = totals - totals.mean()
    if n_psu > 1 or lonely in ("certainty", "remove", "adjust"):
        return float(scale * (totals**2).sum())
    return np.nan  # "average" (and "fail", which R raises on)


def _r_multistage(x, clusters, strata, popsizes, lonely):
    """R survey 4.1.1 multistage -> onestage -> onestrat, one recursion per stage."""
    values, n_strata = [], 0
    for h in np.unique(strata[:, 0]):
        rows = strata[:, 0] == h
        n_psu = np.unique(clusters[rows, 0]).size
        pop = None if popsizes is None else popsizes[rows, 0][0]
        values.append(_r_onestrat(x[rows], clusters[rows, 0], n_psu, pop, lonely))
        n_strata += 1
    ok = [v for v in values if not np.isnan(v)]
    v = sum(ok) * n_strata / len(ok) if ok else np.nan
    if popsizes is not None and clusters.shape[1] > 1:
        for c in np.unique(clusters[:, 0]):
            rows = clusters[:, 0] == c
            h = strata[rows, 0][0]
            n_psu = np.unique(clusters[strata[:, 0] == h, 0]).size
            sub = _r_multistage(
                x[rows], clusters[rows, 1:], strata[rows, 1:], popsizes[rows, 1:], lonely
            )
            v += sub * n_psu / popsizes[rows, 0][0]
    return v


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**32 - 1),
    n_strata=st.integers(1, 3),
    lonely=st.sampled_from(LONELY),
    with_fpc=st.booleans(),
)
def test_variance_equals_r_recursion_on_random_two_stage_designs(seed, n_strata, lonely, with_fpc):
    rng = np.random.default_rng(seed)
    psu_stratum = rng.integers(0, n_strata, size=rng.integers(2, 9))  # stratum of each PSU
    rows_of_psu = rng.integers(1, 5, size=psu_stratum.size)
    psu = np.repeat(np.arange(psu_stratum.size), rows_of_psu)
    n = psu.size
    stratum = psu_stratum[psu]
    ssu = np.arange(n)
    ssu_stratum = rng.integers(0, 2, size=n)  # two possible strata of schools in each PSU
    n_h = np.array([np.unique(psu[stratum == h]).size for h in range(n_strata)])
    pop1 = (n_h + rng.integers(0, 3, size=n_strata))[stratum].astype(float)  # certainty too
    pop2 = np.empty(n)
    for key in {(p, s) for p, s in zip(psu, ssu_stratum, strict=True)}:
        rows = (psu == key[0]) & (ssu_stratum == key[1])
        pop2[rows] = rows.sum() + rng.integers(0, 3)
    z = rng.normal(size=n)
    design = SurveyDesign.from_codes(
        n,
        strata=[_coded("h", stratum), _coded("s2", ssu_stratum)],
        cluster=[_coded("psu", psu), _coded("ssu", ssu)],
        fpc=[("f1", pop1), ("f2", pop2)] if with_fpc else [None, None],
        lonely_psu=lonely,
    )
    # R's codes: stage-2 strata and units are read within their PSU
    clusters = np.column_stack([psu, psu * 10 + ssu])
    strata = np.column_stack([stratum, psu * 10 + ssu_stratum])
    popsizes = np.column_stack([pop1, pop2]) if with_fpc else None
    expected = _r_multistage(z, clusters, strata, popsizes, lonely)
    got = design.variance(z)
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)
