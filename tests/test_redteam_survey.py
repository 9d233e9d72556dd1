"""Red-team variants of issue 11, finding 2, on the survey path.

When raking stops because the margins are unreachable together (the error stopped decreasing:
``RakeResult.stalled``), the weights where it stopped are an artefact of where it stopped and
their linearisation can be 0: ``proportion`` reported SEs of 2e-17 with zero-width intervals
for shares that miss their own targets. As :func:`raking.estimate` does when its plug-in does
not exist, the SE is then NaN with a note (and ``converged=False``), never a number.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import raking


def _stalled() -> raking.survey.results.RakeResult:
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"a": rng.integers(0, 3, 200), "y": rng.normal(size=200)})
    data["b"] = data["a"]  # the same column twice, with contradicting targets
    targets = {"a": {0: 0.2, 1: 0.3, 2: 0.5}, "b": {0: 0.3, 1: 0.3, 2: 0.4}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = raking.rake(data, targets)
    assert res.stalled and not res.converged
    return res


@pytest.mark.parametrize(
    "call",
    [
        lambda r: [r.mean("y")],
        lambda r: list(r.proportion("a").estimates),
        lambda r: list(r.mean("y", by="a").estimates),
    ],
)
def test_unreachable_margins_give_no_se(call):
    for est in call(_stalled()):
        assert math.isnan(est.se) and not est.converged
        assert any("SE is NaN" in note and "unreachable" in note for note in est.notes)


def test_a_run_cut_short_by_max_iter_keeps_its_se():
    """Not stalled (still improving): the SE at the current weights, with the note saying so."""
    data = pd.DataFrame({"a": [1, 2, 2, 2], "b": [1, 1, 2, 2], "y": [1.0, 2.0, 3.0, 4.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = raking.rake(data, {"a": {1: 0.5, 2: 0.5}, "b": {1: 0.3, 2: 0.7}}, max_iter=1)
    est = res.mean("y")
    assert not res.stalled and not est.converged and est.se > 0
