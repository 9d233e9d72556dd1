"""raking.rake on Dask and Polars frames (and PyArrow tables) equals the pandas path.

Weights, estimates and their linearised SEs (strata, clusters, fpc; ``by=``; proportions) agree
with ``raking.rake(pandas_frame)`` to 1e-12 relative whatever the partitioning (empty
partitions, levels absent from some partitions), and bad input gets the pandas path's errors.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import raking
from raking.exceptions import EmptyCategoryError

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

RTOL = 1e-12

TARGETS = {
    "region": {"north": 0.2, "south": 0.3, "east": 0.25, "west": 0.25},
    "age": {0: 0.15, 1: 0.25, 2: 0.3, 3: 0.3},
    "sex": {"F": 0.52, "M": 0.48},
}


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def sample(n: int, seed: int = 0) -> pd.DataFrame:
    """Strata, PSUs within strata (with an fpc), three raked columns, y, a by column."""
    rng = np.random.default_rng(seed)
    stratum = rng.integers(0, 6, n)
    psu = stratum * 100 + rng.integers(0, 12, n)
    region = np.array(["north", "south", "east", "west"])[rng.integers(0, 4, n)]
    age = rng.integers(0, 4, n)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    w = rng.uniform(1.0, 4.0, n) * (1 + stratum)
    y = 50 + 10 * age + 5 * (sex == "F") + rng.normal(0, 8, n)
    return pd.DataFrame(
        {
            "region": region,
            "age": age,
            "sex": sex,
            "stratum": stratum,
            "psu": psu,
            "fpc": 2000.0 + 500.0 * stratum,
            "w": w,
            "y": y,
            "z": rng.exponential(3.0, n),
            "group": rng.choice(["a", "b", "c"], n),
        }
    )


def with_empty_partitions(df: pd.DataFrame, npartitions: int):
    """A Dask frame of ``df`` sorted by region (levels absent from partitions), with empty ones."""
    ordered = df.sort_values("region", kind="stable")
    pieces = [dd.from_pandas(ordered.iloc[:0], npartitions=1)]
    pieces.append(dd.from_pandas(ordered, npartitions=npartitions, sort=False))
    pieces.append(dd.from_pandas(ordered.iloc[:0], npartitions=1))
    return dd.concat(pieces)


def frames(df: pd.DataFrame) -> dict[str, object]:
    return {
        "dask-7": dd.from_pandas(df, npartitions=7),
        "dask-empty": with_empty_partitions(df, 5),
        "polars": pl.from_pandas(df),
        "polars-lazy": pl.from_pandas(df).lazy(),
        "pyarrow": pa.Table.from_pandas(df, preserve_index=False),
    }


def weights_of(result, df: pd.DataFrame) -> np.ndarray:
    """The weights of a frame result in ``df``'s row order, as NumPy."""
    w = result.weights
    if hasattr(w, "compute"):
        return w.compute().reindex(df.index).to_numpy()
    if isinstance(w, pl.LazyFrame):
        return w.collect()["weight"].to_numpy()
    if isinstance(w, pa.Array | pa.ChunkedArray):
        return np.asarray(w.to_numpy(zero_copy_only=False))
    return w.to_numpy()


def close(a, b, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=0)


def same_table(table, reference) -> None:
    assert table.labels == reference.labels
    assert table.name == reference.name
    close(table.estimate.to_numpy(), reference.estimate.to_numpy())
    close(table.se.to_numpy(), reference.se.to_numpy())
    for e, r in zip(table.estimates, reference.estimates, strict=True):
        assert e.n == r.n
        assert e.notes == r.notes
        assert e.se_method == r.se_method
        close([e.deff, e.deff_replace], [r.deff, r.deff_replace])


DESIGNS = {
    "clusters": {"strata": "stratum", "cluster": "psu", "fpc": "fpc"},
    "strata": {"strata": "stratum", "fpc": "fpc"},
    "none": {},
}


