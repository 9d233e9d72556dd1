"""Benchmark: raking 10^7-10^8+ rows from Parquet with pandas, Dask and Polars; time and memory.

For each ``--rows N`` it writes (once, streamed in chunks, seeded) a data set of N rows as
Parquet files under ``--dir``: six raking variables ``v1..v6`` (int8 codes with 2, 4, 8, 12, 20
and 50 levels, skewed and dependent through one latent variable), design weights ``w``
(log-normal, larger in some strata), a stratum ``stratum`` (16), a PSU ``psu`` (64 per stratum,
ids unique across strata) and an outcome ``y``. The population margins are shifted from the
sample's, so the raking moves the weights. Then each method runs **in its own child process**:

- ``pandas`` (the baseline, only up to ``--pandas-max`` rows): ``pandas.read_parquet`` of all
  files, ``raking.rake(frame, targets, weights="w", strata="stratum", cluster="psu")``, the
  weights written with ``DataFrame.to_parquet``, and ``result.mean("y")`` with its linearised SE;
- ``dask``: a ``distributed.LocalCluster`` of ``--workers`` worker processes (1 thread each;
  the scheduler runs in the client process, as ``LocalCluster`` places it),
  ``dask.dataframe.read_parquet`` of the files, ``raking.rake`` on the Dask DataFrame, the lazy
  weights written by ``to_parquet`` (one file per partition) and the mean with its SE computed
  on the cluster;
- ``polars``: ``polars.scan_parquet`` of the files, ``raking.rake`` on the LazyFrame, the lazy
  weights streamed to one file by ``sink_parquet``, and the mean with its SE.

A thread of this (parent) process samples, every ``--interval`` seconds, the resident set size
(RSS, psutil) of the child and of all its descendants (the Dask workers): the table reports the
peak of their **sum** and the peak of each process. RSS counts shared library pages once per
process, so the sum over-states the memory in use a little. The parent, which only generates
the data and samples, is not counted. Time is wall time of the work (reading, raking, writing
the weights, the mean and its SE), without the start of the cluster (reported apart) and of the
interpreter.

Where pandas runs, the weights of every method are read back and compared with pandas' (max
relative difference), and so are the mean and its SE.

Run (the data of 10^8 rows take ~2 GB of disk; ``--keep`` keeps them for a rerun)::

    .venv/bin/python benchmarks/bench_scale.py --rows 1e7 1e8

The machine has 2 cores shared with other jobs: the load average before and after each run is
printed, and the times are noisy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LEVELS = (2, 4, 8, 12, 20, 50)  # levels of v1..v6
RHO = (0.7, 0.5, 0.6, 0.4, 0.65, 0.55)  # loading of each v_j on the latent variable
STRATA = 16
PSU_PER_STRATUM = 64
CHUNK = 500_000  # rows generated at once = one Parquet row group
VARIABLES = [f"v{j + 1}" for j in range(len(LEVELS))]
METHODS = ("pandas", "dask", "polars")
FORMAT = 1  # version of the generated layout, written to the manifest


# ------------------------------------------------------------------------------------------------
# Data: population margins and the streamed Parquet files
# ------------------------------------------------------------------------------------------------


def population(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cut points of each variable (sample level probabilities) and the population shares.

    Level probabilities p (skewed: 0.75 Dirichlet(1.5) + 0.25 uniform) cut the latent N(0, 1)
    column; the population shares are the same cuts of N(mu, sigma^2), mu in (-0.4, 0.4), sigma
    in (0.8, 1.25). Depends on ``seed`` only, so every N rakes a sample of one population.
    """
    from scipy.special import ndtr, ndtri

    design = np.random.default_rng([seed, 0])
    cuts, shares = [], []
    for size in LEVELS:
        p = 0.75 * design.dirichlet(np.full(size, 1.5)) + 0.25 / size
        cut = ndtri(np.cumsum(p)[:-1])
        mu, sigma = design.uniform(-0.4, 0.4), design.uniform(0.8, 1.25)
        cdf = np.concatenate([[0.0], ndtr((cut - mu) / sigma), [1.0]])
        cuts.append(cut)
        shares.append(np.diff(cdf) / np.diff(cdf).sum())
    return cuts, shares


