"""Benchmark: many small 2-D tables, balanced with a fixed number of steps.

Compares, in one process, on ``--batch`` seeded random positive tables of ``--size`` with
per-table targets and ``--steps`` single-marginal adjustments:

(a) the authors' per-table loop, rewritten in plain NumPy (baseline);
(b) our batched NumPy kernel (array-API path, Numba dispatch off): factors only;
(c) our Numba kernel (``raking.kernel.compiled.numba_ipf``, JIT excluded by a warm-up call):
    factors only;
(d) ``raking.balance`` with automatic dispatch: validation, factors and the balanced tables
    (on this problem one compiled pass that checks each table, balances it and writes it);

plus the public ``raking.scaling_factors`` (validation and factors), ``raking.balance`` with the
Numba dispatch off, and (d'') the three passes (d) made before (complete validation, factors,
tables). All results are checked against (a). Each row gives the best and the median of
``--repeats`` rounds; (a) and (d) are then also timed in turns, and the median (min, max) of
their per-round ratio printed, which a shared machine's changing load disturbs less.

``--rule`` instead times (b) against (c) over a grid of batch and table sizes: the
measurements behind :func:`raking.kernel.compiled.use_numba`.

OpenBLAS reads ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` when NumPy loads; run with them unset
(``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_kernel.py``)
to get the BLAS kernel OpenBLAS picks for this CPU. The header records which one it used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import array_api_compat.numpy as xp_numpy
import numpy as np

import raking
import raking.kernel.compiled
import raking.kernel.ipf
import raking.validation
from raking.kernel.ipf import _ipf, apply_scaling

ROOT = Path(__file__).resolve().parent.parent

RULE_CASES = [  # (B, m, l)
    (2, 5, 5),
    (10_000, 5, 5),
    (100_000, 3, 4),
    (1_000, 20, 20),
    (2, 50, 50),
    (10, 50, 50),
    (100, 50, 50),
    (10_000, 50, 50),
    (2, 100, 100),
    (2, 200, 200),
    (16, 200, 200),
    (100, 200, 200),
    (2, 300, 300),
    (2, 500, 500),
    (4, 500, 500),
    (2, 700, 700),
    (2, 1000, 1000),
    (8, 1000, 1000),
]


# ------------------------------------------------------------------------------------------------
# Header
# ------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.strip()


def header() -> list[str]:
    """Machine, library versions, BLAS, commit and date."""
    import numba
    import threadpoolctl

    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    blas = [
        f"{Path(i['filepath']).parent.name}: {i['internal_api']} {i['version']} (kernel "
        f"{i.get('architecture')}, {i['num_threads']} threads, {i.get('threading_layer')})"
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas"
    ]
    env = ", ".join(
        f"{k}={os.environ[k]}" if k in os.environ else f"{k} unset"
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    )
    return [
        f"machine : {platform.platform()}, {_cpu_model()}, nproc={os.cpu_count()}",
        f"python  : {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
        f" ({numba.get_num_threads()} threads, layer {_threading_layer()}), "
        f"raking {raking.__version__}",
        f"BLAS    : {'; '.join(blas) or 'none reported'} [{env}]",
        f"commit  : {commit}{' + uncommitted changes' if dirty else ''}",
        f"date    : {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return "not yet chosen"


# ------------------------------------------------------------------------------------------------
# Methods
# ------------------------------------------------------------------------------------------------


def authors_loop(tables: np.ndarray, px: np.ndarray, py: np.ndarray, steps: int) -> list:
    """The authors' ``data_balance``, rewritten in plain NumPy and run table by table.

    Each half-step materialises the matrix: rows are rescaled to ``px`` (odd steps), columns to
    ``py`` (even steps), by target / current marginal; every intermediate matrix is kept in a
    list, as their code returns one. Their "missing mass" check is left out (it only adds time).
    """
    out = []
    for b in range(tables.shape[0]):
        mats = [tables[b]]
        for k in range(steps):
            p = mats[-1]
            if k % 2 == 0:
                mats.append(p * (px[b] / p.sum(axis=1))[:, None])
            else:
                mats.append(p * (py[b] / p.sum(axis=0))[None, :])
        out.append(mats[-1])
    return out


@contextlib.contextmanager
def numba_dispatch(on: bool) -> Iterator[None]:
    """Force the kernel's Numba dispatch off (``on=False``) for the duration of the block."""
    saved = raking.kernel.compiled.use_numba
    if not on:
        raking.kernel.compiled.use_numba = lambda table, targets, steps: False
    try:
        yield
    finally:
        raking.kernel.compiled.use_numba = saved


