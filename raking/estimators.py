r"""Estimators of a linear functional :math:`P(h)` from a count table: balanced, empirical, IPW.

For a count table :math:`N` of ``n`` pairs (``(m, l)``, or ``(..., m, l)`` for Monte Carlo
replicates) and a function :math:`h` given as an ``(m, l)`` table, the k-step balanced estimator
is (``theory.md`` §1.2-1.3)

.. math::

    \varphi_n^{(k)} = P_n^{(k)}(h) = \sum_{x, y} h(x, y)\, P_n^{(k)}(x, y),
    \qquad P_n^{(0)} = P_n = N / n,

where step :math:`k` rescales the X-marginal (odd k) or the Y-marginal (even k) to its target.
All replicates are balanced in one batched kernel call. This is the statistics layer: inputs are
converted to NumPy and every computation is in float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from raking._array_api import Array, device, get_xp
from raking.kernel import _ipf, _run
from raking.marginals import counts_from_codes
from raking.results import BalancedEstimates, BatchEstimates, Estimate, ScalingResult
from raking.validation import (
    check_check_every,
    check_codes,
    check_counts,
    check_function,
    check_max_steps,
    check_option,
    check_policy,
    check_shape,
    check_steps,
    check_tol,
    check_xy_targets,
    find_empty_categories,
    raise_on_empty_categories,
)
from raking.variance import asymptotic_variance

__all__ = [
    "balanced_estimate",
    "empirical_estimate",
    "estimate",
    "ipw_estimate",
]

_SIDES = {"both": (0, 1), "x": (0,), "y": (1,)}
_SE_PLUGIN = "plug-in asymptotic sigma_k^2 / n [DER]"
_SE_FALLBACK = "plug-in Var_n(h) / n (empirical fallback; SE ignores raking)"


# --------------------------------------------------------------------------------------------
# Private computation (validated inputs only)
# --------------------------------------------------------------------------------------------


def _shares(targets: list[Array], *, xp: Any) -> list[Array]:
    """Validated targets (``(n_i,)`` or ``(*batch, n_i)``) divided by their totals."""
    return [t / xp.sum(t, axis=-1, keepdims=True) for t in targets]


def _mean(Pn: Array, h: Array, *, xp: Any) -> Array:
    r""":math:`\sum_{x,y} P_n(x, y) h(x, y)` of each table (batch shape)."""
    return xp.sum(Pn * h, axis=(-2, -1))


def _empty_tables(
    Pn: Array, targets: list[Array], axes: tuple[int, ...], missing: str, *, xp: Any
) -> Array:
    """Batch mask of tables with an empty category on ``axes``; raise under ``"raise"``.

    Only the axes the estimator divides by count: none for k = 0, X for k = 1, both for k >= 2.
    """
    if not axes:
        return xp.zeros(Pn.shape[:-2], dtype=xp.bool, device=device(Pn))
    # Zero the targets of the other axis so that only ``axes`` can be reported.
    used = [t if a in axes else xp.zeros_like(t) for a, t in enumerate(targets)]
    if missing == "raise":
        raise_on_empty_categories(Pn, used, xp=xp, name="counts")
    masks = find_empty_categories(Pn, used, xp=xp)
    return xp.any(masks[0], axis=-1) | xp.any(masks[1], axis=-1)


def _balance(
    Pn: Array,
    targets: list[Array],
    h: Array,
    fallback: Array,
    *,
    steps: int | None,
    tol: float,
    max_steps: int,
    compiled: bool | None,
    xp: Any,
) -> tuple[Array, ScalingResult]:
    """Balance every table in ONE kernel call and return :math:`P_n^{(k)}(h)` of each.

    A table that falls back (an empty category) is swapped for the product of its targets, a
    fixed point of balancing, so that it neither divides by zero nor keeps a run to ``tol`` from
    converging; its value is replaced by the empirical mean afterwards.
    """
    product = targets[0][..., :, None] * targets[1][..., None, :]
    table = xp.where(fallback[..., None, None], product, Pn)
    run = _run(
        table,
        targets,
        steps=steps,
        tol=tol,
        max_steps=max_steps,
        check_every=check_check_every(None, n_axes=2),
        log_domain=False,
        xp=xp,
        compiled=compiled,
    )
    # The factors apply to run.base: the table, or (unreachable targets) the working table
    # they were absorbed into, whose balanced values are right where the factors relative to
    # the table would overflow.
    fx, fy = run.factors
    # sum_x f_x(x) sum_y [P_n h](x, y) f_y(y): one batched mat-vec, no balanced table formed.
    inner = xp.matmul(run.base * h, fy[..., None])[..., 0]
    return xp.sum(fx * inner, axis=-1), run.result


def _to_output(values: Array) -> Array | float:
    return float(values) if values.ndim == 0 else values


def _as_xp(h: np.ndarray, like: Array, *, xp: Any) -> Array:
    """The validated NumPy ``h`` as a float64 array of ``like``'s namespace and device."""
    return h if isinstance(like, np.ndarray) else xp.asarray(h, device=device(like))


