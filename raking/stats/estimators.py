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
import warnings
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from raking._array_api import Array, device, get_xp
from raking.exceptions import ConvergenceWarning
from raking.kernel.ipf import balance_result, run_steps
from raking.results import BalancedEstimates, BatchEstimates, Estimate, ScalingResult
from raking.stats.marginals import counts_from_codes
from raking.stats.variance import _unit, asymptotic_variance
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
    listed,
    raise_on_empty_categories,
)

__all__ = [
    "balanced_estimate",
    "empirical_estimate",
    "estimate",
    "ipw_estimate",
]

_SIDES = {"both": (0, 1), "x": (0,), "y": (1,)}
_SE_PLUGIN = "plug-in asymptotic sigma_k^2 / n [DER]"
_SE_FALLBACK = "plug-in Var_n(h) / n (empirical fallback; SE ignores raking)"
_SE_NONE = "none: the plug-in table does not exist or was not reached (see the notes); SE = NaN"
_SE_EMPIRICAL = "Var_n(h) / n of the empirical mean (k = 0; no balanced plug-in table exists)"
_REMEDY = "A larger sample, merged categories, or targets consistent with the sample are needed."
_PLUGIN_NOTE = (
    "sigma_k^2 is evaluated at the sample table balanced to convergence toward the targets; it "
    "assumes the targets are the true marginals, so misspecification bias is not in the SE"
)
_PLUGIN_TOL_FLOOR = 16 * float(np.finfo(np.float64).eps)
"""Smallest tolerance the plug-in is checked against (a share is exact to about eps / 2)."""
_NEWTON_MAX_WORK = 2 * 10**7
"""Largest ``m l min(m, l)`` (the work of one Newton step) for which the plug-in table is found
by Newton's method; larger tables use the kernel's IPF."""
_FLOW_UNITS = 2**29
"""Integer capacity of a total share of 1 in the reachability check (an int32 flow graph)."""


# --------------------------------------------------------------------------------------------
# Private computation (validated inputs only)
# --------------------------------------------------------------------------------------------