def numpy_kernel(table: np.ndarray, targets: list, steps: int):
    """Our batched array-API kernel on NumPy, Numba dispatch off: the scaling factors."""
    with numba_dispatch(False):
        return _ipf(
            table,
            targets,
            steps=steps,
            tol=1e-10,
            max_steps=10_000,
            check_every=2,
            log_domain=False,
            xp=xp_numpy,
        )


# Idle time before each measurement: OpenBLAS and OpenMP (Numba's threading layer) worker threads
# spin for a while after their last call and would compete with the next method for the cores.
SETTLE_S = 0.3


def timings(fn: Callable[[], object], repeats: int, min_time: float = 0.05) -> list[float]:
    """Wall time of one call in each of ``repeats`` rounds; short calls are looped per round.

    Starts after ``SETTLE_S`` seconds idle and one untimed call.
    """
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, int(min_time / max(once, 1e-9)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - start) / loops)
    return times


def best_time(fn: Callable[[], object], repeats: int, min_time: float = 0.05) -> float:
    """Best wall time of one call over ``repeats`` rounds (see :func:`timings`)."""
    return min(timings(fn, repeats, min_time))


def paired_ratios(
    base: Callable[[], object], fn: Callable[[], object], rounds: int, calls: int = 3
) -> list[float]:
    """Per-round speed-ups ``time(base) / time(fn)``, the two timed in turns.

    Each round times one call of ``base`` and the best of ``calls`` calls of ``fn`` (short),
    each after ``SETTLE_S`` seconds idle, so that both see the same load on a shared machine.
    """
    ratios = []
    for _ in range(rounds):
        time.sleep(SETTLE_S)
        start = time.perf_counter()
        base()
        t_base = time.perf_counter() - start
        time.sleep(SETTLE_S)
        t_fn = float("inf")
        for _ in range(calls):
            start = time.perf_counter()
            fn()
            t_fn = min(t_fn, time.perf_counter() - start)
        ratios.append(t_base / t_fn)
    return ratios


def problem(batch: int, m: int, l: int, dtype: str, seed: int):
    """Seeded positive tables and per-table targets (shares) of the given shape."""
    rng = np.random.default_rng(seed)
    tables = rng.uniform(0.1, 1.0, size=(batch, m, l)).astype(dtype)
    px = rng.uniform(0.5, 1.5, size=(batch, m))
    py = rng.uniform(0.5, 1.5, size=(batch, l))
    px = (px / px.sum(axis=1, keepdims=True)).astype(dtype)
    py = (py / py.sum(axis=1, keepdims=True)).astype(dtype)
    return tables, px, py


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


# ------------------------------------------------------------------------------------------------
# Main comparison
# ------------------------------------------------------------------------------------------------


