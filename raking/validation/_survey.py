"""Checks of survey-raking inputs (:func:`raking.rake`, :func:`raking.survey.weights.rake_codes`).

Plain Python and NumPy only (the pandas front end passes labels, counts and arrays in), so the
kernel layer can use them too. Every message names the variable (the key of ``targets``), the
column and the level, and says what to change.
"""

from __future__ import annotations

import difflib
import math
import numbers
import warnings
from collections.abc import Hashable, Sequence

import numpy as np

from raking.exceptions import EmptyCategoryError, SparseLevelWarning
from raking.validation._messages import listed

SHARE_TOL = 1e-6
"""Targets summing to 1 within this are shares; totals agreeing within it (relative) are equal."""

MIN_LEVEL_ROWS = 5
"""Levels with fewer sample rows than this get a :class:`~raking.exceptions.SparseLevelWarning`."""

_NOT_WEIGHTS = {
    "b": "True/False",
    "c": "complex numbers",
    "m": "time spans",
    "M": "dates",
    "V": "raw bytes",
    "S": "bytes",
}
"""NumPy dtype kinds that convert to float without being weights (a flag, a date)."""

NA_OPTIONS = ("error", "drop", "level")
UNKNOWN_OPTIONS = ("error", "zero")


def _label(level: object) -> str:
    return repr(level.item() if isinstance(level, np.generic) else level)


def _levels(levels: Sequence[object]) -> str:
    return listed([_label(x) for x in levels])


def check_bounds(bounds: object, *, name: str = "bounds") -> tuple[float, float] | None:
    """``None``, or a pair ``(lo, hi)`` with ``0 <= lo < hi <= inf``, as floats."""
    if bounds is None:
        return None
    ok = isinstance(bounds, Sequence) and not isinstance(bounds, str) and len(bounds) == 2
    if ok:
        lo, hi = bounds
        ok = all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in (lo, hi))
        ok = ok and math.isfinite(lo) and 0 <= lo < hi and not math.isnan(hi)
    if not ok:
        raise ValueError(
            f"{name} must be None or a pair (lo, hi) of numbers with 0 <= lo < hi (hi may be "
            f"math.inf), got {bounds!r}. They bound the adjustment factor g_i = w_i / d_i of "
            "each row's weight to its design weight, e.g. bounds=(0.5, 2)."
        )
    return float(bounds[0]), float(bounds[1])  # type: ignore[index]


