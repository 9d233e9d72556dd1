r"""The k sweeps ``theory_vs_mc``, ``mse_vs_n`` and ``mse_vs_k``: one batch per n, every k.

All three use :data:`~raking.simulation.experiments.REFERENCE_DESIGN` and the same point function,
:func:`k_sweep_point`; they differ in their grids of n and k (``theory.md`` §2.2-2.3, §3), and
``mse_vs_k``'s points also carry ``k_ref``, the reference of its paired gaps.
"""

from __future__ import annotations

import math

import numpy as np

from raking.simulation.experiments._options import Options, _reps
from raking.simulation.experiments._replicates import _balanced, _base, _mc_stats, _on_backend
from raking.simulation.experiments.designs import REFERENCE_DESIGN, build_design
from raking.stats.marginals import sample_counts
from raking.stats.theory import asymptotic_variance, variance_decay_bound


def _k_sweep_grid(name: str, ns: tuple[int, ...], ks: list[int], reps: int) -> list[dict]:
    points = []
    for n in ns:
        point = {"experiment": name, **REFERENCE_DESIGN, "n": int(n), "reps": reps, "ks": ks}
        point["s2"] = build_design(point).s2  # raises unless s_2 = s
        points.append(point)
    return points


def _theory_vs_mc_grid(options: Options) -> list[dict]:
    """Grid: n in {100, 1000, 10000}, k = 0..8, 10,000 reps (quick: 1,000)."""
    ns = options.n or (100, 1000, 10000)
    return _k_sweep_grid("theory_vs_mc", ns, list(range(9)), _reps(options, 10_000, 1000))


def _mse_vs_n_grid(options: Options) -> list[dict]:
    """Seven n from 100 to 10,000 (quick: three), k in {0, 1, 2, 8}, 4,000 reps (quick: 500)."""
    full, quick = (100, 200, 500, 1000, 2000, 5000, 10000), (100, 1000, 10000)
    ns = options.n or (quick if options.quick else full)
    return _k_sweep_grid("mse_vs_n", ns, [0, 1, 2, 8], _reps(options, 4000, 500))


_K_REF = 60
r"""Steps of the reference estimator of ``mse_vs_k``'s paired gaps: :math:`s_2^{2 \cdot 59}
\approx 10^{-11.5}` at :math:`s_2 = 0.8`, so :math:`\sigma_{60}^2` equals :math:`\sigma_\infty^2`
to 1e-11 relative [INF]."""


def _mse_vs_k_grid(options: Options) -> list[dict]:
    """Grid: k = 0..12 (quick: 0..8), n = 10^3, 10^4, 10^5 (quick: 10^3, 10^5), 20,000 reps.

    Quick: 1,000 reps. Every point carries ``k_ref`` = 60, the reference of the paired gaps.
    """
    ks = list(range(9 if options.quick else 13))
    ns = options.n or ((1000, 100_000) if options.quick else (1000, 10_000, 100_000))
    points = _k_sweep_grid("mse_vs_k", ns, ks, _reps(options, 20_000, 1000))
    return [{**point, "k_ref": _K_REF} for point in points]


