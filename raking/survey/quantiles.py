r"""Quantiles of a raked survey with Woodruff confidence intervals, as R ``svyquantile``.

For a column :math:`y` with raked weights :math:`w` (within a domain :math:`D` with ``by=``),
the estimate is a weighted quantile rule :math:`\hat q_p = Q(y, w, p)` (``qrule``, R's names;
the default ``"math"``: the smallest :math:`y_{(k)}` whose weighted CDF :math:`\hat F(y_{(k)})
= \sum_{j \le k} w_{(j)} / \sum w` reaches :math:`p`, exactly as R's ``qrule_math``).

The interval is Woodruff's (1952), R's ``interval.type = "mean"``: the CDF at the estimate,
:math:`\hat F(\hat q_p)`, is the raked mean of the indicator :math:`1\{y_i \le \hat q_p\}` (R's
``svymean(x <= qhat, design)``), so its SE :math:`s_F` is that of a raked mean -- the
linearisation through the raking's projection, or the re-raked replicates -- exactly as
:meth:`~raking.survey.results.RakeResult.mean` computes it. The interval of the CDF,
:math:`\hat F(\hat q_p) \pm t_{1-\alpha/2,\,\nu}\, s_F`, is mapped back through the same rule:

.. math::

    [L, U] = \big[Q(y, w, \hat F - t s_F),\ Q(y, w, \hat F + t s_F)\big],
    \qquad \operatorname{SE}(\hat q_p) = \frac{U - L}{2\, t_{1-\alpha/2,\,\nu}},

with :math:`L` (:math:`U`) NaN when its probability falls below 0 (above 1), as in R. The
degrees of freedom :math:`\nu` are R's ``degf(design)``: first-stage PSUs minus strata among
the rows of positive weight (of the domain, for ``by=``); with replicate weights, the rank of
the replicate design weights minus 1 (R stores it at ``as.svrepdesign``) and, for a domain,
the rank of its rows' re-raked replicate weights minus 1 (R recomputes it when it subsets a
replicate design), both by R's pivoted QR with tolerance :math:`10^{-5}`. The SE is in the
units of :math:`y`.

The quantile rules follow R survey 4.1.1 line by line (``qrule_*``), including R's sums in long
double (``cumsum``, ``sum``) and ``approx``'s sorting and tie-averaging of the knots.
"""

from __future__ import annotations

import html
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from raking.validation import (
    check_alpha,
    check_columns,
    check_quantile_levels,
    check_quantile_rule,
    raise_non_numeric_quantile_column,
    raise_on_empty_domain,
)

if TYPE_CHECKING:
    import pandas as pd

    from raking.survey.results import RakeResult

__all__ = ["QuantileTable", "rank", "survey_quantiles", "weighted_quantile"]

_RANK_TOL = 1e-5  # R's degf.svyrep.design: qr(weights, tol = 1e-5)$rank - 1

_RULES = {
    "math": "R survey >= 4.1's default: the smallest value whose weighted CDF reaches q "
    "(the inverse of the empirical CDF, Hyndman & Fan type 1)",
    "school": "the midpoint of the two values where the weighted CDF equals q exactly, else "
    "as 'math' (Hyndman & Fan type 2)",
    "shahvaish": "Shah & Vaish (2006): the step function at (S_k + 1/2 - w_k/2) / (n + 1), "
    "S_k the cumulative weights over their mean",
    "hf1": "Hyndman & Fan type 1 (as 'math')",
    "hf2": "Hyndman & Fan type 2 (as 'school')",
    "hf3": "Hyndman & Fan type 3 (nearest even order statistic, on the distinct values)",
    "hf4": "Hyndman & Fan type 4 (linear interpolation of the weighted CDF)",
    "hf5": "Hyndman & Fan type 5 (linear, knots at the mid-points of the weight steps)",
    "hf6": "Hyndman & Fan type 6 (linear, knots at S_k / (S_n + w_n))",
    "hf7": "Hyndman & Fan type 7 (linear, knots at S_{k-1} / S_{n-1}, as R survey)",
    "hf8": "Hyndman & Fan type 8 (linear, median-unbiased knots)",
    "hf9": "Hyndman & Fan type 9 (linear, normal-unbiased knots)",
}