def _shares(targets: list[Array], *, xp: Any) -> list[Array]:
    """Validated targets (``(n_i,)`` or ``(*batch, n_i)``) divided by their totals.

    Each is first divided by its largest entry, so that a total that overflows (counts near
    1e308) or is subnormal still gives the right shares.
    """
    out = []
    for t in targets:
        unit = t / xp.max(t, axis=-1, keepdims=True)
        out.append(unit / xp.sum(unit, axis=-1, keepdims=True))
    return out


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
    run = run_steps(
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
    :math:`\bar h - \Pi_X \bar h - \Pi_Y \bar h` [DER], see
    :func:`raking.stats.variance.ipwi_variance`.
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
    :math:`\sigma_k^2` is :func:`raking.stats.variance.asymptotic_variance`.

    Parameters
    ----------
    x, y : array_like of int, shape (n,)
        Category codes of the ``n`` pairs, ``x`` in ``[0, m)``, ``y`` in ``[0, l)``.
    h : array_like, shape (m, l)
        Finite function values :math:`h(x, y)`.
    targets : sequence of two arrays
        Known marginals ``[p_x, p_y]`` (shares or counts, at any scale). A category with target
        0 gets no mass from balancing and is left out of :math:`\hat P` (exactly: it has no
        probability), with a note if the sample has pairs in it.
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
        As in :func:`balanced_estimate`; :math:`\hat P` must meet the targets within ``tol``
        too. It is found by Newton's method (quadratic convergence, however slowly IPF would
        creep); ``max_steps`` bounds its balancing only for large tables
        (:math:`m l \min(m, l) > 2 \cdot 10^7`), where the kernel's IPF is used instead.

    Returns
    -------
    Estimate
        With ``se = NaN``, ``converged=False``, ``se_method`` starting with ``"none"``, a note
        saying why, and a :class:`~raking.exceptions.ConvergenceWarning`, when :math:`\hat P`
        does not exist (see Notes); the estimate itself is still reported. For ``steps=0`` the
        estimate is the empirical mean :math:`P_n(h)`, whose own SE
        :math:`\sqrt{\mathrm{Var}_n(h) / n}` needs no :math:`\hat P`: it is reported then,
        with a note.

    Notes
    -----
    ``theory.md`` §2.2-2.3 [DER] for :math:`\sigma_k^2`. Evaluating it at :math:`\hat P` (the
    known marginals with the sample's dependence) is our plug-in choice; it assumes the targets
    are the true marginals, so misspecification bias (§4.3) is not in the SE. NumPy float64.

    :math:`\hat P` exists only if some table that is positive on every observed (x, y) cell
    (and 0 elsewhere) has the target marginals; a max-flow check decides it. In small samples
    it often fails (about one sample in five at n = 15 on a 3 x 4 table): the targets are
    unreachable on the observed cells (balancing oscillates), or reachable only if some
    observed cells get no mass (balancing creeps to a table that cuts the sample's dependence
    into blocks). The table where balancing stops is then an artefact of ``max_steps``, and
    :math:`\sigma_k^2` there can be 0: an SE of about 0 with a zero-width interval. We report
    no SE rather than a wrong one: a careful user wants to know that this sample cannot
    support the plug-in (and why: the note names the categories of ``x`` and ``y`` and the
    shares ``targets`` gives them), not a number from a different estimator. ``h`` is scaled
    by an exact power of two for the variance, so a huge or tiny ``h`` gives an exact SE.
    """
    h_arr = check_function(h)
    if shape is not None:
        check_shape(shape, like=h_arr.shape, like_name="h")
    x = check_codes(x, h_arr.shape[0], name="x", replicates=False)
    y = check_codes(y, h_arr.shape[1], name="y", replicates=False)
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
        value, se = _empirical_mean_se(Pn, h_arr, n)
        converged, se_method = False, _SE_FALLBACK
        error = max(float(np.abs(Pn.sum(axis=1 - a) - shares[a]).max()) for a in (0, 1))
        notes: tuple[str, ...] = (
            "the sample has an empty category with a positive target (missing mass); the "
            "empirical mean P_n(h) of the unbalanced table is reported",
        )
    else:
        plugin = _plugin_table(Pn, shares, tol=tol, max_steps=max_steps)
        if plugin.table is None and steps_k == 0:  # P_n(h) has an SE of its own
            se, se_method = _empirical_mean_se(Pn, h_arr, n)[1], _SE_EMPIRICAL
            notes = (
                f"the balanced plug-in table does not exist: {plugin.problem}. For k = 0 the "
                "estimate is the empirical mean P_n(h), and its own SE, sqrt(Var_n(h) / n), "
                "is reported (it needs no balancing)",
            )
        elif plugin.table is None:
            note = (
                f"no standard error: {plugin.problem}. The plug-in table of sigma_k^2 (the "
                "sample balanced to convergence toward the targets) does not exist, and "
                "sigma_k^2 where balancing stops can be 0, so the SE is NaN. "
                f"{plugin.remedy}"
            )
            warnings.warn(note, ConvergenceWarning, stacklevel=2)
            se, se_method, converged, notes = math.nan, _SE_NONE, False, (note,)
        else:
            h_kept = h_arr[np.ix_(plugin.rows, plugin.columns)]
            se = _plugin_se(plugin.table, h_kept, steps_k, n)
            se_method, notes = _SE_PLUGIN, (_PLUGIN_NOTE, *plugin.notes)
    return Estimate(
        estimate=value,
        se=se,
        se_method=se_method,
        n=n,
        steps=steps_k,
        converged=converged,
        marginal_error=error,
        notes=notes,
    )


def _plugin_se(P_hat: np.ndarray, h: np.ndarray, steps: int | None, n: int) -> float:
    r""":math:`\sqrt{\sigma_k^2(\hat P, h) / n}`, computed on ``h / 2^e`` and scaled back.

    ``2^e`` (exact) brings :math:`\max|h|` into ``[0.5, 1)``, so neither the variance of a huge
    ``h`` overflows nor that of a tiny one underflows; the SE itself is representable whenever
    ``h`` is.
    """
    unit, e = _unit(h)
    var = asymptotic_variance(P_hat, unit, math.inf if steps is None else steps)
    return float(np.ldexp(math.sqrt(max(var, 0.0) / n), e))


def _empirical_mean_se(Pn: np.ndarray, h: np.ndarray, n: int) -> tuple[float, float]:
    r""":math:`P_n(h)` and :math:`\sqrt{\mathrm{Var}_n(h) / n}`, on ``h / 2^e`` scaled back."""
    unit, e = _unit(h)
    mean = float(np.einsum("xy,xy->", Pn, unit))
    var = float(np.einsum("xy,xy->", Pn, (unit - mean) ** 2))
    return float(np.ldexp(mean, e)), float(np.ldexp(math.sqrt(var / n), e))


class _PlugIn(NamedTuple):
    """The plug-in table on the categories with positive targets, or why there is none.

    ``problem`` says why, in the user's terms; ``remedy`` what could give one.
    """

    table: np.ndarray | None
    rows: np.ndarray
    columns: np.ndarray
    problem: str = ""
    remedy: str = ""
    notes: tuple[str, ...] = ()


def _plugin_table(
    Pn: np.ndarray, targets: list[np.ndarray], *, tol: float, max_steps: int
) -> _PlugIn:
    r"""``Pn`` balanced to ``tol`` toward ``targets`` (shares), on the positive-target categories.

    A category with target 0 has no mass in the limit (balancing zeroes it), so it is dropped:
    the variance on the rest is exact. The limit of balancing keeps the sample's zero pattern
    only if some table **positive on every observed cell** meets the targets
    (:func:`_reachability`, a max-flow). Otherwise either no table on the observed cells meets
    them (the factors diverge and balancing oscillates) or only tables with some observed cells
    at 0 do (the limit lies on the boundary, reached at a sublinear rate, with the observed
    dependence cut into blocks). In both cases the table balancing stops at is an artefact of
    where it stopped, and :math:`\sigma_k^2` there can be 0: there is no plug-in, and
    ``table=None`` comes back with the reason, worded with the user's ``x``, ``y`` and
    ``targets``. When the targets are reachable, :func:`_balance_plugin` finds the table, which
    is accepted only if it is finite and, measured here, meets both targets within ``tol``; it
    is returned renormalised to sum 1.
    """
    rows, columns = np.flatnonzero(targets[0] > 0), np.flatnonzero(targets[1] > 0)
    table = Pn[np.ix_(rows, columns)]
    kept = [targets[0][rows], targets[1][columns]]
    reach = _reachability(table > 0, kept)
    if reach.unreachable is not None:
        problem = _unreachable_note(reach.unreachable, rows, columns, kept)
        return _PlugIn(None, rows, columns, problem, _REMEDY)
    if reach.forced_zero is not None:
        problem = _boundary_note(reach.forced_zero, rows, columns)
        return _PlugIn(None, rows, columns, problem, _REMEDY)
    balanced, error = _balance_plugin(
        table, kept, tol=max(tol, _PLUGIN_TOL_FLOOR), max_steps=max_steps
    )
    if balanced is None or not error <= max(tol, _PLUGIN_TOL_FLOOR):
        problem = (
            "balancing the sample (x, y) toward the targets did not reach "
            f"tol={tol:.3g} (max |marginal - target| = {error:.3g}; max_steps={max_steps} "
            "bounds it on large tables), although the targets are reachable on the sample's "
            "observed cells"
        )
        return _PlugIn(None, rows, columns, problem, "A larger max_steps or a looser tol may help.")
    notes = _dropped_note(Pn, targets) + _blocks_note(table > 0, rows, columns)
    return _PlugIn(balanced / balanced.sum(), rows, columns, notes=notes)


def _balance_plugin(
    table: np.ndarray, targets: list[np.ndarray], *, tol: float, max_steps: int
) -> tuple[np.ndarray | None, float]:
    """The balanced table and its marginal error measured here (``None``, error if not finite).

    Newton's method on the dual (:func:`_newton_scaling`: a few iterations, however slowly
    IPF would converge) while one step costs at most :data:`_NEWTON_MAX_WORK`; beyond, the
    kernel's IPF with ``max_steps``, whose warning is replaced by the caller's note (the check
    below decides).
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        if table.size * min(table.shape) <= _NEWTON_MAX_WORK:
            # Quadratic convergence makes the float64 floor cheap: tiny shares stay accurate.
            balanced = _newton_scaling(table, targets, tol=_PLUGIN_TOL_FLOOR)
        else:
            result = balance_result(table, targets, None, tol=tol, max_steps=max_steps)
            balanced = np.asarray(result.table)
        error = _marginal_error(balanced, targets)
    if not np.isfinite(error) or balanced.min() < 0:
        return None, math.nan
    return balanced, error


