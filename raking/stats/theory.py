r"""Population-level theory of the balanced estimator: variance, bias and MSE.

A façade over :mod:`raking.stats.operators` and :mod:`raking.stats.variance` (re-exported here) plus
the quantities that need the balancing kernel: the exact population bias under misspecified target
marginals, the matching asymptotic variance, the asymptotic MSE and the *shape* of the
non-asymptotic MSE bound. Everything is computed exactly from a known joint pmf ``P`` (an ``(m, l)``
array), without sampling, in NumPy float64. Derivations: ``theory/variance.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from raking.kernel.ipf import balance
from raking.stats.operators import (
    conditional_mean_operators,
    maximal_correlation,
    singular_system,
    singular_values,
)
from raking.stats.variance import (
    _additive_residual,
    asymptotic_variance,
    efficient_variance,
    ipwi_variance,
    variance_closed_form,
    variance_decay_bound,
    variance_operator,
)
from raking.validation import (
    check_function,
    check_joint,
    check_marginal_pmfs,
    check_nonnegative,
    check_option,
    check_positive_int,
    check_steps_or_inf,
)

__all__ = [
    "asymptotic_mse",
    "asymptotic_variance",
    "conditional_mean_operators",
    "efficient_variance",
    "ipwi_variance",
    "maximal_correlation",
    "misspecified_variance",
    "mse_bound",
    "population_bias",
    "singular_system",
    "singular_values",
    "variance_closed_form",
    "variance_decay_bound",
    "variance_operator",
]

_ESTIMATORS = ("balanced", "ipwi", "empirical")


def population_bias(
    P: ArrayLike,
    h: ArrayLike,
    targets: Sequence[ArrayLike],
    steps: int | float | None,
    *,
    estimator: str = "balanced",
    self_normalized: bool = False,
) -> float:
    r"""Exact large-sample bias of an estimator of :math:`P(h)` given misspecified marginals.

    With supplied marginals :math:`(\tilde P_X, \tilde P_Y)`:

    .. math::

        \text{balanced: } P^{(k)}(h) - P(h), \qquad
        \text{ipwi: } \sum_{x,y} P(x,y)\, w(x,y)\, h(x,y) - P(h), \quad
        w = \frac{\tilde P_X(x)}{P_X(x)} \frac{\tilde P_Y(y)}{P_Y(y)}, \qquad
        \text{empirical: } 0,

    where :math:`P^{(k)}` is :math:`k`-step balancing of the **population** :math:`P` toward the
    supplied marginals (:func:`raking.kernel.ipf.balance`). The self-normalised IPWI divides by
    :math:`\sum P w` instead.

    Parameters
    ----------
    P : array_like, shape (m, l)
        True joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    targets : pair of array_like, shapes (m,) and (l,)
        Supplied (possibly misspecified) marginal pmfs :math:`\tilde P_X, \tilde P_Y`.
    steps : int, math.inf or None
        :math:`k \ge 0` for ``"balanced"``; ``math.inf``/``None``: balance to convergence
        (tolerance 1e-10). Validated but unused by the other estimators.
    estimator : {"balanced", "ipwi", "empirical"}
        Which estimator's probability limit to compare with :math:`P(h)`.
    self_normalized : bool
        Self-normalise the IPWI weights; only valid with ``estimator="ipwi"``.

    Returns
    -------
    float
        The bias, in the units of ``h``; 0 when ``targets`` are the true marginals.

    Notes
    -----
    ``theory.md`` §4.3 [DER]: :math:`P_n^{(k)}(h) \to P^{(k)}(h)` in probability, so this is the
    bias of the estimator up to :math:`o(1)`; it is :math:`O(\varepsilon)` in the size of the
    misspecification. The IPWI estimator is our assumption [INF] (``theory.md`` §4.2).
    ``theory/variance.md`` §9.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.3, 0.1], [0.2, 0.4]])
    >>> h = np.array([[1.0, 0.0], [0.0, 0.0]])
    >>> round(population_bias(P, h, ([0.5, 0.5], [0.5, 0.5]), 1), 6)  # 0.5 * 0.75 - 0.3
    0.075
    >>> population_bias(P, h, (P.sum(axis=1), P.sum(axis=0)), 3)
    0.0
    """
    check_option(estimator, options=_ESTIMATORS, name="estimator")
    if self_normalized and estimator != "ipwi":
        raise ValueError(
            f"self_normalized=True applies only to estimator='ipwi', got estimator={estimator!r}. "
            "Drop self_normalized or choose estimator='ipwi'."
        )
    P = check_joint(P)
    h = check_function(h, P.shape)
    px_t, py_t = check_marginal_pmfs(targets, P.shape)
    k = check_steps_or_inf(steps)
    truth = float(np.sum(P * h))
    if estimator == "empirical":
        return 0.0
    if estimator == "ipwi":
        w = np.outer(px_t / P.sum(axis=1), py_t / P.sum(axis=0))
        limit = float(np.sum(P * w * h))
        if self_normalized:
            limit /= float(np.sum(P * w))
        return limit - truth
    balanced = balance(P, [px_t, py_t], steps=None if k == math.inf else k)
    return float(np.sum(balanced * h)) - truth


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (empty categories after a zero target)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def misspecified_variance(
    P: ArrayLike, h: ArrayLike, targets: Sequence[ArrayLike], steps: int | float | None
) -> float:
    r"""Asymptotic variance of :math:`P_n^{(k)}(h)` when balancing toward misspecified marginals.

    Let :math:`Q_i` be :math:`i`-step balancing of :math:`P` toward :math:`(\tilde P_X, \tilde
    P_Y)`. Step :math:`i` has derivative :math:`dQ_i(g) = dQ_{i-1}(A_i g)` with

    .. math::

        A_i g = \frac{\tilde P_X}{Q_{i-1,X}} \big(g - E_{Q_{i-1}}[g \mid X]\big)
        \ (i \text{ odd}), \qquad
        \sigma_k^2(\tilde P) = \operatorname{Var}_P\big(A_1 A_2 \cdots A_k h\big),

    (Y in place of X for even :math:`i`), and for :math:`k = \infty`, with
    :math:`Q_\infty = e^{f + g} P` the Sinkhorn limit and :math:`W = Q_\infty / P`,

    .. math::

        \sigma_\infty^2(\tilde P) = \operatorname{Var}_P\big(W\,(h - \Pi^{Q_\infty}_{X+Y} h)\big),

    where :math:`\Pi^{Q}_{X+Y}` is the :math:`L^2(Q)` projection on :math:`\{f(x) + g(y)\}`.

    Parameters
    ----------
    P : array_like, shape (m, l)
        True joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    targets : pair of array_like, shapes (m,) and (l,)
        Supplied marginal pmfs :math:`\tilde P_X, \tilde P_Y`.
    steps : int, math.inf or None
        :math:`k \ge 0`; ``math.inf``/``None`` for the converged estimator.

    Returns
    -------
    float
        The variance of :math:`\sqrt n (P_n^{(k)}(h) - P^{(k)}(h))` in squared units of ``h``.
        Equals :func:`asymptotic_variance` when ``targets`` are the true marginals
        (:math:`Q_i = P`, :math:`A_i = T_i`).

    Notes
    -----
    [DER] ``theory/variance.md`` §9 (delta method through each step, our derivation; checked by
    Monte Carlo in ``tests/test_theory.py``). It refines ``theory.md`` §4.3's
    :math:`\mathrm{MSE} \approx \mathrm{bias}^2 + \sigma^2/n`, which leaves :math:`\sigma^2`
    unspecified. Cost: :math:`k` calls of :func:`raking.kernel.ipf.balance`, :math:`O(k^2 ml)`.
    """
    P = check_joint(P)
    h = check_function(h, P.shape)
    px_t, py_t = check_marginal_pmfs(targets, P.shape)
    k = check_steps_or_inf(steps)
    if k == math.inf:
        Q = balance(P, [px_t, py_t], steps=None)
        g = _safe_ratio(Q, P) * _additive_residual(Q, h)
    else:
        g = h
        for i in range(k, 0, -1):
            Q = balance(P, [px_t, py_t], steps=i - 1)
            axis, target = (1, px_t) if i % 2 else (0, py_t)
            marg = Q.sum(axis=axis)
            mean = _safe_ratio((Q * g).sum(axis=axis), marg)
            weight = _safe_ratio(target, marg)
            if axis == 1:
                g = weight[:, None] * (g - mean[:, None])
            else:
                g = weight[None, :] * (g - mean[None, :])
    g = g - float(np.sum(P * g))
    return float(np.sum(P * g * g))


def asymptotic_mse(
    P: ArrayLike,
    h: ArrayLike,
    targets: Sequence[ArrayLike],
    steps: int | float | None,
    n: int,
) -> float:
    r"""First-order MSE of :math:`P_n^{(k)}(h)` with (possibly misspecified) target marginals.

    .. math::

        \mathrm{MSE}_n \approx \big(P^{(k)}(h) - P(h)\big)^2 + \frac{\sigma_k^2(\tilde P)}{n},

    with the bias from :func:`population_bias` and :math:`\sigma_k^2(\tilde P)` from
    :func:`misspecified_variance`.

    Parameters
    ----------
    P : array_like, shape (m, l)
        True joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    targets : pair of array_like, shapes (m,) and (l,)
        Supplied marginal pmfs :math:`\tilde P_X, \tilde P_Y`.
    steps : int, math.inf or None
        :math:`k \ge 0`; ``math.inf``/``None`` for the converged estimator.
    n : int
        Sample size, :math:`n \ge 1`.

    Returns
    -------
    float
        Approximate MSE in squared units of ``h``.

    Notes
    -----
    ``theory.md`` §4.3 [DER for both terms]. An approximation: it drops the
    :math:`O(n^{-3/2})` remainder (``theory.md`` §3; its constant grows like :math:`k^6`), the
    :math:`O(n^{-1})` squared-bias correction, and the empty-category event of ``theory.md``
    §1.2, so it is accurate only when every category is observed with high probability.
    ``theory/variance.md`` §9.
    """
    n = check_positive_int(n, name="n")
    bias = population_bias(P, h, targets, steps)
    return bias * bias + misspecified_variance(P, h, targets, steps) / n


def mse_bound(sigma2_k: float, n: int, steps: int, C: float) -> float:
    r"""Shape of the non-asymptotic MSE bound of Theorem 1, with a user-supplied constant.

    .. math::

        \mathbb E\big[(\varphi_n^{(k)} - \varphi)^2\big] \lesssim \frac{\sigma_k^2}{n}
            + C\, \frac{k^6}{n^{3/2}} \qquad (n \ge n_0).

    **The constant** :math:`C` **and the validity range** :math:`n \ge n_0` **are
    unconfirmed** (``theory.md`` §3, [REC/INF]): only the two rates are confirmed [SUM]. This
    function returns the *shape* of the bound for a ``C`` you choose; it is not a proven upper
    bound on any MSE, and no default for ``C`` is offered for that reason.

    Parameters
    ----------
    sigma2_k : float
        :math:`\sigma_k^2 \ge 0`, e.g. from :func:`asymptotic_variance` (squared units of h).
    n : int
        Sample size, :math:`n \ge 1`.
    steps : int
        :math:`k \ge 0` single-marginal adjustments (finite: the :math:`k^6` term diverges).
    C : float
        Constant of the higher-order term, :math:`C \ge 0` (squared units of h). Unknown: in the
        reconstruction it depends on :math:`\|h\|_\infty`, :math:`\min P_X`, :math:`\min P_Y`,
        :math:`m` and :math:`l`.

    Returns
    -------
    float
        :math:`\sigma_k^2 / n + C k^6 n^{-3/2}`.

    Notes
    -----
    ``theory.md`` §3 [SUM for the rates, REC/INF for the display]; ``theory/variance.md`` §10.

    Examples
    --------
    >>> mse_bound(0.5, 100, 2, C=1.0)  # 0.5 / 100 + 1.0 * 2**6 / 100**1.5
    0.069
    """
    sigma2_k = check_nonnegative(sigma2_k, name="sigma2_k")
    n = check_positive_int(n, name="n")
    if steps is None or (isinstance(steps, float) and math.isinf(steps)):
        raise ValueError(
            "steps must be a finite integer for the MSE bound: its k^6 n^{-3/2} term diverges "
            "as k grows. Pass the number of single-marginal adjustments, e.g. steps=4."
        )
    k = check_steps_or_inf(steps)
    C = check_nonnegative(C, name="C")
    return sigma2_k / n + C * k**6 / n**1.5
