"""The ``mse_vs_n`` experiment: same as ``raking simulate mse_vs_n [options]``.

The experiment itself is defined in :mod:`raking.simulation.experiments`; this script only forwards
its arguments to the ``raking`` command (``--help`` lists them). It writes ``figures/mse_vs_n.csv``,
``.png`` and ``.pdf`` (relative to the current folder; with ``--quick`` into ``figures/quick/``,
which git ignores; ``--out`` to change) and prints the summary table.

    python simulations/mse_vs_n.py            # the full default run
    python simulations/mse_vs_n.py --quick    # a small grid, into figures/quick/
"""

from __future__ import annotations

import sys

import raking.cli


def main(argv: list[str] | None = None) -> int:
    """Run ``raking simulate mse_vs_n`` with ``argv`` (default: ``sys.argv[1:]``)."""
    return raking.cli.main(["simulate", "mse_vs_n", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
