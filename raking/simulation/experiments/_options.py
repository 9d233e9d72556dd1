"""The interface the sweep engine and the CLI code against: :class:`Options`, :class:`Experiment`.

Also the kernels an experiment may run on (:data:`BACKENDS`) and the two small helpers every
grid uses: the replicate count chosen by the options, and the one read back from a grid point.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

BACKENDS = ("numpy", "numba", "cupy")
"""Kernels for the balanced estimator: NumPy (array-API kernel), Numba (compiled), CuPy (GPU)."""


@dataclass(frozen=True)
class Options:
    """What the CLI passes to every experiment's grid; ``None`` = the experiment's default.

    Attributes
    ----------
    reps : int or None
        Monte Carlo replicates per grid point (at least 2).
    n : tuple of int or None
        Sample size(s); each experiment has its own default.
    quick : bool
        A seconds-long run: fewer replicates and grid points.
    backend : {"numpy", "numba", "cupy"}
        Kernel of the balanced estimator: the array-API kernel on NumPy (``compiled=False``),
        the Numba loops where faster (``compiled=None``), or CuPy count tables on the GPU.
    """

    reps: int | None = None
    n: tuple[int, ...] | None = None
    quick: bool = False
    backend: str = "numba"

    def __post_init__(self) -> None:
        if self.reps is not None and (
            isinstance(self.reps, bool)
            or not isinstance(self.reps, numbers.Integral)
            or self.reps < 2
        ):
            raise ValueError(
                f"reps must be an integer >= 2, got {self.reps!r}. The Monte Carlo variance and "
                "standard errors need at least two replicates."
            )
        if self.reps is not None:
            object.__setattr__(self, "reps", int(self.reps))
        if self.n is not None:
            ns = (self.n,) if isinstance(self.n, numbers.Integral) else tuple(self.n)
            if not ns or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in ns
            ):
                raise ValueError(
                    f"n must be a non-empty tuple of positive integers, got {self.n!r}. Pass "
                    "e.g. n=(1000,) for one sample size."
                )
            object.__setattr__(self, "n", tuple(int(v) for v in ns))
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend must be one of {list(BACKENDS)}, got {self.backend!r}. Use 'numba' "
                "(default) on a CPU, 'numpy' for the array-API kernel, 'cupy' on a GPU."
            )


@dataclass(frozen=True)
class Experiment:
    """One experiment: its grid, the function that runs one grid point, and its figure.

    Attributes
    ----------
    name : str
        File stem of the CSV and figures (``NAME.csv``, ``NAME.png``, ``NAME.pdf``).
    description : str
        One line for the CLI.
    grid : callable
        ``grid(options) -> list[dict]``: JSON-able grid points, each holding everything
        ``point`` needs except the seed.
    point : callable
        ``point(grid_point, seed_sequence, backend) -> list[dict]``: tidy rows; a top-level
        (picklable) function, deterministic given the seed, with no Python loop over replicates.
    plot : callable
        ``plot(frame, folder) -> list[Path]``: writes ``NAME.png`` and ``NAME.pdf``.
    replicates : callable
        ``replicates(grid_point) -> int``: the replicate count of a point.
    """

    name: str
    description: str
    grid: Callable[[Options], list[dict]]
    point: Callable[[dict, np.random.SeedSequence, str], list[dict]]
    plot: Callable[[pd.DataFrame, Path], list[Path]]
    replicates: Callable[[dict], int]


def _reps(options: Options, full: int, quick: int) -> int:
    return options.reps if options.reps is not None else (quick if options.quick else full)


def _replicates(point: dict) -> int:
    return int(point["reps"])
