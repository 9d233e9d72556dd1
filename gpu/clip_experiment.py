"""Zero-shot CLIP experiment (theory.md §7): balanced losses k = 0, 1, 2 on frozen embeddings.

Trains two-tower MLP heads (in → 256 → 256 → 128, L2-normalised, logits = 100 × cosine) with
``raking.torch.balanced_clip_loss(logits, steps=k)`` for every k in ``--steps`` and batch size in
``--batch-sizes``, with AdamW (documented assumption, theory.md §7 [CODE-sib]: lr 1e-2, weight
decay 0.01, 5000 iterations, evaluation every 500), and reports the zero-shot mean per-class
recall at every checkpoint, with the recall of the tail classes (the rarest third in training)
and of the head classes (the most frequent third) and the accuracy weighted by the training class
frequencies (``raking.research.clip_experiment.recall_metrics``): mean per-class recall weighs
every class alike, so it cannot tell a long-tailed evaluation set from a balanced one.

Data: ``--embeddings DIR`` (``image.npy``, ``text.npy``, ``labels.npy``, ``prompts.npy``, optional
``eval_image.npy`` / ``eval_labels.npy``; see ``raking.research.clip_experiment.load_embeddings``)
or, by default, the synthetic bimodal generator
(``raking.research.clip_experiment.SyntheticWorld``): 100 classes with frequencies p_c ∝ c^-a (a =
``--alpha``, default 1: the training captions are long-tailed, class 1 a hundred times as frequent
as class 100), trained on the long-tailed pairs and evaluated on two held-out sets of the same
world: "balanced" (uniform classes) and "long-tailed (a=...)" (the training law). Caption noise
(``--caption-noise``, default 1.5; several values train one grid each) is the standard deviation
of the noise added to the latent before the text encoder.

Writes ``OUT/NAME.csv`` (one row per caption noise × dataset × batch × k × seed × checkpoint),
``OUT/NAME_final.csv`` (every metric at the last checkpoint, mean and sd over seeds),
``OUT/NAME_gap.csv`` (the k = 2 minus k = 0 gap of every metric at every checkpoint),
``OUT/NAME.png`` and ``.pdf`` (``OUT`` defaults to ``figures/``, and to the git-ignored
``figures/quick/`` with ``--quick``; rows = datasets, columns = batch size, lines = k; solid =
running max over checkpoints, dotted = per checkpoint) and prints the summary tables and the
wall time.

    python gpu/clip_experiment.py --quick                  # CPU, about 1 minute (below)
    python gpu/clip_experiment.py --seeds 0 1 2            # full grid; CUDA when present
                                                           # (CPU: 3.5-13 min per seed)
    python gpu/clip_experiment.py --embeddings my_feats/ --steps 0 1 2 --batch-sizes 128 512

Run time of ``--quick`` (6 trainings of 600 iterations on the CPU), with
``/usr/bin/time .venv/bin/python gpu/clip_experiment.py --quick`` on 2 CPU cores: about 45 s on
a quiet machine (issue 11's measurement); 57 s here with ``OMP_NUM_THREADS=1`` while other jobs
kept one core busy, but 3 to 6 minutes with torch's default two threads, which stall when the
cores are shared: on a shared machine, set ``OMP_NUM_THREADS=1``.

``--authors-results DIR`` (the ``results/`` folder of a clone of github.com/ronakdm/balancing)
trains nothing: it writes the authors' released zero-shot numbers to ``OUT/NAME.csv`` (default
name ``clip_authors``) and their k = 2 minus k = 0 gaps at batch 128 and 512 to
``OUT/NAME_gap.csv``, and prints the gaps.
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
    METRICS,
    SyntheticWorld,
    authors_gap,
    authors_results,
    final_table,
    gap_table,
    load_embeddings,
    plot_clip_experiment,
    power_law_frequencies,
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
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="power-law exponent of the synthetic training classes, p_c ∝ c^-alpha (default 1)",
    )
    p.add_argument(
        "--caption-noise",
        type=float,
        nargs="+",
        default=[1.5],
        help="synthetic caption noise (sd of the latent noise before the text encoder); "
        "several values run the grid once each (default 1.5)",
    )
    p.add_argument(
        "--authors-results",
        type=Path,
        default=None,
        help="results/ folder of github.com/ronakdm/balancing: tabulate the authors' numbers "
        "instead of training",
    )
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic world/sample")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: figures/, or figures/quick/ with --quick, which git "
        "ignores, so that a quick run leaves the committed figures alone)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="output file stem (default clip_experiment; clip_authors with --authors-results)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="600 iterations, eval every 100, N=10000, on CPU: about 1 minute on 2 cores (set "
        "OMP_NUM_THREADS=1 if the cores are shared); writes into figures/quick/",
    )
    return p


def _authors(args: argparse.Namespace) -> int:
    frame = authors_results(args.authors_results)
    gaps = authors_gap(frame)
    args.out.mkdir(parents=True, exist_ok=True)
    csv, gap_csv = args.out / f"{args.name}.csv", args.out / f"{args.name}_gap.csv"
    frame.to_csv(csv, index=False)
    gaps.to_csv(gap_csv, index=False)
    with pd.option_context("display.width", 140, "display.float_format", "{:.4f}".format):
        print("authors' k=2 - k=0 gap of the best mean per-class recall over checkpoints:")
        print(gaps.to_string(index=False))
    print(f"gap larger at batch 128 than 512 in {int(gaps.larger_at_128.sum())} of {len(gaps)}")
    print(f"wrote {csv}, {gap_csv}")
    return 0


def _data(args: argparse.Namespace, noise: float, n: int, n_eval: int) -> tuple[object, str]:
    if args.embeddings is not None:
        return load_embeddings(args.embeddings), f"embeddings from {args.embeddings}"
    world = SyntheticWorld(args.classes, seed=args.data_seed, sigma_text=noise)
    data = world.dataset(n, alpha=args.alpha, n_eval=n_eval, seed=args.data_seed)
    source = (
        f"synthetic: {args.classes} classes, p_c ∝ c^-{args.alpha:g}, caption noise {noise:g}, "
        f"N={n}, eval {n_eval} per set, data seed {args.data_seed}"
    )
    return data, source


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.out = output_folder(args.out, quick=args.quick)
    if args.name is None:
        args.name = "clip_authors" if args.authors_results is not None else "clip_experiment"
    try:
        check_output_folder(args.out)  # now, not after the training
        if args.authors_results is not None:
            return _authors(args)
        power_law_frequencies(args.classes, args.alpha)  # a bad --alpha fails now
    except ValueError as exc:
        parser.error(str(exc))
    quick = args.quick
    iters = args.iters or (600 if quick else 5000)
    eval_every = args.eval_every or (100 if quick else 500)
    n = args.n or (10_000 if quick else 50_000)
    n_eval = args.n_eval or (4_000 if quick else 10_000)
    device = resolve_device("cpu" if quick and args.device == "auto" else args.device)
    start = time.perf_counter()
    noises = [None] if args.embeddings is not None else args.caption_noise
    rows = []
    for noise in noises:
        data, source = _data(args, noise, n, n_eval)
        print(
            f"{source}; train pairs {len(data.labels)}, dims image {data.image.shape[1]}, "
            f"text {data.text.shape[1]}; device {device}; {iters} iterations, eval every "
            f"{eval_every}; AdamW lr {args.lr:g} wd {args.weight_decay:g}"
        )
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
                    if noise is not None:
                        for r in run_rows:
                            r["caption_noise"] = noise
                    rows += run_rows
                    last = {r["dataset"]: r for r in run_rows if r["iteration"] == iters}
                    print(
                        f"  seed {seed} m={m} k={k}: {time.perf_counter() - t0:.1f}s, final "
                        + "; ".join(
                            f"{d} recall {r['recall']:.3f} tail {r['tail_recall']:.3f}"
                            for d, r in last.items()
                        ),
                        flush=True,
                    )
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"{args.name}.csv"
    frame.to_csv(csv, index=False)
    final = final_table(frame)
    final.to_csv(args.out / f"{args.name}_final.csv", index=False)
    written = [csv, args.out / f"{args.name}_final.csv"]
    paths = plot_clip_experiment(frame, args.out, args.name)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        if len(noises) == 1:
            print("\nbest mean per-class recall over checkpoints (mean over seeds):")
            print(summary_table(frame).to_string())
        print("\nat the last checkpoint (mean over seeds):")
        keys = [c for c in ("caption_noise", "dataset", "batch_size") if c in frame]
        print(final[[*keys, "steps", *METRICS]].to_string(index=False))
        if {0, 2} <= set(frame["steps"]):
            gaps = gap_table(frame)
            gaps.to_csv(args.out / f"{args.name}_gap.csv", index=False)
            written.append(args.out / f"{args.name}_gap.csv")
            print("\nk=2 - k=0 gap per checkpoint (mean over seeds):")
            print(gaps[[*keys, "iteration", *METRICS]].to_string(index=False))
    print(f"\nwrote {', '.join(map(str, [*written, *paths]))}")
    print(f"wall time {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
