r"""Asymptotic variance :math:`\sigma_k^2` of the k-step balanced estimator, computed two ways.

For a known joint pmf :math:`P` (an ``(m, l)`` array) and a function :math:`h` (same shape), the
balanced estimator :math:`\varphi_n^{(k)} = P_n^{(k)}(h)` satisfies
:math:`\sqrt n(\varphi_n^{(k)} - P(h)) \to N(0, \sigma_k^2)` with (``theory.md`` §2.2 [DER])

.. math::

    \sigma_k^2 = \big\| T_1 T_2 \cdots T_k \bar h \big\|^2_{L^2(P)}, \qquad
    \bar h = h - P(h), \qquad
    T_i = I - \Pi_X \ (i \text{ odd}), \quad T_i = I - \Pi_Y \ (i \text{ even}).

:func:`variance_operator` applies the operators directly (and solves the Bickel-Ritov-Wellner
least-squares problem for :math:`k = \infty`); :func:`variance_closed_form` uses the singular
system (``theory.md`` §2.3). The two routes share no code beyond the conditional means, so each
checks the other. Derivations: ``theory/variance.md``. All computations are NumPy float64.

Every variance here is quadratic in :math:`h`, so each function computes it for
:math:`h / 2^e`, with the exact power of two that brings :math:`\max|h|` into ``[0.5, 1)``, and
multiplies by :math:`4^e`: a finite ``h`` never overflows in :math:`h - P(h)` or its square (which
gave ``inf`` or, in the closed form, ``inf - inf = NaN``) and a tiny one keeps its digits. The
result is ``inf`` only when the variance itself exceeds the float64 range.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from raking.stats.operators import _cond_x, _cond_y, _singular_system, maximal_correlation
from raking.validation import check_function, check_joint, check_option, check_steps_or_inf

__all__ = [
    "asymptotic_variance",
    "efficient_variance",
    "ipwi_variance",
    "one_sided_ipw_variance",
    "variance_closed_form",
    "variance_decay_bound",
    "variance_operator",
]

_TIE_TOL = 1e-12
"""Singular values ``s_j >= 1 - _TIE_TOL`` (j >= 2) are treated as exactly 1 (reducible table)."""

_METHODS = ("closed_form", "operator")


def _unit(h: np.ndarray) -> tuple[np.ndarray, int]:
    """``(h / 2^e, e)`` with ``max|h / 2^e|`` in ``[0.5, 1)`` (exact; ``e = 0`` for ``h = 0``)."""
    top = float(np.max(np.abs(h)))
    e = math.frexp(top)[1] if top > 0 else 0
    return np.ldexp(h, -e), e


def _rescale(var: float, e: int) -> float:
    """``var * 4^e``: the variance of ``h`` from that of ``h / 2^e`` (``inf`` past float64)."""
    with np.errstate(over="ignore"):
        return float(np.ldexp(var, 2 * e))


def _center(P: np.ndarray, h: np.ndarray) -> np.ndarray:
    r""":math:`\bar h = h - P(h)`."""
    return h - float(np.sum(P * h))


def _residual_x(P: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`(I - \Pi_X) g`."""
    return g - _cond_x(P, g)[:, None]


def _residual_y(P: np.ndarray, g: np.ndarray) -> np.ndarray:
    r""":math:`(I - \Pi_Y) g`."""
    return g - _cond_y(P, g)[None, :]


