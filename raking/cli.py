"""The ``raking`` command: run the Monte Carlo experiments and regenerate their figures.

::

    raking simulate NAME [--reps R] [--n N [N ...]] [--backend numpy|numba|cupy] [--seed S]
                         [--out DIR] [--quick] [--scheduler serial|dask] [--address URL]
                         [--workers W]
    raking figures [same options]          # every experiment, with its defaults
    raking rake DATA.csv --target COLUMN=FILE ... --out WEIGHTS.csv   # see raking.survey.cli
    raking --version

Each experiment writes ``DIR/NAME.csv`` and its figures (``NAME.png``, ``NAME.pdf``), shows a
progress bar on stderr and prints its summary table on stdout. ``DIR`` defaults to ``figures/``
for a full run and to ``figures/quick/`` (git-ignored) with ``--quick``, so a quick run never
overwrites the committed full-run figures; the output folder is checked for writability before
the run starts. Figures are byte-reproducible (:func:`raking.plotting.save_figure`).

Run times measured twice with ``/usr/bin/time .venv/bin/raking figures`` (and ``--quick``) on
2 cores shared with other jobs (load average 6.6-7.6 in the second run), after a first run has
compiled and cached the Numba kernels: the full run 99-118 s wall, 40-43 s CPU (user + system;
the ``dependence`` sweep 45-66 s of the wall time), and ``--quick`` 36-48 s wall, 20-23 s CPU.
The wall time follows the load; the CPU time is the steadier figure.

Exit status: 0 on success, 2 for a usage error (such as an unknown experiment or an unwritable
``--out``), 1 when a run fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from raking import __version__
from raking.plotting import check_output_folder, output_folder
from raking.simulation.montecarlo import SCHEDULERS, SweepResult, local_cluster, run_experiment
from raking.survey.cli import add_rake_parser, as_flags, nonnegative_int, positive_int, run_rake

if TYPE_CHECKING:
    from raking.simulation.experiments import Experiment, Options

__all__ = ["main"]

BACKENDS = ("numpy", "numba", "cupy")
DEFAULT_SEED = 2024
# Keyword arguments of the experiments and the sweep that a flag of the same name sets.
_KEYWORDS = ("reps", "n", "backend", "seed", "scheduler", "address", "workers", "out")
# Failures that are the user's to fix (bad option, missing extra, unwritable folder): one line.
# Anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, ImportError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``raking simulate NAME ...`` or ``raking figures ...``; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 for a usage error, 1 when an experiment fails.
    """
    from raking.simulation.experiments import EXPERIMENTS

    parser = build_parser(EXPERIMENTS)
    try:
        args = parser.parse_args(argv)
        if args.command != "rake":
            _check_args(args, args.parser)
            options = _options(args, args.parser)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "rake":
        return run_rake(args)
    names = [args.name] if args.command == "simulate" else list(EXPERIMENTS)
    try:
        return _run(names, options, args)
    except KeyboardInterrupt:
        print("raking: interrupted", file=sys.stderr)
        return 130


