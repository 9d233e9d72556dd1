"""MetaCLIP curation as balancing on ImageNet-Captions (``theory.md`` §8), with the kernel on a
sparse caption × keyword table.

Matches the 13,635 shipped validation captions (250 classes) against the ImageNet class names,
balances the reference measure Q with :func:`raking.research.curation.curate` (one Y-step to the
capped target by default) and writes, into ``--out`` (default ``figures/``; ``figures/quick/``,
which git ignores, with ``--quick``):

- ``curation.csv``: one row per keyword: count, observed share Q_Y, target share P_Y and
  balanced share Q^(k)_Y, and the two curation rules' expected keyword shares (matched pairs
  per keyword in the curated sample): the notebook's resample from Q^(k)_X and MetaCLIP's rule
  (keep probability min(1, t / count) per matched pair, each caption kept at most once);
- ``curation_rules.csv``: the two rules compared over ``--repeats`` seeds
  (:func:`raking.research.curation.compare_rules`): captions drawn, distinct captions kept and
  the keyword entropy of the curated sample (mean, 2.5% and 97.5% quantiles), and the total
  variation between the rules' caption distributions;
- ``curation.png`` / ``.pdf``: the keyword marginal sorted by count before and after balancing,
  with the target (log scale), and the caption sampling distribution before and after;

and prints the statistics table.

    python simulations/curation.py                   # t = 5, one Y-step, seed 123, 200 repeats
    python simulations/curation.py --t 20 --steps 3  # a looser cap, Y-X-Y
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

from raking.plotting import check_output_folder, output_folder, save_figure
from raking.research.curation import (
    DEFAULT_SEED,
    DEFAULT_T,
    CurationResult,
    class_keywords,
    compare_rules,
    curate,
    load_captions,
    load_synsets,
    match_matrix,
    metaclip_keep_probability,
)

QUICK_CAPTIONS = 2000
_OBSERVED = "dodgerblue"
_BALANCED = "orangered"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulations/curation.py",
        description="MetaCLIP curation as balancing on ImageNet-Captions (theory.md section 8).",
    )
    parser.add_argument(
        "--t", type=float, default=DEFAULT_T, help=f"cap on keyword counts (default {DEFAULT_T})"
    )
    parser.add_argument(
        "--steps", type=int, default=1, help="balancing steps, Y-step first (default 1)"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"resampling seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default figures/, or figures/quick/ with --quick, which git ignores)",
    )
    parser.add_argument(
        "--classes",
        choices=["all", "present"],
        default="all",
        help="keywords from all 1,000 class names (default) or the 250 classes in the captions",
    )
    parser.add_argument(
        "--head-nouns",
        action="store_true",
        help="also use the last word of multi-word class names as keywords [INF]",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=200,
        help="curations per rule in the rule comparison (default 200; --quick: 20)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"the first {QUICK_CAPTIONS} captions only"
    )
    return parser


COLUMNS = [
    "keyword",
    "count",
    "observed_share",
    "target_share",
    "balanced_share",
    "notebook_sample_share",
    "metaclip_keep_probability",
    "metaclip_sample_share",
]


def _expected_pair_shares(match: Any, caption_weights: np.ndarray) -> np.ndarray:
    """Expected matched pairs per keyword of a sample with caption weights, normalised."""
    pairs = np.asarray(match.T @ caption_weights).ravel()
    return pairs / pairs.sum()


def write_csv(result: CurationResult, keywords: list[str], match: Any, path: Path) -> None:
    """One row per keyword, by decreasing count (:data:`COLUMNS`).

    ``notebook_sample_share`` and ``metaclip_sample_share`` are the expected keyword shares of
    the curated sample (matched pairs per keyword over all its pairs, as
    :func:`raking.research.curation.sample_keyword_shares` counts them), weighting each caption
    by :math:`Q^{(k)}_X` and by MetaCLIP's keep probability; ``metaclip_keep_probability`` is
    the per-match coin :math:`\\min(1, t / c_y)`.
    """
    order = np.argsort(-result.keyword_counts, kind="stable")
    binary = (match != 0).astype(np.float64)
    notebook = _expected_pair_shares(binary, result.caption_probability)
    metaclip = _expected_pair_shares(binary, metaclip_keep_probability(match, result.t))
    coin = result.t / np.maximum(result.keyword_counts, result.t)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for j in order:
            writer.writerow(
                [
                    keywords[j],
                    int(result.keyword_counts[j]),
                    repr(float(result.keyword_observed[j])),
                    repr(float(result.keyword_target[j])),
                    repr(float(result.keyword_balanced[j])),
                    repr(float(notebook[j])),
                    repr(float(coin[j])),
                    repr(float(metaclip[j])),
                ]
            )


def write_rules_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The rule comparison of :func:`raking.research.curation.compare_rules`, one row per rule."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})


def plot(result: CurationResult, folder: Path) -> list[Path]:
    """Keyword marginals (left) and caption sampling distributions (right), log scale."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.5, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    matched_keywords = result.keyword_counts > 0
    rank = np.arange(1, result.n_matched_keywords + 1)

    def sorted_desc(values: np.ndarray) -> np.ndarray:
        return np.sort(values[matched_keywords])[::-1]

    left.plot(
        rank, sorted_desc(result.keyword_observed), color=_OBSERVED, lw=2, label="observed $Q_Y$"
    )
    left.plot(
        rank,
        sorted_desc(result.keyword_balanced),
        color=_BALANCED,
        lw=4,
        alpha=0.55,
        label=f"balanced $Q^{{({result.steps})}}_Y$",
    )
    left.plot(
        rank,
        sorted_desc(result.keyword_target),
        color="black",
        lw=1.2,
        ls="--",
        label=rf"target $P_Y \propto \min(\mathrm{{count}}, t)$, $t = {result.t:g}$",
    )
    cap = float(result.keyword_target.max())
    at_cap = int(np.count_nonzero(result.keyword_counts >= result.t))
    left.annotate(
        f"cap: the {at_cap} keywords with count $\\geq$ t\nall get the same target share",
        xy=(0.55 * at_cap, cap),
        xytext=(0.62 * result.n_matched_keywords, cap * 2.2),
        ha="left",
        va="bottom",
        fontsize=8,
        color="dimgrey",
        arrowprops={"arrowstyle": "->", "color": "dimgrey", "lw": 0.8},
    )
    left.set_yscale("log")
    left.set_xlabel(
        f"rank of matched keyword, each curve sorted ({result.n_matched_keywords} of "
        f"{result.n_keywords} class names matched)"
    )
    left.set_ylabel("keyword marginal")
    left.set_title("Keyword marginal before and after balancing")
    left.legend(fontsize=8, loc="lower left")

    matched = result.caption_reference > 0
    before = np.sort(result.caption_reference[matched])[::-1]
    after = np.sort(result.caption_probability[matched])[::-1]
    crank = np.arange(1, before.shape[0] + 1)
    right.plot(crank, before, color=_OBSERVED, lw=2, label="before: $Q_X$ (uniform)")
    right.plot(crank, after, color=_BALANCED, lw=2, label=f"after: $Q^{{({result.steps})}}_X$")
    right.set_yscale("log")
    right.set_xlabel(f"matched captions, sorted by probability ({result.n_matched_captions:,})")
    right.set_ylabel("sampling probability")
    right.set_title("Caption sampling distribution")
    right.legend(fontsize=8, loc="lower left")
    right.text(
        0.98,
        0.97,
        f"{result.n_unmatched_captions:,} captions without a match\n"
        f"({100 * result.unmatched_share:.1f}%) have probability 0",
        transform=right.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        color="dimgrey",
    )
    fig.suptitle(
        "MetaCLIP curation as one balancing step on ImageNet-Captions "
        f"({result.n_captions:,} validation captions, 250 classes)",
        fontsize=11,
    )
    return save_figure(fig, folder, "curation")


