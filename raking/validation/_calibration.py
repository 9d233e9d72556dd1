"""Checks of calibration inputs (:func:`raking.calibrate`) and trimming (``RakeResult.trim``).

Plain Python and NumPy only. Every message names the argument (and the column of ``totals``),
what it received and what to change.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from raking.validation._messages import listed
from raking.validation._survey import check_bounds

CALIBRATION_METHODS = ("raking", "linear", "logit")
CALIBRATION_HINT = (
    "'raking' (exponential: g = exp(x'lambda), the weights of raking.rake), 'linear' (GREG, "
    "chi-square distance: g = 1 + x'lambda, negative weights possible), 'logit' (Deville-Sarndal "
    "logit distance, needs bounds=(lo, hi) with lo < 1 < hi)."
)


def split_calibration_totals(
    totals: object,
) -> tuple[dict[Hashable, object], dict[Hashable, float]]:
    """``totals`` as ``(categorical, numeric)``: ``{column: {level: count}}`` and ``{column: T}``.

    A mapping or a :class:`pandas.Series` (anything with ``.items()`` that is not a number) is a
    categorical variable's level counts, as :func:`raking.rake`'s targets; a real number (not a
    bool) is the population total of a numeric column. Order is kept within each kind.
    """
    if not isinstance(totals, Mapping) or not totals:
        raise TypeError(
            "totals must be a non-empty mapping: {column: {level: count}} for categorical "
            "columns and {column: population total} for numeric ones, e.g. "
            "{'stype': {'E': 4421, 'H': 755, 'M': 1018}, 'enroll': 3811472}; got "
            f"{type(totals).__name__}."
        )
    categorical: dict[Hashable, object] = {}
    numeric: dict[Hashable, float] = {}
    for key, value in totals.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise ValueError(
                    f"totals[{key!r}] is {value!r}: the population total of a numeric column "
                    "must be a finite number."
                )
            numeric[key] = float(value)
        elif isinstance(value, Mapping) or hasattr(value, "items"):
            categorical[key] = value
        else:
            raise TypeError(
                f"totals[{key!r}] must be a number (the population total of numeric column "
                f"{key!r}) or a mapping {{level: count}} (a categorical column), got "
                f"{type(value).__name__}."
            )
    return categorical, numeric


def check_calibration_bounds(bounds: object, method: str) -> tuple[float, float] | None:
    """Bounds on ``g = w / d`` for ``method``: as :func:`check_bounds`; logit needs them.

    The logit distance needs finite ``lo < 1 < hi`` (its constant ``A = (hi - lo) / ((hi - 1)
    (1 - lo))`` is infinite otherwise), as R's ``cal.logit`` ("Logit calibration requires
    finite bounds").
    """
    checked = check_bounds(bounds)
    if method != "logit":
        return checked
    if checked is None or not (checked[0] < 1.0 < checked[1] < math.inf):
        raise ValueError(
            f"method='logit' needs bounds=(lo, hi) with 0 <= lo < 1 < hi < inf, got {bounds!r}: "
            "the logit distance keeps every adjustment g = w / d strictly inside (lo, hi), e.g. "
            "bounds=(0.5, 2). Without bounds use method='raking' or 'linear'."
        )
    return checked


def raise_without_population_size(numeric: Sequence[Hashable]) -> None:
    """Only numeric totals and no ``total=``: the population size is unknown (R's intercept)."""
    raise ValueError(
        f"totals has only numeric columns ({listed([repr(k) for k in numeric])}) and no total= "
        "was given: calibration needs the population size N as well (R's calibrate() puts it in "
        "the intercept of the formula, population = c('(Intercept)' = N, ...)). Pass total=N, or "
        "add a categorical column's counts."
    )


def raise_on_share_totals(numeric: Sequence[Hashable]) -> None:
    """Numeric totals with categorical shares and no ``total=``: no known population size."""
    raise ValueError(
        f"the categorical totals are shares and no total= was given, but the numeric totals "
        f"({listed([repr(k) for k in numeric])}) are population totals, which need the "
        "population size N. Pass total=N, or give the categorical totals as counts."
    )


def check_numeric_column(
    name: Hashable, values: np.ndarray, labels: Sequence[object], *, is_numeric: bool
) -> np.ndarray:
    """A numeric calibration column on the calibrated rows: numbers, none missing."""
    if not is_numeric:
        raise TypeError(
            f"totals[{name!r}] is a number, so column {name!r} must be numeric; it has another "
            "dtype. For a categorical column give its counts by level, {level: count}."
        )
    bad = ~np.isfinite(values)
    if bad.any():
        rows = [labels[i] for i in np.flatnonzero(bad)]
        raise ValueError(
            f"numeric calibration column {name!r} has {int(bad.sum())} missing or infinite "
            f"value(s) among the calibrated rows (rows {listed(rows)}); calibration needs "
            f"every value. Fill them, or drop those rows (data.dropna(subset=[{name!r}]))."
        )
    return values


def check_numeric_reach(
    name: Hashable,
    x: np.ndarray,
    design: np.ndarray,
    target: float,
    method: str,
    bounds: tuple[float, float] | None,
) -> None:
    r"""A numeric total must be reachable by :math:`\sum_i d_i g_i x_i` alone.

    With ``g`` in ``[lo, hi]`` the reachable range is :math:`[\sum_i d_i x_i (lo \text{ if }
    x_i > 0 \text{ else } hi), \sum_i d_i x_i (hi \text{ if } x_i > 0 \text{ else } lo)]` (open
    for the logit distance); unbounded raking needs ``g > 0``, so a column of one sign needs a
    total of that sign; unbounded linear calibration reaches any total (negative weights).
    Totals reachable one at a time may still be unreachable together: then the Newton
    iteration does not converge and says so.
    """
    if method == "linear" and bounds is None:
        return
    lo, hi = (0.0, math.inf) if bounds is None else bounds
    dx = design * x
    pos, neg = float(dx[dx > 0].sum()), float(dx[dx < 0].sum())
    low = lo * pos + (hi * neg if neg else 0.0)
    high = (hi * pos if pos else 0.0) + lo * neg
    strict = method == "logit" or (method == "raking" and bounds is None)
    slack = 1e-12 * max(abs(target), pos - neg)
    outside = (
        (target <= low + slack or target >= high - slack)
        if strict
        else (target < low - slack or target > high + slack)
    )
    if outside:
        where = "with g > 0" if bounds is None else f"with g = w / d in {bounds}"
        raise ValueError(
            f"totals[{name!r}] = {target:.10g} is unreachable {where}: the weighted sum of "
            f"column {name!r} can only lie {'strictly ' if strict else ''}between {low:.10g} "
            f"and {high:.10g}. Check the total (its units, the population it refers to)"
            + (", or widen bounds." if bounds is not None else ".")
        )


def raise_on_collinear(name: Hashable, earlier: Sequence[Hashable], *, constant: bool) -> None:
    """A numeric calibration column adds no rank to the calibration matrix (singular system)."""
    if constant:
        why = (
            "is constant over the calibrated rows, so it is collinear with the intercept (the "
            "sum of any categorical column's indicators); its total is fixed by the population "
            "size"
        )
    else:
        others = "the level indicators of the categorical totals" + (
            f" and the numeric columns {listed([repr(k) for k in earlier])}" if earlier else ""
        )
        why = f"is a linear combination of {others} on the calibrated rows"
    raise ValueError(
        f"numeric calibration column {name!r} {why}: the calibration matrix is singular and its "
        f"total cannot be calibrated independently. Drop totals[{name!r}] (or the column it "
        "repeats)."
    )


def raise_on_inconsistent_totals(columns: Sequence[str], errors: Sequence[float]) -> None:
    """Unbounded linear calibration found no exact solution: the totals contradict each other."""
    shown = listed([f"{c} (off by {e:.3g})" for c, e in zip(columns, errors, strict=True)])
    raise ValueError(
        "the totals are inconsistent: no weights reproduce them all, because the calibration "
        "columns are collinear on the sample (e.g. a crossed margin and its main effect, or "
        "levels that occur only together) and their totals disagree. Largest misses, as a share "
        f"of each column's scale: {shown}. Make the totals of the collinear columns agree, or "
        "drop one of them."
    )


def check_trim_bounds(lower: object, upper: object) -> tuple[float, float]:
    """``lower`` and ``upper`` of :meth:`RakeResult.trim` as floats (``None``: no bound)."""
    out = []
    for name, value, default in (("lower", lower, -math.inf), ("upper", upper, math.inf)):
        if value is None:
            out.append(default)
            continue
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value):
            raise ValueError(
                f"{name} must be None or a number (a bound on the weights themselves, not on "
                f"g = w / d), got {value!r}."
            )
        out.append(float(value))
    if lower is None and upper is None:
        raise ValueError("trim() needs lower=, upper= or both, e.g. trim(upper=3 * median).")
    if not out[0] < out[1]:
        raise ValueError(f"trim() needs lower < upper, got lower={lower!r}, upper={upper!r}.")
    return out[0], out[1]