def check_design_weights(
    values: object,
    n: int,
    *,
    name: str,
    labels: Sequence[object] | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Design weights as float64, shape ``(n,)``, finite and positive (on ``rows``, a mask).

    ``labels`` (e.g. the DataFrame index) name the offending rows in the message. The result is
    C-contiguous (a strided array is copied once; the passes read it many times) and may be the
    caller's array, read-only: it is never written to.
    """
    check_weights_dtype(getattr(values, "dtype", None), name=name)
    d = as_numbers(values, name=name, labels=labels)
    if d.shape != (n,):
        raise ValueError(
            f"{name} has shape {d.shape} but the data have {n} rows; give one design weight per "
            "row (a column name of data, or an array of length n)."
        )
    if rows is None and d.size and d.min() > 0 and d.max() < math.inf:  # NaN fails both
        return d
    bad = ~(np.isfinite(d) & (d > 0))
    if rows is not None:
        bad &= rows
    if bad.any():
        rows = np.flatnonzero(bad)
        where = [labels[i] for i in rows] if labels is not None else rows.tolist()
        raise ValueError(
            f"{name} has {rows.size} missing, non-positive or non-finite value(s) at rows "
            f"{listed(where)} (e.g. {float(d[rows[0]])!r}); design weights are inverse inclusion "
            "probabilities and must be > 0. Drop those rows or fix their weights first."
        )
    return d


def check_weights_dtype(dtype: object, *, name: str) -> None:
    """Refuse dtypes that convert to float without being weights: flags, dates, time spans.

    NumPy (and pandas) turn True into 1 and a date into nanoseconds since 1970; as design
    weights these would be silently wrong, so they are errors. ``dtype`` may be any object with
    a ``kind`` (NumPy and pandas dtypes) or ``None``.
    """
    kind = getattr(dtype, "kind", "O")
    if kind in _NOT_WEIGHTS:
        raise ValueError(
            f"{name} has dtype {dtype} ({_NOT_WEIGHTS[kind]}), not numbers (NumPy would turn "
            "them into 1/0 or nanoseconds). Give a numeric column, or convert it to float "
            "first if this is intended."
        )


def as_numbers(values: object, *, name: str, labels: Sequence[object] | None = None) -> np.ndarray:
    """``values`` as a C-contiguous float64 array; an error names the rows that are no numbers.

    Numeric text converts (NumPy's rules); ``labels`` name the rows (default: positions).
    """
    try:
        return np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(_not_numeric(values, name, labels, exc)) from exc


def _is_number(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _not_numeric(values: object, name: str, labels: Sequence[object] | None, exc: Exception) -> str:
    """The message for design weights that do not convert to float: which rows hold what."""
    try:
        flat = np.asarray(values, dtype=object).ravel()
    except (TypeError, ValueError):
        flat = np.empty(0, dtype=object)
    bad = [i for i, x in enumerate(flat) if not _is_number(x)]
    if not bad:
        return f"{name} must be numeric, one value per row; could not convert ({exc})."
    named = labels is not None and len(labels) == flat.size
    where = [labels[i] if named else i for i in bad]  # type: ignore[index]
    return (
        f"{name} must be numeric, one value per row, but {len(bad)} value(s) are not "
        f"numbers, at rows {listed(where)} (e.g. {flat[bad[0]]!r} at row {where[0]!r}). "
        "Convert them to numbers (e.g. pandas.to_numeric) and fix or drop those rows."
    )


def check_columns(owner: str, columns: Sequence[Hashable], available: Sequence[Hashable]) -> None:
    """Raise a ValueError naming the columns of ``owner`` (e.g. ``targets['age']``) not in data."""
    missing = [c for c in columns if c not in available]
    if not missing:
        return
    names = [str(c) for c in available]
    hints = []
    for c in missing:
        close = difflib.get_close_matches(str(c), names, n=3)
        if close:
            hints.append(f"{c!r}: did you mean {close}?")
    raise ValueError(
        f"{owner} names column(s) {listed([repr(c) for c in missing])} that data does not "
        f"have. {' '.join(hints)}{' ' if hints else ''}Use an existing column (data has "
        f"{listed([repr(c) for c in available])})."
    )


def check_target_values(variable: object, levels: Sequence[object], values: object) -> np.ndarray:
    """A target's values as float64: finite, non-negative, positive total, unique levels."""
    try:
        t = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"targets[{variable!r}] must map each level to a number (a count or a share); "
            f"could not convert its values ({exc})."
        ) from exc
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"targets[{variable!r}] is empty; give a target for every level.")
    seen: set[object] = set()
    dups = [x for x in levels if x in seen or seen.add(x)]  # type: ignore[func-returns-value]
    if dups:
        raise ValueError(
            f"targets[{variable!r}] lists level(s) {_levels(dups)} more than once; give one "
            "target per level."
        )
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        lv = [levels[i] for i in np.flatnonzero(bad)]
        raise ValueError(
            f"targets[{variable!r}] has negative or non-finite value(s) at level(s) {_levels(lv)} "
            f"({t[bad][:3].tolist()}); targets are population counts or shares, >= 0. Fix them."
        )
    with np.errstate(over="ignore"):
        total = t.sum()
    if not np.isfinite(total):
        raise ValueError(
            f"targets[{variable!r}] sums to more than the largest float64 (1.8e308); give them "
            "in larger units (e.g. thousands) or as shares (each variable summing to 1)."
        )
    if total <= 0:
        raise ValueError(f"targets[{variable!r}] sums to 0; give positive counts or shares.")
    return t


def resolve_total(
    variables: Sequence[object], sums: Sequence[float], total: object, default: float
) -> tuple[float, bool]:
    """The population total ``T`` the weights sum to, and whether it is a known population total.

    Targets that sum to 1 (within :data:`SHARE_TOL`) are shares; otherwise counts. Every target
    must be shares, or all counts with one total (relative :data:`SHARE_TOL`). ``total`` (if not
    None) overrides; otherwise the counts' total, else ``default`` (the sum of the design weights
    or the number of rows), which is then not a known population total.
    """
    sums = [float(s) for s in sums]
    is_share = [abs(s - 1.0) <= SHARE_TOL for s in sums]
    for v, s in zip(variables, sums, strict=True):
        if abs(s - 1.0) > SHARE_TOL and s < 1.5:
            raise ValueError(
                f"targets[{v!r}] sums to {s:.6g}: shares must sum to 1 (within {SHARE_TOL:g}). "
                "Divide it by its sum, or give population counts for every variable."
            )
    counts = [(v, s) for v, s, sh in zip(variables, sums, is_share, strict=True) if not sh]
    if counts and any(is_share):
        v0 = next(v for v, sh in zip(variables, is_share, strict=True) if sh)
        v, s = counts[0]
        raise ValueError(
            f"targets[{v!r}] sums to {s:.6g} (counts) but targets[{v0!r}] sums to 1 (shares); "
            "every target must have the same total. Give counts for all of them, or divide each "
            "by its sum to give shares."
        )
    for v, s in counts[1:]:
        v0, s0 = counts[0]
        if abs(s - s0) > SHARE_TOL * max(s, s0):
            raise ValueError(
                f"targets[{v!r}] sums to {s:.10g} but targets[{v0!r}] sums to {s0:.10g}; every "
                "target must have the same population total. Correct the counts, or divide each "
                "by its sum to give shares and pass total=N."
            )
    if total is not None:
        if (
            isinstance(total, bool)
            or not isinstance(total, numbers.Real)
            or not (0 < total < math.inf)
        ):
            raise ValueError(
                f"total must be a positive finite number (the population size N), got {total!r}."
            )
        return float(total), True
    if counts:
        return counts[0][1], True
    return float(default), False


