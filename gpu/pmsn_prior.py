"""PMSN prior toy (theory.md §6; Assran et al. 2023): uniform vs power-law cluster prior.

Synthetic data with a uniform-class feature A (10 classes) and a hidden long-tailed feature B
(10 classes, p_c ∝ c^-0.5, its signal scaled by a *salience* s relative to A's) are seen
through a fixed random nonlinear map; an MLP encoder with K = 10 prototypes is trained
self-supervised on two noisy / masked views, SwAV-style (``raking.torch.sinkhorn`` codes, eps
0.05, 3 iterations, swapped prediction at temperature 0.1) and MSN-style (sharpened cross-view
target + ``raking.torch.prior_matching_loss`` with me-max weight 1), each under the uniform
prior and the matching power-law prior ``raking.torch.power_law_prior(10, 0.5)``, plus MSN
under the power-law prior with a larger me-max weight (``--remedy-weights``, default 3: the
remedy for MSN's partial collapse under that prior). The design is documented in
``raking/research/pmsn.py``.

Reports the 10-NN purity of A and B of held-out samples in the learned representation (and
their chance levels), the NMI of the prototype assignment with A and with B, the prototypes
used, and the same metrics after half the steps (convergence), per salience × seed × method ×
prior; reference rows: the raw input and the untrained encoder. The summary printed: mean and
95% Student-t interval over seeds, and the per-seed power-law minus uniform differences.

Writes ``OUT/pmsn_prior.csv``, ``OUT/pmsn_prior.png`` / ``.pdf`` (``OUT`` defaults to
``figures/``, and to the git-ignored ``figures/quick/`` with ``--quick``) and prints the summary.

    python gpu/pmsn_prior.py --quick   # saliences 1, 0.3; 2 seeds x 200 steps
    python gpu/pmsn_prior.py           # saliences 1, 0.5, 0.3, 0.15; 5 seeds x 1000 steps

Run times (``/usr/bin/time``, 2 CPU cores shared with other jobs, one torch thread) are in
the README's PMSN section.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from raking.plotting import check_output_folder, output_folder
from raking.research.clip_experiment import resolve_device
from raking.research.pmsn import paired_differences, plot_pmsn, run_grid, summary_table


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pmsn_prior",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="saliences 1 and 0.3, 2 seeds, 200 steps, 4000 training samples; writes into "
        "figures/quick/",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="number of seeds 0..n-1 (default 5; --quick: 2)"
    )
    p.add_argument(
        "--saliences",
        type=float,
        nargs="+",
        default=None,
        help="scales of B's class centres relative to A's (default 1 0.5 0.3 0.15; --quick: 1 0.3)",
    )
    p.add_argument(
        "--remedy-weights",
        type=float,
        nargs="*",
        default=[3.0],
        help="extra MSN power-law runs with these me-max weights (default 3; none: no remedy)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="training steps (default 1000; --quick: 200)"
    )
    p.add_argument("--n", type=int, default=None, help="training samples (default 10000)")
    p.add_argument("--n-eval", type=int, default=2000, help="held-out samples for k-NN")
    p.add_argument("--methods", nargs="+", default=["swav", "msn"], choices=["swav", "msn"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: figures/, or figures/quick/ with --quick, which git "
        "ignores, so that a quick run leaves the committed figures alone)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.out = output_folder(args.out, quick=args.quick)
    try:
        check_output_folder(args.out)  # now, not after the training
    except ValueError as exc:
        parser.error(str(exc))
    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(1)  # tiny MLPs: extra threads only contend (2-core machine)
    steps = args.steps or (200 if args.quick else 1000)
    n_seeds = args.seeds or (2 if args.quick else 5)
    saliences = args.saliences or ([1.0, 0.3] if args.quick else [1.0, 0.5, 0.3, 0.15])
    n_train = args.n or (4000 if args.quick else 10_000)
    start = time.perf_counter()
    rows = run_grid(
        seeds=range(n_seeds),
        saliences=saliences,
        methods=args.methods,
        remedy_weights=args.remedy_weights,
        steps=steps,
        n_train=n_train,
        n_eval=args.n_eval,
        device=device,
        log=print,
    )
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "pmsn_prior.csv"
    frame.to_csv(csv, index=False)
    paths = plot_pmsn(frame, args.out)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 3):
        print(summary_table(frame).to_string(index=False))
        print("power-law minus uniform, purity of B, per seed:")
        print(paired_differences(frame).unstack("seed"))
    print(
        f"device {device}, {steps} steps, n_train {n_train}, seeds {n_seeds}, saliences {saliences}"
    )
    print(f"wrote {csv}, {paths[0]}, {paths[1]} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
