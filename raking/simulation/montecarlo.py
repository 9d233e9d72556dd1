"""Seeded Monte Carlo sweeps over an experiment's grid, serial or as Dask tasks.

An experiment (:class:`raking.simulation.experiments.Experiment`) lists grid points and computes the
tidy rows of one point from that point's own seed. :func:`run_sweep` gives grid point ``i`` the seed
``numpy.random.SeedSequence(seed).spawn(len(points))[i]``, so every point is reproducible on its own
and the numbers do not depend on the scheduler, the number of workers or the order in which points
finish: the rows always come back in grid order. Within a point the replicates are batched (one
kernel call per configuration), never looped over in Python.

``scheduler="dask"`` runs each grid point as one :mod:`dask.distributed` task, on a local cluster
of worker processes or on an existing cluster (``address``). Dask is an optional extra
(``pip install 'raking-balance[dask]'``), imported only inside the sweep; so are pandas and tqdm.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raking.validation import check_option, check_positive_int

if TYPE_CHECKING:
    import pandas as pd

    from raking.simulation.experiments import Experiment, Options

__all__ = ["SCHEDULERS", "SweepResult", "local_cluster", "run_experiment", "run_sweep"]

SCHEDULERS = ("serial", "dask")
"""How :func:`run_sweep` runs the grid points: in this process, or as Dask tasks."""

PointFn = Callable[[dict, np.random.SeedSequence, str], list[dict]]
"""``experiment.point``: (grid point, its seed, backend) -> tidy rows."""

_SCHEDULER_HINT = (
    "'serial' runs the grid points one after another in this process; 'dask' runs them as "
    "dask.distributed tasks."
)
_DASK_MISSING = (
    "scheduler='dask' needs dask.distributed, which is not installed ({exc}). Install it with "
    "pip install 'raking-balance[dask]', or run with scheduler='serial'."
)
# Each Dask worker is one process with one thread; keep Numba to one thread there too, so that
# the workers do not oversubscribe the cores. Results do not depend on the thread count.
_WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class SweepResult:
    """All rows of one sweep, in grid order, with how long it took.

    Attributes
    ----------
    name : str
        The experiment's name.
    frame : pandas.DataFrame
        Every row returned by the grid points, grid point 0 first.
    points : int
        Number of grid points.
    replicates : int
        Total Monte Carlo replicates over all grid points.
    seconds : float
        Wall-clock time of the sweep (for Dask, including starting the local cluster).
    scheduler, backend : str
        Where the points ran (``"serial"`` or ``"dask"``) and the array backend of the kernel.
    seed : int
        Root seed; grid point ``i`` used ``SeedSequence(seed).spawn(points)[i]``.
    files : tuple of pathlib.Path
        Files written by :func:`run_experiment` (CSV and figures); empty for :func:`run_sweep`.
    """

    name: str
    frame: pd.DataFrame = field(repr=False)
    points: int
    replicates: int
    seconds: float
    scheduler: str
    backend: str
    seed: int
    files: tuple[Path, ...] = ()

    @property
    def seconds_per_replicate(self) -> float:
        """Wall-clock seconds per Monte Carlo replicate (``nan`` without replicates)."""
        return self.seconds / self.replicates if self.replicates else math.nan

    def summary(self) -> str:
        """The summary table (``raking.simulation.experiments.summarize``) and the timing."""
        import pandas as pd

        from raking.simulation.experiments import EXPERIMENTS, summarize

        table = summarize(self.name, self.frame) if self.name in EXPERIMENTS else self.frame
        with pd.option_context("display.width", 120, "display.max_columns", 30):
            body = table.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        lines = [
            f"{self.name}: {self.points} grid points, {self.replicates:,} replicates in "
            f"{self.seconds:.2f} s ({self.seconds_per_replicate * 1e6:.1f} µs per replicate)",
            f"scheduler: {self.scheduler}   backend: {self.backend}   seed: {self.seed}",
            "",
            body,
        ]
        if self.files:
            lines += ["", "wrote " + ", ".join(str(f) for f in self.files)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def run_sweep(
    experiment: Experiment,
    options: Options,
    *,
    seed: int,
    scheduler: str = "serial",
    address: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> SweepResult:
    """Run every grid point of ``experiment``, each from its own child seed.

    Parameters
    ----------
    experiment : raking.simulation.experiments.Experiment
        The grid, the per-point computation and the replicate count of a point.
    options : raking.simulation.experiments.Options
        Replicates, sample sizes, ``quick`` and the kernel backend, passed to ``experiment.grid``.
    seed : int
        Root seed, a non-negative integer. Grid point ``i`` gets
        ``numpy.random.SeedSequence(seed).spawn(len(points))[i]``.
    scheduler : {"serial", "dask"}
        ``"serial"``: in this process. ``"dask"``: one :mod:`dask.distributed` task per grid
        point, on the cluster at ``address`` or on a local cluster of ``workers`` processes.
    address : str, optional
        Scheduler address of an existing Dask cluster (``tcp://host:port``); only with
        ``scheduler="dask"``. Without it, a ``LocalCluster`` is started and closed.
    workers : int
        Worker processes of the local cluster (one thread each); unused with ``address``.
    progress : bool
        Show a progress bar (tqdm, on stderr), counted in replicates.

    Returns
    -------
    SweepResult
        All rows in grid order, the same for either scheduler and any number of workers.
    """
    import pandas as pd

    scheduler = check_option(scheduler, options=SCHEDULERS, name="scheduler", hint=_SCHEDULER_HINT)
    if address is not None and scheduler != "dask":
        raise ValueError(
            f"address={address!r} is the address of a Dask scheduler, but scheduler="
            f"{scheduler!r}. Pass scheduler='dask' to use that cluster, or leave address out."
        )
    workers = check_positive_int(workers, name="workers")
    if scheduler == "dask":
        _distributed()  # fail before any work if the extra is missing
        _check_address(address)
    points = list(experiment.grid(options))
    seeds = _spawn(seed, len(points))
    counts = [int(experiment.replicates(p)) for p in points]
    bar = _progress_bar(sum(counts), experiment.name, enabled=progress)
    start = time.perf_counter()
    with bar:
        if scheduler == "serial":
            rows = _run_serial(experiment.point, points, seeds, options.backend, counts, bar)
        else:
            rows = _run_dask(
                experiment.point, points, seeds, options.backend, counts, bar, address, workers
            )
    seconds = time.perf_counter() - start
    return SweepResult(
        name=experiment.name,
        frame=pd.DataFrame.from_records([row for point_rows in rows for row in point_rows]),
        points=len(points),
        replicates=sum(counts),
        seconds=seconds,
        scheduler=scheduler,
        backend=options.backend,
        seed=int(seed),
    )


def run_experiment(
    name: str,
    options: Options,
    *,
    out: str | Path,
    seed: int,
    scheduler: str = "serial",
    address: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> SweepResult:
    """Run the registered experiment ``name``, write ``out/NAME.csv`` and its figures.

    Parameters
    ----------
    name : str
        A key of :data:`raking.simulation.experiments.EXPERIMENTS`.
    options : raking.simulation.experiments.Options
        As in :func:`run_sweep`.
    out : str or pathlib.Path
        Folder for ``NAME.csv`` and the figures ``experiment.plot`` writes (created if missing).
    seed, scheduler, address, workers, progress
        As in :func:`run_sweep`.

    Returns
    -------
    SweepResult
        The sweep, with ``files`` listing the CSV and the figures.
    """
    from raking.simulation.experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ValueError(
            f"name must be one of the experiments {sorted(EXPERIMENTS)}, got {name!r}. "
            "Run `raking simulate --help` to see what each one computes."
        )
    experiment = EXPERIMENTS[name]
    result = run_sweep(
        experiment,
        options,
        seed=seed,
        scheduler=scheduler,
        address=address,
        workers=workers,
        progress=progress,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    result.frame.to_csv(csv, index=False)
    figures = experiment.plot(result.frame, out)
    return replace(result, files=(csv, *(Path(f) for f in figures)))


# --------------------------------------------------------------------------------------------
# Private: seeds, progress, the two schedulers
# --------------------------------------------------------------------------------------------


def _spawn(seed: object, count: int) -> list[np.random.SeedSequence]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(
            f"seed must be a non-negative integer, got {seed!r}. It is the root of "
            "numpy.random.SeedSequence(seed).spawn(...), one child seed per grid point."
        )
    return np.random.SeedSequence(int(seed)).spawn(count)


def _progress_bar(total: int, label: str, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=label, unit="rep", unit_scale=True, disable=not enabled, file=sys.stderr
    )


def _run_serial(
    point: PointFn,
    points: list[dict],
    seeds: list[np.random.SeedSequence],
    backend: str,
    counts: list[int],
    bar: Any,
) -> list[list[dict]]:
    rows = []
    for p, s, c in zip(points, seeds, counts, strict=True):
        rows.append(point(p, s, backend))
        bar.update(c)
    return rows


def _distributed() -> Any:
    """The :mod:`dask.distributed` module, or an ImportError that says how to install it."""
    try:
        import dask.distributed
    except ImportError as exc:
        raise ImportError(_DASK_MISSING.format(exc=exc)) from exc
    return dask.distributed


def _run_dask(
    point: PointFn,
    points: list[dict],
    seeds: list[np.random.SeedSequence],
    backend: str,
    counts: list[int],
    bar: Any,
    address: str | None,
    workers: int,
) -> list[list[dict]]:
    distributed = _distributed()
    rows: list[list[dict] | None] = [None] * len(points)
    with _dask_client(address, workers) as client:
        futures = [
            client.submit(point, p, s, backend, pure=False)
            for p, s in zip(points, seeds, strict=True)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                i = index[future.key]
                rows[i] = future.result()  # re-raises a failed point's exception here
                bar.update(counts[i])
        finally:
            client.cancel(futures)
    return rows  # type: ignore[return-value]


def _check_address(address: object) -> None:
    if address is not None and (not isinstance(address, str) or "://" not in address):
        raise ValueError(
            f"address must be a Dask scheduler address such as 'tcp://127.0.0.1:8786', got "
            f"{address!r}. Copy it from the scheduler's log or from Client.scheduler.address."
        )


@contextlib.contextmanager
def _dask_client(address: str | None, workers: int) -> Iterator[Any]:
    """A Client on the cluster at ``address``, or on a new local cluster closed on exit."""
    Client = _distributed().Client
    if address is None:
        with local_cluster(workers) as local, Client(local) as client:
            yield client
        return
    try:
        client = Client(address, timeout="20s")
    except OSError as exc:  # includes TimeoutError
        raise OSError(
            f"could not connect to the Dask scheduler at address={address!r} ({exc}). Check that "
            "it is running (`dask scheduler`), or leave address out to start a local cluster."
        ) from exc
    with client:
        yield client


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator[str]:
    """Start a Dask ``LocalCluster`` of ``workers`` processes, one thread each; yield its address.

    Pass the address to several :func:`run_sweep` calls (``scheduler="dask"``) to start the
    workers once. Needs ``pip install 'raking-balance[dask]'``.
    """
    workers = check_positive_int(workers, name="workers")
    with _distributed().LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: parallel runs never collide on 8787
        env=_WORKER_ENV,
    ) as cluster:
        yield cluster.scheduler_address