# --------------------------------------------------------------------------------------------
# Public estimators
# --------------------------------------------------------------------------------------------


def empirical_estimate(counts: ArrayLike, h: ArrayLike) -> np.ndarray | float:
    r"""The empirical mean :math:`P_n(h) = \frac1n \sum_{x,y} N(x, y)\, h(x, y)`.

    Parameters
    ----------
    counts : array_like, shape ``(..., m, l)``
        Count table(s) (or any non-negative weights; each table is divided by its total).
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.

    Returns
    -------
    float or numpy.ndarray
        A float for one table, else an array of the batch shape ``counts.shape[:-2]``.

    Notes
    -----
    ``theory.md`` §1.3: :math:`\varphi_n^{(0)}`.
    """
    counts = check_counts(counts)
    xp = get_xp(counts)
    h = _as_xp(check_function(h, tuple(counts.shape[-2:])), counts, xp=xp)
    return _to_output(_mean(counts, h, xp=xp) / xp.sum(counts, axis=(-2, -1)))


def balanced_estimate(
    counts: ArrayLike,
    h: ArrayLike,
    targets: Any,
    steps: int | float | None,
    *,
    missing: str = "raise",
    tol: float = 1e-10,
    max_steps: int = 10_000,
    compiled: bool | None = None,
) -> BalancedEstimates:
    r"""The k-step balanced estimator :math:`\varphi_n^{(k)} = P_n^{(k)}(h)` of each table.

    .. math::

        P_n^{(k)}(x, y) = \frac{p_X(x)}{P^{(k-1)}_{n,X}(x)} P_n^{(k-1)}(x, y)\ (k \text{ odd}),
        \qquad \frac{p_Y(y)}{P^{(k-1)}_{n,Y}(y)} P_n^{(k-1)}(x, y)\ (k \text{ even}).

    Parameters
    ----------
    counts : array_like, shape ``(..., m, l)``
        Count table(s); leading axes are replicates, all balanced in one kernel call. An array
        of any array-API library (NumPy, CuPy, PyTorch) is computed in that library, on its
        device, in float64; the results come back in it.
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    targets : sequence of two arrays
        ``[p_x, p_y]``, shapes ``(m,)`` and ``(l,)`` (or with the batch axes in front, e.g. one
        misspecified marginal per replicate); shares or counts, divided by their total.
    steps : int, math.inf or None
        k single-marginal adjustments (odd = X-step); ``None``/``math.inf``: balance to ``tol``.
    missing : {"raise", "empirical"}
        Missing-mass policy for a table with an empty category (on X for k = 1, on X or Y for
        k >= 2) whose target is positive: raise :class:`~raking.exceptions.EmptyCategoryError`,
        or report the empirical mean :math:`P_n(h)` for that table and flag it in ``fallback``.
    tol, max_steps : float, int
        Tolerance (max absolute marginal error, in shares) and step cap when ``steps`` is None.
    compiled : bool or None
        NumPy input only: ``None`` uses the Numba loops where they are measured to be faster,
        ``True`` wherever they support the input, ``False`` never (the array-API kernel).

    Returns
    -------
    BalancedEstimates
        ``values`` of the batch shape (0-d for one table), ``fallback`` flags and diagnostics.

    Notes
    -----
    ``theory.md`` §1.2-1.3 [SUM]. The ``"empirical"`` fallback on the bad event is our choice
    (``theory.md`` §1.2 [INF]). Float64 in the namespace of ``counts``.

    Examples
    --------
    >>> import numpy as np
    >>> N = np.array([[30, 10], [20, 40]])
    >>> h = np.array([[1.0, 0.0], [0.0, 0.0]])
    >>> res = balanced_estimate(N, h, [[0.5, 0.5], [0.5, 0.5]], steps=1)
    >>> round(float(res.values), 6)  # 0.5 * 30 / 40
    0.375
    """
    counts = check_counts(counts)
    xp = get_xp(counts)
    h = _as_xp(check_function(h, tuple(counts.shape[-2:])), counts, xp=xp)
    steps = check_steps(steps)
    missing = check_policy(missing)
    tol, max_steps = check_tol(tol), check_max_steps(max_steps)
    if compiled not in (None, True, False):
        raise ValueError(f"compiled must be None, True or False, got {compiled!r}.")
    Pn = counts / xp.sum(counts, axis=(-2, -1), keepdims=True)
    targets = _shares(check_xy_targets(targets, Pn), xp=xp)
    axes = (0,) if steps == 1 else () if steps == 0 else (0, 1)
    fallback = _empty_tables(Pn, targets, axes, missing, xp=xp)
    balanced, res = _balance(
        Pn,
        targets,
        h,
        fallback,
        steps=steps,
        tol=tol,
        max_steps=max_steps,
        compiled=compiled,
        xp=xp,
    )
    n_fallback = int(xp.sum(xp.astype(fallback, xp.int64)))
    none_balanced = n_fallback == math.prod(fallback.shape)
    label = "to tolerance" if steps is None else f"k={steps}"
    return BalancedEstimates(
        values=xp.where(fallback, _mean(Pn, h, xp=xp), balanced),
        fallback=fallback,
        n_fallback=n_fallback,
        method=f"balanced estimator P_n^(k)(h), {label}",
        steps=steps,
        steps_taken=0 if none_balanced else res.steps,
        # Fixed k: the k-step estimator is what was asked for, so ``converged`` says it ran
        # (finite); to tolerance: the kernel's verdict, marginal error <= tol.
        converged=(res.converged if steps is None else math.isfinite(res.marginal_error))
        and not none_balanced,
        marginal_error=math.nan if none_balanced else res.marginal_error,
    )


