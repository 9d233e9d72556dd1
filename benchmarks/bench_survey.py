"""Benchmark: raking survey weights to population margins, ours against peer libraries.

For n in {10^4, 10^5, 10^6} rows and two settings, 3 variables (4, 12, 30 levels) and 6 variables
(4, 5, 8, 12, 20, 30 levels), it rakes unit weights to population margins with

- ``raking.survey.frontend.rake`` (ours; pandas categoricals, the fast path), the baseline of the
  ratios;
- a plain-NumPy row-level IPF (``numpy_ipf`` below: ``np.bincount`` per variable per sweep);
- the peer libraries ``balance`` (Meta), ``ipfn`` (its pandas mode on the rows),
  ``weightipy``, ``samplics`` and ``svy``, each run in its own virtual environment through
  ``benchmarks/peers/run.py``: the problem goes to the peer process in an ``.npz`` file, the
  adapter ``benchmarks/peers/peer_NAME.py`` builds the peer's input format untimed, and only the
  raking call is timed, inside the peer process;
- a reference row, ``ipfn`` in NumPy mode on a cross-tabulation that the adapter builds from the
  integer codes inside the timed call (raking the table of cells, as ours does internally); it
  is reported, but the "fastest peer" is taken over the peers that rake the rows.

All run to the same tolerance ``--tol`` (1e-10), but what it bounds differs by library (see the
adapters' docstrings and ``benchmarks/README.md``). The table gives the best wall time over
``--repeats`` calls (fewer for calls over a minute), the sweeps (one sweep rakes every variable
once), the time relative to ours, and the largest absolute and relative difference of the
normalised weights w / sum(w) from ours.

Data (seeded): a latent N(0, 1) variable drives every column (each column is
rho_j * Z + sqrt(1 - rho_j^2) * noise), so the columns are dependent; each is cut into levels of
non-uniform probability. The population margins come from the same cut points applied to a
shifted and rescaled latent distribution, N(mu_j, sigma_j^2) per column, so raking must move the
weights; every level is present in the sample.

Peer venvs (Python 3.11, ``python3 -m venv``) live under ``--venvs`` (default
``/work/bench-venvs``, or ``$RAKING_BENCH_VENVS``), one per peer, named after it; see
``benchmarks/README.md`` for the commands. Run with the OpenBLAS variables unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_survey.py
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bench_kernel import SETTLE_S, header
from scipy.special import ndtr, ndtri

HERE = Path(__file__).resolve().parent
PEER_RUNNER = HERE / "peers" / "run.py"
PEERS = ("balance", "ipfn_rows", "ipfn", "weightipy", "samplics", "svy")
# Peers given the survey rows, which the target is measured against. "ipfn" is a reference row:
# the adapter cross-tabulates the integer codes into ipfn's contingency table (timed) -- raking
# the table of cells, which is our own method's inner step, not a row-level interface of ipfn.
ROW_PEERS = ("balance", "ipfn_rows", "weightipy", "samplics", "svy")
LABELS = {"ipfn": "ipfn, our cross-tab (ref.)", "ipfn_rows": "ipfn (rows)"}
VENV = {"ipfn_rows": "ipfn"}  # peer -> its venv under --venvs, when not named after it
SETTINGS = {"3 vars": (4, 12, 30), "6 vars": (4, 5, 8, 12, 20, 30)}
RHO = (0.7, 0.5, 0.6, 0.4, 0.65, 0.55)  # loading of each column on the latent variable
WARMUP_ROWS = 2_000  # untimed warm-up call on the first rows (as in peers/run.py)
AGREE = 1e-8  # normalised weights must agree to this, relative
BUDGET_S = 60.0  # no further repeat once a method's timed calls have taken this long


# ------------------------------------------------------------------------------------------------
# Problem
# ------------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """Integer codes per variable, level labels, sample and target shares (same as peers/run.py)."""

    codes: np.ndarray  # (n, d)
    names: list[str]
    labels: list[list[str]]
    shares: list[np.ndarray]  # population target shares
    sample_shares: list[np.ndarray]  # level probabilities of the sampling distribution
    tol: float
    max_iter: int

    @property
    def n(self) -> int:
        return self.codes.shape[0]

    def save(self, path: Path) -> None:
        arrays = {f"labels_{j}": np.asarray(lab) for j, lab in enumerate(self.labels)}
        arrays |= {f"shares_{j}": s for j, s in enumerate(self.shares)}
        np.savez(
            path,
            codes=self.codes,
            names=np.asarray(self.names),
            tol=self.tol,
            max_iter=self.max_iter,
            **arrays,
        )


def make_problem(n: int, levels: tuple[int, ...], *, seed: int, tol: float, max_iter: int):
    """Seeded dependent, non-uniform categorical columns and population margins (module doc).

    The level probabilities and the population margins depend on ``seed`` and the setting
    only, so every ``n`` rakes a sample of the same population to the same targets.
    """
    d = len(levels)
    design = np.random.default_rng([seed, d])  # cut points and population: same for every n
    draws = np.random.default_rng([seed, d, n])  # the sample
    rho = np.asarray(RHO[:d])
    latent = draws.standard_normal(n)
    x = rho * latent[:, None] + np.sqrt(1 - rho**2) * draws.standard_normal((n, d))
    codes = np.empty((n, d), dtype=np.int16)
    shares, sample_shares, labels = [], [], []
    for j, size in enumerate(levels):
        p = 0.75 * design.dirichlet(np.full(size, 1.5)) + 0.25 / size  # each level >= 0.25 / size
        cuts = ndtri(np.cumsum(p)[:-1])
        codes[:, j] = np.searchsorted(cuts, x[:, j])
        mu, sigma = design.uniform(-0.4, 0.4), design.uniform(0.8, 1.25)
        cdf = np.concatenate([[0.0], ndtr((cuts - mu) / sigma), [1.0]])
        shares.append(np.diff(cdf) / np.diff(cdf).sum())
        sample_shares.append(p)
        labels.append([f"v{j + 1}_{k:02d}" for k in range(size)])
        if np.bincount(codes[:, j], minlength=size).min() == 0:
            raise RuntimeError(
                f"variable {j + 1}: a level is absent from the sample; change --seed"
            )
    names = [f"v{j + 1}" for j in range(d)]
    return Problem(codes, names, labels, shares, sample_shares, tol, max_iter)


# ------------------------------------------------------------------------------------------------
# In-process methods: ours and the plain-NumPy reference
# ------------------------------------------------------------------------------------------------


def numpy_ipf(codes: list[np.ndarray], targets: list[np.ndarray], tol: float, max_iter: int):
    """Row-level IPF in plain NumPy: per sweep, rescale each variable's level totals to target.

    ``targets`` are counts. Stops when, after a sweep, every level total is within ``tol`` of its
    target relative to the target (the criterion of balance and ipfn). Returns the weights and
    the sweeps.
    """
    w = np.ones(codes[0].shape[0])
    for sweep in range(1, max_iter + 1):
        for c, t in zip(codes, targets, strict=True):
            w *= (t / np.bincount(c, weights=w, minlength=t.size))[c]
        err = max(
            np.max(np.abs(np.bincount(c, weights=w, minlength=t.size) / t - 1))
            for c, t in zip(codes[:-1], targets[:-1], strict=True)
        )
        if err <= tol:
            return w, sweep
    return w, max_iter


def reference_method(problem: Problem):
    codes = [
        np.ascontiguousarray(problem.codes[:, j], dtype=np.intp) for j in range(len(problem.names))
    ]
    targets = [s * problem.n for s in problem.shares]

    def call():
        w, sweeps = numpy_ipf(codes, targets, problem.tol, problem.max_iter)
        return w, sweeps, "" if sweeps < problem.max_iter else "hit max_iter"

    return call


def ours_method(problem: Problem, columns: str = "category"):
    """``raking.survey.frontend.rake`` on a DataFrame of pandas categoricals (the fast path).

    ``columns``: ``"category"`` (default), or ``"string"`` / ``"object"`` to give ours the same
    labels as plain strings (each column then costs one ``pandas.factorize``).
    """
    import pandas as pd

    from raking.survey.frontend import rake

    df = pd.DataFrame(
        {
            name: pd.Categorical.from_codes(problem.codes[:, j], categories=problem.labels[j])
            for j, name in enumerate(problem.names)
        }
    )
    if columns != "category":
        df = df.astype(columns)
    targets = {
        name: pd.Series(problem.shares[j], index=problem.labels[j])
        for j, name in enumerate(problem.names)
    }

    def call():
        res = rake(df, targets, tol=problem.tol, max_iter=problem.max_iter)
        note = str(getattr(res, "method", ""))  # rows or cells, NumPy or Numba passes
        if not res.converged:
            note += "; not converged"
        return res.weights.to_numpy(dtype=np.float64), res.iterations, note

    return call


def head(problem: Problem, rows: int) -> Problem:
    return Problem(
        problem.codes[:rows],
        problem.names,
        problem.labels,
        problem.shares,
        problem.sample_shares,
        problem.tol,
        problem.max_iter,
    )


# ------------------------------------------------------------------------------------------------
# Running methods
# ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    method: str
    times: list[float] = field(default_factory=list)
    weights: np.ndarray | None = None
    sweeps: int | None = None
    note: str = ""
    versions: str = ""

    @property
    def time(self) -> float | None:
        return min(self.times) if self.times else None


def run_in_process(name: str, factory, problem: Problem, repeats: int) -> Outcome:
    out = Outcome(name)
    try:
        try:  # warm-up (imports, Numba JIT), untimed
            small = head(problem, min(WARMUP_ROWS, problem.n))
            factory(small)()
        except ImportError:
            raise
        except Exception:
            pass
        call = factory(problem)
        for _ in range(max(1, repeats)):
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            result = call()
            out.times.append(time.perf_counter() - start)
            if out.times[-1] == min(out.times):
                out.weights, out.sweeps, out.note = result
            if sum(out.times) > BUDGET_S:
                break
    except ImportError as exc:
        out.note = f"not available: {exc}"
    except Exception as exc:
        out.note = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"[:160]
    return out


def peer_python(peer: str, venvs: str) -> str | None:
    """The peer's own venv, else this interpreter if it can import the peer (``.[bench]``)."""
    package = VENV.get(peer, peer)
    python = Path(venvs) / package / "bin" / "python"
    if python.exists():
        return str(python)
    if importlib.util.find_spec(package) is not None:
        return sys.executable
    return None