def k_sweep_point(point: dict, seed: np.random.SeedSequence, backend: str) -> list[dict]:
    r"""One n of ``theory_vs_mc``, ``mse_vs_n`` or ``mse_vs_k``: every k on ONE batch.

    Parameters
    ----------
    point : dict
        A grid point (design keys of :func:`~raking.simulation.experiments.build_design`, ``n``,
        ``reps``, ``ks``).
    seed : numpy.random.SeedSequence
        The point's own seed.
    backend : {"numpy", "numba", "cupy"}
        Kernel of the balanced estimator.

    Returns
    -------
    list of dict
        One row per k with the point's parameters and: ``mse``, ``mse_se``, ``bias``,
        ``variance``, ``n_mse`` (:math:`n \cdot \mathrm{MSE}`), ``mc_se`` (its Monte Carlo
        standard error), ``sigma2_k``, ``theory_mse`` (:math:`\sigma_k^2 / n`), ``ratio``
        (:math:`n \cdot \mathrm{MSE} / \sigma_k^2`), ``sigma2_0``, ``sigma2_inf``, ``bound``
        (:func:`raking.stats.theory.variance_decay_bound`, None for k = 0) and ``n_fallback``.

    Notes
    -----
    ``theory.md`` §2.2-2.3 [DER]: :math:`n \cdot \mathrm{MSE}(\varphi_n^{(k)}) \to \sigma_k^2`
    with correct marginals; the ratio tends to 1 as n grows, with :math:`O(n^{-1/2})` relative
    corrections. The bound :math:`\sigma_\infty^2 + s_2^{2(k-1)}(\sigma_0^2 - \sigma_\infty^2)`
    holds for k >= 1 (§2.3 [DER]). The non-asymptotic bound of Theorem 1 is not drawn: its
    constant is unconfirmed (§3).

    A grid point with ``k_ref`` (``mse_vs_k``) also balances every replicate with ``k_ref``
    steps and adds the **paired gap** to that reference, in variance units:

    .. math::

        \widehat{\Delta}_k = \frac{n}{R} \sum_{r=1}^R \big[(\varphi_{n,r}^{(k)} - \theta)^2
        - (\varphi_{n,r}^{(k_{\mathrm{ref}})} - \theta)^2\big]
        \ \to\ \sigma_k^2 - \sigma_{k_{\mathrm{ref}}}^2,

    columns ``gap_mc``, ``gap_mc_se`` (its Monte Carlo standard error), ``gap_theory``
    (:math:`\sigma_k^2 - \sigma_{k_\mathrm{ref}}^2`) and ``ratio_se`` (``mc_se`` /
    ``sigma2_k``). Pairing removes most of the Monte Carlo noise (the efficient estimator is
    asymptotically uncorrelated with :math:`\varphi^{(k)} - \varphi^{(\infty)}`) and most of the
    common finite-n excess, which :math:`n \cdot \mathrm{MSE} - \sigma_\infty^2` keeps [INF].
    """
    design = build_design(point)
    P, h = design.P, design.h
    n, reps = int(point["n"]), int(point["reps"])
    counts = sample_counts(P, n, reps, seed=np.random.default_rng(seed))
    truth = float(np.sum(P * h))
    targets = [design.p_x, design.p_y]
    base = {**_base(point), "truth": truth}
    sigma2_0, sigma2_inf = asymptotic_variance(P, h, 0), asymptotic_variance(P, h, math.inf)
    on_backend, kwargs = _on_backend(counts, backend)
    k_ref = point.get("k_ref")
    if k_ref is not None:
        ref_values, _ = _balanced(on_backend, h, targets, int(k_ref), kwargs)
        ref_sq = (ref_values - truth) ** 2
        sigma2_ref = asymptotic_variance(P, h, int(k_ref))
    rows = []
    for k in point["ks"]:
        values, fallbacks = _balanced(on_backend, h, targets, int(k), kwargs)
        stats = _mc_stats(values, truth)
        sigma2 = asymptotic_variance(P, h, int(k))
        paired = {}
        if k_ref is not None:
            diff = n * ((values - truth) ** 2 - ref_sq)
            paired = {
                "ratio_se": n * stats["mse_se"] / sigma2,
                "gap_mc": float(diff.mean()),
                "gap_mc_se": float(diff.std(ddof=1) / math.sqrt(reps)),
                "gap_theory": sigma2 - sigma2_ref,
            }
        rows.append(
            {
                **base,
                "estimator": "balanced",
                "k": int(k),
                **stats,
                "n_mse": n * stats["mse"],
                "mc_se": n * stats["mse_se"],
                "sigma2_k": sigma2,
                "theory_mse": sigma2 / n,
                "ratio": n * stats["mse"] / sigma2,
                "sigma2_0": sigma2_0,
                "sigma2_inf": sigma2_inf,
                "bound": variance_decay_bound(P, h, int(k)) if k >= 1 else None,
                **paired,
                "n_fallback": fallbacks,
            }
        )
    return rows
