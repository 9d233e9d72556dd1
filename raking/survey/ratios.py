r"""Ratios of totals and joint estimates (covariance matrices) of a :class:`RakeResult`.

Every estimate here is a ratio of weighted totals over the sampled rows,
:math:`\hat\theta = \hat A / \hat B` with :math:`\hat A = \sum_i w_i a_i`, :math:`\hat B =
\sum_i w_i b_i` (a total: no :math:`b`):

- a domain mean: :math:`a = y 1_D`, :math:`b = 1_D`; a domain total: :math:`a = y 1_D`;
- a ratio of totals (R ``svyratio``): :math:`a = y 1_D`, :math:`b = x 1_D`.

**Linearisation.** The influence values :math:`u_i = (a_i - \hat\theta b_i) / \hat B` (a total:
:math:`u = a`) go through the raking's projection as every SE of the result does (residuals on
the raking margins times the weights, :meth:`RakeResult._linearised`), and the covariance of
two estimates is the design covariance of their linearised totals, from the design's quadratic
form :math:`V(\cdot)` by polarisation: :math:`C(z_j, z_k) = \tfrac14 [V(z_j + z_k) - V(z_j -
z_k)]` -- exactly R's ``svyrecvar`` on the matrix of influence columns (``vcov`` of ``svymean(~a
+ b)``, ``svyratio(covmat=TRUE)``, ``svyby(covmat=TRUE)``).

**Replicates.** :math:`\hat\theta_r = \hat A_r / \hat B_r` with each replicate's re-raked
weights, and R's ``svrVar`` on the matrix of replicates: :math:`C = s \sum_r s_r (\hat\theta_r -
c)(\hat\theta_r - c)^\top`, :math:`c` the full-sample estimates (``mse``) or the replicates'
mean; replicates with an empty domain (no estimate) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from raking.survey.estimates import EstimateTable, SurveyEstimate
from raking.survey.intervals import srs_variances
from raking.survey.linearization import ResidualNotConverged
from raking.validation import (
    check_columns,
    check_ratio_dtype,
    raise_empty_domain,
    raise_zero_denominator,
)

if TYPE_CHECKING:
    from raking.survey.replicates import ReplicateDesign
    from raking.survey.results import RakeResult

__all__ = [
    "Ratio",
    "covariance",
    "degrees_of_freedom",
    "joint",
    "lazy_covariance",
    "logit_ses",
    "ratio",
    "replicate_deviations",
    "variances",
]


@dataclass(frozen=True, eq=False)
class Ratio:
    r""":math:`\hat A / \hat B` (``b`` None: the total :math:`\hat A`), over the sampled rows."""

    a: np.ndarray  # (s,) numerator variable, 0 outside the domain
    b: np.ndarray | None  # (s,) denominator variable, 0 outside the domain


def _point(f: Ratio, w: np.ndarray) -> tuple[float, float]:
    """The estimate and its denominator total (1 for a total)."""
    top = float(np.dot(w, f.a))
    if f.b is None:
        return top, 1.0
    bottom = float(np.dot(w, f.b))
    return (top / bottom if bottom != 0 else math.nan), bottom


def covariance(result: RakeResult, parts: Sequence[Ratio]) -> tuple[np.ndarray, np.ndarray]:
    """The estimates of ``parts`` and their covariance matrix (module docstring).

    The linearised totals :math:`z_j` of the ``K`` parts go to the design's covariance of
    several totals in one pass (:meth:`raking.survey.design.SurveyDesign.covariance`:
    :math:`O(nK + CK^2)` for ``C`` PSUs), equal to the polarisation of its variance.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Shapes ``(K,)`` and ``(K, K)``; the covariance is NaN when the result's SEs are
        (raking stalled, the residual's solve did not converge).
    """
    s = result._design
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    points = [_point(f, w) for f in parts]
    theta = np.array([p[0] for p in points])
    k = len(parts)
    nan = np.full((k, k), np.nan)
    if result.stalled and s.steps is None:
        return theta, nan
    if s.replicates is not None:
        return theta, _replicate_covariance(result, parts, theta)
    try:
        zs = np.column_stack(
            [
                result._linearised(f.a if f.b is None else (f.a - t * f.b) / bottom)
                for f, (t, bottom) in zip(parts, points, strict=True)
            ]
        )
    except ResidualNotConverged:
        return theta, nan
    return theta, result._sampling.covariance(zs)


def variances(result: RakeResult, parts: Sequence[Ratio]) -> tuple[np.ndarray, np.ndarray]:
    """The estimates of ``parts`` and their variances: the diagonal of :func:`covariance`.

    One linearised total at a time (no ``n x K`` matrix); with replicates, the diagonal of
    R's ``svrVar``.
    """
    s = result._design
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    points = [_point(f, w) for f in parts]
    theta = np.array([p[0] for p in points])
    nan = np.full(len(parts), np.nan)
    if result.stalled and s.steps is None:
        return theta, nan
    if s.replicates is not None:
        return theta, _svrvar_diagonal(_replicate_thetas(result, parts), theta, result)
    variance = result._sampling.variance
    out = np.empty(len(parts))
    for j, (f, (t, bottom)) in enumerate(zip(parts, points, strict=True)):
        try:
            z = result._linearised(f.a if f.b is None else (f.a - t * f.b) / bottom)
        except ResidualNotConverged:
            out[j] = math.nan
            continue
        out[j] = variance(z)
    return theta, out


def lazy_covariance(result: RakeResult, parts: Sequence[Ratio]) -> Callable[[], np.ndarray]:
    """The covariance of :func:`covariance`, computed when first asked for (``EstimateTable.cov``).

    A table's SEs need only the diagonal; the matrix costs ``K`` more residual solves and
    :math:`O(CK^2)`, which a table of many domains should not pay unless it is used.
    """
    return lambda: covariance(result, parts)[1]


def _replicate_covariance(
    result: RakeResult, parts: Sequence[Ratio], theta: np.ndarray
) -> np.ndarray:
    """R ``svrVar`` on the replicates' estimates of ``parts``."""
    return _svrvar(_replicate_thetas(result, parts), theta, result)


def replicate_deviations(
    thetas: np.ndarray, theta: np.ndarray, design: ReplicateDesign
) -> tuple[np.ndarray, np.ndarray] | None:
    r"""R ``svrVar``'s deviations :math:`\hat\theta_r - c` and their factors :math:`s\, s_r`.

    ``thetas``: ``(K, R)`` replicate estimates; replicates with a NaN in any of the ``K`` are
    left out. :math:`c` is ``theta`` with ``design.mse``, else the mean of the replicates with
    :math:`s_r > 0`. Returns ``(dev, factors)`` of shapes ``(K, R')`` and ``(R',)``, so that
    the covariance is ``(dev * factors) @ dev.T``; ``None`` when no replicate is left.
    """
    keep = ~np.isnan(thetas).any(axis=0)
    t, rs = thetas[:, keep], design.rscales[keep]
    if t.shape[1] == 0 or not np.any(rs > 0):
        return None
    centre = theta if design.mse else t[:, rs > 0].mean(axis=1)
    return t - centre[:, None], design.scale * rs


def _svrvar(thetas: np.ndarray, theta: np.ndarray, result: RakeResult) -> np.ndarray:
    r""":math:`s \sum_r s_r (\theta_r - c)(\theta_r - c)^\top`, replicates with a NaN left out."""
    design = result._design.replicates.design  # type: ignore[union-attr]
    found = replicate_deviations(thetas, theta, design)
    if found is None:
        return np.full((theta.size, theta.size), np.nan)
    dev, factors = found
    return (dev * factors) @ dev.T


def _svrvar_diagonal(thetas: np.ndarray, theta: np.ndarray, result: RakeResult) -> np.ndarray:
    """The diagonal of :func:`_svrvar` without the ``K x K`` matrix."""
    design = result._design.replicates.design  # type: ignore[union-attr]
    found = replicate_deviations(thetas, theta, design)
    if found is None:
        return np.full(theta.size, np.nan)
    dev, factors = found
    return (dev * dev) @ factors


def _replicate_thetas(result: RakeResult, parts: Sequence[Ratio]) -> np.ndarray:
    """The estimates of ``parts`` with each replicate's weights, shape ``(K, R)``."""
    s = result._design
    reps = s.replicates
    rows = s.raked_pos
    ones = np.ones(s.sample_pos.size)
    stacked = np.stack([v[rows] for f in parts for v in (f.a, ones if f.b is None else f.b)])
    sums = reps.totals(stacked, s.design)  # type: ignore[union-attr]
    top, bottom = sums[0::2], sums[1::2]
    totals = np.array([f.b is None for f in parts])
    bottom[totals] = 1.0  # a total: the numerator itself
    thetas = np.full(top.shape, np.nan)  # (K, R)
    np.divide(top, bottom, out=thetas, where=bottom != 0)
    return thetas


def degrees_of_freedom(result: RakeResult, by: Hashable | None) -> list[tuple[float, int]]:
    r"""R ``degf`` and ``nrow`` of the design (of each domain of ``by``), for :mod:`.intervals`.

    Linearisation: first-stage PSUs minus strata among the domain's rows of positive weight
    (R ``degf.survey.design2`` on ``subset(design, ...)``), and every sampled row (a subset of
    a calibrated design keeps its rows). Replicates: the whole design's PSUs minus strata (R
    ``as.svrepdesign`` keeps them), and for a domain the rank of its rows' replicate weights
    minus 1 (R ``degf.svyrep.design``: ``qr(weights(design, "analysis"), tol=1e-5)$rank - 1``)
    with the domain's rows (R drops the other rows of a replicate design).
    """
    s = result._design
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    if by is None:
        domains = [np.ones(w.size, dtype=bool)]
    else:
        _, codes = result._levels(by)
        domains = [codes == i for i in range(int(codes.max()) + 1)]
    out = []
    for domain in domains:
        rows = domain & (w > 0)
        if s.replicates is not None and by is not None:
            in_raked = rows[s.raked_pos]
            weights = s.replicates.weights(s.design)[in_raked]
            out.append((float(_qr_rank(weights) - 1), int(np.count_nonzero(domain))))
            continue
        psus = np.count_nonzero(rows) if s.cluster is None else np.unique(s.cluster[rows]).size
        strata = 1 if s.strata is None else np.unique(s.strata[rows]).size
        out.append((float(psus - strata), s.sample_pos.size))
    return out


def _qr_rank(a: np.ndarray, tol: float = 1e-5) -> int:
    """Rank as R's ``qr(a, tol)`` (LINPACK ``dqrdc2``).

    A column is dropped when its norm orthogonal to the kept columns falls below ``tol`` times
    its own norm.
    """
    basis: list[np.ndarray] = []
    for column in a.T:
        norm = float(np.linalg.norm(column))
        r = column.astype(np.float64)
        for _ in range(2):  # twice is enough (Kahan)
            for q in basis:
                r = r - np.dot(q, r) * q
        rest = float(np.linalg.norm(r))
        if norm > 0 and rest >= tol * norm:
            basis.append(r / rest)
    return len(basis)


def logit_ses(
    result: RakeResult, codes: np.ndarray, n_levels: int, by: Hashable | None
) -> list[float]:
    r"""Replicate SEs of :math:`\operatorname{logit} \hat p` of each domain and level of a share.

    R's ``svyciprop(method="logit")`` fits ``svyglm(y ~ 1, family=quasibinomial)``, whose SE on
    a replicate design is ``svrVar`` of the replicates' logits (not the delta method); in the
    order of ``proportion``'s table (domains outer, levels inner).
    """
    s = result._design
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    if by is None:
        domains = [np.ones(w.size, dtype=bool)]
    else:
        _, by_codes = result._levels(by)
        domains = [by_codes == i for i in range(int(by_codes.max()) + 1)]
    kept = codes >= 0  # na="omit": the rows with a level (R's svyglm drops the others)
    parts = [
        Ratio(((codes == j) & dom).astype(np.float64), (dom & kept).astype(np.float64))
        for dom in domains
        for j in range(n_levels)
    ]
    out = []
    for part, thetas in zip(parts, _replicate_thetas(result, parts), strict=True):
        p = _point(part, w)[0]
        if not 0 < p < 1:  # no logit (the interval is NaN, intervals.proportion_interval)
            out.append(math.nan)
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            logits = np.log(thetas / (1 - thetas))
        var = _svrvar(logits[None, :], np.array([math.log(p / (1 - p))]), result)
        out.append(math.sqrt(var[0, 0]))
    return out


def ratio(
    result: RakeResult,
    numerator: Hashable,
    denominator: Hashable,
    by: Hashable | None,
    na: str = "error",
) -> SurveyEstimate | EstimateTable:
    r"""``result.ratio``: :math:`\hat R = \sum_D w y / \sum_D w x` per domain, SEs and ``cov``.

    ``na="omit"``: each domain keeps the rows where both columns are present.
    """
    import pandas as pd

    check_columns("ratio", [numerator, denominator], list(result._data.columns))
    for name, column in (("numerator", numerator), ("denominator", denominator)):
        series = result._data[column]
        numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        check_ratio_dtype(name, column, numeric, series.dtype)
    (y, x), kept, na_notes = result._analysis([numerator, denominator], na)
    s = result._design
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    if by is None:
        labels: list[Any] = [None]
        domains = [np.ones(w.size, dtype=bool)]
    else:
        labels, codes = result._levels(by)
        domains = [codes == j for j in range(len(labels))]
    parts = []
    for label, domain in zip(labels, domains, strict=True):
        if not np.any(domain & (w > 0)):
            raise_empty_domain(by, label)
        result._check_kept([numerator, denominator], domain & kept, w, by, label, domain)
        part = Ratio(np.where(domain & kept, y, 0.0), np.where(domain & kept, x, 0.0))
        if float(np.dot(w, part.b)) == 0.0:  # type: ignore[arg-type]
            raise_zero_denominator(denominator, None if by is None else label)
        parts.append(part)
    theta, var = variances(result, parts)
    name = f"ratio {numerator} / {denominator}"
    estimates = tuple(
        _ratio_estimate(result, part, domain & kept, w, float(t), float(v), name, na_notes)
        for part, domain, t, v in zip(parts, domains, theta, var, strict=True)
    )
    if by is None:
        return estimates[0]
    return EstimateTable(
        f"{name} by {by}", tuple(labels), estimates, by, lazy_covariance(result, parts)
    )


def _ratio_estimate(
    result: RakeResult,
    part: Ratio,
    domain: np.ndarray,
    w: np.ndarray,
    estimate: float,
    variance: float,
    name: str,
    na_notes: tuple[str, ...] = (),
) -> SurveyEstimate:
    """One ratio with its notes and design effect (R: ``deff`` of the total of ``(y - R x)/X``)."""
    s = result._design
    bottom = float(np.dot(w, part.b))  # type: ignore[arg-type]
    r = (part.a - estimate * part.b) / bottom  # type: ignore[operator]
    vsrs = srs_variances("total", r, w, domain)
    notes = (
        f"{name}: ratio of weighted totals, influence (y - R x) / X",
        *result._notes(),
        *na_notes,
    )
    if result.stalled and s.steps is None:
        notes += ("SE is NaN: raking stalled (margins unreachable together), as mean()",)
    elif math.isnan(variance) and s.replicates is None:
        notes += (
            "SE is NaN: the least-squares solve of the SE did not converge (nearly collinear "
            "margins); merge levels that occur only together",
        )
    se = math.sqrt(variance) if variance >= 0 else math.nan
    if s.replicates is None:
        notes += result._lonely_psu_notes(se)
    return result._with_se(estimate, se, domain, w, notes, vsrs)


def joint(
    result: RakeResult,
    kind: str,
    columns: Sequence[Hashable],
    by: Hashable | None,
    na: str = "error",
) -> EstimateTable:
    """``mean`` / ``total`` of several columns (and domains): one table with ``cov``.

    Labels: the columns (no ``by``), the domains (one column), or ``(domain, column)``.
    ``na="omit"``: every estimate keeps the rows where all ``columns`` are present (R
    ``svymean(~a + b, na.rm=TRUE)``).
    """
    ys, kept, notes = result._analysis(columns, na)
    tables = [
        result._estimate(kind, y, by, name=column, kept=kept, notes=notes)
        for column, y in zip(columns, ys, strict=True)
    ]
    s = result._design
    if by is None:
        domains = [np.ones(s.sample_pos.size, dtype=bool)]
        labels: list[Any] = [None]
    else:
        labels, codes = result._levels(by)
        domains = [codes == j for j in range(len(labels))]
    parts, keys, estimates = [], [], []
    for i, (label, domain) in enumerate(zip(labels, domains, strict=True)):
        for j, (column, y) in enumerate(zip(columns, ys, strict=True)):
            inside = domain & kept
            a = np.where(inside, y, 0.0)
            parts.append(Ratio(a, None if kind == "total" else inside.astype(np.float64)))
            one = tables[j] if by is None else tables[j].estimates[i]  # type: ignore[union-attr]
            estimates.append(one)
            if by is None:
                keys.append(column)
            elif len(columns) == 1:
                keys.append(label)
            else:
                keys.append((label, column))
    cov = lazy_covariance(result, parts)
    what = ", ".join(map(str, columns))
    if by is None:
        return EstimateTable(f"{kind} of {what}", tuple(keys), tuple(estimates), "variable", cov)
    index = by if len(columns) == 1 else (by, "variable")
    return EstimateTable(f"{kind} of {what} by {by}", tuple(keys), tuple(estimates), index, cov)
