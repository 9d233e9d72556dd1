"""Realistic-size tier for :func:`raking.rake`: 2x10^5 rows with a weights column, both paths.

Issue 11, finding 1: on pandas 3 (copy-on-write) a DataFrame's columns are read-only arrays, and
the compiled passes (used from 100,000 units) refused them; no test ran them with a weights column
at this size. These tests run ``rake`` on 200,000 rows on the cells path (few crossed cells) and
on the rows path (more crossed cells than half the rows; see
:func:`raking.survey.weights._units`), with
integer, nullable, string, object and categorical columns, and check that the margins are met and
that the weights do not depend on the column types or on the path. Arrays made read-only by hand
(``writeable=False`` in a DataFrame built with ``copy=False``) make the tests fail on pandas 2 as
well. The whole tier takes a few seconds (the first compile of the passes included).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import raking
from raking.survey.weights import _rake

N = 200_000
FEW = (4, 12, 30)  # 1,440 crossed cells: the cells path
MANY = (4, 5, 8, 12, 20, 30)  # 2.3 million crossed cells, most rows alone: the rows path


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def _sample(levels: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Dependent skewed codes, design weights, and targets that a reweighting of them meets."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=N)
    codes = np.stack(
        [
            np.clip(((0.6 * latent + rng.normal(size=N)) * L / 4 + L / 2).astype(int), 0, L - 1)
            for L in levels
        ]
    )
    d = rng.uniform(1.0, 3.0, N)
    w = d * np.exp(0.3 * latent)  # a population that differs from the sample
    targets = [np.bincount(c, weights=w, minlength=L) for c, L in zip(codes, levels, strict=True)]
    return codes, d, [t / t.sum() for t in targets]


def _as(kind: str, c: np.ndarray, size: int) -> tuple[object, list]:
    """Column ``c`` (codes 0..size-1) in the dtype ``kind``, and its levels in that type."""
    if kind == "int8":
        return _read_only(c.astype(np.int8)), list(range(size))
    if kind == "int64":
        return _read_only(c.astype(np.int64)), list(range(size))
    if kind in ("Int64", "Float64", "float32", "uint16"):  # levels 0, 1, ... as ints match
        return pd.array(c.astype(np.float64), dtype=kind), list(range(size))
    names = np.array([f"L{j:02d}" for j in range(size)], dtype=object)
    if kind == "str":  # pandas 3's default string dtype; pandas 2's "string"
        return pd.array(names[c], dtype="string"), list(names)
    if kind == "object":
        return _read_only(names[c]), list(names)
    if kind == "category":  # categories in another order than the targets, one unused
        cats = [*names[::-1], "unused"]
        return pd.Categorical.from_codes(size - 1 - c, categories=cats), list(names)
    raise AssertionError(kind)


def _frame(codes, d, kinds, weight_kind="float64"):
    columns, levels = {}, []
    for v, (c, kind) in enumerate(zip(codes, kinds, strict=True)):
        columns[f"v{v}"], lv = _as(kind, c, int(c.max()) + 1)
        levels.append(lv)
    if weight_kind == "float64":
        columns["w"] = _read_only(d)
    elif weight_kind == "float32":
        columns["w"] = _read_only(d.astype(np.float32))
    else:
        columns["w"] = pd.array(d, dtype=weight_kind)
    return pd.DataFrame(columns, copy=False), levels


def _targets(levels, shares):
    return {
        f"v{v}": dict(zip(lv, t, strict=True))
        for v, (lv, t) in enumerate(zip(levels, shares, strict=True))
    }


def _check_margins(data, weights, targets, tol=1e-9):
    total = weights.sum()
    for key, target in targets.items():
        got = weights.groupby(data[key].to_numpy(dtype=object)).sum() / total
        want = pd.Series(target)
        np.testing.assert_allclose(got.reindex(want.index).to_numpy(), want.to_numpy(), atol=tol)


@pytest.fixture(scope="module")
def many():
    return _sample(MANY, seed=1)


@pytest.fixture(scope="module")
def few():
    return _sample(FEW, seed=2)


def test_rows_path_with_a_read_only_weights_column_and_mixed_column_types(many):
    codes, d, shares = many
    kinds = ("int64", "str", "category", "Int64", "int8", "object")
    data, levels = _frame(codes, d, kinds)
    assert not data["w"].to_numpy().flags.writeable  # read-only on pandas 2 as on pandas 3
    targets = _targets(levels, shares)
    res = raking.rake(data, targets, weights="w")
    assert res.method.startswith("rows") and res.converged
    _check_margins(data, res.weights, targets)
    # the same codes as plain integers give the same weights (the column types do not matter)
    plain, plain_levels = _frame(codes, d, ("int64",) * len(MANY))
    ref = raking.rake(plain, _targets(plain_levels, shares), weights="w")
    np.testing.assert_allclose(res.weights.to_numpy(), ref.weights.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("bounds", [None, (0.3, 3.0)])
def test_cells_path_equals_the_rows_path(few, bounds):
    codes, d, shares = few
    data, levels = _frame(codes, d, ("category", "str", "int8"))
    targets = _targets(levels, shares)
    res = raking.rake(data, targets, weights="w", bounds=bounds)
    assert res.method.startswith("cells") and res.converged
    _check_margins(data, res.weights, targets)
    t = [s * d.sum() for s in shares]
    kw = {"steps": None, "tol": 1e-10, "max_iter": 1000, "bounds": bounds}
    rows = _rake(codes, t, _read_only(d), method="rows", **kw)  # the compiled passes
    assert rows.method == "rows, numba" or not _numba()
    np.testing.assert_allclose(res.weights.to_numpy(), rows.weights, rtol=1e-8)


@pytest.mark.parametrize(
    "kinds", [("float32", "Float64", "uint16"), ("object", "Int64", "str"), ("int8",) * 3]
)
def test_the_column_types_do_not_change_the_weights(few, kinds):
    codes, d, shares = few
    data, levels = _frame(codes, d, kinds)
    plain, plain_levels = _frame(codes, d, ("int64",) * len(FEW))
    res = raking.rake(data, _targets(levels, shares), weights="w")
    ref = raking.rake(plain, _targets(plain_levels, shares), weights="w")
    assert res.method == ref.method and res.method.startswith("cells")
    np.testing.assert_array_equal(res.weights.to_numpy(), ref.weights.to_numpy())


@pytest.mark.parametrize("weight_kind", ["float32", "Float64", "Int64"])
def test_any_numeric_weights_column_gives_the_weights_of_its_float64_values(few, weight_kind):
    codes, d, shares = few
    d = np.ceil(d * 10) if weight_kind == "Int64" else d.astype(np.float32).astype(np.float64)
    data, levels = _frame(codes, d, ("int64", "object", "category"), weight_kind=weight_kind)
    as_float, _ = _frame(codes, d, ("int64", "object", "category"))
    targets = _targets(levels, shares)
    res = raking.rake(data, targets, weights="w")
    ref = raking.rake(as_float, targets, weights="w")
    np.testing.assert_array_equal(res.weights.to_numpy(), ref.weights.to_numpy())
    _check_margins(data, res.weights, targets)


def _numba() -> bool:
    from raking.survey.compiled import numba_available

    return numba_available()


def test_nullable_columns_with_missing_values_drop_their_rows(few):
    codes, d, shares = few
    data, levels = _frame(codes, d, ("Int64", "str", "category"), weight_kind="Float64")
    missing = np.arange(N) % 1000 == 7
    data["v0"] = data["v0"].mask(missing)
    data["v1"] = data["v1"].mask(np.roll(missing, 3))
    targets = _targets(levels, shares)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy or pandas warnings on the way
        res = raking.rake(data, targets, weights="w", na="drop")
    dropped = missing | np.roll(missing, 3)
    assert res.weights[dropped].isna().all() and res.weights[~dropped].gt(0).all()
    kept = data[~dropped]
    _check_margins(kept, res.weights[~dropped], targets)


def test_the_command_line_rakes_a_csv_with_a_weights_column(tmp_path, many):
    codes, d, _ = many
    rows = 120_000
    frame = pd.DataFrame({f"v{v}": codes[v, :rows] for v in range(len(MANY))})
    frame["w"] = d[:rows]
    frame.to_csv(tmp_path / "data.csv", index=False)
    args = []
    for v in range(len(MANY)):
        share = np.bincount(codes[v, :rows], weights=d[:rows], minlength=MANY[v])
        long = pd.DataFrame({"level": np.arange(MANY[v]), "target": share / share.sum()})
        long.to_csv(tmp_path / f"t{v}.csv", index=False)
        args += ["--target", f"v{v}={tmp_path / f't{v}.csv'}"]
    from raking.cli import main

    out = tmp_path / "weights.csv"
    code = main(["rake", str(tmp_path / "data.csv"), *args, "--weights", "w", "--out", str(out)])
    assert code == 0
    weights = pd.read_csv(out)["weight"].to_numpy()
    # the targets are the design-weighted shares: raking returns the design weights
    np.testing.assert_allclose(weights, d[:rows], rtol=1e-9)
