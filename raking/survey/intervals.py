r"""Confidence intervals for a proportion and design effects of survey estimates (NumPy only).

Proportion intervals (R ``survey``'s ``svyciprop``), for an estimate :math:`\hat p` with standard
error :math:`s` and the design's degrees of freedom :math:`\nu` (PSUs minus strata, R
``degf(design)``; of the domain for a domain estimate):

- ``"wald"``: :math:`\hat p \pm z_{1-\alpha/2}\, s` (normal; can cross 0 or 1);
- ``"logit"``: the Wald interval of :math:`\operatorname{logit} \hat p` with SE
  :math:`s / (\hat p (1 - \hat p))` (delta method; with replicate weights, the replicates'
  SE of the logit, as R's ``svyglm`` there) and a :math:`t_\nu` quantile, mapped back by
  :math:`\operatorname{expit}`: always inside (0, 1);
- ``"beta"``: Korn & Graubard (1998): the Clopper--Pearson interval at the effective sample size
  :math:`n^* = \hat p(1-\hat p)/s^2 \cdot \big(t_{n-1, \alpha/2} / t_{\nu, \alpha/2}\big)^2`,
  :math:`[B^{-1}_{\alpha/2}(n^* \hat p,\, n^*(1-\hat p) + 1),\;
  B^{-1}_{1-\alpha/2}(n^* \hat p + 1,\, n^*(1-\hat p))]`, with :math:`n` the rows of the design
  (R's ``nrow(design)``).

Design effects (R ``svymean(..., deff=TRUE)`` / ``svytotal``): the variance of the estimate over
the variance the same estimate would have under simple random sampling of the same number of
rows :math:`n` from a population of :math:`\hat N = \sum_D w_i`, with the weighted population
variance :math:`S^2 = \frac{n}{n-1} \sum_D w_i (y_i - \bar y)^2 / \sum_D w_i` (R ``svyvar``):

.. math::

    V_\text{SRS}(\bar y) = \frac{S^2}{n}\Big(1 - \frac{n}{\hat N}\Big) \quad
    (\text{``replace``: } S^2 / n), \qquad V_\text{SRS}(\hat Y) = \hat N^2 V_\text{SRS}(\bar y).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["proportion_interval", "srs_variances"]


def proportion_interval(
    p: float,
    se: float,
    method: str,
    level: float,
    df: float,
    rows: int,
    logit_se: float = math.nan,
) -> tuple[float, float]:
    r"""The ``level`` interval of a proportion ``p`` with SE ``se`` (module docstring).

    Parameters
    ----------
    p, se : float
        The estimate and its standard error (shares, in [0, 1]).
    method : {"wald", "logit", "beta"}
        The interval (module docstring).
    level : float
        Coverage in (0, 1).
    df : float
        Degrees of freedom of the design (``"logit"``, ``"beta"``).
    rows : int
        Rows of the design (``"beta"``'s :math:`n`).
    logit_se : float
        ``"logit"``: the SE of :math:`\operatorname{logit} \hat p` where it is not the delta
        method's (replicate designs: the replicates' logits, as R's ``svyglm``); NaN: delta.

    Returns
    -------
    (float, float)
        Lower and upper bound; NaN where ``se`` is NaN or 0, ``df < 1``, or (``"logit"``,
        ``"beta"``) ``p`` is 0 or 1.
    """
    from scipy import stats

    alpha = 1.0 - level
    if method == "wald":
        z = stats.norm.ppf(1 - alpha / 2)
        return p - z * se, p + z * se
    if not (np.isfinite(se) and df >= 1) or not 0 < p < 1 or se == 0:
        # p of 0 or 1 (no variation in the domain): no logit and no effective sample size;
        # R's numbers there come from an IRLS that diverges, or from an SE of rounding noise
        return math.nan, math.nan
    if method == "logit":
        scale = se / (p * (1 - p)) if math.isnan(logit_se) else logit_se
        half = stats.t.ppf(1 - alpha / 2, df) * scale
        centre = math.log(p / (1 - p))
        return _expit(centre - half), _expit(centre + half)
    n_eff = p * (1 - p) / se**2
    n_eff *= (stats.t.ppf(alpha / 2, rows - 1) / stats.t.ppf(alpha / 2, df)) ** 2
    lower = stats.beta.ppf(alpha / 2, n_eff * p, n_eff * (1 - p) + 1)
    upper = stats.beta.ppf(1 - alpha / 2, n_eff * p + 1, n_eff * (1 - p))
    return float(lower), float(upper)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def srs_variances(
    kind: str, y: np.ndarray, w: np.ndarray, domain: np.ndarray
) -> tuple[float, float]:
    r"""Variances of the same estimate under SRS without and with replacement (module docstring).

    Parameters
    ----------
    kind : {"mean", "total"}
        A mean (or ratio, proportion) per unit, or a total (in the units of ``y`` times rows).
    y : numpy.ndarray of float64, shape ``(s,)``
        The variable over the sampled rows (for a ratio: its linearised variable).
    w : numpy.ndarray of float64, shape ``(s,)``
        The final weights (0 for rows not raked).
    domain : numpy.ndarray of bool, shape ``(s,)``
        The rows of the domain.

    Returns
    -------
    (float, float)
        :math:`V_\text{SRS}` without replacement (NaN when :math:`\hat N < n`, as R) and with
        replacement, in squared units of the estimate; NaN for fewer than two rows.
    """
    keep = domain & (w > 0)
    n = int(np.count_nonzero(keep))
    if n < 2:
        return math.nan, math.nan
    wd, yd = w[keep], y[keep]
    big_n = float(wd.sum())
    centred = yd - float(np.dot(wd, yd)) / big_n
    s2 = n / (n - 1) * float(np.dot(wd, centred * centred)) / big_n
    scale = big_n**2 if kind == "total" else 1.0
    replace = scale * s2 / n
    without = math.nan if big_n < n else replace * (big_n - n) / big_n
    return without, replace
