"""Where generated files go, and that they are byte-reproducible.

A quick run (``raking simulate/figures --quick``, ``gpu/clip_experiment.py --quick``,
``gpu/pmsn_prior.py --quick``, ``simulations/curation.py --quick``) must not overwrite the
committed full-run figures in ``figures/``: by default it writes into ``figures/quick/``, which
git ignores. Saving the same figure twice must give the same bytes (no creation date or version
in the metadata), so a rerun leaves the committed figures unchanged in git.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raking.cli import main
from raking.plotting import FIGURES, QUICK_FIGURES, output_folder, save_figure
from raking.simulation.experiments import EXPERIMENTS, Options

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1, 2], [1, 3, 2], label=r"$\sigma_k^2$")
    ax.legend()
    fig.suptitle("byte-reproducible")
    return fig


def test_saving_the_same_figure_twice_gives_identical_bytes(tmp_path, monkeypatch):
    # matplotlib stamps the PDF with SOURCE_DATE_EPOCH (else the clock): two different dates
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    save_figure(_figure(), tmp_path / "a", "fig")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    save_figure(_figure(), tmp_path / "b", "fig")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert list(first) == ["fig.pdf", "fig.png"]
    assert first == second
    assert b"CreationDate" not in first["fig.pdf"]
    assert b"Matplotlib version" not in first["fig.png"]  # no version: stable across upgrades


def test_an_experiment_figure_is_byte_reproducible(tmp_path, monkeypatch):
    """Every experiment saves through save_figure; one stands for all (the others are slow)."""
    exp = EXPERIMENTS["mse_vs_k"]
    points = exp.grid(Options(quick=True, reps=20))
    seeds = np.random.SeedSequence(3).spawn(len(points))
    frame = pd.DataFrame(
        [r for p, s in zip(points, seeds, strict=True) for r in exp.point(p, s, "numba")]
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    exp.plot(frame, tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    exp.plot(frame, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_output_folder_defaults():
    assert output_folder(None, quick=False) == FIGURES == Path("figures")
    assert output_folder(None, quick=True) == QUICK_FIGURES == Path("figures/quick")
    assert output_folder("elsewhere", quick=True) == Path("elsewhere")


def test_quick_outputs_are_git_ignored():
    out = subprocess.run(
        ["git", "check-ignore", "figures/quick/dependence.png"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0, "figures/quick/ must be in .gitignore"


def _assert_quick_layout(cwd: Path, stem: str) -> None:
    """Everything under figures/quick/, nothing else in figures/."""
    assert [p.name for p in (cwd / "figures").iterdir()] == ["quick"]
    names = {p.name for p in (cwd / "figures" / "quick").iterdir()}
    assert {f"{stem}.csv", f"{stem}.png", f"{stem}.pdf"} <= names


def test_a_quick_simulate_run_does_not_write_into_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "mse_vs_k", "--quick", "--reps", "20"]) == 0
    _assert_quick_layout(tmp_path, "mse_vs_k")
    assert "figures/quick/mse_vs_k.csv" in capsys.readouterr().out


def test_a_quick_curation_run_does_not_write_into_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _load(ROOT / "simulations" / "curation.py").main(["--quick"]) == 0
    _assert_quick_layout(tmp_path, "curation")


def test_a_quick_pmsn_run_does_not_write_into_figures(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    script = _load(ROOT / "gpu" / "pmsn_prior.py")
    argv = ["--quick", "--steps", "2", "--n", "200", "--n-eval", "100", "--seeds", "1"]
    assert script.main([*argv, "--methods", "swav", "--device", "cpu"]) == 0
    _assert_quick_layout(tmp_path, "pmsn_prior")


def test_a_quick_clip_run_does_not_write_into_figures(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    script = _load(ROOT / "gpu" / "clip_experiment.py")
    argv = ["--quick", "--iters", "2", "--eval-every", "1", "--n", "300", "--n-eval", "100"]
    assert script.main([*argv, "--steps", "1", "--batch-sizes", "16", "--classes", "5"]) == 0
    _assert_quick_layout(tmp_path, "clip_experiment")
