"""Figures: every experiment's quick run draws NAME.png and NAME.pdf, also from its CSV."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from raking.simulation.experiments import EXPERIMENTS, Options

NAMES = list(EXPERIMENTS)


def _quick_frame(name, **options):
    """The rows of a quick run (small reps), as the sweep engine would collect them."""
    exp = EXPERIMENTS[name]
    points = exp.grid(Options(quick=True, **options))
    seeds = np.random.SeedSequence(7).spawn(len(points))
    return pd.DataFrame(
        [r for p, s in zip(points, seeds, strict=True) for r in exp.point(p, s, "numba")]
    )


def _assert_figures(paths, folder, name):
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    png, pdf = paths
    assert png.parent == folder and pdf.parent == folder
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


@pytest.mark.parametrize("name", NAMES)
def test_quick_run_writes_png_and_pdf(name, tmp_path):
    frame = _quick_frame(name, reps=100)
    folder = tmp_path / "figures"  # created by plot
    _assert_figures(EXPERIMENTS[name].plot(frame, folder), folder, name)


@pytest.mark.parametrize("name", NAMES)
def test_figures_redraw_from_the_csv(name, tmp_path):
    """The CLI may redraw from NAME.csv: None/strings must survive the round trip."""
    csv = tmp_path / f"{name}.csv"
    _quick_frame(name, reps=50).to_csv(csv, index=False)
    frame = pd.read_csv(csv)
    _assert_figures(EXPERIMENTS[name].plot(frame, tmp_path), tmp_path, name)


def test_dependence_figure_with_two_sample_sizes(tmp_path):
    frame = _quick_frame("dependence", reps=50, n=(200, 800))
    assert set(frame["n"]) == {200, 800}
    _assert_figures(EXPERIMENTS["dependence"].plot(frame, tmp_path), tmp_path, "dependence")


def test_importing_the_modules_loads_no_matplotlib_or_pandas():
    code = (
        "import sys, raking.simulation.experiments, raking.plotting; "
        "print(sorted(m for m in ('matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plotting_leaves_pyplot_alone(tmp_path):
    """Figures are built without pyplot: no global figure is left open, no backend switched."""
    code = (
        "import sys, numpy as np, pandas as pd, pathlib\n"
        "from raking.simulation.experiments import EXPERIMENTS, Options\n"
        "exp = EXPERIMENTS['mse_vs_k']\n"
        "p = exp.grid(Options(quick=True, reps=20))[0]\n"
        "exp.plot(pd.DataFrame(exp.point(p, np.random.SeedSequence(0), 'numba')),"
        f" pathlib.Path({str(tmp_path)!r}))\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