def _additive_residual(Q: np.ndarray, g: np.ndarray) -> np.ndarray:
    r"""Residual of the :math:`L^2(Q)` projection of ``g`` on :math:`\{f(x) + g(y)\}`.

    Weighted least squares on the :math:`\sqrt{Q}`-weighted design of X and Y indicators; cells
    with :math:`Q = 0` have weight 0. Memory :math:`O(ml(m + l))`.
    """
    m, l = Q.shape
    cells = np.arange(m * l)
    design = np.zeros((m * l, m + l))
    design[cells, cells // l] = 1.0
    design[cells, m + cells % l] = 1.0
    w = np.sqrt(Q.ravel())
    coef, *_ = np.linalg.lstsq(w[:, None] * design, w * g.ravel(), rcond=None)
    return (g.ravel() - design @ coef).reshape(m, l)


def _norm2(P: np.ndarray, g: np.ndarray) -> float:
    r""":math:`\|g\|^2_{L^2(P)}`."""
    return float(np.sum(P * g * g))


def variance_operator(P: ArrayLike, h: ArrayLike, steps: int | float | None) -> float:
    r"""Asymptotic variance :math:`\sigma_k^2` by the operator product (``theory.md`` §2.2).

    .. math::

        \sigma_k^2 = \big\| T_1 T_2 \cdots T_k \bar h \big\|^2_{L^2(P)}, \qquad
        \sigma_\infty^2 = \min_{f, g} E_P\big[(\bar h - f(X) - g(Y))^2\big].

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    steps : int, math.inf or None
        Number :math:`k \ge 0` of single-marginal adjustments (odd = X-step); ``math.inf`` or
        ``None`` for the limit.

    Returns
    -------
    float
        :math:`\sigma_k^2` in squared units of ``h`` (variance of :math:`\sqrt n` times the
        estimation error).

    Notes
    -----
    ``theory.md`` §2.2 [DER]; ``theory/variance.md`` §3. :math:`T_k` is applied first (the
    last step acts on :math:`h` first), cost :math:`O(kml)`. For ``steps=inf`` the
    Bickel-Ritov-Wellner bound is solved as a weighted least-squares problem in the
    :math:`m + l` indicators of :math:`x` and :math:`y`, an independent route to
    :func:`variance_closed_form`.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.3, 0.1], [0.2, 0.4]])
    >>> h = np.array([[1.0, 0.0], [0.0, 0.0]])
    >>> round(variance_operator(P, h, 0), 6), round(variance_operator(P, h, 1), 6)
    (0.21, 0.075)
    """
    P = check_joint(P)
    h, e = _unit(check_function(h, P.shape))
    g = _center(P, h)
    k = check_steps_or_inf(steps)
    if k == math.inf:
        return _rescale(_norm2(P, _additive_residual(P, g)), e)
    for i in range(k, 0, -1):
        g = _residual_x(P, g) if i % 2 else _residual_y(P, g)
    return _rescale(_norm2(P, g), e)


def _closed_form(P: np.ndarray, h: np.ndarray, k: int | float) -> float:
    """:func:`variance_closed_form` on validated arguments, ``max|h|`` in ``[0.5, 1)`` or 0."""
    hbar = _center(P, h)
    var0 = _norm2(P, hbar)
    if k == 0:
        return var0
    system = _singular_system(P)
    hx, hy = (P * hbar).sum(axis=1), (P * hbar).sum(axis=0)
    a, b = system.alpha[:, 1:].T @ hx, system.beta[:, 1:].T @ hy  # E_P[h alpha_j], E_P[h beta_j]
    a_unpaired, b_unpaired = system.alpha_unpaired.T @ hx, system.beta_unpaired.T @ hy
    s = system.s[1:]
    tied = s >= 1.0 - _TIE_TOL  # alpha_j = beta_j in L2(P): one direction, removed by any step
    a_t, b_t = a[tied], b[tied]
    s, a, b = s[~tied], a[~tied], b[~tied]
    one_minus = (1.0 - s) * (1.0 + s)
    explained = (
        np.sum((a * a - 2.0 * s * a * b + b * b) / one_minus)
        + np.sum(((a_t + b_t) / 2.0) ** 2)
        + np.sum(a_unpaired**2)
        + np.sum(b_unpaired**2)
    )
    var_inf = max(var0 - float(explained), 0.0)
    if k == math.inf:
        return var_inf
    lead = b - s * a if k % 2 else a - s * b
    gap = np.sum(s ** (2 * (k - 1)) * lead * lead / one_minus)
    if k == 1:
        gap += np.sum(b_unpaired**2)
    return var_inf + float(gap)


def variance_closed_form(P: ArrayLike, h: ArrayLike, steps: int | float | None) -> float:
    r"""Asymptotic variance :math:`\sigma_k^2` from the singular system (``theory.md`` §2.3).

    With :math:`a_j = E_P[h\,\alpha_j(X)]`, :math:`b_j = E_P[h\,\beta_j(Y)]`, :math:`r = \min(m, l)`
    and :math:`\sigma_0^2 = \operatorname{Var}_P(h)`:

    .. math::

        \sigma_\infty^2 = \sigma_0^2
            - \sum_{j=2}^{r} \frac{a_j^2 - 2 s_j a_j b_j + b_j^2}{1 - s_j^2}
            - \sum_{\text{unpaired}} (a_j^2 \text{ or } b_j^2),

        \sigma_k^2 = \sigma_\infty^2 + \sum_{j=2}^{r} \frac{s_j^{2(k-1)}}{1 - s_j^2}
            \begin{cases} (b_j - s_j a_j)^2 & k \text{ odd} \\ (a_j - s_j b_j)^2 & k \text{ even}
            \end{cases} + \mathbf 1\{k = 1\} \sum_{\text{unpaired } \beta_j} b_j^2
            \quad (k \ge 1).

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    steps : int, math.inf or None
        :math:`k \ge 0`; ``math.inf`` or ``None`` for :math:`\sigma_\infty^2`.

    Returns
    -------
    float
        :math:`\sigma_k^2` in squared units of ``h``.

    Notes
    -----
    ``theory.md`` §2.3 [DER, verified against :func:`variance_operator`];
    ``theory/variance.md`` §4. Components with :math:`s_j \ge 1 - 10^{-12}` (:math:`j \ge 2`,
    reducible tables) are one direction :math:`\alpha_j = \beta_j` of :math:`L^2(P)`: they count
    :math:`a_j^2` in the explained part of :math:`\sigma_\infty^2` and 0 for every
    :math:`k \ge 1`, with no division by :math:`1 - s_j^2`. Unpaired :math:`\alpha_j` (only when
    :math:`m > l`) are removed by every X-step; unpaired :math:`\beta_j` (only when
    :math:`l > m`) survive only :math:`k = 1`. Near-reducible tables
    (:math:`1 - s_2 \approx 10^{-8}`) lose accuracy through the division.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.3, 0.1], [0.2, 0.4]])
    >>> h = np.array([[1.0, 0.0], [0.0, 0.0]])
    >>> round(variance_closed_form(P, h, 1), 6), round(variance_closed_form(P, h, np.inf), 6)
    (0.075, 0.048)
    """
    P = check_joint(P)
    h, e = _unit(check_function(h, P.shape))
    return _rescale(_closed_form(P, h, check_steps_or_inf(steps)), e)


def asymptotic_variance(
    P: ArrayLike, h: ArrayLike, steps: int | float | None, *, method: str = "closed_form"
) -> float:
    r"""Asymptotic variance :math:`\sigma_k^2` of :math:`\sqrt n(P_n^{(k)}(h) - P(h))`.

    .. math::

        \sigma_k^2 = \big\| T_1 T_2 \cdots T_k (h - P(h)) \big\|^2_{L^2(P)} .

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    steps : int, math.inf or None
        :math:`k \ge 0` single-marginal adjustments (odd = X-step); ``math.inf``/``None``: limit.
    method : {"closed_form", "operator"}
        ``"closed_form"``: :func:`variance_closed_form` (one SVD, any :math:`k` at the same
        cost); ``"operator"``: :func:`variance_operator` (direct product, cost :math:`O(kml)`).

    Returns
    -------
    float
        :math:`\sigma_k^2` in squared units of ``h``.

    Notes
    -----
    ``theory.md`` §2.2-2.3 [DER]; ``theory/variance.md`` §3-4. The two methods agree to
    about 1e-12 (``tests/test_variance.py``).
    """
    check_option(
        method,
        options=_METHODS,
        name="method",
        hint="Use 'closed_form' (SVD) or 'operator' (direct operator product).",
    )
    fn = variance_closed_form if method == "closed_form" else variance_operator
    return fn(P, h, steps)


def efficient_variance(P: ArrayLike, h: ArrayLike) -> float:
    r"""Efficient variance :math:`\sigma_\infty^2` for :math:`P(h)` when both marginals are known.

    .. math::

        \sigma_\infty^2 = \min_{f, g} E_P\big[(\bar h - f(X) - g(Y))^2\big]
            = \lim_{k \to \infty} \sigma_k^2 .

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.

    Returns
    -------
    float
        :math:`\sigma_\infty^2` in squared units of ``h``.

    Notes
    -----
    ``theory.md`` §2.3 and §9 [DER; Bickel, Ritov and Wellner 1991]; ``theory/variance.md`` §5.
    Computed by :func:`variance_closed_form` with ``steps=math.inf``.
    """
    return variance_closed_form(P, h, math.inf)


def ipwi_variance(P: ArrayLike, h: ArrayLike) -> float:
    r"""Asymptotic variance of the product-of-marginals IPWI estimator (correct marginals).

    .. math::

        \sigma^2_{\mathrm{IPWI}} = \big\| \bar h - \Pi_X \bar h - \Pi_Y \bar h \big\|^2_{L^2(P)},
        \qquad \hat\varphi = \frac1n \sum_i \frac{P_X(X_i)}{P_{n,X}(X_i)}
            \frac{P_Y(Y_i)}{P_{n,Y}(Y_i)} h(X_i, Y_i).

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.

    Returns
    -------
    float
        :math:`\sigma^2_{\mathrm{IPWI}}` in squared units of ``h``, with
        :math:`\sigma_\infty^2 \le \sigma^2_{\mathrm{IPWI}} \le \operatorname{Var}_P(h)`;
        equal to :math:`\sigma_\infty^2` when :math:`X \perp Y`.

    Notes
    -----
    ``theory.md`` §4.2. The IPWI formula itself is **our assumption [INF]**: the paper's exact
    equation is not confirmed. Its influence function :math:`\bar h - \Pi_X \bar h - \Pi_Y \bar h`
    is [DER] (same for the self-normalised version). In the singular basis each block
    :math:`c\alpha_j + d\beta_j` of :math:`\bar h` is mapped to :math:`-s_j(d\alpha_j + c\beta_j)`,
    so :math:`\sigma^2_{\mathrm{IPWI}} = \sigma_\infty^2 + \sum_j s_j^2 \|\text{block}_j\|^2`
    [DER]: it never exceeds :math:`\operatorname{Var}_P(h)` (``theory.md`` §4.2 says it can;
    that remark is wrong for correct marginals). ``theory/variance.md`` §7.
    """
    P = check_joint(P)
    h, e = _unit(check_function(h, P.shape))
    hbar = _center(P, h)
    influence = hbar - _cond_x(P, hbar)[:, None] - _cond_y(P, hbar)[None, :]
    return _rescale(_norm2(P, influence), e)


def one_sided_ipw_variance(P: ArrayLike, h: ArrayLike, side: str) -> float:
    r"""Asymptotic variance of one-sided inverse-probability weighting on X (or on Y).

    .. math::

        \hat\varphi_X = \frac1n \sum_i \frac{P_X(X_i)}{P_{n,X}(X_i)} h(X_i, Y_i) = P_n^{(1)}(h),
        \qquad \sigma^2_X = \big\| (I - \Pi_X) \bar h \big\|^2_{L^2(P)} = \sigma_1^2,

    and with the roles of :math:`X` and :math:`Y` exchanged for ``side="y"``.

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    side : {"x", "y"}
        The marginal used for the weights.

    Returns
    -------
    float
        The variance in squared units of ``h``.

    Notes
    -----
    [DER] ``theory/variance.md`` §8: :math:`\hat\varphi_X = \sum_x P_X(x)\, P_n(h 1_x) /
    P_{n,X}(x)` is exactly one X-step of balancing; its linearisation gives the influence
    function :math:`\bar h - \Pi_X \bar h`, i.e. :math:`\sigma_1^2` of ``theory.md`` §2.2.
    """
    check_option(
        side,
        options=("x", "y"),
        name="side",
        hint="It is the marginal whose known probabilities weight the sample ('x' = rows of P, "
        "'y' = columns).",
    )
    P = check_joint(P)
    h, e = _unit(check_function(h, P.shape))
    hbar = _center(P, h)
    return _rescale(_norm2(P, _residual_x(P, hbar) if side == "x" else _residual_y(P, hbar)), e)


def variance_decay_bound(P: ArrayLike, h: ArrayLike, steps: int | float | None) -> float:
    r"""Upper bound on :math:`\sigma_k^2` from the spectral gap (geometric decay, :math:`k \ge 1`).

    .. math::

        \sigma_k^2 \le \sigma_\infty^2 + s_2^{2(k-1)} \big(\sigma_0^2 - \sigma_\infty^2\big).

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    steps : int, math.inf or None
        :math:`k \ge 1`; ``math.inf``/``None`` gives :math:`\sigma_\infty^2` when
        :math:`s_2 < 1`.

    Returns
    -------
    float
        The bound in squared units of ``h``. Trivial (:math:`= \sigma_0^2`) for reducible tables
        (:math:`s_2 = 1`).

    Notes
    -----
    ``theory.md`` §2.3 [DER]; ``theory/variance.md`` §6: every term of the closed form satisfies
    :math:`(b_j - s_j a_j)^2 \le a_j^2 - 2 s_j a_j b_j + b_j^2` and
    :math:`s_j^{2(k-1)} \le s_2^{2(k-1)}`.
    """
    k = check_steps_or_inf(steps)
    if k < 1:
        raise ValueError(
            f"steps must be >= 1 for the decay bound, got {k}; at k = 0 the variance is "
            "Var_P(h) itself (use asymptotic_variance(P, h, 0))."
        )
    P = check_joint(P)
    h, e = _unit(check_function(h, P.shape))
    var0, var_inf = _closed_form(P, h, 0), _closed_form(P, h, math.inf)
    s2 = maximal_correlation(P)
    return _rescale(var_inf + s2 ** (2 * (k - 1)) * (var0 - var_inf), e)
