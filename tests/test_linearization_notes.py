"""What the SE method text and notes say about R survey (issue 11, finding 14).

The converged linearisation equals R ``calibrate(calfun="raking")``'s; R's ``rake()`` removes
unweighted level means instead, which differs where the design weights vary within levels. The
text must say so, not "as R survey rake/calibrate".
"""

from __future__ import annotations

import pytest

from raking.survey.data import api_population_margins, load_api
from raking.survey.frontend import rake

MARGINS = api_population_margins()
TWO = {"stype": MARGINS["stype"], "sch.wide": MARGINS["sch.wide"]}
_R_RAKE = "R survey's rake() reports a different SE here"


def test_converged_se_method_names_calibrate_not_rake():
    est = rake(load_api("apisrs"), TWO, weights="pw").mean("api00")
    assert 'equals R survey calibrate(calfun="raking")' in est.se_method
    assert "rake/calibrate" not in est.se_method and "rake()" not in est.se_method
    assert "conjugate gradients to relative residual <= 1e-12" in est.se_method


@pytest.mark.parametrize(
    ("name", "design", "varies"),
    [
        ("apistrat", {"strata": "stype", "fpc": "fpc"}, True),  # pw varies within sch.wide
        ("apisrs", {}, False),  # equal weights: rake() and calibrate() agree
        ("apiclus1", {"cluster": "dnum", "fpc": "fpc"}, False),
    ],
)
def test_a_note_says_when_r_rake_would_differ(name, design, varies):
    res = rake(load_api(name), TWO, weights="pw", **design)
    for est in (res.mean("api00"), res.total("enroll"), res.proportion("awards")["Yes"]):
        assert any(_R_RAKE in note for note in est.notes) is varies
    table = res.mean("api00", by="awards")
    assert (_R_RAKE in table.summary()) is varies


def test_no_r_rake_note_for_the_k_step_se():
    est = rake(load_api("apistrat"), TWO, weights="pw", steps=2).mean("api00")
    assert not any(_R_RAKE in note for note in est.notes)
    assert est.se_method.startswith("linearisation after k = 2 raking steps")
