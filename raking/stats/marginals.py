r"""Count tables, marginals, multinomial sampling and misspecified target marginals.

This is the statistics layer: every function works in NumPy (float64 for probabilities, int64 for
counts), whatever array type it receives. Count tables put the ``m`` categories of :math:`X` on
the second-to-last axis and the ``l`` categories of :math:`Y` on the last; leading axes index
Monte Carlo replicates and are never looped over in Python.

The misspecification models (:func:`mixture_noise`, :func:`multiplicative_noise`) are **our
assumptions** (``theory.md`` §4.3 [INF]): the paper's noise model is not confirmed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from raking.validation import (
    check_codes,
    check_nonnegative,
    check_option,
    check_positive_int,
    check_probability,
    check_seed,
    check_shape,
)

__all__ = [
    "counts_from_codes",
    "marginals",
    "misspecify",
    "mixture_noise",
    "multiplicative_noise",
    "sample_counts",
]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None
"""Anything :func:`numpy.random.default_rng` accepts as a seed."""

_MODELS = ("mixture", "multiplicative")
_EPS_HINT = "It is the noise level."


# --------------------------------------------------------------------------------------------
# Counts and marginals
# --------------------------------------------------------------------------------------------


def counts_from_codes(x: ArrayLike, y: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    r"""Count table of integer-coded pairs :math:`(X_i, Y_i)`.

    .. math::

        N(x, y) = \#\{i : X_i = x,\ Y_i = y\} = n\,P_n(x, y).

    Parameters
    ----------
    x, y : array_like of int, shape ``(n,)`` or ``(R, n)``
        Category codes, ``x`` in ``[0, m)`` and ``y`` in ``[0, l)``, of equal shape. A 2-D input
        holds ``R`` replicates of ``n`` samples each.
    shape : tuple of int
        ``(m, l)``, the number of categories of X and of Y.

    Returns
    -------
    numpy.ndarray of int64, shape ``(m, l)`` or ``(R, m, l)``
        The counts (one table per replicate), computed with a single ``numpy.bincount``.

    Examples
    --------
    >>> counts_from_codes([0, 1, 1], [2, 0, 0], (2, 3))
    array([[0, 0, 1],
           [2, 0, 0]])
    """
    m, l = check_shape(shape)
    x = check_codes(x, m, name="x")
    y = check_codes(y, l, name="y")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (one code pair per sample), got {x.shape} and "
            f"{y.shape}."
        )
    flat = x * l + y
    if x.ndim == 1:
        return np.bincount(flat, minlength=m * l).reshape(m, l)
    reps = x.shape[0]
    flat = flat + (m * l) * np.arange(reps, dtype=np.int64)[:, None]
    return np.bincount(flat.ravel(), minlength=reps * m * l).reshape(reps, m, l)


def marginals(P: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Row and column marginals ``(P_X, P_Y)`` of a (batched) table.

    Parameters
    ----------
    P : array_like, shape ``(..., m, l)``
        Joint probabilities or counts.

    Returns
    -------
    tuple of numpy.ndarray
        ``P.sum(-1)`` of shape ``(..., m)`` and ``P.sum(-2)`` of shape ``(..., l)``.
    """
    arr = np.asarray(P)
    if arr.ndim < 2:
        raise ValueError(
            f"P must have at least 2 axes (..., m, l), got shape {arr.shape}. Pass the joint "
            "table with X on the rows and Y on the columns."
        )
    return arr.sum(axis=-1), arr.sum(axis=-2)


def sample_counts(P: ArrayLike, n: int, reps: int, *, seed: SeedLike) -> np.ndarray:
    r"""Draw ``reps`` independent count tables of ``n`` i.i.d. pairs from the joint pmf ``P``.

    .. math::

        N^{(r)} \sim \mathrm{Multinomial}(n, P), \qquad r = 1, \dots, R.

    Parameters
    ----------
    P : array_like, shape (m, l)
        Joint pmf: non-negative, sums to 1.
    n : int
        Sample size per replicate.
    reps : int
        Number of replicates ``R``.
    seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
        Passed to :func:`numpy.random.default_rng`; the same seed gives the same tables.

    Returns
    -------
    numpy.ndarray of int64, shape ``(reps, m, l)``
        One table per replicate, each summing to ``n``.
    """
    P = check_probability(P, ndim=2, name="P")
    P = P / P.sum()
    n = check_positive_int(n, name="n")
    reps = check_positive_int(reps, name="reps")
    draws = check_seed(seed).multinomial(n, P.ravel(), size=reps)
    return draws.reshape(reps, *P.shape).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# Misspecification models (theory.md §4.3, [INF])