def compare(args: argparse.Namespace) -> int:
    m, l = args.size
    tables, px, py = problem(args.batch, m, l, args.dtype, args.seed)
    targets = [px, py]
    steps = args.steps

    start = time.perf_counter()
    raking.kernel.compiled.numba_ipf(tables[:2], [px[:2], py[:2]], steps)
    first_call = time.perf_counter() - start

    rows = [
        (
            "(a) authors' per-table loop (rewritten)",
            "tables",
            lambda: authors_loop(tables, px, py, steps),
        ),
        (
            "(b) NumPy batched kernel (_ipf, Numba off)",
            "factors",
            lambda: numpy_kernel(tables, targets, steps),
        ),
        (
            "(c) Numba kernel (numba_ipf, warm)",
            "factors",
            lambda: raking.kernel.compiled.numba_ipf(tables, targets, steps),
        ),
        (
            "(d) raking.balance (auto dispatch)",
            "tables",
            lambda: raking.balance(tables, targets, steps=steps),
        ),
    ]

    def balance_numpy():
        with numba_dispatch(False):
            return raking.balance(tables, targets, steps=steps)

    def three_passes():
        """(d) as it was before the checks and the tables moved into the compiled pass."""
        args = (tables, targets, steps, 1e-10, 10_000, False, None)
        _, table, checked, _ = raking.kernel.ipf._validate(*args)
        factors = raking.kernel.compiled.numba_ipf(table, checked, steps).factors
        return raking.kernel.compiled.numba_apply(table, factors)

    rows += [
        ("(d') raking.balance, Numba off", "tables", balance_numpy),
        ("(d'') _validate + numba_ipf + numba_apply", "tables", three_passes),
        (
            "(e) raking.scaling_factors (public)",
            "factors",
            lambda: raking.scaling_factors(tables, targets, steps=steps),
        ),
    ]

    results = {}
    times = {}
    medians = {}
    for label, _kind, fn in rows:
        results[label] = fn()
        rounds = timings(fn, args.repeats)
        times[label], medians[label] = min(rounds), float(np.median(rounds))
    paired = paired_ratios(rows[0][2], rows[3][2], args.repeats)

    # Agreement: every method's balanced tables against (a), factors (b) against (c).
    reference = np.stack(results[rows[0][0]])
    diffs = {}
    for label, kind, _ in rows:
        out = results[label]
        if kind == "factors":
            out = apply_scaling(tables, out.factors)
        elif label == rows[0][0]:
            out = reference
        diffs[label] = _rel_diff(out, reference)
    factor_diff = max(
        _rel_diff(fc, fb)
        for fb, fc in zip(results[rows[1][0]].factors, results[rows[2][0]].factors, strict=True)
    )

    print("\n".join(header()))
    print(
        f"problem : B={args.batch} tables of {m}x{l} {args.dtype}, uniform(0.1, 1) entries, "
        f"per-table targets, steps={steps}, seed={args.seed}; best and median of "
        f"{args.repeats} rounds"
    )
    print(
        f"JIT     : first numba_ipf call in this process {first_call:.2f} s "
        "(import numba + compile or load from the on-disk cache)"
    )
    print()
    base = times[rows[0][0]]
    width = max(len(r[0]) for r in rows)
    print(
        f"| {'method':<{width}} | output  | time (s) | median (s) | per table (µs) "
        "| speed-up vs (a) | max rel. diff vs (a) |"
    )
    print(
        f"|{'-' * (width + 2)}|---------|---------:|-----------:|---------------:|"
        "----------------:|---------------------:|"
    )
    for label, kind, _ in rows:
        t = times[label]
        print(
            f"| {label:<{width}} | {kind:<7} | {t:8.3g} | {medians[label]:10.3g} | "
            f"{t / args.batch * 1e6:14.2f} | {base / t:15.1f} | {diffs[label]:20.1e} |"
        )
    print()
    print(
        f"(d) vs (a) timed in turns, {len(paired)} rounds: speed-up median "
        f"{np.median(paired):.1f} (min {min(paired):.1f}, max {max(paired):.1f})"
    )
    print(
        "where the time of (d) goes: "
        + ", ".join(f"{name} {t * 1e3:.3g} ms" for name, t in breakdown(tables, targets, args))
    )
    print(f"max relative difference of the factors, (b) vs (c): {factor_diff:.1e}")
    tol = 1e-12 if args.dtype == "float64" else 1e-4
    worst = max(max(diffs.values()), factor_diff)
    ok = worst <= tol
    print(f"all results agree to {tol:g}: {'yes' if ok else 'NO'} (max {worst:.1e})")
    return 0 if ok else 1


