"""The ``raking rake`` subcommand: rake the rows of a CSV file to target margins.

::

    raking rake data.csv --target COLUMN=targets.csv [--target ...] [--weights COL]
                [--steps K] [--tol TOL] [--max-iter N] [--bounds LO HI] [--total T]
                [--na error|drop|level] [--unknown error|zero] --out weights.csv

Each target file is a CSV with one row per level: a ``level`` column and a ``target`` column
(counts or shares), or, without those headers, the level in the first column and the target in
the second. The output CSV has the data's row index and a ``weight`` column; the summary of
:meth:`raking.survey_results.RakeResult.summary` is printed on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_rake_parser", "run_rake"]


def add_rake_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``rake`` subcommand to the subparsers ``sub`` of the ``raking`` command."""
    rake = sub.add_parser(
        "rake",
        help="rake the rows of a CSV file to target margins and write the weights",
        description="Rake the rows of DATA (a CSV file) so that their weighted level counts "
        "match the targets, write the weights to OUT and print the summary.",
    )
    rake.add_argument("data", type=Path, metavar="DATA", help="CSV file, one row per unit")
    rake.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="COLUMN=FILE",
        help="target margin of COLUMN: a CSV with columns level,target (repeat per variable)",
    )
    rake.add_argument("--weights", metavar="COL", help="column of design weights (default: 1)")
    rake.add_argument("--steps", type=int, help="exactly K single-variable adjustments")
    rake.add_argument("--tol", type=float, default=1e-10, help="max margin error (shares)")
    rake.add_argument("--max-iter", type=int, default=1000, help="max sweeps over the variables")
    rake.add_argument(
        "--bounds", type=float, nargs=2, metavar=("LO", "HI"), help="bounds on w_i / d_i"
    )
    rake.add_argument("--total", type=float, help="population total of the weights")
    rake.add_argument("--na", choices=("error", "drop", "level"), default="error")
    rake.add_argument("--unknown", choices=("error", "zero"), default="error")
    rake.add_argument(
        "--out", type=Path, required=True, help="CSV file for the weights (index, weight)"
    )
    rake.set_defaults(parser=rake)
    return rake


def _read_target(spec: str, data: Any, parser: argparse.ArgumentParser) -> tuple[str, Any]:
    """``COLUMN=FILE`` as ``(column, Series of targets indexed by level)``."""
    import pandas as pd

    column, sep, file = spec.partition("=")
    if not sep or not column or not file:
        parser.error(f"--target must be COLUMN=FILE, got {spec!r}")
    frame = pd.read_csv(file)
    if {"level", "target"} <= set(frame.columns):
        levels, values = frame["level"], frame["target"]
    elif frame.shape[1] >= 2:
        levels, values = frame.iloc[:, 0], frame.iloc[:, 1]
    else:
        parser.error(f"{file} needs two columns, level and target; it has {frame.shape[1]}")
    if column in data.columns and levels.dtype != data[column].dtype:
        # CSV type inference can differ between the two files (ints vs floats with NaN, ...):
        # read the levels as the data column's type, or compare both as strings.
        try:
            levels = levels.astype(data[column].dtype)
        except (TypeError, ValueError):
            levels = levels.astype(str)
    return column, pd.Series(values.to_numpy(), index=levels.to_numpy(), name=column)


def run_rake(args: argparse.Namespace) -> int:
    """Run ``raking rake``; return the exit status (1 with a one-line message on bad input)."""
    import pandas as pd

    from raking.survey import rake

    try:
        data = pd.read_csv(args.data)
        targets = dict(_read_target(spec, data, args.parser) for spec in args.target)
        for column, series in targets.items():
            if column in data.columns and series.index.dtype != data[column].dtype:
                data[column] = data[column].astype(str)  # our own copy, read from DATA
        result = rake(
            data,
            targets,
            weights=args.weights,
            steps=args.steps,
            tol=args.tol,
            max_iter=args.max_iter,
            bounds=None if args.bounds is None else tuple(args.bounds),
            total=args.total,
            na=args.na,
            unknown=args.unknown,
        )
        result.weights.rename("weight").to_csv(args.out, index_label="row")
    except SystemExit as exc:  # parser.error on a malformed --target: a usage error
        return exc.code if isinstance(exc.code, int) else 2
    except (ValueError, OSError) as exc:
        print(f"raking rake: error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    print(f"\nwrote {args.out}")
    return 0 if result.converged or args.steps is not None else 1
