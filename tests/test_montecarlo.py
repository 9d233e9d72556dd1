"""Sweeps: a child seed per grid point, rows in grid order, serial and Dask give the same frame."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from raking.simulation.experiments import EXPERIMENTS, Options
from raking.simulation.montecarlo import run_experiment, run_sweep

SEED = 7
QUICK = Options(quick=True, reps=200)


def serial(name="theory_vs_mc", options=QUICK, seed=SEED):
    return run_sweep(EXPERIMENTS[name], options, seed=seed, progress=False)


def test_rows_come_back_in_grid_order_and_each_point_is_reproducible_alone():
    experiment = EXPERIMENTS["theory_vs_mc"]
    points = experiment.grid(QUICK)
    result = serial()
    assert result.points == len(points) >= 2
    assert result.replicates == sum(experiment.replicates(p) for p in points)
    per_point = len(result.frame) // len(points)
    # Grid point i alone, from SeedSequence(seed).spawn(len(points))[i], gives its rows.
    for i, point in enumerate(points):
        child = np.random.SeedSequence(SEED).spawn(len(points))[i]
        alone = pd.DataFrame(experiment.point(point, child, "numba"))
        rows = result.frame.iloc[i * per_point : (i + 1) * per_point].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, alone)
    assert list(result.frame["n"]) == [p["n"] for p in points for _ in range(per_point)]


def test_same_seed_same_frame_other_seed_other_numbers():
    pd.testing.assert_frame_equal(serial().frame, serial().frame)
    assert not np.allclose(serial(seed=SEED + 1).frame["mse"], serial().frame["mse"])


def test_backends_numpy_and_numba_agree():
    numba, numpy = (
        serial(options=Options(quick=True, reps=200, backend=b)).frame for b in ("numba", "numpy")
    )
    pd.testing.assert_frame_equal(numba, numpy, rtol=1e-10)


def test_result_holds_timing_and_a_summary_table():
    result = serial()
    assert result.seconds > 0
    assert result.seconds_per_replicate == pytest.approx(result.seconds / result.replicates)
    assert (result.scheduler, result.backend, result.seed) == ("serial", "numba", SEED)
    text = result.summary()
    assert f"theory_vs_mc: {result.points} grid points" in text
    assert "scheduler: serial" in text and "sigma2_k" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scheduler": "threads"}, "scheduler must be one of"),
        ({"address": "tcp://127.0.0.1:1"}, "Pass scheduler='dask'"),
        ({"workers": 0}, "workers must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_fix(kwargs, match):
    kwargs = {"seed": SEED, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        run_sweep(EXPERIMENTS["theory_vs_mc"], QUICK, **kwargs)


def test_missing_dask_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'raking-balance\[dask\]'"):
        run_sweep(EXPERIMENTS["theory_vs_mc"], QUICK, seed=SEED, scheduler="dask")


def test_an_address_without_scheme_is_explained():
    pytest.importorskip("dask.distributed")
    with pytest.raises(ValueError, match=r"tcp://127\.0\.0\.1:8786"):
        run_sweep(EXPERIMENTS["theory_vs_mc"], QUICK, seed=SEED, scheduler="dask", address="x")


def test_run_experiment_writes_csv_and_figures(tmp_path):
    result = run_experiment("theory_vs_mc", QUICK, out=tmp_path / "f", seed=SEED, progress=False)
    assert sorted(p.name for p in result.files) == [
        "theory_vs_mc.csv",
        "theory_vs_mc.pdf",
        "theory_vs_mc.png",
    ]
    assert all(p.stat().st_size > 0 for p in result.files)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f" / "theory_vs_mc.csv"), result.frame)


def test_run_experiment_rejects_an_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="theory_vs_mc"):
        run_experiment("nope", QUICK, out=tmp_path, seed=SEED)


# ---- Dask: the same numbers as the serial run --------------------------------------------------

DEPENDENCE = Options(quick=True, reps=100)  # 20 grid points


def test_dask_local_cluster_of_two_processes_gives_the_serial_frame():
    pytest.importorskip("dask.distributed")
    result = run_sweep(
        EXPERIMENTS["dependence"],
        DEPENDENCE,
        seed=SEED,
        scheduler="dask",
        workers=2,
        progress=False,
    )
    assert (result.scheduler, result.points) == ("dask", 20)
    pd.testing.assert_frame_equal(result.frame, serial("dependence", DEPENDENCE).frame)


def test_dask_on_an_existing_cluster_gives_the_serial_frame(cluster_address):
    result = run_sweep(
        EXPERIMENTS["theory_vs_mc"],
        QUICK,
        seed=SEED,
        scheduler="dask",
        address=cluster_address,
        progress=False,
    )
    pd.testing.assert_frame_equal(result.frame, serial().frame)


# A point that finishes in reverse order: the first grid points sleep longest. Top-level
# functions, so that Dask workers can import them.
def slow_first_grid(options):
    return [{"i": i} for i in range(4)]


def slow_first_point(point, seed, backend):
    time.sleep(0.2 * (3 - point["i"]))
    return [{"i": point["i"], "u": float(np.random.default_rng(seed).random())}]


@dataclass(frozen=True)
class SlowFirst:
    name: str = "slow_first"
    description: str = "grid points that finish last-to-first"
    grid: object = slow_first_grid
    point: object = slow_first_point
    plot: object = None
    replicates: object = staticmethod(lambda point: 1)


def test_rows_are_in_grid_order_whatever_order_points_finish_in(cluster_address):
    result = run_sweep(
        SlowFirst(), Options(), seed=SEED, scheduler="dask", address=cluster_address, progress=False
    )
    assert list(result.frame["i"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(
        result.frame, run_sweep(SlowFirst(), Options(), seed=SEED, progress=False).frame
    )


def test_importing_the_sweep_and_the_cli_loads_no_dask_pandas_or_matplotlib():
    import json
    import subprocess

    code = (
        "import sys, json, raking.simulation.montecarlo, raking.cli; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"dask", "distributed", "pandas", "matplotlib", "tqdm"}