def run_peer(peer: str, problem_file: Path, workdir: Path, args: argparse.Namespace) -> Outcome:
    out = Outcome(peer)
    python = peer_python(peer, args.venvs)
    if python is None:
        where = Path(args.venvs) / VENV.get(peer, peer)
        out.note = f"not installed (no {where} venv, not importable here)"
        return out
    result = workdir / f"result_{peer}.npz"
    result.unlink(missing_ok=True)
    cmd = [
        python,
        str(PEER_RUNNER),
        peer,
        str(problem_file),
        str(result),
        "--repeats",
        str(args.repeats),
        "--budget",
        str(min(BUDGET_S, args.timeout / 4)),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        out.note = f"timed out after {args.timeout:g} s (whole peer process)"
        return out
    if not result.exists():
        tail = " | ".join(log.strip().splitlines()[-2:])[:300]
        out.note = f"failed (exit {proc.returncode}): {tail}"
        return out
    with np.load(result) as f:
        out.times = list(f["times"])
        out.weights = f["weights"] if f["weights"].size else None
        out.sweeps = int(f["sweeps"]) if int(f["sweeps"]) >= 0 else None
        out.versions = str(f["versions"])
        error = str(f["error"])
        out.note = f"failed: {error}" if error else str(f["note"])
    if args.verbose and log.strip():
        print(f"[{peer}] {log.strip()}", file=sys.stderr)
    return out


# ------------------------------------------------------------------------------------------------
# Table
# ------------------------------------------------------------------------------------------------


def normalised(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def margin_error(problem: Problem, w: np.ndarray) -> float:
    """Largest relative error of a level total against its target, |total / target - 1|."""
    wn = normalised(w)
    return max(
        float(
            np.max(np.abs(np.bincount(problem.codes[:, j], weights=wn, minlength=s.size) / s - 1))
        )
        for j, s in enumerate(problem.shares)
    )


def rows_for(
    case: str, problem: Problem, outcomes: list[Outcome]
) -> tuple[list[list[str]], Outcome]:
    base = next((o for o in outcomes if o.method == "ours" and o.time is not None), None)
    if base is None:
        base = next(o for o in outcomes if o.method == "numpy IPF (reference)")
    ref = normalised(base.weights)
    rows = []
    for o in outcomes:
        label = LABELS.get(o.method, o.method)
        if o.time is None:
            rows.append([case, f"{problem.n:.0e}", label, "-", "-", "-", "-", "-", "-", o.note])
            continue
        note = o.note
        if o.weights is None or o.weights.shape != ref.shape or not np.all(np.isfinite(o.weights)):
            diff_abs = diff_rel = merr = "-"
            note = (note + "; " if note else "") + "no usable weights"
        else:
            wn = normalised(o.weights)
            diff_abs = f"{np.max(np.abs(wn - ref)):.1e}"
            diff_rel = f"{np.max(np.abs(wn - ref) / ref):.1e}"
            merr = f"{margin_error(problem, o.weights):.1e}"
        rows.append(
            [
                case,
                f"{problem.n:.0e}",
                label,
                f"{o.time:.3g}",
                "-" if o.sweeps is None else str(o.sweeps),
                f"{o.time / base.time:.1f}",
                merr,
                diff_abs,
                diff_rel,
                note,
            ]
        )
    return rows, base


def print_table(rows: list[list[str]], base_name: str) -> None:
    head_ = [
        "case",
        "n",
        "method",
        "time (s)",
        "sweeps",
        f"time / {base_name}",
        "margin err",
        "max |Δw̃|",
        "max rel Δw̃",
        "note",
    ]
    widths = [max(len(r[i]) for r in [head_, *rows]) for i in range(len(head_))]
    right = {3, 4, 5, 6, 7, 8}

    def fmt(r):
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            + " |"
        )

    print(fmt(head_))
    print(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    for r in rows:
        print(fmt(r))


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n",
        type=lambda s: [int(float(x)) for x in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
        help="rows, comma-separated",
    )
    parser.add_argument("--vars", default="3,6", help="settings: 3 and/or 6 variables")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated subset of {','.join(PEERS)} (or 'none')",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (best is kept)")
    parser.add_argument("--quick", action="store_true", help="n = 10^4 only")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per peer process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--venvs", default=os.environ.get("RAKING_BENCH_VENVS", "/work/bench-venvs")
    )
    parser.add_argument(
        "--no-ours", action="store_true", help="leave raking.survey.frontend.rake out"
    )
    parser.add_argument(
        "--ours-columns",
        default="category",
        choices=["category", "string", "object"],
        help="the dtype of the columns given to ours (peers are unaffected)",
    )
    parser.add_argument("--verbose", action="store_true", help="print the peers' own output")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = [10_000]
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"--peers: unknown {unknown}; choose from {', '.join(PEERS)}")
    settings = {f"{v} vars": SETTINGS[f"{v} vars"] for v in args.vars.split(",")}

    load_start = os.getloadavg()[0]
    rows: list[list[str]] = []
    summaries: list[str] = []
    versions: dict[str, str] = {}
    base_names = set()
    with tempfile.TemporaryDirectory(prefix="bench_survey_") as tmp:
        workdir = Path(tmp)
        for case, levels in settings.items():
            for n in args.n:
                problem = make_problem(
                    n, levels, seed=args.seed, tol=args.tol, max_iter=args.max_iter
                )
                problem_file = workdir / "problem.npz"
                problem.save(problem_file)
                outcomes = []
                if not args.no_ours:
                    factory = functools.partial(ours_method, columns=args.ours_columns)
                    outcomes.append(run_in_process("ours", factory, problem, args.repeats))
                outcomes.append(
                    run_in_process("numpy IPF (reference)", reference_method, problem, args.repeats)
                )
                for peer in peers:
                    outcomes.append(run_peer(peer, problem_file, workdir, args))
                    if outcomes[-1].versions:
                        versions[peer] = outcomes[-1].versions
                    print(f"# {case}, n={n}: {peer} done", file=sys.stderr, flush=True)
                case_rows, base = rows_for(case, problem, outcomes)
                base_names.add(base.method)
                rows += case_rows
                summaries.append(summary(case, problem, outcomes, base))

    print("\n".join(header()))
    for peer in peers:
        print(f"peer    : {peer}: {versions.get(peer, 'not run')}")
    print(
        f"problem : {', '.join(f'{c} (levels {list(l)})' for c, l in settings.items())}; "
        f"dependent non-uniform columns (latent N(0,1), loadings {list(RHO)}), population "
        f"margins from a shifted latent; seed {args.seed}; tol {args.tol:g}, max_iter "
        f"{args.max_iter}; best of {args.repeats} (1 when a call takes > {BUDGET_S:g} s); "
        f"warm-up on the first {WARMUP_ROWS} rows untimed; peer timeout {args.timeout:g} s"
    )
    print(
        f"load    : 1-min load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} "
        f"at the end ({os.cpu_count()} CPUs; other processes on the machine skew the timings)"
    )
    print()
    base_name = "ours" if base_names == {"ours"} else " / ".join(sorted(base_names))
    print_table(rows, base_name)
    print()
    print("\n".join(summaries))
    return 0