def _marginal_error(table: np.ndarray, targets: list[np.ndarray]) -> float:
    """``max |marginal - target|`` over both axes; NaN unless every cell is finite."""
    if not np.all(np.isfinite(table)):
        return math.nan
    return max(
        float(np.abs(table.sum(axis=1) - targets[0]).max()),
        float(np.abs(table.sum(axis=0) - targets[1]).max()),
    )


def _newton_scaling(
    table: np.ndarray, targets: list[np.ndarray], *, tol: float, max_iter: int = 200
) -> np.ndarray:
    r"""``diag(e^u) K diag(e^v)`` with the target marginals, by damped Newton on the dual.

    Minimises the convex :math:`F(u, v) = \sum_{xy} K_{xy} e^{u_x + v_y} - r^\top u - c^\top v`
    (its minimiser is the limit of IPF), whose gradient is the marginal error and whose Hessian
    is :math:`\begin{pmatrix} D_r & P \\ P^\top & D_c \end{pmatrix}` with
    :math:`D_r = \mathrm{diag}(P 1)`, :math:`D_c = \mathrm{diag}(P^\top 1)`. The step solves
    for :math:`\delta v` with the Schur complement :math:`D_c - P^\top D_r^{-1} P` (singular
    along the scale freedom of each connected block: the minimum-norm solution is taken), then
    :math:`\delta u = -D_r^{-1}(g_r + P\,\delta v)`; backtracking keeps :math:`F` decreasing.
    Convergence is quadratic near the minimiser, which exists because the targets were proved
    reachable on the table's support, while IPF's linear rate can be arbitrarily slow near the
    boundary. Cost :math:`O(m l \min(m, l) + \min(m, l)^3)` per iteration.
    """
    if table.shape[0] < table.shape[1]:
        return _newton_scaling(table.T, targets[::-1], tol=tol, max_iter=max_iter).T
    m, l = table.shape
    r, c = targets
    u, v = np.zeros(m), np.zeros(l)

    def objective(u: np.ndarray, v: np.ndarray) -> float:
        return float((table * np.exp(u)[:, None] * np.exp(v)[None, :]).sum() - r @ u - c @ v)

    P = table
    for _ in range(max_iter):
        row, col = P.sum(axis=1), P.sum(axis=0)
        g_r, g_c = row - r, col - c
        if not max(np.abs(g_r).max(), np.abs(g_c).max()) > tol:
            break
        scaled = P / row[:, None]
        schur = np.diag(col) - P.T @ scaled
        dv = np.linalg.lstsq(schur, scaled.T @ g_r - g_c, rcond=None)[0]
        du = -(g_r + P @ dv) / row
        now, t, slope = objective(u, v), 1.0, float(g_r @ du + g_c @ dv)
        # F is only known to rounding: near the minimiser its decrease is below that noise.
        noise = 8 * np.finfo(np.float64).eps * (1.0 + abs(float(r @ u)) + abs(float(c @ v)))
        while t > 1e-12 and not objective(u + t * du, v + t * dv) <= now + 1e-4 * t * slope + noise:
            t /= 2
        if t <= 1e-12:  # no decrease left above rounding: as close as float64 gets
            break
        u, v = u + t * du, v + t * dv
        P = table * np.exp(u)[:, None] * np.exp(v)[None, :]
    return P