def main(argv: list[str] | None = None) -> int:
    """Run the curation example with ``argv`` (default: ``sys.argv[1:]``); 0 on success."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = output_folder(args.out, quick=args.quick)
    try:
        check_output_folder(out)
    except ValueError as exc:
        parser.error(str(exc))
    data = load_captions()
    captions = data.captions[:QUICK_CAPTIONS] if args.quick else data.captions
    wnids = set(data.wnids) if args.classes == "present" else None
    keywords = class_keywords(load_synsets(), wnids=wnids, head_nouns=args.head_nouns)
    match = match_matrix(captions, keywords)
    repeats = 20 if args.quick and args.repeats == 200 else args.repeats
    try:
        result = curate(match, t=args.t, steps=args.steps, seed=args.seed)
        rules = compare_rules(match, t=args.t, seed=args.seed, repeats=repeats)
    except (TypeError, ValueError) as exc:
        print(f"curation: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write_csv(result, keywords, match, out / "curation.csv")
    write_rules_csv(rules, out / "curation_rules.csv")
    paths = plot(result, out)
    print(result.summary())
    print(
        f"\nThe two rules (t = {args.t:g}, {repeats} curations each; mean [2.5%, 97.5%]; "
        "TV = total variation between caption distributions):"
    )
    print(f"{'rule':28s}{'drawn':>22s}{'distinct':>22s}{'keyword entropy':>24s}{'TV nb/mc':>14s}")
    for row in rules:
        cells = [
            f"{row[k]:.0f} [{row[k + '_lo']:.0f}, {row[k + '_hi']:.0f}]"
            for k in ("draws", "distinct")
        ]
        entropy = f"{row['entropy']:.3f} [{row['entropy_lo']:.3f}, {row['entropy_hi']:.3f}]"
        tv = f"{row['tv_notebook']:.3f}/{row['tv_metaclip']:.3f}"
        print(f"{row['rule']:28s}{cells[0]:>22s}{cells[1]:>22s}{entropy:>24s}{tv:>14s}")
    print(f"wrote {out / 'curation.csv'}, {out / 'curation_rules.csv'}, {paths[0]}, {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