# ------------------------------------------------------------------------------ quantile rules


def _cumsum(w: np.ndarray) -> np.ndarray:
    """R's ``cumsum``: accumulated in long double, each partial sum rounded to double."""
    return np.cumsum(w.astype(np.longdouble)).astype(np.float64)


def _sum(w: np.ndarray) -> float:
    """R's ``sum``: accumulated in long double, rounded to double."""
    return float(np.sum(w.astype(np.longdouble)))


def _qs(x: np.ndarray, w: np.ndarray, p: float) -> tuple[float, float, int, float, float]:
    """R survey's ``qs``: ``(qlow, qup, ilow, wlow, wup)`` on ``x`` sorted (ties stable).

    ``ilow`` is 1-based, as R's; with no cumulative weight at or below :math:`pW` it is 1
    (R's ``last`` of no ``TRUE``).
    """
    total = _sum(w)
    cumw = _cumsum(w)
    below = np.flatnonzero(cumw <= p * total)
    pos = int(below[-1]) if below.size else 0
    nxt = pos if pos == x.size - 1 else pos + 1
    return (
        float(x[pos]),
        float(x[nxt]),
        pos + 1,
        p - cumw[pos] / total,
        cumw[nxt] / total - p,
    )


def _approx(knots: np.ndarray, y: np.ndarray, v: float, *, linear: bool) -> float:
    """R's ``approx(knots, y, v, method, f = 0, rule = 2)`` (ties of the knots: mean of y)."""
    if np.any(np.diff(knots) < 0):  # R's regularize.values: order(x), stable
        order = np.argsort(knots, kind="stable")
        knots, y = knots[order], y[order]
    unique, counts = np.unique(knots, return_counts=True)
    if unique.size < knots.size:
        groups = np.repeat(np.arange(unique.size), counts)
        y = np.bincount(groups, weights=y) / counts
        knots = unique
    if v < knots[0]:
        return float(y[0])
    if v > knots[-1]:
        return float(y[-1])
    i = int(np.searchsorted(knots, v, side="right")) - 1  # knots[i] <= v < knots[i + 1]
    if knots[i] == v or i == knots.size - 1:
        return float(y[i])
    if not linear:
        return float(y[i])
    j = i + 1
    return float(y[i] + (y[j] - y[i]) * ((v - knots[i]) / (knots[j] - knots[i])))