# --------------------------------------------------------------------------------------------


def mixture_noise(p: ArrayLike, eps: float) -> np.ndarray:
    r"""Mix a probability vector with the uniform distribution.

    .. math::

        \tilde p = (1 - \varepsilon)\, p + \varepsilon\, \mathrm{Unif}, \qquad
        \varepsilon \in [0, 1].

    Parameters
    ----------
    p : array_like, shape (m,)
        Probability vector (non-negative, sums to 1).
    eps : float
        Noise level in ``[0, 1]``; ``0`` returns ``p``.

    Returns
    -------
    numpy.ndarray, shape (m,)
        The misspecified marginal, a probability vector.

    Notes
    -----
    ``theory.md`` §4.3: this noise model is **our assumption [INF]**, not the paper's confirmed
    one. It is deterministic and moves every category towards :math:`1/m`.
    """
    p = check_probability(p, name="p")
    p = p / p.sum()
    eps = check_nonnegative(eps, name="eps", upper=1.0, hint=_EPS_HINT)
    return (1.0 - eps) * p + eps / p.size


def multiplicative_noise(
    p: ArrayLike, eps: float, *, seed: SeedLike, size: int | None = None
) -> np.ndarray:
    r"""Perturb a probability vector by log-normal multiplicative noise.

    .. math::

        \tilde p \propto p \odot \exp(\varepsilon\, \xi), \qquad \xi \sim N(0, I_m).

    Parameters
    ----------
    p : array_like, shape (m,)
        Probability vector (non-negative, sums to 1). Zero entries stay zero.
    eps : float
        Noise scale, ``>= 0``; ``0`` returns ``p``.
    seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
        Passed to :func:`numpy.random.default_rng`.
    size : int or None
        ``None``: one draw, shape ``(m,)``. An int: ``size`` independent draws (e.g. one per
        Monte Carlo replicate), shape ``(size, m)``.

    Returns
    -------
    numpy.ndarray
        Probability vector(s), each summing to 1.

    Notes
    -----
    ``theory.md`` §4.3: this noise model is **our assumption [INF]**, not the paper's confirmed
    one. Whether the noise is drawn once per configuration or once per replicate is the caller's
    choice (``size``).
    """
    p = check_probability(p, name="p")
    p = p / p.sum()
    eps = check_nonnegative(eps, name="eps", hint=_EPS_HINT)
    shape = p.shape if size is None else (check_positive_int(size, name="size"), p.size)
    xi = check_seed(seed).standard_normal(shape)
    out = p * np.exp(eps * xi)
    return out / out.sum(axis=-1, keepdims=True)


def misspecify(
    p: ArrayLike, eps: float, *, model: str = "mixture", seed: SeedLike = None
) -> np.ndarray:
    r"""A misspecified target marginal under the chosen noise model.

    Parameters
    ----------
    p : array_like, shape (m,)
        The true marginal (probability vector).
    eps : float
        Noise level (``[0, 1]`` for ``"mixture"``, ``>= 0`` for ``"multiplicative"``).
    model : {"mixture", "multiplicative"}
        :func:`mixture_noise` (deterministic) or :func:`multiplicative_noise` (random, uses
        ``seed``).
    seed : int, numpy.random.SeedSequence, numpy.random.Generator or None
        Seed of the multiplicative noise; ignored by ``"mixture"``.

    Returns
    -------
    numpy.ndarray, shape (m,)
        The misspecified marginal :math:`\tilde p`.

    Notes
    -----
    ``theory.md`` §4.3 [INF]: both models are our documented assumptions; the paper's noise
    model and grid are not confirmed.

    Examples
    --------
    >>> misspecify([0.5, 0.5], 0.1)
    array([0.5, 0.5])
    """
    check_option(
        model,
        options=_MODELS,
        name="model",
        hint="'mixture' mixes with the uniform distribution; 'multiplicative' applies "
        "log-normal noise.",
    )
    if model == "mixture":
        return mixture_noise(p, eps)
    return multiplicative_noise(p, eps, seed=seed)
