r"""The ``illustration`` experiment: :math:`P_n^{(k)}`, k = 0..3, on the authors' 50 x 50 example.

One sample from :func:`~raking.simulation.experiments.illustration_joint` and its balanced tables
(``theory.md`` §5 [CODE]); unobserved categories are dropped before balancing.
"""

from __future__ import annotations

import numpy as np

from raking.kernel.ipf import balance
from raking.simulation.experiments._options import Options
from raking.simulation.experiments._replicates import _base
from raking.simulation.experiments.designs import illustration_joint
from raking.stats.marginals import sample_counts


def _illustration_grid(options: Options) -> list[dict]:
    """One point: m = 50, n = 1000, k = 0..3 (the notebook's constants)."""
    n = (options.n or (1000,))[0]
    return [
        {
            "experiment": "illustration",
            "m": 50,
            "bias": 0.5,
            "binom_p": 0.7,
            "weight": 0.8,
            "n": int(n),
            "reps": 1,
            "ks": [0, 1, 2, 3],
        }
    ]


def _codes(mask: np.ndarray) -> str:
    """The flagged categories as text, e.g. ``"[0, 7]"`` or ``"[]"`` (a string in any CSV)."""
    return str([int(i) for i in np.flatnonzero(mask)])


def illustration_point(point: dict, seed: np.random.SeedSequence, backend: str) -> list[dict]:
    r"""One sample of the authors' example and its balanced tables :math:`P_n^{(k)}`.

    Parameters
    ----------
    point : dict
        The grid point (``m``, ``bias``, ``binom_p``, ``weight``, ``n``, ``ks``).
    seed : numpy.random.SeedSequence
        Seed of the sample of ``n`` pairs.
    backend : str
        Unused: one table is balanced with :func:`raking.kernel.ipf.balance` on NumPy.

    Returns
    -------
    list of dict
        Tidy rows ``(table, k, x, y, value)``: ``table = "balanced"`` for :math:`P_n^{(k)}`,
        ``"population"`` (k = None) for :math:`P`; with ``empty_x``/``empty_y`` (the unobserved
        categories as text, e.g. ``"[0]"``) and their counts ``n_empty_x``/``n_empty_y``;
        ``n_fallback`` is 0 (no empirical fallback: empty categories are handled as below).

    Notes
    -----
    **Missing mass** [INF]: with 50 categories and n = 1000, tail categories of the Y-marginal
    (mass about 0.004) are often unobserved, and the authors' code raises an error then. Here
    the empty rows and columns are dropped, the targets renormalised over the observed
    categories, and the balanced table is zero on the empty ones; the figure states which
    categories were empty.
    """
    P = illustration_joint(
        int(point["m"]),
        bias=float(point["bias"]),
        binom_p=float(point["binom_p"]),
        weight=float(point["weight"]),
    )
    counts = sample_counts(P, int(point["n"]), 1, seed=np.random.default_rng(seed))[0]
    Pn = counts / counts.sum()
    seen_x, seen_y = Pn.sum(axis=1) > 0, Pn.sum(axis=0) > 0
    targets = [P.sum(axis=1)[seen_x], P.sum(axis=0)[seen_y]]
    targets = [t / t.sum() for t in targets]
    observed = Pn[np.ix_(seen_x, seen_y)]
    base = {
        **_base(point),
        "empty_x": _codes(~seen_x),
        "empty_y": _codes(~seen_y),
        "n_empty_x": int((~seen_x).sum()),
        "n_empty_y": int((~seen_y).sum()),
        "n_fallback": 0,
    }
    x, y = np.meshgrid(np.arange(P.shape[0]), np.arange(P.shape[1]), indexing="ij")
    x, y = x.ravel().tolist(), y.ravel().tolist()

    def cells(table: str, k: int | None, values: np.ndarray) -> list[dict]:
        return [
            {**base, "table": table, "k": k, "x": i, "y": j, "value": v}
            for i, j, v in zip(x, y, values.ravel().tolist(), strict=True)
        ]

    rows = cells("population", None, P)
    for k in point["ks"]:
        full = np.zeros_like(P)
        full[np.ix_(seen_x, seen_y)] = balance(observed, targets, steps=int(k))
        rows += cells("balanced", int(k), full)
    return rows