class _Reach(NamedTuple):
    """Whether the targets are reachable on a zero pattern, with the proof when they are not.

    ``unreachable``: rows ``A`` and columns ``B`` with all of ``A``'s cells in ``B`` and
    ``r(A) > c(B)``. ``forced_zero``: reachable only with some observed cells at 0; the
    ``(k, 2)`` array lists those the flow identifies (it may be empty).
    """

    unreachable: tuple[np.ndarray, np.ndarray] | None = None
    forced_zero: np.ndarray | None = None


def _reachability(support: np.ndarray, targets: list[np.ndarray]) -> _Reach:
    r"""Whether a table positive on ``support`` (0 elsewhere) can have the marginals ``targets``.

    Flow network: source :math:`\to` row ``i`` (capacity :math:`r_i`) :math:`\to` column ``j``
    (unbounded, where ``support``) :math:`\to` sink (capacity :math:`c_j`); a table on the
    support with the targets is a flow of value 1.

    1. If the maximum flow is smaller, the rows ``A`` on the source side of a minimum cut have
       all their cells in the columns ``B`` on that side and :math:`r(A) > c(B)` (Hall's
       condition fails): ``unreachable``.
    2. Otherwise a table positive on the whole support exists iff one with every cell at least
       :math:`\ell_{ij} = \varepsilon \min(r_i / d_i, c_j / e_j)` does for some
       :math:`\varepsilon > 0` (:math:`d_i, e_j` the cells per row and column): the same flow
       check on :math:`r - \ell 1` and :math:`c - \ell^\top 1`, for
       :math:`\varepsilon = 2^{-4}, 2^{-8}, \dots` down to the resolution. If none passes, some
       observed cell must be (numerically) 0: ``forced_zero``, with the cells that neither
       carry flow nor lie on a cycle of the residual graph (those no such table can make
       positive).

    Capacities are integers in units of :data:`_FLOW_UNITS` (SciPy's int32 max-flow). In step
    1 rows are rounded down and columns up, so a table that exists is never reported
    unreachable; in step 2 a deficit within the rounding slack (``m + l + 1`` units) passes.
    Gaps and margins below about :math:`(m + l) / 2^{27}` are thereby treated as 0: such tables
    are numerically on the boundary (a category whose share is that small is resolved only
    as far as the units allow).
    """
    m, l = support.shape
    r, c = targets
    cells = np.nonzero(support)
    rows = np.floor(r * _FLOW_UNITS).astype(np.int64)
    value, graph, flow = _max_flow(cells, rows, np.ceil(c * _FLOW_UNITS).astype(np.int64))
    if value < rows.sum():
        A, B = _source_side(graph, flow, m, l)
        if r[A].sum() > c[B].sum():
            return _Reach(unreachable=(A, B))
        return _Reach(forced_zero=np.zeros((0, 2), np.int64))  # a gap only units can see
    slack = m + l + 1
    base = np.minimum(
        r[cells[0]] / np.bincount(cells[0], minlength=m)[cells[0]],
        c[cells[1]] / np.bincount(cells[1], minlength=l)[cells[1]],
    )
    floor = min(max(4 * slack / (_FLOW_UNITS * float(base.min())), 2.0**-30), 2.0**-4)
    eps = 2.0**-4
    while eps >= floor:
        lower = eps * base
        r2 = np.round((r - np.bincount(cells[0], lower, m)) * _FLOW_UNITS).astype(np.int64)
        c2 = np.round((c - np.bincount(cells[1], lower, l)) * _FLOW_UNITS).astype(np.int64)
        if _max_flow(cells, r2, c2)[0] >= r2.sum() - slack:
            return _Reach()
        eps /= 16
    return _Reach(forced_zero=_forced_cells(cells, flow, m, l, threshold=slack))