def build_parser(experiments: dict[str, Experiment]) -> argparse.ArgumentParser:
    """The argument parser; ``experiments`` fills the list of names in the help."""
    listing = "\n".join(f"  {name:<14} {e.description}" for name, e in experiments.items())
    parser = argparse.ArgumentParser(
        prog="raking",
        description="Monte Carlo experiments of the k-step balanced estimator, and their figures.",
        epilog=f"experiments:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"raking {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--reps", type=positive_int, help="replicates per grid point (default: the experiment's)"
    )
    common.add_argument(
        "--n",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="sample sizes (default: the experiment's)",
    )
    common.add_argument(
        "--backend",
        choices=BACKENDS,
        default="numba",
        help="array backend of the balancing kernel (default: numba)",
    )
    common.add_argument(
        "--seed",
        type=nonnegative_int,
        default=DEFAULT_SEED,
        help=f"root seed; grid point i uses SeedSequence(seed).spawn(points)[i] (default: "
        f"{DEFAULT_SEED})",
    )
    common.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for NAME.csv, NAME.png and NAME.pdf (default: ./figures, or "
        "./figures/quick with --quick, so that a quick run leaves the committed figures alone)",
    )
    common.add_argument(
        "--quick",
        action="store_true",
        help="a small grid per experiment: `raking figures --quick` takes 20-23 s of CPU time "
        "(36-48 s wall on 2 shared cores; the full run 40-43 s CPU, 99-118 s wall)",
    )
    common.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="serial",
        help="run grid points in this process, or as dask.distributed tasks (default: serial)",
    )
    common.add_argument(
        "--address",
        metavar="URL",
        help="scheduler of an existing Dask cluster, e.g. tcp://127.0.0.1:8786 (--scheduler dask)",
    )
    common.add_argument(
        "--workers",
        type=positive_int,
        help="worker processes of the local Dask cluster (--scheduler dask; default: 2)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{simulate,figures,rake}")
    simulate = sub.add_parser(
        "simulate",
        parents=[common],
        help="run one experiment and write its CSV and figures",
        description="Run one experiment and write OUT/NAME.csv, NAME.png and NAME.pdf.",
        epilog=f"experiments:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument(
        "name",
        metavar="NAME",
        type=_experiment_name(experiments),
        help="experiment: " + ", ".join(experiments),
    )
    figures = sub.add_parser(
        "figures",
        parents=[common],
        help="run every experiment and regenerate all figures",
        description="Run every experiment (" + ", ".join(experiments) + ") and write its CSV "
        "and figures into OUT.",
    )
    for command in (simulate, figures):
        command.set_defaults(parser=command)  # usage errors show the subcommand's usage
    add_rake_parser(sub)
    return parser


def _experiment_name(experiments: dict[str, Experiment]) -> Callable[[str], str]:
    def name(text: str) -> str:
        if text not in experiments:
            raise argparse.ArgumentTypeError(
                f"unknown experiment {text!r}; choose one of: {', '.join(experiments)} "
                "(`raking simulate --help` describes them)"
            )
        return text

    return name


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors argparse cannot see; each exits with status 2 and says the fix."""
    if args.scheduler != "dask" and (args.address is not None or args.workers is not None):
        given = "--address" if args.address is not None else "--workers"
        parser.error(f"{given} configures Dask; add --scheduler dask, or leave {given} out.")
    if args.address is not None and "://" not in args.address:
        parser.error(
            f"--address {args.address} is not a Dask scheduler address; give it with its "
            "protocol, e.g. tcp://127.0.0.1:8786 (the scheduler prints it when it starts)."
        )
    if args.address is not None and args.workers is not None:
        parser.error(
            "--workers sizes a new local cluster, but --address names an existing one whose "
            "workers run the tasks; leave one of them out."
        )
    args.out = output_folder(args.out, quick=args.quick)
    try:
        check_output_folder(args.out)
    except ValueError as exc:
        parser.error(str(exc))


def _options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Options:
    """The experiments' options; a value they reject is a usage error (status 2)."""
    from raking.simulation.experiments import Options

    try:
        return Options(
            reps=args.reps,
            n=None if args.n is None else tuple(args.n),
            quick=args.quick,
            backend=args.backend,
        )
    except ValueError as exc:
        parser.error(as_flags(str(exc), _KEYWORDS))


def _run(names: list[str], options: Options, args: argparse.Namespace) -> int:
    """Run the experiments ``names``; print each summary (and, for ``figures``, an overview)."""
    results: dict[str, SweepResult | str] = {}
    start = time.perf_counter()
    with _cluster(args, several=len(names) > 1) as address:
        for name in names:
            try:
                result = run_experiment(
                    name,
                    options,
                    out=args.out,
                    seed=args.seed,
                    scheduler=args.scheduler,
                    address=address,
                    workers=args.workers or 2,
                )
            except _USER_ERRORS as exc:
                print(f"raking: error: {name}: {as_flags(str(exc), _KEYWORDS)}", file=sys.stderr)
                results[name] = f"failed: {type(exc).__name__}"
                continue
            results[name] = result
            print(result.summary(), end="\n\n", flush=True)
    if args.command == "figures":
        print(_overview(results, time.perf_counter() - start))
        print(f"files in {args.out}/")
    return 0 if all(isinstance(r, SweepResult) for r in results.values()) else 1


def _cluster(args: argparse.Namespace, *, several: bool) -> AbstractContextManager[str | None]:
    """The Dask address to use: the given one, or one local cluster shared by several runs."""
    if args.scheduler == "dask" and args.address is None and several:
        return local_cluster(args.workers or 2)
    return nullcontext(args.address)


def _overview(results: dict[str, SweepResult | str], seconds: float) -> str:
    """One line per experiment: grid points, replicates, time, files (or why it failed)."""
    lines = [
        f"{'experiment':<14} {'points':>6} {'replicates':>12} {'seconds':>8} "
        f"{'µs/replicate':>12}  files",
    ]
    for name, r in results.items():
        if isinstance(r, str):
            lines.append(f"{name:<14} {r}")
            continue
        files = ", ".join(sorted({f.suffix.lstrip(".") for f in r.files}))
        lines.append(
            f"{name:<14} {r.points:>6} {r.replicates:>12,} {r.seconds:>8.2f} "
            f"{r.seconds_per_replicate * 1e6:>12.1f}  {files}"
        )
    failed = sum(isinstance(r, str) for r in results.values())
    lines.append(
        f"total: {len(results) - failed} of {len(results)} experiments in {seconds:.1f} s"
        + (f"; {failed} failed (messages above)" if failed else "")
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