def targets(seed: int) -> dict[str, dict[int, float]]:
    """The targets of ``raking.rake``: population shares by level code, per variable."""
    _, shares = population(seed)
    return {
        name: {k: float(s) for k, s in enumerate(share)}
        for name, share in zip(VARIABLES, shares, strict=True)
    }


def chunk(index: int, rows: int, seed: int, cuts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Rows ``index * CHUNK ...`` of the data set (seeded by ``(seed, 1, index)``).

    Chunk ``i`` is the same for every N, so a smaller data set is a prefix of a larger one.
    """
    rng = np.random.default_rng([seed, 1, index])
    latent = rng.standard_normal(rows)
    columns: dict[str, np.ndarray] = {}
    for name, rho, cut in zip(VARIABLES, RHO, cuts, strict=True):
        x = rho * latent + math.sqrt(1 - rho**2) * rng.standard_normal(rows)
        columns[name] = np.searchsorted(cut, x).astype(np.int8)
    stratum = rng.integers(0, STRATA, rows, dtype=np.int16)
    columns["stratum"] = stratum
    columns["psu"] = stratum.astype(np.int32) * PSU_PER_STRATUM + rng.integers(
        0, PSU_PER_STRATUM, rows, dtype=np.int32
    )
    columns["w"] = np.exp(0.4 * rng.standard_normal(rows)) * (1.0 + stratum / 8.0)
    columns["y"] = 50.0 + 10.0 * latent + 5.0 * rng.standard_normal(rows) + (stratum % 3)
    return columns


def generate(folder: Path, n: int, seed: int, rows_per_file: int) -> list[Path]:
    """Write the ``n`` rows as Parquet files of ``rows_per_file`` rows (row groups of ``CHUNK``).

    Streams one chunk at a time (``pyarrow.parquet.ParquetWriter``); a folder that already holds
    the same data set (its ``manifest.json``) is reused. Returns the files in row order.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = {"format": FORMAT, "rows": n, "seed": seed, "rows_per_file": rows_per_file}
    stamp = folder / "manifest.json"
    if stamp.exists() and json.loads(stamp.read_text()) == manifest:
        return sorted(folder.glob("part-*.parquet"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cuts, _ = population(seed)
    files, writer, in_file = [], None, 0
    start = time.perf_counter()
    for index in range(math.ceil(n / CHUNK)):
        rows = min(CHUNK, n - index * CHUNK)
        table = pa.table(chunk(index, rows, seed, cuts))
        if writer is None or in_file >= rows_per_file:
            if writer is not None:
                writer.close()
            files.append(folder / f"part-{len(files):05d}.parquet")
            writer, in_file = pq.ParquetWriter(files[-1], table.schema), 0
        writer.write_table(table, row_group_size=CHUNK)
        in_file += rows
    writer.close()
    stamp.write_text(json.dumps(manifest))
    size = sum(f.stat().st_size for f in files) / 2**30
    print(
        f"generated {n:,} rows in {len(files)} files ({size:.2f} GiB) in "
        f"{time.perf_counter() - start:.0f} s: {folder}",
        flush=True,
    )
    return files


# ------------------------------------------------------------------------------------------------
# The methods, each run in a child process (``--child METHOD``)
# ------------------------------------------------------------------------------------------------


RAKE_OPTIONS = {"weights": "w", "strata": "stratum", "cluster": "psu"}


def run_pandas(files: list[Path], out: Path, seed: int) -> dict:
    """Read every file into one DataFrame, rake, write the weights, estimate the mean."""
    import pandas as pd

    import raking

    times = _Phases()
    start = time.perf_counter()
    frame = pd.read_parquet(files)
    times["read"] = time.perf_counter() - start
    result = raking.rake(frame, targets(seed), **RAKE_OPTIONS)
    times["rake"] = time.perf_counter() - start - times["read"]
    mark = time.perf_counter()
    result.weights.rename("weight").to_frame().to_parquet(out / "weights.parquet", index=False)
    times["write"] = time.perf_counter() - mark
    mark = time.perf_counter()
    mean = result.mean("y")
    times["mean+SE"] = time.perf_counter() - mark
    return {"times": times, "mean": float(mean.estimate), "se": float(mean.se)}


def run_dask(files: list[Path], out: Path, seed: int, workers: int) -> dict:
    """Rake on a ``LocalCluster``: the rows stay in the workers; the weights go to Parquet."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import raking

    times = _Phases()
    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        times["cluster start"] = time.perf_counter() - start
        # untimed, as the client's own warm-up: each worker imports what its tasks run (the
        # imports compile from source where PYTHONDONTWRITEBYTECODE is set)
        client.run(warm_worker, files[0])
        start = time.perf_counter()
        ddf = dd.read_parquet([str(f) for f in files])
        result = raking.rake(ddf, targets(seed), **RAKE_OPTIONS)
        times["rake"] = time.perf_counter() - start
        mark = time.perf_counter()
        result.weights.rename("weight").to_frame().to_parquet(
            str(out / "weights"), write_index=False
        )
        times["write"] = time.perf_counter() - mark
        mark = time.perf_counter()
        mean = result.mean("y")
        times["mean+SE"] = time.perf_counter() - mark
        partitions = ddf.npartitions
    roles = {str(pid): f"worker {i + 1}" for i, pid in enumerate(sorted(pids.values()))}
    roles[str(os.getpid())] = "client + scheduler"
    return {
        "times": times,
        "mean": float(mean.estimate),
        "se": float(mean.se),
        "roles": roles,
        "partitions": partitions,
    }


def run_polars(files: list[Path], out: Path, seed: int) -> dict:
    """Rake a ``LazyFrame`` of the files; stream the weights to Parquet with ``sink_parquet``."""
    import polars as pl

    import raking

    times = _Phases()
    start = time.perf_counter()
    frame = pl.scan_parquet([str(f) for f in files])
    result = raking.rake(frame, targets(seed), **RAKE_OPTIONS)
    times["rake"] = time.perf_counter() - start
    mark = time.perf_counter()
    weights = result.weights
    lazy = weights if isinstance(weights, pl.LazyFrame) else None
    if lazy is None:  # an eager Series (a DataFrame input): write it as it is
        pl.DataFrame({"weight": weights}).write_parquet(out / "weights.parquet")
    else:
        lazy.sink_parquet(out / "weights.parquet")
    times["write"] = time.perf_counter() - mark
    mark = time.perf_counter()
    mean = result.mean("y")
    times["mean+SE"] = time.perf_counter() - mark
    return {"times": times, "mean": float(mean.estimate), "se": float(mean.se)}


def warm_up(file: Path, seed: int) -> None:
    """Untimed: rake the first row group with pandas (imports, and loads the Numba kernels).

    Run in each method's process before its timer starts.
    """
    import pyarrow.parquet as pq

    import raking

    frame = pq.ParquetFile(file).read_row_group(0).to_pandas()
    raking.rake(frame, targets(seed), **RAKE_OPTIONS).mean("y")


def warm_worker(file: Path) -> None:
    """Untimed, in each Dask worker: import the modules of the row passes and read a row group.

    No raking: the workers never rake (the client does), so they do not load Numba.
    """
    import pyarrow.parquet as pq

    import raking.survey.frame_rake
    import raking.survey.frame_results  # noqa: F401

    pq.ParquetFile(file).read_row_group(0, columns=["w"]).to_pandas()


class _Phases(dict):
    """Seconds per phase, with this process's peak RSS so far (GiB) at the end of each phase."""

    def __setitem__(self, phase: str, seconds: float) -> None:
        import resource

        super().__setitem__(phase, seconds)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        self.peaks[phase] = peak

    def __init__(self) -> None:
        super().__init__()
        self.peaks: dict[str, float] = {}


def child(args: argparse.Namespace) -> None:
    """Run one method on the files of ``args.data``; write its JSON record to ``args.record``."""
    files = sorted(Path(args.data).glob("part-*.parquet"))
    out = Path(args.out)
    warm_up(files[0], args.seed)
    if args.child == "pandas":
        record = run_pandas(files, out, args.seed)
    elif args.child == "dask":
        record = run_dask(files, out, args.seed, args.workers)
    else:
        record = run_polars(files, out, args.seed)
    record.setdefault("roles", {str(os.getpid()): "process"})
    record["peaks"] = record["times"].peaks
    Path(args.record).write_text(json.dumps(record))


# ------------------------------------------------------------------------------------------------
# The parent: memory sampling, runs, comparison, table
# ------------------------------------------------------------------------------------------------


@dataclass
class MemorySampler:
    """Peak RSS of a process and its descendants, sampled in a background thread.

    ``peaks[pid]`` is the largest RSS (bytes) seen for each process, ``total`` the largest sum
    over the processes alive at one sample; ``names[pid]`` the process name.
    """

    pid: int
    interval: float = 0.05
    peaks: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    total: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            self.sample(root)
            self._stop.wait(self.interval)

    def sample(self, root: object) -> None:
        """One sample: the RSS of ``root`` and of each of its descendants alive now."""
        import psutil

        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for proc in processes:
            try:
                rss = proc.memory_info().rss
                if proc.pid not in self.names:
                    self.names[proc.pid] = _describe(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
        self.total = max(self.total, total)
        self.samples += 1


def _describe(proc: object) -> str:
    """A process's name, or what it runs when that is a helper of multiprocessing."""
    command = " ".join(proc.cmdline())
    for helper in ("resource_tracker", "forkserver", "semaphore_tracker"):
        if helper in command:
            return f"multiprocessing {helper}"
    return proc.name()


@dataclass
class Run:
    """One method at one size: its record (times, mean, SE) and the memory it used."""

    method: str
    rows: int
    seconds: float
    record: dict
    memory: MemorySampler
    load: tuple[float, float]
    out: Path

    def per_process(self) -> list[tuple[str, int]]:
        roles = self.record.get("roles", {})
        rows = []
        for pid, peak in sorted(self.memory.peaks.items(), key=lambda kv: -kv[1]):
            role = roles.get(str(pid), f"other ({self.memory.names.get(pid, '?')})")
            rows.append((f"{role} [pid {pid}]", peak))
        return rows


def run_method(method: str, data: Path, out: Path, args: argparse.Namespace, n: int) -> Run:
    """Run ``method`` in a child process while sampling the memory of its process tree."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    record_file = out / "record.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        method,
        "--data",
        str(data),
        "--out",
        str(out),
        "--record",
        str(record_file),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
    ]
    before = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    with MemorySampler(process.pid, args.interval) as memory:
        code = process.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{method} at {n:,} rows failed (exit {code}); see its output above")
    record = json.loads(record_file.read_text())
    return Run(method, n, seconds, record, memory, (before, os.getloadavg()[0]), out)


def read_weights(run: Run) -> np.ndarray:
    """The weights ``run`` wrote, in row order (Dask: one file per partition, in order)."""
    import pyarrow.parquet as pq

    if run.method == "dask":
        files = sorted((run.out / "weights").glob("*.parquet"), key=_part_number)
        return np.concatenate([pq.read_table(f)["weight"].to_numpy() for f in files])
    return pq.read_table(run.out / "weights.parquet")["weight"].to_numpy()


def _part_number(path: Path) -> int:
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if digits else -1


def work_seconds(run: Run) -> float:
    """Seconds of the work: every timed step except the start of the cluster."""
    return sum(t for k, t in run.record["times"].items() if k != "cluster start")


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f}"


def table(runs: list[Run], baseline: float | None) -> str:
    """The markdown table: one row per (rows, method)."""
    lines = [
        "| rows | method | time (s) | s per 10^6 rows | per row vs pandas at the baseline size "
        "| peak memory, all processes (GiB) | largest process (GiB) | processes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        seconds = work_seconds(run)
        per_million = seconds / run.rows * 1e6
        ratio = "—" if baseline is None else f"{per_million / baseline:.2f}"
        lines.append(
            f"| {run.rows:.0e} | {run.method} | {seconds:.1f} | {per_million:.2f} | {ratio} | "
            f"{gib(run.memory.total)} | {gib(max(run.memory.peaks.values(), default=0))} | "
            f"{len(run.memory.peaks)} |"
        )
    return "\n".join(lines)


def details(run: Run) -> str:
    """Times of each step, the mean and SE, the load and the peak memory of each process."""
    steps = ", ".join(f"{k} {t:.1f} s" for k, t in run.record["times"].items())
    lines = [
        f"{run.method} at {run.rows:,} rows: {steps}; mean(y) {run.record['mean']:.10g} "
        f"(SE {run.record['se']:.6g}); load average {run.load[0]:.1f} -> {run.load[1]:.1f}; "
        f"{run.memory.samples} memory samples"
        + (f"; {run.record['partitions']} partitions" if "partitions" in run.record else ""),
    ]
    lines += [f"    peak RSS {gib(peak)} GiB  {label}" for label, peak in run.per_process()]
    peaks = ", ".join(f"{k} {v:.2f}" for k, v in run.record.get("peaks", {}).items())
    lines.append(f"    peak RSS (GiB) of the {run.method} process by the end of: {peaks}")
    return "\n".join(lines)


def agreement(runs: list[Run]) -> list[str]:
    """Max relative difference of each method's weights, mean and SE from pandas'."""
    reference = next((r for r in runs if r.method == "pandas"), None)
    if reference is None:
        return []
    w0 = read_weights(reference)
    lines = []
    for run in runs:
        if run is reference:
            continue
        w = read_weights(run)
        if w.shape != w0.shape:
            lines.append(f"{run.method}: {w.size:,} weights, pandas {w0.size:,}: NOT EQUAL")
            continue
        diff = np.max(np.abs(w - w0) / np.abs(w0))
        mean = abs(run.record["mean"] / reference.record["mean"] - 1)
        se = abs(run.record["se"] / reference.record["se"] - 1)
        lines.append(
            f"{run.method} vs pandas at {run.rows:,} rows: weights max rel. diff {diff:.1e}, "
            f"mean {mean:.1e}, SE {se:.1e}"
        )
    return lines


def header() -> list[str]:
    """Machine, versions, commit and date."""
    import importlib.metadata as md

    versions = []
    for name in ("raking-balance", "numpy", "pandas", "pyarrow", "dask", "distributed", "polars"):
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} missing")
    commit = _git("rev-parse", "--short", "HEAD") or "?"
    changed = _git(
        "status", "--porcelain", "--untracked-files=no", "--", str(HERE.parent / "raking")
    )
    if changed:
        commit += f" + uncommitted changes in {len(changed.splitlines())} file(s) of raking/"
    import raking

    source = Path(raking.__file__).resolve().parent.parent
    if source != HERE.parent:
        commit = f"raking imported from {source}, not from this checkout"
    return [
        f"machine : {platform.platform()}, nproc={os.cpu_count()}, {_memory_gib():.0f} GiB memory",
        f"python  : {platform.python_version()}, {', '.join(versions)}",
        f"commit  : {commit}",
        f"date    : {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(HERE), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def _memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=float, nargs="+", default=[1e7, 1e8], help="data set sizes (1e7 1e8)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "raking-bench-scale",
        help="folder for the data and outputs (default: $TMPDIR/raking-bench-scale)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data and outputs (default: remove them)"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--pandas-max",
        type=float,
        default=1e7,
        help="largest size pandas runs at (all rows in memory; 1e7)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (2)")
    parser.add_argument(
        "--rows-per-file", type=float, default=2.5e6, help="rows per Parquet file (2.5e6)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.05, help="memory sampling (s)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child is not None:
        child(args)
        return
    sizes = [int(n) for n in args.rows]
    print("\n".join(header()))
    print(
        f"data    : v1..v6 int8 codes with {list(LEVELS)} levels (dependent, skewed), weights w "
        f"(log-normal x stratum), {STRATA} strata, {STRATA * PSU_PER_STRATUM} PSUs, y; seed "
        f"{args.seed}; {int(args.rows_per_file):,} rows per file, row groups of {CHUNK:,}",
        flush=True,
    )
    runs: list[Run] = []
    checks: list[str] = []
    try:
        for n in sizes:
            data = generate(args.dir / f"rows-{n}", n, args.seed, int(args.rows_per_file))
            here: list[Run] = []
            for method in args.methods:
                if method == "pandas" and n > args.pandas_max:
                    continue
                out = args.dir / f"out-{n}-{method}"
                run = run_method(method, data[0].parent, out, args, n)
                print(details(run), flush=True)
                here.append(run)
            checks += agreement(here)
            runs += here
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    pandas_runs = [r for r in runs if r.method == "pandas"]
    baseline = None
    if pandas_runs:
        largest = max(pandas_runs, key=lambda r: r.rows)
        baseline = work_seconds(largest) / largest.rows * 1e6
        print(f"\nbaseline: pandas at {largest.rows:,} rows, {baseline:.2f} s per 10^6 rows")
    print()
    print(table(runs, baseline))
    print()
    print("\n".join(checks) if checks else "no size with pandas: weights not compared")


if __name__ == "__main__":
    main()