def ipw_estimate(
    counts: ArrayLike,
    h: ArrayLike,
    targets: Any,
    *,
    side: str = "both",
    self_normalized: bool = False,
    missing: str = "raise",
) -> BatchEstimates:
    r"""Inverse-probability-weighted estimate of :math:`P(h)` from the supplied marginals.

    .. math::

        \hat\varphi = \frac1n \sum_{i=1}^n w(X_i, Y_i)\, h(X_i, Y_i), \qquad
        w(x, y) = \frac{\tilde p_X(x)}{P_{n,X}(x)} \cdot \frac{\tilde p_Y(y)}{P_{n,Y}(y)},

    optionally divided by :math:`\frac1n \sum_i w(X_i, Y_i)` (self-normalised).

    Parameters
    ----------
    counts : array_like, shape ``(..., m, l)``
        Count table(s).
    h : array_like, shape (m, l)
        Finite function values.
    targets : sequence of two arrays
        The supplied (possibly misspecified) marginals ``[p_x, p_y]``, as in
        :func:`balanced_estimate`.
    side : {"both", "x", "y"}
        ``"both"``: the product weight above (IPWI); ``"x"`` or ``"y"``: only that factor.
        ``side="x"`` equals the one-step balanced estimator :math:`\varphi_n^{(1)}`.
    self_normalized : bool
        Divide by the mean weight.
    missing : {"raise", "empirical"}
        Missing-mass policy, as in :func:`balanced_estimate`, for the axes divided by.

    Returns
    -------
    BatchEstimates

    Notes
    -----
    ``theory.md`` §4.2: the IPWI formula is **our assumption [INF]**, not the paper's confirmed
    equation. With correct marginals its influence function is
    :math:`\bar h - \Pi_X \bar h - \Pi_Y \bar h` [DER], see :func:`raking.variance.ipwi_variance`.
    """
    counts = check_counts(counts)
    xp = get_xp(counts)
    h = _as_xp(check_function(h, tuple(counts.shape[-2:])), counts, xp=xp)
    missing = check_policy(missing)
    side = check_option(side, options=tuple(_SIDES), name="side")
    Pn = counts / xp.sum(counts, axis=(-2, -1), keepdims=True)
    targets = _shares(check_xy_targets(targets, Pn), xp=xp)
    fallback = _empty_tables(Pn, targets, _SIDES[side], missing, xp=xp)
    weights = xp.ones_like(Pn)
    for axis in _SIDES[side]:
        marg = xp.sum(Pn, axis=-1 if axis == 0 else -2)  # P_{n,X}: (..., m); P_{n,Y}: (..., l)
        positive = marg > 0
        ratio = xp.where(
            positive,
            targets[axis] / xp.where(positive, marg, xp.ones_like(marg)),
            xp.zeros_like(marg),
        )
        weights = weights * (ratio[..., :, None] if axis == 0 else ratio[..., None, :])
    value = _mean(Pn * weights, h, xp=xp)
    if self_normalized:  # the mean weight is 0 only on the bad event, which falls back below
        mean_weight = xp.sum(Pn * weights, axis=(-2, -1))
        value = value / xp.where(mean_weight > 0, mean_weight, xp.ones_like(mean_weight))
    name = {"both": "IPWI (both marginals)", "x": "IPW on X", "y": "IPW on Y"}[side]
    norm = ", self-normalised" if self_normalized else ""
    return BatchEstimates(
        values=xp.where(fallback, _mean(Pn, h, xp=xp), value),
        fallback=fallback,
        n_fallback=int(xp.sum(xp.astype(fallback, xp.int64))),
        method=f"{name}{norm} [INF]",
    )


