"""Zero-shot CLIP experiment (theory.md §7): balanced losses k = 0, 1, 2 on frozen embeddings.

Trains two-tower MLP heads (in → 256 → 256 → 128, L2-normalised, logits = 100 × cosine) with
``raking.torch.balanced_clip_loss(logits, steps=k)`` for every k in ``--steps`` and batch size in
``--batch-sizes``, with AdamW (documented assumption, theory.md §7 [CODE-sib]: lr 1e-2, weight
decay 0.01, 5000 iterations, evaluation every 500), and reports the zero-shot mean per-class
recall at every checkpoint.

Data: ``--embeddings DIR`` (``image.npy``, ``text.npy``, ``labels.npy``, ``prompts.npy``, optional
``eval_image.npy`` / ``eval_labels.npy``; see ``raking.research.clip_experiment.load_embeddings``)
or, by default, the synthetic bimodal generator
(``raking.research.clip_experiment.SyntheticWorld``): 100 classes with frequencies p_c ∝ c^-a (a =
``--alpha``, default 1), trained on the long-tailed pairs and evaluated on two held-out sets of the
same world: "balanced" (uniform classes) and "long-tailed (a=...)" (the training law).

Writes ``OUT/NAME.csv`` (one row per dataset × batch × k × seed × checkpoint), ``OUT/NAME.png``
and ``.pdf`` (``OUT`` defaults to ``figures/``, and to the git-ignored ``figures/quick/`` with
``--quick``) (rows = datasets, columns = batch size, lines = k; solid = running max over
checkpoints, dotted = per checkpoint) and prints the summary table (best recall over checkpoints)
and the wall time.

    python gpu/clip_experiment.py --quick                  # CPU, about 1 minute (below)
    python gpu/clip_experiment.py --seeds 0 1 2            # full grid; CUDA when present
                                                           # (CPU: 3.5-13 min per seed)

Run time of ``--quick`` (6 trainings of 600 iterations on the CPU), with
``/usr/bin/time .venv/bin/python gpu/clip_experiment.py --quick`` on 2 CPU cores: about 45 s on
a quiet machine (issue 11's measurement); 57 s here with ``OMP_NUM_THREADS=1`` while other jobs
kept one core busy, but 3 to 6 minutes with torch's default two threads, which stall when the
cores are shared: on a shared machine, set ``OMP_NUM_THREADS=1``.
    python gpu/clip_experiment.py --embeddings my_feats/ --steps 0 1 2 --batch-sizes 128 512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from raking.plotting import check_output_folder, output_folder
from raking.research.clip_experiment import (
    SyntheticWorld,
    load_embeddings,
    plot_clip_experiment,
    resolve_device,
    summary_table,
    train_heads,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clip_experiment",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        help="folder of .npy embedding files (default: synthetic generator)",
    )
    p.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2], help="balancing steps k")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--iters", type=int, default=None, help="iterations (default 5000; quick 600)")
    p.add_argument("--eval-every", type=int, default=None, help="default 500; quick 100")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="training seeds (head init and batch order)",
    )
    p.add_argument(
        "--n", type=int, default=None, help="synthetic training pairs (default 50000; quick 10000)"
    )
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="synthetic pairs per evaluation set (default 10000; quick 4000)",
    )
    p.add_argument("--classes", type=int, default=100, help="synthetic classes")
    p.add_argument("--alpha", type=float, default=1.0, help="synthetic power law p_c ∝ c^-alpha")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic world/sample")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: figures/, or figures/quick/ with --quick, which git "
        "ignores, so that a quick run leaves the committed figures alone)",
    )
    p.add_argument("--name", default="clip_experiment", help="output file stem")
    p.add_argument(
        "--quick",
        action="store_true",
        help="600 iterations, eval every 100, N=10000, on CPU: about 1 minute on 2 cores (set "
        "OMP_NUM_THREADS=1 if the cores are shared); writes into figures/quick/",
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
    quick = args.quick
    iters = args.iters or (600 if quick else 5000)
    eval_every = args.eval_every or (100 if quick else 500)
    n = args.n or (10_000 if quick else 50_000)
    n_eval = args.n_eval or (4_000 if quick else 10_000)
    device = resolve_device("cpu" if quick and args.device == "auto" else args.device)
    start = time.perf_counter()
    if args.embeddings is not None:
        data = load_embeddings(args.embeddings)
        source = f"embeddings from {args.embeddings}"
    else:
        world = SyntheticWorld(args.classes, seed=args.data_seed)
        data = world.dataset(n, alpha=args.alpha, n_eval=n_eval, seed=args.data_seed)
        source = (
            f"synthetic: {args.classes} classes, p_c ∝ c^-{args.alpha:g}, N={n}, "
            f"eval {n_eval} per set, data seed {args.data_seed}"
        )
    print(
        f"{source}; train pairs {len(data.labels)}, dims image {data.image.shape[1]}, "
        f"text {data.text.shape[1]}; device {device}; {iters} iterations, eval every "
        f"{eval_every}; AdamW lr {args.lr:g} wd {args.weight_decay:g}"
    )
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        for m in args.batch_sizes:
            for k in args.steps:
                t0 = time.perf_counter()
                run_rows, _ = train_heads(
                    data,
                    steps=k,
                    batch_size=m,
                    iters=iters,
                    eval_every=eval_every,
                    lr=args.lr,
                    weight_decay=args.weight_decay,
                    seed=seed,
                    device=device,
                )
                rows += run_rows
                last = {r["dataset"]: r["recall_max"] for r in run_rows}
                print(
                    f"  seed {seed} m={m} k={k}: {time.perf_counter() - t0:.1f}s, best recall "
                    + ", ".join(f"{d} {v:.3f}" for d, v in last.items()),
                    flush=True,
                )
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"{args.name}.csv"
    frame.to_csv(csv, index=False)
    paths = plot_clip_experiment(frame, args.out, args.name)
    table = summary_table(frame)
    with pd.option_context("display.width", 140, "display.float_format", "{:.3f}".format):
        print("\nbest mean per-class recall over checkpoints (mean over seeds):")
        print(table.to_string())
    print(f"\nwrote {csv}, {paths[0]}, {paths[1]}")
    print(f"wall time {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
