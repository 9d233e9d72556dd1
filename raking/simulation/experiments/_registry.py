"""The registry :data:`EXPERIMENTS`: each experiment's grid, point function and figure.

The figures are drawn by :mod:`raking.plotting`, looked up only when a plot is requested, so
importing the experiments loads neither matplotlib nor pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from raking.simulation.experiments._dependence import _dependence_grid, dependence_point
from raking.simulation.experiments._illustration import _illustration_grid, illustration_point
from raking.simulation.experiments._k_sweep import (
    _mse_vs_k_grid,
    _mse_vs_n_grid,
    _theory_vs_mc_grid,
    k_sweep_point,
)
from raking.simulation.experiments._options import Experiment, _replicates

if TYPE_CHECKING:
    import pandas as pd


def _plotter(name: str) -> Callable[[pd.DataFrame, Path], list[Path]]:
    """``raking.plotting.plot_NAME``, looked up when called (matplotlib stays unloaded)."""

    def plot(frame: pd.DataFrame, folder: Path) -> list[Path]:
        from raking import plotting

        return getattr(plotting, f"plot_{name}")(frame, Path(folder))

    plot.__name__ = f"plot_{name}"
    plot.__doc__ = f"Draw ``{name}.png`` and ``{name}.pdf`` (:mod:`raking.plotting`)."
    return plot


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "dependence",
            "MSE vs dependence s: empirical, IPWI, balanced k=1,2,4,8; lines = eps; 3 h",
            _dependence_grid,
            dependence_point,
            _plotter("dependence"),
            _replicates,
        ),
        Experiment(
            "theory_vs_mc",
            "n*MSE vs sigma_k^2, k=0..8, n=100,1000,10000 (ratio -> 1)",
            _theory_vs_mc_grid,
            k_sweep_point,
            _plotter("theory_vs_mc"),
            _replicates,
        ),
        Experiment(
            "mse_vs_n",
            "MSE vs n, k=0,1,2,8, against sigma_k^2/n (the 1/n rate)",
            _mse_vs_n_grid,
            k_sweep_point,
            _plotter("mse_vs_n"),
            _replicates,
        ),
        Experiment(
            "mse_vs_k",
            "n*MSE/sigma_k^2 and paired gaps to sigma_inf^2, k=0..12, n=1e3, 1e4, 1e5; bound",
            _mse_vs_k_grid,
            k_sweep_point,
            _plotter("mse_vs_k"),
            _replicates,
        ),
        Experiment(
            "illustration",
            "P_n^(k), k=0..3, on the authors' 50x50 example (heat-maps with marginals)",
            _illustration_grid,
            illustration_point,
            _plotter("illustration"),
            _replicates,
        ),
    )
}
"""The experiments by name."""
