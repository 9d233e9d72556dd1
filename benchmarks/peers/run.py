"""Run one peer raking library on a problem file and time only its raking call.

Called by ``benchmarks/bench_survey.py`` with the Python of the peer's own virtual environment::

    PEER_VENV/bin/python benchmarks/peers/run.py NAME problem.npz result.npz --repeats 3

This file and the ``peer_*.py`` adapters beside it import neither ``raking`` nor anything outside
the standard library, NumPy and the peer's own dependencies, so that they run in any peer venv
(Meta's ``balance`` needs NumPy < 2 and so cannot share one with ``raking``).

Each adapter module ``peer_NAME.py`` defines

- ``PACKAGES``: distribution names whose versions go into the benchmark header;
- ``prepare(problem)``: the peer's input format built from the integer codes (not timed);
- ``rake(state, problem)``: the raking call that is timed; returns ``(weights, sweeps, note)``,
  weights in the input row order, sweeps ``None`` where the peer does not report them;
- optionally ``count_sweeps(state, problem, weights)``: sweeps found after the timed calls (for a
  peer that does not report them), and ``FRESH_STATE = True`` where ``rake`` consumes its input.

The problem file holds ``codes`` (n, d) integer category codes, ``names``, the level labels and
the target shares of each variable, ``tol`` and ``max_iter``. The result file holds the weights
of the last timed call, every timed call's wall time, the sweep count, a note and the versions.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np

SETTLE_S = 0.3  # idle time before each timed call (see bench_kernel.best_time)
WARMUP_ROWS = 2_000


@dataclass
class Problem:
    """A raking problem: integer codes per variable, labels and target shares."""

    codes: np.ndarray  # (n, d) integer codes, level k of variable j is labels[j][k]
    names: list[str]
    labels: list[list[str]]
    shares: list[np.ndarray]  # target shares per variable, each sums to 1
    tol: float
    max_iter: int

    @property
    def n(self) -> int:
        return self.codes.shape[0]

    def head(self, rows: int) -> Problem:
        return Problem(
            self.codes[:rows], self.names, self.labels, self.shares, self.tol, self.max_iter
        )


def load(path: str) -> Problem:
    with np.load(path, allow_pickle=False) as f:
        names = [str(s) for s in f["names"]]
        return Problem(
            codes=f["codes"],
            names=names,
            labels=[[str(s) for s in f[f"labels_{j}"]] for j in range(len(names))],
            shares=[f[f"shares_{j}"].astype(np.float64) for j in range(len(names))],
            tol=float(f["tol"]),
            max_iter=int(f["max_iter"]),
        )


def versions(packages: tuple[str, ...]) -> str:
    out = []
    for name in packages:
        try:
            out.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name} ?")
    return ", ".join(out) + f"; python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer")
    parser.add_argument("problem")
    parser.add_argument("result")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="no further repeat once the timed calls have taken this many seconds in all",
    )
    args = parser.parse_args(argv)

    times: list[float] = []
    weights = np.zeros(0)
    sweeps: int | None = None
    note = ""
    error = ""
    info = ""
    try:
        mod = importlib.import_module(f"peer_{args.peer}")
        info = versions(mod.PACKAGES)
        problem = load(args.problem)
        fresh = getattr(mod, "FRESH_STATE", False)
        # Warm-up on the first rows: imports, lazy initialisation, caches. Not timed; its failure
        # (a level absent from the slice, say) is ignored: the full call reports its own errors.
        try:
            small = problem.head(min(WARMUP_ROWS, problem.n))
            mod.rake(mod.prepare(small), small)
        except Exception:
            pass
        state = mod.prepare(problem)
        for r in range(max(1, args.repeats)):
            if r and fresh:
                state = mod.prepare(problem)
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            result = mod.rake(state, problem)
            times.append(time.perf_counter() - start)
            if times[-1] == min(times):  # keep the fastest call's output (its note has timings)
                weights, sweeps, note = result
            if sum(times) > args.budget:
                break
        if sweeps is None and hasattr(mod, "count_sweeps"):
            sweeps = mod.count_sweeps(mod.prepare(problem) if fresh else state, problem, weights)
    except Exception as exc:
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:160]
        traceback.print_exc()
    np.savez(
        args.result,
        weights=np.asarray(weights, dtype=np.float64),
        times=np.asarray(times, dtype=np.float64),
        sweeps=-1 if sweeps is None else int(sweeps),
        note=note,
        error=error,
        versions=info,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