def _max_flow(
    cells: tuple[np.ndarray, np.ndarray], rows: np.ndarray, cols: np.ndarray
) -> tuple[int, Any, Any]:
    """Value, graph and flow (CSR) of source -> rows -> columns (on ``cells``) -> sink."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    m, l = rows.size, cols.size
    sink = m + l + 1
    cell_r, cell_c = cells
    tail = np.concatenate([np.zeros(m, np.int64), 1 + cell_r, 1 + m + np.arange(l)])
    head = np.concatenate([1 + np.arange(m), 1 + m + cell_c, np.full(l, sink)])
    cap = np.concatenate([np.maximum(rows, 0), np.full(cell_r.size, rows.sum() + 1), cols])
    graph = csr_matrix((cap.astype(np.int32), (tail, head)), shape=(sink + 1, sink + 1))
    result = maximum_flow(graph, 0, sink)
    return int(result.flow_value), graph, result.flow.tocsr()


def _source_side(graph: Any, flow: Any, m: int, l: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns reachable from the source in the residual graph (a minimum cut)."""
    from scipy.sparse.csgraph import breadth_first_order

    residual = (graph - flow).tocsr()
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    side = np.zeros(m + l + 2, bool)
    side[breadth_first_order(residual, 0, return_predecessors=False)] = True
    return np.flatnonzero(side[1 : m + 1]), np.flatnonzero(side[m + 1 : m + l + 1])


