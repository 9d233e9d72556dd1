"""A lazy Polars frame is counted in batches (bounded memory): the same cells, weights and SEs.

``raking.survey.frames._GROUP_ROWS`` rows are grouped at a time and the partial tables merged
every ``_MERGE`` batches; shrunk here so that a small frame takes many batches and merges, with
missing levels (``na="drop"``), NaN, null and zeroed unknown levels spread over the batches.
The batches are one streaming pass (``collect_batches``) where polars has it, else slices: both
are tested, on a filtered frame too (whose slices would each recompute the filter).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raking

pl = pytest.importorskip("polars")

TARGETS = {
    "region": {"north": 0.2, "south": 0.3, "east": 0.25, "west": 0.25},
    "age": {0.0: 0.15, 1.0: 0.25, 2.0: 0.3, 3.0: 0.3},
    "flag": {True: 0.45, False: 0.55},
}


def sample(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stratum = rng.integers(0, 4, n)
    region = rng.choice(
        np.array(["north", "south", "east", "west", "nowhere"], dtype=object),
        n,
        p=[0.2, 0.3, 0.25, 0.24, 0.01],
    )
    region[rng.random(n) < 0.01] = None
    age = rng.integers(0, 4, n).astype(float)
    age[rng.random(n) < 0.02] = np.nan
    return pd.DataFrame(
        {
            "region": pd.Series(region, dtype=object),
            "age": age,
            "flag": rng.random(n) < 0.4,
            "stratum": stratum,
            "psu": stratum * 50 + rng.integers(0, 9, n),
            "w": rng.uniform(1.0, 3.0, n) * (1 + stratum),
            "y": rng.normal(20.0, 4.0, n),
        }
    )


@pytest.fixture(params=["batches", "slices"])
def streaming(request, monkeypatch):
    """Both ways of reading a lazy frame in pieces: ``collect_batches``, or slices (polars < it)."""
    if request.param == "slices":
        monkeypatch.delattr(pl.LazyFrame, "collect_batches", raising=False)
    elif not hasattr(pl.LazyFrame, "collect_batches"):
        pytest.skip("this polars has no LazyFrame.collect_batches")
    return request.param


@pytest.mark.parametrize("rows", [1, 7, 40, 1000])
def test_batches_are_the_rows_in_order(streaming, rows):
    from raking.survey.frames import _batches

    frame = pl.DataFrame({"a": np.arange(300), "b": np.arange(300) % 7})
    lazy = frame.lazy().filter(pl.col("b") != 3).with_columns(c=pl.col("a") * 2)
    parts = list(_batches(lazy, rows))
    assert pl.concat(parts).equals(lazy.collect())
    assert all(0 < p.height <= rows for p in parts)
    empty = list(_batches(lazy.filter(pl.col("a") < 0), rows))
    assert len(empty) == 1 and empty[0].height == 0 and empty[0].columns == ["a", "b", "c"]


@pytest.mark.parametrize(("rows", "merge"), [(97, 3), (1000, 2), (2999, 8)])
def test_sliced_counting_equals_pandas(monkeypatch, streaming, rows, merge):
    from raking.survey import frames

    monkeypatch.setattr(frames, "_GROUP_ROWS", rows)
    monkeypatch.setattr(frames, "_MERGE", merge)
    df = sample(3000, seed=rows)
    options = {
        "weights": "w",
        "strata": "stratum",
        "cluster": "psu",
        "na": "drop",
        "unknown": "zero",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unknown='zero' warns, in both paths
        ref = raking.rake(df, TARGETS, **options)
        res = raking.rake(pl.from_pandas(df).lazy(), TARGETS, **options)
    got = res.weights.collect().to_series().to_numpy()
    want = ref.weights.to_numpy()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert (got == 0).sum() == (want == 0).sum() > 0  # the unknown level, zeroed
    one, one_ref = res.mean("y"), ref.mean("y")
    np.testing.assert_allclose([one.estimate, one.se], [one_ref.estimate, one_ref.se], rtol=1e-12)
    assert res.n == ref.n


def test_sliced_counting_gives_the_pandas_errors(monkeypatch, streaming):
    from raking.survey import frames

    monkeypatch.setattr(frames, "_GROUP_ROWS", 250)
    df = sample(1000, seed=7)
    for options in ({"weights": "w"}, {"weights": "w", "na": "drop"}):
        with pytest.raises(ValueError) as want:
            raking.rake(df, TARGETS, **options)
        with pytest.raises(ValueError) as got:
            raking.rake(pl.from_pandas(df).lazy(), TARGETS, **options)
        assert str(got.value) == str(want.value)


@pytest.mark.parametrize("eager", [True, False])
def test_estimate_chunks_merged_as_they_come_equal_pandas(monkeypatch, streaming, eager):
    """The estimates' chunk tables are summed every ``_MERGE`` chunks (bounded memory)."""
    from raking.survey import frames

    monkeypatch.setattr(frames, "_CHUNK_ROWS", 230)  # 2,000 rows: nine chunks
    monkeypatch.setattr(frames, "_MERGE", 2)
    df = sample(2000, seed=3).dropna()
    df = df[df["region"] != "nowhere"].reset_index(drop=True)
    options = {"weights": "w", "strata": "stratum", "cluster": "psu", "total": 1e5}
    ref = raking.rake(df, TARGETS, **options)
    data = pl.from_pandas(df)
    res = raking.rake(data if eager else data.lazy(), TARGETS, **options)
    for got, want in (
        (res.mean("y"), ref.mean("y")),
        (res.total("y"), ref.total("y")),
        (res.proportion("stratum"), ref.proportion("stratum")),
    ):
        mine, theirs = getattr(got, "estimates", [got]), getattr(want, "estimates", [want])
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_allclose([a.estimate, a.se], [b.estimate, b.se], rtol=1e-12)
    by, by_ref = res.mean("y", by="region"), ref.mean("y", by="region")
    for a, b in zip(by.estimates, by_ref.estimates, strict=True):
        np.testing.assert_allclose([a.estimate, a.se], [b.estimate, b.se], rtol=1e-12)


