"""The ``raking`` command and the ``simulations/`` wrappers: outputs, exit codes, messages."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from raking.cli import main
from raking.simulation.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parent.parent


def test_simulate_writes_csv_and_figures_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["simulate", "theory_vs_mc", "--quick", "--reps", "100", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "theory_vs_mc.csv",
        "theory_vs_mc.pdf",
        "theory_vs_mc.png",
    ]
    captured = capsys.readouterr()
    assert "theory_vs_mc: 3 grid points, 300 replicates" in captured.out
    assert "sigma2_k" in captured.out  # the experiment's summary table
    assert "rep" in captured.err  # the progress bar goes to stderr


def test_out_defaults_to_figures_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "mse_vs_k", "--reps", "50"]) == 0
    assert (tmp_path / "figures" / "mse_vs_k.csv").exists()


def test_unknown_name_is_a_usage_error_that_lists_the_names(capsys):
    assert main(["simulate", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err
    assert all(name in err for name in EXPERIMENTS)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["simulate", "dependence", "--reps", "0"], "must be a positive integer"),
        (["simulate", "dependence", "--backend", "jax"], "invalid choice"),
        (["simulate", "dependence", "--address", "tcp://x:1"], "add --scheduler dask"),
        (["simulate", "dependence", "--workers", "3"], "add --scheduler dask"),
        (
            ["figures", "--scheduler", "dask", "--address", "tcp://x:1", "--workers", "3"],
            "leave one of them out",
        ),
        (["simulate", "dependence", "--reps", "1"], "reps must be an integer >= 2"),
        ([], "the following arguments are required"),
    ],
)
def test_usage_errors_exit_2_with_the_fix(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_a_failing_run_exits_1_with_a_message(tmp_path, capsys):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: --backend cupy does not fail here")
    assert (
        main(["simulate", "theory_vs_mc", "--quick", "--backend", "cupy", "--out", str(tmp_path)])
        == 1
    )
    assert "raking: error: theory_vs_mc:" in capsys.readouterr().err


def test_version(capsys):
    import raking

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"raking {raking.__version__}"


def test_figures_runs_every_experiment_and_prints_an_overview(tmp_path, capsys):
    assert main(["figures", "--quick", "--reps", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"total: {len(EXPERIMENTS)} of {len(EXPERIMENTS)} experiments" in out
    for name in EXPERIMENTS:
        assert {p.name for p in tmp_path.glob(f"{name}.*")} == {
            f"{name}.csv",
            f"{name}.png",
            f"{name}.pdf",
        }


def test_dask_address_gives_the_serial_csv(tmp_path, capsys, cluster_address):
    argv = ["simulate", "theory_vs_mc", "--quick", "--reps", "100", "--out", str(tmp_path)]
    assert main([*argv, "--scheduler", "dask", "--address", cluster_address]) == 0
    assert "scheduler: dask" in capsys.readouterr().out
    dask_csv = (tmp_path / "theory_vs_mc.csv").read_text()
    assert main(argv) == 0
    assert (tmp_path / "theory_vs_mc.csv").read_text() == dask_csv


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_simulation_script_forwards_to_the_cli(name, capsys):
    spec = importlib.util.spec_from_file_location(
        f"sim_{name}", ROOT / "simulations" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--help"]) == 0
    assert "raking simulate" in capsys.readouterr().out


def test_console_script_help():
    script = Path(sys.executable).with_name("raking")
    if not script.exists():
        pytest.skip("console script not installed; run pip install -e .")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "simulate" in out and "figures" in out
    assert all(name in out for name in EXPERIMENTS)


# ------------------------------------------------------------------------------------------------
# raking rake: a CSV file raked to target margins
# ------------------------------------------------------------------------------------------------


def _rake_files(tmp_path):
    import pandas as pd

    data = pd.DataFrame(
        {"sex": ["F", "M", "M", "F", "M", "F", "M", "M"], "age": [1, 2, 3, 1, 2, 3, 3, 1]}
    )
    data.to_csv(tmp_path / "data.csv", index=False)
    pd.DataFrame({"level": ["F", "M"], "target": [0.5, 0.5]}).to_csv(
        tmp_path / "sex.csv", index=False
    )
    pd.DataFrame({"level": [1, 2, 3], "target": [0.2, 0.3, 0.5]}).to_csv(
        tmp_path / "age.csv", index=False
    )
    return data


def test_rake_command_writes_weights_that_meet_the_margins(tmp_path, capsys):
    import pandas as pd

    data = _rake_files(tmp_path)
    out = tmp_path / "w.csv"
    code = main(
        [
            "rake",
            str(tmp_path / "data.csv"),
            "--target",
            f"sex={tmp_path / 'sex.csv'}",
            "--target",
            f"age={tmp_path / 'age.csv'}",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    weights = pd.read_csv(out, index_col="row")["weight"]
    shares = weights.groupby(data["sex"]).sum() / weights.sum()
    assert shares.to_dict() == pytest.approx({"F": 0.5, "M": 0.5}, abs=1e-9)
    shares = weights.groupby(data["age"]).sum() / weights.sum()
    assert shares.to_dict() == pytest.approx({1: 0.2, 2: 0.3, 3: 0.5}, abs=1e-9)
    captured = capsys.readouterr()
    assert "converged" in captured.out
    # warnings: one line each on stderr, naming the flag
    assert "SparseLevelWarning: --target sex level(s)" in captured.err
    assert "fewer than 5 sample rows" in captured.err


def test_rake_command_reports_bad_input(tmp_path, capsys):
    _rake_files(tmp_path)
    base = ["rake", str(tmp_path / "data.csv"), "--out", str(tmp_path / "w.csv")]
    assert main([*base, "--target", "sex"]) == 2  # not COLUMN=FILE
    code = main([*base, "--target", f"income={tmp_path / 'sex.csv'}"])
    assert code == 1
    assert "income" in capsys.readouterr().err
    assert not (tmp_path / "w.csv").exists()