def _forced_cells(
    cells: tuple[np.ndarray, np.ndarray], flow: Any, m: int, l: int, *, threshold: int
) -> np.ndarray:
    """Cells with no flow (``<= threshold`` units) off every cycle of the residual graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    cell_r, cell_c = cells
    through = np.asarray(flow[1 + cell_r, 1 + m + cell_c]).ravel() > threshold
    tails = np.concatenate([cell_r, m + cell_c[through]])
    heads = np.concatenate([m + cell_c, cell_r[through]])
    residual = csr_matrix((np.ones(tails.size, np.int8), (tails, heads)), shape=(m + l, m + l))
    _, component = connected_components(residual, directed=True, connection="strong")
    forced = ~through & (component[cell_r] != component[m + cell_c])
    return np.column_stack([cell_r[forced], cell_c[forced]])


def _unreachable_note(
    proof: tuple[np.ndarray, np.ndarray],
    rows: np.ndarray,
    columns: np.ndarray,
    targets: list[np.ndarray],
) -> str:
    """Why no table on the sample's cells meets the targets, in the user's terms."""
    A, B = proof
    m, l = rows.size, columns.size
    not_A, not_B = np.setdiff1d(np.arange(m), A), np.setdiff1d(np.arange(l), B)
    # Two readings of the same cut; show the one with the shorter first list.
    if A.size <= not_B.size:
        first, second, names, idx, share = A, B, ("x", "y"), (rows, columns), (0, 1)
    else:
        first, second, names, idx, share = not_B, not_A, ("y", "x"), (columns, rows), (1, 0)
    need = float(targets[share[0]][first].sum())
    have = float(targets[share[1]][second].sum())
    cats = listed(idx[0][first].tolist())
    if second.size:
        where = f"occur only with the {names[1]} categories {listed(idx[1][second].tolist())}"
    else:
        where = f"occur only with {names[1]} categories whose target is 0"
    return (
        f"in the sample, the {names[0]} categories {cats} {where}; targets[{share[0]}] gives "
        f"those {names[0]} categories a total share of {need:.6g} but targets[{share[1]}] "
        f"gives those {names[1]} categories only {have:.6g}, so no table on the sample's "
        "observed (x, y) cells meets both targets"
    )


def _boundary_note(forced: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> str:
    """Why the plug-in would lie on the boundary, in the user's terms."""
    cells = [(int(rows[i]), int(columns[j])) for i, j in forced]
    which = f"the observed cells (x, y) = {listed(cells)}" if cells else "some observed cells"
    return (
        "the targets can be met on the sample's observed (x, y) cells only if "
        f"{which} get no mass, or almost none (the targets of the categories around them "
        "balance exactly, or nearly), so balancing the sample toward the targets converges, "
        "slowly, to a table on the boundary that cuts the observed dependence apart"
    )


