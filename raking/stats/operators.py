r"""Conditional-mean operators, projections and the singular system of a known joint table.

For a joint pmf :math:`P` on a finite product space :math:`\mathcal X \times \mathcal Y`, given as
an ``(m, l)`` array (rows :math:`x`, columns :math:`y`), this module builds the objects of
``theory.md`` §2.1: the conditional-mean operators :math:`\mu_X, \mu_Y`, the orthogonal
projections :math:`\Pi_X, \Pi_Y` of :math:`L^2(P)` onto functions of :math:`x` and of :math:`y`,
and the singular system :math:`(s_j, \alpha_j, \beta_j)`. The derivations are in
``theory/variance.md`` §1-2.

This is the statistics layer: every function converts its input with ``np.asarray`` and computes
in NumPy float64, whatever array type it receives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from raking.validation import check_function, check_joint

__all__ = [
    "SingularSystem",
    "conditional_mean_operators",
    "maximal_correlation",
    "project_x",
    "project_y",
    "singular_system",
    "singular_values",
]

# --------------------------------------------------------------------------------------------
# Unchecked kernels (arguments already validated)
# --------------------------------------------------------------------------------------------


def _cond_x(P: np.ndarray, h: np.ndarray) -> np.ndarray:
    r""":math:`E_P[h \mid X = x]` as an ``(m,)`` vector."""
    return (P * h).sum(axis=1) / P.sum(axis=1)


def _cond_y(P: np.ndarray, h: np.ndarray) -> np.ndarray:
    r""":math:`E_P[h \mid Y = y]` as an ``(l,)`` vector."""
    return (P * h).sum(axis=0) / P.sum(axis=0)


def _orthogonal_complement(v: np.ndarray) -> np.ndarray:
    """Orthonormal basis (columns) of the complement of the unit vector ``v``."""
    q, _ = np.linalg.qr(v[:, None], mode="complete")
    return q[:, 1:]


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Sign of each column that makes its largest-magnitude entry positive."""
    if vectors.shape[1] == 0:
        return np.ones(0)
    rows = np.argmax(np.abs(vectors), axis=0)
    return np.where(vectors[rows, np.arange(vectors.shape[1])] < 0, -1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def conditional_mean_operators(P: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r"""Matrices of the conditional-mean operators :math:`\mu_X` and :math:`\mu_Y`.

    .. math::

        \mu_X = D_X^{-1} P \quad (m \times l), \qquad \mu_Y = D_Y^{-1} P^\top \quad (l \times m),

    so that ``mu_X @ g`` is :math:`x \mapsto E_P[g(Y) \mid X = x]` for a function ``g`` of
    :math:`y` (an ``(l,)`` vector) and ``mu_Y @ f`` is :math:`y \mapsto E_P[f(X) \mid Y = y]`.

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf of :math:`(X, Y)`: non-negative, sums to 1, no empty row or column.

    Returns
    -------
    mu_X : ndarray, shape (m, l)
        Row-stochastic matrix of :math:`\mu_X: L^2(P_Y) \to L^2(P_X)` (float64).
    mu_Y : ndarray, shape (l, m)
        Row-stochastic matrix of :math:`\mu_Y: L^2(P_X) \to L^2(P_Y)` (float64).

    Notes
    -----
    ``theory.md`` §2.1 [DER]; ``theory/variance.md`` §1. The two operators are adjoint:
    :math:`\langle f, \mu_X g\rangle_{P_X} = E_P[f(X) g(Y)] = \langle \mu_Y f, g\rangle_{P_Y}`.

    Examples
    --------
    >>> import numpy as np
    >>> mu_x, mu_y = conditional_mean_operators(np.array([[0.3, 0.1], [0.2, 0.4]]))
    >>> mu_x.sum(axis=1), mu_y.shape
    (array([1., 1.]), (2, 2))
    """
    P = check_joint(P)
    return P / P.sum(axis=1)[:, None], P.T / P.sum(axis=0)[:, None]


def project_x(P: ArrayLike, h: ArrayLike) -> np.ndarray:
    r"""Orthogonal projection :math:`\Pi_X h = E_P[h(X, Y) \mid X]` in :math:`L^2(P)`.

    .. math::

        (\Pi_X h)(x, y) = \frac{\sum_{y'} P(x, y')\, h(x, y')}{P_X(x)} .

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`, any units.

    Returns
    -------
    ndarray, shape (m, l)
        :math:`E_P[h \mid X = x]` broadcast along :math:`y` (float64, units of ``h``).

    Notes
    -----
    ``theory.md`` §2.1 [DER]; ``theory/variance.md`` §1. Idempotent and self-adjoint in
    :math:`L^2(P)`; on functions of :math:`y` it coincides with :math:`\mu_X`.
    """
    P = check_joint(P)
    h = check_function(h, P.shape)
    return np.broadcast_to(_cond_x(P, h)[:, None], P.shape).copy()


def project_y(P: ArrayLike, h: ArrayLike) -> np.ndarray:
    r"""Orthogonal projection :math:`\Pi_Y h = E_P[h(X, Y) \mid Y]` in :math:`L^2(P)`.

    .. math::

        (\Pi_Y h)(x, y) = \frac{\sum_{x'} P(x', y)\, h(x', y)}{P_Y(y)} .

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`, any units.

    Returns
    -------
    ndarray, shape (m, l)
        :math:`E_P[h \mid Y = y]` broadcast along :math:`x` (float64, units of ``h``).

    Notes
    -----
    ``theory.md`` §2.1 [DER]; ``theory/variance.md`` §1.
    """
    P = check_joint(P)
    h = check_function(h, P.shape)
    return np.broadcast_to(_cond_y(P, h)[None, :], P.shape).copy()


@dataclass(frozen=True, slots=True)
class SingularSystem:
    r"""Singular system of the pair :math:`(\mu_X, \mu_Y)` in :math:`L^2(P_X)`, :math:`L^2(P_Y)`.

    With :math:`r = \min(m, l)`, the paired part satisfies :math:`\mu_Y \alpha_j = s_j \beta_j`,
    :math:`\mu_X \beta_j = s_j \alpha_j`, :math:`E_P[\alpha_i(X) \beta_j(Y)] = s_j \delta_{ij}`.
    The unpaired columns complete the bases; they lie in the kernels of :math:`\mu_Y` (for
    :math:`\alpha`) and :math:`\mu_X` (for :math:`\beta`). All arrays are float64, read-only.

    Attributes
    ----------
    s : ndarray, shape (r,)
        Singular values, descending, :math:`s_1 = 1 \ge s_2 \ge \dots \ge 0` (dimensionless).
    alpha : ndarray, shape (m, r)
        Column :math:`j` is :math:`\alpha_j(x)`, orthonormal in :math:`L^2(P_X)`;
        :math:`\alpha_1 \equiv 1`.
    beta : ndarray, shape (l, r)
        Column :math:`j` is :math:`\beta_j(y)`, orthonormal in :math:`L^2(P_Y)`;
        :math:`\beta_1 \equiv 1`.
    alpha_unpaired : ndarray, shape (m, m - r)
        The rest of an orthonormal basis of :math:`L^2(P_X)` (empty unless :math:`m > l`).
    beta_unpaired : ndarray, shape (l, l - r)
        The rest of an orthonormal basis of :math:`L^2(P_Y)` (empty unless :math:`l > m`).
    """

    s: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    alpha_unpaired: np.ndarray
    beta_unpaired: np.ndarray


def _singular_system(P: np.ndarray) -> SingularSystem:
    """:func:`singular_system` on a validated table."""
    m, l = P.shape
    r = min(m, l)
    sx, sy = np.sqrt(P.sum(axis=1)), np.sqrt(P.sum(axis=0))
    M = P / sx[:, None] / sy[None, :]
    # M maps sqrt(P_Y) to sqrt(P_X) with singular value 1 and the orthogonal complements into each
    # other, so the SVD of the deflated block gives s_2, s_3, ... with alpha_1 = beta_1 = 1 exact,
    # also for reducible tables where s = 1 is a repeated singular value.
    qx, qy = _orthogonal_complement(sx), _orthogonal_complement(sy)
    u, s_rest, vt = np.linalg.svd(qx.T @ M @ qy, full_matrices=True)
    u, v = qx @ u, qy @ vt.T
    sign = _fix_signs(u[:, : r - 1])
    u[:, : r - 1] *= sign
    v[:, : r - 1] *= sign
    u[:, r - 1 :] *= _fix_signs(u[:, r - 1 :])
    v[:, r - 1 :] *= _fix_signs(v[:, r - 1 :])
    alpha = np.column_stack([np.ones(m), u[:, : r - 1] / sx[:, None]])
    beta = np.column_stack([np.ones(l), v[:, : r - 1] / sy[:, None]])
    fields = (
        np.concatenate([[1.0], np.clip(s_rest, 0.0, 1.0)]),
        alpha,
        beta,
        u[:, r - 1 :] / sx[:, None],
        v[:, r - 1 :] / sy[:, None],
    )
    for arr in fields:
        arr.setflags(write=False)
    return SingularSystem(*fields)


def singular_system(P: ArrayLike) -> SingularSystem:
    r"""Singular value decomposition of the conditional-mean operators of ``P``.

    .. math::

        D_X^{-1/2} P D_Y^{-1/2} = U S V^\top, \qquad
        \alpha_j = D_X^{-1/2} u_j, \quad \beta_j = D_Y^{-1/2} v_j .

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).

    Returns
    -------
    SingularSystem
        ``s`` (all :math:`\min(m, l)` values, descending, ``s[0] == 1``), ``alpha``, ``beta``
        and the unpaired completions of both bases. Signs: :math:`\alpha_1 = \beta_1 = +1`; for
        :math:`j \ge 2` the largest-magnitude entry of :math:`u_j` is positive and
        :math:`\beta_j` carries the same sign, so that :math:`\mu_Y \alpha_j = s_j \beta_j`.

    Notes
    -----
    ``theory.md`` §2.1 [DER]; ``theory/variance.md`` §2. The top pair is fixed analytically
    (:math:`u_1 = \sqrt{P_X}`, :math:`v_1 = \sqrt{P_Y}`) and the SVD is taken of the deflated
    block on the orthogonal complements, so that :math:`\alpha_1 \equiv 1` holds exactly even
    when :math:`s_2 = 1` (reducible, block-diagonal tables). Singular vectors of repeated
    singular values are determined only up to a rotation within their eigenspace.

    Examples
    --------
    >>> import numpy as np
    >>> sys = singular_system(np.array([[0.3, 0.1], [0.2, 0.4]]))
    >>> np.round(sys.s, 6), np.round(sys.alpha[:, 0], 6)
    (array([1.      , 0.408248]), array([1., 1.]))
    """
    return _singular_system(check_joint(P))


def singular_values(P: ArrayLike) -> np.ndarray:
    r"""All :math:`\min(m, l)` singular values :math:`1 = s_1 \ge s_2 \ge \dots \ge 0` of ``P``.

    .. math::

        s_j = \sigma_j\big(D_X^{-1/2} P D_Y^{-1/2}\big),

    equivalently :math:`s_j^2` are the eigenvalues of :math:`\mu_X \mu_Y`.

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).

    Returns
    -------
    ndarray, shape (min(m, l),)
        Descending, dimensionless, float64; ``s[0] == 1`` exactly.

    Notes
    -----
    ``theory.md`` §2.1 [DER]; ``theory/variance.md`` §2. Computed as in
    :func:`singular_system`.
    """
    return np.array(singular_system(P).s)


def maximal_correlation(P: ArrayLike) -> float:
    r"""Hirschfeld-Gebelein-Rényi maximal correlation :math:`s_2` of :math:`(X, Y) \sim P`.

    .. math::

        s_2 = \sup_{f, g} \operatorname{corr}_P\big(f(X), g(Y)\big),

    the cosine of the angle between :math:`L^2_0(P_X)` and :math:`L^2_0(P_Y)` in
    :math:`L^2(P)`.

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf (non-negative, sums to 1, no empty row or column).

    Returns
    -------
    float
        :math:`s_2 \in [0, 1]`; 0 when :math:`\min(m, l) = 1`. It is 0 iff :math:`X \perp Y`
        and 1 iff the table is reducible (block-diagonal after permutation).

    Notes
    -----
    ``theory.md`` §2.1 [DER]; ``theory/variance.md`` §2. It is also the per-step contraction
    ratio (squared) of the variance gap, see :func:`raking.stats.variance.variance_decay_bound`.
    """
    s = singular_values(P)
    return float(s[1]) if s.size > 1 else 0.0