@pytest.mark.parametrize("design", list(DESIGNS))
def test_weights_and_ses_equal_pandas_whatever_the_frame(design):
    df = sample(3000, seed=1)
    options = {"weights": "w", "total": 250_000.0, **DESIGNS[design]}
    ref = raking.rake(df, TARGETS, **options)
    assert ref.method.startswith("cells")
    for name, data in frames(df).items():
        res = raking.rake(data, TARGETS, **options)
        close(weights_of(res, df), ref.weights.to_numpy())
        assert res.iterations == ref.iterations and res.converged
        pd.testing.assert_frame_equal(res.margins, ref.margins, rtol=RTOL, check_exact=False)
        one, one_ref = res.mean("y"), ref.mean("y")
        close([one.estimate, one.se], [one_ref.estimate, one_ref.se])
        assert one.notes == one_ref.notes, name
        close([res.ess, res.deff], [ref.ess, ref.deff])
        same_table(res.mean("y", by="group"), ref.mean("y", by="group"))
        same_table(res.total(["y", "z"]), ref.total(["y", "z"]))
        same_table(res.proportion("age", by="group"), ref.proportion("age", by="group"))
        close(res.mean("y", by="group").cov, ref.mean("y", by="group").cov)
        close(res.total(["y", "z"]).cov, ref.total(["y", "z"]).cov)


def test_fixed_steps_bounds_and_equal_weights_equal_pandas():
    df = sample(3000, seed=2)
    for options in (
        {"steps": 3, "strata": "stratum"},
        {"weights": "w", "bounds": (0.5, 2.0), "cluster": "psu", "strata": "stratum"},
        {"weights": "w", "steps": 5, "total": 1e6},
    ):
        ref = raking.rake(df, TARGETS, **options)
        for data in (dd.from_pandas(df, npartitions=4), pl.from_pandas(df).lazy()):
            res = raking.rake(data, TARGETS, **options)
            close(weights_of(res, df), ref.weights.to_numpy())
            one, one_ref = res.mean("y"), ref.mean("y")
            close([one.estimate, one.se], [one_ref.estimate, one_ref.se])
            assert one.se_method == one_ref.se_method


def test_dropped_and_zeroed_rows_as_pandas():
    df = sample(3000, seed=3)
    df.loc[[5, 17, 400], "age"] = np.nan
    df.loc[[9, 33], "region"] = "abroad"
    options = {"weights": "w", "strata": "stratum", "cluster": "psu", "na": "drop"}
    with pytest.warns(UserWarning, match="unknown='zero'"):
        ref = raking.rake(df, TARGETS, unknown="zero", **options)
    for data in (dd.from_pandas(df, npartitions=3), pl.from_pandas(df)):
        with pytest.warns(UserWarning, match="unknown='zero'"):
            res = raking.rake(data, TARGETS, unknown="zero", **options)
        w = weights_of(res, df)
        assert np.isnan(w[[5, 17, 400]]).all() and (w[[9, 33]] == 0).all()
        close(np.nan_to_num(w), np.nan_to_num(ref.weights.to_numpy()))
        one, one_ref = res.mean("y", by="group"), ref.mean("y", by="group")
        same_table(one, one_ref)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    npartitions=st.integers(1, 9),
    sort=st.sampled_from(["region", "age", "y", None]),
)
def test_partitioning_does_not_change_weights_or_ses(seed, npartitions, sort):
    df = sample(500, seed=seed)
    ref = raking.rake(df, TARGETS, weights="w", strata="stratum", cluster="psu")
    data = df if sort is None else df.sort_values(sort, kind="stable")
    res = raking.rake(
        dd.from_pandas(data, npartitions=npartitions, sort=False),
        TARGETS,
        weights="w",
        strata="stratum",
        cluster="psu",
    )
    close(weights_of(res, df), ref.weights.to_numpy())
    got, want = res.mean("y", by="sex"), ref.mean("y", by="sex")
    close(got.se.to_numpy(), want.se.to_numpy())