def estimate(
    x: ArrayLike,
    y: ArrayLike,
    h: ArrayLike,
    targets: Any,
    *,
    steps: int | float | None,
    shape: tuple[int, int] | None = None,
    missing: str = "raise",
    tol: float = 1e-10,
    max_steps: int = 10_000,
) -> Estimate:
    r"""Balanced estimate of :math:`P(h)` from one sample of codes, with a plug-in SE.

    .. math::

        \hat\varphi = \varphi_n^{(k)}, \qquad
        \widehat{\mathrm{SE}} = \sqrt{\sigma_k^2(\hat P, h) / n},

    where :math:`\hat P` is the sample table balanced to convergence toward ``targets`` and
    :math:`\sigma_k^2` is :func:`raking.variance.asymptotic_variance`.

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Category codes of the ``n`` pairs, ``x`` in ``[0, m)``, ``y`` in ``[0, l)``.
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    targets : sequence of two arrays
        Known marginals ``[p_x, p_y]`` (shares or counts).
    steps : int, math.inf or None
        k single-marginal adjustments; ``None``/``math.inf``: balance to ``tol``.
    shape : tuple of int, optional
        ``(m, l)``; defaults to ``h.shape`` and must equal it when given.
    missing : {"raise", "empirical"}
        Missing-mass policy. The plug-in needs mass in every category of X and Y (for any k):
        ``"raise"`` raises :class:`~raking.exceptions.EmptyCategoryError` otherwise;
        ``"empirical"`` returns :math:`P_n(h)` with the SE :math:`\sqrt{\mathrm{Var}_n(h)/n}`,
        which ignores raking, and ``converged=False``.
    tol, max_steps : float, int
        As in :func:`balanced_estimate`.

    Returns
    -------
    Estimate

    Notes
    -----
    ``theory.md`` §2.2-2.3 [DER] for :math:`\sigma_k^2`. Evaluating it at :math:`\hat P` (the
    known marginals with the sample's dependence) is our plug-in choice; it assumes the targets
    are the true marginals, so misspecification bias (§4.3) is not in the SE. NumPy float64.
    """
    h_arr = check_function(h)
    if shape is not None:
        check_shape(shape, like=h_arr.shape, like_name="h")
    x = check_codes(x, h_arr.shape[0], name="x", replicates=False)
    counts = counts_from_codes(x, y, h_arr.shape)
    result = balanced_estimate(
        counts, h_arr, targets, steps, missing=missing, tol=tol, max_steps=max_steps
    )
    steps_k = result.steps
    n = int(np.size(x))
    Pn = counts / n
    shares = _shares(check_xy_targets(targets, Pn), xp=get_xp(Pn))
    value, converged, error = float(result.values), result.converged, result.marginal_error
    # The plug-in P-hat needs mass in every category of both axes, whatever k is.
    if _empty_tables(Pn, shares, (0, 1), missing, xp=get_xp(Pn)):
        value = float(np.einsum("xy,xy->", Pn, h_arr))
        var = float(np.einsum("xy,xy->", Pn, (h_arr - value) ** 2))
        converged = False
        error = max(float(np.abs(Pn.sum(axis=1 - a) - shares[a]).max()) for a in (0, 1))
        se_method = _SE_FALLBACK
        notes = (
            "the sample has an empty category with a positive target (missing mass); the "
            "empirical mean P_n(h) of the unbalanced table is reported",
        )
    else:
        P_hat = _plugin_table(Pn, shares, tol=tol, max_steps=max_steps)
        var = asymptotic_variance(P_hat, h_arr, math.inf if steps_k is None else steps_k)
        se_method = _SE_PLUGIN
        notes = (
            "sigma_k^2 is evaluated at the sample table balanced to convergence toward the "
            "targets; it assumes the targets are the true marginals, so misspecification bias "
            "is not in the SE",
        )
    return Estimate(
        estimate=value,
        se=math.sqrt(max(var, 0.0) / n),
        se_method=se_method,
        n=n,
        steps=steps_k,
        converged=converged,
        marginal_error=error,
        notes=notes,
    )


def _plugin_table(
    Pn: np.ndarray, targets: list[np.ndarray], *, tol: float, max_steps: int
) -> np.ndarray:
    """``Pn`` balanced to ``tol`` (one table, validated inputs), renormalised to sum 1."""
    res = _ipf(
        Pn,
        targets,
        steps=None,
        tol=tol,
        max_steps=max_steps,
        check_every=2,
        log_domain=False,
        xp=get_xp(Pn),
    )
    fx, fy = (np.asarray(f) for f in res.factors)
    table = Pn * fx[:, None] * fy[None, :]
    return table / table.sum()
