"""Benchmark: replicate weights re-raked in one batched call, against one rake and R survey.

Problem (seeded): ``n`` rows (default 10^6), 6 raking variables of 3, 4, 5, 6, 8 and 10 levels
(dependent: a latent N(0, 1) drives every column; population margins from a shifted latent
distribution, so raking moves the weights), design weights uniform on [1, 3] per PSU, and a
stratified cluster design of 50 strata x 20 PSUs (rows assigned to PSUs at random).

Timed, best of ``--repeats`` (every run is printed, for the spread; (a) and (b) run in turns,
and the ratio of each pair is printed too):

- (a) ``raking.rake(..., strata=, cluster=)``: one rake of the full sample (the baseline);
- (b) the same with ``replicates="bootstrap", n_replicates=100`` (Rao--Wu): the replicates are
  built, their cell sums formed and all 100 re-raked to the same margins and tolerance in one
  batched call; (b) / (a) is the ratio the issue asks to keep at most 5;
- (c) forming ``replicate_weights`` (the ``n x R`` DataFrame; lazy, not part of (b));
- (d) R ``survey`` on the same replicates: the replicate design weights ``d_i a_r(psu_i)`` of
  our bootstrap (the multipliers and PSUs go to R, which forms them), ``svrepdesign(type=
  "other", scale = 1/(R-1))`` and ``calibrate(calfun="raking")`` (each replicate raked to the
  same margins, ``epsilon`` 1e-10), timed inside R around ``calibrate`` only; at the smaller
  sizes ``--r-sizes`` (10^6 rows x 100 replicates is too slow for R here), with ours at the
  same sizes, and R extrapolated linearly in ``n`` to the main size (its cost per replicate is
  a Newton solve on the ``n x 31`` model matrix, linear in ``n``). The SE of a mean from R and
  from ours is printed as a check that both solved the same problem.

Run (the machine was shared by other jobs when the committed numbers were taken: see the
spread)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_replicates.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_kernel import header
from scipy.special import ndtr, ndtri

import raking

LEVELS = (3, 4, 5, 6, 8, 10)
RHO = (0.7, 0.6, 0.5, 0.6, 0.4, 0.5)

R_SCRIPT = r"""
suppressMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
rows <- read.csv(args[1])
mult <- as.matrix(read.csv(args[2]))
pop <- scan(args[3], quiet = TRUE)
levels <- as.integer(strsplit(args[4], ",")[[1]])
names_x <- paste0("x", seq_along(levels) - 1)
for (j in seq_along(levels)) rows[[names_x[j]]] <- factor(rows[[names_x[j]]],
                                                          levels = 0:(levels[j] - 1))
rep <- rows$d * mult[rows$psu + 1, ]
R <- ncol(mult)
des <- svrepdesign(data = rows, repweights = rep, weights = ~d, combined.weights = TRUE,
                   type = "other", scale = 1 / (R - 1), rscales = rep(1, R), mse = FALSE)
f <- as.formula(paste("~", paste(names_x, collapse = "+")))
t0 <- proc.time()[["elapsed"]]
cal <- calibrate(des, f, pop, calfun = "raking", epsilon = 1e-10, maxit = 100,
                 compress = FALSE)
