r"""The joint pmfs and functions ``h`` of the experiments (``theory.md`` §5).

:func:`build_design` turns a grid point into a rank-one :class:`Design`
:math:`P = P_X P_Y (1 + s\,\alpha\beta)` with :math:`s_2 = s` exactly, using
:func:`two_valued_direction`; :data:`DEPENDENCE_DESIGN` and :data:`REFERENCE_DESIGN` are the
fixed parts of the ``dependence`` and the ``theory_vs_mc`` / ``mse_vs_n`` / ``mse_vs_k`` designs
[INF]. :func:`illustration_joint` is the authors' 50 x 50 example [CODE].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raking.stats.theory import singular_values

__all__ = [
    "DEPENDENCE_DESIGN",
    "REFERENCE_DESIGN",
    "Design",
    "build_design",
    "illustration_joint",
    "two_valued_direction",
]

DEPENDENCE_DESIGN: dict[str, Any] = {
    "m": 10,
    "l": 10,
    "marginals": "dirichlet",
    "marginal_seed": 3,
    "concentration": 2.0,
    "floor": 0.03,
    "h_seed": 2024,
    "h_align": 1.0,
}
"""The fixed part of the ``dependence`` design [INF]; see :func:`build_design`."""

REFERENCE_DESIGN: dict[str, Any] = {
    "m": 6,
    "l": 6,
    "marginals": "uniform",
    "s": 0.8,
    "h_seed": 2024,
    "h_align": 1.0,
}
"""The design of ``theory_vs_mc``, ``mse_vs_n`` and ``mse_vs_k`` [INF]: 6 x 6, uniform
marginals, :math:`s_2 = 0.8`; see :func:`build_design`."""


# --------------------------------------------------------------------------------------------
# Designs (theory.md §5, [INF])
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    r"""A joint pmf with a known dependence level and the function ``h`` of an experiment.

    Attributes
    ----------
    P : numpy.ndarray, shape (m, l)
        Joint pmf :math:`P = P_X P_Y (1 + s\,\alpha\beta)`.
    h : numpy.ndarray, shape (m, l)
        Function values :math:`h(x, y)`.
    p_x, p_y : numpy.ndarray
        The marginals of ``P`` (probability vectors).
    alpha, beta : numpy.ndarray
        Centred unit-norm directions in :math:`L^2(P_X)` and :math:`L^2(P_Y)`.
    s : float
        The requested dependence level.
    s2 : float
        :math:`s_2` of ``P`` by :func:`raking.stats.theory.singular_values` (equal to ``s``).
    s_max : float
        :math:`1 / (\max|\alpha| \max|\beta|)`, the largest ``s`` giving a pmf.
    """

    P: np.ndarray
    h: np.ndarray
    p_x: np.ndarray
    p_y: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    s: float
    s2: float
    s_max: float


def two_valued_direction(p: np.ndarray) -> np.ndarray:
    r"""A two-valued direction :math:`\alpha \perp 1` of unit norm in :math:`L^2(p)`.

    The categories are sorted by decreasing mass and split after the prefix :math:`A` whose mass
    :math:`q` is closest to 1/2; then

    .. math::

        \alpha = \sqrt{(1 - q)/q} \ \text{on } A, \qquad -\sqrt{q / (1 - q)}\ \text{elsewhere},

    so :math:`E_p[\alpha] = 0`, :math:`E_p[\alpha^2] = 1` and :math:`\max|\alpha|` is close to 1.

    Parameters
    ----------
    p : numpy.ndarray, shape (m,)
        Probability vector with ``m >= 2`` positive entries.

    Returns
    -------
    numpy.ndarray, shape (m,)

    Notes
    -----
    [INF] A small :math:`\max|\alpha|` lets :math:`s` range over almost all of :math:`[0, 1)`.
    Putting the heaviest categories on one side makes :math:`\alpha` correlate with
    :math:`p - \mathrm{Unif}`, the direction in which :func:`raking.stats.marginals.mixture_noise`
    moves a marginal, so the misspecification bias of ``dependence`` is of order
    :math:`\varepsilon` rather than a chance cancellation.

    Examples
    --------
    >>> import numpy as np
    >>> two_valued_direction(np.full(4, 0.25))
    array([ 1.,  1., -1., -1.])
    """
    order = np.argsort(-p, kind="stable")
    prefix = np.cumsum(p[order])[:-1]
    j = int(np.argmin(np.abs(prefix - 0.5)))
    q = float(prefix[j])
    on_a = np.zeros(p.size, dtype=bool)
    on_a[order[: j + 1]] = True
    return np.where(on_a, math.sqrt((1.0 - q) / q), -math.sqrt(q / (1.0 - q)))


def build_design(point: dict) -> Design:
    r"""The joint pmf, marginals and function ``h`` described by a grid point.

    .. math::

        P(x, y) = P_X(x) P_Y(y) \big[1 + s\, \alpha(x) \beta(y)\big], \qquad
        h(x, y) = a \big(\alpha(x) + \beta(y)\big) + Z(x, y), \quad Z \overset{iid}{\sim} N(0, 1),

    with :math:`\alpha, \beta` from :func:`two_valued_direction`. Then :math:`P` has marginals
    :math:`P_X, P_Y` and singular values :math:`(1, s, 0, \dots)`, so :math:`s_2 = s` exactly;
    this is checked with :func:`raking.stats.theory.singular_values`.

    Parameters
    ----------
    point : dict
        Keys ``m``, ``l``, ``s``, ``marginals`` (``"uniform"`` or ``"dirichlet"``: then also
        ``marginal_seed``, ``concentration`` and ``floor``, giving
        ``floor + (1 - m floor) Dirichlet(concentration)``, every entry at least ``floor``),
        ``h_seed`` (seed of :math:`Z`) and ``h_align`` (:math:`a`).

    Returns
    -------
    Design

    Raises
    ------
    ValueError
        If ``s`` is outside :math:`[0, s_{\max}]` (``P`` would have negative entries).
    RuntimeError
        If the computed :math:`s_2` differs from ``s`` by more than 1e-9.

    Notes
    -----
    ``theory.md`` §5 proposes this rank-one design [INF]; the paper's construction is not
    confirmed. The component :math:`a(\alpha + \beta)` of ``h`` is our choice [INF]: with a purely
    random ``h`` only one of the :math:`(m-1)+(l-1)` directions of ``h`` sees the dependence, and
    the IPWI and balanced estimators then differ by a few percent at every ``s`` (10 x 10: k = 2
    vs the limit within 2% at :math:`s = 0.95`).
    """
    m, l, s = int(point["m"]), int(point["l"]), float(point["s"])
    if point["marginals"] == "uniform":
        p_x, p_y = np.full(m, 1.0 / m), np.full(l, 1.0 / l)
    elif point["marginals"] == "dirichlet":
        rng = np.random.default_rng(int(point["marginal_seed"]))
        floor, conc = float(point["floor"]), float(point["concentration"])
        if not 0.0 <= floor * max(m, l) < 1.0:
            raise ValueError(
                f"floor={floor} leaves no mass to spread over {max(m, l)} categories; use "
                f"floor < {1 / max(m, l):.3g}."
            )
        p_x = floor + (1.0 - m * floor) * rng.dirichlet(np.full(m, conc))
        p_y = floor + (1.0 - l * floor) * rng.dirichlet(np.full(l, conc))
    else:
        raise ValueError(
            f"marginals must be 'uniform' or 'dirichlet', got {point['marginals']!r}. Fix the "
            "grid point."
        )
    alpha, beta = two_valued_direction(p_x), two_valued_direction(p_y)
    s_max = 1.0 / (float(np.abs(alpha).max()) * float(np.abs(beta).max()))
    if not 0.0 <= s <= s_max:
        raise ValueError(
            f"s={s} is outside [0, s_max={s_max:.4f}]: the table P_X P_Y (1 + s alpha beta) "
            "would have negative entries. Choose s in that range."
        )
    P = np.outer(p_x, p_y) * (1.0 + s * np.outer(alpha, beta))
    P = np.maximum(P, 0.0)
    P /= P.sum()
    s2 = float(singular_values(P)[1])
    if abs(s2 - s) > 1e-9:
        raise RuntimeError(f"s_2 = {s2} differs from the requested s = {s}; the design is wrong.")
    z = np.random.default_rng(int(point["h_seed"])).standard_normal((m, l))
    h = float(point["h_align"]) * (alpha[:, None] + beta[None, :]) + z
    return Design(P=P, h=h, p_x=p_x, p_y=p_y, alpha=alpha, beta=beta, s=s, s2=s2, s_max=s_max)


# --------------------------------------------------------------------------------------------
# illustration: the authors' 50 x 50 example (theory.md §5, [CODE])
# --------------------------------------------------------------------------------------------


def illustration_joint(
    m: int = 50, *, bias: float = 0.5, binom_p: float = 0.7, weight: float = 0.8
) -> np.ndarray:
    r"""The joint pmf of the authors' ``illustration.ipynb`` (``ronakdm/balancing``).

    .. math::

        K(i, j) \propto (i + 1)(j + 1) + \text{bias} \cdot m \ \ \text{(normalised over i)},
        \quad p(j) = w\,\mathrm{Binom}(m - 1, p_B)(j) + (1 - w)/m, \quad P(i, j) = K(i, j)\,p(j).

    Parameters
    ----------
    m : int
        Number of categories of each index.
    bias, binom_p, weight : float
        The constants 0.5, 0.7 and 0.8 of the notebook.

    Returns
    -------
    numpy.ndarray, shape (m, m)
        ``P[i, j]``: X = i (rows, marginal ``P.sum(1)``), Y = j (columns, marginal ``p``).

    Notes
    -----
    ``theory.md`` §5 [CODE]. The notebook's ``np.random.seed(123)`` drives its sample; here the
    sample comes from the sweep engine's seed instead.

    Examples
    --------
    >>> P = illustration_joint()
    >>> P.shape, round(float(P.sum()), 12)
    ((50, 50), 1.0)
    """
    idx = np.arange(1, m + 1, dtype=np.float64)
    K = np.outer(idx, idx) + bias * m
    K /= K.sum(axis=0, keepdims=True)
    j = np.arange(m)
    binom = np.array([math.comb(m - 1, int(v)) for v in j], dtype=np.float64)
    binom *= binom_p**j * (1.0 - binom_p) ** (m - 1 - j)
    p = weight * binom + (1.0 - weight) / m
    return K * p[None, :]