def weighted_quantile(name: str, x: np.ndarray, w: np.ndarray, p: float) -> float:
    r"""The weighted quantile rule ``name`` of R survey (``qrule_<name>``) at probability ``p``.

    Parameters
    ----------
    name : str
        One of ``"math"``, ``"school"``, ``"shahvaish"``, ``"hf1"`` ... ``"hf9"``.
    x : numpy.ndarray of float64, shape ``(n,)``
        Values, in the order of the rows (ties are taken in that order, as R's stable
        ``order``).
    w : numpy.ndarray of float64, shape ``(n,)``
        Weights; zeros are dropped first, as R does.
    p : float
        Probability in :math:`[0, 1]`.

    Returns
    -------
    float
        The quantile, in the units of ``x``.

    Notes
    -----
    R's quirks are kept, so that the numbers are R's: below the first weight share
    (:math:`p < w_{(1)} / W`, e.g. :math:`p = 0`) R's ``last`` of no ``TRUE`` is 1, so
    ``"math"`` gives the second smallest value and ``"hf4"`` extrapolates below the data;
    ``"shahvaish"``'s knots add :math:`w_k / 2` (not :math:`\bar w_k / 2`), so it depends on the
    scale of the weights; ``"hf7"`` divides by the cumulative weight of the :math:`n - 1`
    smallest values; ``"hf3"`` works on the distinct values (weights summed), with its jump
    where the weighted CDF is exactly :math:`p`.
    """
    keep = w != 0
    x, w = x[keep], w[keep]
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    n = x.size
    if name in ("math", "hf1"):
        qlow, qup, _, wlow, _ = _qs(x, w, p)
        return qlow if wlow == 0 else qup
    if name in ("school", "hf2"):
        qlow, qup, _, wlow, _ = _qs(x, w, p)
        return (qlow + qup) / 2 if wlow == 0 else qup
    if name == "hf3":
        values, group = np.unique(x, return_inverse=True)
        qlow, qup, ilow, wlow, _ = _qs(values, np.bincount(group, weights=w), p)
        return qlow if wlow == 0 and ilow % 2 == 0 else qup
    if name == "hf4":
        qlow, qup, _, wlow, wup = _qs(x, w, p)
        if wup + wlow == 0:  # p on the last knot (p = 1): qlow == qup, no 0 / 0
            return qlow
        gamma = wlow / (wup + wlow)
        return qlow * (1 - gamma) + qup * gamma
    if name == "shahvaish":
        wbar = w / (_sum(w) / n)
        knots = (_cumsum(wbar) + 0.5 - w / 2) / (n + 1)  # w / 2, not wbar / 2: as R
        return _approx(knots, x, p, linear=False)
    cumw = _cumsum(w)
    previous = np.concatenate([[0.0], cumw[:-1]])
    if name == "hf5":
        knots = (cumw - w / 2) / cumw[-1]
    elif name == "hf6":
        knots = cumw / (cumw[-1] + w[-1])
    elif name == "hf7":
        knots = previous / cumw[n - 2] if n > 1 else np.array([np.nan])
    elif name == "hf8":
        knots = (previous * 1 / 3 + cumw * 2 / 3) / (cumw[-1] + w[-1] / 3)
    else:  # hf9
        knots = (previous * 3 / 8 + cumw * 5 / 8) / (cumw[-1] + w[-1] / 4)
    if np.isnan(knots).any():
        return float("nan")
    return _approx(knots, x, p, linear=True)


# ------------------------------------------------------------------------- degrees of freedom


def rank(matrix: np.ndarray, tol: float = _RANK_TOL) -> int:
    r"""R's ``qr(matrix, tol)$rank`` (LINPACK ``dqrdc2``'s limited pivoting).

    Columns are taken in order; a column whose norm, after removing its projection on the
    columns kept so far, is below ``tol`` times its original norm is negligible (moved to the
    end and never used). Householder reflections, as ``dqrdc2``; the rank is at most the number
    of rows.
    """
    a = np.array(matrix, dtype=np.float64, order="F")
    n, p = a.shape
    original = np.linalg.norm(a, axis=0)
    original[original == 0] = 1.0
    kept = 0
    for j in range(p):
        if kept >= n:
            break
        col = a[kept:, j]
        if np.linalg.norm(col) < tol * original[j]:
            continue
        a[:, [kept, j]] = a[:, [j, kept]]
        original[[kept, j]] = original[[j, kept]]
        v = a[kept:, kept].copy()
        v[0] += np.copysign(np.linalg.norm(v), v[0])
        vv = float(v @ v)
        if vv > 0:
            rest = a[kept:, kept + 1 :]
            rest -= np.outer(v, (2.0 / vv) * (v @ rest))
        kept += 1
    return kept


def _design_df(result: RakeResult, rows: np.ndarray) -> int:
    """R's ``degf`` of a linearisation design: PSUs minus strata among the sampled ``rows``."""
    s = result._design
    psu = rows if s.cluster is None else s.cluster[rows]
    strata = np.zeros(rows.size, dtype=np.int64) if s.strata is None else s.strata[rows]
    return int(np.unique(psu).size - np.unique(strata).size)