elapsed <- proc.time()[["elapsed"]] - t0
est <- svymean(~y, cal)
cat(sprintf("%.6f %.10g %.10g\n", elapsed, coef(est), SE(est)))
"""


def make_problem(n: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Rows with 6 categorical columns, design weights, strata and PSUs; population margins."""
    pop = np.random.default_rng([seed, 1])  # cut points and population: the same for every n
    draws = np.random.default_rng([seed, 2, n])
    latent = draws.standard_normal(n)
    rho = np.asarray(RHO)
    x = rho * latent[:, None] + np.sqrt(1 - rho**2) * draws.standard_normal((n, len(LEVELS)))
    data = {}
    targets = {}
    for j, size in enumerate(LEVELS):
        p = 0.75 * pop.dirichlet(np.full(size, 1.5)) + 0.25 / size
        cuts = ndtri(np.cumsum(p)[:-1])
        data[f"x{j}"] = pd.Categorical.from_codes(
            np.searchsorted(cuts, x[:, j]).astype(np.int8), categories=range(size)
        )
        mu, sigma = pop.uniform(-0.4, 0.4), pop.uniform(0.8, 1.25)
        cdf = np.concatenate([[0.0], ndtr((cuts - mu) / sigma), [1.0]])
        targets[f"x{j}"] = dict(enumerate(np.diff(cdf) * 1e7 / np.diff(cdf).sum()))
    stratum = draws.integers(0, 50, n)
    psu = stratum * 20 + draws.integers(0, 20, n)
    frame = pd.DataFrame(data)
    frame["stratum"] = stratum
    frame["psu"] = psu
    frame["d"] = np.random.default_rng([seed, 3]).uniform(1, 3, 1000)[psu]
    frame["y"] = 50 + 10 * latent + draws.standard_normal(n)
    return frame, targets


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    runs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return min(runs), runs, out


def ours(frame: pd.DataFrame, targets: dict, n_rep: int, seed: int, repeats: int) -> dict:
    design = dict(weights="d", strata="stratum", cluster="psu")
    # imports, JIT (or loading it from numba's cache) and first-touch memory outside the timings
    raking.rake(frame, targets, **design)
    raking.rake(frame, targets, **design, replicates="bootstrap", n_replicates=n_rep, seed=seed)
    one_runs, rep_runs = [], []
    for _ in range(repeats):  # (a) and (b) in turns: the pairs see the same load
        one_t, _, base = timed(lambda: raking.rake(frame, targets, **design), 1)
        rep_t, _, res = timed(
            lambda: raking.rake(
                frame, targets, **design, replicates="bootstrap", n_replicates=n_rep, seed=seed
            ),
            1,
        )
        one_runs.append(one_t)
        rep_runs.append(rep_t)
    one, rep = min(one_runs), min(rep_runs)
    t0 = time.perf_counter()
    res.replicate_weights  # noqa: B018 (formed on first access)
    materialise = time.perf_counter() - t0
    reps = res._design.replicates
    return {
        "one": one,
        "one_runs": one_runs,
        "rep": rep,
        "rep_runs": rep_runs,
        "materialise": materialise,
        "sweeps": (base.iterations, float(np.mean(reps.steps)) / len(LEVELS)),
        "cells": reps.factors.shape[1],
        "converged": bool(reps.converged.all()),
        "mean": res.mean("y"),
        "lin_se": base.mean("y").se,
        "res": res,
    }