def check_trim_reach(lower: float, upper: float, total: float, n: int, inside: int) -> None:
    """Trimming keeps the total: ``n lower <= total <= n upper``, and some weight is inside."""
    if inside == 0 and n * lower <= total <= n * upper:
        raise ValueError(
            f"every one of the {n} weights lies outside [lower, upper] = [{lower!r}, {upper!r}], "
            "so there is no weight to take the trimmed excess (R's trimWeights divides by zero "
            "here). Widen the bounds so that some weights lie inside."
        )
    if n * upper < total or n * lower > total:
        side, bound = ("upper", upper) if n * upper < total else ("lower", lower)
        raise ValueError(
            f"{side}={bound:.10g} cannot hold: trimming keeps the weights' total {total:.10g}, "
            f"whose average over the {n} rows is {total / n:.6g}, beyond the {side} bound. "
            f"{'Raise' if side == 'upper' else 'Lower'} it past the average weight."
        )


def numeric_reach_with_total(
    x: np.ndarray, design: np.ndarray, n_total: float, bounds: tuple[float, float] | None
) -> tuple[float, float]:
    r"""The range of :math:`\sum_i d_i g_i x_i`, :math:`g \in [lo, hi]`, :math:`\sum_i d_i g_i = N`.

    The weights must still sum to the population size, so the reach of one numeric column is
    narrower than with :math:`g` alone: from :math:`g = lo` everywhere, the remaining
    :math:`N - lo \sum d` is given to the rows of largest (smallest) :math:`x` first, up to
    :math:`hi` each (a fractional knapsack: one sort). Unbounded raking (:math:`g > 0`): from
    :math:`N \min x` to :math:`N \max x`. Used to explain a calibration that did not converge.
    """
    lo, hi = (0.0, math.inf) if bounds is None else bounds
    base = lo * float(np.add.reduce(design * x))
    budget = n_total - lo * float(design.sum())
    if not math.isfinite(hi):
        return base + budget * float(x.min()), base + budget * float(x.max())
    order = np.argsort(x)
    out = []
    for ranked in (order, order[::-1]):
        room = (hi - lo) * design[ranked]
        filled = np.minimum(room, np.maximum(budget - (np.cumsum(room) - room), 0.0))
        out.append(base + float(np.add.reduce(filled * x[ranked])))
    return out[0], out[1]


def raise_if_out_of_reach_with_total(
    name: Hashable,
    x: np.ndarray,
    design: np.ndarray,
    n_total: float,
    target: float,
    bounds: tuple[float, float] | None,
) -> None:
    """After a calibration failed: a numeric total out of :func:`numeric_reach_with_total`."""
    low, high = numeric_reach_with_total(x, design, n_total, bounds)
    slack = 1e-9 * max(abs(low), abs(high), abs(target))
    if low + slack < target < high - slack:
        return
    where = "with g > 0" if bounds is None else f"with g = w / d in {bounds}"
    raise ValueError(
        f"totals[{name!r}] = {target:.10g} is unreachable {where} while the weights sum to the "
        f"population size {n_total:.10g}: the weighted sum of column {name!r} can then only lie "
        f"strictly between {low:.10g} and {high:.10g} (a mean of {low / n_total:.6g} to "
        f"{high / n_total:.6g} per population unit). Check the total (its units, the "
        "population it refers to)" + (", or widen bounds." if bounds is not None else ".")
    )