def test_realistic_size_dask_and_lazy_polars(tmp_path):
    df = sample(200_000, seed=4)
    ref = raking.rake(df, TARGETS, weights="w", strata="stratum", cluster="psu")
    path = tmp_path / "rows.parquet"
    pl.from_pandas(df).write_parquet(path)
    lazy = raking.rake(pl.scan_parquet(path), TARGETS, weights="w", strata="stratum", cluster="psu")
    out = tmp_path / "weights.parquet"
    lazy.weights.sink_parquet(out)
    close(pl.read_parquet(out)["weight"].to_numpy(), ref.weights.to_numpy())
    dres = raking.rake(
        dd.from_pandas(df, npartitions=8), TARGETS, weights="w", strata="stratum", cluster="psu"
    )
    close(dres.weights.compute().to_numpy(), ref.weights.to_numpy())
    for res in (lazy, dres):
        got, want = res.mean("y"), ref.mean("y")
        close([got.estimate, got.se], [want.estimate, want.se])


def test_weights_stay_lazy_and_aligned_with_the_partitions():
    df = sample(1000, seed=5)
    ddf = dd.from_pandas(df, npartitions=4)
    res = raking.rake(ddf, TARGETS, weights="w")
    assert hasattr(res.weights, "dask") and res.weights.npartitions == ddf.npartitions
    both = res.with_weights("raked").compute()
    close(both["raked"].to_numpy(), raking.rake(df, TARGETS, weights="w").weights.to_numpy())
    lazy = raking.rake(pl.from_pandas(df).lazy(), TARGETS, weights="w")
    assert isinstance(lazy.weights, pl.LazyFrame)
    assert lazy.with_weights().collect().columns[-1] == "weight"


def test_distributed_local_cluster():
    distributed = pytest.importorskip("distributed")
    df = sample(2000, seed=6)
    ref = raking.rake(df, TARGETS, weights="w", strata="stratum")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cluster's own start-up warnings
        with (
            distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as c,
            distributed.Client(c),
            dask.config.set(scheduler=None),
        ):
            res = raking.rake(
                dd.from_pandas(df, npartitions=4), TARGETS, weights="w", strata="stratum"
            )
            w = res.weights.compute().to_numpy()
            se = res.mean("y").se
    close(w, ref.weights.to_numpy())
    close(se, ref.mean("y").se)


# ------------------------------------------------------------------------------------------
# The same errors as pandas
# ------------------------------------------------------------------------------------------


def error_of(data, targets=TARGETS, **options):
    with pytest.raises(Exception) as info:
        raking.rake(data, targets, **options)
    return info.type, str(info.value)