def _blocks_note(support: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> tuple[str, ...]:
    """A note when the observed cells split into blocks that share no x or y category."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m, l = support.shape
    cell_r, cell_c = np.nonzero(support)
    graph = coo_matrix((np.ones(cell_r.size), (cell_r, m + cell_c)), shape=(m + l, m + l))
    n_blocks, label = connected_components(graph, directed=False)
    forest = _forest_note(cell_r.size, m + l, n_blocks)
    if n_blocks == 1:
        return forest
    first = label[0]
    xs, ys = rows[label[:m] == first].tolist(), columns[label[m:] == first].tolist()
    return (
        f"the sample's observed (x, y) cells fall into {n_blocks} blocks that share no "
        f"category (e.g. x categories {listed(xs)} only with y categories {listed(ys)}); "
        "the plug-in table keeps them apart as if the population did, and the targets then "
        "fix each block's mass exactly, so the SE leaves out the uncertainty of those masses "
        "(it is 0 when every block is one cell). A larger sample would tell whether the "
        "population is split that way",
        *forest,
    )


def _forest_note(cells: int, categories: int, n_blocks: int) -> tuple[str, ...]:
    r"""A note when the observed cells contain no cycle (each block a tree), beyond one-cell blocks.

    A block of :math:`m'` x- and :math:`l'` y-categories is a tree when it has
    :math:`m' + l' - 1` cells, so the whole support has no cycle when ``cells = categories -
    n_blocks``. The targets then fix the plug-in table exactly and every :math:`h` is additive
    on it: :math:`\sigma_\infty^2(\hat P) = 0`, the exact value at the plug-in, but not an
    estimate of the sampling error (a larger sample observes cycles).
    """
    if cells != categories - n_blocks or cells == n_blocks:  # cycles, or only one-cell blocks
        return ()
    return (
        f"the sample's {cells} observed (x, y) cells contain no cycle (no x categories x1, x2 "
        "observed with the same two y categories y1, y2, directly or through a chain): the "
        "targets then fix the plug-in table exactly and every h is additive on it, so "
        "sigma_inf^2 = 0 there and the fully raked estimate (steps=None) gets an SE of 0 by "
        "construction, not an estimate of its sampling error. A larger sample would observe "
        "cycles of cells and give an SE",
    )


def _dropped_note(Pn: np.ndarray, targets: list[np.ndarray]) -> tuple[str, ...]:
    """A note when the sample has mass in categories whose target is 0 (balancing drops it)."""
    parts = []
    for axis, name in ((0, "x"), (1, "y")):
        zero = np.flatnonzero(targets[axis] == 0)
        mass = Pn.sum(axis=1 - axis)[zero]
        if np.any(mass > 0):
            cats = listed(zero[mass > 0].tolist())
            parts.append(f"{name} categories {cats} (share {float(mass.sum()):.3g})")
    if not parts:
        return ()
    return (
        "the sample has mass in categories whose target is 0: " + "; ".join(parts) + "; the "
        "plug-in table (and any k >= 1 step on that axis) gives them no mass",
    )