def run_r(frame: pd.DataFrame, targets: dict, res: raking.survey.results.RakeResult) -> tuple:
    """R survey's calibrate() on our bootstrap replicates: (seconds, mean, SE)."""
    spec = res._design.replicates.design
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cols = [f"x{j}" for j in range(len(LEVELS))]
        rows = pd.DataFrame({c: frame[c].cat.codes for c in cols})
        rows["d"], rows["y"] = frame["d"].to_numpy(), frame["y"].to_numpy()
        # our PSU numbering (first appearance) indexes the multipliers
        rows["psu"] = pd.factorize(frame["psu"])[0]
        rows.to_csv(tmp_path / "rows.csv", index=False)
        pd.DataFrame(spec.multipliers).to_csv(tmp_path / "mult.csv", index=False)
        total = sum(targets["x0"].values())
        pop = [total] + [targets[c][k] for c in cols for k in range(1, len(targets[c]))]
        np.savetxt(tmp_path / "pop.txt", pop, fmt="%.17g")
        (tmp_path / "bench.R").write_text(R_SCRIPT)
        out = subprocess.run(
            [
                "Rscript",
                str(tmp_path / "bench.R"),
                str(tmp_path / "rows.csv"),
                str(tmp_path / "mult.csv"),
                str(tmp_path / "pop.txt"),
                ",".join(map(str, LEVELS)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode:
        raise RuntimeError(f"Rscript failed:\n{out.stderr[-2000:]}")
    elapsed, mean, se = (float(v) for v in out.stdout.split()[-3:])
    return elapsed, mean, se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10**6)
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--r-sizes", default="10000,100000", help="'' to skip R")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("\n".join(header()))
    print(
        f"problem : n={args.n} rows, 6 variables {LEVELS} levels, 50 strata x 20 PSUs, "
        f"{args.replicates} Rao-Wu bootstrap replicates, tol 1e-10; best of {args.repeats}"
    )
    frame, targets = make_problem(args.n, args.seed)
    main_run = ours(frame, targets, args.replicates, args.seed, args.repeats)
    print(
        f"\nours at n={args.n}: cells {main_run['cells']}, sweeps: full sample "
        f"{main_run['sweeps'][0]}, replicates {main_run['sweeps'][1]:.1f} on average (warm start "
        f"from the full sample's factors); every replicate converged: {main_run['converged']}"
    )
    print("  runs (a) one rake      :", ", ".join(f"{t:.3f}" for t in main_run["one_runs"]))
    print("  runs (b) + replicates  :", ", ".join(f"{t:.3f}" for t in main_run["rep_runs"]))
    pairs = [b / a for a, b in zip(main_run["one_runs"], main_run["rep_runs"], strict=True)]
    print("  (b) / (a) per pair     :", ", ".join(f"{r:.2f}" for r in pairs))
    table = [
        ("(a) rake, linearisation SE", args.n, main_run["one"], 1.0),
        (
            f"(b) rake + {args.replicates} bootstrap replicates re-raked",
            args.n,
            main_run["rep"],
            main_run["rep"] / main_run["one"],
        ),
        ("(c) replicate_weights DataFrame (lazy)", args.n, main_run["materialise"], None),
    ]
    r_sizes = [int(s) for s in args.r_sizes.split(",") if s]
    r_rows, extrapolate = [], []
    if r_sizes and shutil.which("Rscript") is None:
        print("Rscript not found: R survey skipped")
        r_sizes = []
    for n in r_sizes:
        small, small_targets = make_problem(n, args.seed)
        run = ours(small, small_targets, args.replicates, args.seed, args.repeats)
        elapsed, r_mean, r_se = run_r(small, small_targets, run["res"])
        extrapolate.append(elapsed * args.n / n)
        r_rows.append((n, run["rep"], elapsed, r_mean, r_se, run["mean"]))
    print()
    print("| method | rows | time (s) | ratio |")
    print("|---|---:|---:|---:|")
    for name, n, t, ratio in table:
        print(f"| {name} | {n} | {t:.3f} | {'' if ratio is None else f'{ratio:.2f}x (a)'} |")
    for n, ours_t, r_t, _, _, _ in r_rows:
        print(f"| (b) ours | {n} | {ours_t:.3f} | |")
        print(
            f"| (d) R survey calibrate, same replicates | {n} | {r_t:.2f} | "
            f"{r_t / ours_t:.0f}x ours |"
        )
    if extrapolate:
        low, high = min(extrapolate), max(extrapolate)
        print(
            f"| (d) R extrapolated linearly from {', '.join(map(str, r_sizes))} rows | "
            f"{args.n} | {low:.0f}-{high:.0f} | {low / main_run['rep']:.0f}-"
            f"{high / main_run['rep']:.0f}x ours |"
        )
        print()
        for n, _, _, r_mean, r_se, est in r_rows:
            print(
                f"check n={n}: mean of y, R {r_mean:.8g} (SE {r_se:.6g}), ours "
                f"{est.estimate:.8g} (SE {est.se:.6g}); relative SE difference "
                f"{abs(est.se / r_se - 1):.1e}"
            )
    lin = main_run["lin_se"]
    print(
        f"\nSE of the mean of y at n={args.n}: bootstrap {main_run['mean'].se:.5g}, "
        f"linearisation {lin:.5g} (ratio {main_run['mean'].se / lin:.3f}; Monte Carlo SD of the "
        f"ratio about {1 / np.sqrt(2 * (args.replicates - 1)):.3f})"
    )


if __name__ == "__main__":
    main()
