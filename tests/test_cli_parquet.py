"""``raking rake`` on Parquet files: streamed through Polars, same weights as the CSV path.

The CSV path (pandas, all rows in memory) is the independent reference: the same rows written
as one CSV file must give the same weights to 1e-12, whatever the split into Parquet files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raking.cli import main

pl = pytest.importorskip("polars")
pytest.importorskip("pyarrow")

TARGETS = {
    "sex": "level,target\nF,0.52\nM,0.48\n",
    "age": "level,target\n1,0.3\n2,0.45\n3,0.25\n",
    "region": "level,target\nN,0.2\nS,0.3\nE,0.25\nW,0.25\n",
}


def _frame(n: int = 600, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n, p=[0.6, 0.4]),
            "age": rng.choice(np.array([1, 2, 3], dtype=np.int8), n, p=[0.5, 0.3, 0.2]),
            "region": rng.choice(["N", "S", "E", "W"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "w": rng.uniform(0.5, 3.0, n),
        }
    )


def _write_parquet(frame: pd.DataFrame, folder, sizes) -> list:
    """``frame`` split into files of ``sizes`` rows, named so that sorting keeps the order."""
    folder.mkdir(exist_ok=True)
    files, start = [], 0
    for i, size in enumerate(sizes):
        path = folder / f"part-{i:02d}.parquet"
        frame.iloc[start : start + size].to_parquet(path, index=False)
        files.append(path)
        start += size
    assert start == len(frame)
    return files


def _targets(tmp_path, columns=("sex", "age", "region")) -> list[str]:
    argv = []
    for column in columns:
        path = tmp_path / f"{column}.csv"
        path.write_text(TARGETS[column])
        argv += ["--target", f"{column}={path}"]
    return argv


def _run(capsys, *argv):
    code = main(["rake", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _reference(tmp_path, capsys, frame, *flags) -> pd.DataFrame:
    """The weights of the CSV path (pandas) on the same rows."""
    frame.to_csv(tmp_path / "all.csv", index=False)
    out = tmp_path / "reference.csv"
    code, _, err = _run(capsys, tmp_path / "all.csv", *_targets(tmp_path), *flags, "--out", out)
    assert code == 0, err
    return pd.read_csv(out)


def _assert_same(weights: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(weights.columns) == ["row", "weight"]
    np.testing.assert_array_equal(weights["row"].to_numpy(), np.arange(len(reference)))
    got, want = weights["weight"].to_numpy(), reference["weight"].to_numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-12, atol=0)


@pytest.mark.parametrize("sizes", [(600,), (250, 100, 250), (1, 598, 1)])
def test_several_files_give_the_weights_of_the_csv_path(tmp_path, capsys, sizes):
    frame = _frame()
    files = _write_parquet(frame, tmp_path / "data", sizes)
    reference = _reference(tmp_path, capsys, frame, "--weights", "w")
    out = tmp_path / "weights.parquet"
    code, stdout, err = _run(capsys, *files, *_targets(tmp_path), "--weights", "w", "--out", out)
    assert code == 0, err
    assert "converged" in stdout and f"wrote {out}" in stdout
    _assert_same(pd.read_parquet(out), reference)


def test_a_quoted_glob_and_a_folder_are_expanded_in_sorted_order(tmp_path, capsys):
    frame = _frame()
    _write_parquet(frame, tmp_path / "data", (200, 200, 200))
    reference = _reference(tmp_path, capsys, frame)
    for data in (tmp_path / "data" / "part-*.parquet", tmp_path / "data"):
        out = tmp_path / "w.parquet"
        code, _, err = _run(capsys, data, *_targets(tmp_path), "--out", out)
        assert code == 0, err
        _assert_same(pd.read_parquet(out), reference)


def test_out_format_follows_its_suffix(tmp_path, capsys):
    """Parquet in, CSV out; CSV in, Parquet out: the same two columns and numbers."""
    frame = _frame()
    files = _write_parquet(frame, tmp_path / "data", (300, 300))
    reference = _reference(tmp_path, capsys, frame)
    code, _, err = _run(capsys, *files, *_targets(tmp_path), "--out", tmp_path / "w.csv")
    assert code == 0, err
    _assert_same(pd.read_csv(tmp_path / "w.csv"), reference)
    out = tmp_path / "from_csv.parquet"
    code, _, err = _run(capsys, tmp_path / "all.csv", *_targets(tmp_path), "--out", out)
    assert code == 0, err
    _assert_same(pd.read_parquet(out), reference)


def test_na_drop_leaves_the_dropped_rows_empty_as_the_csv_path_does(tmp_path, capsys):
    frame = _frame()
    frame.loc[[3, 250, 599], "region"] = None
    files = _write_parquet(frame, tmp_path / "data", (300, 300))
    reference = _reference(tmp_path, capsys, frame, "--na", "drop")
    assert reference["weight"].isna().sum() == 3
    out = tmp_path / "w.parquet"
    code, _, err = _run(capsys, *files, *_targets(tmp_path), "--na", "drop", "--out", out)
    assert code == 0, err
    _assert_same(pd.read_parquet(out), reference)


def test_the_rows_are_streamed_never_read_whole(tmp_path, capsys, monkeypatch):
    """raking.rake gets a Polars LazyFrame; no reader of whole files into memory is called."""
    import pyarrow.parquet as pq

    import raking.survey.frontend as frontend

    frame = _frame()
    files = _write_parquet(frame, tmp_path / "data", (300, 300))
    reference = _reference(tmp_path, capsys, frame)

    def forbidden(*args, **kwargs):
        raise AssertionError("a whole Parquet file was read into memory")

    monkeypatch.setattr(pd, "read_parquet", forbidden)
    monkeypatch.setattr(pl, "read_parquet", forbidden)
    monkeypatch.setattr(pq, "read_table", forbidden)
    received = []
    rake = frontend.rake

    def spy(data, *args, **kwargs):
        received.append(type(data))
        return rake(data, *args, **kwargs)

    monkeypatch.setattr(frontend, "rake", spy)
    out = tmp_path / "w.parquet"
    code, _, err = _run(capsys, *files, *_targets(tmp_path), "--out", out)
    assert code == 0, err
    assert received == [pl.LazyFrame]
    monkeypatch.undo()
    _assert_same(pd.read_parquet(out), reference)


# ------------------------------------------------------------------------------------------------
# Bad input: the messages of the CSV path, naming the flag, the file and the column
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def parquet(tmp_path):
    return _write_parquet(_frame(), tmp_path / "data", (300, 300))


def test_a_missing_file_is_named(tmp_path, capsys, parquet):
    missing = tmp_path / "data" / "part-99.parquet"
    code, _, err = _run(capsys, *parquet, missing, *_targets(tmp_path), "--out", tmp_path / "w.pq")
    assert code == 1
    assert f"cannot read DATA file {missing}: no such file" in err
    assert not (tmp_path / "w.pq").exists()


def test_a_pattern_that_matches_nothing_is_named(tmp_path, capsys):
    pattern = tmp_path / "nothing-*.parquet"
    code, _, err = _run(capsys, pattern, *_targets(tmp_path), "--out", tmp_path / "w.parquet")
    assert code == 1
    assert f"DATA pattern {pattern} matches no file" in err


def test_a_missing_column_lists_the_columns(tmp_path, capsys, parquet):
    (tmp_path / "income.csv").write_text("level,target\n1,1\n")
    argv = [*parquet, "--target", f"income={tmp_path / 'income.csv'}"]
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "w.parquet")
    assert code == 1
    assert "--target income=" in err and "'sex', 'age', 'region', 'w'" in err
    code, _, err = _run(
        capsys, *parquet, *_targets(tmp_path), "--weights", "pw", "--out", tmp_path / "w.pq"
    )
    assert code == 1
    assert "--weights pw: no such column" in err


def test_a_level_outside_the_targets_points_to_the_unknown_flag(tmp_path, capsys, parquet):
    argv = _targets(tmp_path)
    (tmp_path / "region.csv").write_text("level,target\nN,0.3\nS,0.3\nE,0.4\n")  # no W
    code, _, err = _run(capsys, *parquet, *argv, "--out", tmp_path / "w.parquet")
    assert code == 1
    assert "--unknown zero" in err and "'W'" in err and "unknown=" not in err
    assert not (tmp_path / "w.parquet").exists()


def test_nan_in_a_raked_column_points_to_the_na_flag(tmp_path, capsys):
    frame = _frame()
    frame.loc[10, "region"] = None
    files = _write_parquet(frame, tmp_path / "data", (300, 300))
    code, _, err = _run(capsys, *files, *_targets(tmp_path), "--out", tmp_path / "w.parquet")
    assert code == 1
    assert "--na drop" in err and "--na level" in err and "na=" not in err
    assert not (tmp_path / "w.parquet").exists()


def test_a_target_level_of_the_wrong_type_is_an_error(tmp_path, capsys, parquet):
    argv = _targets(tmp_path)
    (tmp_path / "age.csv").write_text("level,target\n1,0.3\n2.5,0.45\n3,0.25\n")
    code, _, err = _run(capsys, *parquet, *argv, "--out", tmp_path / "w.parquet")
    assert code == 1
    assert "'2.5'" in err and "are not whole numbers" in err and "column 'age'" in err


def test_a_text_weights_column_is_an_error(tmp_path, capsys):
    frame = _frame().assign(w=lambda f: f["w"].astype(str))
    files = _write_parquet(frame, tmp_path / "data", (600,))
    argv = [*files, *_targets(tmp_path), "--weights", "w", "--out", tmp_path / "w.parquet"]
    code, _, err = _run(capsys, *argv)
    assert code == 1
    assert "--weights w: column 'w'" in err and "not numbers" in err


def test_files_with_different_columns_are_named(tmp_path, capsys, parquet):
    other = tmp_path / "data" / "part-02.parquet"
    _frame(10).drop(columns="w").to_parquet(other, index=False)
    code, _, err = _run(capsys, *parquet, other, *_targets(tmp_path), "--out", tmp_path / "w.pq")
    assert code == 1
    assert f"DATA file {other} has columns" in err and "the same columns" in err


def test_a_file_that_is_not_parquet_is_named(tmp_path, capsys):
    fake = tmp_path / "fake.parquet"
    fake.write_text("sex,age\nF,1\n")
    code, _, err = _run(capsys, fake, *_targets(tmp_path), "--out", tmp_path / "w.parquet")
    assert code == 1
    assert f"cannot read DATA file {fake} as Parquet" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("extra", ["more.csv", "data/part-00.parquet"])
def test_csv_mixed_with_parquet_or_a_file_twice_is_refused(tmp_path, capsys, parquet, extra):
    _frame(10).to_csv(tmp_path / "more.csv", index=False)
    argv = [*parquet, tmp_path / extra, *_targets(tmp_path), "--out", tmp_path / "w.parquet"]
    code, _, err = _run(capsys, *argv)
    if extra.endswith(".csv"):
        assert code == 2
        assert "DATA must be one CSV file, or Parquet files" in err
    else:
        assert code == 1
        assert "is given twice" in err


def test_out_may_not_be_a_data_file(tmp_path, capsys, parquet):
    before = parquet[0].read_bytes()
    code, _, err = _run(capsys, *parquet, *_targets(tmp_path), "--out", parquet[0])
    assert code == 2
    assert "one of the input files" in err
    assert parquet[0].read_bytes() == before
