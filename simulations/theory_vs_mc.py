"""Theory vs Monte Carlo: n * MSE of the k-step balanced estimator against sigma_k^2.

For a joint P with known marginals and a fixed function h, draws ``reps`` samples of size n
(one multinomial count table per replicate), balances every replicate in one batched kernel call
for each k, and compares n * MSE(phi_n^(k)) with the asymptotic variance sigma_k^2 of
``raking.theory.asymptotic_variance`` (theory.md §2.2-2.3). The ratio should approach 1 as n grows.

Design (theory.md §5, [INF]): m = l = 6, uniform marginals, rank-one dependence
P = P_X P_Y (1 + s alpha beta) with s_2 = s exactly (asserted), h a seeded N(0, 1) table.

Writes ``figures/theory_vs_mc.csv`` and ``figures/theory_vs_mc.png``/``.pdf``; prints the table.

    python simulations/theory_vs_mc.py            # defaults: n in {100, 1000, 10000}, 10000 reps
    python simulations/theory_vs_mc.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

from raking.estimators import balanced_estimate
from raking.marginals import sample_counts
from raking.theory import asymptotic_variance, singular_values

FIGURES = Path(__file__).resolve().parent.parent / "figures"


def rank_one_joint(m: int, l: int, s: float) -> np.ndarray:
    """P(x, y) = P_X(x) P_Y(y) (1 + s alpha(x) beta(y)), uniform marginals, s_2 = s."""
    alpha = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    beta = np.where(np.arange(l) % 2 == 0, 1.0, -1.0)
    alpha -= alpha.mean()
    beta -= beta.mean()
    alpha /= np.sqrt(np.mean(alpha**2))
    beta /= np.sqrt(np.mean(beta**2))
    P = np.outer(np.full(m, 1 / m), np.full(l, 1 / l)) * (1 + s * np.outer(alpha, beta))
    if P.min() < 0:
        raise ValueError(f"s={s} is too large for a non-negative table; use s <= 1.")
    return P


def run(ns: list[int], ks: list[int], reps: int, s: float, seed: int) -> list[dict]:
    P = rank_one_joint(6, 6, s)
    s2 = singular_values(P)[1]
    assert abs(s2 - s) < 1e-12, (s2, s)
    h = np.random.default_rng(seed).standard_normal(P.shape)
    truth = float(np.sum(P * h))
    targets = [P.sum(axis=1), P.sum(axis=0)]
    seeds = np.random.SeedSequence(seed).spawn(len(ns))
    rows = []
    for n, child in zip(ns, seeds, strict=True):
        counts = sample_counts(P, n, reps, seed=child)
        for k in ks:
            est = balanced_estimate(counts, h, targets, k, missing="empirical")
            mse = float(np.mean((est.values - truth) ** 2))
            sigma2 = asymptotic_variance(P, h, k)
            rows.append(
                {
                    "n": n,
                    "k": k,
                    "reps": reps,
                    "n_mse": n * mse,
                    "mc_se": n * float(np.std((est.values - truth) ** 2)) / math.sqrt(reps),
                    "sigma2_k": sigma2,
                    "ratio": n * mse / sigma2,
                    "fallbacks": est.n_fallback,
                }
            )
    return rows


def write_outputs(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "theory_vs_mc.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ks = sorted({r["k"] for r in rows})
    theory = [next(r["sigma2_k"] for r in rows if r["k"] == k) for k in ks]
    ax.plot(ks, theory, "k--", lw=2, label=r"theory $\sigma_k^2$")
    for n in sorted({r["n"] for r in rows}):
        sub = [r for r in rows if r["n"] == n]
        ax.errorbar(
            [r["k"] for r in sub],
            [r["n_mse"] for r in sub],
            yerr=[2 * r["mc_se"] for r in sub],
            marker="o",
            capsize=3,
            label=f"Monte Carlo, n = {n}",
        )
    ax.set_xlabel("balancing steps k (odd = X-step)")
    ax.set_ylabel(r"$n \cdot$ MSE of $P_n^{(k)}(h)$")
    ax.set_title(r"Theory vs Monte Carlo ($\pm 2$ MC s.e.)")
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"theory_vs_mc.{ext}", dpi=150)
    plt.close(fig)


def print_table(rows: list[dict]) -> None:
    print(f"{'n':>6} {'k':>3} {'n*MSE':>9} {'sigma_k^2':>10} {'ratio':>7} {'fallbacks':>9}")
    for r in rows:
        print(
            f"{r['n']:>6} {r['k']:>3} {r['n_mse']:>9.4f} {r['sigma2_k']:>10.4f} "
            f"{r['ratio']:>7.3f} {r['fallbacks']:>9}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10000, help="replicates per (n, k)")
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--k", type=int, default=8, help="largest k (k = 0..K)")
    parser.add_argument("--s", type=float, default=0.8, help="dependence level s_2")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=FIGURES)
    parser.add_argument("--quick", action="store_true", help="500 reps, n in {100, 1000}")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.n = 500, [100, 1000]
    start = time.perf_counter()
    rows = run(args.n, list(range(args.k + 1)), args.reps, args.s, args.seed)
    write_outputs(rows, args.out)
    print_table(rows)
    print(f"\n{len(rows)} rows in {time.perf_counter() - start:.1f} s -> {args.out}/theory_vs_mc.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
