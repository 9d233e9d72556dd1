"""Adversarial inputs to the ``raking`` command: bad files, bad flags, unwritable outputs.

Every case must exit non-zero, and stderr must name what is wrong in the user's terms: the flag
(``--target``, ``--weights``, ``--out``, ``--na`` ...), the file and the column, never a Python
keyword (``na='drop'``) or a bare pandas message. Nothing is cast silently: a target level must
be exactly a value of its column's type.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raking.cli import main
from raking.survey.cli import as_flags

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path):
    """DATA with a text, an integer, a float and a weights column; one target file each."""
    data = pd.DataFrame(
        {
            "sex": ["F", "M"] * 6,
            "age": [1, 2, 3] * 4,
            "score": [0.5, 2.5] * 6,
            "w": [1.0, 2.0, 1.5] * 4,
        }
    )
    data.to_csv(tmp_path / "data.csv", index=False)
    _write(tmp_path / "sex.csv", "level,target\nF,0.5\nM,0.5\n")
    _write(tmp_path / "age.csv", "level,target\n1,0.2\n2,0.3\n3,0.5\n")
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _rake(tmp_path, *argv, capsys, out="w.csv", data="data.csv"):
    """Run ``raking rake DATA ... --out OUT`` in-process; (exit status, stdout, stderr)."""
    code = main(["rake", str(tmp_path / data), *argv, "--out", str(tmp_path / out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _target(tmp_path, column, name):
    return ["--target", f"{column}={tmp_path / name}"]


# ---------------------------------------------------------------------------------------------
# Finding 6: target levels of the wrong type, and a column given twice
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "levels", "wrong"),
    [
        ("age", ["1", "1.9", "3"], "'1.9'"),  # cast to 1 before: two rows of targets for age 1
        ("age", ["1", "2", "3.5"], "'3.5'"),  # cast to 3
        ("age", ["a", "2", "3"], "'a'"),  # compared as text before
        ("score", ["0.5", "x"], "'x'"),
    ],
)
def test_a_level_that_is_not_a_value_of_the_column_type_is_an_error(
    files, capsys, column, levels, wrong
):
    body = "".join(f"{lv},{1 / len(levels)}\n" for lv in levels)
    _write(files / "t.csv", "level,target\n" + body)
    code, _, err = _rake(files, *_target(files, column, "t.csv"), capsys=capsys)
    assert code == 1
    assert f"--target {column}=" in err and wrong in err and f"column {column!r}" in err
    assert not (files / "w.csv").exists()


def test_levels_that_convert_exactly_are_accepted(files, capsys):
    """'1.0' is the integer 1 and '2.50' the float 2.5: exact, so no error."""
    _write(files / "age1.csv", "level,target\n1.0,0.2\n2,0.3\n3.00,0.5\n")
    _write(files / "score.csv", "level,target\n0.50,0.4\n2.5,0.6\n")
    code, _, err = _rake(
        files,
        *_target(files, "age", "age1.csv"),
        *_target(files, "score", "score.csv"),
        capsys=capsys,
    )
    assert code == 0, err
    weights = pd.read_csv(files / "w.csv", index_col="row")["weight"]
    data = pd.read_csv(files / "data.csv")
    shares = weights.groupby(data["age"]).sum() / weights.sum()
    assert shares.to_dict() == pytest.approx({1: 0.2, 2: 0.3, 3: 0.5}, abs=1e-9)


def test_a_column_given_twice_is_an_error(files, capsys):
    _write(files / "sex2.csv", "level,target\nF,0.4\nM,0.6\n")
    code, _, err = _rake(
        files, *_target(files, "sex", "sex.csv"), *_target(files, "sex", "sex2.csv"), capsys=capsys
    )
    assert code == 2
    assert "--target sex=" in err and "twice" in err and "sex2.csv" in err
    assert not (files / "w.csv").exists()


# ---------------------------------------------------------------------------------------------
# Target files: headers, empty, duplicated levels, non-numeric targets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("F,0.5\nM,0.5\n", ["level,target", "F,0.5"]),  # no header: first level was lost
        ("lvl,tgt\nF,0.5\nM,0.5\n", ["level,target", "lvl,tgt"]),  # read by position before
        ("target,level\n0.5,F\n0.5,M\n", None),  # the right names in another order: fine
        ("level,target,extra\nF,0.5,1\nM,0.5,1\n", ["level,target", "extra"]),
        ("", ["empty"]),
        ("level,target\n", ["no rows"]),
        ("level,target\nF,0.5\nF,0.5\n", ["'F'", "more than once"]),
        ("level,target\nF,half\nM,0.5\n", ["line 2", "'half'", "numbers"]),
    ],
)
def test_a_bad_target_file_is_named(files, capsys, text, expected):
    _write(files / "t.csv", text)
    code, _, err = _rake(files, *_target(files, "sex", "t.csv"), capsys=capsys)
    if expected is None:
        assert code == 0, err
        return
    assert code == 1
    assert "t.csv" in err
    for part in expected:
        assert part in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# DATA and --weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["DATA file", "empty"]),
        ("sex,age\n", ["DATA file", "no rows"]),
        ("F,1\nM,2\nF,3\n", ["'sex' is not a column of DATA file", "'F', '1'"]),  # headerless
    ],
)
def test_a_bad_data_file_is_named(files, capsys, text, expected):
    _write(files / "bad.csv", text)
    code, _, err = _rake(files, *_target(files, "sex", "sex.csv"), capsys=capsys, data="bad.csv")
    assert code == 1
    assert "bad.csv" in err
    for part in expected:
        assert part in err


def test_a_missing_data_file_is_named(files, capsys):
    code, _, err = _rake(files, *_target(files, "sex", "sex.csv"), capsys=capsys, data="no.csv")
    assert code == 1
    assert "no.csv" in err


def test_a_text_weights_column_names_the_column_and_the_rows(files, capsys):
    data = pd.read_csv(files / "data.csv")
    data["w"] = data["w"].astype(str)
    data.loc[3, "w"] = "abc"
    data.loc[7, "w"] = "1,5"
    data.to_csv(files / "data.csv", index=False)
    code, _, err = _rake(files, *_target(files, "sex", "sex.csv"), "--weights", "w", capsys=capsys)
    assert code == 1
    assert "--weights w" in err and "data.csv" in err
    assert "row 3 (line 5): 'abc'" in err and "'1,5'" in err
    assert "could not convert" not in err


def test_a_missing_weights_column_lists_the_columns(files, capsys):
    code, _, err = _rake(files, *_target(files, "sex", "sex.csv"), "--weights", "pw", capsys=capsys)
    assert code == 1
    assert "--weights pw" in err and "'sex', 'age', 'score', 'w'" in err


def test_a_target_column_not_in_data_lists_the_columns(files, capsys):
    code, _, err = _rake(files, *_target(files, "income", "sex.csv"), capsys=capsys)
    assert code == 1
    assert "--target income=" in err and "'sex', 'age', 'score', 'w'" in err


# ---------------------------------------------------------------------------------------------
# Messages from the library name the flags, not the Python keywords
# ---------------------------------------------------------------------------------------------


def test_missing_values_point_to_the_na_flag(files, capsys):
    data = pd.read_csv(files / "data.csv")
    data.loc[2, "sex"] = None
    data.to_csv(files / "data.csv", index=False)
    code, _, err = _rake(files, *_target(files, "sex", "sex.csv"), capsys=capsys)
    assert code == 1
    assert "--na drop" in err and "--na level" in err
    assert "na=" not in err


def test_an_unknown_level_points_to_the_unknown_flag(files, capsys):
    _write(files / "f.csv", "level,target\nF,1\n")
    code, _, err = _rake(files, *_target(files, "sex", "f.csv"), capsys=capsys)
    assert code == 1
    assert "--unknown zero" in err and "unknown=" not in err
    assert "--target sex" in err and "targets[" not in err


def test_disagreeing_totals_point_to_the_total_flag(files, capsys):
    _write(files / "sc.csv", "level,target\nF,50\nM,50\n")
    _write(files / "ac.csv", "level,target\n1,20\n2,30\n3,60\n")
    code, _, err = _rake(
        files, *_target(files, "sex", "sc.csv"), *_target(files, "age", "ac.csv"), capsys=capsys
    )
    assert code == 1
    assert "--total N" in err and "total=" not in err


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Pass na='drop' or na=\"level\".", "Pass --na drop or --na level."),
        ("pass unknown='zero' to give", "pass --unknown zero to give"),
        ("give shares and pass total=N.", "give shares and pass --total N."),
        ("e.g. bounds=(0.5, 2).", "e.g. --bounds 0.5 2."),
        ("bounds (0.9, 1.1) make", "--bounds 0.9 1.1 make"),
        ("of targets['age'] that", "of --target age that"),
        ("raise max_iter=5000", "raise --max-iter 5000"),
        ("steps=None", "--steps None"),
        ("design_weights=3 and lower bound", "design_weights=3 and lower bound"),
    ],
)
def test_as_flags(message, expected):
    assert as_flags(message) == expected


def test_warnings_are_one_line_each_with_the_flag(files, capsys):
    code, _, err = _rake(files, *_target(files, "age", "age.csv"), capsys=capsys)
    assert code == 0
    assert "raking rake: SparseLevelWarning: --target age level(s)" in err  # 4 rows per age
    assert "result = rake(" not in err  # no source line of the warning
    assert all(line.startswith("raking rake: ") for line in err.strip().splitlines())


# ---------------------------------------------------------------------------------------------
# Flags: values, help, --version, --out
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--steps", "-1"),
        ("--steps", "two"),
        ("--tol", "0"),
        ("--tol", "nan"),
        ("--max-iter", "0"),
        ("--total", "-3"),
        ("--total", "inf"),
    ],
)
def test_a_bad_numeric_flag_is_a_usage_error(files, capsys, flag, value):
    code, _, err = _rake(files, *_target(files, "sex", "sex.csv"), flag, value, capsys=capsys)
    assert code == 2
    assert f"argument {flag}" in err and repr(value) in err


def test_bounds_must_be_finite(files, capsys):
    argv = [*_target(files, "sex", "sex.csv"), "--bounds", "nan", "2"]
    code, _, err = _rake(files, *argv, capsys=capsys)
    assert code == 2
    assert "argument --bounds" in err


def test_na_and_unknown_have_help(capsys):
    assert main(["rake", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--na {error,drop,level} missing values in a raked column" in out
    assert "--unknown {error,zero} levels of DATA that a target file lacks" in out


def test_version(capsys):
    import raking

    assert main(["--version"]) == 0
    assert raking.__version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("missing/w.csv", "does not exist"),
        (".", "is a folder"),
        ("data.csv", "one of the input files"),
        ("sex.csv", "one of the input files"),
    ],
)
def test_rake_checks_out_before_reading_anything(files, capsys, out, expected):
    before = (files / "data.csv").read_bytes(), (files / "sex.csv").read_bytes()
    code, stdout, err = _rake(files, *_target(files, "sex", "sex.csv"), capsys=capsys, out=out)
    assert code == 2
    assert "--out" in err and expected in err
    assert stdout == ""
    assert ((files / "data.csv").read_bytes(), (files / "sex.csv").read_bytes()) == before


@pytest.mark.parametrize("command", [["simulate", "dependence"], ["figures"]])
def test_simulate_and_figures_check_out_before_the_sweep(tmp_path, capsys, command):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = main([*command, "--out", str(blocker / "sub")])
    captured = capsys.readouterr()
    assert code == 2
    assert f"--out {blocker / 'sub'}" in captured.err and "is a file, not a folder" in captured.err
    assert captured.out == "" and "rep/s" not in captured.err  # no sweep, no progress bar


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script", ["gpu/pmsn_prior.py", "gpu/clip_experiment.py", "simulations/curation.py"]
)
def test_scripts_check_out_before_training(tmp_path, capsys, script):
    if script.startswith("gpu/"):
        pytest.importorskip("torch")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exc:
        _load(ROOT / script).main(["--out", str(blocker)])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "--out" in captured.err and "is a file" in captured.err
    assert captured.out == ""  # nothing trained or matched


def test_check_backends_help_runs_nothing():
    result = subprocess.run(
        [sys.executable, str(ROOT / "gpu" / "check_backends.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: check_backends.py")
    assert "failure(s)" not in result.stdout and "nothing to check" not in result.stdout


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("reps must be an integer >= 2, got 1.", "--reps must be an integer >= 2, got 1."),
        ("Pass e.g. n=(1000,) for one sample size.", "Pass e.g. --n 1000 for one sample size."),
        ("backend='cupy' needs CuPy", "--backend cupy needs CuPy"),
        ("at n = 1000 the excess", "at n = 1000 the excess"),  # prose stays prose
    ],
)
def test_as_flags_for_the_experiment_options(message, expected):
    keywords = ("reps", "n", "backend", "seed", "scheduler", "address", "workers", "out")
    assert as_flags(message, keywords) == expected


def test_simulate_errors_name_the_flags(tmp_path, capsys):
    assert main(["simulate", "theory_vs_mc", "--reps", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--reps must be an integer >= 2" in err and "reps=" not in err
    if importlib.util.find_spec("cupy") is None:
        argv = ["simulate", "theory_vs_mc", "--quick", "--backend", "cupy", "--out", str(tmp_path)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "--backend cupy needs CuPy" in err and "backend=" not in err
