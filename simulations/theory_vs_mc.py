"""The ``theory_vs_mc`` experiment: same as ``raking simulate theory_vs_mc [options]``.

The experiment itself is defined in :mod:`raking.simulation.experiments`; this script only forwards
its arguments to the ``raking`` command (``--help`` lists them). It writes
``figures/theory_vs_mc.csv``, ``.png`` and ``.pdf`` (relative to the current folder; with
``--quick`` into ``figures/quick/``, which git ignores; ``--out`` to change) and prints the summary
table.

    python simulations/theory_vs_mc.py            # the full default run
    python simulations/theory_vs_mc.py --quick    # a small grid, into figures/quick/
"""

from __future__ import annotations

import sys

import raking.cli


def main(argv: list[str] | None = None) -> int:
    """Run ``raking simulate theory_vs_mc`` with ``argv`` (default: ``sys.argv[1:]``)."""
    return raking.cli.main(["simulate", "theory_vs_mc", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