def test_a_filtered_lazy_frame_equals_pandas_on_its_rows(monkeypatch, streaming):
    """A lazy frame whose rows come from a filter: weights, mean, SE and errors' row numbers."""
    from raking.survey import frames

    monkeypatch.setattr(frames, "_GROUP_ROWS", 300)
    monkeypatch.setattr(frames, "_CHUNK_ROWS", 170)
    df = sample(3000, seed=11).dropna()
    df = df[df["region"] != "nowhere"].reset_index(drop=True)
    keep = (df["y"] > 18.0).to_numpy()
    ref_df = df[keep].reset_index(drop=True)
    lazy = pl.from_pandas(df).lazy().filter(pl.col("y") > 18.0)
    options = {"weights": "w", "strata": "stratum", "cluster": "psu", "total": 1e5}
    ref = raking.rake(ref_df, TARGETS, **options)
    res = raking.rake(lazy, TARGETS, **options)
    got = res.weights.collect().to_series().to_numpy()
    np.testing.assert_allclose(got, ref.weights.to_numpy(), rtol=1e-12)
    for a, b in ((res.mean("y"), ref.mean("y")), (res.total("y"), ref.total("y"))):
        np.testing.assert_allclose([a.estimate, a.se], [b.estimate, b.se], rtol=1e-12)
    bad = ref_df.assign(w=ref_df["w"].where(ref_df.index != 500, -1.0))
    lazy_bad = pl.from_pandas(
        df.assign(w=df["w"].where(df.index != np.flatnonzero(keep)[500], -1.0))
    )
    with pytest.raises(ValueError) as want:
        raking.rake(bad, TARGETS, **options)
    with pytest.raises(ValueError) as got_error:
        raking.rake(lazy_bad.lazy().filter(pl.col("y") > 18.0), TARGETS, **options)
    assert str(got_error.value) == str(want.value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=50, unique=True),
    st.booleans(),
)
def test_row_plan_keys_round_trip_in_the_smallest_dtype(keys, cells):
    """The row passes' plan carries the keys as steps: the same keys, in 1-8 bytes a step."""
    from raking.survey.frames import CellPlan

    keys = np.sort(np.array(keys, dtype=np.int64))
    cell = np.arange(keys.size) % 3 - 1  # zeroed (-1), cells 0 and 1
    plan = CellPlan(keys, cell, np.array([2.0, 3.0]), 0, 1.0, (4,))
    rows = plan.for_rows(cells=cells)
    np.testing.assert_array_equal(rows.keys, keys)
    top = int(np.diff(keys).max()) if keys.size > 1 else 0
    assert rows.steps.dtype.itemsize == next(b for b in (1, 2, 4, 8) if top < 256**b)
    want = np.where(cell >= 0, np.take([2.0, 3.0], np.maximum(cell, 0)), 0.0)
    np.testing.assert_array_equal(rows.factor[:-1], want)
    assert np.isnan(rows.factor[-1])
    assert (rows.cell is not None) == cells