def breakdown(tables: np.ndarray, targets: list, args: argparse.Namespace) -> list:
    """Times of the stages of ``raking.balance`` on this problem (private kernel functions).

    The public path: the target checks, then one ``numba_ipf`` call that checks each table,
    balances it and writes it (``check=True, write=True``). For comparison: the same call
    without the table checks or without the tables, the complete validation ``_validate``
    (the path of an invalid input, and of every input before) and ``numba_apply`` (the tables
    formed in a second pass).
    """
    validate = raking.kernel.ipf._validate
    xp, table, checked, _ = validate(tables, targets, args.steps, 1e-10, 10_000, False, None)
    factors = raking.kernel.compiled.numba_ipf(table, checked, args.steps).factors
    numba_ipf = raking.kernel.compiled.numba_ipf
    stages = [
        (
            "target checks (check_targets)",
            lambda: raking.validation.check_targets(targets, tables, xp=xp, dtype=tables.dtype),
        ),
        ("factors (numba_ipf)", lambda: numba_ipf(table, checked, args.steps)),
        (
            "+ table checks (check=True)",
            lambda: numba_ipf(table, checked, args.steps, check=True),
        ),
        (
            "+ tables (check=True, write=True)",
            lambda: numba_ipf(table, checked, args.steps, check=True, write=True),
        ),
        (
            "complete validation (_validate)",
            lambda: validate(tables, targets, args.steps, 1e-10, 10_000, False, None),
        ),
        (
            "tables alone (numba_apply: read + fresh write, the floor)",
            lambda: raking.kernel.compiled.numba_apply(table, factors),
        ),
    ]
    return [(name, best_time(fn, args.repeats)) for name, fn in stages]


# ------------------------------------------------------------------------------------------------
# Decision rule of use_numba
# ------------------------------------------------------------------------------------------------


def rule(args: argparse.Namespace) -> int:
    import numba

    raking.kernel.compiled.numba_ipf(
        np.ones((2, 2, 2), args.dtype), [np.full(2, 0.5, args.dtype)] * 2, 2
    )
    threads = numba.get_num_threads()
    print("\n".join(header()))
    print(
        f"problem : uniform(0.1, 1) tables, per-table targets, steps={args.steps}, {args.dtype}; "
        f"best of {args.repeats} (short calls looped); JIT excluded"
    )
    print()
    print(
        f"| B x (m x l) | m*l | NumPy kernel (ms) | Numba, {threads} threads (ms) | speed-up "
        "| Numba, 1 thread (ms) | speed-up, 1 thread | use_numba |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|:-:|")
    for batch, m, l in RULE_CASES:
        tables, px, py = problem(batch, m, l, args.dtype, args.seed)
        targets = [px, py]
        t_np = best_time(lambda: numpy_kernel(tables, targets, args.steps), args.repeats)  # noqa: B023
        timed = []
        for n in (threads, 1):
            numba.set_num_threads(n)
            timed.append(
                best_time(
                    lambda: raking.kernel.compiled.numba_ipf(tables, targets, args.steps),  # noqa: B023
                    args.repeats,
                )
            )
        numba.set_num_threads(threads)
        decision = raking.kernel.compiled.use_numba(tables, targets, args.steps)
        print(
            f"| {batch} x {m}x{l} | {m * l} | {t_np * 1e3:.3f} | {timed[0] * 1e3:.3f} | "
            f"{t_np / timed[0]:.1f} | {timed[1] * 1e3:.3f} | {t_np / timed[1]:.1f} | "
            f"{'yes' if decision else 'no'} |"
        )
    return 0


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"--size takes M or MxL, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000, help="number of tables B")
    parser.add_argument("--size", type=_size, default=(50, 50), help="table size M or MxL")
    parser.add_argument("--steps", type=int, default=8, help="single-marginal adjustments")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (best is kept)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", action="store_true", help="time the use_numba grid instead")
    args = parser.parse_args(argv)
    return rule(args) if args.rule else compare(args)


if __name__ == "__main__":
    sys.exit(main())
