r"""The ``dependence`` experiment: MSE vs the dependence level s, one line per noise level.

The empirical, IPWI and balanced (k = 1, 2, 4, 8) estimators on one batch of count tables per
(h, s, :math:`\varepsilon`) point, given mixture-misspecified marginals (``theory.md`` §4-5), with
the first-order theory.

Three functions :math:`h = a(\alpha + \beta) + Z` separate the two reasons balancing helps
[INF]: :math:`a = 1` (the reference design), :math:`a = 0.5` and :math:`a = 0` (pure noise).
Balancing removes the additive part of h at every s, dependence or not; its share of
:math:`\mathrm{Var}(h)` under independence is the grid's ``additive_share``,
:math:`1 - \sigma_\infty^2 / \sigma_0^2` at :math:`s = 0` (0.765 for :math:`a = 1`, 0.499 for
:math:`a = 0.5`, 0.131 for pure noise, whose own main effects are additive too). The MSE ratio
to the empirical estimator at :math:`s = 0` measures that share; its change with s measures
what dependence adds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raking.simulation.experiments._options import Options, _reps
from raking.simulation.experiments._replicates import _balanced, _base, _mc_stats, _on_backend
from raking.simulation.experiments.designs import DEPENDENCE_DESIGN, build_design
from raking.stats.estimators import empirical_estimate, ipw_estimate
from raking.stats.marginals import mixture_noise, sample_counts
from raking.stats.theory import asymptotic_mse, asymptotic_variance, ipwi_variance, population_bias

_EPS = (0.0, 0.01, 0.05, 0.1)
_DEPENDENCE_KS = (1, 2, 4, 8)
_S_FRACTION = 0.95  # the s grid ends at 0.95 s_max: the table stays strictly positive
_H_ALIGNS = (1.0, 0.5, 0.0)
r"""The weights a of the additive part of :math:`h = a(\alpha + \beta) + Z`: the reference design
first (so its grid points keep their seeds), then half, then none (pure noise) [INF]."""


def additive_share(point: dict) -> float:
    r"""Share of :math:`\mathrm{Var}(h)` in the additive part of h under independence (unitless).

    .. math::

        1 - \frac{\sigma_\infty^2}{\sigma_0^2}\Big|_{s = 0}
        = \frac{\mathrm{Var}(E[h \mid X]) + \mathrm{Var}(E[h \mid Y])}{\mathrm{Var}(h)}
        \quad \text{under } P_X P_Y,

    the part of the variance that balancing removes when X and Y are independent; so at
    :math:`s = 0` the balanced-to-empirical MSE ratio tends to one minus this share as k and n
    grow.

    Parameters
    ----------
    point : dict
        Design keys of :func:`~raking.simulation.experiments.build_design` (``s`` is ignored).
    """
    design = build_design({**point, "s": 0.0})
    sigma2_0 = asymptotic_variance(design.P, design.h, 0)
    return 1.0 - asymptotic_variance(design.P, design.h, math.inf) / sigma2_0


def _dependence_grid(options: Options) -> list[dict]:
    """3 functions h x 10 values of s in [0, 0.95 s_max] x 4 noise levels x n, 2000 reps.

    The reference h (``h_align`` = 1) comes first, so its points keep the seeds they had before
    the other two were added. Quick: the reference h only, 5 values of s, 300 reps.
    """
    reps = _reps(options, 2000, 300)
    ns = options.n or (1000,)
    s_max = build_design({**DEPENDENCE_DESIGN, "s": 0.0}).s_max
    s_values = np.linspace(0.0, _S_FRACTION * s_max, 5 if options.quick else 10)
    points = []
    for align in _H_ALIGNS[:1] if options.quick else _H_ALIGNS:
        fixed = {**DEPENDENCE_DESIGN, "h_align": align}
        share = additive_share(fixed)
        for n in ns:
            for s in s_values:
                for eps in _EPS:
                    point = {
                        "experiment": "dependence",
                        **fixed,
                        "s": float(s),
                        "eps": eps,
                        "noise": "mixture",
                        "n": int(n),
                        "reps": reps,
                        "ks": list(_DEPENDENCE_KS),
                    }
                    design = build_design(point)  # raises unless s_2 = s
                    point["s2"] = design.s2
                    point["s_max"] = design.s_max
                    point["additive_share"] = share
                    points.append(point)
    return points


def _ratio_stats(squared: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    r"""MSE ratio :math:`\overline{e^2} / \overline{e_0^2}` of paired squared errors, its s.e.

    Delta method on the paired replicates: :math:`\mathrm{se} = \mathrm{sd}(e^2 - r e_0^2) /
    (\sqrt{R}\, \overline{e_0^2})` (unitless).
    """
    mean_ref = float(reference.mean())
    ratio = float(squared.mean()) / mean_ref
    se = float((squared - ratio * reference).std(ddof=1) / (math.sqrt(squared.size) * mean_ref))
    return {"mse_ratio": ratio, "mse_ratio_se": se}


def dependence_point(point: dict, seed: np.random.SeedSequence, backend: str) -> list[dict]:
    r"""One (s, eps) point of ``dependence``: all estimators on ONE batch of count tables.

    Draws ``reps`` multinomial count tables of ``n`` pairs from the design's :math:`P` and
    estimates :math:`P(h)` with the empirical mean, IPWI and the balanced estimator for each k,
    the last two given the mixture-misspecified marginals
    :math:`\tilde P = (1 - \varepsilon) P + \varepsilon\,\mathrm{Unif}`.

    Parameters
    ----------
    point : dict
        A grid point of ``EXPERIMENTS["dependence"]`` (design keys of
        :func:`~raking.simulation.experiments.build_design`, ``eps``, ``n``, ``reps``, ``ks``).
    seed : numpy.random.SeedSequence
        The point's own seed; the count tables come from ``numpy.random.default_rng(seed)``.
    backend : {"numpy", "numba", "cupy"}
        Kernel of the balanced estimator.

    Returns
    -------
    list of dict
        One row per estimator (``"empirical"`` with k = 0, ``"ipwi"`` with k = None,
        ``"balanced"`` for each k) with the point's parameters and: ``mse``, ``mse_se`` (Monte
        Carlo standard error of the MSE), ``bias`` (mean - truth), ``variance``,
        ``mse_ratio`` (MSE / MSE of the empirical estimator on the same replicates) and
        ``mse_ratio_se`` (its delta-method standard error, 0 for the empirical row),
        ``theory_mse``, ``theory_bias``, ``theory_variance`` (:math:`\sigma^2`, not divided by
        n), ``theory_ratio`` (``theory_mse`` / the empirical ``theory_mse``), ``theory`` (how
        exact the theory is) and ``n_fallback``.

    Notes
    -----
    Theory columns (``theory.md`` §2-4):

    - empirical: :math:`\mathrm{Var}_P(h)/n`, **exact** at every n (it ignores the marginals);
    - balanced: :func:`raking.stats.theory.asymptotic_mse`, the squared exact population bias
      :math:`(P^{(k)}(h) - P(h))^2` plus :math:`\sigma_k^2(\tilde P)/n` [DER], **first order**
      (drops :math:`O(n^{-3/2})` terms);
    - IPWI: ``population_bias(estimator="ipwi")`` squared plus
      :func:`raking.stats.theory.ipwi_variance`
      / n, **first order**; for :math:`\varepsilon > 0` the variance is the one at the true
      marginals (an :math:`O(\varepsilon)` relative approximation).

    The mixture noise model is our assumption [INF] (``theory.md`` §4.3): it is deterministic,
    so every :math:`\varepsilon > 0` has a bias floor that does not shrink with n. IPWI is
    ``ipw_estimate(side="both")``, not self-normalised, also an assumption [INF] (§4.2).
    """
    design = build_design(point)
    P, h = design.P, design.h
    n, eps = int(point["n"]), float(point["eps"])
    counts = sample_counts(P, n, int(point["reps"]), seed=np.random.default_rng(seed))
    truth = float(np.sum(P * h))
    targets = [mixture_noise(design.p_x, eps), mixture_noise(design.p_y, eps)]
    base = {**_base(point), "truth": truth}

    rows = []
    var_h = asymptotic_variance(P, h, 0)
    empirical = np.asarray(empirical_estimate(counts, h))
    empirical_sq = (empirical - truth) ** 2

    def add(
        estimator: str, k: int | None, values: np.ndarray, fallbacks: int, **theory: Any
    ) -> None:
        stats = _mc_stats(values, truth)
        ratio = _ratio_stats((values - truth) ** 2, empirical_sq)
        if estimator == "empirical":
            ratio["mse_ratio_se"] = 0.0
        theory["theory_ratio"] = theory["theory_mse"] / (var_h / n)
        rows.append(
            {
                **base,
                "estimator": estimator,
                "k": k,
                **stats,
                **ratio,
                **theory,
                "n_fallback": fallbacks,
            }
        )

    add(
        "empirical",
        0,
        empirical,
        0,
        theory_mse=var_h / n,
        theory_bias=0.0,
        theory_variance=var_h,
        theory="exact",
    )
    ipw = ipw_estimate(counts, h, targets, side="both", missing="empirical")
    bias = population_bias(P, h, targets, 0, estimator="ipwi")
    var = ipwi_variance(P, h)
    kind = "first order" if eps == 0 else "first order; variance at the true marginals"
    add(
        "ipwi",
        None,
        ipw.values,
        ipw.n_fallback,
        theory_mse=bias**2 + var / n,
        theory_bias=bias,
        theory_variance=var,
        theory=kind,
    )
    on_backend, kwargs = _on_backend(counts, backend)
    for k in map(int, point["ks"]):
        values, fallbacks = _balanced(on_backend, h, targets, k, kwargs)
        mse = asymptotic_mse(P, h, targets, k, n)
        bias = population_bias(P, h, targets, k)
        add(
            "balanced",
            k,
            values,
            fallbacks,
            theory_mse=mse,
            theory_bias=bias,
            theory_variance=n * (mse - bias**2),
            theory="first order",
        )
    return rows