def _replicate_df(result: RakeResult, raked_rows: np.ndarray | None) -> int:
    """R's ``degf`` of a replicate design (all rows), or of its subset to some raked rows."""
    reps = result._design.replicates
    assert reps is not None
    if raked_rows is None:  # as.svrepdesign: the rank of the replicate design weights
        return rank(reps.design.multipliers) - 1
    s = result._design
    weights = reps.weights(s.design)[raked_rows]
    return rank(weights) - 1


# ------------------------------------------------------------------------------ the result


@dataclass(frozen=True, eq=False)
class QuantileTable:
    """Quantiles with Woodruff intervals, one row per (domain,) probability.

    Attributes
    ----------
    name : str
        What was estimated (``"quantiles of api00 by stype"``).
    frame : pandas.DataFrame
        Index ``q`` (or ``(by, q)``); columns ``quantile``, ``ci_low``, ``ci_high`` (the
        ``1 - alpha`` Woodruff interval, NaN where R's is NA), ``se`` (R's interval-derived SE),
        ``cdf`` and ``cdf_se`` (the raked CDF at the estimate and its SE), ``df`` (degrees of
        freedom of the t quantile) and ``n`` (rows with a positive weight).
    qrule : str
        The quantile rule (R's ``qrule``).
    alpha : float
        One minus the coverage of the intervals.
    se_method : str
        How the SE of the CDF was computed, and how it is turned into the interval.
    notes : tuple of str
        The rule, the design and any NaN bound, each once.
    """

    name: str
    frame: pd.DataFrame
    qrule: str
    alpha: float
    se_method: str
    notes: tuple[str, ...]

    @property
    def estimate(self) -> pd.Series:
        """The quantiles, on the table's index."""
        return self.frame["quantile"].copy()

    @property
    def se(self) -> pd.Series:
        r"""The SEs derived from the intervals, :math:`(U - L) / (2 t_{1-\alpha/2,\nu})`."""
        return self.frame["se"].copy()

    @property
    def ci(self) -> pd.DataFrame:
        """The Woodruff intervals (columns ``lower``, ``upper``)."""
        return self.frame[["ci_low", "ci_high"]].set_axis(["lower", "upper"], axis=1)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`frame`."""
        return self.frame.copy()

    def summary(self) -> str:
        """The table, the SE method and the numbered notes."""
        level = f"{100 * (1 - self.alpha):g}%"
        lines = [
            f"{self.name} (qrule={self.qrule!r}, {level} Woodruff intervals)",
            self.frame.to_string(float_format=lambda v: f"{v:.6g}"),
            f"SE method: {self.se_method}",
        ]
        lines += [f"  [{i}] {note}" for i, note in enumerate(self.notes, start=1)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.summary())}</pre>"


def survey_quantiles(
    result: RakeResult,
    column: Hashable,
    q: float | Sequence[float],
    *,
    by: Hashable | None = None,
    qrule: str = "math",
    alpha: float = 0.05,
    na: str = "error",
) -> QuantileTable:
    """:meth:`raking.survey.results.RakeResult.quantile` (see the module docstring).

    ``na="omit"``: every domain keeps the rows where ``column`` is present, as R's
    ``svyquantile(na.rm=TRUE)`` subsets the design: the CDF's SE is that domain's, and the
    degrees of freedom those of the rows kept (on a replicate design, the rank of their
    replicate weights minus 1, as R's subset recomputes it).
    """
    import pandas as pd
    from scipy.stats import t as student_t

    probs = check_quantile_levels(q)
    rule = check_quantile_rule(qrule)
    alpha = check_alpha(alpha)
    check_columns("column", [column], list(result._data.columns))
    series = result._data[column]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise_non_numeric_quantile_column(column, series.dtype)
    (y,), kept, na_notes = result._analysis([column], na)
    s = result._design
    w = np.zeros(s.sample_pos.size)
    w[s.raked_pos] = s.final
    if by is None:
        domains: list[tuple[Any, np.ndarray]] = [(None, np.ones(w.size, dtype=bool))]
    else:
        labels, codes = result._levels(by)
        domains = [(label, codes == j) for j, label in enumerate(labels)]
    replicated = s.replicates is not None
    raked_index = np.full(w.size, -1, dtype=np.int64)
    raked_index[s.raked_pos] = np.arange(s.raked_pos.size)
    rows, notes = [], {}
    missing: dict[str, list[Any]] = {"lower": [], "upper": []}
    subset = by is not None or bool(np.any(~kept & (w > 0)))  # R subsets the design
    for label, domain in domains:
        inside = domain & (w > 0)
        if not inside.any():
            raise_on_empty_domain(by, label)
        result._check_kept([column], domain & kept, w, by, label, domain)
        inside &= kept
        x_d, w_d = y[inside], w[inside]
        if replicated:
            df = _replicate_df(result, raked_index[inside] if subset else None)
        else:
            df = _design_df(result, np.flatnonzero(inside))
        crit = _critical(student_t, alpha, df)
        for p in probs:
            qhat = weighted_quantile(rule, x_d, w_d, p)
            cdf = result._one("mean", (y <= qhat).astype(np.float64), w, domain & kept)
            for note in cdf.notes:
                notes.setdefault(note, None)
            lo_p = cdf.estimate - crit * cdf.se
            hi_p = cdf.estimate + crit * cdf.se
            lower = (
                np.nan if np.isnan(lo_p) or lo_p < 0 else weighted_quantile(rule, x_d, w_d, lo_p)
            )
            upper = (
                np.nan if np.isnan(hi_p) or hi_p > 1 else weighted_quantile(rule, x_d, w_d, hi_p)
            )
            where = p if by is None else (label, p)
            for side, bound in (("lower", lower), ("upper", upper)):
                if np.isnan(bound) and not np.isnan(cdf.se):
                    missing[side].append(where)
            rows.append(
                {
                    **({} if by is None else {by: label}),
                    "q": p,
                    "quantile": qhat,
                    "ci_low": lower,
                    "ci_high": upper,
                    "se": (upper - lower) / (2 * crit),
                    "cdf": cdf.estimate,
                    "cdf_se": cdf.se,
                    "df": df,
                    "n": int(inside.sum()),
                }
            )
    frame = pd.DataFrame(rows).set_index(["q"] if by is None else [by, "q"])
    name = f"quantiles of {column}" + ("" if by is None else f" by {by}")
    rule_note = f"quantile rule qrule={rule!r}: {_RULES[rule]}"
    df_note = (
        "t quantile on R's degf: rank of the replicate weights minus 1"
        if replicated
        else "t quantile on R's degf: first-stage PSUs minus strata"
    ) + (" (of each domain's rows)" if by is not None else "")
    method = (
        "Woodruff (1952), R svyquantile(ci=TRUE, interval.type='mean'): the "
        f"{100 * (1 - alpha):g}% t interval of the raked CDF at the quantile (the mean of "
        "1{y <= q}), mapped back through "
        "the quantile rule; SE = (upper - lower) / (2 t). SE of the CDF: " + result._se_method()
    )
    design_notes = tuple(n.replace("; normal 95% CI", "") for n in notes)
    nan_notes = tuple(
        f"{side} bound NaN (R's NA: the CDF's interval leaves [0, 1], too few rows in that "
        f"tail), and so the SE, at {'q' if by is None else (by, 'q')} = "
        + ", ".join(map(repr, where))
        for side, where in missing.items()
        if where
    )
    return QuantileTable(
        name,
        frame,
        rule,
        alpha,
        method,
        (rule_note, df_note, *design_notes, *na_notes, *nan_notes),
    )


def _critical(student_t: Any, alpha: float, df: float) -> float:
    r""":math:`t_{1-\alpha/2,\nu}` (R's ``qt``), NaN for :math:`\nu \le 0`."""
    if not df > 0:
        return float("nan")
    return float(student_t.ppf(1 - alpha / 2, df))
