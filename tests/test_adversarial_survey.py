"""Adversarial inputs to :func:`raking.rake`: each gets the right weights or a clear error.

Issue 11: design weights whose sum overflows (finding 10), subnormal and mixed huge/tiny ones;
messages that must name the argument, the column and the row (finding 12); labels of any type
(ints, tuples, MultiIndex columns); read-only, strided and nullable inputs. Every error is a
``ValueError`` (or ``TypeError`` for a wrong kind of argument) whose message names the argument.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import raking
from raking.exceptions import SparseLevelWarning

SHARES = {"sex": {"F": 0.6, "M": 0.4}, "age": {"y": 0.3, "m": 0.3, "o": 0.4}}
COUNTS = {"sex": {"F": 600.0, "M": 400.0}, "age": {"y": 300.0, "m": 300.0, "o": 400.0}}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "sex": np.tile(["F", "M"], n // 2),
            "age": np.tile(["y", "m", "o"], n // 3),
            "w": np.round(rng.uniform(1, 4, n) * 4) / 4,  # few bits: exact when scaled by 2**k
            "y": rng.normal(size=n),
        },
        index=[f"r{i}" for i in range(n)],
    )


def _rake(data, targets, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, underflow or invalid-value warnings
        return raking.rake(data, targets, **kwargs)


# --- finding 10: design weights near the float64 limits ----------------------------------------


@pytest.mark.parametrize("scale", [2.0**1015, 1e307 / 4, 2.0**-1035, 2.0**-1068])
def test_count_targets_with_extreme_design_weights_give_the_weights_of_normal_ones(data, scale):
    # 1e307 x 60 rows overflows: the weights were all 0 (counts) or all NaN (shares)
    ref = _rake(data, COUNTS, weights="w")
    extreme = data.assign(w=data["w"] * scale)
    out = _rake(extreme, COUNTS, weights="w")
    if math.frexp(scale)[0] == 0.5:  # a power of two: the same bits
        np.testing.assert_array_equal(out.weights.to_numpy(), ref.weights.to_numpy())
    np.testing.assert_allclose(out.weights.to_numpy(), ref.weights.to_numpy(), rtol=1e-14)
    assert out.converged and out.weight_total == 1000.0
    assert out.margins["error"].abs().max() <= 1e-10
    shares = _rake(extreme, SHARES, weights="w", total=1000.0)  # a total makes shares counts
    np.testing.assert_allclose(shares.weights.to_numpy(), ref.weights.to_numpy(), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for steps in (None, 1):  # the standard errors do not depend on the scale either
            want = _rake(data, COUNTS, weights="w", steps=steps).mean("y")
            got = _rake(extreme, COUNTS, weights="w", steps=steps).mean("y")
            assert got.se == pytest.approx(want.se, rel=1e-9) and math.isfinite(got.se)


@pytest.mark.parametrize("scale", [2.0**1020, 2.0**-1000])
def test_bounded_raking_with_extreme_design_weights_keeps_g_within_the_bounds(data, scale):
    ref = _rake(data, COUNTS, weights="w", bounds=(2.0, 20.0))  # g near 1000 / 150
    bounds = (2.0 / scale, 20.0 / scale)  # g = w / d scales inversely with d
    out = _rake(data.assign(w=data["w"] * scale), COUNTS, weights="w", bounds=bounds)
    np.testing.assert_allclose(out.weights.to_numpy(), ref.weights.to_numpy(), rtol=1e-8)
    g = out.weights.to_numpy() / (data["w"].to_numpy() * scale)
    assert bounds[0] * (1 - 1e-12) <= g.min() and g.max() <= bounds[1] * (1 + 1e-12)


@pytest.mark.parametrize("scale", [1e307, 1e-310, 1e-320])
def test_share_targets_whose_total_is_not_representable_are_refused(data, scale):
    # the weights would sum to the design weights' total: inf, or subnormal (few digits)
    extreme = data.assign(w=data["w"] * scale)
    with pytest.raises(ValueError, match=r"sum of weights \(column 'w'\).*Pass total=N") as info:
        raking.rake(extreme, SHARES, weights="w")
    assert ("beyond the largest float64" in str(info.value)) == (scale > 1)


def test_design_weights_spanning_beyond_float64_are_refused_with_their_rows(data):
    data.loc["r4", "w"], data.loc["r9", "w"] = 1e307, 1e-300
    with pytest.raises(ValueError, match=r"weights \(column 'w'\) spans more than 2\*\*1000") as e:
        raking.rake(data, COUNTS, weights="w")
    assert "row 'r4'" in str(e.value) and "row 'r9'" in str(e.value)


def test_mixed_huge_and_tiny_design_weights_within_range_rake(data):
    d = data["w"].to_numpy().copy()
    d[::2] *= 1e150
    d[1::2] *= 1e-140  # a spread of 1e290 (2**963)
    out = _rake(data.assign(w=d), SHARES, weights="w", total=1000.0)
    w = out.weights.to_numpy()
    assert out.converged and np.isfinite(w).all() and (w > 0).all()
    for key, target in SHARES.items():
        got = out.weights.groupby(data[key]).sum() / 1000.0
        np.testing.assert_allclose(got[list(target)], list(target.values()), atol=1e-10)


# --- finding 12: messages name the argument, the column and the row ----------------------------


def test_an_unknown_categorical_level_is_listed_alone_without_a_wrong_type_hint():
    frame = pd.DataFrame({"sex": pd.Categorical(["F", "M", "Z", "F", "M"] * 4)})
    with pytest.raises(ValueError, match=r"level\(s\) \['Z' \(4 rows\)\] of targets\['sex'\]") as e:
        raking.rake(frame, {"sex": {"F": 0.5, "M": 0.5}})
    assert "types differ" not in str(e.value) and "0 rows" not in str(e.value)
    with pytest.warns(UserWarning, match=r"level\(s\) 'Z' \(4 rows\) of targets") as record:
        raking.rake(frame, {"sex": {"F": 0.5, "M": 0.5}}, unknown="zero")
    assert not any("0 rows" in str(r.message) for r in record)


def test_a_real_type_mismatch_names_both_types():
    frame = pd.DataFrame({"code": [1, 2] * 5})
    with pytest.raises(ValueError, match=r"data has 1 of type int, the targets '1' of type str"):
        raking.rake(frame, {"code": {"1": 0.5, "2": 0.5}})


@pytest.mark.parametrize("how", ["column", "series", "array", "string dtype"])
def test_non_numeric_weights_name_the_rows_that_are_not_numbers(data, how):
    w = data["w"].astype(object)
    w.iloc[[3, 7]] = ["abc", "1,5"]
    frame = data.assign(w=w.astype("string") if how == "string dtype" else w)
    weights = {"series": w, "array": w.to_numpy()}.get(how, "w")
    with pytest.raises(ValueError, match=r"must be numeric, one value per row") as info:
        raking.rake(frame, SHARES, weights=weights)
    message = str(info.value)
    assert "could not convert" not in message and "'abc'" in message
    assert "rows [r3, r7]" in message  # rows of data, by index label
    assert message.startswith("weights (column 'w')") == (how in ("column", "string dtype"))


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.ones(60, dtype=bool), "True/False"),
        (pd.array([True] * 60, dtype="boolean"), "True/False"),
        (pd.date_range("2020", periods=60), "dates"),
        (pd.to_timedelta(np.arange(1, 61), unit="D"), "time spans"),
        (np.ones(60) + 1j, "complex"),
    ],
)
def test_flags_dates_and_complex_weights_are_refused_not_converted(data, values, kind):
    with pytest.raises(ValueError, match=rf"weights \(column 'w'\) has dtype .*\({kind}"):
        raking.rake(data.assign(w=values), SHARES, weights="w")


@pytest.mark.parametrize("dtype", ["Int64", "Float64", "float32", "int8", "uint16"])
def test_numeric_weights_of_any_dtype_give_the_float64_weights(data, dtype):
    d = np.arange(1, 61)
    ref = raking.rake(data.assign(w=d.astype(float)), SHARES, weights="w").weights
    out = raking.rake(data.assign(w=pd.array(d, dtype=dtype)), SHARES, weights="w").weights
    np.testing.assert_array_equal(out.to_numpy(), ref.to_numpy())


def test_missing_nullable_weights_are_named_by_row(data):
    w = pd.array(np.arange(1, 61), dtype="Int64")
    w[5] = pd.NA
    with pytest.raises(ValueError, match=r"weights \(column 'w'\) has 1 missing.*rows \[r5\]"):
        raking.rake(data.assign(w=w), SHARES, weights="w")


def test_one_row_with_single_level_targets_rakes_without_a_design_error():
    # "the sample has a single PSU ... drop cluster=" though no design was given
    frame = pd.DataFrame({"s": ["F"], "y": [2.0]})
    with pytest.warns(SparseLevelWarning):
        res = raking.rake(frame, {"s": {"F": 10.0}})
    assert res.weights.tolist() == [10.0] and res.converged
    try:  # no variance from one row: NaN, or an error saying so, never a number
        se = res.total("y").se
    except ValueError as exc:
        assert "PSU" in str(exc) or "variance" in str(exc)
    else:
        assert math.isnan(se)


def test_a_stratum_with_one_row_is_named_without_mentioning_clusters(data):
    data["region"] = ["a"] * 59 + ["b"]
    with pytest.raises(ValueError, match=r"stratum 'b' has a single PSU \(one row") as info:
        raking.rake(data, SHARES, strata="region")
    assert "cluster" not in str(info.value)


def test_integer_column_labels(data):
    frame = pd.DataFrame({0: data["sex"].to_numpy(), 1: data["w"].to_numpy(), 2: 1})
    ref = raking.rake(data, {"sex": SHARES["sex"]}, weights="w").weights.to_numpy()
    out = raking.rake(frame, {0: SHARES["sex"]}, weights=1, strata=2, cluster=None)
    np.testing.assert_array_equal(out.weights.to_numpy(), ref)
    with pytest.raises(ValueError, match=r"weights names column\(s\) \[3\] that data does not"):
        raking.rake(frame, {0: SHARES["sex"]}, weights=3)


def test_multiindex_columns(data):
    frame = data[["sex", "age", "w"]].copy()
    frame.columns = pd.MultiIndex.from_tuples([("g", "sex"), ("g", "age"), ("d", "w")])
    targets = {("g", "sex"): SHARES["sex"], ("g", "age"): SHARES["age"]}
    ref = raking.rake(data, SHARES, weights="w").weights.to_numpy()
    out = raking.rake(frame, targets, weights=("d", "w"))
    np.testing.assert_array_equal(out.weights.to_numpy(), ref)
    # a crossed margin of two MultiIndex columns is a tuple of column tuples
    joint = data.groupby(["sex", "age"]).size() / len(data)
    crossed = raking.rake(frame, {(("g", "sex"), ("g", "age")): joint})
    assert crossed.converged
    with pytest.raises(ValueError, match=r"names column\(s\) \[\('g', 'sx'\)\] that data") as e:
        raking.rake(frame, {("g", "sx"): SHARES["sex"]})
    assert "['g', 'sx']" not in str(e.value)
    with pytest.raises(ValueError, match=r"weights names column\(s\) \[\('d', 'x'\)\]"):
        raking.rake(frame, targets, weights=("d", "x"))


def test_a_label_that_selects_several_columns_is_an_error(data):
    frame = pd.concat([data[["sex", "w"]], data[["w"]]], axis=1)
    with pytest.raises(ValueError, match=r"weights names column 'w', but that label selects 2"):
        raking.rake(frame, {"sex": SHARES["sex"]}, weights="w")
    with pytest.raises(ValueError, match=r"targets\['w'\] names column 'w', but that label"):
        raking.rake(frame, {"w": {1.0: 1.0}})


# --- arrays: read-only, strided, nullable --------------------------------------------------------


def test_read_only_and_strided_weight_arrays_give_the_same_weights(data):
    ref = raking.rake(data, SHARES, weights="w").weights.to_numpy()
    ro = data["w"].to_numpy().copy()
    ro.flags.writeable = False
    strided = np.repeat(data["w"].to_numpy(), 3)[::3]
    for weights in (ro, strided, pd.Series(ro, index=data.index)):
        out = raking.rake(data, SHARES, weights=weights).weights.to_numpy()
        np.testing.assert_array_equal(out, ref)
    frame = pd.DataFrame({"sex": data["sex"].to_numpy(), "age": data["age"], "w": ro}, copy=False)
    np.testing.assert_array_equal(raking.rake(frame, SHARES, weights="w").weights, ref)


@pytest.mark.parametrize("dtype", ["Int64", "string", "category", "object"])
def test_missing_values_in_nullable_raked_columns_are_named_by_column_and_row(data, dtype):
    column = data["sex"].astype(dtype) if dtype != "Int64" else (data["sex"] == "F").astype(dtype)
    column.iloc[4] = None
    targets = {"sex": {1: 0.5, 0: 0.5} if dtype == "Int64" else SHARES["sex"]}
    with pytest.raises(
        ValueError, match=r"data column 'sex' .* 1 missing value\(s\), at rows \[r4\]"
    ):
        raking.rake(data.assign(sex=column), targets)


# --- every other argument: the error names it ---------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"targets": {"sex": {"F": math.nan, "M": 0.5}}}, ValueError, r"targets\['sex'\]"),
        ({"targets": {"sex": {"F": math.inf, "M": 0.5}}}, ValueError, r"targets\['sex'\]"),
        ({"targets": {"sex": {"F": -0.5, "M": 1.5}}}, ValueError, r"targets\['sex'\]"),
        ({"targets": {"sex": {"F": 0.0, "M": 0.0}}}, ValueError, r"targets\['sex'\] sums to 0"),
        ({"targets": {"sex": {"F": "a", "M": 0.5}}}, ValueError, r"targets\['sex'\]"),
        ({"targets": {"sex": [0.5, 0.5]}}, TypeError, r"targets\['sex'\]"),
        ({"targets": {}}, TypeError, r"targets must be a non-empty mapping"),
        ({"targets": {"nope": {"F": 1.0}}}, ValueError, r"targets\['nope'\] names column"),
        ({"weights": np.ones(5)}, ValueError, r"weights has shape \(5,\)"),
        ({"weights": np.full(60, -1.0)}, ValueError, r"weights has 60 missing, non-positive"),
        ({"weights": np.full(60, math.inf)}, ValueError, r"weights has 60 missing, non-positive"),
        ({"weights": "nope"}, ValueError, r"weights names column\(s\) \['nope'\]"),
        ({"steps": -1}, ValueError, r"steps"),
        ({"tol": math.nan}, ValueError, r"tol"),
        ({"max_iter": 0}, ValueError, r"max_iter"),
        ({"bounds": (2.0, 1.0)}, ValueError, r"bounds"),
        ({"bounds": (0.0, math.nan)}, ValueError, r"bounds"),
        ({"total": -1.0}, ValueError, r"total must be a positive finite number"),
        ({"total": math.inf}, ValueError, r"total must be a positive finite number"),
        ({"total": 1e-310}, ValueError, r"sum to 1e-310 \(total=1e-310\).*below the smallest"),
        (
            {"targets": {"sex": {"F": 1e308, "M": 1e308}}},
            ValueError,
            r"targets\['sex'\] sums to more than the largest float64",
        ),
        ({"na": "skip"}, ValueError, r"na"),
        ({"unknown": "drop"}, ValueError, r"unknown"),
        ({"strata": "nope"}, ValueError, r"strata names column"),
        ({"cluster": "nope"}, ValueError, r"cluster names column"),
        ({"fpc": "sex"}, ValueError, r"fpc \(column 'sex'\) must be numeric.*rows \[r0, r1"),
    ],
)
def test_bad_arguments_are_named(data, kwargs, error, match):
    before = data.copy()
    kwargs = {"targets": {"sex": SHARES["sex"]}, **kwargs}
    with pytest.raises(error, match=match):
        raking.rake(data, **kwargs)
    pd.testing.assert_frame_equal(data, before)  # never modified


@pytest.mark.parametrize("bad", [None, np.zeros((3, 2)), [1, 2], pd.Series([1, 2])])
def test_data_must_be_a_dataframe(bad):
    with pytest.raises(TypeError, match=r"data must be a pandas.DataFrame"):
        raking.rake(bad, {"sex": SHARES["sex"]})


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match=r"data has no rows"):
        raking.rake(pd.DataFrame({"sex": pd.Series([], dtype=object)}), {"sex": SHARES["sex"]})


@pytest.mark.parametrize("argument", ["strata", "cluster", "fpc"])
def test_missing_design_columns_are_named_by_row(data, argument):
    data["design"] = np.where(np.arange(60) % 2, 1.0, 2.0)
    data.loc["r8", "design"] = np.nan
    with pytest.raises(ValueError, match=rf"{argument} column 'design' has 1 missing .*\['r8'\]"):
        raking.rake(data, SHARES, **{argument: "design"})


def test_design_columns_with_tuple_labels(data):
    frame = data[["sex", "age", "w"]].copy()
    frame["region"] = np.tile(["a", "b", "c"], 20)
    ref = raking.rake(frame, SHARES, weights="w", strata="region").mean("w")
    frame.columns = pd.MultiIndex.from_tuples([("g", "sex"), ("g", "age"), ("d", "w"), ("d", "r")])
    targets = {("g", "sex"): SHARES["sex"], ("g", "age"): SHARES["age"]}
    out = raking.rake(frame, targets, weights=("d", "w"), strata=("d", "r")).mean(("d", "w"))
    assert out.estimate == pytest.approx(ref.estimate) and out.se == pytest.approx(ref.se)


def test_one_row_sample_says_why_its_se_is_nan():
    df = pd.DataFrame({"a": ["x"], "y": [3.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = raking.rake(df, {"a": {"x": 1.0}}, total=100)
    est = res.mean("y")
    assert est.estimate == 3.0 and np.isnan(est.se)
    assert any("single row" in note for note in est.notes)
    assert not any("single row" in note for note in _two_row_mean().notes)


def _two_row_mean():
    df = pd.DataFrame({"a": ["x", "x"], "y": [3.0, 5.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return raking.rake(df, {"a": {"x": 1.0}}, total=100).mean("y")


def test_lonely_stratum_message_shows_the_label_plainly():
    df = pd.DataFrame({"a": ["x", "y", "x", "y", "x"], "s": [0, 0, 1, 1, 2]})
    with pytest.raises(ValueError, match=r"stratum 2 has a single PSU"):
        raking.rake(df, {"a": {"x": 0.5, "y": 0.5}}, total=100, strata="s")