def summary(case: str, problem: Problem, outcomes: list[Outcome], base: Outcome) -> str:
    """Fastest peer against the baseline, and whether every finished method agrees with it."""
    head_ = f"{case}, n={problem.n:.0e}: "
    peers = [o for o in outcomes if o.method in ROW_PEERS and o.time is not None]
    if peers:
        fastest = min(peers, key=lambda o: o.time)
        head_ += (
            f"fastest peer {LABELS.get(fastest.method, fastest.method)} {fastest.time:.3g} s, "
            f"{base.method} {base.time:.3g} s: {fastest.time / base.time:.1f}x"
        )
        crosstab = next((o for o in outcomes if o.method == "ipfn" and o.time is not None), None)
        if crosstab is not None:
            head_ += f"; {LABELS['ipfn']} {crosstab.time:.3g} s: {crosstab.time / base.time:.1f}x"
    else:
        head_ += "no peer finished"
    ref = normalised(base.weights)
    diffs = {
        o.method: float(np.max(np.abs(normalised(o.weights) - ref) / ref))
        for o in outcomes
        if o.time is not None and o.weights is not None and o.weights.shape == ref.shape
    }
    if len(base.times) > 1:
        head_ += f" (its first timed call {base.times[0]:.3g} s)"
    worst = max(diffs, key=diffs.get)
    ok = diffs[worst] <= AGREE
    return head_ + (
        f"; all weights within {AGREE:g} (relative) of {base.method}: "
        f"{'yes' if ok else 'NO'} (largest: {worst} {diffs[worst]:.1e})"
    )


if __name__ == "__main__":
    sys.exit(main())