BAD = {
    "unknown level": lambda df: df.assign(region=df["region"].where(df.index != 7, "abroad")),
    "missing value": lambda df: df.assign(age=df["age"].where(~df.index.isin([3, 8]))),
    "bad weight": lambda df: df.assign(w=df["w"].where(df.index != 11, -1.0)),
    "missing weight": lambda df: df.assign(w=df["w"].where(df.index != 12)),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_rows_give_the_pandas_error(case):
    df = BAD[case](sample(500, seed=7))
    want = error_of(df, weights="w")
    for data in frames(df).values():
        assert error_of(data, weights="w") == want, case


def test_missing_columns_and_empty_levels_give_the_pandas_error():
    df = sample(500, seed=8)
    cases = [
        ({**TARGETS, "income": {"lo": 0.5, "hi": 0.5}}, {"weights": "w"}),
        (TARGETS, {"weights": "weight"}),
        (TARGETS, {"weights": "w", "strata": "stratum_"}),
        ({**TARGETS, "age": {**TARGETS["age"], 3: 0.2, 9: 0.1}}, {"weights": "w"}),
    ]
    for targets, options in cases:
        want = error_of(df, targets, **options)
        for data in frames(df).values():
            assert error_of(data, targets, **options) == want
    got = error_of(pl.from_pandas(df), {**TARGETS, "age": {**TARGETS["age"], 3: 0.2, 9: 0.1}})
    assert got[0] is EmptyCategoryError


def test_design_errors_as_pandas():
    df = sample(500, seed=9)
    lonely = df.assign(stratum=np.where(df.index == 0, 99, df["stratum"]))
    split = df.assign(psu=df["psu"] % 12)  # PSU labels reused across strata
    for data, options in (
        (lonely, {"strata": "stratum", "cluster": "psu"}),
        (lonely, {"strata": "stratum"}),
        (split, {"strata": "stratum", "cluster": "psu"}),
        (df.assign(fpc=df["fpc"] + (df.index == 3)), {"strata": "stratum", "fpc": "fpc"}),
    ):
        want = error_of(data, weights="w", **options)
        assert want[0] is ValueError
        for frame in (dd.from_pandas(data, npartitions=3), pl.from_pandas(data)):
            got = error_of(frame, weights="w", **options)
            if "must be constant" in want[1]:  # the two values may come in the other order
                assert got[0] is want[0]
                assert sorted(re.findall(r"[\d.]+", got[1])) == sorted(
                    re.findall(r"[\d.]+", want[1])
                )
            elif "in two strata" in want[1]:  # another split unit may be named first
                assert got[0] is want[0]
                assert re.sub(r"unit \d+ in two strata, \d+ and \d+", "", got[1]) == re.sub(
                    r"unit \d+ in two strata, \d+ and \d+", "", want[1]
                )
            else:
                assert got == want


def test_what_frames_refuse_is_named():
    df = sample(300, seed=10)
    ddf = dd.from_pandas(df, npartitions=2)
    with pytest.raises(NotImplementedError, match="replicates="):
        raking.rake(ddf, TARGETS, weights="w", replicates="jk1", cluster="psu")
    with pytest.raises(NotImplementedError, match="2-stage design"):
        raking.rake(ddf, TARGETS, weights="w", cluster=["stratum", "psu"])
    with pytest.raises(TypeError, match="weights must be the label of a column"):
        raking.rake(ddf, TARGETS, weights=np.ones(300))
    res = raking.rake(pl.from_pandas(df), TARGETS, weights="w")
    with pytest.raises(NotImplementedError, match=re.escape("ratio() is not offered")):
        res.ratio("y", "z")
    with pytest.raises(NotImplementedError, match="ci='wald'"):
        res.proportion("age", ci="logit")
    with pytest.raises(NotImplementedError, match=r"calibrate\(method='linear'\) is not offered"):
        raking.calibrate(ddf, TARGETS, weights="w", method="linear")
    calibrated = raking.calibrate(pl.from_pandas(df), TARGETS, weights="w")  # raking: offered
    close(weights_of(calibrated, df), raking.calibrate(df, TARGETS, weights="w").weights)
    with pytest.raises(TypeError, match=r"data must be a pandas\.DataFrame, a Dask DataFrame"):
        raking.rake([1, 2, 3], TARGETS)


def test_too_many_cells_is_a_clear_error(monkeypatch):
    from raking.survey import frame_rake

    monkeypatch.setattr(frame_rake, "MAX_CELLS", 10)
    df = sample(500, seed=11)
    for data in (dd.from_pandas(df, npartitions=2), pl.from_pandas(df)):
        with pytest.raises(ValueError, match=r"non-empty cells .* more than the 10"):
            raking.rake(data, TARGETS, weights="w")


def test_categorical_nullable_and_missing_level_columns_as_pandas():
    df = sample(2000, seed=12)
    df["age"] = df["age"].astype(float)
    df.loc[[4, 40, 400, 401, 402, 403], "age"] = np.nan
    targets = {**TARGETS, "age": {0.0: 0.15, 1.0: 0.25, 2.0: 0.3, 3.0: 0.2, np.nan: 0.1}}
    ref = raking.rake(df, targets, weights="w", na="level", strata="stratum")
    cat = df.assign(region=df["region"].astype("category"))
    polars_cat = pl.from_pandas(df).with_columns(pl.col("region").cast(pl.Categorical))
    polars_enum = pl.from_pandas(df).with_columns(
        pl.col("region").cast(pl.Enum(["east", "north", "south", "west"]))
    )
    for data in (dd.from_pandas(cat, npartitions=3), polars_cat, polars_enum):
        res = raking.rake(data, targets, weights="w", na="level", strata="stratum")
        close(weights_of(res, df), ref.weights.to_numpy())
        same_table(res.mean("y", by="region"), ref.mean("y", by="region"))


def test_polars_chunks_do_not_change_estimates_or_row_labels(monkeypatch):
    from raking.survey import frames as frames_module

    monkeypatch.setattr(frames_module, "_CHUNK_ROWS", 700)  # 2,500 rows: four chunks
    df = sample(2500, seed=13)
    options = {"weights": "w", "strata": "stratum", "cluster": "psu"}
    ref = raking.rake(df, TARGETS, **options)
    for data in (pl.from_pandas(df), pl.from_pandas(df).lazy()):
        res = raking.rake(data, TARGETS, **options)
        same_table(res.mean("y", by="group"), ref.mean("y", by="group"))
        same_table(res.proportion("group"), ref.proportion("group"))
    bad = df.assign(w=df["w"].where(~df.index.isin([3, 1500, 2499]), 0.0))
    bad.loc[[10, 1900], "age"] = np.nan
    for case in (bad, bad.assign(age=df["age"])):
        want = error_of(case, weights="w")
        assert error_of(pl.from_pandas(case).lazy(), weights="w") == want
    missing_y = df.assign(y=df["y"].where(~df.index.isin([800, 2000])))
    res = raking.rake(pl.from_pandas(missing_y), TARGETS, weights="w")
    with pytest.raises(ValueError) as got:
        res.mean("y")
    with pytest.raises(ValueError) as want:
        raking.rake(missing_y, TARGETS, weights="w").mean("y")
    assert str(got.value) == str(want.value)


def test_na_omit_estimates_as_pandas():
    df = sample(2000, seed=14)
    df.loc[[3, 30, 300, 1999], "y"] = np.nan
    df.loc[[7, 70], "z"] = np.nan
    df["kind"] = df["group"].astype(object)
    df.loc[[11, 111], "kind"] = None  # None, not NaN: old polars reads no float in text
    ref = raking.rake(df, TARGETS, weights="w", strata="stratum", total=1e5)
    for data in (dd.from_pandas(df, npartitions=3), pl.from_pandas(df)):
        res = raking.rake(data, TARGETS, weights="w", strata="stratum", total=1e5)
        one, one_ref = res.mean("y", na="omit"), ref.mean("y", na="omit")
        close([one.estimate, one.se], [one_ref.estimate, one_ref.se])
        assert one.notes == one_ref.notes
        same_table(res.total(["y", "z"], na="omit"), ref.total(["y", "z"], na="omit"))
        same_table(res.mean("y", by="group", na="omit"), ref.mean("y", by="group", na="omit"))
        same_table(res.proportion("kind", na="omit"), ref.proportion("kind", na="omit"))
        for call in (
            lambda r: r.mean("y"),
            lambda r: r.proportion("kind"),
            lambda r: r.mean("y", by="kind"),
        ):
            with pytest.raises(ValueError) as got:
                call(res)
            with pytest.raises(ValueError) as want:
                call(ref)
            assert str(got.value) == str(want.value)


def test_crossed_margin_as_pandas():
    df = sample(3000, seed=21)
    cells = [(r, s) for r in ["north", "south", "east", "west"] for s in "FM"]
    targets = {("region", "sex"): dict.fromkeys(cells, 1 / 8), "age": TARGETS["age"]}
    options = {"weights": "w", "strata": "stratum", "cluster": "psu"}
    ref = raking.rake(df, targets, **options)
    for data in (dd.from_pandas(df, npartitions=4), pl.from_pandas(df).lazy()):
        res = raking.rake(data, targets, **options)
        close(weights_of(res, df), ref.weights.to_numpy())
        one, one_ref = res.mean("y"), ref.mean("y")
        close([one.estimate, one.se], [one_ref.estimate, one_ref.se])