def raise_on_na(variable: object, column: object, rows: Sequence[object], n_missing: int) -> None:
    """Missing values in a raked column under ``na="error"``."""
    raise ValueError(
        f"data column {column!r} (targets[{variable!r}]) has {n_missing} missing value(s), at "
        f"rows {listed(list(rows))}; raking needs a level for every row. Pass na='drop' to rake "
        "without those rows (their weight is NaN), na='level' to make missing its own level "
        f"(then give targets[{variable!r}] a target for NaN), or fill them first."
    )


def raise_on_unknown_levels(
    variable: object, levels: Sequence[object], counts: Sequence[int], target_levels: Sequence
) -> None:
    """Sample levels that the targets do not list, under ``unknown="error"``."""
    shown = [f"{_label(lv)} ({c} rows)" for lv, c in zip(levels, counts, strict=True)]
    hint = ""
    as_text = {str(t): t for t in target_levels}
    same_text = [(lv, as_text[str(lv)]) for lv in levels if str(lv) in as_text]
    if same_text:
        lv, target = same_text[0]
        hint = (
            f" Some match a target level as text but not as a value: the types differ (data "
            f"has {_label(lv)} of type {type(lv).__name__}, the targets {_label(target)} of type "
            f"{type(target).__name__}); convert the target keys or the column to one type."
        )
    raise ValueError(
        f"data has level(s) {listed(shown)} of targets[{variable!r}] that the targets do not "
        f"list (targets have {_levels(target_levels)}).{hint} Give those levels a target, or "
        "pass unknown='zero' to give their rows weight 0."
    )


def raise_on_empty_levels(variable: object, levels: Sequence[object], values: np.ndarray) -> None:
    """Levels with a positive target but no sample rows (infeasible)."""
    if not len(levels):
        return
    raise EmptyCategoryError(
        f"targets[{variable!r}] has level(s) {_levels(levels)} with positive target(s) "
        f"{values.tolist()[:10]} but no row of data in them; raking cannot give weight to rows "
        "that do not exist. Drop those levels from the targets (and rescale the rest), or merge "
        "them with a neighbouring level in both data and targets.",
        axis=-1,
        categories=tuple(range(len(levels))),
        batch_index=None,
    )


def warn_sparse_levels(variable: object, levels: Sequence[object], counts: Sequence[int]) -> None:
    """Warn about levels with fewer than :data:`MIN_LEVEL_ROWS` sample rows."""
    if not len(levels):
        return
    shown = [f"{_label(lv)} ({c} rows)" for lv, c in zip(levels, counts, strict=True)]
    warnings.warn(
        f"targets[{variable!r}] level(s) {listed(shown)} have fewer than {MIN_LEVEL_ROWS} "
        "sample rows; their weights will be large and unstable. Consider merging them with a "
        "neighbouring level.",
        SparseLevelWarning,
        stacklevel=4,
    )


def check_bounded_levels(
    variable: object,
    levels: Sequence[object],
    targets: np.ndarray,
    design_sums: np.ndarray,
    bounds: tuple[float, float],
) -> None:
    """Each level's target must lie in ``[lo, hi] x`` the design weight of its rows."""
    lo, hi = bounds
    with np.errstate(divide="ignore", invalid="ignore"):
        need = targets / design_sums
    slack = 1e-9 * targets  # rounding in the targets
    too_high = targets - slack > hi * design_sums
    for j in np.flatnonzero(too_high | (targets + slack < lo * design_sums)):
        side, fix = ("upper", f"raise hi to at least {need[j]:.4g}")
        if not too_high[j]:
            side, fix = ("lower", f"lower lo to at most {need[j]:.4g}")
        raise ValueError(
            f"bounds {bounds} make targets[{variable!r}] level {_label(levels[j])} unreachable: "
            f"its target {targets[j]:.6g} needs an average adjustment of {need[j]:.4g} times the "
            f"design weight ({design_sums[j]:.6g}) of its rows, beyond the {side} bound. "
            f"Widen bounds ({fix}) or merge the level."
        )
